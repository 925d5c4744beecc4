//! Real ZooKeeper started by `ZooKeeper`, driven by the real `zookeeper-client` crate:
//! ephemeral znodes follow their session, and the guard cleans up after itself.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use test_support::ZooKeeper;
use zookeeper_client as zk;

/// Polls `condition` until it holds, for at most `timeout`.
async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_znode_lives_and_dies_with_its_session() {
    let started = Instant::now();
    let server = tokio::task::spawn_blocking(ZooKeeper::start)
        .await
        .unwrap()
        .expect("start zookeeper");
    eprintln!(
        "zookeeper ready on {} in {:?}",
        server.connect_string(),
        started.elapsed()
    );

    let owner = zk::Client::connect(&server.connect_string())
        .await
        .expect("first session");
    let observer = zk::Client::connect(&server.connect_string())
        .await
        .expect("second session");
    assert_ne!(owner.session_id(), observer.session_id());

    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let ephemeral = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    owner
        .create("/members", b"", &persistent)
        .await
        .expect("create /members");
    owner
        .create("/members/collector-1", b"127.0.0.1:7411", &ephemeral)
        .await
        .expect("create ephemeral member");

    let stat = observer
        .check_stat("/members/collector-1")
        .await
        .expect("exists")
        .expect("the second session sees the member");
    assert_eq!(stat.ephemeral_owner, owner.session_id().0);
    assert_eq!(
        observer.list_children("/members").await.expect("children"),
        vec!["collector-1".to_owned()]
    );
    let (data, _) = observer
        .get_data("/members/collector-1")
        .await
        .expect("get data");
    assert_eq!(data, b"127.0.0.1:7411");

    // Dropping the last handle closes the session; its ephemeral node goes with it.
    drop(owner);
    let gone = eventually(Duration::from_secs(10), || async {
        observer
            .list_children("/members")
            .await
            .expect("children")
            .is_empty()
    })
    .await;
    assert!(gone, "ephemeral znode outlived its closed session");
    assert_eq!(
        observer
            .check_stat("/members/collector-1")
            .await
            .expect("exists"),
        None
    );
}

#[test]
fn four_letter_words_answer_and_drop_removes_process_and_files() {
    let server = ZooKeeper::start().expect("start zookeeper");
    assert_eq!(server.four_letter_word("ruok").unwrap(), "imok");
    let srvr = server.four_letter_word("srvr").unwrap();
    assert!(srvr.contains("Mode: standalone"), "{srvr}");
    let mntr = server.four_letter_word("mntr").unwrap();
    assert!(mntr.contains("zk_server_state"), "{mntr}");

    let pid = server.pid().expect("running");
    let data_dir = server.data_dir();
    let addr = server.socket_addr();
    assert!(data_dir.is_dir());

    drop(server);

    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "zookeeper (pid {pid}) outlived its guard"
    );
    assert!(!data_dir.exists(), "temporary directory was not removed");
    std::net::TcpListener::bind(addr).expect("port is free again after drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_znodes_on_the_same_port() {
    let mut server = tokio::task::spawn_blocking(ZooKeeper::start)
        .await
        .unwrap()
        .expect("start zookeeper");
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    {
        let client = zk::Client::connect(&server.connect_string())
            .await
            .expect("connect");
        client
            .create("/config", b"v1", &persistent)
            .await
            .expect("create");
    }

    server.stop().expect("stop");
    assert!(!server.is_running());
    let server = tokio::task::spawn_blocking(move || server.restart().map(|()| server))
        .await
        .unwrap()
        .expect("restart");

    let client = zk::Client::connect(&server.connect_string())
        .await
        .expect("connect after restart");
    let (data, _) = client.get_data("/config").await.expect("get after restart");
    assert_eq!(data, b"v1");
}
