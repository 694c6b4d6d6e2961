//! The gateway against a real `liverseg serve`: DICOMweb searches and
//! retrieval of the study it processed, a corrected SEG resubmitted by
//! STOW-RS (with OHIF's export flaws) becoming version 2 with the Dice an
//! independent computation expects, its mesh and report, the rendered PNG
//! with the liver overlay, the 3D page's API, and bad uploads refused with
//! a JSON reason while nothing is stored.

use liverseg_dicom::instance::read_header;
use liverseg_tests::http::{Reply, parts, request, stow_body};
use liverseg_tests::python::{python, testkit};
use liverseg_tests::service::{Processed, Service, ircadb_processed};
use liverseg_tests::{test_data, wait_until};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

const STOW_TYPE: &str = "multipart/related; type=\"application/dicom\"; boundary=XyZ";
/// The upload limit the service runs with here (the CT arrives by C-STORE).
const MAX_UPLOAD: usize = 16 << 20;

fn get(svc: &Service, path: &str, accept: &str) -> Reply {
    request(svc.gateway_port, "GET", path, &[("Accept", accept)], b"")
}

fn stow(svc: &Service, files: &[Vec<u8>]) -> Reply {
    request(
        svc.gateway_port,
        "POST",
        "/dicom-web/studies",
        &[
            ("Content-Type", STOW_TYPE),
            ("Origin", "http://viewer.example"),
        ],
        &stow_body("XyZ", files),
    )
}

fn uid_of(item: &Value, tag: &str) -> String {
    item[tag]["Value"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn versions(svc: &Service, series: &str) -> Vec<Value> {
    let r = get(svc, &format!("/api/v1/series/{series}/versions"), "*/*");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().unwrap().clone()
}

/// What is stored for the study: (instances, versions).
fn stored(svc: &Service, study: &str, series: &str) -> (usize, usize) {
    let r = get(
        svc,
        &format!("/dicom-web/studies/{study}/instances"),
        "application/dicom+json",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    (
        r.json().as_array().unwrap().len(),
        versions(svc, series).len(),
    )
}

fn assert_refused(r: &Reply, status: u16, says: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json();
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.to_lowercase().contains(says),
        "error {error:?} should mention {says:?}: {body}"
    );
    assert!(
        r.header("access-control-allow-origin").is_some(),
        "CORS headers are missing on an error: {:?}",
        r.headers
    );
}

fn variant(py: &Path, seg: &Path, out: &Path, args: &[&str]) -> Value {
    let mut all: Vec<&OsStr> = vec![OsStr::new("seg-variant"), seg.as_os_str(), out.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    let o = testkit(py, &all);
    serde_json::from_slice(&o.stdout).expect("seg-variant JSON")
}

/// Red pixels (the overlay) in a rendered PNG.
fn reddish_pixels(png_bytes: &[u8]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf[..info.buffer_size()]
        .chunks(3)
        .filter(|p| p[0] as i32 > p[1] as i32 + 60)
        .count()
}

#[test]
fn dicomweb_corrections_and_refusals() {
    let Some(data) = test_data() else {
        eprintln!("skipped: LIVERSEG_TEST_DATA is not set");
        return;
    };
    let Some(py) = python() else {
        eprintln!("skipped: the test Python environment is missing");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let max_upload = MAX_UPLOAD.to_string();
    let Processed {
        svc,
        ct_dir,
        study,
        series,
    } = ircadb_processed(
        dir.path(),
        &data,
        &[("LIVERSEG__GATEWAY__MAX_UPLOAD_BYTES", &max_upload)],
    );
    let files = liverseg_dicom::scu::collect_files(&ct_dir).unwrap();

    // The AI result is version 1.
    let v = versions(&svc, &series);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["origin"], "ai");
    assert_eq!(v[0]["version"], 1);
    let ai_sop = v[0]["sop_instance_uid"].as_str().unwrap().to_string();

    // QIDO: the study with the CT and the three results.
    let r = get(
        &svc,
        &format!("/dicom-web/studies?StudyInstanceUID={study}&includefield=all"),
        "application/dicom+json",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/dicom+json")
    );
    let studies = r.json();
    assert_eq!(studies.as_array().unwrap().len(), 1, "{studies}");
    let modalities = &studies[0]["00080061"]["Value"];
    for m in ["CT", "SEG", "SR", "M3D"] {
        assert!(
            modalities.as_array().unwrap().iter().any(|v| v == m),
            "{m} missing from {modalities}"
        );
    }
    assert_eq!(studies[0]["00201206"]["Value"][0], 4);
    let seg_series = get(
        &svc,
        &format!("/dicom-web/studies/{study}/series?Modality=SEG"),
        "application/dicom+json",
    )
    .json();
    assert_eq!(seg_series.as_array().unwrap().len(), 1, "{seg_series}");
    let seg_series_uid = uid_of(&seg_series[0], "0020000E");

    // WADO-RS: the AI SEG as Part 10 inside multipart/related.
    let r = get(
        &svc,
        &format!("/dicom-web/studies/{study}/series/{seg_series_uid}/instances/{ai_sop}"),
        "multipart/related; type=\"application/dicom\"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let bodies = parts(r.header("content-type").unwrap(), &r.body);
    assert_eq!(bodies.len(), 1);
    let ai_seg = dir.path().join("ai-seg.dcm");
    std::fs::write(&ai_seg, &bodies[0]).unwrap();
    assert_eq!(
        read_header(&ai_seg).unwrap().identity.sop_instance_uid,
        ai_sop
    );

    // Bad input: a JSON reason, CORS headers, nothing stored.
    let before = stored(&svc, &study, &series);
    let r = request(
        svc.gateway_port,
        "POST",
        "/dicom-web/studies",
        &[
            ("Content-Type", STOW_TYPE),
            ("Origin", "http://viewer.example"),
        ],
        b"--XyZ\r\nContent-Type: application/dicom\r\n\r\nDICM but cut short",
    );
    assert_refused(&r, 400, "malformed multipart");
    let r = request(
        svc.gateway_port,
        "POST",
        "/dicom-web/studies",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "http://viewer.example"),
        ],
        b"{\"not\": \"dicom\"}",
    );
    assert_refused(&r, 415, "multipart/related");
    let unknown = dir.path().join("unknown.dcm");
    variant(&py, &ai_seg, &unknown, &["--mode", "unknown-series"]);
    let r = stow(&svc, &[std::fs::read(&unknown).unwrap()]);
    assert_refused(&r, 409, "not held here");
    let shifted = dir.path().join("shifted.dcm");
    variant(&py, &ai_seg, &shifted, &["--mode", "shifted"]);
    let r = stow(&svc, &[std::fs::read(&shifted).unwrap()]);
    assert_refused(&r, 409, "does not match the geometry");
    let r = stow(&svc, &[vec![0u8; MAX_UPLOAD + 1024]]);
    assert_refused(&r, 413, "exceeds");
    let r = stow(&svc, &[b"not a DICOM file at all".to_vec()]);
    assert_refused(&r, 409, "no instance was stored");
    assert_eq!(
        stored(&svc, &study, &series),
        before,
        "a refused upload stored something"
    );

    // A correction with OHIF's export flaws: the AI mask eroded by 2 voxels.
    let eroded = dir.path().join("eroded.dcm");
    let expect = variant(
        &py,
        &ai_seg,
        &eroded,
        &["--mode", "erode", "--voxels", "2", "--ohif-flaws"],
    );
    let fix_sop = expect["sop_instance_uid"].as_str().unwrap().to_string();
    let upload = std::fs::read(&eroded).unwrap();
    let r = stow(&svc, std::slice::from_ref(&upload));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        uid_of(&r.json()["00081199"]["Value"][0], "00081155"),
        fix_sop
    );
    // The same upload again changes nothing.
    assert_eq!(stow(&svc, &[upload]).status, 200);
    let v = versions(&svc, &series);
    assert_eq!(v.len(), 2, "{v:?}");
    let fix = &v[1];
    assert_eq!(fix["version"], 2);
    assert_eq!(fix["origin"], "correction");
    assert_eq!(fix["predecessor"], ai_sop.as_str());
    let dice = fix["dice_vs_ai"].as_f64().unwrap();
    let expected = expect["expected_dice"].as_f64().unwrap();
    assert!(
        (dice - expected).abs() < 1e-9,
        "Dice {dice} recorded, {expected} computed independently"
    );
    assert!(fix["volume_change_ml"].as_f64().unwrap() < 0.0, "{fix}");
    let history = fix["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["algorithm_type"], "AUTOMATIC");
    assert_eq!(history[1]["algorithm_type"], "MANUAL");
    assert_eq!(history[1]["via"], "stow");

    // A correction by C-STORE (a PACS sending a radiologist's edit back)
    // becomes version 3, after version 2.
    let by_dimse = dir.path().join("by-dimse.dcm");
    let expect3 = variant(
        &py,
        &ai_seg,
        &by_dimse,
        &["--mode", "erode", "--voxels", "1"],
    );
    let out =
        liverseg_tests::dcmtk::storescu(svc.dicom_port, "LIVERSEG", "PACS", &[&by_dimse], &[])
            .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = versions(&svc, &series);
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(v[2]["sop_instance_uid"], expect3["sop_instance_uid"]);
    assert_eq!(v[2]["predecessor"], fix_sop.as_str());
    assert_eq!(v[2]["history"].as_array().unwrap().len(), 3);
    assert_eq!(v[2]["history"][2]["via"], "cstore");
    let dice3 = v[2]["dice_vs_ai"].as_f64().unwrap();
    assert!((dice3 - expect3["expected_dice"].as_f64().unwrap()).abs() < 1e-9);
    // A C-STORE'd SEG for an unknown series is refused with a status.
    let out = liverseg_tests::dcmtk::storescu(svc.dicom_port, "LIVERSEG", "PACS", &[&unknown], &[])
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        liverseg_tests::dcmtk::acknowledged_files(&log).is_empty(),
        "an unknown-series SEG was accepted:\n{log}"
    );
    assert_eq!(versions(&svc, &series).len(), 3);

    // Its jobs make the meshes and the reports.
    let mut jobs = Vec::new();
    let done = wait_until(Duration::from_secs(600), || {
        jobs = svc.jobs_for(&series);
        jobs.iter()
            .filter(|j| j["kind"] == "correction" && j["state"] == "done")
            .count()
            == 2
    });
    assert!(done, "correction job: {jobs:?}\n{}", svc.log_text());

    // The stored correction is repaired: highdicom reads it.
    let fix_series = fix["series_uid"].as_str().unwrap();
    let r = get(
        &svc,
        &format!("/dicom-web/studies/{study}/series/{fix_series}/instances/{fix_sop}"),
        "multipart/related; type=\"application/dicom\"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let stored_fix = dir.path().join("stored-fix.dcm");
    std::fs::write(
        &stored_fix,
        &parts(r.header("content-type").unwrap(), &r.body)[0],
    )
    .unwrap();
    let ct_uids: Vec<String> = files
        .iter()
        .map(|f| read_header(f).unwrap().identity.sop_instance_uid)
        .collect();
    let uids_file = dir.path().join("uids.txt");
    std::fs::write(&uids_file, ct_uids.join("\n")).unwrap();
    let pixels_file = dir.path().join("fix.u8");
    let o = testkit(
        &py,
        &[
            OsStr::new("seg-pixels"),
            stored_fix.as_os_str(),
            uids_file.as_os_str(),
            pixels_file.as_os_str(),
            OsStr::new("--allow-missing"),
        ],
    );
    let read: Value = serde_json::from_slice(&o.stdout).unwrap();
    let voxels = std::fs::read(&pixels_file)
        .unwrap()
        .iter()
        .filter(|&&v| v != 0)
        .count();
    assert_eq!(
        voxels as u64,
        expect["voxels_after"].as_u64().unwrap(),
        "highdicom read {read}"
    );

    // Rendered PNG of a slice inside the liver, with and without overlay.
    let obj = dicom_object::open_file(&ai_seg).unwrap();
    let frames = obj
        .element(dicom_dictionary_std::tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    let mid = &frames[frames.len() / 2];
    let source = liverseg_dicom::instance::first_item(
        liverseg_dicom::instance::first_item(
            mid,
            dicom_dictionary_std::tags::DERIVATION_IMAGE_SEQUENCE,
        )
        .unwrap(),
        dicom_dictionary_std::tags::SOURCE_IMAGE_SEQUENCE,
    )
    .unwrap();
    let slice = liverseg_dicom::instance::text(
        source,
        dicom_dictionary_std::tags::REFERENCED_SOP_INSTANCE_UID,
    )
    .unwrap();
    let path = format!("/dicom-web/studies/{study}/series/{series}/instances/{slice}/rendered");
    let r = get(&svc, &path, "image/png");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/png"));
    let with = reddish_pixels(&r.body);
    let r = get(
        &svc,
        &format!("{path}?overlay=false&window=40,400"),
        "image/png",
    );
    assert_eq!(r.status, 200);
    assert_eq!(reddish_pixels(&r.body), 0);
    assert!(with > 500, "only {with} overlay pixels on a liver slice");
    assert_eq!(
        get(&svc, &format!("{path}?window=wide"), "image/png").status,
        400
    );

    // The 3D page's data: the newest version's mesh and volume.
    let r = get(
        &svc,
        &format!("/api/v1/studies/{study}/liver"),
        "application/json",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let liver = r.json();
    let newest = &versions(&svc, &series)[2];
    assert_eq!(liver["version"], 3);
    assert!(
        (liver["volume_ml"].as_f64().unwrap() - newest["volume_ml"].as_f64().unwrap()).abs() < 1e-6
    );
    // A correction of a whole liver: the scan's coverage, as the AI's job
    // judged it, comes with it for the page to show.
    assert_eq!(liver["coverage"]["complete"], true, "{liver}");
    assert_eq!(liver["flags"], serde_json::json!([]), "{liver}");
    let glb = get(&svc, liver["glb"].as_str().unwrap(), "*/*");
    assert_eq!(glb.status, 200);
    assert!(glb.body.starts_with(b"glTF"));
    let stl = get(&svc, liver["stl"].as_str().unwrap(), "*/*");
    assert_eq!(stl.status, 200);
    assert!(stl.body.len() > 84 + 50 * 1000);
}

/// A CT series uploaded by STOW-RS in several requests (as OHIF's upload
/// button sends it) becomes one job and is segmented like a C-STORE one.
#[test]
fn a_series_uploaded_by_stow_is_segmented() {
    let Some(data) = test_data() else {
        eprintln!("skipped: LIVERSEG_TEST_DATA is not set");
        return;
    };
    let ct_dir = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let files = liverseg_dicom::scu::collect_files(&ct_dir).unwrap();
    let series = read_header(&files[0]).unwrap().identity.series_uid;
    let dir = tempfile::tempdir().unwrap();
    // Long enough that the series is not taken as complete between batches.
    let svc = Service::start(dir.path(), &[("LIVERSEG__LISTENER__STABLE_SECONDS", "10")]);
    for batch in files.chunks(50) {
        let bodies: Vec<Vec<u8>> = batch.iter().map(|f| std::fs::read(f).unwrap()).collect();
        let r = stow(&svc, &bodies);
        assert_eq!(r.status, 200, "{}", r.text());
        let stored = r.json()["00081199"]["Value"].as_array().unwrap().len();
        assert_eq!(stored, batch.len());
    }
    let job = svc.wait_for_job_state(&series, "done", 900);
    assert_eq!(job["instance_count"], files.len());
    assert_eq!(job["kind"], "segment");
    let v = versions(&svc, &series);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0]["volume_ml"].as_f64().unwrap() > 1000.0, "{v:?}");
}
