//! The deployment artefacts (`deploy/`, `helm/`), checked without a Docker
//! engine or a cluster:
//!
//! * `tests/python/deploy_check.py` renders the Helm chart with Helm's own
//!   library and validates every manifest against the Kubernetes schemas,
//!   validates `deploy/compose.yaml` against the Compose Specification, lints
//!   `deploy/Dockerfile` with hadolint, and has the liverseg binary load the
//!   configuration of every pod and of the compose service.
//! * The laptop stack's PACS: a real Orthanc with `deploy/orthanc/orthanc.json`
//!   and `deploy/orthanc/route-to-liverseg.lua` (only the addresses and
//!   folders changed for loopback) routes a stable CT series, and not an MR
//!   series, to a real liverseg listener, which makes a job of it.

use liverseg_tests::dcmtk::storescu;
use liverseg_tests::orthanc::request;
use liverseg_tests::python::python;
use liverseg_tests::series::write_ct_series;
use liverseg_tests::service::{Service, binary, http_get};
use liverseg_tests::{free_port, program, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_path_buf()
}

#[test]
fn helm_chart_compose_file_and_dockerfile_validate() {
    let Some(py) = python() else { return };
    let repo = repo_root();
    let out = Command::new(&py)
        .arg(repo.join("tests/python/deploy_check.py"))
        .arg("--repo")
        .arg(&repo)
        .arg("--liverseg")
        .arg(binary())
        .output()
        .expect("run deploy_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The summary (manifests validated per value set) is worth seeing in CI logs.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "deploy_check.py failed:\n{stdout}\n{stderr}"
    );
}

/// Orthanc started from the compose stack's configuration, stopped by PID.
struct Pacs {
    child: Child,
    log: PathBuf,
    http_port: u16,
    dicom_port: u16,
    dicomweb: bool,
}

impl Pacs {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Pacs {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let exited = wait_until(Duration::from_secs(30), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `deploy/orthanc/orthanc.json` as compose mounts it, with what differs
/// outside the compose network: free loopback ports, folders in `dir`, the
/// LIVERSEG modality at 127.0.0.1:`liverseg_port`, the Lua script from the
/// repository and the Debian package's DICOMweb plugin (the image loads its
/// own). Everything else (AE titles, StableAge, the DicomWeb section, the
/// script itself) is the file's.
fn start_pacs(orthanc: &Path, dir: &Path, liverseg_port: u16) -> Pacs {
    let repo = repo_root();
    let text = std::fs::read_to_string(repo.join("deploy/orthanc/orthanc.json"))
        .expect("deploy/orthanc/orthanc.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&text).expect("orthanc.json is JSON");
    let (http_port, dicom_port) = (free_port(), free_port());
    let db = dir.join("orthanc-db");
    std::fs::create_dir_all(&db).unwrap();
    cfg["HttpPort"] = http_port.into();
    cfg["DicomPort"] = dicom_port.into();
    cfg["StorageDirectory"] = db.to_str().unwrap().into();
    cfg["IndexDirectory"] = db.to_str().unwrap().into();
    cfg["RemoteAccessAllowed"] = false.into();
    let modality = &mut cfg["DicomModalities"]["LIVERSEG"];
    assert_eq!(modality["Host"], "liverseg", "the compose service name");
    modality["Host"] = "127.0.0.1".into();
    modality["Port"] = liverseg_port.into();
    let script = repo.join("deploy/orthanc/route-to-liverseg.lua");
    cfg["LuaScripts"] = serde_json::json!([script]);
    let plugin = Path::new("/usr/share/orthanc/plugins/libOrthancDicomWeb.so");
    let dicomweb = plugin.is_file();
    if dicomweb {
        cfg["Plugins"] = serde_json::json!([plugin]);
    }
    let path = dir.join("orthanc.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let log = dir.join("orthanc.log");
    let child = Command::new(orthanc)
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start Orthanc");
    let pacs = Pacs {
        child,
        log,
        http_port,
        dicom_port,
        dicomweb,
    };
    let up = wait_until(Duration::from_secs(60), || {
        request(http_port, "GET", "/system", &[]).is_some_and(|(c, _)| c == 200)
    });
    assert!(up, "Orthanc did not start; log:\n{}", pacs.log_text());
    pacs
}

/// Rewrites the Modality of every file in `dir`.
fn set_modality(dir: &Path, modality: &str) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mut obj = dicom_object::open_file(&path).expect("read a synthetic slice");
        obj.put(DataElement::new(
            tags::MODALITY,
            VR::CS,
            PrimitiveValue::from(modality),
        ));
        obj.write_to_file(&path).expect("write it back");
    }
}

#[test]
fn compose_orthanc_routes_stable_ct_series_to_the_listener() {
    let Some(orthanc) = program("Orthanc") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let svc = Service::start(
        tmp.path(),
        &[("LIVERSEG__LISTENER__ALLOWED_CALLING_AES", "ORTHANC")],
    );
    let pacs = start_pacs(&orthanc, tmp.path(), svc.dicom_port);

    let explicit_le = "1.2.840.10008.1.2.1";
    let ct = write_ct_series(
        &tmp.path().join("ct"),
        24,
        64,
        explicit_le,
        Default::default(),
    );
    let mr_dir = tmp.path().join("mr");
    let mr = write_ct_series(&mr_dir, 24, 64, explicit_le, Default::default());
    set_modality(&mr_dir, "MR");
    // A modality stores both series into the PACS.
    let Some(sent) = storescu(
        pacs.dicom_port,
        "ORTHANC",
        "MODALITY",
        &[&tmp.path().join("ct"), &mr_dir],
        &[],
    ) else {
        return;
    };
    assert!(
        sent.status.success(),
        "storescu to Orthanc: {}",
        String::from_utf8_lossy(&sent.stderr)
    );

    // StableAge later the script sends the CT series; liverseg completes it
    // and makes one job.
    let routed = wait_until(Duration::from_secs(120), || {
        !svc.jobs_for(&ct.series_uid).is_empty()
    });
    assert!(
        routed,
        "no job for the CT series routed by Orthanc\nOrthanc log:\n{}\nliverseg log:\n{}",
        pacs.log_text(),
        svc.log_text()
    );
    assert_eq!(svc.jobs_for(&ct.series_uid).len(), 1);
    let log = pacs.log_text();
    assert!(
        log.contains("route-to-liverseg: sending CT series"),
        "the script's own message:\n{log}"
    );
    // The MR series became stable at the same time and was not sent.
    std::thread::sleep(Duration::from_secs(3));
    let (_, found) = http_get(
        svc.gateway_port,
        &format!("/dicom-web/series?SeriesInstanceUID={}", mr.series_uid),
    )
    .expect("the gateway answers QIDO");
    assert!(
        !found.contains(&mr.series_uid),
        "the MR series reached liverseg: {found}"
    );
    let (_, found) = http_get(
        svc.gateway_port,
        &format!("/dicom-web/series?SeriesInstanceUID={}", ct.series_uid),
    )
    .expect("the gateway answers QIDO");
    assert!(
        found.contains(&ct.series_uid),
        "QIDO for the CT series: {found}"
    );
    // The DicomWeb section of orthanc.json serves the PACS's DICOMweb root.
    if pacs.dicomweb {
        let answer = request(pacs.http_port, "GET", "/dicom-web/studies", &[]);
        assert_eq!(
            answer.map(|(c, _)| c),
            Some(200),
            "Orthanc /dicom-web/studies"
        );
    }
}
