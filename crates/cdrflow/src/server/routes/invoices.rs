//! `/invoices`: the invoices `cdrflow bill` made, `/invoices/{number}` one
//! of them (its document as JSON, or as an HTML page when the client
//! accepts `text/html`), and `/invoices/{number}/lines/{line}/records` the
//! rated records behind one line: those an issued invoice holds, or for a
//! draft those it stands for now. A customer user sees only the invoices
//! of the customers their numbers belong to; any other answers 404, as an
//! invoice that does not exist does.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cdrflow_core::billing::invoice::Totals;
use cdrflow_store::{DraftLine, InvoiceQuery, StoredInvoice};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{limit_param, period_param, ROWS};
use crate::invoice_page::invoice_html;
use crate::server::auth::api_users;
use crate::server::error::{ApiError, ApiPath, ApiQuery};
use crate::server::state::Shared;
use crate::server::users::{Principal, Role};
use crate::views::money_text;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/invoices", get(list))
        .route("/invoices/{number}", get(one))
        .route("/invoices/{number}/lines/{line}/records", get(line_records))
        .route_layer(middleware::from_fn(api_users))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    customer: Option<String>,
    period: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordParams {
    limit: Option<u32>,
}

/// The customers `principal` may see invoices of (`None`: every one).
async fn visible_customers(
    state: &Shared,
    principal: &Principal,
) -> Result<Option<Vec<String>>, ApiError> {
    if principal.role != Role::Customer {
        return Ok(None);
    }
    let numbers = principal.msisdns.clone();
    Ok(Some(
        state
            .stores
            .query(move |s| s.customers_of(&numbers))
            .await?,
    ))
}

fn summary(i: &StoredInvoice) -> Value {
    let totals: serde_json::Map<String, Value> = Totals::NAMES
        .iter()
        .zip(i.totals.in_order())
        .map(|(name, micros)| (name.to_string(), json!(money_text(micros))))
        .collect();
    json!({
        "invoice_id": i.invoice_id,
        "number": i.number,
        "customer_id": i.customer_id,
        "period": i.period.to_string(),
        "status": i.status.as_str(),
        "currency": i.currency,
        "totals": totals,
    })
}

async fn list(
    State(state): State<Shared>,
    Extension(principal): Extension<Arc<Principal>>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let period = period_param(&params.period)?;
    let visible = visible_customers(&state, &principal).await?;
    let query = InvoiceQuery {
        customer: params.customer,
        period,
        ..InvoiceQuery::default()
    };
    let invoices = state
        .stores
        .query(move |s| {
            let mut rows = Vec::new();
            s.invoices(&query, &mut |i| {
                if visible.as_ref().is_none_or(|v| v.contains(&i.customer_id)) {
                    rows.push(summary(&i));
                }
            })?;
            Ok(rows)
        })
        .await?;
    Ok(Json(json!({ "invoices": invoices })))
}

/// The invoice numbered `key` (or with that invoice id, for drafts), if the caller may see it.
async fn find(state: &Shared, principal: &Principal, key: &str) -> Result<StoredInvoice, ApiError> {
    let visible = visible_customers(state, principal).await?;
    let key = key.to_string();
    let wanted = key.clone();
    let found = state
        .stores
        .query(move |s| {
            let mut found = None;
            for query in [
                InvoiceQuery {
                    number: Some(wanted.clone()),
                    ..InvoiceQuery::default()
                },
                InvoiceQuery {
                    invoice_id: Some(wanted.clone()),
                    ..InvoiceQuery::default()
                },
            ] {
                s.invoices(&query, &mut |i| found = Some(i))?;
                if found.is_some() {
                    break;
                }
            }
            Ok(found)
        })
        .await?;
    found
        .filter(|i| visible.as_ref().is_none_or(|v| v.contains(&i.customer_id)))
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no invoice `{key}`")))
}

async fn one(
    State(state): State<Shared>,
    Extension(principal): Extension<Arc<Principal>>,
    headers: HeaderMap,
    ApiPath(key): ApiPath<String>,
) -> Result<Response, ApiError> {
    let invoice = find(&state, &principal, &key).await?;
    let mut document = stored_document(&invoice, &key)?;
    // Served with its current status: a voided invoice says so.
    document["status"] = json!(invoice.status.as_str());
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    Ok(match wants_html {
        true => Html(invoice_html(&document)).into_response(),
        false => Json(document).into_response(),
    })
}

async fn line_records(
    State(state): State<Shared>,
    Extension(principal): Extension<Arc<Principal>>,
    ApiPath((key, line)): ApiPath<(String, u32)>,
    ApiQuery(params): ApiQuery<RecordParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = limit_param(params.limit, ROWS)?;
    let invoice = find(&state, &principal, &key).await?;
    let records = match invoice.status {
        cdrflow_core::billing::InvoiceStatus::Draft => {
            draft_records(&state, &invoice, &key, line, limit).await?
        }
        _ => {
            let id = invoice.invoice_id.clone();
            state
                .stores
                .query(move |s| {
                    let mut rows = Vec::new();
                    s.invoice_line_records(&id, line, limit, &mut |r| {
                        rows.push(crate::views::rated_json(&r))
                    })?;
                    Ok(rows)
                })
                .await?
        }
    };
    if records.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("invoice {key} has no line {line} with rated records"),
        ));
    }
    Ok(Json(json!({
        "invoice_id": invoice.invoice_id,
        "number": invoice.number,
        "line": line,
        "records": records,
    })))
}

/// A draft's line `line`: the records it stands for, found as `cdrflow
/// bill` found them (a draft holds none). A draft is as of its run: when
/// the records found are not the line's count, records came or went
/// since, and the answer says to run the bill again rather than list
/// records the draft does not show.
async fn draft_records(
    state: &Shared,
    invoice: &StoredInvoice,
    key: &str,
    line: u32,
    limit: u32,
) -> Result<Vec<Value>, ApiError> {
    let document = stored_document(invoice, key)?;
    let no_line = || {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("invoice {key} has no line {line} with rated records"),
        )
    };
    let found = document["lines"]
        .as_array()
        .and_then(|lines| lines.iter().find(|l| l["line"] == line))
        .filter(|l| l["category"] == "usage")
        .ok_or_else(no_line)?;
    let (Some(kind), Some(usage_period), Some(quantity)) = (
        found["kind"]
            .as_str()
            .and_then(cdrflow_core::model::Kind::parse),
        found["usage_period"]
            .as_str()
            .and_then(cdrflow_core::reference::BillingPeriod::parse),
        found["quantity"].as_u64(),
    ) else {
        return Err(no_line());
    };
    let wanted = DraftLine {
        customer_id: invoice.customer_id.clone(),
        usage_period,
        kind,
        class: found["destination_class"].as_str().map(str::to_string),
    };
    // One more than shown: more records than the line counts means it is stale too.
    let shown = u64::from(limit).min(quantity);
    let ask = u32::try_from(shown + 1).unwrap_or(u32::MAX);
    let mut records = state
        .stores
        .query(move |s| {
            let mut rows = Vec::new();
            s.draft_line_records(&wanted, ask, &mut |r| {
                rows.push(crate::views::rated_json(&r))
            })?;
            Ok(rows)
        })
        .await?;
    let complete = records.len() as u64 == shown + u64::from(quantity > shown);
    if !complete {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "draft {key}'s line {line} counts {quantity} records and {} are billable now: \
                 run `cdrflow bill --period {}` to recompute the draft",
                records.len(),
                invoice.period
            ),
        ));
    }
    records.truncate(shown as usize);
    Ok(records)
}

/// The invoice's stored document, read as JSON.
fn stored_document(invoice: &StoredInvoice, key: &str) -> Result<Value, ApiError> {
    serde_json::from_str(&invoice.document).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("invoice {key}'s stored document is not JSON: {e}"),
        )
    })
}
