//! A real Orthanc as the hospital PACS: its own configuration, storage and
//! ports in a temporary directory, started and stopped by PID. Orthanc has
//! no bind-address option and listens on every address; all traffic the
//! tests send goes to 127.0.0.1, and remote HTTP access is refused.

use crate::{free_port, wait_until};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Orthanc {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    pub http_port: u16,
    pub dicom_port: u16,
    pub ae_title: &'static str,
}

/// What `/tools/find` says about one series of a study.
#[derive(Debug, Clone)]
pub struct StoredSeries {
    pub series_uid: String,
    pub modality: String,
    /// Orthanc's instance ids.
    pub instances: Vec<String>,
}

impl Orthanc {
    /// Writes the configuration (routing stable CT series to `route_to`, an
    /// `AE@127.0.0.1:PORT` on loopback, when given) and starts Orthanc.
    /// `None` when Orthanc is not installed.
    pub fn start(dir: &Path, route_to: Option<(&str, u16)>) -> Option<Orthanc> {
        let mut o = Orthanc::configure(dir, route_to)?;
        o.spawn();
        Some(o)
    }

    /// As [`Orthanc::start`], without starting it: its ports are known, so
    /// a service can be pointed at a PACS that is still down.
    pub fn configure(dir: &Path, route_to: Option<(&str, u16)>) -> Option<Orthanc> {
        crate::program("Orthanc")?;
        let root = dir.join("orthanc");
        std::fs::create_dir_all(root.join("db")).expect("create orthanc dir");
        let (http_port, dicom_port) = (free_port(), free_port());
        let mut modalities = serde_json::Map::new();
        let mut lua = Vec::new();
        if let Some((ae, port)) = route_to {
            modalities.insert(
                "LIVERSEG".into(),
                serde_json::json!([ae, "127.0.0.1", port]),
            );
            let script = root.join("autoroute.lua");
            std::fs::write(
                &script,
                r#"function OnStableSeries(seriesId, tags, metadata)
  if tags["Modality"] == "CT" then
    RestApiPost("/modalities/LIVERSEG/store", DumpJson({ Resources = { seriesId }, Synchronous = false }, true))
  end
end
"#,
            )
            .expect("write lua");
            lua.push(script);
        }
        let config = serde_json::json!({
            "Name": "liverseg-test-pacs",
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "StorageDirectory": root.join("db"),
            "IndexDirectory": root.join("db"),
            "StableAge": 2,
            "OverwriteInstances": true,
            "UnknownSopClassAccepted": true,
            "DicomCheckCalledAet": false,
            "DicomModalities": modalities,
            "LuaScripts": lua,
            "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
            "DicomWeb": { "Enable": true, "Root": "/dicom-web/" },
        });
        let path = root.join("orthanc.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).expect("write config");
        Some(Orthanc {
            child: None,
            config: path,
            log: root.join("orthanc.log"),
            http_port,
            dicom_port,
            ae_title: "ORTHANC",
        })
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "Orthanc is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open orthanc log");
        let child = Command::new(crate::program("Orthanc").expect("Orthanc"))
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start Orthanc");
        self.child = Some(child);
        let port = self.http_port;
        let up = wait_until(Duration::from_secs(60), || {
            request(port, "GET", "/system", &[]).is_some_and(|(c, _)| c == 200)
        });
        assert!(up, "Orthanc did not start; log:\n{}", self.log_text());
    }

    /// SIGTERM, then wait for the process to exit (a second Orthanc on the
    /// same index while the first still holds it fails to start).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let exited = wait_until(Duration::from_secs(30), || {
                matches!(c.try_wait(), Ok(Some(_)))
            });
            if !exited {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `AE@127.0.0.1:PORT`, as liverseg's delivery destinations are written.
    pub fn destination(&self) -> String {
        format!("{}@127.0.0.1:{}", self.ae_title, self.dicom_port)
    }

    pub fn dicomweb_root(&self) -> String {
        format!("http://127.0.0.1:{}/dicom-web", self.http_port)
    }

    /// Every series Orthanc holds in the study.
    pub fn study_series(&self, study_uid: &str) -> Vec<StoredSeries> {
        let query = serde_json::json!({
            "Level": "Series",
            "Query": { "StudyInstanceUID": study_uid },
            "Expand": true,
        });
        let Some((200, body)) = request(
            self.http_port,
            "POST",
            "/tools/find",
            query.to_string().as_bytes(),
        ) else {
            return Vec::new();
        };
        let found: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
        found
            .iter()
            .map(|s| StoredSeries {
                series_uid: s["MainDicomTags"]["SeriesInstanceUID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                modality: s["MainDicomTags"]["Modality"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                instances: s["Instances"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// The Part 10 file of an instance.
    pub fn instance_file(&self, id: &str) -> Vec<u8> {
        match request(self.http_port, "GET", &format!("/instances/{id}/file"), &[]) {
            Some((200, body)) => body,
            other => panic!(
                "Orthanc GET /instances/{id}/file: {:?}",
                other.map(|(c, _)| c)
            ),
        }
    }

    /// The SOP Instance UID of an instance.
    pub fn sop_instance_uid(&self, id: &str) -> String {
        let (_, body) = request(self.http_port, "GET", &format!("/instances/{id}"), &[])
            .expect("Orthanc answers");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("instance JSON");
        v["MainDicomTags"]["SOPInstanceUID"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP/1.1 exchange on loopback: (status, body), the body de-chunked.
pub fn request(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let raw = &buf[split + 4..];
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    Some((code, if chunked { dechunk(raw)? } else { raw.to_vec() }))
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}
