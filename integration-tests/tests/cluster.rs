//! Every service of a TestCluster answers its admin endpoints and gRPC health over
//! the wire, and reports its own request stats.

use integration_tests::TestCluster;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const HISTOGRAM_KEYS: [&str; 11] = [
    "count", "sum", "avg", "min", "max", "p50", "p90", "p95", "p99", "p9990", "p9999",
];

#[tokio::test]
async fn every_service_serves_admin_and_health() {
    let cluster = TestCluster::start().await.unwrap();
    assert_eq!(
        cluster.names(),
        [
            "alerter",
            "collector",
            "query-federator",
            "storage",
            "tracer"
        ]
    );
    let http = reqwest::Client::new();
    for name in cluster.names() {
        let ep = cluster.endpoints(name);
        for path in ["/health", "/ready", "/metrics"] {
            let resp = http
                .get(format!("{}{path}", ep.http_url()))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{name} {path}");
        }
        let channel = tonic::transport::Endpoint::from_shared(ep.grpc_url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let health = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(health.status, 1, "{name} gRPC health is SERVING");

        let json: serde_json::Value = http
            .get(format!("{}/admin/metrics.json", ep.http_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Its own stats: the three HTTP requests and one gRPC call above.
        assert!(
            json["srv/http/requests"].as_u64().unwrap() >= 3,
            "{name}: {json}"
        );
        assert_eq!(json["srv/http/health/requests"], 1, "{name}: {json}");
        assert_eq!(
            json["srv/grpc/grpc.health.v1.Health.Check/success"], 1,
            "{name}: {json}"
        );
        for k in HISTOGRAM_KEYS {
            for proto in ["http", "grpc"] {
                let key = format!("srv/{proto}/request_latency_ms.{k}");
                assert!(json.get(&key).is_some(), "{name}: missing {key}");
            }
        }
    }
    cluster.stop().await.unwrap();
}
