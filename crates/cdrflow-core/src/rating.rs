//! Rating: what a record costs, exactly.
//!
//! The pipeline only sees the [`Rater`] trait. [`Tariff`] is seed 000's flat
//! price list (data per GB, voice per minute billed in increments, a price per
//! SMS and per activation); a full catalogue with plans, destinations by
//! prefix, time bands and bundles is another `Rater` and plugs in unchanged.

use std::sync::Arc;

use serde::Deserialize;

use crate::model::{Cdr, Kind};
use crate::money::{div_round_half_away, Decimal, RoundingPoint, MICROS_PER_UNIT};
use crate::reference::{normalize_technology, LiveReference, Payment};

/// The tariff cdrflow ships with: seed 000's prices.
pub const DEFAULT_TARIFF_TOML: &str = include_str!("../../../config/tariff.toml");

/// Prices a record. Implementations are pure and shared across threads.
pub trait Rater: Send + Sync {
    /// The record's cost in micro-units of [`Rater::currency`], at the
    /// rate's one rounding point, and what decided it.
    fn rate(&self, cdr: &Cdr<'_>) -> Result<Rating, RatingError>;

    /// The currency costs are expressed in (seed 000: WAK).
    fn currency(&self) -> &str;

    /// The currency recharge amounts are in.
    fn recharge_currency(&self) -> &str;

    /// The reference data the rater joins, when it has any: change events
    /// applied to it reach the records rated after.
    fn live_reference(&self) -> Option<&LiveReference> {
        None
    }
}

/// `name` as a `&'static str`, the same one every time it is asked for.
///
/// A catalogue's names (versions, destinations, bands, rates, allowances)
/// are copied into every record's rating and rated row; as shared `Arc`s
/// each copy and drop touched a reference count somewhere in a
/// 50,000-prefix catalogue — a cache miss per name per record, a third of
/// the rater's time on its benchmark. Interned, copying one is copying a
/// pointer. Each distinct name is leaked once for the life of the process:
/// loading a catalogue again with the same names costs nothing more.
pub fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::LazyLock<std::sync::Mutex<rustc_hash::FxHashSet<&'static str>>> =
        std::sync::LazyLock::new(Default::default);
    // A poisoned set is still a valid set: names are only ever added.
    let mut names = NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match names.get(name) {
        Some(known) => known,
        None => {
            let leaked: &'static str = Box::leak(name.into());
            names.insert(leaked);
            leaked
        }
    }
}

/// A name a rating carries: a static one (the flat tariff's, a
/// technology, a catalogue's [interned](intern) names) costs nothing to
/// copy; one read back from a store is shared. Classifier threads copy
/// names for every record, so rating must not touch a shared reference
/// count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Name::Static(name) => name,
            Name::Shared(name) => name,
        }
    }
}

impl From<&Arc<str>> for Name {
    fn from(name: &Arc<str>) -> Name {
        Name::Shared(name.clone())
    }
}

impl From<String> for Name {
    fn from(name: String) -> Name {
        Name::Shared(name.into())
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

/// What a record cost and everything that decided it: a rated record's
/// columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rating {
    pub cost_micros: i64,
    /// Seconds, messages or bytes billed (after increments).
    pub billed_units: u64,
    pub plan: Name,
    /// The catalogue version in force at the record's start (`tariff` for
    /// the flat tariff).
    pub version: Name,
    pub rate: Name,
    pub band: Option<Name>,
    /// Calls and messages: the destination by prefix and its class.
    pub destination: Option<(Name, &'static str)>,
    /// The subscriber's account at the record's event time; `None`: the
    /// number is in no subscribers row (rated on the default plan).
    pub account: Option<Account>,
    /// The rater looked for the subscriber in the reference data and found
    /// no row in force: rated on the default plan, and counted.
    pub unknown_subscriber: bool,
    /// The price before rounding, for the share allowances leave (`None`:
    /// a rater without allowances).
    pub exact: Option<ExactPrice>,
    /// The plan's allowances that may pay for it, in the order they are
    /// used: priority, then the one that expires first.
    pub allowances: Offers,
    /// Enrichment: the region of the record's cell, else of its
    /// subscriber (a record's own region comes first where it has one).
    pub region: Option<Arc<str>>,
    /// Its cell's technology, else its own code, as a generation (`4G`);
    /// `None` for a code cdrflow does not know.
    pub technology: Option<&'static str>,
}

/// A record's price before its one rounding: `numerator / denominator`
/// billionths, rounded at `round`. What the share of a record an
/// allowance does not cover is priced from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExactPrice {
    pub numerator: i128,
    pub denominator: i128,
    pub round: RoundingPoint,
}

impl ExactPrice {
    /// The price of `units` of the record's `billed` units (a share of
    /// everything: connect fee, increments, discount), rounded once.
    pub fn share(&self, units: u64, billed: u64) -> Option<i64> {
        if billed == 0 {
            return Some(0);
        }
        let numerator = self.numerator.checked_mul(i128::from(units))?;
        let denominator = self.denominator.checked_mul(i128::from(billed))?;
        self.round.nanos_to_micros(numerator, denominator)
    }
}

/// How long an allowance's grant lasts: it is granted again for each.
/// In this order when priorities tie: the one that expires first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Validity {
    /// A calendar day (the summary zone's).
    Day,
    /// The subscriber's billing period (by the customer's bill-cycle day).
    Period,
    /// A bundle purchase (its id): granted once, from the purchase until
    /// the bundle expires (the rater offers it only then).
    Purchase(Arc<str>),
}

/// What an allowance gives each validity span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Seconds, messages or bytes of the record's own kind.
    Units(u64),
    /// Money off any record it covers, in micro-units.
    Money(i64),
}

/// The allowances that may pay for one record: two kept inline (plans
/// rarely offer more for one record), so rating a record allocates no
/// list for them.
pub type Offers = smallvec::SmallVec<[AllowanceOffer; 2]>;

/// An allowance of the subscriber's plan that may pay for a record (its
/// kind, destination class and band match).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowanceOffer {
    /// [Interned](intern): the same pointer for the same id.
    pub id: &'static str,
    pub grant: Grant,
    pub validity: Validity,
    /// Lower first.
    pub priority: u32,
}

/// Who pays for a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub customer_id: Arc<str>,
    pub payment: Payment,
    /// The customer's bill-cycle day (1 when the customer is not loaded).
    pub bill_cycle_day: u8,
}

impl Rating {
    /// The day of the month the record's billing period starts: its
    /// customer's, 1 without one.
    pub fn bill_cycle_day(&self) -> u8 {
        self.account.as_ref().map_or(1, |a| a.bill_cycle_day)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    #[error("the cost of this record does not fit in 64 bits of micro-units")]
    Overflow,
    /// No rate covers the record: it is refused (`no_rate`), never priced at 0.
    #[error("{0}")]
    NoRate(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TariffError {
    #[error("tariff file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("tariff value `{field}` = `{value}` is invalid: {why}")]
    Value {
        field: &'static str,
        value: String,
        why: String,
    },
}

/// The tariff file's shape (see `config/tariff.toml`). Prices are strings so
/// that they stay exact decimals.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TariffFile {
    currency: String,
    wak_per_zar: String,
    bytes_per_gb: u64,
    data: DataPrices,
    voice: VoicePrices,
    sms: SmsPrices,
    activation: ActivationPrices,
    recharge: RechargeSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataPrices {
    zar_per_gb: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoicePrices {
    zar_per_minute: String,
    billing_increment_sec: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmsPrices {
    zar_per_message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivationPrices {
    zar_per_activation: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RechargeSettings {
    currency: String,
}

/// Overrides that seed 000 took from the environment.
#[derive(Debug, Default, Clone)]
pub struct TariffOverrides {
    pub wak_per_zar: Option<String>,
    pub bytes_per_gb: Option<u64>,
}

/// A price per unit as an exact fraction: `cost_micros = round(units × numerator / denominator)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UnitPrice {
    numerator: i128,
    denominator: i128,
}

impl UnitPrice {
    /// `price × rate` per `per_units` units, in micro-units.
    fn new(price: Decimal, rate: Decimal, per_units: i128) -> UnitPrice {
        let numerator = price.mantissa * rate.mantissa * MICROS_PER_UNIT;
        let denominator = per_units * 10i128.pow(price.scale + rate.scale);
        let divisor = gcd(numerator, denominator).max(1);
        UnitPrice {
            numerator: numerator / divisor,
            denominator: denominator / divisor,
        }
    }

    fn cost(self, units: u64) -> Result<i64, RatingError> {
        let scaled = i128::from(units)
            .checked_mul(self.numerator)
            .ok_or(RatingError::Overflow)?;
        i64::try_from(div_round_half_away(scaled, self.denominator))
            .map_err(|_| RatingError::Overflow)
    }
}

/// Seed 000's flat tariff, generalised to all five kinds.
#[derive(Debug, Clone)]
pub struct Tariff {
    /// What its ratings name: plan `flat`, version `tariff`, a rate per kind.
    rates: [&'static str; 5],
    currency: String,
    recharge_currency: String,
    per_byte: UnitPrice,
    per_second: UnitPrice,
    billing_increment_sec: u64,
    per_sms: UnitPrice,
    per_activation: UnitPrice,
}

impl Tariff {
    pub fn from_toml(text: &str, overrides: &TariffOverrides) -> Result<Tariff, TariffError> {
        let file: TariffFile = toml::from_str(text)?;
        let wak_per_zar = overrides.wak_per_zar.clone().unwrap_or(file.wak_per_zar);
        let bytes_per_gb = overrides.bytes_per_gb.unwrap_or(file.bytes_per_gb);
        let rate = price("wak_per_zar", &wak_per_zar)?;
        if bytes_per_gb == 0 {
            return Err(TariffError::Value {
                field: "bytes_per_gb",
                value: "0".into(),
                why: "must be positive".into(),
            });
        }
        if file.voice.billing_increment_sec == 0 {
            return Err(TariffError::Value {
                field: "voice.billing_increment_sec",
                value: "0".into(),
                why: "must be at least 1 (1 = per-second billing)".into(),
            });
        }
        Ok(Tariff {
            rates: Kind::ALL.map(Kind::as_str),
            currency: file.currency,
            recharge_currency: file.recharge.currency,
            per_byte: UnitPrice::new(
                price("data.zar_per_gb", &file.data.zar_per_gb)?,
                rate,
                i128::from(bytes_per_gb),
            ),
            per_second: UnitPrice::new(
                price("voice.zar_per_minute", &file.voice.zar_per_minute)?,
                rate,
                60,
            ),
            billing_increment_sec: file.voice.billing_increment_sec,
            per_sms: UnitPrice::new(
                price("sms.zar_per_message", &file.sms.zar_per_message)?,
                rate,
                1,
            ),
            per_activation: UnitPrice::new(
                price(
                    "activation.zar_per_activation",
                    &file.activation.zar_per_activation,
                )?,
                rate,
                1,
            ),
        })
    }

    /// The shipped tariff with seed 000's environment overrides applied.
    pub fn default_with(overrides: &TariffOverrides) -> Result<Tariff, TariffError> {
        Tariff::from_toml(DEFAULT_TARIFF_TOML, overrides)
    }
}

impl Rater for Tariff {
    fn rate(&self, cdr: &Cdr<'_>) -> Result<Rating, RatingError> {
        let (billed_units, cost_micros) = match cdr.kind {
            Kind::Data => {
                let bytes = cdr
                    .uplink_bytes
                    .checked_add(cdr.downlink_bytes)
                    .ok_or(RatingError::Overflow)?;
                (bytes, self.per_byte.cost(bytes)?)
            }
            Kind::Voice => {
                let increment = self.billing_increment_sec;
                let billed = cdr
                    .duration_sec
                    .div_ceil(increment)
                    .checked_mul(increment)
                    .ok_or(RatingError::Overflow)?;
                (billed, self.per_second.cost(billed)?)
            }
            Kind::Sms => (1, self.per_sms.cost(1)?),
            Kind::Activation => (1, self.per_activation.cost(1)?),
            Kind::Recharge => (0, 0),
        };
        Ok(Rating {
            cost_micros,
            billed_units,
            plan: Name::Static("flat"),
            version: Name::Static("tariff"),
            rate: Name::Static(self.rates[cdr.kind as usize]),
            band: None,
            destination: None,
            account: None,
            unknown_subscriber: false,
            exact: None,
            allowances: Offers::new(),
            region: None,
            technology: cdr
                .radio_technology
                .as_deref()
                .and_then(normalize_technology),
        })
    }

    fn currency(&self) -> &str {
        &self.currency
    }

    fn recharge_currency(&self) -> &str {
        &self.recharge_currency
    }
}

fn price(field: &'static str, text: &str) -> Result<Decimal, TariffError> {
    let invalid = |why: String| TariffError::Value {
        field,
        value: text.to_string(),
        why,
    };
    let value = Decimal::parse(text).map_err(|e| invalid(e.to_string()))?;
    if value.is_negative() {
        return Err(invalid("prices must not be negative".into()));
    }
    if value.scale > 9 {
        return Err(invalid("use at most 9 decimal places".into()));
    }
    Ok(value)
}

fn gcd(a: i128, b: i128) -> i128 {
    let (mut a, mut b) = (a.abs(), b.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{decode, DecodeOptions};
    use crate::model::SourcePosition;

    fn cost(line: &str, tariff: &Tariff) -> i64 {
        let cdr = decode(
            line.as_bytes(),
            SourcePosition::Line {
                line: 1,
                byte_offset: 0,
            },
            &DecodeOptions::default(),
        )
        .unwrap();
        tariff.rate(&cdr).unwrap().cost_micros
    }

    fn data(bytes: u64) -> String {
        format!(
            r#"{{"msisdn":"27821234567","event_datetime":"2024-03-01T10:00:00Z","data_type":"v","up_bytes":0,"down_bytes":{bytes}}}"#
        )
    }

    fn voice(seconds: u64) -> String {
        format!(
            r#"{{"msisdn":"27821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":{seconds}}}"#
        )
    }

    #[test]
    fn seed_000_prices_round_half_away_to_six_places() {
        let t = Tariff::default_with(&TariffOverrides::default()).unwrap();
        assert_eq!(cost(&voice(1), &t), 16_667); // 0.016667
        assert_eq!(cost(&voice(60), &t), 1_000_000);
        assert_eq!(cost(&data(20_408), &t), 1_000); // 0.00099999 -> 0.001000
        assert_eq!(cost(&data(10_204), &t), 500); // 0.000499996 -> 0.000500
        assert_eq!(cost(&data(1_000_000_000), &t), 49_000_000);
        // A petabyte session: 49,000,000 WAK, no overflow.
        assert_eq!(cost(&data(1_000_000_000_000_000), &t), 49_000_000_000_000);
        assert_eq!(cost(&data(0), &t), 0);
    }

    #[test]
    fn environment_overrides_apply() {
        let overrides = TariffOverrides {
            wak_per_zar: Some("2.5".into()),
            bytes_per_gb: Some(1 << 30),
        };
        let t = Tariff::default_with(&overrides).unwrap();
        assert_eq!(cost(&voice(60), &t), 2_500_000);
        assert_eq!(cost(&data(1 << 30), &t), 122_500_000);
    }

    #[test]
    fn billing_increments_round_calls_up() {
        let text =
            DEFAULT_TARIFF_TOML.replace("billing_increment_sec = 1", "billing_increment_sec = 60");
        let t = Tariff::from_toml(&text, &TariffOverrides::default()).unwrap();
        assert_eq!(cost(&voice(1), &t), 1_000_000);
        assert_eq!(cost(&voice(61), &t), 2_000_000);
    }

    #[test]
    fn refuses_inexact_or_bad_prices() {
        let text = DEFAULT_TARIFF_TOML.replace(r#"zar_per_gb = "49.00""#, "zar_per_gb = 49.0");
        assert!(matches!(
            Tariff::from_toml(&text, &TariffOverrides::default()),
            Err(TariffError::Toml(_))
        ));
        let overrides = TariffOverrides {
            wak_per_zar: Some("-1".into()),
            ..Default::default()
        };
        assert!(Tariff::default_with(&overrides).is_err());
    }
}
