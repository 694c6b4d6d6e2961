//! DICOMweb serving speed: liverseg's `/dicom-web` against Orthanc's DICOMweb
//! plugin, both holding the IRCADb CT series, under the same load: series
//! metadata (`application/dicom+json`) and single frames
//! (`multipart/related; type="application/octet-stream"`, cycling over the
//! 129 instances). Requests/s, p50 and p99 per server and endpoint, and the
//! liverseg/Orthanc ratios. Every answer must be 200 with the expected
//! content type and a non-empty body; anything else is counted as an error.
//!
//! `cargo bench -p liverseg-tests --bench dicomweb` (needs LIVERSEG_TEST_DATA,
//! Orthanc with its DICOMweb plugin, and dcmtk). Knobs:
//! `DICOMWEB_BENCH_WORKERS` (8), `DICOMWEB_BENCH_SECONDS` (10),
//! `DICOMWEB_BENCH_WARMUP_SECONDS` (2), `DICOMWEB_BENCH_SERVERS`
//! (`orthanc,liverseg`). A server whose metadata endpoint answers 404 (or
//! that does not start) is reported as not available.
//!
//! The load generator runs on the same machine as the servers and takes
//! CPU from them: compare the two servers with each other, on one machine.

use liverseg_tests::dcmtk::storescu;
use liverseg_tests::orthanc::Orthanc;
use liverseg_tests::service::Service;
use liverseg_tests::{test_data, wait_until};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The load generator: N workers, each with its own keep-alive HTTP/1.1
/// connection, each sending its next GET as soon as the previous answer
/// has been read in full (a closed loop). A warm-up runs first and is not
/// recorded; then every request started inside the measuring window is.
mod load {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper::client::conn::http1::{self, SendRequest};
    use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
    use hyper_util::rt::TokioIo;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// One kind of request: a path, its Accept header, and the media type
    /// the answer must start with.
    #[derive(Clone)]
    pub struct Get {
        pub path: String,
        pub accept: String,
        pub expect_type: String,
    }

    pub struct Plan {
        pub addr: SocketAddr,
        /// Requests are taken in turn, so each worker cycles through them.
        pub gets: Vec<Get>,
        pub workers: usize,
        pub warmup: Duration,
        pub measure: Duration,
    }

    /// What one run measured (warm-up excluded).
    #[derive(Default)]
    pub struct Outcome {
        /// Latency of every good answer: send to last body byte.
        pub latencies: Vec<Duration>,
        pub errors: u64,
        pub first_error: Option<String>,
        pub body_bytes: u64,
        pub connections: u64,
        /// From the end of the warm-up to the last measured answer.
        pub window: Duration,
    }

    impl Outcome {
        pub fn requests(&self) -> u64 {
            self.latencies.len() as u64 + self.errors
        }

        pub fn per_second(&self) -> f64 {
            self.latencies.len() as f64 / self.window.as_secs_f64()
        }

        pub fn percentile_ms(&self, p: f64) -> f64 {
            let mut v = self.latencies.clone();
            v.sort();
            let Some(last) = v.len().checked_sub(1) else {
                return f64::NAN;
            };
            v[((last as f64) * p).round() as usize].as_secs_f64() * 1000.0
        }

        pub fn megabytes_per_second(&self) -> f64 {
            self.body_bytes as f64 / 1e6 / self.window.as_secs_f64()
        }

        fn error(&mut self, what: String) {
            self.errors += 1;
            self.first_error.get_or_insert(what);
        }
    }

    pub async fn run(plan: &Plan) -> Outcome {
        let measure_from = Instant::now() + plan.warmup;
        let stop_at = measure_from + plan.measure;
        let gets = Arc::new(plan.gets.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..plan.workers {
            let (gets, addr, workers) = (gets.clone(), plan.addr, plan.workers);
            tasks.spawn(worker(addr, gets, w, workers, measure_from, stop_at));
        }
        let mut total = Outcome::default();
        let mut last_answer = measure_from;
        while let Some(done) = tasks.join_next().await {
            let (out, last) = done.expect("worker task");
            total.latencies.extend(out.latencies);
            total.errors += out.errors;
            total.body_bytes += out.body_bytes;
            total.connections += out.connections;
            if total.first_error.is_none() {
                total.first_error = out.first_error;
            }
            last_answer = last_answer.max(last);
        }
        total.window = last_answer.saturating_duration_since(measure_from);
        total
    }

    /// Worker `w` of `n` sends requests w, w+n, w+2n, ... (modulo the list)
    /// until `stop_at`; returns what it measured and when its last answer came.
    async fn worker(
        addr: SocketAddr,
        gets: Arc<Vec<Get>>,
        w: usize,
        n: usize,
        measure_from: Instant,
        stop_at: Instant,
    ) -> (Outcome, Instant) {
        let mut out = Outcome::default();
        let mut last_answer = measure_from;
        let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
        let mut k = w;
        while Instant::now() < stop_at {
            let get = &gets[k % gets.len()];
            k += n;
            // A connection the server closed is replaced, not counted as an error.
            if let Some(s) = sender.as_mut()
                && s.ready().await.is_err()
            {
                sender = None;
            }
            if sender.is_none() {
                match connect(addr).await {
                    Ok(s) => {
                        out.connections += 1;
                        sender = Some(s);
                    }
                    Err(e) => {
                        out.error(format!("connect {addr}: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
            let sent = Instant::now();
            let answer = exchange(sender.as_mut().unwrap(), addr, get).await;
            let measured = sent >= measure_from;
            if measured {
                last_answer = Instant::now();
            }
            match answer {
                Ok(len) if measured => {
                    out.latencies.push(sent.elapsed());
                    out.body_bytes += len;
                }
                Ok(_) => {}
                Err(e) => {
                    sender = None;
                    if measured {
                        out.error(format!("GET {}: {e}", get.path));
                    }
                }
            }
        }
        (out, last_answer)
    }

    async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// The status of one GET on a fresh connection (is the endpoint there?).
    pub async fn status(addr: SocketAddr, get: &Get) -> Result<u16, String> {
        let mut sender = connect(addr).await?;
        fetch(&mut sender, addr, get)
            .await
            .map(|(status, _, _)| status)
    }

    /// One GET, its body read to the end; the body's length when the answer
    /// is 200, of the expected type and not empty.
    async fn exchange(
        sender: &mut SendRequest<Empty<Bytes>>,
        addr: SocketAddr,
        get: &Get,
    ) -> Result<u64, String> {
        let (status, content_type, len) = fetch(sender, addr, get).await?;
        if status != 200 || len == 0 || !content_type.starts_with(&get.expect_type) {
            return Err(format!("{status}, {content_type:?}, {len} bytes"));
        }
        Ok(len)
    }

    /// Status, Content-Type (lower case) and body length of one GET.
    async fn fetch(
        sender: &mut SendRequest<Empty<Bytes>>,
        addr: SocketAddr,
        get: &Get,
    ) -> Result<(u16, String, u64), String> {
        let request = hyper::Request::get(get.path.as_str())
            .header(HOST, addr.to_string())
            .header(ACCEPT, get.accept.as_str())
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut body = response.into_body();
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() {
                len += data.len() as u64;
            }
        }
        Ok((status, content_type, len))
    }
}

const PREFIX: &str = "/dicom-web";
const METADATA_ACCEPT: &str = "application/dicom+json";
const FRAMES_ACCEPT: &str =
    "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The series as the benchmark asks for it: study, series and SOP UIDs.
struct Series {
    study: String,
    series: String,
    instances: Vec<String>,
}

impl Series {
    fn endpoints(&self) -> Vec<(&'static str, Vec<load::Get>)> {
        let base = format!("{PREFIX}/studies/{}/series/{}", self.study, self.series);
        let metadata = vec![load::Get {
            path: format!("{base}/metadata"),
            accept: METADATA_ACCEPT.into(),
            expect_type: "application/dicom+json".into(),
        }];
        let frames = self
            .instances
            .iter()
            .map(|i| load::Get {
                path: format!("{base}/instances/{i}/frames/1"),
                accept: FRAMES_ACCEPT.into(),
                expect_type: "multipart/related".into(),
            })
            .collect();
        vec![("metadata", metadata), ("frames", frames)]
    }
}

fn send(port: u16, called: &str, dir: &Path) {
    let out = storescu(port, called, "BENCH", &[dir], &[]).expect("dcmtk storescu");
    assert!(
        out.status.success(),
        "storescu to {called}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// liverseg with the series received and its job done (so that the worker
/// is idle while we measure); `None`, with the reason printed, when it does
/// not build, start or finish the job.
fn start_liverseg(dir: &Path, series_dir: &Path, series_uid: &str) -> Option<Service> {
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let svc = Service::start(dir, &[("LIVERSEG__LOG__LEVEL", "warn")]);
        send(svc.dicom_port, "LIVERSEG", series_dir);
        svc.wait_for_job_state(series_uid, "done", 600);
        svc
    }));
    match started {
        Ok(svc) => Some(svc),
        Err(_) => {
            eprintln!("liverseg: not available (did not start or did not finish the job)");
            None
        }
    }
}

struct Row {
    endpoint: &'static str,
    server: &'static str,
    result: Result<load::Outcome, String>,
}

fn main() {
    let Some(data) = test_data() else { return };
    let workers = env_number("DICOMWEB_BENCH_WORKERS", 8) as usize;
    let measure = Duration::from_secs(env_number("DICOMWEB_BENCH_SECONDS", 10));
    let warmup = Duration::from_secs(env_number("DICOMWEB_BENCH_WARMUP_SECONDS", 2));
    let servers = std::env::var("DICOMWEB_BENCH_SERVERS").unwrap_or("orthanc,liverseg".into());

    let series_dir = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let files = liverseg_dicom::scu::collect_files(&series_dir).unwrap();
    let ids: Vec<_> = files
        .iter()
        .map(|f| liverseg_dicom::instance::read_header(f).unwrap().identity)
        .collect();
    let series = Series {
        study: ids[0].study_uid.clone(),
        series: ids[0].series_uid.clone(),
        instances: ids.iter().map(|i| i.sop_instance_uid.clone()).collect(),
    };

    let tmp = tempfile::tempdir().unwrap();
    let mut ports: Vec<(&'static str, u16)> = Vec::new();
    let _pacs = if servers.contains("orthanc") {
        let Some(pacs) = Orthanc::start(tmp.path(), None) else {
            return;
        };
        send(pacs.dicom_port, "ORTHANC", &series_dir);
        let stored = wait_until(Duration::from_secs(120), || {
            pacs.study_series(&series.study)
                .iter()
                .map(|s| s.instances.len())
                .sum::<usize>()
                == files.len()
        });
        assert!(stored, "Orthanc did not store the series");
        ports.push(("orthanc", pacs.http_port));
        Some(pacs)
    } else {
        None
    };
    let _svc = if servers.contains("liverseg") {
        let dir = tmp.path().join("liverseg");
        std::fs::create_dir_all(&dir).unwrap();
        let svc = start_liverseg(&dir, &series_dir, &series.series);
        if let Some(svc) = &svc {
            ports.push(("liverseg", svc.gateway_port));
        }
        svc
    } else {
        None
    };

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut rows = Vec::new();
    for (endpoint, gets) in series.endpoints() {
        for &(server, port) in &ports {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            // 404 on the endpoint: this server has no DICOMweb (yet).
            let result = match runtime.block_on(load::status(addr, &gets[0])) {
                Ok(404) => Err(format!("not available (404 on {endpoint})")),
                Err(e) => Err(format!("not available ({e})")),
                Ok(_) => {
                    let plan = load::Plan {
                        addr,
                        gets: gets.clone(),
                        workers,
                        warmup,
                        measure,
                    };
                    Ok(runtime.block_on(load::run(&plan)))
                }
            };
            rows.push(Row {
                endpoint,
                server,
                result,
            });
        }
        if !ports.iter().any(|(s, _)| *s == "liverseg") {
            rows.push(Row {
                endpoint,
                server: "liverseg",
                result: Err("not available (not started)".into()),
            });
        }
    }
    report(&rows, files.len(), workers, warmup, measure);
}

fn report(rows: &[Row], instances: usize, workers: usize, warmup: Duration, measure: Duration) {
    println!(
        "DICOMweb, IRCADb CT ({instances} x 512 x 512): {workers} workers on keep-alive \
         connections, {} s warm-up, {} s measured",
        warmup.as_secs(),
        measure.as_secs()
    );
    println!(
        "{:<9} {:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6}",
        "endpoint", "server", "requests", "req/s", "p50 ms", "p99 ms", "MB/s", "errors", "conns"
    );
    for row in rows {
        match &row.result {
            Ok(o) => {
                println!(
                    "{:<9} {:<9} {:>9} {:>9.1} {:>9.2} {:>9.2} {:>9.1} {:>7} {:>6}",
                    row.endpoint,
                    row.server,
                    o.requests(),
                    o.per_second(),
                    o.percentile_ms(0.50),
                    o.percentile_ms(0.99),
                    o.megabytes_per_second(),
                    o.errors,
                    o.connections
                );
                if let Some(e) = &o.first_error {
                    println!("          first error: {e}");
                }
            }
            Err(why) => println!("{:<9} {:<9} {why}", row.endpoint, row.server),
        }
    }
    let find = |endpoint: &str, server: &str| {
        rows.iter()
            .find(|r| r.endpoint == endpoint && r.server == server)
            .and_then(|r| r.result.as_ref().ok())
    };
    println!("liverseg / orthanc:");
    for endpoint in ["metadata", "frames"] {
        match (find(endpoint, "liverseg"), find(endpoint, "orthanc")) {
            (Some(l), Some(o)) => println!(
                "  {endpoint:<9} req/s {:.2}x   p50 {:.2}x   p99 {:.2}x",
                l.per_second() / o.per_second(),
                l.percentile_ms(0.50) / o.percentile_ms(0.50),
                l.percentile_ms(0.99) / o.percentile_ms(0.99)
            ),
            _ => println!("  {endpoint:<9} n/a (both servers must be available)"),
        }
    }
    let errors: u64 = rows
        .iter()
        .filter_map(|r| r.result.as_ref().ok())
        .map(|o| o.errors)
        .sum();
    if errors > 0 {
        println!("{errors} requests failed (not 200, wrong type or empty body)");
    }
}
