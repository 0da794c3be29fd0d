//! `/rated/{msisdn}`: what rating decided for a subscriber's records, and
//! `/rated/{msisdn}/{record_id}/explain`: one record's cost step by step,
//! priced again by the catalogue version and plan it names. A customer
//! reads only the numbers bound to them; any other number answers as a
//! number without records does.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use cdrflow_core::money::format_micros;
use cdrflow_core::normalize::{normalize_msisdn, parse_timestamp, Day, EpochMillis, Msisdn};
use cdrflow_store::RatedQuery;
use serde::Deserialize;
use serde_json::json;

use super::{limit_param, ROWS};
use crate::server::auth::api_users;
use crate::server::error::{bad_request, ApiError, ApiPath, ApiQuery};
use crate::server::state::Shared;
use crate::server::users::Principal;
use crate::views::rated_json;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/rated/{msisdn}", get(rated))
        .route("/rated/{msisdn}/{record_id}/explain", get(explain))
        .route_layer(middleware::from_fn(api_users))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RatedParams {
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

/// `from`/`to`: a date (its UTC midnight) or an RFC 3339 instant.
fn instant(name: &str, value: &Option<String>) -> Result<Option<EpochMillis>, ApiError> {
    let Some(text) = value else { return Ok(None) };
    if let Some(day) = Day::parse(text) {
        return Ok(Some(i64::from(day.0) * 86_400_000));
    }
    parse_timestamp(text).map(Some).map_err(|_| {
        bad_request(format!(
            "`{name}` = `{text}` is neither a date (2024-03-01) nor an instant (2024-03-01T10:00:00Z)"
        ))
    })
}

/// The number of the path, if the caller may read it.
fn readable(state: &Shared, principal: &Principal, raw: &str) -> Result<Msisdn, ApiError> {
    let msisdn = normalize_msisdn(raw, state.country_code)
        .map_err(|why| bad_request(format!("`{raw}` is not a subscriber number: it {why}")))?;
    match principal.may_read(msisdn) {
        true => Ok(msisdn),
        false => Err(not_found(msisdn)),
    }
}

fn not_found(msisdn: Msisdn) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no rated records for {msisdn} in that period"),
    )
}

async fn rated(
    State(state): State<Shared>,
    Extension(principal): Extension<Arc<Principal>>,
    ApiPath(raw_msisdn): ApiPath<String>,
    ApiQuery(params): ApiQuery<RatedParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let msisdn = readable(&state, &principal, &raw_msisdn)?;
    let (from, to) = (instant("from", &params.from)?, instant("to", &params.to)?);
    if let (Some(from), Some(to)) = (from, to) {
        if from >= to {
            return Err(bad_request(
                "`from` must be before `to` (which is exclusive)".into(),
            ));
        }
    }
    let limit = limit_param(params.limit, ROWS)?;
    let query = RatedQuery {
        msisdn: Some(msisdn),
        from,
        to,
        limit: Some(limit),
        ..RatedQuery::default()
    };
    let rows = state
        .stores
        .query(move |s| {
            let mut rows = Vec::new();
            s.rated_records(&query, &mut |r| rows.push(r))?;
            Ok(rows)
        })
        .await?;
    if rows.is_empty() {
        return Err(not_found(msisdn));
    }
    let total: i128 = rows.iter().map(|r| i128::from(r.cost_micros)).sum();
    Ok(Json(json!({
        "msisdn": msisdn.to_string(),
        "rated": rows.iter().map(rated_json).collect::<Vec<_>>(),
        "total_cost": format_micros(total),
        "currency": rows.first().map(|r| r.currency.to_string()),
    })))
}

async fn explain(
    State(state): State<Shared>,
    Extension(principal): Extension<Arc<Principal>>,
    ApiPath((raw_msisdn, record_id)): ApiPath<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let msisdn = readable(&state, &principal, &raw_msisdn)?;
    let query = RatedQuery {
        msisdn: Some(msisdn),
        record_id: Some(record_id.clone()),
        limit: Some(1),
        ..RatedQuery::default()
    };
    let record = state
        .stores
        .query(move |s| {
            let mut found = None;
            s.rated_records(&query, &mut |r| found = Some(r))?;
            Ok(found)
        })
        .await?
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("{msisdn} has no rated record `{record_id}`"),
            )
        })?;
    let stored_cost = format_micros(i128::from(record.cost_micros));
    let (steps, recomputed) = match state.catalogue.as_ref().and_then(|c| c.explain_rated(&record)) {
        Some(Ok(mut priced)) => {
            // Allowances depend on what came before: the record says what they paid.
            if let Some((id, paid)) = &record.allowance {
                priced.steps.push(format!(
                    "allowance `{id}` paid {paid} of the {} billed units (or micro-units of money): charged {stored_cost}",
                    record.billed_units
                ));
            }
            let recomputed = match &record.allowance {
                None => Some(format_micros(i128::from(priced.cost_micros))),
                Some(_) => None,
            };
            (priced.steps, recomputed)
        }
        Some(Err(e)) => (vec![format!("the catalogue no longer prices it: {e}")], None),
        None => (
            vec![format!(
                "rate `{}` of plan `{}` (catalogue version `{}`): {} units billed, cost {stored_cost} {}",
                record.rate, record.plan, record.version, record.billed_units, record.currency
            )],
            None,
        ),
    };
    Ok(Json(json!({
        "record": rated_json(&record),
        "steps": steps,
        "cost": stored_cost,
        "recomputed_cost": recomputed,
        "matches": recomputed.as_ref().map(|c| *c == stored_cost),
    })))
}
