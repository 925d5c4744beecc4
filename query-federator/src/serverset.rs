//! Zones found in ZooKeeper: a Finagle server set (one member znode per
//! storage-frontend, JSON with `serviceEndpoint`, `additionalEndpoints` and `status`)
//! followed with watches; the zone's endpoints change as members come and go, and the
//! last known members stay in force while ZooKeeper is away.

use std::time::Duration;

use service_kit::Shutdown;
use stats::Counter;

use crate::storage::Zone;

/// Follows the server set at `path` for `zone` until `shutdown`, reconnecting after
/// failures (counted in `errors`).
pub async fn follow(
    connect: String,
    path: String,
    zone: Zone,
    errors: Counter,
    shutdown: Shutdown,
) {
    let on_change = move |urls: Option<Vec<String>>| match urls {
        Some(urls) => {
            tracing::info!(zone = %zone.name, members = ?urls, "zone members");
            zone.set_endpoints(&urls);
        }
        // The set's znode is missing: the zone has no members.
        None => zone.set_endpoints(&[]),
    };
    serverset::watch_grpc_urls(
        connect,
        path,
        Duration::from_secs(1),
        on_change,
        errors,
        shutdown,
    )
    .await;
}
