//! The `aerie` binary as a user runs it: bad configuration is refused with the key
//! named, all-in-one serves every service's admin endpoints and drains on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};
use test_support::KillOnDrop;

fn aerie() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aerie"));
    // The test's own environment must not configure the binary.
    for (k, _) in std::env::vars() {
        if k.starts_with("AERIE_") {
            c.env_remove(k);
        }
    }
    c
}

fn fails_naming(args: &[&str], needles: &[&str]) {
    let out = aerie().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{args:?} should fail; stderr: {stderr}"
    );
    for n in needles {
        assert!(
            stderr.contains(n),
            "{args:?}: stderr does not name {n:?}: {stderr}"
        );
    }
}

#[test]
fn bad_configuration_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[storage.server]\nhttp_prot = 7420\n").unwrap();
    let file = unknown.to_str().unwrap();
    fails_naming(
        &["--config", file, "config"],
        &["storage.server.http_prot", "unknown key"],
    );
    fails_naming(&["--config", file], &["storage.server.http_prot"]);

    let bad_port = dir.path().join("port.toml");
    std::fs::write(&bad_port, "[tracer.server]\ngrpc_port = 70000\n").unwrap();
    fails_naming(
        &["--config", bad_port.to_str().unwrap()],
        &["tracer.server.grpc_port"],
    );
    fails_naming(
        &["--set", "alerter.server.http_port=-1", "alerter"],
        &["alerter.server.http_port"],
    );
    fails_naming(
        &["--set", "collector.server.http_port=7420"],
        &["collector.server.http_port", "storage.server.http_port"],
    );
    fails_naming(
        &["--config", "/nonexistent/aerie.toml"],
        &["/nonexistent/aerie.toml"],
    );
    fails_naming(
        &["--memcached", "nohost", "config"],
        &["memcached", "nohost"],
    );

    let out = aerie()
        .env("AERIE_QUERY_FEDERATOR__SERVER__HTTP_PORT", "abc")
        .arg("config")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("query_federator.server.http_port"),
        "{stderr}"
    );
    assert!(
        stderr.contains("AERIE_QUERY_FEDERATOR__SERVER__HTTP_PORT"),
        "{stderr}"
    );
}

#[test]
fn config_prints_the_effective_configuration() {
    let out = aerie()
        .args([
            "--data-dir",
            "/var/lib/aerie",
            "--set",
            "storage.server.grpc_port=9999",
            "config",
        ])
        .env("AERIE_TRACER__SERVER__REQUEST_TIMEOUT", "5s")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("data_dir = \"/var/lib/aerie\""), "{text}");
    assert!(text.contains("grpc_port = 9999"), "{text}");
    assert!(text.contains("request_timeout = \"5s\""), "{text}");
}

#[test]
fn all_in_one_serves_every_service_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cfg = String::from("listen_host = \"127.0.0.1\"\n");
    for s in [
        "collector",
        "storage",
        "query_federator",
        "alerter",
        "tracer",
    ] {
        cfg.push_str(&format!("[{s}.server]\nhttp_port = 0\ngrpc_port = 0\n"));
    }
    let file = dir.path().join("aerie.toml");
    std::fs::write(&file, cfg).unwrap();
    let child = aerie()
        .args([
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = KillOnDrop(child);
    let stdout = running.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();

    // The banner: one line per service with its HTTP URL, then an example query.
    let mut urls = Vec::new();
    let mut saw_example = false;
    while let Some(Ok(line)) = lines.next() {
        if let Some(url) = line
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            && !line.contains("curl")
        {
            urls.push((
                line.split_whitespace().next().unwrap().to_owned(),
                url.to_owned(),
            ));
        }
        if line.contains("aerie query 'ts(") {
            saw_example = true;
        }
        if line.contains("curl") {
            break;
        }
    }
    assert!(saw_example, "banner shows an example query");
    let names: Vec<&str> = urls.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "query-federator",
            "collector",
            "storage",
            "alerter",
            "tracer"
        ]
    );
    assert!(data.is_dir(), "data directory created");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        for (name, url) in &urls {
            let health = http.get(format!("{url}/health")).send().await.unwrap();
            assert_eq!(health.status(), 200, "{name}");
            let json: serde_json::Value = http
                .get(format!("{url}/admin/metrics.json"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(json["srv/http/health/requests"], 1, "{name}: {json}");
            assert!(
                json.get("srv/http/request_latency_ms.p9999").is_some(),
                "{name}"
            );
        }
    });

    // `aerie query` end to end: samples imported through the collector, read back
    // through the federator as a table, as JSON, and a bad query's error.
    let url_of = |name: &str| {
        urls.iter()
            .find(|(n, _)| n == name)
            .map(|(_, u)| u.clone())
            .unwrap()
    };
    let (collector, federator) = (url_of("collector"), url_of("query-federator"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t0 = now - now % 60 - 7200;
    let body: String = (0..3)
        .map(|i| {
            format!(
                "cli_total{{job=\"clitest\",instance=\"h1\"}} {} {}\n",
                10 * (i + 1),
                (t0 + 60 * i) * 1000
            )
        })
        .collect();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{collector}/api/v1/import/prometheus"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    });
    let query = |extra: &[&str]| {
        let (start, end) = ((t0 - 60).to_string(), (t0 + 180).to_string());
        let mut args = vec![
            "query",
            "ts(clitest, *, cli_total)",
            "--url",
            &federator,
            "--start",
            &start,
            "--end",
            &end,
            "--step",
            "60s",
        ];
        args.extend_from_slice(extra);
        aerie().args(&args).output().unwrap()
    };
    let out = query(&[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(
        rows,
        (0..3)
            .map(|i| format!("clitest h1 cli_total\t{}\t{}", t0 + 60 * i, 10 * (i + 1)))
            .collect::<Vec<_>>(),
        "{table}"
    );
    let out = query(&["--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "success");
    assert_eq!(json["data"]["result"][0]["values"][2][1], "30");
    let out = aerie()
        .args(["query", "ts(clitest, *", "--url", &federator])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // `line:column: what was expected`.
    assert!(stderr.contains("query failed (bad_data): 1:"), "{stderr}");
    assert!(stderr.contains("expected"), "{stderr}");

    let pid = nix::unistd::Pid::from_raw(running.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            assert!(status.success(), "exit status after SIGTERM: {status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn query_client_says_when_the_federator_is_unreachable() {
    // A port nothing listens on: bind, read, drop.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = aerie()
        .args([
            "query",
            "ts(aerie, *, collector/scrapes)",
            "--url",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach the query-federator"),
        "{stderr}"
    );
}
