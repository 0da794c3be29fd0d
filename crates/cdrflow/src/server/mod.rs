//! `cdrflow serve`: the Usage API (seed 000), the live dashboard and the
//! Prometheus metrics, over whichever store is configured.
//!
//! - `routes/`: one module per resource, each with its handlers and the
//!   roles that may call it; merged in `routes::api`.
//! - `auth`: credentials, roles, rate limits and the bounded argon2 pool;
//!   `users`: the users file behind them.
//! - `listener`: connections with limits (count, header and request
//!   timeouts, HTTP/2 only when asked) and TLS.
//! - `state`, `error`: what handlers share, and how they refuse.
//!
//! Stores are synchronous, so each request runs its query on tokio's
//! blocking pool with a connection from a small pool.
//!
//! Processing commands (`process`, `run`) also serve `/metrics`, `/health`
//! and `/ready` on the metrics address (seed 000's port 8000): what only a
//! processing process knows — commit and end-to-end latency, Kafka lag — is
//! measured there (see `telemetry`). The metrics address speaks TLS when the
//! API does.

mod auth;
mod error;
mod listener;
mod routes;
mod state;
pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::Router;

use crate::config::Settings;
use auth::AuthLimits;
use listener::HttpLimits;
use state::{AppState, Shared};
use users::{default_users_file, UsersFile};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address for the API and dashboard
    #[arg(long, env = "CDRFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Users file [default: users.toml in the data dir]
    #[arg(long, env = "CDRFLOW_USERS", value_name = "FILE")]
    pub users: Option<PathBuf>,

    #[command(flatten)]
    pub http: HttpArgs,
}

/// How a process serves HTTP: its metrics address, TLS, connection limits
/// and authentication limits. Shared by `serve`, `process` and `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
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

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub limits: HttpLimits,

    #[command(flatten)]
    pub auth: AuthLimits,
}

/// HTTPS for the API and the metrics address: both files or neither.
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

impl TlsArgs {
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

pub fn run(settings: &Settings, args: ServeArgs) -> Result<()> {
    let users_path = args
        .users
        .clone()
        .unwrap_or_else(|| default_users_file(&settings.data_dir));
    let state = AppState::new(settings, &users_path, &args.http.auth)?;
    if state.auth.is_empty() {
        bail!(
            "no API users in {}; add one with `cdrflow user add NAME`",
            users_path.display()
        );
    }
    let tls = listener::tls_config(&args.http.tls, args.http.limits.http2)?;
    serve_metrics(state.clone(), &args.http, tls.clone())?;
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let scheme = args.http.tls.scheme();
    eprintln!(
        "cdrflow serve: dashboard on {scheme}://{0}/ and Usage API on {scheme}://{0}/usage/{{msisdn}}",
        listener.local_addr()?
    );
    runtime(None)?.block_on(async {
        reload_users_on_sighup(state.clone());
        listener::serve(listener, routes::api(state), tls, &args.http.limits).await
    })
}

fn runtime(worker_threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads);
    }
    Ok(builder.enable_all().build()?)
}

/// SIGHUP re-reads the users file at once (it is also watched); one
/// listener per state, however many runtimes serve it.
fn reload_users_on_sighup(state: Shared) {
    use tokio::signal::unix::{signal, SignalKind};
    if state
        .sighup_watched
        .swap(true, std::sync::atomic::Ordering::AcqRel)
    {
        return;
    }
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the users file");
                    state.auth.reload();
                }
            });
        }
        Err(e) => tracing::warn!("SIGHUP will not reload the users file: {e}"),
    }
}

/// Serves `app` from a runtime thread of its own; `None` (with a warning)
/// when `listen` is taken, so that a busy port never stops the processing.
fn serve_on_thread(
    what: &str,
    listen: SocketAddr,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    http: &HttpArgs,
    state: Shared,
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
    let (what, limits) = (what.to_string(), http.limits.clone());
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let served = runtime.block_on(async {
                reload_users_on_sighup(state);
                listener::serve(listener, app, tls, &limits).await
            });
            if let Err(e) = served {
                tracing::error!("serving {what} stopped: {e:#}");
            }
        })?;
    Ok(Some(address))
}

/// Serves `/metrics`, `/health` and `/ready` on the metrics address, from
/// a thread of its own, unless disabled.
fn serve_metrics(
    state: Shared,
    http: &HttpArgs,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<()> {
    if http.no_metrics {
        return Ok(());
    }
    if state.auth.is_empty() {
        tracing::warn!("/metrics needs credentials and there are no API users yet: add one with `cdrflow user add NAME --role metrics`");
    }
    let app = routes::metrics_only(state.clone());
    if let Some(address) = serve_on_thread("metrics", http.metrics_listen, app, tls, http, state)? {
        eprintln!(
            "cdrflow: Prometheus metrics on {}://{address}/metrics",
            http.tls.scheme()
        );
    }
    Ok(())
}

/// For processing commands: metrics on their own address and thread.
pub fn serve_metrics_in_background(settings: &Settings, http: &HttpArgs) -> Result<()> {
    if http.no_metrics {
        return Ok(());
    }
    let state = AppState::new(
        settings,
        &default_users_file(&settings.data_dir),
        &http.auth,
    )?;
    serve_metrics(
        state,
        http,
        listener::tls_config(&http.tls, http.limits.http2)?,
    )
}

/// Serves the API and dashboard on a background thread (for `cdrflow run`),
/// and the metrics beside them. With no users yet, creates `demo` with a
/// random password and prints it once. Returns the API address, or `None`
/// (with a warning) when `listen` is taken.
pub fn serve_in_background(
    settings: &Settings,
    listen: SocketAddr,
    http: &HttpArgs,
) -> Result<Option<SocketAddr>> {
    let users_path = default_users_file(&settings.data_dir);
    let mut users = UsersFile::load(&users_path)?;
    if users.users.is_empty() {
        let password = users::random_password();
        users.set_password("demo", &password, None)?;
        users.save(&users_path)?;
        eprintln!(
            "cdrflow run: created API user `demo` with password `{password}` (in {})",
            users_path.display()
        );
    }
    let state = AppState::new(settings, &users_path, &http.auth)?;
    let tls = listener::tls_config(&http.tls, http.limits.http2)?;
    serve_metrics(state.clone(), http, tls.clone())?;
    serve_on_thread(
        "the dashboard",
        listen,
        routes::api(state.clone()),
        tls,
        http,
        state,
    )
}
