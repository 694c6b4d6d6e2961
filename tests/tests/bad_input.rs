//! The bad-input corpus (`tests/corpus/`, made by `src/corpus.rs`),
//! replayed twice:
//!
//! * through the library entry points the fuzz targets drive
//!   (`src/bad_input.rs`), each input under `catch_unwind` on a thread with
//!   the 2 MiB stack of the service's threads, in a child process so that
//!   an abort (a stack overflow) is reported with its input instead of
//!   ending the test: no panic, no abort, a clean `Err`, and the few inputs
//!   that turn out valid listed;
//! * through a real `liverseg serve` (listener and gateway): every PDU
//!   stream on its own TCP connection to the listener, every Part 10 file
//!   as a C-STORE data set and in a STOW-RS request, every STOW-RS request
//!   and every SEG (before and after the series it refers to is held)
//!   posted to the gateway. Each must be refused cleanly (A-ASSOCIATE-RJ,
//!   A-ABORT or a close within the listener's timeout; a DIMSE failure
//!   status; a 4xx with a JSON error), the service must stay up and keep
//!   answering C-ECHO and `/readyz`, and nothing may be stored (no instance
//!   rows, no files, no temporary files left behind) beyond what the
//!   library replay found valid.

use dicom_ul::Pdu;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use liverseg_dicom::{dimse, sop};
use liverseg_tests::bad_input::{self, base};
use liverseg_tests::corpus::{self, Category};
use liverseg_tests::http::dechunk;
use liverseg_tests::service::{Service, http_get};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The largest single allocation an input may cause in the library
/// replay: the inputs are at most a few MB, so anything larger means a
/// parser allocated what a length field declared rather than what is
/// there. Larger requests are refused (null) in the replay child, so the
/// replay stays fast; the largest request per input is reported.
const ALLOCATION_LIMIT: usize = 64 << 20;

static GUARD_ALLOCATIONS: AtomicBool = AtomicBool::new(false);
static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

struct GuardedAllocator;

impl GuardedAllocator {
    fn refuse(size: usize) -> bool {
        if !GUARD_ALLOCATIONS.load(Ordering::Relaxed) {
            return false;
        }
        LARGEST_ALLOCATION.fetch_max(size, Ordering::Relaxed);
        size > ALLOCATION_LIMIT
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged, or
// answered with null (allocation failure), which callers must handle.
unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::refuse(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: GuardedAllocator = GuardedAllocator;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// The corpus files of a category, sorted by name.
fn inputs(category: Category) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir().join(category.dir());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn corpus_is_what_the_generator_makes() {
    let generated = corpus::generate();
    let mut stale = Vec::new();
    for category in Category::ALL {
        let on_disk: BTreeMap<String, Vec<u8>> = inputs(category).into_iter().collect();
        let made: BTreeMap<String, Vec<u8>> = generated
            .iter()
            .filter(|i| i.category == category)
            .map(|i| (i.name.clone(), i.bytes.clone()))
            .collect();
        for name in on_disk.keys().chain(made.keys()).collect::<BTreeSet<_>>() {
            if on_disk.get(name) != made.get(name) {
                stale.push(format!("{}/{name}", category.dir()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "tests/corpus differs from src/corpus.rs (regenerate with `cargo run -p liverseg-tests --bin make_corpus`): {stale:?}"
    );
    assert!(generated.len() >= 500, "{} inputs", generated.len());
    let total: usize = generated.iter().map(|i| i.bytes.len()).sum();
    assert!(total < 10 << 20, "the corpus is {total} bytes");
}

// ------------------------------------------------------- library replay

/// The stack of the service's threads (tokio workers and blocking pool).
const SERVICE_STACK: usize = 2 << 20;
const CHILD_ENV: &str = "LIVERSEG_BAD_INPUT_CHILD";

/// The doors each category is replayed through; the first is the one the
/// service replay uses.
fn doors(category: Category) -> &'static [&'static str] {
    match category {
        Category::Pdu => &["listener"],
        Category::Dataset => &["stow", "cstore", "part10"],
        Category::Multipart => &["stow"],
        Category::Seg => &["stow", "correction"],
    }
}

/// One library entry point on one input: `Ok` with what would be stored
/// (SOP Instance UIDs, comma-separated), `Err` with the refusal.
fn run_door(category: Category, door: &str, b: &[u8]) -> Result<String, String> {
    let uid = |p: liverseg_dicom::instance::Parsed| p.identity.sop_instance_uid;
    match (category, door) {
        (Category::Pdu, _) => bad_input::pdu_stream(b).map(|s| format!("{s:?}")),
        (Category::Dataset | Category::Seg, "stow") => bad_input::stow_file(b).map(uid),
        (Category::Dataset, "cstore") => {
            let plan = bad_input::cstore_plan(b);
            bad_input::cstore_data_set(
                &bad_input::store_command(&plan),
                &plan.transfer_syntax,
                plan.data_set,
            )
            .map(uid)
        }
        (Category::Dataset, _) => liverseg_dicom::instance::parse_part10(b)
            .map(|(p, _)| uid(p))
            .map_err(|e| e.to_string()),
        (Category::Multipart, _) => bad_input::multipart(b)
            .map(|uids| uids.join(","))
            .map_err(|r| format!("{} {}", r.status, r.reason)),
        (Category::Seg, _) => bad_input::seg(b).map(|voxels| format!("{voxels} liver voxels")),
    }
}

thread_local! {
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// What an entry point did with one input.
#[derive(Debug, Clone)]
enum Verdict {
    Refused(String),
    Accepted(String),
    Panicked(String),
    /// The process died (a stack overflow aborts it) or hung.
    Crashed(String),
}

/// `s` on one line, without terminal colour codes.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            '\n' => out.push_str(" | "),
            c => out.push(c),
        }
    }
    out
}

/// Child process mode: replays a category from an input and door on,
/// printing `@@START i d` before and `@@V i d KIND message` after each.
#[test]
#[ignore = "run by the replay tests as a child process"]
fn replay_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split(':');
    let name = parts.next();
    let category = Category::ALL
        .into_iter()
        .find(|c| Some(c.dir()) == name)
        .expect("category");
    let from: usize = parts.next().unwrap().parse().unwrap();
    let from_door: usize = parts.next().unwrap().parse().unwrap();
    std::panic::set_hook(Box::new(|info| {
        PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
    }));
    let list = inputs(category);
    let doors = doors(category);
    let mut out = std::io::stdout();
    GUARD_ALLOCATIONS.store(true, Ordering::Relaxed);
    for (i, (_, bytes)) in list.iter().enumerate().skip(from) {
        let first = if i == from { from_door } else { 0 };
        for (d, door) in doors.iter().enumerate().skip(first) {
            writeln!(out, "@@START {i} {d}").unwrap();
            out.flush().unwrap();
            let bytes = bytes.clone();
            let door = *door;
            let started = Instant::now();
            LARGEST_ALLOCATION.store(0, Ordering::Relaxed);
            let verdict = std::thread::Builder::new()
                .stack_size(SERVICE_STACK)
                .spawn(move || {
                    let run = std::panic::AssertUnwindSafe(|| run_door(category, door, &bytes));
                    match std::panic::catch_unwind(run) {
                        Ok(Ok(detail)) => ("A", detail),
                        Ok(Err(reason)) => ("R", reason),
                        Err(_) => (
                            "P",
                            PANIC
                                .with(|p| p.borrow_mut().take())
                                .unwrap_or_else(|| "panic".into()),
                        ),
                    }
                })
                .unwrap()
                .join()
                .unwrap();
            writeln!(
                out,
                "@@V {i} {d} {} {} {} {}",
                verdict.0,
                LARGEST_ALLOCATION.load(Ordering::Relaxed),
                started.elapsed().as_millis(),
                one_line(&verdict.1)
            )
            .unwrap();
            out.flush().unwrap();
        }
    }
}

/// Verdicts of one input, per door of its category.
struct Replayed {
    category: Category,
    name: String,
    verdicts: Vec<(&'static str, Verdict)>,
    /// Per door: the largest allocation requested, and milliseconds.
    costs: Vec<(usize, u64)>,
}

impl Replayed {
    /// The verdict of the door the service replay uses.
    fn main(&self) -> &Verdict {
        &self.verdicts[0].1
    }

    /// A door that crashed, or asked for more memory than the input
    /// could justify: the service would die or swell on it.
    fn harmful(&self, door: &str) -> Option<String> {
        let d = self.verdicts.iter().position(|(x, _)| *x == door)?;
        match &self.verdicts[d].1 {
            Verdict::Crashed(why) => Some(why.clone()),
            _ if self.costs[d].0 > ALLOCATION_LIMIT => {
                Some(format!("asks for {} MB", self.costs[d].0 >> 20))
            }
            _ => None,
        }
    }

    fn accepted(&self, door: &str) -> Option<&str> {
        self.verdicts.iter().find_map(|(d, v)| match v {
            Verdict::Accepted(detail) if *d == door => Some(detail.as_str()),
            _ => None,
        })
    }
}

/// Replays one category in child processes, restarting after an input
/// that ends the process.
fn replay_category(category: Category) -> Vec<Replayed> {
    let list = inputs(category);
    let doors = doors(category);
    let mut verdicts: Vec<Vec<Option<Verdict>>> = vec![vec![None; doors.len()]; list.len()];
    // (largest allocation request, milliseconds) per input and door.
    let mut costs: Vec<Vec<(usize, u64)>> = vec![vec![(0, 0); doors.len()]; list.len()];
    let (mut from, mut from_door) = (0, 0);
    while from < list.len() {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "replay_child", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, format!("{}:{from}:{from_door}", category.dir()))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the replay child");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        // A watchdog: an input that hangs an entry point is a finding too.
        let pid = child.id();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = {
            let done = done.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if start.elapsed() > Duration::from_secs(120) {
                        let _ = std::process::Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .status();
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                false
            })
        };
        let mut last_started = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may have written "test replay_child ... " before it.
            let Some(at) = line.find("@@") else { continue };
            let mut f = line[at..].splitn(7, ' ');
            match f.next() {
                Some("@@START") => {
                    let i: usize = f.next().unwrap().parse().unwrap();
                    let d: usize = f.next().unwrap().parse().unwrap();
                    last_started = Some((i, d));
                }
                Some("@@V") => {
                    let i: usize = f.next().unwrap().parse().unwrap();
                    let d: usize = f.next().unwrap().parse().unwrap();
                    let kind = f.next().unwrap();
                    costs[i][d] = (
                        f.next().unwrap().parse().unwrap(),
                        f.next().unwrap().parse().unwrap(),
                    );
                    let msg = f.next().unwrap_or("").to_string();
                    verdicts[i][d] = Some(match kind {
                        "A" => Verdict::Accepted(msg),
                        "R" => Verdict::Refused(msg),
                        _ => Verdict::Panicked(msg),
                    });
                }
                _ => {}
            }
        }
        let status = child.wait().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let hung = watchdog.join().unwrap();
        let stderr = err_reader.join().unwrap();
        match last_started {
            Some((i, d)) if verdicts[i][d].is_none() => {
                let why = if hung {
                    "hung for 120 s".to_string()
                } else {
                    let tail: Vec<&str> = stderr
                        .lines()
                        .filter(|l| {
                            l.contains("overflow") || l.contains("fatal") || l.contains("memory")
                        })
                        .collect();
                    format!("process ended ({status}): {}", one_line(&tail.join("\n")))
                };
                verdicts[i][d] = Some(Verdict::Crashed(why));
                (from, from_door) = if d + 1 < doors.len() {
                    (i, d + 1)
                } else {
                    (i + 1, 0)
                };
            }
            _ => {
                assert!(
                    status.success(),
                    "the replay child failed outside an input ({} from {from}:{from_door}, last started {last_started:?}): {status}\n{stderr}",
                    category.dir()
                );
                break;
            }
        }
    }
    list.into_iter()
        .zip(verdicts.into_iter().zip(costs))
        .map(|((name, _), (v, c))| Replayed {
            category,
            name,
            verdicts: doors
                .iter()
                .zip(v)
                .map(|(d, v)| (*d, v.expect("every door replayed")))
                .collect(),
            costs: c,
        })
        .collect()
}

/// The library replay of the whole corpus, once per test process.
fn library_replay() -> &'static [Replayed] {
    static REPLAY: OnceLock<Vec<Replayed>> = OnceLock::new();
    REPLAY.get_or_init(|| {
        Category::ALL
            .into_iter()
            .flat_map(replay_category)
            .collect()
    })
}

fn inputs_len(category: Category, name: &str) -> u64 {
    std::fs::metadata(corpus_dir().join(category.dir()).join(name))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[test]
fn library_entry_points_refuse_bad_input_without_panicking() {
    let replayed = library_replay();
    let mut counts: BTreeMap<(Category, &str), [usize; 5]> = BTreeMap::new();
    let (mut failures, mut valid) = (Vec::new(), Vec::new());
    let mut slowest: Vec<(u64, String)> = Vec::new();
    for r in replayed {
        for ((door, v), (largest, millis)) in r.verdicts.iter().zip(&r.costs) {
            let c = counts.entry((r.category, door)).or_default();
            let at = format!("{}/{} ({door})", r.category.dir(), r.name);
            slowest.push((*millis, at.clone()));
            if *largest > ALLOCATION_LIMIT {
                c[4] += 1;
                failures.push(format!(
                    "ALLOCATION {at}: asks for one block of {largest} bytes ({} MB) for a {}-byte input",
                    largest >> 20,
                    inputs_len(r.category, &r.name)
                ));
            }
            match v {
                Verdict::Refused(_) => c[0] += 1,
                Verdict::Accepted(detail) => {
                    c[1] += 1;
                    valid.push(format!("{at}: {detail}"));
                }
                Verdict::Panicked(msg) => {
                    c[2] += 1;
                    failures.push(format!("PANIC {at}: {msg}"));
                }
                Verdict::Crashed(msg) => {
                    c[3] += 1;
                    failures.push(format!("CRASH {at}: {msg}"));
                }
            }
        }
    }
    println!(
        "library replay: category, door: inputs, refused, accepted-valid, panicked, crashed (aborted), over-allocating"
    );
    for ((category, door), [refused, accepted, panicked, crashed, big]) in &counts {
        println!(
            "  {:<10} {:<11} {:>4} {:>4} {:>4} {:>4} {:>4} {:>4}",
            category.dir(),
            door,
            refused + accepted + panicked + crashed,
            refused,
            accepted,
            panicked,
            crashed,
            big
        );
    }
    slowest.sort();
    let top: Vec<_> = slowest.iter().rev().take(3).collect();
    println!("  slowest: {top:?}");
    for v in &valid {
        println!("  accepted-valid: {v}");
    }
    for f in &failures {
        println!("  {f}");
    }
    let mut too_many = Vec::new();
    for category in Category::ALL {
        let mine: Vec<_> = replayed.iter().filter(|r| r.category == category).collect();
        let accepted = mine
            .iter()
            .filter(|r| matches!(r.main(), Verdict::Accepted(_)))
            .count();
        if accepted * 10 > mine.len() {
            too_many.push(format!("{}: {accepted} of {}", category.dir(), mine.len()));
        }
    }
    assert!(
        failures.is_empty() && too_many.is_empty(),
        "{} inputs panic, end the process or over-allocate:\n{}\nvalid inputs beyond a small minority: {too_many:?}",
        failures.len(),
        failures.join("\n")
    );
}

// ------------------------------------------------------- service replay

type Lib<'a> = BTreeMap<(Category, String), &'a Replayed>;

/// `listener.timeout_seconds` for the replay.
const LISTENER_TIMEOUT: u64 = 1;

/// A running service, with what went wrong so far.
struct Run {
    svc: Service,
    findings: Vec<String>,
    restarts: usize,
    /// (category/door) -> [inputs, refused, accepted-valid, findings]
    counts: BTreeMap<String, [usize; 4]>,
    stored_allowed: BTreeSet<String>,
    /// Inputs not sent: the library replay found they crash or swell the
    /// process (each is reported there); a representative of each kind is
    /// sent anyway.
    skipped: BTreeSet<String>,
    /// Bytes of the service log already scanned for panics.
    log_seen: usize,
    /// Temporary files a crash left behind (reported once, then ignored).
    temps_after_crashes: BTreeSet<PathBuf>,
}

/// Inputs sent to the service although the library replay found them
/// harmful, to show what they do to the real process: (category, name
/// without its number and extension).
const REPRESENTATIVES: &[(Category, &str)] = &[
    (Category::Pdu, "command-nested-10000-open"),
    (Category::Pdu, "command-length-10000000"),
    (Category::Dataset, "nested-512-open"),
    (Category::Dataset, "private-ob-length-10000000"),
];

fn label(name: &str) -> &str {
    let rest = name.split_once('-').map_or(name, |(_, r)| r);
    rest.rsplit_once('.').map_or(rest, |(l, _)| l)
}

fn representative(category: Category, name: &str) -> bool {
    REPRESENTATIVES.contains(&(category, label(name)))
}

impl Run {
    fn alive(&self) -> bool {
        let Some(pid) = self.svc.pid() else {
            return false;
        };
        let running = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
            .is_some_and(|state| !state.starts_with('Z') && !state.starts_with('X'));
        // A process that is exiting has closed its sockets before it
        // becomes a zombie: the admin port tells.
        running && TcpStream::connect(("127.0.0.1", self.svc.admin_port)).is_ok()
    }

    /// After an input: a panic in the service's log since the last look is
    /// a finding (the service may still have answered 4xx).
    fn check_log(&mut self, what: &str) {
        let log = self.svc.log_text();
        let new = log.get(self.log_seen.min(log.len())..).unwrap_or("");
        let panics: Vec<&str> = new
            .lines()
            .filter(|l| l.contains("panicked at") || l.contains("worker thread failed"))
            .take(3)
            .collect();
        if !panics.is_empty() {
            self.findings.push(format!(
                "SERVICE PANIC on {what}: {}",
                one_line(&panics.join("\n"))
            ));
        }
        self.log_seen = log.len();
    }

    /// After an exchange that ended abnormally (connection closed without
    /// an answer): gives a dying process a moment to be seen dead.
    fn settle(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1500) && self.alive() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// After an input: a dead service is a finding; it is started again.
    fn check_alive(&mut self, what: &str) -> bool {
        if self.alive() {
            self.check_log(what);
            return true;
        }
        let log = self.svc.log_text();
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .filter(|l| l.contains("overflow") || l.contains("panicked") || l.contains("fatal"))
            .take(3)
            .collect();
        self.findings.push(format!(
            "SERVICE DIED after {what}: {}",
            one_line(&tail.join("\n"))
        ));
        self.restarts += 1;
        self.svc.restart();
        self.log_seen = self.svc.log_text().len();
        let temps = self.temp_files();
        if !temps.is_empty() {
            self.findings.push(format!(
                "after the crash on {what}: temporary files left in the data directory: {temps:?}"
            ));
            self.temps_after_crashes.extend(temps);
        }
        false
    }

    /// Whether to send an input through `door`: not when the library
    /// replay found it harmful there, unless it is a representative.
    fn sendable(&mut self, lib: &Lib, category: Category, name: &str, door: &str) -> bool {
        let harmful = lib[&(category, name.to_string())].harmful(door);
        if harmful.is_some() && !representative(category, name) {
            self.skipped
                .insert(format!("{}/{name} ({door})", category.dir()));
            return false;
        }
        true
    }

    /// The service's peak resident memory so far (MB).
    fn peak_rss_mb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.svc.pid()?)).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024)
    }

    /// Runs `send` and reports a jump of the service's peak memory.
    fn measured<T>(&mut self, what: &str, bytes: usize, send: impl FnOnce(&mut Self) -> T) -> T {
        let (before, pid, started) = (self.peak_rss_mb(), self.svc.pid(), Instant::now());
        let out = send(self);
        let after = self.peak_rss_mb();
        if let (Some(b), Some(a)) = (before, after)
            && pid == self.svc.pid()
            && a > b + 128
        {
            self.findings.push(format!(
                "MEMORY {what}: the service's peak resident memory went from {b} MB to {a} MB ({:.1} s) for a {bytes}-byte input",
                started.elapsed().as_secs_f64()
            ));
        }
        out
    }

    fn count(&mut self, key: &str, slot: usize) {
        let c = self.counts.entry(key.to_string()).or_default();
        c[0] += 1;
        c[slot] += 1;
    }

    fn finding(&mut self, key: &str, text: String) {
        self.count(key, 3);
        self.findings.push(text);
    }
}

// ---- raw PDU streams

#[derive(Debug)]
enum Ending {
    Closed,
    Reset,
    Timeout,
    Failed(String),
}

/// Sends `bytes` on a new connection (without closing our side) and reads
/// until the listener closes or `deadline` passes.
fn pdu_exchange(port: u16, bytes: &[u8], deadline: Duration) -> (Vec<u8>, Ending, Duration) {
    let start = Instant::now();
    let mut s = match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s,
        Err(e) => return (vec![], Ending::Failed(e.to_string()), start.elapsed()),
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    // The listener may stop reading (and answer) before the end.
    let _ = s.write_all(bytes);
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (answer, Ending::Timeout, start.elapsed());
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => return (answer, Ending::Closed, start.elapsed()),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (answer, Ending::Reset, start.elapsed());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (answer, Ending::Timeout, start.elapsed());
            }
            Err(e) => return (answer, Ending::Failed(e.to_string()), start.elapsed()),
        }
    }
}

/// The PDU types of an answer, or why it is not a sequence of PDUs.
fn pdu_types(answer: &[u8]) -> Result<Vec<u8>, String> {
    let mut types = Vec::new();
    let mut rest = answer;
    while !rest.is_empty() {
        if rest.len() < 6 {
            return Err(format!("{} stray bytes", rest.len()));
        }
        let len = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]) as usize;
        if rest.len() < 6 + len {
            return Err(format!("PDU type {:#04x} cut short", rest[0]));
        }
        types.push(rest[0]);
        rest = &rest[6 + len..];
    }
    Ok(types)
}

fn pdu_label(t: u8) -> &'static str {
    match t {
        0x02 => "AC",
        0x03 => "RJ",
        0x04 => "P-DATA",
        0x06 => "RP",
        0x07 => "ABORT",
        _ => "?",
    }
}

impl Run {
    fn replay_pdus(&mut self, lib: &Lib) {
        let deadline = Duration::from_secs(LISTENER_TIMEOUT + 6);
        let mut list = Vec::new();
        for (name, bytes) in inputs(Category::Pdu) {
            if !self.sendable(lib, Category::Pdu, &name, "listener") {
                continue;
            }
            if representative(Category::Pdu, &name) {
                let port = self.svc.dicom_port;
                let what = format!("pdu/{name}");
                let (answer, ending, took) =
                    self.measured(&what, bytes.len(), |_| pdu_exchange(port, &bytes, deadline));
                println!(
                    "  representative {what}: {:?}, then {ending:?} after {} ms",
                    pdu_types(&answer).map(|t| t.iter().map(|&t| pdu_label(t)).collect::<Vec<_>>()),
                    took.as_millis()
                );
                self.settle();
                if self.check_alive(&what) {
                    self.count("pdu/listener", 1);
                } else {
                    self.count("pdu/listener", 3);
                }
                continue;
            }
            list.push((name, bytes));
        }
        let mut endings: BTreeMap<String, usize> = BTreeMap::new();
        let mut slowest = (Duration::ZERO, String::new());
        for chunk in list.chunks(32) {
            let port = self.svc.dicom_port;
            let mut results: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(_, bytes)| scope.spawn(move || pdu_exchange(port, bytes, deadline)))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            if !self.check_alive(&format!(
                "one of the PDU streams {}..{}",
                chunk[0].0,
                chunk[chunk.len() - 1].0
            )) {
                // Replayed one at a time to name the stream.
                results.clear();
                for (name, bytes) in chunk {
                    let r = pdu_exchange(self.svc.dicom_port, bytes, deadline);
                    if !self.check_alive(&format!("pdu/{name}")) {
                        self.count("pdu/listener", 3);
                        results.push((vec![], Ending::Failed("crashed the service".into()), r.2));
                    } else {
                        results.push(r);
                    }
                }
            }
            for ((name, _), (answer, ending, took)) in chunk.iter().zip(results) {
                if took > slowest.0 {
                    slowest = (took, name.clone());
                }
                let valid = matches!(
                    lib.get(&(Category::Pdu, name.clone())).map(|r| r.main()),
                    Some(Verdict::Accepted(_))
                );
                let types = pdu_types(&answer);
                let shape = match &types {
                    Ok(t) if t.is_empty() => "nothing".to_string(),
                    Ok(t) => t
                        .iter()
                        .map(|&t| pdu_label(t))
                        .collect::<Vec<_>>()
                        .join("+"),
                    Err(e) => e.clone(),
                };
                let mut wrong = Vec::new();
                match &ending {
                    Ending::Closed | Ending::Reset => {}
                    Ending::Timeout => wrong.push(format!(
                        "still open after {} s (listener timeout {LISTENER_TIMEOUT} s)",
                        deadline.as_secs()
                    )),
                    Ending::Failed(e) if e == "crashed the service" => continue,
                    Ending::Failed(e) => wrong.push(format!("connection failed: {e}")),
                }
                match &types {
                    Ok(t)
                        if t.iter()
                            .all(|t| matches!(t, 0x02 | 0x03 | 0x04 | 0x06 | 0x07)) => {}
                    _ => wrong.push(format!("answer is not DICOM PDUs: {shape}")),
                }
                let key = format!("{shape}, then {:?}", ending).to_lowercase();
                *endings.entry(key.clone()).or_default() += 1;
                if shape == "AC" || shape.ends_with("AC+P-DATA") {
                    println!("  pdu/{name}: {key} (accepted, then closed without A-ABORT)");
                }
                if !wrong.is_empty() {
                    self.finding("pdu/listener", format!("pdu/{name}: {}", wrong.join("; ")));
                } else if valid {
                    self.count("pdu/listener", 2);
                } else {
                    self.count("pdu/listener", 1);
                }
            }
        }
        println!("  PDU streams, answers: {endings:?}");
        println!(
            "  slowest PDU exchange: {} ms ({})",
            slowest.0.as_millis(),
            slowest.1
        );
    }
}

// ---- C-STORE

const CONTEXTS: [&str; 3] = [
    sop::CT_IMAGE_STORAGE,
    sop::ENHANCED_CT_IMAGE_STORAGE,
    sop::SEGMENTATION_STORAGE,
];

type Assoc = dicom_ul::association::ClientAssociation<TcpStream>;

/// Accepted presentation context ids by (abstract syntax, transfer syntax).
type Contexts = BTreeMap<(String, String), u8>;

fn associate(port: u16) -> Result<(Assoc, Contexts), String> {
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title("BADINPUT")
        .called_ae_title("LIVERSEG")
        .read_timeout(Duration::from_secs(30))
        .write_timeout(Duration::from_secs(30));
    for class in CONTEXTS {
        for ts in [sop::EXPLICIT_VR_LE, sop::IMPLICIT_VR_LE] {
            options = options.with_presentation_context(class, vec![ts]);
        }
    }
    let assoc = options
        .establish(("127.0.0.1", port))
        .map_err(|e| e.to_string())?;
    let contexts = assoc
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| {
            (
                (pc.abstract_syntax.clone(), pc.transfer_syntax.clone()),
                pc.id,
            )
        })
        .collect();
    Ok((assoc, contexts))
}

/// One C-STORE of `data` announced by `plan`: the response status and
/// comment.
fn cstore(
    assoc: &mut Assoc,
    pc: u8,
    message_id: u16,
    plan: &bad_input::CStorePlan<'_>,
) -> Result<(u16, Option<String>), String> {
    let cmd = dimse::store_request(message_id, &plan.sop_class_uid, &plan.sop_instance_uid)
        .map_err(|e| e.to_string())?;
    assoc
        .send(&dimse::command_pdu(pc, cmd))
        .map_err(|e| format!("sending the command: {e}"))?;
    let chunks: Vec<&[u8]> = if plan.data_set.is_empty() {
        vec![&[]]
    } else {
        plan.data_set.chunks(16_000).collect()
    };
    for (i, chunk) in chunks.iter().enumerate() {
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Data,
                is_last: i + 1 == chunks.len(),
                data: chunk.to_vec(),
            }],
        };
        assoc
            .send(&pdu)
            .map_err(|e| format!("sending the data set: {e}"))?;
    }
    match assoc.receive().map_err(|e| format!("no response: {e}"))? {
        Pdu::PData { data } if !data.is_empty() => {
            dimse::response_status(&data[0].data).map_err(|e| e.to_string())
        }
        other => Err(format!("answered {other:?}")),
    }
}

impl Run {
    fn replay_cstore(&mut self, lib: &Lib) {
        let key = "dataset/cstore";
        let mut assoc = None;
        let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
        for (n, (name, bytes)) in inputs(Category::Dataset).into_iter().enumerate() {
            if !self.sendable(lib, Category::Dataset, &name, "cstore") {
                continue;
            }
            let plan = bad_input::cstore_plan(&bytes);
            let valid = lib[&(Category::Dataset, name.clone())].accepted("cstore");
            if assoc.is_none() {
                match associate(self.svc.dicom_port) {
                    Ok(a) => assoc = Some(a),
                    Err(e) => {
                        self.finding(key, format!("dataset/{name}: cannot associate: {e}"));
                        self.check_alive(&format!("associating before dataset/{name}"));
                        continue;
                    }
                }
            }
            let (a, contexts) = assoc.as_mut().unwrap();
            let Some(&pc) =
                contexts.get(&(plan.sop_class_uid.clone(), plan.transfer_syntax.clone()))
            else {
                self.finding(key, format!("dataset/{name}: no context for {plan:?}"));
                continue;
            };
            let result =
                self.measured(&format!("dataset/{name} as a C-STORE"), bytes.len(), |_| {
                    cstore(a, pc, (n % 60000) as u16 + 1, &plan)
                });
            if result.is_err() {
                self.settle();
            }
            if !self.check_alive(&format!("dataset/{name} as a C-STORE")) {
                self.count(key, 3);
                assoc = None;
                continue;
            }
            match result {
                Ok((code, comment)) => {
                    *statuses.entry(format!("{code:#06x}")).or_default() += 1;
                    match (code, valid) {
                        (0x0000, Some(uid)) => {
                            self.stored_allowed.insert(uid.to_string());
                            self.count(key, 2);
                        }
                        (0x0000, None) => self.finding(
                            key,
                            format!("dataset/{name}: C-STORE answered success for a data set the library refuses"),
                        ),
                        (0xA700, _) => self.finding(
                            key,
                            format!(
                                "dataset/{name}: C-STORE answered {code:#06x} (out of resources: {}) for bad input",
                                comment.unwrap_or_default()
                            ),
                        ),
                        _ => self.count(key, 1),
                    }
                }
                Err(e) => {
                    self.finding(
                        key,
                        format!(
                            "dataset/{name}: the association broke instead of a failure status: {e}"
                        ),
                    );
                    assoc = None;
                }
            }
        }
        if let Some((a, _)) = assoc {
            let _ = a.release();
        }
        println!("  C-STORE statuses: {statuses:?}");
    }
}

// ---- HTTP

struct Reply {
    status: u16,
    body: Vec<u8>,
}

fn post(port: u16, path: &str, content_type: Option<&str>, body: &[u8]) -> Result<Reply, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer ({} bytes)", buf.len()))?;
    let text = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("no status line")?;
    let chunked = text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let raw = &buf[split + 4..];
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Ok(Reply { status, body })
}

const STOW_BOUNDARY: &str = "bad-input-replay";

fn stow_type() -> String {
    format!("multipart/related; type=\"application/dicom\"; boundary={STOW_BOUNDARY}")
}

impl Run {
    /// One STOW-RS request: a clean 4xx with a JSON error, or a success
    /// where the library said the input is valid (`valid`: the SOP
    /// Instance UIDs it would store).
    fn stow(
        &mut self,
        key: &str,
        what: &str,
        content_type: Option<&str>,
        body: &[u8],
        valid: Option<&str>,
        statuses: &mut BTreeMap<u16, usize>,
    ) -> Option<u16> {
        let port = self.svc.gateway_port;
        let reply = self.measured(what, body.len(), |_| {
            post(port, "/dicom-web/studies", content_type, body)
        });
        if reply.is_err() {
            self.settle();
        }
        if !self.check_alive(what) {
            self.count(key, 3);
            return None;
        }
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                self.finding(key, format!("{what}: {e}"));
                return None;
            }
        };
        *statuses.entry(reply.status).or_default() += 1;
        let json: Option<serde_json::Value> = serde_json::from_slice(&reply.body).ok();
        match (reply.status, valid) {
            (200 | 202, Some(uids)) => {
                self.stored_allowed
                    .extend(uids.split(',').map(str::to_string));
                self.count(key, 2);
            }
            (400..=499, _) if json.as_ref().is_some_and(|j| j["error"].is_string()) => {
                self.count(key, 1)
            }
            (status, _) => self.finding(
                key,
                format!(
                    "{what}: answered {status} {}",
                    String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
                ),
            ),
        }
        Some(reply.status)
    }

    fn replay_stow_datasets(&mut self, lib: &Lib) {
        let mut statuses = BTreeMap::new();
        for (name, bytes) in inputs(Category::Dataset) {
            if !self.sendable(lib, Category::Dataset, &name, "stow") {
                continue;
            }
            let valid = lib[&(Category::Dataset, name.clone())]
                .accepted("stow")
                .map(str::to_string);
            let body = liverseg_tests::http::stow_body(STOW_BOUNDARY, &[bytes]);
            self.stow(
                "dataset/stow",
                &format!("dataset/{name} in a STOW-RS request"),
                Some(&stow_type()),
                &body,
                valid.as_deref(),
                &mut statuses,
            );
        }
        println!("  STOW-RS of Part 10 files, statuses: {statuses:?}");
    }

    fn replay_multipart(&mut self, lib: &Lib) {
        let mut statuses = BTreeMap::new();
        let mut differs = Vec::new();
        for (name, bytes) in inputs(Category::Multipart) {
            if !self.sendable(lib, Category::Multipart, &name, "stow") {
                continue;
            }
            let r = lib[&(Category::Multipart, name.clone())];
            let valid = r.accepted("stow").map(str::to_string);
            let (content_type, body) = bad_input::split_multipart_input(&bytes);
            let ct = (!content_type.is_empty()).then_some(content_type.as_str());
            let status = self.stow(
                "multipart/stow",
                &format!("multipart/{name}"),
                ct,
                body,
                valid.as_deref(),
                &mut statuses,
            );
            // The library's copy of the gateway's checks predicts the status.
            if let (Some(status), Verdict::Refused(reason)) = (status, r.main())
                && !reason.starts_with(&status.to_string())
            {
                differs.push(format!("{name}: service {status}, library {reason}"));
            }
        }
        println!("  STOW-RS requests, statuses: {statuses:?}");
        for d in differs {
            println!("  status differs from the library's prediction: {d}");
        }
    }

    fn replay_segs(&mut self, lib: &Lib, series_held: bool) {
        let mut statuses = BTreeMap::new();
        let key = if series_held {
            "seg/stow (series held)"
        } else {
            "seg/stow (no series)"
        };
        for (name, bytes) in inputs(Category::Seg) {
            if !self.sendable(lib, Category::Seg, &name, "stow") {
                continue;
            }
            let r = lib[&(Category::Seg, name.clone())];
            // Without the series only what is no SEG at all can be stored.
            let not_a_seg = matches!(
                &r.verdicts[1].1,
                Verdict::Refused(reason) if reason.starts_with("not a Segmentation")
            );
            let valid = (series_held || not_a_seg)
                .then(|| r.accepted("stow"))
                .flatten()
                .map(str::to_string);
            let body = liverseg_tests::http::stow_body(STOW_BOUNDARY, &[bytes]);
            self.stow(
                key,
                &format!("seg/{name} ({key})"),
                Some(&stow_type()),
                &body,
                valid.as_deref(),
                &mut statuses,
            );
        }
        println!("  {key}, statuses: {statuses:?}");
    }

    /// SOP Instance UIDs of every instance row (QIDO-RS).
    fn instance_rows(&self) -> BTreeSet<String> {
        let (code, body) = http_get(self.svc.gateway_port, "/dicom-web/instances?limit=100000")
            .expect("QIDO-RS answers");
        assert!(
            code == 200 || code == 204,
            "QIDO-RS answered {code}: {body}"
        );
        let body = dechunk_if_needed(&body);
        if body.trim().is_empty() {
            return BTreeSet::new();
        }
        let json: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("QIDO-RS JSON ({e}): {body}"));
        json.as_array()
            .expect("QIDO-RS array")
            .iter()
            .filter_map(|i| i["00080018"]["Value"][0].as_str().map(str::to_string))
            .collect()
    }

    fn files_under(&self, dir: &str) -> Vec<PathBuf> {
        liverseg_dicom::scu::collect_files(&self.svc.data_dir.join(dir)).unwrap_or_default()
    }

    /// Temporary files left in the blob store (`.tmp`).
    fn temp_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.svc.data_dir.join(".tmp"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    fn still_serving(&mut self, when: &str) {
        let echo = liverseg_tests::dcmtk::echoscu(self.svc.dicom_port, "LIVERSEG", "BADINPUT")
            .expect("echoscu is installed");
        if !echo.status.success() {
            self.findings.push(format!(
                "{when}: C-ECHO failed: {}",
                String::from_utf8_lossy(&echo.stderr)
            ));
        }
        let ready = http_get(self.svc.admin_port, "/readyz").map(|(c, _)| c);
        if ready != Some(200) {
            self.findings
                .push(format!("{when}: /readyz answered {ready:?}"));
        }
    }

    /// What is stored must be nothing beyond `baseline` and what the
    /// library found valid.
    fn check_nothing_stored(&mut self, when: &str, baseline: &BTreeSet<String>) {
        let rows = self.instance_rows();
        let unexpected: Vec<_> = rows
            .iter()
            .filter(|u| !baseline.contains(*u) && !self.stored_allowed.contains(*u))
            .cloned()
            .collect();
        let extra_valid: Vec<_> = rows
            .iter()
            .filter(|u| !baseline.contains(*u) && self.stored_allowed.contains(*u))
            .cloned()
            .collect();
        let files = self.files_under("instances");
        let corrections = self.files_under("corrections");
        let temps = self.temp_files();
        println!(
            "  {when}: {} instance rows ({} beyond the baseline, all from inputs the library found valid: {extra_valid:?}), {} files under instances/, {} under corrections/, {} temporary files",
            rows.len(),
            extra_valid.len(),
            files.len(),
            corrections.len(),
            temps.len()
        );
        if !unexpected.is_empty() {
            self.findings.push(format!(
                "{when}: instances stored from bad input: {unexpected:?}"
            ));
        }
        // A correction is kept under corrections/ (with the upload as
        // received beside it when it was repaired); everything else under
        // instances/.
        let kept = corrections
            .iter()
            .filter(|p| !p.to_string_lossy().ends_with(".received.dcm"))
            .count();
        if files.len() + kept != rows.len() {
            self.findings.push(format!(
                "{when}: {} files under instances/ and {kept} under corrections/ for {} instance rows: {files:?} {corrections:?}",
                files.len(),
                rows.len()
            ));
        }
        let temps: Vec<_> = temps
            .into_iter()
            .filter(|t| !self.temps_after_crashes.contains(t))
            .collect();
        if !temps.is_empty() {
            self.findings
                .push(format!("{when}: temporary files left behind: {temps:?}"));
        }
    }
}

fn dechunk_if_needed(body: &str) -> String {
    let first = body.lines().next().unwrap_or("");
    if !first.is_empty() && first.trim().chars().all(|c| c.is_ascii_hexdigit()) {
        String::from_utf8_lossy(&dechunk(body.as_bytes())).into_owned()
    } else {
        body.to_string()
    }
}

/// The valid SEG of the corpus under a SOP Instance UID of its own (a
/// damaged copy under the base UID may have become a version).
const CONTROL_SEG: &str = "2.25.7006";

fn control_seg() -> Vec<u8> {
    let mut seg = corpus::base_seg();
    seg.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::SOP_INSTANCE_UID,
        dicom_core::VR::UI,
        dicom_core::PrimitiveValue::from(CONTROL_SEG),
    ));
    corpus::part10(seg, sop::EXPLICIT_VR_LE)
}

#[test]
fn the_service_refuses_bad_input_and_keeps_serving() {
    if liverseg_tests::program("echoscu").is_none() {
        return;
    }
    let started = Instant::now();
    let lib: BTreeMap<(Category, String), &Replayed> = library_replay()
        .iter()
        .map(|r| ((r.category, r.name.clone()), r))
        .collect();
    println!("library replay: {:.1} s", started.elapsed().as_secs_f64());

    let tmp = tempfile::tempdir().unwrap();
    let timeout = LISTENER_TIMEOUT.to_string();
    let svc = Service::start_roles(
        tmp.path(),
        liverseg_tests::free_port(),
        Some("listener,gateway"),
        &[("LIVERSEG__LISTENER__TIMEOUT_SECONDS", &timeout)],
    );
    let mut run = Run {
        svc,
        findings: Vec::new(),
        restarts: 0,
        counts: BTreeMap::new(),
        stored_allowed: BTreeSet::new(),
        skipped: BTreeSet::new(),
        log_seen: 0,
        temps_after_crashes: BTreeSet::new(),
    };
    let phase = |what: &str, since: Instant| {
        println!("{what}: {:.1} s", since.elapsed().as_secs_f64());
    };

    // Phase 1: an empty service.
    let t = Instant::now();
    run.replay_pdus(&lib);
    phase("PDU streams", t);
    run.still_serving("after the PDU streams");
    let t = Instant::now();
    run.replay_cstore(&lib);
    phase("C-STORE data sets", t);
    let t = Instant::now();
    run.replay_stow_datasets(&lib);
    phase("STOW-RS Part 10 files", t);
    let t = Instant::now();
    run.replay_multipart(&lib);
    phase("STOW-RS requests", t);
    let t = Instant::now();
    run.replay_segs(&lib, false);
    phase("SEGs without their series", t);
    run.still_serving("after phase 1");
    run.check_nothing_stored("after phase 1", &BTreeSet::new());
    let jobs = run.svc.jobs();
    if run.stored_allowed.is_empty() && !jobs.is_empty() {
        run.findings
            .push(format!("after phase 1: jobs from bad input: {jobs:?}"));
    }

    // Phase 2: the series the SEGs refer to is held; each SEG now reaches
    // the correction checks.
    let series = corpus::base_series_files();
    let reply = post(
        run.svc.gateway_port,
        "/dicom-web/studies",
        Some(&stow_type()),
        &liverseg_tests::http::stow_body(STOW_BOUNDARY, &series),
    )
    .expect("storing the base series");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let baseline: BTreeSet<String> = (0..base::SLICES).map(base::slice_uid).collect();
    let before = run.instance_rows();
    let t = Instant::now();
    run.replay_segs(&lib, true);
    phase("SEGs with their series", t);
    run.still_serving("after phase 2");
    let mut allowed = baseline.clone();
    allowed.extend(before);
    run.check_nothing_stored("after phase 2", &allowed);

    // The valid SEG is accepted: the bad ones reached the checks that
    // refused them, not a dead end.
    let reply = post(
        run.svc.gateway_port,
        "/dicom-web/studies",
        Some(&stow_type()),
        &liverseg_tests::http::stow_body(STOW_BOUNDARY, &[control_seg()]),
    )
    .expect("posting the valid SEG");
    assert_eq!(
        reply.status,
        200,
        "the valid SEG must become a correction: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(
        run.instance_rows().contains(CONTROL_SEG),
        "the valid SEG is stored"
    );

    println!("service replay: category/door: inputs, refused, accepted-valid, findings");
    for (key, [n, refused, valid, findings]) in &run.counts {
        println!("  {key:<24} {n:>4} {refused:>4} {valid:>4} {findings:>4}");
    }
    println!(
        "service restarts after a crash: {}; whole test {:.1} s",
        run.restarts,
        started.elapsed().as_secs_f64()
    );
    println!(
        "not sent to the service ({}): the library replay found they abort or over-allocate (reported there): {:?}",
        run.skipped.len(),
        run.skipped
    );
    for f in &run.findings {
        println!("  FINDING {f}");
    }
    assert!(
        run.findings.is_empty(),
        "{} findings:\n{}",
        run.findings.len(),
        run.findings.join("\n")
    );
}
