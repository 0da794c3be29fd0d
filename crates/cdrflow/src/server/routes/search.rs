//! `/search?q=`: subscribers, customers, cells and plans as they are now
//! (seed 004's search indexer), by words (case and accents folded, each
//! word a prefix), by number prefix in any spelling, plans by monthly fee.
//! Staff only: it lists customers' names and numbers.

use axum::extract::State;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use cdrflow_core::money::format_micros;
use cdrflow_core::reference::{money_micros, ReferenceKind};
use cdrflow_core::search::{Find, SearchQuery};
use serde::Deserialize;
use serde_json::json;

use crate::server::auth::staff_only;
use crate::server::error::{bad_request, ApiError, ApiQuery};
use crate::server::state::Shared;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/search", get(search))
        .route_layer(middleware::from_fn(staff_only))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    q: String,
    /// Comma-separated kinds: subscribers, customers, cells, plans.
    kind: Option<String>,
    /// Plans whose monthly fee is at least this (a decimal amount).
    min_fee: Option<String>,
    max_fee: Option<String>,
    limit: Option<u32>,
}

async fn search(
    State(state): State<Shared>,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(bad_request(format!(
            "`limit` = {limit} must be between 1 and 100"
        )));
    }
    let mut kinds = Vec::new();
    for name in params.kind.iter().flat_map(|k| k.split(',')) {
        kinds.push(ReferenceKind::parse(name.trim()).ok_or_else(|| {
            bad_request(format!(
                "`kind` = `{name}` is not one of subscribers, customers, cells, plans"
            ))
        })?);
    }
    let fee = |name: &str, value: &Option<String>| -> Result<Option<i64>, ApiError> {
        value
            .as_deref()
            .map(|text| {
                money_micros(text).map_err(|why| bad_request(format!("`{name}` = `{text}`: {why}")))
            })
            .transpose()
    };
    let query = SearchQuery {
        find: Find::parse(&params.q, state.country_code),
        kinds,
        min_fee_micros: fee("min_fee", &params.min_fee)?,
        max_fee_micros: fee("max_fee", &params.max_fee)?,
        limit,
    };
    if query.find == Find::Everything
        && query.min_fee_micros.is_none()
        && query.max_fee_micros.is_none()
    {
        return Err(bad_request(
            "give `q` (words or a number prefix) or a fee range (`min_fee`, `max_fee`)".into(),
        ));
    }
    let hits = state.stores.query(move |s| s.search(&query)).await?;
    let results: Vec<serde_json::Value> = hits
        .iter()
        .map(|h| {
            let mut hit = json!({"kind": h.kind.as_str(), "id": h.id, "title": h.title});
            if let Some(fee) = h.fee_micros {
                hit["monthly_fee"] = json!(format_micros(i128::from(fee)));
            }
            hit
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}
