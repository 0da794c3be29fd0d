//! `cdrflow run`: the whole job in one command — generate → process → store —
//! on the embedded store by default, or through Kafka with `--kafka`. By
//! default it streams (`--rate` records a second for `--duration` seconds,
//! through `--days` of event time, or live with `--live`/`--forever`) so the
//! dashboard has something to show; `--count N` is the one-shot run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use cdrflow_core::formats::Format;
use cdrflow_core::money::format_micros;
use cdrflow_core::synth::{Faults, Profile, SynthFormat};

use crate::commands::generate::{generate, generate_to_kafka, GenerateArgs};
use crate::commands::process::{
    process, process_inputs_of, process_kafka, ConsumerArgs, ProcessArgs, SourceKind,
};
use crate::config::Settings;
use crate::kafka::KafkaArgs;
use crate::pipeline::{now_millis, RunReport};
use crate::progress::Progress;
use crate::server::{serve_in_background, serve_metrics_in_background, HttpArgs};
use crate::sources::file::{Input, StreamInput};

/// Records per second of a streaming run: enough to fill the dashboard.
const DEFAULT_STREAM_RATE: u64 = 20_000;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Generate this many records at once and process them as fast as
    /// possible (the one-shot run) [default: stream for --duration]
    #[arg(long, value_name = "N", conflicts_with_all = ["duration", "forever"])]
    pub count: Option<u64>,

    /// Seconds to stream for: the generator produces at --rate, in event-time
    /// order, and the dashboard shows it live
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub duration: u64,

    /// Stream until Ctrl-C (event times follow the clock, as with --live)
    #[arg(long)]
    pub forever: bool,

    /// Event times follow the clock (a live feed) [default: the stream runs
    /// through --days of traffic in --duration, so windows fill and close
    /// while you watch]
    #[arg(long, conflicts_with = "count")]
    pub live: bool,

    /// Random seed [default: a new one each run, so each run adds new traffic]
    #[arg(long)]
    pub seed: Option<u64>,

    /// Faults to inject, as rates
    #[arg(long, default_value = "bad=0.01,dup=0.01,late=0.005,anomaly=0.0002", value_parser = Faults::parse)]
    pub faults: Faults,

    /// Distinct subscribers
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: u32,

    /// Whose network: za (seed 000's: +27, provinces, ZAR) or kz (seed 003's: +7, its regions, KZT)
    #[arg(long, default_value = "za", value_parser = Profile::parse)]
    pub profile: Profile,

    /// Days of traffic
    #[arg(long, default_value_t = 2)]
    pub days: u32,

    /// Records per checkpoint
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,

    /// Go through Kafka: produce to the topics and consume them as a group member
    #[arg(long)]
    pub kafka: bool,

    /// Records per second [default: 20000 while streaming; with --count, as fast as possible]
    #[arg(long, value_name = "N")]
    pub rate: Option<u64>,

    /// Address of the dashboard and API served while the job runs
    #[arg(long, env = "CDRFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    /// Do not serve the dashboard and API
    #[arg(long)]
    pub no_serve: bool,

    /// Keep serving the dashboard and API after the report, until Ctrl-C
    #[arg(long, conflicts_with = "no_serve")]
    pub keep_serving: bool,

    #[command(flatten)]
    pub broker: KafkaArgs,

    #[command(flatten)]
    pub consumer: ConsumerArgs,

    #[command(flatten)]
    pub http: HttpArgs,
}

pub fn run(settings: &Settings, args: RunArgs) -> Result<()> {
    let seed = args.seed.unwrap_or_else(|| now_millis() as u64);
    let served = if args.no_serve {
        serve_metrics_in_background(settings, &args.http)?;
        None
    } else {
        serve_in_background(settings, args.listen, &args.http)?
    };
    if let Some(address) = served {
        let scheme = args.http.tls.scheme();
        eprintln!("cdrflow run: live dashboard on {scheme}://{address}/ (API: {scheme}://{address}/usage/{{msisdn}})");
    }
    let streaming = args.count.is_none();
    let rate = args
        .rate
        .unwrap_or(if streaming { DEFAULT_STREAM_RATE } else { 0 });
    if streaming && rate == 0 {
        bail!("a streaming run needs a --rate above 0 (or --count N for a one-shot run)");
    }
    let count = match args.count {
        Some(count) => count,
        None if args.forever => u64::MAX,
        None => rate.saturating_mul(args.duration),
    };
    let generate_args = GenerateArgs {
        count,
        rate,
        live: args.live || args.forever,
        profile: args.profile,
        seed,
        format: SynthFormat::Mixed,
        subscribers: args.subscribers,
        days: args.days,
        start: None,
        faults: args.faults,
        output: None,
        to: None,
        kafka: args.broker.clone(),
        compression: "lz4".into(),
        partitions: 6,
        reference_dir: None,
        plan: String::new(),
    };
    let mut process_args = ProcessArgs {
        files: Vec::new(),
        from: SourceKind::File,
        // The generator writes whole lines.
        complete: true,
        max_record_bytes: crate::sources::file::DEFAULT_MAX_RECORD_BYTES,
        format: Format::default(),
        batch_size: args.batch_size,
        threads: None,
        kafka: args.broker.clone(),
        consumer: ConsumerArgs {
            // The dashboard's spend panel follows the run.
            rankings_every: args.consumer.rankings_every.or(Some(10)),
            ..args.consumer.clone()
        },
        // Served above, once for the whole run.
        http: HttpArgs {
            no_metrics: true,
            ..args.http.clone()
        },
    };
    let report = if args.kafka {
        run_through_kafka(settings, &generate_args, &mut process_args)?
    } else if streaming {
        stream(settings, &generate_args, &mut process_args, args.forever)?
    } else {
        run_from_file(settings, &generate_args, &mut process_args)?
    };
    print_report(settings, &report)?;
    match (served, args.keep_serving) {
        (Some(address), true) => {
            eprintln!(
                "cdrflow run: still serving {}://{address}/ — Ctrl-C to stop",
                args.http.tls.scheme()
            );
            loop {
                std::thread::park();
            }
        }
        (Some(_), false) => eprintln!(
            "cdrflow run: the dashboard stops with the run; `cdrflow run --keep-serving` keeps it up, `cdrflow serve` serves the results any time"
        ),
        (None, _) => {}
    }
    Ok(())
}

fn run_from_file(
    settings: &Settings,
    generate_args: &GenerateArgs,
    process_args: &mut ProcessArgs,
) -> Result<RunReport> {
    let dir = settings.data_dir.join("generated");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file: PathBuf = dir.join(format!("run-{}.jsonl", generate_args.seed));
    eprintln!(
        "cdrflow run: generating {} CDRs (seed {}) into {}",
        generate_args.count,
        generate_args.seed,
        file.display()
    );
    let sink = std::fs::File::create(&file)
        .with_context(|| format!("cannot create {}", file.display()))?;
    generate(generate_args, Box::new(sink))?;
    eprintln!("cdrflow run: processing into {}", settings.store_label());
    process_args.files = vec![file.display().to_string()];
    process(settings, process_args, &mut Progress::new("processing"))
}

/// Streams the generator's lines through a pipe into the file source:
/// commits about once a second, so the dashboard and the store follow the
/// stream; Ctrl-C ends it with the records read so far committed.
fn stream(
    settings: &Settings,
    generate_args: &GenerateArgs,
    process_args: &mut ProcessArgs,
    forever: bool,
) -> Result<RunReport> {
    let how_long = if forever {
        "until Ctrl-C".to_string()
    } else {
        format!("for {} s", generate_args.count / generate_args.rate.max(1))
    };
    eprintln!(
        "cdrflow run: streaming {} CDR/s (seed {}) {how_long} into {}",
        generate_args.rate,
        generate_args.seed,
        settings.store_label()
    );
    process_args
        .batch_size
        .get_or_insert(generate_args.rate.clamp(1_000, 1_000_000) as usize);
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = stopping.clone();
    // The first Ctrl-C ends the stream (what was read is committed and
    // reported); one after that, or once the stream is over (while
    // --keep-serving), ends the process.
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
    })
    .context("cannot install the SIGTERM/SIGINT handler")?;
    let (reader, writer) = std::io::pipe().context("cannot make a pipe for the generator")?;
    let input = Input::Stream(StreamInput::new("generator", reader));
    std::thread::scope(|scope| {
        let generator = scope.spawn(|| {
            generate(
                generate_args,
                Box::new(UntilStopped {
                    inner: writer,
                    stopping: stopping.clone(),
                }),
            )
        });
        let processed = process_inputs_of(
            settings,
            process_args,
            &[input],
            &mut Progress::new("streaming"),
        );
        let generated = generator
            .join()
            .map_err(|_| anyhow!("the generator thread panicked"))?;
        let stopped = stopping.swap(true, Ordering::Relaxed);
        // A failed processing closes the pipe, which fails the generator
        // too: the processing error is the one to report.
        let report = processed?;
        match generated {
            Err(e) if !stopped => Err(e.context("generating")),
            _ => Ok(report),
        }
    })
}

/// A writer that fails once Ctrl-C was pressed, which ends the generator
/// and, with the pipe closed, the stream.
struct UntilStopped<W> {
    inner: W,
    stopping: Arc<AtomicBool>,
}

impl<W: std::io::Write> std::io::Write for UntilStopped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stopping.load(Ordering::Relaxed) {
            // Not `Interrupted`: writers retry that.
            return Err(std::io::Error::other("stopped by Ctrl-C"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn run_through_kafka(
    settings: &Settings,
    generate_args: &GenerateArgs,
    process_args: &mut ProcessArgs,
) -> Result<RunReport> {
    let kafka = &generate_args.kafka;
    let cluster = kafka.cluster(settings)?;
    process_args.from = SourceKind::Kafka;
    if process_args.consumer.topics.is_empty() {
        process_args.consumer.topics = vec![
            kafka.topic_data.clone(),
            kafka.topic_voice.clone(),
            kafka.topic_events.clone(),
        ];
    }
    process_args.consumer.idle_exit_secs.get_or_insert(5);
    eprintln!(
        "cdrflow run: producing {} CDRs (seed {}) to {} and consuming them into {}",
        generate_args.count,
        generate_args.seed,
        cluster.bootstrap,
        settings.store_label()
    );
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = stopping.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("cannot install the SIGTERM/SIGINT handler")?;
    std::thread::scope(|scope| {
        let producer = scope.spawn(|| generate_to_kafka(generate_args, &cluster));
        let consumed = process_kafka(settings, process_args, stopping.clone());
        producer
            .join()
            .map_err(|_| anyhow!("the producer thread panicked"))??;
        consumed
    })
}

fn print_report(settings: &Settings, report: &RunReport) -> Result<()> {
    let mut store = settings.open_store()?;
    let lifetime = store.counts()?;
    let top = store.top_subscribers(5)?;
    println!("\n== cdrflow run report ==");
    println!("this run      {}", report.summary_line());
    println!(
        "throughput    {:.0} CDR/s over {} checkpoints",
        report.records_per_second(),
        report.checkpoints
    );
    println!("rejected by reason:");
    if report.counts.rejected.is_empty() {
        println!("  (none)");
    }
    for (reason, n) in &report.counts.rejected {
        println!("  {:<28} {n}", reason.as_str());
    }
    println!("top subscribers by cost (all time):");
    for t in &top {
        println!(
            "  {:<16} {:>16} WAK",
            t.msisdn,
            format_micros(t.cost_micros)
        );
    }
    println!(
        "store totals  {} records in, {} accepted, {} rejected, {} duplicates",
        lifetime.records_in,
        lifetime.accepted_total(),
        lifetime.rejected_total(),
        lifetime.duplicates_total()
    );
    if let Some(first) = top.first() {
        println!(
            "\nnext: cdrflow usage {}   |   cdrflow rejected --limit 5   |   cdrflow export summaries --format csv",
            first.msisdn
        );
    }
    Ok(())
}
