//! Results back to a real PACS (Orthanc on loopback): auto-routing, the SEG,
//! Encapsulated STL and SR arriving in the study, retries while the PACS is
//! down, dead letters and replay, and idempotent re-runs after `kill -9`.

use liverseg_dicom::instance::read_header;
use liverseg_tests::dcmtk::storescu;
use liverseg_tests::orthanc::{Orthanc, StoredSeries};
use liverseg_tests::service::{Service, http_get};
use liverseg_tests::{free_port, test_data, wait_until};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cross-validated floor of the shipped model on this patient (as in
/// tests/segment.rs).
const IRCADB_01_MIN_DICE: f64 = 0.945;
/// Modalities of the three result objects.
const RESULT_MODALITIES: [&str; 3] = ["SEG", "SR", "M3D"];

struct Ircadb {
    series_dir: PathBuf,
    mask_dir: PathBuf,
    study_uid: String,
    series_uid: String,
}

fn ircadb() -> Option<Ircadb> {
    let data = test_data()?;
    let series_dir = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let first = liverseg_dicom::scu::collect_files(&series_dir).unwrap()[0].clone();
    let id = read_header(&first).unwrap().identity;
    Some(Ircadb {
        series_dir,
        mask_dir: data.join("dicom/ircadb_01/MASKS_DICOM/liver"),
        study_uid: id.study_uid,
        series_uid: id.series_uid,
    })
}

/// The result series Orthanc holds for the study, once all three are there.
fn wait_for_results(pacs: &Orthanc, study: &str, secs: u64, svc: &Service) -> Vec<StoredSeries> {
    let mut last = Vec::new();
    let ok = wait_until(Duration::from_secs(secs), || {
        last = pacs.study_series(study);
        RESULT_MODALITIES.iter().all(|m| {
            last.iter()
                .any(|s| s.modality == *m && !s.instances.is_empty())
        })
    });
    assert!(
        ok,
        "results did not reach the PACS: {last:?}\nliverseg log:\n{}\northanc log:\n{}",
        svc.log_text(),
        pacs.log_text()
    );
    last.into_iter()
        .filter(|s| RESULT_MODALITIES.contains(&s.modality.as_str()))
        .collect()
}

/// Exactly one series with one instance per result kind; their SOP UIDs.
fn one_set(pacs: &Orthanc, series: &[StoredSeries]) -> Vec<String> {
    let series: Vec<&StoredSeries> = series
        .iter()
        .filter(|s| RESULT_MODALITIES.contains(&s.modality.as_str()))
        .collect();
    for m in RESULT_MODALITIES {
        let of_kind: Vec<_> = series.iter().filter(|s| s.modality == m).collect();
        assert_eq!(of_kind.len(), 1, "{m}: {series:?}");
        assert_eq!(of_kind[0].instances.len(), 1, "{m}: {series:?}");
    }
    let mut uids: Vec<String> = series
        .iter()
        .map(|s| pacs.sop_instance_uid(&s.instances[0]))
        .collect();
    uids.sort();
    uids
}

/// Downloads the SEG from the PACS and scores it against the expert mask.
fn seg_dice(pacs: &Orthanc, series: &[StoredSeries], mask_dir: &Path, tmp: &Path) -> f64 {
    let seg = series.iter().find(|s| s.modality == "SEG").unwrap();
    let path = tmp.join("from-pacs-seg.dcm");
    std::fs::write(&path, pacs.instance_file(&seg.instances[0])).unwrap();
    let c = liverseg_tests::cli::eval(&path, mask_dir);
    c["dice"].as_f64().unwrap()
}

fn send_ct(port: u16, called: &str, dir: &Path) {
    let out = storescu(port, called, "MODALITY", &[dir], &[]).unwrap();
    assert!(
        out.status.success(),
        "storescu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PACS configured but not started, and liverseg delivering to it by
/// C-STORE (and STOW-RS when `stow`) with 1 s backoff up to `backoff_max`.
fn pacs_down(
    dir: &Path,
    stow: bool,
    backoff_max: u32,
    max_attempts: u32,
) -> Option<(Orthanc, Service)> {
    let pacs = Orthanc::configure(dir, None)?;
    let (max, attempts) = (backoff_max.to_string(), max_attempts.to_string());
    let root = pacs.dicomweb_root();
    let mut env = vec![
        ("LIVERSEG__DELIVERY__DESTINATIONS", pacs.destination()),
        (
            "LIVERSEG__DELIVERY__BACKOFF_INITIAL_SECONDS",
            "1".to_string(),
        ),
        ("LIVERSEG__DELIVERY__BACKOFF_MAX_SECONDS", max),
        ("LIVERSEG__DELIVERY__MAX_ATTEMPTS", attempts),
    ];
    if stow {
        env.push(("LIVERSEG__DELIVERY__STOW_URLS", root));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let svc = Service::start(dir, &env);
    Some((pacs, svc))
}

/// The hospital path: the modality stores to the PACS, the PACS routes the
/// stable CT series to liverseg, liverseg sends the results back.
#[test]
fn pacs_routes_ct_and_receives_seg_stl_and_sr() {
    let Some(ct) = ircadb() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let our_port = free_port();
    let Some(pacs) = Orthanc::start(tmp.path(), Some(("LIVERSEG", our_port))) else {
        return;
    };
    let svc = Service::start_on(
        tmp.path(),
        our_port,
        &[("LIVERSEG__DELIVERY__DESTINATIONS", &pacs.destination())],
    );
    send_ct(pacs.dicom_port, "ORTHANC", &ct.series_dir);

    let results = wait_for_results(&pacs, &ct.study_uid, 300, &svc);
    one_set(&pacs, &results);
    let dice = seg_dice(&pacs, &results, &ct.mask_dir, tmp.path());
    eprintln!("SEG from the PACS: Dice {dice:.4} against the expert mask");
    assert!(dice >= IRCADB_01_MIN_DICE, "Dice {dice}");

    let job = svc.wait_for_job_state(&ct.series_uid, "done", 60);
    let volume = job["liver_volume_ml"].as_f64().unwrap();
    assert!((1000.0..3000.0).contains(&volume), "{volume} ml");
    let summary: serde_json::Value = serde_json::from_str(job["detail"].as_str().unwrap()).unwrap();
    assert_eq!(summary["delivered_to"][0], pacs.destination(), "{summary}");
    let shown = svc.cli(&["jobs", "show", job["id"].as_str().unwrap()]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let mut kinds: Vec<&str> = shown["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["glb", "seg", "sr", "stl", "stl-document", "summary"]
    );

    // The audit trail: the PACS's association in, the results out.
    let export = svc.cli(&["audit", "export"]);
    assert!(export.status.success());
    let trail: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let received: Vec<_> = trail.iter().filter(|r| r["action"] == "receive").collect();
    assert!(
        received.iter().any(|r| r["actor"] == "ORTHANC"
            && r["outcome"] == "ok"
            && r["object"] == ct.series_uid.as_str()
            && r["detail"].as_str().unwrap().starts_with("129 instances")
            && r["peer"].as_str().unwrap().starts_with("127.0.0.1:")),
        "{trail:?}"
    );
    let sent: Vec<_> = trail.iter().filter(|r| r["action"] == "send").collect();
    assert_eq!(sent.len(), 1, "{trail:?}");
    assert_eq!(sent[0]["peer"], pacs.destination());
    assert_eq!(sent[0]["object"], ct.study_uid.as_str());
    assert_eq!(sent[0]["outcome"], "ok");
    assert!(
        trail
            .windows(2)
            .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64())
    );
}

/// The PACS is down when the results are ready: delivery backs off and
/// retries (C-STORE and STOW-RS), and everything arrives once it is up.
#[test]
fn results_arrive_after_the_pacs_comes_back() {
    let Some(ct) = ircadb() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some((mut pacs, svc)) = pacs_down(tmp.path(), true, 2, 1000) else {
        return;
    };
    send_ct(svc.dicom_port, "LIVERSEG", &ct.series_dir);
    let failed = svc.wait_for_job_state(&ct.series_uid, "failed", 300);
    let detail = failed["detail"].as_str().unwrap();
    assert!(detail.contains("delivery failed"), "{detail}");
    // A few more rounds against the closed port, then the PACS starts.
    std::thread::sleep(Duration::from_secs(4));
    pacs.spawn();
    let results = wait_for_results(&pacs, &ct.study_uid, 120, &svc);
    one_set(&pacs, &results);
    let job = svc.wait_for_job_state(&ct.series_uid, "done", 60);
    let id = job["id"].as_str().unwrap();
    let shown = svc.cli(&["jobs", "show", id]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let deliveries = shown["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{shown}");
    assert!(deliveries.iter().all(|d| d["delivered"] == true), "{shown}");
    // Segmented once: the retries only delivered.
    assert_eq!(job["attempts"], 1, "{job}");
    // Every attempt is in the audit trail: failures, then one success per
    // destination.
    let export = svc.cli(&["audit", "export"]);
    let trail: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["action"] == "send")
        .collect();
    let ok = trail.iter().filter(|r| r["outcome"] == "ok").count();
    let failed = trail
        .iter()
        .filter(|r| r["outcome"].as_str().unwrap().starts_with("failed: "))
        .count();
    assert_eq!(ok, 2, "{trail:?}");
    assert!(failed >= 2, "{trail:?}");
}

/// A destination that never answers: the job goes dead, is listed as such,
/// and `jobs replay` delivers it once the PACS is there.
#[test]
fn dead_letters_are_listed_and_replayed() {
    let Some(ct) = ircadb() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some((mut pacs, svc)) = pacs_down(tmp.path(), false, 1, 2) else {
        return;
    };
    send_ct(svc.dicom_port, "LIVERSEG", &ct.series_dir);
    let dead = svc.wait_for_job_state(&ct.series_uid, "dead", 300);
    let id = dead["id"].as_str().unwrap().to_string();
    assert!(
        dead["detail"]
            .as_str()
            .unwrap()
            .contains("delivery failed 2 times"),
        "{dead}"
    );
    let listed = svc.cli(&["jobs", "list", "--state", "dead"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));

    // A job that is not dead is not replayed.
    let refused = svc.cli(&["jobs", "replay", "0190a0a0-0000-7000-8000-000000000000"]);
    assert!(!refused.status.success());

    pacs.spawn();
    let replay = svc.cli(&["jobs", "replay", &id]);
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let results = wait_for_results(&pacs, &ct.study_uid, 120, &svc);
    one_set(&pacs, &results);
    let done = svc.wait_for_job_state(&ct.series_uid, "done", 60);
    assert_eq!(done["id"], id.as_str());
}

/// `kill -9` while the job runs: the restarted service runs it again, and
/// the PACS ends up with exactly one set of results. A second, independent
/// installation processing the same series produces the same UIDs.
#[test]
fn a_killed_worker_reruns_and_the_pacs_holds_one_set() {
    let Some(ct) = ircadb() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(pacs) = Orthanc::start(tmp.path(), None) else {
        return;
    };
    let env = [
        ("LIVERSEG__DELIVERY__DESTINATIONS", pacs.destination()),
        ("LIVERSEG__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "5".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut svc = Service::start(tmp.path(), &env);
    send_ct(svc.dicom_port, "LIVERSEG", &ct.series_dir);
    svc.wait_for_job_state(&ct.series_uid, "running", 120);
    svc.kill_hard();
    svc.restart();
    let job = svc.wait_for_job_state(&ct.series_uid, "done", 300);
    assert!(job["attempts"].as_i64().unwrap() >= 2, "{job}");
    let first = one_set(&pacs, &wait_for_results(&pacs, &ct.study_uid, 60, &svc));

    let other_dir = tmp.path().join("second");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = Service::start(&other_dir, &env);
    send_ct(other.dicom_port, "LIVERSEG", &ct.series_dir);
    other.wait_for_job_state(&ct.series_uid, "done", 300);
    let second = one_set(&pacs, &pacs.study_series(&ct.study_uid));
    assert_eq!(first, second, "a re-run made new UIDs");
}

/// A head CT sent to the service: the PACS receives the report that no
/// liver was found (and why) and nothing else; the job, the API and
/// `jobs show` carry the same verdict.
#[test]
fn a_head_ct_sends_the_pacs_a_no_liver_report_and_no_seg() {
    let Some(data) = test_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // The slices as a modality sends them (the export's directory record
    // is not an instance anyone stores).
    let head = tmp.path().join("head");
    std::fs::create_dir_all(&head).unwrap();
    for p in liverseg_dicom::scu::collect_files(&data.join("dicom/head_phantom")).unwrap() {
        if p.file_name().unwrap() != "DIRFILE" {
            std::fs::copy(&p, head.join(p.file_name().unwrap())).unwrap();
        }
    }
    let first = liverseg_dicom::scu::collect_files(&head).unwrap()[0].clone();
    let id = read_header(&first).unwrap().identity;
    let Some(pacs) = Orthanc::start(tmp.path(), None) else {
        return;
    };
    let svc = Service::start(
        tmp.path(),
        &[
            ("LIVERSEG__DELIVERY__DESTINATIONS", &pacs.destination()),
            ("LIVERSEG__LISTENER__COMPLETE_ON_RELEASE", "true"),
        ],
    );
    send_ct(svc.dicom_port, "LIVERSEG", &head);
    let job = svc.wait_for_job_state(&id.series_uid, "done", 300);
    eprintln!("head phantom job: {job}");
    assert!(job["liver_volume_ml"].is_null(), "{job}");
    assert_eq!(job["assessment"]["liver_found"], false, "{job}");
    assert_eq!(job["assessment"]["flags"], serde_json::json!(["no_liver"]));
    let reason = job["assessment"]["no_liver"]["reason"].as_str().unwrap();

    let mut stored = Vec::new();
    let arrived = wait_until(Duration::from_secs(120), || {
        stored = pacs.study_series(&id.study_uid);
        stored.iter().any(|s| s.modality == "SR")
    });
    assert!(arrived, "no SR at the PACS: {stored:?}\n{}", svc.log_text());
    // Only the report: no SEG, no Encapsulated STL.
    let modalities: Vec<&str> = stored.iter().map(|s| s.modality.as_str()).collect();
    assert_eq!(modalities, ["SR"], "{stored:?}");
    // The report as the PACS holds it names the finding and the reason.
    let sr = pacs.instance_file(&stored[0].instances[0]);
    let text = String::from_utf8_lossy(&sr);
    assert!(
        text.contains("no-liver") && text.contains(reason),
        "{reason}: {text}"
    );

    // The same verdict from `jobs show` and the job API.
    let shown = svc.cli(&["jobs", "show", job["id"].as_str().unwrap()]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let kinds: Vec<&str> = shown["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["sr", "summary"], "{shown}");
    assert_eq!(shown["job"]["assessment"], job["assessment"], "{shown}");
    let path = format!("/api/v1/jobs/{}", job["id"].as_str().unwrap());
    let (code, body) = http_get(svc.gateway_port, &path).expect("the gateway answers");
    assert_eq!(code, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api["assessment"], job["assessment"], "{api}");
}
