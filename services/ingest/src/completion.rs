//! Series completion. A series is complete when no instance arrived for
//! `stable_seconds`, or when the association that sent it is released and
//! `complete_on_release` is set. A complete CT series that passes the
//! sanity checks becomes one job; one that fails is recorded as skipped
//! with the reason.
//!
//! Jobs are keyed by (series, fingerprint of its instances), so completing
//! the same series twice, on one replica or several, or again after a
//! restart, never makes a second job; a series that changed does.

use crate::Deps;
use liverseg_core::{
    AuditEvent, Config, Job, JobId, JobMessage, JobState, SeriesState, time::now_millis,
};
use liverseg_dicom::series::{SeriesRules, check_ct_series};
use liverseg_dicom::sop;
use liverseg_store::NewJob;
use liverseg_telemetry::metrics;
use liverseg_telemetry::trace::{self, Carrier, pseudonym};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

#[derive(Clone)]
pub struct Tracker {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    deps: Deps,
    /// Series being received.
    pending: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    /// When the last instance arrived.
    last: Instant,
    /// Trace context of the first upload that brought the series (the
    /// association or STOW request): completion and the job continue it.
    trace: Carrier,
}

#[derive(Debug, thiserror::Error)]
pub enum CompletionError {
    #[error(transparent)]
    Store(#[from] liverseg_store::StoreError),
    #[error(transparent)]
    Queue(#[from] liverseg_queue::QueueError),
}

impl Tracker {
    pub fn new(config: Arc<Config>, deps: Deps) -> Self {
        Tracker {
            inner: Arc::new(Inner {
                config,
                deps,
                pending: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn stable(&self) -> Duration {
        Duration::from_secs(self.inner.config.listener.stable_seconds)
    }

    /// A new instance of `series` arrived: restart its stability clock.
    /// Called inside the upload's span, whose trace the series joins.
    pub fn touch(&self, series: &str) {
        let mut pending = self.lock();
        match pending.get_mut(series) {
            Some(p) => p.last = Instant::now(),
            None => {
                pending.insert(
                    series.to_string(),
                    Pending {
                        last: Instant::now(),
                        trace: trace::current_carrier(),
                    },
                );
            }
        }
    }

    /// An identical copy arrived: the series is still arriving if we were
    /// waiting for it, but a finished series is not reopened by a resend.
    pub fn extend_if_tracked(&self, series: &str) {
        if let Some(p) = self.lock().get_mut(series) {
            p.last = Instant::now();
        }
    }

    /// Completes `series` at once (association released).
    pub fn complete_now(&self, series: &str) {
        if let Some(p) = self.lock().remove(series) {
            let this = self.clone();
            let series = series.to_string();
            tokio::spawn(async move { this.complete_or_retry(series, p.trace).await });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        // A panic elsewhere must not stop completions: take the map anyway.
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Picks up what a previous run left unfinished: series still receiving
    /// (their clocks resume from their last instance) and jobs recorded but
    /// never handed to the queue.
    pub async fn recover(&self) -> Result<(), CompletionError> {
        let store = &self.inner.deps.store;
        let now = now_millis();
        let receiving = store.list_series(Some(SeriesState::Receiving)).await?;
        {
            let mut pending = self.lock();
            for s in &receiving {
                let age = Duration::from_millis((now - s.last_received_at).max(0) as u64);
                let last = Instant::now()
                    .checked_sub(age.min(self.stable()))
                    .unwrap_or_else(Instant::now);
                // The upload's trace did not survive the restart.
                let trace = Carrier::new();
                pending.insert(s.series_uid.clone(), Pending { last, trace });
            }
        }
        let unqueued = store.list_jobs(Some(JobState::Received), i64::MAX).await?;
        for job in &unqueued {
            enqueue(&self.inner.deps, job.id, &job.series_uid).await?;
        }
        if !receiving.is_empty() || !unqueued.is_empty() {
            info!(
                series = receiving.len(),
                jobs = unqueued.len(),
                "recovered unfinished work"
            );
        }
        Ok(())
    }

    /// Completes series whose clocks ran out, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let tick = (self.stable() / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let due: Vec<(String, Carrier)> = {
                let mut pending = self.lock();
                let stable = self.stable();
                let due: Vec<String> = pending
                    .iter()
                    .filter(|(_, p)| p.last.elapsed() >= stable)
                    .map(|(s, _)| s.clone())
                    .collect();
                due.into_iter()
                    .filter_map(|s| pending.remove(&s).map(|p| (s, p.trace)))
                    .collect()
            };
            for (series, trace) in due {
                // Another listener replica may still be receiving it.
                match self.quiet_for(&series).await {
                    Ok(Some(since)) if since < self.stable() => {
                        let last = Instant::now()
                            .checked_sub(since)
                            .unwrap_or_else(Instant::now);
                        self.lock().entry(series).or_insert(Pending { last, trace });
                    }
                    _ => self.complete_or_retry(series, trace).await,
                }
            }
        }
    }

    /// How long since any process stored an instance of `series`: the
    /// store's time is shared, so a PACS that spreads one series over
    /// several listener replicas gets one job, made once all have gone
    /// quiet. `None` when the store has no record (or does not answer:
    /// completion then reports the error).
    async fn quiet_for(&self, series: &str) -> Result<Option<Duration>, CompletionError> {
        let Some(record) = self.inner.deps.store.get_series(series).await? else {
            return Ok(None);
        };
        let since = (now_millis() - record.last_received_at).max(0);
        Ok(Some(Duration::from_millis(since as u64)))
    }

    /// Completes `series` in a span continuing the upload's trace.
    async fn complete_or_retry(&self, series: String, carrier: Carrier) {
        let span = tracing::info_span!(
            parent: None,
            "series.complete",
            series = %pseudonym(&series),
            outcome = tracing::field::Empty,
        );
        trace::continue_from(&span, &carrier);
        let result = self.complete(&series).instrument(span.clone()).await;
        if let Err(e) = result {
            // Store or queue unavailable: try again after another period.
            span.record("outcome", "retry");
            warn!(series_uid = %series, error = %e, "completing series failed; will retry");
            self.lock().entry(series).or_insert_with(|| Pending {
                last: Instant::now(),
                trace: carrier,
            });
        }
    }

    /// Checks a complete series and records what it becomes: its job, or
    /// `None` when it is kept without one (derived objects) or skipped.
    pub async fn complete(&self, series_uid: &str) -> Result<Option<Job>, CompletionError> {
        let store = &self.inner.deps.store;
        let instances = store.series_instances(series_uid).await?;
        let Some(first) = instances.first() else {
            return Ok(None);
        };
        let study_uid = first.study_uid.clone();

        // Segmentations, reports and meshes (ours, or corrections) are kept
        // and served, never segmented.
        if instances.iter().all(|i| sop::is_derived(&i.sop_class_uid)) {
            store
                .set_series_state(series_uid, SeriesState::Stored, None)
                .await?;
            tracing::Span::current().record("outcome", "stored");
            metrics::series_completed("stored");
            info!(%series_uid, instances = instances.len(), "derived series stored");
            return Ok(None);
        }
        let metas: Vec<_> = instances
            .iter()
            .map(|i| (i.sop_class_uid.as_str(), &i.meta))
            .collect();
        let checked = if instances
            .iter()
            .any(|i| i.sop_class_uid == sop::SEGMENTATION_STORAGE)
        {
            Err("the series mixes segmentations and images".to_string())
        } else {
            let rules = SeriesRules {
                min_slices: self.inner.config.series.min_slices,
                max_tilt_degrees: self.inner.config.series.max_tilt_degrees,
            };
            check_ct_series(&metas, &rules)
        };
        let summary = match checked {
            Ok(s) => s,
            Err(reason) => {
                store
                    .set_series_state(series_uid, SeriesState::Skipped, Some(&reason))
                    .await?;
                store
                    .record_event(&AuditEvent {
                        at: now_millis(),
                        kind: "series.skipped".into(),
                        subject: series_uid.to_string(),
                        detail: reason.clone(),
                    })
                    .await?;
                tracing::Span::current().record("outcome", "skipped");
                metrics::series_completed("skipped");
                info!(%series_uid, %reason, "series skipped");
                return Ok(None);
            }
        };

        let new = NewJob {
            kind: liverseg_core::JobKind::Segment,
            study_uid,
            series_uid: series_uid.to_string(),
            fingerprint: fingerprint(
                instances
                    .iter()
                    .map(|i| (i.sop_instance_uid.as_str(), i.sha256.as_str())),
            ),
            instance_count: instances.len() as i64,
        };
        let (job, created) = store.create_job(&new).await?;
        if job.state == JobState::Received {
            enqueue(&self.inner.deps, job.id, series_uid).await?;
        }
        store
            .set_series_state(series_uid, SeriesState::Queued, None)
            .await?;
        if created {
            tracing::Span::current().record("outcome", "queued");
            metrics::series_completed("queued");
            info!(%series_uid, job_id = %job.id, slices = summary.slices, "series complete; job queued");
        }
        Ok(Some(job))
    }
}

/// Hands a recorded job to the queue, then marks it queued. A crash in
/// between leaves it `received`, and `recover` enqueues it again; the
/// worker tolerates the possible second message.
pub(crate) async fn enqueue(
    deps: &Deps,
    job_id: liverseg_core::JobId,
    series_uid: &str,
) -> Result<(), CompletionError> {
    send(deps.queue.as_ref(), job_id, series_uid).await?;
    deps.store
        .transition_job(job_id, &[JobState::Received], JobState::Queued, None, false)
        .await?;
    Ok(())
}

/// What asking for a replay found.
#[derive(Debug)]
pub enum Replay {
    /// Reset and queued again.
    Queued(Box<Job>),
    /// Only dead or failed jobs are replayed.
    NotReplayable(JobState),
    Missing,
}

/// Gives a dead or failed job a fresh start, queues it and records who
/// asked (`by`, for the audit trail). The command line and the gRPC API
/// both replay through here.
pub async fn replay(
    store: &dyn liverseg_store::MetadataStore,
    queue: &dyn liverseg_queue::JobQueue,
    id: JobId,
    by: &str,
) -> Result<Replay, CompletionError> {
    let Some(job) = store.replay_job(id).await? else {
        return Ok(match store.get_job(id).await? {
            Some(job) => Replay::NotReplayable(job.state),
            None => Replay::Missing,
        });
    };
    send(queue, job.id, &job.series_uid).await?;
    store
        .record_event(&AuditEvent {
            at: now_millis(),
            kind: "job.replay".into(),
            subject: id.to_string(),
            detail: format!("replayed {by}"),
        })
        .await?;
    Ok(Replay::Queued(Box::new(job)))
}

/// Puts the job's message on the queue inside a `queue.enqueue` span whose
/// context travels in the message to the worker.
async fn send(
    queue: &dyn liverseg_queue::JobQueue,
    job_id: JobId,
    series_uid: &str,
) -> Result<String, liverseg_queue::QueueError> {
    let span = tracing::info_span!(
        "queue.enqueue",
        job_id = %job_id,
        queue = queue.backend(),
        message_id = tracing::field::Empty,
    );
    let message = JobMessage {
        job_id,
        series_uid: series_uid.to_string(),
        trace: trace::carrier_of(&span),
    };
    let id = queue.enqueue(&message).instrument(span.clone()).await?;
    span.record("message_id", id.as_str());
    Ok(id)
}

pub use liverseg_core::fingerprint;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_order_and_sees_content() {
        let a = fingerprint([("1.2", "aa"), ("1.3", "bb")].into_iter());
        let b = fingerprint([("1.3", "bb"), ("1.2", "aa")].into_iter());
        let c = fingerprint([("1.3", "bc"), ("1.2", "aa")].into_iter());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
