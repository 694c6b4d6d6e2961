//! What operators see of one study: the IRCADb CT, carrying a patient name,
//! ID and birth date, goes through two processes (listener and gateway in
//! one, the worker in the other) that meet through Redis and PostgreSQL,
//! and on to a real PACS (Orthanc).
//!
//! * Traces go to a real OTLP/gRPC receiver (oteltest's sink): the test
//!   rebuilds the tree, association -> series completion -> enqueue -> job
//!   -> stages -> delivery, all under one trace id across both processes.
//! * `/metrics` of both processes is parsed by prometheus_client's parser
//!   and must count exactly this run.
//! * No span, span event or log line holds the patient's name, ID or
//!   birth date.

use liverseg_tests::dcmtk::{modified_copy, storescu};
use liverseg_tests::orthanc::Orthanc;
use liverseg_tests::postgres::PgServer;
use liverseg_tests::python::python;
use liverseg_tests::redis::RedisServer;
use liverseg_tests::service::{Service, http_get};
use liverseg_tests::{free_port, test_data, wait_until};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PATIENT_NAME: &str = "Quarshie^Adwoa^Esi";
const PATIENT_ID: &str = "LVS-PHI-0042731";
const BIRTH_DATE: &str = "19470312";

/// The OTLP receiver, stopped by PID when dropped.
struct Sink {
    child: Child,
    port: u16,
    spans: PathBuf,
}

impl Sink {
    fn start(python: &Path, dir: &Path) -> Sink {
        let port = free_port();
        let spans = dir.join("spans.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/otlp_sink.py");
        let child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(&spans)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OTLP receiver");
        let up = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "the OTLP receiver did not listen on {port}");
        Sink { child, port, spans }
    }

    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.spans)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON span"))
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A copy of the IRCADb CT in which every file names the patient.
fn ct_with_phi(data: &Path, dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let ct = dir.join("ct");
    let args = [
        "-i".to_string(),
        format!("(0010,0010)={PATIENT_NAME}"),
        "-i".to_string(),
        format!("(0010,0020)={PATIENT_ID}"),
        "-i".to_string(),
        format!("(0010,0030)={BIRTH_DATE}"),
    ];
    let files = modified_copy(&data.join("dicom/ircadb_01/PATIENT_DICOM"), &ct, &args);
    (ct, files)
}

/// Samples of the Prometheus text files, parsed by prometheus_client.
fn parse_metrics(python: &Path, files: &[&Path]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/prom_parse.py");
    let out = Command::new(python)
        .arg(script)
        .args(files)
        .output()
        .expect("run prom_parse.py");
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("prom_parse.py prints JSON")
}

/// The value of the sample `name` with exactly these `labels` in `file`
/// (None when absent).
fn sample(samples: &[Value], file: &Path, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s["file"] == file.to_str().unwrap() && s["name"] == name)
        .find(|s| {
            let have = s["labels"].as_object().unwrap();
            have.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| have.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .and_then(|s| s["value"].as_f64())
}

#[test]
fn one_trace_per_study_and_metrics_count_the_run() {
    let Some(data) = test_data() else { return };
    let Some(python) = python() else { return };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let Some(pg) = PgServer::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (ct, files) = ct_with_phi(&data, tmp.path());
    let id = liverseg_dicom::instance::read_header(&files[0])
        .unwrap()
        .identity;
    let file_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let Some(pacs) = Orthanc::start(&tmp.path().join("pacs"), None) else {
        return;
    };
    let sink = Sink::start(&python, tmp.path());

    let metadata_url = pg.create_database("telemetry");
    let endpoint = format!("http://127.0.0.1:{}", sink.port);
    let destination = pacs.destination();
    let common = [
        ("LIVERSEG__STORAGE__METADATA_URL", metadata_url.as_str()),
        ("LIVERSEG__QUEUE__URL", redis.url.as_str()),
        ("LIVERSEG__DELIVERY__DESTINATIONS", destination.as_str()),
        ("LIVERSEG__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        ("LIVERSEG__LISTENER__COMPLETE_ON_RELEASE", "true"),
        // Everything our crates say, so a leak anywhere would show.
        (
            "LIVERSEG__LOG__LEVEL",
            "info,liverseg_listener=debug,liverseg_ingest=debug,liverseg_worker=debug,liverseg_dicom=debug,liverseg_gateway=debug",
        ),
    ];
    let with_name = |name: &'static str| {
        let mut env = common.to_vec();
        env.push(("LIVERSEG__TELEMETRY__SERVICE_NAME", name));
        env
    };
    let dir = tmp.path().join("liverseg");
    std::fs::create_dir_all(&dir).unwrap();
    let mut front = Service::start_roles(
        &dir,
        free_port(),
        Some("listener,gateway"),
        &with_name("liverseg-front"),
    );
    let mut worker = Service::start_roles(
        &dir,
        free_port(),
        Some("worker"),
        &with_name("liverseg-worker"),
    );

    let out = storescu(front.dicom_port, "LIVERSEG", "MODALITY", &[&ct], &[]).unwrap();
    assert!(
        out.status.success(),
        "storescu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = front.wait_for_job_state(&id.series_uid, "done", 900);
    let summary: Value = serde_json::from_str(job["detail"].as_str().unwrap()).unwrap();
    let slices_run = summary["slices_run"].as_u64().unwrap();

    // DICOMweb traffic for the request counters: two QIDO searches, one
    // metadata retrieval and one study that is not held here.
    let gw = front.gateway_port;
    let mut statuses = Vec::new();
    for path in [
        "/dicom-web/studies".to_string(),
        "/dicom-web/studies".to_string(),
        format!(
            "/dicom-web/studies/{}/series/{}/metadata",
            id.study_uid, id.series_uid
        ),
        "/dicom-web/studies/1.2.3.4.5.404/series".to_string(),
    ] {
        statuses.push(http_get(gw, &path).expect("gateway answers").0);
    }
    assert_eq!(statuses[..3], [200, 200, 200], "{statuses:?}");
    let missing_status = statuses[3];
    assert!((400..500).contains(&missing_status), "{statuses:?}");

    let scrape = |svc: &Service, name: &str| {
        let (code, body) = http_get(svc.admin_port, "/metrics").expect("/metrics answers");
        assert_eq!(code, 200, "{body}");
        let path = tmp.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let front_metrics = scrape(&front, "front.prom");
    let worker_metrics = scrape(&worker, "worker.prom");
    let samples = parse_metrics(&python, &[&front_metrics, &worker_metrics]);

    // Stopping flushes the spans the exporters still hold.
    front.stop();
    worker.stop();
    let delivered = wait_until(Duration::from_secs(30), || {
        sink.spans().iter().any(|s| s["name"] == "delivery")
    });
    let spans = sink.spans();
    assert!(
        delivered,
        "no delivery span reached the receiver; got {:?}",
        spans.iter().map(|s| &s["name"]).collect::<Vec<_>>()
    );

    check_trace(&spans, files.len());
    check_metrics(
        &samples,
        &front_metrics,
        &worker_metrics,
        files.len(),
        file_bytes,
        slices_run,
        missing_status,
    );

    // No patient data anywhere operators look.
    let spans_text = std::fs::read_to_string(&sink.spans).unwrap();
    let logs = [
        ("front log", front.log_text()),
        ("worker log", worker.log_text()),
        ("spans", spans_text),
    ];
    let needles = [
        PATIENT_NAME,
        "Quarshie",
        "Adwoa",
        PATIENT_ID,
        "0042731",
        BIRTH_DATE,
        "1947-03-12",
    ];
    for (what, text) in &logs {
        assert!(!text.is_empty(), "{what} is empty");
        for needle in needles {
            if let Some(at) = text.find(needle) {
                let line = text[..at].rsplit('\n').next().unwrap_or("").to_string()
                    + text[at..].split('\n').next().unwrap_or("");
                panic!("{what} holds {needle:?}: {line}");
            }
        }
    }
    eprintln!(
        "telemetry: {} spans, {} metric samples, {} + {} log bytes checked for patient data",
        spans.len(),
        samples.len(),
        logs[0].1.len(),
        logs[1].1.len()
    );
}

/// An integer attribute: OTLP carries unsigned values as strings.
fn int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// The study's spans form one tree across both processes.
fn check_trace(spans: &[Value], instances: usize) {
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), s))
        .collect();
    let parent_of = |s: &Value| by_id.get(s["parent_span_id"].as_str().unwrap()).copied();
    let named =
        |name: &str| -> Vec<&Value> { spans.iter().filter(|s| s["name"] == name).collect() };

    let associations: Vec<&Value> = named("dicom.association")
        .into_iter()
        .filter(|s| int(&s["attributes"]["instances"]) == Some(instances as i64))
        .collect();
    assert_eq!(
        associations.len(),
        1,
        "association spans: {:?}\nall span names: {:?}",
        named("dicom.association"),
        spans.iter().map(|s| &s["name"]).collect::<Vec<_>>()
    );
    let association = associations[0];
    assert_eq!(association["service"], "liverseg-front");
    assert_eq!(
        association["parent_span_id"], "",
        "the association is a root"
    );
    assert_eq!(association["attributes"]["calling_ae"], "MODALITY");
    assert_eq!(association["attributes"]["outcome"], "released");
    let trace = association["trace_id"].as_str().unwrap();
    let in_trace: Vec<&Value> = spans.iter().filter(|s| s["trace_id"] == trace).collect();

    let one = |name: &str| -> &Value {
        let found: Vec<&&Value> = in_trace.iter().filter(|s| s["name"] == name).collect();
        assert_eq!(found.len(), 1, "{name} in the study's trace: {found:?}");
        found[0]
    };
    let child_of = |child: &Value, parent: &Value| {
        assert_eq!(
            child["parent_span_id"], parent["span_id"],
            "{} should be a child of {}",
            child["name"], parent["name"]
        );
    };
    let complete = one("series.complete");
    child_of(complete, association);
    assert_eq!(complete["attributes"]["outcome"], "queued");
    let enqueue = one("queue.enqueue");
    child_of(enqueue, complete);
    assert_eq!(enqueue["attributes"]["queue"], "redis");

    let job = one("job");
    child_of(job, enqueue);
    assert_eq!(
        job["service"], "liverseg-worker",
        "the job runs in the other process"
    );
    assert_eq!(job["attributes"]["kind"], "segment");
    assert_eq!(job["attributes"]["outcome"], "done");
    let study = job["attributes"]["study"].as_str().unwrap();
    assert_eq!(study.len(), 16, "the study appears as a pseudonym: {study}");

    for stage in [
        "decode",
        "inference",
        "seg",
        "mesh",
        "sr",
        "store",
        "deliver",
    ] {
        child_of(one(stage), job);
    }
    let delivery = one("delivery");
    child_of(delivery, one("deliver"));
    assert_eq!(delivery["attributes"]["protocol"], "c-store");
    assert_eq!(delivery["attributes"]["outcome"], "delivered");

    // Every span of the study descends from the association.
    for s in &in_trace {
        let mut at: &Value = s;
        let mut hops = 0;
        while let Some(p) = parent_of(at) {
            at = p;
            hops += 1;
            assert!(hops < 64, "a cycle above {}", s["name"]);
        }
        assert_eq!(
            at["span_id"], association["span_id"],
            "{} does not descend from the association",
            s["name"]
        );
    }
}

fn check_metrics(
    samples: &[Value],
    front: &Path,
    worker: &Path,
    instances: usize,
    file_bytes: u64,
    slices_run: u64,
    missing_status: u16,
) {
    let get = |file: &Path, name: &str, labels: &[(&str, &str)]| -> f64 {
        sample(samples, file, name, labels)
            .unwrap_or_else(|| panic!("{name}{labels:?} missing from {}", file.display()))
    };
    let n = instances as f64;
    assert_eq!(
        get(
            front,
            "liverseg_associations_total",
            &[("outcome", "accepted")]
        ),
        1.0
    );
    assert_eq!(
        get(
            front,
            "liverseg_instances_received_total",
            &[("via", "dimse"), ("outcome", "stored")]
        ),
        n
    );
    // Data sets without their Part 10 file meta: a little less than the files.
    let bytes = get(front, "liverseg_received_bytes_total", &[("via", "dimse")]);
    assert!(
        bytes <= file_bytes as f64 && bytes > 0.95 * file_bytes as f64,
        "{bytes} bytes received for {file_bytes} bytes of files"
    );
    assert_eq!(
        get(
            front,
            "liverseg_series_completed_total",
            &[("outcome", "queued")]
        ),
        1.0
    );
    for file in [front, worker] {
        // Read from PostgreSQL and Redis at scrape time: the same everywhere.
        assert_eq!(get(file, "liverseg_jobs", &[("state", "done")]), 1.0);
        assert_eq!(get(file, "liverseg_jobs", &[("state", "dead")]), 0.0);
        assert_eq!(
            get(file, "liverseg_queue_messages", &[("state", "waiting")]),
            0.0
        );
        assert_eq!(
            get(file, "liverseg_queue_messages", &[("state", "in_flight")]),
            0.0
        );
        assert_eq!(
            get(file, "liverseg_queue_oldest_message_age_seconds", &[]),
            0.0
        );
    }
    assert_eq!(
        get(
            worker,
            "liverseg_jobs_finished_total",
            &[("kind", "segment"), ("outcome", "done")]
        ),
        1.0
    );
    for stage in [
        "decode",
        "inference",
        "seg",
        "mesh",
        "sr",
        "store",
        "delivery",
    ] {
        assert_eq!(
            get(
                worker,
                "liverseg_stage_duration_seconds_count",
                &[("stage", stage)]
            ),
            1.0,
            "{stage}"
        );
    }
    assert_eq!(
        get(worker, "liverseg_model_slice_seconds_count", &[]),
        slices_run as f64,
        "one latency sample per slice the network ran on"
    );
    let inf = get(
        worker,
        "liverseg_model_slice_seconds_bucket",
        &[("le", "+Inf")],
    );
    assert_eq!(inf, slices_run as f64);
    assert_eq!(
        get(
            worker,
            "liverseg_deliveries_total",
            &[("protocol", "c-store"), ("outcome", "delivered")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            samples,
            worker,
            "liverseg_deliveries_total",
            &[("protocol", "c-store"), ("outcome", "failed")]
        ),
        None
    );
    assert_eq!(
        sample(samples, worker, "liverseg_dead_letters_total", &[]),
        None
    );
    let route = |route: &str, status: &str| {
        get(
            front,
            "liverseg_http_requests_total",
            &[("route", route), ("method", "GET"), ("status", status)],
        )
    };
    assert_eq!(route("/dicom-web/studies", "200"), 2.0);
    assert_eq!(
        route("/dicom-web/studies/{study}/series/{series}/metadata", "200"),
        1.0
    );
    assert_eq!(
        route(
            "/dicom-web/studies/{study}/series",
            &missing_status.to_string()
        ),
        1.0
    );
    // Labels are templates: no UID became a label value.
    for s in samples {
        let labels = s["labels"].to_string();
        assert!(!labels.contains("1.2.3.4.5.404"), "{labels}");
    }
}
