//! One module per subcommand: argument parsing next to what the command does.

pub mod alerts;
pub mod bill;
pub mod catalogue;
pub mod cdc;
pub mod daily;
pub mod export;
pub mod generate;
pub mod process;
pub mod reference;
pub mod rejected;
pub mod replay;
pub mod report;
pub mod rerate;
pub mod retention;
pub mod run;
pub mod usage;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag that SIGTERM or Ctrl-C raises, saying `what_happens_now` once
/// raised: long-running commands finish what is in hand and stop.
pub fn stop_on_signal(what_happens_now: &'static str) -> anyhow::Result<Arc<AtomicBool>> {
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = stopping.clone();
    ctrlc::set_handler(move || {
        tracing::info!("stop requested: {what_happens_now}");
        flag.store(true, Ordering::Relaxed);
    })
    .map_err(|e| anyhow::anyhow!("cannot install the SIGTERM/SIGINT handler: {e}"))?;
    Ok(stopping)
}
