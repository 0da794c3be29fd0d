//! The operator that turns change events into reference data changes and
//! balance adjustments, each applied once and in the source's order.
//!
//! Debezium delivers at least once: after a crash of the connector (or of
//! `cdrflow cdc capture`) changes come again, and a snapshot's rows can
//! arrive after newer streamed changes of the same row. So every id keeps
//! the position (LSN, place in the transaction) of the last change applied
//! to it, in the keyed table `applied`, and a change at or before it is
//! skipped. The table commits with the checkpoint, in the same transaction
//! as the changes and the Kafka offsets: a restart neither loses nor
//! repeats one. Kafka's own order is not trusted beyond the partition's:
//! positions decide.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::envelope::{decode_with, ChangeEvent, ChangePosition, Decoded, Op, SchemaCache};
use super::mapping::{Adjustment, Entity, Mapping, TableMapping};
use crate::analytics::rules::{Anomaly, Severity};
use crate::charging::{add_delta, BalanceDelta, BalanceDeltas};
use crate::mediation::{Counts, RejectedRecord};
use crate::model::SourcePosition;
use crate::money::format_micros;
use crate::normalize::{CountryCode, Msisdn};
use crate::operator::{BatchContext, Checkpoint, Operator, ReadError, StateKind, StateTable};
use crate::reference::{ReferenceChange, ALWAYS};
use crate::reject::{RejectReason, Rejection};

/// Per id (`entity:id`), or per entity for a truncate (`entity`): the last
/// change applied.
pub const APPLIED: StateTable = StateTable {
    name: "applied",
    kind: StateKind::Keyed,
};

/// One Kafka message of a change-event topic.
#[derive(Clone, Copy, Debug)]
pub struct ChangeMessage<'a> {
    pub topic: &'a str,
    pub position: SourcePosition,
    pub key: Option<&'a [u8]>,
    /// Empty for a null value (a tombstone).
    pub value: &'a [u8],
}

/// A logical decoding message (`op` `m`, `pg_logical_emit_message`):
/// nothing to apply, handed on so that the runner can say it was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalMessage<'a> {
    pub topic: &'a str,
    pub position: SourcePosition,
    pub prefix: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ChangeConfig {
    /// For national numbers in the source tables.
    pub home: CountryCode,
    /// The currency of balance adjustments that name none.
    pub currency: Arc<str>,
    /// An adjustment that takes a prepaid balance below this raises a
    /// `low_balance` anomaly (`None`: never); below zero, always
    /// `negative_balance` (as the charging operator's records do).
    pub low_balance_micros: Option<i64>,
}

/// What the last applied change of an id left.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Applied {
    position: ChangePosition,
    /// For a balance adjustment still in force: whose balance it moved, by how much.
    adjustment: Option<(Msisdn, i64)>,
}

impl Applied {
    /// `LSN ORDER` then, for an adjustment, `MSISDN MICROS`: readable in the store.
    fn encode(&self) -> Vec<u8> {
        let ChangePosition { lsn, order } = self.position;
        match self.adjustment {
            Some((msisdn, micros)) => format!("{lsn} {order} {msisdn} {micros}"),
            None => format!("{lsn} {order}"),
        }
        .into_bytes()
    }

    fn decode(value: &[u8]) -> Result<Applied, ReadError> {
        let damaged = || {
            ReadError(format!(
                "the stored change position {:?} is not `LSN ORDER [MSISDN MICROS]`; the store is damaged",
                String::from_utf8_lossy(value)
            ))
        };
        let text = std::str::from_utf8(value).map_err(|_| damaged())?;
        let parts: Vec<&str> = text.split(' ').collect();
        let number = |i: usize| parts[i].parse::<i64>().map_err(|_| damaged());
        let position = match parts.len() {
            2 | 4 => ChangePosition {
                lsn: number(0)?,
                order: number(1)?,
            },
            _ => return Err(damaged()),
        };
        let adjustment = match parts.len() {
            4 => Some((
                crate::normalize::normalize_msisdn(parts[2], CountryCode::SOUTH_AFRICA)
                    .map_err(|_| damaged())?,
                number(3)?,
            )),
            _ => None,
        };
        Ok(Applied {
            position,
            adjustment,
        })
    }
}

/// How each change event ended, counted per checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    pub applied: u64,
    /// At or before the position already applied to its id: a redelivery,
    /// or a snapshot row older than a streamed change.
    pub skipped: u64,
    /// Tables the mapping does not name, tombstones (the delete before one
    /// applied the change), logical decoding messages, truncates of
    /// balance adjustments (a ledger emptied does not undo top-ups).
    pub ignored: u64,
    /// Applied, but after rated records they should have affected: the
    /// store counts these as it commits (`late_reference_changes`).
    pub late: u64,
}

/// One balance adjustment's move of a prepaid balance.
struct BalanceCrossing<'a> {
    msisdn: Msisdn,
    before: i64,
    after: i64,
    currency: &'a str,
    /// `balance_adjustments:ID`.
    adjustment: &'a str,
    position: ChangePosition,
    at: i64,
}

impl BalanceCrossing<'_> {
    /// The anomalies of a move from at or above a line to below it: under
    /// `low` (`low_balance`), under zero (`negative_balance`). Keyed by the
    /// change's position, so one redelivered is stored once.
    fn alerts(&self, low: Option<i64>) -> Vec<Anomaly> {
        let crossed = |line: i64| self.before >= line && self.after < line;
        let alert = |rule: &'static str, severity: Severity, line: i64| Anomaly {
            rule,
            severity,
            msisdn: self.msisdn,
            event_id: Some(self.adjustment.to_string()),
            event_time: self.at,
            window_start: None,
            evidence: format!(
                "balance {} → {} {} after the change of {} (threshold {})",
                format_micros(i128::from(self.before)),
                format_micros(i128::from(self.after)),
                self.currency,
                self.adjustment,
                format_micros(i128::from(line)),
            ),
            idempotency_key: format!(
                "{rule}:{}@{}.{}",
                self.adjustment, self.position.lsn, self.position.order
            ),
        };
        let mut alerts = Vec::new();
        if let Some(low) = low.filter(|&low| crossed(low)) {
            alerts.push(alert("low_balance", Severity::Medium, low));
        }
        if crossed(0) {
            alerts.push(alert("negative_balance", Severity::High, 0));
        }
        alerts
    }
}

pub struct ReferenceChanges {
    mapping: Arc<Mapping>,
    config: ChangeConfig,
    /// What the store holds for the ids seen so far (`None`: nothing).
    applied: FxHashMap<String, Option<Applied>>,
    changed: FxHashSet<String>,
    pending: Vec<ReferenceChange>,
    balances: BalanceDeltas,
    /// The balances adjustments moved, as this scope follows them: read
    /// from the store once, then moved by its own adjustments (as the
    /// charging operator follows the balances its records move).
    followed: FxHashMap<Msisdn, i64>,
    alerts: Vec<Anomaly>,
    rejects: Vec<RejectedRecord>,
    counts: Counts,
    schemas: SchemaCache,
}

/// A message read, with the ids its change is ordered by.
enum Read<'m> {
    Change {
        event: ChangeEvent,
        table: &'m TableMapping,
        key: String,
        /// A balance adjustment's row as read (`None` for other tables
        /// and for a delete): read once, for the balances to ask for and
        /// for the change.
        adjustment: Option<Result<Adjustment, String>>,
    },
    Ignored,
    Message(Option<String>),
    Rejected(Rejection),
}

impl ReferenceChanges {
    pub fn new(mapping: Arc<Mapping>, config: ChangeConfig) -> ReferenceChanges {
        ReferenceChanges {
            mapping,
            config,
            applied: FxHashMap::default(),
            changed: FxHashSet::default(),
            pending: Vec::new(),
            balances: BalanceDeltas::default(),
            followed: FxHashMap::default(),
            alerts: Vec::new(),
            rejects: Vec::new(),
            counts: Counts::default(),
            schemas: SchemaCache::default(),
        }
    }

    fn read<'m>(
        mapping: &'m Mapping,
        home: CountryCode,
        schemas: &mut SchemaCache,
        message: &ChangeMessage<'_>,
    ) -> Read<'m> {
        let event = match decode_with(schemas, message.topic, message.key, message.value) {
            Ok(Decoded::Change(event)) => event,
            Ok(Decoded::Tombstone { .. }) => return Read::Ignored,
            Ok(Decoded::Message { prefix }) => return Read::Message(prefix),
            Err(e) => return Read::Rejected(Rejection::new(e.reason(), e.to_string())),
        };
        let Some(table) = mapping.table(event.schema.as_deref(), &event.table) else {
            return Read::Ignored;
        };
        let key = if event.op == Op::Truncate {
            table.entity.as_str().to_string()
        } else {
            // The id from the row, else (a delete without the old values) from the key.
            let id = [event.row(), event.key.as_ref()]
                .into_iter()
                .flatten()
                .find(|row| row.get(table.id_column()).is_some())
                .map(|row| table.id(row, home));
            match id {
                Some(Ok(id)) => format!("{}:{id}", table.entity),
                Some(Err(why)) => {
                    return Read::Rejected(Rejection::new(RejectReason::InvalidChangeValue, why))
                }
                None => {
                    return Read::Rejected(Rejection::new(
                        RejectReason::InvalidChangeValue,
                        format!(
                            "neither the row nor the key has `{}`, the {} id",
                            table.id_column(),
                            table.entity
                        ),
                    ))
                }
            }
        };
        let adjustment = match (table.entity, &event.after) {
            (Entity::BalanceAdjustments, Some(row)) => Some(table.adjustment(row, home)),
            _ => None,
        };
        Read::Change {
            event,
            table,
            key,
            adjustment,
        }
    }

    /// Applies one change whose position is newer than its id's.
    fn apply(
        &mut self,
        event: &ChangeEvent,
        table: &TableMapping,
        key: &str,
        adjustment: Option<Result<Adjustment, String>>,
        known: Option<&Applied>,
    ) -> Result<Option<Applied>, Rejection> {
        let invalid = |why: String| Rejection::new(RejectReason::InvalidChangeValue, why);
        // A snapshot row of an id never seen was in force before anything we know.
        let at = match (event.op, known) {
            (Op::Read, None) => ALWAYS,
            _ => event.committed_at.ok_or_else(|| {
                Rejection::new(
                    RejectReason::ChangeWithoutPosition,
                    "the event has no commit time (`source.ts_ms`, `__source_ts_ms`): it cannot say from when its row is in force",
                )
            })?,
        };
        let home = self.config.home;
        let mut applied = Applied {
            position: event.position,
            adjustment: None,
        };
        match (table.entity, event.op) {
            (Entity::Reference(_), Op::Create | Op::Update | Op::Read) => {
                let row = event.after.as_ref().expect("decoded with `after`");
                let row = table.reference_row(row, at, home).map_err(invalid)?;
                self.pending.push(ReferenceChange::Put(row));
            }
            (Entity::Reference(kind), Op::Delete) => {
                let id = key.split_once(':').map_or(key, |(_, id)| id).to_string();
                self.pending.push(ReferenceChange::Remove { kind, id, at });
            }
            (Entity::Reference(kind), Op::Truncate) => {
                self.pending.push(ReferenceChange::RemoveAll { kind, at });
            }
            (Entity::BalanceAdjustments, Op::Create | Op::Update | Op::Read | Op::Delete) => {
                let now = match event.op {
                    Op::Delete => None,
                    _ => Some(
                        adjustment
                            .expect("read from the row `after`")
                            .map_err(invalid)?,
                    ),
                };
                let currency: Arc<str> = now
                    .as_ref()
                    .and_then(|a| a.currency.as_deref())
                    .map_or_else(|| self.config.currency.clone(), Arc::from);
                let last_event_time = event.committed_at.unwrap_or(at).max(0);
                let low = self.config.low_balance_micros;
                let mut move_balance = |msisdn: Msisdn, micros: i64| {
                    let delta = BalanceDelta {
                        micros,
                        currency: currency.clone(),
                        last_event_time,
                    };
                    add_delta(&mut self.balances, msisdn, delta);
                    let balance = self.followed.entry(msisdn).or_default();
                    let before = *balance;
                    *balance = before.saturating_add(micros);
                    let crossing = BalanceCrossing {
                        msisdn,
                        before,
                        after: *balance,
                        currency: &currency,
                        adjustment: key,
                        position: event.position,
                        at: last_event_time,
                    };
                    self.alerts.extend(crossing.alerts(low));
                };
                if let Some((msisdn, micros)) = known.and_then(|k| k.adjustment) {
                    move_balance(msisdn, -micros);
                }
                if let Some(now) = now {
                    move_balance(now.msisdn, now.micros);
                    applied.adjustment = Some((now.msisdn, now.micros));
                }
            }
            (Entity::BalanceAdjustments, Op::Truncate) => return Ok(None),
        }
        Ok(Some(applied))
    }
}

impl Operator for ReferenceChanges {
    type Input<'a> = ChangeMessage<'a>;
    type Output<'a> = LogicalMessage<'a>;

    fn name(&self) -> &'static str {
        "reference_changes"
    }

    fn tables(&self) -> &'static [StateTable] {
        &[APPLIED]
    }

    fn process_batch<'a>(
        &mut self,
        batch: &[ChangeMessage<'a>],
        context: &mut BatchContext<'_>,
        out: &mut Vec<LogicalMessage<'a>>,
    ) -> Result<(), ReadError> {
        let mapping = self.mapping.clone();
        let reads: Vec<Read<'_>> = batch
            .iter()
            .map(|m| Self::read(&mapping, self.config.home, &mut self.schemas, m))
            .collect();
        // What the store holds for ids this scope has not seen yet: one question.
        let mut wanted: Vec<String> = Vec::new();
        let mut asked: FxHashSet<&str> = FxHashSet::default();
        for read in &reads {
            if let Read::Change { table, key, .. } = read {
                for k in [key.as_str(), table.entity.as_str()] {
                    if !self.applied.contains_key(k) && asked.insert(k) {
                        wanted.push(k.to_string());
                    }
                }
            }
        }
        if !wanted.is_empty() {
            let stored = context.state.values_of(&APPLIED, &wanted)?;
            for (key, value) in wanted.into_iter().zip(stored) {
                let applied = value.map(|v| Applied::decode(&v)).transpose()?;
                self.applied.insert(key, applied);
            }
        }
        self.follow_balances(&reads, context)?;
        for (message, read) in batch.iter().zip(reads) {
            let (event, table, key, adjustment) = match read {
                Read::Change {
                    event,
                    table,
                    key,
                    adjustment,
                } => (event, table, key, adjustment),
                Read::Ignored => {
                    self.counts.changes.ignored += 1;
                    continue;
                }
                Read::Message(prefix) => {
                    self.counts.changes.ignored += 1;
                    out.push(LogicalMessage {
                        topic: message.topic,
                        position: message.position,
                        prefix,
                    });
                    continue;
                }
                Read::Rejected(rejection) => {
                    self.reject(message, rejection);
                    continue;
                }
            };
            let entity = table.entity.as_str();
            let newest = [key.as_str(), entity]
                .iter()
                .filter_map(|k| self.applied.get(*k).and_then(Option::as_ref))
                .map(|a| a.position)
                .max();
            if newest.is_some_and(|p| event.position <= p) {
                self.counts.changes.skipped += 1;
                continue;
            }
            let known = self.applied.get(&key).cloned().flatten();
            match self.apply(&event, table, &key, adjustment, known.as_ref()) {
                Ok(Some(applied)) => {
                    self.counts.changes.applied += 1;
                    self.applied.insert(key.clone(), Some(applied));
                    self.changed.insert(key);
                }
                Ok(None) => self.counts.changes.ignored += 1,
                Err(rejection) => self.reject(message, rejection),
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, out: &mut Checkpoint) {
        out.reference.append(&mut self.pending);
        out.anomalies.append(&mut self.alerts);
        for (msisdn, delta) in std::mem::take(&mut self.balances) {
            add_delta(&mut out.balances, msisdn, delta);
        }
        out.rejects.append(&mut self.rejects);
        out.counts.add(&std::mem::take(&mut self.counts));
        let mut state = out.state_of("reference_changes");
        let mut changed: Vec<String> = self.changed.drain().collect();
        changed.sort_unstable();
        for key in changed {
            if let Some(Some(applied)) = self.applied.get(&key) {
                state.put(&APPLIED, key, applied.encode());
            }
        }
    }
}

impl ReferenceChanges {
    /// Reads, in one question, the committed balances the batch's
    /// adjustments will move that this scope does not follow yet: the
    /// subscriber a row names, and the one an earlier version of the row
    /// moved (an update or delete takes that back).
    fn follow_balances(
        &mut self,
        reads: &[Read<'_>],
        context: &mut BatchContext<'_>,
    ) -> Result<(), ReadError> {
        let mut unknown: Vec<Msisdn> = Vec::new();
        for read in reads {
            let Read::Change {
                table,
                key,
                adjustment,
                ..
            } = read
            else {
                continue;
            };
            if table.entity != Entity::BalanceAdjustments {
                continue;
            }
            let named = adjustment.as_ref().and_then(|a| a.as_ref().ok());
            let earlier = self
                .applied
                .get(key)
                .cloned()
                .flatten()
                .and_then(|a| a.adjustment);
            unknown.extend(
                named
                    .map(|a| a.msisdn)
                    .into_iter()
                    .chain(earlier.map(|(m, _)| m)),
            );
        }
        unknown.retain(|m| !self.followed.contains_key(m));
        unknown.sort_unstable();
        unknown.dedup();
        if unknown.is_empty() {
            return Ok(());
        }
        let stored = context.state.balances(&unknown)?;
        for (msisdn, micros) in unknown.into_iter().zip(stored) {
            self.followed.insert(msisdn, micros.unwrap_or(0));
        }
        Ok(())
    }

    fn reject(&mut self, message: &ChangeMessage<'_>, rejection: Rejection) {
        *self.counts.rejected.entry(rejection.reason).or_default() += 1;
        self.rejects.push(RejectedRecord {
            rejection,
            origin: message.topic.to_string(),
            position: message.position,
            payload: message.value.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::MemoryState;
    use crate::reference::{ReferenceData, ReferenceKind};

    const MAPPING: &str = r#"
        [[table]]
        table = "subscribers"
        entity = "subscribers"
        columns = { msisdn = "msisdn", customer_id = "customer_id", plan_id = "plan_id" }

        [[table]]
        table = "balance_adjustments"
        entity = "balance_adjustments"
        columns = { adjustment_id = "id", msisdn = "msisdn", amount = "amount" }
    "#;

    fn event(table: &str, op: &str, lsn: i64, ts: i64, before: &str, after: &str) -> String {
        format!(
            r#"{{"before":{before},"after":{after},"op":"{op}","source":{{"schema":"public","table":"{table}","lsn":{lsn},"ts_ms":{ts},"snapshot":"{}"}}}}"#,
            if op == "r" { "true" } else { "false" }
        )
    }

    fn subscriber(plan: &str) -> String {
        format!(r#"{{"msisdn":"+212612345678","customer_id":"C1","plan_id":"{plan}"}}"#)
    }

    fn adjustment(id: i64, amount: &str) -> String {
        format!(r#"{{"id":{id},"msisdn":"0612345678","amount":"{amount}"}}"#)
    }

    /// Feeds `values` as one batch through a fresh operator restored from
    /// `state`, and commits its checkpoint there; with the prefixes of the
    /// logical decoding messages it handed on.
    fn run(state: &mut MemoryState, values: &[String]) -> (Checkpoint, Vec<Option<String>>) {
        let mapping = Arc::new(Mapping::parse(MAPPING).unwrap());
        let config = ChangeConfig {
            home: CountryCode::parse("212").unwrap(),
            currency: "MAD".into(),
            low_balance_micros: Some(10_000_000),
        };
        let mut operator = ReferenceChanges::new(mapping, config);
        let messages: Vec<ChangeMessage<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| ChangeMessage {
                topic: "dbserver1.public.any",
                position: SourcePosition::Kafka {
                    partition: 0,
                    offset: i as i64,
                },
                key: None,
                value: v.as_bytes(),
            })
            .collect();
        let mut context = BatchContext { now: 0, state };
        let mut logical = Vec::new();
        operator
            .process_batch(&messages, &mut context, &mut logical)
            .unwrap();
        let prefixes = logical.into_iter().map(|m| m.prefix).collect();
        let mut checkpoint = Checkpoint::default();
        operator.checkpoint(&mut checkpoint);
        state.apply(&checkpoint);
        (checkpoint, prefixes)
    }

    #[test]
    fn each_change_applies_once_in_the_source_s_order() {
        let number = || {
            crate::normalize::normalize_msisdn("+212612345678", CountryCode::SOUTH_AFRICA).unwrap()
        };
        let null = "null";
        let values = vec![
            event("subscribers", "r", 100, 1_000, null, &subscriber("P1")),
            event("subscribers", "u", 200, 2_000, null, &subscriber("P2")),
            // Redelivered, and a snapshot row older than the streamed change.
            event("subscribers", "u", 200, 2_000, null, &subscriber("P2")),
            event("subscribers", "r", 150, 1_500, null, &subscriber("P0")),
            event(
                "balance_adjustments",
                "c",
                300,
                3_000,
                null,
                &adjustment(1, "10.50"),
            ),
            event(
                "balance_adjustments",
                "u",
                310,
                3_100,
                null,
                &adjustment(1, "12.00"),
            ),
            event(
                "balance_adjustments",
                "c",
                315,
                3_150,
                null,
                &adjustment(2, "5.00"),
            ),
            event(
                "balance_adjustments",
                "d",
                320,
                3_200,
                &adjustment(1, "12.00"),
                null,
            ),
            event(
                "balance_adjustments",
                "c",
                300,
                3_000,
                null,
                &adjustment(1, "10.50"),
            ),
            event("subscribers", "d", 400, 4_000, &subscriber("P2"), null),
            "{\"op\":".to_string(),
            event("orders", "c", 500, 5_000, null, r#"{"id":1}"#),
            r#"{"op":"m","ts_ms":1,"source":{"lsn":600,"table":""},"message":{"prefix":"audit","content":""}}"#.to_string(),
        ];
        let mut state = MemoryState::new("reference_changes");
        let (first, prefixes) = run(&mut state, &values);
        // The logical decoding message is handed on, to be logged.
        assert_eq!(prefixes, [Some("audit".to_string())]);
        assert_eq!(
            first.counts.changes,
            ChangeCounts {
                applied: 7,
                skipped: 3,
                ignored: 2,
                late: 0
            }
        );
        assert_eq!(first.counts.rejected[&RejectReason::MalformedJson], 1);
        assert_eq!(first.rejects.len(), 1);
        // 10.50, then +1.50 to 12.00, +5.00, then the 12.00 taken back: 5.00.
        assert_eq!(first.balances[&number()].micros, 5_000_000);
        let mut data = ReferenceData::default();
        for change in first.reference.clone() {
            data.apply(change);
        }
        let plan_at = |at| {
            data.subscriber_at(number(), at)
                .map(|s| s.plan_id.to_string())
        };
        assert_eq!(
            plan_at(i64::MIN + 1).as_deref(),
            Some("P1"),
            "a snapshot row is in force from always"
        );
        assert_eq!(plan_at(1_999).as_deref(), Some("P1"));
        assert_eq!(plan_at(2_000).as_deref(), Some("P2"));
        assert_eq!(plan_at(4_000), None, "deleted at its commit time");
        assert!(data.current(ReferenceKind::Subscribers).is_empty());

        // A restart from the committed state: everything again changes nothing.
        let (again, prefixes) = run(&mut state, &values);
        // The logical decoding message is handed on, to be logged.
        assert_eq!(prefixes, [Some("audit".to_string())]);
        assert_eq!(again.counts.changes.applied, 0);
        assert_eq!(again.counts.changes.skipped, 10);
        assert_eq!(again.counts.changes.ignored, 2);
        assert!(again.reference.is_empty() && again.balances.is_empty());
    }

    /// From a stored balance of 12.00 (threshold 10.00): +5.00 → 17.00,
    /// −9.00 → 8.00 (low), the first corrected to +1.00 → 4.00, −10.00 →
    /// −6.00 (negative); each alert once, none again on redelivery.
    #[test]
    fn adjustments_that_cross_the_lines_raise_alerts_once() {
        let number =
            crate::normalize::normalize_msisdn("+212612345678", CountryCode::SOUTH_AFRICA).unwrap();
        let mut state = MemoryState::new("reference_changes");
        let mut stored = Checkpoint::default();
        let twelve = BalanceDelta {
            micros: 12_000_000,
            currency: "MAD".into(),
            last_event_time: 0,
        };
        add_delta(&mut stored.balances, number, twelve);
        state.apply(&stored);
        let null = "null";
        let values = vec![
            event(
                "balance_adjustments",
                "c",
                10,
                1_000,
                null,
                &adjustment(1, "5.00"),
            ),
            event(
                "balance_adjustments",
                "c",
                20,
                2_000,
                null,
                &adjustment(2, "-9.00"),
            ),
            event(
                "balance_adjustments",
                "u",
                30,
                3_000,
                &adjustment(1, "5.00"),
                &adjustment(1, "1.00"),
            ),
            event(
                "balance_adjustments",
                "c",
                40,
                4_000,
                null,
                &adjustment(3, "-10.00"),
            ),
        ];
        let (first, prefixes) = run(&mut state, &values);
        assert!(prefixes.is_empty());
        let alerts: Vec<(&str, &str, &str)> = first
            .anomalies
            .iter()
            .map(|a| {
                (
                    a.rule,
                    a.event_id.as_deref().unwrap(),
                    a.idempotency_key.as_str(),
                )
            })
            .collect();
        assert_eq!(
            alerts,
            [
                (
                    "low_balance",
                    "balance_adjustments:2",
                    "low_balance:balance_adjustments:2@20.0"
                ),
                (
                    "negative_balance",
                    "balance_adjustments:3",
                    "negative_balance:balance_adjustments:3@40.0"
                ),
            ]
        );
        assert!(
            first.anomalies[0].evidence.contains("balance 17"),
            "{}",
            first.anomalies[0].evidence
        );
        assert_eq!(
            first.balances[&number].micros,
            5_000_000 - 9_000_000 - 4_000_000 - 10_000_000
        );
        let (again, _) = run(&mut state, &values);
        assert!(again.anomalies.is_empty());
    }
}
