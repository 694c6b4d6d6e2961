//! [`MetadataStore`] over `sqlx::Any`: one implementation, one set of SQL
//! statements, for both SQLite and PostgreSQL.
//!
//! Portability rules kept throughout: `$N` placeholders (sqlx-sqlite maps
//! `$N` to argument N), `INSERT ... ON CONFLICT` upserts, `RETURNING`,
//! integers for timestamps (Unix millis), TEXT for ids, enums and JSON, and
//! `CASE` instead of the non-portable `GREATEST`/`MAX(a, b)`. The only
//! per-backend text is the events id column and the migration lock.

use crate::{MetadataStore, NewJob, Result, SeriesSummary, StoreError};
use async_trait::async_trait;
use liverseg_core::time::now_millis;
use liverseg_core::{
    Assessment, AuditEvent, AuditRecord, DeliveryRecord, InstanceMeta, InstanceRecord, Job, JobId,
    JobState, ResultObject, SegVersion, SeriesRecord, SeriesState,
};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::time::Duration;

/// Which server is behind the pool; decided from the URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The SQL metadata store (SQLite or PostgreSQL, chosen by URL).
///
/// SQLite allows one writer at a time, and a deferred transaction that
/// upgrades from read to write fails with `SQLITE_BUSY` without waiting.
/// So for SQLite the writes go through a pool of exactly one connection
/// (writers in this process queue on the pool instead of on the file lock),
/// and every write transaction starts with `BEGIN IMMEDIATE` so that a
/// second process on the same file (the CLI) waits on `busy_timeout` rather
/// than failing. Reads use a separate pool: WAL lets them run beside the
/// writer. For PostgreSQL both are the same pool.
#[derive(Debug, Clone)]
pub struct SqlStore {
    writer: AnyPool,
    reader: AnyPool,
    backend: Backend,
}

const INSTANCE_COLS: &str = "sop_instance_uid, sop_class_uid, series_uid, study_uid, \
     transfer_syntax_uid, blob_key, sha256, size_bytes, received_at, calling_ae, meta_json";
const SERIES_COLS: &str = "series_uid, study_uid, modality, state, reason, instance_count, \
     first_received_at, last_received_at";
const JOB_COLS: &str = "id, kind, study_uid, series_uid, fingerprint, state, attempts, \
     instance_count, detail, liver_volume_ml, assessment, created_at, updated_at";
const VERSION_COLS: &str = "sop_instance_uid, series_uid, source_series_uid, study_uid, version, \
     predecessor, origin, job_id, blob_key, sha256, history_json, dice_vs_ai, volume_ml, \
     volume_change_ml, created_at";
const RESULT_COLS: &str = "job_id, kind, sop_class_uid, sop_instance_uid, series_uid, blob_key, \
     sha256, size_bytes, model_sha256, created_at";
const DELIVERY_COLS: &str = "job_id, destination, delivered, failures, last_error, updated_at";

/// SQLite waits this long for another process's write lock.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 30_000;
/// Arbitrary constant key of the PostgreSQL advisory lock that serializes
/// schema migrations between processes starting at the same time.
const PG_MIGRATION_LOCK: i64 = 0x6c69_7665_7273_6567; // "liverseg"

impl SqlStore {
    /// Connects to `sqlite:PATH`, `sqlite://PATH` (created when missing
    /// unless the URL sets `mode=`), `postgres://...` or
    /// `postgresql://...`, and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Self::connect_sqlite(url).await,
            "postgres" | "postgresql" => Self::connect_postgres(url).await,
            _ => Err(StoreError::UnsupportedScheme {
                scheme: scheme.to_string(),
            }),
        }
    }

    async fn connect_sqlite(url: &str) -> Result<SqlStore> {
        let url = sqlite_url_with_mode(url);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let connect_err = |source| StoreError::Connect {
            backend: "sqlite",
            source,
        };

        let mut writer_opts = sqlite_pool_options(false).max_connections(1);
        if in_memory {
            // An in-memory database lives only while a connection is open.
            writer_opts = writer_opts
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let writer = writer_opts.connect(&url).await.map_err(connect_err)?;
        let store = |reader| SqlStore {
            writer: writer.clone(),
            reader,
            backend: Backend::Sqlite,
        };
        // Migrate before the readers connect: they are read-only.
        store(writer.clone()).migrate().await?;
        if in_memory {
            return Ok(store(writer.clone()));
        }
        let reader = sqlite_pool_options(true)
            .max_connections(4)
            .connect(&url)
            .await
            .map_err(connect_err)?;
        Ok(store(reader))
    }

    async fn connect_postgres(url: &str) -> Result<SqlStore> {
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                backend: "postgres",
                source,
            })?;
        let store = SqlStore {
            writer: pool.clone(),
            reader: pool,
            backend: Backend::Postgres,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// The schema version this build migrates to.
    pub const LATEST_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    /// The schema version this database is at.
    pub async fn schema_version(&self) -> Result<i64> {
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_version")
            .fetch_all(&self.reader)
            .await
            .map_err(q("read schema version"))?;
        Ok(versions.into_iter().max().unwrap_or(0))
    }

    /// Starts a write transaction (see the type's comment for SQLite).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        self.writer
            .begin_with(begin)
            .await
            .map_err(q("begin transaction"))
    }

    /// Applies the migrations this database has not seen, in one
    /// transaction, recording each in `schema_version`.
    async fn migrate(&self) -> Result<()> {
        let mig = |source| StoreError::Migrate { source };
        let mut tx = self.begin_write().await.map_err(|e| match e {
            StoreError::Query { source, .. } => StoreError::Migrate { source },
            other => other,
        })?;
        if self.backend == Backend::Postgres {
            // Concurrent `CREATE TABLE IF NOT EXISTS` can still collide in
            // the PostgreSQL catalog; the lock makes a second process wait.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(mig)?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_version (\
               version BIGINT NOT NULL PRIMARY KEY, \
               applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(mig)?;
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_version")
            .fetch_all(&mut *tx)
            .await
            .map_err(mig)?;
        let current = versions.into_iter().max().unwrap_or(0);
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for (i, statements) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= current {
                continue;
            }
            for stmt in *statements {
                // A `sqlite:` or `postgres:` prefix limits a statement to
                // that backend (triggers are written differently).
                let stmt = match stmt.split_once(':') {
                    Some(("sqlite", rest)) if self.backend == Backend::Sqlite => rest,
                    Some(("postgres", rest)) if self.backend == Backend::Postgres => rest,
                    Some(("sqlite" | "postgres", _)) => continue,
                    _ => stmt,
                };
                let sql = stmt.replace("{EVENT_ID}", self.event_id_column());
                sqlx::query(&sql).execute(&mut *tx).await.map_err(mig)?;
            }
            sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(now_millis())
                .execute(&mut *tx)
                .await
                .map_err(mig)?;
            tracing::info!(
                backend = self.backend.name(),
                version,
                "metadata schema migrated"
            );
        }
        tx.commit().await.map_err(mig)
    }

    fn event_id_column(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Backend::Postgres => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        }
    }
}

/// Schema migrations: entry N (0-based) brings the schema to version N+1.
/// Append only; never edit a released entry.
const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE IF NOT EXISTS studies (
        study_uid TEXT NOT NULL PRIMARY KEY,
        first_received_at BIGINT NOT NULL,
        last_received_at BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS series (
        series_uid TEXT NOT NULL PRIMARY KEY,
        study_uid TEXT NOT NULL REFERENCES studies (study_uid),
        modality TEXT,
        state TEXT NOT NULL
            CHECK (state IN ('receiving', 'queued', 'skipped', 'stored')),
        reason TEXT,
        instance_count BIGINT NOT NULL DEFAULT 0,
        first_received_at BIGINT NOT NULL,
        last_received_at BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS series_state_idx ON series (state)",
        "CREATE INDEX IF NOT EXISTS series_study_idx ON series (study_uid)",
        "CREATE TABLE IF NOT EXISTS instances (
        sop_instance_uid TEXT NOT NULL PRIMARY KEY,
        series_uid TEXT NOT NULL REFERENCES series (series_uid),
        study_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        transfer_syntax_uid TEXT NOT NULL,
        blob_key TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size_bytes BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        calling_ae TEXT NOT NULL,
        meta_json TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS instances_series_idx ON instances (series_uid)",
        "CREATE TABLE IF NOT EXISTS jobs (
        id TEXT NOT NULL PRIMARY KEY,
        study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('received', 'queued', 'running', 'done', 'failed', 'dead')),
        attempts BIGINT NOT NULL DEFAULT 0,
        instance_count BIGINT NOT NULL,
        detail TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        UNIQUE (series_uid, fingerprint))",
        "CREATE INDEX IF NOT EXISTS jobs_state_idx ON jobs (state)",
        "CREATE INDEX IF NOT EXISTS jobs_created_idx ON jobs (created_at, id)",
        "CREATE TABLE IF NOT EXISTS events (
        id {EVENT_ID},
        at BIGINT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        detail TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS events_subject_idx ON events (subject)",
    ],
    &[
        "ALTER TABLE jobs ADD COLUMN liver_volume_ml DOUBLE PRECISION",
        "CREATE TABLE IF NOT EXISTS results (
        job_id TEXT NOT NULL REFERENCES jobs (id),
        kind TEXT NOT NULL,
        sop_class_uid TEXT,
        sop_instance_uid TEXT,
        series_uid TEXT,
        blob_key TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size_bytes BIGINT NOT NULL,
        model_sha256 TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (job_id, kind))",
        "CREATE INDEX IF NOT EXISTS results_sop_idx ON results (sop_instance_uid)",
        "CREATE TABLE IF NOT EXISTS deliveries (
        job_id TEXT NOT NULL REFERENCES jobs (id),
        destination TEXT NOT NULL,
        delivered BIGINT NOT NULL DEFAULT 0,
        failures BIGINT NOT NULL DEFAULT 0,
        last_error TEXT,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (job_id, destination))",
    ],
    &[
        "ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'segment'",
        "CREATE TABLE IF NOT EXISTS seg_versions (
        sop_instance_uid TEXT NOT NULL PRIMARY KEY,
        series_uid TEXT NOT NULL,
        source_series_uid TEXT NOT NULL,
        study_uid TEXT NOT NULL,
        version BIGINT NOT NULL,
        predecessor TEXT,
        origin TEXT NOT NULL CHECK (origin IN ('ai', 'correction')),
        job_id TEXT,
        blob_key TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        history_json TEXT NOT NULL,
        dice_vs_ai DOUBLE PRECISION,
        volume_ml DOUBLE PRECISION,
        volume_change_ml DOUBLE PRECISION,
        created_at BIGINT NOT NULL,
        UNIQUE (source_series_uid, version))",
        "CREATE INDEX IF NOT EXISTS seg_versions_job_idx ON seg_versions (job_id)",
        "CREATE INDEX IF NOT EXISTS studies_last_idx ON studies (last_received_at)",
    ],
    &[
        "CREATE TABLE IF NOT EXISTS audit_log (
        id {EVENT_ID},
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        object TEXT NOT NULL,
        peer TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL)",
        // Append-only, enforced by the database itself.
        "sqlite:CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        "sqlite:CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        "postgres:CREATE OR REPLACE FUNCTION liverseg_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $fn$ BEGIN
        RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $fn$",
        "postgres:CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION liverseg_append_only()",
        "postgres:CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION liverseg_append_only()",
    ],
    // The model's verdict on its result (JSON of liverseg_core::Assessment).
    &["ALTER TABLE jobs ADD COLUMN assessment TEXT"],
];

/// Pool options with the pragmas every SQLite connection needs.
fn sqlite_pool_options(read_only: bool) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .acquire_timeout(Duration::from_secs(60))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                // busy_timeout first: switching to WAL may need the lock.
                let mut pragmas = vec![
                    format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"),
                    "PRAGMA journal_mode = WAL".to_string(),
                    // FULL: with WAL, every commit is fsynced, so an
                    // acknowledged C-STORE survives kill -9 and power loss.
                    "PRAGMA synchronous = FULL".to_string(),
                    "PRAGMA foreign_keys = ON".to_string(),
                ];
                if read_only {
                    // Catches a write sent to the wrong pool.
                    pragmas.push("PRAGMA query_only = ON".to_string());
                }
                for pragma in pragmas {
                    sqlx::query(&pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
}

/// Adds `mode=rwc` (create when missing) unless the URL chooses a mode.
fn sqlite_url_with_mode(url: &str) -> String {
    if url.contains(":memory:") {
        return url.to_string();
    }
    match url.split_once('?') {
        Some((_, query)) if query.split('&').any(|kv| kv.starts_with("mode=")) => url.to_string(),
        Some(_) => format!("{url}&mode=rwc"),
        None => format!("{url}?mode=rwc"),
    }
}

/// Builds a `sqlite://` URL for a filesystem path, escaping the characters
/// the URL parser would otherwise take for syntax.
pub(crate) fn sqlite_url_for_path(path: &std::path::Path) -> Result<String> {
    let s = path.to_str().ok_or_else(|| StoreError::NonUtf8Path {
        path: path.to_path_buf(),
    })?;
    let mut out = String::from("sqlite://");
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    Ok(format!("{out}?mode=rwc"))
}

/// The URL for logs: any password replaced, so it never reaches a log.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot carry a password at all.
            if parsed.set_password(Some("***")).is_ok() {
                parsed.to_string()
            } else {
                "<unprintable URL>".to_string()
            }
        }
        Ok(_) => url.to_string(),
        // Unparseable: it might still hold a secret, so print only the scheme.
        Err(_) => match url.split_once(':') {
            Some((scheme, _)) => format!("{scheme}:<redacted>"),
            None => "<redacted>".to_string(),
        },
    }
}

/// Maps a sqlx error to `StoreError::Query` naming the operation.
fn q(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

/// An optional real as text for `CAST($n AS DOUBLE PRECISION)`. sqlx's Any
/// driver (0.8) binds a NULL double as PostgreSQL float4, and a statement
/// cached with that type then rejects the 8-byte value of the next call;
/// text has one type either way and the cast is exact (shortest round-trip
/// formatting).
fn real(v: Option<f64>) -> Option<String> {
    v.map(|v| format!("{v:?}"))
}

fn corrupt(what: &'static str) -> impl FnOnce(String) -> StoreError {
    move |reason| StoreError::Corrupt { what, reason }
}

fn instance_from_row(row: &AnyRow) -> Result<InstanceRecord> {
    let d = || q("decode instance");
    let meta_json: String = row.try_get("meta_json").map_err(d())?;
    let meta: InstanceMeta =
        serde_json::from_str(&meta_json).map_err(|e| corrupt("instance meta")(e.to_string()))?;
    Ok(InstanceRecord {
        sop_instance_uid: row.try_get("sop_instance_uid").map_err(d())?,
        sop_class_uid: row.try_get("sop_class_uid").map_err(d())?,
        series_uid: row.try_get("series_uid").map_err(d())?,
        study_uid: row.try_get("study_uid").map_err(d())?,
        transfer_syntax_uid: row.try_get("transfer_syntax_uid").map_err(d())?,
        blob_key: row.try_get("blob_key").map_err(d())?,
        sha256: row.try_get("sha256").map_err(d())?,
        size_bytes: row.try_get("size_bytes").map_err(d())?,
        received_at: row.try_get("received_at").map_err(d())?,
        calling_ae: row.try_get("calling_ae").map_err(d())?,
        meta,
    })
}

fn series_from_row(row: &AnyRow) -> Result<SeriesRecord> {
    let d = || q("decode series");
    let state: String = row.try_get("state").map_err(d())?;
    Ok(SeriesRecord {
        series_uid: row.try_get("series_uid").map_err(d())?,
        study_uid: row.try_get("study_uid").map_err(d())?,
        modality: row.try_get("modality").map_err(d())?,
        state: state.parse().map_err(corrupt("series state"))?,
        reason: row.try_get("reason").map_err(d())?,
        instance_count: row.try_get("instance_count").map_err(d())?,
        first_received_at: row.try_get("first_received_at").map_err(d())?,
        last_received_at: row.try_get("last_received_at").map_err(d())?,
    })
}

fn job_from_row(row: &AnyRow) -> Result<Job> {
    let d = || q("decode job");
    let id: String = row.try_get("id").map_err(d())?;
    let state: String = row.try_get("state").map_err(d())?;
    let kind: String = row.try_get("kind").map_err(d())?;
    Ok(Job {
        id: parse_job_id(id)?,
        kind: kind.parse().map_err(corrupt("job kind"))?,
        study_uid: row.try_get("study_uid").map_err(d())?,
        series_uid: row.try_get("series_uid").map_err(d())?,
        fingerprint: row.try_get("fingerprint").map_err(d())?,
        state: state
            .parse()
            .map_err(|e: liverseg_core::domain::UnknownJobState| {
                corrupt("job state")(e.to_string())
            })?,
        attempts: row.try_get("attempts").map_err(d())?,
        instance_count: row.try_get("instance_count").map_err(d())?,
        detail: row.try_get("detail").map_err(d())?,
        liver_volume_ml: row.try_get("liver_volume_ml").map_err(d())?,
        assessment: row
            .try_get::<Option<String>, _>("assessment")
            .map_err(d())?
            .map(|j| serde_json::from_str(&j).map_err(|e| corrupt("job assessment")(e.to_string())))
            .transpose()?,
        created_at: row.try_get("created_at").map_err(d())?,
        updated_at: row.try_get("updated_at").map_err(d())?,
    })
}

fn version_from_row(row: &AnyRow) -> Result<SegVersion> {
    let d = || q("decode segmentation version");
    let origin: String = row.try_get("origin").map_err(d())?;
    let job_id: Option<String> = row.try_get("job_id").map_err(d())?;
    let history: String = row.try_get("history_json").map_err(d())?;
    Ok(SegVersion {
        sop_instance_uid: row.try_get("sop_instance_uid").map_err(d())?,
        series_uid: row.try_get("series_uid").map_err(d())?,
        source_series_uid: row.try_get("source_series_uid").map_err(d())?,
        study_uid: row.try_get("study_uid").map_err(d())?,
        version: row.try_get("version").map_err(d())?,
        predecessor: row.try_get("predecessor").map_err(d())?,
        origin: origin.parse().map_err(corrupt("segmentation origin"))?,
        job_id: job_id.map(parse_job_id).transpose()?,
        blob_key: row.try_get("blob_key").map_err(d())?,
        sha256: row.try_get("sha256").map_err(d())?,
        history: serde_json::from_str(&history)
            .map_err(|e| corrupt("segmentation history")(e.to_string()))?,
        dice_vs_ai: row.try_get("dice_vs_ai").map_err(d())?,
        volume_ml: row.try_get("volume_ml").map_err(d())?,
        volume_change_ml: row.try_get("volume_change_ml").map_err(d())?,
        created_at: row.try_get("created_at").map_err(d())?,
    })
}

fn parse_job_id(id: String) -> Result<JobId> {
    id.parse()
        .map_err(|e: <JobId as std::str::FromStr>::Err| corrupt("job id")(e.to_string()))
}

fn result_from_row(row: &AnyRow) -> Result<ResultObject> {
    let d = || q("decode result");
    Ok(ResultObject {
        job_id: parse_job_id(row.try_get("job_id").map_err(d())?)?,
        kind: row.try_get("kind").map_err(d())?,
        sop_class_uid: row.try_get("sop_class_uid").map_err(d())?,
        sop_instance_uid: row.try_get("sop_instance_uid").map_err(d())?,
        series_uid: row.try_get("series_uid").map_err(d())?,
        blob_key: row.try_get("blob_key").map_err(d())?,
        sha256: row.try_get("sha256").map_err(d())?,
        size_bytes: row.try_get("size_bytes").map_err(d())?,
        model_sha256: row.try_get("model_sha256").map_err(d())?,
        created_at: row.try_get("created_at").map_err(d())?,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRecord> {
    let d = || q("decode delivery");
    let delivered: i64 = row.try_get("delivered").map_err(d())?;
    Ok(DeliveryRecord {
        job_id: parse_job_id(row.try_get("job_id").map_err(d())?)?,
        destination: row.try_get("destination").map_err(d())?,
        delivered: delivered != 0,
        failures: row.try_get("failures").map_err(d())?,
        last_error: row.try_get("last_error").map_err(d())?,
        updated_at: row.try_get("updated_at").map_err(d())?,
    })
}

fn event_from_row(row: &AnyRow) -> Result<AuditEvent> {
    let d = || q("decode event");
    Ok(AuditEvent {
        at: row.try_get("at").map_err(d())?,
        kind: row.try_get("kind").map_err(d())?,
        subject: row.try_get("subject").map_err(d())?,
        detail: row.try_get("detail").map_err(d())?,
    })
}

/// `LIMIT` must not be negative on PostgreSQL; SQLite reads it as "all".
fn clamp_limit(limit: i64) -> i64 {
    limit.max(0)
}

#[async_trait]
impl MetadataStore for SqlStore {
    async fn get_instance(&self, sop_instance_uid: &str) -> Result<Option<InstanceRecord>> {
        let sql = format!("SELECT {INSTANCE_COLS} FROM instances WHERE sop_instance_uid = $1");
        let row = sqlx::query(&sql)
            .bind(sop_instance_uid)
            .fetch_optional(&self.reader)
            .await
            .map_err(q("get instance"))?;
        row.as_ref().map(instance_from_row).transpose()
    }

    async fn put_instance(&self, rec: &InstanceRecord) -> Result<()> {
        let meta_json = serde_json::to_string(&rec.meta).map_err(|source| StoreError::Encode {
            what: "instance meta",
            source,
        })?;
        let op = q("put instance");
        let mut tx = self.begin_write().await?;

        // The series it was in before, when this replaces an instance.
        let old_series: Option<String> =
            sqlx::query_scalar("SELECT series_uid FROM instances WHERE sop_instance_uid = $1")
                .bind(&rec.sop_instance_uid)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q("put instance"))?;

        // Study, then series, then instance: the order of the foreign keys,
        // and one lock order for every writer, so PostgreSQL never deadlocks
        // two uploads into the same study.
        sqlx::query(
            "INSERT INTO studies (study_uid, first_received_at, last_received_at) \
             VALUES ($1, $2, $2) \
             ON CONFLICT (study_uid) DO UPDATE SET \
               first_received_at = CASE WHEN excluded.first_received_at < studies.first_received_at \
                 THEN excluded.first_received_at ELSE studies.first_received_at END, \
               last_received_at = CASE WHEN excluded.last_received_at > studies.last_received_at \
                 THEN excluded.last_received_at ELSE studies.last_received_at END",
        )
        .bind(&rec.study_uid)
        .bind(rec.received_at)
        .execute(&mut *tx)
        .await
        .map_err(q("put instance"))?;

        sqlx::query(
            "INSERT INTO series (series_uid, study_uid, modality, state, reason, instance_count, \
               first_received_at, last_received_at) \
             VALUES ($1, $2, $3, 'receiving', NULL, 0, $4, $4) \
             ON CONFLICT (series_uid) DO UPDATE SET \
               study_uid = excluded.study_uid, \
               modality = COALESCE(excluded.modality, series.modality), \
               state = 'receiving', \
               reason = NULL, \
               first_received_at = CASE WHEN excluded.first_received_at < series.first_received_at \
                 THEN excluded.first_received_at ELSE series.first_received_at END, \
               last_received_at = CASE WHEN excluded.last_received_at > series.last_received_at \
                 THEN excluded.last_received_at ELSE series.last_received_at END",
        )
        .bind(&rec.series_uid)
        .bind(&rec.study_uid)
        .bind(rec.meta.modality.as_deref())
        .bind(rec.received_at)
        .execute(&mut *tx)
        .await
        .map_err(q("put instance"))?;

        let sql = format!(
            "INSERT INTO instances ({INSTANCE_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (sop_instance_uid) DO UPDATE SET \
               sop_class_uid = excluded.sop_class_uid, \
               series_uid = excluded.series_uid, \
               study_uid = excluded.study_uid, \
               transfer_syntax_uid = excluded.transfer_syntax_uid, \
               blob_key = excluded.blob_key, \
               sha256 = excluded.sha256, \
               size_bytes = excluded.size_bytes, \
               received_at = excluded.received_at, \
               calling_ae = excluded.calling_ae, \
               meta_json = excluded.meta_json"
        );
        sqlx::query(&sql)
            .bind(&rec.sop_instance_uid)
            .bind(&rec.sop_class_uid)
            .bind(&rec.series_uid)
            .bind(&rec.study_uid)
            .bind(&rec.transfer_syntax_uid)
            .bind(&rec.blob_key)
            .bind(&rec.sha256)
            .bind(rec.size_bytes)
            .bind(rec.received_at)
            .bind(&rec.calling_ae)
            .bind(&meta_json)
            .execute(&mut *tx)
            .await
            .map_err(q("put instance"))?;

        // Recount rather than increment: a replace must not count twice.
        // On PostgreSQL the series row lock taken by the upsert above makes
        // the last writer's count see every committed instance.
        let mut recount = vec![rec.series_uid.as_str()];
        if let Some(old) = old_series.as_deref().filter(|old| *old != rec.series_uid) {
            recount.push(old);
        }
        for series_uid in recount {
            sqlx::query(
                "UPDATE series SET instance_count = \
                   (SELECT COUNT(*) FROM instances WHERE instances.series_uid = $1) \
                 WHERE series_uid = $1",
            )
            .bind(series_uid)
            .execute(&mut *tx)
            .await
            .map_err(q("put instance"))?;
        }
        tx.commit().await.map_err(op)
    }

    async fn series_instances(&self, series_uid: &str) -> Result<Vec<InstanceRecord>> {
        let sql = format!(
            "SELECT {INSTANCE_COLS} FROM instances WHERE series_uid = $1 \
             ORDER BY sop_instance_uid"
        );
        let rows = sqlx::query(&sql)
            .bind(series_uid)
            .fetch_all(&self.reader)
            .await
            .map_err(q("list series instances"))?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn get_series(&self, series_uid: &str) -> Result<Option<SeriesRecord>> {
        let sql = format!("SELECT {SERIES_COLS} FROM series WHERE series_uid = $1");
        let row = sqlx::query(&sql)
            .bind(series_uid)
            .fetch_optional(&self.reader)
            .await
            .map_err(q("get series"))?;
        row.as_ref().map(series_from_row).transpose()
    }

    async fn list_series(&self, state: Option<SeriesState>) -> Result<Vec<SeriesRecord>> {
        let filter = if state.is_some() {
            "WHERE state = $1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {SERIES_COLS} FROM series {filter} \
             ORDER BY first_received_at ASC, series_uid ASC"
        );
        let mut query = sqlx::query(&sql);
        if let Some(state) = state {
            query = query.bind(state.as_str());
        }
        let rows = query
            .fetch_all(&self.reader)
            .await
            .map_err(q("list series"))?;
        rows.iter().map(series_from_row).collect()
    }

    async fn set_series_state(
        &self,
        series_uid: &str,
        state: SeriesState,
        reason: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE series SET state = $2, reason = $3 WHERE series_uid = $1")
            .bind(series_uid)
            .bind(state.as_str())
            .bind(reason)
            .execute(&self.writer)
            .await
            .map_err(q("set series state"))?;
        Ok(())
    }

    async fn create_job(&self, new: &NewJob) -> Result<(Job, bool)> {
        let now = now_millis();
        // DO NOTHING + RETURNING yields a row only for the caller that
        // inserted; a concurrent loser (PostgreSQL makes it wait for the
        // winner's commit) gets none and reads the winner's row below.
        let sql = format!(
            "INSERT INTO jobs ({JOB_COLS}) \
             VALUES ($1, $7, $2, $3, $4, 'received', 0, $5, NULL, NULL, NULL, $6, $6) \
             ON CONFLICT (series_uid, fingerprint) DO NOTHING \
             RETURNING {JOB_COLS}"
        );
        let inserted = sqlx::query(&sql)
            .bind(JobId::new().to_string())
            .bind(&new.study_uid)
            .bind(&new.series_uid)
            .bind(&new.fingerprint)
            .bind(new.instance_count)
            .bind(now)
            .bind(new.kind.as_str())
            .fetch_optional(&self.writer)
            .await
            .map_err(q("create job"))?;
        if let Some(row) = inserted {
            return Ok((job_from_row(&row)?, true));
        }
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE series_uid = $1 AND fingerprint = $2");
        // The writer pool: on SQLite it is the connection that saw the
        // conflict, so the row is certainly visible.
        let row = sqlx::query(&sql)
            .bind(&new.series_uid)
            .bind(&new.fingerprint)
            .fetch_optional(&self.writer)
            .await
            .map_err(q("create job"))?
            .ok_or_else(|| StoreError::Corrupt {
                what: "job",
                reason: format!(
                    "insert for series {} conflicted but no job has its fingerprint",
                    new.series_uid
                ),
            })?;
        Ok((job_from_row(&row)?, false))
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(q("get job"))?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list_jobs(&self, state: Option<JobState>, limit: i64) -> Result<Vec<Job>> {
        let (filter, limit_param) = if state.is_some() {
            ("WHERE state = $1", "$2")
        } else {
            ("", "$1")
        };
        let sql = format!(
            "SELECT {JOB_COLS} FROM jobs {filter} \
             ORDER BY created_at DESC, id DESC LIMIT {limit_param}"
        );
        let mut query = sqlx::query(&sql);
        if let Some(state) = state {
            query = query.bind(state.as_str());
        }
        let rows = query
            .bind(clamp_limit(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(q("list jobs"))?;
        rows.iter().map(job_from_row).collect()
    }

    async fn job_counts(&self) -> Result<Vec<(JobState, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
                .fetch_all(&self.reader)
                .await
                .map_err(q("count jobs"))?;
        let mut counts: Vec<(JobState, i64)> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
        for (state, n) in rows {
            let state: JobState =
                state
                    .parse()
                    .map_err(|e: liverseg_core::domain::UnknownJobState| {
                        corrupt("job state")(e.to_string())
                    })?;
            if let Some(c) = counts.iter_mut().find(|(s, _)| *s == state) {
                c.1 = n;
            }
        }
        Ok(counts)
    }

    async fn transition_job(
        &self,
        id: JobId,
        from: &[JobState],
        to: JobState,
        detail: Option<&str>,
        count_attempt: bool,
    ) -> Result<Option<Job>> {
        if from.is_empty() {
            return Ok(None);
        }
        // One conditional UPDATE is the compare-and-set: of two racing
        // callers only one still finds the job in a `from` state.
        let states = (0..from.len())
            .map(|i| format!("${}", i + 6))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE jobs SET state = $2, updated_at = $3, attempts = attempts + $4, \
               detail = COALESCE($5, detail) \
             WHERE id = $1 AND state IN ({states}) \
             RETURNING {JOB_COLS}"
        );
        let mut query = sqlx::query(&sql)
            .bind(id.to_string())
            .bind(to.as_str())
            .bind(now_millis())
            .bind(i64::from(count_attempt))
            .bind(detail);
        for state in from {
            query = query.bind(state.as_str());
        }
        let row = query
            .fetch_optional(&self.writer)
            .await
            .map_err(q("transition job"))?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn put_results(
        &self,
        job: JobId,
        objects: &[ResultObject],
        liver_volume_ml: Option<f64>,
        assessment: Option<&Assessment>,
    ) -> Result<()> {
        let assessment = assessment
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| corrupt("job assessment")(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM results WHERE job_id = $1")
            .bind(job.to_string())
            .execute(&mut *tx)
            .await
            .map_err(q("put results"))?;
        let sql = format!(
            "INSERT INTO results ({RESULT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        for o in objects {
            sqlx::query(&sql)
                .bind(job.to_string())
                .bind(&o.kind)
                .bind(&o.sop_class_uid)
                .bind(&o.sop_instance_uid)
                .bind(&o.series_uid)
                .bind(&o.blob_key)
                .bind(&o.sha256)
                .bind(o.size_bytes)
                .bind(&o.model_sha256)
                .bind(o.created_at)
                .execute(&mut *tx)
                .await
                .map_err(q("put results"))?;
        }
        sqlx::query(
            "UPDATE jobs SET liver_volume_ml = CAST($2 AS DOUBLE PRECISION), updated_at = $3, \
             assessment = $4 WHERE id = $1",
        )
        .bind(job.to_string())
        .bind(real(liver_volume_ml))
        .bind(now_millis())
        .bind(assessment)
        .execute(&mut *tx)
        .await
        .map_err(q("put results"))?;
        tx.commit().await.map_err(q("put results"))
    }

    async fn results(&self, job: JobId) -> Result<Vec<ResultObject>> {
        let sql = format!("SELECT {RESULT_COLS} FROM results WHERE job_id = $1 ORDER BY kind");
        let rows = sqlx::query(&sql)
            .bind(job.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(q("list results"))?;
        rows.iter().map(result_from_row).collect()
    }

    async fn record_delivery(
        &self,
        job: JobId,
        destination: &str,
        error: Option<&str>,
    ) -> Result<DeliveryRecord> {
        let delivered = i64::from(error.is_none());
        let sql = format!(
            "INSERT INTO deliveries ({DELIVERY_COLS}) VALUES ($1, $2, $3, 1 - $3, $4, $5) \
             ON CONFLICT (job_id, destination) DO UPDATE SET \
               delivered = $3, \
               failures = CASE WHEN $3 = 1 THEN 0 ELSE deliveries.failures + 1 END, \
               last_error = $4, updated_at = $5 \
             RETURNING {DELIVERY_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(job.to_string())
            .bind(destination)
            .bind(delivered)
            .bind(error)
            .bind(now_millis())
            .fetch_one(&self.writer)
            .await
            .map_err(q("record delivery"))?;
        delivery_from_row(&row)
    }

    async fn deliveries(&self, job: JobId) -> Result<Vec<DeliveryRecord>> {
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE job_id = $1 ORDER BY destination"
        );
        let rows = sqlx::query(&sql)
            .bind(job.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(q("list deliveries"))?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn replay_job(&self, id: JobId) -> Result<Option<Job>> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "UPDATE jobs SET state = 'queued', attempts = 0, updated_at = $2 \
             WHERE id = $1 AND state IN ('dead', 'failed') RETURNING {JOB_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .bind(now_millis())
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("replay job"))?;
        if row.is_some() {
            sqlx::query("UPDATE deliveries SET failures = 0 WHERE job_id = $1 AND delivered = 0")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(q("replay job"))?;
        }
        tx.commit().await.map_err(q("replay job"))?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn series_summaries(&self, study_uid: Option<&str>) -> Result<Vec<SeriesSummary>> {
        let series_cols: String = SERIES_COLS
            .split(',')
            .map(|c| format!("s.{} AS s_{}", c.trim(), c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let instance_cols: String = INSTANCE_COLS
            .split(',')
            .map(|c| format!("i.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        // The sample is the series' smallest SOP Instance UID: a stable
        // choice that the instances primary key finds at once.
        let sql = format!(
            "SELECT {series_cols}, {instance_cols} FROM series s \
             JOIN instances i ON i.sop_instance_uid = \
               (SELECT MIN(x.sop_instance_uid) FROM instances x WHERE x.series_uid = s.series_uid) \
             WHERE ($1 IS NULL OR s.study_uid = $1) \
             ORDER BY s.study_uid, s.first_received_at, s.series_uid"
        );
        let rows = sqlx::query(&sql)
            .bind(study_uid)
            .fetch_all(&self.reader)
            .await
            .map_err(q("list series summaries"))?;
        rows.iter()
            .map(|row| {
                let d = || q("decode series");
                let state: String = row.try_get("s_state").map_err(d())?;
                Ok(SeriesSummary {
                    series: SeriesRecord {
                        series_uid: row.try_get("s_series_uid").map_err(d())?,
                        study_uid: row.try_get("s_study_uid").map_err(d())?,
                        modality: row.try_get("s_modality").map_err(d())?,
                        state: state.parse().map_err(corrupt("series state"))?,
                        reason: row.try_get("s_reason").map_err(d())?,
                        instance_count: row.try_get("s_instance_count").map_err(d())?,
                        first_received_at: row.try_get("s_first_received_at").map_err(d())?,
                        last_received_at: row.try_get("s_last_received_at").map_err(d())?,
                    },
                    sample: instance_from_row(row)?,
                })
            })
            .collect()
    }

    async fn add_seg_version(&self, v: &SegVersion) -> Result<SegVersion> {
        let op = q("add segmentation version");
        let history = serde_json::to_string(&v.history).map_err(|source| StoreError::Encode {
            what: "segmentation history",
            source,
        })?;
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Numbering reads the newest version: serialise per series.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(&v.source_series_uid)
                .execute(&mut *tx)
                .await
                .map_err(q("add segmentation version"))?;
        }
        let sql = format!("SELECT {VERSION_COLS} FROM seg_versions WHERE sop_instance_uid = $1");
        if let Some(row) = sqlx::query(&sql)
            .bind(&v.sop_instance_uid)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("add segmentation version"))?
        {
            return version_from_row(&row);
        }
        let newest: Option<(i64, String)> = sqlx::query_as(
            "SELECT version, sop_instance_uid FROM seg_versions \
             WHERE source_series_uid = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(&v.source_series_uid)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q("add segmentation version"))?;
        let (version, predecessor) = match newest {
            Some((n, uid)) => (n + 1, Some(uid)),
            None => (1, None),
        };
        let sql = format!(
            "INSERT INTO seg_versions ({VERSION_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
               CAST($12 AS DOUBLE PRECISION), CAST($13 AS DOUBLE PRECISION), \
               CAST($14 AS DOUBLE PRECISION), $15) \
             RETURNING {VERSION_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(&v.sop_instance_uid)
            .bind(&v.series_uid)
            .bind(&v.source_series_uid)
            .bind(&v.study_uid)
            .bind(version)
            .bind(predecessor)
            .bind(v.origin.as_str())
            .bind(v.job_id.map(|j| j.to_string()))
            .bind(&v.blob_key)
            .bind(&v.sha256)
            .bind(&history)
            .bind(real(v.dice_vs_ai))
            .bind(real(v.volume_ml))
            .bind(real(v.volume_change_ml))
            .bind(v.created_at)
            .fetch_one(&mut *tx)
            .await
            .map_err(q("add segmentation version"))?;
        let stored = version_from_row(&row)?;
        tx.commit().await.map_err(op)?;
        Ok(stored)
    }

    async fn seg_versions(&self, source_series_uid: &str) -> Result<Vec<SegVersion>> {
        let sql = format!(
            "SELECT {VERSION_COLS} FROM seg_versions WHERE source_series_uid = $1 ORDER BY version"
        );
        let rows = sqlx::query(&sql)
            .bind(source_series_uid)
            .fetch_all(&self.reader)
            .await
            .map_err(q("list segmentation versions"))?;
        rows.iter().map(version_from_row).collect()
    }

    async fn seg_version(&self, sop_instance_uid: &str) -> Result<Option<SegVersion>> {
        let sql = format!("SELECT {VERSION_COLS} FROM seg_versions WHERE sop_instance_uid = $1");
        let row = sqlx::query(&sql)
            .bind(sop_instance_uid)
            .fetch_optional(&self.reader)
            .await
            .map_err(q("get segmentation version"))?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn seg_version_for_job(&self, job: JobId) -> Result<Option<SegVersion>> {
        let sql = format!(
            "SELECT {VERSION_COLS} FROM seg_versions WHERE job_id = $1 AND origin = 'correction'"
        );
        let row = sqlx::query(&sql)
            .bind(job.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(q("get segmentation version"))?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn studies_received_before(&self, before_ms: i64) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT study_uid FROM studies WHERE last_received_at < $1 ORDER BY last_received_at",
        )
        .bind(before_ms)
        .fetch_all(&self.reader)
        .await
        .map_err(q("list expired studies"))
    }

    async fn forget_study(&self, study_uid: &str) -> Result<Vec<String>> {
        let op = q("forget study");
        let mut tx = self.begin_write().await?;
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT blob_key FROM instances WHERE study_uid = $1")
                .bind(study_uid)
                .fetch_all(&mut *tx)
                .await
                .map_err(q("forget study"))?;
        for sql in [
            "DELETE FROM instances WHERE study_uid = $1",
            "DELETE FROM series WHERE study_uid = $1",
            "DELETE FROM studies WHERE study_uid = $1",
        ] {
            sqlx::query(sql)
                .bind(study_uid)
                .execute(&mut *tx)
                .await
                .map_err(q("forget study"))?;
        }
        tx.commit().await.map_err(op)?;
        Ok(keys)
    }

    async fn record_event(&self, event: &AuditEvent) -> Result<()> {
        sqlx::query("INSERT INTO events (at, kind, subject, detail) VALUES ($1, $2, $3, $4)")
            .bind(event.at)
            .bind(&event.kind)
            .bind(&event.subject)
            .bind(&event.detail)
            .execute(&self.writer)
            .await
            .map_err(q("record event"))?;
        Ok(())
    }

    async fn append_audit(&self, r: &AuditRecord) -> Result<AuditRecord> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, action, object, peer, outcome, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(r.at)
        .bind(&r.actor)
        .bind(&r.action)
        .bind(&r.object)
        .bind(&r.peer)
        .bind(&r.outcome)
        .bind(&r.detail)
        .fetch_one(&self.writer)
        .await
        .map_err(q("append to the audit trail"))?;
        Ok(AuditRecord { id, ..r.clone() })
    }

    async fn audit_trail(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, object, peer, outcome, detail FROM audit_log
             WHERE id > $1 ORDER BY id ASC LIMIT $2",
        )
        .bind(after)
        .bind(clamp_limit(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(q("read the audit trail"))?;
        rows.iter()
            .map(|row| {
                let d = || q("decode audit record");
                Ok(AuditRecord {
                    id: row.try_get("id").map_err(d())?,
                    at: row.try_get("at").map_err(d())?,
                    actor: row.try_get("actor").map_err(d())?,
                    action: row.try_get("action").map_err(d())?,
                    object: row.try_get("object").map_err(d())?,
                    peer: row.try_get("peer").map_err(d())?,
                    outcome: row.try_get("outcome").map_err(d())?,
                    detail: row.try_get("detail").map_err(d())?,
                })
            })
            .collect()
    }

    async fn events(&self, subject: Option<&str>, limit: i64) -> Result<Vec<AuditEvent>> {
        let (filter, limit_param) = if subject.is_some() {
            ("WHERE subject = $1", "$2")
        } else {
            ("", "$1")
        };
        let sql = format!(
            "SELECT at, kind, subject, detail FROM events {filter} \
             ORDER BY at ASC, id ASC LIMIT {limit_param}"
        );
        let mut query = sqlx::query(&sql);
        if let Some(subject) = subject {
            query = query.bind(subject);
        }
        let rows = query
            .bind(clamp_limit(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(q("list events"))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(q("ping"))?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        self.backend.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_a_create_mode() {
        assert_eq!(
            sqlite_url_with_mode("sqlite:///a/b.db"),
            "sqlite:///a/b.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url_with_mode("sqlite:///a/b.db?cache=shared"),
            "sqlite:///a/b.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url_with_mode("sqlite:///a/b.db?mode=ro"),
            "sqlite:///a/b.db?mode=ro"
        );
        assert_eq!(sqlite_url_with_mode("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn passwords_are_redacted() {
        let r = redact_url("postgres://liver:s3cret@db:5432/liverseg");
        assert!(!r.contains("s3cret"), "{r}");
        assert!(r.contains("liver:***@db:5432/liverseg"), "{r}");
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
        assert!(!redact_url("postgres://u:p@[bad").contains(":p@"));
    }

    #[test]
    fn paths_are_escaped_in_sqlite_urls() {
        let url = sqlite_url_for_path(std::path::Path::new("/d/a?b#c%d/m.sqlite")).unwrap();
        assert_eq!(url, "sqlite:///d/a%3Fb%23c%25d/m.sqlite?mode=rwc");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::open("", dir.path()).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        crate::conformance::run_all(store).await;
        assert!(dir.path().join("metadata.sqlite").is_file());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn odd_characters_in_the_data_dir_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a dir?with#odd%chars");
        let store = crate::open("", &data).await.unwrap();
        crate::conformance::ping(store).await;
        assert!(data.join("metadata.sqlite").is_file());
    }

    #[tokio::test]
    async fn in_memory_sqlite_works() {
        let store = SqlStore::connect("sqlite::memory:").await.unwrap();
        crate::conformance::instance_round_trip(std::sync::Arc::new(store)).await;
    }

    #[tokio::test]
    async fn the_audit_trail_cannot_be_changed_or_emptied() {
        let store = SqlStore::connect("sqlite::memory:").await.unwrap();
        crate::conformance::audit_trail_appends_and_pages_in_order(std::sync::Arc::new(
            SqlStore::connect("sqlite::memory:").await.unwrap(),
        ))
        .await;
        let record = AuditRecord {
            id: 0,
            at: 1,
            actor: "PACS".into(),
            action: "receive".into(),
            object: "1.2.3".into(),
            peer: "10.0.0.5:104".into(),
            outcome: "ok".into(),
            detail: String::new(),
        };
        store.append_audit(&record).await.unwrap();
        for sql in [
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
        ] {
            let err = sqlx::query(sql).execute(&store.writer).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        assert_eq!(store.audit_trail(0, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn reopening_keeps_the_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url_for_path(&dir.path().join("m.sqlite")).unwrap();
        let store = SqlStore::connect(&url).await.unwrap();
        assert_eq!(
            store.schema_version().await.unwrap(),
            MIGRATIONS.len() as i64
        );
        store.close().await;
        let store = SqlStore::connect(&url).await.unwrap();
        assert_eq!(
            store.schema_version().await.unwrap(),
            MIGRATIONS.len() as i64
        );
    }

    #[tokio::test]
    async fn sqlite_connections_are_durable_wal() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url_for_path(&dir.path().join("m.sqlite")).unwrap();
        let store = SqlStore::connect(&url).await.unwrap();
        for pool in [&store.writer, &store.reader] {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(sync, 2, "synchronous = FULL");
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(fk, 1);
        }
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url_for_path(&dir.path().join("m.sqlite")).unwrap();
        let store = SqlStore::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES (999, 0)")
            .execute(&store.writer)
            .await
            .unwrap();
        store.close().await;
        let err = SqlStore::connect(&url).await.unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unknown_schemes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for url in ["mysql://u:secret@h/db", "redis://h", "/just/a/path"] {
            let err = crate::open(url, dir.path()).await.err().unwrap();
            assert!(matches!(err, StoreError::UnsupportedScheme { .. }), "{err}");
            assert!(!err.to_string().contains("secret"));
        }
    }

    #[tokio::test]
    async fn read_pool_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url_for_path(&dir.path().join("m.sqlite")).unwrap();
        let store = SqlStore::connect(&url).await.unwrap();
        let res =
            sqlx::query("INSERT INTO events (at, kind, subject, detail) VALUES (1, 'k', 's', 'd')")
                .execute(&store.reader)
                .await;
        assert!(res.is_err());
    }
}
