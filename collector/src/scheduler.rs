//! The scrape scheduler: one task per target, started at the target's FNV-1a offset
//! within its interval so that scrapes of a fleet spread evenly over the interval,
//! following the target set as discovery changes it.
//!
//! ```text
//!  TargetSet --changes--> reconcile: start tasks of new targets, stop removed ones
//!  task: sleep to offset, then every interval: scrape -> Router::submit (never waits)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use service_kit::Shutdown;
use tokio::task::JoinHandle;

use crate::discovery::{Target, TargetSet};
use crate::model::now_ms;
use crate::router::Router;
use crate::scrape::{Scraper, TargetStatus};

/// Decides which targets this collector scrapes (all, unless the work is shared).
pub type Assignment = Arc<dyn Fn(&Target) -> bool + Send + Sync>;

/// The latest status of every scheduled target, by target id.
pub type Statuses = Arc<Mutex<BTreeMap<String, TargetStatus>>>;

/// How long until the next start of `target`'s scrapes, from `now_ms`.
pub fn first_delay(target: &Target, now_ms: i64) -> Duration {
    let interval = target.interval.as_millis().max(1) as i64;
    let offset = target.offset().as_millis() as i64;
    let phase = now_ms.rem_euclid(interval);
    let mut wait = offset - phase;
    if wait < 0 {
        wait += interval;
    }
    Duration::from_millis(wait as u64)
}

/// Runs scrapes of every assigned target until `shutdown`.
pub async fn run(
    set: Arc<TargetSet>,
    assignment: Assignment,
    scraper: Arc<Scraper>,
    router: Arc<Router>,
    statuses: Statuses,
    shutdown: Shutdown,
) {
    let mut changes = set.subscribe();
    let mut tasks: HashMap<String, (Target, JoinHandle<()>)> = HashMap::new();
    loop {
        let wanted: HashMap<String, Target> = set
            .all()
            .into_iter()
            .filter(|t| assignment(t))
            .map(|t| (t.id(), t))
            .collect();
        tasks.retain(|id, (t, handle)| {
            let keep = wanted.get(id) == Some(t);
            if !keep {
                handle.abort();
                statuses.lock().remove(id);
            }
            keep
        });
        for (id, target) in wanted {
            if tasks.contains_key(&id) {
                continue;
            }
            let handle = tokio::spawn(scrape_loop(
                target.clone(),
                scraper.clone(),
                router.clone(),
                statuses.clone(),
                shutdown.clone(),
            ));
            tasks.insert(id, (target, handle));
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            // Re-check the assignment now and then: it may change without the set changing.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    for (_, (_, handle)) in tasks {
        handle.abort();
    }
}

async fn scrape_loop(
    target: Target,
    scraper: Arc<Scraper>,
    router: Arc<Router>,
    statuses: Statuses,
    shutdown: Shutdown,
) {
    let id = target.id();
    statuses.lock().insert(
        id.clone(),
        TargetStatus {
            target: target.clone(),
            last_scrape_ms: 0,
            up: false,
            duration_ms: 0,
            samples_scraped: 0,
            samples_rejected: 0,
            last_error: None,
            series: 0,
            rejected: Vec::new(),
        },
    );
    let start = tokio::time::Instant::now() + first_delay(&target, now_ms());
    let mut ticks = tokio::time::interval_at(start, target.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut guard = scraper.guard();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let scrape = scraper.scrape(&target, &mut guard).await;
        router.submit(scrape.series);
        statuses.lock().insert(id.clone(), scrape.status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target {
            service: "web".into(),
            source: url.into(),
            url: format!("http://{url}/metrics"),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            roles: vec![],
            labels: Default::default(),
            local: false,
        }
    }

    #[test]
    fn offsets_spread_over_the_interval() {
        // 6,000 targets over 60 one-second slots: every slot gets a fair share.
        let mut slots = [0u32; 60];
        for i in 0..6000 {
            let t = target(&format!("10.1.{}.{}:9100", i / 250, i % 250));
            slots[t.offset().as_secs() as usize] += 1;
        }
        assert!(slots.iter().all(|n| (50..=150).contains(n)), "{slots:?}");
    }

    #[test]
    fn first_scrape_lands_on_the_offset() {
        let t = target("a:1");
        let offset = t.offset().as_millis() as i64;
        let now = 1_700_000_000_000i64 - 1_700_000_000_000i64 % 60_000 + 5;
        let d = first_delay(&t, now).as_millis() as i64;
        assert!(d < 60_000);
        assert_eq!((now + d) % 60_000, offset);
    }
}
