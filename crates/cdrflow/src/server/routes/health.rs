//! `/health` and `/ready`: the only endpoints without credentials, for
//! load balancers and orchestrators.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::server::error::ApiError;
use crate::server::state::Shared;
use crate::telemetry::telemetry;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready: the store answers and, when consuming Kafka, partitions are
/// assigned. Warnings say what an operator should look at.
async fn ready(State(state): State<Shared>) -> Result<Json<serde_json::Value>, ApiError> {
    state.stores.query(|s| s.counts()).await?;
    if !telemetry().has_work() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Kafka partitions assigned to this consumer yet".into(),
        ));
    }
    Ok(Json(
        json!({ "status": "ready", "warnings": telemetry().warnings() }),
    ))
}
