//! `cdrflow generate`: synthetic, realistic CDRs.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cdrflow_core::normalize::{normalize_msisdn, CountryCode, Day};
use cdrflow_core::synth::{Faults, Profile, Synth, SynthConfig, SynthFormat};
use rdkafka::producer::{BaseRecord, Producer};

use crate::commands::usage::parse_day;
use crate::config::Settings;
use crate::kafka::{
    ensure_topics, flush, producer, send, wait_until_reachable, Cluster, KafkaArgs, COMPRESSIONS,
    ONE_SHOT_PATIENCE,
};
use crate::pipeline::now_millis;

#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// How many records
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,

    /// Records per second; 0 = as fast as possible
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// Event times follow the clock from now on, one record every 1/--rate
    /// seconds (a live feed), instead of spreading over --days
    #[arg(long, requires = "rate")]
    pub live: bool,

    /// Random seed: the same seed and start date give the same records
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Whose network: za (seed 000's: +27, provinces, ZAR), kz (seed 003's:
    /// +7, its regions, KZT) or ma (seed 001's: +212, its regions, MAD,
    /// called numbers national and international, raw technology codes,
    /// fields left out; use --default-country-code 212 to process it)
    #[arg(long, default_value = "za", value_parser = Profile::parse)]
    pub profile: Profile,

    /// mixed (all three formats), telecom-events (seed 003), cdr-data or cdr-voice (seed 000)
    #[arg(long, default_value = "mixed", value_parser = SynthFormat::parse)]
    pub format: SynthFormat,

    /// Distinct subscribers
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: u32,

    /// Days of traffic
    #[arg(long, default_value_t = 1)]
    pub days: u32,

    /// First day of traffic (YYYY-MM-DD) [default: so that the last day is today, UTC]
    #[arg(long, value_parser = parse_day)]
    pub start: Option<Day>,

    /// Faults to inject, as rates: e.g. bad=0.01,dup=0.02,late=0.005,anomaly=0.001
    #[arg(long, default_value = "", value_parser = Faults::parse)]
    pub faults: Faults,

    /// Write to FILE instead of stdout
    #[arg(long, short, value_name = "FILE", conflicts_with = "to")]
    pub output: Option<PathBuf>,

    /// Publish to Kafka instead: data to TOPIC_DATA, voice to TOPIC_VOICE, events to TOPIC_EVENTS
    #[arg(long, value_parser = ["kafka"])]
    pub to: Option<String>,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Producer compression (with --to kafka)
    #[arg(long, default_value = "lz4", value_parser = COMPRESSIONS)]
    pub compression: String,

    /// Partitions of topics that do not exist yet (with --to kafka)
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,

    /// Also write the network's reference data into DIR: subscribers.csv,
    /// customers.csv and cells.csv, for `cdrflow reference load`
    #[arg(long, value_name = "DIR")]
    pub reference_dir: Option<PathBuf>,

    /// The catalogue plan the reference data puts every subscriber on
    #[arg(long, default_value = "prepaid-basic", requires = "reference_dir")]
    pub plan: String,
}

impl GenerateArgs {
    pub fn synth_config(&self) -> SynthConfig {
        let start = self.start.unwrap_or_else(|| {
            let today = now_millis().div_euclid(86_400_000) as i32;
            Day(today + 1 - self.days.max(1) as i32)
        });
        let live = self.live && self.rate > 0;
        SynthConfig {
            seed: self.seed,
            format: self.format,
            subscribers: self.subscribers,
            start: if live {
                now_millis()
            } else {
                i64::from(start.0) * 86_400_000
            },
            days: self.days,
            live_rate: live.then_some(self.rate),
            profile: self.profile,
            count: self.count,
            faults: self.faults,
        }
    }
}

pub fn run(settings: &Settings, args: GenerateArgs) -> Result<()> {
    if let Some(dir) = &args.reference_dir {
        write_reference_files(&args, dir)?;
    }
    if args.to.is_some() {
        return generate_to_kafka(&args, &args.kafka.cluster(settings)?);
    }
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    generate(&args, sink)
}

/// Writes `args.count` lines to `sink`, paced to `args.rate` when set.
pub fn generate(args: &GenerateArgs, sink: Box<dyn Write>) -> Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    for_each_line(args, |line, pace| {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        if pace {
            out.flush()?;
        }
        Ok(())
    })?;
    out.flush()?;
    Ok(())
}

/// [`Synth::reference_files`] into `dir`.
fn write_reference_files(args: &GenerateArgs, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = Synth::new(args.synth_config()).reference_files(&args.plan);
    for (name, text) in [
        ("subscribers.csv", &files.subscribers),
        ("customers.csv", &files.customers),
        ("cells.csv", &files.cells),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "reference data in {}: load it with `cdrflow reference load subscribers|customers|cells FILE`",
        dir.display()
    );
    Ok(())
}

/// Publishes `args.count` records to Kafka, keyed by MSISDN so that one
/// subscriber's records (and any duplicates of them) share a partition.
pub fn generate_to_kafka(args: &GenerateArgs, cluster: &Cluster) -> Result<()> {
    let k = &args.kafka;
    wait_until_reachable(cluster, &AtomicBool::new(false), Some(ONE_SHOT_PATIENCE))?;
    ensure_topics(
        cluster,
        &[&k.topic_data, &k.topic_voice, &k.topic_events],
        args.partitions,
    )?;
    let producer = producer(cluster, &args.compression)?;
    // Connect and learn the partition leaders before the first record is
    // stamped, so that records are not timed waiting for the connection.
    for topic in [&k.topic_data, &k.topic_voice, &k.topic_events] {
        producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| {
                format!(
                    "cannot read the metadata of {topic} from {}",
                    cluster.bootstrap
                )
            })?;
    }
    let country = CountryCode::default();
    for_each_line(args, |line, _| {
        let topic = if line.contains("\"event_type\"") {
            &k.topic_events
        } else if line.contains("\"call_type\"") || line.contains("\"start_time\"") {
            &k.topic_voice
        } else {
            &k.topic_data
        };
        let key = msisdn_key(line, country);
        send(
            &producer,
            BaseRecord::to(topic)
                .key(key.as_bytes())
                .payload(line.as_bytes()),
        )
    })?;
    flush(&producer)
}

/// The E.164 MSISDN of a generated line, or its raw spelling when invalid.
fn msisdn_key(line: &str, country: CountryCode) -> String {
    let raw = line
        .split_once("\"msisdn\":\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or("", |(m, _)| m);
    normalize_msisdn(raw, country).map_or_else(|_| raw.to_string(), |m| m.to_string())
}

/// Calls `emit(line, pace_point)` for each generated line, sleeping to hold `args.rate`.
fn for_each_line(
    args: &GenerateArgs,
    mut emit: impl FnMut(&str, bool) -> Result<()>,
) -> Result<()> {
    let mut synth = Synth::new(args.synth_config());
    let mut line = String::with_capacity(256);
    let started = Instant::now();
    // Pace in small steps so a consumer sees a steady stream, not bursts.
    let step = (args.rate / 100).max(1);
    for emitted in 1..=args.count {
        synth.next_line(&mut line);
        let pace = args.rate > 0 && emitted % step == 0;
        emit(&line, pace)?;
        if pace {
            let due = Duration::from_secs_f64(emitted as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    Ok(())
}
