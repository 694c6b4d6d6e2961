//! The Redis Streams queue: one stream, one consumer group.
//!
//! * enqueue: `XADD stream * job <JSON>`.
//! * dequeue: first reclaim a stalled message (`XAUTOCLAIM` with the
//!   visibility timeout as minimum idle time), else read a new one with
//!   `XREADGROUP ... >`. A message stays in the group's pending list (PEL),
//!   leased to its consumer, until `ack` (`XACK` + `XDEL`, so that every
//!   entry left in the stream is unfinished work).
//! * heartbeat / nack: `XCLAIM ... IDLE n JUSTID` by the owner resets the
//!   idle time (to 0, or to `visibility - delay` so it becomes reclaimable
//!   after `delay`). The owner check and the claim run in one Lua script,
//!   so a consumer whose lease was reclaimed cannot steal it back.
//!
//! Blocking reads: `XREADGROUP BLOCK` on the shared multiplexed connection
//! would hold up every command queued behind it, so blocking reads use
//! their own connections, taken from a small idle list (one per concurrent
//! dequeue) and dropped when a dequeue is cancelled mid-read. Each block
//! lasts at most [`SLICE`] so that stalled messages are reclaimed while a
//! consumer waits; new messages wake the read at once, even from another
//! process.
//!
//! Unreadable payloads: a message whose `job` field is missing or is not a
//! valid [`JobMessage`] is copied to the `<stream>:dead` stream (fields
//! `id`, `job`, `error`), acknowledged and deleted, and `dequeue` returns
//! [`QueueError::Payload`] / [`QueueError::MissingPayload`] once; the next
//! call goes on with the next message.

use crate::{Delivery, JobQueue, QueueError, QueueOptions, QueueStats, Result};
use async_trait::async_trait;
use liverseg_core::JobMessage;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamPendingReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, RedisError, Value};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Longest single blocking read; also how often a waiting consumer looks
/// for stalled messages and for `nack`ed ones that came due.
const SLICE: Duration = Duration::from_millis(250);
/// Idle blocking connections kept for reuse.
const MAX_IDLE_READERS: usize = 16;
/// Dead-lettered entries kept (approximately).
const DEAD_MAXLEN: u64 = 10_000;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// One `XAUTOCLAIM` step (COUNT 1, from `cursor`) plus the delivery count
/// of what it claimed, atomically. Returns {next cursor, id, deliveries,
/// job payload}, the last three nil when nothing was claimed in this step.
const RECLAIM: &str = r#"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', 1)
local e = r[2][1]
if not e then return {r[1], false, false, false} end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
local job = false
for i = 1, #e[2], 2 do
  if e[2][i] == 'job' then job = e[2][i + 1] end
end
return {r[1], e[1], p[1][4], job}
"#;

/// Resets the idle time of `id` to ARGV[4] ms if it is pending for consumer
/// ARGV[2]; returns 1, or 0 when it is not leased to that consumer.
const RELEASE: &str = r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
return 1
"#;

/// Redis Streams queue; see the module docs.
pub struct RedisQueue {
    client: Client,
    conn: ConnectionManager,
    /// Idle connections for blocking reads.
    readers: Mutex<Vec<MultiplexedConnection>>,
    stream: String,
    dead_stream: String,
    group: String,
    visibility_ms: u64,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL: it may carry a password.
        f.debug_struct("RedisQueue")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

fn redis_err(op: &'static str) -> impl FnOnce(RedisError) -> QueueError {
    move |source| QueueError::Redis { op, source }
}

fn is_nogroup(e: &QueueError) -> bool {
    matches!(e, QueueError::Redis { source, .. }
        if source.code() == Some("NOGROUP") || source.to_string().contains("NOGROUP"))
}

/// Whole milliseconds, rounded up so that a block never ends early.
fn ceil_millis(d: Duration) -> u64 {
    u64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(u64::MAX)
}

impl RedisQueue {
    /// Connects and creates the consumer group (and the stream) if missing.
    pub async fn open(url: &str, opts: QueueOptions) -> Result<Self> {
        let client = Client::open(url).map_err(redis_err("open"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(redis_err("connect"))?;
        let queue = RedisQueue {
            client,
            conn,
            readers: Mutex::new(Vec::new()),
            dead_stream: format!("{}:dead", opts.stream),
            stream: opts.stream,
            group: opts.group,
            visibility_ms: ceil_millis(opts.visibility_timeout).max(1),
        };
        queue.ensure_group().await?;
        Ok(queue)
    }

    /// `XGROUP CREATE ... 0 MKSTREAM`. From `0` rather than `$`: entries
    /// are deleted when acknowledged, so every entry present is unfinished
    /// work, including any added while the group was missing (e.g. after
    /// Redis lost it), and none of it may be skipped.
    async fn ensure_group(&self) -> Result<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(QueueError::Redis {
                op: "XGROUP CREATE",
                source: e,
            }),
            _ => Ok(()),
        }
    }

    async fn reader(&self) -> Result<MultiplexedConnection> {
        let idle = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(conn) = idle {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(SLICE + COMMAND_TIMEOUT));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(redis_err("connect"))
    }

    fn return_reader(&self, conn: MultiplexedConnection) {
        let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }

    /// Claims one message whose lease expired, scanning the whole PEL.
    async fn reclaim(&self, consumer: &str) -> Result<Option<Delivery>> {
        let mut conn = self.conn.clone();
        let mut cursor = String::from("0-0");
        loop {
            let (next, id, deliveries, job): (
                String,
                Option<String>,
                Option<u64>,
                Option<Vec<u8>>,
            ) = redis::cmd("EVAL")
                .arg(RECLAIM)
                .arg(1)
                .arg(&self.stream)
                .arg(&self.group)
                .arg(consumer)
                .arg(self.visibility_ms)
                .arg(&cursor)
                .query_async(&mut conn)
                .await
                .map_err(redis_err("XAUTOCLAIM"))?;
            if let Some(id) = id {
                let deliveries = u32::try_from(deliveries.unwrap_or(1)).unwrap_or(u32::MAX);
                return self.delivery(id, job, deliveries).await.map(Some);
            }
            if next == "0-0" {
                return Ok(None);
            }
            cursor = next;
        }
    }

    /// Reads one new message, blocking up to `block` (not at all when zero).
    async fn read_new(&self, consumer: &str, block: Duration) -> Result<Option<Delivery>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(1);
        if !block.is_zero() {
            cmd.arg("BLOCK").arg(ceil_millis(block));
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(">");
        let mut conn = self.reader().await?;
        // Dropped, not returned, on error or cancellation: its state is unknown.
        let reply: Option<StreamReadReply> = cmd
            .query_async(&mut conn)
            .await
            .map_err(redis_err("XREADGROUP"))?;
        self.return_reader(conn);
        let entry = reply
            .and_then(|r| r.keys.into_iter().next())
            .and_then(|k| k.ids.into_iter().next());
        let Some(mut entry) = entry else {
            return Ok(None);
        };
        let job = match entry.map.remove("job") {
            Some(Value::BulkString(bytes)) => Some(bytes),
            Some(Value::SimpleString(s)) => Some(s.into_bytes()),
            _ => None,
        };
        // A new entry read with `>` is on its first delivery.
        self.delivery(entry.id, job, 1).await.map(Some)
    }

    /// Decodes a claimed entry, or dead-letters it when it cannot be decoded.
    async fn delivery(
        &self,
        id: String,
        job: Option<Vec<u8>>,
        deliveries: u32,
    ) -> Result<Delivery> {
        let Some(raw) = job else {
            self.dead_letter(&id, &[], "no `job` field").await?;
            return Err(QueueError::MissingPayload { id });
        };
        match serde_json::from_slice::<JobMessage>(&raw) {
            Ok(message) => Ok(Delivery {
                id,
                message,
                deliveries,
            }),
            Err(source) => {
                self.dead_letter(&id, &raw, &source.to_string()).await?;
                Err(QueueError::Payload { id, source })
            }
        }
    }

    async fn dead_letter(&self, id: &str, raw: &[u8], error: &str) -> Result<()> {
        tracing::error!(id, error, dead_stream = %self.dead_stream, "redis queue: unreadable message dead-lettered");
        redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(&self.dead_stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(DEAD_MAXLEN)
            .arg("*")
            .arg("id")
            .arg(id)
            .arg("job")
            .arg(raw)
            .arg("error")
            .arg(error)
            .ignore()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(id)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err("dead-letter"))
    }

    /// Sets the idle time of a message leased to `consumer`.
    async fn set_idle(&self, consumer: &str, delivery: &Delivery, idle_ms: u64) -> Result<()> {
        let renewed: i64 = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(&self.stream)
            .arg(&self.group)
            .arg(consumer)
            .arg(&delivery.id)
            .arg(idle_ms)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err("XCLAIM"))?;
        if renewed == 0 {
            return Err(QueueError::NotLeased {
                id: delivery.id.clone(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn enqueue(&self, msg: &JobMessage) -> Result<String> {
        let payload = serde_json::to_string(msg).map_err(|source| QueueError::Encode {
            job_id: msg.job_id.to_string(),
            source,
        })?;
        redis::cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg("job")
            .arg(payload)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err("XADD"))
    }

    async fn dequeue(&self, consumer: &str, wait: Duration) -> Result<Option<Delivery>> {
        let deadline = Instant::now() + wait;
        let mut regrouped = false;
        loop {
            let step = async {
                if let Some(d) = self.reclaim(consumer).await? {
                    return Ok(Some(d));
                }
                let block = deadline
                    .saturating_duration_since(Instant::now())
                    .min(SLICE);
                self.read_new(consumer, block).await
            };
            match step.await {
                Ok(Some(d)) => return Ok(Some(d)),
                Ok(None) => {}
                // The group vanished (Redis restarted without persistence,
                // key deleted): recreate it once and go on.
                Err(e) if is_nogroup(&e) && !regrouped => {
                    tracing::warn!(stream = %self.stream, group = %self.group, "redis queue: consumer group missing, recreating it");
                    self.ensure_group().await?;
                    regrouped = true;
                    continue;
                }
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        // Idempotent, like the embedded queue: acking twice is harmless.
        redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&delivery.id)
            .ignore()
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(&delivery.id)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err("XACK"))
    }

    async fn heartbeat(&self, consumer: &str, delivery: &Delivery) -> Result<()> {
        self.set_idle(consumer, delivery, 0).await
    }

    async fn nack(&self, consumer: &str, delivery: &Delivery, delay: Duration) -> Result<()> {
        // Reclaimable once idle reaches the visibility timeout, so start the
        // idle clock `delay` short of it. A delay longer than the timeout is
        // cut to the timeout (Redis clamps idle times to >= 0).
        let delay_ms = ceil_millis(delay);
        if delay_ms > self.visibility_ms {
            tracing::debug!(id = %delivery.id, delay_ms, visibility_ms = self.visibility_ms,
                "redis queue: nack delay longer than the visibility timeout, cut to it");
        }
        self.set_idle(
            consumer,
            delivery,
            self.visibility_ms.saturating_sub(delay_ms),
        )
        .await
    }

    async fn stats(&self) -> Result<QueueStats> {
        // Acked entries are deleted, so the stream holds exactly the waiting
        // plus the pending ones; read both in one transaction.
        let (len, pending): (u64, StreamPendingReply) = redis::pipe()
            .atomic()
            .cmd("XLEN")
            .arg(&self.stream)
            .cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err("XPENDING"))?;
        let in_flight = pending.count() as u64;
        Ok(QueueStats {
            waiting: len.saturating_sub(in_flight),
            in_flight,
        })
    }

    async fn oldest_age(&self) -> Result<Option<Duration>> {
        // Acknowledged entries are deleted, so the first entry left is the
        // oldest unacknowledged one; its id starts with its XADD time (ms).
        let first: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err("XRANGE"))?;
        Ok(first.ids.first().and_then(|entry| {
            let ms: i64 = entry.id.split('-').next()?.parse().ok()?;
            Some(Duration::from_millis(
                (liverseg_core::time::now_millis() - ms).max(0) as u64,
            ))
        }))
    }

    async fn ping(&self) -> Result<()> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err("PING"))
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}
