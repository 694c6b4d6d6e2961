//! End-to-end tests of the DICOM listener against real peers: dcmtk's
//! echoscu and storescu, raw sockets and dicom-ul clients, the real
//! `liverseg serve` process, and the real IRCADb series when
//! `LIVERSEG_TEST_DATA` is set.

use liverseg_dicom::instance::{data_set_offset, read_header};
use liverseg_tests::dcmtk::{acknowledged_files, echoscu, storescu};
use liverseg_tests::series::{Flaws, write_ct_series};
use liverseg_tests::service::Service;
use liverseg_tests::{test_data, wait_until};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";

fn stored_path(svc: &Service, source: &Path) -> PathBuf {
    let h = read_header(source).expect("source readable");
    svc.data_dir.join(format!(
        "instances/{}/{}/{}.dcm",
        h.identity.study_uid, h.identity.series_uid, h.identity.sop_instance_uid
    ))
}

/// The data set of a Part 10 file (everything after the meta header).
fn data_set(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let off = data_set_offset(&bytes).expect("Part 10 file");
    bytes[off..].to_vec()
}

fn assert_byte_exact(svc: &Service, sources: &[PathBuf]) {
    for src in sources {
        let stored = stored_path(svc, src);
        assert!(
            data_set(&stored) == data_set(src),
            "{} differs from {}",
            stored.display(),
            src.display()
        );
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    liverseg_dicom::scu::collect_files(dir).unwrap()
}

#[test]
fn real_ircadb_series_arrives_byte_exact_and_becomes_one_job() {
    let Some(data) = test_data() else { return };
    let series_dir = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let tmp = tempfile::tempdir().unwrap();
    let svc = Service::start(tmp.path(), &[]);
    let Some(echo) = echoscu(svc.dicom_port, "LIVERSEG", "ECHOSCU") else {
        return;
    };
    assert!(
        echo.status.success(),
        "echoscu: {}",
        String::from_utf8_lossy(&echo.stderr)
    );

    let out = storescu(svc.dicom_port, "LIVERSEG", "STORESCU", &[&series_dir], &[]).unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "storescu failed:\n{log}");
    let sources = files_in(&series_dir);
    assert_eq!(sources.len(), 129);
    assert_eq!(acknowledged_files(&log).len(), 129, "{log}");
    assert_byte_exact(&svc, &sources);

    let series_uid = read_header(&sources[0]).unwrap().identity.series_uid;
    // The worker decodes and segments the whole volume.
    let job = svc.wait_for_job_state(&series_uid, "done", 120);
    assert_eq!(job["instance_count"], 129);
    let summary: serde_json::Value = serde_json::from_str(job["detail"].as_str().unwrap()).unwrap();
    assert_eq!(summary["slices"], 129);
    assert_eq!(summary["liver_found"], true, "{summary}");

    // Sending the same series again changes nothing: still one job.
    let again = storescu(svc.dicom_port, "LIVERSEG", "STORESCU", &[&series_dir], &[]).unwrap();
    assert!(again.status.success());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(svc.jobs_for(&series_uid).len(), 1);

    // The logs carry no patient identity from the data set.
    let h = dicom_object::open_file(&sources[0]).unwrap();
    let name = h
        .element_by_name("PatientName")
        .ok()
        .and_then(|e| e.to_str().ok())
        .unwrap_or_default();
    if name.trim().len() > 2 {
        assert!(
            !svc.log_text().contains(name.trim()),
            "patient name in logs"
        );
    }
}

#[test]
fn generated_series_in_two_transfer_syntaxes_become_one_job_each() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_ct_series(&tmp.path().join("a"), 24, 64, IMPLICIT_LE, Flaws::default());
    let b = write_ct_series(&tmp.path().join("b"), 30, 64, EXPLICIT_LE, Flaws::default());
    let svc = Service::start(tmp.path(), &[]);
    // -xi: propose implicit VR only, so that series a travels in its own syntax.
    let Some(out) = storescu(
        svc.dicom_port,
        "LIVERSEG",
        "STORESCU",
        &[&tmp.path().join("a")],
        &["-xi"],
    ) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = storescu(
        svc.dicom_port,
        "LIVERSEG",
        "STORESCU",
        &[&tmp.path().join("b")],
        &[],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_byte_exact(&svc, &a.files);
    assert_byte_exact(&svc, &b.files);
    let ja = svc.wait_for_job_state(&a.series_uid, "done", 60);
    let jb = svc.wait_for_job_state(&b.series_uid, "done", 60);
    assert_eq!(ja["instance_count"], 24);
    assert_eq!(jb["instance_count"], 30);
    assert!(!svc.log_text().contains("Synthetic") && !svc.log_text().contains("SYN-0001"));
}

#[test]
fn series_that_fail_sanity_checks_are_skipped_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let scout = write_ct_series(
        &tmp.path().join("scout"),
        24,
        32,
        EXPLICIT_LE,
        Flaws {
            localizer: true,
            ..Default::default()
        },
    );
    let coronal = write_ct_series(
        &tmp.path().join("coronal"),
        24,
        32,
        EXPLICIT_LE,
        Flaws {
            coronal: true,
            ..Default::default()
        },
    );
    let short = write_ct_series(
        &tmp.path().join("short"),
        5,
        32,
        EXPLICIT_LE,
        Flaws::default(),
    );
    let svc = Service::start(
        tmp.path(),
        &[("LIVERSEG__LISTENER__COMPLETE_ON_RELEASE", "true")],
    );
    let dirs = [
        tmp.path().join("scout"),
        tmp.path().join("coronal"),
        tmp.path().join("short"),
    ];
    for d in &dirs {
        let Some(out) = storescu(svc.dicom_port, "LIVERSEG", "STORESCU", &[d], &[]) else {
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (series, reason) in [
        (&scout.series_uid, "localizer"),
        (&coronal.series_uid, "not axial"),
        (&short.series_uid, "fewer than the 20"),
    ] {
        let mut body = String::new();
        let ok = wait_until(Duration::from_secs(20), || {
            body = liverseg_tests::service::http_get(
                svc.gateway_port,
                &format!("/api/v1/series/{series}"),
            )
            .map(|(_, b)| b)
            .unwrap_or_default();
            body.contains("\"skipped\"")
        });
        assert!(ok && body.contains(reason), "{series}: {body}");
        assert!(svc.jobs_for(series).is_empty());
    }
}

#[test]
fn unknown_calling_ae_is_rejected_and_service_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let svc = Service::start(
        tmp.path(),
        &[(
            "LIVERSEG__LISTENER__ALLOWED_CALLING_AES",
            "ORTHANC,STORESCU",
        )],
    );
    let Some(bad) = echoscu(svc.dicom_port, "LIVERSEG", "INTRUDER") else {
        return;
    };
    assert!(!bad.status.success());
    let text =
        String::from_utf8_lossy(&bad.stderr).to_string() + &String::from_utf8_lossy(&bad.stdout);
    assert!(text.contains("Calling AE Title Not Recognized"), "{text}");
    let wrong_called = echoscu(svc.dicom_port, "NOTUS", "STORESCU").unwrap();
    let text = String::from_utf8_lossy(&wrong_called.stderr).to_string();
    assert!(
        !wrong_called.status.success() && text.contains("Called AE Title Not Recognized"),
        "{text}"
    );
    assert!(
        echoscu(svc.dicom_port, "LIVERSEG", "ORTHANC")
            .unwrap()
            .status
            .success()
    );
}

#[test]
fn thirty_two_concurrent_associations_all_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for i in 0..32 {
        let d = tmp.path().join(format!("s{i}"));
        write_ct_series(&d, 3, 32, EXPLICIT_LE, Flaws::default());
        dirs.push(d);
    }
    let svc = Service::start(tmp.path(), &[]);
    if liverseg_tests::program("storescu").is_none() {
        return;
    }
    let port = svc.dicom_port;
    let handles: Vec<_> = dirs
        .into_iter()
        .map(|d| {
            std::thread::spawn(move || storescu(port, "LIVERSEG", "STORESCU", &[&d], &[]).unwrap())
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            acknowledged_files(&String::from_utf8_lossy(&out.stderr)).len(),
            3
        );
    }
    let stored = liverseg_dicom::scu::collect_files(&svc.data_dir.join("instances")).unwrap();
    assert_eq!(stored.len(), 96);
}

#[test]
fn kill_dash_nine_mid_transfer_loses_nothing_acknowledged() {
    let Some(data) = test_data() else { return };
    if liverseg_tests::program("storescu").is_none() {
        return;
    }
    let series_dir = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let tmp = tempfile::tempdir().unwrap();
    // Long enough that the resend below starts before the series (tracked
    // again after the restart) is considered complete.
    let mut svc = Service::start(tmp.path(), &[("LIVERSEG__LISTENER__STABLE_SECONDS", "10")]);
    let port = svc.dicom_port;
    let sender = std::thread::spawn(move || {
        storescu(port, "LIVERSEG", "STORESCU", &[&series_dir], &[]).unwrap()
    });
    let instances = svc.data_dir.join("instances");
    let started = wait_until(Duration::from_secs(60), || {
        liverseg_dicom::scu::collect_files(&instances)
            .map(|f| f.len() >= 40)
            .unwrap_or(false)
    });
    assert!(started, "transfer did not start");
    svc.kill_hard();
    let out = sender.join().unwrap();
    assert!(
        !out.status.success(),
        "storescu should see the association break"
    );
    let acked = acknowledged_files(&String::from_utf8_lossy(&out.stderr));
    assert!(
        acked.len() >= 40 && acked.len() < 129,
        "{} acknowledged",
        acked.len()
    );

    svc.restart();
    // Every acknowledged instance is there, intact.
    let acked: Vec<PathBuf> = acked.into_iter().map(PathBuf::from).collect();
    assert_byte_exact(&svc, &acked);
    // No half-written file is visible as an instance.
    for f in liverseg_dicom::scu::collect_files(&svc.data_dir.join("instances")).unwrap() {
        read_header(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }

    // The PACS sends the series again: one job, no duplicates.
    let series_dir = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let again = storescu(svc.dicom_port, "LIVERSEG", "STORESCU", &[&series_dir], &[]).unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let sources = files_in(&series_dir);
    assert_byte_exact(&svc, &sources);
    let series_uid = read_header(&sources[0]).unwrap().identity.series_uid;
    let job = svc.wait_for_job_state(&series_uid, "done", 120);
    assert_eq!(job["instance_count"], 129);
    assert_eq!(
        liverseg_dicom::scu::collect_files(&svc.data_dir.join("instances"))
            .unwrap()
            .len(),
        129
    );
}

#[test]
fn duplicate_policies_keep_overwrite_reject() {
    let tmp = tempfile::tempdir().unwrap();
    let s = write_ct_series(
        &tmp.path().join("orig"),
        1,
        16,
        EXPLICIT_LE,
        Flaws::default(),
    );
    // Same SOP Instance UID, different content.
    let changed_dir = tmp.path().join("changed");
    std::fs::create_dir_all(&changed_dir).unwrap();
    let mut obj = dicom_object::open_file(&s.files[0]).unwrap();
    obj.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::SERIES_DESCRIPTION,
        dicom_core::VR::LO,
        dicom_core::PrimitiveValue::from("changed"),
    ));
    let changed = changed_dir.join("x");
    obj.write_to_file(&changed).unwrap();

    let mut expected: HashMap<&str, (bool, &Path)> = HashMap::new();
    expected.insert("keep", (true, s.files[0].as_path()));
    expected.insert("overwrite", (true, changed.as_path()));
    expected.insert("reject", (false, s.files[0].as_path()));
    for (policy, (second_succeeds, kept)) in expected {
        let dir = tempfile::tempdir().unwrap();
        let svc = Service::start(
            dir.path(),
            &[("LIVERSEG__LISTENER__DUPLICATE_POLICY", policy)],
        );
        let Some(first) = storescu(svc.dicom_port, "LIVERSEG", "A", &[&s.files[0]], &[]) else {
            return;
        };
        assert!(first.status.success());
        let same = storescu(svc.dicom_port, "LIVERSEG", "A", &[&s.files[0]], &[]).unwrap();
        assert!(
            same.status.success(),
            "{policy}: identical resend must succeed"
        );
        let second = storescu(svc.dicom_port, "LIVERSEG", "A", &[&changed], &[]).unwrap();
        let log = String::from_utf8_lossy(&second.stderr);
        assert_eq!(
            acknowledged_files(&log).len() == 1,
            second_succeeds,
            "{policy}: {log}"
        );
        assert!(
            data_set(&stored_path(&svc, &s.files[0])) == data_set(kept),
            "{policy}: wrong content kept"
        );
    }
}

/// A PACS may spread one series over two listener replicas (two
/// associations, two processes, one PostgreSQL and one Redis). One replica
/// goes quiet while the other is still receiving: the series still becomes
/// one job of every instance, made once both have gone quiet.
#[test]
fn a_series_spread_over_two_listener_replicas_becomes_one_job() {
    use liverseg_tests::postgres::PgServer;
    use liverseg_tests::redis::RedisServer;
    let (Some(redis), Some(pg)) = (RedisServer::start(), PgServer::start()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let series = write_ct_series(
        &tmp.path().join("ct"),
        40,
        64,
        EXPLICIT_LE,
        Flaws::default(),
    );
    let mut files = liverseg_dicom::scu::collect_files(&tmp.path().join("ct")).unwrap();
    files.sort();
    let (first, second) = files.split_at(files.len() / 2);

    let metadata_url = pg.create_database("replicas");
    let env = [
        ("LIVERSEG__STORAGE__METADATA_URL", metadata_url.as_str()),
        ("LIVERSEG__QUEUE__URL", redis.url.as_str()),
        // Service sets LIVERSEG__LISTENER__STABLE_SECONDS=2.
    ];
    let dir = tmp.path().join("liverseg");
    std::fs::create_dir_all(&dir).unwrap();
    let free = liverseg_tests::free_port;
    let a = Service::start_roles(&dir, free(), Some("listener"), &env);
    let b = Service::start_roles(&dir, free(), Some("listener"), &env);
    let send = |svc: &Service, files: &[PathBuf]| {
        let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let out = storescu(svc.dicom_port, "LIVERSEG", "PACS", &paths, &[]).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Replica A gets the first half at once, then hears nothing more;
    // replica B gets the rest in small associations over more than A's
    // two stable seconds.
    send(&a, first);
    let started = std::time::Instant::now();
    for chunk in second.chunks(4) {
        send(&b, chunk);
        std::thread::sleep(Duration::from_millis(700));
    }
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "B's instances must outlast A's stable time"
    );
    let queued = wait_until(Duration::from_secs(30), || {
        a.jobs_for(&series.series_uid)
            .iter()
            .any(|j| j["state"] == "queued")
    });
    assert!(queued, "no job; logs:\n{}\n{}", a.log_text(), b.log_text());
    // Both replicas' clocks have run out by now.
    std::thread::sleep(Duration::from_secs(5));
    let jobs = a.jobs_for(&series.series_uid);
    assert_eq!(jobs.len(), 1, "one job for the series: {jobs:?}");
    assert_eq!(jobs[0]["instance_count"], files.len(), "{jobs:?}");
}
