//! The collector with a real ZooKeeper: server-set members (Finagle/Aurora JSON)
//! appear and vanish and scraping follows; two collectors share the targets, one is
//! killed and the survivor scrapes them all; with ZooKeeper gone the survivor keeps
//! its last known assignment and says so in its stats.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use collector::config::ServerSetConfig;
use service_kit::{Common, ServerConfig, Shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_client as zk;

/// A tiny HTTP/1.1 server answering every GET with a metrics.json body, counting
/// hits per path.
#[derive(Clone)]
struct TargetServer {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, u64>>>,
}

impl TargetServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let h = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let h = h.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let n = {
                        let mut m = h.lock().unwrap();
                        let e = m.entry(path).or_insert(0);
                        *e += 1;
                        *e
                    };
                    let text = format!(r#"{{"srv/http/requests":{n}}}"#);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        Self { addr, hits }
    }

    fn hits(&self, path: &str) -> u64 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

async fn until<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..secs * 5 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not reached within {secs} s");
}

struct Running {
    http: String,
    grpc: String,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

async fn start_storage(data: &Path) -> Running {
    let config = storage_frontend::Config {
        common: Common {
            listen_host: "127.0.0.1".into(),
            data_dir: data.to_owned(),
            ..Common::default()
        },
        server: ServerConfig::with_ports(0, 0),
        ..Default::default()
    };
    let server = storage_frontend::bind(config).await.unwrap();
    let (http, grpc) = (server.http_addr(), server.grpc_addr());
    let shutdown = Shutdown::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { server.run(token).await.unwrap() });
    Running {
        http: format!("http://{http}"),
        grpc: format!("http://{grpc}"),
        shutdown,
        task,
    }
}

async fn start_collector(
    data: &Path,
    storage: &str,
    zookeeper: &str,
    targets: Option<&Path>,
    serversets: Vec<ServerSetConfig>,
    id: &str,
) -> Running {
    let mut config = collector::Config::default();
    config.common.listen_host = "127.0.0.1".into();
    config.common.data_dir = data.to_owned();
    config.common.zookeeper = vec![zookeeper.to_owned()];
    if let Some(t) = targets {
        config.common.targets = t.to_owned();
    }
    config.server = ServerConfig::with_ports(0, 0);
    config.storage = vec![storage.to_owned()];
    config.scrape.interval = Duration::from_secs(1);
    config.scrape.timeout = Duration::from_millis(800);
    config.discovery.targets_reload = Duration::from_millis(200);
    config.discovery.zookeeper_retry = Duration::from_millis(300);
    config.discovery.serversets = serversets;
    config.membership.id = id.to_owned();
    let server = collector::bind(config).await.unwrap();
    let (http, grpc) = (server.http_addr(), server.grpc_addr());
    let shutdown = Shutdown::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { server.run(token).await.unwrap() });
    Running {
        http: format!("http://{http}"),
        grpc: format!("http://{grpc}"),
        shutdown,
        task,
    }
}

async fn json(url: String) -> serde_json::Value {
    match reqwest::get(url).await {
        Ok(r) => r.json().await.unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    }
}

/// The sources a collector scrapes now.
async fn scraped(c: &Running) -> BTreeSet<String> {
    json(format!("{}/admin/collector/targets", c.http))
        .await
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    t["target"]["source"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn member(port: u16, admin: SocketAddr, status: &str) -> Vec<u8> {
    format!(
        r#"{{"serviceEndpoint":{{"host":"127.0.0.1","port":{port}}},"additionalEndpoints":{{"admin":{{"host":"{}","port":{}}},"http":{{"host":"127.0.0.1","port":{port}}}}},"status":"{status}","shard":0}}"#,
        admin.ip(),
        admin.port()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_set_members_appear_and_vanish_and_scraping_follows() {
    let zookeeper = test_support::ZooKeeper::start().unwrap();
    let servers = [
        TargetServer::start().await,
        TargetServer::start().await,
        TargetServer::start().await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let storage = start_storage(&dir.path().join("storage")).await;
    let set = "/aurora/web/prod/frontend";
    let c = start_collector(
        &dir.path().join("collector"),
        &storage.grpc,
        &zookeeper.connect_string(),
        None,
        vec![ServerSetConfig {
            path: set.into(),
            service: "web".into(),
            role: String::new(),
            endpoint: "admin".into(),
            metrics_path: "/admin/metrics.json".into(),
            scheme: "http".into(),
            interval: None,
        }],
        "c1",
    )
    .await;
    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .unwrap();
    serverset::ensure_path(&client, set).await.unwrap();
    let opts = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    for (i, s) in servers.iter().enumerate() {
        client
            .create(
                &format!("{set}/member_000000000{i}"),
                &member(31000 + i as u16, s.addr, "ALIVE"),
                &opts,
            )
            .await
            .unwrap();
    }
    // A member that is not ALIVE is not scraped.
    client
        .create(
            &format!("{set}/member_0000000009"),
            &member(31009, servers[0].addr, "STOPPING"),
            &opts,
        )
        .await
        .unwrap();
    let all: BTreeSet<String> = (0..3).map(|i| format!("127.0.0.1:{}", 31000 + i)).collect();
    until("three members scraped", 30, async || {
        (scraped(&c).await == all).then_some(())
    })
    .await;
    until("each member scraped", 30, async || {
        servers
            .iter()
            .all(|s| s.hits("/admin/metrics.json") >= 2)
            .then_some(())
    })
    .await;

    // The role resolves to the members.
    let mut roles = proto::collector::collector_client::CollectorClient::connect(c.grpc.clone())
        .await
        .unwrap();
    let listed = roles
        .list_roles(proto::collector::ListRolesRequest {
            roles: vec!["role.frontend".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .roles;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].service, "web");
    assert_eq!(listed[0].sources, all.iter().cloned().collect::<Vec<_>>());

    // A member vanishes: its scrapes stop, the others go on.
    client
        .delete(&format!("{set}/member_0000000001"), None)
        .await
        .unwrap();
    let two: BTreeSet<String> = ["127.0.0.1:31000", "127.0.0.1:31002"]
        .map(String::from)
        .into();
    until("member gone", 30, async || {
        (scraped(&c).await == two).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gone = servers[1].hits("/admin/metrics.json");
    let (h0, h2) = (
        servers[0].hits("/admin/metrics.json"),
        servers[2].hits("/admin/metrics.json"),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        servers[1].hits("/admin/metrics.json"),
        gone,
        "a vanished member is still scraped"
    );
    assert!(servers[0].hits("/admin/metrics.json") > h0);
    assert!(servers[2].hits("/admin/metrics.json") > h2);
    // A new member appears.
    client
        .create(
            &format!("{set}/member_0000000005"),
            &member(31005, servers[1].addr, "ALIVE"),
            &opts,
        )
        .await
        .unwrap();
    until("new member scraped", 30, async || {
        (servers[1].hits("/admin/metrics.json") > gone).then_some(())
    })
    .await;
    let stats = json(format!("{}/admin/metrics.json", c.http)).await;
    assert_eq!(
        stats["collector/discovery/zookeeper_connected"].as_f64(),
        Some(1.0),
        "{stats}"
    );
    let _ = &storage.http;
    c.shutdown.cancel();
    c.task.await.unwrap();
    storage.shutdown.cancel();
    storage.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_share_targets_and_the_survivor_takes_them_all() {
    const TARGETS: usize = 12;
    let mut zookeeper = test_support::ZooKeeper::start().unwrap();
    let server = TargetServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let storage = start_storage(&dir.path().join("storage")).await;
    let file = dir.path().join("targets.json");
    let groups: Vec<String> = (0..TARGETS)
        .map(|i| {
            format!(
                r#"{{"targets":["{}"],"labels":{{"job":"shared","instance":"t{i}","__metrics_path__":"/t{i}"}}}}"#,
                server.addr
            )
        })
        .collect();
    std::fs::write(&file, format!("[{}]", groups.join(","))).unwrap();
    let zk = zookeeper.connect_string();
    let a = start_collector(
        &dir.path().join("a"),
        &storage.grpc,
        &zk,
        Some(&file),
        vec![],
        "collector-a",
    )
    .await;
    let b = start_collector(
        &dir.path().join("b"),
        &storage.grpc,
        &zk,
        Some(&file),
        vec![],
        "collector-b",
    )
    .await;
    let all: BTreeSet<String> = (0..TARGETS).map(|i| format!("t{i}")).collect();
    let (sa, sb) = until("targets split between the two", 60, async || {
        let (sa, sb) = (scraped(&a).await, scraped(&b).await);
        let union: BTreeSet<String> = sa.union(&sb).cloned().collect();
        (union == all && sa.is_disjoint(&sb) && !sa.is_empty() && !sb.is_empty())
            .then_some((sa, sb))
    })
    .await;
    assert_eq!(sa.len() + sb.len(), TARGETS);
    let membership = json(format!("{}/admin/collector/membership", b.http)).await;
    assert_eq!(
        membership["members"],
        serde_json::json!(["collector-a", "collector-b"])
    );

    // Collector a dies; b takes every target within an interval of noticing.
    a.shutdown.cancel();
    a.task.await.unwrap();
    until("survivor scrapes all", 30, async || {
        (scraped(&b).await == all).then_some(())
    })
    .await;
    let before: Vec<u64> = (0..TARGETS)
        .map(|i| server.hits(&format!("/t{i}")))
        .collect();
    until("every target scraped after the kill", 30, async || {
        (0..TARGETS)
            .all(|i| server.hits(&format!("/t{i}")) >= before[i] + 2)
            .then_some(())
    })
    .await;

    // ZooKeeper goes away: b keeps its last known assignment (all) and says so.
    zookeeper.stop().unwrap();
    until("membership disconnected", 30, async || {
        let s = json(format!("{}/admin/metrics.json", b.http)).await;
        (s["collector/membership/connected"].as_f64() == Some(0.0)).then_some(())
    })
    .await;
    let before: Vec<u64> = (0..TARGETS)
        .map(|i| server.hits(&format!("/t{i}")))
        .collect();
    until("scraping goes on without ZooKeeper", 30, async || {
        (0..TARGETS)
            .all(|i| server.hits(&format!("/t{i}")) >= before[i] + 2)
            .then_some(())
    })
    .await;
    assert_eq!(scraped(&b).await, all);
    b.shutdown.cancel();
    b.task.await.unwrap();
    storage.shutdown.cancel();
    storage.task.await.unwrap();
}

/// Sources of service `service` with samples in a storage-frontend.
async fn sources_in(storage: &str, service: &str) -> BTreeSet<String> {
    use proto::common::{Matcher, Pattern, TimeRange, pattern};
    let Ok(mut client) =
        proto::storage::storage_client::StorageClient::connect(storage.to_owned()).await
    else {
        return BTreeSet::new();
    };
    let req = proto::storage::ReadRequest {
        matcher: Some(Matcher {
            service: Some(Pattern {
                kind: Some(pattern::Kind::Exact(service.to_owned())),
            }),
            source: None,
            metric: Some(Pattern {
                kind: Some(pattern::Kind::Exact("up".to_owned())),
            }),
        }),
        range: Some(TimeRange {
            start_ms: 0,
            end_ms: i64::MAX / 2,
        }),
        max_series: 0,
        max_samples: 0,
    };
    let mut out = BTreeSet::new();
    let Ok(resp) = client.read(req).await else {
        return out;
    };
    let mut stream = resp.into_inner();
    while let Ok(Some(chunk)) = stream.message().await {
        for s in chunk.series {
            out.insert(s.key.unwrap_or_default().source);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_frontends_follow_their_server_set() {
    const TARGETS: usize = 10;
    let zookeeper = test_support::ZooKeeper::start().unwrap();
    let server = TargetServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = start_storage(&dir.path().join("storage-a")).await;
    let b = start_storage(&dir.path().join("storage-b")).await;
    let file = dir.path().join("targets.json");
    let groups: Vec<String> = (0..TARGETS)
        .map(|i| {
            format!(
                r#"{{"targets":["{}"],"labels":{{"job":"routed","instance":"t{i}","__metrics_path__":"/t{i}"}}}}"#,
                server.addr
            )
        })
        .collect();
    std::fs::write(&file, format!("[{}]", groups.join(","))).unwrap();
    let client = zk::Client::connect(&zookeeper.connect_string())
        .await
        .unwrap();
    let set = "/aerie/storage/members";
    serverset::ensure_path(&client, set).await.unwrap();
    let opts = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    let storage_member = |grpc: &str| {
        let addr: SocketAddr = grpc.trim_start_matches("http://").parse().unwrap();
        format!(
            r#"{{"serviceEndpoint":{{"host":"127.0.0.1","port":1}},"additionalEndpoints":{{"grpc":{{"host":"{}","port":{}}}}},"status":"ALIVE"}}"#,
            addr.ip(),
            addr.port()
        )
        .into_bytes()
    };
    client
        .create(
            &format!("{set}/member_0000000000"),
            &storage_member(&a.grpc),
            &opts,
        )
        .await
        .unwrap();
    // The configured endpoint answers nothing; the server set replaces it, and what
    // was queued for it is routed to the members.
    let mut config = collector::Config::default();
    config.common.listen_host = "127.0.0.1".into();
    config.common.data_dir = dir.path().join("collector");
    config.common.zookeeper = vec![zookeeper.connect_string()];
    config.common.targets = file.clone();
    config.server = ServerConfig::with_ports(0, 0);
    config.storage = vec!["http://127.0.0.1:9".into()];
    config.storage_serverset = set.into();
    config.scrape.interval = Duration::from_secs(1);
    config.scrape.timeout = Duration::from_millis(800);
    config.discovery.targets_reload = Duration::from_millis(200);
    config.discovery.zookeeper_retry = Duration::from_millis(300);
    let server = collector::bind(config).await.unwrap();
    let http = format!("http://{}", server.http_addr());
    let shutdown = Shutdown::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { server.run(token).await.unwrap() });
    let all: BTreeSet<String> = (0..TARGETS).map(|i| format!("t{i}")).collect();
    until("every target in storage a", 60, async || {
        (sources_in(&a.grpc, "routed").await == all).then_some(())
    })
    .await;
    // b joins: some series move to it.
    client
        .create(
            &format!("{set}/member_0000000001"),
            &storage_member(&b.grpc),
            &opts,
        )
        .await
        .unwrap();
    until("some series in storage b", 60, async || {
        (!sources_in(&b.grpc, "routed").await.is_empty()).then_some(())
    })
    .await;
    // a leaves: everything goes to b.
    client
        .delete(&format!("{set}/member_0000000000"), None)
        .await
        .unwrap();
    until("every target in storage b", 60, async || {
        (sources_in(&b.grpc, "routed").await == all).then_some(())
    })
    .await;
    let stats = json(format!("{http}/admin/metrics.json")).await;
    assert_eq!(
        stats["collector/dropped_samples"].as_f64(),
        Some(0.0),
        "{stats}"
    );
    shutdown.cancel();
    task.await.unwrap();
    for s in [a, b] {
        s.shutdown.cancel();
        s.task.await.unwrap();
    }
}
