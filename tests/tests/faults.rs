//! Faults: a stream of studies through two listener and two worker
//! processes that meet through PostgreSQL and a durable Redis and deliver to
//! a real PACS (Orthanc), while the roles are killed with `kill -9` at
//! random points (at least 100 kills), Redis is killed and restarted on its
//! append-only file, PostgreSQL crashes (immediate shutdown) and restarts,
//! and the PACS is stopped for a while. At the end every study must have
//! exactly its results in the PACS (one SEG, one SR, one Encapsulated STL,
//! each one instance: re-sends of the same instances are idempotent there)
//! and exactly one finished job in liverseg; none lost, none duplicated.
//!
//! * `studies_survive_kills_restarts_and_a_pacs_outage`: the CI version
//!   (about 4 minutes).
//! * `soak`: the same run, longer, sized by `LIVERSEG_SOAK_STUDIES` and
//!   `LIVERSEG_SOAK_MINUTES`:
//!   `cargo test -p liverseg-tests --test faults -- --ignored soak --nocapture`.
//!
//! `LIVERSEG_FAULTS_SEED` replays the random choices of an earlier run (the
//! seed is printed); timing still differs from run to run. The working
//! folder is kept and named when the run fails, or always with
//! `LIVERSEG_FAULTS_KEEP=1`: the fault timeline `chaos.log`, the roles'
//! logs `liverseg/service-*.log`, what the metadata store held
//! (`evidence/`: jobs, each job's results, deliveries and events, the audit
//! trail, the received instances per series; Redis's and PostgreSQL's logs),
//! the results and the PACS with its log (the received CT itself is removed).

use liverseg_dicom::instance::read_header;
use liverseg_tests::dcmtk::{acknowledged_files, modified_copy, storescu};
use liverseg_tests::orthanc::Orthanc;
use liverseg_tests::postgres::PgServer;
use liverseg_tests::redis::RedisServer;
use liverseg_tests::service::Service;
use liverseg_tests::{free_port, test_data};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A contiguous run of the IRCADb patient 1 CT (files `image_N`, N the
/// slice index from the feet) through the middle of the liver: 32 of the
/// 129 slices keep a transfer and a job short. The model finds about
/// 780 ml of liver in them (`liverseg segment`), so every study has results.
const SLICES: std::ops::RangeInclusive<usize> = 72..=103;
/// The result objects of a job and their modalities in the PACS.
const RESULT_MODALITIES: [&str; 3] = ["SEG", "SR", "M3D"];
/// Kills between two rounds of server faults; within each round, at these
/// kill counts: Redis is restarted, PostgreSQL crashes, the PACS stops
/// (as soon as a job is running from then on).
const ROUND: u32 = 100;
const REDIS_AT: [u32; 2] = [20, 60];
const POSTGRES_AT: [u32; 2] = [35, 80];
const PACS_AT: u32 = 50;

/// How big and how long a run is.
#[derive(Debug, Clone)]
struct Plan {
    name: &'static str,
    studies: usize,
    /// The stream is paced so that the last study is sent around here.
    min_kills: u32,
    /// ... and not before this much time has passed (the soak).
    min_duration: Duration,
    /// Pause between two kills.
    kill_every_ms: (u64, u64),
    pacs_outage: Duration,
    /// Once everything is sent and enough kills done, the chaos goes on
    /// until every job is finished, but no longer than this.
    chaos_grace: Duration,
    /// Then, without faults, every job must finish within this.
    drain: Duration,
}

impl Plan {
    fn ci() -> Plan {
        Plan {
            name: "ci",
            studies: 12,
            min_kills: 100,
            min_duration: Duration::ZERO,
            kill_every_ms: (300, 1500),
            pacs_outage: Duration::from_secs(10),
            chaos_grace: Duration::from_secs(60),
            drain: Duration::from_secs(180),
        }
    }

    fn soak() -> Plan {
        let env = |name: &str, default: f64| {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.parse::<f64>()
                        .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
                })
                .unwrap_or(default)
        };
        let minutes = env("LIVERSEG_SOAK_MINUTES", 30.0);
        let studies = env("LIVERSEG_SOAK_STUDIES", 100.0) as usize;
        assert!(
            minutes > 0.0 && studies > 0,
            "a soak needs time and studies"
        );
        Plan {
            name: "soak",
            studies,
            min_kills: 100,
            min_duration: Duration::from_secs_f64(minutes * 60.0),
            kill_every_ms: (300, 1500),
            pacs_outage: Duration::from_secs(10),
            chaos_grace: Duration::from_secs(120),
            drain: Duration::from_secs(600),
        }
    }
}

#[test]
fn studies_survive_kills_restarts_and_a_pacs_outage() {
    run(Plan::ci());
}

#[test]
#[ignore = "long soak: cargo test -p liverseg-tests --test faults -- --ignored soak"]
fn soak() {
    run(Plan::soak());
}

/// The path by which the stream above ends up with two jobs (and two sets
/// of results) for one series, step by step and without a kill: a PACS
/// sends the first 24 of 32 slices to one listener replica, the
/// association breaks, and the PACS sends the whole series again, this time
/// through the other replica and one instance per association (as a
/// forwarding queue does), so that the 24 instances already held take a
/// few seconds, longer than `listener.stable_seconds`, before the 8 new
/// ones. The series never stopped arriving: it must become one job, of all
/// 32 instances.
#[test]
fn a_series_resent_through_another_listener_becomes_one_job() {
    let Some(setup) = StepByStep::start("resend") else {
        return;
    };
    let (files, series_uid) = (&setup.files, &setup.series_uid);
    let a = setup.role("listener");
    let b = setup.role("listener");

    send(&a, &files[..24]);
    let resent = Instant::now();
    for f in &files[..24] {
        send(&b, std::slice::from_ref(f));
        std::thread::sleep(Duration::from_millis(150));
    }
    send(&b, &files[24..]);
    eprintln!(
        "the whole series re-sent through the second listener in {:.1}s",
        resent.elapsed().as_secs_f64()
    );

    // Completion after 2 s of quiet; give both replicas time to act.
    let mut jobs = Vec::new();
    liverseg_tests::wait_until(Duration::from_secs(30), || {
        jobs = a.jobs_for(series_uid);
        jobs.iter().any(|j| j["instance_count"] == 32)
    });
    std::thread::sleep(Duration::from_secs(3));
    let jobs = a.jobs_for(series_uid);
    let listed: Vec<String> = jobs
        .iter()
        .map(|j| format!("{} with {} instances", j["id"], j["instance_count"]))
        .collect();
    assert!(
        jobs.len() == 1 && jobs[0]["instance_count"] == 32,
        "one job of 32 instances expected, found {listed:?}"
    );
    drop((a, b));
}

/// splitmix64: small, seedable, good enough to pick victims and pauses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, (lo, hi): (u64, u64)) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    /// A UID under the 2.25 root (a random 128-bit integer, PS3.5 B.2).
    fn uid(&mut self) -> String {
        let n = (u128::from(self.next()) << 64) | u128::from(self.next());
        format!("2.25.{n}")
    }
}

fn seed() -> u64 {
    match std::env::var("LIVERSEG_FAULTS_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("LIVERSEG_FAULTS_SEED={s:?} is not a u64")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42),
    }
}

/// One study of the stream: a copy of the CT slices with its own UIDs.
#[derive(Debug, Clone)]
struct Study {
    study_uid: String,
    series_uid: String,
    /// How many `storescu` runs it took until every file was acknowledged.
    sends: u32,
}

/// A role process under fire.
struct Role {
    name: String,
    svc: Service,
    kills: u32,
}

/// What the threads share.
struct Shared {
    start: Instant,
    kills: AtomicU32,
    /// The DICOM port of the listener a study is being sent to (0: none).
    sending_to: AtomicU32,
    /// Set (by a guard, also on panic) when the sender has finished.
    sender_over: AtomicBool,
    /// Set (by a guard, also on panic) when the chaos has stopped.
    chaos_over: AtomicBool,
    studies: Mutex<Vec<Study>>,
    timeline: Mutex<std::fs::File>,
}

impl Shared {
    /// A line in `chaos.log` (and on stderr), stamped with the run's clock.
    fn note(&self, what: impl AsRef<str>) {
        let line = format!(
            "[{:7.1}s] {}",
            self.start.elapsed().as_secs_f64(),
            what.as_ref()
        );
        eprintln!("{line}");
        let mut f = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "{line}");
    }

    fn studies(&self) -> Vec<Study> {
        self.studies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Sets its flag when dropped: when its thread ends, normally or not.
struct Over<'a>(&'a AtomicBool);

impl Drop for Over<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What the chaos thread did.
#[derive(Debug, Default)]
struct ChaosReport {
    redis_restarts: u32,
    pg_crashes: u32,
    pacs_outages: u32,
    pacs_down: Duration,
    /// Seconds the slowest role restart took (kill to ready).
    slowest_restart: f64,
}

fn run(plan: Plan) {
    let Some(data) = test_data() else { return };
    let Some(mut redis) = RedisServer::start_durable() else {
        return;
    };
    let Some(mut pg) = PgServer::start_durable() else {
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("liverseg-faults-")
        .tempdir()
        .unwrap();
    let Some(mut pacs) = Orthanc::start(&tmp.path().join("pacs"), None) else {
        return;
    };
    let seed = seed();
    eprintln!(
        "faults ({}): seed {seed} (LIVERSEG_FAULTS_SEED={seed} replays the choices); folder {}",
        plan.name,
        tmp.path().display()
    );

    let subset = slices_subset(&data, tmp.path());
    let slices = SLICES.count();

    let metadata_url = pg.create_database("faults");
    let destination = pacs.destination();
    let env = [
        ("LIVERSEG__STORAGE__METADATA_URL", metadata_url.as_str()),
        ("LIVERSEG__QUEUE__URL", redis.url.as_str()),
        ("LIVERSEG__DELIVERY__DESTINATIONS", destination.as_str()),
        ("LIVERSEG__DELIVERY__BACKOFF_INITIAL_SECONDS", "1"),
        ("LIVERSEG__DELIVERY__BACKOFF_MAX_SECONDS", "3"),
        ("LIVERSEG__DELIVERY__MAX_ATTEMPTS", "1000"),
        // A killed worker's job is reclaimed after this.
        ("LIVERSEG__QUEUE__VISIBILITY_TIMEOUT_SECONDS", "6"),
        ("LIVERSEG__LISTENER__STABLE_SECONDS", "2"),
        // A run killed before it recorded an outcome counts as an attempt
        // (a series that crashes the worker must not loop for ever); here
        // the kills come from outside, and one job may be hit many times.
        ("LIVERSEG__WORKER__MAX_ATTEMPTS", "100"),
        ("LIVERSEG__LOG__LEVEL", "warn"),
    ];
    let dir = tmp.path().join("liverseg");
    std::fs::create_dir_all(&dir).unwrap();
    let mut roles: Vec<Role> = ["listener", "listener", "worker", "worker"]
        .iter()
        .enumerate()
        .map(|(i, role)| Role {
            name: format!("{role}-{}", i % 2 + 1),
            svc: Service::start_roles(&dir, free_port(), Some(role), &env),
            kills: 0,
        })
        .collect();
    let listener_ports: Vec<u16> = roles
        .iter()
        .filter(|r| r.name.starts_with("listener"))
        .map(|r| r.svc.dicom_port)
        .collect();

    let shared = Shared {
        start: Instant::now(),
        kills: AtomicU32::new(0),
        sending_to: AtomicU32::new(0),
        sender_over: AtomicBool::new(false),
        chaos_over: AtomicBool::new(false),
        studies: Mutex::new(Vec::new()),
        timeline: Mutex::new(std::fs::File::create(tmp.path().join("chaos.log")).unwrap()),
    };
    let ports: Vec<String> = roles
        .iter()
        .map(|r| {
            format!(
                "{} dicom :{} admin :{}",
                r.name, r.svc.dicom_port, r.svc.admin_port
            )
        })
        .collect();
    shared.note(format!(
        "{} studies of {slices} slices, at least {} kills; redis :{} (pid {}), postgres :{} (pid {}), pacs {}; {}",
        plan.studies,
        plan.min_kills,
        redis.port,
        redis.pid(),
        pg.port,
        pg.pid(),
        destination,
        ports.join(", ")
    ));

    let studies_dir = tmp.path().join("studies");
    let threads = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let _over = Over(&shared.sender_over);
            send_stream(
                &plan,
                &subset,
                &studies_dir,
                &listener_ports,
                Rng(seed ^ 0x5e4d),
                &shared,
            )
        });
        let chaos = s.spawn(|| {
            let _over = Over(&shared.chaos_over);
            chaos(
                &plan,
                &mut roles,
                &mut redis,
                &mut pg,
                &mut pacs,
                Rng(seed),
                &shared,
            )
        });
        (chaos.join(), sender.join())
    });
    let (chaos_report, failures_sending) = match threads {
        (Ok(c), Ok(f)) => (c, f),
        (c, f) => {
            drop(roles);
            let kept = tmp.keep();
            eprintln!(
                "a fault thread panicked; the run's folder is kept: {}",
                kept.display()
            );
            std::panic::resume_unwind(c.err().or(f.err()).unwrap());
        }
    };
    let chaos_end = shared.start.elapsed();
    let studies = shared.studies();
    shared.note(format!(
        "chaos over: {} kills; {} of {} studies sent; draining",
        shared.kills.load(Ordering::SeqCst),
        studies.len(),
        plan.studies
    ));

    // Without faults now: every job must finish.
    let svc = &roles[0].svc;
    let drained = liverseg_tests::wait_until(plan.drain, || all_finished(svc, &studies));
    let drain_took = shared.start.elapsed() - chaos_end;
    shared.note(format!(
        "drain {} after {:.1}s",
        if drained { "done" } else { "timed out" },
        drain_took.as_secs_f64()
    ));

    let mut failures = failures_sending;
    if studies.len() != plan.studies {
        failures.push(format!(
            "only {} of {} studies were sent",
            studies.len(),
            plan.studies
        ));
    }
    let kills = shared.kills.load(Ordering::SeqCst);
    if kills < plan.min_kills {
        failures.push(format!("{kills} kills, fewer than {}", plan.min_kills));
    }
    let checks = check(svc, &pacs, &studies, slices, &dir, &mut failures);

    // The summary.
    let per_role: Vec<String> = roles
        .iter()
        .map(|r| format!("{} {}", r.name, r.kills))
        .collect();
    let resends: u32 = studies.iter().map(|s| s.sends.saturating_sub(1)).sum();
    let summary = format!(
        "faults summary ({plan}, seed {seed}):\n\
         \x20 studies            {n} x {slices} slices, {resends} whole-study re-sends by the sender\n\
         \x20 kills (kill -9)    {kills}: {roles}; slowest restart {slow:.1}s\n\
         \x20 redis restarts     {redis} (kill -9, append-only file)\n\
         \x20 postgres crashes   {pgc} (SIGQUIT, crash recovery)\n\
         \x20 pacs outages       {outages}, {down:.1}s down\n\
         \x20 jobs               {jobs} ({segmentations} segmentation runs, {rerun} jobs segmented more than once, max attempts {max_attempts}, {superseded} superseded by a later job)\n\
         \x20 deliveries         {sends_ok} successful C-STOREs of a job's results, {sends_failed} failed and retried, {dup} jobs sent more than once\n\
         \x20 pacs               {pacs_instances} result instances for {n} studies\n\
         \x20 time               {total:.0}s (chaos {chaos:.0}s, drain {drain:.0}s)\n\
         \x20 outcome            {outcome}",
        plan = plan.name,
        n = studies.len(),
        roles = per_role.join(", "),
        slow = chaos_report.slowest_restart,
        redis = chaos_report.redis_restarts,
        pgc = chaos_report.pg_crashes,
        outages = chaos_report.pacs_outages,
        down = chaos_report.pacs_down.as_secs_f64(),
        jobs = checks.jobs,
        superseded = checks.superseded,
        segmentations = checks.segmentation_runs,
        rerun = checks.jobs_rerun,
        max_attempts = checks.max_attempts,
        sends_ok = checks.sends_ok,
        sends_failed = checks.sends_failed,
        dup = checks.jobs_sent_twice,
        pacs_instances = checks.pacs_instances,
        total = shared.start.elapsed().as_secs_f64(),
        chaos = chaos_end.as_secs_f64(),
        drain = drain_took.as_secs_f64(),
        outcome = if failures.is_empty() {
            "every study has exactly its results".to_string()
        } else {
            format!("{} failures", failures.len())
        },
    );
    shared.note(&summary);

    let keep = !failures.is_empty() || std::env::var_os("LIVERSEG_FAULTS_KEEP").is_some();
    if keep {
        let evidence = tmp.path().join("evidence");
        keep_evidence(svc, &evidence);
        std::fs::write(evidence.join("redis.log"), redis.log()).unwrap();
        std::fs::write(evidence.join("postgres.log"), pg.log()).unwrap();
    }
    // Stop the roles before the servers they use (and before the folder
    // goes, unless it is kept).
    drop(roles);
    if keep {
        // The received CT is the bulk of the folder: keep its listing only.
        let instances = dir.join("data/instances");
        let mut listing = String::new();
        for study in std::fs::read_dir(&instances)
            .into_iter()
            .flatten()
            .flatten()
        {
            for series in std::fs::read_dir(study.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let files = std::fs::read_dir(series.path()).map_or(0, |d| d.count());
                listing += &format!(
                    "{} {} {files}\n",
                    study.file_name().to_string_lossy(),
                    series.file_name().to_string_lossy()
                );
            }
        }
        std::fs::write(tmp.path().join("evidence/instances.txt"), listing).unwrap();
        let _ = std::fs::remove_dir_all(&instances);
        let _ = std::fs::remove_dir_all(tmp.path().join("subset"));
        let kept = tmp.keep();
        eprintln!(
            "the run's folder is kept: {} (chaos.log, liverseg/service-*.log, evidence/, pacs/orthanc/orthanc.log)",
            kept.display()
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The other path to two result sets: a PACS sends 24 of 32 slices, then
/// pauses longer than `listener.stable_seconds`, so the partial series
/// completes and gets a job; then it sends the rest, and the whole series
/// gets a second job. The worker must not deliver the partial one: when it
/// comes to run it, the series no longer has the content the job was made
/// for, and the job ends without results, superseded by the whole series'
/// job. (The worker starts only once both jobs exist, so the order is fixed.)
#[test]
fn a_job_for_a_partial_series_gives_way_to_the_whole_series() {
    let Some(setup) = StepByStep::start("supersede") else {
        return;
    };
    let (files, series_uid) = (&setup.files, &setup.series_uid);
    let listener = setup.role("listener");
    let count =
        |n: u64| move |jobs: &[Value]| jobs.iter().any(|j| j["instance_count"].as_u64() == Some(n));

    send(&listener, &files[..24]);
    let mut jobs = Vec::new();
    liverseg_tests::wait_until(Duration::from_secs(30), || {
        jobs = listener.jobs_for(series_uid);
        count(24)(&jobs)
    });
    assert!(count(24)(&jobs), "no job for the 24 slices: {jobs:?}");
    send(&listener, &files[24..]);
    liverseg_tests::wait_until(Duration::from_secs(30), || {
        jobs = listener.jobs_for(series_uid);
        count(32)(&jobs)
    });
    assert!(count(32)(&jobs), "no job for the 32 slices: {jobs:?}");

    let worker = setup.role("worker");
    liverseg_tests::wait_until(Duration::from_secs(300), || {
        jobs = listener.jobs_for(series_uid);
        jobs.len() == 2 && jobs.iter().all(|j| j["state"] == "done")
    });
    drop(worker);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let results = |job: &Value| {
        let id = job["id"].as_str().unwrap();
        let shown: Value =
            serde_json::from_slice(&listener.cli(&["jobs", "show", id]).stdout).expect("jobs show");
        // The DICOM ones (the mesh files are kept beside them).
        shown["results"].as_array().map_or(0, |rs| {
            rs.iter()
                .filter(|r| r["sop_instance_uid"].is_string())
                .count()
        })
    };
    for job in &jobs {
        assert_eq!(job["state"], "done", "{job}");
        let summary: Value = serde_json::from_str(job["detail"].as_str().unwrap()).unwrap();
        if job["instance_count"] == 24 {
            assert!(
                summary["superseded"]
                    .as_str()
                    .is_some_and(|r| r.contains("24 instances then, 32 now")),
                "the partial job was not superseded: {summary}"
            );
            assert_eq!(results(job), 0, "the partial job kept results");
        } else {
            assert_eq!(summary["liver_found"], true, "{summary}");
            assert_eq!(results(job), 3, "SEG, STL and SR for the whole series");
        }
    }
}

/// What the step-by-step tests share: the 32 slices as a new study, a
/// PostgreSQL and a Redis, and roles that complete a series after 2 s of
/// quiet.
struct StepByStep {
    files: Vec<PathBuf>,
    series_uid: String,
    dir: PathBuf,
    metadata_url: String,
    redis: RedisServer,
    _pg: PgServer,
    _tmp: tempfile::TempDir,
}

impl StepByStep {
    /// `None` (the test skips) without the test data, Redis or PostgreSQL.
    fn start(database: &str) -> Option<StepByStep> {
        let data = test_data()?;
        let redis = RedisServer::start()?;
        let pg = PgServer::start()?;
        let tmp = tempfile::tempdir().unwrap();
        let subset = slices_subset(&data, tmp.path());
        let (files, _, series_uid) =
            new_study(&subset, &tmp.path().join("study"), &mut Rng(seed()));
        let dir = tmp.path().join("liverseg");
        std::fs::create_dir_all(&dir).unwrap();
        Some(StepByStep {
            files,
            series_uid,
            dir,
            metadata_url: pg.create_database(database),
            redis,
            _pg: pg,
            _tmp: tmp,
        })
    }

    fn role(&self, roles: &str) -> Service {
        let env = [
            (
                "LIVERSEG__STORAGE__METADATA_URL",
                self.metadata_url.as_str(),
            ),
            ("LIVERSEG__QUEUE__URL", self.redis.url.as_str()),
            ("LIVERSEG__LISTENER__STABLE_SECONDS", "2"),
            ("LIVERSEG__LOG__LEVEL", "warn"),
        ];
        Service::start_roles(&self.dir, free_port(), Some(roles), &env)
    }
}

/// Sends `files` to `svc` with storescu, which must see every one taken.
fn send(svc: &Service, files: &[PathBuf]) {
    let paths: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    let out = storescu(svc.dicom_port, "LIVERSEG", "PACS", &paths, &[]).unwrap();
    assert!(
        out.status.success(),
        "storescu: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The slices every study copies, in `dir/subset`, named so that the
/// copies (and the sends) go feet to head.
fn slices_subset(data: &Path, dir: &Path) -> PathBuf {
    let ct = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let subset = dir.join("subset");
    std::fs::create_dir_all(&subset).unwrap();
    for i in SLICES {
        let name = format!("image_{i}");
        std::fs::copy(ct.join(&name), subset.join(format!("slice_{i:03}")))
            .unwrap_or_else(|e| panic!("copy {name}: {e}"));
    }
    subset
}

/// A copy of the slices in `to` as a new study: new Study and Series
/// Instance UIDs for all, a new SOP Instance UID each. Returns the files
/// (feet to head) and the two UIDs.
fn new_study(subset: &Path, to: &Path, rng: &mut Rng) -> (Vec<PathBuf>, String, String) {
    let (study_uid, series_uid) = (rng.uid(), rng.uid());
    let args = [
        "-gin".to_string(),
        "-m".to_string(),
        format!("(0020,000D)={study_uid}"),
        "-m".to_string(),
        format!("(0020,000E)={series_uid}"),
    ];
    let files = modified_copy(subset, to, &args);
    let id = read_header(&files[0]).unwrap().identity;
    assert_eq!(
        (&id.study_uid, &id.series_uid),
        (&study_uid, &series_uid),
        "dcmodify did not set the UIDs"
    );
    (files, study_uid, series_uid)
}

/// Sends the studies one after another to a random listener, each paced by
/// the kill count (and the clock, for the soak), re-sending a whole study
/// until `storescu` had every file acknowledged, as a PACS retries. Returns
/// what went wrong.
fn send_stream(
    plan: &Plan,
    subset: &Path,
    studies_dir: &Path,
    ports: &[u16],
    mut rng: Rng,
    shared: &Shared,
) -> Vec<String> {
    let mut failures = Vec::new();
    for i in 0..plan.studies {
        // Pacing: study i goes once i/n of the kills are done (and i/n of
        // the minimum duration has passed).
        let kills_due = plan.min_kills as usize * i / plan.studies;
        let time_due = plan.min_duration.mul_f64(i as f64 / plan.studies as f64);
        while (shared.kills.load(Ordering::SeqCst) as usize) < kills_due
            || shared.start.elapsed() < time_due
        {
            if shared.chaos_over.load(Ordering::SeqCst) {
                failures.push(format!("the chaos stopped before study {i} was sent"));
                return failures;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let to = studies_dir.join(format!("{i:04}"));
        let (files, study_uid, series_uid) = new_study(subset, &to, &mut rng);
        let started = Instant::now();
        let mut sends = 0;
        loop {
            sends += 1;
            let port = ports[rng.below(ports.len() as u64) as usize];
            shared.sending_to.store(u32::from(port), Ordering::SeqCst);
            let out = storescu(port, "LIVERSEG", "PACS", &[&to], &[]).expect("storescu");
            shared.sending_to.store(0, Ordering::SeqCst);
            let log = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let acked = acknowledged_files(&log).len();
            if out.status.success() && acked == files.len() {
                break;
            }
            shared.note(format!(
                "study {i}: send {sends} to :{port} ended with {acked} of {} acknowledged ({}); sending it again",
                files.len(),
                out.status
            ));
            if started.elapsed() > Duration::from_secs(300) {
                failures.push(format!(
                    "study {i} ({study_uid}) could not be sent in 300 s"
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        shared.note(format!(
            "study {i} sent ({sends} sends, {:.1}s): study {study_uid} series {series_uid}",
            started.elapsed().as_secs_f64()
        ));
        shared
            .studies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Study {
                study_uid,
                series_uid,
                sends,
            });
        // The copy is no longer needed (a soak would fill the disk).
        let _ = std::fs::remove_dir_all(&to);
    }
    failures
}

/// Kills a random role every so often and restarts it; at the scheduled
/// kill counts restarts Redis, crashes PostgreSQL and stops the PACS. Ends
/// when the stream is sent, enough kills are done and every job has
/// finished (or `chaos_grace` has passed).
fn chaos(
    plan: &Plan,
    roles: &mut [Role],
    redis: &mut RedisServer,
    pg: &mut PgServer,
    pacs: &mut Orthanc,
    mut rng: Rng,
    shared: &Shared,
) -> ChaosReport {
    let mut report = ChaosReport::default();
    let mut outage: Option<Instant> = None;
    let mut pacs_due: Option<u32> = None;
    let mut enough_since: Option<Instant> = None;
    let mut last_check = Instant::now();
    loop {
        std::thread::sleep(rng.millis(plan.kill_every_ms));
        if let Some(since) = outage
            && since.elapsed() >= plan.pacs_outage
        {
            pacs.spawn();
            report.pacs_down += since.elapsed();
            outage = None;
            shared.note(format!(
                "pacs started again after {:.1}s",
                since.elapsed().as_secs_f64()
            ));
        }
        let kills = shared.kills.load(Ordering::SeqCst);
        let sent_all = shared.sender_over.load(Ordering::SeqCst);
        if sent_all && kills >= plan.min_kills && shared.start.elapsed() >= plan.min_duration {
            let since = *enough_since.get_or_insert_with(Instant::now);
            if outage.is_none() && last_check.elapsed() >= Duration::from_secs(3) {
                last_check = Instant::now();
                if all_finished(&roles[0].svc, &shared.studies()) {
                    shared.note("every job finished: the chaos stops");
                    break;
                }
            }
            if since.elapsed() >= plan.chaos_grace {
                shared.note("jobs still unfinished after the grace period: the chaos stops");
                break;
            }
        }

        // A role, killed at whatever it is doing, down for a moment, back.
        // While a study is being sent, every other kill goes to the
        // listener receiving it: a transfer is short next to the pauses,
        // and a kill in the middle of one is the case that matters most.
        let receiving = shared.sending_to.load(Ordering::SeqCst);
        let i = match roles.iter().position(|r| {
            u32::from(r.svc.dicom_port) == receiving && r.name.starts_with("listener")
        }) {
            Some(i) if rng.below(2) == 0 => i,
            _ => rng.below(roles.len() as u64) as usize,
        };
        let role = &mut roles[i];
        let pid = role.svc.pid().unwrap_or(0);
        let started = Instant::now();
        role.svc.kill_hard();
        std::thread::sleep(rng.millis((0, 500)));
        role.svc.restart();
        role.kills += 1;
        let kills = shared.kills.fetch_add(1, Ordering::SeqCst) + 1;
        let took = started.elapsed().as_secs_f64();
        report.slowest_restart = report.slowest_restart.max(took);
        shared.note(format!(
            "kill {kills}: {} (pid {pid}) killed, back in {took:.1}s as pid {}",
            role.name,
            role.svc.pid().unwrap_or(0)
        ));

        let at = kills % ROUND;
        if REDIS_AT.contains(&at) {
            let started = Instant::now();
            redis.restart();
            report.redis_restarts += 1;
            shared.note(format!(
                "redis killed (kill -9) and back on its append-only file in {:.1}s (pid {})",
                started.elapsed().as_secs_f64(),
                redis.pid()
            ));
        }
        if POSTGRES_AT.contains(&at) {
            let started = Instant::now();
            pg.crash_and_restart();
            report.pg_crashes += 1;
            shared.note(format!(
                "postgres crashed (SIGQUIT) and recovered in {:.1}s (pid {})",
                started.elapsed().as_secs_f64(),
                pg.pid()
            ));
        }
        if at == PACS_AT {
            pacs_due = Some(kills);
        }
        // The PACS goes down while a job is running, so that its delivery
        // meets the outage (or 20 kills later in any case).
        if let Some(due) = pacs_due
            && outage.is_none()
            && (kills >= due + 20
                || try_jobs(&roles[0].svc)
                    .is_some_and(|jobs| jobs.iter().any(|j| j["state"] == "running")))
        {
            pacs.stop();
            report.pacs_outages += 1;
            outage = Some(Instant::now());
            pacs_due = None;
            shared.note(format!("pacs stopped for {}s", plan.pacs_outage.as_secs()));
        }
    }
    if let Some(since) = outage {
        pacs.spawn();
        report.pacs_down += since.elapsed();
        shared.note("pacs started again");
    }
    report
}

/// What the metadata store knows, for a run whose folder is kept (the
/// store itself goes with PostgreSQL): `jobs.json`, `audit.jsonl` and
/// `job-ID.json` (`jobs show`: results, deliveries, events) per job.
fn keep_evidence(svc: &Service, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let jobs = svc.cli(&["jobs", "list", "--json", "--limit", "100000"]);
    std::fs::write(to.join("jobs.json"), &jobs.stdout).unwrap();
    let audit = svc.cli(&["audit", "export"]);
    std::fs::write(to.join("audit.jsonl"), &audit.stdout).unwrap();
    let jobs: Vec<Value> = serde_json::from_slice(&jobs.stdout).unwrap_or_default();
    for j in &jobs {
        let id = j["id"].as_str().unwrap_or_default();
        let shown = svc.cli(&["jobs", "show", id]);
        std::fs::write(to.join(format!("job-{id}.json")), &shown.stdout).unwrap();
    }
}

/// Every job in liverseg, or `None` while the store does not answer.
fn try_jobs(svc: &Service) -> Option<Vec<Value>> {
    let out = svc.cli(&["jobs", "list", "--json", "--limit", "100000"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// True when every study has a job and no job is still to run.
fn all_finished(svc: &Service, studies: &[Study]) -> bool {
    let Some(jobs) = try_jobs(svc) else {
        return false;
    };
    let finished = |j: &Value| j["state"] == "done" || j["state"] == "dead";
    studies.iter().all(|s| {
        jobs.iter()
            .any(|j| j["series_uid"] == s.series_uid.as_str())
    }) && jobs.iter().all(finished)
}

/// Figures for the summary.
#[derive(Debug, Default)]
struct Checks {
    jobs: usize,
    segmentation_runs: i64,
    jobs_rerun: usize,
    max_attempts: i64,
    sends_ok: usize,
    sends_failed: usize,
    jobs_sent_twice: usize,
    pacs_instances: usize,
    /// Jobs of a partial series that a later job for the whole series
    /// replaced (ended without results).
    superseded: usize,
}

/// The end state, study by study: exactly one finished job with a liver in
/// liverseg, exactly its three result instances in the PACS. Appends what
/// is wrong to `failures`.
fn check(
    svc: &Service,
    pacs: &Orthanc,
    studies: &[Study],
    slices: usize,
    dir: &Path,
    failures: &mut Vec<String>,
) -> Checks {
    let mut checks = Checks::default();
    let Some(jobs) = try_jobs(svc) else {
        failures.push("jobs list failed at the end".into());
        return checks;
    };
    checks.jobs = jobs.len();
    for j in &jobs {
        let attempts = j["attempts"].as_i64().unwrap_or(0);
        checks.segmentation_runs += attempts;
        checks.max_attempts = checks.max_attempts.max(attempts);
        if attempts > 1 {
            checks.jobs_rerun += 1;
        }
        if j["state"] != "done" {
            failures.push(format!(
                "job {} ({} instances, series {}) is {}: {}",
                j["id"], j["instance_count"], j["series_uid"], j["state"], j["detail"]
            ));
        }
    }
    let known: BTreeSet<&str> = studies.iter().map(|s| s.series_uid.as_str()).collect();
    for j in &jobs {
        if !known.contains(j["series_uid"].as_str().unwrap_or_default()) {
            failures.push(format!("a job for a series nobody sent: {j}"));
        }
    }

    // Every delivery attempt is in the audit trail.
    let mut sent_per_job: BTreeMap<String, usize> = BTreeMap::new();
    let export = svc.cli(&["audit", "export"]);
    if export.status.success() {
        for line in String::from_utf8_lossy(&export.stdout).lines() {
            let Ok(r) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if r["action"] != "send" {
                continue;
            }
            if r["outcome"] == "ok" {
                checks.sends_ok += 1;
                let job = r["detail"].as_str().unwrap_or_default();
                let job = job.split(':').next().unwrap_or_default().to_string();
                *sent_per_job.entry(job).or_default() += 1;
            } else {
                checks.sends_failed += 1;
            }
        }
    } else {
        failures.push(format!(
            "audit export failed: {}",
            String::from_utf8_lossy(&export.stderr)
        ));
    }
    checks.jobs_sent_twice = sent_per_job.values().filter(|n| **n > 1).count();

    for (i, study) in studies.iter().enumerate() {
        let label = format!("study {i} ({})", study.study_uid);
        let all_of_series: Vec<&Value> = jobs
            .iter()
            .filter(|j| j["series_uid"] == study.series_uid.as_str())
            .collect();
        // A job made for a partial series (the sender paused longer than
        // the completion delay) ends without results once the series has
        // grown: the job for the whole series replaces it. It must not
        // have sent anything.
        let (replaced, of_series): (Vec<&Value>, Vec<&Value>) =
            all_of_series.into_iter().partition(|j| {
                j["detail"]
                    .as_str()
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                    .is_some_and(|d| d.get("superseded").is_some())
            });
        checks.superseded += replaced.len();
        for j in &replaced {
            let id = j["id"].as_str().unwrap_or_default();
            if sent_per_job.get(id).copied().unwrap_or(0) > 0 {
                failures.push(format!(
                    "{label}: job {id} was superseded but sent its results"
                ));
            }
        }
        if of_series.len() != 1 {
            let listed: Vec<String> = of_series
                .iter()
                .map(|j| {
                    format!(
                        "{} {} with {} instances, fingerprint {}",
                        j["id"], j["state"], j["instance_count"], j["fingerprint"]
                    )
                })
                .collect();
            failures.push(format!(
                "{label}: {} jobs for its series, expected 1: {listed:?}",
                of_series.len()
            ));
        }
        for j in &of_series {
            if j["instance_count"].as_u64() != Some(slices as u64) {
                failures.push(format!(
                    "{label}: job {} covers {} instances of {slices}",
                    j["id"], j["instance_count"]
                ));
            }
            if j["state"] == "done" {
                let summary: Value = j["detail"]
                    .as_str()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or(Value::Null);
                if summary["liver_found"] != true {
                    failures.push(format!("{label}: no liver found: {summary}"));
                }
            }
        }
        // The instances liverseg kept: exactly the slices sent.
        let kept = std::fs::read_dir(
            dir.join("data/instances")
                .join(&study.study_uid)
                .join(&study.series_uid),
        )
        .map(|d| d.count())
        .unwrap_or(0);
        if kept != slices {
            failures.push(format!(
                "{label}: {kept} instance files kept, {slices} sent"
            ));
        }

        // The PACS: one series per result kind, one instance each, and they
        // are the ones the job recorded.
        let series = pacs.study_series(&study.study_uid);
        let mut in_pacs = BTreeSet::new();
        for s in &series {
            if !RESULT_MODALITIES.contains(&s.modality.as_str()) {
                failures.push(format!(
                    "{label}: unexpected {} series {} in the PACS",
                    s.modality, s.series_uid
                ));
            }
            checks.pacs_instances += s.instances.len();
            for id in &s.instances {
                in_pacs.insert(pacs.sop_instance_uid(id));
            }
        }
        for m in RESULT_MODALITIES {
            let of_kind: Vec<_> = series.iter().filter(|s| s.modality == m).collect();
            let instances: usize = of_kind.iter().map(|s| s.instances.len()).sum();
            if of_kind.len() != 1 || instances != 1 {
                failures.push(format!(
                    "{label}: {} {m} series with {instances} instances in the PACS, expected 1 with 1: {of_kind:?}",
                    of_kind.len()
                ));
            }
        }
        if let [job] = of_series.as_slice() {
            let id = job["id"].as_str().unwrap_or_default();
            let shown = svc.cli(&["jobs", "show", id]);
            let shown: Value = serde_json::from_slice(&shown.stdout).unwrap_or(Value::Null);
            let recorded: BTreeSet<String> = shown["results"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| r["sop_instance_uid"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if recorded != in_pacs {
                failures.push(format!(
                    "{label}: the PACS holds {in_pacs:?}, job {id} recorded {recorded:?}"
                ));
            }
        }
    }
    checks
}
