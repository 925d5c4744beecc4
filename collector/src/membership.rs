//! Sharing the targets between collectors: each registers an ephemeral sequential
//! znode under the membership path (its data: the collector's id) and follows the
//! children; a target belongs to the member with the highest rendezvous hash of
//! (member, target), so when a member leaves only its targets move, spread over the
//! others. When ZooKeeper cannot be reached the last known members stay in force
//! (`collector/membership/connected` says 0): scraping goes on as before.
//!
//! ```text
//!  /aerie/collector/members/member-0000000003  data "collector-a"
//!  /aerie/collector/members/member-0000000007  data "collector-b"
//!  owner(target) = argmax over members m of mix(fnv1a(m | target))
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use serde::Serialize;
use service_kit::Shutdown;
use stats::{Counter, Gauge, StatsReceiver};
use zookeeper_client as zk;

use crate::model::Fnv1a;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The rendezvous weight of `target` on `member`.
pub fn weight(member: &str, target: &str) -> u64 {
    let mut h = Fnv1a::new();
    h.write(member.as_bytes());
    h.write(&[0xff]);
    h.write(target.as_bytes());
    mix(h.finish())
}

/// The member `target` belongs to among `members` (`None` when there are none).
pub fn owner<'a>(members: &'a [String], target: &str) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|m| (weight(m, target), m.as_str()))
        .map(String::as_str)
}

/// What the admin endpoint shows.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// This collector's id.
    pub me: String,
    /// The members in force, sorted.
    pub members: Vec<String>,
    /// Whether a ZooKeeper session is up; false: the last known members are used.
    pub connected: bool,
}

/// This collector's view of the membership.
pub struct Membership {
    me: String,
    members: RwLock<Vec<String>>,
    connected: Arc<AtomicBool>,
    errors: Counter,
    changes: Counter,
    _gauges: Vec<Gauge>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership").field("me", &self.me).finish()
    }
}

impl Membership {
    /// A membership of `me` alone until ZooKeeper says otherwise; stats under
    /// `stats` (scoped `membership/`).
    pub fn new(me: String, stats: &StatsReceiver) -> Arc<Self> {
        let scope = stats.scope("membership");
        Arc::new_cyclic(|weak: &std::sync::Weak<Membership>| {
            let (w1, w2) = (weak.clone(), weak.clone());
            Membership {
                me: me.clone(),
                members: RwLock::new(vec![me]),
                connected: Arc::new(AtomicBool::new(false)),
                errors: scope.counter("errors"),
                changes: scope.counter("changes"),
                _gauges: vec![
                    scope.gauge("connected", move || {
                        w1.upgrade().map_or(0.0, |m| {
                            f64::from(u8::from(m.connected.load(Ordering::Relaxed)))
                        })
                    }),
                    scope.gauge("members", move || {
                        w2.upgrade().map_or(0.0, |m| m.members.read().len() as f64)
                    }),
                ],
            }
        })
    }

    /// Whether this collector scrapes the target with identity `target_id`.
    pub fn owns(&self, target_id: &str) -> bool {
        let members = self.members.read();
        owner(&members, target_id).is_none_or(|m| m == self.me)
    }

    /// The state for the admin endpoint.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            me: self.me.clone(),
            members: self.members.read().clone(),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }

    fn set_members(&self, mut members: Vec<String>) {
        members.sort();
        members.dedup();
        // Until our own znode shows up we still count ourselves in.
        if !members.contains(&self.me) {
            members.push(self.me.clone());
            members.sort();
        }
        let mut cur = self.members.write();
        if *cur != members {
            tracing::info!(me = %self.me, members = ?members, "collector membership changed");
            self.changes.incr();
            *cur = members;
        }
    }

    /// Registers and follows the members under `path` on `connect` until `shutdown`,
    /// reconnecting after `retry` when the session fails.
    pub async fn run(
        self: Arc<Self>,
        connect: String,
        path: String,
        retry: Duration,
        shutdown: Shutdown,
    ) {
        loop {
            let result = tokio::select! {
                r = self.session(&connect, &path, &shutdown) => r,
                _ = shutdown.cancelled() => return,
            };
            self.connected.store(false, Ordering::Relaxed);
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(e) = result {
                self.errors.incr();
                tracing::warn!(zookeeper = %connect, error = %e, "collector membership lost; keeping the last known members");
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn session(
        &self,
        connect: &str,
        path: &str,
        shutdown: &Shutdown,
    ) -> Result<(), zk::Error> {
        let client = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(4))
            .connect(connect)
            .await?;
        serverset::ensure_path(&client, path).await?;
        let opts = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
        let (_, seq) = client
            .create(&format!("{path}/member-"), self.me.as_bytes(), &opts)
            .await?;
        tracing::info!(me = %self.me, path, sequence = %seq, "registered as a collector member");
        self.connected.store(true, Ordering::Relaxed);
        let mut state = client.state_watcher();
        let members = serverset::follow(&client, path, shutdown, |found| {
            let found = found.unwrap_or_default().into_iter();
            self.set_members(
                found
                    .map(|(_, data)| String::from_utf8_lossy(&data).into_owned())
                    .collect(),
            )
        });
        let session = async {
            loop {
                match state.changed().await {
                    zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                        self.connected.store(true, Ordering::Relaxed);
                    }
                    zk::SessionState::Disconnected => {
                        self.connected.store(false, Ordering::Relaxed);
                    }
                    zk::SessionState::Expired
                    | zk::SessionState::AuthFailed
                    | zk::SessionState::Closed => return Err(zk::Error::SessionExpired),
                }
            }
        };
        tokio::select! {
            ended = members => ended,
            ended = session => ended,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_moves_only_the_leavers_targets() {
        let three: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let two: Vec<String> = ["a", "c"].map(String::from).to_vec();
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            let t = format!("web|10.0.{}.{}:9990|http://x/metrics", i / 200, i % 200);
            let o3 = owner(&three, &t).unwrap();
            counts[three.iter().position(|m| m == o3).unwrap()] += 1;
            let o2 = owner(&two, &t).unwrap();
            if o3 != "b" {
                assert_eq!(o2, o3, "{t} moved though its owner stayed");
            }
        }
        assert!(
            counts.iter().all(|n| (800..=1200).contains(n)),
            "{counts:?}"
        );
    }

    #[test]
    fn alone_owns_everything() {
        let m = Membership::new("me".into(), &StatsReceiver::new());
        assert!(m.owns("anything"));
        m.set_members(vec!["other".into()]);
        assert_eq!(m.snapshot().members, vec!["me", "other"]);
    }
}
