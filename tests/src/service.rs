//! A real `liverseg serve` process on loopback ports, with its own data
//! directory, stopped by PID (SIGTERM, or SIGKILL for crash tests).

use crate::{free_port, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Path of the `liverseg` binary, built once per test process so that the
/// tests never run a stale one.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Test executables live in <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile dir");
        let target_dir = profile_dir.parent().expect("target dir");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "liverseg",
            "--bin",
            "liverseg",
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building liverseg failed");
        profile_dir.join("liverseg")
    })
    .clone()
}

pub struct Service {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub dicom_port: u16,
    pub admin_port: u16,
    pub gateway_port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// `--roles` (all when `None`).
    roles: Option<String>,
}

impl Service {
    /// Starts all roles with a fresh data directory inside `dir`; `env` adds
    /// `LIVERSEG__*` overrides.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Service {
        Service::start_on(dir, free_port(), env)
    }

    /// As [`Service::start`], with the DICOM listener on `dicom_port` (so a
    /// PACS can be configured to route to it before it starts).
    pub fn start_on(dir: &Path, dicom_port: u16, env: &[(&str, &str)]) -> Service {
        Service::start_roles(dir, dicom_port, None, env)
    }

    /// As [`Service::start_on`], running only `roles` (a `--roles` list).
    /// Processes started on the same `dir` share its data directory (the
    /// blob store) and log to files named after their roles.
    pub fn start_roles(
        dir: &Path,
        dicom_port: u16,
        roles: Option<&str>,
        env: &[(&str, &str)],
    ) -> Service {
        let data_dir = dir.join("data");
        let log = match roles {
            Some(r) => dir.join(format!("service-{}.log", r.replace(',', "-"))),
            None => dir.join("service.log"),
        };
        let mut s = Service {
            child: None,
            data_dir,
            dicom_port,
            admin_port: free_port(),
            gateway_port: free_port(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log,
            roles: roles.map(str::to_string),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open service log");
        let mut cmd = Command::new(binary());
        cmd.arg("serve");
        if let Some(roles) = &self.roles {
            cmd.args(["--roles", roles]);
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LIVERSEG__STORAGE__DATA_DIR", &self.data_dir)
            .env(
                "LIVERSEG__LISTENER__BIND",
                format!("127.0.0.1:{}", self.dicom_port),
            )
            .env(
                "LIVERSEG__ADMIN__BIND",
                format!("127.0.0.1:{}", self.admin_port),
            )
            .env(
                "LIVERSEG__GATEWAY__BIND",
                format!("127.0.0.1:{}", self.gateway_port),
            )
            .env("LIVERSEG__LISTENER__STABLE_SECONDS", "2")
            .env("LIVERSEG__LOG__LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start liverseg serve"));
        let port = self.admin_port;
        let up = wait_until(Duration::from_secs(30), || {
            http_get(port, "/readyz").is_some_and(|(code, _)| code == 200)
        });
        assert!(
            up,
            "liverseg did not become ready; log:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the same service again on the same data directory and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_sigterm(c.id());
            let exited = wait_until(Duration::from_secs(20), || {
                matches!(c.try_wait(), Ok(Some(_)))
            });
            if !exited {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Runs a `liverseg` subcommand against this service's configuration.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LIVERSEG__STORAGE__DATA_DIR", &self.data_dir);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output().expect("run liverseg")
    }

    /// Jobs as JSON values, via `liverseg jobs list --json`.
    pub fn jobs(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["jobs", "list", "--json", "--limit", "1000"]);
        assert!(
            out.status.success(),
            "jobs list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("jobs list prints JSON")
    }

    /// The jobs of one series.
    pub fn jobs_for(&self, series: &str) -> Vec<serde_json::Value> {
        self.jobs()
            .into_iter()
            .filter(|j| j["series_uid"] == series)
            .collect()
    }

    /// Waits until the series' only job is in `state`; returns it.
    pub fn wait_for_job_state(&self, series: &str, state: &str, secs: u64) -> serde_json::Value {
        let mut last = Vec::new();
        let ok = wait_until(Duration::from_secs(secs), || {
            last = self.jobs_for(series);
            last.iter().any(|j| j["state"] == state)
        });
        assert!(
            ok,
            "no {state} job for {series}: {last:?}\nlog:\n{}",
            self.log_text()
        );
        assert_eq!(last.len(), 1, "expected exactly one job: {last:?}");
        last.remove(0)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.dicom_port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// A minimal HTTP/1.1 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// A service that has received the IRCADb CT by C-STORE and finished its
/// job, with the series' identity.
pub struct Processed {
    pub svc: Service,
    pub ct_dir: PathBuf,
    pub study: String,
    pub series: String,
}

/// Starts liverseg in `dir` (with `env`), sends the IRCADb patient 1 CT
/// from `data` with dcmtk and waits until its job is done.
pub fn ircadb_processed(dir: &Path, data: &Path, env: &[(&str, &str)]) -> Processed {
    let ct_dir = data.join("dicom/ircadb_01/PATIENT_DICOM");
    let first = liverseg_dicom::scu::collect_files(&ct_dir).unwrap()[0].clone();
    let id = liverseg_dicom::instance::read_header(&first)
        .unwrap()
        .identity;
    let mut all = vec![("LIVERSEG__LISTENER__COMPLETE_ON_RELEASE", "true")];
    all.extend_from_slice(env);
    let svc = Service::start(dir, &all);
    let out = crate::dcmtk::storescu(svc.dicom_port, "LIVERSEG", "MODALITY", &[&ct_dir], &[])
        .expect("storescu is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    svc.wait_for_job_state(&id.series_uid, "done", 900);
    Processed {
        svc,
        ct_dir,
        study: id.study_uid,
        series: id.series_uid,
    }
}
