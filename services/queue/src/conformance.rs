//! The one behaviour suite every backend must pass.
//!
//! `make(opts)` must yield a fresh, empty queue (its own file or stream)
//! with those options. Timing bounds are loose enough for a loaded CI
//! machine and tight enough to tell "waits for the deadline" from
//! "returns at once" or "polls every few seconds".

use crate::{Delivery, JobQueue, QueueError, QueueOptions, QueueStats};
use liverseg_core::{JobId, JobMessage};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Visibility timeout of the timing cases.
pub const VISIBILITY: Duration = Duration::from_millis(500);
/// How much later than due a reclaim or a wake-up may come.
const SLACK: Duration = Duration::from_millis(1500);

type Queue = Arc<dyn JobQueue>;

fn opts(visibility: Duration) -> QueueOptions {
    QueueOptions {
        visibility_timeout: visibility,
        ..QueueOptions::default()
    }
}

/// Odd messages carry a trace context, so both backends are seen to keep it.
fn message(n: usize) -> JobMessage {
    let mut trace = std::collections::BTreeMap::new();
    if n % 2 == 1 {
        trace.insert(
            "traceparent".to_string(),
            format!("00-{:032x}-{:016x}-01", n + 1, n + 1),
        );
    }
    JobMessage {
        job_id: JobId::new(),
        series_uid: format!("1.2.826.0.1.3680043.10.{n}"),
        trace,
    }
}

async fn take(q: &Queue, consumer: &str, wait: Duration) -> Delivery {
    q.dequeue(consumer, wait)
        .await
        .expect("dequeue")
        .unwrap_or_else(|| panic!("{consumer}: nothing delivered within {wait:?}"))
}

async fn nothing(q: &Queue, consumer: &str, wait: Duration, why: &str) {
    let got = q.dequeue(consumer, wait).await.expect("dequeue");
    assert!(got.is_none(), "{why}: {consumer} got {got:?}");
}

async fn stats(q: &Queue) -> QueueStats {
    q.stats().await.expect("stats")
}

/// Runs every case, each on a fresh queue.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn(QueueOptions) -> Fut,
    Fut: Future<Output = Queue>,
{
    macro_rules! case {
        ($name:ident, $vis:expr) => {{
            eprintln!("conformance: {}", stringify!($name));
            $name(make(opts($vis)).await).await;
        }};
    }
    case!(fifo_order, Duration::from_secs(30));
    case!(deliveries_count_redeliveries, VISIBILITY);
    case!(unacked_is_reclaimed_after_visibility_timeout, VISIBILITY);
    case!(heartbeat_keeps_the_lease, VISIBILITY);
    case!(ack_removes_for_good, VISIBILITY);
    case!(nack_returns_after_the_delay, VISIBILITY);
    case!(empty_dequeue_waits_for_the_deadline, VISIBILITY);
    case!(enqueue_wakes_a_waiting_dequeue, Duration::from_secs(30));
    case!(stats_count_waiting_and_in_flight, Duration::from_secs(30));
    case!(
        oldest_age_is_the_lag_of_unacknowledged_messages,
        Duration::from_secs(30)
    );
    case!(
        competing_consumers_share_without_duplicates,
        Duration::from_secs(30)
    );
}

/// New messages come out in the order they went in, each on first delivery.
pub async fn fifo_order(q: Queue) {
    let sent: Vec<JobMessage> = (0..5).map(message).collect();
    for m in &sent {
        q.enqueue(m).await.expect("enqueue");
    }
    for m in &sent {
        let d = take(&q, "c1", Duration::from_secs(2)).await;
        assert_eq!(&d.message, m, "out of order");
        assert_eq!(d.deliveries, 1);
        q.ack(&d).await.expect("ack");
    }
    nothing(&q, "c1", Duration::ZERO, "all were acknowledged").await;
}

/// `deliveries` is 1 on first delivery and 2 after a reclaim.
pub async fn deliveries_count_redeliveries(q: Queue) {
    let m = message(1);
    q.enqueue(&m).await.expect("enqueue");
    let first = take(&q, "c1", Duration::from_secs(2)).await;
    assert_eq!(first.deliveries, 1);
    let second = take(&q, "c2", VISIBILITY + SLACK).await;
    assert_eq!(second.id, first.id);
    assert_eq!(second.message, m);
    assert_eq!(second.deliveries, 2);
    q.ack(&second).await.expect("ack");
}

/// A lease not renewed expires after the visibility timeout, not before;
/// the message then belongs to the consumer that reclaimed it.
pub async fn unacked_is_reclaimed_after_visibility_timeout(q: Queue) {
    q.enqueue(&message(1)).await.expect("enqueue");
    let first = take(&q, "c1", Duration::from_secs(2)).await;
    let leased_at = Instant::now();
    nothing(
        &q,
        "c2",
        VISIBILITY / 2,
        "reclaimed before the visibility timeout",
    )
    .await;
    let again = take(&q, "c2", VISIBILITY + SLACK).await;
    let after = leased_at.elapsed();
    assert_eq!(again.id, first.id);
    assert!(
        after >= VISIBILITY - Duration::from_millis(50),
        "reclaimed after {after:?}"
    );
    assert!(
        after <= VISIBILITY + SLACK,
        "reclaimed only after {after:?}"
    );
    // The first consumer lost its lease and cannot take it back.
    let err = q
        .heartbeat("c1", &first)
        .await
        .expect_err("heartbeat by the old owner");
    assert!(matches!(err, QueueError::NotLeased { .. }), "{err}");
    let err = q
        .nack("c1", &first, Duration::ZERO)
        .await
        .expect_err("nack by the old owner");
    assert!(matches!(err, QueueError::NotLeased { .. }), "{err}");
    q.heartbeat("c2", &again)
        .await
        .expect("heartbeat by the new owner");
    q.ack(&again).await.expect("ack");
}

/// Heartbeats keep a message leased well past the visibility timeout; once
/// they stop it is reclaimed.
pub async fn heartbeat_keeps_the_lease(q: Queue) {
    q.enqueue(&message(1)).await.expect("enqueue");
    let d = take(&q, "c1", Duration::from_secs(2)).await;
    let hold = VISIBILITY * 3;
    let beats = async {
        let until = Instant::now() + hold;
        while Instant::now() < until {
            tokio::time::sleep(VISIBILITY / 5).await;
            q.heartbeat("c1", &d).await.expect("heartbeat");
        }
    };
    let (_, stolen) = tokio::join!(beats, q.dequeue("c2", hold));
    assert!(
        stolen.expect("dequeue").is_none(),
        "reclaimed while heartbeats continued"
    );
    let again = take(&q, "c2", VISIBILITY + SLACK).await;
    assert_eq!(again.id, d.id);
    assert_eq!(again.deliveries, 2);
    q.ack(&again).await.expect("ack");
}

/// An acknowledged message never comes back, and acking again is harmless.
pub async fn ack_removes_for_good(q: Queue) {
    q.enqueue(&message(1)).await.expect("enqueue");
    let d = take(&q, "c1", Duration::from_secs(2)).await;
    q.ack(&d).await.expect("ack");
    nothing(
        &q,
        "c2",
        VISIBILITY * 2 + VISIBILITY / 2,
        "acknowledged message delivered again",
    )
    .await;
    assert_eq!(stats(&q).await, QueueStats::default());
    q.ack(&d).await.expect("second ack");
    let err = q
        .heartbeat("c1", &d)
        .await
        .expect_err("heartbeat after ack");
    assert!(matches!(err, QueueError::NotLeased { .. }), "{err}");
}

/// `nack(delay)` returns the message after the delay, not before; with no
/// delay at once.
pub async fn nack_returns_after_the_delay(q: Queue) {
    let delay = VISIBILITY * 3 / 5;
    q.enqueue(&message(1)).await.expect("enqueue");
    let d = take(&q, "c1", Duration::from_secs(2)).await;
    q.nack("c1", &d, delay).await.expect("nack");
    let given_back = Instant::now();
    nothing(&q, "c2", delay / 2, "delivered before the nack delay").await;
    let again = take(&q, "c2", delay + SLACK).await;
    let after = given_back.elapsed();
    assert_eq!(again.id, d.id);
    assert_eq!(again.deliveries, 2);
    assert!(
        after >= delay - Duration::from_millis(50),
        "back after {after:?}, delay {delay:?}"
    );

    q.nack("c2", &again, Duration::ZERO)
        .await
        .expect("nack without delay");
    let given_back = Instant::now();
    let third = take(&q, "c3", Duration::from_secs(2)).await;
    assert_eq!(third.id, d.id);
    assert_eq!(third.deliveries, 3);
    assert!(
        given_back.elapsed() < VISIBILITY,
        "nack without delay came back after {:?}",
        given_back.elapsed()
    );
    q.ack(&third).await.expect("ack");
}

/// With nothing to deliver, `dequeue` returns `None` at about `wait`.
pub async fn empty_dequeue_waits_for_the_deadline(q: Queue) {
    for wait in [Duration::from_millis(700), Duration::ZERO] {
        let start = Instant::now();
        nothing(&q, "c1", wait, "empty queue").await;
        let took = start.elapsed();
        assert!(
            took + Duration::from_millis(5) >= wait,
            "returned after {took:?}, wait {wait:?}"
        );
        assert!(
            took <= wait + Duration::from_millis(500),
            "returned after {took:?}, wait {wait:?}"
        );
    }
}

/// A dequeue that is waiting returns promptly when a message is enqueued:
/// woken, not found by a poll (every round must beat a 200-250 ms poll).
pub async fn enqueue_wakes_a_waiting_dequeue(q: Queue) {
    for n in 0..5 {
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move {
                let d = q.dequeue("c1", Duration::from_secs(10)).await;
                (d, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiter.is_finished(),
            "dequeue returned before anything was enqueued"
        );
        let m = message(n);
        q.enqueue(&m).await.expect("enqueue");
        let sent = Instant::now();
        let (got, at) = waiter.await.expect("waiter task");
        let d = got.expect("dequeue").expect("woken with a message");
        let latency = at.saturating_duration_since(sent);
        assert_eq!(d.message, m);
        assert!(
            latency < Duration::from_millis(100),
            "woken {latency:?} after the enqueue"
        );
        q.ack(&d).await.expect("ack");
    }
}

/// `oldest_age` is the time since the oldest unacknowledged message was
/// enqueued, leased or not, and nothing once all are acknowledged.
pub async fn oldest_age_is_the_lag_of_unacknowledged_messages(q: Queue) {
    assert_eq!(q.oldest_age().await.expect("oldest_age"), None);
    q.enqueue(&message(0)).await.expect("enqueue");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    q.enqueue(&message(1)).await.expect("enqueue");
    let lag = q.oldest_age().await.expect("oldest_age").expect("a lag");
    assert!(
        lag >= Duration::from_millis(1000) && lag < Duration::from_secs(30),
        "{lag:?}"
    );
    // Leased but not acknowledged still counts.
    let a = take(&q, "c1", Duration::from_secs(2)).await;
    let leased = q.oldest_age().await.expect("oldest_age").expect("a lag");
    assert!(leased >= lag, "{leased:?} < {lag:?}");
    q.ack(&a).await.expect("ack");
    let rest = q.oldest_age().await.expect("oldest_age").expect("a lag");
    assert!(rest < Duration::from_millis(1000), "{rest:?}");
    let b = take(&q, "c1", Duration::from_secs(2)).await;
    q.ack(&b).await.expect("ack");
    assert_eq!(q.oldest_age().await.expect("oldest_age"), None);
}

/// `stats` counts new messages as waiting and unacknowledged ones in flight.
pub async fn stats_count_waiting_and_in_flight(q: Queue) {
    assert_eq!(stats(&q).await, QueueStats::default());
    for n in 0..3 {
        q.enqueue(&message(n)).await.expect("enqueue");
    }
    assert_eq!(
        stats(&q).await,
        QueueStats {
            waiting: 3,
            in_flight: 0
        }
    );
    let a = take(&q, "c1", Duration::from_secs(2)).await;
    assert_eq!(
        stats(&q).await,
        QueueStats {
            waiting: 2,
            in_flight: 1
        }
    );
    q.ack(&a).await.expect("ack");
    assert_eq!(
        stats(&q).await,
        QueueStats {
            waiting: 2,
            in_flight: 0
        }
    );
    let b = take(&q, "c1", Duration::from_secs(2)).await;
    let c = take(&q, "c2", Duration::from_secs(2)).await;
    assert_eq!(
        stats(&q).await,
        QueueStats {
            waiting: 0,
            in_flight: 2
        }
    );
    q.ack(&b).await.expect("ack");
    q.ack(&c).await.expect("ack");
    assert_eq!(stats(&q).await, QueueStats::default());
}

/// Two consumers draining N messages (enqueued while they wait) get
/// distinct messages, and together every message exactly once.
pub async fn competing_consumers_share_without_duplicates(q: Queue) {
    const N: usize = 40;
    let consumer = |name: &'static str| {
        let q = q.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            let give_up = Instant::now() + Duration::from_secs(20);
            // Stop after a quiet second once the producer is done.
            let mut quiet = 0;
            while Instant::now() < give_up && quiet < 5 {
                match q
                    .dequeue(name, Duration::from_millis(200))
                    .await
                    .expect("dequeue")
                {
                    Some(d) => {
                        quiet = 0;
                        assert_eq!(d.deliveries, 1, "{name} got a redelivery");
                        q.ack(&d).await.expect("ack");
                        got.push(d.message);
                    }
                    None => quiet += 1,
                }
            }
            got
        })
    };
    let (a, b) = (consumer("c1"), consumer("c2"));
    let sent: Vec<JobMessage> = (0..N).map(message).collect();
    for m in &sent {
        q.enqueue(m).await.expect("enqueue");
    }
    let (a, b) = (a.await.expect("consumer c1"), b.await.expect("consumer c2"));
    let ids_a: HashSet<JobId> = a.iter().map(|m| m.job_id).collect();
    let ids_b: HashSet<JobId> = b.iter().map(|m| m.job_id).collect();
    assert_eq!(ids_a.len(), a.len(), "c1 got a message twice");
    assert_eq!(ids_b.len(), b.len(), "c2 got a message twice");
    assert!(
        ids_a.is_disjoint(&ids_b),
        "a message went to both consumers"
    );
    let all: HashSet<JobId> = ids_a.union(&ids_b).copied().collect();
    let expected: HashSet<JobId> = sent.iter().map(|m| m.job_id).collect();
    assert_eq!(
        all,
        expected,
        "not every message was delivered (c1 {}, c2 {})",
        a.len(),
        b.len()
    );
    assert_eq!(stats(&q).await, QueueStats::default());
}

/// Messages, leases and acknowledgements survive dropping the queue and
/// opening the same store again. `open(opts)` must reopen the SAME store.
pub async fn survives_reopen<F, Fut>(open: F)
where
    F: Fn(QueueOptions) -> Fut,
    Fut: Future<Output = Queue>,
{
    let visibility = Duration::from_secs(2);
    let sent: Vec<JobMessage> = (0..3).map(message).collect();
    let first = {
        let q = open(opts(visibility)).await;
        for m in &sent {
            q.enqueue(m).await.expect("enqueue");
        }
        take(&q, "c1", Duration::from_secs(2)).await
        // Dropped here with the first message leased and not acknowledged.
    };
    let leased_at = Instant::now();
    assert_eq!(first.message, sent[0]);

    let q = open(opts(visibility)).await;
    assert_eq!(
        stats(&q).await,
        QueueStats {
            waiting: 2,
            in_flight: 1
        }
    );
    for m in &sent[1..] {
        let d = take(&q, "c2", Duration::from_secs(2)).await;
        assert_eq!(&d.message, m);
        assert_eq!(d.deliveries, 1);
        q.ack(&d).await.expect("ack");
    }
    // The lease taken before the reopen still holds until it expires.
    let again = take(&q, "c2", visibility + SLACK).await;
    assert!(
        leased_at.elapsed() >= visibility - Duration::from_millis(100),
        "lease lost on reopen"
    );
    assert_eq!(again.id, first.id);
    assert_eq!(again.message, sent[0]);
    assert_eq!(again.deliveries, 2);
    q.ack(&again).await.expect("ack");
    drop(q);

    let q = open(opts(visibility)).await;
    assert_eq!(
        stats(&q).await,
        QueueStats::default(),
        "acknowledgements lost on reopen"
    );
    nothing(
        &q,
        "c3",
        Duration::ZERO,
        "acknowledged message back after reopen",
    )
    .await;
}
