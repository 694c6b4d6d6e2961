//! Where liverseg keeps what it knows.
//!
//! * [`MetadataStore`]: studies, series, instances, jobs and audit events.
//!   Backends are chosen by URL: empty or `sqlite://PATH` (embedded default)
//!   and `postgres://...`. One implementation over `sqlx::Any` serves both,
//!   and the shared suite in [`conformance`] runs against each real server.
//! * [`blob::FsBlobStore`]: DICOM files on the filesystem, written atomically.

use async_trait::async_trait;
use liverseg_core::{
    Assessment, AuditEvent, AuditRecord, DeliveryRecord, InstanceRecord, Job, JobId, JobKind,
    JobState, ResultObject, SegVersion, SeriesRecord, SeriesState,
};

pub mod blob;
pub mod conformance;
mod sql;

pub use sql::SqlStore;

/// A series with one of its instances, whose indexed attributes stand for
/// the patient, study and series (what a DICOMweb search needs).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    pub series: SeriesRecord,
    pub sample: InstanceRecord,
}

/// What the listener asks for when a series is complete.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: JobKind,
    pub study_uid: String,
    pub series_uid: String,
    pub fingerprint: String,
    pub instance_count: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported metadata URL scheme {scheme:?} (use an empty URL for embedded SQLite, sqlite://PATH or postgres://...)"
    )]
    UnsupportedScheme { scheme: String },
    #[error("cannot connect to the metadata store ({backend}): {source}")]
    Connect {
        backend: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("metadata schema migration failed: {source}")]
    Migrate {
        #[source]
        source: sqlx::Error,
    },
    #[error("metadata store {op}: {source}")]
    Query {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("metadata store holds an unreadable {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("cannot encode {what} for the metadata store: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot create the metadata directory {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata path {path:?} is not valid UTF-8")]
    NonUtf8Path { path: std::path::PathBuf },
    #[error(
        "metadata schema version {found} is newer than this build knows ({known}); upgrade liverseg"
    )]
    SchemaTooNew { found: i64, known: i64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens the metadata store named by `url`: empty for the embedded SQLite
/// database `data_dir/metadata.sqlite` (the directory is created),
/// `sqlite://PATH`, or `postgres://` / `postgresql://`.
pub async fn open(
    url: &str,
    data_dir: &std::path::Path,
) -> Result<std::sync::Arc<dyn MetadataStore>> {
    let url = url.trim();
    let resolved = if url.is_empty() {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        sql::sqlite_url_for_path(&data_dir.join("metadata.sqlite"))?
    } else {
        url.to_string()
    };
    let store = SqlStore::connect(&resolved).await?;
    tracing::info!(
        backend = store.backend(),
        url = %sql::redact_url(&resolved),
        "metadata store open"
    );
    Ok(std::sync::Arc::new(store))
}

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    async fn get_instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>>;
    /// Inserts or replaces the instance (keyed by SOP Instance UID), creates
    /// its study and series rows when new, and marks the series `Receiving`
    /// with `last_received_at = rec.received_at` and an up-to-date count.
    async fn put_instance(&self, rec: &InstanceRecord) -> Result<()>;
    /// All instances of a series, ordered by SOP Instance UID.
    async fn series_instances(&self, series_uid: &str) -> Result<Vec<InstanceRecord>>;
    async fn get_series(&self, series_uid: &str) -> Result<Option<SeriesRecord>>;
    /// Series in a state (all when `None`), oldest first.
    async fn list_series(&self, state: Option<SeriesState>) -> Result<Vec<SeriesRecord>>;
    async fn set_series_state(
        &self,
        series_uid: &str,
        state: SeriesState,
        reason: Option<&str>,
    ) -> Result<()>;
    /// Creates a job in state `Received` for (series, fingerprint), or returns
    /// the one that exists; the flag is true when it was created now.
    async fn create_job(&self, new: &NewJob) -> Result<(Job, bool)>;
    async fn get_job(&self, id: JobId) -> Result<Option<Job>>;
    /// Jobs in a state (all when `None`), newest first, at most `limit`.
    async fn list_jobs(&self, state: Option<JobState>, limit: i64) -> Result<Vec<Job>>;
    /// How many jobs are in each state; every state is listed, 0 included.
    async fn job_counts(&self) -> Result<Vec<(JobState, i64)>>;
    /// Atomically moves a job from one of `from` to `to`, setting `detail`
    /// and incrementing `attempts` when `count_attempt`. Returns the updated
    /// job, or `None` when the job is missing or not in one of `from`.
    async fn transition_job(
        &self,
        id: JobId,
        from: &[JobState],
        to: JobState,
        detail: Option<&str>,
        count_attempt: bool,
    ) -> Result<Option<Job>>;
    /// Replaces the job's results with `objects` and records the liver
    /// volume and the model's verdict on it, in one transaction.
    async fn put_results(
        &self,
        job: JobId,
        objects: &[ResultObject],
        liver_volume_ml: Option<f64>,
        assessment: Option<&Assessment>,
    ) -> Result<()>;
    /// The job's results, ordered by kind.
    async fn results(&self, job: JobId) -> Result<Vec<ResultObject>>;
    /// Records one delivery attempt to `destination`: a success (`error`
    /// `None`) marks it delivered and clears the failures; a failure counts.
    async fn record_delivery(
        &self,
        job: JobId,
        destination: &str,
        error: Option<&str>,
    ) -> Result<DeliveryRecord>;
    /// The job's deliveries, ordered by destination.
    async fn deliveries(&self, job: JobId) -> Result<Vec<DeliveryRecord>>;
    /// Gives a dead or failed job a fresh start: state `Queued`, attempts
    /// and delivery failures back to 0 (results and completed deliveries are
    /// kept). `None` when the job is missing or in another state.
    async fn replay_job(&self, id: JobId) -> Result<Option<Job>>;
    /// Series of one study (of every study when `None`), each with a sample
    /// instance, ordered by study then first arrival.
    async fn series_summaries(&self, study_uid: Option<&str>) -> Result<Vec<SeriesSummary>>;
    /// Records a segmentation version. The store numbers it after the
    /// newest version of the same source series and links it to that one,
    /// in one transaction. A SOP Instance UID already recorded returns the
    /// stored version unchanged: versions are never replaced.
    async fn add_seg_version(&self, v: &SegVersion) -> Result<SegVersion>;
    /// Versions of the segmentation of a CT series, oldest first.
    async fn seg_versions(&self, source_series_uid: &str) -> Result<Vec<SegVersion>>;
    async fn seg_version(&self, sop_instance_uid: &str) -> Result<Option<SegVersion>>;
    /// The correction a job of kind `Correction` processes.
    async fn seg_version_for_job(&self, job: JobId) -> Result<Option<SegVersion>>;
    /// Studies whose last instance arrived before `before_ms` (retention).
    async fn studies_received_before(&self, before_ms: i64) -> Result<Vec<String>>;
    /// Removes a study's instances, series and study rows and returns the
    /// blob keys they named. Jobs, versions and events stay as the record.
    async fn forget_study(&self, study_uid: &str) -> Result<Vec<String>>;
    async fn record_event(&self, event: &AuditEvent) -> Result<()>;
    /// Appends to the audit trail; returns the record with its id. The
    /// table refuses UPDATE and DELETE (database triggers).
    async fn append_audit(&self, record: &AuditRecord) -> Result<AuditRecord>;
    /// The audit trail from id `after` (exclusive), oldest first, at most
    /// `limit`: pages of an export.
    async fn audit_trail(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>>;
    /// Events about `subject` (all when `None`), oldest first, at most `limit`.
    async fn events(&self, subject: Option<&str>, limit: i64) -> Result<Vec<AuditEvent>>;
    /// Cheap round trip for readiness probes.
    async fn ping(&self) -> Result<()>;
    /// Short backend name for logs and `/readyz` (never contains secrets).
    fn backend(&self) -> &'static str;
}
