//! The standard stack over the wire: admin endpoints, request stats with histogram
//! keys, load shedding, body limit, panic catching, gRPC health and drain.

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use service_kit::{App, Bound, ServerConfig, Shutdown, StatsReceiver};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

struct Running {
    http: String,
    grpc: String,
    stats: StatsReceiver,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), service_kit::ServeError>>,
}

async fn start(config: ServerConfig) -> Running {
    let stats = StatsReceiver::new();
    let mut app = App::new("test", stats.clone());
    app.http = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("boom");
                }
                "unreachable"
            }),
        )
        .route("/echo", post(|body: String| async move { body }));
    let bound = Bound::bind("test", "127.0.0.1", &config).await.unwrap();
    let http = format!("http://{}", bound.http_addr());
    let grpc = format!("http://{}", bound.grpc_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(bound.serve(app, shutdown.clone()));
    Running {
        http,
        grpc,
        stats,
        shutdown,
        task,
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        max_concurrent_requests: 4,
        max_request_bytes: 4096,
        grace_period: Duration::from_secs(2),
        ..ServerConfig::with_ports(0, 0)
    }
}

#[tokio::test]
async fn admin_endpoints_and_request_stats() {
    let r = start(config()).await;
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(format!("{}/health", r.http))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{}/ready", r.http))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{}/nowhere", r.http))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let json: serde_json::Value = c
        .get(format!("{}/admin/metrics.json", r.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // /health, /ready, /nowhere were counted before this request.
    assert!(json["srv/http/requests"].as_u64().unwrap() >= 3, "{json}");
    assert_eq!(json["srv/http/health/requests"], 1, "{json}");
    assert_eq!(json["srv/http/unmatched/requests"], 1, "{json}");
    for suffix in [
        "count", "sum", "avg", "min", "max", "p50", "p90", "p95", "p99", "p9990", "p9999",
    ] {
        let key = format!("srv/http/request_latency_ms.{suffix}");
        assert!(json.get(&key).is_some(), "missing {key} in {json}");
    }
    let text = c
        .get(format!("{}/metrics", r.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("srv_http_requests"), "{text}");
    r.shutdown.cancel();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn panics_become_500_and_the_server_lives_on() {
    let r = start(config()).await;
    let c = reqwest::Client::new();
    let resp = c.get(format!("{}/panic", r.http)).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(
        c.get(format!("{}/health", r.http))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let json: serde_json::Value = serde_json::from_str(&r.stats.metrics_json()).unwrap();
    assert_eq!(json["srv/http/panic/failures"], 1, "{json}");
    r.shutdown.cancel();
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let r = start(config()).await;
    let c = reqwest::Client::new();
    let ok = c
        .post(format!("{}/echo", r.http))
        .body("x".repeat(100))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let big = c
        .post(format!("{}/echo", r.http))
        .body("x".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    // Refused bodies show in the status counters, though 4xx is not a failure.
    let json: serde_json::Value = c
        .get(format!("{}/admin/metrics.json", r.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["srv/http/status/413"], 1, "{json}");
    assert_eq!(json["srv/http/status/4XX"], 1, "{json}");
    assert_eq!(json["srv/http/status/200"], 1, "{json}");
    r.shutdown.cancel();
}

#[tokio::test]
async fn excess_concurrency_is_shed_not_queued() {
    let r = start(ServerConfig {
        max_concurrent_requests: 1,
        ..config()
    })
    .await;
    let c = reqwest::Client::new();
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), format!("{}/slow", r.http));
        async move { c.get(url).send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shed = c.get(format!("{}/health", r.http)).send().await.unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(r.stats.counter("srv/http/shed").get(), 1);
    r.shutdown.cancel();
}

#[tokio::test]
async fn grpc_health_and_method_stats() {
    let r = start(config()).await;
    let channel = tonic::transport::Endpoint::from_shared(r.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let resp = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status, 1, "SERVING");
    let unknown = client
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let json: serde_json::Value = serde_json::from_str(&r.stats.metrics_json()).unwrap();
    assert_eq!(
        json["srv/grpc/grpc.health.v1.Health.Check/requests"], 2,
        "{json}"
    );
    assert_eq!(
        json["srv/grpc/grpc.health.v1.Health.Check/failures"], 1,
        "{json}"
    );
    assert!(
        json.get("srv/grpc/request_latency_ms.p9999").is_some(),
        "{json}"
    );
    r.shutdown.cancel();
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let r = start(config()).await;
    let c = reqwest::Client::new();
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), format!("{}/slow", r.http));
        async move { c.get(url).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    r.shutdown.cancel();
    assert_eq!(
        slow.await.unwrap().unwrap(),
        200,
        "in-flight request finished"
    );
    tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .expect("serve returned within the grace period")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn oversized_grpc_messages_are_refused() {
    let r = start(config()).await;
    let channel = tonic::transport::Endpoint::from_shared(r.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "x".repeat(10_000),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
    assert!(err.message().contains("4096"), "names the limit: {err}");
    r.shutdown.cancel();
}
