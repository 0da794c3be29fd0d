//! `/billing/summary`: the dashboard's billing panel — a period's revenue
//! by plan and its top customers, over its issued invoices and the notes
//! against them, as `cdrflow report revenue-by-plan` and `top-customers`
//! compute them (MSISDNs masked). Reading a period's invoices and held
//! records takes seconds for a million records, and every open dashboard
//! polls: an answer is kept for [`SUMMARY_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use cdrflow_core::billing::reports::{mask_msisdn, revenue_by, top_customers, Grouping};
use cdrflow_core::billing::InvoiceStatus;
use cdrflow_core::reference::BillingPeriod;
use cdrflow_store::InvoiceQuery;
use serde::Deserialize;
use serde_json::{json, Value};

use super::period_param;
use crate::reports::report_data;
use crate::server::auth::staff_only;
use crate::server::error::{bad_request, ApiError, ApiQuery};
use crate::server::state::Shared;
use crate::views::money_text;

/// How stale a billing summary may be: invoices change only when a
/// `cdrflow bill --finalise` or `rerate` runs.
const SUMMARY_TTL: Duration = Duration::from_secs(30);

/// Customers listed by name unless `top` says otherwise, and the most.
const TOP: (usize, usize) = (5, 100);

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/billing/summary", get(summary))
        .route_layer(middleware::from_fn(staff_only))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryParams {
    period: Option<String>,
    top: Option<usize>,
}

/// Answers by period and `top`, each with when it was computed.
#[derive(Default)]
pub struct SummaryCache(Mutex<HashMap<(Option<BillingPeriod>, usize), (Instant, Arc<Value>)>>);

impl SummaryCache {
    fn fresh(&self, key: &(Option<BillingPeriod>, usize)) -> Option<Arc<Value>> {
        let cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < SUMMARY_TTL)
            .map(|(_, answer)| answer.clone())
    }

    fn keep(&self, key: (Option<BillingPeriod>, usize), answer: Arc<Value>) {
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (at, _)| at.elapsed() < SUMMARY_TTL);
        cache.insert(key, (Instant::now(), answer));
    }
}

async fn summary(
    State(state): State<Shared>,
    ApiQuery(params): ApiQuery<SummaryParams>,
) -> Result<Json<Value>, ApiError> {
    let period = period_param(&params.period)?;
    let top = params.top.unwrap_or(TOP.0);
    if !(1..=TOP.1).contains(&top) {
        return Err(bad_request(format!(
            "`top` = {top} must be between 1 and {}",
            TOP.1
        )));
    }
    let key = (period, top);
    if let Some(answer) = state.billing_summaries.fresh(&key) {
        return Ok(Json((*answer).clone()));
    }
    let answer = state
        .stores
        .query(move |s| {
            let period = match period {
                Some(p) => Some(p),
                None => latest_issued_period(s)?,
            };
            let Some(period) = period else {
                return Ok(Ok(None));
            };
            let reference = s.reference()?;
            Ok(report_data(s, &reference, period)
                .map(|data| Some((period, data)))
                .map_err(|e| format!("{e:#}")))
        })
        .await?
        .map_err(|why| anyhow::anyhow!("the billing summary: {why}"))?;
    let answer = Arc::new(match answer {
        None => json!({
            "period": null,
            "currency": null,
            "invoices": 0,
            "totals": null,
            "revenue_by_plan": [],
            "unattributed": "0",
            "top_customers": [],
            "others": null,
        }),
        Some((period, data)) => {
            let (plans, reconciliation) =
                revenue_by(Grouping::Plan, &data.invoices, &data.records, &data.fees);
            let (customers, others, _) = top_customers(&data.invoices, top);
            let plans: Vec<Value> = plans
                .iter()
                .map(|row| {
                    json!({
                        "plan": row.key,
                        "records": row.records,
                        "usage": money_text(row.usage_micros),
                        "recurring": money_text(row.recurring_micros),
                        "revenue": money_text(row.revenue_micros),
                    })
                })
                .collect();
            let customers: Vec<Value> = customers
                .iter()
                .enumerate()
                .map(|(rank, row)| {
                    let numbers: Vec<String> = data
                        .numbers
                        .get(row.customer_id.as_str())
                        .map_or(&[][..], Vec::as_slice)
                        .iter()
                        .map(|m| mask_msisdn(&m.to_string()))
                        .collect();
                    json!({
                        "rank": rank + 1,
                        "customer_id": row.customer_id,
                        "name": row.name,
                        "msisdns": numbers,
                        "invoices": row.invoices,
                        "total": money_text(row.total_micros),
                    })
                })
                .collect();
            json!({
                "period": period.to_string(),
                "currency": data.currencies.iter().next(),
                "invoices": data.invoices.len(),
                "totals": {
                    "discounts": money_text(reconciliation.discounts),
                    "subtotal": money_text(reconciliation.subtotal),
                    "tax": money_text(reconciliation.tax),
                    "total": money_text(reconciliation.total),
                },
                "revenue_by_plan": plans,
                "unattributed": money_text(reconciliation.unattributed),
                "top_customers": customers,
                "others": {
                    "name": others.name,
                    "invoices": others.invoices,
                    "total": money_text(others.total_micros),
                },
            })
        }
    });
    state.billing_summaries.keep(key, answer.clone());
    Ok(Json((*answer).clone()))
}

/// The latest period with a finalised invoice, if any.
fn latest_issued_period(
    store: &mut dyn cdrflow_store::Store,
) -> cdrflow_store::Result<Option<BillingPeriod>> {
    let mut latest = None;
    store.invoices(
        &InvoiceQuery {
            without_documents: true,
            ..InvoiceQuery::default()
        },
        &mut |i| {
            if i.status == InvoiceStatus::Finalised {
                latest = latest.max(Some(i.period));
            }
        },
    )?;
    Ok(latest)
}
