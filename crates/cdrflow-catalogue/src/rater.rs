//! The catalogue as the pipeline's [`Rater`]: every record priced under
//! one plan (reference data, which will say each subscriber's plan, is the
//! next step of this issue; until then every subscriber is on the default
//! plan, as the policy for unknown subscribers says).

use cdrflow_core::model::{Cdr, Direction, Kind};
use cdrflow_core::normalize::{normalize_msisdn, CountryCode};
use cdrflow_core::rating::{Rater, RatingError};

use crate::{Catalogue, CatalogueError, PricingError, Usage};

pub struct CatalogueRater {
    catalogue: Catalogue,
    plan: String,
    home: CountryCode,
}

impl CatalogueRater {
    /// `plan` must be in every version; `home` spells national numbers.
    pub fn new(
        catalogue: Catalogue,
        plan: &str,
        home: CountryCode,
    ) -> Result<CatalogueRater, CatalogueError> {
        if let Some(v) = catalogue.versions().iter().find(|v| !v.has_plan(plan)) {
            return Err(CatalogueError::Invalid {
                at: format!("version `{}`", v.id),
                why: format!("has no plan `{plan}` (the default plan)"),
            });
        }
        Ok(CatalogueRater {
            catalogue,
            plan: plan.to_string(),
            home,
        })
    }
}

impl Rater for CatalogueRater {
    /// Outgoing calls and messages by destination, data by volume,
    /// activations by the plan's fee; recharges are money in, and incoming
    /// calls and messages are free (the caller's operator charges them).
    fn rate(&self, cdr: &Cdr<'_>) -> Result<i64, RatingError> {
        let start = cdr.start_time;
        let to = || {
            let party = cdr.other_party.as_deref().ok_or_else(|| {
                RatingError::NoRate(
                    "the record names no called number (`other_party`); a catalogue prices calls and messages by destination".into(),
                )
            })?;
            normalize_msisdn(party, self.home)
                .map_err(|why| RatingError::NoRate(format!("the called number `{party}` {why}")))
        };
        let usage = match cdr.kind {
            Kind::Recharge => return Ok(0),
            Kind::Voice | Kind::Sms if cdr.direction == Direction::Incoming => return Ok(0),
            Kind::Voice => Usage::Voice {
                to: to()?,
                start,
                seconds: cdr.duration_sec,
            },
            Kind::Sms => Usage::Sms { to: to()?, start },
            Kind::Data => Usage::Data {
                start,
                bytes: cdr.uplink_bytes.saturating_add(cdr.downlink_bytes),
            },
            Kind::Activation => Usage::Activation { start },
        };
        match self.catalogue.price(&self.plan, &usage) {
            Ok(priced) => Ok(priced.cost_micros),
            Err(PricingError::Overflow) => Err(RatingError::Overflow),
            Err(e) => Err(RatingError::NoRate(e.to_string())),
        }
    }

    fn currency(&self) -> &str {
        &self.catalogue.versions()[0].currency
    }

    fn recharge_currency(&self) -> &str {
        self.currency()
    }
}
