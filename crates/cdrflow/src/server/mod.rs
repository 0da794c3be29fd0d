//! `cdrflow serve`: the Usage API (seed 000) over whichever store is configured.
//!
//! Small, direct axum handlers. Stores are synchronous, so each request runs
//! its query on tokio's blocking pool with a connection from a small pool.
//! Every endpoint but `/health` and `/ready` needs HTTP Basic credentials
//! from the users file (`cdrflow user add`).

pub mod users;

use std::future::IntoFuture;
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
use cdrflow_core::money::format_micros;
use cdrflow_core::normalize::{normalize_msisdn, usage_period, CountryCode, Day};
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "cdrflow serve: dashboard on http://{0}/ and Usage API on http://{0}/usage/{{msisdn}}",
        listener.local_addr()?
    );
    runtime
        .block_on(axum::serve(listener, router(app_state(settings, auth))).into_future())
        .context("the HTTP server stopped")
}

fn app_state(settings: &Settings, auth: Authenticator) -> Shared {
    Arc::new(AppState {
        stores: StorePool {
            settings: settings.clone(),
            idle: Mutex::new(Vec::new()),
        },
        auth,
        country_code: settings.country_code,
    })
}

/// Serves the API and dashboard on a background thread (for `cdrflow run`).
/// With no users yet, creates `demo` with a random password and prints it once.
/// Returns the address, or `None` (with a warning) when `listen` is taken.
pub fn serve_in_background(settings: &Settings, listen: SocketAddr) -> Result<Option<SocketAddr>> {
    let users_path = default_users_file(&settings.data_dir);
    let mut users = UsersFile::load(&users_path)?;
    if users.users.is_empty() {
        let password = users::random_password();
        users.set_password("demo", &password)?;
        users.save(&users_path)?;
        eprintln!(
            "cdrflow run: created API user `demo` with password `{password}` (in {})",
            users_path.display()
        );
    }
    let auth = Authenticator::new(users)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = match runtime.block_on(tokio::net::TcpListener::bind(listen)) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!("not serving the dashboard: cannot listen on {listen}: {e}");
            return Ok(None);
        }
    };
    let address = listener.local_addr()?;
    let app = router(app_state(settings, auth));
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            if let Err(e) = runtime.block_on(axum::serve(listener, app).into_future()) {
                tracing::error!("the HTTP server stopped: {e}");
            }
        })?;
    Ok(Some(address))
}

fn router(state: Shared) -> Router {
    let protected = Router::new()
        .route("/usage/{msisdn}", get(usage))
        .route("/metrics", get(metrics))
        .route("/rejected", get(rejected))
        .route("/overview", get(overview))
        .route("/", get(dashboard))
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
    let (from, to) =
        usage_period(date, from, to).map_err(|why| ApiError(StatusCode::BAD_REQUEST, why))?;
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

#[derive(Debug, Deserialize)]
struct RejectedQuery {
    reason: Option<String>,
    /// Only rejects with an id above this (paging).
    after: Option<i64>,
    limit: Option<u32>,
}

/// Rejected records, oldest first, paged by id.
async fn rejected(
    State(state): State<Shared>,
    Query(query): Query<RejectedQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(reason) = &query.reason {
        if RejectReason::parse(reason).is_none() {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("`reason` = `{reason}` is not a rejection reason"),
            ));
        }
    }
    let limit = query.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("`limit` = {limit} must be between 1 and 1000"),
        ));
    }
    let store_query = cdrflow_store::RejectQuery {
        reason: query.reason,
        after_id: query.after.unwrap_or(0),
        limit: Some(limit),
    };
    let rejects = tokio::task::spawn_blocking(move || {
        state.stores.with_store(|s| {
            let mut out = Vec::new();
            s.rejects(&store_query, &mut |r| out.push(r))?;
            Ok(out)
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))??;
    let next_after = rejects.last().map(|r| r.id);
    let rejects: Vec<_> = rejects.iter().map(crate::views::reject_json).collect();
    Ok(Json(
        json!({ "rejects": rejects, "next_after": next_after }),
    ))
}

#[derive(Debug, Deserialize)]
struct OverviewQuery {
    date: Option<String>,
}

/// One day at a glance: totals by kind and type, lifetime counters, top subscribers.
async fn overview(
    State(state): State<Shared>,
    Query(query): Query<OverviewQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let today = Day(crate::pipeline::now_millis().div_euclid(86_400_000) as i32);
    let day = day_param("date", &query.date)?.unwrap_or(today);
    let (rows, counts, top) = tokio::task::spawn_blocking(move || {
        state
            .stores
            .with_store(|s| Ok((s.overview(day)?, s.counts()?, s.top_subscribers(10)?)))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))??;
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
            "rejected_by_reason": rejected,
        },
        "top_subscribers_all_time": top,
    })))
}

/// The live dashboard: one self-contained page (no CDN), polling the API.
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}
