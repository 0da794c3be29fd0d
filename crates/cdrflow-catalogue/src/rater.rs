//! The catalogue as the pipeline's [`Rater`]: each record priced under its
//! subscriber's plan in force at its start, joined with the reference data
//! (customer, cell) it needs for the rated record.
//!
//! Unknown subscribers — a number in no subscribers row at the record's
//! time — are rated on the default plan (`--default-plan`) and carry no
//! account; the mediator counts them (`unknown_subscribers`).

use std::sync::Arc;

use cdrflow_core::model::{Cdr, Direction, Kind};
use cdrflow_core::normalize::{normalize_msisdn, CountryCode};
use cdrflow_core::rating::{Account, Name, Offers, Rater, Rating, RatingError};
use cdrflow_core::reference::{normalize_technology, LiveReference, ReferenceData};

use crate::price::{INCOMING, RECHARGE};
use crate::{Catalogue, CatalogueError, PricingError, Usage};

pub struct CatalogueRater {
    catalogue: Catalogue,
    default_plan: Arc<str>,
    home: CountryCode,
    /// Kept live by change events while records are rated.
    reference: LiveReference,
}

impl CatalogueRater {
    /// `default_plan` must be in every version; `home` spells national
    /// numbers; `reference` says who each number is.
    pub fn new(
        catalogue: Catalogue,
        default_plan: &str,
        home: CountryCode,
        reference: ReferenceData,
    ) -> Result<CatalogueRater, CatalogueError> {
        if let Some(v) = catalogue
            .versions()
            .iter()
            .find(|v| !v.has_plan(default_plan))
        {
            return Err(CatalogueError::Invalid {
                at: format!("version `{}`", v.id),
                why: format!("has no plan `{default_plan}` (the default plan)"),
            });
        }
        Ok(CatalogueRater {
            catalogue,
            default_plan: default_plan.into(),
            home,
            reference: LiveReference::new(reference),
        })
    }
}

impl Rater for CatalogueRater {
    /// Outgoing calls and messages by destination, data by volume,
    /// activations by the plan's fee; recharges and received calls and
    /// messages cost nothing.
    fn rate(&self, cdr: &Cdr<'_>) -> Result<Rating, RatingError> {
        let start = cdr.start_time;
        let reference = self.reference.view();
        let subscriber = reference.subscriber_at(cdr.served_msisdn, start);
        let cell = cdr
            .cell_id
            .as_deref()
            .and_then(|id| reference.cell_at(id, start));
        let plan = subscriber.map_or(&self.default_plan, |s| &s.plan_id);
        let version = self
            .catalogue
            .version_in_force(start)
            .map_err(|e| RatingError::NoRate(e.to_string()))?;
        let mut rating = Rating {
            cost_micros: 0,
            billed_units: 0,
            plan: plan.into(),
            version: Name::Static(version.id),
            rate: Name::Static(RECHARGE),
            band: None,
            destination: None,
            account: subscriber.map(|s| Account {
                customer_id: s.customer_id.clone(),
                payment: s.payment,
                bill_cycle_day: reference
                    .customer_at(&s.customer_id, start)
                    .map_or(1, |c| c.bill_cycle_day),
            }),
            unknown_subscriber: subscriber.is_none(),
            exact: None,
            allowances: Offers::new(),
            region: cell
                .map(|c| c.region.clone())
                .or_else(|| subscriber.and_then(|s| s.region.clone())),
            technology: cell.map(|c| c.technology).or_else(|| {
                cdr.radio_technology
                    .as_deref()
                    .and_then(normalize_technology)
            }),
        };
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
            Kind::Recharge => return Ok(rating),
            Kind::Voice | Kind::Sms if cdr.direction == Direction::Incoming => {
                rating.rate = Name::Static(INCOMING);
                return Ok(rating);
            }
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
        let mut priced = version.price(plan, &usage).map_err(|e| match e {
            PricingError::Overflow => RatingError::Overflow,
            e => RatingError::NoRate(e.to_string()),
        })?;
        if version.sells_bundles() {
            let purchases = reference.bundles_at(cdr.served_msisdn, start);
            version.offer_bundles(&mut priced, cdr.kind, &purchases, start);
        }
        rating.cost_micros = priced.cost_micros;
        rating.billed_units = priced.billed_units;
        rating.rate = Name::Static(priced.rate);
        rating.exact = priced.exact;
        rating.allowances = priced.allowances;
        rating.band = Some(Name::Static(priced.band));
        rating.destination = priced
            .destination
            .map(|(id, class)| (Name::Static(id), class.as_str()));
        Ok(rating)
    }

    fn currency(&self) -> &str {
        &self.catalogue.versions()[0].currency
    }

    fn recharge_currency(&self) -> &str {
        self.currency()
    }

    fn live_reference(&self) -> Option<&LiveReference> {
        Some(&self.reference)
    }
}
