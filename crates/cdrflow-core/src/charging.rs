//! Charging: what rating decided, kept — a rated record per accepted
//! record, and prepaid balances moved by each one exactly once.
//!
//! The operator after the mediator: it sees only accepted, non-duplicate
//! records, so a record replayed after a crash (its checkpoint never
//! committed) charges again only because the first charge was never
//! stored. Balances change by deltas that the commit adds to the stored
//! ones, in the same transaction as the source positions.
//!
//! **Allowances** (a plan's free seconds, messages, bytes or money per day
//! or billing period) are used record by record in the rater's order —
//! priority, then earliest expiry: unit allowances first take the billed
//! units they can, the rest is priced as its share of the record's exact
//! price (rounded once, at the rate's point), then money allowances take
//! what they can of that. What each subscriber has used of each grant is
//! the keyed table `allowance_used` (per scope, like every operator's
//! state: one subscriber's records belong in one partition). The daily
//! summaries' cost is brought down by what allowances paid, in the same
//! checkpoint.
//!
//! Alerts need the balance itself, record by record: the operator reads a
//! subscriber's committed balance the first time the scope meets them and
//! follows it in memory from there. A low-balance alert fires on the
//! record that takes a balance from at or above the threshold to below
//! it, a negative-balance alert on the one that takes it below zero —
//! per record, so how records fall into checkpoints changes nothing. (Two
//! scopes charging one subscriber at once — a number whose records come
//! through two Kafka partitions — keep exact balances, since deltas add;
//! their alerts each follow their own view.)

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::aggregate::{SummaryDelta, Totals};
use crate::analytics::rules::{Anomaly, Severity};
use crate::mediation::Rated;
use crate::model::Kind;
use crate::money::format_micros;
use crate::normalize::{Day, EpochMillis, Msisdn};
use crate::operator::{
    hand_over, BatchContext, Checkpoint, Operator, ReadError, StateKind, StateReader, StateTable,
};
use crate::rating::{AllowanceOffer, Grant, Name, Validity};
use crate::reference::{BillingPeriod, Payment};

/// One record as rating left it: the `rated_records` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatedRecord {
    /// The source's id, or `partition:position` for a record without one.
    pub record_id: Box<str>,
    pub msisdn: Msisdn,
    pub event_time: EpochMillis,
    pub kind: Kind,
    pub service_type: Box<str>,
    pub other_party: Option<Msisdn>,
    /// `None`: a subscriber not in the reference data.
    pub customer_id: Option<Arc<str>>,
    pub plan: Name,
    pub version: Name,
    pub destination: Option<(Name, &'static str)>,
    pub band: Option<Name>,
    pub rate: Name,
    pub region: Option<Arc<str>>,
    /// The cell the record names: what finds the records a late cell
    /// change touched.
    pub cell_id: Option<Box<str>>,
    pub technology: Option<&'static str>,
    /// Seconds, bytes or messages as recorded (1 for an activation).
    pub usage_units: u64,
    pub billed_units: u64,
    /// The first allowance that paid for some of it, and how much all
    /// paid: billed units (seconds, messages, bytes), or micro-units when
    /// only money allowances did.
    pub allowance: Option<(Name, u64)>,
    /// What is charged: the rated cost less what allowances paid.
    pub cost_micros: i64,
    pub currency: Arc<str>,
    pub billing_period: BillingPeriod,
}

/// A checkpoint's change to one prepaid balance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceDelta {
    pub micros: i64,
    pub currency: Arc<str>,
    /// The latest event time among the records that moved it.
    pub last_event_time: EpochMillis,
}

/// The balances a checkpoint moves, by subscriber.
pub type BalanceDeltas = BTreeMap<Msisdn, BalanceDelta>;

/// Adds `delta` to `msisdn`'s change in `deltas`.
pub fn add_delta(deltas: &mut BalanceDeltas, msisdn: Msisdn, delta: BalanceDelta) {
    deltas
        .entry(msisdn)
        .and_modify(|total| {
            total.micros = total.micros.saturating_add(delta.micros);
            total.last_event_time = total.last_event_time.max(delta.last_event_time);
        })
        .or_insert(delta);
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargingConfig {
    /// Keep a `rated_records` row per accepted record.
    pub rated_records: bool,
    /// Alert when a balance falls under this many micro-units (`None`:
    /// never); a balance falling below zero always alerts.
    pub low_balance_micros: Option<i64>,
    /// The rater's currency, named by every row and balance.
    pub currency: Arc<str>,
}

/// Seed 004's inventory service alerts under 10 units.
pub const DEFAULT_LOW_BALANCE_MICROS: i64 = 10_000_000;

impl Default for ChargingConfig {
    fn default() -> ChargingConfig {
        ChargingConfig {
            rated_records: true,
            low_balance_micros: Some(DEFAULT_LOW_BALANCE_MICROS),
            currency: Arc::from("WAK"),
        }
    }
}

/// What each subscriber has used of each allowance grant: key
/// `msisdn|allowance|span` (`2024-03-05` for a day, `2024-03` for a
/// billing period, `purchase=ID` for a bundle purchase), value the units or micro-units used, as decimal text.
pub const ALLOWANCE_USED: StateTable = StateTable {
    name: "allowance_used",
    kind: StateKind::Keyed,
};

/// One subscriber's grant of one allowance: the key of [`ALLOWANCE_USED`].
/// Kept typed in memory (looked up for every offer of every record) and
/// spelt as text only where the store reads or writes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AllowanceGrant {
    msisdn: Msisdn,
    allowance: &'static str,
    span: Span,
}

/// The span a grant is renewed over.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Span {
    Day(Day),
    Period(BillingPeriod),
    /// Never renewed: one purchase's grant.
    Purchase(Arc<str>),
}

impl fmt::Display for AllowanceGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (msisdn, allowance) = (self.msisdn, &self.allowance);
        match &self.span {
            Span::Day(day) => write!(f, "{msisdn}|{allowance}|{day}"),
            Span::Period(period) => write!(f, "{msisdn}|{allowance}|{period}"),
            Span::Purchase(id) => write!(f, "{msisdn}|{allowance}|purchase={id}"),
        }
    }
}

/// What a record is charged once its allowances have paid their part.
struct Charge {
    cost_micros: i64,
    allowance: Option<(&'static str, u64)>,
}

/// Allowance use as this scope knows it: every grant it has met, in a
/// slot of its own. A batch's offers are looked up once, when the batch's
/// unknown grants are read ([`Charging::load_allowances`]); using them
/// then goes by slot, in the same order.
#[derive(Default)]
struct AllowanceUse {
    slots: FxHashMap<AllowanceGrant, u32>,
    /// By slot: the grant, and how much of it is used.
    grants: Vec<AllowanceGrant>,
    used: Vec<u64>,
    /// Slots used since the last checkpoint.
    changed: Vec<u32>,
}

impl AllowanceUse {
    /// The slot of `grant`, and whether it is new (its use not read yet).
    fn slot(&mut self, grant: AllowanceGrant) -> (u32, bool) {
        if let Some(&slot) = self.slots.get(&grant) {
            return (slot, false);
        }
        // Cloned only when new: a purchase's grant holds an `Arc`.
        let slot = self.grants.len() as u32;
        self.slots.insert(grant.clone(), slot);
        self.grants.push(grant);
        self.used.push(0);
        (slot, true)
    }

    /// Forgets the grants from slot `first` on: their use could not be
    /// read, and a grant with a slot counts as read.
    fn forget_from(&mut self, first: usize) {
        for grant in self.grants.drain(first..) {
            self.slots.remove(&grant);
        }
        self.used.truncate(first);
    }
}

/// A prepaid balance as this scope follows it.
struct Balance {
    /// Committed when first read, then moved record by record.
    micros: i64,
    /// How far it moved since the last checkpoint, and the latest event
    /// time among the records that moved it (`None`: none did).
    pending: Option<(i64, EpochMillis)>,
}

pub struct Charging {
    config: ChargingConfig,
    allowances: AllowanceUse,
    /// The slot of each allowance offer of the batch being charged, record
    /// by record and offer by offer.
    batch_slots: Vec<u32>,
    /// Cost the allowances took off the daily summaries since the last checkpoint.
    pending_summaries: SummaryDelta,
    balances: FxHashMap<Msisdn, Balance>,
    /// Subscribers whose balance moved since the last checkpoint.
    balances_moved: Vec<Msisdn>,
    pending_rows: Vec<RatedRecord>,
    pending_alerts: Vec<Anomaly>,
}

impl Charging {
    pub fn new(config: ChargingConfig) -> Charging {
        Charging {
            config,
            allowances: AllowanceUse::default(),
            batch_slots: Vec::new(),
            pending_summaries: SummaryDelta::default(),
            balances: FxHashMap::default(),
            balances_moved: Vec::new(),
            pending_rows: Vec::new(),
            pending_alerts: Vec::new(),
        }
    }

    /// The grant of `offer` that `record` falls in.
    fn grant(record: &Rated<'_>, offer: &AllowanceOffer, cycle_day: u8) -> AllowanceGrant {
        AllowanceGrant {
            msisdn: record.msisdn,
            allowance: offer.id,
            span: match &offer.validity {
                Validity::Day => Span::Day(record.day),
                Validity::Period => Span::Period(BillingPeriod::containing(record.day, cycle_day)),
                Validity::Purchase(id) => Span::Purchase(id.clone()),
            },
        }
    }

    /// Finds the slot of every allowance offer of the batch (into
    /// `batch_slots`) and reads, in one question, what the batch's
    /// subscribers have used of the grants the scope has not met yet.
    fn load_allowances(
        &mut self,
        batch: &[Rated<'_>],
        state: &mut dyn StateReader,
    ) -> Result<(), ReadError> {
        self.batch_slots.clear();
        let known = self.allowances.grants.len();
        let mut unknown = Vec::new();
        for record in batch {
            let Some(rating) = &record.rating else {
                continue;
            };
            for offer in &rating.allowances {
                let grant = Charging::grant(record, offer, rating.bill_cycle_day());
                let (slot, new) = self.allowances.slot(grant);
                self.batch_slots.push(slot);
                if new {
                    unknown.push(slot);
                }
            }
        }
        if unknown.is_empty() {
            return Ok(());
        }
        let read = self.read_allowances(unknown, state);
        if read.is_err() {
            self.allowances.forget_from(known);
        }
        read
    }

    /// Reads what is stored of the grants in slots `unknown`, into them.
    fn read_allowances(
        &mut self,
        unknown: Vec<u32>,
        state: &mut dyn StateReader,
    ) -> Result<(), ReadError> {
        let keys: Vec<String> = unknown
            .iter()
            .map(|&slot| self.allowances.grants[slot as usize].to_string())
            .collect();
        let stored = state.values_of(&ALLOWANCE_USED, &keys)?;
        for ((slot, key), value) in unknown.into_iter().zip(keys).zip(stored) {
            let used = match value {
                None => 0,
                Some(bytes) => std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| {
                        ReadError(format!(
                            "the stored allowance use {:?} of `{key}` is not a number; the store is damaged",
                            String::from_utf8_lossy(&bytes)
                        ))
                    })?,
            };
            self.allowances.used[slot as usize] = used;
        }
        Ok(())
    }

    /// Uses `record`'s allowances in order (`slots`: theirs, from
    /// [`Charging::load_allowances`]) and prices what they leave.
    fn apply_allowances(&mut self, record: &Rated<'_>, slots: &[u32]) -> Charge {
        let Some(rating) = &record.rating else {
            return Charge {
                cost_micros: 0,
                allowance: None,
            };
        };
        let unpaid = Charge {
            cost_micros: rating.cost_micros,
            allowance: None,
        };
        if rating.allowances.is_empty() {
            return unpaid;
        }
        let Some(exact) = rating.exact else {
            return unpaid;
        };
        let billed = rating.billed_units;
        let (mut free_units, mut first) = (0u64, None);
        let use_of = &mut self.allowances;
        let mut take = |offer: &AllowanceOffer, slot: u32, granted: u64, wanted: u64| {
            let used = &mut use_of.used[slot as usize];
            let taken = granted.saturating_sub(*used).min(wanted);
            if taken > 0 {
                *used += taken;
                use_of.changed.push(slot);
                first.get_or_insert(offer.id);
            }
            taken
        };
        let offers = || rating.allowances.iter().zip(slots.iter().copied());
        for (offer, slot) in offers() {
            if let Grant::Units(grant) = offer.grant {
                free_units += take(offer, slot, grant, billed - free_units);
            }
        }
        let mut cost = match free_units {
            0 => rating.cost_micros,
            // An exact share of a price that fitted fits.
            _ => exact
                .share(billed - free_units, billed)
                .unwrap_or(rating.cost_micros),
        };
        let mut free_money = 0u64;
        for (offer, slot) in offers() {
            if let Grant::Money(grant) = offer.grant {
                let taken = take(offer, slot, grant.max(0) as u64, cost.max(0) as u64);
                free_money += taken;
                cost -= taken as i64;
            }
        }
        let paid = if free_units > 0 {
            free_units
        } else {
            free_money
        };
        Charge {
            cost_micros: cost,
            allowance: first.map(|id| (id, paid)),
        }
    }

    /// Whether the record is a prepaid subscriber's: it moves a balance.
    fn prepaid(record: &Rated<'_>) -> bool {
        let account = record.rating.as_ref().and_then(|r| r.account.as_ref());
        account.is_some_and(|a| a.payment == Payment::Prepaid)
    }

    /// How a prepaid record moves its balance: recharges add, usage takes
    /// what it is charged.
    fn balance_change(record: &Rated<'_>, cost_micros: i64) -> i64 {
        match record.kind {
            Kind::Recharge => record.usage.amount_micros,
            _ => -cost_micros,
        }
    }

    /// Reads, in one question, the committed balances of this batch's
    /// prepaid subscribers the scope has not met yet.
    fn load_balances(
        &mut self,
        batch: &[Rated<'_>],
        state: &mut dyn StateReader,
    ) -> Result<(), ReadError> {
        let mut unknown: Vec<Msisdn> = batch
            .iter()
            .filter(|r| Charging::prepaid(r) && !self.balances.contains_key(&r.msisdn))
            .map(|r| r.msisdn)
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort_unstable();
        unknown.dedup();
        let stored = state.balances(&unknown)?;
        for (msisdn, balance) in unknown.into_iter().zip(stored) {
            let micros = balance.unwrap_or(0);
            self.balances.insert(
                msisdn,
                Balance {
                    micros,
                    pending: None,
                },
            );
        }
        Ok(())
    }

    fn charge(&mut self, record: &Rated<'_>, change: i64) {
        let Some(balance) = self.balances.get_mut(&record.msisdn) else {
            unreachable!("load_balances read every prepaid subscriber of the batch");
        };
        let before = balance.micros;
        let after = before.saturating_add(change);
        balance.micros = after;
        balance.pending = Some(match balance.pending {
            None => {
                self.balances_moved.push(record.msisdn);
                (change, record.start_time)
            }
            Some((moved, last)) => (moved.saturating_add(change), last.max(record.start_time)),
        });
        let crossed = |threshold: i64| before >= threshold && after < threshold;
        let mut alert = |rule: &'static str, severity: Severity, threshold: i64| {
            let id = record.source_identity();
            self.pending_alerts.push(Anomaly {
                rule,
                severity,
                msisdn: record.msisdn,
                event_id: record.record_id.as_deref().map(str::to_string),
                event_time: record.start_time,
                window_start: None,
                evidence: format!(
                    "balance {} → {} {} after record {id} (threshold {})",
                    format_micros(i128::from(before)),
                    format_micros(i128::from(after)),
                    self.config.currency,
                    format_micros(i128::from(threshold)),
                ),
                idempotency_key: format!("{rule}:{id}"),
            });
        };
        if let Some(low) = self.config.low_balance_micros.filter(|&low| crossed(low)) {
            alert("low_balance", Severity::Medium, low);
        }
        if crossed(0) {
            alert("negative_balance", Severity::High, 0);
        }
    }

    fn row(&self, record: &Rated<'_>, charge: Charge) -> Option<RatedRecord> {
        let rating = record.rating.as_ref()?;
        let usage = &record.usage;
        let usage_units = match record.kind {
            Kind::Voice => usage.duration_sec,
            Kind::Data => usage.up_bytes.saturating_add(usage.down_bytes),
            Kind::Sms | Kind::Activation => 1,
            Kind::Recharge => 0,
        };
        Some(RatedRecord {
            record_id: record.source_identity().into(),
            msisdn: record.msisdn,
            event_time: record.start_time,
            kind: record.kind,
            service_type: Box::from(&*record.service_type),
            other_party: record.other_party,
            customer_id: rating.account.as_ref().map(|a| a.customer_id.clone()),
            plan: rating.plan.clone(),
            version: rating.version.clone(),
            destination: rating.destination.clone(),
            band: rating.band.clone(),
            rate: rating.rate.clone(),
            region: match &record.region {
                Some(own) => Some(Arc::from(&**own)),
                None => rating.region.clone(),
            },
            cell_id: record.cell_id.as_deref().map(Box::from),
            technology: rating.technology.clone(),
            usage_units,
            billed_units: rating.billed_units,
            allowance: charge.allowance.map(|(id, paid)| (Name::Static(id), paid)),
            cost_micros: charge.cost_micros,
            currency: self.config.currency.clone(),
            billing_period: BillingPeriod::containing(record.day, rating.bill_cycle_day()),
        })
    }
}

impl Operator for Charging {
    type Input<'a> = Rated<'a>;
    type Output<'a> = ();

    fn name(&self) -> &'static str {
        "charging"
    }

    fn process_batch<'a>(
        &mut self,
        batch: &[Rated<'a>],
        context: &mut BatchContext<'_>,
        _out: &mut Vec<()>,
    ) -> Result<(), ReadError> {
        self.load_balances(batch, context.state)?;
        self.load_allowances(batch, context.state)?;
        let batch_slots = std::mem::take(&mut self.batch_slots);
        let mut slots = batch_slots.as_slice();
        for record in batch {
            let offers = record.rating.as_ref().map_or(0, |r| r.allowances.len());
            let (of_record, rest) = slots.split_at(offers);
            slots = rest;
            let charge = self.apply_allowances(record, of_record);
            if let Some(rating) = &record.rating {
                let paid = rating.cost_micros - charge.cost_micros;
                if paid != 0 {
                    let less = Totals {
                        cost_micros: -paid,
                        ..Totals::default()
                    };
                    // Less than the mediator added for the record: no overflow.
                    let _ = self.pending_summaries.add(
                        record.kind,
                        record.msisdn,
                        record.day,
                        &record.service_type,
                        &less,
                    );
                }
            }
            if Charging::prepaid(record) {
                self.charge(record, Charging::balance_change(record, charge.cost_micros));
            }
            if self.config.rated_records {
                if let Some(row) = self.row(record, charge) {
                    self.pending_rows.push(row);
                }
            }
        }
        self.batch_slots = batch_slots;
        Ok(())
    }

    fn tables(&self) -> &'static [StateTable] {
        &[ALLOWANCE_USED]
    }

    fn checkpoint(&mut self, out: &mut Checkpoint) {
        hand_over(&mut self.pending_rows, &mut out.rated_records);
        let summaries = std::mem::take(&mut self.pending_summaries);
        if !summaries.is_empty() {
            out.summaries.merge(&summaries);
        }
        let mut state = out.state_of(self.name());
        let use_of = &mut self.allowances;
        use_of.changed.sort_unstable();
        use_of.changed.dedup();
        for slot in use_of.changed.drain(..) {
            let slot = slot as usize;
            state.put(
                &ALLOWANCE_USED,
                use_of.grants[slot].to_string(),
                use_of.used[slot].to_string().into_bytes(),
            );
        }
        for msisdn in self.balances_moved.drain(..) {
            let balance = self.balances.get_mut(&msisdn);
            let Some((micros, last_event_time)) = balance.and_then(|b| b.pending.take()) else {
                unreachable!("a subscriber whose balance moved has a balance that moved");
            };
            add_delta(
                &mut out.balances,
                msisdn,
                BalanceDelta {
                    micros,
                    currency: self.config.currency.clone(),
                    last_event_time,
                },
            );
        }
        out.anomalies.append(&mut self.pending_alerts);
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::aggregate::RowKey;
    use crate::dedup::RecordKey;
    use crate::mediation::DuplicateReason;
    use crate::model::{Direction, IdSpace, SourcePosition};
    use crate::money::{Rounding, RoundingPoint};
    use crate::operator::MemoryState;
    use crate::rating::{Account, ExactPrice, Offers, Rating};

    /// A store whose first question about allowance use fails (a lost
    /// connection); afterwards it answers from what `stored` holds.
    struct FailsOnce {
        failed: bool,
        stored: MemoryState,
    }

    impl StateReader for FailsOnce {
        fn value(&mut self, table: &StateTable, key: &str) -> Result<Option<Vec<u8>>, ReadError> {
            if !self.failed {
                self.failed = true;
                return Err(ReadError("the connection was lost".into()));
            }
            self.stored.value(table, key)
        }

        fn spans(
            &mut self,
            table: &StateTable,
            first: i32,
            last: i32,
            visit: &mut dyn FnMut(&[u8]),
        ) -> Result<(), ReadError> {
            self.stored.spans(table, first, last, visit)
        }

        fn summary_totals(&mut self, rows: &[RowKey]) -> Result<Vec<Option<Totals>>, ReadError> {
            self.stored.summary_totals(rows)
        }

        fn balances(&mut self, msisdns: &[Msisdn]) -> Result<Vec<Option<i64>>, ReadError> {
            self.stored.balances(msisdns)
        }
    }

    const SUBSCRIBER: u64 = 212_600_000_001;

    /// A postpaid 60-second call at 1.00 a minute that a daily allowance
    /// of `granted` seconds may pay for.
    fn call(granted: u64) -> Rated<'static> {
        let day = Day(19_787); // 2024-03-05
        Rated {
            origin: "test",
            partition: "test",
            position: SourcePosition::Line {
                line: 1,
                byte_offset: 0,
            },
            record_id: Some(Cow::Borrowed("call-1")),
            kind: Kind::Voice,
            direction: Direction::Outgoing,
            region: None,
            cell_id: None,
            msisdn: Msisdn::from_digits(SUBSCRIBER),
            other_party: None,
            service_type: Cow::Borrowed("voice"),
            technology: None,
            start_time: i64::from(day.0) * 86_400_000,
            day,
            usage: Totals::default(),
            key: RecordKey::from_id(IdSpace::TelecomEvents, "call-1"),
            duplicate_reason: DuplicateReason::SameRecordId,
            rating: Some(Box::new(Rating {
                cost_micros: 1_000_000,
                billed_units: 60,
                plan: Name::Static("p"),
                version: Name::Static("v"),
                rate: Name::Static("r"),
                band: None,
                destination: None,
                account: Some(Account {
                    customer_id: "c".into(),
                    payment: Payment::Postpaid,
                    bill_cycle_day: 1,
                }),
                unknown_subscriber: false,
                exact: Some(ExactPrice {
                    numerator: 1_000_000_000,
                    denominator: 1,
                    round: RoundingPoint {
                        rounding: Rounding::HalfUp,
                        decimals: 2,
                    },
                }),
                allowances: Offers::from_iter([AllowanceOffer {
                    id: crate::rating::intern("daily-seconds"),
                    grant: Grant::Units(granted),
                    validity: Validity::Day,
                    priority: 1,
                }]),
                region: None,
                technology: None,
            })),
        }
    }

    #[test]
    fn a_failed_read_of_allowance_use_is_asked_again_not_taken_as_nothing_used() {
        // 50 of the day's 60 seconds were used in an earlier run.
        let mut stored = MemoryState::new("charging");
        let mut earlier = Checkpoint::default();
        earlier.state_of("charging").put(
            &ALLOWANCE_USED,
            format!("+{SUBSCRIBER}|daily-seconds|2024-03-05"),
            b"50".to_vec(),
        );
        stored.apply(&earlier);
        let mut store = FailsOnce {
            failed: false,
            stored,
        };
        let mut charging = Charging::new(ChargingConfig::default());
        let batch = [call(60)];
        let mut context = BatchContext {
            now: i64::MAX,
            state: &mut store,
        };
        let failed = charging.process_batch(&batch, &mut context, &mut Vec::new());
        assert!(failed.is_err(), "the lost connection is reported");
        charging
            .process_batch(&batch, &mut context, &mut Vec::new())
            .expect("the store answers the second time");
        let mut checkpoint = Checkpoint::default();
        charging.checkpoint(&mut checkpoint);
        // 10 free seconds left: 50 of the 60 billed are charged, 50/60 of 1.00.
        let row = &checkpoint.rated_records[0];
        assert_eq!(row.allowance, Some((Name::Static("daily-seconds"), 10)));
        assert_eq!(
            row.cost_micros, 830_000,
            "0.8333… rounded half up to 2 decimals"
        );
    }
}
