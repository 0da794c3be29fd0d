//! The catalogue file (TOML; `config/catalogue.toml` documents it) and its
//! validation. Every mistake is named by its place: version, section, id.

use std::collections::BTreeSet;

use cdrflow_core::model::Kind;
use cdrflow_core::money::Decimal;
use cdrflow_core::normalize::parse_timestamp;
use cdrflow_core::rating::{intern, AllowanceOffer, Grant, Validity};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::bands::{Band, WEEKDAYS};
use crate::model::{
    Allowance, Bundle, Catalogue, DataRate, Destination, DestinationClass, Discount, FeeRate,
    Nanos, Plan, Rounding, RoundingPoint, Slot, SmsRate, Target, Version, VoiceRate, Wholesale,
};
use crate::prefixes::Prefixes;

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("{at}: {why}")]
    Invalid { at: String, why: String },
}

fn invalid(at: impl Into<String>, why: impl Into<String>) -> CatalogueError {
    CatalogueError::Invalid {
        at: at.into(),
        why: why.into(),
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CatalogueFile {
    pub(crate) version: Vec<VersionFile>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionFile {
    pub(crate) id: String,
    pub(crate) effective_from: String,
    pub(crate) currency: String,
    pub(crate) zone: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) holidays: Vec<String>,
    pub(crate) destination: Vec<DestinationFile>,
    pub(crate) band: Vec<BandFile>,
    pub(crate) plan: Vec<PlanFile>,
    /// Bundles subscribers buy (a `bundles` reference row names one): an
    /// allowance granted once per purchase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) bundle: Vec<AllowanceFile>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DestinationFile {
    pub(crate) id: String,
    pub(crate) class: String,
    pub(crate) prefixes: Vec<String>,
    /// What the operator pays to terminate a minute of voice there
    /// (product cost analysis: revenue less wholesale is the margin).
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) wholesale_per_minute: Option<String>,
    /// ... and a message.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) wholesale_per_message: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BandFile {
    pub(crate) id: String,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) days: Option<Vec<String>>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) from: Option<String>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) to: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) holidays: bool,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanFile {
    pub(crate) id: String,
    /// A postpaid subscription's recurring fee, prorated by days on invoices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) monthly_fee: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) voice: Vec<VoiceFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) sms: Vec<SmsFile>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<DataFile>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) activation: Option<FeeFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) discount: Vec<DiscountFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) allowance: Vec<AllowanceFile>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllowanceFile {
    pub(crate) id: String,
    /// voice (seconds), sms (messages), data (bytes) or money.
    pub(crate) kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) units: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) amount: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) bands: Vec<String>,
    /// A plan's: day or period [default: period].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) validity: Option<String>,
    /// A bundle's: the days from the purchase it can be used, when the
    /// purchase gives no expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) days: Option<u32>,
    #[serde(default)]
    pub(crate) priority: u32,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscountFile {
    pub(crate) id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) class: Option<String>,
    pub(crate) percent: String,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeeFile {
    pub(crate) id: String,
    pub(crate) price: String,
    pub(crate) rounding: String,
    pub(crate) decimals: u32,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VoiceFile {
    pub(crate) id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) destination: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) band: Option<String>,
    #[serde(default = "zero")]
    pub(crate) connect_fee: String,
    /// One price with FIRST/NEXT increments, or `slot`s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) price: Option<String>,
    #[serde(default = "sixty")]
    pub(crate) per_seconds: u64,
    /// FIRST/NEXT seconds with `price` [default: 1/1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) increments: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) slot: Vec<SlotFile>,
    #[serde(default = "zero")]
    pub(crate) min_charge: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_charge: Option<String>,
    pub(crate) rounding: String,
    pub(crate) decimals: u32,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlotFile {
    pub(crate) from_seconds: u64,
    pub(crate) price: String,
    #[serde(default = "sixty")]
    pub(crate) per_seconds: u64,
    pub(crate) increment: u64,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SmsFile {
    pub(crate) id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) destination: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) band: Option<String>,
    pub(crate) price: String,
    pub(crate) rounding: String,
    pub(crate) decimals: u32,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DataFile {
    pub(crate) id: String,
    pub(crate) price: String,
    pub(crate) per_bytes: u64,
    #[serde(default = "one")]
    pub(crate) session_increment_bytes: u64,
    pub(crate) rounding: String,
    pub(crate) decimals: u32,
}

fn zero() -> String {
    "0".into()
}
fn sixty() -> u64 {
    60
}
fn one() -> u64 {
    1
}

fn nanos(at: &str, text: &str) -> Result<Nanos, CatalogueError> {
    let decimal = Decimal::parse(text)
        .map_err(|_| invalid(at, format!("`{text}` is not a decimal number")))?;
    if decimal.is_negative() {
        return Err(invalid(at, format!("`{text}` is negative")));
    }
    decimal
        .scaled_to_integer(9)
        .ok_or_else(|| invalid(at, format!("`{text}` has more than 9 decimal places")))
}

fn rounding_point(
    at: &str,
    rounding: &str,
    decimals: u32,
) -> Result<RoundingPoint, CatalogueError> {
    let rounding = Rounding::parse(rounding).ok_or_else(|| {
        invalid(
            format!("{at}.rounding"),
            format!("`{rounding}`: expected half_up, half_even, up or down"),
        )
    })?;
    if decimals > 6 {
        return Err(invalid(
            format!("{at}.decimals"),
            format!("{decimals}: costs are kept in micro-units, at most 6 decimals"),
        ));
    }
    Ok(RoundingPoint { rounding, decimals })
}

/// A voice rate's slots: its `slot` tables, or one `price` with FIRST/NEXT `increments`.
fn voice_slots(here: &str, r: &VoiceFile) -> Result<Vec<Slot>, CatalogueError> {
    let slots = match (&r.price, r.slot.is_empty()) {
        (Some(_), false) => return Err(invalid(here, "gives both `price` and `slot`s")),
        (None, true) => return Err(invalid(here, "needs a `price` (or `slot`s)")),
        (Some(price), true) => {
            let increments = r.increments.as_deref().unwrap_or("1/1");
            let (first, next) = increments
                .split_once('/')
                .and_then(|(a, b)| {
                    Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?))
                })
                .ok_or_else(|| {
                    invalid(
                        format!("{here}.increments"),
                        format!(
                            "`{increments}`: expected FIRST/NEXT seconds, e.g. 60/60, 30/6, 1/1"
                        ),
                    )
                })?;
            let price = nanos(&format!("{here}.price"), price)?;
            let slot = |from_seconds, increment| Slot {
                from_seconds,
                price,
                per_seconds: r.per_seconds,
                increment,
            };
            vec![slot(0, first), slot(first, next)]
        }
        (None, false) => r
            .slot
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Ok(Slot {
                    from_seconds: s.from_seconds,
                    price: nanos(&format!("{here}.slot[{i}].price"), &s.price)?,
                    per_seconds: s.per_seconds,
                    increment: s.increment,
                })
            })
            .collect::<Result<_, CatalogueError>>()?,
    };
    if slots.iter().any(|s| s.increment == 0 || s.per_seconds == 0) {
        return Err(invalid(here, "increments and per_seconds must be above 0"));
    }
    if slots[0].from_seconds != 0
        || slots
            .windows(2)
            .any(|w| w[0].from_seconds >= w[1].from_seconds)
    {
        return Err(invalid(
            here,
            "slots must start at 0 s and follow each other in order",
        ));
    }
    Ok(slots)
}

/// The record kinds a discount can name (cdrflow's own names: `voice`, not `call`).
fn allowance(
    here: &str,
    a: AllowanceFile,
    band_ids: &BTreeSet<&str>,
) -> Result<Allowance, CatalogueError> {
    let (kind, grant) = match (a.kind.as_str(), a.units, &a.amount) {
        ("money", None, Some(amount)) => {
            let at = format!("{here}.amount");
            let nanos = nanos(&at, amount)?;
            if nanos % 1000 != 0 {
                // Balances and charges are micro-units: never drop a digit silently.
                return Err(invalid(at, format!("`{amount}` has more than 6 decimal places")));
            }
            let micros = nanos / 1000;
            (None, Grant::Money(i64::try_from(micros).map_err(|_| invalid(format!("{here}.amount"), "too large"))?))
        }
        (kind @ ("voice" | "sms" | "data"), Some(units), None) => {
            (Some(kind_named(kind).expect("a usage kind")), Grant::Units(units))
        }
        ("money", _, _) => return Err(invalid(here, "a money allowance gives an `amount` (and no `units`)")),
        ("voice" | "sms" | "data", _, _) => {
            return Err(invalid(here, "a voice, sms or data allowance gives `units` (seconds, messages or bytes), not an `amount`"))
        }
        (other, _, _) => {
            return Err(invalid(format!("{here}.kind"), format!("`{other}`: expected voice, sms, data or money")))
        }
    };
    let classes = a
        .classes
        .iter()
        .map(|c| {
            DestinationClass::parse(c)
                .ok_or_else(|| invalid(format!("{here}.classes"), format!("`{c}` is not a class")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(band) = a.bands.iter().find(|b| !band_ids.contains(b.as_str())) {
        return Err(invalid(
            format!("{here}.bands"),
            format!("`{band}` is not a band of this version"),
        ));
    }
    let validity = match a.validity.as_deref() {
        None | Some("period") => Validity::Period,
        Some("day") => Validity::Day,
        Some(other) => {
            return Err(invalid(
                format!("{here}.validity"),
                format!("`{other}`: expected day or period"),
            ))
        }
    };
    Ok(Allowance {
        offer: AllowanceOffer {
            id: intern(&a.id),
            grant,
            validity,
            priority: a.priority,
        },
        kind,
        classes,
        bands: a.bands,
    })
}

fn kind_named(name: &str) -> Option<Kind> {
    Kind::parse(name).filter(|k| *k != Kind::Recharge)
}

fn minute_of_day(at: &str, text: &str) -> Result<u16, CatalogueError> {
    let bad = || {
        invalid(
            at,
            format!("`{text}` is not a time of day HH:MM (00:00 to 24:00)"),
        )
    };
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Catalogue {
    pub fn from_toml(text: &str) -> Result<Catalogue, CatalogueError> {
        let file: CatalogueFile = toml::from_str(text)?;
        let mut versions = Vec::with_capacity(file.version.len());
        let mut ids = BTreeSet::new();
        for v in file.version {
            if !ids.insert(v.id.clone()) {
                return Err(invalid(format!("version `{}`", v.id), "given twice"));
            }
            versions.push(version(v)?);
        }
        versions.sort_by_key(|v| v.effective_from);
        if let Some(w) = versions
            .windows(2)
            .find(|w| w[0].effective_from == w[1].effective_from)
        {
            return Err(invalid(
                format!("versions `{}` and `{}`", w[0].id, w[1].id),
                "are in force from the same instant",
            ));
        }
        if versions.is_empty() {
            return Err(invalid("catalogue", "has no [[version]]"));
        }
        if let Some(v) = versions.iter().find(|v| v.currency != versions[0].currency) {
            return Err(invalid(
                format!("version `{}`.currency", v.id),
                format!(
                    "`{}`: every version prices in one currency (`{}`)",
                    v.currency, versions[0].currency
                ),
            ));
        }
        Ok(Catalogue { versions })
    }
}

fn version(v: VersionFile) -> Result<Version, CatalogueError> {
    let at = format!("version `{}`", v.id);
    let effective_from = parse_timestamp(&v.effective_from).map_err(|e| {
        invalid(
            format!("{at}.effective_from"),
            format!("`{}`: {e:?}", v.effective_from),
        )
    })?;
    let zone = jiff::tz::TimeZone::get(&v.zone).map_err(|e| {
        invalid(
            format!("{at}.zone"),
            format!("`{}` is not an IANA time zone ({e})", v.zone),
        )
    })?;
    let mut holidays = BTreeSet::new();
    for day in &v.holidays {
        let date: jiff::civil::Date = day.parse().map_err(|_| {
            invalid(
                format!("{at}.holidays"),
                format!("`{day}` is not a date YYYY-MM-DD"),
            )
        })?;
        holidays.insert(date);
    }
    let mut destinations = Vec::new();
    let mut prefixes = Prefixes::default();
    let mut destination_ids = BTreeSet::new();
    for d in v.destination {
        let here = format!("{at}, destination `{}`", d.id);
        if !destination_ids.insert(d.id.clone()) {
            return Err(invalid(here, "given twice"));
        }
        let class = DestinationClass::parse(&d.class).ok_or_else(|| {
            invalid(
                format!("{here}.class"),
                format!(
                    "`{}`: expected one of {}",
                    d.class,
                    DestinationClass::ALL.map(|c| c.as_str()).join(", ")
                ),
            )
        })?;
        for prefix in &d.prefixes {
            if let Some(other) = prefixes
                .insert(prefix, destinations.len())
                .map_err(|why| invalid(format!("{here}.prefixes"), why))?
            {
                let other: &Destination = &destinations[other];
                return Err(invalid(
                    format!("{here}.prefixes"),
                    format!("prefix {prefix} is destination `{}`'s already", other.id),
                ));
            }
        }
        let wholesale = |field: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| nanos(&format!("{here}.{field}"), t))
                .transpose()
        };
        destinations.push(Destination {
            id: intern(&d.id),
            class,
            wholesale: Wholesale {
                per_minute_nanos: wholesale("wholesale_per_minute", &d.wholesale_per_minute)?,
                per_message_nanos: wholesale("wholesale_per_message", &d.wholesale_per_message)?,
            },
        });
    }
    let mut bands = Vec::new();
    for b in v.band {
        let here = format!("{at}, band `{}`", b.id);
        let mut days = [b.days.is_none(); 7];
        for day in b.days.iter().flatten() {
            let index = WEEKDAYS.iter().position(|w| w == day).ok_or_else(|| {
                invalid(
                    format!("{here}.days"),
                    format!("`{day}`: expected {}", WEEKDAYS.join(", ")),
                )
            })?;
            days[index] = true;
        }
        let from_minute = match &b.from {
            Some(t) => minute_of_day(&format!("{here}.from"), t)?,
            None => 0,
        };
        let to_minute = match &b.to {
            Some(t) => minute_of_day(&format!("{here}.to"), t)?,
            None => 1440,
        };
        if from_minute >= to_minute {
            return Err(invalid(here, "`from` must be before `to`"));
        }
        bands.push(Band {
            id: intern(&b.id),
            days,
            from_minute,
            to_minute,
            holiday: b.holidays,
        });
    }
    let band_ids: BTreeSet<&str> = bands.iter().map(|b| &*b.id).collect();
    let target =
        |here: &str, destination: Option<String>, class: Option<String>| match (destination, class)
        {
            (Some(_), Some(_)) => Err(invalid(here, "names both a destination and a class")),
            (Some(d), None) if destination_ids.contains(&d) => Ok(Target::Destination(d)),
            (Some(d), None) => Err(invalid(
                format!("{here}.destination"),
                format!("`{d}` is not a destination of this version"),
            )),
            (None, Some(c)) => DestinationClass::parse(&c)
                .map(Target::Class)
                .ok_or_else(|| invalid(format!("{here}.class"), format!("`{c}` is not a class"))),
            (None, None) => Ok(Target::Any),
        };
    let band_ref = |here: &str, band: Option<String>| match band {
        Some(b) if !band_ids.contains(b.as_str()) => Err(invalid(
            format!("{here}.band"),
            format!("`{b}` is not a band of this version"),
        )),
        band => Ok(band),
    };
    let mut plans = FxHashMap::default();
    for p in v.plan {
        let here = format!("{at}, plan `{}`", p.id);
        let mut voice = Vec::new();
        for r in p.voice {
            let here = format!("{here}, voice rate `{}`", r.id);
            let slots = voice_slots(&here, &r)?;
            voice.push(VoiceRate {
                target: target(&here, r.destination, r.class)?,
                band: band_ref(&here, r.band)?,
                connect_fee: nanos(&format!("{here}.connect_fee"), &r.connect_fee)?,
                slots,
                min_charge: nanos(&format!("{here}.min_charge"), &r.min_charge)?,
                max_charge: r
                    .max_charge
                    .as_deref()
                    .map(|cap| nanos(&format!("{here}.max_charge"), cap))
                    .transpose()?,
                round: rounding_point(&here, &r.rounding, r.decimals)?,
                id: intern(&r.id),
            });
        }
        let mut sms = Vec::new();
        for r in p.sms {
            let here = format!("{here}, sms rate `{}`", r.id);
            sms.push(SmsRate {
                target: target(&here, r.destination, r.class)?,
                band: band_ref(&here, r.band)?,
                price: nanos(&format!("{here}.price"), &r.price)?,
                round: rounding_point(&here, &r.rounding, r.decimals)?,
                id: intern(&r.id),
            });
        }
        let data = match p.data {
            None => None,
            Some(r) => {
                let here = format!("{here}, data rate `{}`", r.id);
                if r.per_bytes == 0 || r.session_increment_bytes == 0 {
                    return Err(invalid(
                        here,
                        "per_bytes and session_increment_bytes must be above 0",
                    ));
                }
                Some(DataRate {
                    price: nanos(&format!("{here}.price"), &r.price)?,
                    per_bytes: r.per_bytes,
                    session_increment_bytes: r.session_increment_bytes,
                    round: rounding_point(&here, &r.rounding, r.decimals)?,
                    id: intern(&r.id),
                })
            }
        };
        let activation = match p.activation {
            None => None,
            Some(r) => {
                let here = format!("{here}, activation rate `{}`", r.id);
                Some(FeeRate {
                    price: nanos(&format!("{here}.price"), &r.price)?,
                    round: rounding_point(&here, &r.rounding, r.decimals)?,
                    id: intern(&r.id),
                })
            }
        };
        let mut discounts = Vec::new();
        for d in p.discount {
            let here = format!("{here}, discount `{}`", d.id);
            let kind = match d.kind.as_deref() {
                None => None,
                Some(k) => Some(kind_named(k).ok_or_else(|| {
                    invalid(
                        format!("{here}.kind"),
                        format!("`{k}`: expected voice, sms, data or activation"),
                    )
                })?),
            };
            let class = match d.class.as_deref() {
                None => None,
                Some(c) => Some(DestinationClass::parse(c).ok_or_else(|| {
                    invalid(format!("{here}.class"), format!("`{c}` is not a class"))
                })?),
            };
            let percent = Decimal::parse(&d.percent)
                .ok()
                .and_then(|p| p.scaled_to_integer(3))
                .filter(|p| (0..=100_000).contains(p))
                .ok_or_else(|| {
                    invalid(
                        format!("{here}.percent"),
                        format!(
                            "`{}`: expected a percentage from 0 to 100, at most 3 decimals",
                            d.percent
                        ),
                    )
                })?;
            discounts.push(Discount {
                id: d.id,
                kind,
                class,
                percent_milli: percent as u64,
            });
        }
        let mut allowances = Vec::new();
        for a in p.allowance {
            if a.days.is_some() {
                return Err(invalid(
                    format!("{here}, allowance `{}`.days", a.id),
                    "a plan's allowance is granted each `validity` span; `days` is a bundle's",
                ));
            }
            allowances.push(allowance(
                &format!("{here}, allowance `{}`", a.id),
                a,
                &band_ids,
            )?);
        }
        // Priority, then the one that expires first (a day's before a period's).
        allowances.sort_by(|a: &Allowance, b: &Allowance| {
            (a.offer.priority, &a.offer.validity).cmp(&(b.offer.priority, &b.offer.validity))
        });
        let monthly_fee = p
            .monthly_fee
            .as_deref()
            .map(|fee| nanos(&format!("{here}.monthly_fee"), fee))
            .transpose()?;
        let plan = Plan {
            monthly_fee,
            voice,
            sms,
            data,
            activation,
            discounts,
            allowances,
        };
        if plans.insert(p.id.clone(), plan).is_some() {
            return Err(invalid(here, "given twice"));
        }
    }
    let mut bundles = FxHashMap::default();
    for b in v.bundle {
        let here = format!("{at}, bundle `{}`", b.id);
        if b.days == Some(0) {
            return Err(invalid(
                format!("{here}.days"),
                "0: a bundle must last at least a day",
            ));
        }
        if b.validity.is_some() {
            return Err(invalid(
                format!("{here}.validity"),
                "a bundle lasts from its purchase: give `days` (or an expiry in the purchase)",
            ));
        }
        let (id, days) = (b.id.clone(), b.days);
        let bundle = Bundle {
            allowance: allowance(&here, b, &band_ids)?,
            days,
        };
        if bundles.insert(id, bundle).is_some() {
            return Err(invalid(here, "given twice"));
        }
    }
    let version = Version {
        id: intern(&v.id),
        effective_from,
        currency: v.currency,
        zone_name: v.zone,
        zone,
        holidays,
        destinations,
        prefixes,
        bands,
        plans,
        bundles,
    };
    if let Some((day, minute)) = version.uncovered_minute() {
        return Err(invalid(
            at,
            format!(
                "no band covers {} {:02}:{:02}: every minute of the week needs one",
                WEEKDAYS[day],
                minute / 60,
                minute % 60
            ),
        ));
    }
    Ok(version)
}
