//! Charging: what rating decided, kept — a rated record per accepted
//! record, and prepaid balances moved by each one exactly once.
//!
//! The operator after the mediator: it sees only accepted, non-duplicate
//! records, so a record replayed after a crash (its checkpoint never
//! committed) charges again only because the first charge was never
//! stored. Balances change by deltas that the commit adds to the stored
//! ones, in the same transaction as the source positions.
//!
//! Alerts need the balance itself, record by record: the operator reads a
//! subscriber's committed balance the first time the scope meets them and
//! follows it in memory from there. A low-balance alert fires on the
//! record that takes a balance from at or above the threshold to below
//! it, a negative-balance alert on the one that takes it below zero —
//! per record, so how records fall into checkpoints changes nothing. (Two
//! scopes charging one subscriber at once — a number whose records come
//! through two Kafka partitions — keep exact balances, since deltas add;
//! their alerts each follow their own view.)

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::analytics::rules::{Anomaly, Severity};
use crate::mediation::Rated;
use crate::model::Kind;
use crate::money::format_micros;
use crate::normalize::{EpochMillis, Msisdn};
use crate::operator::{BatchContext, Checkpoint, Operator, ReadError, StateReader};
use crate::reference::{BillingPeriod, Payment};

/// One record as rating left it: the `rated_records` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatedRecord {
    /// The source's id, or `partition:position` for a record without one.
    pub record_id: Box<str>,
    pub msisdn: Msisdn,
    pub event_time: EpochMillis,
    pub kind: Kind,
    pub service_type: Box<str>,
    pub other_party: Option<Msisdn>,
    /// `None`: a subscriber not in the reference data.
    pub customer_id: Option<Arc<str>>,
    pub plan: Arc<str>,
    pub version: Arc<str>,
    pub destination: Option<(Arc<str>, &'static str)>,
    pub band: Option<Arc<str>>,
    pub rate: Arc<str>,
    pub region: Option<Arc<str>>,
    pub technology: Option<Arc<str>>,
    /// Seconds, bytes or messages as recorded (1 for an activation).
    pub usage_units: u64,
    pub billed_units: u64,
    pub cost_micros: i64,
    pub currency: Arc<str>,
    pub billing_period: BillingPeriod,
}

/// A checkpoint's change to one prepaid balance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceDelta {
    pub micros: i64,
    pub currency: Arc<str>,
    /// The latest event time among the records that moved it.
    pub last_event_time: EpochMillis,
}

/// The balances a checkpoint moves, by subscriber.
pub type BalanceDeltas = BTreeMap<Msisdn, BalanceDelta>;

/// Adds `delta` to `msisdn`'s change in `deltas`.
pub fn add_delta(deltas: &mut BalanceDeltas, msisdn: Msisdn, delta: BalanceDelta) {
    deltas
        .entry(msisdn)
        .and_modify(|total| {
            total.micros = total.micros.saturating_add(delta.micros);
            total.last_event_time = total.last_event_time.max(delta.last_event_time);
        })
        .or_insert(delta);
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargingConfig {
    /// Keep a `rated_records` row per accepted record.
    pub rated_records: bool,
    /// Move prepaid subscribers' balances.
    pub balances: bool,
    /// Alert when a balance falls under this many micro-units (`None`: never).
    pub low_balance_micros: Option<i64>,
    /// Alert when a balance falls below zero.
    pub negative_balance_alert: bool,
    /// The rater's currency, named by every row and balance.
    pub currency: Arc<str>,
}

/// Seed 004's inventory service alerts under 10 units.
pub const DEFAULT_LOW_BALANCE_MICROS: i64 = 10_000_000;

impl Default for ChargingConfig {
    fn default() -> ChargingConfig {
        ChargingConfig {
            rated_records: true,
            balances: true,
            low_balance_micros: Some(DEFAULT_LOW_BALANCE_MICROS),
            negative_balance_alert: true,
            currency: Arc::from("WAK"),
        }
    }
}

pub struct Charging {
    config: ChargingConfig,
    /// Balances as this scope knows them: committed when first read, then
    /// followed record by record.
    balances: FxHashMap<Msisdn, i64>,
    pending_rows: Vec<RatedRecord>,
    pending_deltas: BalanceDeltas,
    pending_alerts: Vec<Anomaly>,
}

impl Charging {
    pub fn new(config: ChargingConfig) -> Charging {
        Charging {
            config,
            balances: FxHashMap::default(),
            pending_rows: Vec::new(),
            pending_deltas: BalanceDeltas::new(),
            pending_alerts: Vec::new(),
        }
    }

    /// How a record moves its subscriber's balance: recharges add, usage
    /// takes its cost. `None`: not a prepaid subscriber's record.
    fn balance_change(&self, record: &Rated<'_>) -> Option<i64> {
        let rating = record.rating.as_ref()?;
        let account = rating.account.as_ref()?;
        if !self.config.balances || account.payment != Payment::Prepaid {
            return None;
        }
        Some(match record.kind {
            Kind::Recharge => record.usage.amount_micros,
            _ => -rating.cost_micros,
        })
    }

    /// Reads, in one question, the committed balances of this batch's
    /// prepaid subscribers the scope has not met yet.
    fn load_balances(
        &mut self,
        batch: &[Rated<'_>],
        state: &mut dyn StateReader,
    ) -> Result<(), ReadError> {
        let mut unknown: Vec<Msisdn> = batch
            .iter()
            .filter(|r| self.balance_change(r).is_some() && !self.balances.contains_key(&r.msisdn))
            .map(|r| r.msisdn)
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort_unstable();
        unknown.dedup();
        let stored = state.balances(&unknown)?;
        for (msisdn, balance) in unknown.into_iter().zip(stored) {
            self.balances.insert(msisdn, balance.unwrap_or(0));
        }
        Ok(())
    }

    fn charge(&mut self, record: &Rated<'_>, change: i64) {
        let Some(balance) = self.balances.get_mut(&record.msisdn) else {
            unreachable!("load_balances read every prepaid subscriber of the batch");
        };
        let before = *balance;
        let after = before.saturating_add(change);
        *balance = after;
        add_delta(
            &mut self.pending_deltas,
            record.msisdn,
            BalanceDelta {
                micros: change,
                currency: self.config.currency.clone(),
                last_event_time: record.start_time,
            },
        );
        let crossed = |threshold: i64| before >= threshold && after < threshold;
        let mut alert = |rule: &'static str, severity: Severity, threshold: i64| {
            let id = record_id(record);
            self.pending_alerts.push(Anomaly {
                rule,
                severity,
                msisdn: record.msisdn,
                event_id: record.record_id.as_deref().map(str::to_string),
                event_time: record.start_time,
                window_start: None,
                evidence: format!(
                    "balance {} → {} {} after record {id} (threshold {})",
                    format_micros(i128::from(before)),
                    format_micros(i128::from(after)),
                    self.config.currency,
                    format_micros(i128::from(threshold)),
                ),
                idempotency_key: format!("{rule}:{id}"),
            });
        };
        if let Some(low) = self.config.low_balance_micros.filter(|&low| crossed(low)) {
            alert("low_balance", Severity::Medium, low);
        }
        if self.config.negative_balance_alert && crossed(0) {
            alert("negative_balance", Severity::High, 0);
        }
    }

    fn row(&self, record: &Rated<'_>) -> Option<RatedRecord> {
        let rating = record.rating.as_ref()?;
        let usage = &record.usage;
        let usage_units = match record.kind {
            Kind::Voice => usage.duration_sec,
            Kind::Data => usage.up_bytes.saturating_add(usage.down_bytes),
            Kind::Sms | Kind::Activation => 1,
            Kind::Recharge => 0,
        };
        let cycle_day = rating.account.as_ref().map_or(1, |a| a.bill_cycle_day);
        Some(RatedRecord {
            record_id: record_id(record).into(),
            msisdn: record.msisdn,
            event_time: record.start_time,
            kind: record.kind,
            service_type: Box::from(&*record.service_type),
            other_party: record.other_party,
            customer_id: rating.account.as_ref().map(|a| a.customer_id.clone()),
            plan: rating.plan.clone(),
            version: rating.version.clone(),
            destination: rating.destination.clone(),
            band: rating.band.clone(),
            rate: rating.rate.clone(),
            region: match &record.region {
                Some(own) => Some(Arc::from(&**own)),
                None => rating.region.clone(),
            },
            technology: rating.technology.clone(),
            usage_units,
            billed_units: rating.billed_units,
            cost_micros: rating.cost_micros,
            currency: self.config.currency.clone(),
            billing_period: BillingPeriod::containing(record.day, cycle_day),
        })
    }
}

/// The record's id, or where it came from for a record without one.
fn record_id(record: &Rated<'_>) -> String {
    match &record.record_id {
        Some(id) => id.to_string(),
        None => format!("{}:{}", record.partition, record.position),
    }
}

impl Operator for Charging {
    type Input<'a> = Rated<'a>;
    type Output<'a> = ();

    fn name(&self) -> &'static str {
        "charging"
    }

    fn process_batch<'a>(
        &mut self,
        batch: &[Rated<'a>],
        context: &mut BatchContext<'_>,
        _out: &mut Vec<()>,
    ) -> Result<(), ReadError> {
        self.load_balances(batch, context.state)?;
        for record in batch {
            if let Some(change) = self.balance_change(record) {
                self.charge(record, change);
            }
            if self.config.rated_records {
                if let Some(row) = self.row(record) {
                    self.pending_rows.push(row);
                }
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, out: &mut Checkpoint) {
        out.rated_records.append(&mut self.pending_rows);
        for (msisdn, delta) in std::mem::take(&mut self.pending_deltas) {
            add_delta(&mut out.balances, msisdn, delta);
        }
        out.anomalies.append(&mut self.pending_alerts);
    }
}
