//! The load suite, bounded for CI: 32 associations at once, each sending
//! two studies, while 4 OHIF-like clients browse over DICOMweb. Everything
//! must arrive once, become exactly one job per series and finish, and
//! every DICOMweb answer must be good. The figures (throughput, p99,
//! memory) come from `cargo bench -p liverseg-tests --bench load`.

use liverseg_tests::load::{Plan, run};

#[test]
fn thirty_two_associations_and_four_viewers_at_once() {
    let plan = Plan {
        associations: 32,
        studies_per_association: 2,
        slices: 20,
        size: 128,
        viewers: 4,
        source: None,
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(report) = run(&plan, tmp.path()) else {
        eprintln!("skipping: PostgreSQL, Redis or dcmtk is missing");
        return;
    };
    report.print(&plan);
    assert_eq!(report.send_failures, 0, "every association succeeded");
    assert_eq!(report.study_sends.0.len(), report.studies);
    assert_eq!(report.jobs, report.studies, "one job per study");
    assert_eq!(report.duplicate_jobs, 0);
    assert_eq!(report.jobs_done, report.studies, "every job finished");
    assert!(
        report.dicomweb_errors.is_empty(),
        "{:?}",
        report.dicomweb_errors
    );
    for (kind, latencies) in &report.dicomweb {
        assert!(!latencies.0.is_empty(), "no {kind} request completed");
    }
}
