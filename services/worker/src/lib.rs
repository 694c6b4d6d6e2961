//! The worker role: takes jobs from the queue (at-least-once), runs the
//! pipeline on each series, keeps the results and delivers them.
//!
//! A queue delivery may be a repeat (a crash before `ack`, a stalled lease,
//! a second enqueue after a restart), so the metadata store decides: finished
//! jobs are acknowledged and skipped; others move to `running` by
//! compare-and-set. A job whose results exist (made by the same model) is not
//! segmented again: only its missing deliveries are retried.
//!
//! Two kinds of failure, two budgets: the pipeline failing (bad data) is
//! retried after `worker.retry_delay_seconds` until `worker.max_attempts`;
//! a destination refusing or unreachable is retried with exponential
//! backoff until `delivery.max_attempts`. Either way the job then becomes
//! `dead`: listed by `liverseg jobs list --state dead`, replayed by
//! `liverseg jobs replay ID`.

use liverseg_core::time::now_millis;
use liverseg_core::{
    AlgorithmStep, AuditEvent, Config, Job, JobKind, JobState, ResultObject, SegOrigin, SegVersion,
    SeriesState,
};
use liverseg_queue::{Delivery, JobQueue};
use liverseg_store::{MetadataStore, blob::FsBlobStore};
use liverseg_telemetry::{metrics, trace};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

pub mod delivery;
pub mod pipeline;
pub mod results;
pub mod stow;

pub use pipeline::{Pipeline, Segmenter};

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
                    // A child of the span that queued the job, in whichever
                    // process that was: one trace per study.
                    let span = tracing::info_span!(
                        parent: None,
                        "job",
                        job_id = %delivery.message.job_id,
                        delivery = delivery.deliveries,
                        kind = tracing::field::Empty,
                        study = tracing::field::Empty,
                        attempt = tracing::field::Empty,
                        outcome = tracing::field::Empty,
                    );
                    trace::continue_from(&span, &delivery.message.trace);
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
        let span = tracing::Span::current();
        span.record("kind", job.kind.as_str());
        span.record("study", trace::pseudonym(&job.study_uid));
        let results = self.current_results(&job).await?;
        let max = i64::from(self.config.worker.max_attempts);
        if results.is_none() && job.attempts >= max {
            // The last runs crashed before recording an outcome.
            let detail = format!("gave up after {} attempts", job.attempts);
            store
                .transition_job(id, &[job.state], JobState::Dead, Some(&detail), false)
                .await?;
            queue.ack(delivery).await?;
            finished(job.kind, "dead");
            warn!(attempts = job.attempts, "job is dead");
            return Ok(());
        }
        let from = [
            JobState::Received,
            JobState::Queued,
            JobState::Failed,
            JobState::Running,
        ];
        // Only a segmentation run counts against worker.max_attempts.
        let Some(job) = store
            .transition_job(id, &from, JobState::Running, None, results.is_none())
            .await?
        else {
            queue.ack(delivery).await?;
            return Ok(());
        };
        span.record("attempt", job.attempts);
        info!(
            attempt = job.attempts,
            instances = job.instance_count,
            resumed = results.is_some(),
            "job running"
        );

        let heartbeat = self.keep_lease(delivery.clone());
        let outcome = self.execute(&job, results).await;
        heartbeat.cancel();

        match outcome {
            Ok(Outcome::Done(summary)) => {
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
                finished(job.kind, "done");
                info!("job done");
            }
            Ok(Outcome::Undelivered { failures, reason }) => {
                let max = i64::from(self.config.delivery.max_attempts);
                if failures >= max {
                    let detail = format!("delivery failed {failures} times: {reason}");
                    store
                        .transition_job(
                            id,
                            &[JobState::Running],
                            JobState::Dead,
                            Some(&detail),
                            false,
                        )
                        .await?;
                    queue.ack(delivery).await?;
                    finished(job.kind, "dead");
                    warn!(%reason, failures, "delivery failed for the last time; dead");
                } else {
                    let detail = format!("delivery failed ({failures} of {max}): {reason}");
                    store
                        .transition_job(
                            id,
                            &[JobState::Running],
                            JobState::Failed,
                            Some(&detail),
                            false,
                        )
                        .await?;
                    let delay = self.config.delivery.backoff(failures as u32);
                    queue.nack(&self.name, delivery, delay).await?;
                    finished(job.kind, "failed");
                    warn!(%reason, failures, retry_in_s = delay.as_secs(), "delivery failed; will retry");
                }
            }
            Err(Failure::Pipeline(reason)) if job.attempts >= max => {
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
                finished(job.kind, "dead");
                warn!(%reason, attempts = job.attempts, "job failed for the last time; dead");
            }
            Err(Failure::Pipeline(reason)) => {
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
                finished(job.kind, "failed");
                warn!(%reason, attempts = job.attempts, "job failed; will retry");
            }
            // Store or queue trouble: leave the lease to expire; the job is
            // delivered again.
            Err(Failure::Infrastructure(e)) => return Err(e),
        }
        Ok(())
    }

    /// The job's results when they exist and come from the current model.
    async fn current_results(&self, job: &Job) -> Result<Option<Vec<ResultObject>>, WorkerError> {
        let results = self.deps.store.results(job.id).await?;
        let provenance = match job.kind {
            JobKind::Segment => self.pipeline.model_sha256(),
            JobKind::Correction => pipeline::CORRECTION_PROVENANCE,
        };
        let current = !results.is_empty() && results.iter().all(|r| r.model_sha256 == provenance);
        Ok(current.then_some(results))
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

    /// Segments (unless `results` exist already), keeps the results, then
    /// delivers them.
    async fn execute(
        &self,
        job: &Job,
        results: Option<Vec<ResultObject>>,
    ) -> Result<Outcome, Failure> {
        let store = &self.deps.store;
        if let Some(reason) = self.superseded(job).await? {
            return Ok(superseded(job, &reason));
        }
        let results = match results {
            Some(results) => results,
            None => self.segment(job).await?,
        };
        // Segmenting takes seconds: the series may have changed meanwhile.
        if let Some(reason) = self.superseded(job).await? {
            return Ok(superseded(job, &reason));
        }
        self.index_results(job, &results)
            .await
            .map_err(Failure::Infrastructure)?;
        let summary = self.summary(&results).await;
        let started = Instant::now();
        let delivering = tracing::info_span!("deliver", results = results.len());
        let states = delivery::deliver(
            &self.config.delivery,
            &self.config.listener.ae_title,
            store.as_ref(),
            &self.deps.blobs,
            job.id,
            &job.study_uid,
            &results,
        )
        .instrument(delivering)
        .await
        .map_err(|e| Failure::Infrastructure(e.into()))?;
        metrics::stage("delivery", started.elapsed().as_secs_f64());
        let undelivered: Vec<_> = states.iter().filter(|d| !d.delivered).collect();
        if let Some(worst) = undelivered.iter().max_by_key(|d| d.failures) {
            let reason = undelivered
                .iter()
                .map(|d| {
                    format!(
                        "{}: {}",
                        d.destination,
                        d.last_error.as_deref().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(Outcome::Undelivered {
                failures: worst.failures,
                reason,
            });
        }
        let delivered: Vec<&str> = states.iter().map(|d| d.destination.as_str()).collect();
        let mut summary = summary;
        if let Some(obj) = summary.as_object_mut() {
            if let Some(seconds) = obj.get_mut("seconds").and_then(|s| s.as_object_mut()) {
                seconds.insert("delivery".into(), started.elapsed().as_secs_f64().into());
            }
            obj.insert("delivered_to".into(), delivered.into());
        }
        Ok(Outcome::Done(summary.to_string()))
    }

    /// Why a segmentation job no longer stands for its series, if it does
    /// not: the series' content has changed since the job was made (a PACS
    /// sent more slices after a pause long enough to complete the series).
    /// Completing the series again makes the job for the new content, so
    /// this one ends without results instead of delivering a second,
    /// partial set.
    async fn superseded(&self, job: &Job) -> Result<Option<String>, Failure> {
        if job.kind != JobKind::Segment {
            return Ok(None);
        }
        let instances = self
            .deps
            .store
            .series_instances(&job.series_uid)
            .await
            .map_err(|e| Failure::Infrastructure(e.into()))?;
        let now = liverseg_core::fingerprint(
            instances
                .iter()
                .map(|i| (i.sop_instance_uid.as_str(), i.sha256.as_str())),
        );
        Ok((now != job.fingerprint).then(|| {
            format!(
                "the series changed after this job was made ({} instances then, {} now); the job for its new content replaces it",
                job.instance_count,
                instances.len()
            )
        }))
    }

    /// Runs the pipeline off the async runtime, then keeps what it made.
    async fn segment(&self, job: &Job) -> Result<Vec<ResultObject>, Failure> {
        let infra = |e: WorkerError| Failure::Infrastructure(e);
        let instances = self
            .deps
            .store
            .series_instances(&job.series_uid)
            .await
            .map_err(|e| infra(e.into()))?;
        let files: Vec<PathBuf> = instances
            .iter()
            .filter(|i| !liverseg_dicom::sop::is_derived(&i.sop_class_uid))
            .map(|i| self.deps.blobs.path(&i.blob_key).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()
            .map_err(Failure::Pipeline)?;
        let correction = match job.kind {
            JobKind::Segment => None,
            JobKind::Correction => {
                let version = self
                    .deps
                    .store
                    .seg_version_for_job(job.id)
                    .await
                    .map_err(|e| infra(e.into()))?
                    .ok_or_else(|| {
                        Failure::Pipeline("the correction job has no segmentation version".into())
                    })?;
                let (blobs, key) = (self.deps.blobs.clone(), version.blob_key.clone());
                let bytes = tokio::task::spawn_blocking(move || blobs.read(&key))
                    .await
                    .map_err(|e| Failure::Pipeline(format!("reading the correction: {e}")))?
                    .map_err(|e| Failure::Pipeline(format!("reading the correction: {e}")))?;
                Some((version, bytes))
            }
        };
        let (pipeline, job_c, span) =
            (self.pipeline.clone(), job.clone(), tracing::Span::current());
        let produced = tokio::task::spawn_blocking(move || {
            span.in_scope(|| match &correction {
                None => pipeline.run(&job_c, &files),
                Some((version, bytes)) => pipeline.correct(
                    &job_c,
                    &files,
                    &results::Correction {
                        seg_bytes: bytes,
                        sop_instance_uid: &version.sop_instance_uid,
                        series_uid: &version.series_uid,
                        version: version.version,
                        algorithm_type: version
                            .history
                            .last()
                            .map(|s| s.algorithm_type.as_str())
                            .unwrap_or("MANUAL"),
                    },
                ),
            })
        })
        .await
        .map_err(|e| Failure::Pipeline(format!("pipeline panicked: {e}")))?
        .map_err(Failure::Pipeline)?;
        for (stage, seconds) in &produced.stage_seconds {
            metrics::stage(stage, *seconds);
        }
        metrics::model_slices(&produced.slice_seconds);
        if let Some(a) = &produced.assessment {
            metrics::segmentation_outcome(a);
        }

        let storing = tracing::info_span!("store", objects = tracing::field::Empty);
        let started = Instant::now();
        let objects = self.keep(job, produced).instrument(storing.clone()).await?;
        storing.record("objects", objects.len());
        metrics::stage("store", started.elapsed().as_secs_f64());
        Ok(objects)
    }

    /// Keeps what the pipeline made: blobs first, then their rows, so a
    /// row never points at nothing.
    async fn keep(
        &self,
        job: &Job,
        produced: pipeline::Produced,
    ) -> Result<Vec<ResultObject>, Failure> {
        let infra = |e: WorkerError| Failure::Infrastructure(e);
        let now = now_millis();
        let model = match job.kind {
            JobKind::Segment => self.pipeline.model_sha256().to_string(),
            JobKind::Correction => pipeline::CORRECTION_PROVENANCE.to_string(),
        };
        let (blobs, job_id) = (self.deps.blobs.clone(), job.id);
        let mut artifacts = produced.artifacts;
        // The summary is a result too: a resumed job (delivery retry) reads
        // it back, and a run that found no liver still leaves a record.
        artifacts.push(results::Artifact::file(
            "summary",
            "summary.json",
            produced.summary.to_string().into_bytes(),
        ));
        let objects = tokio::task::spawn_blocking(move || {
            artifacts
                .into_iter()
                .map(|a| {
                    let key = format!("results/{job_id}/{}", a.file_name);
                    blobs.put(&key, &a.bytes)?;
                    Ok(ResultObject {
                        job_id,
                        kind: a.kind.to_string(),
                        sop_class_uid: a.dicom.as_ref().map(|d| d.sop_class_uid.clone()),
                        sop_instance_uid: a.dicom.as_ref().map(|d| d.sop_instance_uid.clone()),
                        series_uid: a.dicom.as_ref().map(|d| d.series_uid.clone()),
                        blob_key: key,
                        sha256: hex::encode(Sha256::digest(&a.bytes)),
                        size_bytes: a.bytes.len() as i64,
                        model_sha256: model.clone(),
                        created_at: now,
                    })
                })
                .collect::<Result<Vec<_>, liverseg_store::blob::BlobError>>()
        })
        .await
        .map_err(|e| Failure::Pipeline(format!("storing results panicked: {e}")))?
        .map_err(|e| infra(WorkerError::Blob(e)))?;
        let store = &self.deps.store;
        store
            .put_results(
                job.id,
                &objects,
                produced.liver_volume_ml,
                produced.assessment.as_ref(),
            )
            .await
            .map_err(|e| infra(e.into()))?;
        for repair in &produced.repairs {
            let event = AuditEvent {
                at: now,
                kind: "result.repair".into(),
                subject: job.id.to_string(),
                detail: repair.clone(),
            };
            store
                .record_event(&event)
                .await
                .map_err(|e| infra(e.into()))?;
        }
        info!(
            objects = objects.len(),
            liver_volume_ml = produced.liver_volume_ml,
            "results stored"
        );
        Ok(objects)
    }

    /// Makes the job's DICOM results part of the study that DICOMweb
    /// serves, and records an AI SEG as version 1 of the series'
    /// segmentation. Idempotent: a resumed job repeats it harmlessly.
    async fn index_results(&self, job: &Job, results: &[ResultObject]) -> Result<(), WorkerError> {
        let store = &self.deps.store;
        for r in results.iter().filter(|r| r.is_dicom()) {
            let uid = r.sop_instance_uid.clone().unwrap_or_default();
            if job.kind == JobKind::Correction && r.kind == "seg" {
                continue; // indexed when it was accepted
            }
            if store
                .get_instance(&uid)
                .await?
                .is_some_and(|i| i.sha256 == r.sha256)
            {
                continue;
            }
            let (blobs, key) = (self.deps.blobs.clone(), r.blob_key.clone());
            let bytes = tokio::task::spawn_blocking(move || blobs.read(&key))
                .await
                .map_err(|e| WorkerError::Index(e.to_string()))?
                .map_err(WorkerError::Blob)?;
            let (parsed, ts) = liverseg_dicom::instance::parse_part10(&bytes)
                .map_err(|e| WorkerError::Index(e.to_string()))?;
            let record = liverseg_core::InstanceRecord {
                sop_instance_uid: uid.clone(),
                sop_class_uid: parsed.identity.sop_class_uid.clone(),
                series_uid: parsed.identity.series_uid.clone(),
                study_uid: parsed.identity.study_uid.clone(),
                transfer_syntax_uid: ts,
                blob_key: r.blob_key.clone(),
                sha256: r.sha256.clone(),
                size_bytes: r.size_bytes,
                received_at: now_millis(),
                calling_ae: self.config.listener.ae_title.clone(),
                meta: parsed.meta,
            };
            store.put_instance(&record).await?;
            store
                .set_series_state(&record.series_uid, SeriesState::Stored, None)
                .await?;
            if job.kind == JobKind::Segment && r.kind == "seg" {
                let summary = self.summary(results).await;
                let model = &summary["model"];
                store
                    .add_seg_version(&SegVersion {
                        sop_instance_uid: uid,
                        series_uid: record.series_uid.clone(),
                        source_series_uid: job.series_uid.clone(),
                        study_uid: job.study_uid.clone(),
                        version: 0,
                        predecessor: None,
                        origin: SegOrigin::Ai,
                        job_id: Some(job.id),
                        blob_key: r.blob_key.clone(),
                        sha256: r.sha256.clone(),
                        history: vec![AlgorithmStep {
                            algorithm_type: "AUTOMATIC".into(),
                            name: model["name"].as_str().map(str::to_string),
                            version: model["version"].as_str().map(str::to_string),
                            software: Some(format!("liverseg {}", env!("CARGO_PKG_VERSION"))),
                            via: "worker".into(),
                            at: r.created_at,
                        }],
                        dice_vs_ai: Some(1.0),
                        volume_ml: summary["liver_volume_ml"].as_f64(),
                        volume_change_ml: Some(0.0),
                        created_at: r.created_at,
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// The run's summary, read back from its result blob.
    async fn summary(&self, results: &[ResultObject]) -> serde_json::Value {
        let Some(r) = results.iter().find(|r| r.kind == "summary") else {
            return serde_json::Value::Null;
        };
        let (blobs, key) = (self.deps.blobs.clone(), r.blob_key.clone());
        tokio::task::spawn_blocking(move || blobs.read(&key))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// Counts a job run's end (and a dead letter when it died).
fn finished(kind: JobKind, outcome: &'static str) {
    metrics::job_finished(kind.as_str(), outcome);
    tracing::Span::current().record("outcome", outcome);
}

/// How a run ended when the store and queue worked.
/// The summary of a job that another job replaces.
fn superseded(job: &Job, reason: &str) -> Outcome {
    info!(job_id = %job.id, %reason, "job superseded");
    Outcome::Done(serde_json::json!({ "superseded": reason }).to_string())
}

enum Outcome {
    /// Results kept and delivered everywhere; the job summary.
    Done(String),
    /// Some destination still lacks the results.
    Undelivered { failures: i64, reason: String },
}

enum Failure {
    /// The series could not be processed (bad data): counts an attempt.
    Pipeline(String),
    Infrastructure(WorkerError),
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] liverseg_store::StoreError),
    #[error(transparent)]
    Queue(#[from] liverseg_queue::QueueError),
    #[error("storing a result: {0}")]
    Blob(#[source] liverseg_store::blob::BlobError),
    #[error("indexing a result: {0}")]
    Index(String),
}
