//! A throwaway `redis-server` on loopback, owned by the test that started it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `redis-server` child (not daemonized, so its PID is ours):
/// no persistence ([`RedisServer::start`]) or an append-only file fsynced
/// on every write ([`RedisServer::start_durable`]), data in a temporary
/// folder; killed and reaped on drop.
pub struct RedisServer {
    /// `redis://127.0.0.1:PORT/`
    pub url: String,
    pub port: u16,
    child: Child,
    log: PathBuf,
    program: PathBuf,
    durable: bool,
    // Removed after the child is gone (fields drop after `Drop::drop`).
    dir: tempfile::TempDir,
}

/// Raw RESP round trip: true when the server answers `+PONG`.
fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// Starts `redis-server` on `port` with its files in `dir`, appending to
/// `log`. `durable`: an append-only file fsynced on every write
/// (`appendfsync always`), so a `kill -9` loses nothing acknowledged.
fn spawn_server(program: &Path, port: u16, dir: &Path, log: &Path, durable: bool) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open redis log");
    let persistence: &[&str] = if durable {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &["--appendonly", "no"]
    };
    Command::new(program)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--daemonize", "no"])
        .args(persistence)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("clone log handle"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()))
}

/// Waits until the server on `port` answers PING; false when the child
/// exited or `timeout` passed.
fn wait_ready(child: &mut Child, port: u16, timeout: Duration) -> bool {
    let mut exited = false;
    let ready = crate::wait_until(timeout, || {
        exited = exited || matches!(child.try_wait(), Ok(Some(_)));
        exited || answers_ping(port)
    });
    ready && !exited
}

impl RedisServer {
    /// Starts a server on a free port; `None` (with the reason printed)
    /// when `redis-server` is not installed. Panics if it will not start.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(false)
    }

    /// As [`RedisServer::start`], with an append-only file fsynced on
    /// every write (`appendonly yes`, `appendfsync always`) in the server's
    /// own folder: what a `kill -9` of the server may not lose. Restart it
    /// on the same file with [`RedisServer::restart`].
    pub fn start_durable() -> Option<RedisServer> {
        RedisServer::start_with(true)
    }

    fn start_with(durable: bool) -> Option<RedisServer> {
        let program = crate::program("redis-server")?;
        // A port free a moment ago may be taken by the time the server binds:
        // try a few.
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temporary folder for redis-server");
            let port = crate::free_port();
            let log = dir.path().join("redis.log");
            let mut child = spawn_server(&program, port, dir.path(), &log, durable);
            if wait_ready(&mut child, port, Duration::from_secs(10)) {
                return Some(RedisServer {
                    url: format!("redis://127.0.0.1:{port}/"),
                    port,
                    child,
                    log,
                    program,
                    durable,
                    dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("redis-server did not answer PING; its log:\n{last_log}");
    }

    /// A crash and a restart: `kill -9` the server (by PID), then start it
    /// again on the same port and folder (a durable server reloads its
    /// append-only file) and wait until it answers PING. Panics if it does
    /// not come back within 60 s.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The port was ours a moment ago; the new server binds it with
        // SO_REUSEADDR, but retry briefly in case the old socket lingers.
        for _ in 0..5 {
            self.child = spawn_server(
                &self.program,
                self.port,
                self.dir.path(),
                &self.log,
                self.durable,
            );
            if wait_ready(&mut self.child, self.port, Duration::from_secs(60)) {
                return;
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "redis-server did not come back on port {}; its log:\n{}",
            self.port,
            self.log()
        );
    }

    /// The server's PID (changes with [`RedisServer::restart`]).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // By PID: only the server this harness started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
