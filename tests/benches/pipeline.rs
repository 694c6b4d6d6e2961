//! End-to-end latency: from the last instance of the IRCADb series received
//! (the sending association released) to the SEG, STL and SR all stored in
//! a real Orthanc, with the worker's stage breakdown.
//!
//! `cargo bench -p liverseg-tests --bench pipeline` (needs LIVERSEG_TEST_DATA,
//! Orthanc and dcmtk). Each run uses a fresh liverseg data directory, so the
//! series is a new job every time.

use liverseg_tests::dcmtk::storescu;
use liverseg_tests::orthanc::Orthanc;
use liverseg_tests::service::Service;
use liverseg_tests::{test_data, wait_until};
use std::time::{Duration, Instant};

const RUNS: usize = 3;
const STAGES: [&str; 6] = ["decode", "inference", "seg", "mesh", "sr", "delivery"];

fn main() {
    let Some(data) = test_data() else { return };
    let series_dir = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let first = liverseg_dicom::scu::collect_files(&series_dir).unwrap()[0].clone();
    let id = liverseg_dicom::instance::read_header(&first)
        .unwrap()
        .identity;
    let tmp = tempfile::tempdir().unwrap();
    let Some(pacs) = Orthanc::start(tmp.path(), None) else {
        return;
    };
    let mut totals = Vec::new();
    let mut stages: Vec<Vec<f64>> = vec![Vec::new(); STAGES.len()];
    for run in 0..RUNS {
        let dir = tmp.path().join(format!("run{run}"));
        std::fs::create_dir_all(&dir).unwrap();
        let svc = Service::start(
            &dir,
            &[
                ("LIVERSEG__DELIVERY__DESTINATIONS", &pacs.destination()),
                ("LIVERSEG__LISTENER__COMPLETE_ON_RELEASE", "true"),
                ("LIVERSEG__LOG__LEVEL", "warn"),
            ],
        );
        let before: usize = pacs
            .study_series(&id.study_uid)
            .iter()
            .map(|s| s.instances.len())
            .sum();
        let out = storescu(svc.dicom_port, "LIVERSEG", "BENCH", &[&series_dir], &[]).unwrap();
        assert!(out.status.success());
        // storescu exits once the association is released.
        let released = Instant::now();
        let done = wait_until(Duration::from_secs(300), || {
            svc.jobs_for(&id.series_uid)
                .first()
                .is_some_and(|j| j["state"] == "done")
        });
        let total = released.elapsed().as_secs_f64();
        assert!(done, "job not done; log:\n{}", svc.log_text());
        let job = svc.wait_for_job_state(&id.series_uid, "done", 1);
        let summary: serde_json::Value =
            serde_json::from_str(job["detail"].as_str().unwrap()).unwrap();
        let secs = &summary["seconds"];
        for (k, name) in STAGES.iter().enumerate() {
            stages[k].push(secs[name].as_f64().unwrap_or(f64::NAN));
        }
        // The C-STORE answers came back before the job was marked done.
        let after: usize = pacs
            .study_series(&id.study_uid)
            .iter()
            .map(|s| s.instances.len())
            .sum();
        assert!(after >= before.max(3), "results missing at the PACS");
        totals.push(total);
        eprintln!("run {run}: {total:.2} s {secs}");
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("IRCADb 129 x 512 x 512, release build, {RUNS} runs, medians:");
    let mut sum = 0.0;
    for (k, name) in STAGES.iter().enumerate() {
        let m = median(&mut stages[k]);
        sum += m;
        println!("  {name:<10} {m:>6.2} s");
    }
    let total = median(&mut totals);
    println!(
        "  {:<10} {:>6.2} s  (completion check, queue, store writes)",
        "other",
        total - sum
    );
    println!(
        "  {:<10} {:>6.2} s  last instance -> all results acknowledged",
        "total", total
    );
    println!(
        "  scaled to 150 slices: {:.2} s (goal < 10 s)",
        total * 150.0 / 129.0
    );
}
