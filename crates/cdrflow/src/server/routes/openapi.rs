//! `/openapi.json`: the OpenAPI 3.0 description of this API, kept next to
//! the handlers it describes; CI checks the server against it with
//! schemathesis.

use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::server::auth::api_users;
use crate::server::state::Shared;

pub const DOCUMENT: &str = include_str!("openapi.json");

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route_layer(middleware::from_fn(api_users))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdrflow_core::reject::RejectReason;

    #[test]
    fn openapi_lists_every_rejection_reason() {
        let spec: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        let parameters = spec["paths"]["/rejected"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let reason = parameters.iter().find(|p| p["name"] == "reason").unwrap();
        let listed: Vec<&str> = reason["schema"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let known: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(listed, known);
    }
}
