//! `cdrflow serve`: the Usage API (seed 000), the live dashboard and the
//! Prometheus metrics, over whichever store is configured.
//!
//! Small, direct axum handlers. Stores are synchronous, so each request runs
//! its query on tokio's blocking pool with a connection from a small pool.
//! Every endpoint but `/health` and `/ready` needs HTTP Basic credentials
//! from the users file (`cdrflow user add`). `/openapi.json` describes the
//! API and is checked against the server by schemathesis in CI.
//!
//! Processing commands (`process`, `run`) also serve `/metrics`, `/health`
//! and `/ready` on the metrics address (seed 000's port 8000): what only a
//! processing process knows — commit and end-to-end latency, Kafka lag — is
//! measured there (see `telemetry`).

pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
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
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::config::Settings;
use crate::telemetry::telemetry;
use crate::views::summary_json;
use users::{default_users_file, Authenticator, UsersFile};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address for the API and dashboard
    #[arg(long, env = "CDRFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Users file [default: users.toml in the data dir]
    #[arg(long, env = "CDRFLOW_USERS", value_name = "FILE")]
    pub users: Option<PathBuf>,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// HTTPS for the API: both files or neither.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key
    #[arg(
        long,
        env = "CDRFLOW_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) for --tls-cert
    #[arg(
        long,
        env = "CDRFLOW_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

/// Where a process exposes its Prometheus metrics.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Address for /metrics, /health and /ready (seed 000's port 8000)
    #[arg(
        long,
        env = "CDRFLOW_METRICS_LISTEN",
        default_value = "127.0.0.1:8000",
        value_name = "ADDR"
    )]
    pub metrics_listen: SocketAddr,

    /// Do not serve metrics on a separate address
    #[arg(long)]
    pub no_metrics: bool,
}

/// Store connections reused across requests, at most `STORE_CONNECTIONS` at
/// once: more would not answer faster on a few cores, and each SQLite
/// connection keeps its own page cache (so an unbounded pool grew to
/// gigabytes under load).
struct StorePool {
    settings: Settings,
    idle: Mutex<Vec<Box<dyn Store>>>,
    permits: tokio::sync::Semaphore,
}

const STORE_CONNECTIONS: usize = 8;

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

    /// Runs `query` on the blocking pool.
    async fn query<T: Send + 'static>(
        self: &Arc<Self>,
        query: impl FnOnce(&mut dyn Store) -> cdrflow_store::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let pool = self.clone();
        Ok(tokio::task::spawn_blocking(move || pool.with_store(query))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))??)
    }
}

struct AppState {
    stores: Arc<StorePool>,
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

fn bad_request(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message)
}

/// `Query`, with malformed query strings answered as JSON 400s like every other error.
struct ApiQuery<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(query)| ApiQuery(query))
            .map_err(|e: QueryRejection| bad_request(format!("bad query: {}", e.body_text())))
    }
}

/// `Path`, with undecodable segments answered as JSON 400s.
struct ApiPath<T>(T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(path)| ApiPath(path))
            .map_err(|e: PathRejection| bad_request(format!("bad path: {}", e.body_text())))
    }
}

pub fn run(settings: &Settings, args: ServeArgs) -> Result<()> {
    let users_path = args
        .users
        .clone()
        .unwrap_or_else(|| default_users_file(&settings.data_dir));
    let state = app_state(settings, &users_path)?;
    if state.auth.is_empty() {
        bail!(
            "no API users in {}; add one with `cdrflow user add NAME`",
            users_path.display()
        );
    }
    serve_metrics(state.clone(), &args.metrics)?;
    let scheme = if args.tls.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "cdrflow serve: dashboard on {scheme}://{0}/ and Usage API on {scheme}://{0}/usage/{{msisdn}}",
        listener.local_addr()?
    );
    runtime(None)?.block_on(serve_app(listener, router(state), &args.tls))
}

fn runtime(worker_threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads);
    }
    Ok(builder.enable_all().build()?)
}

/// Serves `app` on `listener`, over HTTPS when `tls` names a certificate.
async fn serve_app(listener: std::net::TcpListener, app: Router, tls: &TlsArgs) -> Result<()> {
    listener.set_nonblocking(true)?;
    match (&tls.tls_cert, &tls.tls_key) {
        (Some(cert), Some(key)) => {
            // One process-wide provider; a second install is a harmless no-op error.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load the TLS certificate {} and key {}",
                        cert.display(),
                        key.display()
                    )
                })?;
            axum_server::from_tcp_rustls(listener, config)?
                .serve(app.into_make_service())
                .await
                .context("the HTTPS server stopped")
        }
        _ => axum::serve(tokio::net::TcpListener::from_std(listener)?, app)
            .await
            .context("the HTTP server stopped"),
    }
}

fn app_state(settings: &Settings, users_path: &std::path::Path) -> Result<Shared> {
    Ok(Arc::new(AppState {
        stores: Arc::new(StorePool {
            settings: settings.clone(),
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(STORE_CONNECTIONS),
        }),
        auth: Authenticator::watching(users_path)?,
        country_code: settings.country_code,
    }))
}

/// Serves `app` from a thread of its own; `None` (with a warning) when
/// `listen` is taken, so that a busy port never stops the processing.
fn serve_on_thread(
    what: &str,
    listen: SocketAddr,
    app: Router,
    tls: TlsArgs,
) -> Result<Option<SocketAddr>> {
    let listener = match std::net::TcpListener::bind(listen) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!("not serving {what}: cannot listen on {listen}: {e}");
            return Ok(None);
        }
    };
    let address = listener.local_addr()?;
    let runtime = runtime(Some(1))?;
    let what = what.to_string();
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            if let Err(e) = runtime.block_on(serve_app(listener, app, &tls)) {
                tracing::error!("serving {what} stopped: {e:#}");
            }
        })?;
    Ok(Some(address))
}

/// Serves `/metrics`, `/health` and `/ready` on the metrics address, unless disabled.
fn serve_metrics(state: Shared, args: &MetricsArgs) -> Result<()> {
    if args.no_metrics {
        return Ok(());
    }
    if state.auth.is_empty() {
        tracing::warn!("/metrics needs credentials and there are no API users yet: add one with `cdrflow user add NAME`");
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_credentials,
        ))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state);
    if let Some(address) = serve_on_thread("metrics", args.metrics_listen, app, TlsArgs::default())?
    {
        eprintln!("cdrflow: Prometheus metrics on http://{address}/metrics");
    }
    Ok(())
}

/// For processing commands: metrics on their own address.
pub fn serve_metrics_in_background(settings: &Settings, args: &MetricsArgs) -> Result<()> {
    if args.no_metrics {
        return Ok(());
    }
    serve_metrics(
        app_state(settings, &default_users_file(&settings.data_dir))?,
        args,
    )
}

/// Serves the API and dashboard on a background thread (for `cdrflow run`),
/// and the metrics on theirs. With no users yet, creates `demo` with a
/// random password and prints it once. Returns the API address, or `None`
/// (with a warning) when `listen` is taken.
pub fn serve_in_background(
    settings: &Settings,
    listen: SocketAddr,
    metrics: &MetricsArgs,
) -> Result<Option<SocketAddr>> {
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
    let state = app_state(settings, &users_path)?;
    serve_metrics(state.clone(), metrics)?;
    serve_on_thread("the dashboard", listen, router(state), TlsArgs::default())
}

fn router(state: Shared) -> Router {
    let protected = Router::new()
        .route("/usage/{msisdn}", get(usage))
        .route("/metrics", get(metrics))
        .route("/rejected", get(rejected))
        .route("/overview", get(overview))
        .route("/openapi.json", get(openapi))
        .route("/", get(dashboard))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_credentials,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /openapi.json".into(),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint answers GET only".into(),
    )
}

/// Headers every response carries: browsers must not guess content types,
/// and nothing here may be framed by another site.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    response
}

async fn require_credentials(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    if request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .count()
        > 1
    {
        return ApiError(
            StatusCode::BAD_REQUEST,
            "send one Authorization header, not several".into(),
        )
        .into_response();
    }
    let credentials = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        // The scheme is case-insensitive (RFC 9110, 11.1).
        .and_then(|(scheme, b64)| scheme.eq_ignore_ascii_case("basic").then_some(b64))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let accepted = match credentials.as_deref().and_then(|c| c.split_once(':')) {
        Some((name, password)) if state.auth.verified_before(name, password) => true,
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
        let mut response = next.run(request).await;
        // Subscribers' usage must not linger in shared or browser caches.
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        return response;
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

/// Ready: the store answers and, when consuming Kafka, partitions are assigned.
async fn ready(State(state): State<Shared>) -> Result<Json<serde_json::Value>, ApiError> {
    state.stores.query(|s| s.counts()).await?;
    if !telemetry().has_work() {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Kafka partitions assigned to this consumer yet".into(),
        ));
    }
    let warnings: Vec<String> = telemetry()
        .offset_resets()
        .iter()
        .map(|r| r.describe())
        .collect();
    Ok(Json(json!({ "status": "ready", "warnings": warnings })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    date: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn day_param(name: &str, value: &Option<String>) -> Result<Option<Day>, ApiError> {
    match value {
        None => Ok(None),
        Some(text) => Day::parse(text).map(Some).ok_or_else(|| {
            bad_request(format!("`{name}` = `{text}` is not a date; use YYYY-MM-DD"))
        }),
    }
}

async fn usage(
    State(state): State<Shared>,
    ApiPath(raw_msisdn): ApiPath<String>,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let msisdn = normalize_msisdn(&raw_msisdn, state.country_code).map_err(|why| {
        bad_request(format!(
            "`{raw_msisdn}` is not a subscriber number: it {why}"
        ))
    })?;
    let (date, from, to) = (
        day_param("date", &query.date)?,
        day_param("from", &query.from)?,
        day_param("to", &query.to)?,
    );
    let (from, to) = usage_period(date, from, to).map_err(bad_request)?;
    let rows = state
        .stores
        .query(move |s| s.usage(msisdn, from, to))
        .await?;
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

/// Prometheus text exposition: the store's lifetime counters (the same
/// figures from every replica, since they come from the shared store), then
/// this process's own measurements.
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
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectedQuery {
    reason: Option<String>,
    /// Only rejects with an id above this (paging).
    after: Option<i64>,
    limit: Option<u32>,
}

/// Rejected records, oldest first, paged by id.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverviewQuery {
    date: Option<String>,
}

/// One day at a glance: totals by kind and type, lifetime counters, top subscribers.
async fn overview(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<OverviewQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let today = Day(crate::pipeline::now_millis().div_euclid(86_400_000) as i32);
    let day = day_param("date", &query.date)?.unwrap_or(today);
    let (rows, counts, top) = state
        .stores
        .query(move |s| Ok((s.overview(day)?, s.counts()?, s.top_subscribers(10)?)))
        .await?;
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
        "pipeline": pipeline_json(),
    })))
}

/// This process's own view of the pipeline, for the dashboard.
fn pipeline_json() -> serde_json::Value {
    let t = telemetry();
    let percentiles = |h: &crate::telemetry::Histogram| {
        json!({
            "count": h.count(),
            "p50_ms": h.quantile_millis(0.5),
            "p90_ms": h.quantile_millis(0.9),
            "p99_ms": h.quantile_millis(0.99),
        })
    };
    let lag: Vec<_> = t
        .lag()
        .into_iter()
        .map(|((topic, partition), records)| {
            json!({ "topic": topic, "partition": partition, "records": records })
        })
        .collect();
    let last_commit = t
        .last_commit_millis
        .load(std::sync::atomic::Ordering::Relaxed);
    json!({
        "last_commit_unix_ms": (last_commit > 0).then_some(last_commit),
        "commit_duration": percentiles(&t.commit_duration),
        "ingest_to_commit": percentiles(&t.ingest_to_commit),
        "event_to_commit": percentiles(&t.event_to_commit),
        "reading_kafka": t.reading_kafka.load(std::sync::atomic::Ordering::Relaxed),
        "kafka_lag": lag,
        "dlq_writes": t.dlq_writes.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// The OpenAPI 3.0 description of this API, kept next to the handlers it
/// describes; CI checks the server against it with schemathesis.
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// The live dashboard: one self-contained page (no CDN), polling the API.
const DASHBOARD: &str = include_str!("dashboard.html");

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
    if let Ok(policy) = header::HeaderValue::from_str(&POLICY) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_lists_every_rejection_reason() {
        let spec: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
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
