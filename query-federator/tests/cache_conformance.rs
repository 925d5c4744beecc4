//! One conformance suite for every span cache backend: a real memcached (started by
//! `test-support`) and the no-cache backend; plus the bypass of a memcached that dies.

use std::sync::Arc;
use std::time::Duration;

use query_federator::{Cache, CacheStats, Memcached, NoCache, SpanCache};
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

#[tokio::test]
async fn memcached_conforms() {
    let mc = test_support::Memcached::start().unwrap();
    let cache = Memcached::new(&[mc.addr()], 4, Duration::from_secs(2));
    conformance(&cache).await;
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
    let cache = Cache::new(
        backend,
        Duration::from_millis(300),
        Duration::from_millis(1),
        Duration::from_secs(60),
        CacheStats::new(&stats),
    );
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
