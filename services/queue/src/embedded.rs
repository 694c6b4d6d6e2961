//! The embedded queue: one SQLite file, durable across `kill -9`.
//!
//! Each message is a row; a row is available when its `lease_deadline`
//! (Unix ms, 0 for never delivered) has passed. Delivering leases the row to
//! a consumer by moving the deadline `visibility_timeout` ahead; `ack`
//! deletes it. Deadlines are wall-clock so that leases persist across a
//! restart like the messages do.

use crate::{Delivery, JobQueue, QueueError, QueueOptions, QueueStats, Result};
use async_trait::async_trait;
use liverseg_core::JobMessage;
use liverseg_core::time::now_millis;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How often a waiting `dequeue` looks again for leases that expired and
/// delayed `nack`s that came due (enqueue and `nack` without delay wake it
/// at once).
const POLL: Duration = Duration::from_millis(200);

// AUTOINCREMENT so that an id is never reused: a late `ack` of a message
// acknowledged long ago must not delete a newer message that got its id.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_deadline INTEGER NOT NULL DEFAULT 0,
    enqueued_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_messages_available ON queue_messages (lease_deadline);
CREATE TABLE IF NOT EXISTS queue_dead_letters (
    id INTEGER PRIMARY KEY,
    payload BLOB NOT NULL,
    error TEXT NOT NULL,
    dead_at INTEGER NOT NULL
);
";

/// Durable queue in a SQLite file; see the module docs.
pub struct EmbeddedQueue {
    pool: SqlitePool,
    path: PathBuf,
    visibility_ms: i64,
    /// Woken when a message becomes available now (enqueue, nack without delay).
    available: Notify,
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueue")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl EmbeddedQueue {
    /// Opens (creating the file and its parent folders) the queue at `path`.
    pub async fn open(path: &Path, opts: QueueOptions) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| QueueError::CreateDir {
                    path: parent.display().to_string(),
                    source,
                })?;
        }
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is fsynced before enqueue returns, so an
            // acknowledged enqueue survives power loss and kill -9.
            .synchronous(SqliteSynchronous::Full)
            // Another process may hold the file (e.g. listener and worker).
            .busy_timeout(Duration::from_secs(10));
        // One connection: writers in this process queue up in the pool
        // instead of racing for the SQLite write lock (no SQLITE_BUSY).
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect)
            .await
            .map_err(|source| QueueError::Embedded {
                path: path.display().to_string(),
                source,
            })?;
        let queue = EmbeddedQueue {
            pool,
            path: path.to_path_buf(),
            visibility_ms: millis(opts.visibility_timeout).max(1),
            available: Notify::new(),
        };
        sqlx::raw_sql(SCHEMA)
            .execute(&queue.pool)
            .await
            .map_err(|e| queue.err(e))?;
        Ok(queue)
    }

    /// Where the queue file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: sqlx::Error) -> QueueError {
        QueueError::Embedded {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn row_id(id: &str) -> Result<i64> {
        id.parse().map_err(|source| QueueError::BadId {
            id: id.to_string(),
            source,
        })
    }

    /// Leases the next available message (stalled ones first, then oldest),
    /// in one statement so that two consumers never get the same lease.
    async fn try_take(&self, consumer: &str) -> Result<Option<Delivery>> {
        let now = now_millis();
        let row: Option<(i64, Vec<u8>, i64)> = sqlx::query_as(
            "UPDATE queue_messages
                SET deliveries = deliveries + 1, lease_owner = ?1, lease_deadline = ?2
              WHERE id = (SELECT id FROM queue_messages
                           WHERE lease_deadline <= ?3
                           ORDER BY deliveries = 0, id
                           LIMIT 1)
          RETURNING id, payload, deliveries",
        )
        .bind(consumer)
        .bind(now.saturating_add(self.visibility_ms))
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let Some((id, payload, deliveries)) = row else {
            return Ok(None);
        };
        match serde_json::from_slice::<JobMessage>(&payload) {
            Ok(message) => Ok(Some(Delivery {
                id: id.to_string(),
                message,
                deliveries: u32::try_from(deliveries).unwrap_or(u32::MAX),
            })),
            Err(source) => {
                // Redelivering it would fail the same way forever: move it
                // aside for an operator and report it once.
                self.dead_letter(id, &payload, &source).await?;
                Err(QueueError::Payload {
                    id: id.to_string(),
                    source,
                })
            }
        }
    }

    async fn dead_letter(&self, id: i64, payload: &[u8], error: &serde_json::Error) -> Result<()> {
        tracing::error!(id, %error, "embedded queue: unreadable message moved to queue_dead_letters");
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        sqlx::query(
            "INSERT OR REPLACE INTO queue_dead_letters (id, payload, error, dead_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(id)
        .bind(payload)
        .bind(error.to_string())
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        sqlx::query("DELETE FROM queue_messages WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Moves the lease deadline of a message leased to `consumer`.
    async fn set_deadline(&self, consumer: &str, delivery: &Delivery, deadline: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE queue_messages SET lease_deadline = ?1 WHERE id = ?2 AND lease_owner = ?3",
        )
        .bind(deadline)
        .bind(Self::row_id(&delivery.id)?)
        .bind(consumer)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(QueueError::NotLeased {
                id: delivery.id.clone(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    async fn enqueue(&self, msg: &JobMessage) -> Result<String> {
        let payload = serde_json::to_string(msg).map_err(|source| QueueError::Encode {
            job_id: msg.job_id.to_string(),
            source,
        })?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO queue_messages (payload, enqueued_at) VALUES (?1, ?2) RETURNING id",
        )
        .bind(payload)
        .bind(now_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        self.available.notify_waiters();
        Ok(id.to_string())
    }

    async fn dequeue(&self, consumer: &str, wait: Duration) -> Result<Option<Delivery>> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so an enqueue between the look and
            // the sleep still wakes us.
            let woken = self.available.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(d) = self.try_take(consumer).await? {
                return Ok(Some(d));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let nap = (deadline - now).min(POLL);
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        // Idempotent: acknowledging a message already gone is not an error
        // (a slow consumer may finish a job that was reclaimed and acked).
        sqlx::query("DELETE FROM queue_messages WHERE id = ?1")
            .bind(Self::row_id(&delivery.id)?)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn heartbeat(&self, consumer: &str, delivery: &Delivery) -> Result<()> {
        let deadline = now_millis().saturating_add(self.visibility_ms);
        self.set_deadline(consumer, delivery, deadline).await
    }

    async fn nack(&self, consumer: &str, delivery: &Delivery, delay: Duration) -> Result<()> {
        let deadline = now_millis().saturating_add(millis(delay));
        self.set_deadline(consumer, delivery, deadline).await?;
        if delay.is_zero() {
            self.available.notify_waiters();
        }
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats> {
        let (waiting, in_flight): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(lease_owner IS NULL), 0), COALESCE(SUM(lease_owner IS NOT NULL), 0)
               FROM queue_messages",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(QueueStats {
            waiting: u64::try_from(waiting).unwrap_or(0),
            in_flight: u64::try_from(in_flight).unwrap_or(0),
        })
    }

    async fn oldest_age(&self) -> Result<Option<Duration>> {
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(enqueued_at) FROM queue_messages")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(oldest.map(|at| Duration::from_millis((now_millis() - at).max(0) as u64)))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liverseg_core::JobId;

    #[tokio::test]
    async fn unreadable_payload_is_dead_lettered_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = EmbeddedQueue::open(&dir.path().join("q/queue.sqlite"), QueueOptions::default())
            .await
            .expect("open");
        sqlx::query("INSERT INTO queue_messages (payload, enqueued_at) VALUES ('{not json', 0)")
            .execute(&q.pool)
            .await
            .expect("insert garbage");
        let good = JobMessage {
            job_id: JobId::new(),
            series_uid: "1.2.3".into(),
            trace: Default::default(),
        };
        q.enqueue(&good).await.expect("enqueue");

        let err = q
            .dequeue("c", Duration::ZERO)
            .await
            .expect_err("garbage must be reported");
        assert!(matches!(err, QueueError::Payload { .. }), "{err}");
        let next = q
            .dequeue("c", Duration::ZERO)
            .await
            .expect("dequeue")
            .expect("good message");
        assert_eq!(next.message, good);
        let (dead,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM queue_dead_letters")
            .fetch_one(&q.pool)
            .await
            .expect("count");
        assert_eq!(dead, 1);
    }

    #[tokio::test]
    async fn commits_are_fsynced_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = EmbeddedQueue::open(&dir.path().join("queue.sqlite"), QueueOptions::default())
            .await
            .expect("open");
        let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
            .fetch_one(&q.pool)
            .await
            .expect("pragma");
        let (journal,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(&q.pool)
            .await
            .expect("pragma");
        assert_eq!(sync, 2, "synchronous=FULL");
        assert_eq!(journal, "wal");
    }

    #[tokio::test]
    async fn foreign_ids_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = EmbeddedQueue::open(&dir.path().join("queue.sqlite"), QueueOptions::default())
            .await
            .expect("open");
        let d = Delivery {
            id: "1700000000000-0".into(),
            message: JobMessage {
                job_id: JobId::new(),
                series_uid: "1".into(),
                trace: Default::default(),
            },
            deliveries: 1,
        };
        assert!(matches!(q.ack(&d).await, Err(QueueError::BadId { .. })));
    }
}
