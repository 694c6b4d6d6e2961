//! The `liverseg.v1` gRPC API (`proto/liverseg/v1/liverseg.proto`), the
//! standard health service and server reflection, served on the gateway's
//! HTTP port beside DICOMweb and the JSON API.
//!
//! `axum::serve` speaks HTTP/1.1 and HTTP/2 without TLS (h2c, prior
//! knowledge) on the same socket: gRPC clients use HTTP/2, browsers use
//! grpc-web (`application/grpc-web[-text][+proto]`) over HTTP/1.1 or
//! HTTP/2, translated by `tonic-web`. The services are routed by path
//! (`/liverseg.v1.Liverseg/*`, `/grpc.health.v1.Health/*`,
//! `/grpc.reflection.v1.ServerReflection/*`,
//! `/grpc.reflection.v1alpha.ServerReflection/*`), which the HTTP routes
//! never use, so they win over any HTTP route or fallback.
//!
//! Uploads go through `liverseg-ingest` exactly as a C-STORE or a STOW-RS
//! does. Logs name UIDs, counts and peers only, never patient attributes.

use crate::AppState;
use crate::auth::Caller;
use axum::http;
use liverseg_core::{
    AlgorithmStep, Job, JobId, JobKind, JobState, ResultObject, SegOrigin, SegVersion,
};
use liverseg_ingest::completion::{Replay, replay};
use liverseg_ingest::correction::{self, CorrectionError, Origin};
use liverseg_ingest::receive::Outcome;
use liverseg_proto::v1::{
    self as pb,
    liverseg_server::{Liverseg, LiversegServer},
    submit_series_request::Item,
};
use liverseg_store::blob::{self, BlobError};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::server::NamedService;
use tonic::{Request, Response, Status, Streaming};
use tower::Layer;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tracing::{info, warn};

/// How often `WatchJob` reads the job.
const WATCH_POLL: Duration = Duration::from_millis(200);
/// Consecutive store failures a watch rides out before it ends.
const WATCH_MAX_ERRORS: u32 = 25;
/// `ListDeadLetters` without a limit, and its largest limit.
const DEFAULT_LIST_LIMIT: i64 = 100;
const MAX_LIST_LIMIT: i64 = 1000;

/// Adds the gRPC services to `http`; both are then served on one port.
pub fn with_grpc(state: AppState, http: axum::Router) -> axum::Router {
    let (reporter, health) = tonic_health::server::health_reporter();
    // The reporter's lock is free here: this completes at once, inside or
    // outside a runtime.
    futures::executor::block_on(reporter.set_service_status(
        liverseg_proto::SERVICE_NAME,
        tonic_health::ServingStatus::Serving,
    ));
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(liverseg_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the built-in descriptor sets are valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the built-in descriptor sets are valid");
    let api = LiversegServer::new(Api { state });

    let grpc = axum::Router::new();
    let grpc = route(grpc, api);
    let grpc = route(grpc, health);
    let grpc = route(grpc, reflection_v1);
    let grpc = route(grpc, reflection_v1alpha);
    // Only `http` may have a fallback: the gRPC router has none.
    grpc.merge(http)
}

/// Routes `/{NAME}/*` to `svc`, with grpc-web translation and CORS (so a
/// page from another origin may call it, as DICOMweb allows).
fn route<S>(router: axum::Router, svc: S) -> axum::Router
where
    S: NamedService
        + tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        // Mirrored rather than `*`: the wildcard does not cover
        // Authorization, which a bearer token needs.
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(Any);
    let svc = cors.layer(tonic_web::GrpcWebLayer::new().layer(svc));
    router.route_service(&format!("/{}/{{*method}}", S::NAME), svc)
}

struct Api {
    state: AppState,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Liverseg for Api {
    async fn submit_series(
        &self,
        request: Request<Streaming<pb::SubmitSeriesRequest>>,
    ) -> Result<Response<pb::SubmitSeriesResponse>, Status> {
        let caller = caller(&request);
        let mut upload = Upload::default();
        let result = self.submit(request, &caller, &mut upload).await;
        let outcome = match &result {
            Ok(_) if upload.refused == 0 => "ok".to_string(),
            Ok(_) => format!("partial: {} of {} refused", upload.refused, upload.files),
            Err(status) => status_outcome(status),
        };
        self.state.audit.record(
            &caller,
            "receive",
            &upload.studies.join(","),
            &outcome,
            &format!(
                "grpc SubmitSeries: {} files ({} stored, {} refused), {} bytes{}",
                upload.files,
                upload.accepted,
                upload.refused,
                upload.bytes,
                caller.username_detail()
            ),
        );
        result
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let id = parse_job_id(&request.get_ref().job_id)?;
        let job = self.job(id).await?;
        Ok(Response::new(job_pb(&job)))
    }

    type WatchJobStream = ReceiverStream<Result<pb::Job, Status>>;

    async fn watch_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let id = parse_job_id(&request.get_ref().job_id)?;
        let first = self.job(id).await?;
        let store = self.state.deps.store.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(job_pb(&last))).await.is_err() || last.state.is_terminal() {
                return;
            }
            let mut errors = 0;
            loop {
                // The client going away ends the watch at once.
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                }
                let job = match store.get_job(id).await {
                    Ok(Some(job)) => {
                        errors = 0;
                        job
                    }
                    Ok(None) => {
                        let _ = tx
                            .send(Err(Status::not_found(format!("job {id} was removed"))))
                            .await;
                        return;
                    }
                    Err(e) => {
                        errors += 1;
                        if errors >= WATCH_MAX_ERRORS {
                            let _ = tx
                                .send(Err(unavailable("reading the metadata store", e)))
                                .await;
                            return;
                        }
                        continue;
                    }
                };
                if job == last {
                    continue;
                }
                if tx.send(Ok(job_pb(&job))).await.is_err() || job.state.is_terminal() {
                    return;
                }
                last = job;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_results(
        &self,
        request: Request<pb::ListResultsRequest>,
    ) -> Result<Response<pb::ListResultsResponse>, Status> {
        let id = parse_job_id(&request.get_ref().job_id)?;
        self.job(id).await?;
        let results = self
            .state
            .deps
            .store
            .results(id)
            .await
            .map_err(|e| unavailable("reading the metadata store", e))?;
        Ok(Response::new(pb::ListResultsResponse {
            results: results.iter().map(result_pb).collect(),
        }))
    }

    type FetchResultStream = BoxStream<pb::Chunk>;

    async fn fetch_result(
        &self,
        request: Request<pb::FetchResultRequest>,
    ) -> Result<Response<Self::FetchResultStream>, Status> {
        let caller = caller(&request);
        let job_id = request.get_ref().job_id.trim().to_string();
        let kind = request.get_ref().kind.clone();
        let result = self.fetch(request).await;
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(status) => status_outcome(status),
        };
        self.state.audit.record(
            &caller,
            "view",
            &job_id,
            &outcome,
            &format!(
                "grpc FetchResult: the job's {kind} result{}",
                caller.username_detail()
            ),
        );
        result
    }

    async fn resubmit_segmentation(
        &self,
        request: Request<Streaming<pb::ResubmitRequest>>,
    ) -> Result<Response<pb::SegVersion>, Status> {
        let caller = caller(&request);
        let result = self.resubmit(request).await;
        let (object, outcome, detail) = match &result {
            Ok(v) => {
                let v = v.get_ref();
                (
                    v.sop_instance_uid.clone(),
                    "ok".to_string(),
                    format!(
                        "grpc ResubmitSegmentation: version {} of series {} in study {}",
                        v.version, v.source_series_instance_uid, v.study_instance_uid
                    ),
                )
            }
            Err(status) => (
                String::new(),
                status_outcome(status),
                "grpc ResubmitSegmentation".to_string(),
            ),
        };
        self.state.audit.record(
            &caller,
            "resubmit",
            &object,
            &outcome,
            &format!("{detail}{}", caller.username_detail()),
        );
        result
    }

    async fn list_seg_versions(
        &self,
        request: Request<pb::ListSegVersionsRequest>,
    ) -> Result<Response<pb::ListSegVersionsResponse>, Status> {
        let series = request.get_ref().series_instance_uid.trim();
        if series.is_empty() {
            return Err(Status::invalid_argument("series_instance_uid is empty"));
        }
        let versions = self
            .state
            .deps
            .store
            .seg_versions(series)
            .await
            .map_err(|e| unavailable("reading the metadata store", e))?;
        Ok(Response::new(pb::ListSegVersionsResponse {
            versions: versions.iter().map(seg_version_pb).collect(),
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let limit = match request.get_ref().limit {
            0 => DEFAULT_LIST_LIMIT,
            n => i64::from(n).min(MAX_LIST_LIMIT),
        };
        let jobs = self
            .state
            .deps
            .store
            .list_jobs(Some(JobState::Dead), limit)
            .await
            .map_err(|e| unavailable("reading the metadata store", e))?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.iter().map(job_pb).collect(),
        }))
    }

    async fn replay_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = caller(&request);
        let job_id = request.get_ref().job_id.trim().to_string();
        let result = self.replay(request).await;
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(status) => status_outcome(status),
        };
        self.state.audit.record(
            &caller,
            "replay",
            &job_id,
            &outcome,
            &format!("grpc ReplayJob{}", caller.username_detail()),
        );
        result
    }
}

/// What a `SubmitSeries` stream stored so far.
#[derive(Default)]
struct Upload {
    files: u32,
    accepted: u32,
    refused: u32,
    bytes: u64,
    /// Studies of every instance read, for the audit trail.
    studies: Vec<String>,
    failures: Vec<pb::InstanceFailure>,
    /// (series, study) of the stored images, in order of arrival.
    series: Vec<(String, String)>,
}

impl Api {
    /// FetchResult, audited by the trait method.
    async fn fetch(
        &self,
        request: Request<pb::FetchResultRequest>,
    ) -> Result<Response<BoxStream<pb::Chunk>>, Status> {
        let request = request.into_inner();
        let id = parse_job_id(&request.job_id)?;
        self.job(id).await?;
        let results = self
            .state
            .deps
            .store
            .results(id)
            .await
            .map_err(|e| unavailable("reading the metadata store", e))?;
        let Some(result) = results.iter().find(|r| r.kind == request.kind) else {
            let kinds: Vec<&str> = results.iter().map(|r| r.kind.as_str()).collect();
            return Err(Status::not_found(format!(
                "job {id} has no result of kind {:?} (it has: {})",
                request.kind,
                if kinds.is_empty() {
                    "none".to_string()
                } else {
                    kinds.join(", ")
                }
            )));
        };
        let blobs = self.state.deps.blobs.clone();
        let key = result.blob_key.clone();
        let bytes = tokio::task::spawn_blocking(move || blobs.read(&key))
            .await
            .map_err(|e| unavailable("reading a result", e))?
            .map_err(|e| match &e {
                BlobError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    Status::not_found(format!(
                        "the {} file of job {id} is no longer held",
                        request.kind
                    ))
                }
                _ => unavailable("reading a result", e),
            })?;
        let bytes = bytes::Bytes::from(bytes);
        let chunks: Vec<Result<pb::Chunk, Status>> = (0..bytes.len())
            .step_by(liverseg_proto::CHUNK_BYTES)
            .map(|start| {
                let end = (start + liverseg_proto::CHUNK_BYTES).min(bytes.len());
                Ok(pb::Chunk {
                    data: bytes.slice(start..end),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    /// ResubmitSegmentation, audited by the trait method.
    async fn resubmit(
        &self,
        request: Request<Streaming<pb::ResubmitRequest>>,
    ) -> Result<Response<pb::SegVersion>, Status> {
        let origin = Origin {
            via: "grpc",
            peer: peer(&request),
        };
        let mut stream = request.into_inner();
        let limit = self.state.config.gateway.max_upload_bytes;
        let mut bytes = Vec::new();
        while let Some(message) = stream.message().await? {
            if (bytes.len() + message.chunk.len()) as u64 > limit {
                return Err(Status::resource_exhausted(format!(
                    "the segmentation exceeds gateway.max_upload_bytes ({limit} bytes)"
                )));
            }
            bytes.extend_from_slice(&message.chunk);
        }
        if bytes.is_empty() {
            return Err(Status::invalid_argument("the stream carried no bytes"));
        }
        let accepted = correction::submit(&self.state.ingest_deps(), bytes, &origin)
            .await
            .map_err(correction_status)?;
        info!(
            peer = %origin.peer,
            sop_instance_uid = %accepted.version.sop_instance_uid,
            source_series_uid = %accepted.version.source_series_uid,
            version = accepted.version.version,
            new = accepted.new,
            job_id = %accepted.job.id,
            "gRPC correction"
        );
        Ok(Response::new(seg_version_pb(&accepted.version)))
    }

    /// ReplayJob, audited by the trait method.
    async fn replay(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let peer = peer(&request);
        let id = parse_job_id(&request.get_ref().job_id)?;
        let deps = &self.state.deps;
        let by = format!("over gRPC ({peer})");
        let job = match replay(deps.store.as_ref(), deps.queue.as_ref(), id, &by)
            .await
            .map_err(|e| unavailable("replaying the job", e))?
        {
            Replay::Queued(job) => *job,
            Replay::Missing => return Err(Status::not_found(format!("no job {id}"))),
            Replay::NotReplayable(state) => {
                return Err(Status::failed_precondition(format!(
                    "job {id} is {state}: only dead or failed jobs are replayed"
                )));
            }
        };
        info!(job_id = %id, %peer, "job replayed over gRPC");
        Ok(Response::new(job_pb(&job)))
    }

    /// SubmitSeries, filling `upload` for its audit record.
    async fn submit(
        &self,
        request: Request<Streaming<pb::SubmitSeriesRequest>>,
        caller: &Caller,
        upload: &mut Upload,
    ) -> Result<Response<pb::SubmitSeriesResponse>, Status> {
        let origin = Origin {
            via: "grpc",
            peer: peer(&request),
        };
        let mut stream = request.into_inner();
        let limit = self.state.config.gateway.max_upload_bytes;
        let mut options: Option<pb::SubmitOptions> = None;
        let mut open: Option<OpenFile> = None;
        let mut total: u64 = 0;
        let mut first = true;
        while let Some(message) = stream.message().await? {
            let was_first = std::mem::replace(&mut first, false);
            match message.item {
                None => {}
                Some(Item::Options(o)) => {
                    if !was_first {
                        return Err(Status::invalid_argument(
                            "options may only be the first message of the stream",
                        ));
                    }
                    options = Some(o);
                }
                Some(Item::File(chunk)) => {
                    if options
                        .as_ref()
                        .is_some_and(|o| !o.series_instance_uid.is_empty())
                    {
                        return Err(Status::invalid_argument(
                            "a submission by series_instance_uid carries no files",
                        ));
                    }
                    total += chunk.data.len() as u64;
                    upload.bytes = total;
                    if total > limit {
                        return Err(Status::resource_exhausted(format!(
                            "the upload exceeds gateway.max_upload_bytes ({limit} bytes)"
                        )));
                    }
                    let file = match open.as_mut() {
                        Some(f) => f,
                        None => open.insert(OpenFile::create(&self.state).await?),
                    };
                    file.write(&chunk.data).await?;
                    if chunk.end_of_file {
                        let file = open.take().expect("a file is open");
                        self.accept(file, &origin, caller, upload).await?;
                    }
                }
            }
        }
        // A file still open at the end of the stream is complete.
        if let Some(file) = open.take() {
            self.accept(file, &origin, caller, upload).await?;
        }
        let options = options.unwrap_or_default();
        let store = &self.state.deps.store;

        let reference = options.series_instance_uid.trim();
        if !reference.is_empty() {
            let series = store
                .get_series(reference)
                .await
                .map_err(|e| unavailable("reading the metadata store", e))?
                .ok_or_else(|| Status::not_found(format!("series {reference} is not held here")))?;
            upload.series.push((series.series_uid, series.study_uid));
        } else if upload.files == 0 {
            return Err(Status::invalid_argument(
                "the stream carried no file and no series_instance_uid",
            ));
        }

        let keep_open = options.keep_open && reference.is_empty();
        let mut response = pb::SubmitSeriesResponse {
            accepted: upload.accepted,
            refused: upload.failures.len() as u32,
            failures: std::mem::take(&mut upload.failures),
            ..Default::default()
        };
        for (series_uid, study_uid) in &upload.series {
            let job = if keep_open {
                None
            } else {
                self.state
                    .tracker
                    .complete(series_uid)
                    .await
                    .map_err(|e| unavailable("completing the series", e))?
            };
            let outcome = self.series_outcome(series_uid, study_uid, job).await?;
            if !outcome.job_id.is_empty() {
                response.job_ids.push(outcome.job_id.clone());
            }
            response.series.push(outcome);
        }
        info!(
            peer = %origin.peer,
            files = upload.files,
            accepted = response.accepted,
            refused = response.refused,
            series = response.series.len(),
            jobs = ?response.job_ids,
            "gRPC submission"
        );
        Ok(Response::new(response))
    }

    async fn job(&self, id: JobId) -> Result<Job, Status> {
        self.state
            .deps
            .store
            .get_job(id)
            .await
            .map_err(|e| unavailable("reading the metadata store", e))?
            .ok_or_else(|| Status::not_found(format!("no job {id}")))
    }

    /// Stores one uploaded file as a C-STORE of it would be.
    async fn accept(
        &self,
        file: OpenFile,
        origin: &Origin,
        caller: &Caller,
        upload: &mut Upload,
    ) -> Result<(), Status> {
        let index = upload.files;
        upload.files += 1;
        let path = file.finish().await?;
        let (identity, outcome) = self.state.ingest.accept_file(path, origin).await;
        if let Some(id) = &identity {
            if !upload.studies.contains(&id.study_uid) {
                upload.studies.push(id.study_uid.clone());
            }
            if id.sop_class_uid == liverseg_dicom::sop::SEGMENTATION_STORAGE {
                let outcome = match &outcome {
                    Outcome::Stored { .. } => "ok".to_string(),
                    Outcome::Unchanged { .. } => "ok (already held)".to_string(),
                    Outcome::Refused { reason, .. } => format!("refused: {reason}"),
                };
                self.state.audit.record(
                    caller,
                    "resubmit",
                    &id.sop_instance_uid,
                    &outcome,
                    &format!(
                        "grpc SubmitSeries: correction in study {} (SEG series {}){}",
                        id.study_uid,
                        id.series_uid,
                        caller.username_detail()
                    ),
                );
            }
        }
        if matches!(outcome, Outcome::Refused { .. }) {
            upload.refused += 1;
        }
        match outcome {
            Outcome::Stored { series_uid } | Outcome::Unchanged { series_uid } => {
                upload.accepted += 1;
                // Segmentations became corrections; images make a series.
                if let Some(id) = identity
                    && !liverseg_dicom::sop::is_derived(&id.sop_class_uid)
                {
                    // Should the stream break off, the series still
                    // completes once it stops growing.
                    self.state.tracker.touch(&series_uid);
                    if !upload.series.iter().any(|(s, _)| *s == series_uid) {
                        upload.series.push((series_uid, id.study_uid));
                    }
                }
            }
            Outcome::Refused { status, reason } => {
                upload.failures.push(pb::InstanceFailure {
                    index,
                    sop_instance_uid: identity.map(|i| i.sop_instance_uid).unwrap_or_default(),
                    status: u32::from(status),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// A series after its completion, with the job it became.
    async fn series_outcome(
        &self,
        series_uid: &str,
        study_uid: &str,
        job: Option<Job>,
    ) -> Result<pb::SeriesOutcome, Status> {
        let store = &self.state.deps.store;
        let series = store
            .get_series(series_uid)
            .await
            .map_err(|e| unavailable("reading the metadata store", e))?;
        let mut outcome = pb::SeriesOutcome {
            series_instance_uid: series_uid.to_string(),
            study_instance_uid: study_uid.to_string(),
            ..Default::default()
        };
        let Some(series) = series else {
            return Ok(outcome);
        };
        outcome.state = series.state.as_str().to_string();
        outcome.reason = series.reason.unwrap_or_default();
        outcome.instances = u32::try_from(series.instance_count).unwrap_or(u32::MAX);
        if let Some(job) = job {
            outcome.job_id = job.id.to_string();
        }
        Ok(outcome)
    }
}

/// An uploaded file being written to a temporary file of the blob store;
/// removed when dropped before [`OpenFile::finish`].
struct OpenFile {
    writer: Option<tokio::io::BufWriter<tokio::fs::File>>,
    path: Option<PathBuf>,
}

impl OpenFile {
    async fn create(state: &AppState) -> Result<OpenFile, Status> {
        let blobs = state.deps.blobs.clone();
        let (file, path) = tokio::task::spawn_blocking(move || blobs.temp_file())
            .await
            .map_err(|e| unavailable("creating a temporary file", e))?
            .map_err(|e| unavailable("creating a temporary file", e))?;
        Ok(OpenFile {
            writer: Some(tokio::io::BufWriter::with_capacity(
                1 << 20,
                tokio::fs::File::from_std(file),
            )),
            path: Some(path),
        })
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), Status> {
        if let Some(w) = self.writer.as_mut() {
            w.write_all(data)
                .await
                .map_err(|e| unavailable("writing an upload", e))?;
        }
        Ok(())
    }

    /// Flushes and closes the file; the caller owns the path from here.
    async fn finish(mut self) -> Result<PathBuf, Status> {
        if let Some(mut w) = self.writer.take() {
            w.flush()
                .await
                .map_err(|e| unavailable("writing an upload", e))?;
            w.into_inner().into_std().await;
        }
        Ok(self.path.take().expect("finish is called once"))
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        self.writer = None;
        if let Some(path) = self.path.take() {
            blob::discard(&path);
        }
    }
}

/// An audit outcome for a call that ended in `status`: `refused` when the
/// request itself was not acceptable, `failed` otherwise.
fn status_outcome(status: &Status) -> String {
    use tonic::Code;
    let refused = matches!(
        status.code(),
        Code::InvalidArgument
            | Code::AlreadyExists
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::PermissionDenied
            | Code::Unauthenticated
    );
    let word = if refused { "refused" } else { "failed" };
    format!("{word}: {}", status.message())
}

/// The caller the authentication middleware put into the request.
fn caller<T>(request: &Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::unknown)
}

/// The sender, for the instance records and the audit trail: a proxy's
/// X-Forwarded-For, else the socket address when known.
fn peer<T>(request: &Request<T>) -> String {
    let forwarded = request
        .metadata()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let addr = request.remote_addr().or_else(|| {
        request
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
    });
    match (forwarded, addr) {
        (Some(f), _) => format!("grpc {f}"),
        (None, Some(a)) => format!("grpc {}", a.ip()),
        (None, None) => "grpc".to_string(),
    }
}

fn parse_job_id(s: &str) -> Result<JobId, Status> {
    s.trim()
        .parse()
        .map_err(|_| Status::invalid_argument(format!("job_id {s:?} is not a UUID")))
}

/// Our own failure: logged, answered without internals.
fn unavailable(what: &str, e: impl std::fmt::Display) -> Status {
    warn!(error = %e, "{what} failed");
    Status::unavailable(format!("{what} failed; try again later"))
}

fn correction_status(e: CorrectionError) -> Status {
    match &e {
        CorrectionError::UnknownSeries(_) => Status::not_found(e.to_string()),
        CorrectionError::Conflict(_) => Status::already_exists(e.to_string()),
        _ if e.is_client_error() => Status::invalid_argument(e.to_string()),
        _ => unavailable("storing the correction", e),
    }
}

fn job_state_pb(s: JobState) -> pb::JobState {
    match s {
        JobState::Received => pb::JobState::Received,
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Done => pb::JobState::Done,
        JobState::Failed => pb::JobState::Failed,
        JobState::Dead => pb::JobState::Dead,
    }
}

fn job_pb(j: &Job) -> pb::Job {
    pb::Job {
        id: j.id.to_string(),
        kind: match j.kind {
            JobKind::Segment => pb::JobKind::Segment,
            JobKind::Correction => pb::JobKind::Correction,
        } as i32,
        study_instance_uid: j.study_uid.clone(),
        series_instance_uid: j.series_uid.clone(),
        state: job_state_pb(j.state) as i32,
        attempts: j.attempts,
        instance_count: j.instance_count,
        detail: j.detail.clone().unwrap_or_default(),
        liver_volume_ml: j.liver_volume_ml,
        created_at_ms: j.created_at,
        updated_at_ms: j.updated_at,
        assessment: j.assessment.as_ref().map(|a| pb::Assessment {
            liver_found: a.liver_found,
            no_liver_reason: a
                .no_liver
                .as_ref()
                .map(|n| n.reason.as_str().to_string())
                .unwrap_or_default(),
            no_liver_detail: a
                .no_liver
                .as_ref()
                .map(|n| n.detail.clone())
                .unwrap_or_default(),
            coverage_complete: a.coverage.complete,
            cut: a
                .coverage
                .cut
                .iter()
                .map(|s| s.as_str().to_string())
                .collect(),
            flags: a.flags.iter().map(|f| f.as_str().to_string()).collect(),
            uncertainty: a.uncertainty,
        }),
    }
}

fn result_pb(r: &ResultObject) -> pb::JobResult {
    pb::JobResult {
        kind: r.kind.clone(),
        sop_class_uid: r.sop_class_uid.clone().unwrap_or_default(),
        sop_instance_uid: r.sop_instance_uid.clone().unwrap_or_default(),
        series_instance_uid: r.series_uid.clone().unwrap_or_default(),
        size_bytes: r.size_bytes,
        sha256: r.sha256.clone(),
        model_sha256: r.model_sha256.clone(),
        created_at_ms: r.created_at,
    }
}

fn step_pb(s: &AlgorithmStep) -> pb::AlgorithmStep {
    pb::AlgorithmStep {
        algorithm_type: s.algorithm_type.clone(),
        name: s.name.clone().unwrap_or_default(),
        version: s.version.clone().unwrap_or_default(),
        software: s.software.clone().unwrap_or_default(),
        via: s.via.clone(),
        at_ms: s.at,
    }
}

fn seg_version_pb(v: &SegVersion) -> pb::SegVersion {
    pb::SegVersion {
        sop_instance_uid: v.sop_instance_uid.clone(),
        series_instance_uid: v.series_uid.clone(),
        source_series_instance_uid: v.source_series_uid.clone(),
        study_instance_uid: v.study_uid.clone(),
        version: v.version,
        predecessor: v.predecessor.clone().unwrap_or_default(),
        origin: match v.origin {
            SegOrigin::Ai => pb::SegOrigin::Ai,
            SegOrigin::Correction => pb::SegOrigin::Correction,
        } as i32,
        job_id: v.job_id.map(|id| id.to_string()).unwrap_or_default(),
        sha256: v.sha256.clone(),
        history: v.history.iter().map(step_pb).collect(),
        dice_vs_ai: v.dice_vs_ai,
        volume_ml: v.volume_ml,
        volume_change_ml: v.volume_change_ml,
        created_at_ms: v.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_must_be_uuids() {
        assert_eq!(
            parse_job_id("not-a-uuid").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let id = JobId::new();
        assert_eq!(parse_job_id(&format!(" {id} ")).unwrap(), id);
    }

    #[test]
    fn correction_errors_map_to_codes() {
        let code = |e| correction_status(e).code();
        assert_eq!(
            code(CorrectionError::UnknownSeries("1.2".into())),
            tonic::Code::NotFound
        );
        assert_eq!(
            code(CorrectionError::Conflict("1.2".into())),
            tonic::Code::AlreadyExists
        );
        assert_eq!(
            code(CorrectionError::NoReference),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(CorrectionError::NoLiver(2)),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(CorrectionError::Storage("disk".into())),
            tonic::Code::Unavailable
        );
    }

    #[test]
    fn every_job_state_has_a_wire_value() {
        for s in JobState::ALL {
            assert_ne!(job_state_pb(s), pb::JobState::Unspecified);
        }
    }
}
