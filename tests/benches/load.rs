//! Load figures: 32 associations at once, each sending 3 studies of 60
//! slices of 512 x 512, while 4 OHIF-like clients browse over DICOMweb
//! (search, series, metadata, every frame); then one 500-slice study alone,
//! for the worker's peak memory (goal: under 1 GiB).
//!
//! `LIVERSEG_TEST_DATA=../shared/data cargo bench -p liverseg-tests --bench
//! load` (needs PostgreSQL, Redis and dcmtk). `LOAD_BENCH_STUDIES_PER_ASSOCIATION` and `LOAD_BENCH_SLICES`
//! change the first run; `LOAD_BENCH_ONLY_TALL=1` skips it.

use liverseg_tests::load::{Plan, run};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let plan = Plan {
        associations: 32,
        studies_per_association: knob("LOAD_BENCH_STUDIES_PER_ASSOCIATION", 3),
        slices: knob("LOAD_BENCH_SLICES", 60),
        size: 512,
        viewers: 4,
        source: None,
    };
    let tmp = tempfile::tempdir().unwrap();
    if std::env::var_os("LOAD_BENCH_ONLY_TALL").is_none() {
        let Some(report) = run(&plan, &tmp.path().join("many")) else {
            eprintln!("skipping: PostgreSQL, Redis or dcmtk is missing");
            return;
        };
        report.print(&plan);
    }

    // The 500-slice study is built from real CT (the IRCADb series, up and
    // down), so that the model finds a liver and every stage after it runs.
    let Some(data) = std::env::var_os("LIVERSEG_TEST_DATA") else {
        eprintln!("skipping the 500-slice study: LIVERSEG_TEST_DATA is not set");
        return;
    };
    let big = Plan {
        associations: 1,
        studies_per_association: 1,
        slices: 500,
        size: 512,
        viewers: 0,
        source: Some(std::path::Path::new(&data).join("dicom/ircadb_01/PATIENT_DICOM")),
    };
    let Some(report) = run(&big, &tmp.path().join("big")) else {
        return;
    };
    println!(
        "one 500-slice study (512 x 512): worker peak {:.0} MiB (goal < 1024 MiB), done in {:.1} s",
        report.worker_peak_mib,
        report.total.as_secs_f64()
    );
}
