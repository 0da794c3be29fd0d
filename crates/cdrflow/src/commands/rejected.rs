//! `cdrflow rejected`: rejected records with their reasons and payloads.

use std::io::{BufWriter, Write};

use anyhow::{bail, Result};
use cdrflow_core::reject::RejectReason;
use cdrflow_store::RejectQuery;

use crate::config::Settings;
use crate::views::reject_json;

#[derive(Debug, clap::Args)]
pub struct RejectedArgs {
    /// Output format: one JSON object per line
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
    pub format: String,

    /// Only this reason (e.g. malformed_json, invalid_msisdn)
    #[arg(long)]
    pub reason: Option<String>,

    /// At most this many records
    #[arg(long)]
    pub limit: Option<u32>,
}

pub fn run(settings: &Settings, args: RejectedArgs) -> Result<()> {
    if let Some(reason) = &args.reason {
        if RejectReason::parse(reason).is_none() {
            let known: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
            bail!(
                "unknown reason `{reason}`; known reasons: {}",
                known.join(", ")
            );
        }
    }
    let query = RejectQuery {
        reason: args.reason,
        after_id: 0,
        limit: args.limit,
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut write_error = None;
    settings.open_store()?.rejects(&query, &mut |reject| {
        if write_error.is_none() {
            write_error = writeln!(out, "{}", reject_json(&reject)).err();
        }
    })?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    out.flush()?;
    Ok(())
}
