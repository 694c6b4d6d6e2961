//! The metadata store conformance suite against every backend, each a real
//! server: embedded SQLite in a temporary directory and a throwaway
//! PostgreSQL.

use liverseg_core::{JobState, SeriesState};
use liverseg_store::{MetadataStore, NewJob, SqlStore, conformance};
use liverseg_tests::postgres::PgServer;
use std::sync::Arc;

/// Starts PostgreSQL off the async runtime (it blocks for seconds).
async fn start_pg() -> Option<PgServer> {
    tokio::task::spawn_blocking(PgServer::start)
        .await
        .expect("PgServer::start panicked")
}

/// Stops PostgreSQL off the async runtime too.
async fn stop_pg(pg: PgServer) {
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = liverseg_store::open("", dir.path()).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    conformance::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_url_passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("explicit.db").display());
    let store = liverseg_store::open(&url, dir.path()).await.unwrap();
    conformance::run_all(store).await;
    assert!(dir.path().join("explicit.db").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_passes_conformance() {
    let Some(pg) = start_pg().await else { return };
    let url = pg.create_database("conformance");
    let dir = tempfile::tempdir().unwrap();
    let store = liverseg_store::open(&url, dir.path()).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    conformance::run_all(store.clone()).await;
    // The suite shares one database across cases and runs: again.
    conformance::run_all(store).await;
    // The audit trail is append-only in the database itself.
    for sql in [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let refused = pg.psql("conformance", sql).unwrap_err();
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }

    // `postgresql://` is the same backend.
    let alt = pg
        .create_database("alt_scheme")
        .replacen("postgres://", "postgresql://", 1);
    let store = liverseg_store::open(&alt, dir.path()).await.unwrap();
    conformance::ping(store).await;
    stop_pg(pg).await;
}

/// Processes starting together migrate one empty database without
/// colliding, and opening again changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_concurrent_open_migrates_once() {
    let Some(pg) = start_pg().await else { return };
    let url = pg.create_database("concurrent_open");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = url.clone();
        tasks.spawn(async move { SqlStore::connect(&url).await });
    }
    while let Some(res) = tasks.join_next().await {
        let store = res.unwrap().expect("concurrent open");
        assert_eq!(
            store.schema_version().await.unwrap(),
            SqlStore::LATEST_SCHEMA_VERSION
        );
        store.close().await;
    }
    let rows = pg
        .psql("concurrent_open", "SELECT count(*) FROM schema_version")
        .unwrap();
    // One row per migration: none applied twice.
    assert_eq!(rows, SqlStore::LATEST_SCHEMA_VERSION.to_string());
    stop_pg(pg).await;
}

/// Everything written before close is there after reopening the file.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (study, series, sop) = ("1.2.3", "1.2.3.4", "1.2.3.4.5");
    let rec = liverseg_core::InstanceRecord {
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        series_uid: series.into(),
        study_uid: study.into(),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        blob_key: "a/b/c.dcm".into(),
        sha256: "ab".repeat(32),
        size_bytes: 42,
        received_at: 1_000,
        calling_ae: "CT1".into(),
        meta: liverseg_core::InstanceMeta {
            modality: Some("CT".into()),
            rows: Some(512),
            ..Default::default()
        },
    };
    let new = NewJob {
        kind: liverseg_core::JobKind::Segment,
        study_uid: study.into(),
        series_uid: series.into(),
        fingerprint: "fp".into(),
        instance_count: 1,
    };
    let event = liverseg_core::AuditEvent {
        at: 5,
        kind: "series.queued".into(),
        subject: series.into(),
        detail: String::new(),
    };

    let job = {
        let store = liverseg_store::open("", dir.path()).await.unwrap();
        store.put_instance(&rec).await.unwrap();
        store
            .set_series_state(series, SeriesState::Queued, None)
            .await
            .unwrap();
        let (job, _) = store.create_job(&new).await.unwrap();
        let job = store
            .transition_job(job.id, &[JobState::Received], JobState::Queued, None, false)
            .await
            .unwrap()
            .unwrap();
        store.record_event(&event).await.unwrap();
        job
        // Dropped here: the pools close with the last handle.
    };
    // Closing explicitly too, through the concrete type.
    let path = dir.path().join("metadata.sqlite");
    let url = format!("sqlite://{}", path.display());
    SqlStore::connect(&url).await.unwrap().close().await;

    let store: Arc<dyn MetadataStore> = liverseg_store::open("", dir.path()).await.unwrap();
    assert_eq!(store.get_instance(sop).await.unwrap(), Some(rec));
    let s = store.get_series(series).await.unwrap().unwrap();
    assert_eq!((s.state, s.instance_count), (SeriesState::Queued, 1));
    assert_eq!(store.get_job(job.id).await.unwrap(), Some(job.clone()));
    let (again, created) = store.create_job(&new).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, job.id);
    assert_eq!(store.events(Some(series), 10).await.unwrap(), vec![event]);
}
