//! Domain records shared by the listener, the worker, the gateway and the
//! metadata store. They carry UIDs and technical attributes only: never
//! patient names, patient IDs or birth dates.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Identifier of a job: a UUIDv7, so that ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    pub fn new() -> Self {
        JobId(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(JobId)
    }
}

/// Lifecycle of a job. `Received` means recorded but not yet handed to the
/// queue (a crash there is repaired at start-up by enqueueing again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Received,
    Queued,
    Running,
    Done,
    /// The last attempt failed; the queue will deliver it again.
    Failed,
    /// Attempts exhausted; needs an operator.
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Received,
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Received => "received",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
        }
    }

    /// Done and dead jobs are never run again.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Done | JobState::Dead)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown job state {0:?} (expected one of received, queued, running, done, failed, dead)")]
pub struct UnknownJobState(pub String);

impl FromStr for JobState {
    type Err = UnknownJobState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownJobState(s.to_string()))
    }
}

/// State of a series as seen by the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeriesState {
    /// Instances are arriving; not yet complete.
    Receiving,
    /// Complete and turned into a job.
    Queued,
    /// Complete but failed the sanity checks; `reason` says why.
    Skipped,
    /// Complete and kept without a job (for example a resubmitted SEG).
    Stored,
}

impl SeriesState {
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesState::Receiving => "receiving",
            SeriesState::Queued => "queued",
            SeriesState::Skipped => "skipped",
            SeriesState::Stored => "stored",
        }
    }
}

impl FromStr for SeriesState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "receiving" => Ok(SeriesState::Receiving),
            "queued" => Ok(SeriesState::Queued),
            "skipped" => Ok(SeriesState::Skipped),
            "stored" => Ok(SeriesState::Stored),
            other => Err(format!("unknown series state {other:?}")),
        }
    }
}

impl fmt::Display for SeriesState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the listener extracted from one instance: enough to check a series
/// and to build its geometry without opening the file again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct InstanceMeta {
    pub modality: Option<String>,
    pub instance_number: Option<i64>,
    pub image_type: Vec<String>,
    pub rows: Option<u32>,
    pub columns: Option<u32>,
    pub number_of_frames: Option<u32>,
    /// ImagePositionPatient (mm), from the image or the first frame.
    pub image_position: Option<[f64; 3]>,
    /// ImageOrientationPatient: row cosines then column cosines.
    pub image_orientation: Option<[f64; 6]>,
    /// PixelSpacing: row spacing, column spacing (mm).
    pub pixel_spacing: Option<[f64; 2]>,
    pub slice_thickness: Option<f64>,
    pub frame_of_reference_uid: Option<String>,
    /// Patient, study, series and instance attributes that DICOMweb
    /// searches match and return, as DICOM JSON elements keyed by tag
    /// (`"00100010"`), so a search never has to open a file.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

/// One stored DICOM instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub series_uid: String,
    pub study_uid: String,
    pub transfer_syntax_uid: String,
    /// Key of the Part 10 file in the blob store.
    pub blob_key: String,
    /// SHA-256 (hex) of the data set bytes as received.
    pub sha256: String,
    pub size_bytes: i64,
    pub received_at: i64,
    pub calling_ae: String,
    pub meta: InstanceMeta,
}

/// One series as recorded by the listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesRecord {
    pub series_uid: String,
    pub study_uid: String,
    pub modality: Option<String>,
    pub state: SeriesState,
    /// Why the series was skipped, when it was.
    pub reason: Option<String>,
    pub instance_count: i64,
    pub first_received_at: i64,
    pub last_received_at: i64,
}

/// A unit of work for the worker: one complete CT series.
/// What a job does: segment a received series, or turn a radiologist's
/// corrected SEG into its mesh and volume report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    #[default]
    Segment,
    Correction,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Segment => "segment",
            JobKind::Correction => "correction",
        }
    }
}

impl FromStr for JobKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "segment" => Ok(JobKind::Segment),
            "correction" => Ok(JobKind::Correction),
            other => Err(format!("unknown job kind {other:?}")),
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    #[serde(default)]
    pub kind: JobKind,
    pub study_uid: String,
    pub series_uid: String,
    /// SHA-256 over the series' sorted (SOP Instance UID, content hash) pairs:
    /// the same instances never make a second job, a changed series does.
    pub fingerprint: String,
    pub state: JobState,
    pub attempts: i64,
    pub instance_count: i64,
    /// Last error, or a short result summary (JSON) when done.
    pub detail: Option<String>,
    /// The segmented liver volume, once results exist (none when no liver
    /// was found; a lower bound when the scan cuts the liver).
    pub liver_volume_ml: Option<f64>,
    /// The model's verdict on its result: liver found, coverage, flags.
    #[serde(default)]
    pub assessment: Option<crate::Assessment>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a job produced: one row per file kept in the blob store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultObject {
    pub job_id: JobId,
    /// `seg`, `stl-document`, `sr`, `stl`, `glb`.
    pub kind: String,
    /// The DICOM identity, for the objects that are DICOM.
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub series_uid: Option<String>,
    pub blob_key: String,
    pub sha256: String,
    pub size_bytes: i64,
    /// SHA-256 of the model that made it: results of another model are stale.
    pub model_sha256: String,
    pub created_at: i64,
}

impl ResultObject {
    /// DICOM objects go to the PACS; the rest are served by the gateway.
    pub fn is_dicom(&self) -> bool {
        self.sop_instance_uid.is_some()
    }
}

/// The state of a job's results at one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub job_id: JobId,
    /// `AE@HOST:PORT` or a STOW-RS URL.
    pub destination: String,
    pub delivered: bool,
    /// Failed attempts since the last success or replay.
    pub failures: i64,
    pub last_error: Option<String>,
    pub updated_at: i64,
}

/// The message the queue carries. Small on purpose: the worker reads the
/// rest from the metadata store.
/// Where a segmentation version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegOrigin {
    /// Written by the worker from the model's mask.
    Ai,
    /// Sent back by a person (OHIF export, STOW-RS, C-STORE, gRPC).
    Correction,
}

impl SegOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            SegOrigin::Ai => "ai",
            SegOrigin::Correction => "correction",
        }
    }
}

impl FromStr for SegOrigin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ai" => Ok(SegOrigin::Ai),
            "correction" => Ok(SegOrigin::Correction),
            other => Err(format!("unknown segmentation origin {other:?}")),
        }
    }
}

/// One step in a segmentation's history: the model that drew it, then
/// each person or tool that changed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlgorithmStep {
    /// SegmentAlgorithmType: AUTOMATIC, SEMIAUTOMATIC or MANUAL.
    pub algorithm_type: String,
    pub name: Option<String>,
    pub version: Option<String>,
    /// Manufacturer and software of the system that wrote the object.
    pub software: Option<String>,
    /// How it reached liverseg: worker, stow, cstore or grpc.
    pub via: String,
    pub at: i64,
}

/// A version of the liver segmentation of one CT series. Versions are
/// numbered from 1 (the AI result) and never replaced; each correction
/// points at the version it followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegVersion {
    pub sop_instance_uid: String,
    /// The SEG's own series.
    pub series_uid: String,
    /// The CT series it segments.
    pub source_series_uid: String,
    pub study_uid: String,
    /// Assigned by the store.
    pub version: i64,
    /// SOP Instance UID of the previous version; assigned by the store.
    pub predecessor: Option<String>,
    pub origin: SegOrigin,
    /// The job that wrote it (AI) or that derives its mesh and report.
    pub job_id: Option<JobId>,
    pub blob_key: String,
    pub sha256: String,
    pub history: Vec<AlgorithmStep>,
    /// Against the AI result (1.0 for the AI result itself).
    pub dice_vs_ai: Option<f64>,
    pub volume_ml: Option<f64>,
    /// This version's volume minus the AI result's.
    pub volume_change_ml: Option<f64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: JobId,
    pub series_uid: String,
    /// W3C trace context (`traceparent`, `tracestate`) of the span that
    /// queued the job, so the worker continues the study's trace in its
    /// own process. Empty when traces are not exported; absent in messages
    /// written before it existed.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub trace: std::collections::BTreeMap<String, String>,
}

/// One entry of the append-only audit trail: who did what, when, from
/// where, and how it ended. Every receive, send, view, resubmission and
/// replay leaves one; the store refuses to change or remove them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the trail (assigned by the store; 0 before).
    #[serde(default)]
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// The token's subject, the calling AE title, or `liverseg` itself.
    pub actor: String,
    /// `receive`, `send`, `view`, `resubmit`, `replay`, ...
    pub action: String,
    /// What it was done to: a study, series or SOP instance UID, a job id.
    pub object: String,
    /// Where from (or to): an IP address and port, or AE@host:port.
    pub peer: String,
    /// `ok`, or why it was refused or failed.
    pub outcome: String,
    /// Counts, sizes, the route or command.
    pub detail: String,
}

/// An event kept for audit: duplicates, conflicts, repairs, skips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: i64,
    /// Short machine-readable kind, e.g. `instance.conflict.kept`.
    pub kind: String,
    /// The UID or job id the event is about.
    pub subject: String,
    pub detail: String,
}

/// The fingerprint of a series' content: SHA-256 over the sorted (SOP
/// Instance UID, content hash) pairs. A job is made for one fingerprint;
/// the same content sent again makes no second job, and a worker can tell
/// that the series has changed since its job was made.
pub fn fingerprint<'a>(instances: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    use sha2::{Digest, Sha256};
    let mut pairs: Vec<_> = instances.collect();
    pairs.sort();
    let mut h = Sha256::new();
    for (uid, sha) in pairs {
        h.update(uid.as_bytes());
        h.update(b"=");
        h.update(sha.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_state_round_trips_and_rejects_unknown() {
        for st in JobState::ALL {
            assert_eq!(st.as_str().parse::<JobState>().unwrap(), st);
        }
        let err = "finished".parse::<JobState>().unwrap_err();
        assert!(err.to_string().contains("finished"));
    }

    #[test]
    fn job_ids_sort_by_creation() {
        let a = JobId::new();
        let b = JobId::new();
        assert!(a < b);
    }
}
