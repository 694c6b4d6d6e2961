//! The queue conformance suite against each backend: the embedded SQLite
//! queue in a temporary folder and Redis Streams on a real `redis-server`.

use liverseg_core::{JobId, JobMessage};
use liverseg_queue::{
    EmbeddedQueue, JobQueue, QueueError, QueueOptions, QueueStats, RedisQueue, conformance,
};
use liverseg_tests::redis::RedisServer;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

type Queue = Arc<dyn JobQueue>;

async fn embedded(path: std::path::PathBuf, opts: QueueOptions) -> Queue {
    Arc::new(
        EmbeddedQueue::open(&path, opts)
            .await
            .expect("open embedded queue"),
    )
}

async fn redis(url: String, stream: String, opts: QueueOptions) -> Queue {
    let opts = QueueOptions { stream, ..opts };
    Arc::new(
        RedisQueue::open(&url, opts)
            .await
            .expect("open redis queue"),
    )
}

fn message(series: &str) -> JobMessage {
    JobMessage {
        job_id: JobId::new(),
        series_uid: series.into(),
        trace: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = AtomicUsize::new(0);
    conformance::run_all(|opts| {
        embedded(
            dir.path().join(format!(
                "case{}/queue.sqlite",
                n.fetch_add(1, Ordering::Relaxed)
            )),
            opts,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queue.sqlite");
    conformance::survives_reopen(|opts| embedded(path.clone(), opts)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_conformance() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let n = AtomicUsize::new(0);
    conformance::run_all(|opts| {
        redis(
            server.url.clone(),
            format!("conformance:{}", n.fetch_add(1, Ordering::Relaxed)),
            opts,
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_survives_reopen() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    conformance::survives_reopen(|opts| redis(server.url.clone(), "reopen".into(), opts)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn open_by_url_selects_the_backend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = liverseg_queue::open("", dir.path(), QueueOptions::default())
        .await
        .expect("embedded");
    assert_eq!(q.backend(), "embedded");
    q.ping().await.expect("ping embedded");
    let Some(server) = RedisServer::start() else {
        return;
    };
    let q = liverseg_queue::open(&server.url, dir.path(), QueueOptions::default())
        .await
        .expect("redis");
    assert_eq!(q.backend(), "redis");
    q.ping().await.expect("ping redis");
}

/// Unreadable entries (bad JSON, no `job` field), whether new or reclaimed,
/// are reported once, moved to `<stream>:dead` and do not block the queue.
#[tokio::test(flavor = "multi_thread")]
async fn redis_dead_letters_unreadable_payloads() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let visibility = Duration::from_millis(300);
    let opts = QueueOptions {
        visibility_timeout: visibility,
        ..QueueOptions::default()
    };
    let q = redis(server.url.clone(), "bad".into(), opts.clone()).await;
    let client = redis::Client::open(server.url.as_str()).expect("client");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let xadd = |field: &'static str, value: &'static str| {
        let mut cmd = redis::cmd("XADD");
        cmd.arg("bad").arg("*").arg(field).arg(value);
        cmd
    };
    let _: String = xadd("job", "{not json")
        .query_async(&mut raw)
        .await
        .expect("xadd");
    let _: String = xadd("other", "x")
        .query_async(&mut raw)
        .await
        .expect("xadd");
    let good = message("1.2.3");
    q.enqueue(&good).await.expect("enqueue");

    let err = q.dequeue("c1", Duration::ZERO).await.expect_err("bad JSON");
    assert!(matches!(err, QueueError::Payload { .. }), "{err}");
    let err = q
        .dequeue("c1", Duration::ZERO)
        .await
        .expect_err("no job field");
    assert!(matches!(err, QueueError::MissingPayload { .. }), "{err}");
    let d = q
        .dequeue("c1", Duration::ZERO)
        .await
        .expect("dequeue")
        .expect("the good one");
    assert_eq!(d.message, good);
    q.ack(&d).await.expect("ack");

    // Read by some consumer that died: found again by the reclaim path.
    let _: String = xadd("job", "[1,2]")
        .query_async(&mut raw)
        .await
        .expect("xadd");
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&opts.group)
        .arg("ghost")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg("bad")
        .arg(">")
        .query_async(&mut raw)
        .await
        .expect("xreadgroup");
    let err = q
        .dequeue("c1", visibility * 4)
        .await
        .expect_err("reclaimed bad JSON");
    assert!(matches!(err, QueueError::Payload { .. }), "{err}");

    assert_eq!(q.stats().await.expect("stats"), QueueStats::default());
    let dead: u64 = redis::cmd("XLEN")
        .arg("bad:dead")
        .query_async(&mut raw)
        .await
        .expect("xlen");
    assert_eq!(dead, 3);
    assert!(
        q.dequeue("c1", Duration::ZERO)
            .await
            .expect("dequeue")
            .is_none()
    );
}

/// The stream and its group vanish (Redis restarted without persistence):
/// the next dequeue recreates the group and delivers what was added since.
#[tokio::test(flavor = "multi_thread")]
async fn redis_recreates_a_lost_consumer_group() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let q = redis(server.url.clone(), "lost".into(), QueueOptions::default()).await;
    let client = redis::Client::open(server.url.as_str()).expect("client");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut raw)
        .await
        .expect("flushall");
    let m = message("1.2.4");
    q.enqueue(&m).await.expect("enqueue");
    let d = q
        .dequeue("c1", Duration::from_secs(2))
        .await
        .expect("dequeue")
        .expect("delivered");
    assert_eq!(d.message, m);
    assert_eq!(d.deliveries, 1);
    q.ack(&d).await.expect("ack");
    assert!(
        server.log().contains("Ready to accept connections"),
        "log: {}",
        server.log()
    );
}
