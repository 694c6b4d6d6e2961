//! Worker capacity: studies per hour per worker core, and the memory one
//! worker process needs, measured as deployed on Kubernetes: the listener
//! in one process, a worker (concurrency 1) in another, PostgreSQL and
//! Redis between them, results delivered to a real Orthanc.
//!
//! STUDIES copies of the IRCADb CT (new Study, Series and SOP Instance UIDs
//! each, made with dcmodify) are received and queued first; then the worker
//! starts, and the clock runs from its readiness (the model loaded) to the
//! last job done, so the figure is the worker's own throughput. The worker's
//! resident memory is sampled every 50 ms. The anchor is the student
//! project's budget of 1 s per slice.
//!
//! `cargo bench -p liverseg-tests --bench capacity` (needs LIVERSEG_TEST_DATA,
//! dcmtk, Orthanc, redis-server and PostgreSQL).

use liverseg_tests::dcmtk::{modified_copy, storescu};
use liverseg_tests::load::rss_kib;
use liverseg_tests::orthanc::Orthanc;
use liverseg_tests::postgres::PgServer;
use liverseg_tests::redis::RedisServer;
use liverseg_tests::service::Service;
use liverseg_tests::{free_port, test_data, wait_until};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const STUDIES: usize = 6;

/// A copy of `source` as a new study: its own Study, Series and SOP
/// Instance UIDs (the series stays one series).
fn copy_as_new_study(source: &Path, to: &Path, n: usize) -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let study = format!("2.25.{stamp}{n}1");
    let series = format!("2.25.{stamp}{n}2");
    let args = [
        "-gin".to_string(),
        "-m".to_string(),
        format!("(0020,000D)={study}"),
        "-m".to_string(),
        format!("(0020,000E)={series}"),
    ];
    modified_copy(source, to, &args);
    series
}

fn main() {
    let Some(data) = test_data() else { return };
    let (Some(redis), Some(pg)) = (RedisServer::start(), PgServer::start()) else {
        eprintln!("skipping: redis-server or PostgreSQL is missing");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(pacs) = Orthanc::start(&tmp.path().join("pacs"), None) else {
        return;
    };
    let source = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let slices_per_study = liverseg_dicom::scu::collect_files(&source).unwrap().len();
    let studies: Vec<(PathBuf, String)> = (0..STUDIES)
        .map(|n| {
            let dir = tmp.path().join(format!("study{n}"));
            let series = copy_as_new_study(&source, &dir, n);
            (dir, series)
        })
        .collect();

    let metadata_url = pg.create_database("capacity");
    let destination = pacs.destination();
    let env = [
        ("LIVERSEG__STORAGE__METADATA_URL", metadata_url.as_str()),
        ("LIVERSEG__QUEUE__URL", redis.url.as_str()),
        ("LIVERSEG__DELIVERY__DESTINATIONS", destination.as_str()),
        ("LIVERSEG__LISTENER__COMPLETE_ON_RELEASE", "true"),
        ("LIVERSEG__LOG__LEVEL", "warn"),
    ];
    let dir = tmp.path().join("liverseg");
    std::fs::create_dir_all(&dir).unwrap();
    let front = Service::start_roles(&dir, free_port(), Some("listener"), &env);
    for (study_dir, _) in &studies {
        let out = storescu(front.dicom_port, "LIVERSEG", "BENCH", &[study_dir], &[]).unwrap();
        assert!(out.status.success(), "storescu failed");
    }
    let queued = wait_until(Duration::from_secs(120), || {
        front
            .jobs()
            .iter()
            .filter(|j| j["state"] == "queued")
            .count()
            == STUDIES
    });
    assert!(queued, "jobs not queued: {:?}", front.jobs());

    let started = Instant::now();
    let worker = Service::start_roles(&dir, free_port(), Some("worker"), &env);
    let ready = started.elapsed().as_secs_f64();
    let pid = worker.pid().unwrap();
    let idle_kib = rss_kib(pid);
    let (peak, stop) = (
        Arc::new(AtomicU64::new(idle_kib)),
        Arc::new(AtomicBool::new(false)),
    );
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let clock = Instant::now();
    let done = wait_until(Duration::from_secs(1800), || {
        let jobs = front.jobs();
        jobs.iter().filter(|j| j["state"] == "done").count() == STUDIES
    });
    let elapsed = clock.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert!(
        done,
        "jobs not done: {:?}\n{}",
        front.jobs(),
        worker.log_text()
    );
    let jobs = front.jobs();
    let slices_run: u64 = jobs
        .iter()
        .map(|j| {
            let s: serde_json::Value = serde_json::from_str(j["detail"].as_str().unwrap()).unwrap();
            s["slices_run"].as_u64().unwrap()
        })
        .sum();

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_study = elapsed / STUDIES as f64;
    let per_hour = 3600.0 / per_study;
    let slices = (STUDIES * slices_per_study) as f64;
    let per_slice = elapsed / slices;
    println!(
        "capacity: {STUDIES} studies of {slices_per_study} slices (IRCADb 01 copies), one worker process, concurrency 1, {cores} cores, release build"
    );
    println!("  worker start to ready (model loaded): {ready:.2} s");
    println!(
        "  {STUDIES} studies in {elapsed:.1} s: {per_study:.2} s per study (decode, inference on {slices_run} of {} slices, SEG, mesh, SR, store, C-STORE to Orthanc)",
        STUDIES * slices_per_study
    );
    println!(
        "  throughput: {per_hour:.0} studies/hour per worker, {:.0} studies/hour per worker core",
        per_hour / cores as f64
    );
    println!(
        "  per slice of the study: {:.3} s; anchor (student project budget) 1 s per slice: {:.1}x faster",
        per_slice,
        1.0 / per_slice
    );
    println!(
        "  worker memory: {:.0} MiB resident when ready, {:.0} MiB peak",
        idle_kib as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0
    );
}
