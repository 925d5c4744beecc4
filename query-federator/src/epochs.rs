//! Watched copies of the storage-frontends' epoch tables (`WatchEpochs`), so that
//! a query keys its cached spans without an `Epochs` round trip.
//!
//! One copy per endpoint, filled by a background task that holds the watch stream:
//! the first message replaces the table, later ones max-merge into it (epochs only
//! increase). A copy answers only while its stream is healthy: a snapshot arrived
//! and a message (bump or the once-a-second heartbeat) was heard within
//! [`STALE_AFTER`]. Otherwise, and for backends that do not offer the watch
//! (UNIMPLEMENTED), the caller asks `Epochs` per query as before. Storage sends a
//! bump before it acknowledges the write that caused it, so a cached span is
//! behind a backfill at most by the bump's trip over the network.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use proto::storage::{self as api, storage_client::StorageClient};
use query_lang::Matcher;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::params::now_ms;
use crate::storage::Epochs;

/// A copy that heard nothing for this long is not trusted (heartbeats come every
/// second).
pub const STALE_AFTER: Duration = Duration::from_secs(3);

const DAY_MS: i64 = 86_400_000;

/// One endpoint's watched epoch table.
#[derive(Debug, Default)]
pub struct EpochCopy {
    started: AtomicBool,
    bumps: AtomicU64,
    state: Mutex<CopyState>,
}

#[derive(Debug, Default)]
struct CopyState {
    /// A snapshot arrived on the current stream.
    live: bool,
    /// When the last message arrived.
    heard: Option<Instant>,
    /// Storage's clock minus ours when that message arrived (at most the true
    /// offset: the message was sent before it arrived).
    offset_ms: i64,
    ooo_window_ms: i64,
    /// service -> day start ms -> epoch.
    table: HashMap<String, BTreeMap<i64, u64>>,
}

impl EpochCopy {
    /// Starts the watch on first use (on the current runtime) and answers from the
    /// copy if it is healthy: the epochs of the services `service` matches on the
    /// days overlapping `[start, end)`, as one endpoint's share of a zone's.
    pub fn known(
        self: &Arc<Self>,
        url: &str,
        client: &StorageClient<Channel>,
        service: &Matcher,
        start: i64,
        end: i64,
    ) -> Option<Epochs> {
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(watch(url.to_string(), client.clone(), Arc::downgrade(self)));
            return None;
        }
        let st = self.state.lock();
        if !st.live || st.heard.is_none_or(|h| h.elapsed() > STALE_AFTER) {
            return None;
        }
        let mut epochs = BTreeMap::new();
        if end > start {
            let (d0, d1) = (
                start.div_euclid(DAY_MS) * DAY_MS,
                (end - 1).div_euclid(DAY_MS) * DAY_MS,
            );
            for (svc, days) in &st.table {
                if !service.matches(svc) {
                    continue;
                }
                for (&day, &e) in days.range(d0..=d1) {
                    epochs.insert((svc.clone(), day), e);
                }
            }
        }
        Some(Epochs {
            epochs,
            mutable_after_ms: now_ms() + st.offset_ms - st.ooo_window_ms,
        })
    }

    /// Whether the copy answers now (for stats and tests).
    pub fn is_live(&self) -> bool {
        let st = self.state.lock();
        st.live && st.heard.is_some_and(|h| h.elapsed() <= STALE_AFTER)
    }

    /// Epoch changes heard after the first snapshot.
    pub fn bumps_heard(&self) -> u64 {
        self.bumps.load(Ordering::Relaxed)
    }

    fn apply(&self, u: api::EpochsUpdate) {
        if !u.snapshot {
            self.bumps
                .fetch_add(u.epochs.len() as u64, Ordering::Relaxed);
        }
        let mut st = self.state.lock();
        if u.snapshot {
            st.table.clear();
            st.live = true;
        }
        st.heard = Some(Instant::now());
        st.offset_ms = u.now_ms - now_ms();
        st.ooo_window_ms = u.ooo_window_ms;
        for e in u.epochs {
            let slot = st
                .table
                .entry(e.service)
                .or_default()
                .entry(e.day_start_ms)
                .or_default();
            *slot = (*slot).max(e.epoch);
        }
    }

    fn lost(&self) {
        self.state.lock().live = false;
    }
}

/// Holds the watch stream of one endpoint while its copy is in use, reconnecting
/// with backoff; ends when the copy is dropped or the backend has no watch.
async fn watch(url: String, client: StorageClient<Channel>, copy: Weak<EpochCopy>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if copy.strong_count() == 0 {
            return;
        }
        match client
            .clone()
            .watch_epochs(api::WatchEpochsRequest {})
            .await
        {
            Ok(resp) => {
                let mut stream = resp.into_inner();
                loop {
                    let next = tokio::time::timeout(STALE_AFTER, stream.message()).await;
                    let Some(c) = copy.upgrade() else { return };
                    match next {
                        Ok(Ok(Some(u))) => {
                            c.apply(u);
                            backoff = Duration::from_millis(100);
                        }
                        Ok(Ok(None)) => break,
                        Ok(Err(s)) => {
                            tracing::debug!(%url, status = %s, "epoch watch ended");
                            break;
                        }
                        Err(_) => {
                            tracing::debug!(%url, "epoch watch went quiet");
                            break;
                        }
                    }
                }
                if let Some(c) = copy.upgrade() {
                    c.lost();
                }
            }
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                tracing::debug!(%url, "no epoch watch here: epochs are asked per query");
                return;
            }
            Err(s) => tracing::debug!(%url, status = %s, "epoch watch failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bump(service: &str, day: i64, epoch: u64) -> api::ServiceDayEpoch {
        api::ServiceDayEpoch {
            service: service.into(),
            day_start_ms: day * DAY_MS,
            epoch,
        }
    }

    fn update(snapshot: bool, epochs: Vec<api::ServiceDayEpoch>) -> api::EpochsUpdate {
        api::EpochsUpdate {
            snapshot,
            epochs,
            now_ms: now_ms(),
            ooo_window_ms: 600_000,
        }
    }

    fn known(c: &Arc<EpochCopy>, m: &Matcher, start: i64, end: i64) -> Option<Epochs> {
        // Marked started: no watch task in a unit test.
        c.started.store(true, Ordering::Release);
        let client = StorageClient::new(
            tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
        );
        c.known("http://127.0.0.1:1", &client, m, start, end)
    }

    #[tokio::test]
    async fn a_copy_answers_after_its_snapshot_and_max_merges_bumps() {
        let c = Arc::new(EpochCopy::default());
        let any = Matcher::Any;
        assert_eq!(known(&c, &any, 0, 10 * DAY_MS), None, "no snapshot yet");
        c.apply(update(true, vec![bump("web", 1, 5), bump("api", 2, 7)]));
        let k = known(&c, &any, DAY_MS, 2 * DAY_MS).unwrap();
        assert_eq!(
            k.epochs.into_iter().collect::<Vec<_>>(),
            vec![(("web".into(), DAY_MS), 5)],
            "only the days overlapping the range"
        );
        let lag = now_ms() - 600_000 - k.mutable_after_ms;
        assert!((-1000..1000).contains(&lag), "{lag}");
        c.apply(update(false, vec![bump("web", 1, 9), bump("web", 1, 6)]));
        let web = Matcher::Literal("web".into());
        let k = known(&c, &web, 0, 10 * DAY_MS).unwrap();
        assert_eq!(
            k.epochs[&("web".to_string(), DAY_MS)],
            9,
            "bumps only raise"
        );
        assert_eq!(k.epochs.len(), 1, "the matcher picks services");
        c.apply(update(true, vec![bump("db", 3, 1)]));
        let k = known(&c, &any, 0, 10 * DAY_MS).unwrap();
        assert_eq!(k.epochs.len(), 1, "a snapshot replaces the table");
        c.lost();
        assert_eq!(
            known(&c, &any, 0, DAY_MS),
            None,
            "a lost stream is not trusted"
        );
    }

    #[tokio::test]
    async fn a_quiet_copy_is_not_trusted() {
        let c = Arc::new(EpochCopy::default());
        c.apply(update(true, vec![]));
        assert!(c.is_live());
        let long_ago = Instant::now().checked_sub(STALE_AFTER + Duration::from_millis(1));
        c.state.lock().heard = long_ago;
        assert!(!c.is_live());
        assert_eq!(known(&c, &Matcher::Any, 0, DAY_MS), None);
    }
}
