//! Who may call the API, and how often they may get it wrong.
//!
//! Every endpoint but `/health` and `/ready` needs HTTP Basic credentials
//! from the users file. Credentials verified before are recognised in
//! microseconds (see [`Authenticator`](super::users::Authenticator)); any
//! other attempt costs an argon2 verification — tens of milliseconds of CPU
//! and 19 MiB of memory — which is what a password guesser, or anyone
//! trying to exhaust the server, spends. So such attempts are:
//!
//! - **rate-limited** per client address (IPv6 by /64) and, for names in
//!   the users file, per user: each attempt that needs argon2 takes one
//!   token *before* it is verified (so a burst of parallel guesses cannot all
//!   slip in before the first failure is known), and once a budget is spent
//!   the answer is 429 with `Retry-After`, without any argon2;
//! - **bounded**: argon2 runs on `--auth-verifications` threads of its own
//!   (default: one per core), and at most [`MAX_WAITING`] attempts wait for
//!   one; more are answered 503 at once. Each thread keeps argon2's 19 MiB
//!   working area for its life (see [`CheckMemory`]), so memory is bounded
//!   by the thread count, however many attempts arrive;
//! - **counted** in `cdrflow_auth_failures_total{reason}` and logged with
//!   the (escaped, shortened) name and client address, never the password.
//!
//! A client that already holds verified credentials never meets the limits,
//! so a flood of wrong passwords cannot lock a logged-in user out.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use super::state::Shared;
use super::users::{normalize_name, Authenticator, CheckMemory, Principal, Role};
use crate::telemetry::{telemetry, AuthFailure};

/// Limits on authentication attempts that need a password check.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthLimits {
    /// Password checks allowed per client address per minute (a burst of as
    /// many, then one every 60/N s); more are answered 429 with Retry-After
    #[arg(
        long,
        env = "CDRFLOW_AUTH_LIMIT_PER_ADDRESS",
        default_value_t = 30,
        value_name = "N"
    )]
    pub auth_limit_per_address: u32,

    /// Password checks allowed per user name per minute, from all addresses
    #[arg(
        long,
        env = "CDRFLOW_AUTH_LIMIT_PER_USER",
        default_value_t = 10,
        value_name = "N"
    )]
    pub auth_limit_per_user: u32,

    /// Password checks (argon2) run at once [default: one per core]
    #[arg(long, env = "CDRFLOW_AUTH_VERIFICATIONS", value_name = "N")]
    pub auth_verifications: Option<usize>,
}

/// Attempts that may wait for an argon2 slot before more are refused.
pub const MAX_WAITING: usize = 64;

/// The client address of a connection, put on each request by the listener.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress(pub SocketAddr);

pub struct AuthGuard {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    per_user: DefaultKeyedRateLimiter<String>,
    checks_queue: std::sync::mpsc::SyncSender<Check>,
    /// Rate-limiter checks since its state was last trimmed.
    checks: AtomicU64,
    refusals_log: Mutex<(Instant, u64)>,
}

/// A password to check, and where to say whose it is.
struct Check {
    name: String,
    password: String,
    answer: tokio::sync::oneshot::Sender<Option<Arc<Principal>>>,
}

/// A refused authentication, as the client sees it.
enum Refusal {
    Missing,
    Wrong,
    TooMany(Duration),
    Busy,
}

fn quota(per_minute: u32, what: &str) -> Result<Quota> {
    let Some(n) = NonZeroU32::new(per_minute) else {
        bail!("--auth-limit-per-{what} must be at least 1 attempt a minute");
    };
    Ok(Quota::per_minute(n).allow_burst(n))
}

impl AuthGuard {
    /// Starts the password-checking threads, which check against `users`.
    pub fn new(limits: &AuthLimits, users: Arc<Authenticator>) -> Result<AuthGuard> {
        let threads = limits
            .auth_verifications
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads == 0 {
            bail!("--auth-verifications must be at least 1");
        }
        let (checks_queue, checks) = std::sync::mpsc::sync_channel::<Check>(MAX_WAITING);
        let checks = Arc::new(Mutex::new(checks));
        for i in 0..threads {
            let (checks, users) = (checks.clone(), users.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let mut memory = CheckMemory::default();
                    loop {
                        let next = checks.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(check) = next else { return };
                        let verified = users.verify(&check.name, &check.password, &mut memory);
                        let _ = check.answer.send(verified);
                    }
                })?;
        }
        Ok(AuthGuard {
            per_address: RateLimiter::keyed(quota(limits.auth_limit_per_address, "address")?),
            per_user: RateLimiter::keyed(quota(limits.auth_limit_per_user, "user")?),
            checks_queue,
            checks: AtomicU64::new(0),
            refusals_log: Mutex::new((Instant::now(), 0)),
        })
    }

    /// Takes a token for this attempt from its address's and (for a known
    /// user) its user's budget; the wait until the next one when spent.
    fn admit(&self, state: &Shared, address: IpAddr, name: &str) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            // Forget budgets that are full again: memory stays bounded by the
            // addresses seen within a minute.
            self.per_address.retain_recent();
            self.per_address.shrink_to_fit();
            self.per_user.retain_recent();
        }
        let now = self.per_address.clock().now();
        self.per_address
            .check_key(&address_key(address))
            .map_err(|not_until| not_until.wait_time_from(now))?;
        // Unknown names have nothing to protect, and would let a guesser
        // grow the map without bound.
        if state.auth.is_user(name) {
            self.per_user
                .check_key(&name.to_string())
                .map_err(|not_until| not_until.wait_time_from(now))?;
        }
        Ok(())
    }

    /// Says how many attempts were refused as rate-limited, at most every 10 s.
    fn note_rate_limited(&self, address: IpAddr) {
        let mut log = self.refusals_log.lock().unwrap_or_else(|p| p.into_inner());
        log.1 += 1;
        if log.0.elapsed() >= Duration::from_secs(10) {
            tracing::warn!(
                client = %address,
                "{} authentication attempts refused as rate-limited in the last {} s (the last from {address})",
                log.1,
                log.0.elapsed().as_secs()
            );
            *log = (Instant::now(), 0);
        }
    }
}

/// IPv6 clients are limited per /64: one host usually has a whole one.
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

/// The (name, password) of a Basic `Authorization` header; the scheme is
/// case-insensitive (RFC 9110, 11.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((normalize_name(name), password.to_string()))
}

/// A user name as it may appear in the log: escaped and short.
fn loggable(name: &str) -> String {
    let mut shown: String = name.chars().take(64).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// Middleware: the request's [`Principal`] from its credentials, or a refusal.
pub async fn require_credentials(
    State(state): State<Shared>,
    mut request: Request,
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
    let address = request
        .extensions()
        .get::<ClientAddress>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.0.ip());
    match authenticate(&state, request.headers(), address).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            let mut response = next.run(request).await;
            // Subscribers' usage must not linger in shared or browser caches.
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(refusal) => refused(refusal),
    }
}

async fn authenticate(
    state: &Shared,
    headers: &HeaderMap,
    address: IpAddr,
) -> Result<Arc<Principal>, Refusal> {
    let Some((name, password)) = basic_credentials(headers) else {
        telemetry().auth_failure(AuthFailure::Missing);
        return Err(Refusal::Missing);
    };
    if let Some(principal) = state.auth.verified_before(&name, &password) {
        return Ok(principal);
    }
    let guard = &state.guard;
    if let Err(wait) = guard.admit(state, address, &name) {
        telemetry().auth_failure(AuthFailure::RateLimited);
        guard.note_rate_limited(address);
        return Err(Refusal::TooMany(wait));
    }
    let (answer, answered) = tokio::sync::oneshot::channel();
    let check = Check {
        name: name.clone(),
        password,
        answer,
    };
    if guard.checks_queue.try_send(check).is_err() {
        telemetry().auth_failure(AuthFailure::Busy);
        return Err(Refusal::Busy);
    }
    let verified = answered.await.ok().flatten();
    match verified {
        Some(principal) => Ok(principal),
        None => {
            telemetry().auth_failure(AuthFailure::WrongCredentials);
            tracing::warn!(
                user = %loggable(&name),
                client = %address,
                "authentication failed: unknown user or wrong password"
            );
            Err(Refusal::Wrong)
        }
    }
}

fn refused(refusal: Refusal) -> Response {
    let (status, message, retry_after) = match refusal {
        Refusal::Missing | Refusal::Wrong => (
            StatusCode::UNAUTHORIZED,
            "valid HTTP Basic credentials are required".to_string(),
            None,
        ),
        Refusal::TooMany(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            (
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed authentication attempts; retry in {seconds} s"),
                Some(seconds.max(1)),
            )
        }
        Refusal::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many authentication attempts in progress; retry shortly".to_string(),
            Some(1),
        ),
    };
    let mut response = ApiError(status, message).into_response();
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"cdrflow\", charset=\"UTF-8\""),
        );
    }
    if let Some(seconds) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Route layers: which roles may call a resource. Applied inside
/// [`require_credentials`], so the principal is known.
async fn allow(roles: &[Role], request: Request, next: Next) -> Response {
    let principal = request.extensions().get::<Arc<Principal>>().cloned();
    match principal {
        Some(p) if roles.contains(&p.role) => next.run(request).await,
        Some(p) => ApiError(
            StatusCode::FORBIDDEN,
            format!("user {} ({}) may not read this", p.name, p.role.as_str()),
        )
        .into_response(),
        None => refused(Refusal::Missing),
    }
}

/// Operators and admins: rejects, overview, dashboard.
pub async fn staff_only(request: Request, next: Next) -> Response {
    allow(&[Role::Admin, Role::Operator], request, next).await
}

/// Whoever may read metrics: staff and the `metrics` role.
pub async fn metrics_readers(request: Request, next: Next) -> Response {
    allow(&[Role::Admin, Role::Operator, Role::Metrics], request, next).await
}

/// Every API user but the `metrics` role (customers see their own numbers only).
pub async fn api_users(request: Request, next: Next) -> Response {
    allow(
        &[Role::Admin, Role::Operator, Role::Customer],
        request,
        next,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_64_and_ipv4_clients_do_not() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(address_key(v4), v4);
    }

    #[test]
    fn credentials_are_read_in_any_scheme_case_and_names_in_nfc() {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode("Jose\u{301}:pa:ss");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("bAsIc {encoded}")).unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("Jos\u{e9}".to_string(), "pa:ss".to_string()))
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(basic_credentials(&headers), None);
    }

    #[test]
    fn logged_names_are_escaped_and_short() {
        assert_eq!(loggable("a\nb"), "\"a\\nb\"");
        assert_eq!(loggable(&"x".repeat(100)).chars().count(), 64 + 1 + 2);
    }
}
