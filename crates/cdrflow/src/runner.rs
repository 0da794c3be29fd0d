//! The one runner between every source and the store.
//!
//! Sources read (files, Kafka partitions), track their positions and decide
//! when a checkpoint is due; the runner does the rest the same way for all
//! of them: it restores each scope's operators from their state tables,
//! hands them batches and the watermark, answers their questions for the
//! store after the commits in flight, takes their checkpoints and gives
//! them to the [`Committer`] with the positions they cover.
//!
//! A scope (`files`, or `kafka:TOPIC:PARTITION`) is the unit whose state
//! travels together: whoever owns a partition next restores exactly it.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Result;
use cdrflow_core::aggregate::{RowKey, Totals};
use cdrflow_core::analytics::raw_events::{RawEvents, RawEventsConfig};
use cdrflow_core::analytics::rules::{Placed, Rules, RulesConfig};
use cdrflow_core::analytics::windows::{WindowConfig, Windows};
use cdrflow_core::cdc::{ChangeConfig, ChangeMessage, Mapping, ReferenceChanges};
use cdrflow_core::charging::{Charging, ChargingConfig};
use cdrflow_core::mediated::Mediated;
use cdrflow_core::mediation::{MediationConfig, Mediator, RawRecord};
use cdrflow_core::normalize::{EpochMillis, Msisdn};
use cdrflow_core::operator::{
    BatchContext, Checkpoint, Operator, ReadError, StateReader, StateTable,
};
use cdrflow_core::rating::Rater;
use cdrflow_store::{Cursor, StateAt, Store};

use crate::committer::{with_retry, CommitJob, Committer, JobPart};
use crate::events::{InternalEvent, LogicalMessageIgnored};
use crate::telemetry::IngestTimes;

/// Every operator's settings.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub mediation: MediationConfig,
    pub windows: WindowConfig,
    pub rules: RulesConfig,
    pub raw_events: RawEventsConfig,
    /// Keep the accepted records themselves (for the lake).
    pub keep_mediated: bool,
    /// Its currency is the rater's, filled in when a scope starts.
    pub charging: ChargingConfig,
    /// Change events (Debezium) on the topics it matches, when read.
    pub changes: Option<ChangeSetup>,
}

/// Which topics carry change events, and what they feed.
#[derive(Clone, Debug)]
pub struct ChangeSetup {
    pub topics: regex::Regex,
    pub mapping: Arc<Mapping>,
    /// For national numbers in the source tables.
    pub home: cdrflow_core::normalize::CountryCode,
}

/// The operators of one scope, in data-flow order: the mediator's accepted
/// records go on to the raw events and the windows, and with their
/// placement to the rules.
pub struct ScopeOperators<'r> {
    pub scope: String,
    mediator: Mediator<'r>,
    mediated: Mediated,
    raw_events: RawEvents,
    charging: Charging,
    windows: Windows,
    rules: Rules,
    /// Set for a partition of a change-event topic: its messages go here
    /// and nowhere else.
    changes: Option<ReferenceChanges>,
}

impl ScopeOperators<'_> {
    /// Whether the scope reads change events rather than records.
    pub fn reads_changes(&self) -> bool {
        self.changes.is_some()
    }
}

pub struct Runner<'r> {
    committer: Committer,
    config: OperatorConfig,
    rater: &'r dyn Rater,
    stopping: Arc<AtomicBool>,
    /// Records processed since the last job was submitted.
    pending_records: u64,
    /// When they were read, for the ingest → committed latency.
    ingested: IngestTimes,
}

impl<'r> Runner<'r> {
    pub fn new(
        committer: Committer,
        config: OperatorConfig,
        rater: &'r dyn Rater,
        stopping: Arc<AtomicBool>,
    ) -> Runner<'r> {
        Runner {
            committer,
            config,
            rater,
            stopping,
            pending_records: 0,
            ingested: IngestTimes::new(),
        }
    }

    /// Restores a scope's operators from what `store` committed last.
    pub fn start_scope(&self, scope: String, store: &mut dyn Store) -> Result<ScopeOperators<'r>> {
        start_scope(scope, &self.config, self.rater, store, &self.stopping)
    }

    /// [`Runner::start_scope`] for a partition of `topic`: a change-event
    /// topic's scope applies its changes, any other's reads records.
    pub fn start_topic_scope(
        &self,
        scope: String,
        topic: &str,
        store: &mut dyn Store,
    ) -> Result<ScopeOperators<'r>> {
        let Some(setup) = self
            .config
            .changes
            .as_ref()
            .filter(|c| c.topics.is_match(topic))
        else {
            return self.start_scope(scope, store);
        };
        let mut operators = new_operators(scope, &self.config, self.rater);
        operators.changes = Some(ReferenceChanges::new(
            setup.mapping.clone(),
            ChangeConfig {
                home: setup.home,
                currency: self.rater.currency().into(),
                low_balance_micros: self.config.charging.low_balance_micros,
            },
        ));
        Ok(operators)
    }

    /// Processes one batch of change events of a scope started by
    /// [`Runner::start_topic_scope`] for a change-event topic.
    pub fn process_changes(
        &mut self,
        operators: &mut ScopeOperators<'r>,
        batch: &[ChangeMessage<'_>],
        now: EpochMillis,
    ) -> Result<()> {
        let state_of = after_commits(&self.committer, &operators.scope, &self.stopping);
        let changes = operators
            .changes
            .as_mut()
            .expect("a change-event scope has its operator");
        let mut messages = Vec::new();
        feed(changes, batch, now, &state_of, &mut messages)?;
        for message in messages {
            LogicalMessageIgnored { message }.emit();
        }
        self.pending_records += batch.len() as u64;
        self.ingested.push((now, batch.len() as u64));
        Ok(())
    }

    /// Processes one batch of a scope, in source order, then hands every
    /// operator the watermark. `now` is the wall clock when it was read.
    pub fn process(
        &mut self,
        operators: &mut ScopeOperators<'r>,
        batch: &[RawRecord<'_>],
        now: EpochMillis,
    ) -> Result<()> {
        let state_of = after_commits(&self.committer, &operators.scope, &self.stopping);
        let mediator = &mut operators.mediator;
        let mut accepted = Vec::with_capacity(batch.len());
        feed(mediator, batch, now, &state_of, &mut accepted)?;
        feed(
            &mut operators.mediated,
            &accepted,
            now,
            &state_of,
            &mut Vec::new(),
        )?;
        feed(
            &mut operators.raw_events,
            &accepted,
            now,
            &state_of,
            &mut Vec::new(),
        )?;
        feed(
            &mut operators.charging,
            &accepted,
            now,
            &state_of,
            &mut Vec::new(),
        )?;
        let windows = &mut operators.windows;
        let mut placements = Vec::with_capacity(accepted.len());
        feed(windows, &accepted, now, &state_of, &mut placements)?;
        let placed = Placed::all(&accepted, &placements);
        let rules = &mut operators.rules;
        feed(rules, &placed, now, &state_of, &mut Vec::new())?;
        if let Some(watermark) = mediator.watermark() {
            mediator.handle_watermark(watermark);
            windows.handle_watermark(watermark);
            rules.handle_watermark(watermark);
        }
        self.pending_records += batch.len() as u64;
        self.ingested.push((now, batch.len() as u64));
        Ok(())
    }

    /// A scope's checkpoint as a part of the next job, with the positions it covers.
    pub fn checkpoint(
        &self,
        operators: &mut ScopeOperators<'r>,
        cursors: Vec<Cursor>,
        produced_at: Vec<i64>,
    ) -> JobPart {
        let mut checkpoint = Checkpoint::default();
        operators.mediator.checkpoint(&mut checkpoint);
        operators.mediated.checkpoint(&mut checkpoint);
        operators.raw_events.checkpoint(&mut checkpoint);
        operators.charging.checkpoint(&mut checkpoint);
        operators.windows.checkpoint(&mut checkpoint);
        operators.rules.checkpoint(&mut checkpoint);
        if let Some(changes) = &mut operators.changes {
            changes.checkpoint(&mut checkpoint);
            // Records rated from now on see these changes. Every record
            // rated before is in this job or an earlier one, so the commit
            // can tell which changes came after records they should have
            // affected (`late_reference_changes`).
            if let Some(live) = self.rater.live_reference() {
                live.apply(&checkpoint.reference);
            }
        }
        JobPart {
            scope: operators.scope.clone(),
            checkpoint,
            cursors,
            produced_at,
        }
    }

    /// A scope's input ended (a file read to its end): its next checkpoint
    /// says so.
    pub fn end_of_input(&self, operators: &mut ScopeOperators<'r>) {
        operators.mediator.handle_end_of_input();
        operators.windows.handle_end_of_input();
        operators.rules.handle_end_of_input();
    }

    /// Hands parts to the committer, to be written in one transaction.
    pub fn submit(&mut self, parts: Vec<JobPart>) -> Result<()> {
        self.pending_records = 0;
        let ingested = std::mem::take(&mut self.ingested);
        if parts.is_empty() {
            return Ok(());
        }
        self.committer.submit(CommitJob { parts, ingested })
    }

    pub fn pending_records(&self) -> u64 {
        self.pending_records
    }

    pub fn committer(&mut self) -> &mut Committer {
        &mut self.committer
    }
}

/// Each operator's tables in `scope`, read through the committer after the
/// commits in flight.
fn after_commits<'s>(
    committer: &'s Committer,
    scope: &'s str,
    stopping: &'s Arc<AtomicBool>,
) -> impl Fn(&'static str) -> StoreState<'s> {
    move |operator| StoreState {
        access: Access::AfterCommits(committer),
        operator,
        scope,
        stopping,
    }
}

/// Hands one batch to `operator`, its state read through `state_of`.
fn feed<'a, 's, O: Operator>(
    operator: &mut O,
    input: &[O::Input<'a>],
    now: EpochMillis,
    state_of: &dyn Fn(&'static str) -> StoreState<'s>,
    out: &mut Vec<O::Output<'a>>,
) -> Result<()> {
    let mut state = state_of(operator.name());
    let mut context = BatchContext {
        now,
        state: &mut state,
    };
    Ok(operator.process_batch(input, &mut context, out)?)
}

/// [`Runner::start_scope`], for callers that restore a scope before the
/// committer exists (it takes the store they restore from).
pub fn start_scope<'r>(
    scope: String,
    config: &OperatorConfig,
    rater: &'r dyn Rater,
    store: &mut dyn Store,
    stopping: &Arc<AtomicBool>,
) -> Result<ScopeOperators<'r>> {
    let mut operators = new_operators(scope, config, rater);
    let scope = &operators.scope;
    restore(&mut operators.mediator, scope, store, stopping)?;
    restore(&mut operators.windows, scope, store, stopping)?;
    restore(&mut operators.rules, scope, store, stopping)?;
    Ok(operators)
}

/// A scope's operators as new, before any restores its state.
fn new_operators<'r>(
    scope: String,
    config: &OperatorConfig,
    rater: &'r dyn Rater,
) -> ScopeOperators<'r> {
    let home = config.mediation.decode.default_country_code;
    ScopeOperators {
        scope,
        mediator: Mediator::new(config.mediation, rater),
        mediated: Mediated::new(config.keep_mediated),
        raw_events: RawEvents::new(config.raw_events.keep),
        charging: Charging::new(ChargingConfig {
            currency: rater.currency().into(),
            ..config.charging.clone()
        }),
        windows: Windows::new(config.windows),
        rules: Rules::new(config.rules.clone(), config.windows.size_ms, home),
        changes: None,
    }
}

fn restore(
    operator: &mut impl Operator,
    scope: &str,
    store: &mut dyn Store,
    stopping: &Arc<AtomicBool>,
) -> Result<()> {
    let mut state = StoreState {
        access: Access::Direct(store),
        operator: operator.name(),
        scope,
        stopping,
    };
    Ok(operator.on_start(&mut state)?)
}

/// One operator's tables in one scope, read from the store with retries.
struct StoreState<'a> {
    access: Access<'a>,
    operator: &'static str,
    scope: &'a str,
    stopping: &'a Arc<AtomicBool>,
}

enum Access<'a> {
    /// A store this thread owns (restoring a scope).
    Direct(&'a mut dyn Store),
    /// The committer's store, after the jobs handed over so far: answers
    /// include every checkpoint already taken, committed or on its way.
    AfterCommits(&'a Committer),
}

impl StoreState<'_> {
    fn ask<T: Send + 'static>(
        &mut self,
        what: &'static str,
        mut question: impl FnMut(&mut dyn Store) -> cdrflow_store::Result<T> + Send + 'static,
    ) -> Result<T, ReadError> {
        let answer = match &mut self.access {
            Access::Direct(store) => {
                with_retry(self.stopping, what, || question(&mut **store)).map_err(Into::into)
            }
            Access::AfterCommits(committer) => {
                let stopping = self.stopping.clone();
                committer.ask(move |store| with_retry(&stopping, what, || question(store)))
            }
        };
        answer.map_err(|e: anyhow::Error| ReadError(format!("{what}: {e:#}")))
    }

    fn at(&self, table: &StateTable) -> (String, &'static str, &'static str) {
        (self.scope.to_string(), self.operator, table.name)
    }
}

impl StateReader for StoreState<'_> {
    fn value(&mut self, table: &StateTable, key: &str) -> Result<Option<Vec<u8>>, ReadError> {
        let ((scope, operator, table), key) = (self.at(table), key.to_string());
        self.ask("reading operator state from the store", move |store| {
            let at = StateAt {
                operator,
                scope: &scope,
                table,
            };
            store.state_value(at, &key)
        })
    }

    fn spans(
        &mut self,
        table: &StateTable,
        first_minute: i32,
        last_minute: i32,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<(), ReadError> {
        let (scope, operator, table) = self.at(table);
        let values = self.ask("reading operator state from the store", move |store| {
            let at = StateAt {
                operator,
                scope: &scope,
                table,
            };
            let mut values = Vec::new();
            store.state_spans(at, first_minute, last_minute, &mut |v| {
                values.push(v.to_vec())
            })?;
            Ok(values)
        })?;
        values.iter().for_each(|v| visit(v));
        Ok(())
    }

    fn values(
        &mut self,
        table: &StateTable,
        visit: &mut dyn FnMut(&str, &[u8]),
    ) -> Result<(), ReadError> {
        let (scope, operator, table) = self.at(table);
        let values = self.ask("reading operator state from the store", move |store| {
            let at = StateAt {
                operator,
                scope: &scope,
                table,
            };
            let mut values = Vec::new();
            store.state_values(at, &mut |k, v| values.push((k.to_string(), v.to_vec())))?;
            Ok(values)
        })?;
        values.iter().for_each(|(k, v)| visit(k, v));
        Ok(())
    }

    fn summary_totals(&mut self, rows: &[RowKey]) -> Result<Vec<Option<Totals>>, ReadError> {
        let rows = rows.to_vec();
        self.ask("reading stored totals", move |store| {
            store.stored_totals(&rows)
        })
    }

    fn values_of(
        &mut self,
        table: &StateTable,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, ReadError> {
        let ((scope, operator, table), keys) = (self.at(table), keys.to_vec());
        self.ask("reading operator state from the store", move |store| {
            let at = StateAt {
                operator,
                scope: &scope,
                table,
            };
            store.state_values_of(at, &keys)
        })
    }

    fn balances(&mut self, msisdns: &[Msisdn]) -> Result<Vec<Option<i64>>, ReadError> {
        let msisdns = msisdns.to_vec();
        self.ask("reading prepaid balances", move |store| {
            store.stored_balances(&msisdns)
        })
    }
}
