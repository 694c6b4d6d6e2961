//! DICOM TLS with real peers: dcmtk's storescu (with and without a client
//! certificate, and in plain TCP) against the listener, and liverseg's own
//! SCU (`liverseg send`, `liverseg echo`, the code delivery uses) against
//! dcmtk's storescp over TLS. Certificates come from `openssl`: a test CA,
//! a server certificate for 127.0.0.1, a client certificate, and a second
//! CA whose certificates must be refused. Also the other refusals of this
//! step: the disk watermark and the instance size limit.

use liverseg_tests::dcmtk::storescu;
use liverseg_tests::series::{Flaws, write_ct_series};
use liverseg_tests::service::Service;
use liverseg_tests::{free_port, program, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `NAME.key` and `NAME.crt` signed by `ca` (for 127.0.0.1 and localhost).
fn issue(dir: &Path, ca: &str, name: &str, client: bool) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    let ext = if client {
        "extendedKeyUsage=clientAuth\n".to_string()
    } else {
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n".to_string()
    };
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Option<Pki> {
        program("openssl")?;
        std::fs::create_dir_all(dir).unwrap();
        make_ca(dir, "ca");
        make_ca(dir, "other-ca");
        issue(dir, "ca", "server", false);
        issue(dir, "ca", "client", true);
        issue(dir, "other-ca", "impostor", false);
        Some(Pki { dir: dir.into() })
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

fn store_tls(port: u16, files: &[&Path], tls: &[&str]) -> Output {
    storescu(port, "LIVERSEG", "PACS", files, tls).expect("dcmtk is installed")
}

/// dcmtk's storescp over TLS, writing what it receives into `out`.
struct TlsStorescp {
    child: Child,
    port: u16,
}

impl TlsStorescp {
    fn start(pki: &Pki, cert: &str, out: &Path) -> TlsStorescp {
        std::fs::create_dir_all(out).unwrap();
        let port = free_port();
        let child = Command::new(program("storescp").expect("dcmtk"))
            .args(["-aet", "STORESCP", "+tls"])
            .arg(pki.path(&format!("{cert}.key")))
            .arg(pki.path(&format!("{cert}.crt")))
            .arg("+cf")
            .arg(pki.path("ca.crt"))
            .arg("-od")
            .arg(out)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start storescp");
        assert!(wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }));
        TlsStorescp { child, port }
    }
}

impl Drop for TlsStorescp {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn stored_instances(svc: &Service) -> usize {
    let dir = svc.data_dir.join("instances");
    walk(&dir)
}

fn walk(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "dcm"))
            }
        })
        .sum()
}

#[test]
fn the_listener_speaks_dicom_tls_and_requires_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(pki) = Pki::new(&tmp.path().join("pki")) else {
        eprintln!("skipping: openssl is not installed");
        return;
    };
    if program("storescu").is_none() {
        return;
    }
    let series = write_ct_series(
        &tmp.path().join("ct"),
        24,
        64,
        EXPLICIT_LE,
        Flaws::default(),
    );
    let files: Vec<&Path> = series.files.iter().map(PathBuf::as_path).collect();
    let (cert, key, ca) = (
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("ca.crt"),
    );
    let dir = tmp.path().join("svc");
    std::fs::create_dir_all(&dir).unwrap();
    let svc = Service::start(
        &dir,
        &[
            ("LIVERSEG__LISTENER__TLS_CERT", &cert),
            ("LIVERSEG__LISTENER__TLS_KEY", &key),
            ("LIVERSEG__LISTENER__TLS_CLIENT_CA", &ca),
            ("LIVERSEG__LOG__FORMAT", "json"),
        ],
    );
    assert!(
        svc.log_text().contains("\"tls\":true"),
        "the listener says it speaks TLS:\n{}",
        svc.log_text()
    );

    // Plain TCP to a TLS port: refused, nothing stored.
    let plain = store_tls(svc.dicom_port, &files[..1], &[]);
    assert!(!plain.status.success(), "plain DICOM was accepted");
    // TLS without a client certificate: refused.
    let anonymous = store_tls(svc.dicom_port, &files[..1], &["+tla", "+cf", &ca]);
    assert!(!anonymous.status.success(), "anonymous TLS was accepted");
    // A client certificate from another CA: refused.
    let impostor = store_tls(
        svc.dicom_port,
        &files[..1],
        &[
            "+tls",
            &pki.path("impostor.key"),
            &pki.path("impostor.crt"),
            "+cf",
            &ca,
        ],
    );
    assert!(
        !impostor.status.success(),
        "a foreign client certificate was accepted"
    );
    assert_eq!(stored_instances(&svc), 0);

    // The PACS with its certificate: every instance stored, one job.
    let ok = store_tls(
        svc.dicom_port,
        &files,
        &[
            "+tls",
            &pki.path("client.key"),
            &pki.path("client.crt"),
            "+cf",
            &ca,
        ],
    );
    assert!(
        ok.status.success(),
        "storescu over TLS: {}\n{}",
        String::from_utf8_lossy(&ok.stderr),
        svc.log_text()
    );
    assert_eq!(stored_instances(&svc), files.len());
    let job = svc.wait_for_job_state(&series.series_uid, "done", 120);
    assert_eq!(job["instance_count"], files.len());

    // A server certificate the client does not trust: storescu refuses us.
    let untrusting = store_tls(
        svc.dicom_port,
        &files[..1],
        &[
            "+tls",
            &pki.path("client.key"),
            &pki.path("client.crt"),
            "+cf",
            &pki.path("other-ca.crt"),
        ],
    );
    assert!(!untrusting.status.success());
}

#[test]
fn delivery_sends_over_verified_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(pki) = Pki::new(&tmp.path().join("pki")) else {
        eprintln!("skipping: openssl is not installed");
        return;
    };
    if program("storescp").is_none() {
        return;
    }
    let series = write_ct_series(&tmp.path().join("ct"), 5, 64, EXPLICIT_LE, Flaws::default());
    let received = tmp.path().join("received");
    let pacs = TlsStorescp::start(&pki, "server", &received);
    let impostor = TlsStorescp::start(&pki, "impostor", &tmp.path().join("impostor"));

    let liverseg = |args: &[&str]| -> Output {
        Command::new(liverseg_tests::service::binary())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LIVERSEG__STORAGE__DATA_DIR", tmp.path().join("cli-data"))
            .env("LIVERSEG__DELIVERY__TLS", "true")
            .env("LIVERSEG__DELIVERY__TLS_CA", pki.path("ca.crt"))
            .env("LIVERSEG__DELIVERY__TLS_CERT", pki.path("client.crt"))
            .env("LIVERSEG__DELIVERY__TLS_KEY", pki.path("client.key"))
            .output()
            .expect("run liverseg")
    };
    let to = format!("STORESCP@127.0.0.1:{}", pacs.port);
    let echo = liverseg(&["echo", &to]);
    assert!(
        echo.status.success(),
        "C-ECHO over TLS: {}",
        String::from_utf8_lossy(&echo.stderr)
    );
    let dir = tmp.path().join("ct").display().to_string();
    let sent = liverseg(&["send", "--to", &to, &dir]);
    assert!(
        sent.status.success(),
        "C-STORE over TLS: {}{}",
        String::from_utf8_lossy(&sent.stdout),
        String::from_utf8_lossy(&sent.stderr)
    );
    let arrived = std::fs::read_dir(&received).unwrap().count();
    assert_eq!(arrived, series.files.len(), "storescp received every file");

    // A destination whose certificate our CA did not sign: nothing sent.
    let to = format!("STORESCP@127.0.0.1:{}", impostor.port);
    let refused = liverseg(&["send", "--to", &to, &dir]);
    assert!(!refused.status.success(), "sent to an unverified peer");
    let why = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(why.contains("certificate") || why.contains("tls"), "{why}");
    assert_eq!(
        std::fs::read_dir(tmp.path().join("impostor"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn low_disk_and_oversized_instances_are_refused_and_nothing_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    if program("storescu").is_none() {
        return;
    }
    let series = write_ct_series(&tmp.path().join("ct"), 3, 64, EXPLICIT_LE, Flaws::default());
    let files: Vec<&Path> = series.files.iter().map(PathBuf::as_path).collect();

    // A watermark above any real free space: associations are rejected
    // (transient) and STOW-RS answers 507.
    let dir = tmp.path().join("full");
    std::fs::create_dir_all(&dir).unwrap();
    let full = Service::start(
        &dir,
        &[("LIVERSEG__STORAGE__MIN_FREE_BYTES", "1000000000000000000")],
    );
    let out = store_tls(full.dicom_port, &files, &[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("Association Rejected") || said.contains("rejected"),
        "{said}"
    );
    let (body, content_type) = stow(&series.files);
    let reply = liverseg_tests::http::request(
        full.gateway_port,
        "POST",
        "/dicom-web/studies",
        &[("Content-Type", content_type.as_str())],
        &body,
    );
    assert_eq!(reply.status, 507, "{}", reply.text());
    assert!(reply.text().contains("min_free_bytes"), "{}", reply.text());
    assert_eq!(stored_instances(&full), 0);
    assert!(full.log_text().contains("association rejected"));

    // Instances above listener.max_instance_bytes: each refused, none kept.
    let dir = tmp.path().join("small");
    std::fs::create_dir_all(&dir).unwrap();
    let small = Service::start(
        &dir,
        &[("LIVERSEG__LISTENER__MAX_INSTANCE_BYTES", "1048576")],
    );
    let big = write_ct_series(
        &tmp.path().join("big"),
        2,
        1024,
        EXPLICIT_LE,
        Flaws::default(),
    );
    let big_files: Vec<&Path> = big.files.iter().map(PathBuf::as_path).collect();
    let out = store_tls(small.dicom_port, &big_files, &[]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("Refused: OutOfResources"),
        "the limit is a DIMSE out-of-resources failure: {said}"
    );
    let (body, content_type) = stow(&big.files);
    let reply = liverseg_tests::http::request(
        small.gateway_port,
        "POST",
        "/dicom-web/studies",
        &[("Content-Type", content_type.as_str())],
        &body,
    );
    assert!(reply.status >= 400, "{} {}", reply.status, reply.text());
    assert!(
        reply.text().contains("max_instance_bytes"),
        "{}",
        reply.text()
    );
    assert_eq!(stored_instances(&small), 0);
    // Small instances still go through.
    let ok = store_tls(small.dicom_port, &files, &[]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(stored_instances(&small), files.len());
    // No partial file anywhere in the data directory.
    let tmp_left = walk_all(&small.data_dir)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.contains(".tmp") || name.starts_with('.')
        })
        .collect::<Vec<_>>();
    assert!(tmp_left.is_empty(), "{tmp_left:?}");
}

/// A STOW-RS body of `files` and its Content-Type.
fn stow(files: &[PathBuf]) -> (Vec<u8>, String) {
    let boundary = "liverseg-test-boundary";
    let bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    (
        liverseg_tests::http::stow_body(boundary, &bytes),
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
    )
}

fn walk_all(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() { walk_all(&p) } else { vec![p] }
        })
        .collect()
}
