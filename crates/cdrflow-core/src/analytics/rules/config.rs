//! The rules file: thresholds and severities, read from TOML
//! (`config/rules.toml` is the shipped one and its documentation).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::Severity;
use crate::money::Decimal;

pub const DEFAULT_RULES_TOML: &str = include_str!("../../../../../config/rules.toml");

/// A rule's threshold and severity, as the rules file gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold<T> {
    pub above: T,
    pub severity: Severity,
}

/// `sim_box`: one MSISDN's outgoing calls in one hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimBoxConfig {
    /// More outgoing calls than this in one hour…
    pub above: u32,
    /// …from at most this many cells, with no incoming call, SMS or data.
    pub max_cells: u32,
    pub severity: Severity,
}

/// `wangiri`: one international number's very short calls to distinct subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WangiriConfig {
    /// More distinct subscribers than this called in one hour…
    pub above: u32,
    /// …each call lasting at most this many seconds.
    pub max_duration_sec: u64,
    pub severity: Severity,
}

/// `impossible_travel`: the least time between two regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TravelConfig {
    pub default_ms: i64,
    /// Pairs (in name order) whose travel time is not the default.
    pub between: BTreeMap<(String, String), i64>,
    pub severity: Severity,
}

impl TravelConfig {
    /// The least time one person needs from one region to the other.
    pub fn least_ms(&self, a: &str, b: &str) -> i64 {
        let pair = if a <= b { (a, b) } else { (b, a) };
        // A BTreeMap of owned pairs cannot be asked with borrowed ones; the
        // table is a few dozen pairs, and only region changes ask it.
        self.between
            .iter()
            .find(|((x, y), _)| x == pair.0 && y == pair.1)
            .map_or(self.default_ms, |(_, ms)| *ms)
    }

    /// The longest travel time in the table: how far back a record looks.
    pub fn horizon_ms(&self) -> i64 {
        self.between
            .values()
            .copied()
            .chain([self.default_ms])
            .max()
            .unwrap_or(0)
            .max(60_000)
    }
}

/// `volume_spike`: a region and event type against its own baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeSpikeConfig {
    /// More events in one window than this many times the baseline…
    /// (thousandths: `"3"` is 3000).
    pub factor_milli: u64,
    /// …and more than this many events…
    pub min_events: u64,
    /// …once the baseline has this many earlier windows.
    pub min_history: u64,
    pub severity: Severity,
}

/// The rules in force; `None` is a rule switched off (`enabled = false`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    /// `long_call`: a call longer than this many seconds.
    pub long_call: Option<Threshold<u64>>,
    /// `large_data_session`: more bytes than this in one data record.
    pub large_data_session: Option<Threshold<u64>>,
    /// `large_recharge`: a recharge above this, in micro-units.
    pub large_recharge: Option<Threshold<i64>>,
    /// `high_frequency`: more on-time records than this from one MSISDN in one window.
    pub high_frequency: Option<Threshold<u64>>,
    pub sim_box: Option<SimBoxConfig>,
    pub impossible_travel: Option<Arc<TravelConfig>>,
    pub wangiri: Option<WangiriConfig>,
    pub volume_spike: Option<VolumeSpikeConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("`{field}` = {value:?}: {why}")]
    Value {
        field: &'static str,
        value: String,
        why: String,
    },
}

fn enabled() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    long_call: RuleFile<u64>,
    large_data_session: RuleFile<String>,
    large_recharge: RuleFile<String>,
    high_frequency: RuleFile<u64>,
    sim_box: SimBoxFile,
    impossible_travel: TravelFile,
    wangiri: WangiriFile,
    volume_spike: VolumeSpikeFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile<T> {
    #[serde(default = "enabled")]
    enabled: bool,
    above: T,
    severity: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimBoxFile {
    #[serde(default = "enabled")]
    enabled: bool,
    above: u32,
    max_cells: u32,
    severity: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TravelFile {
    #[serde(default = "enabled")]
    enabled: bool,
    default_minutes: u32,
    severity: String,
    #[serde(default)]
    between: Vec<TravelPairFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TravelPairFile {
    regions: [String; 2],
    minutes: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WangiriFile {
    #[serde(default = "enabled")]
    enabled: bool,
    above: u32,
    max_duration_sec: u64,
    severity: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeSpikeFile {
    #[serde(default = "enabled")]
    enabled: bool,
    factor: String,
    min_events: u64,
    min_history: u64,
    severity: String,
}

fn value_error(field: &'static str, value: &str, why: &str) -> RulesError {
    RulesError::Value {
        field,
        value: value.into(),
        why: why.into(),
    }
}

fn severity(field: &'static str, text: &str) -> Result<Severity, RulesError> {
    Severity::parse(text)
        .ok_or_else(|| value_error(field, text, "expected low, medium, high or critical"))
}

/// A non-negative decimal scaled to `places` decimal places.
fn scaled(field: &'static str, text: &str, places: u32) -> Result<i128, RulesError> {
    let decimal = Decimal::parse(text).map_err(|_| {
        value_error(
            field,
            text,
            "not a decimal number (write it as a string, e.g. \"50000\")",
        )
    })?;
    let scaled = decimal
        .scaled_to_integer(places)
        .ok_or_else(|| value_error(field, text, &format!("more than {places} decimal places")))?;
    if scaled < 0 {
        return Err(value_error(field, text, "must not be negative"));
    }
    Ok(scaled)
}

fn micros<T: TryFrom<i128>>(field: &'static str, text: &str) -> Result<T, RulesError> {
    T::try_from(scaled(field, text, 6)?).map_err(|_| value_error(field, text, "too large"))
}

/// A rule as the file gives it, or `None` when it is switched off.
fn when<T>(
    enabled: bool,
    build: impl FnOnce() -> Result<T, RulesError>,
) -> Result<Option<T>, RulesError> {
    enabled.then(build).transpose()
}

impl RulesConfig {
    pub fn from_toml(text: &str) -> Result<RulesConfig, RulesError> {
        let file: RulesFile = toml::from_str(text)?;
        let (data, recharge) = (&file.large_data_session, &file.large_recharge);
        let travel = &file.impossible_travel;
        let mut between = BTreeMap::new();
        for pair in &travel.between {
            let [a, b] = pair.regions.clone();
            if a == b {
                return Err(value_error(
                    "impossible_travel.between.regions",
                    &a,
                    "names one region twice",
                ));
            }
            let key = if a <= b { (a, b) } else { (b, a) };
            let text = format!("{} and {}", key.0, key.1);
            if between
                .insert(key, i64::from(pair.minutes) * 60_000)
                .is_some()
            {
                return Err(value_error(
                    "impossible_travel.between",
                    &text,
                    "given twice",
                ));
            }
        }
        let spike = &file.volume_spike;
        Ok(RulesConfig {
            long_call: when(file.long_call.enabled, || {
                Ok(Threshold {
                    above: file.long_call.above,
                    severity: severity("long_call.severity", &file.long_call.severity)?,
                })
            })?,
            // A megabyte is 10^6 bytes: the micro-megabytes are bytes.
            large_data_session: when(data.enabled, || {
                Ok(Threshold {
                    above: micros("large_data_session.above", &data.above)?,
                    severity: severity("large_data_session.severity", &data.severity)?,
                })
            })?,
            large_recharge: when(recharge.enabled, || {
                Ok(Threshold {
                    above: micros("large_recharge.above", &recharge.above)?,
                    severity: severity("large_recharge.severity", &recharge.severity)?,
                })
            })?,
            high_frequency: when(file.high_frequency.enabled, || {
                Ok(Threshold {
                    above: file.high_frequency.above,
                    severity: severity("high_frequency.severity", &file.high_frequency.severity)?,
                })
            })?,
            sim_box: when(file.sim_box.enabled, || {
                Ok(SimBoxConfig {
                    above: file.sim_box.above,
                    max_cells: file.sim_box.max_cells,
                    severity: severity("sim_box.severity", &file.sim_box.severity)?,
                })
            })?,
            impossible_travel: when(travel.enabled, || {
                Ok(Arc::new(TravelConfig {
                    default_ms: i64::from(travel.default_minutes) * 60_000,
                    between,
                    severity: severity("impossible_travel.severity", &travel.severity)?,
                }))
            })?,
            wangiri: when(file.wangiri.enabled, || {
                Ok(WangiriConfig {
                    above: file.wangiri.above,
                    max_duration_sec: file.wangiri.max_duration_sec,
                    severity: severity("wangiri.severity", &file.wangiri.severity)?,
                })
            })?,
            volume_spike: when(spike.enabled, || {
                let factor_milli = scaled("volume_spike.factor", &spike.factor, 3)?;
                Ok(VolumeSpikeConfig {
                    factor_milli: u64::try_from(factor_milli).map_err(|_| {
                        value_error("volume_spike.factor", &spike.factor, "too large")
                    })?,
                    min_events: spike.min_events,
                    min_history: spike.min_history.max(1),
                    severity: severity("volume_spike.severity", &spike.severity)?,
                })
            })?,
        })
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig::from_toml(DEFAULT_RULES_TOML).expect("the shipped rules file is valid")
    }
}
