//! Real memcached started by `Memcached`: a real client round trip, outage and
//! restart, and that dropping the guard ends the process and frees the port.

use std::{
    net::{TcpListener, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use test_support::{Memcached, pick_port, wait_for_port};

#[test]
fn set_and_get_through_the_memcache_client() {
    let started = Instant::now();
    let cache = Memcached::start().expect("start memcached");
    eprintln!(
        "memcached ready on {} in {:?}",
        cache.addr(),
        started.elapsed()
    );

    let client = memcache::connect(cache.url().as_str()).expect("connect");
    client
        .set("aerie:span:1", "cached answer", 60)
        .expect("set");
    let value: Option<String> = client.get("aerie:span:1").expect("get");
    assert_eq!(value.as_deref(), Some("cached answer"));
    let missing: Option<String> = client.get("aerie:span:2").expect("get missing");
    assert_eq!(missing, None);
}

#[test]
fn dropping_the_guard_kills_memcached_and_frees_its_port() {
    let cache = Memcached::start().expect("start memcached");
    let addr = cache.socket_addr();
    let pid = cache.pid().expect("running");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    TcpStream::connect(addr).expect("memcached accepts connections");

    drop(cache);

    // Reaped, not a zombie: its /proc entry is gone.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "memcached (pid {pid}) outlived its guard"
    );
    assert!(TcpStream::connect(addr).is_err(), "{addr} still accepts");
    TcpListener::bind(addr).expect("port is free again after drop");
}

#[test]
fn stop_simulates_an_outage_and_restart_comes_back_empty_on_the_same_port() {
    let mut cache = Memcached::start().expect("start memcached");
    let addr = cache.socket_addr();
    let client = memcache::connect(cache.url().as_str()).expect("connect");
    client.set("k", 1_u64, 0).expect("set");

    cache.stop().expect("stop");
    assert!(!cache.is_running());
    assert_eq!(cache.pid(), None);
    assert!(
        TcpStream::connect(addr).is_err(),
        "stopped memcached still accepts"
    );
    cache.stop().expect("stopping twice is harmless");

    cache.restart().expect("restart");
    assert!(cache.is_running());
    assert_eq!(cache.socket_addr(), addr);
    let client = memcache::connect(cache.url().as_str()).expect("reconnect");
    let value: Option<u64> = client.get("k").expect("get after restart");
    assert_eq!(value, None, "a restarted memcached starts empty");
}

#[test]
fn two_instances_get_different_ports() {
    let a = Memcached::start().expect("start first");
    let b = Memcached::start().expect("start second");
    assert_ne!(a.port(), b.port());
}

#[test]
fn wait_for_port_times_out_on_a_closed_port_and_succeeds_on_an_open_one() {
    let closed = format!("127.0.0.1:{}", pick_port().unwrap())
        .parse()
        .unwrap();
    let err = wait_for_port(closed, Duration::from_millis(100)).unwrap_err();
    assert!(err.to_string().contains("within"), "{err}");

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    wait_for_port(listener.local_addr().unwrap(), Duration::from_secs(1)).unwrap();
}
