//! Pricing one record: the version in force at its start, its destination
//! (longest prefix), its band, the plan's first matching rate, the billed
//! units, and the cost rounded once.

use cdrflow_core::charging::RatedRecord;
use cdrflow_core::model::Kind;
use cdrflow_core::money::format_trimmed;
use cdrflow_core::normalize::{EpochMillis, Msisdn};
use cdrflow_core::rating::{ExactPrice, Offers};
use cdrflow_core::reference::BundlePurchase;

use crate::model::{Catalogue, DestinationClass, Nanos, RoundingPoint, Slot, Target, Version};

/// The rate a zero-rated destination's records name.
pub const ZERO_RATED: &str = "zero_rated";

/// The rates of records a catalogue does not price: money in, and calls
/// and messages received (the caller's operator charges them).
pub(crate) const RECHARGE: &str = "recharge";
pub(crate) const INCOMING: &str = "incoming";

/// What is to be priced.
#[derive(Clone, Copy, Debug)]
pub enum Usage {
    Voice {
        to: Msisdn,
        start: EpochMillis,
        seconds: u64,
    },
    Sms {
        to: Msisdn,
        start: EpochMillis,
    },
    Data {
        start: EpochMillis,
        bytes: u64,
    },
    /// A service activation (a bundle, roaming, voicemail).
    Activation {
        start: EpochMillis,
    },
}

/// 100% in thousandths of a percent.
const PERCENT_MILLI: i128 = 100_000;

impl Usage {
    fn kind(&self) -> Kind {
        match self {
            Usage::Voice { .. } => Kind::Voice,
            Usage::Sms { .. } => Kind::Sms,
            Usage::Data { .. } => Kind::Data,
            Usage::Activation { .. } => Kind::Activation,
        }
    }

    fn start(&self) -> EpochMillis {
        match *self {
            Usage::Voice { start, .. }
            | Usage::Sms { start, .. }
            | Usage::Data { start, .. }
            | Usage::Activation { start } => start,
        }
    }
}

/// A priced record: what it cost and everything that decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Priced<'c> {
    /// Names are the catalogue's own, interned: a rated record keeps them
    /// for the cost of a pointer.
    pub version: &'static str,
    pub currency: &'c str,
    /// Voice and SMS: the destination and its class.
    pub destination: Option<(&'static str, DestinationClass)>,
    pub band: &'static str,
    /// The rate used ([`ZERO_RATED`] for a zero-rated destination).
    pub rate: &'static str,
    /// Seconds, messages or bytes billed.
    pub billed_units: u64,
    pub cost_micros: i64,
    /// The cost before its rounding (`None`: zero-rated).
    pub exact: Option<ExactPrice>,
    /// The plan's allowances that may pay for it, in the order they are used.
    pub allowances: Offers,
    /// How the cost came about, a step a line, for a person.
    pub steps: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("no catalogue version is in force at {0}")]
    NoVersion(String),
    #[error("plan `{plan}` is not in catalogue version `{version}`")]
    UnknownPlan { plan: String, version: String },
    #[error("no destination of catalogue version `{version}` has a prefix of {number}")]
    NoDestination { number: String, version: String },
    #[error("plan `{plan}` has no {kind} rate for destination `{destination}` in band `{band}`")]
    NoRate {
        plan: String,
        kind: &'static str,
        destination: String,
        band: String,
    },
    #[error("{0}")]
    Time(String),
    #[error("the cost does not fit in 64 bits of micro-units")]
    Overflow,
}

/// The seconds billed in each slot for a call of `seconds`: the stretch
/// of the call up to the next slot's start, in whole increments.
fn slot_units(seconds: u64, slots: &[Slot]) -> impl Iterator<Item = (&Slot, u64)> {
    slots.iter().enumerate().map(move |(i, slot)| {
        let end = slots.get(i + 1).map_or(u64::MAX, |next| next.from_seconds);
        let used = seconds.min(end).saturating_sub(slot.from_seconds);
        (slot, used.div_ceil(slot.increment) * slot.increment)
    })
}

/// A call of `seconds` over `slots`: the seconds billed and, over the least
/// common multiple of the slots' units, the exact price of them (nanos ×
/// that denominator).
fn bill(seconds: u64, slots: &[Slot]) -> (u64, i128, i128) {
    let denominator = slots
        .iter()
        .fold(1i128, |l, s| lcm(l, i128::from(s.per_seconds)));
    let (mut billed, mut numerator) = (0, 0i128);
    for (slot, units) in slot_units(seconds, slots) {
        numerator += slot.price * i128::from(units) * (denominator / i128::from(slot.per_seconds));
        billed += units;
    }
    (billed, numerator, denominator)
}

fn lcm(a: i128, b: i128) -> i128 {
    fn gcd(a: i128, b: i128) -> i128 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    a / gcd(a, b) * b
}

/// `numerator / denominator` nanos, rounded at `round`, as micro-units.
fn round_to_micros(
    numerator: i128,
    denominator: i128,
    round: RoundingPoint,
) -> Result<i64, PricingError> {
    round
        .nanos_to_micros(numerator, denominator)
        .ok_or(PricingError::Overflow)
}

fn money(nanos: Nanos) -> String {
    format_trimmed(nanos, 9)
}

/// `numerator / denominator` nanos, exactly (a quotient when it does not end).
fn exact(numerator: i128, denominator: i128) -> String {
    if numerator % denominator == 0 {
        money(numerator / denominator)
    } else {
        format!("{}/{}", money(numerator), denominator)
    }
}

fn micros_text(micros: i64) -> String {
    cdrflow_core::money::format_micros(i128::from(micros))
}

fn matches(target: &Target, destination: &str, class: DestinationClass) -> bool {
    match target {
        Target::Destination(id) => id == destination,
        Target::Class(c) => *c == class,
        Target::Any => true,
    }
}

impl Catalogue {
    /// A stored rated record priced again, step by step, by the version
    /// and plan it names. `None`: the record names a version this
    /// catalogue does not have, or is no usage it prices (a recharge, a
    /// received call).
    pub fn explain_rated<'c>(
        &'c self,
        record: &RatedRecord,
    ) -> Option<Result<Priced<'c>, PricingError>> {
        let version = self.versions.iter().find(|v| *v.id == *record.version)?;
        let start = record.event_time;
        let usage = match record.kind {
            Kind::Voice => Usage::Voice {
                to: record.other_party?,
                start,
                seconds: record.usage_units,
            },
            Kind::Sms => Usage::Sms {
                to: record.other_party?,
                start,
            },
            Kind::Data => Usage::Data {
                start,
                bytes: record.usage_units,
            },
            Kind::Activation => Usage::Activation { start },
            Kind::Recharge => return None,
        };
        if *record.rate == *INCOMING {
            return None;
        }
        Some(version.explain(&record.plan, &usage))
    }

    /// The version in force at `start`, or why there is none.
    pub fn version_in_force(&self, start: EpochMillis) -> Result<&Version, PricingError> {
        self.version_at(start).ok_or_else(|| {
            PricingError::NoVersion(cdrflow_core::normalize::format_timestamp(start))
        })
    }

    /// The version in force at the start of `usage`.
    pub fn version_for(&self, usage: &Usage) -> Result<&Version, PricingError> {
        self.version_in_force(usage.start())
    }

    /// Prices `usage` under `plan`, by the version in force at its start.
    pub fn price<'c>(&'c self, plan: &str, usage: &Usage) -> Result<Priced<'c>, PricingError> {
        self.version_for(usage)?.price(plan, usage)
    }
}

impl Version {
    fn destination_of(
        &self,
        number: Msisdn,
    ) -> Result<(&'static str, DestinationClass), PricingError> {
        let index = self
            .prefixes
            .longest_match(number.digits())
            .ok_or_else(|| PricingError::NoDestination {
                number: number.to_string(),
                version: self.id.to_string(),
            })?;
        let d = &self.destinations[index];
        Ok((&d.id, d.class))
    }

    /// Adds to `priced` (a record of `kind`) the allowances of the
    /// subscriber's `purchases` that may pay for it: after the plan's own
    /// of the same priority, oldest purchase first. A purchase of a bundle
    /// this version does not define offers nothing.
    pub fn offer_bundles(
        &self,
        priced: &mut Priced<'_>,
        kind: Kind,
        purchases: &[&BundlePurchase],
        at: EpochMillis,
    ) {
        if priced.exact.is_none() || purchases.is_empty() {
            return;
        }
        let record = (
            kind,
            priced.destination.map(|(_, class)| class),
            priced.band,
        );
        let offers = purchases.iter().filter_map(|purchase| {
            self.bundles
                .get(&*purchase.bundle_id)?
                .offer(purchase, record, at)
        });
        priced.allowances.extend(offers);
        // Stable: the plan's order, then the purchases', within a priority.
        priced.allowances.sort_by_key(|offer| offer.priority);
    }

    /// Whether any bundle is defined (else purchases need not be looked up).
    pub fn sells_bundles(&self) -> bool {
        !self.bundles.is_empty()
    }

    /// Prices `usage` under `plan_id`.
    pub fn price<'c>(&'c self, plan_id: &str, usage: &Usage) -> Result<Priced<'c>, PricingError> {
        self.priced(plan_id, usage, false)
    }

    /// [`Version::price`], with the steps written out.
    pub fn explain<'c>(&'c self, plan_id: &str, usage: &Usage) -> Result<Priced<'c>, PricingError> {
        self.priced(plan_id, usage, true)
    }

    fn priced<'c>(
        &'c self,
        plan_id: &str,
        usage: &Usage,
        explain: bool,
    ) -> Result<Priced<'c>, PricingError> {
        let plan = self
            .plans
            .get(plan_id)
            .ok_or_else(|| PricingError::UnknownPlan {
                plan: plan_id.to_string(),
                version: self.id.to_string(),
            })?;
        let band = self.band_at(usage.start()).map_err(PricingError::Time)?;
        let mut priced = Priced {
            version: &self.id,
            currency: &self.currency,
            destination: None,
            band: &band.id,
            // Every kind's branch below names its rate.
            rate: ZERO_RATED,
            billed_units: 0,
            cost_micros: 0,
            exact: None,
            allowances: Offers::new(),
            steps: Vec::new(),
        };
        // Steps cost allocations: written only when asked for.
        macro_rules! note {
            ($text:expr) => {
                if explain {
                    priced.steps.push($text);
                }
            };
        }
        note!(format!(
            "catalogue version `{}` (in force from {}), band `{}` ({})",
            self.id,
            cdrflow_core::normalize::format_timestamp(self.effective_from),
            band.id,
            self.zone_name
        ));
        let no_rate = |kind, destination: &str| PricingError::NoRate {
            plan: plan_id.to_string(),
            kind,
            destination: destination.to_string(),
            band: band.id.to_string(),
        };
        let band_fits = |b: &Option<String>| b.as_ref().is_none_or(|b| **b == *band.id);
        let destination = match *usage {
            Usage::Voice { to, .. } | Usage::Sms { to, .. } => Some(self.destination_of(to)?),
            Usage::Data { .. } | Usage::Activation { .. } => None,
        };
        priced.destination = destination;
        if let Some((id, DestinationClass::ZeroRated)) = destination {
            priced.rate = ZERO_RATED;
            priced.billed_units = match *usage {
                Usage::Voice { seconds, .. } => seconds,
                _ => 1,
            };
            note!(format!(
                "destination `{id}` is zero-rated: it costs nothing"
            ));
            return Ok(priced);
        }
        // Each kind's cost as an exact fraction of nanos (numerator /
        // denominator), then the plan's discount, then the one rounding.
        let (kind, class) = (usage.kind(), destination.map(|(_, class)| class));
        let (mut numerator, mut denominator, round) = match (*usage, destination) {
            (Usage::Voice { seconds, .. }, Some((id, class))) => {
                let rate = plan
                    .voice
                    .iter()
                    .find(|r| matches(&r.target, id, class) && band_fits(&r.band))
                    .ok_or_else(|| no_rate("voice", id))?;
                let (billed, usage_numerator, per) = bill(seconds, &rate.slots);
                let connect = if billed == 0 { 0 } else { rate.connect_fee };
                let mut numerator = connect * per + usage_numerator;
                note!(format!(
                    "destination `{id}` ({}), rate `{}`, connect fee {}",
                    class.as_str(),
                    rate.id,
                    money(rate.connect_fee)
                ));
                for (slot, units) in slot_units(seconds, &rate.slots) {
                    note!(format!(
                        "from {} s: {units} s billed in {} s increments at {} per {} s",
                        slot.from_seconds,
                        slot.increment,
                        money(slot.price),
                        slot.per_seconds
                    ));
                }
                note!(format!(
                    "{seconds} s billed as {billed} s: {} + usage {} = {}",
                    money(connect),
                    exact(usage_numerator, per),
                    exact(numerator, per)
                ));
                if billed > 0 && numerator < rate.min_charge * per {
                    numerator = rate.min_charge * per;
                    note!(format!("minimum charge {}", money(rate.min_charge)));
                }
                if let Some(cap) = rate.max_charge.filter(|cap| numerator > cap * per) {
                    numerator = cap * per;
                    note!(format!("capped at {}", money(cap)));
                }
                priced.rate = &rate.id;
                priced.billed_units = billed;
                (numerator, per, rate.round)
            }
            (Usage::Sms { .. }, Some((id, class))) => {
                let rate = plan
                    .sms
                    .iter()
                    .find(|r| matches(&r.target, id, class) && band_fits(&r.band))
                    .ok_or_else(|| no_rate("sms", id))?;
                priced.rate = &rate.id;
                priced.billed_units = 1;
                note!(format!(
                    "destination `{id}` ({}), rate `{}`: {} a message",
                    class.as_str(),
                    rate.id,
                    money(rate.price)
                ));
                (rate.price, 1, rate.round)
            }
            (Usage::Data { bytes, .. }, _) => {
                let rate = plan.data.as_ref().ok_or_else(|| no_rate("data", "-"))?;
                let increment = rate.session_increment_bytes;
                let billed = bytes.div_ceil(increment) * increment;
                let per = i128::from(rate.per_bytes);
                let numerator = rate.price * i128::from(billed);
                priced.rate = &rate.id;
                priced.billed_units = billed;
                note!(format!(
                    "rate `{}`: {bytes} bytes billed as {billed} (whole {increment}-byte units) × {} per {} bytes = {}",
                    rate.id,
                    money(rate.price),
                    rate.per_bytes,
                    exact(numerator, per)
                ));
                (numerator, per, rate.round)
            }
            (Usage::Activation { .. }, _) => {
                let rate = plan
                    .activation
                    .as_ref()
                    .ok_or_else(|| no_rate("activation", "-"))?;
                priced.rate = &rate.id;
                priced.billed_units = 1;
                note!(format!(
                    "rate `{}`: {} an activation",
                    rate.id,
                    money(rate.price)
                ));
                (rate.price, 1, rate.round)
            }
            (Usage::Voice { .. } | Usage::Sms { .. }, None) => {
                unreachable!("destination found above")
            }
        };
        if let Some(discount) = plan.discounts.iter().find(|d| d.applies(kind, class)) {
            numerator *= PERCENT_MILLI - i128::from(discount.percent_milli);
            denominator *= PERCENT_MILLI;
            note!(format!(
                "discount `{}`: {}% off = {}",
                discount.id,
                format_trimmed(i128::from(discount.percent_milli), 3),
                exact(numerator, denominator)
            ));
        }
        priced.cost_micros = round_to_micros(numerator, denominator, round)?;
        priced.exact = Some(ExactPrice {
            numerator,
            denominator,
            round,
        });
        priced.allowances = plan
            .allowances
            .iter()
            .filter(|a| a.covers(kind, class, &band.id))
            .map(|a| a.offer.clone())
            .collect();
        note!(format!(
            "rounded {} to {} decimals: {}",
            round.rounding.as_str(),
            round.decimals,
            micros_text(priced.cost_micros)
        ));
        Ok(priced)
    }
}
