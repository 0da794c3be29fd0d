//! Re-pricing a rated record under a catalogue (`cdrflow rerate`): the
//! same record — its subscriber's plan as rated, its start, destination,
//! units — priced by the version in force at its start.
//!
//! What allowances paid stays paid: a record's allowance use was decided
//! in event order against grants other records shared, and re-deciding it
//! for one period would move allowance from records already billed. Units
//! an allowance paid stay free and the rest is charged as its share of
//! the new exact price; money an allowance paid is taken off the new cost
//! (never below zero). A record whose allowance the new catalogue's plan
//! no longer offers keeps its cost, and says why.

use cdrflow_core::charging::RatedRecord;
use cdrflow_core::model::Kind;
use cdrflow_core::rating::Grant;

use crate::price::{INCOMING, RECHARGE};
use crate::{Catalogue, Usage};

/// A record's new price and what decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repricing {
    pub version: &'static str,
    /// Calls and messages: the destination and its class.
    pub destination: Option<(&'static str, &'static str)>,
    pub band: Option<&'static str>,
    pub rate: &'static str,
    pub billed_units: u64,
    /// What is charged, after what allowances paid.
    pub cost_micros: i64,
}

/// The outcome for one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repriced {
    /// Priced as it was (recharges and received calls cost nothing under any catalogue).
    Same,
    Changed(Repricing),
    /// Not re-priced, and why: it keeps its cost.
    Kept(String),
}

/// `record` priced by `catalogue`.
pub fn reprice(catalogue: &Catalogue, record: &RatedRecord) -> Repriced {
    if matches!(&*record.rate, RECHARGE | INCOMING) || record.kind == Kind::Recharge {
        return Repriced::Same;
    }
    let start = record.event_time;
    let to = || {
        record
            .other_party
            .ok_or_else(|| "it names no called number".to_string())
    };
    let usage = match record.kind {
        Kind::Voice => to().map(|to| Usage::Voice {
            to,
            start,
            seconds: record.usage_units,
        }),
        Kind::Sms => to().map(|to| Usage::Sms { to, start }),
        Kind::Data => Ok(Usage::Data {
            start,
            bytes: record.usage_units,
        }),
        Kind::Activation => Ok(Usage::Activation { start }),
        Kind::Recharge => unreachable!("returned above"),
    };
    let priced =
        match usage.and_then(|u| catalogue.price(&record.plan, &u).map_err(|e| e.to_string())) {
            Ok(priced) => priced,
            Err(why) => return Repriced::Kept(why),
        };
    let billed = priced.billed_units;
    let cost_micros = match &record.allowance {
        None => Some(priced.cost_micros),
        Some((id, paid)) => match priced.allowances.iter().find(|o| *o.id == **id) {
            None => {
                return Repriced::Kept(format!(
                    "an allowance `{}` paid for it, which plan `{}` no longer offers",
                    &**id, &*record.plan
                ))
            }
            Some(offer) => match (offer.grant, priced.exact) {
                (Grant::Units(_), Some(exact)) => exact.share(billed - (*paid).min(billed), billed),
                (Grant::Units(_), None) => Some(0),
                (Grant::Money(_), _) => {
                    Some((priced.cost_micros - i64::try_from(*paid).unwrap_or(i64::MAX)).max(0))
                }
            },
        },
    };
    let Some(cost_micros) = cost_micros else {
        return Repriced::Kept("its new price does not fit in 64-bit micro-units".into());
    };
    let repricing = Repricing {
        version: priced.version,
        destination: priced.destination.map(|(id, class)| (id, class.as_str())),
        band: Some(priced.band),
        rate: priced.rate,
        billed_units: billed,
        cost_micros,
    };
    let same = cost_micros == record.cost_micros
        && billed == record.billed_units
        && *record.version == *repricing.version
        && *record.rate == *repricing.rate
        && record.band.as_deref() == repricing.band
        && record
            .destination
            .as_ref()
            .map(|(id, class)| (&**id, *class))
            == repricing.destination;
    match same {
        true => Repriced::Same,
        false => Repriced::Changed(repricing),
    }
}
