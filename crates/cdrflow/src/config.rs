//! Settings shared by every command, resolved as flags > environment >
//! config file > defaults. Clap reads flags and environment into `Option`s;
//! the config file fills what both left empty; defaults fill the rest.

use cdrflow_core::country::Country;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cdrflow_catalogue::{Catalogue, CatalogueRater};
use cdrflow_core::analytics::raw_events::{RawEventsConfig, DEFAULT_RETENTION_DAYS};
use cdrflow_core::analytics::rules::RulesConfig;
use cdrflow_core::analytics::windows::{
    WindowConfig, DEFAULT_ALLOWED_LATENESS_MS, DEFAULT_IDLE_AFTER_MS, DEFAULT_WINDOW_MS,
};
use cdrflow_core::charging::{ChargingConfig, DEFAULT_LOW_BALANCE_MICROS};
use cdrflow_core::formats::{DecodeOptions, Format};
use cdrflow_core::mediation::{MediationConfig, DEFAULT_DEDUP_HORIZON_DAYS};
use cdrflow_core::money::Decimal;
use cdrflow_core::normalize::{CountryCode, SummaryZone};
use cdrflow_core::rating::{Rater, Tariff, TariffOverrides};
use cdrflow_store::postgres_store::PgStore;
use cdrflow_store::sqlite::SqliteStore;
use cdrflow_store::Store;
use serde::Deserialize;

use crate::kafka::KafkaFileSettings;

pub const DEFAULT_DATA_DIR: &str = "./cdrflow-data";
pub const DEFAULT_CONFIG_FILE: &str = "cdrflow.toml";

#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Config file (TOML). Defaults to ./cdrflow.toml when it exists.
    #[arg(long, global = true, env = "CDRFLOW_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory for the embedded store and generated files [default: ./cdrflow-data]
    #[arg(long, global = true, env = "CDRFLOW_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Store: postgres://USER@HOST/DB[?sslmode=verify-full&sslrootcert=ca.pem],
    /// or sqlite:PATH [default: sqlite in the data dir]
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,

    /// A file holding the store URL (for a password kept out of the
    /// environment, e.g. a mounted secret)
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL_FILE",
        value_name = "FILE",
        conflicts_with = "store"
    )]
    pub store_file: Option<PathBuf>,

    /// Tariff file (TOML) [default: the shipped seed 000 tariff]
    #[arg(long, global = true, env = "CDRFLOW_TARIFF", value_name = "FILE")]
    pub tariff: Option<PathBuf>,

    /// Price records with this product catalogue instead of the flat tariff
    /// (TOML; config/catalogue.toml documents the format)
    #[arg(
        long,
        global = true,
        env = "CDRFLOW_CATALOGUE",
        value_name = "FILE",
        conflicts_with = "tariff"
    )]
    pub catalogue: Option<PathBuf>,

    /// The catalogue plan of numbers in no subscribers row (`cdrflow reference load subscribers`)
    #[arg(long, global = true, env = "CDRFLOW_DEFAULT_PLAN", value_name = "PLAN")]
    pub default_plan: Option<String>,

    /// Country code given to national numbers (leading 0) [default: 27]
    #[arg(long, global = true, env = "DEFAULT_COUNTRY_CODE", value_name = "CC")]
    pub default_country_code: Option<String>,

    /// The country the records come from (config/countries/<cc>.toml): its
    /// numbering plan turns national numbers, old ones included, into E.164
    /// (`--format ber` reads it; without it the default country code does)
    #[arg(long, global = true, env = "CDRFLOW_COUNTRY_FILE", value_name = "FILE")]
    pub country_file: Option<PathBuf>,

    /// Zone whose calendar decides the summary date: UTC or a fixed offset like +02:00 [default: UTC]
    #[arg(long, global = true, env = "CDRFLOW_SUMMARY_ZONE", value_name = "ZONE")]
    pub summary_zone: Option<String>,

    /// Days behind the newest event whose record identities stay in memory;
    /// older days are read from the store when a record needs them [default: 7]
    #[arg(
        long,
        global = true,
        env = "CDRFLOW_DEDUP_WINDOW_DAYS",
        value_name = "DAYS"
    )]
    pub dedup_window_days: Option<u32>,

    /// Days behind the newest event a duplicate is still caught; older
    /// records are refused as late_beyond_dedup_window [default: 62, two
    /// months of back-filling]
    #[arg(
        long,
        global = true,
        env = "CDRFLOW_DEDUP_HORIZON_DAYS",
        value_name = "DAYS"
    )]
    pub dedup_horizon_days: Option<u32>,

    /// WAK per ZAR, overriding the tariff file (seed 000's variable)
    #[arg(long, global = true, env = "WAK_PER_ZAR", value_name = "RATE")]
    pub wak_per_zar: Option<String>,

    /// Bytes per billed GB, overriding the tariff file (seed 000's variable)
    #[arg(long, global = true, env = "BYTES_PER_GB", value_name = "BYTES")]
    pub bytes_per_gb: Option<u64>,

    /// Anomaly and fraud rules file (TOML) [default: the shipped config/rules.toml: seed 003's four rules and four fraud patterns]
    #[arg(long, global = true, env = "CDRFLOW_RULES", value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// Size of the tumbling analytics windows, aligned to the epoch in UTC [default: 5]
    #[arg(
        long,
        global = true,
        env = "CDRFLOW_WINDOW_MINUTES",
        value_name = "MINUTES"
    )]
    pub window_minutes: Option<u32>,

    /// How far behind its partition's newest event a record may be and
    /// still count in its window; later ones are kept as late events [default: 60]
    #[arg(
        long,
        global = true,
        env = "CDRFLOW_ALLOWED_LATENESS_SECONDS",
        value_name = "SECONDS"
    )]
    pub allowed_lateness_seconds: Option<u32>,

    /// A partition that read nothing for this long (behind the busiest)
    /// no longer holds windows open [default: 300]
    #[arg(
        long,
        global = true,
        env = "CDRFLOW_IDLE_PARTITION_SECONDS",
        value_name = "SECONDS"
    )]
    pub idle_partition_seconds: Option<u32>,

    /// Keep every accepted record in seed 003's raw_events table (on|off);
    /// the daily batch's statistics come from it [default: on]
    #[arg(long, global = true, env = "CDRFLOW_RAW_EVENTS", value_name = "on|off", value_parser = parse_switch)]
    pub raw_events: Option<bool>,

    /// Days of raw events the daily batch's cleanup keeps, the batch's date
    /// included [default: 7]
    #[arg(
        long,
        global = true,
        env = "CDRFLOW_RAW_EVENTS_RETENTION_DAYS",
        value_name = "DAYS"
    )]
    pub raw_events_retention_days: Option<u32>,

    /// Keep a rated record (plan, destination, band, rate, billed units,
    /// cost, billing period) per accepted record in `rated_records`
    /// (on|off) [default: on with a catalogue, off with the flat tariff]
    #[arg(long, global = true, env = "CDRFLOW_RATED_RECORDS", value_name = "on|off", value_parser = parse_switch)]
    pub rated_records: Option<bool>,

    /// Write the accepted records (`mediated/kind=…/date=…/`) and the rated
    /// records (`rated/period=YYYY-MM/`) as zstd Parquet files under DIR,
    /// exactly once with the store's commits; `cdrflow bill` writes the
    /// period's invoices there too (`invoices/period=YYYY-MM/`) [default: no lake]
    #[arg(long, global = true, env = "CDRFLOW_LAKE", value_name = "DIR")]
    pub lake: Option<PathBuf>,

    /// Alert (`low_balance`) when a prepaid balance falls under this amount
    /// in the catalogue's currency; 0 turns it off [default: 10, seed 004's]
    #[arg(
        long,
        global = true,
        env = "CDRFLOW_LOW_BALANCE",
        value_name = "AMOUNT"
    )]
    pub low_balance: Option<String>,
}

fn parse_switch(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        other => Err(format!("`{other}` is neither on nor off")),
    }
}

/// The config file's keys; each mirrors a flag of the same name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    store: Option<String>,
    store_file: Option<PathBuf>,
    tariff: Option<PathBuf>,
    catalogue: Option<PathBuf>,
    default_plan: Option<String>,
    default_country_code: Option<String>,
    country_file: Option<PathBuf>,
    summary_zone: Option<String>,
    dedup_window_days: Option<u32>,
    dedup_horizon_days: Option<u32>,
    wak_per_zar: Option<String>,
    bytes_per_gb: Option<u64>,
    rules: Option<PathBuf>,
    window_minutes: Option<u32>,
    allowed_lateness_seconds: Option<u32>,
    idle_partition_seconds: Option<u32>,
    raw_events: Option<bool>,
    raw_events_retention_days: Option<u32>,
    rated_records: Option<bool>,
    lake: Option<PathBuf>,
    low_balance: Option<String>,
    batch_size: Option<usize>,
    /// How to reach Kafka: `bootstrap` and the security settings.
    #[serde(default)]
    kafka: KafkaFileSettings,
}

/// Fully resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// `None`: the embedded SQLite store in the data dir.
    pub store: Option<String>,
    pub tariff_file: Option<PathBuf>,
    pub tariff_overrides: TariffOverrides,
    /// With a plan: the catalogue prices records, not the tariff.
    pub catalogue: Option<(PathBuf, String)>,
    pub country_code: CountryCode,
    /// `--country-file`, read and checked once (kept for the process's life).
    pub country: Option<&'static Country>,
    pub zone: SummaryZone,
    pub dedup_window_days: u32,
    pub dedup_horizon_days: u32,
    pub windows: WindowConfig,
    pub rules: RulesConfig,
    pub raw_events: RawEventsConfig,
    /// The rater's currency is filled in when a scope starts.
    pub charging: ChargingConfig,
    /// Rated records go to the store's `rated_records` (else only to the lake).
    pub rated_records_in_store: bool,
    /// Where the Parquet lake is, when there is one.
    pub lake: Option<PathBuf>,
    /// From the config file only; commands with a `--batch-size` flag override it.
    pub batch_size: Option<usize>,
    /// The config file's `[kafka]` table, under the Kafka flags of the
    /// commands that talk to Kafka (`KafkaArgs::cluster`).
    pub kafka: KafkaFileSettings,
}

impl Settings {
    pub fn resolve(args: &GlobalArgs) -> Result<Settings> {
        let file = load_config_file(args.config.as_deref())?;
        let country = args
            .default_country_code
            .clone()
            .or(file.default_country_code);
        let zone = args.summary_zone.clone().or(file.summary_zone);
        let dedup_window_days = args
            .dedup_window_days
            .or(file.dedup_window_days)
            .unwrap_or(7);
        if dedup_window_days == 0 {
            bail!("the dedup window must be at least 1 day");
        }
        let dedup_horizon_days = args
            .dedup_horizon_days
            .or(file.dedup_horizon_days)
            .unwrap_or(DEFAULT_DEDUP_HORIZON_DAYS as u32);
        if dedup_horizon_days < dedup_window_days {
            bail!(
                "the dedup horizon ({dedup_horizon_days} days) must be at least the in-memory dedup window ({dedup_window_days} days)"
            );
        }
        let window_minutes = args
            .window_minutes
            .or(file.window_minutes)
            .unwrap_or((DEFAULT_WINDOW_MS / 60_000) as u32);
        if window_minutes == 0 {
            bail!("analytics windows must be at least 1 minute long (--window-minutes)");
        }
        let seconds = |flag: Option<u32>, file: Option<u32>, default: i64| {
            flag.or(file).map_or(default, |s| i64::from(s) * 1000)
        };
        let windows = WindowConfig {
            size_ms: i64::from(window_minutes) * 60_000,
            allowed_lateness_ms: seconds(
                args.allowed_lateness_seconds,
                file.allowed_lateness_seconds,
                DEFAULT_ALLOWED_LATENESS_MS,
            ),
            idle_after_ms: seconds(
                args.idle_partition_seconds,
                file.idle_partition_seconds,
                DEFAULT_IDLE_AFTER_MS,
            ),
        };
        let rules = match args.rules.clone().or(file.rules) {
            None => RulesConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read the rules file {}", path.display()))?;
                RulesConfig::from_toml(&text)
                    .with_context(|| format!("in the rules file {}", path.display()))?
            }
        };
        let raw_events = RawEventsConfig {
            keep: args.raw_events.or(file.raw_events).unwrap_or(true),
            retention_days: args
                .raw_events_retention_days
                .or(file.raw_events_retention_days)
                .unwrap_or(DEFAULT_RETENTION_DAYS),
        };
        if raw_events.retention_days == 0 {
            bail!("raw events must be kept for at least 1 day (--raw-events-retention-days); switch them off with --raw-events off");
        }
        let catalogue = match (
            args.catalogue.clone().or(file.catalogue),
            args.default_plan.clone().or(file.default_plan),
        ) {
            (Some(path), Some(plan)) => Some((path, plan)),
            (Some(path), None) => anyhow::bail!(
                "the catalogue {} needs --default-plan PLAN (CDRFLOW_DEFAULT_PLAN): the plan of numbers in no subscribers row",
                path.display()
            ),
            (None, _) => None,
        };
        let low_balance_micros = match args.low_balance.clone().or(file.low_balance) {
            None => Some(DEFAULT_LOW_BALANCE_MICROS),
            Some(text) => {
                let amount = Decimal::parse(&text)
                    .ok()
                    .filter(|d| !d.is_negative())
                    .and_then(|d| d.scaled_to_integer(6))
                    .and_then(|micros| i64::try_from(micros).ok())
                    .with_context(|| {
                        format!("--low-balance `{text}` is not an amount such as 10 or 2.50")
                    })?;
                (amount > 0).then_some(amount)
            }
        };
        let rated_records_in_store = args
            .rated_records
            .or(file.rated_records)
            .unwrap_or(catalogue.is_some());
        let lake = args.lake.clone().or(file.lake);
        let charging = ChargingConfig {
            rated_records: rated_records_in_store || lake.is_some(),
            low_balance_micros,
            ..ChargingConfig::default()
        };
        Ok(Settings {
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            store: secret_setting(
                (args.store.clone(), args.store_file.clone()),
                (file.store, file.store_file),
            )?,
            catalogue,
            rated_records_in_store,
            lake,
            tariff_file: args.tariff.clone().or(file.tariff),
            tariff_overrides: TariffOverrides {
                wak_per_zar: args.wak_per_zar.clone().or(file.wak_per_zar),
                bytes_per_gb: args.bytes_per_gb.or(file.bytes_per_gb),
            },
            country_code: match country {
                Some(text) => CountryCode::parse(&text).map_err(anyhow::Error::msg)?,
                None => CountryCode::default(),
            },
            country: match args.country_file.clone().or(file.country_file) {
                None => None,
                Some(path) => {
                    let text = std::fs::read_to_string(&path).with_context(|| {
                        format!("cannot read the country file {}", path.display())
                    })?;
                    let country = Country::parse(&text).with_context(|| {
                        format!(
                            "in the country file {} (see config/countries/README.md)",
                            path.display()
                        )
                    })?;
                    Some(&*Box::leak(Box::new(country)))
                }
            },
            zone: match zone {
                Some(text) => SummaryZone::parse(&text).map_err(anyhow::Error::msg)?,
                None => SummaryZone::UTC,
            },
            dedup_window_days,
            dedup_horizon_days,
            windows,
            rules,
            raw_events,
            charging,
            batch_size: file.batch_size,
            kafka: file.kafka,
        })
    }

    /// The lake, when `--lake` names one, with what earlier runs left staged
    /// finished (`store` says which of their files were committed).
    pub fn open_lake(&self, store: &mut dyn Store) -> Result<Option<crate::lake::LakeSink>> {
        self.lake
            .as_deref()
            .map(|dir| crate::lake::LakeSink::open(dir, self.rated_records_in_store, store))
            .transpose()
    }

    /// What prices records: the catalogue when one is configured (joined
    /// with the reference data in `store`), else the tariff.
    pub fn rater(&self, store: &mut dyn Store) -> Result<Box<dyn Rater>> {
        let (Some(catalogue), Some((path, plan))) = (self.load_catalogue()?, &self.catalogue)
        else {
            return Ok(Box::new(self.tariff()?));
        };
        let reference = store
            .reference()
            .context("cannot read the reference data (subscribers, customers, cells)")?;
        let rater = CatalogueRater::new(catalogue, plan, self.country_code, reference)
            .with_context(|| format!("in the catalogue {}", path.display()))?;
        Ok(Box::new(rater))
    }

    /// The configured catalogue, read and checked.
    pub fn load_catalogue(&self) -> Result<Option<Catalogue>> {
        let Some((path, _)) = &self.catalogue else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the catalogue {}", path.display()))?;
        let catalogue = Catalogue::from_toml(&text)
            .with_context(|| format!("in the catalogue {}", path.display()))?;
        Ok(Some(catalogue))
    }

    pub fn tariff(&self) -> Result<Tariff> {
        match &self.tariff_file {
            None => Ok(Tariff::default_with(&self.tariff_overrides)?),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the tariff file {}", path.display()))?;
                Tariff::from_toml(&text, &self.tariff_overrides)
                    .with_context(|| format!("in the tariff file {}", path.display()))
            }
        }
    }

    pub fn mediation(&self, format: Format) -> MediationConfig {
        MediationConfig {
            decode: DecodeOptions {
                format,
                default_country_code: self.country_code,
                country: self.country,
            },
            zone: self.zone,
            dedup_window_ms: i64::from(self.dedup_window_days) * 86_400_000,
            dedup_horizon_ms: i64::from(self.dedup_horizon_days) * 86_400_000,
            ..MediationConfig::default()
        }
    }

    /// Where results go, for messages.
    pub fn store_label(&self) -> String {
        match &self.store {
            Some(url) if is_postgres(url) => "PostgreSQL".to_string(),
            Some(url) => url.clone(),
            None => self.data_dir.join("cdrflow.db").display().to_string(),
        }
    }

    pub fn open_store(&self) -> Result<Box<dyn Store>> {
        match &self.store {
            Some(url) if is_postgres(url) => Ok(Box::new(PgStore::connect(url)?)),
            Some(url) => {
                let Some(path) = url.strip_prefix("sqlite:") else {
                    bail!("unknown store `{url}`: use postgres://USER@HOST/DB or sqlite:PATH");
                };
                let store = SqliteStore::open(Path::new(path))
                    .with_context(|| format!("opening the store {path}"))?;
                Ok(Box::new(store))
            }
            None => {
                let path = self.data_dir.join("cdrflow.db");
                let store = SqliteStore::open(&path)
                    .with_context(|| format!("opening the store {}", path.display()))?;
                Ok(Box::new(store))
            }
        }
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A secret kept in a file: its content without the line end.
fn read_secret(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// A secret given as a value or as a file holding it (`*_FILE`): the flags'
/// and environment's pair over the config file's, a value over a file.
pub fn secret_setting(
    flag: (Option<String>, Option<PathBuf>),
    file: (Option<String>, Option<PathBuf>),
) -> Result<Option<String>> {
    let given = if flag.0.is_some() || flag.1.is_some() {
        flag
    } else {
        file
    };
    match given {
        (Some(value), _) => Ok(Some(value)),
        (None, Some(path)) => read_secret(&path).map(Some),
        (None, None) => Ok(None),
    }
}

/// Does this store URL carry a password (`postgres://user:password@...`)?
fn has_password(url: &str) -> bool {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .is_some_and(|(credentials, _)| credentials.contains(':'))
}

fn load_config_file(explicit: Option<&Path>) -> Result<ConfigFile> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None if Path::new(DEFAULT_CONFIG_FILE).exists() => PathBuf::from(DEFAULT_CONFIG_FILE),
        None => return Ok(ConfigFile::default()),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let file: ConfigFile = toml::from_str(&text)
        .with_context(|| format!("the config file {} is invalid", path.display()))?;
    let secrets = [
        (
            file.store.as_deref().is_some_and(has_password),
            "a database password",
            "move the URL to store_file / DATABASE_URL_FILE",
        ),
        (
            file.kafka.holds_password(),
            "a Kafka password",
            "move it to [kafka] sasl_password_file / ssl_key_password_file",
        ),
    ];
    for (held, what, instead) in secrets {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).map_or(0, |m| m.permissions().mode());
        if held && mode & 0o077 != 0 {
            tracing::warn!(
                "the config file {} holds {what} and is readable by others (mode {:o}): chmod 600 it, or {instead}",
                path.display(),
                mode & 0o777
            );
        }
    }
    Ok(file)
}
