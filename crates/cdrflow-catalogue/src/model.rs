//! A loaded catalogue: validated, indexed, ready to price.

use std::collections::BTreeSet;

use cdrflow_core::model::Kind;
pub use cdrflow_core::money::{Rounding, RoundingPoint};
use cdrflow_core::normalize::EpochMillis;
use cdrflow_core::rating::{AllowanceOffer, Validity};
use cdrflow_core::reference::{BundlePurchase, ALWAYS};
use rustc_hash::FxHashMap;

use crate::bands::Band;
use crate::prefixes::Prefixes;

/// Every version of the catalogue, oldest first.
#[derive(Debug)]
pub struct Catalogue {
    pub(crate) versions: Vec<Version>,
}

impl Catalogue {
    /// The version in force at `time`: the latest whose start is not after it.
    pub fn version_at(&self, time: EpochMillis) -> Option<&Version> {
        let after = self.versions.partition_point(|v| v.effective_from <= time);
        after.checked_sub(1).map(|i| &self.versions[i])
    }

    pub fn versions(&self) -> &[Version] {
        &self.versions
    }
}

impl cdrflow_core::billing::invoice::MonthlyFees for Catalogue {
    fn monthly_fee_nanos(&self, plan: &str, at: EpochMillis) -> Option<i128> {
        self.version_at(at)?.monthly_fee_nanos(plan)
    }
}

/// A rated record names its version; its wholesale cost is that version's.
impl cdrflow_core::billing::reports::WholesaleCosts for Catalogue {
    fn per_minute_nanos(&self, version: &str, destination: &str) -> Option<i128> {
        self.wholesale_of(version, destination)?.per_minute_nanos
    }

    fn per_message_nanos(&self, version: &str, destination: &str) -> Option<i128> {
        self.wholesale_of(version, destination)?.per_message_nanos
    }
}

impl Catalogue {
    fn wholesale_of(&self, version: &str, destination: &str) -> Option<Wholesale> {
        self.versions
            .iter()
            .find(|v| v.id == version)?
            .wholesale(destination)
    }
}

#[derive(Debug)]
pub struct Version {
    pub id: &'static str,
    pub effective_from: EpochMillis,
    pub currency: String,
    pub zone_name: String,
    pub(crate) zone: jiff::tz::TimeZone,
    pub(crate) holidays: BTreeSet<jiff::civil::Date>,
    pub(crate) destinations: Vec<Destination>,
    pub(crate) prefixes: Prefixes,
    pub(crate) bands: Vec<Band>,
    pub(crate) plans: FxHashMap<String, Plan>,
    pub(crate) bundles: FxHashMap<String, Bundle>,
}

impl Version {
    pub fn destinations(&self) -> usize {
        self.destinations.len()
    }

    /// The wholesale costs of destination `id` (`None`: no such destination).
    pub fn wholesale(&self, id: &str) -> Option<Wholesale> {
        self.destinations
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.wholesale)
    }

    pub fn prefixes(&self) -> usize {
        self.prefixes.len()
    }

    pub fn has_plan(&self, plan: &str) -> bool {
        self.plans.contains_key(plan)
    }

    /// `plan`'s monthly fee in billionths of the currency (`None`: no fee, or no such plan).
    pub fn monthly_fee_nanos(&self, plan: &str) -> Option<i128> {
        self.plans.get(plan)?.monthly_fee
    }

    pub fn plans(&self) -> impl Iterator<Item = &str> {
        self.plans.keys().map(String::as_str)
    }
}

#[derive(Debug)]
pub(crate) struct Destination {
    pub id: &'static str,
    pub class: DestinationClass,
    pub wholesale: Wholesale,
}

/// What terminating traffic at a destination costs the operator, in
/// billionths of the currency (`None`: not given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wholesale {
    pub per_minute_nanos: Option<i128>,
    pub per_message_nanos: Option<i128>,
}

/// What kind of number a destination is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DestinationClass {
    National,
    International,
    Mobile,
    Fixed,
    /// The network's own ranges.
    OnNet,
    Premium,
    /// Emergency and other free numbers: always cost nothing.
    ZeroRated,
}

impl DestinationClass {
    pub const ALL: [DestinationClass; 7] = [
        DestinationClass::National,
        DestinationClass::International,
        DestinationClass::Mobile,
        DestinationClass::Fixed,
        DestinationClass::OnNet,
        DestinationClass::Premium,
        DestinationClass::ZeroRated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DestinationClass::National => "national",
            DestinationClass::International => "international",
            DestinationClass::Mobile => "mobile",
            DestinationClass::Fixed => "fixed",
            DestinationClass::OnNet => "on_net",
            DestinationClass::Premium => "premium",
            DestinationClass::ZeroRated => "zero_rated",
        }
    }

    pub fn parse(text: &str) -> Option<DestinationClass> {
        DestinationClass::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

/// An amount of money, in billionths of the version's currency: prices such
/// as 0.006 per minute stay exact.
pub(crate) type Nanos = i128;

/// Which records a rate is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Destination(String),
    Class(DestinationClass),
    Any,
}

/// One stretch of a call's duration, from `from_seconds` until the next
/// slot's start: billed in whole `increment`s at `price` per `per_seconds`
/// (CGRateS' rate slots with their GroupIntervalStart). `increments =
/// "30/6"` is two slots of one price: 30 s increments from 0, 6 s from 30.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub from_seconds: u64,
    pub price: Nanos,
    pub per_seconds: u64,
    pub increment: u64,
}

#[derive(Debug)]
pub(crate) struct VoiceRate {
    pub id: &'static str,
    pub target: Target,
    pub band: Option<String>,
    pub connect_fee: Nanos,
    /// In order of `from_seconds`, the first from 0.
    pub slots: Vec<Slot>,
    pub min_charge: Nanos,
    pub max_charge: Option<Nanos>,
    pub round: RoundingPoint,
}

#[derive(Debug)]
pub(crate) struct SmsRate {
    pub id: &'static str,
    pub target: Target,
    pub band: Option<String>,
    pub price: Nanos,
    pub round: RoundingPoint,
}

#[derive(Debug)]
pub(crate) struct DataRate {
    pub id: &'static str,
    pub price: Nanos,
    pub per_bytes: u64,
    pub session_increment_bytes: u64,
    pub round: RoundingPoint,
}

#[derive(Debug)]
pub(crate) struct FeeRate {
    pub id: &'static str,
    pub price: Nanos,
    pub round: RoundingPoint,
}

/// A percentage off a record's cost, before its rounding.
#[derive(Debug)]
pub(crate) struct Discount {
    pub id: String,
    /// `None`: every kind.
    pub kind: Option<Kind>,
    /// `None`: every destination (and records without one).
    pub class: Option<DestinationClass>,
    /// Thousandths of a percent (10% is 10,000).
    pub percent_milli: u64,
}

impl Discount {
    pub fn applies(&self, kind: Kind, class: Option<DestinationClass>) -> bool {
        self.kind.is_none_or(|k| k == kind) && self.class.is_none_or(|c| Some(c) == class)
    }
}

/// An allowance of a plan: what it grants per validity span, and which
/// records it may pay for.
#[derive(Debug)]
pub(crate) struct Allowance {
    pub offer: AllowanceOffer,
    /// Unit allowances: the kind whose units they are (`None`: money, for
    /// every kind).
    pub kind: Option<Kind>,
    /// Empty: every class (and records without a destination).
    pub classes: Vec<DestinationClass>,
    /// Empty: every band.
    pub bands: Vec<String>,
}

impl Allowance {
    pub fn covers(&self, kind: Kind, class: Option<DestinationClass>, band: &str) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && (self.classes.is_empty() || class.is_some_and(|c| self.classes.contains(&c)))
            && (self.bands.is_empty() || self.bands.iter().any(|b| b == band))
    }
}

/// A bundle of the catalogue: its allowance (validity: the purchase's),
/// and how long a purchase lasts when its row gives no expiry.
#[derive(Debug)]
pub(crate) struct Bundle {
    pub allowance: Allowance,
    /// `None`: until the purchase's `expires_at`, or for ever.
    pub days: Option<u32>,
}

impl Bundle {
    /// What `purchase` of this bundle offers a record of `kind`, `class`
    /// and `band` at `at`: nothing once it expired or if it does not cover
    /// the record.
    pub fn offer(
        &self,
        purchase: &BundlePurchase,
        (kind, class, band): (Kind, Option<DestinationClass>, &str),
        at: EpochMillis,
    ) -> Option<AllowanceOffer> {
        const DAY_MILLIS: i64 = 86_400_000;
        // A row in force "from always" (a snapshot's) has no start to count days from.
        let lasts = self
            .days
            .filter(|_| purchase.effective_from != ALWAYS)
            .map(|days| {
                purchase
                    .effective_from
                    .saturating_add(i64::from(days) * DAY_MILLIS)
            });
        let expires = purchase.expires_at.or(lasts);
        if expires.is_some_and(|end| at >= end) || !self.allowance.covers(kind, class, band) {
            return None;
        }
        Some(AllowanceOffer {
            validity: Validity::Purchase(purchase.purchase_id.clone()),
            ..self.allowance.offer.clone()
        })
    }
}

/// A plan's rates, each list in priority order (the first that matches).
#[derive(Debug)]
pub(crate) struct Plan {
    /// Billionths; `None`: no recurring fee.
    pub monthly_fee: Option<Nanos>,
    pub voice: Vec<VoiceRate>,
    pub sms: Vec<SmsRate>,
    pub data: Option<DataRate>,
    pub activation: Option<FeeRate>,
    /// The first that applies is taken.
    pub discounts: Vec<Discount>,
    /// In the order they are used: priority, then earliest expiry.
    pub allowances: Vec<Allowance>,
}
