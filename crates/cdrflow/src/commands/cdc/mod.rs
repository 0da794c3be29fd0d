//! `cdrflow cdc`: change data capture from an operational PostgreSQL.
//!
//! Reading change events is `cdrflow process --from kafka --cdc`; this
//! command writes them, for users without Debezium and Kafka Connect.

mod capture;
mod source;

use anyhow::Result;
use clap::Subcommand;

use crate::config::Settings;

#[derive(Subcommand, Debug)]
pub enum CdcCommand {
    /// Send a PostgreSQL database's changes to Kafka as Debezium events.
    ///
    /// Reads the database by logical decoding with the built-in pgoutput
    /// plugin (wal_level = logical; a publication names the tables, a
    /// replication slot keeps the position): first a consistent snapshot
    /// of every published table (op "r"; source.snapshot "true", "last" on
    /// the final row), then every committed change, in commit order, to
    /// PREFIX.SCHEMA.TABLE — keyed by the primary key, with schemas, a
    /// tombstone after each delete, and transaction metadata. The slot
    /// advances only once Kafka has acknowledged what came before: after a
    /// crash the capture sends again rather than lose, and cdrflow's
    /// consumer applies each change once. Stops on SIGTERM or Ctrl-C.
    Capture(capture::CaptureArgs),
}

pub fn run(settings: &Settings, command: CdcCommand) -> Result<()> {
    match command {
        CdcCommand::Capture(args) => capture::run(settings, args),
    }
}
