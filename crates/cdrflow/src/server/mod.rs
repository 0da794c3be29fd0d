//! `cdrflow serve`: the Usage API (seed 000) over whichever store is configured.
//!
//! Small, direct axum handlers. Stores are synchronous, so each request runs
//! its query on tokio's blocking pool with a connection from a small pool.
//! Every endpoint but `/health` and `/ready` needs HTTP Basic credentials
//! from the users file (`cdrflow user add`).

pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use cdrflow_core::mediation::DuplicateReason;
use cdrflow_core::model::Kind;
use cdrflow_core::normalize::{normalize_msisdn, CountryCode, Day};
use cdrflow_core::reject::RejectReason;
use cdrflow_store::Store;
use serde::Deserialize;
use serde_json::json;

use crate::config::Settings;
use crate::views::summary_json;
use users::{default_users_file, Authenticator, UsersFile};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address for the API
    #[arg(long, env = "CDRFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Users file [default: users.toml in the data dir]
    #[arg(long, env = "CDRFLOW_USERS", value_name = "FILE")]
    pub users: Option<PathBuf>,
}

/// Store connections reused across requests.
struct StorePool {
    settings: Settings,
    idle: Mutex<Vec<Box<dyn Store>>>,
}

impl StorePool {
    fn with_store<T>(
        &self,
        query: impl FnOnce(&mut dyn Store) -> cdrflow_store::Result<T>,
    ) -> Result<T> {
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut store = match taken {
            Some(store) => store,
            None => self.settings.open_store()?,
        };
        let result = query(store.as_mut());
        // A connection whose query failed may be broken: let it go.
        if result.is_ok() {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(store);
        }
        Ok(result?)
    }
}

struct AppState {
    stores: StorePool,
    auth: Authenticator,
    country_code: CountryCode,
}

type Shared = Arc<AppState>;

/// A JSON error with a status that fits.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!("request failed: {e:#}");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is not reachable right now".into(),
        )
    }
}

pub fn run(settings: &Settings, args: ServeArgs) -> Result<()> {
    let users_path = args
        .users
        .clone()
        .unwrap_or_else(|| default_users_file(&settings.data_dir));
    let auth = Authenticator::new(UsersFile::load(&users_path)?)?;
    if auth.is_empty() {
        bail!(
            "no API users in {}; add one with `cdrflow user add NAME`",
            users_path.display()
        );
    }
    let state = Arc::new(AppState {
        stores: StorePool {
            settings: settings.clone(),
            idle: Mutex::new(Vec::new()),
        },
        auth,
        country_code: settings.country_code,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        eprintln!(
            "cdrflow serve: Usage API on http://{}/usage/{{msisdn}}",
            listener.local_addr()?
        );
        axum::serve(listener, router(state))
            .await
            .context("the HTTP server stopped")
    })
}

fn router(state: Shared) -> Router {
    let protected = Router::new()
        .route("/usage/{msisdn}", get(usage))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_credentials,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(protected)
        .with_state(state)
}

async fn require_credentials(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let credentials = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let accepted = match credentials.as_deref().and_then(|c| c.split_once(':')) {
        Some((name, password)) => {
            let (state, name, password) = (state.clone(), name.to_string(), password.to_string());
            // argon2 is deliberately slow: keep it off the async workers.
            tokio::task::spawn_blocking(move || state.auth.verify(&name, &password))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    if accepted {
        return next.run(request).await;
    }
    let mut response = ApiError(
        StatusCode::UNAUTHORIZED,
        "valid HTTP Basic credentials are required".into(),
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        "Basic realm=\"cdrflow\"".parse().expect("static header"),
    );
    response
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(state): State<Shared>) -> Result<Json<serde_json::Value>, ApiError> {
    tokio::task::spawn_blocking(move || state.stores.with_store(|s| s.counts()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))??;
    Ok(Json(json!({ "status": "ready" })))
}

#[derive(Debug, Deserialize)]
struct UsageQuery {
    date: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn day_param(name: &str, value: &Option<String>) -> Result<Option<Day>, ApiError> {
    match value {
        None => Ok(None),
        Some(text) => Day::parse(text).map(Some).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("`{name}` = `{text}` is not a date; use YYYY-MM-DD"),
            )
        }),
    }
}

async fn usage(
    State(state): State<Shared>,
    Path(raw_msisdn): Path<String>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let msisdn = normalize_msisdn(&raw_msisdn, state.country_code).map_err(|why| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("`{raw_msisdn}` is not a subscriber number: it {why}"),
        )
    })?;
    let (date, from, to) = (
        day_param("date", &query.date)?,
        day_param("from", &query.from)?,
        day_param("to", &query.to)?,
    );
    let (from, to) = match (date, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give either `date` or `from`/`to`, not both".into(),
            ))
        }
        (Some(day), None, None) => (day, day),
        (None, from, to) => (
            from.unwrap_or(Day(i32::MIN / 2)),
            to.unwrap_or(Day(i32::MAX / 2)),
        ),
    };
    if from > to {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("`from` {from} is after `to` {to}"),
        ));
    }
    let rows = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || state.stores.with_store(|s| s.usage(msisdn, from, to)))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))??
    };
    if rows.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no usage for {msisdn} in that period"),
        ));
    }
    let summaries: Vec<_> = rows.iter().map(summary_json).collect();
    Ok(Json(
        json!({ "msisdn": msisdn.to_string(), "summaries": summaries }),
    ))
}

/// Prometheus text exposition of the store's lifetime counters: the same
/// figures from every replica, since they come from the shared store.
async fn metrics(State(state): State<Shared>) -> Result<Response, ApiError> {
    let counts = tokio::task::spawn_blocking(move || state.stores.with_store(|s| s.counts()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))??;
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
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
