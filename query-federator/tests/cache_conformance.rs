//! One conformance suite for every span cache backend: a real memcached (started by
//! `test-support`), the in-process one and the no-cache backend; plus the bypass of a
//! memcached that dies, and the in-process tier in front of it.

use std::sync::Arc;
use std::time::Duration;

use query_federator::{Cache, CacheStats, LocalSpans, Memcached, NoCache, SpanCache};
use stats::StatsReceiver;

/// What every backend must do: never return a value that was not stored under the key;
/// a caching backend returns what was stored last.
async fn conformance(cache: &dyn SpanCache) {
    let caches = cache.enabled();
    let ttl = Duration::from_secs(60);
    let keys: Vec<String> = (0..40).map(|i| format!("aerie:span:test{i:04}")).collect();
    assert!(
        cache.get_many(&keys).await.unwrap().is_empty(),
        "fresh cache"
    );
    assert!(cache.get_many(&[]).await.unwrap().is_empty());
    let items: Vec<(String, Vec<u8>)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), (0..i * 997).map(|b| (b % 251) as u8).collect()))
        .collect();
    cache.set_many(&items, ttl).await.unwrap();
    let got = cache.get_many(&keys).await.unwrap();
    for (k, v) in &items {
        match got.get(k) {
            Some(g) => assert_eq!(g, v, "value of {k}"),
            None => assert!(!caches, "{k} was stored"),
        }
    }
    if caches {
        assert_eq!(got.len(), keys.len());
    }
    // Overwrite one; the new value wins.
    let k = keys[3].clone();
    cache
        .set_many(&[(k.clone(), b"new".to_vec())], ttl)
        .await
        .unwrap();
    let got = cache.get_many(std::slice::from_ref(&k)).await.unwrap();
    match got.get(&k) {
        Some(v) => assert_eq!(v, b"new"),
        None => assert!(!caches),
    }
    // Keys never stored stay absent next to stored ones.
    let mixed = vec![keys[1].clone(), "aerie:span:never".to_string()];
    let got = cache.get_many(&mixed).await.unwrap();
    assert!(!got.contains_key("aerie:span:never"));
}

/// The federator's cache over `backend`: 300 ms per call, retried after 1 ms.
fn cache_over(backend: Arc<dyn SpanCache>, stats: &StatsReceiver) -> Cache {
    Cache::new(
        backend,
        Duration::from_millis(300),
        Duration::from_millis(1),
        Duration::from_secs(60),
        CacheStats::new(stats),
    )
}

#[tokio::test]
async fn memcached_conforms() {
    let mc = test_support::Memcached::start().unwrap();
    let cache = Memcached::new(&[mc.addr()], 4, Duration::from_secs(2));
    conformance(&cache).await;
}

#[tokio::test]
async fn local_spans_conform() {
    conformance(&LocalSpans::new(16 << 20)).await;
}

#[tokio::test]
async fn local_spans_stay_within_their_bytes() {
    let cache = LocalSpans::new(64 << 10);
    let items: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("aerie:span:big{i}"), vec![i as u8; 4096]))
        .collect();
    let ttl = Duration::from_secs(60);
    cache.set_many(&items, ttl).await.unwrap();
    let keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
    let got = cache.get_many(&keys).await.unwrap();
    assert!(
        !got.is_empty() && got.len() <= 16,
        "64 KiB holds at most 16 spans of 4 KiB, held {}",
        got.len()
    );
    for (k, v) in &got {
        assert_eq!(v, &items.iter().find(|(i, _)| i == k).unwrap().1);
    }
}

#[tokio::test]
async fn the_local_tier_serves_what_memcached_served_and_outlives_it() {
    let mut mc = test_support::Memcached::start().unwrap();
    let stats = StatsReceiver::new();
    let backend: Arc<dyn SpanCache> =
        Arc::new(Memcached::new(&[mc.addr()], 2, Duration::from_millis(300)));
    let remote = cache_over(backend.clone(), &stats.scope("remote"));
    let k = vec!["aerie:span:tiered".to_string()];
    remote.put(vec![(k[0].clone(), b"v".to_vec())]).await;
    // Another federator, with a local tier: its first lookup goes to memcached and
    // keeps the value; the next one does not leave the process.
    let tiered = cache_over(backend, &stats.scope("tiered")).with_local(1 << 20);
    assert_eq!(tiered.get(&k).await[&k[0]], b"v");
    assert_eq!(
        (tiered.stats.hits.get(), tiered.stats.local_hits.get()),
        (1, 0)
    );
    mc.stop().unwrap();
    assert_eq!(tiered.get(&k).await[&k[0]], b"v", "memcached is not asked");
    assert_eq!(
        (tiered.stats.hits.get(), tiered.stats.local_hits.get()),
        (2, 1)
    );
    assert_eq!(tiered.stats.bypasses.get(), 0);
    // A miss still asks memcached, which is down: bypassed, and still no error out.
    assert!(tiered.get(&["aerie:span:other".into()]).await.is_empty());
    assert!(tiered.stats.bypasses.get() >= 1);
}

#[tokio::test]
async fn no_cache_conforms() {
    conformance(&NoCache).await;
}

#[tokio::test]
async fn a_dead_memcached_is_bypassed_and_counted_then_used_again() {
    let mut mc = test_support::Memcached::start().unwrap();
    let stats = StatsReceiver::new();
    let backend: Arc<dyn SpanCache> =
        Arc::new(Memcached::new(&[mc.addr()], 2, Duration::from_millis(300)));
    let cache = cache_over(backend, &stats);
    let k = vec!["aerie:span:x".to_string()];
    cache.put(vec![(k[0].clone(), b"v".to_vec())]).await;
    assert_eq!(
        cache.get(&k).await.get(&k[0]).map(Vec::as_slice),
        Some(&b"v"[..])
    );
    assert_eq!(cache.stats.hits.get(), 1);

    mc.stop().unwrap();
    assert!(
        cache.get(&k).await.is_empty(),
        "a dead cache answers nothing"
    );
    assert!(cache.stats.bypasses.get() >= 1);
    assert!(cache.stats.errors.get() >= 1);
    cache.put(vec![(k[0].clone(), b"w".to_vec())]).await;

    mc.restart().unwrap();
    // After the pause the client reconnects; the restarted memcached is empty.
    let mut stored = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache.put(vec![(k[0].clone(), b"w".to_vec())]).await;
        if cache.get(&k).await.get(&k[0]).is_some_and(|v| v == b"w") {
            stored = true;
            break;
        }
    }
    assert!(stored, "the cache is used again once memcached is back");
}
