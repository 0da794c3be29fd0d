//! `cdrflow replay`: move a consumer group's stored positions back, and
//! optionally rebuild every result from the re-read records.
//!
//! When to use it:
//! - **After a tariff or rule fix** (`--to-beginning --rebuild`): stop the
//!   consumers, run this, start them again with the fixed tariff. All
//!   summaries, counters, rejects and dedup state are cleared and re-derived
//!   from the topics, so nothing is counted twice.
//! - **To re-read part of a topic** (`--to-offset` / `--to-timestamp`, no
//!   rebuild): records already accepted are recognised as duplicates and not
//!   counted again; records that are re-rejected are stored as rejects again.
//!
//! Positions live in the store, not in Kafka, so this edits the store; it also
//! bumps each partition's epoch, fencing any consumer still running.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cdrflow_core::normalize::parse_timestamp;
use cdrflow_store::ReplayTarget;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Settings;
use crate::kafka::{log_ends, with_env_overrides, Cluster, KafkaArgs, DEFAULT_GROUP};

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["to_beginning", "to_offset", "to_timestamp"]))]
pub struct ReplayArgs {
    /// Consumer group whose positions move
    #[arg(long, env = "CDRFLOW_GROUP", default_value = DEFAULT_GROUP)]
    pub group: String,

    /// Only these topics (comma-separated) [default: every topic of the group]
    #[arg(long, value_delimiter = ',')]
    pub topics: Vec<String>,

    /// Re-read everything still in the topics
    #[arg(long)]
    pub to_beginning: bool,

    /// Re-read from this offset in every partition
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,

    /// Re-read from the first record at or after this time (RFC 3339), asked of the broker
    #[arg(long, value_name = "TIME")]
    pub to_timestamp: Option<String>,

    /// Also clear all results (summaries, counters, rejects, dedup state) to re-derive them; needs --to-beginning
    #[arg(long, requires = "to_beginning")]
    pub rebuild: bool,

    /// Do not ask for confirmation
    #[arg(long)]
    pub yes: bool,

    #[command(flatten)]
    pub kafka: KafkaArgs,
}

pub fn run(settings: &Settings, args: ReplayArgs) -> Result<()> {
    let target = match (&args.to_offset, &args.to_timestamp) {
        (Some(offset), _) => ReplayTarget::Offset(*offset),
        (None, Some(time)) => offsets_at(&args, &args.kafka.cluster(settings)?, time)?,
        (None, None) => ReplayTarget::Beginning,
    };
    if args.rebuild && !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "--rebuild clears every result in {}; add --yes to confirm",
                settings.store_label()
            );
        }
        eprint!(
            "This clears every summary, counter and reject in {}. Type 'rebuild' to go on: ",
            settings.store_label()
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "rebuild" {
            bail!("not confirmed; nothing changed");
        }
    }
    let mut store = settings.open_store()?;
    if let ReplayTarget::Offset(offset) = target {
        refuse_offsets_beyond_the_end(
            store.as_mut(),
            &args,
            &args.kafka.cluster(settings)?,
            offset,
        )?;
    }
    let moved = store.reset_kafka_offsets(&args.group, &args.topics, &target)?;
    if args.rebuild {
        clear_lake(settings, store.as_mut())?;
        store.clear_results()?;
    }
    eprintln!(
        "replay: {moved} partition position(s) of group {} moved{}; restart the consumers to re-read",
        args.group,
        if args.rebuild { ", results cleared for a rebuild" } else { "" }
    );
    Ok(())
}

/// A rebuild writes the lake again: the files the manifest names go first.
fn clear_lake(settings: &Settings, store: &mut dyn cdrflow_store::Store) -> Result<()> {
    let paths: Vec<String> = store.lake_files()?.into_iter().map(|f| f.path).collect();
    if paths.is_empty() {
        return Ok(());
    }
    let Some(dir) = &settings.lake else {
        bail!(
            "the store's lake manifest names {} Parquet files: give --lake DIR (the lake they are in) so that the rebuild deletes them with the results; otherwise the lake would hold every record twice",
            paths.len()
        );
    };
    let removed = cdrflow_lake::remove_published(dir, &paths)?;
    eprintln!(
        "replay: {removed} lake file(s) under {} deleted for the rebuild",
        dir.display()
    );
    Ok(())
}

/// A position past a partition's end would make the consumer skip the next
/// records written there as "already processed": refuse it.
fn refuse_offsets_beyond_the_end(
    store: &mut dyn cdrflow_store::Store,
    args: &ReplayArgs,
    cluster: &Cluster,
    offset: i64,
) -> Result<()> {
    let partitions: Vec<(String, i32)> = store
        .kafka_positions(&args.group)?
        .into_iter()
        .filter(|p| args.topics.is_empty() || args.topics.contains(&p.topic))
        .map(|p| (p.topic, p.partition))
        .collect();
    let ends = log_ends(cluster, &partitions)?;
    for ((topic, partition), high) in partitions.into_iter().zip(ends) {
        if offset > high {
            bail!(
                "{topic}[{partition}] ends at offset {high}: replaying to {offset} would skip the next records written there. Use an offset of at most {high}, --to-beginning, or --topics to leave this topic out; nothing changed"
            );
        }
    }
    Ok(())
}

/// Asks the broker which offset each partition had at `time`.
fn offsets_at(args: &ReplayArgs, cluster: &Cluster, time: &str) -> Result<ReplayTarget> {
    let at =
        parse_timestamp(time).map_err(|_| anyhow::anyhow!("`{time}` is not an RFC 3339 time"))?;
    if args.topics.is_empty() {
        bail!("--to-timestamp needs --topics: the broker is asked per partition");
    }
    let consumer: BaseConsumer = with_env_overrides(&mut cluster.client_config()).create()?;
    let mut query = TopicPartitionList::new();
    for topic in &args.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| {
                format!(
                    "cannot read the partitions of {topic} from {}",
                    cluster.bootstrap
                )
            })?;
        for t in metadata.topics() {
            for p in t.partitions() {
                query.add_partition_offset(t.name(), p.id(), Offset::Offset(at))?;
            }
        }
    }
    let answer = consumer.offsets_for_times(query, Duration::from_secs(10))?;
    // A partition with no record at or after `time` has nothing to re-read:
    // it is left out, so its position stays where it is.
    let offsets = answer
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.topic().to_string(), e.partition(), o)),
            _ => None,
        })
        .collect();
    Ok(ReplayTarget::Offsets(offsets))
}
