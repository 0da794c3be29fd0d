//! `/metrics`: the process's one exposition (`crate::metrics::page`), with
//! the store's lifetime counters read at each scrape.

use axum::extract::State;
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::server::auth::metrics_readers;
use crate::server::error::ApiError;
use crate::server::state::Shared;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn(metrics_readers))
}

async fn metrics(State(state): State<Shared>) -> Result<Response, ApiError> {
    let counts = state.stores.query(|s| s.counts()).await?;
    let page = crate::metrics::page(&counts);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page).into_response())
}
