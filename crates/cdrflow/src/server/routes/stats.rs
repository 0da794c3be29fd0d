//! `/daily-stats`, `/hourly-stats`: seed 003's statistics of one UTC day,
//! as `cdrflow daily` computed them. Staff only, like the windows.

use axum::extract::State;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use cdrflow_store::StatGrain;
use serde::Deserialize;
use serde_json::json;

use crate::commands::daily::parse_day;
use crate::server::auth::staff_only;
use crate::server::error::{bad_request, ApiError, ApiQuery};
use crate::server::state::Shared;
use crate::views::stat_json;

pub fn router() -> Router<Shared> {
    Router::new()
        .route(
            "/daily-stats",
            get(|state, query| stats(StatGrain::Daily, state, query)),
        )
        .route(
            "/hourly-stats",
            get(|state, query| stats(StatGrain::Hourly, state, query)),
        )
        .route_layer(middleware::from_fn(staff_only))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    date: String,
    region: Option<String>,
}

async fn stats(
    grain: StatGrain,
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<StatsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let day = parse_day(&query.date).map_err(|e| bad_request(format!("`date`: {e:#}")))?;
    let rows = state.stores.query(move |s| s.stats(grain, day)).await?;
    let rows: Vec<_> = rows
        .iter()
        .filter(|r| {
            query
                .region
                .as_ref()
                .is_none_or(|region| &r.key.region == region)
        })
        .map(stat_json)
        .collect();
    Ok(Json(json!({ "date": query.date, "stats": rows })))
}
