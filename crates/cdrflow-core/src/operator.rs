//! The operator interface: how a stateful step of the pipeline meets the runner.
//!
//! Modelled on Arroyo's `ArrowOperator` (`arroyo-operator/src/operator.rs`):
//! an operator has a name, declares the state tables it keeps
//! ([`Operator::tables`]), restores itself from them ([`Operator::on_start`]),
//! processes batches in source order ([`Operator::process_batch`]), hears
//! where event time stands ([`Operator::handle_watermark`]) and, at each
//! checkpoint, hands over its results and the changes to its tables
//! ([`Operator::checkpoint`]). The runner (in the binary) owns the loop for
//! every source; the store keeps every operator's tables in one generic
//! table, keyed by operator, scope and table name, and commits them in the
//! same transaction as the results and the source positions — so a new
//! stateful operator adds no table, no store method and no checkpoint field
//! for its state.
//!
//! Nothing here does I/O: what an operator needs from the store while it
//! runs, it asks through [`StateReader`], which the runner implements.

use std::collections::{BTreeMap, HashMap};

use crate::aggregate::{RowKey, SummaryDelta, Totals};
use crate::analytics::raw_events::RawEvent;
use crate::analytics::rules::Anomaly;
use crate::analytics::windows::{LateEvent, WindowDelta};
use crate::charging::{add_delta, BalanceDeltas, RatedRecord};
use crate::mediated::MediatedRecord;
use crate::mediation::{Counts, Rated, RejectedRecord};
use crate::normalize::{EpochMillis, Msisdn};
use crate::reference::ReferenceChange;

/// A state table an operator declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateTable {
    /// Unique within the operator.
    pub name: &'static str,
    pub kind: StateKind,
}

/// How a state table is written and read (Arroyo's global keyed and
/// expiring time-keyed tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateKind {
    /// One value per key; a write replaces it.
    Keyed,
    /// Values that each cover a span of event-time minutes: appended at
    /// checkpoints, read back by span, dropped once they end before a horizon.
    Spans,
}

/// One change to an operator's table, committed with the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateWrite {
    pub operator: &'static str,
    pub table: &'static str,
    pub change: StateChange,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateChange {
    /// Keyed tables: sets `key` to `value`.
    Put { key: String, value: Vec<u8> },
    /// Span tables: adds a value covering `first_minute..=last_minute`.
    Append {
        first_minute: i32,
        last_minute: i32,
        value: Vec<u8>,
    },
    /// Span tables: drops the values whose span ends before `minute`.
    ExpireBefore { minute: i32 },
}

/// Everything the operators of one scope hand over at a checkpoint, for the
/// store to commit atomically with the source positions it covers.
#[derive(Debug, Default)]
pub struct Checkpoint {
    pub summaries: SummaryDelta,
    pub rejects: Vec<RejectedRecord>,
    pub counts: Counts,
    /// Event times of the accepted records, in order: the runner measures
    /// event time → committed from them once the store has the checkpoint.
    pub event_times: Vec<EpochMillis>,
    /// Window rows to add to the stored ones.
    pub windows: WindowDelta,
    /// Records that arrived after their window closed.
    pub late_events: Vec<LateEvent>,
    /// Anomalies the rules detected.
    pub anomalies: Vec<Anomaly>,
    /// Seed 003's raw events: the accepted records' rows.
    pub raw_events: Vec<RawEvent>,
    /// The accepted records themselves, for the lake (when it is on).
    pub mediated: Vec<MediatedRecord>,
    /// What rating decided for each accepted record.
    pub rated_records: Vec<RatedRecord>,
    /// Prepaid balances to move, by the sum of their records' changes.
    pub balances: BalanceDeltas,
    /// Reference data changes (from change events), in the order they apply.
    pub reference: Vec<ReferenceChange>,
    /// Changes to the operators' state tables, in the order they apply.
    pub state: Vec<StateWrite>,
    /// Files the lake wrote for this checkpoint (filled in by the committer,
    /// not by operators): the commit names them in its manifest, so that
    /// they count exactly when the rest does.
    pub lake_files: Vec<LakeFile>,
}

/// Rows of one checkpoint joined to another's: taken whole when there are
/// none yet, so a checkpoint's quarter of a million rows are not copied.
fn join_rows<T>(rows: &mut Vec<T>, more: Vec<T>) {
    if rows.is_empty() {
        *rows = more;
    } else {
        rows.extend(more);
    }
}

/// An operator's pending rows handed to the checkpoint: moved whole when
/// it has none yet (not copied), and `pending` left with room for as many
/// again, so the next checkpoint's rows are not copied while they grow
/// either. (Copying rated rows into the checkpoint and regrowing the
/// pending ones took a quarter of the charging operator's time on the
/// rater bench.)
pub fn hand_over<T>(pending: &mut Vec<T>, rows: &mut Vec<T>) {
    let count = pending.len();
    if rows.is_empty() {
        std::mem::swap(pending, rows);
    } else {
        rows.append(pending);
    }
    pending.reserve(count);
}

/// A lake file, as the store's manifest (`lake_files`) names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LakeFile {
    /// `mediated` or `rated`.
    pub dataset: &'static str,
    /// Where it is under the lake's root, `/`-separated
    /// (`mediated/kind=voice/date=2024-03-01/part-….parquet`).
    pub path: String,
    /// The partition's part of the path (`kind=voice/date=2024-03-01`).
    pub partition: String,
    pub rows: u64,
    pub bytes: u64,
}

impl Checkpoint {
    pub fn is_empty(&self) -> bool {
        self.counts.records_in == 0
    }

    /// Adds another checkpoint's results and state changes to this one's.
    pub fn absorb(&mut self, other: Checkpoint) {
        if self.summaries.is_empty() {
            self.summaries = other.summaries;
        } else {
            self.summaries.merge(&other.summaries);
        }
        join_rows(&mut self.rejects, other.rejects);
        self.counts.add(&other.counts);
        join_rows(&mut self.event_times, other.event_times);
        if self.windows.is_empty() {
            self.windows = other.windows;
        } else {
            self.windows.merge(&other.windows);
        }
        join_rows(&mut self.late_events, other.late_events);
        join_rows(&mut self.anomalies, other.anomalies);
        join_rows(&mut self.raw_events, other.raw_events);
        join_rows(&mut self.mediated, other.mediated);
        join_rows(&mut self.rated_records, other.rated_records);
        for (msisdn, delta) in other.balances {
            add_delta(&mut self.balances, msisdn, delta);
        }
        join_rows(&mut self.reference, other.reference);
        self.state.extend(other.state);
        self.lake_files.extend(other.lake_files);
    }

    /// Where `operator` writes its state changes.
    pub fn state_of(&mut self, operator: &'static str) -> StateWriter<'_> {
        StateWriter {
            operator,
            writes: &mut self.state,
        }
    }
}

/// Appends one operator's state changes to a checkpoint.
pub struct StateWriter<'c> {
    operator: &'static str,
    writes: &'c mut Vec<StateWrite>,
}

impl StateWriter<'_> {
    pub fn put(&mut self, table: &StateTable, key: impl Into<String>, value: Vec<u8>) {
        debug_assert_eq!(table.kind, StateKind::Keyed, "{} is not keyed", table.name);
        self.push(
            table,
            StateChange::Put {
                key: key.into(),
                value,
            },
        );
    }

    pub fn append(
        &mut self,
        table: &StateTable,
        first_minute: i32,
        last_minute: i32,
        value: Vec<u8>,
    ) {
        debug_assert_eq!(table.kind, StateKind::Spans, "{} has no spans", table.name);
        self.push(
            table,
            StateChange::Append {
                first_minute,
                last_minute,
                value,
            },
        );
    }

    pub fn expire_before(&mut self, table: &StateTable, minute: i32) {
        debug_assert_eq!(table.kind, StateKind::Spans, "{} has no spans", table.name);
        self.push(table, StateChange::ExpireBefore { minute });
    }

    fn push(&mut self, table: &StateTable, change: StateChange) {
        self.writes.push(StateWrite {
            operator: self.operator,
            table: table.name,
            change,
        });
    }
}

/// A time kept in a keyed table, as decimal text: readable in the store.
pub fn encode_millis(at: EpochMillis) -> Vec<u8> {
    at.to_string().into_bytes()
}

/// The inverse of [`encode_millis`]; `what` names the value in the error.
pub fn decode_millis(value: &[u8], what: &str) -> Result<EpochMillis, ReadError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            ReadError(format!(
                "the stored {what} {:?} is not a number of milliseconds; the store is damaged",
                String::from_utf8_lossy(value)
            ))
        })
}

/// A question to the store that could not be answered (the runner has
/// already retried what was worth retrying).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

/// What an operator may read from the store while it runs: its own tables
/// in its scope as committed so far — including every checkpoint already
/// handed over, which the runner waits for — and stored summary totals.
pub trait StateReader {
    /// The value under `key` in a keyed table.
    fn value(&mut self, table: &StateTable, key: &str) -> Result<Option<Vec<u8>>, ReadError>;

    /// Every value of a span table whose span overlaps `first_minute..=last_minute`.
    fn spans(
        &mut self,
        table: &StateTable,
        first_minute: i32,
        last_minute: i32,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<(), ReadError>;

    /// The stored totals of summary rows, in the order asked (`None`: no row yet).
    fn summary_totals(&mut self, rows: &[RowKey]) -> Result<Vec<Option<Totals>>, ReadError>;

    /// The values under `keys` in a keyed table, in the order asked: one
    /// question for many keys.
    fn values_of(
        &mut self,
        table: &StateTable,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, ReadError> {
        keys.iter().map(|key| self.value(table, key)).collect()
    }

    /// The committed prepaid balances of `msisdns`, in the order asked
    /// (`None`: no balance yet), in micro-units.
    fn balances(&mut self, msisdns: &[Msisdn]) -> Result<Vec<Option<i64>>, ReadError> {
        let _ = msisdns;
        Err(ReadError("this reader cannot read balances".into()))
    }

    /// Every key and value of a keyed table, for an operator that restores
    /// all of it at once (readers that serve only other tables refuse).
    fn values(
        &mut self,
        table: &StateTable,
        _visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Result<(), ReadError> {
        Err(ReadError(format!(
            "this reader cannot list `{}`",
            table.name
        )))
    }
}

/// What a batch is processed with.
pub struct BatchContext<'s> {
    /// The wall clock when the batch was read: only for refusing event
    /// times from the future, never for results.
    pub now: EpochMillis,
    pub state: &'s mut dyn StateReader,
}

/// A stateful step of the pipeline. See the module documentation.
pub trait Operator {
    type Input<'a>;
    /// What it hands the next operator (`()` for the last).
    type Output<'a>;

    /// Stable: the key of its state in every store.
    fn name(&self) -> &'static str;

    /// The state tables it keeps.
    fn tables(&self) -> &'static [StateTable] {
        &[]
    }

    /// Restores the operator from its tables, before the first batch.
    fn on_start(&mut self, _state: &mut dyn StateReader) -> Result<(), ReadError> {
        Ok(())
    }

    /// Processes one batch, in source order, pushing what the next operator
    /// takes to `out`.
    fn process_batch<'a>(
        &mut self,
        batch: &[Self::Input<'a>],
        context: &mut BatchContext<'_>,
        out: &mut Vec<Self::Output<'a>>,
    ) -> Result<(), ReadError>;

    /// How far event time has come, for operators that see it first (the
    /// mediator); the runner hands it to every operator's `handle_watermark`.
    fn watermark(&self) -> Option<EpochMillis> {
        None
    }

    /// Event time has reached `watermark`: age out state, close windows.
    fn handle_watermark(&mut self, _watermark: EpochMillis) {}

    /// The input ended (a file read to its end): nothing more will come.
    fn handle_end_of_input(&mut self) {}

    /// Hands over the results and state changes since the last checkpoint.
    fn checkpoint(&mut self, out: &mut Checkpoint);
}

/// One operator's state in one scope, and the summary totals, kept in
/// memory the way a store keeps them: for tests and tools that run an
/// operator without a store.
#[derive(Debug)]
pub struct MemoryState {
    operator: &'static str,
    keyed: BTreeMap<(&'static str, String), Vec<u8>>,
    spans: Vec<(&'static str, i32, i32, Vec<u8>)>,
    totals: HashMap<RowKey, Totals>,
    balances: HashMap<Msisdn, i64>,
}

impl MemoryState {
    pub fn new(operator: &'static str) -> MemoryState {
        MemoryState {
            operator,
            keyed: BTreeMap::new(),
            spans: Vec::new(),
            totals: HashMap::new(),
            balances: HashMap::new(),
        }
    }

    /// Applies a checkpoint as a store's commit would.
    pub fn apply(&mut self, checkpoint: &Checkpoint) {
        for row in checkpoint.summaries.rows() {
            let key = RowKey {
                kind: row.kind,
                msisdn: row.msisdn,
                day: row.day,
                service_type: row.service_type.to_string(),
            };
            let total = self.totals.entry(key).or_default();
            *total = total.checked_add(row.totals).unwrap_or(*total);
        }
        for (msisdn, delta) in &checkpoint.balances {
            *self.balances.entry(*msisdn).or_default() += delta.micros;
        }
        for write in checkpoint
            .state
            .iter()
            .filter(|w| w.operator == self.operator)
        {
            match &write.change {
                StateChange::Put { key, value } => {
                    self.keyed.insert((write.table, key.clone()), value.clone());
                }
                StateChange::Append {
                    first_minute,
                    last_minute,
                    value,
                } => self
                    .spans
                    .push((write.table, *first_minute, *last_minute, value.clone())),
                StateChange::ExpireBefore { minute } => self
                    .spans
                    .retain(|(table, _, last, _)| *table != write.table || last >= minute),
            }
        }
    }
}

impl StateReader for MemoryState {
    fn value(&mut self, table: &StateTable, key: &str) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self.keyed.get(&(table.name, key.to_string())).cloned())
    }

    fn spans(
        &mut self,
        table: &StateTable,
        first_minute: i32,
        last_minute: i32,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<(), ReadError> {
        for (name, first, last, value) in &self.spans {
            if *name == table.name && *last >= first_minute && *first <= last_minute {
                visit(value);
            }
        }
        Ok(())
    }

    fn summary_totals(&mut self, rows: &[RowKey]) -> Result<Vec<Option<Totals>>, ReadError> {
        Ok(rows
            .iter()
            .map(|row| self.totals.get(row).copied())
            .collect())
    }

    fn balances(&mut self, msisdns: &[Msisdn]) -> Result<Vec<Option<i64>>, ReadError> {
        Ok(msisdns
            .iter()
            .map(|m| self.balances.get(m).copied())
            .collect())
    }

    fn values(
        &mut self,
        table: &StateTable,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Result<(), ReadError> {
        for ((name, key), value) in &self.keyed {
            if *name == table.name {
                visit(key, value);
            }
        }
        Ok(())
    }
}

/// A row an accepted record becomes for a checkpoint (seed 003's raw
/// events, the lake's mediated records): what [`Rows`] collects.
pub trait RowOf: Sized {
    /// The collecting operator's name.
    const OPERATOR: &'static str;

    fn of(record: &Rated<'_>) -> Self;

    /// Where a checkpoint carries these rows.
    fn rows_in(checkpoint: &mut Checkpoint) -> &mut Vec<Self>;
}

/// The stateless operator that keeps one row per accepted record until the
/// next checkpoint — or nothing, when no one keeps the rows.
#[derive(Debug)]
pub struct Rows<R> {
    keep: bool,
    pending: Vec<R>,
}

impl<R> Rows<R> {
    pub fn new(keep: bool) -> Rows<R> {
        Rows {
            keep,
            pending: Vec::new(),
        }
    }
}

impl<R: RowOf> Operator for Rows<R> {
    type Input<'a> = Rated<'a>;
    type Output<'a> = ();

    fn name(&self) -> &'static str {
        R::OPERATOR
    }

    fn process_batch<'a>(
        &mut self,
        batch: &[Rated<'a>],
        _context: &mut BatchContext<'_>,
        _out: &mut Vec<()>,
    ) -> Result<(), ReadError> {
        if self.keep {
            self.pending.extend(batch.iter().map(R::of));
        }
        Ok(())
    }

    fn checkpoint(&mut self, out: &mut Checkpoint) {
        hand_over(&mut self.pending, R::rows_in(out));
    }
}
