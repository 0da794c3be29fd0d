//! What every handler shares: the store pool, the authenticator and its
//! guard, and the few settings requests need.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use cdrflow_catalogue::Catalogue;
use cdrflow_core::normalize::CountryCode;
use cdrflow_store::{Store, TopSubscriber};

use super::auth::{AuthGuard, AuthLimits};
use super::error::ApiError;
use super::users::Authenticator;
use crate::config::Settings;

pub struct AppState {
    pub stores: Arc<StorePool>,
    pub auth: Arc<Authenticator>,
    pub guard: AuthGuard,
    pub country_code: CountryCode,
    /// The catalogue `--catalogue` names, for explaining rated records.
    pub catalogue: Option<Arc<Catalogue>>,
    /// Partitions quiet this long hold no window open (see `/windows`).
    pub idle_partition_ms: i64,
    /// The all-time top subscribers scan the whole summary table (hundreds of
    /// milliseconds on a large store): every dashboard poll of every open tab
    /// would pay it. Computed at most once per [`TOP_SUBSCRIBERS_TTL`].
    top_subscribers: Mutex<Option<(Instant, Arc<Vec<TopSubscriber>>)>>,
    /// The dashboard's billing panel, likewise (see `/billing/summary`).
    pub billing_summaries: super::routes::SummaryCache,
    /// Set once a SIGHUP listener reloads `auth`: the API and the metrics
    /// address share this state, each on a runtime of its own.
    pub sighup_watched: AtomicBool,
}

pub type Shared = Arc<AppState>;

/// How stale the overview's top-subscriber list may be.
pub const TOP_SUBSCRIBERS_TTL: Duration = Duration::from_secs(30);

impl AppState {
    pub fn new(
        settings: &Settings,
        users_path: &std::path::Path,
        limits: &AuthLimits,
    ) -> Result<Shared> {
        let auth = Arc::new(Authenticator::watching(users_path)?);
        Ok(Arc::new(AppState {
            stores: Arc::new(StorePool {
                settings: settings.clone(),
                idle: Mutex::new(Vec::new()),
                permits: tokio::sync::Semaphore::new(STORE_CONNECTIONS),
            }),
            guard: AuthGuard::new(limits, auth.clone())?,
            auth,
            country_code: settings.country_code,
            catalogue: settings.load_catalogue()?.map(Arc::new),
            idle_partition_ms: settings.windows.idle_after_ms,
            top_subscribers: Mutex::new(None),
            billing_summaries: Default::default(),
            sighup_watched: AtomicBool::new(false),
        }))
    }

    /// The top `TOP_SUBSCRIBERS` subscribers by cost, from a cache younger
    /// than [`TOP_SUBSCRIBERS_TTL`] when there is one.
    pub async fn top_subscribers(&self) -> Result<Arc<Vec<TopSubscriber>>, ApiError> {
        if let Some((at, top)) = &*self
            .top_subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            if at.elapsed() < TOP_SUBSCRIBERS_TTL {
                return Ok(top.clone());
            }
        }
        let top = Arc::new(
            self.stores
                .query(|s| s.top_subscribers(TOP_SUBSCRIBERS))
                .await?,
        );
        *self
            .top_subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), top.clone()));
        Ok(top)
    }
}

pub const TOP_SUBSCRIBERS: u32 = 10;

/// Store connections reused across requests, at most `STORE_CONNECTIONS` at
/// once: more would not answer faster on a few cores, and each SQLite
/// connection keeps its own page cache (so an unbounded pool grew to
/// gigabytes under load).
pub struct StorePool {
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
    pub async fn query<T: Send + 'static>(
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
