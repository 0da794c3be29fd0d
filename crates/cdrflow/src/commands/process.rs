//! `cdrflow process`: files or stdin into the store, exactly once.

use anyhow::Result;
use cdrflow_core::decode::Format;

use crate::config::Settings;
use crate::pipeline::{
    default_classify_threads, process_inputs, PipelineOptions, RunReport, DEFAULT_BATCH_SIZE,
};
use crate::progress::Progress;
use crate::sources::file::Input;

#[derive(Debug, clap::Args)]
pub struct ProcessArgs {
    /// Newline-delimited JSON files; `-` reads stdin. Re-running over a file
    /// already processed changes nothing; an interrupted run resumes.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,

    /// Record format: auto (detected per record), cdr-data, cdr-voice, telecom-events
    #[arg(long, default_value = "auto", value_parser = Format::parse)]
    pub format: Format,

    /// Records per checkpoint (one store transaction); memory grows with it [default: 1000000]
    #[arg(long, env = "CDRFLOW_BATCH_SIZE", value_name = "N")]
    pub batch_size: Option<usize>,

    /// Threads that decode and rate records [default: the number of CPUs]
    #[arg(long, env = "CDRFLOW_THREADS", value_name = "N")]
    pub threads: Option<usize>,
}

pub fn run(settings: &Settings, args: ProcessArgs) -> Result<()> {
    let report = process(settings, &args, &mut Progress::new("processing"))?;
    eprintln!("{}", report.summary_line());
    Ok(())
}

/// Runs the pipeline over `args.files`; shared with `cdrflow run`.
pub fn process(
    settings: &Settings,
    args: &ProcessArgs,
    progress: &mut Progress,
) -> Result<RunReport> {
    let tariff = settings.tariff()?;
    let mut store = settings.open_store()?;
    let inputs: Vec<Input> = args.files.iter().map(|f| Input::parse(f)).collect();
    let batch_size = args
        .batch_size
        .or(settings.batch_size)
        .unwrap_or(DEFAULT_BATCH_SIZE)
        .max(1);
    let classify_threads = args.threads.unwrap_or_else(default_classify_threads).max(1);
    let options = PipelineOptions {
        mediation: settings.mediation(args.format),
        batch_size,
        classify_threads,
    };
    process_inputs(store.as_mut(), &tariff, &inputs, &options, progress)
}
