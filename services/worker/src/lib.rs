//! The worker role: takes jobs from the queue (at-least-once) and runs the
//! pipeline on each series.
//!
//! A delivery may be a repeat (a crash before `ack`, a stalled lease, a
//! second enqueue after a restart), so the job's state in the metadata store
//! decides: finished jobs are acknowledged and skipped; others move to
//! `running` by compare-and-set. A failure is retried after
//! `retry_delay_seconds` until `max_attempts`, then the job is `dead`.

use liverseg_core::{Config, Job, JobState};
use liverseg_queue::{Delivery, JobQueue};
use liverseg_store::{MetadataStore, blob::FsBlobStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

pub mod pipeline;

pub use pipeline::{LoadVolume, Pipeline};

#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn MetadataStore>,
    pub queue: Arc<dyn JobQueue>,
    pub blobs: FsBlobStore,
}

/// Runs `concurrency` consumers until `shutdown`; a job in progress is
/// finished first (its lease would otherwise expire and it would run again).
pub async fn run(
    config: Arc<Config>,
    deps: Deps,
    pipeline: Arc<dyn Pipeline>,
    shutdown: CancellationToken,
) {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into());
    let mut consumers = tokio::task::JoinSet::new();
    for i in 0..config.worker.concurrency {
        let consumer = Consumer {
            name: format!("{host}-{}-{i}", std::process::id()),
            config: config.clone(),
            deps: deps.clone(),
            pipeline: pipeline.clone(),
        };
        consumers.spawn(consumer.run(shutdown.clone()));
    }
    info!(concurrency = config.worker.concurrency, "worker ready");
    while consumers.join_next().await.is_some() {}
}

struct Consumer {
    name: String,
    config: Arc<Config>,
    deps: Deps,
    pipeline: Arc<dyn Pipeline>,
}

impl Consumer {
    async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                d = self.deps.queue.dequeue(&self.name, Duration::from_secs(1)) => d,
            };
            match next {
                Ok(Some(delivery)) => {
                    backoff = Duration::from_millis(200);
                    let span = tracing::info_span!("job", job_id = %delivery.message.job_id);
                    self.handle(delivery).instrument(span).await;
                }
                Ok(None) => {}
                Err(e) => {
                    // Queue unreachable: wait, growing the pause, and retry.
                    warn!(error = %e, "dequeue failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn handle(&self, delivery: Delivery) {
        if let Err(e) = self.process(&delivery).await {
            // Store or queue failed mid-way: the lease will expire and the
            // job is delivered again.
            error!(error = %e, "job handling failed; it will be delivered again");
        }
    }

    async fn process(&self, delivery: &Delivery) -> Result<(), WorkerError> {
        let (store, queue) = (&self.deps.store, &self.deps.queue);
        let id = delivery.message.job_id;
        let Some(job) = store.get_job(id).await? else {
            warn!("no such job; dropping the message");
            queue.ack(delivery).await?;
            return Ok(());
        };
        if job.state.is_terminal() {
            info!(state = %job.state, "job already finished; duplicate delivery dropped");
            queue.ack(delivery).await?;
            return Ok(());
        }
        let max = self.config.worker.max_attempts as i64;
        if job.attempts >= max {
            let detail = format!("gave up after {} attempts", job.attempts);
            store
                .transition_job(id, &[job.state], JobState::Dead, Some(&detail), false)
                .await?;
            queue.ack(delivery).await?;
            warn!(attempts = job.attempts, "job is dead");
            return Ok(());
        }
        let from = [
            JobState::Received,
            JobState::Queued,
            JobState::Failed,
            JobState::Running,
        ];
        let Some(job) = store
            .transition_job(id, &from, JobState::Running, None, true)
            .await?
        else {
            queue.ack(delivery).await?;
            return Ok(());
        };
        info!(
            attempt = job.attempts,
            instances = job.instance_count,
            "job running"
        );

        let heartbeat = self.keep_lease(delivery.clone());
        let result = self.execute(&job).await;
        heartbeat.cancel();

        match result {
            Ok(summary) => {
                store
                    .transition_job(
                        id,
                        &[JobState::Running],
                        JobState::Done,
                        Some(&summary),
                        false,
                    )
                    .await?;
                queue.ack(delivery).await?;
                info!(%summary, "job done");
            }
            Err(reason) if job.attempts >= max => {
                store
                    .transition_job(
                        id,
                        &[JobState::Running],
                        JobState::Dead,
                        Some(&reason),
                        false,
                    )
                    .await?;
                queue.ack(delivery).await?;
                warn!(%reason, attempts = job.attempts, "job failed for the last time; dead");
            }
            Err(reason) => {
                store
                    .transition_job(
                        id,
                        &[JobState::Running],
                        JobState::Failed,
                        Some(&reason),
                        false,
                    )
                    .await?;
                let delay = Duration::from_secs(self.config.worker.retry_delay_seconds);
                queue.nack(&self.name, delivery, delay).await?;
                warn!(%reason, attempts = job.attempts, "job failed; will retry");
            }
        }
        Ok(())
    }

    /// Renews the lease at a third of the visibility timeout until cancelled.
    fn keep_lease(&self, delivery: Delivery) -> CancellationToken {
        let stop = CancellationToken::new();
        let (queue, name, token) = (self.deps.queue.clone(), self.name.clone(), stop.clone());
        let every = Duration::from_secs(self.config.queue.visibility_timeout_seconds.max(3) / 3);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Err(e) = queue.heartbeat(&name, &delivery).await {
                    warn!(error = %e, "lease renewal failed");
                }
            }
        });
        stop
    }

    /// Runs the pipeline on the job's files, off the async runtime.
    async fn execute(&self, job: &Job) -> Result<String, String> {
        let instances = self
            .deps
            .store
            .series_instances(&job.series_uid)
            .await
            .map_err(|e| e.to_string())?;
        let files: Vec<PathBuf> = instances
            .iter()
            .map(|i| self.deps.blobs.path(&i.blob_key).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let (pipeline, job) = (self.pipeline.clone(), job.clone());
        tokio::task::spawn_blocking(move || pipeline.run(&job, &files))
            .await
            .map_err(|e| format!("pipeline panicked: {e}"))?
            .map(|v| v.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] liverseg_store::StoreError),
    #[error(transparent)]
    Queue(#[from] liverseg_queue::QueueError),
}
