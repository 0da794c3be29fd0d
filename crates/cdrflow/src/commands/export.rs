//! `cdrflow export summaries`: every daily summary row as CSV.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::config::Settings;
use crate::views::{summary_csv, CSV_HEADER};

#[derive(Debug, clap::Subcommand)]
pub enum ExportCommand {
    /// Every daily summary row (all kinds), one CSV line each
    Summaries(ExportSummariesArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportSummariesArgs {
    /// Output format
    #[arg(long, default_value = "csv", value_parser = ["csv"])]
    pub format: String,

    /// Write to FILE instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(settings: &Settings, command: ExportCommand) -> Result<()> {
    let ExportCommand::Summaries(args) = command;
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    writeln!(out, "{CSV_HEADER}")?;
    let mut write_error = None;
    settings.open_store()?.for_each_summary(&mut |record| {
        if write_error.is_none() {
            write_error = writeln!(out, "{}", summary_csv(&record)).err();
        }
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing the export");
    }
    out.flush()?;
    Ok(())
}
