//! The `cdrflow` command: wiring between the pure core, the sources and the stores.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod committer;
mod config;
mod events;
mod histogram;
mod invoice_page;
mod kafka;
mod lake;
mod metrics;
mod pipeline;
mod progress;
mod rankings;
mod reports;
mod runner;
mod server;
mod sources;
mod telemetry;
mod views;

use config::GlobalArgs;

/// Real-time CDR pipeline: validate, normalise, deduplicate, rate and
/// summarise call detail records, exactly once.
#[derive(Parser)]
#[command(name = "cdrflow", version, propagate_version = true)]
#[command(
    after_help = "Settings resolve as: flags > environment > config file (./cdrflow.toml) > defaults.\n\
Start with `cdrflow run` for a demo, then `cdrflow usage <MSISDN>`."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Process CDR files (or stdin) into the store, exactly once
    Process(commands::process::ProcessArgs),
    /// Show one subscriber's daily usage summaries
    Usage(commands::usage::UsageArgs),
    /// Deliver anomalies to a webhook (JSON or Slack), at least once, in order
    Alerts(commands::alerts::AlertsArgs),
    /// Seed 003's daily batch: quality check, daily/hourly statistics, verify, summary, cleanup
    Daily(commands::daily::DailyArgs),
    /// Bill a period: an invoice per customer from its rated records and postpaid subscriptions
    Bill(commands::bill::BillArgs),
    /// Re-price a period under a corrected catalogue; credit or debit notes correct issued invoices
    Rerate(commands::rerate::RerateArgs),
    /// Business reports over a period's invoices: revenue by plan, top customers, regions, product costs (CSV)
    Report(commands::report::ReportArgs),
    /// Remove what each layer's retention has passed (raw 7 days, mediated 90, rated 1 year, invoices 7 years)
    Retention(commands::retention::RetentionArgs),
    /// Check a product catalogue; price one record under it, step by step
    #[command(subcommand)]
    Catalogue(commands::catalogue::CatalogueCommand),
    /// Load reference data (subscribers, customers, cells) that rating joins records with
    #[command(subcommand)]
    Reference(commands::reference::ReferenceCommand),
    /// Change data capture: send an operational PostgreSQL's changes to Kafka as Debezium events
    #[command(subcommand)]
    Cdc(commands::cdc::CdcCommand),
    /// Export stored results
    #[command(subcommand)]
    Export(commands::export::ExportCommand),
    /// List rejected records with their reasons
    Rejected(commands::rejected::RejectedArgs),
    /// Move a consumer group's positions back (and optionally rebuild all results)
    Replay(commands::replay::ReplayArgs),
    /// Generate synthetic, realistic CDRs
    Generate(commands::generate::GenerateArgs),
    /// The main job in one command: generate → process → store, with a report
    Run(commands::run::RunArgs),
    /// Serve the Usage API (HTTP Basic auth) over the configured store
    Serve(server::ServeArgs),
    /// Manage API users (name + argon2 password hash)
    User {
        /// Users file [default: users.toml in the data dir]
        #[arg(long, env = "CDRFLOW_USERS", value_name = "FILE")]
        users: Option<std::path::PathBuf>,
        #[command(subcommand)]
        command: server::users::UserCommand,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CDRFLOW_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = config::Settings::resolve(&cli.global).and_then(|settings| match cli.command {
        Command::Process(args) => commands::process::run(&settings, args),
        Command::Usage(args) => commands::usage::run(&settings, args),
        Command::Alerts(args) => commands::alerts::run(&settings, args),
        Command::Daily(args) => commands::daily::run(&settings, args),
        Command::Bill(args) => commands::bill::run(&settings, args),
        Command::Rerate(args) => commands::rerate::run(&settings, args),
        Command::Report(args) => commands::report::run(&settings, args),
        Command::Retention(args) => commands::retention::run(&settings, args),
        Command::Catalogue(command) => commands::catalogue::run(&settings, command),
        Command::Reference(command) => commands::reference::run(&settings, command),
        Command::Export(command) => commands::export::run(&settings, command),
        Command::Cdc(command) => commands::cdc::run(&settings, command),
        Command::Rejected(args) => commands::rejected::run(&settings, args),
        Command::Replay(args) => commands::replay::run(&settings, args),
        Command::Generate(args) => commands::generate::run(&settings, args),
        Command::Run(args) => commands::run::run(&settings, args),
        Command::Serve(args) => server::run(&settings, args),
        Command::User { users, command } => {
            let path =
                users.unwrap_or_else(|| server::users::default_users_file(&settings.data_dir));
            server::users::run(&path, settings.country_code, command)
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
