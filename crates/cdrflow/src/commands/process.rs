//! `cdrflow process`: files, stdin or Kafka topics into the store, exactly once.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cdrflow_core::formats::Format;
use cdrflow_core::mediation::MediationConfig;
use cdrflow_core::rating::Rater;

use crate::config::Settings;
use crate::kafka::{KafkaArgs, DEFAULT_DLQ_TOPIC, DEFAULT_GROUP};
use crate::pipeline::{
    default_classify_threads, process_inputs, PipelineOptions, RunReport, DEFAULT_BATCH_SIZE,
};
use crate::progress::Progress;
use crate::rankings::{Flusher, Flushes};
use crate::runner::{ChangeSetup, OperatorConfig};
use crate::server::{serve_metrics_in_background, HttpArgs};
use crate::sources::file::{Input, InputOptions, DEFAULT_MAX_RECORD_BYTES, KEPT_BYTES};
use crate::sources::kafka::stall::{self, StallWatch};
use crate::sources::kafka::{consume, KafkaSourceOptions};
use cdrflow_core::cdc::Mapping;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    File,
    Kafka,
}

#[derive(Debug, clap::Args)]
pub struct ProcessArgs {
    /// Newline-delimited JSON files (gzip or zstd too), directories (their
    /// files in name order) or `-` for stdin. A source is known by its
    /// content: re-running over data already processed, under any name,
    /// changes nothing; an interrupted run resumes.
    #[arg(value_name = "FILE", required_unless_present = "from")]
    pub files: Vec<String>,

    /// Where records come from
    #[arg(long, value_enum, default_value = "file")]
    pub from: SourceKind,

    /// The files are finished: process a last line that has no line end.
    /// Without it such a line is left for the next run, because the file may
    /// still be growing (stdin and .gz/.zst files are always finished)
    #[arg(long)]
    pub complete: bool,

    /// Longest record accepted; longer lines are refused as record_too_large
    /// (their first 4 KiB kept) without being read into memory whole
    #[arg(long, env = "CDRFLOW_MAX_RECORD_BYTES", value_name = "BYTES", default_value_t = DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,

    /// Record format: auto (detected per record), cdr-data, cdr-voice, telecom-events,
    /// ber (3GPP TS 32.298 records one after another; see --country-file)
    #[arg(long, default_value = "auto", value_parser = Format::parse)]
    pub format: Format,

    /// Records per checkpoint (one store transaction); memory grows with it
    /// [default: 250000 for files, 50000 for Kafka]
    #[arg(long, env = "CDRFLOW_BATCH_SIZE", value_name = "N")]
    pub batch_size: Option<usize>,

    /// Threads that decode and rate records [default: the number of CPUs]
    #[arg(long, env = "CDRFLOW_THREADS", value_name = "N")]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub consumer: ConsumerArgs,

    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerArgs {
    /// Topics to read (comma-separated), or one regex starting with ^
    /// [default: TOPIC_DATA and TOPIC_VOICE]
    #[arg(long, value_delimiter = ',', value_name = "TOPICS")]
    pub topics: Vec<String>,

    /// Consumer group
    #[arg(long, env = "CDRFLOW_GROUP", default_value = DEFAULT_GROUP)]
    pub group: String,

    /// Dead-letter topic for rejected records
    #[arg(long, env = "CDRFLOW_DLQ_TOPIC", default_value = DEFAULT_DLQ_TOPIC)]
    pub dlq_topic: String,

    /// Keep rejects in the store only, not in a dead-letter topic
    #[arg(long)]
    pub no_dlq: bool,

    /// Consumer session timeout: how soon a dead member's partitions move to the others
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub session_timeout_ms: u32,

    /// Commit at least this often while records flow. Short is fast too:
    /// small commits overlap with consuming instead of stalling it.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub commit_interval_ms: u64,

    /// Exit once no record has arrived for this long (for batch-style runs)
    #[arg(long, value_name = "SECS")]
    pub idle_exit_secs: Option<u64>,

    /// Report a partition of the group as stalled (log, /metrics, /ready)
    /// when it is behind its log end and nobody has committed for it for
    /// this long
    #[arg(
        long,
        env = "CDRFLOW_STALL_TIMEOUT",
        default_value_t = 60.0,
        value_name = "SECONDS"
    )]
    pub stall_timeout: f64,

    /// Also read Debezium change events from the topics this regex matches
    /// (`--cdc` alone: `^dbserver1\.public\.`): the operational database's
    /// subscribers, customers, plans, cells and balance adjustments, each
    /// change applied once, in the source's order, with the offsets
    #[arg(
        long,
        env = "CDRFLOW_CDC_TOPICS",
        value_name = "REGEX",
        num_args = 0..=1,
        default_missing_value = DEFAULT_CDC_TOPICS
    )]
    pub cdc: Option<String>,

    /// Which source tables and columns feed which reference data
    /// [default: the shipped config/cdc.toml]
    #[arg(long, env = "CDRFLOW_CDC_MAPPING", value_name = "FILE")]
    pub cdc_mapping: Option<std::path::PathBuf>,

    /// Take a spend report this often, and once more on stopping: the top
    /// subscribers and plans by spend in the latest billing period and
    /// the subscribers by status, from what was committed; kept in the
    /// store (GET /rankings) and, with --lake, written to it (`rankings/`).
    /// 0: never [default: 300 reading Kafka, 10 for `run`'s stream; a file
    /// job takes one only when asked]
    #[arg(long, env = "CDRFLOW_RANKINGS_EVERY", value_name = "SECS")]
    pub rankings_every: Option<u64>,

    /// How many subscribers and plans each ranking of the spend report keeps
    #[arg(long, default_value_t = cdrflow_core::analytics::rankings::DEFAULT_TOP, value_name = "N")]
    pub rankings_top: u32,
}

/// Debezium's topics for the tables of `public` under its default prefix.
pub const DEFAULT_CDC_TOPICS: &str = r"^dbserver1\.public\.";

/// The shipped mapping (`config/cdc.toml`).
const SHIPPED_CDC_MAPPING: &str = include_str!("../../../../config/cdc.toml");

impl ConsumerArgs {
    /// The spend reports asked for, every `default_secs` unless told.
    pub fn flushes(&self, settings: &Settings, default_secs: Option<u64>) -> Flushes {
        Flushes {
            every: self
                .rankings_every
                .or(default_secs)
                .filter(|secs| *secs > 0)
                .map(Duration::from_secs),
            top: self.rankings_top.max(1),
            lake: settings.lake.clone(),
        }
    }

    /// The change-event topics and their mapping, when `--cdc` asks for them.
    fn changes(&self, settings: &Settings) -> Result<Option<ChangeSetup>> {
        let Some(pattern) = &self.cdc else {
            return Ok(None);
        };
        if !pattern.starts_with('^') {
            bail!("--cdc takes a regex starting with ^ (librdkafka subscribes to those as patterns), not `{pattern}`");
        }
        let topics = regex::Regex::new(pattern)
            .with_context(|| format!("--cdc `{pattern}` is not a regex"))?;
        let mapping = match &self.cdc_mapping {
            None => {
                Mapping::parse(SHIPPED_CDC_MAPPING).context("in the shipped config/cdc.toml")?
            }
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the CDC mapping {}", path.display()))?;
                Mapping::parse(&text)
                    .with_context(|| format!("in the CDC mapping {}", path.display()))?
            }
        };
        Ok(Some(ChangeSetup {
            topics,
            mapping: Arc::new(mapping),
            home: settings.country_code,
        }))
    }
}

pub fn run(settings: &Settings, args: ProcessArgs) -> Result<()> {
    serve_metrics_in_background(settings, &args.http)?;
    let report = match args.from {
        SourceKind::File => process(settings, &args, &mut Progress::new("processing"))?,
        SourceKind::Kafka => {
            let stopping = super::stop_on_signal("committing what is in hand")?;
            process_kafka(settings, &args, stopping)?
        }
    };
    eprintln!("{}", report.summary_line());
    Ok(())
}

/// Runs the pipeline over `args.files`; shared with `cdrflow run`.
pub fn process(
    settings: &Settings,
    args: &ProcessArgs,
    progress: &mut Progress,
) -> Result<RunReport> {
    if args.files.is_empty() {
        bail!("no input: give FILE arguments (or - for stdin), or --from kafka");
    }
    process_inputs_of(settings, args, &Input::expand(&args.files)?, progress)
}

/// [`process`] of inputs named some other way than on the command line.
pub fn process_inputs_of(
    settings: &Settings,
    args: &ProcessArgs,
    inputs: &[Input],
    progress: &mut Progress,
) -> Result<RunReport> {
    let store = settings.open_store()?;
    let mut reader = settings.open_store()?;
    let rater = settings.rater(reader.as_mut())?;
    let lake = settings.open_lake(reader.as_mut())?;
    let batch_size = args
        .batch_size
        .or(settings.batch_size)
        .unwrap_or(DEFAULT_BATCH_SIZE)
        .max(1);
    let options = PipelineOptions {
        operators: operators(settings, args),
        input: InputOptions {
            complete: args.complete,
            max_record_bytes: args.max_record_bytes.max(KEPT_BYTES),
            framing: args.format.framing(),
        },
        batch_size,
    };
    let flusher = Flusher::start(settings, args.consumer.flushes(settings, None))?;
    let report = process_inputs(
        store,
        lake,
        reader.as_mut(),
        rater.as_ref(),
        inputs,
        &options,
        progress,
    )?;
    flusher.finish(settings);
    Ok(report)
}

/// Consumes Kafka until stopped; shared with `cdrflow run --kafka`.
pub fn process_kafka(
    settings: &Settings,
    args: &ProcessArgs,
    stopping: Arc<AtomicBool>,
) -> Result<RunReport> {
    // The rater lives as long as the consumer, which is the rest of the process.
    let mut store = settings.open_store()?;
    let rater: &'static dyn Rater = Box::leak(settings.rater(store.as_mut())?);
    let lake = settings.open_lake(store.as_mut())?;
    let commit_store = settings.open_store()?;
    let consumer = &args.consumer;
    let mut topics = if consumer.topics.is_empty() {
        vec![
            args.kafka.topic_data.clone(),
            args.kafka.topic_voice.clone(),
        ]
    } else {
        consumer.topics.clone()
    };
    let changes = consumer.changes(settings)?;
    topics.extend(consumer.cdc.clone().filter(|_| changes.is_some()));
    let options = KafkaSourceOptions {
        cluster: args.kafka.cluster(settings)?,
        topics,
        group: consumer.group.clone(),
        dlq_topic: (!consumer.no_dlq).then(|| consumer.dlq_topic.clone()),
        session_timeout_ms: consumer.session_timeout_ms,
        batch_size: args
            .batch_size
            .or(settings.batch_size)
            .unwrap_or(50_000)
            .max(1),
        commit_interval: Duration::from_millis(consumer.commit_interval_ms),
        idle_exit: consumer.idle_exit_secs.map(Duration::from_secs),
    };
    let stall_timeout = Duration::try_from_secs_f64(consumer.stall_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--stall-timeout must be a positive number of seconds")?;
    stall::spawn(
        StallWatch {
            cluster: options.cluster.clone(),
            group: options.group.clone(),
            topics: options.topics.clone(),
            timeout: stall_timeout,
        },
        settings.open_store()?,
        stopping.clone(),
    )?;
    let flusher = Flusher::start(settings, consumer.flushes(settings, Some(300)))?;
    let report = consume(
        store,
        commit_store,
        lake,
        rater,
        OperatorConfig {
            changes,
            ..operators(settings, args)
        },
        &options,
        stopping,
    )?;
    flusher.finish(settings);
    Ok(report)
}

/// The operators' settings, mediation with this command's record limit and threads.
fn operators(settings: &Settings, args: &ProcessArgs) -> OperatorConfig {
    OperatorConfig {
        mediation: MediationConfig {
            max_record_bytes: args.max_record_bytes.max(KEPT_BYTES),
            classify_threads: args.threads.unwrap_or_else(default_classify_threads).max(1),
            keep_ratings: settings.charging.rated_records,
            ..settings.mediation(args.format)
        },
        windows: settings.windows,
        rules: settings.rules.clone(),
        raw_events: settings.raw_events,
        keep_mediated: settings.lake.is_some(),
        charging: settings.charging.clone(),
        changes: None,
    }
}
