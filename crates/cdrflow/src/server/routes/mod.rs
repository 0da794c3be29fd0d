//! The API by resource: each module holds its handlers and returns its
//! `Router`, with the roles that may call it as a route layer; they are
//! merged here, in one place, behind the credentials check.
//!
//! Adding a resource: a module with `pub fn router() -> Router<Shared>`
//! and one `.merge(...)` line below (and its paths in `openapi.json`).

mod analytics;
mod billing;
mod dashboard;
mod health;
mod invoices;
mod metrics;
mod openapi;
mod overview;
mod rated;
mod rejected;
mod search;
mod stats;
mod usage;

pub use billing::SummaryCache;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

use super::auth::require_credentials;
use super::error::{method_not_allowed, not_found};
use super::state::Shared;

/// The API and dashboard.
pub fn api(state: Shared) -> Router {
    let protected = Router::new()
        .merge(usage::router())
        .merge(rejected::router())
        .merge(search::router())
        .merge(rated::router())
        .merge(invoices::router())
        .merge(billing::router())
        .merge(overview::router())
        .merge(analytics::router())
        .merge(stats::router())
        .merge(metrics::router())
        .merge(openapi::router())
        .merge(dashboard::router());
    finish(protected, state)
}

/// The metrics address: `/metrics`, `/health` and `/ready` only.
pub fn metrics_only(state: Shared) -> Router {
    finish(metrics::router(), state)
}

/// Credentials around `protected`, the open health checks beside it, JSON
/// 404/405s and the headers every response carries.
fn finish(protected: Router<Shared>, state: Shared) -> Router {
    Router::new()
        .merge(protected.route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_credentials,
        )))
        .merge(health::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers every response carries: browsers must not guess content types,
/// and nothing here may be framed by another site.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Rows in one answer of the per-subscriber resources unless `limit` says
/// otherwise, and the most it may say.
const ROWS: (u32, u32) = (1000, 10_000);

/// A `limit` parameter: `default` when absent, else 1 to `max`.
fn limit_param(
    value: Option<u32>,
    (default, max): (u32, u32),
) -> Result<u32, super::error::ApiError> {
    let limit = value.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(super::error::bad_request(format!(
            "`limit` = {limit} must be between 1 and {max}"
        )));
    }
    Ok(limit)
}

/// A `YYYY-MM` billing period query parameter.
fn period_param(
    value: &Option<String>,
) -> Result<Option<cdrflow_core::reference::BillingPeriod>, super::error::ApiError> {
    value
        .as_deref()
        .map(|p| {
            cdrflow_core::reference::BillingPeriod::parse(p).ok_or_else(|| {
                super::error::bad_request(format!(
                    "`period` = `{p}` is not a billing period such as 2024-03"
                ))
            })
        })
        .transpose()
}

/// A `YYYY-MM-DD` query parameter.
fn day_param(
    name: &str,
    value: &Option<String>,
) -> Result<Option<cdrflow_core::normalize::Day>, super::error::ApiError> {
    match value {
        None => Ok(None),
        Some(text) => cdrflow_core::normalize::Day::parse(text)
            .map(Some)
            .ok_or_else(|| {
                super::error::bad_request(format!(
                    "`{name}` = `{text}` is not a date; use YYYY-MM-DD"
                ))
            }),
    }
}
