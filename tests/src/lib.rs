//! Test harness: starts real servers on loopback (random ports, temporary
//! directories), stops them by PID when dropped. Nothing here is a mock.

pub mod bad_input;
pub mod cli;
pub mod corpus;
pub mod dcmtk;
pub mod http;
pub mod load;
pub mod orthanc;
pub mod postgres;
pub mod python;
pub mod redis;
pub mod series;
pub mod service;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// Polls `ready` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}

/// The shared test data folder (`LIVERSEG_TEST_DATA`), or `None` with a
/// printed reason so that a fresh clone without the data still passes.
pub fn test_data() -> Option<PathBuf> {
    let why = match std::env::var_os("LIVERSEG_TEST_DATA") {
        Some(p) if PathBuf::from(&p).is_dir() => return Some(PathBuf::from(p)),
        Some(p) => format!(
            "LIVERSEG_TEST_DATA={} is not a directory",
            PathBuf::from(p).display()
        ),
        None => "LIVERSEG_TEST_DATA is not set".to_string(),
    };
    // CI provides the data: there a missing folder is a failure, not a skip.
    if std::env::var_os("LIVERSEG_REQUIRE_PEERS").is_some() {
        panic!("{why} but LIVERSEG_REQUIRE_PEERS is set");
    }
    eprintln!("skipping: {why}");
    None
}

/// Finds a program on PATH or in the usual Debian locations; `None` with a
/// printed reason when it is not installed.
pub fn program(name: &str) -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([
            PathBuf::from("/usr/lib/postgresql/15/bin"),
            PathBuf::from("/usr/sbin"),
        ]);
    for dir in candidates {
        let p = dir.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    // CI installs every peer: there a missing one is a failure, not a skip.
    if std::env::var_os("LIVERSEG_REQUIRE_PEERS").is_some() {
        panic!("{name} is not installed but LIVERSEG_REQUIRE_PEERS is set");
    }
    eprintln!("skipping: {name} is not installed (bash .ci/run installs it)");
    None
}
