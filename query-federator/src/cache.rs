//! The span cache: a [`SpanCache`] trait with a memcached implementation, an
//! in-process one ([`LocalSpans`]) and a no-cache one, and [`Cache`], which the
//! federator uses: the in-process tier first, then memcached; every failure or slow
//! answer of memcached turns into a bypass (counted), never into a failed or
//! different answer. Values are [`Cached`]: bytes in memcached, and in this process
//! the form cheapest to serve again (the federator keeps a span's cells decoded, so
//! a hit in this process copies and decodes nothing).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use stats::{Counter, StatsReceiver};
use tokio::time::Instant;

/// Why a cache backend did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The memcached client failed (connection, protocol, pool).
    #[error("memcached: {0}")]
    Memcached(String),
    /// The blocking worker of the client went away.
    #[error("cache worker failed: {0}")]
    Worker(String),
}

/// A store of immutable spans by key. Implementations: [`Memcached`], [`LocalSpans`],
/// [`NoCache`].
pub trait SpanCache: Send + Sync + std::fmt::Debug {
    /// The values stored under `keys` (absent keys are missing from the map).
    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, Vec<u8>>, CacheError>>;

    /// Stores every `(key, value)` for `ttl`.
    fn set_many<'a>(
        &'a self,
        items: &'a [(String, Vec<u8>)],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>>;

    /// Whether this backend caches at all (explain says "bypass" otherwise).
    fn enabled(&self) -> bool;
}

/// A value the cache holds: bytes in memcached, and in the in-process tier whatever
/// form is cheapest to serve again.
pub trait Cached: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// Its bytes in memcached.
    fn encode(&self) -> Vec<u8>;
    /// The value of memcached's bytes; `None` for bytes it never wrote (a miss).
    fn decode(bytes: Vec<u8>) -> Option<Self>;
    /// The memory it takes, which bounds the in-process tier.
    fn weight(&self) -> u64;
}

/// Plain bytes.
impl Cached for Vec<u8> {
    fn encode(&self) -> Vec<u8> {
        self.clone()
    }
    fn decode(bytes: Vec<u8>) -> Option<Self> {
        Some(bytes)
    }
    fn weight(&self) -> u64 {
        self.len() as u64
    }
}

/// Caches nothing: every get misses, every set is dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

impl SpanCache for NoCache {
    fn get_many<'a>(
        &'a self,
        _keys: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, Vec<u8>>, CacheError>> {
        Box::pin(async { Ok(HashMap::new()) })
    }

    fn set_many<'a>(
        &'a self,
        _items: &'a [(String, Vec<u8>)],
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async { Ok(()) })
    }

    fn enabled(&self) -> bool {
        false
    }
}

/// Spans in this process, bounded by memory (keys and values), least recently used
/// first out: a dashboard's repeated query is served without leaving the process.
/// Values are immutable like every span, so nothing but memory bounds them.
#[derive(Debug)]
pub struct LocalSpans<V: Cached = Vec<u8>> {
    spans: quick_cache::sync::Cache<String, V, SpanWeight>,
}

#[derive(Debug, Clone, Copy)]
struct SpanWeight;

impl<V: Cached> quick_cache::Weighter<String, V> for SpanWeight {
    fn weight(&self, key: &String, val: &V) -> u64 {
        key.len() as u64 + val.weight() + 64
    }
}

impl<V: Cached> LocalSpans<V> {
    /// A cache of at most `bytes`.
    pub fn new(bytes: u64) -> Self {
        // quick_cache sizes its table by an item estimate: a span is a few KiB.
        let items = (bytes / 4096).clamp(16, 1 << 20) as usize;
        LocalSpans {
            spans: quick_cache::sync::Cache::with_weighter(items, bytes, SpanWeight),
        }
    }

    fn get(&self, keys: &[String]) -> HashMap<String, V> {
        keys.iter()
            .filter_map(|k| self.spans.get(k).map(|v| (k.clone(), v)))
            .collect()
    }

    fn put(&self, items: &[(String, V)]) {
        for (k, v) in items {
            self.spans.insert(k.clone(), v.clone());
        }
    }
}

/// The in-process tier on its own, as a bytes backend.
impl SpanCache for LocalSpans {
    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, Vec<u8>>, CacheError>> {
        Box::pin(async move { Ok(self.get(keys)) })
    }

    fn set_many<'a>(
        &'a self,
        items: &'a [(String, Vec<u8>)],
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            self.put(items);
            Ok(())
        })
    }

    fn enabled(&self) -> bool {
        true
    }
}

/// memcached through the `memcache` crate's pooled (blocking) client, run on the
/// blocking pool. The client is built on first use and rebuilt after a failure, so a
/// memcached that is down at start or restarted later is picked up.
#[derive(Debug)]
pub struct Memcached {
    urls: Vec<String>,
    connections: u32,
    timeout: Duration,
    client: Arc<Mutex<Option<ClientHandle>>>,
}

#[derive(Clone)]
struct ClientHandle(Arc<memcache::Client>);

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("memcache::Client")
    }
}

/// Largest value memcached takes by default (1 MiB), less room for the item header.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024 - 512;

impl Memcached {
    /// A client of `servers` (`HOST:PORT` each); nothing is connected yet.
    pub fn new(servers: &[String], connections: u32, timeout: Duration) -> Self {
        let secs = timeout.as_secs_f64();
        let urls = servers
            .iter()
            .map(|s| format!("memcache://{s}?timeout={secs}&protocol=ascii"))
            .collect();
        Memcached {
            urls,
            connections,
            timeout,
            client: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `f` with a client on the blocking pool; a failure drops the client so the
    /// next call connects afresh.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&memcache::Client) -> Result<T, memcache::MemcacheError> + Send + 'static,
    ) -> Result<T, CacheError> {
        let slot = self.client.clone();
        let (urls, connections, timeout) = (self.urls.clone(), self.connections, self.timeout);
        tokio::task::spawn_blocking(move || {
            let existing = slot.lock().clone();
            let client = match existing {
                Some(c) => c,
                None => {
                    let c = memcache::Client::builder()
                        .add_server(urls)
                        .and_then(|b| {
                            b.with_max_pool_size(connections)
                                .with_min_idle_conns(0)
                                .with_connection_timeout(timeout)
                                .build()
                        })
                        .map_err(|e| CacheError::Memcached(e.to_string()))?;
                    let c = ClientHandle(Arc::new(c));
                    *slot.lock() = Some(c.clone());
                    c
                }
            };
            f(&client.0).map_err(|e| {
                *slot.lock() = None;
                CacheError::Memcached(e.to_string())
            })
        })
        .await
        .map_err(|e| CacheError::Worker(e.to_string()))?
    }
}

impl SpanCache for Memcached {
    fn get_many<'a>(
        &'a self,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, Vec<u8>>, CacheError>> {
        let keys = keys.to_vec();
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(HashMap::new());
            }
            self.blocking(move |c| {
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                c.gets::<Vec<u8>>(&refs)
            })
            .await
        })
    }

    fn set_many<'a>(
        &'a self,
        items: &'a [(String, Vec<u8>)],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        let items = items.to_vec();
        // memcached reads expiries above 30 days as absolute times.
        let ttl = ttl.as_secs().min(30 * 86_400) as u32;
        Box::pin(async move {
            if items.is_empty() {
                return Ok(());
            }
            self.blocking(move |c| {
                for (k, v) in &items {
                    c.set(k, v.as_slice(), ttl)?;
                }
                Ok(())
            })
            .await
        })
    }

    fn enabled(&self) -> bool {
        true
    }
}

/// Counters of the span cache (`federator/cache/...` on `/admin/metrics.json`).
#[derive(Debug, Clone)]
pub struct CacheStats {
    /// Spans served from the cache (either tier).
    pub hits: Counter,
    /// Of those, spans served from the in-process tier.
    pub local_hits: Counter,
    /// Immutable spans looked up and not found.
    pub misses: Counter,
    /// Spans stored.
    pub stores: Counter,
    /// Cache calls skipped or abandoned because the backend failed or was slow.
    pub bypasses: Counter,
    /// Backend failures and timeouts.
    pub errors: Counter,
    /// Spans too large to store.
    pub too_large: Counter,
}

impl CacheStats {
    /// Counters under `scope`.
    pub fn new(scope: &StatsReceiver) -> Self {
        CacheStats {
            hits: scope.counter("hits"),
            local_hits: scope.counter("local_hits"),
            misses: scope.counter("misses"),
            stores: scope.counter("stores"),
            bypasses: scope.counter("bypasses"),
            errors: scope.counter("errors"),
            too_large: scope.counter("too_large"),
        }
    }
}

/// What the federator talks to: an optional in-process tier, then a backend with a
/// per-call timeout and a pause after each failure, during which calls are bypassed
/// at once.
#[derive(Debug, Clone)]
pub struct Cache<V: Cached = Vec<u8>> {
    local: Option<Arc<LocalSpans<V>>>,
    inner: Arc<dyn SpanCache>,
    timeout: Duration,
    retry_after: Duration,
    ttl: Duration,
    down_until: Arc<Mutex<Option<Instant>>>,
    /// Its counters.
    pub stats: CacheStats,
}

impl<V: Cached> Cache<V> {
    /// Wraps `inner`.
    pub fn new(
        inner: Arc<dyn SpanCache>,
        timeout: Duration,
        retry_after: Duration,
        ttl: Duration,
        stats: CacheStats,
    ) -> Self {
        Cache {
            local: None,
            inner,
            timeout,
            retry_after,
            ttl,
            down_until: Arc::new(Mutex::new(None)),
            stats,
        }
    }

    /// Puts an in-process tier of at most `bytes` in front (0: none).
    pub fn with_local(mut self, bytes: u64) -> Self {
        self.local = (bytes > 0).then(|| Arc::new(LocalSpans::new(bytes)));
        self
    }

    /// Whether spans are cached at all.
    pub fn enabled(&self) -> bool {
        self.local.is_some() || self.inner.enabled()
    }

    /// Whether the backend is in its pause after a failure.
    pub fn is_down(&self) -> bool {
        self.down_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
    }

    fn failed(&self, what: &str, e: &str) {
        self.stats.errors.incr();
        self.stats.bypasses.incr();
        *self.down_until.lock() = Some(Instant::now() + self.retry_after);
        tracing::warn!(error = e, "span cache {what} failed; bypassing the cache");
    }

    /// The cached values of `keys`; empty when the backend fails, is slow or paused.
    pub async fn get(&self, keys: &[String]) -> HashMap<String, V> {
        self.lookup(keys, true).await
    }

    /// [`Cache::get`] without counting hits and misses (for explain, which serves nothing).
    pub async fn peek(&self, keys: &[String]) -> HashMap<String, V> {
        self.lookup(keys, false).await
    }

    async fn lookup(&self, keys: &[String], count: bool) -> HashMap<String, V> {
        if keys.is_empty() || !self.enabled() {
            return HashMap::new();
        }
        let mut found = self.local.as_ref().map(|l| l.get(keys)).unwrap_or_default();
        if count {
            self.stats.local_hits.add(found.len() as u64);
        }
        let rest: Vec<String> = keys
            .iter()
            .filter(|k| !found.contains_key(*k))
            .cloned()
            .collect();
        if !rest.is_empty() && self.inner.enabled() {
            // Bytes that do not decode are misses.
            let remote: Vec<(String, V)> = self
                .remote_get(&rest)
                .await
                .into_iter()
                .filter_map(|(k, b)| Some((k, V::decode(b)?)))
                .collect();
            if let Some(l) = &self.local {
                l.put(&remote);
            }
            found.extend(remote);
        }
        if count {
            self.stats.hits.add(found.len() as u64);
            self.stats
                .misses
                .add(keys.len().saturating_sub(found.len()) as u64);
        }
        found
    }

    async fn remote_get(&self, keys: &[String]) -> HashMap<String, Vec<u8>> {
        if self.is_down() {
            self.stats.bypasses.incr();
            return HashMap::new();
        }
        match tokio::time::timeout(self.timeout, self.inner.get_many(keys)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                self.failed("lookup", &e.to_string());
                HashMap::new()
            }
            Err(_) => {
                self.failed("lookup", "timed out");
                HashMap::new()
            }
        }
    }

    /// Stores `items`, skipping values too large for memcached; failures only count.
    pub async fn put(&self, items: Vec<(String, V)>) {
        if let Some(l) = &self.local {
            l.put(&items);
            if !self.inner.enabled() {
                self.stats.stores.add(items.len() as u64);
            }
        }
        if items.is_empty() || !self.inner.enabled() {
            return;
        }
        if self.is_down() {
            self.stats.bypasses.incr();
            return;
        }
        let (ok, big): (Vec<_>, Vec<_>) = items
            .into_iter()
            .map(|(k, v)| (k, v.encode()))
            .partition(|(_, v)| v.len() <= MAX_VALUE_BYTES);
        self.stats.too_large.add(big.len() as u64);
        let n = ok.len() as u64;
        // Storing many spans may take several round trips: allow one timeout per 64.
        let budget = self.timeout * (1 + ok.len() as u32 / 64);
        match tokio::time::timeout(budget, self.inner.set_many(&ok, self.ttl)).await {
            Ok(Ok(())) => self.stats.stores.add(n),
            Ok(Err(e)) => self.failed("store", &e.to_string()),
            Err(_) => self.failed("store", "timed out"),
        }
    }
}
