//! `cdrflow run`: the whole job on the embedded store in one command.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cdrflow_core::decode::Format;
use cdrflow_core::money::format_micros;
use cdrflow_core::synth::Faults;

use crate::commands::generate::{generate, GenerateArgs};
use crate::commands::process::{process, ProcessArgs};
use crate::config::Settings;
use crate::pipeline::now_millis;
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// How many synthetic records to generate and process
    #[arg(long, default_value_t = 500_000)]
    pub count: u64,

    /// Random seed [default: a new one each run, so each run adds new traffic]
    #[arg(long)]
    pub seed: Option<u64>,

    /// Faults to inject, as rates
    #[arg(long, default_value = "bad=0.01,dup=0.01,late=0.005", value_parser = Faults::parse)]
    pub faults: Faults,

    /// Distinct subscribers
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: u32,

    /// Days of traffic
    #[arg(long, default_value_t = 2)]
    pub days: u32,

    /// Records per checkpoint
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
}

pub fn run(settings: &Settings, args: RunArgs) -> Result<()> {
    let seed = args.seed.unwrap_or_else(|| now_millis() as u64);
    let dir = settings.data_dir.join("generated");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file: PathBuf = dir.join(format!("run-{seed}.jsonl"));

    eprintln!(
        "cdrflow run: generating {} CDRs (seed {seed}) into {}",
        args.count,
        file.display()
    );
    let generate_args = GenerateArgs {
        count: args.count,
        rate: 0,
        seed,
        format: cdrflow_core::synth::SynthFormat::Mixed,
        subscribers: args.subscribers,
        days: args.days,
        start: None,
        faults: args.faults,
        output: Some(file.clone()),
    };
    let sink = std::fs::File::create(&file)
        .with_context(|| format!("cannot create {}", file.display()))?;
    generate(&generate_args, Box::new(sink))?;

    eprintln!(
        "cdrflow run: processing into {}",
        settings.sqlite_path().display()
    );
    let process_args = ProcessArgs {
        files: vec![file.display().to_string()],
        format: Format::Auto,
        batch_size: args.batch_size,
        threads: None,
    };
    let report = process(settings, &process_args, &mut Progress::new("processing"))?;

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
        println!("\nnext: cdrflow usage {}   |   cdrflow rejected --limit 5   |   cdrflow export summaries --format csv", first.msisdn);
    }
    Ok(())
}
