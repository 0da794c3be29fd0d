//! `/metrics`: Prometheus text exposition. The store's lifetime counters
//! first (the same figures from every replica, since they come from the
//! shared store), then this process's own measurements.

use axum::extract::State;
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cdrflow_core::mediation::DuplicateReason;
use cdrflow_core::model::Kind;
use cdrflow_core::reject::RejectReason;

use crate::server::auth::metrics_readers;
use crate::server::error::ApiError;
use crate::server::state::Shared;
use crate::telemetry::telemetry;

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn(metrics_readers))
}

async fn metrics(State(state): State<Shared>) -> Result<Response, ApiError> {
    let counts = state.stores.query(|s| s.counts()).await?;
    let accepted = |kind: Kind| counts.accepted.get(&kind).copied().unwrap_or(0);
    let mut out = String::new();
    // Seed 000's names first.
    for (name, help, value) in [
        (
            "cdr_data_updates_total",
            "Data CDRs added to the daily summaries.",
            accepted(Kind::Data),
        ),
        (
            "cdr_voice_updates_total",
            "Voice CDRs added to the daily summaries.",
            accepted(Kind::Voice),
        ),
        (
            "cdrflow_records_in_total",
            "Records read from all sources.",
            counts.records_in,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        ));
    }
    out.push_str("# HELP cdrflow_records_accepted_total Records accepted, by kind.\n# TYPE cdrflow_records_accepted_total counter\n");
    for kind in Kind::ALL {
        out.push_str(&format!(
            "cdrflow_records_accepted_total{{kind=\"{kind}\"}} {}\n",
            accepted(kind)
        ));
    }
    out.push_str("# HELP cdrflow_records_rejected_total Records rejected, by reason.\n# TYPE cdrflow_records_rejected_total counter\n");
    for reason in RejectReason::ALL {
        let value = counts.rejected.get(&reason).copied().unwrap_or(0);
        out.push_str(&format!(
            "cdrflow_records_rejected_total{{reason=\"{reason}\"}} {value}\n"
        ));
    }
    out.push_str("# HELP cdrflow_duplicates_total Duplicate records dropped, by reason.\n# TYPE cdrflow_duplicates_total counter\n");
    for reason in [
        DuplicateReason::SameRecordId,
        DuplicateReason::SameSourcePosition,
    ] {
        let value = counts.duplicates.get(&reason).copied().unwrap_or(0);
        out.push_str(&format!(
            "cdrflow_duplicates_total{{reason=\"{}\"}} {value}\n",
            reason.as_str()
        ));
    }
    telemetry().expose(&mut out);
    crate::events::expose(&mut out);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
