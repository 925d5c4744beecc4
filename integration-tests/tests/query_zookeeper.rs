//! A zone found in a real ZooKeeper server set: the query-federator follows its members
//! as storage-frontends join and leave, whether written by hand or announced by the
//! storage-frontends themselves, and again after ZooKeeper lost every session.

use std::time::Duration;

use proto::common as pb;
use proto::storage::{WriteRequest, storage_client::StorageClient};
use service_kit::{Common, ServerConfig, Shutdown};

const MIN: i64 = 60_000;

struct Storage {
    grpc_port: u16,
    http_port: u16,
    grpc: String,
    shutdown: Shutdown,
    _dir: tempfile::TempDir,
}

async fn storage() -> Storage {
    announced(None).await
}

/// A storage-frontend; `Some((zookeeper, set))`: announcing itself in `set`.
async fn announced(serverset: Option<(&str, &str)>) -> Storage {
    let dir = tempfile::tempdir().unwrap();
    let config = storage_frontend::Config {
        common: Common {
            listen_host: "127.0.0.1".into(),
            data_dir: dir.path().to_owned(),
            zookeeper: serverset.iter().map(|s| s.0.to_string()).collect(),
            ..Common::default()
        },
        server: ServerConfig::with_ports(0, 0),
        serverset: serverset.map(|s| s.1.to_string()).unwrap_or_default(),
        ..Default::default()
    };
    let server = storage_frontend::bind(config).await.unwrap();
    let grpc_port = server.grpc_addr().port();
    let http_port = server.http_addr().port();
    let shutdown = Shutdown::new();
    tokio::spawn(server.run(shutdown.clone()));
    Storage {
        grpc_port,
        http_port,
        grpc: format!("http://127.0.0.1:{grpc_port}"),
        shutdown,
        _dir: dir,
    }
}

async fn write(s: &Storage, source: &str, t: i64, v: f64) {
    let mut c = StorageClient::connect(s.grpc.clone()).await.unwrap();
    c.write(WriteRequest {
        series: vec![pb::Series {
            key: Some(pb::SeriesKey {
                service: "web".into(),
                source: source.into(),
                metric: "m".into(),
            }),
            samples: vec![pb::Sample {
                timestamp_ms: t,
                value: v,
            }],
        }],
    })
    .await
    .unwrap();
}

fn member(port: u16) -> Vec<u8> {
    format!(
        r#"{{"serviceEndpoint":{{"host":"127.0.0.1","port":1}},"additionalEndpoints":{{"grpc":{{"host":"127.0.0.1","port":{port}}}}},"status":"ALIVE"}}"#
    )
    .into_bytes()
}

/// A federator with one zone following the server set at `set`: its HTTP URL.
async fn federator(
    zk: &test_support::ZooKeeper,
    set: &str,
) -> (String, Shutdown, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = query_federator::Config {
        common: Common {
            listen_host: "127.0.0.1".into(),
            data_dir: dir.path().to_owned(),
            zookeeper: vec![zk.connect_string()],
            ..Common::default()
        },
        server: ServerConfig::with_ports(0, 0),
        zones: vec![query_federator::ZoneConfig {
            name: "zk".into(),
            endpoints: vec![],
            serverset: set.into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let server = query_federator::bind(config).await.unwrap();
    let http = format!("http://{}", server.http_addr());
    let shutdown = Shutdown::new();
    tokio::spawn(server.run(shutdown.clone()));
    (http, shutdown, dir)
}

/// Waits until the sum at `t` is `want`.
async fn answers(http: &str, t: i64, want: &str) {
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        let v = sum_at(http, t).await;
        if v["data"]["result"][0]["value"][1] == want {
            return;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never answered {want}: {last}");
}

fn five_minutes_ago() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now - now.rem_euclid(MIN) - 5 * MIN
}

async fn sum_at(http: &str, t: i64) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{http}/api/v1/query"))
        .query(&[
            ("query", "sum(ts(web, *, m))".to_string()),
            ("time", (t / 1000).to_string()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_zone_follows_its_server_set() {
    let zk = test_support::ZooKeeper::start().unwrap();
    let a = storage().await;
    let b = storage().await;
    let t = five_minutes_ago();
    write(&a, "a1", t, 1.0).await;
    write(&b, "b1", t, 2.0).await;

    let client = zookeeper_client::Client::connector()
        .connect(&zk.connect_string())
        .await
        .unwrap();
    let opts =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    for p in ["/aerie", "/aerie/storage", "/aerie/storage/members"] {
        client.create(p, b"", &opts).await.unwrap();
    }
    client
        .create(
            "/aerie/storage/members/member_0000000000",
            &member(a.grpc_port),
            &opts,
        )
        .await
        .unwrap();

    let (http, shutdown, _dir) = federator(&zk, "/aerie/storage/members").await;
    let wait_for = async |want: &str| answers(&http, t, want).await;
    wait_for("1").await;
    client
        .create(
            "/aerie/storage/members/member_0000000001",
            &member(b.grpc_port),
            &opts,
        )
        .await
        .unwrap();
    wait_for("3").await;
    client
        .delete("/aerie/storage/members/member_0000000000", None)
        .await
        .unwrap();
    wait_for("2").await;
    shutdown.cancel();
}

#[tokio::test]
async fn storage_frontends_announce_themselves_and_leave_on_shutdown() {
    const SET: &str = "/aerie/zone-b/storage";
    let zk = test_support::ZooKeeper::start().unwrap();
    let connect = zk.connect_string();
    let a = announced(Some((&connect, SET))).await;
    let b = announced(Some((&connect, SET))).await;
    let t = five_minutes_ago();
    write(&a, "a1", t, 1.0).await;
    write(&b, "b1", t, 2.0).await;

    // No endpoint is configured: the zone is what the storage-frontends announce.
    let (http, shutdown, _dir) = federator(&zk, SET).await;
    answers(&http, t, "3").await;

    let client = zookeeper_client::Client::connector()
        .connect(&connect)
        .await
        .unwrap();
    let members = async || {
        let mut found = Vec::new();
        for child in client.list_children(SET).await.unwrap() {
            assert!(child.starts_with("member_"), "{child}");
            let (data, stat) = client.get_data(&format!("{SET}/{child}")).await.unwrap();
            assert_ne!(stat.ephemeral_owner, 0, "{child} is ephemeral");
            let m = serverset::Member::parse(&child, &data).unwrap();
            assert!(m.is_alive());
            assert_eq!(m.service_endpoint.host, "127.0.0.1");
            let port = |name: &str| m.additional_endpoints[name].port;
            assert_eq!(port("grpc"), m.service_endpoint.port);
            found.push((port("grpc"), port("http")));
        }
        found.sort();
        found
    };
    let mut both = vec![(a.grpc_port, a.http_port), (b.grpc_port, b.http_port)];
    both.sort();
    assert_eq!(members().await, both);

    // A storage-frontend that shuts down leaves the set at once, not when its
    // session times out.
    b.shutdown.cancel();
    answers(&http, t, "1").await;
    assert_eq!(members().await, vec![(a.grpc_port, a.http_port)]);
    shutdown.cancel();
    a.shutdown.cancel();
}

/// A storage-frontend's counter from its admin metrics.
async fn counter(s: &Storage, name: &str) -> f64 {
    let v: serde_json::Value = reqwest::get(format!(
        "http://127.0.0.1:{}/admin/metrics.json",
        s.http_port
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    v[name].as_f64().unwrap_or(0.0)
}

#[tokio::test]
async fn after_zookeeper_loses_every_session_members_announce_and_are_found_again() {
    const SET: &str = "/aerie/zone-c/storage";
    let mut zk = test_support::ZooKeeper::start().unwrap();
    let connect = zk.connect_string();
    let a = announced(Some((&connect, SET))).await;
    let t = five_minutes_ago();
    write(&a, "a1", t, 1.0).await;
    let (http, shutdown, _dir) = federator(&zk, SET).await;
    answers(&http, t, "1").await;

    // ZooKeeper comes back empty: every session and znode is gone, and its zxids
    // are past what the clients saw (two starts bump the epoch), so the clients
    // are told their sessions expired rather than refused.
    zk.stop().unwrap();
    std::fs::remove_dir_all(zk.data_dir().join("version-2")).unwrap();
    zk.restart().unwrap();
    zk.restart().unwrap();

    // The storage-frontend announces itself in a new session (the set's path
    // made again) ...
    let mut again = false;
    for _ in 0..300 {
        if counter(&a, "storage/serverset/announced").await >= 2.0 {
            again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again, "never announced again");
    assert!(counter(&a, "storage/serverset/errors").await >= 1.0);

    // ... and the federator follows the set in a new session: a member that
    // joins now is found.
    let b = announced(Some((&connect, SET))).await;
    write(&b, "b1", t, 2.0).await;
    answers(&http, t, "3").await;
    shutdown.cancel();
    a.shutdown.cancel();
    b.shutdown.cancel();
}
