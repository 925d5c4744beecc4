//! Following a real ZooKeeper server set whose znode appears while the follower
//! starts: every creation is seen, whichever side of the follower's check it falls.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Busy-waits `d`: finer than the runtime's timer.
fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_created_while_the_follower_starts_is_followed() {
    let zk = test_support::ZooKeeper::start().unwrap();
    let client = zookeeper_client::Client::connector()
        .connect(&zk.connect_string())
        .await
        .unwrap();
    serverset::ensure_path(&client, "/race").await.unwrap();
    let opts =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    for i in 0..120u32 {
        let path = format!("/race/set-{i}");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        // The creation starts from 1.2 ms before to 1.2 ms after the follower, so
        // that it lands before, between or after the follower's listing and check.
        let offset = Duration::from_micros(u64::from(i % 60) * 40);
        let create = {
            let (client, path, opts) = (client.clone(), path.clone(), opts.clone());
            async move {
                if i >= 60 {
                    spin(offset);
                }
                client.create(&path, b"", &opts).await.unwrap();
                client
                    .create(&format!("{path}/member_a"), b"{}", &opts)
                    .await
                    .unwrap();
            }
        };
        let follower = {
            let (client, path, shutdown) = (client.clone(), path.clone(), shutdown.clone());
            async move {
                if i < 60 {
                    spin(offset);
                }
                serverset::follow(&client, &path, &shutdown, |m| {
                    let _ = tx.send(m.map(|m| m.len()));
                })
                .await
            }
        };
        let creator = tokio::spawn(create);
        let follower = tokio::spawn(follower);
        let seen = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(m) = rx.recv().await {
                if m == Some(1) {
                    return;
                }
            }
        })
        .await;
        assert!(seen.is_ok(), "set {path}: the member was never seen");
        creator.await.unwrap();
        shutdown.cancel();
        follower.await.unwrap().unwrap();
    }
}
