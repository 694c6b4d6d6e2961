//! The load run shared by the CI load test and the load benchmark: many
//! PACS associations at once, each sending several studies (dcmtk storescu,
//! one association per study), while OHIF-like clients browse over
//! DICOMweb: a study search, the study's series, the series metadata, then
//! every frame of the series, as OHIF does when it opens a CT.
//!
//! The service runs as deployed: a listener+gateway process and a worker
//! process on PostgreSQL and Redis. Resident memory of both is sampled every
//! 50 ms.

use crate::dcmtk::storescu;
use crate::http::request;
use crate::postgres::PgServer;
use crate::redis::RedisServer;
use crate::series::{Flaws, write_ct_series};
use crate::service::Service;
use crate::{free_port, wait_until};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Plan {
    /// Associations open at the same time.
    pub associations: usize,
    pub studies_per_association: usize,
    pub slices: usize,
    /// Rows and columns of each slice.
    pub size: u16,
    /// DICOMweb clients browsing while the studies arrive.
    pub viewers: usize,
    /// Real CT slices to build each study from (see [`tall_copy`]) instead
    /// of generated ones; `size` is then theirs.
    pub source: Option<PathBuf>,
}

/// Latencies of one kind of request or transfer.
#[derive(Default, Clone)]
pub struct Latencies(pub Vec<Duration>);

impl Latencies {
    pub fn quantile(&self, q: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        v[((v.len() - 1) as f64 * q).round() as usize]
    }
}

pub struct Report {
    pub studies: usize,
    pub instances: usize,
    pub bytes: u64,
    /// First association to the last study acknowledged.
    pub ingest: Duration,
    /// First association to the last job done.
    pub total: Duration,
    /// One storescu run (a whole study on one association).
    pub study_sends: Latencies,
    pub send_failures: usize,
    /// DICOMweb requests by kind: search, series, metadata, frame.
    pub dicomweb: Vec<(&'static str, Latencies)>,
    pub dicomweb_errors: Vec<String>,
    pub jobs: usize,
    pub jobs_done: usize,
    pub duplicate_jobs: usize,
    pub front_peak_mib: f64,
    pub worker_peak_mib: f64,
}

/// Resident memory of `pid` in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the peak resident memory of `pids` until stopped.
struct PeakSampler {
    stop: Arc<AtomicBool>,
    peaks: Vec<Arc<AtomicU64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakSampler {
    fn start(pids: Vec<u32>) -> PeakSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks: Vec<Arc<AtomicU64>> = pids.iter().map(|_| Arc::default()).collect();
        let (s, p) = (stop.clone(), peaks.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for (pid, peak) in pids.iter().zip(&p) {
                    peak.fetch_max(rss_kib(*pid), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        PeakSampler {
            stop,
            peaks,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<f64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peaks
            .iter()
            .map(|p| p.load(Ordering::Relaxed) as f64 / 1024.0)
            .collect()
    }
}

/// One OHIF-like client: search, open a study's first series, fetch its
/// metadata and every frame; again until `stop`.
fn browse(
    port: u16,
    stop: &AtomicBool,
    seen: &Mutex<Vec<(&'static str, Duration)>>,
    errors: &Mutex<Vec<String>>,
) {
    let get = |path: &str, accept: &str| {
        let started = Instant::now();
        let reply = request(port, "GET", path, &[("Accept", accept)], b"");
        (reply, started.elapsed())
    };
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let (studies, took) = get("/dicom-web/studies?limit=100", "application/dicom+json");
        if studies.status != 200 {
            if studies.status != 204 {
                errors
                    .lock()
                    .unwrap()
                    .push(format!("search: {}", studies.status));
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        seen.lock().unwrap().push(("search", took));
        let list: serde_json::Value = serde_json::from_slice(&studies.body).unwrap_or_default();
        let Some(all) = list.as_array().filter(|a| !a.is_empty()) else {
            continue;
        };
        let study = all[round % all.len()]["0020000D"]["Value"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (series, took) = get(
            &format!("/dicom-web/studies/{study}/series"),
            "application/dicom+json",
        );
        if series.status != 200 {
            errors
                .lock()
                .unwrap()
                .push(format!("series: {}", series.status));
            continue;
        }
        seen.lock().unwrap().push(("series", took));
        let list: serde_json::Value = serde_json::from_slice(&series.body).unwrap_or_default();
        let Some(uid) = list[0]["0020000E"]["Value"][0].as_str() else {
            continue;
        };
        let (meta, took) = get(
            &format!("/dicom-web/studies/{study}/series/{uid}/metadata"),
            "application/dicom+json",
        );
        if meta.status != 200 {
            errors
                .lock()
                .unwrap()
                .push(format!("metadata: {}", meta.status));
            continue;
        }
        seen.lock().unwrap().push(("metadata", took));
        let instances: serde_json::Value = serde_json::from_slice(&meta.body).unwrap_or_default();
        for inst in instances.as_array().into_iter().flatten() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Some(sop) = inst["00080018"]["Value"][0].as_str() else {
                continue;
            };
            let (frame, took) = get(
                &format!("/dicom-web/studies/{study}/series/{uid}/instances/{sop}/frames/1"),
                "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*",
            );
            if frame.status == 200 && !frame.body.is_empty() {
                seen.lock().unwrap().push(("frame", took));
            } else {
                errors
                    .lock()
                    .unwrap()
                    .push(format!("frame: {}", frame.status));
            }
        }
    }
}

/// Writes a series of `slices` slices into `to` from the real axial CT in
/// `source`: its slices in position order, then back again (so neighbours
/// stay neighbours and the liver stays whole), each placed one slice step
/// further along, with new Study, Series and SOP Instance UIDs. Returns the
/// Series Instance UID.
pub fn tall_copy(source: &Path, slices: usize, to: &Path, seed: usize) -> String {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let mut files: Vec<_> = std::fs::read_dir(source)
        .unwrap()
        .flatten()
        .map(|e| dicom_object::open_file(e.path()).unwrap())
        .collect();
    let z = |o: &dicom_object::DefaultDicomObject| {
        o.element(tags::IMAGE_POSITION_PATIENT)
            .unwrap()
            .to_multi_float64()
            .unwrap()
    };
    files.sort_by(|a, b| z(a)[2].total_cmp(&z(b)[2]));
    let first = z(&files[0]);
    let step = (z(&files[files.len() - 1])[2] - first[2]) / (files.len() - 1) as f64;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let uid = |what: usize| format!("2.25.{}{seed:04}{what}", stamp);
    let (study, series) = (uid(1), uid(2));
    std::fs::create_dir_all(to).unwrap();
    let period = 2 * files.len() - 2;
    for i in 0..slices {
        let k = i % period;
        let k = if k < files.len() { k } else { period - k };
        let mut obj = files[k].clone();
        let sop = format!("{}.{i}", uid(3));
        let text = |tag, vr, v: String| DataElement::new(tag, vr, PrimitiveValue::from(v));
        obj.put(text(tags::SOP_INSTANCE_UID, VR::UI, sop.clone()));
        obj.put(text(tags::STUDY_INSTANCE_UID, VR::UI, study.clone()));
        obj.put(text(tags::SERIES_INSTANCE_UID, VR::UI, series.clone()));
        obj.put(text(tags::INSTANCE_NUMBER, VR::IS, (i + 1).to_string()));
        let at = first[2] + step * i as f64;
        obj.put(text(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            format!("{}\\{}\\{at:.3}", first[0], first[1]),
        ));
        obj.meta_mut().media_storage_sop_instance_uid = sop;
        obj.meta_mut().update_information_group_length();
        obj.write_to_file(to.join(format!("{i:04}.dcm"))).unwrap();
    }
    series
}

/// Runs `plan` in `dir`; `None` when a peer (PostgreSQL, Redis, dcmtk) is
/// missing.
pub fn run(plan: &Plan, dir: &Path) -> Option<Report> {
    crate::program("storescu")?;
    let redis = RedisServer::start()?;
    let pg = PgServer::start()?;
    // The studies, written before the clock starts.
    let total = plan.associations * plan.studies_per_association;
    let studies: Vec<(PathBuf, String)> = (0..total)
        .map(|n| {
            let d = dir.join(format!("study{n:03}"));
            let series_uid = match &plan.source {
                Some(source) => tall_copy(source, plan.slices, &d, n),
                None => {
                    write_ct_series(
                        &d,
                        plan.slices,
                        plan.size,
                        "1.2.840.10008.1.2.1",
                        Flaws::default(),
                    )
                    .series_uid
                }
            };
            (d, series_uid)
        })
        .collect();
    let bytes: u64 = studies
        .iter()
        .flat_map(|(d, _)| std::fs::read_dir(d).unwrap().flatten())
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();

    let metadata_url = pg.create_database("load");
    let max = plan.associations.max(64).to_string();
    let env = [
        ("LIVERSEG__STORAGE__METADATA_URL", metadata_url.as_str()),
        ("LIVERSEG__QUEUE__URL", redis.url.as_str()),
        ("LIVERSEG__LISTENER__COMPLETE_ON_RELEASE", "true"),
        ("LIVERSEG__LISTENER__MAX_ASSOCIATIONS", max.as_str()),
        ("LIVERSEG__LOG__LEVEL", "warn"),
    ];
    let svc_dir = dir.join("liverseg");
    std::fs::create_dir_all(&svc_dir).unwrap();
    let front = Service::start_roles(&svc_dir, free_port(), Some("listener,gateway"), &env);
    let worker = Service::start_roles(&svc_dir, free_port(), Some("worker"), &env);
    let sampler = PeakSampler::start(vec![front.pid().unwrap(), worker.pid().unwrap()]);

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let viewers: Vec<_> = (0..plan.viewers)
        .map(|_| {
            let (stop, seen, errors) = (stop.clone(), seen.clone(), errors.clone());
            let port = front.gateway_port;
            std::thread::spawn(move || browse(port, &stop, &seen, &errors))
        })
        .collect();
    let port = front.dicom_port;
    let senders: Vec<_> = studies
        .chunks(plan.studies_per_association)
        .map(|chunk| {
            let chunk: Vec<PathBuf> = chunk.iter().map(|(d, _)| d.clone()).collect();
            std::thread::spawn(move || {
                let mut sends = Vec::new();
                let mut failures = 0;
                for d in chunk {
                    let t = Instant::now();
                    let out = storescu(port, "LIVERSEG", "LOADPACS", &[&d], &[]).unwrap();
                    if out.status.success() {
                        sends.push(t.elapsed());
                    } else {
                        failures += 1;
                    }
                }
                (sends, failures)
            })
        })
        .collect();
    let mut study_sends = Latencies::default();
    let mut send_failures = 0;
    for s in senders {
        let (sends, failures) = s.join().unwrap();
        study_sends.0.extend(sends);
        send_failures += failures;
    }
    let ingest = started.elapsed();
    let done = wait_until(Duration::from_secs(600), || {
        let jobs = front.jobs();
        jobs.len() >= total && jobs.iter().all(|j| j["state"] == "done")
    });
    let total_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for v in viewers {
        let _ = v.join();
    }
    let peaks = sampler.finish();
    let jobs = front.jobs();
    let mut per_series = std::collections::HashMap::new();
    for j in &jobs {
        *per_series
            .entry(j["series_uid"].as_str().unwrap_or_default().to_string())
            .or_insert(0usize) += 1;
    }
    let seen = seen.lock().unwrap().clone();
    let kinds = ["search", "series", "metadata", "frame"];
    let dicomweb = kinds
        .iter()
        .map(|k| {
            (
                *k,
                Latencies(
                    seen.iter()
                        .filter(|(x, _)| x == k)
                        .map(|(_, d)| *d)
                        .collect(),
                ),
            )
        })
        .collect();
    if !done {
        eprintln!(
            "load: not every job finished; front log:\n{}",
            front.log_text()
        );
    }
    Some(Report {
        studies: total,
        instances: total * plan.slices,
        bytes,
        ingest,
        total: total_time,
        study_sends,
        send_failures,
        dicomweb,
        dicomweb_errors: errors.lock().unwrap().clone(),
        jobs: jobs.len(),
        jobs_done: jobs.iter().filter(|j| j["state"] == "done").count(),
        duplicate_jobs: per_series.values().filter(|n| **n > 1).count(),
        front_peak_mib: peaks[0],
        worker_peak_mib: peaks[1],
    })
}

impl Report {
    pub fn print(&self, plan: &Plan) {
        let secs = self.ingest.as_secs_f64();
        println!(
            "load: {} associations x {} studies of {} slices {}x{} ({} instances, {:.0} MB), {} DICOMweb clients",
            plan.associations,
            plan.studies_per_association,
            plan.slices,
            plan.size,
            plan.size,
            self.instances,
            self.bytes as f64 / 1e6,
            plan.viewers
        );
        println!(
            "  ingest: {:.1} s, {:.0} instances/s, {:.1} MB/s; per study send p50 {:.2} s, p99 {:.2} s; {} sends failed",
            secs,
            self.instances as f64 / secs,
            self.bytes as f64 / 1e6 / secs,
            self.study_sends.quantile(0.5).as_secs_f64(),
            self.study_sends.quantile(0.99).as_secs_f64(),
            self.send_failures
        );
        println!(
            "  all {} jobs done after {:.1} s ({:.1} studies/min); {} duplicate jobs",
            self.jobs_done,
            self.total.as_secs_f64(),
            self.jobs_done as f64 / self.total.as_secs_f64() * 60.0,
            self.duplicate_jobs
        );
        for (kind, l) in &self.dicomweb {
            println!(
                "  DICOMweb {kind}: {} requests, p50 {:.1} ms, p99 {:.1} ms",
                l.0.len(),
                l.quantile(0.5).as_secs_f64() * 1000.0,
                l.quantile(0.99).as_secs_f64() * 1000.0
            );
        }
        println!(
            "  DICOMweb errors: {}; peak memory: listener+gateway {:.0} MiB, worker {:.0} MiB",
            self.dicomweb_errors.len(),
            self.front_peak_mib,
            self.worker_peak_mib
        );
    }
}
