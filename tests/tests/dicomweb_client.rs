//! liverseg's DICOMweb server (PS3.18, `/dicom-web` on the gateway port)
//! checked from the outside by a real client: the IRCADb CT goes in by
//! C-STORE, then `tests/python/dicomweb_check.py` (dicomweb-client and
//! pydicom) runs QIDO-RS, WADO-RS (instances, metadata with BulkDataURI,
//! frames, bulk data, rendered PNG) and STOW-RS against it and compares
//! every answer with the files that were sent. The same script passes
//! against Orthanc's DICOMweb plugin, the reference.

use liverseg_dicom::instance::read_header;
use liverseg_tests::dcmtk::storescu;
use liverseg_tests::python::python;
use liverseg_tests::service::Service;
use liverseg_tests::test_data;
use std::path::{Path, PathBuf};
use std::process::Command;

fn check_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/dicomweb_check.py")
}

/// Runs `dicomweb_check.py ARGS`; (exit success, stdout, stderr).
fn run_check(py: &Path, args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(py)
        .arg(check_script())
        .args(args)
        .output()
        .expect("run dicomweb_check.py");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dicomweb_client_round_trip_against_liverseg() {
    let Some(data) = test_data() else { return };
    let Some(py) = python() else { return };
    let series_dir = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let files = liverseg_dicom::scu::collect_files(&series_dir).unwrap();
    let id = read_header(&files[0]).unwrap().identity;
    let tmp = tempfile::tempdir().unwrap();
    let svc = Service::start(tmp.path(), &[]);

    let Some(sent) = storescu(svc.dicom_port, "LIVERSEG", "MODALITY", &[&series_dir], &[]) else {
        return;
    };
    assert!(
        sent.status.success(),
        "storescu: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    svc.wait_for_job_state(&id.series_uid, "done", 300);

    // Two copies of a CT slice with UIDs new to the server, for STOW-RS.
    let upload_dir = tmp.path().join("upload");
    let (ok, stdout, stderr) = run_check(
        &py,
        &[
            "make-upload".as_ref(),
            "--ct-file".as_ref(),
            files[files.len() / 2].as_os_str(),
            "--out".as_ref(),
            upload_dir.as_os_str(),
            "--count".as_ref(),
            "2".as_ref(),
        ],
    );
    assert!(ok, "make-upload failed:\n{stdout}{stderr}");
    let made: serde_json::Value = serde_json::from_str(stdout.trim()).expect("make-upload JSON");
    let uploads: Vec<String> = made["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();

    let root = format!("http://127.0.0.1:{}/dicom-web", svc.gateway_port);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "roundtrip".as_ref(),
        "--url".as_ref(),
        root.as_ref(),
        "--study".as_ref(),
        id.study_uid.as_ref(),
        "--series".as_ref(),
        id.series_uid.as_ref(),
        "--ct-dir".as_ref(),
        series_dir.as_os_str(),
        "--upload".as_ref(),
    ];
    args.extend(uploads.iter().map(std::ffi::OsStr::new));
    let (ok, stdout, stderr) = run_check(&py, &args);
    let summary: Option<serde_json::Value> = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok());
    eprintln!("dicomweb_check: {}", stdout.trim());
    assert!(
        ok,
        "DICOMweb checks failed against {root}: {:?}\n{stderr}\nliverseg log:\n{}",
        summary.as_ref().map(|s| &s["failed"]),
        svc.log_text()
    );
    let summary = summary.expect("dicomweb_check prints one JSON line");
    assert_eq!(summary["ok"], true, "{summary}");
    // The counts the checks saw, against the files.
    let checks = &summary["checks"];
    assert_eq!(
        checks["qido_instances"]["instances"],
        files.len(),
        "{summary}"
    );
    assert_eq!(
        checks["wado_metadata"]["instances"],
        files.len(),
        "{summary}"
    );
    assert_eq!(checks["stow_qido"]["instances"], uploads.len(), "{summary}");
    // liverseg must answer dicomweb-client's own port-less Host header with
    // BulkDataURIs that still reach it (Orthanc does not).
    let portless = &summary["notes"]["bulkdata_uri_with_portless_host"];
    assert_eq!(portless["reachable_authority"], true, "{summary}");
}
