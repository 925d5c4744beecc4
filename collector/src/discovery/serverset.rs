//! ZooKeeper server sets in the Finagle/Aurora format: each member of a set is a
//! znode under the set's path holding JSON such as
//!
//! ```json
//! {"serviceEndpoint": {"host": "10.0.0.7", "port": 31337},
//!  "additionalEndpoints": {"admin": {"host": "10.0.0.7", "port": 9990}},
//!  "status": "ALIVE", "shard": 3}
//! ```
//!
//! Members with status `ALIVE` become targets: the source is the service endpoint's
//! `host:port`, the scraped address the configured additional endpoint (`admin` by
//! default). A children watch follows membership; when ZooKeeper cannot be reached
//! the last known members stay and `zookeeper/connected` says 0.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use service_kit::Shutdown;
use stats::Counter;

use super::file_sd::Defaults;
use super::{Target, TargetSet, role_name};
use crate::config::ServerSetConfig;

use serverset::Member;
pub use serverset::{MemberError, member_grpc_url};

/// The role a server set's members form.
pub fn role_of(set: &ServerSetConfig) -> String {
    if set.role.is_empty() {
        role_name(set.path.rsplit('/').next().unwrap_or_default())
    } else {
        role_name(&set.role)
    }
}

/// The target of one member znode, `None` when its status is not `ALIVE`.
pub fn member_target(
    set: &ServerSetConfig,
    defaults: Defaults,
    path: &str,
    data: &[u8],
) -> Result<Option<Target>, MemberError> {
    let m = Member::parse(path, data)?;
    if !m.is_alive() {
        return Ok(None);
    }
    let scraped = if set.endpoint.is_empty() {
        &m.service_endpoint
    } else {
        m.additional_endpoints
            .get(&set.endpoint)
            .ok_or_else(|| MemberError::NoEndpoint {
                path: path.to_owned(),
                endpoint: set.endpoint.clone(),
            })?
    };
    let interval = set.interval.unwrap_or(defaults.interval);
    let mut labels = BTreeMap::new();
    labels.insert("serverset".to_owned(), set.path.clone());
    Ok(Some(Target {
        service: set.service.clone(),
        source: m.service_endpoint.addr(),
        url: format!("{}://{}{}", set.scheme, scraped.addr(), set.metrics_path),
        interval,
        timeout: defaults.timeout.min(interval.mul_f64(0.8)),
        roles: vec![role_of(set)],
        labels,
        local: false,
    }))
}

/// Follows the storage-frontends' server set at `path`, calling `on_change` with
/// their gRPC URLs (sorted) whenever membership changes, until `shutdown`. While
/// ZooKeeper is unreachable, or the set's znode is missing, nothing is called: the
/// last known set stays in force.
pub async fn watch_storage(
    connect: String,
    path: String,
    retry: Duration,
    on_change: impl Fn(Vec<String>) + Send + Sync,
    errors: Counter,
    shutdown: Shutdown,
) {
    let on_change = move |urls: Option<Vec<String>>| {
        if let Some(urls) = urls {
            on_change(urls);
        }
    };
    serverset::watch_grpc_urls(connect, path, retry, on_change, errors, shutdown).await;
}

/// Stats of the ZooKeeper discovery.
#[derive(Debug, Clone)]
pub struct ZkStats {
    /// Connection or session failures.
    pub errors: Counter,
    /// Member znodes skipped as malformed.
    pub bad_members: Counter,
    /// Whether a session is up (exported as the gauge `zookeeper/connected`).
    pub connected: Arc<AtomicBool>,
}

/// Follows every configured server set until `shutdown`, reconnecting after failures.
pub async fn watch(
    connect: String,
    sets: Vec<ServerSetConfig>,
    defaults: Defaults,
    retry: Duration,
    targets: Arc<TargetSet>,
    stats: ZkStats,
    shutdown: Shutdown,
) {
    if sets.is_empty() {
        return;
    }
    loop {
        let client = tokio::select! {
            c = zookeeper_client::Client::connector()
                .with_session_timeout(Duration::from_secs(6))
                .with_connection_timeout(Duration::from_secs(3))
                .connect(&connect) => c,
            _ = shutdown.cancelled() => return,
        };
        match client {
            Ok(client) => {
                stats.connected.store(true, Ordering::Relaxed);
                tracing::info!(zookeeper = %connect, sets = sets.len(), "following server sets");
                let watchers = sets
                    .iter()
                    .map(|set| follow(&client, set, defaults, &targets, &stats, &shutdown));
                // Each returns on a session failure; then all reconnect together.
                let (err, _, _) = futures::future::select_all(watchers.map(Box::pin)).await;
                stats.connected.store(false, Ordering::Relaxed);
                if shutdown.is_cancelled() {
                    return;
                }
                stats.errors.incr();
                tracing::warn!(zookeeper = %connect, error = %err, "server-set session lost; keeping the last known members and reconnecting");
            }
            Err(e) => {
                stats.errors.incr();
                tracing::warn!(zookeeper = %connect, error = %e, "cannot connect to ZooKeeper; keeping the last known members");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Follows one set; returns the error that ended the session (or at shutdown).
async fn follow(
    client: &zookeeper_client::Client,
    set: &ServerSetConfig,
    defaults: Defaults,
    targets: &TargetSet,
    stats: &ZkStats,
    shutdown: &Shutdown,
) -> zookeeper_client::Error {
    let provider = format!("serverset:{}", set.path);
    let ended = serverset::follow(client, &set.path, shutdown, |members| {
        let mut found: Vec<Target> = members
            .unwrap_or_default()
            .iter()
            .filter_map(
                |(path, data)| match member_target(set, defaults, path, data) {
                    Ok(t) => t,
                    Err(e) => {
                        stats.bad_members.incr();
                        tracing::warn!(error = %e, "server-set member skipped");
                        None
                    }
                },
            )
            .collect();
        found.sort_by(|a, b| a.source.cmp(&b.source));
        targets.set(&provider, found);
    })
    .await;
    ended.err().unwrap_or(zookeeper_client::Error::ClientClosed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> ServerSetConfig {
        ServerSetConfig {
            path: "/aurora/web/prod/frontend".into(),
            service: "web".into(),
            role: String::new(),
            endpoint: "admin".into(),
            metrics_path: "/admin/metrics.json".into(),
            scheme: "http".into(),
            interval: None,
        }
    }

    const D: Defaults = Defaults {
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(10),
    };

    #[test]
    fn members_become_targets() {
        let data = br#"{"serviceEndpoint":{"host":"10.0.0.7","port":31337},"additionalEndpoints":{"admin":{"host":"10.0.0.7","port":9990},"http":{"host":"10.0.0.7","port":31337}},"status":"ALIVE","shard":3}"#;
        let t = member_target(&set(), D, "/p/member_0", data)
            .unwrap()
            .unwrap();
        assert_eq!(t.source, "10.0.0.7:31337");
        assert_eq!(t.url, "http://10.0.0.7:9990/admin/metrics.json");
        assert_eq!(t.roles, vec!["role.frontend"]);
        let dead = br#"{"serviceEndpoint":{"host":"h","port":1},"status":"DEAD"}"#;
        assert_eq!(member_target(&set(), D, "/p/m", dead).unwrap(), None);
        let no_admin = br#"{"serviceEndpoint":{"host":"h","port":1},"status":"ALIVE"}"#;
        assert_eq!(
            member_target(&set(), D, "/p/m", no_admin)
                .unwrap_err()
                .to_string(),
            "member /p/m has no endpoint \"admin\""
        );
        assert!(member_target(&set(), D, "/p/m", b"{").is_err());
    }
}
