//! `cdrflow catalogue`: check a product catalogue, and price one record
//! under it step by step — what a rating engineer asks before loading a
//! tariff change.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cdrflow_catalogue::cgrates::ImportOptions;
use cdrflow_catalogue::{Catalogue, Usage};
use cdrflow_core::money::format_micros;
use cdrflow_core::normalize::{format_timestamp, normalize_msisdn, parse_timestamp};
use clap::{Args, Subcommand, ValueEnum};

use crate::config::Settings;

#[derive(Subcommand, Debug)]
pub enum CatalogueCommand {
    /// Validate a catalogue file (TOML; config/catalogue.toml documents the format) and summarise it
    Check {
        /// The catalogue file
        file: PathBuf,
    },
    /// Price one record under a plan, showing each step
    Price(PriceArgs),
    /// Turn a CGRateS tariff plan (a directory of CSV files) into a catalogue file
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The tariff plan's directory: Destinations, Rates, DestinationRates, Timings, RatingPlans and RatingProfiles .csv
    #[arg(long, value_name = "DIR")]
    cgrates: PathBuf,
    /// Where to write the catalogue (TOML)
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
    /// The currency of the tariff plan's prices
    #[arg(long, default_value = "USD")]
    currency: String,
    /// The IANA zone its timings are in (CGRateS: the server's)
    #[arg(long, default_value = "UTC")]
    zone: String,
    /// The class every destination gets: national, international, mobile, fixed, on_net, premium
    #[arg(long, default_value = "national")]
    class: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RecordKind {
    Voice,
    Sms,
    Data,
}

#[derive(Args, Debug)]
pub struct PriceArgs {
    /// The catalogue file
    file: PathBuf,
    /// The subscriber's plan
    #[arg(long)]
    plan: String,
    /// What is priced
    #[arg(long, value_enum, default_value = "voice")]
    kind: RecordKind,
    /// The number called or messaged (voice, sms), in any spelling; --default-country-code applies to national ones
    #[arg(long, value_name = "NUMBER")]
    to: Option<String>,
    /// When it started (RFC 3339, e.g. 2024-03-04T07:00:00Z): picks the version and the band
    #[arg(long, value_name = "TIME")]
    at: String,
    /// Call duration
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Data session volume
    #[arg(long, default_value_t = 0)]
    bytes: u64,
}

fn load(path: &Path) -> Result<Catalogue> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the catalogue {}", path.display()))?;
    Catalogue::from_toml(&text).with_context(|| format!("in the catalogue {}", path.display()))
}

pub fn run(settings: &Settings, command: CatalogueCommand) -> Result<()> {
    match command {
        CatalogueCommand::Check { file } => {
            let catalogue = load(&file)?;
            for v in catalogue.versions() {
                let mut plans: Vec<&str> = v.plans().collect();
                plans.sort_unstable();
                println!(
                    "version {} from {} ({}, {}): {} destinations, {} prefixes, plans {}",
                    v.id,
                    format_timestamp(v.effective_from),
                    v.currency,
                    v.zone_name,
                    v.destinations(),
                    v.prefixes(),
                    plans.join(", ")
                );
            }
            Ok(())
        }
        CatalogueCommand::Price(args) => price(settings, args),
        CatalogueCommand::Import(args) => import(args),
    }
}

fn import(args: ImportArgs) -> Result<()> {
    let dir = &args.cgrates;
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let options = ImportOptions {
        currency: args.currency,
        zone: args.zone,
        class: args.class,
    };
    let text = cdrflow_catalogue::cgrates::import(&read, &options)
        .with_context(|| format!("importing the CGRateS tariff plan in {}", dir.display()))?;
    std::fs::write(&args.output, &text)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let catalogue = Catalogue::from_toml(&text)?;
    for v in catalogue.versions() {
        let mut plans: Vec<&str> = v.plans().collect();
        plans.sort_unstable();
        println!(
            "wrote {}: version from {}, {} destinations, {} prefixes, plans {}",
            args.output.display(),
            format_timestamp(v.effective_from),
            v.destinations(),
            v.prefixes(),
            plans.join(", ")
        );
    }
    Ok(())
}

fn price(settings: &Settings, args: PriceArgs) -> Result<()> {
    let catalogue = load(&args.file)?;
    let start = parse_timestamp(&args.at).map_err(|e| {
        anyhow::anyhow!(
            "--at {}: {e:?}; write RFC 3339, e.g. 2024-03-04T07:00:00Z",
            args.at
        )
    })?;
    let to = || -> Result<_> {
        let Some(text) = &args.to else {
            bail!("--to NUMBER is needed for a {:?} record", args.kind)
        };
        normalize_msisdn(text, settings.country_code)
            .map_err(|why| anyhow::anyhow!("--to {text}: {why}"))
    };
    let usage = match args.kind {
        RecordKind::Voice => Usage::Voice {
            to: to()?,
            start,
            seconds: args.seconds,
        },
        RecordKind::Sms => Usage::Sms { to: to()?, start },
        RecordKind::Data => Usage::Data {
            start,
            bytes: args.bytes,
        },
    };
    let priced = catalogue
        .version_for(&usage)
        .and_then(|v| v.explain(&args.plan, &usage))?;
    for step in &priced.steps {
        println!("{step}");
    }
    println!(
        "cost {} {} (version {}, rate {}, {} billed)",
        format_micros(i128::from(priced.cost_micros)),
        priced.currency,
        priced.version,
        priced.rate,
        priced.billed_units
    );
    Ok(())
}
