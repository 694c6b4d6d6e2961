//! The job queue: one trait, two backends chosen by URL.
//!
//! * embedded (default, empty URL or `sqlite://PATH`): a durable queue in a
//!   SQLite file under the data directory; it survives a restart.
//! * `redis://HOST:PORT[/DB]`: Redis Streams with a consumer group.
//!
//! Semantics are at-least-once and identical on both backends (the shared
//! suite in [`conformance`] proves it): a delivered message stays leased to
//! its consumer until `ack`; a lease not renewed by `heartbeat` within the
//! visibility timeout is reclaimed and delivered again with `deliveries`
//! incremented.

use async_trait::async_trait;
use liverseg_core::JobMessage;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub mod conformance;
mod embedded;
mod redis_streams;

pub use embedded::EmbeddedQueue;
pub use redis_streams::RedisQueue;

/// One delivery of a message to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Backend message id (stream id for Redis, row id for embedded).
    pub id: String,
    pub message: JobMessage,
    /// How many times this message has been delivered, this one included (1 on first delivery).
    pub deliveries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Messages never delivered yet, waiting for a consumer.
    pub waiting: u64,
    /// Messages delivered and not yet acknowledged (leases that expired and
    /// messages given back by `nack` included, until delivered again).
    pub in_flight: u64,
}

#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// A lease older than this (since delivery or last heartbeat) is reclaimed.
    pub visibility_timeout: Duration,
    /// Redis stream key.
    pub stream: String,
    /// Redis consumer group.
    pub group: String,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            visibility_timeout: Duration::from_secs(600),
            stream: "liverseg:jobs".into(),
            group: "liverseg-workers".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(
        "unsupported queue URL scheme {scheme:?} (use an empty URL for the embedded queue, sqlite://PATH or redis://HOST:PORT)"
    )]
    UnsupportedScheme { scheme: String },
    #[error("invalid queue URL: {0}")]
    InvalidUrl(#[from] url::ParseError),
    #[error("embedded queue at {path}: {source}")]
    Embedded {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("redis {op}: {source}")]
    Redis {
        op: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("message {id} has an unreadable payload: {source}")]
    Payload {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("message {id} is not leased (already acknowledged or reclaimed)")]
    NotLeased { id: String },
    #[error("message {id} has no `job` field")]
    MissingPayload { id: String },
    #[error("cannot encode the message for job {job_id}: {source}")]
    Encode {
        job_id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot create the queue folder {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{id:?} is not an embedded queue message id: {source}")]
    BadId {
        id: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error(
        "queue URL {url:?} names no file (use sqlite:///absolute/path or sqlite://relative/path)"
    )]
    MissingSqlitePath { url: String },
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// Opens the queue named by `url`: empty for the embedded queue at
/// `data_dir/queue.sqlite`, `sqlite://PATH` for an embedded queue at PATH
/// (`sqlite:///abs` or `sqlite://rel`), `redis://` or `rediss://` for Redis
/// Streams.
pub async fn open(url: &str, data_dir: &Path, opts: QueueOptions) -> Result<Arc<dyn JobQueue>> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(Arc::new(
            EmbeddedQueue::open(&data_dir.join("queue.sqlite"), opts).await?,
        ));
    }
    // The scheme only: a Redis URL may carry a password, never echo it.
    let scheme = url::Url::parse(url)?.scheme().to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" => {
            // Taken verbatim, not through `Url`, which would read the first
            // segment of a relative path as a host name.
            let path = url.split_once("://").map_or("", |(_, p)| p);
            if path.is_empty() {
                return Err(QueueError::MissingSqlitePath {
                    url: url.to_string(),
                });
            }
            Ok(Arc::new(EmbeddedQueue::open(Path::new(path), opts).await?))
        }
        "redis" | "rediss" => Ok(Arc::new(RedisQueue::open(url, opts).await?)),
        _ => Err(QueueError::UnsupportedScheme { scheme }),
    }
}

#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Appends a message; returns its backend id.
    async fn enqueue(&self, msg: &JobMessage) -> Result<String>;
    /// Waits up to `wait` for a message for `consumer`: a stalled one (lease
    /// expired) first, else the oldest new one. `None` when nothing came.
    async fn dequeue(&self, consumer: &str, wait: Duration) -> Result<Option<Delivery>>;
    /// The job is finished (done or dead): the message is removed for good.
    /// Acknowledging a message that is already gone is not an error.
    async fn ack(&self, delivery: &Delivery) -> Result<()>;
    /// Renews the lease of a message still being worked on; `NotLeased`
    /// when it is acknowledged or now leased to another consumer.
    async fn heartbeat(&self, consumer: &str, delivery: &Delivery) -> Result<()>;
    /// Gives the message back: it is delivered again after `delay` (on Redis
    /// at most the visibility timeout). `NotLeased` unless leased to `consumer`.
    async fn nack(&self, consumer: &str, delivery: &Delivery, delay: Duration) -> Result<()>;
    async fn stats(&self) -> Result<QueueStats>;
    /// How long ago the oldest message not yet acknowledged was enqueued
    /// (waiting, leased or given back): the queue's lag. `None` when empty.
    async fn oldest_age(&self) -> Result<Option<Duration>>;
    /// Cheap round trip for readiness probes.
    async fn ping(&self) -> Result<()>;
    /// Short backend name for logs and `/readyz` (never contains secrets).
    fn backend(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_picks_the_backend_by_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = open("", dir.path(), QueueOptions::default())
            .await
            .expect("embedded default");
        assert_eq!(q.backend(), "embedded");
        assert!(dir.path().join("queue.sqlite").is_file());

        let file = dir.path().join("sub/other.sqlite");
        let q = open(
            &format!("sqlite://{}", file.display()),
            dir.path(),
            QueueOptions::default(),
        )
        .await
        .expect("sqlite URL");
        assert_eq!(q.backend(), "embedded");
        assert!(file.is_file());

        let err = open("sqlite://", dir.path(), QueueOptions::default())
            .await
            .err();
        assert!(
            matches!(err, Some(QueueError::MissingSqlitePath { .. })),
            "{err:?}"
        );
        let err = open(
            "amqp://user:secret@host/",
            dir.path(),
            QueueOptions::default(),
        )
        .await
        .err();
        match err {
            Some(e @ QueueError::UnsupportedScheme { .. }) => {
                assert!(!e.to_string().contains("secret"))
            }
            other => panic!("expected UnsupportedScheme, got {other:?}"),
        }
        let err = open("not a url", dir.path(), QueueOptions::default())
            .await
            .err();
        assert!(matches!(err, Some(QueueError::InvalidUrl(_))), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn embedded_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = std::sync::atomic::AtomicUsize::new(0);
        conformance::run_all(|opts| {
            let path = dir.path().join(format!(
                "q{}.sqlite",
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            async move {
                Arc::new(EmbeddedQueue::open(&path, opts).await.expect("open")) as Arc<dyn JobQueue>
            }
        })
        .await;
        let path = dir.path().join("reopen.sqlite");
        conformance::survives_reopen(|opts| {
            let path = path.clone();
            async move {
                Arc::new(EmbeddedQueue::open(&path, opts).await.expect("open")) as Arc<dyn JobQueue>
            }
        })
        .await;
    }
}
