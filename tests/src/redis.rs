//! A throwaway `redis-server` on loopback, owned by the test that started it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `redis-server` child (not daemonized, so its PID is ours):
/// no persistence, data in a temporary folder; killed and reaped on drop.
pub struct RedisServer {
    /// `redis://127.0.0.1:PORT/`
    pub url: String,
    pub port: u16,
    child: Child,
    log: PathBuf,
    // Removed after the child is gone (fields drop after `Drop::drop`).
    _dir: tempfile::TempDir,
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

impl RedisServer {
    /// Starts a server on a free port; `None` (with the reason printed)
    /// when `redis-server` is not installed. Panics if it will not start.
    pub fn start() -> Option<RedisServer> {
        let program = crate::program("redis-server")?;
        // A port free a moment ago may be taken by the time the server binds:
        // try a few.
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temporary folder for redis-server");
            let port = crate::free_port();
            let log = dir.path().join("redis.log");
            let log_file = std::fs::File::create(&log).expect("create redis log");
            let mut child = Command::new(&program)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log handle"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
            let mut exited = false;
            let ready = crate::wait_until(Duration::from_secs(10), || {
                exited = exited || matches!(child.try_wait(), Ok(Some(_)));
                exited || answers_ping(port)
            });
            if ready && !exited {
                return Some(RedisServer {
                    url: format!("redis://127.0.0.1:{port}/"),
                    port,
                    child,
                    log,
                    _dir: dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("redis-server did not answer PING; its log:\n{last_log}");
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
