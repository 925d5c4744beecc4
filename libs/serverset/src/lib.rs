//! ZooKeeper server sets in the Finagle/Aurora format: the member JSON, a follower
//! of a set's members ([`follow`]), and a watcher that follows a set of
//! storage-frontends as their gRPC URLs.
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
//! A storage-frontend announces itself in its set ([`announce`]): an ephemeral
//! sequential `member_` znode that lives as long as its ZooKeeper session, made
//! again after a lost session and deleted on shutdown.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

    /// A member in service at `service`, with `additional` named endpoints.
    pub fn alive(service: Endpoint, additional: BTreeMap<String, Endpoint>) -> Member {
        Member {
            service_endpoint: service,
            additional_endpoints: additional,
            status: "ALIVE".into(),
        }
    }
}

/// Creates `path` and its parents as persistent znodes where missing.
pub async fn ensure_path(
    client: &zookeeper_client::Client,
    path: &str,
) -> Result<(), zookeeper_client::Error> {
    let opts =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match client.create(&at, &[], &opts).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Counters of [`announce`].
#[derive(Debug, Clone)]
pub struct AnnounceStats {
    /// Member znodes created (one per ZooKeeper session).
    pub announced: Counter,
    /// Sessions that failed or were lost.
    pub errors: Counter,
}

/// Announces `member` in the server set at `path` (created where missing) as an
/// ephemeral sequential znode `member_…` until `shutdown`, then deletes it. A
/// failed or lost session is counted and retried after `retry`; the member is
/// in the set only while a session holds it.
pub async fn announce(
    connect: String,
    path: String,
    member: Member,
    retry: Duration,
    stats: AnnounceStats,
    shutdown: CancellationToken,
) {
    let data = serde_json::to_vec(&member).expect("a member is plain JSON");
    let mut sessions = Sessions {
        connect: &connect,
        path: &path,
        retry,
        errors: &stats.errors,
        lost: "not announced in the server set; retrying",
        shutdown: &shutdown,
        started: false,
    };
    let mut ended = Ok(());
    while let Some(client) = sessions.next(ended).await {
        ended = async {
            ensure_path(&client, &path).await?;
            let opts = zookeeper_client::CreateMode::EphemeralSequential
                .with_acls(zookeeper_client::Acls::anyone_all());
            let (_, seq) = client
                .create(&format!("{path}/member_"), &data, &opts)
                .await?;
            let node = format!("{path}/member_{seq}");
            stats.announced.incr();
            tracing::info!(%node, "announced in the server set");
            let mut state = client.state_watcher();
            loop {
                tokio::select! {
                    s = state.changed() => match s {
                        zookeeper_client::SessionState::Expired
                        | zookeeper_client::SessionState::AuthFailed
                        | zookeeper_client::SessionState::Closed => {
                            return Err(zookeeper_client::Error::SessionExpired);
                        }
                        _ => {}
                    },
                    _ = shutdown.cancelled() => {
                        // Out of the set before draining; the session's end would
                        // remove it too, later.
                        match client.delete(&node, None).await {
                            Ok(()) | Err(zookeeper_client::Error::NoNode) => {}
                            Err(e) => {
                                let left = "could not leave the server set; it goes with the session";
                                tracing::warn!(%node, error = %e, "{left}");
                            }
                        }
                        return Ok(());
                    }
                }
            }
        }
        .await;
    }
}

/// ZooKeeper sessions of a long-running task, one after another until shutdown:
/// a failed or lost session is counted in `errors`, logged as `lost`, and
/// followed by a new one after `retry`.
struct Sessions<'a> {
    connect: &'a str,
    path: &'a str,
    retry: Duration,
    errors: &'a Counter,
    lost: &'static str,
    shutdown: &'a CancellationToken,
    started: bool,
}

impl Sessions<'_> {
    /// A client on a new session, given how the last one `ended`; `None` once
    /// shut down.
    async fn next(
        &mut self,
        mut ended: Result<(), zookeeper_client::Error>,
    ) -> Option<zookeeper_client::Client> {
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            if self.started {
                if let Err(e) = &ended {
                    self.errors.incr();
                    let (connect, path, lost) = (self.connect, self.path, self.lost);
                    tracing::warn!(zookeeper = %connect, path, error = %e, "{lost}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.retry) => {}
                    _ = self.shutdown.cancelled() => return None,
                }
            }
            self.started = true;
            let client = zookeeper_client::Client::connector()
                .with_session_timeout(Duration::from_secs(6))
                .connect(self.connect)
                .await;
            match client {
                Ok(client) => return Some(client),
                Err(e) => ended = Err(e),
            }
        }
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
    let mut sessions = Sessions {
        connect: &connect,
        path: &path,
        retry,
        errors: &errors,
        lost: "storage server set lost; keeping the last known storage-frontends",
        shutdown: &shutdown,
        started: false,
    };
    let mut ended = Ok(());
    while let Some(client) = sessions.next(ended).await {
        ended = follow(&client, &path, &shutdown, |members| {
            on_change(members.map(|members| {
                let mut urls: Vec<String> = members
                    .iter()
                    .filter_map(|(p, data)| match member_grpc_url(p, data) {
                        Ok(u) => u,
                        Err(e) => {
                            tracing::warn!(error = %e, "storage member skipped");
                            None
                        }
                    })
                    .collect();
                urls.sort();
                urls.dedup();
                urls
            }))
        })
        .await;
    }
}

/// Follows the children of the set at `path` on one session: calls `on_change`
/// with each member's full path and data (in listing order) whenever membership
/// changes, or with `None` while the set's znode does not exist. Returns `Ok` at
/// `shutdown`, else the error that ended the session.
pub async fn follow(
    client: &zookeeper_client::Client,
    path: &str,
    shutdown: &CancellationToken,
    mut on_change: impl FnMut(Option<Vec<(String, Vec<u8>)>>),
) -> Result<(), zookeeper_client::Error> {
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        match client.list_and_watch_children(path).await {
            Ok((children, watcher)) => {
                let mut members = Vec::with_capacity(children.len());
                for child in children {
                    let p = format!("{path}/{child}");
                    match client.get_data(&p).await {
                        Ok((data, _)) => members.push((p, data)),
                        // Gone between the listing and the read.
                        Err(zookeeper_client::Error::NoNode) => {}
                        Err(e) => return Err(e),
                    }
                }
                on_change(Some(members));
                tokio::select! {
                    _ = watcher.changed() => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
            Err(zookeeper_client::Error::NoNode) => {
                on_change(None);
                let (stat, watcher) = client.check_and_watch_stat(path).await?;
                if stat.is_some() {
                    // Created between the listing and the check: no event would
                    // come for it.
                    continue;
                }
                tokio::select! {
                    _ = watcher.changed() => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
            Err(e) => return Err(e),
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
        let announced = Member::alive(
            Endpoint {
                host: "::1".into(),
                port: 7421,
            },
            BTreeMap::from([(
                "http".to_string(),
                Endpoint {
                    host: "::1".into(),
                    port: 7420,
                },
            )]),
        );
        let json = serde_json::to_vec(&announced).unwrap();
        assert_eq!(Member::parse("/s/m", &json).unwrap(), announced);
        assert_eq!(
            member_grpc_url("/s/m", &json).unwrap().as_deref(),
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
