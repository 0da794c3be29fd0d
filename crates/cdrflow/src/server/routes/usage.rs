//! `/usage/{msisdn}`: seed 000's Usage API. A subscriber's daily summaries
//! for a date or a range, paged by whole days. A customer reads only the
//! numbers bound to them: any other number answers exactly as a number
//! without usage does, so whether it exists does not leak.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use cdrflow_core::normalize::{normalize_msisdn, usage_period};
use serde::Deserialize;
use serde_json::json;

use super::{day_param, limit_param, ROWS};
use crate::server::auth::api_users;
use crate::server::error::{bad_request, ApiError, ApiPath, ApiQuery};
use crate::server::state::Shared;
use crate::server::users::Principal;
use crate::views::summary_json;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/usage/{msisdn}", get(usage))
        .route_layer(middleware::from_fn(api_users))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    date: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
}

async fn usage(
    State(state): State<Shared>,
    Extension(principal): Extension<Arc<Principal>>,
    ApiPath(raw_msisdn): ApiPath<String>,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let msisdn = normalize_msisdn(&raw_msisdn, state.country_code).map_err(|why| {
        bad_request(format!(
            "`{raw_msisdn}` is not a subscriber number: it {why}"
        ))
    })?;
    let (date, from, to) = (
        day_param("date", &query.date)?,
        day_param("from", &query.from)?,
        day_param("to", &query.to)?,
    );
    let (from, to) = usage_period(date, from, to).map_err(bad_request)?;
    let limit = limit_param(query.limit, ROWS)?;
    let no_usage = || {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no usage for {msisdn} in that period"),
        )
    };
    if !principal.may_read(msisdn) {
        return Err(no_usage());
    }
    let page = state
        .stores
        .query(move |s| s.usage_page(msisdn, from, to, limit))
        .await?;
    if page.rows.is_empty() {
        return Err(no_usage());
    }
    let summaries: Vec<_> = page.rows.iter().map(summary_json).collect();
    Ok(Json(json!({
        "msisdn": msisdn.to_string(),
        "summaries": summaries,
        "next_from": page.next_from.map(|d| d.to_string()),
    })))
}
