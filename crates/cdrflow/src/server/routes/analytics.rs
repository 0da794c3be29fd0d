//! `/windows`, `/late-events`, `/anomalies`: seed 003's real-time metrics;
//! `/rankings`: seed 004's analytics flush. Staff only: they describe the
//! whole network, not one customer.

use axum::extract::State;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use cdrflow_core::analytics::rankings::Ranked;
use cdrflow_core::analytics::rules::Severity;
use cdrflow_core::money::format_micros;
use cdrflow_core::normalize::{format_timestamp_ms, parse_timestamp, EpochMillis};
use cdrflow_store::{AnomalyQuery, WindowQuery};
use serde::Deserialize;
use serde_json::json;

use super::limit_param;
use crate::server::auth::staff_only;
use crate::server::error::{bad_request, ApiError, ApiQuery};
use crate::server::state::Shared;
use crate::views::{anomaly_json, late_event_json, window_json};

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/windows", get(windows))
        .route("/late-events", get(late_events))
        .route("/anomalies", get(anomalies))
        .route("/rankings", get(rankings))
        .route_layer(middleware::from_fn(staff_only))
}

/// Windows answered at most: a day of 5-minute windows for 40 regions and 5 event types.
const MAX_WINDOWS: usize = 60_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowsQuery {
    from: Option<String>,
    to: Option<String>,
    region: Option<String>,
}

fn time_param(
    name: &str,
    value: &Option<String>,
    open: EpochMillis,
) -> Result<EpochMillis, ApiError> {
    match value {
        None => Ok(open),
        Some(text) => parse_timestamp(text).map_err(|_| {
            bad_request(format!(
                "`{name}` = `{text}` is not an RFC 3339 time; write e.g. 2025-11-09T10:00:00Z"
            ))
        }),
    }
}

async fn windows(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<WindowsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store_query = WindowQuery {
        from: time_param("from", &query.from, EpochMillis::MIN)?,
        to: time_param("to", &query.to, EpochMillis::MAX)?,
        region: query.region,
        idle_after_ms: state.idle_partition_ms,
    };
    let windows = state
        .stores
        .query(move |s| {
            let mut out = Vec::new();
            s.windows(&store_query, &mut |w| {
                if out.len() <= MAX_WINDOWS {
                    out.push(w)
                }
            })?;
            Ok(out)
        })
        .await?;
    if windows.len() > MAX_WINDOWS {
        return Err(bad_request(format!(
            "more than {MAX_WINDOWS} windows match; narrow `from`/`to` or name a `region`"
        )));
    }
    let windows: Vec<_> = windows.iter().map(window_json).collect();
    Ok(Json(json!({ "windows": windows })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    /// Only rows with an id above this (paging).
    after: Option<i64>,
    limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnomaliesQuery {
    after: Option<i64>,
    limit: Option<u32>,
    severity: Option<String>,
}

/// Late events and anomalies come in pages of 50 unless asked, at most 1000.
const PAGE: (u32, u32) = (50, 1000);

async fn late_events(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = limit_param(query.limit, PAGE)?;
    let after = query.after.unwrap_or(0);
    let events = state
        .stores
        .query(move |s| {
            let mut out = Vec::new();
            s.late_events(after, Some(limit), &mut |e| out.push(e))?;
            Ok(out)
        })
        .await?;
    let next_after = events.last().map(|e| e.id);
    let events: Vec<_> = events.iter().map(late_event_json).collect();
    Ok(Json(
        json!({ "late_events": events, "next_after": next_after }),
    ))
}

async fn anomalies(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<AnomaliesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let severity = match &query.severity {
        None => None,
        Some(text) => Some(Severity::parse(text).ok_or_else(|| {
            bad_request(format!(
                "`severity` = `{text}` is not one of low, medium, high, critical"
            ))
        })?),
    };
    let store_query = AnomalyQuery {
        severity,
        after_id: query.after.unwrap_or(0),
        limit: Some(limit_param(query.limit, PAGE)?),
    };
    let anomalies = state
        .stores
        .query(move |s| {
            let mut out = Vec::new();
            s.anomalies(&store_query, &mut |a| out.push(a))?;
            Ok(out)
        })
        .await?;
    let next_after = anomalies.last().map(|a| a.id);
    let anomalies: Vec<_> = anomalies.iter().map(anomaly_json).collect();
    Ok(Json(
        json!({ "anomalies": anomalies, "next_after": next_after }),
    ))
}

/// The latest spend report, as the consumer flushed it.
async fn rankings(State(state): State<Shared>) -> Result<Json<serde_json::Value>, ApiError> {
    let report = state.stores.query(|s| Ok(s.spend_report()?)).await?;
    let Some(report) = report else {
        return Err(ApiError(
            axum::http::StatusCode::NOT_FOUND,
            "no spend report yet: a job flushes one every --rankings-every seconds and when it ends (reading Kafka: every 300 s; `cdrflow run`: every 10 s; a file job: only when given --rankings-every)".into(),
        ));
    };
    let ranked = |rows: &[Ranked], id: &str, with_subscribers: bool| -> Vec<serde_json::Value> {
        rows.iter()
            .map(|r| {
                let mut row = json!({
                    "rank": r.rank,
                    id: r.id,
                    "spend": format_micros(i128::from(r.spend_micros)),
                    "records": r.records,
                });
                if with_subscribers {
                    row["subscribers"] = json!(r.subscribers);
                }
                row
            })
            .collect()
    };
    let statuses: serde_json::Map<String, serde_json::Value> = report
        .statuses
        .iter()
        .map(|s| (s.id.clone(), json!(s.subscribers)))
        .collect();
    Ok(Json(json!({
        "flushed_at": format_timestamp_ms(report.flushed_at),
        "period": report.period.map(|p| p.to_string()),
        "subscribers": ranked(&report.subscribers, "msisdn", false),
        "plans": ranked(&report.plans, "plan_id", true),
        "statuses": statuses,
    })))
}
