//! `/overview`: one day at a glance for the dashboard — totals by kind and
//! type, lifetime counters, top subscribers, this process's pipeline.

use axum::extract::State;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use cdrflow_core::money::format_micros;
use cdrflow_core::normalize::Day;
use serde::Deserialize;
use serde_json::json;

use super::day_param;
use crate::server::auth::staff_only;
use crate::server::error::{ApiError, ApiQuery};
use crate::server::state::Shared;
use crate::telemetry::telemetry;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/overview", get(overview))
        .route_layer(middleware::from_fn(staff_only))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverviewQuery {
    date: Option<String>,
}

async fn overview(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<OverviewQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let today = Day(crate::pipeline::now_millis().div_euclid(86_400_000) as i32);
    let day = day_param("date", &query.date)?.unwrap_or(today);
    let (rows, counts) = state
        .stores
        .query(move |s| Ok((s.overview(day)?, s.counts()?)))
        .await?;
    let top = state.top_subscribers().await?;
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "kind": r.kind.as_str(),
                "type": r.service_type,
                "subscribers": r.subscribers,
                "records": r.totals.records,
                "up_bytes": r.totals.up_bytes,
                "down_bytes": r.totals.down_bytes,
                "duration_sec": r.totals.duration_sec,
                "cost_wak": format_micros(i128::from(r.totals.cost_micros)),
                "amount": format_micros(i128::from(r.totals.amount_micros)),
            })
        })
        .collect();
    let rejected: serde_json::Map<String, serde_json::Value> = counts
        .rejected
        .iter()
        .map(|(r, n)| (r.as_str().to_string(), json!(n)))
        .collect();
    let top: Vec<_> = top
        .iter()
        .map(|t| json!({ "msisdn": t.msisdn, "cost_wak": format_micros(t.cost_micros) }))
        .collect();
    Ok(Json(json!({
        "date": day.to_string(),
        "rows": rows,
        "counters": {
            "records_in": counts.records_in,
            "accepted": counts.accepted_total(),
            "rejected": counts.rejected_total(),
            "duplicates": counts.duplicates_total(),
            "late_events": counts.late_events,
            "pseudonymous": counts.pseudonymous,
            "rejected_by_reason": rejected,
        },
        "top_subscribers_all_time": top,
        "pipeline": pipeline_json(),
    })))
}

/// This process's own view of the pipeline, for the dashboard.
fn pipeline_json() -> serde_json::Value {
    let t = telemetry();
    let percentiles = |h: &crate::histogram::Histogram| {
        json!({
            "count": h.count(),
            "p50_ms": h.quantile_millis(0.5),
            "p90_ms": h.quantile_millis(0.9),
            "p99_ms": h.quantile_millis(0.99),
        })
    };
    let lag: Vec<_> = t
        .lag()
        .into_iter()
        .map(|((topic, partition), records)| {
            json!({ "topic": topic, "partition": partition, "records": records })
        })
        .collect();
    let last_commit = t
        .last_commit_millis
        .load(std::sync::atomic::Ordering::Relaxed);
    json!({
        "last_commit_unix_ms": (last_commit > 0).then_some(last_commit),
        "commit_duration": percentiles(&t.commit_duration),
        "ingest_to_commit": percentiles(&t.ingest_to_commit),
        "event_to_commit": percentiles(&t.event_to_commit),
        "reading_kafka": t.reading_kafka.load(std::sync::atomic::Ordering::Relaxed),
        "kafka_lag": lag,
        "dlq_writes": t.dlq_writes.load(std::sync::atomic::Ordering::Relaxed),
        "warnings": t.warnings(),
    })
}
