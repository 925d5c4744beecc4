//! Two `aerie collector` processes share twelve targets through a real ZooKeeper;
//! one is killed with SIGKILL (no goodbye: its session must expire) and the
//! survivor takes over every target.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};
use test_support::KillOnDrop;

use service_kit::{Common, ServerConfig, Shutdown};

const TARGETS: usize = 12;

/// Starts `aerie collector` with `config`; returns it and its HTTP URL.
fn collector(config: &Path, id: &str) -> (KillOnDrop, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aerie"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AERIE_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .args(["--config", config.to_str().unwrap(), "collector"])
        .args(["--set", &format!("collector.membership.id={id}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = KillOnDrop(child);
    let stdout = running.0.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.trim_start().starts_with("collector")
            && let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://"))
        {
            return (running, url.to_owned());
        }
    }
    panic!("aerie collector printed no address");
}

/// The sources a collector scrapes now, from its admin endpoint.
async fn scraped(http: &str) -> BTreeSet<String> {
    let Ok(resp) = reqwest::get(format!("{http}/admin/collector/targets")).await else {
        return BTreeSet::new();
    };
    let json: serde_json::Value = resp.json().await.unwrap_or_default();
    json.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["target"]["source"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn until<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not reached within {secs} s");
}

#[test]
fn a_killed_collectors_targets_move_to_the_survivor() {
    let zookeeper = test_support::ZooKeeper::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Storage in this process; the targets are its own admin endpoint under
        // twelve sources.
        let storage = storage_frontend::bind(storage_frontend::Config {
            common: Common {
                listen_host: "127.0.0.1".into(),
                data_dir: dir.path().join("storage"),
                ..Common::default()
            },
            server: ServerConfig::with_ports(0, 0),
            ..Default::default()
        })
        .await
        .unwrap();
        let (storage_http, storage_grpc) = (storage.http_addr(), storage.grpc_addr());
        let shutdown = Shutdown::new();
        let serving = tokio::spawn(storage.run(shutdown.clone()));

        let targets = dir.path().join("targets.json");
        let groups: Vec<String> = (0..TARGETS)
            .map(|i| {
                format!(
                    r#"{{"targets":["{storage_http}"],"labels":{{"job":"shared","instance":"t{i}","__metrics_path__":"/admin/metrics.json"}}}}"#
                )
            })
            .collect();
        std::fs::write(&targets, format!("[{}]", groups.join(","))).unwrap();
        let config = dir.path().join("aerie.toml");
        std::fs::write(
            &config,
            format!(
                r#"listen_host = "127.0.0.1"
data_dir = "{data}"
targets = "{targets}"
zookeeper = ["{zk}"]

[collector]
storage = ["http://{storage_grpc}"]
self_monitoring = false

[collector.server]
http_port = 0
grpc_port = 0

[collector.scrape]
interval = "1s"
timeout = "800ms"

[collector.discovery]
targets_reload = "200ms"
zookeeper_retry = "300ms"
"#,
                data = dir.path().join("collectors").display(),
                targets = targets.display(),
                zk = zookeeper.connect_string(),
            ),
        )
        .unwrap();

        let (mut a, a_http) = collector(&config, "collector-a");
        let (_b, b_http) = collector(&config, "collector-b");
        let all: BTreeSet<String> = (0..TARGETS).map(|i| format!("t{i}")).collect();
        until("targets split between the two", 60, async || {
            let (sa, sb) = (scraped(&a_http).await, scraped(&b_http).await);
            let union: BTreeSet<String> = sa.union(&sb).cloned().collect();
            (union == all && sa.is_disjoint(&sb) && !sa.is_empty() && !sb.is_empty())
                .then_some(())
        })
        .await;

        // SIGKILL: no shutdown, no session close; ZooKeeper expires the session.
        let killed = Instant::now();
        a.0.kill().unwrap();
        a.0.wait().unwrap();
        until("the survivor scrapes every target", 60, async || {
            (scraped(&b_http).await == all).then_some(())
        })
        .await;
        eprintln!(
            "survivor took all {TARGETS} targets {:.1} s after the kill",
            killed.elapsed().as_secs_f64()
        );

        shutdown.cancel();
        serving.await.unwrap().unwrap();
    });
}
