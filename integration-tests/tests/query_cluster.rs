//! The seed's example end to end in a `TestCluster`: real HTTP targets scraped by the
//! collector into storage, roles from the targets file resolved through the collector's
//! `ListRoles`, the query answered by the query-federator over HTTP and gRPC.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::{ClusterOptions, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A target answering every GET with a fixed twitter-server metrics.json.
async fn target(body: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

const SEED: &str = "ts(cuckoo, members(role.cuckoo_frontend), jvm_gc_msec) / ts(cuckoo, members(role.cuckoo_frontend), api/query_count)";

#[tokio::test]
async fn the_seed_example_answers_over_data_from_the_collector() {
    let fe1 = target(r#"{"jvm_gc_msec": 50, "api/query_count": 10}"#.into()).await;
    let fe2 = target(r#"{"jvm_gc_msec": 30, "api/query_count": 10}"#.into()).await;
    let other = target(r#"{"jvm_gc_msec": 100, "api/query_count": 10}"#.into()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.json");
    std::fs::write(
        &file,
        format!(
            r#"[{{"targets":["{fe1}","{fe2}"],"labels":{{"job":"cuckoo","role":"cuckoo_frontend","__metrics_path__":"/admin/metrics.json"}}}},
               {{"targets":["{other}"],"labels":{{"job":"cuckoo","role":"cuckoo_backend","__metrics_path__":"/admin/metrics.json"}}}}]"#
        ),
    )
    .unwrap();
    let cluster = TestCluster::start_with(ClusterOptions {
        targets: file,
        scrape_interval: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await
    .unwrap();
    let http = cluster.endpoints("query-federator").http_url();
    let client = reqwest::Client::new();
    let mut last = serde_json::Value::Null;
    let mut answered = None;
    for _ in 0..100 {
        let v: serde_json::Value = client
            .get(format!("{http}/api/v1/query"))
            .query(&[("query", SEED)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["data"]["result"].as_array().is_some_and(|r| r.len() == 2) {
            answered = Some(v);
            break;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = answered.unwrap_or_else(|| panic!("no answer with both frontends: {last}"));
    let mut got: Vec<(String, String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["source"].as_str().unwrap().to_string(),
                r["metric"]["metric"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (fe1.to_string(), "jvm_gc_msec".to_string(), "5".to_string()),
        (fe2.to_string(), "jvm_gc_msec".to_string(), "3".to_string()),
    ];
    want.sort();
    assert_eq!(got, want, "{v}");

    // The same over gRPC.
    let mut q = proto::query::query_client::QueryClient::connect(
        cluster.endpoints("query-federator").grpc_url(),
    )
    .await
    .unwrap();
    let r = q
        .query(proto::query::QueryRequest {
            query: SEED.into(),
            time_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.series.len(), 2, "{r:?}");
    assert!(r.missing_zones.is_empty());
}
