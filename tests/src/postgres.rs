//! A throwaway PostgreSQL server: `initdb` into a temporary directory, the
//! postmaster as our own child on a free loopback port, stopped by PID and
//! the directory removed on drop.
//!
//! PostgreSQL refuses to run as root. Rather than `runuser` (which forks and
//! would make the PID we hold that of `runuser`, not of the postmaster), the
//! children drop to the `postgres` user with `Command::uid`/`gid` before
//! `exec`, so the child PID is the postmaster itself.

use std::fs::File;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct PgServer {
    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth, loopback).
    pub url: String,
    pub port: u16,
    child: Child,
    psql: PathBuf,
    /// What [`PgServer::crash_and_restart`] needs to start it again.
    postgres: PathBuf,
    user: Option<(u32, u32)>,
    durable: bool,
    // Dropped after `drop` has stopped the server (fields drop after it).
    dir: tempfile::TempDir,
}

impl PgServer {
    /// Starts a server, or returns `None` (with the reason printed) when
    /// PostgreSQL is not installed. Panics when it is installed but fails.
    ///
    /// Tuned for throwaway data: `fsync=off`, `synchronous_commit=off`,
    /// `full_page_writes=off`. A commit may be answered before its WAL is
    /// written, so a crash of the server can lose the last commits: crash
    /// tests use [`PgServer::start_durable`].
    pub fn start() -> Option<PgServer> {
        PgServer::start_with(false)
    }

    /// As [`PgServer::start`], but a commit is answered only once its WAL
    /// is written (`synchronous_commit=on`), so a crash of PostgreSQL
    /// ([`PgServer::crash_and_restart`]) loses nothing that was committed.
    /// `fsync` stays off: the WAL is in the kernel's page cache, which a
    /// crash of the server (not of the machine) keeps.
    pub fn start_durable() -> Option<PgServer> {
        PgServer::start_with(true)
    }

    fn start_with(durable: bool) -> Option<PgServer> {
        let initdb = crate::program("initdb")?;
        let postgres = crate::program("postgres")?;
        let psql = crate::program("psql")?;
        let user = match run_as() {
            Ok(user) => user,
            Err(reason) => {
                if std::env::var_os("LIVERSEG_REQUIRE_PEERS").is_some() {
                    panic!("cannot run PostgreSQL: {reason}");
                }
                eprintln!("skipping: cannot run PostgreSQL: {reason}");
                return None;
            }
        };

        let dir = tempfile::Builder::new()
            .prefix("liverseg-pg-")
            .tempdir()
            .expect("create a temporary directory for PostgreSQL");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("chown the PostgreSQL directory to postgres");
        }
        let data = dir.path().join("pg");
        let out = as_user(Command::new(&initdb), user, dir.path())
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            // The data is thrown away: skip the fsyncs.
            .arg("--no-sync")
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        // The port was free when picked but may be taken before the server
        // binds it; try a few.
        let log_path = dir.path().join("postgres.log");
        for _ in 0..3 {
            let port = crate::free_port();
            File::create(&log_path).expect("create the PostgreSQL log");
            let mut child = spawn_postmaster(&postgres, user, dir.path(), port, durable);
            let (ready, exited) = wait_ready(&mut child, &psql, port);
            if ready && !exited {
                return Some(PgServer {
                    url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                    port,
                    child,
                    psql,
                    postgres,
                    user,
                    durable,
                    dir,
                });
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            stop(&mut child);
            if exited && log.contains("could not bind") {
                continue;
            }
            panic!("PostgreSQL did not become ready on port {port}:\n{log}");
        }
        panic!(
            "PostgreSQL could not bind a port:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// Creates an empty database and returns its URL, so that tests sharing
    /// one server do not see each other's rows. `name` must be a plain
    /// identifier (`[a-z0-9_]`).
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "database name {name:?} must match [a-z0-9_]+"
        );
        let sql = format!("CREATE DATABASE \"{name}\"");
        if let Err(e) = query(&self.psql, self.port, "postgres", &sql) {
            panic!("{sql}: {e}");
        }
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs one SQL statement with `psql` and returns its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        query(&self.psql, self.port, database, sql)
    }

    /// The server's data and socket directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A crash and a restart: SIGQUIT to the postmaster (immediate
    /// shutdown: every backend quits at once, nothing is flushed or
    /// checkpointed, which is PostgreSQL's crash semantics), wait for it to
    /// exit, then start it again on the same port and data directory (it
    /// runs crash recovery from the WAL) and wait until `SELECT 1` answers.
    /// Panics if it does not come back within 60 s.
    pub fn crash_and_restart(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let gone = crate::wait_until(Duration::from_secs(30), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !gone {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let log_path = self.dir.path().join("postgres.log");
        // The old socket may linger a moment: try a few times.
        for _ in 0..5 {
            self.child = spawn_postmaster(
                &self.postgres,
                self.user,
                self.dir.path(),
                self.port,
                self.durable,
            );
            let (ready, exited) = wait_ready(&mut self.child, &self.psql, self.port);
            if ready && !exited {
                return;
            }
            stop(&mut self.child);
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "PostgreSQL did not come back on port {} after a crash:\n{}",
            self.port,
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

/// Starts the postmaster on `port` over `dir/pg`, sockets in `dir`, its
/// output appended to `dir/postgres.log`.
fn spawn_postmaster(
    postgres: &Path,
    user: Option<(u32, u32)>,
    dir: &Path,
    port: u16,
    durable: bool,
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("postgres.log"))
        .expect("open the PostgreSQL log");
    let err_log = log.try_clone().expect("clone the log handle");
    let synchronous_commit = if durable {
        "synchronous_commit=on"
    } else {
        "synchronous_commit=off"
    };
    as_user(Command::new(postgres), user, dir)
        .arg("-D")
        .arg(dir.join("pg"))
        .arg("-k")
        .arg(dir)
        .arg("-p")
        .arg(port.to_string())
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off"])
        .args(["-c", synchronous_commit])
        .args(["-c", "full_page_writes=off"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .expect("start postgres")
}

/// Waits (60 s at most) until the server answers `SELECT 1` or exits:
/// (ready, exited).
fn wait_ready(child: &mut Child, psql: &Path, port: u16) -> (bool, bool) {
    let mut exited = false;
    let ready = crate::wait_until(Duration::from_secs(60), || {
        if matches!(child.try_wait(), Ok(Some(_))) {
            exited = true;
            return true;
        }
        TcpStream::connect(("127.0.0.1", port)).is_ok()
            && query(psql, port, "postgres", "SELECT 1").as_deref() == Ok("1")
    });
    (ready, exited)
}

impl Drop for PgServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Fast shutdown (SIGINT: disconnect clients, then exit cleanly and release
/// shared memory), by PID; SIGKILL if it has not exited within 15 s. Waits
/// until the process is gone so that the directory can be removed.
fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let gone = crate::wait_until(Duration::from_secs(15), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !gone {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn query(psql: &Path, port: u16, database: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(psql)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-U", "postgres"])
        .arg("-p")
        .arg(port.to_string())
        .arg("-d")
        .arg(database)
        .arg("-c")
        .arg(sql)
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `Some((uid, gid))` of the `postgres` user when we are root (PostgreSQL
/// will not run as root), `None` when we can run it as ourselves.
fn run_as() -> Result<Option<(u32, u32)>, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("read /proc/self/status: {e}"))?;
    // "Uid:\treal\teffective\tsaved\tfs"
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u32>().ok())
        .ok_or("no Uid line in /proc/self/status")?;
    if euid != 0 {
        return Ok(None);
    }
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == "postgres")
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .map(Some)
        .ok_or_else(|| "running as root and there is no postgres user".to_string())
}

fn as_user(mut cmd: Command, user: Option<(u32, u32)>, dir: &Path) -> Command {
    // Our working directory may be unreadable to postgres; initdb fails then.
    cmd.current_dir(dir);
    if let Some((uid, gid)) = user {
        // gid before uid (std does so); supplementary groups are dropped.
        cmd.gid(gid).uid(uid);
    }
    cmd
}
