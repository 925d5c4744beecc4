//! ZooKeeper server sets in the Finagle/Aurora format: the member JSON, and a
//! watcher that follows a set of storage-frontends as their gRPC URLs.
//!
//! Each member of a set is a znode under the set's path holding JSON such as
//!
//! ```json
//! {"serviceEndpoint": {"host": "10.0.0.7", "port": 31337},
//!  "additionalEndpoints": {"admin": {"host": "10.0.0.7", "port": 9990}},
//!  "status": "ALIVE", "shard": 3}
//! ```
//!
//! The collector reads scrape targets and its storage-frontends from server sets,
//! the query-federator the storage-frontends of a zone; both share this crate.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use stats::Counter;
use tokio_util::sync::CancellationToken;

/// Why a member znode was skipped.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum MemberError {
    #[error("member {path} is not server-set JSON: {message}")]
    Json { path: String, message: String },
    #[error("member {path} has no endpoint \"{endpoint}\"")]
    NoEndpoint { path: String, endpoint: String },
}

/// One endpoint of a member.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Endpoint {
    /// `host:port`, with an IPv6 host in brackets.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A member znode's content.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The main endpoint.
    pub service_endpoint: Endpoint,
    /// Named extra endpoints (`admin`, `grpc`, ...).
    #[serde(default)]
    pub additional_endpoints: BTreeMap<String, Endpoint>,
    /// `ALIVE` for a member in service.
    #[serde(default)]
    pub status: String,
}

impl Member {
    /// Parses the data of the member znode at `path`.
    pub fn parse(path: &str, data: &[u8]) -> Result<Member, MemberError> {
        serde_json::from_slice(data).map_err(|e| MemberError::Json {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Whether the member is in service.
    pub fn is_alive(&self) -> bool {
        self.status == "ALIVE"
    }
}

/// The gRPC URL of one storage-frontend member: its `grpc` additional endpoint, else
/// its service endpoint; `None` when it is not `ALIVE`.
pub fn member_grpc_url(path: &str, data: &[u8]) -> Result<Option<String>, MemberError> {
    let m = Member::parse(path, data)?;
    if !m.is_alive() {
        return Ok(None);
    }
    let e = m
        .additional_endpoints
        .get("grpc")
        .unwrap_or(&m.service_endpoint);
    Ok(Some(format!("http://{}", e.addr())))
}

/// Follows the storage-frontends' server set at `path`, calling `on_change` with
/// their gRPC URLs (sorted, deduplicated) whenever membership changes, or with
/// `None` while the set's znode does not exist, until `shutdown`. A failed session
/// is counted in `errors` and retried after `retry`; meanwhile nothing is called,
/// so the last known set stays in force.
pub async fn watch_grpc_urls(
    connect: String,
    path: String,
    retry: Duration,
    on_change: impl Fn(Option<Vec<String>>) + Send + Sync,
    errors: Counter,
    shutdown: CancellationToken,
) {
    loop {
        let result: Result<(), zookeeper_client::Error> = async {
            let client = zookeeper_client::Client::connector()
                .with_session_timeout(Duration::from_secs(6))
                .connect(&connect)
                .await?;
            loop {
                match client.list_and_watch_children(&path).await {
                    Ok((children, watcher)) => {
                        let mut urls = Vec::new();
                        for child in children {
                            let p = format!("{path}/{child}");
                            match client.get_data(&p).await {
                                Ok((data, _)) => match member_grpc_url(&p, &data) {
                                    Ok(Some(u)) => urls.push(u),
                                    Ok(None) => {}
                                    Err(e) => tracing::warn!(error = %e, "storage member skipped"),
                                },
                                // Gone between the listing and the read.
                                Err(zookeeper_client::Error::NoNode) => {}
                                Err(e) => return Err(e),
                            }
                        }
                        urls.sort();
                        urls.dedup();
                        on_change(Some(urls));
                        tokio::select! {
                            _ = watcher.changed() => {}
                            _ = shutdown.cancelled() => return Ok(()),
                        }
                    }
                    Err(zookeeper_client::Error::NoNode) => {
                        on_change(None);
                        let (_, watcher) = client.check_and_watch_stat(&path).await?;
                        tokio::select! {
                            _ = watcher.changed() => {}
                            _ = shutdown.cancelled() => return Ok(()),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        .await;
        if shutdown.is_cancelled() {
            return;
        }
        if let Err(e) = result {
            errors.incr();
            tracing::warn!(zookeeper = %connect, path, error = %e, "storage server set lost; keeping the last known storage-frontends");
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_members_give_grpc_urls() {
        let with_grpc = br#"{"serviceEndpoint":{"host":"10.0.0.7","port":7420},"additionalEndpoints":{"grpc":{"host":"10.0.0.7","port":7421}},"status":"ALIVE"}"#;
        assert_eq!(
            member_grpc_url("/s/m", with_grpc).unwrap().as_deref(),
            Some("http://10.0.0.7:7421")
        );
        let plain = br#"{"serviceEndpoint":{"host":"h","port":7421},"status":"ALIVE"}"#;
        assert_eq!(
            member_grpc_url("/s/m", plain).unwrap().as_deref(),
            Some("http://h:7421")
        );
        let v6 = br#"{"serviceEndpoint":{"host":"::1","port":7421},"status":"ALIVE"}"#;
        assert_eq!(
            member_grpc_url("/s/m", v6).unwrap().as_deref(),
            Some("http://[::1]:7421")
        );
        let dead = br#"{"serviceEndpoint":{"host":"h","port":7421},"status":"DEAD"}"#;
        assert_eq!(member_grpc_url("/s/m", dead).unwrap(), None);
        assert!(matches!(
            member_grpc_url("/s/m", b"junk"),
            Err(MemberError::Json { .. })
        ));
    }
}
