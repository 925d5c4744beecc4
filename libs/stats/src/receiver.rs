//! The registry of named metrics and `StatsReceiver`, the scoped view handed to code.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::{Counter, Histogram, HistogramSnapshot, json, prometheus};

type GaugeFn = Arc<dyn Fn() -> f64 + Send + Sync>;

struct GaugeEntry {
    /// Distinguishes successive registrations under one name, so that dropping
    /// a replaced handle leaves its successor alone.
    id: u64,
    read: GaugeFn,
}

/// Every metric of a process, by full name. Locked only to create handles,
/// to drop gauges and to export.
#[derive(Default)]
pub(crate) struct Registry {
    counters: Mutex<HashMap<String, Counter>>,
    histograms: Mutex<HashMap<String, Histogram>>,
    gauges: Mutex<HashMap<String, GaugeEntry>>,
    next_gauge_id: AtomicU64,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("counters", &self.counters.lock().len())
            .field("histograms", &self.histograms.lock().len())
            .field("gauges", &self.gauges.lock().len())
            .finish()
    }
}

/// Everything in a registry at one moment, each kind sorted by name.
#[derive(Debug, Default)]
pub(crate) struct RegistrySnapshot {
    pub counters: Vec<(String, u64)>,
    pub gauges: Vec<(String, f64)>,
    pub histograms: Vec<(String, HistogramSnapshot)>,
}

impl Registry {
    fn snapshot(&self) -> RegistrySnapshot {
        // Clone the handles out and read them with no lock held: gauge
        // functions are user code and may themselves create metrics.
        let counters: Vec<(String, Counter)> = self
            .counters
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let histograms: Vec<(String, Histogram)> = self
            .histograms
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let gauges: Vec<(String, GaugeFn)> = self
            .gauges
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.read.clone()))
            .collect();

        let mut snap = RegistrySnapshot {
            counters: counters.into_iter().map(|(k, c)| (k, c.get())).collect(),
            gauges: gauges.into_iter().map(|(k, f)| (k, f())).collect(),
            histograms: histograms
                .into_iter()
                .map(|(k, h)| (k, h.snapshot()))
                .collect(),
        };
        snap.counters.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        snap.gauges.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        snap.histograms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        snap
    }
}

/// Creates and finds metrics under a scope; the entry point of this crate.
///
/// `Send + Sync` and cheap to clone; all clones and scopes of one
/// [`StatsReceiver::new`] share one registry.
#[derive(Clone, Debug, Default)]
pub struct StatsReceiver {
    registry: Arc<Registry>,
    /// Full scope, parts joined with '/', empty at the root.
    prefix: String,
}

/// Joins a scope and a name with '/', skipping empty parts.
fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}/{name}"),
    }
}

impl StatsReceiver {
    /// A fresh root registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A receiver whose metric names are prefixed by `name/` (an empty name
    /// gives the same scope).
    pub fn scope(&self, name: &str) -> Self {
        StatsReceiver {
            registry: self.registry.clone(),
            prefix: join(&self.prefix, name),
        }
    }

    /// The scope of this receiver: its parts joined with '/', empty at the root.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The counter with this name in this scope, created at zero if new.
    pub fn counter(&self, name: &str) -> Counter {
        let full = join(&self.prefix, name);
        self.registry
            .counters
            .lock()
            .entry(full)
            .or_default()
            .clone()
    }

    /// The histogram with this name in this scope, created empty if new.
    pub fn histogram(&self, name: &str) -> Histogram {
        let full = join(&self.prefix, name);
        self.registry
            .histograms
            .lock()
            .entry(full)
            .or_insert_with(Histogram::detached)
            .clone()
    }

    /// Registers `f` to be called at each export as the value of this name.
    ///
    /// The gauge lives as long as the returned handle; a gauge already
    /// registered under the same full name is replaced. `f` runs with no lock
    /// of this crate held, so it may use the registry itself.
    #[must_use = "the gauge is unregistered as soon as the returned handle is dropped"]
    pub fn gauge<F: Fn() -> f64 + Send + Sync + 'static>(&self, name: &str, f: F) -> Gauge {
        let full = join(&self.prefix, name);
        let id = self.registry.next_gauge_id.fetch_add(1, Ordering::Relaxed);
        let entry = GaugeEntry {
            id,
            read: Arc::new(f),
        };
        // The replaced entry (if any) is dropped after the lock is released:
        // its closure may own things whose drop touches the registry.
        let replaced = self.registry.gauges.lock().insert(full.clone(), entry);
        drop(replaced);
        Gauge {
            registry: Arc::downgrade(&self.registry),
            name: full,
            id,
        }
    }

    /// The whole registry (every scope, not just this one) as a twitter-server
    /// `/admin/metrics.json` object; see [`json`](crate::json).
    pub fn metrics_json(&self) -> String {
        json::render(&self.registry.snapshot())
    }

    /// The whole registry in Prometheus text exposition format 0.0.4; see
    /// [`prometheus`](crate::prometheus).
    pub fn prometheus_text(&self) -> String {
        prometheus::render(&self.registry.snapshot())
    }
}

/// Keeps a gauge registered; dropping it unregisters the gauge.
#[must_use = "the gauge is unregistered as soon as this handle is dropped"]
#[derive(Debug)]
pub struct Gauge {
    registry: Weak<Registry>,
    name: String,
    id: u64,
}

impl Gauge {
    /// The full name the gauge is exported under.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let removed = {
            let mut gauges = registry.gauges.lock();
            match gauges.get(&self.name) {
                Some(entry) if entry.id == self.id => gauges.remove(&self.name),
                _ => None,
            }
        };
        // Dropped outside the lock, as in `StatsReceiver::gauge`.
        drop(removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_join_with_slashes() {
        let root = StatsReceiver::new();
        let http = root.scope("srv").scope("http");
        assert_eq!(http.prefix(), "srv/http");
        http.counter("requests").incr();
        let snap = root.registry.snapshot();
        assert_eq!(snap.counters, vec![("srv/http/requests".to_owned(), 1)]);
    }

    #[test]
    fn empty_parts_are_skipped() {
        let root = StatsReceiver::new();
        assert_eq!(root.scope("").prefix(), "");
        assert_eq!(root.scope("a").scope("").prefix(), "a");
        let a = root.scope("a").counter("");
        assert!(a.same_as(&root.counter("a")));
    }

    #[test]
    fn same_name_gives_the_same_handle() {
        let root = StatsReceiver::new();
        let a = root.scope("srv").counter("requests");
        let b = root.counter("srv/requests");
        let c = root.clone().scope("srv").counter("requests");
        assert!(a.same_as(&b) && a.same_as(&c));
        a.incr();
        b.add(2);
        assert_eq!(c.get(), 3);

        let h1 = root.scope("srv").histogram("latency_ms");
        let h2 = root.histogram("srv/latency_ms");
        assert!(h1.same_as(&h2));
        h1.add(5);
        assert_eq!(h2.snapshot().count, 1);

        assert!(!root.counter("other").same_as(&a));
    }

    #[test]
    fn clones_share_one_registry() {
        let root = StatsReceiver::new();
        let scoped = root.scope("x");
        scoped.counter("c").incr();
        assert_eq!(root.clone().counter("x/c").get(), 1);
        // A new root is a different registry.
        assert_eq!(StatsReceiver::new().counter("x/c").get(), 0);
    }

    #[test]
    fn dropping_a_gauge_unregisters_it() {
        let root = StatsReceiver::new();
        let g = root.scope("jvm").gauge("threads", || 12.0);
        assert_eq!(g.name(), "jvm/threads");
        assert_eq!(
            root.registry.snapshot().gauges,
            vec![("jvm/threads".to_owned(), 12.0)]
        );
        drop(g);
        assert!(root.registry.snapshot().gauges.is_empty());
    }

    #[test]
    fn a_replaced_gauge_does_not_remove_its_successor() {
        let root = StatsReceiver::new();
        let old = root.gauge("g", || 1.0);
        let new = root.gauge("g", || 2.0);
        drop(old);
        assert_eq!(root.registry.snapshot().gauges, vec![("g".to_owned(), 2.0)]);
        drop(new);
        assert!(root.registry.snapshot().gauges.is_empty());
    }

    #[test]
    fn gauges_may_use_the_registry() {
        let root = StatsReceiver::new();
        let inner = root.clone();
        let _g = root.gauge("reads", move || {
            inner.counter("gauge_reads").incr();
            inner.counter("gauge_reads").get() as f64
        });
        let _ = root.metrics_json();
        assert_eq!(root.counter("gauge_reads").get(), 1);
    }

    #[test]
    fn a_gauge_outliving_its_registry_drops_quietly() {
        let g = StatsReceiver::new().gauge("g", || 1.0);
        drop(g);
    }

    #[test]
    fn receivers_are_send_and_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<StatsReceiver>();
        check::<Counter>();
        check::<Histogram>();
        fn check_gauge<T: Send + Sync>() {}
        check_gauge::<Gauge>();
    }

    #[test]
    fn concurrent_increments_add_up_exactly() {
        let root = StatsReceiver::new();
        const THREADS: u64 = 8;
        const PER_THREAD: u64 = 50_000;
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let root = root.clone();
                s.spawn(move || {
                    // Each thread looks the handles up itself.
                    let c = root.scope("srv").counter("requests");
                    let h = root.scope("srv").histogram("latency_ms");
                    for i in 0..PER_THREAD {
                        c.incr();
                        h.add(t * PER_THREAD + i);
                    }
                });
            }
        });
        assert_eq!(root.counter("srv/requests").get(), THREADS * PER_THREAD);
        let s = root.histogram("srv/latency_ms").snapshot();
        let n = THREADS * PER_THREAD;
        assert_eq!(s.count, n);
        assert_eq!(s.sum, n * (n - 1) / 2);
        assert_eq!((s.min, s.max), (0, n - 1));
    }
}
