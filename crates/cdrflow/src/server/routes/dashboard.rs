//! `/`: the live dashboard, one self-contained page (no CDN) polling the API.

use axum::http::{header, HeaderValue};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;

use crate::server::auth::staff_only;
use crate::server::state::Shared;

const DASHBOARD: &str = include_str!("dashboard.html");

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(dashboard))
        .route_layer(middleware::from_fn(staff_only))
}

/// The dashboard with a Content-Security-Policy that lets only its own inline
/// script (by hash) and style run, and only talk to this server.
async fn dashboard() -> Response {
    static POLICY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use sha2::Digest;
        let script = DASHBOARD
            .split_once("<script>")
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map_or("", |(script, _)| script);
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(script.as_bytes()));
        format!(
            "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'"
        )
    });
    let mut response = axum::response::Html(DASHBOARD).into_response();
    if let Ok(policy) = HeaderValue::from_str(&POLICY) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}
