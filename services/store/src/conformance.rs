//! The conformance suite every [`MetadataStore`] backend must pass.
//!
//! Each case is a public function so that a failure names the behaviour;
//! [`run_all`] runs them in turn. Cases make their own UIDs (random
//! suffixes), so they can share one database with each other and with
//! earlier runs. They panic on failure: this is test support code.

use crate::{MetadataStore, NewJob};
use liverseg_core::time::now_millis;
use liverseg_core::{
    AlgorithmStep, AuditEvent, InstanceMeta, InstanceRecord, JobId, JobState, ResultObject,
    SegOrigin, SegVersion, SeriesRecord, SeriesState,
};
use std::sync::Arc;

type Store = Arc<dyn MetadataStore>;

/// Runs every case against `store`.
pub async fn run_all(store: Store) {
    ping(store.clone()).await;
    instance_round_trip(store.clone()).await;
    put_instance_maintains_study_and_series(store.clone()).await;
    moving_an_instance_recounts_both_series(store.clone()).await;
    series_instances_are_ordered_by_uid(store.clone()).await;
    concurrent_put_instance_counts_every_instance(store.clone()).await;
    list_series_filters_by_state(store.clone()).await;
    create_job_is_idempotent_per_fingerprint(store.clone()).await;
    concurrent_create_job_creates_one(store.clone()).await;
    transition_job_is_compare_and_set(store.clone()).await;
    list_jobs_filters_limits_and_orders(store.clone()).await;
    job_counts_cover_every_state(store.clone()).await;
    events_round_trip_and_filter(store.clone()).await;
    audit_trail_appends_and_pages_in_order(store.clone()).await;
    results_are_replaced_as_a_whole(store.clone()).await;
    deliveries_count_failures_until_success(store.clone()).await;
    replay_restarts_only_dead_or_failed_jobs(store.clone()).await;
    series_summaries_sample_each_series(store.clone()).await;
    seg_versions_are_numbered_and_linked(store.clone()).await;
    concurrent_seg_versions_get_distinct_numbers(store.clone()).await;
    forget_study_removes_only_that_study(store.clone()).await;
}

/// A UID no other case or run uses (digits and dots only, like DICOM).
fn uid(kind: u32) -> String {
    format!(
        "1.2.826.0.1.3680043.10.1234.{kind}.{}",
        JobId::new().0.as_u128()
    )
}

fn instance(series: &str, study: &str, sop: &str, received_at: i64) -> InstanceRecord {
    InstanceRecord {
        sop_instance_uid: sop.to_string(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".to_string(),
        series_uid: series.to_string(),
        study_uid: study.to_string(),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".to_string(),
        blob_key: format!("{study}/{series}/{sop}.dcm"),
        sha256: format!("{:064x}", JobId::new().0.as_u128()),
        size_bytes: 525_312,
        received_at,
        calling_ae: "MODALITY1".to_string(),
        meta: InstanceMeta {
            modality: Some("CT".to_string()),
            ..InstanceMeta::default()
        },
    }
}

pub async fn ping(store: Store) {
    store.ping().await.expect("ping");
    let name = store.backend();
    assert!(
        !name.is_empty() && !name.contains("://"),
        "backend name {name:?}"
    );
}

/// Every field survives, including the meta JSON and absent optionals.
pub async fn instance_round_trip(store: Store) {
    let (study, series) = (uid(1), uid(2));
    assert_eq!(store.get_instance(&uid(3)).await.unwrap(), None);

    let mut full = instance(&series, &study, &uid(3), 1_700_000_000_123);
    full.meta = InstanceMeta {
        modality: Some("CT".to_string()),
        instance_number: Some(-7),
        image_type: vec!["ORIGINAL".into(), "PRIMARY".into(), "AXIAL".into()],
        rows: Some(512),
        columns: Some(256),
        number_of_frames: Some(1),
        image_position: Some([-120.25, 0.5, -1024.0]),
        image_orientation: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        pixel_spacing: Some([0.75, 0.625]),
        slice_thickness: Some(2.5),
        frame_of_reference_uid: Some(uid(4)),
        attributes: [(
            "00100010".to_string(),
            serde_json::json!({"vr": "PN", "Value": [{"Alphabetic": "Müller^Anna"}]}),
        )]
        .into(),
    };
    store.put_instance(&full).await.unwrap();
    assert_eq!(
        store.get_instance(&full.sop_instance_uid).await.unwrap(),
        Some(full.clone())
    );

    // All optionals absent, text with quotes and non-ASCII.
    let mut bare = instance(&series, &study, &uid(3), 1_700_000_000_124);
    bare.meta = InstanceMeta::default();
    bare.calling_ae = "AE \"ß\" '1'".to_string();
    store.put_instance(&bare).await.unwrap();
    assert_eq!(
        store.get_instance(&bare.sop_instance_uid).await.unwrap(),
        Some(bare.clone())
    );
    // Absent modality in the new instance keeps the series' modality.
    let s = store.get_series(&series).await.unwrap().unwrap();
    assert_eq!(s.modality.as_deref(), Some("CT"));
}

/// Study and series appear with the first instance; the count follows the
/// instances (a replace does not count twice); a new instance puts a
/// handled series back to `Receiving`.
pub async fn put_instance_maintains_study_and_series(store: Store) {
    let (study, series) = (uid(1), uid(2));
    assert_eq!(store.get_series(&series).await.unwrap(), None);

    let a = instance(&series, &study, &uid(3), 10_000);
    store.put_instance(&a).await.unwrap();
    assert_eq!(
        store.get_series(&series).await.unwrap(),
        Some(SeriesRecord {
            series_uid: series.clone(),
            study_uid: study.clone(),
            modality: Some("CT".to_string()),
            state: SeriesState::Receiving,
            reason: None,
            instance_count: 1,
            first_received_at: 10_000,
            last_received_at: 10_000,
        })
    );

    let b = instance(&series, &study, &uid(3), 12_000);
    store.put_instance(&b).await.unwrap();
    let s = store.get_series(&series).await.unwrap().unwrap();
    assert_eq!(
        (s.instance_count, s.first_received_at, s.last_received_at),
        (2, 10_000, 12_000)
    );

    // Replacing `a` (new content, earlier clock) keeps the count and does
    // not move last_received_at backwards.
    let mut a2 = a.clone();
    a2.sha256 = "0".repeat(64);
    a2.size_bytes = 1;
    a2.received_at = 11_000;
    store.put_instance(&a2).await.unwrap();
    assert_eq!(
        store.get_instance(&a.sop_instance_uid).await.unwrap(),
        Some(a2.clone())
    );
    let s = store.get_series(&series).await.unwrap().unwrap();
    assert_eq!(
        (s.instance_count, s.first_received_at, s.last_received_at),
        (2, 10_000, 12_000)
    );

    store
        .set_series_state(&series, SeriesState::Skipped, Some("too few slices"))
        .await
        .unwrap();
    let s = store.get_series(&series).await.unwrap().unwrap();
    assert_eq!(s.state, SeriesState::Skipped);
    assert_eq!(s.reason.as_deref(), Some("too few slices"));
    assert_eq!(s.instance_count, 2, "a state change keeps the count");

    let c = instance(&series, &study, &uid(3), 13_000);
    store.put_instance(&c).await.unwrap();
    let s = store.get_series(&series).await.unwrap().unwrap();
    assert_eq!(s.state, SeriesState::Receiving);
    assert_eq!(s.reason, None);
    assert_eq!((s.instance_count, s.last_received_at), (3, 13_000));

    // Setting a state without a reason clears the old reason.
    store
        .set_series_state(&series, SeriesState::Skipped, Some("x"))
        .await
        .unwrap();
    store
        .set_series_state(&series, SeriesState::Queued, None)
        .await
        .unwrap();
    let s = store.get_series(&series).await.unwrap().unwrap();
    assert_eq!((s.state, s.reason), (SeriesState::Queued, None));
}

/// A replace that changes the series moves the instance and fixes both
/// counts.
pub async fn moving_an_instance_recounts_both_series(store: Store) {
    let (study, s1, s2) = (uid(1), uid(2), uid(2));
    let a = instance(&s1, &study, &uid(3), 20_000);
    let b = instance(&s1, &study, &uid(3), 20_001);
    store.put_instance(&a).await.unwrap();
    store.put_instance(&b).await.unwrap();
    assert_eq!(
        store.get_series(&s1).await.unwrap().unwrap().instance_count,
        2
    );

    let mut moved = b.clone();
    moved.series_uid = s2.clone();
    store.put_instance(&moved).await.unwrap();
    assert_eq!(
        store.get_series(&s1).await.unwrap().unwrap().instance_count,
        1
    );
    assert_eq!(
        store.get_series(&s2).await.unwrap().unwrap().instance_count,
        1
    );
    assert_eq!(store.series_instances(&s1).await.unwrap(), vec![a]);
    assert_eq!(store.series_instances(&s2).await.unwrap(), vec![moved]);
}

pub async fn series_instances_are_ordered_by_uid(store: Store) {
    let (study, series) = (uid(1), uid(2));
    assert!(store.series_instances(&series).await.unwrap().is_empty());
    let base = uid(3);
    // Inserted out of order; lexical order is the contract.
    let mut recs = Vec::new();
    for suffix in ["9", "10", "1", "2"] {
        let rec = instance(&series, &study, &format!("{base}.{suffix}"), 30_000);
        store.put_instance(&rec).await.unwrap();
        recs.push(rec);
    }
    recs.sort_by(|x, y| x.sop_instance_uid.cmp(&y.sop_instance_uid));
    assert_eq!(store.series_instances(&series).await.unwrap(), recs);
    // Another series' instances are not included.
    store
        .put_instance(&instance(&uid(2), &study, &uid(3), 30_001))
        .await
        .unwrap();
    assert_eq!(store.series_instances(&series).await.unwrap().len(), 4);
}

/// 32 writers at once (a busy modality): none fails, none is lost.
pub async fn concurrent_put_instance_counts_every_instance(store: Store) {
    let (study, series) = (uid(1), uid(2));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let store = store.clone();
        let rec = instance(&series, &study, &uid(3), 40_000 + i);
        tasks.spawn(async move { store.put_instance(&rec).await });
    }
    while let Some(res) = tasks.join_next().await {
        res.expect("task").expect("concurrent put_instance");
    }
    let s = store.get_series(&series).await.unwrap().unwrap();
    assert_eq!(s.instance_count, 32);
    assert_eq!((s.first_received_at, s.last_received_at), (40_000, 40_031));
    assert_eq!(store.series_instances(&series).await.unwrap().len(), 32);
}

/// The filter returns exactly the series in that state, oldest first.
pub async fn list_series_filters_by_state(store: Store) {
    let study = uid(1);
    let base = now_millis();
    let (old, mid, new) = (uid(2), uid(2), uid(2));
    for (series, at) in [(&new, base + 2), (&old, base), (&mid, base + 1)] {
        store
            .put_instance(&instance(series, &study, &uid(3), at))
            .await
            .unwrap();
    }
    store
        .set_series_state(&mid, SeriesState::Stored, None)
        .await
        .unwrap();

    let receiving = store
        .list_series(Some(SeriesState::Receiving))
        .await
        .unwrap();
    assert!(receiving.iter().all(|s| s.state == SeriesState::Receiving));
    let mine: Vec<&str> = receiving
        .iter()
        .map(|s| s.series_uid.as_str())
        .filter(|u| [&old, &mid, &new].contains(&&u.to_string()))
        .collect();
    assert_eq!(mine, vec![old.as_str(), new.as_str()]);

    let stored = store.list_series(Some(SeriesState::Stored)).await.unwrap();
    assert!(stored.iter().all(|s| s.state == SeriesState::Stored));
    assert!(stored.iter().any(|s| s.series_uid == mid));

    let all = store.list_series(None).await.unwrap();
    let mine: Vec<&str> = all
        .iter()
        .map(|s| s.series_uid.as_str())
        .filter(|u| [&old, &mid, &new].contains(&&u.to_string()))
        .collect();
    assert_eq!(mine, vec![old.as_str(), mid.as_str(), new.as_str()]);
    assert!(
        all.windows(2)
            .all(|w| w[0].first_received_at <= w[1].first_received_at),
        "list_series is oldest first"
    );
}

fn new_job(series: &str, fingerprint: &str) -> NewJob {
    NewJob {
        kind: liverseg_core::JobKind::Segment,
        study_uid: uid(1),
        series_uid: series.to_string(),
        fingerprint: fingerprint.to_string(),
        instance_count: 120,
    }
}

/// The same (series, fingerprint) returns the existing job; a changed
/// fingerprint makes a second job.
pub async fn create_job_is_idempotent_per_fingerprint(store: Store) {
    let series = uid(2);
    let new = new_job(&series, "fp-1");
    let before = now_millis();
    let (job, created) = store.create_job(&new).await.unwrap();
    assert!(created);
    assert_eq!(job.state, JobState::Received);
    assert_eq!((job.attempts, job.detail.as_deref()), (0, None));
    assert_eq!(
        (
            &job.study_uid,
            &job.series_uid,
            &job.fingerprint,
            job.instance_count
        ),
        (&new.study_uid, &new.series_uid, &new.fingerprint, 120)
    );
    assert!(job.created_at >= before && job.created_at == job.updated_at);
    assert_eq!(store.get_job(job.id).await.unwrap(), Some(job.clone()));

    let (again, created) = store.create_job(&new).await.unwrap();
    assert!(!created);
    assert_eq!(again, job);

    // The existing job is returned as it is now, not as first created.
    store
        .transition_job(job.id, &[JobState::Received], JobState::Queued, None, false)
        .await
        .unwrap()
        .unwrap();
    let (again, created) = store.create_job(&new).await.unwrap();
    assert!(!created);
    assert_eq!((again.id, again.state), (job.id, JobState::Queued));

    let (second, created) = store.create_job(&new_job(&series, "fp-2")).await.unwrap();
    assert!(created);
    assert_ne!(second.id, job.id);
    // The same fingerprint on another series is another job too.
    let (third, created) = store.create_job(&new_job(&uid(2), "fp-1")).await.unwrap();
    assert!(created);
    assert_ne!(third.id, job.id);

    assert_eq!(store.get_job(JobId::new()).await.unwrap(), None);
}

/// Sixteen racing requests for one series make exactly one job.
pub async fn concurrent_create_job_creates_one(store: Store) {
    let new = new_job(&uid(2), "fp-race");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (store, new) = (store.clone(), new.clone());
        tasks.spawn(async move { store.create_job(&new).await });
    }
    let mut results = Vec::new();
    while let Some(res) = tasks.join_next().await {
        results.push(res.expect("task").expect("concurrent create_job"));
    }
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    let id = results[0].0.id;
    assert!(results.iter().all(|(job, _)| job.id == id));
}

/// Only a job in one of the `from` states moves; attempts and detail
/// follow the arguments.
pub async fn transition_job_is_compare_and_set(store: Store) {
    let (job, _) = store.create_job(&new_job(&uid(2), "fp")).await.unwrap();

    // Wrong from-state: nothing happens.
    let none = store
        .transition_job(
            job.id,
            &[JobState::Running],
            JobState::Done,
            Some("x"),
            true,
        )
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(store.get_job(job.id).await.unwrap(), Some(job.clone()));
    assert_eq!(
        store
            .transition_job(job.id, &[], JobState::Queued, None, false)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .transition_job(
                JobId::new(),
                &[JobState::Received],
                JobState::Queued,
                None,
                false
            )
            .await
            .unwrap(),
        None
    );

    let queued = store
        .transition_job(
            job.id,
            &[JobState::Received, JobState::Failed],
            JobState::Queued,
            None,
            false,
        )
        .await
        .unwrap()
        .expect("received -> queued");
    assert_eq!(
        (queued.state, queued.attempts, queued.detail.as_deref()),
        (JobState::Queued, 0, None)
    );
    assert!(queued.updated_at >= job.updated_at);
    assert_eq!(queued.created_at, job.created_at);

    let running = store
        .transition_job(
            job.id,
            &[JobState::Queued, JobState::Failed],
            JobState::Running,
            None,
            true,
        )
        .await
        .unwrap()
        .expect("queued -> running");
    assert_eq!((running.state, running.attempts), (JobState::Running, 1));

    let failed = store
        .transition_job(
            job.id,
            &[JobState::Running],
            JobState::Failed,
            Some("worker died"),
            false,
        )
        .await
        .unwrap()
        .expect("running -> failed");
    assert_eq!(
        (failed.attempts, failed.detail.as_deref()),
        (1, Some("worker died"))
    );

    let running = store
        .transition_job(
            job.id,
            &[JobState::Queued, JobState::Failed],
            JobState::Running,
            None,
            true,
        )
        .await
        .unwrap()
        .expect("failed -> running");
    assert_eq!(running.attempts, 2);
    assert_eq!(
        running.detail.as_deref(),
        Some("worker died"),
        "None keeps the detail"
    );

    let done = store
        .transition_job(
            job.id,
            &[JobState::Running],
            JobState::Done,
            Some("{\"voxels\":1}"),
            false,
        )
        .await
        .unwrap()
        .expect("running -> done");
    assert_eq!(store.get_job(job.id).await.unwrap(), Some(done.clone()));
    assert_eq!(done.detail.as_deref(), Some("{\"voxels\":1}"));

    // A second worker finishing the same job loses the race.
    assert_eq!(
        store
            .transition_job(
                job.id,
                &[JobState::Running],
                JobState::Done,
                Some("late"),
                false
            )
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.get_job(job.id).await.unwrap(), Some(done));
}

/// Newest first, filtered by state, at most `limit`.
pub async fn list_jobs_filters_limits_and_orders(store: Store) {
    let mut mine = Vec::new();
    for fp in ["a", "b", "c"] {
        let (job, _) = store.create_job(&new_job(&uid(2), fp)).await.unwrap();
        mine.push(job);
    }
    for job in [&mine[0], &mine[2]] {
        store
            .transition_job(
                job.id,
                &[JobState::Received],
                JobState::Dead,
                Some("gave up"),
                false,
            )
            .await
            .unwrap()
            .unwrap();
    }
    let ids = |jobs: &[liverseg_core::Job]| {
        jobs.iter()
            .map(|j| j.id)
            .filter(|id| mine.iter().any(|m| m.id == *id))
            .collect::<Vec<_>>()
    };
    let newest_first = |jobs: &[liverseg_core::Job]| {
        jobs.windows(2)
            .all(|w| (w[0].created_at, w[0].id) > (w[1].created_at, w[1].id))
    };

    let dead = store
        .list_jobs(Some(JobState::Dead), i64::MAX)
        .await
        .unwrap();
    assert!(dead.iter().all(|j| j.state == JobState::Dead));
    assert_eq!(ids(&dead), vec![mine[2].id, mine[0].id]);
    assert!(newest_first(&dead));

    let received = store
        .list_jobs(Some(JobState::Received), 1_000_000)
        .await
        .unwrap();
    assert!(received.iter().all(|j| j.state == JobState::Received));
    assert_eq!(ids(&received), vec![mine[1].id]);

    let all = store.list_jobs(None, 1_000_000).await.unwrap();
    assert_eq!(ids(&all), vec![mine[2].id, mine[1].id, mine[0].id]);
    assert!(newest_first(&all));

    let two = store.list_jobs(None, 2).await.unwrap();
    assert_eq!(two, all[..2].to_vec());
    assert!(two[0].created_at >= mine[2].created_at);
    assert_eq!(
        store
            .list_jobs(Some(JobState::Dead), 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.list_jobs(None, 0).await.unwrap().is_empty());
    assert!(store.list_jobs(None, -1).await.unwrap().is_empty());
}

/// Every state is counted, those without jobs as 0 (other cases share the
/// store, so the case checks what its own jobs add).
pub async fn job_counts_cover_every_state(store: Store) {
    let count = |counts: &[(JobState, i64)], state: JobState| {
        counts.iter().find(|(s, _)| *s == state).map(|(_, n)| *n)
    };
    let before = store.job_counts().await.unwrap();
    assert_eq!(before.len(), JobState::ALL.len(), "{before:?}");
    let series = uid(2);
    let mut jobs = Vec::new();
    for fp in ["x", "y", "z"] {
        jobs.push(store.create_job(&new_job(&series, fp)).await.unwrap().0);
    }
    store
        .transition_job(
            jobs[0].id,
            &[JobState::Received],
            JobState::Dead,
            None,
            false,
        )
        .await
        .unwrap()
        .unwrap();
    let after = store.job_counts().await.unwrap();
    assert_eq!(after.len(), JobState::ALL.len(), "{after:?}");
    for state in JobState::ALL {
        let added = count(&after, state).unwrap() - count(&before, state).unwrap();
        let expected = match state {
            JobState::Received => 2,
            JobState::Dead => 1,
            _ => 0,
        };
        assert_eq!(added, expected, "{state}: {before:?} -> {after:?}");
    }
}

/// Audit records come back in the order they were appended, with rising
/// ids, paged by the last id seen (other cases share the store).
pub async fn audit_trail_appends_and_pages_in_order(store: Store) {
    let tail = store.audit_trail(0, i64::MAX).await.unwrap();
    let start = tail.last().map_or(0, |r| r.id);
    let mut appended = Vec::new();
    for (n, action) in ["receive", "send", "view", "resubmit", "replay"]
        .iter()
        .enumerate()
    {
        let record = liverseg_core::AuditRecord {
            id: 0,
            at: 1_700_000_000_000 + n as i64,
            actor: format!("user-{n}"),
            action: action.to_string(),
            object: uid(9),
            peer: "10.1.2.3:50412".into(),
            outcome: if n == 2 {
                "refused: role viewer required".into()
            } else {
                "ok".into()
            },
            detail: String::new(),
        };
        let kept = store.append_audit(&record).await.unwrap();
        assert!(kept.id > start, "{} <= {start}", kept.id);
        assert_eq!(
            kept,
            liverseg_core::AuditRecord {
                id: kept.id,
                ..record
            }
        );
        appended.push(kept);
    }
    assert!(appended.windows(2).all(|w| w[0].id < w[1].id));
    let all = store.audit_trail(start, i64::MAX).await.unwrap();
    assert_eq!(all, appended);
    let first_two = store.audit_trail(start, 2).await.unwrap();
    assert_eq!(first_two, appended[..2].to_vec());
    let rest = store.audit_trail(first_two[1].id, 100).await.unwrap();
    assert_eq!(rest, appended[2..].to_vec());
}

/// Events come back as recorded, filtered by subject, oldest first.
pub async fn events_round_trip_and_filter(store: Store) {
    let (subject, other) = (uid(2), uid(2));
    let at = now_millis();
    let ev = |at, kind: &str, subject: &str, detail: &str| AuditEvent {
        at,
        kind: kind.to_string(),
        subject: subject.to_string(),
        detail: detail.to_string(),
    };
    let recorded = [
        ev(at, "instance.duplicate", &subject, "same bytes"),
        ev(
            at + 1,
            "instance.conflict.kept",
            &subject,
            "{\"sha\":\"ab\"}",
        ),
        ev(at + 1, "series.skipped", &subject, "too few slices: 3 < 20"),
    ];
    // Recorded out of time order: the clock decides, then recording order.
    store.record_event(&recorded[1]).await.unwrap();
    store
        .record_event(&ev(at, "job.repaired", &other, ""))
        .await
        .unwrap();
    store.record_event(&recorded[0]).await.unwrap();
    store.record_event(&recorded[2]).await.unwrap();

    assert_eq!(
        store.events(Some(&subject), 100).await.unwrap(),
        recorded.to_vec()
    );
    assert_eq!(
        store.events(Some(&subject), 2).await.unwrap(),
        recorded[..2].to_vec()
    );
    assert_eq!(
        store.events(Some(&other), 100).await.unwrap(),
        vec![ev(at, "job.repaired", &other, "")]
    );
    assert!(store.events(Some(&uid(2)), 100).await.unwrap().is_empty());

    let all = store.events(None, i64::MAX).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].at <= w[1].at), "oldest first");
    assert_eq!(
        all.iter()
            .filter(|e| e.subject == subject || e.subject == other)
            .count(),
        4
    );
    assert_eq!(store.events(None, 1).await.unwrap().len(), 1);
}

fn result(job: JobId, kind: &str, dicom: bool) -> ResultObject {
    ResultObject {
        job_id: job,
        kind: kind.to_string(),
        sop_class_uid: dicom.then(|| "1.2.840.10008.5.1.4.1.1.66.4".to_string()),
        sop_instance_uid: dicom.then(|| uid(7)),
        series_uid: dicom.then(|| uid(8)),
        blob_key: format!("results/{job}/{kind}"),
        sha256: "ab".repeat(32),
        size_bytes: 1234,
        model_sha256: "cd".repeat(32),
        created_at: now_millis(),
    }
}

/// Results are written as one set with the liver volume; writing again
/// replaces the set (a re-run with another model leaves no stale rows).
pub async fn results_are_replaced_as_a_whole(store: Store) {
    let (job, _) = store.create_job(&new_job(&uid(2), "fp-res")).await.unwrap();
    assert!(store.results(job.id).await.unwrap().is_empty());
    let first = vec![result(job.id, "seg", true), result(job.id, "stl", false)];
    // A cut liver the model was unsure of: the verdict is kept with the job.
    let partial = liverseg_core::Assessment {
        liver_found: true,
        no_liver: None,
        coverage: liverseg_core::Coverage {
            complete: false,
            cut: vec![liverseg_core::Side::Superior],
        },
        flags: vec![
            liverseg_core::Flag::PartialCoverage,
            liverseg_core::Flag::Uncertain,
        ],
        uncertainty: 0.25,
    };
    store
        .put_results(job.id, &first, Some(1534.25), Some(&partial))
        .await
        .unwrap();
    assert_eq!(store.results(job.id).await.unwrap(), first);
    let job_now = store.get_job(job.id).await.unwrap().unwrap();
    assert_eq!(job_now.liver_volume_ml, Some(1534.25));
    assert_eq!(job_now.assessment.as_ref(), Some(&partial));
    assert!(first[0].is_dicom() && !first[1].is_dicom());

    let second = vec![result(job.id, "glb", false), result(job.id, "sr", true)];
    // Volumes and no volume in turn: every pooled connection sees both
    // (a driver that typed a NULL real differently from a value broke this).
    for i in 0..8 {
        let volume = (i % 2 == 0).then_some(1000.0 + f64::from(i) / 3.0);
        store
            .put_results(job.id, &second, volume, None)
            .await
            .unwrap();
        let job_now = store.get_job(job.id).await.unwrap().unwrap();
        assert_eq!(job_now.liver_volume_ml, volume);
    }
    store
        .put_results(job.id, &second, None, None)
        .await
        .unwrap();
    assert_eq!(store.results(job.id).await.unwrap(), second);
    assert_eq!(
        store.get_job(job.id).await.unwrap().unwrap().assessment,
        None
    );
    assert_eq!(
        store
            .get_job(job.id)
            .await
            .unwrap()
            .unwrap()
            .liver_volume_ml,
        None
    );
    // Another job's results are separate.
    let (other, _) = store.create_job(&new_job(&uid(2), "fp-res")).await.unwrap();
    assert!(store.results(other.id).await.unwrap().is_empty());
}

/// Each failure counts; a success marks the destination delivered and
/// clears the count; destinations are independent.
pub async fn deliveries_count_failures_until_success(store: Store) {
    let (job, _) = store.create_job(&new_job(&uid(2), "fp-del")).await.unwrap();
    let pacs = "PACS@127.0.0.1:104";
    let d = store
        .record_delivery(job.id, pacs, Some("refused"))
        .await
        .unwrap();
    assert_eq!((d.delivered, d.failures), (false, 1));
    let d = store
        .record_delivery(job.id, pacs, Some("timed out"))
        .await
        .unwrap();
    assert_eq!(
        (d.delivered, d.failures, d.last_error.as_deref()),
        (false, 2, Some("timed out"))
    );
    let other = store
        .record_delivery(job.id, "http://127.0.0.1:8042/dicom-web", None)
        .await
        .unwrap();
    assert_eq!((other.delivered, other.failures), (true, 0));
    let d = store.record_delivery(job.id, pacs, None).await.unwrap();
    assert_eq!((d.delivered, d.failures, d.last_error), (true, 0, None));
    let all = store.deliveries(job.id).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|d| d.delivered && d.job_id == job.id));
    assert_eq!(all[0].destination, "PACS@127.0.0.1:104");
}

/// Replay takes a dead (or failed) job back to `queued` with fresh counts,
/// keeps delivered destinations, and refuses jobs in other states.
pub async fn replay_restarts_only_dead_or_failed_jobs(store: Store) {
    let (job, _) = store
        .create_job(&new_job(&uid(2), "fp-replay"))
        .await
        .unwrap();
    assert_eq!(
        store.replay_job(job.id).await.unwrap(),
        None,
        "received job replayed"
    );
    store
        .transition_job(job.id, &[JobState::Received], JobState::Running, None, true)
        .await
        .unwrap()
        .unwrap();
    store
        .record_delivery(job.id, "A@h:1", Some("down"))
        .await
        .unwrap();
    store
        .record_delivery(job.id, "A@h:1", Some("down"))
        .await
        .unwrap();
    store.record_delivery(job.id, "B@h:2", None).await.unwrap();
    store
        .transition_job(
            job.id,
            &[JobState::Running],
            JobState::Dead,
            Some("gave up"),
            false,
        )
        .await
        .unwrap()
        .unwrap();
    let replayed = store
        .replay_job(job.id)
        .await
        .unwrap()
        .expect("dead job replays");
    assert_eq!((replayed.state, replayed.attempts), (JobState::Queued, 0));
    let d = store.deliveries(job.id).await.unwrap();
    assert_eq!(
        d.iter()
            .map(|d| (d.delivered, d.failures))
            .collect::<Vec<_>>(),
        [(false, 0), (true, 0)]
    );
    assert_eq!(
        store.replay_job(job.id).await.unwrap(),
        None,
        "queued job replayed"
    );
    assert_eq!(store.replay_job(JobId::new()).await.unwrap(), None);
}

/// Each series of the study appears once, with its smallest instance.
pub async fn series_summaries_sample_each_series(store: Store) {
    let (study, other_study) = (uid(60), uid(61));
    let (a, b, c) = (uid(62), uid(63), uid(64));
    let (a1, a2) = (format!("{a}.1"), format!("{a}.2"));
    store
        .put_instance(&instance(&a, &study, &a2, 10))
        .await
        .unwrap();
    store
        .put_instance(&instance(&a, &study, &a1, 11))
        .await
        .unwrap();
    store
        .put_instance(&instance(&b, &study, &uid(65), 12))
        .await
        .unwrap();
    store
        .put_instance(&instance(&c, &other_study, &uid(66), 13))
        .await
        .unwrap();

    let in_study = store.series_summaries(Some(&study)).await.unwrap();
    let got: Vec<(&str, &str, i64)> = in_study
        .iter()
        .map(|s| {
            (
                s.series.series_uid.as_str(),
                s.sample.sop_instance_uid.as_str(),
                s.series.instance_count,
            )
        })
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&(a.as_str(), a1.as_str(), 2)), "{got:?}");
    assert!(got.iter().any(|(s, _, n)| *s == b && *n == 1));
    let all = store.series_summaries(None).await.unwrap();
    assert!(all.iter().any(|s| s.series.series_uid == c));
    assert!(all.len() >= 3);
}

fn seg_version(source: &str, sop: &str, origin: SegOrigin) -> SegVersion {
    SegVersion {
        sop_instance_uid: sop.to_string(),
        series_uid: format!("{sop}.9"),
        source_series_uid: source.to_string(),
        study_uid: uid(70),
        version: 0,
        predecessor: None,
        origin,
        job_id: Some(JobId::new()),
        blob_key: format!("versions/{sop}.dcm"),
        sha256: "ab".repeat(32),
        history: vec![AlgorithmStep {
            algorithm_type: "AUTOMATIC".into(),
            name: Some("liverseg-unet".into()),
            version: Some("1".into()),
            software: Some("liverseg".into()),
            via: "worker".into(),
            at: 5,
        }],
        dice_vs_ai: Some(1.0),
        volume_ml: Some(1496.25),
        volume_change_ml: Some(0.0),
        created_at: 7,
    }
}

/// Versions count from 1, each links to the one before, a repeated SOP
/// Instance UID returns the stored version untouched, and the correction
/// is found by its job.
pub async fn seg_versions_are_numbered_and_linked(store: Store) {
    let source = uid(71);
    let (ai, fix1, fix2) = (uid(72), uid(73), uid(74));
    let v1 = store
        .add_seg_version(&seg_version(&source, &ai, SegOrigin::Ai))
        .await
        .unwrap();
    assert_eq!((v1.version, v1.predecessor.as_deref()), (1, None));
    let mut c1 = seg_version(&source, &fix1, SegOrigin::Correction);
    c1.dice_vs_ai = Some(0.93);
    c1.volume_change_ml = Some(-42.5);
    let v2 = store.add_seg_version(&c1).await.unwrap();
    assert_eq!(
        (v2.version, v2.predecessor.as_deref()),
        (2, Some(ai.as_str()))
    );
    assert_eq!(v2.dice_vs_ai, Some(0.93));
    assert_eq!(v2.history, c1.history);

    // Same UID again, other content: the first record stands.
    let mut again = c1.clone();
    again.sha256 = "cd".repeat(32);
    let kept = store.add_seg_version(&again).await.unwrap();
    assert_eq!(kept, v2);

    // No AI result to compare with: no Dice, no volume change.
    let mut c2 = seg_version(&source, &fix2, SegOrigin::Correction);
    c2.dice_vs_ai = None;
    c2.volume_change_ml = None;
    let v3 = store.add_seg_version(&c2).await.unwrap();
    assert_eq!((v3.dice_vs_ai, v3.volume_change_ml), (None, None));
    assert_eq!(
        (v3.version, v3.predecessor.as_deref()),
        (3, Some(fix1.as_str()))
    );

    let all = store.seg_versions(&source).await.unwrap();
    assert_eq!(
        all.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(store.seg_version(&fix1).await.unwrap(), Some(v2.clone()));
    assert_eq!(
        store.seg_version_for_job(c1.job_id.unwrap()).await.unwrap(),
        Some(v2)
    );
    // The AI version is not a correction job's input.
    let ai_job = store
        .seg_version(&ai)
        .await
        .unwrap()
        .unwrap()
        .job_id
        .unwrap();
    assert_eq!(store.seg_version_for_job(ai_job).await.unwrap(), None);
    assert_eq!(store.seg_version(&uid(75)).await.unwrap(), None);
}

/// Concurrent corrections of one series never share a version number.
pub async fn concurrent_seg_versions_get_distinct_numbers(store: Store) {
    let source = uid(76);
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            let v = seg_version(&source, &format!("{}.{n}", uid(77)), SegOrigin::Correction);
            tokio::spawn(async move { store.add_seg_version(&v).await.unwrap().version })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (1..=8).collect::<Vec<i64>>());
}

/// Retention: an old study is found and forgotten with its blob keys; a
/// newer one stays.
pub async fn forget_study_removes_only_that_study(store: Store) {
    let (old, new) = (uid(80), uid(81));
    let (old_series, new_series) = (uid(82), uid(83));
    let old_sop = uid(84);
    store
        .put_instance(&instance(&old_series, &old, &old_sop, 1_000))
        .await
        .unwrap();
    store
        .put_instance(&instance(&new_series, &new, &uid(85), 4_000_000_000_000))
        .await
        .unwrap();
    let expired = store.studies_received_before(2_000).await.unwrap();
    assert!(expired.contains(&old), "{expired:?}");
    assert!(!expired.contains(&new));
    let keys = store.forget_study(&old).await.unwrap();
    assert_eq!(keys, vec![format!("{old}/{old_series}/{old_sop}.dcm")]);
    assert_eq!(store.get_instance(&old_sop).await.unwrap(), None);
    assert_eq!(store.get_series(&old_series).await.unwrap(), None);
    assert!(store.get_series(&new_series).await.unwrap().is_some());
    assert!(
        !store
            .studies_received_before(2_000)
            .await
            .unwrap()
            .contains(&old)
    );
}
