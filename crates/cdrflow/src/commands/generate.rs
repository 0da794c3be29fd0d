//! `cdrflow generate`: synthetic, realistic CDRs.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cdrflow_core::normalize::Day;
use cdrflow_core::synth::{Faults, Synth, SynthConfig, SynthFormat};

use crate::commands::usage::parse_day;
use crate::config::Settings;
use crate::pipeline::now_millis;

#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// How many records
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,

    /// Records per second; 0 = as fast as possible
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// Random seed: the same seed and start date give the same records
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// mixed (all three formats), telecom-events (seed 003), cdr-data or cdr-voice (seed 000)
    #[arg(long, default_value = "mixed", value_parser = SynthFormat::parse)]
    pub format: SynthFormat,

    /// Distinct subscribers
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: u32,

    /// Days of traffic
    #[arg(long, default_value_t = 1)]
    pub days: u32,

    /// First day of traffic (YYYY-MM-DD) [default: today minus --days, UTC]
    #[arg(long, value_parser = parse_day)]
    pub start: Option<Day>,

    /// Faults to inject, as rates: e.g. bad=0.01,dup=0.02,late=0.005
    #[arg(long, default_value = "", value_parser = Faults::parse)]
    pub faults: Faults,

    /// Write to FILE instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl GenerateArgs {
    pub fn synth_config(&self) -> SynthConfig {
        let start = self.start.unwrap_or_else(|| {
            let today = now_millis().div_euclid(86_400_000) as i32;
            Day(today - self.days.max(1) as i32)
        });
        SynthConfig {
            seed: self.seed,
            format: self.format,
            subscribers: self.subscribers,
            start: i64::from(start.0) * 86_400_000,
            days: self.days,
            faults: self.faults,
        }
    }
}

pub fn run(_settings: &Settings, args: GenerateArgs) -> Result<()> {
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
    let mut synth = Synth::new(args.synth_config());
    let mut line = String::with_capacity(256);
    let started = Instant::now();
    for emitted in 1..=args.count {
        synth.next_line(&mut line);
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        if args.rate > 0 && emitted % (args.rate / 100).max(1) == 0 {
            // Pace in small steps so a consumer sees a steady stream, not bursts.
            out.flush()?;
            let due = Duration::from_secs_f64(emitted as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    out.flush()?;
    Ok(())
}
