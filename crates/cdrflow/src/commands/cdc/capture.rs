//! `cdrflow cdc capture`: the loop — snapshot once, then read the slot,
//! produce, wait for Kafka's acknowledgements, advance the slot.
//!
//! Delivery is at least once by construction (the slot moves only after
//! Kafka has everything before the new position), and the effect exactly
//! once with cdrflow's consumer, which applies a change per key only when
//! it is newer by WAL position and place in the transaction. The one thing
//! that cannot be re-derived after a crash, which streamed transactions the
//! snapshot already held, is kept in a state file written once the
//! snapshot is acknowledged.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use cdrflow_core::cdc::capture::{
    format_lsn, parse_lsn, Capture, Fed, Origin, Place, Record, SnapshotVisibility, TableEvents,
};
use cdrflow_core::cdc::Op;
use clap::ValueEnum;
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use serde::{Deserialize, Serialize};

use super::source::Source;
use crate::config::Settings;
use crate::kafka::{
    self, ensure_topics, producer_with, wait_until_reachable, Cluster, DeliveryFailures, KafkaArgs,
};

#[derive(clap::Args, Debug)]
pub struct CaptureArgs {
    /// The operational database: postgres://USER@HOST/DB[?sslmode=verify-full&sslrootcert=ca.pem]
    #[arg(
        long,
        env = "CDRFLOW_CDC_SOURCE",
        value_name = "URL",
        hide_env_values = true
    )]
    source: String,

    /// Topic prefix (Debezium's topic.prefix): events go to PREFIX.SCHEMA.TABLE
    #[arg(long, env = "CDRFLOW_CDC_PREFIX", default_value = "dbserver1")]
    prefix: String,

    /// The replication slot that keeps the capture's position
    #[arg(long, env = "CDRFLOW_CDC_SLOT", default_value = "cdrflow")]
    slot: String,

    /// The publication naming the captured tables
    #[arg(long, env = "CDRFLOW_CDC_PUBLICATION", default_value = "cdrflow")]
    publication: String,

    /// Tables to create the publication for, when it does not exist
    #[arg(long, value_delimiter = ',', value_name = "SCHEMA.TABLE,...")]
    tables: Vec<String>,

    /// initial: read every table once, then stream; never: stream only
    #[arg(long, value_enum, default_value = "initial")]
    snapshot: SnapshotMode,

    /// Also send each transaction's BEGIN and END (with its event counts) to PREFIX.transaction
    #[arg(long)]
    transaction_topic: bool,

    /// Partitions of the topics the capture creates
    #[arg(long, default_value_t = 1, value_name = "N")]
    partitions: i32,

    /// How long to wait when the slot holds nothing new
    #[arg(long, default_value_t = 20, value_name = "MS")]
    poll_interval_ms: u64,

    /// Changes read from the slot per round (a transaction is always read whole)
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    batch_changes: i32,

    /// What the capture keeps between runs [default: DATA_DIR/capture-SLOT.json]
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,

    #[command(flatten)]
    kafka: KafkaArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum SnapshotMode {
    Initial,
    Never,
}

/// What a capture remembers between runs.
#[derive(Serialize, Deserialize, Debug)]
struct State {
    slot: String,
    database: String,
    /// The snapshot's visibility (`pg_snapshot` text) and the WAL position
    /// past which it no longer matters; absent with `--snapshot never`.
    snapshot: Option<(String, String)>,
}

impl State {
    fn read(path: &Path) -> Result<Option<State>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{} is not a capture state file: move it away to start over with a new snapshot", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Written whole or not at all (a crash leaves the old file or none).
    fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let partial = path.with_extension("json.partial");
        let file = std::fs::File::create(&partial)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        serde_json::to_writer_pretty(&file, self)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    fn visibility(&self) -> Result<Option<SnapshotVisibility>> {
        let Some((seen, until)) = &self.snapshot else {
            return Ok(None);
        };
        let until = parse_lsn(until).with_context(|| format!("`{until}` is not an LSN"))?;
        SnapshotVisibility::parse(seen, until)
            .map(Some)
            .map_err(anyhow::Error::msg)
    }
}

/// The Kafka side: topics made as they appear, records queued, then
/// confirmed all at once.
struct Sink {
    cluster: Cluster,
    producer: ThreadedProducer<DeliveryFailures>,
    failures: Arc<AtomicU64>,
    topics: HashSet<Arc<str>>,
    partitions: i32,
}

impl Sink {
    /// Creates the topics not made yet (consumers subscribed by pattern see
    /// only topics that exist).
    fn ensure<'a>(&mut self, topics: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let new: Vec<&str> = topics
            .into_iter()
            .filter(|t| !self.topics.contains(*t))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !new.is_empty() {
            ensure_topics(&self.cluster, &new, self.partitions)?;
            self.topics.extend(new.into_iter().map(Arc::from));
        }
        Ok(())
    }

    fn send(&mut self, records: &[Record]) -> Result<()> {
        self.ensure(records.iter().map(|r| &*r.topic))?;
        for record in records {
            let mut message = BaseRecord::to(&record.topic);
            if let Some(key) = &record.key {
                message = message.key(key.as_bytes());
            }
            if let Some(value) = &record.value {
                message = message.payload(value.as_bytes());
            }
            kafka::send(&self.producer, message)?;
        }
        Ok(())
    }

    /// Waits for every queued record's acknowledgement; an error when any failed.
    fn confirm(&self) -> Result<()> {
        kafka::flush(&self.producer)?;
        let failed = self.failures.swap(0, Ordering::Relaxed);
        if failed > 0 {
            bail!("Kafka did not take {failed} change events; the slot stays where it was, and the next run sends them again");
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn run(settings: &Settings, args: CaptureArgs) -> Result<()> {
    let stopping = crate::commands::stop_on_signal("confirming what Kafka has, then stopping")?;
    let cluster = args.kafka.cluster(settings)?;
    if !wait_until_reachable(&cluster, &stopping, None)? {
        return Ok(());
    }
    let failures = Arc::new(AtomicU64::new(0));
    let mut sink = Sink {
        producer: producer_with(
            &cluster,
            "lz4",
            DeliveryFailures::new("cdc capture", failures.clone()),
        )?,
        cluster,
        failures,
        topics: HashSet::new(),
        partitions: args.partitions,
    };
    let mut source = Source::connect(&args.source, &args.slot, &args.publication)?;
    let origin = Origin {
        prefix: args.prefix.clone(),
        database: source.database.clone(),
        transaction_topic: args.transaction_topic,
    };
    let tables = source.published_tables(&args.tables)?;
    let mut topics: Vec<String> = tables
        .iter()
        .map(|(schema, table)| origin.topic(schema, table))
        .collect();
    if args.transaction_topic {
        topics.push(origin.transaction_topic_name());
    }
    sink.ensure(topics.iter().map(String::as_str))?;
    let state_path = args.state.clone().unwrap_or_else(|| {
        settings
            .data_dir
            .join(format!("capture-{}.json", args.slot))
    });
    let slot_exists = source.slot_exists()?;
    let state = match State::read(&state_path)? {
        Some(state) if state.slot == args.slot && state.database == source.database => {
            if slot_exists {
                Some(state)
            } else {
                tracing::warn!(
                    "{} names the slot `{}`, which no longer exists: changes since it went are lost to it, so the capture starts over with a new snapshot",
                    state_path.display(),
                    args.slot
                );
                None
            }
        }
        Some(state) => bail!(
            "{} is the state of slot `{}` on `{}`, not of `{}` on `{}`: pass --state another file",
            state_path.display(),
            state.slot,
            state.database,
            args.slot,
            source.database
        ),
        None => None,
    };
    let state = match state {
        Some(state) => state,
        None => {
            // A slot without a state file is a snapshot that never finished.
            if slot_exists {
                tracing::info!(
                    "the slot `{}` has no finished snapshot: dropping it to start again",
                    args.slot
                );
                source.drop_slot()?;
            }
            let start = source.create_slot()?;
            let snapshot = match args.snapshot {
                SnapshotMode::Initial => {
                    let visibility =
                        snapshot(&mut source, &origin, &tables, start, &mut sink, &stopping)?;
                    let Some(visibility) = visibility else {
                        return Ok(());
                    };
                    let (seen, until) = visibility.to_text();
                    Some((seen, format_lsn(until)))
                }
                SnapshotMode::Never => None,
            };
            let state = State {
                slot: args.slot.clone(),
                database: source.database.clone(),
                snapshot,
            };
            state.write(&state_path)?;
            state
        }
    };
    stream(
        &mut source,
        Capture::new(origin, state.visibility()?),
        &mut sink,
        &args,
        &stopping,
    )
}

/// Sends every published table's rows; `None` when stopped first (the
/// next run snapshots again).
fn snapshot(
    source: &mut Source,
    origin: &Origin,
    tables: &[(String, String)],
    start: u64,
    sink: &mut Sink,
    stopping: &AtomicBool,
) -> Result<Option<SnapshotVisibility>> {
    let started = Instant::now();
    let read_at = now_ms();
    let events: Vec<TableEvents> = tables
        .iter()
        .map(|(schema, table)| Ok(TableEvents::new(origin, source.relation(schema, table)?)))
        .collect::<Result<_>>()?;
    let mut counts = vec![0u64; events.len()];
    let mut problems = Vec::new();
    // One row is held back so that the final one can say `last`.
    let mut held: Option<(usize, cdrflow_core::cdc::capture::pgoutput::Tuple)> = None;
    let mut last_said = Instant::now();
    let record = |table: usize, row: &_, snapshot: &'static str, problems: &mut Vec<String>| {
        let events = &events[table];
        let place = Place {
            lsn: start,
            committed_at_ms: read_at,
            snapshot,
            transaction: None,
        };
        Record {
            topic: events.topic().clone(),
            key: events.key(row, problems),
            value: Some(events.change(Op::Read, None, Some(row), &place, now_ms(), problems)),
        }
    };
    let visibility = source.snapshot(
        &events
            .iter()
            .map(|e| e.relation().clone())
            .collect::<Vec<_>>(),
        |table, rows| {
            if stopping.load(Ordering::Relaxed) {
                bail!("stopped during the snapshot");
            }
            let mut records = Vec::with_capacity(rows.len());
            for row in rows {
                if let Some((t, previous)) = held.replace((table, row)) {
                    records.push(record(t, &previous, "true", &mut problems));
                }
                counts[table] += 1;
            }
            sink.send(&records)?;
            warn_each(&mut problems);
            if last_said.elapsed() >= Duration::from_secs(10) {
                tracing::info!(
                    "snapshot: {} rows read in {} s",
                    counts.iter().sum::<u64>(),
                    started.elapsed().as_secs()
                );
                last_said = Instant::now();
            }
            Ok(())
        },
    );
    let visibility = match visibility {
        Err(_) if stopping.load(Ordering::Relaxed) => {
            tracing::info!("stopped during the snapshot: the next run starts it again");
            return Ok(None);
        }
        other => other?,
    };
    if let Some((t, row)) = held.take() {
        sink.send(&[record(t, &row, "last", &mut problems)])?;
    }
    warn_each(&mut problems);
    sink.confirm()?;
    let summary: Vec<String> = tables
        .iter()
        .zip(&counts)
        .map(|((schema, table), n)| format!("{schema}.{table} {n}"))
        .collect();
    tracing::info!(
        "snapshot sent and acknowledged in {:.1} s: {} rows ({})",
        started.elapsed().as_secs_f64(),
        counts.iter().sum::<u64>(),
        summary.join(", ")
    );
    Ok(Some(visibility))
}

fn warn_each(problems: &mut Vec<String>) {
    for problem in problems.drain(..) {
        tracing::warn!("cdc capture: {problem}");
    }
}

/// Reads, sends and confirms until stopped.
fn stream(
    source: &mut Source,
    mut capture: Capture,
    sink: &mut Sink,
    args: &CaptureArgs,
    stopping: &AtomicBool,
) -> Result<()> {
    let (mut confirmed, _) = source.positions()?;
    tracing::info!(
        "streaming changes of `{}` from {} (slot `{}`) to {}.*",
        source.database,
        format_lsn(confirmed),
        args.slot,
        args.prefix
    );
    let (mut changes, mut transactions, mut skipped) = (0u64, 0u64, 0u64);
    let mut last_said = Instant::now();
    let mut records = Vec::new();
    while !stopping.load(Ordering::Relaxed) {
        let (slot_changes, covered) = source.peek(args.batch_changes)?;
        let mut advance_to = None;
        if !slot_changes.is_empty() {
            records.clear();
            let mut complete = 0;
            let now = now_ms();
            for change in &slot_changes {
                if let Fed::Committed {
                    end_lsn,
                    skipped: held,
                } = capture.feed(change.lsn, &change.data, now, &mut records)?
                {
                    advance_to = Some(end_lsn);
                    complete = records.len();
                    transactions += 1;
                    skipped += u64::from(held);
                }
            }
            // A peek ends at a transaction's end; anything after the last
            // commit is read again next round.
            records.truncate(complete);
            changes += records
                .iter()
                .filter(|r| r.value.is_some() && &*r.topic != capture.transaction_topic())
                .count() as u64;
            warn_each(&mut capture.problems);
            sink.send(&records)?;
            sink.confirm()?;
        }
        // Only forward: a slot never moves back.
        if let Some(lsn) = advance_to.max(covered).filter(|lsn| *lsn > confirmed) {
            source.advance(lsn)?;
            confirmed = lsn;
        }
        if slot_changes.is_empty() {
            std::thread::sleep(Duration::from_millis(args.poll_interval_ms));
        }
        if last_said.elapsed() >= Duration::from_secs(10) {
            let (slot, wal) = source.positions()?;
            tracing::info!(
                "cdc capture: {changes} change events from {transactions} transactions ({skipped} already in the snapshot); slot at {}, {} bytes of WAL behind",
                format_lsn(slot),
                wal.saturating_sub(slot)
            );
            last_said = Instant::now();
        }
    }
    tracing::info!(
        "cdc capture stopped: {changes} change events from {transactions} transactions sent and confirmed"
    );
    Ok(())
}
