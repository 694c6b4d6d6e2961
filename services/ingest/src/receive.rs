//! Receiving one instance. A success answer means durable: the file is
//! written to a temporary path, fsynced, checked, renamed into place (with
//! a directory fsync) and recorded in the metadata store before the
//! C-STORE-RSP leaves. Anything else answers a failure status and leaves
//! nothing behind.

use crate::Deps;
use liverseg_core::config::DuplicatePolicy;
use liverseg_core::{AuditEvent, Config, InstanceRecord, SeriesState, time::now_millis};
use liverseg_dicom::dimse::{Command, status};
use liverseg_dicom::instance::{self, Identity, Parsed};
use liverseg_dicom::sop;
use liverseg_store::blob::{self, BlobError};
use liverseg_telemetry::metrics::{self, Via};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

/// How one C-STORE ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// New content was stored (a new instance, or an overwrite).
    Stored { series_uid: String },
    /// Nothing changed: an identical copy, or a conflict kept by policy.
    Unchanged { series_uid: String },
    /// Refused with a DIMSE failure status.
    Refused { status: u16, reason: String },
}

impl Outcome {
    /// The metric label of this outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Stored { .. } => "stored",
            Outcome::Unchanged { .. } => "unchanged",
            Outcome::Refused { .. } => "refused",
        }
    }

    pub fn status(&self) -> (u16, Option<String>) {
        match self {
            Outcome::Stored { .. } | Outcome::Unchanged { .. } => (status::SUCCESS, None),
            Outcome::Refused { status, reason } => (*status, Some(reason.clone())),
        }
    }
}

fn refused(status: u16, reason: impl Into<String>) -> Outcome {
    Outcome::Refused {
        status,
        reason: reason.into(),
    }
}

/// Local storage failures answer "out of resources" so the sender retries.
fn storage_failure(e: &BlobError) -> (u16, String) {
    if e.is_out_of_space() {
        (status::OUT_OF_RESOURCES, "out of disk space".into())
    } else {
        (status::OUT_OF_RESOURCES, "local storage error".into())
    }
}

fn io_failure(e: &std::io::Error) -> (u16, String) {
    if matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) {
        (status::OUT_OF_RESOURCES, "out of disk space".into())
    } else {
        (status::OUT_OF_RESOURCES, "local storage error".into())
    }
}

/// An instance whose data set is arriving.
pub struct Incoming {
    pub context_id: u8,
    pub command: Command,
    transfer_syntax: String,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    tmp_path: Option<PathBuf>,
    hasher: Sha256,
    /// Data set bytes received so far, kept or not.
    bytes: u64,
    /// listener.max_instance_bytes.
    max_bytes: u64,
    /// Set as soon as the instance is bound to fail; the rest of the data
    /// set is then read and dropped.
    failure: Option<(u16, String)>,
}

impl Incoming {
    pub async fn write(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if self.failure.is_some() {
            return;
        }
        if self.bytes > self.max_bytes {
            // Keep reading (and dropping) the rest; the partial file goes.
            self.failure = Some((
                status::OUT_OF_RESOURCES,
                format!(
                    "instance larger than listener.max_instance_bytes ({})",
                    self.max_bytes
                ),
            ));
            self.file = None;
            return;
        }
        self.hasher.update(data);
        if let Some(file) = self.file.as_mut()
            && let Err(e) = file.write_all(data).await
        {
            warn!(error = %e, "writing incoming instance failed");
            self.failure = Some(io_failure(&e));
            self.file = None;
        }
    }

    /// Drops the partial file (association broken or refused instance).
    pub async fn abandon(mut self) {
        self.file = None;
        if let Some(p) = self.tmp_path.take() {
            let _ = tokio::fs::remove_file(p).await;
        }
    }
}

pub struct Ingest {
    config: Arc<Config>,
    deps: Deps,
}

impl Ingest {
    pub fn new(config: Arc<Config>, deps: Deps) -> Self {
        Ingest { config, deps }
    }

    /// Prepares to receive a data set announced by `cmd`.
    pub async fn start(
        &self,
        context_id: u8,
        cmd: Command,
        transfer_syntax: &str,
        calling_ae: &str,
        refusal: Option<String>,
    ) -> Incoming {
        let mut incoming = Incoming {
            context_id,
            transfer_syntax: transfer_syntax.to_string(),
            file: None,
            tmp_path: None,
            hasher: Sha256::new(),
            bytes: 0,
            max_bytes: self.config.listener.max_instance_bytes,
            failure: refusal.map(|r| (status::SOP_CLASS_NOT_SUPPORTED, r)),
            command: cmd,
        };
        if incoming.failure.is_some() {
            return incoming;
        }
        let uid = incoming
            .command
            .affected_sop_instance_uid
            .clone()
            .unwrap_or_default();
        if !liverseg_dicom::uid::is_valid(&uid) {
            incoming.failure = Some((
                status::DATA_SET_MISMATCH,
                "invalid Affected SOP Instance UID".into(),
            ));
            return incoming;
        }
        let class = incoming
            .command
            .affected_sop_class_uid
            .clone()
            .unwrap_or_default();
        let header = match instance::part10_header(&class, &uid, transfer_syntax, calling_ae) {
            Ok(h) => h,
            Err(e) => {
                incoming.failure = Some((status::CANNOT_UNDERSTAND, e.to_string()));
                return incoming;
            }
        };
        let blobs = self.deps.blobs.clone();
        match tokio::task::spawn_blocking(move || blobs.temp_file()).await {
            Ok(Ok((file, path))) => {
                let mut file =
                    tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
                incoming.tmp_path = Some(path);
                if let Err(e) = file.write_all(&header).await {
                    incoming.failure = Some(io_failure(&e));
                } else {
                    incoming.file = Some(file);
                }
            }
            Ok(Err(e)) => {
                warn!(error = %e, "cannot create a temporary file");
                incoming.failure = Some(storage_failure(&e));
            }
            Err(e) => incoming.failure = Some((status::OUT_OF_RESOURCES, e.to_string())),
        }
        incoming
    }

    /// Completes a received data set and decides its fate.
    pub async fn finish(&self, mut incoming: Incoming, calling_ae: &str) -> Outcome {
        let tmp_path = incoming.tmp_path.clone();
        let outcome = self.finish_inner(&mut incoming, calling_ae).await;
        metrics::instance_received(Via::Dimse, outcome.label(), incoming.bytes);
        // Whatever did not become a blob goes away.
        // A committed file was renamed away; discarding is then a no-op.
        if let Some(p) = tmp_path {
            let _ = tokio::task::spawn_blocking(move || blob::discard(&p)).await;
        }
        outcome
    }

    async fn finish_inner(&self, incoming: &mut Incoming, calling_ae: &str) -> Outcome {
        if let Some((code, reason)) = incoming.failure.take() {
            return refused(code, reason);
        }
        let (Some(mut file), Some(tmp_path)) = (incoming.file.take(), incoming.tmp_path.clone())
        else {
            return refused(status::OUT_OF_RESOURCES, "no temporary file");
        };
        if let Err(e) = file.flush().await {
            let (code, reason) = io_failure(&e);
            return refused(code, reason);
        }
        let std_file = file.into_inner().into_std().await;
        let path = tmp_path.clone();
        // fsync and header parsing are blocking work.
        let checked = tokio::task::spawn_blocking(move || {
            std_file.sync_all().map_err(|e| io_failure(&e))?;
            let size = std_file.metadata().map(|m| m.len()).unwrap_or(0);
            drop(std_file);
            instance::read_header(&path)
                .map(|p| (p, size))
                .map_err(|e| (status::CANNOT_UNDERSTAND, short(&e.to_string())))
        })
        .await;
        let (parsed, size) = match checked {
            Ok(Ok(v)) => v,
            Ok(Err((code, reason))) => return refused(code, reason),
            Err(e) => return refused(status::OUT_OF_RESOURCES, e.to_string()),
        };

        let cmd = &incoming.command;
        let id = &parsed.identity;
        if cmd.affected_sop_instance_uid.as_deref() != Some(id.sop_instance_uid.as_str()) {
            return refused(
                status::DATA_SET_MISMATCH,
                "SOP Instance UID in data set differs from command",
            );
        }
        if cmd.affected_sop_class_uid.as_deref() != Some(id.sop_class_uid.as_str()) {
            return refused(
                status::DATA_SET_MISMATCH,
                "SOP Class UID in data set differs from command",
            );
        }
        if id.sop_class_uid == sop::SEGMENTATION_STORAGE {
            let origin = crate::correction::Origin {
                via: "cstore",
                peer: calling_ae.to_string(),
            };
            return self.correction(tmp_path, &origin).await;
        }
        let sha256 = hex::encode(std::mem::take(&mut incoming.hasher).finalize());
        let record = InstanceRecord {
            sop_instance_uid: id.sop_instance_uid.clone(),
            sop_class_uid: id.sop_class_uid.clone(),
            series_uid: id.series_uid.clone(),
            study_uid: id.study_uid.clone(),
            transfer_syntax_uid: incoming.transfer_syntax.clone(),
            blob_key: format!(
                "instances/{}/{}/{}.dcm",
                id.study_uid, id.series_uid, id.sop_instance_uid
            ),
            sha256,
            size_bytes: size as i64,
            received_at: now_millis(),
            calling_ae: calling_ae.to_string(),
            meta: parsed.meta.clone(),
        };
        match self.decide(record, &parsed, tmp_path).await {
            Ok(outcome) => outcome,
            Err(outcome) => outcome,
        }
    }

    /// Stores a complete Part 10 file that arrived by another door than
    /// DIMSE (STOW-RS, gRPC upload) exactly as a C-STORE would be stored.
    /// `tmp_path` comes from the blob store's `temp_file` and is consumed.
    /// Returns the instance's identity when its header could be read.
    pub async fn accept_file(
        &self,
        tmp_path: PathBuf,
        origin: &crate::correction::Origin,
    ) -> (Option<Identity>, Outcome) {
        let size = tokio::fs::metadata(&tmp_path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let result = self.accept_file_inner(tmp_path.clone(), size, origin).await;
        let _ = tokio::task::spawn_blocking(move || blob::discard(&tmp_path)).await;
        let via = if origin.via == "grpc" {
            Via::Grpc
        } else {
            Via::Stow
        };
        metrics::instance_received(via, result.1.label(), size);
        result
    }

    async fn accept_file_inner(
        &self,
        tmp_path: PathBuf,
        size: u64,
        origin: &crate::correction::Origin,
    ) -> (Option<Identity>, Outcome) {
        // Limits first, before anything is read into memory.
        let max = self.config.listener.max_instance_bytes;
        if size > max {
            return (
                None,
                refused(
                    status::OUT_OF_RESOURCES,
                    format!("instance larger than listener.max_instance_bytes ({max})"),
                ),
            );
        }
        if let Err(low) = crate::space::check(&self.config).await {
            return (None, refused(status::OUT_OF_RESOURCES, low.to_string()));
        }
        let path = tmp_path.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&path).map_err(|e| io_failure(&e))?;
            let sha256 = hex::encode(Sha256::digest(&bytes));
            instance::read_header_and_transfer_syntax(&path)
                .map(|(p, ts)| (p, ts, sha256, bytes.len()))
                .map_err(|e| (status::CANNOT_UNDERSTAND, short(&e.to_string())))
        })
        .await;
        let (parsed, ts, sha256, size) = match checked {
            Ok(Ok(v)) => v,
            Ok(Err((code, reason))) => return (None, refused(code, reason)),
            Err(e) => return (None, refused(status::OUT_OF_RESOURCES, e.to_string())),
        };

        let identity = parsed.identity.clone();
        if !sop::is_storage_class(&identity.sop_class_uid) {
            return (
                Some(identity),
                refused(
                    status::SOP_CLASS_NOT_SUPPORTED,
                    "SOP class not accepted (CT, Enhanced CT and SEG are)",
                ),
            );
        }
        if !sop::decodable_transfer_syntaxes().contains(&ts) {
            return (
                Some(identity),
                refused(
                    status::CANNOT_UNDERSTAND,
                    format!("transfer syntax {ts} cannot be decoded here"),
                ),
            );
        }
        if identity.sop_class_uid == sop::SEGMENTATION_STORAGE {
            return (Some(identity), self.correction(tmp_path, origin).await);
        }
        let record = InstanceRecord {
            sop_instance_uid: identity.sop_instance_uid.clone(),
            sop_class_uid: identity.sop_class_uid.clone(),
            series_uid: identity.series_uid.clone(),
            study_uid: identity.study_uid.clone(),
            transfer_syntax_uid: ts,
            blob_key: format!(
                "instances/{}/{}/{}.dcm",
                identity.study_uid, identity.series_uid, identity.sop_instance_uid
            ),
            sha256,
            size_bytes: size as i64,
            received_at: now_millis(),
            calling_ae: origin.peer.chars().take(64).collect(),
            meta: parsed.meta.clone(),
        };
        let outcome = match self.decide(record, &parsed, tmp_path).await {
            Ok(outcome) | Err(outcome) => outcome,
        };
        (Some(identity), outcome)
    }

    /// A SEG is a correction: it becomes a version, or is refused whole.
    async fn correction(&self, path: PathBuf, origin: &crate::correction::Origin) -> Outcome {
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => {
                let (code, reason) = io_failure(&e);
                return refused(code, reason);
            }
        };
        match crate::correction::submit(&self.deps, bytes, origin).await {
            Ok(accepted) if accepted.new => Outcome::Stored {
                series_uid: accepted.version.series_uid,
            },
            Ok(accepted) => Outcome::Unchanged {
                series_uid: accepted.version.series_uid,
            },
            Err(e) if e.is_client_error() => {
                info!(error = %e, via = origin.via, "correction refused");
                Outcome::Refused {
                    status: status::CANNOT_UNDERSTAND,
                    reason: e.to_string(),
                }
            }
            Err(e) => {
                warn!(error = %e, via = origin.via, "correction could not be stored");
                refused(status::OUT_OF_RESOURCES, "storing the correction failed")
            }
        }
    }

    /// New, identical or conflicting: applies the duplicate policy.
    async fn decide(
        &self,
        record: InstanceRecord,
        parsed: &Parsed,
        tmp_path: PathBuf,
    ) -> Result<Outcome, Outcome> {
        let store = &self.deps.store;
        let series_uid = parsed.identity.series_uid.clone();
        let uid = record.sop_instance_uid.clone();
        let existing = store
            .get_instance(&uid)
            .await
            .map_err(|e| store_failure(&e))?;
        match existing {
            None => {
                let limit = self.config.listener.max_series_instances;
                let held = store
                    .get_series(&series_uid)
                    .await
                    .map_err(|e| store_failure(&e))?
                    .map_or(0, |s| s.instance_count);
                if held as u64 >= limit {
                    return Err(refused(
                        status::OUT_OF_RESOURCES,
                        format!(
                            "the series already holds listener.max_series_instances ({limit}) instances"
                        ),
                    ));
                }
                self.commit(tmp_path, &record.blob_key).await?;
                store
                    .put_instance(&record)
                    .await
                    .map_err(|e| store_failure(&e))?;
                debug!(sop_instance_uid = %uid, "instance stored");
                Ok(Outcome::Stored { series_uid })
            }
            Some(old) if old.sha256 == record.sha256 => {
                // Idempotent; but repair a blob lost to a crash between
                // record and rename.
                let blobs = self.deps.blobs.clone();
                let key = old.blob_key.clone();
                let present = tokio::task::spawn_blocking(move || blobs.exists(&key))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(false);
                if !present {
                    self.commit(tmp_path, &old.blob_key).await?;
                    self.event(
                        "instance.blob.restored",
                        &uid,
                        "stored file was missing; restored from an identical copy",
                    )
                    .await;
                }
                // A PACS re-sending a series that is still arriving (perhaps
                // through another listener replica) keeps it open: the
                // shared last-received time moves, so no replica completes
                // it half-way through the re-send.
                let receiving = store
                    .get_series(&old.series_uid)
                    .await
                    .map_err(|e| store_failure(&e))?
                    .is_some_and(|s| s.state == SeriesState::Receiving);
                if receiving {
                    let again = InstanceRecord {
                        received_at: now_millis(),
                        ..old.clone()
                    };
                    store
                        .put_instance(&again)
                        .await
                        .map_err(|e| store_failure(&e))?;
                }
                debug!(sop_instance_uid = %uid, "identical duplicate");
                Ok(Outcome::Unchanged {
                    series_uid: old.series_uid,
                })
            }
            Some(old) => {
                let policy = self.config.listener.duplicate_policy;
                let detail = format!(
                    "same SOP Instance UID, different content (stored sha256 {}, received {}, from {})",
                    &old.sha256[..12.min(old.sha256.len())],
                    &record.sha256[..12],
                    record.calling_ae
                );
                info!(sop_instance_uid = %uid, ?policy, "conflicting duplicate");
                match policy {
                    DuplicatePolicy::Keep => {
                        self.event("instance.conflict.kept", &uid, &detail).await;
                        Ok(Outcome::Unchanged {
                            series_uid: old.series_uid,
                        })
                    }
                    DuplicatePolicy::Reject => {
                        self.event("instance.conflict.rejected", &uid, &detail)
                            .await;
                        Err(refused(
                            status::DUPLICATE_SOP_INSTANCE,
                            "duplicate SOP instance with different content",
                        ))
                    }
                    DuplicatePolicy::Overwrite => {
                        self.commit(tmp_path, &record.blob_key).await?;
                        store
                            .put_instance(&record)
                            .await
                            .map_err(|e| store_failure(&e))?;
                        if old.blob_key != record.blob_key {
                            let blobs = self.deps.blobs.clone();
                            let _ =
                                tokio::task::spawn_blocking(move || blobs.remove(&old.blob_key))
                                    .await;
                        }
                        self.event("instance.conflict.overwritten", &uid, &detail)
                            .await;
                        Ok(Outcome::Stored { series_uid })
                    }
                }
            }
        }
    }

    async fn commit(&self, tmp_path: PathBuf, key: &str) -> Result<(), Outcome> {
        let blobs = self.deps.blobs.clone();
        let key = key.to_string();
        match tokio::task::spawn_blocking(move || blobs.commit(&tmp_path, &key)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                warn!(error = %e, "committing instance failed");
                let (code, reason) = storage_failure(&e);
                Err(refused(code, reason))
            }
            Err(e) => Err(refused(status::OUT_OF_RESOURCES, e.to_string())),
        }
    }

    async fn event(&self, kind: &str, subject: &str, detail: &str) {
        let ev = AuditEvent {
            at: now_millis(),
            kind: kind.into(),
            subject: subject.into(),
            detail: detail.into(),
        };
        if let Err(e) = self.deps.store.record_event(&ev).await {
            warn!(error = %e, kind, "recording an audit event failed");
        }
    }
}

fn store_failure(e: &liverseg_store::StoreError) -> Outcome {
    warn!(error = %e, "metadata store failed");
    refused(status::OUT_OF_RESOURCES, "metadata store unavailable")
}

/// Error comments are limited to 64 characters; keep the informative end.
fn short(s: &str) -> String {
    let s = s.rsplit(": ").next().unwrap_or(s);
    s.chars().take(64).collect()
}
