//! `/rejected`: rejected records with their reasons and payloads, oldest
//! first, paged by id. Staff only: payloads and origins (server file paths,
//! topics) are operational detail, not a customer's business.

use axum::extract::State;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use cdrflow_core::reject::RejectReason;
use serde::Deserialize;
use serde_json::json;

use crate::server::auth::staff_only;
use crate::server::error::{bad_request, ApiError, ApiQuery};
use crate::server::state::Shared;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/rejected", get(rejected))
        .route_layer(middleware::from_fn(staff_only))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectedQuery {
    reason: Option<String>,
    /// Only rejects with an id above this (paging).
    after: Option<i64>,
    limit: Option<u32>,
}

async fn rejected(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<RejectedQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(reason) = &query.reason {
        if RejectReason::parse(reason).is_none() {
            return Err(bad_request(format!(
                "`reason` = `{reason}` is not a rejection reason"
            )));
        }
    }
    let limit = query.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(bad_request(format!(
            "`limit` = {limit} must be between 1 and 1000"
        )));
    }
    let store_query = cdrflow_store::RejectQuery {
        reason: query.reason,
        after_id: query.after.unwrap_or(0),
        limit: Some(limit),
    };
    let rejects = state
        .stores
        .query(move |s| {
            let mut out = Vec::new();
            s.rejects(&store_query, &mut |r| out.push(r))?;
            Ok(out)
        })
        .await?;
    let next_after = rejects.last().map(|r| r.id);
    let rejects: Vec<_> = rejects.iter().map(crate::views::reject_json).collect();
    Ok(Json(
        json!({ "rejects": rejects, "next_after": next_after }),
    ))
}
