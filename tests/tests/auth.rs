//! Bearer-token authentication of a real `liverseg serve` gateway, from a
//! real HTTP client and a real tonic gRPC client: keys made by `openssl`
//! (RSA 2048 and EC P-256), a JWKS file or a JWKS served over HTTP by a
//! small server in the test, tokens minted with jsonwebtoken.
//!
//! * Refused with 401 (HTTP) or UNAUTHENTICATED (gRPC): no token, a
//!   garbage token, an expired one, a wrong issuer, a wrong audience, a
//!   token signed by a key outside the JWKS, `alg: none`, HS256.
//! * Roles: a viewer reads (QIDO, WADO, the API, gRPC reads) and is
//!   refused STOW-RS (403) and ReplayJob (PERMISSION_DENIED); an editor
//!   stores by STOW-RS; an admin may replay.
//! * The audit trail (`liverseg audit export`) holds the views with the
//!   token's subject, the refusals and the upload; no token is ever in the
//!   service's log.
//! * A JWKS over HTTP: a rotated key (new kid) is picked up by fetching the
//!   JWKS again; an unknown kid right after does not fetch again (at most
//!   once a minute); an unreachable JWKS leaves the gateway up, answering
//!   503 until it can be fetched.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use liverseg_proto::v1::{self as pb, liverseg_client::LiversegClient};
use liverseg_tests::http::{Reply, request, stow_body};
use liverseg_tests::series::write_ct_series;
use liverseg_tests::service::Service;
use liverseg_tests::{free_port, program, wait_until};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::Code;
use tonic::transport::Channel;

const ISSUER: &str = "https://idp.hospital.test/realms/radiology";
const AUDIENCE: &str = "liverseg";
const STOW_TYPE: &str = "multipart/related; type=\"application/dicom\"; boundary=XyZ";

/// A signing key made by openssl, and its public JWK.
struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn openssl_key(dir: &Path, kid: &str, alg: Algorithm) -> Option<Key> {
    let openssl = program("openssl")?;
    let path = dir.join(format!("{kid}.pem"));
    let args: &[&str] = match alg {
        Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        other => panic!("no key recipe for {other:?}"),
    };
    let out = std::process::Command::new(openssl)
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(&path)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl genpkey: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read(&path).unwrap();
    let encoding = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        _ => EncodingKey::from_ec_pem(&pem),
    }
    .expect("openssl's PKCS#8 key");
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
    jwk["kid"] = kid.into();
    jwk["use"] = "sig".into();
    Some(Key {
        kid: kid.to_string(),
        alg,
        encoding,
        jwk,
    })
}

fn jwks(keys: &[&Key]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a valid token for `sub` with Keycloak-style realm roles.
fn claims(sub: &str, roles: &[&str]) -> Value {
    json!({
        "iss": ISSUER,
        "aud": ["account", AUDIENCE],
        "sub": sub,
        "preferred_username": format!("{sub}-name"),
        "iat": now(),
        "nbf": now() - 5,
        "exp": now() + 600,
        "realm_access": {"roles": roles},
    })
}

fn sign(key: &Key, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    // base64url without padding, as JWS wants it.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn get(port: u16, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("Accept", "application/dicom+json"),
        ("Origin", "http://viewer.example"),
    ];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request(port, "GET", path, &headers, b"")
}

fn stow(port: u16, token: Option<&str>, files: &[Vec<u8>]) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("Content-Type", STOW_TYPE),
        ("Origin", "http://viewer.example"),
    ];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request(
        port,
        "POST",
        "/dicom-web/studies",
        &headers,
        &stow_body("XyZ", files),
    )
}

/// A 401 with the bearer challenge, a JSON reason and CORS headers.
fn assert_401(r: &Reply, says: &str) {
    assert_eq!(r.status, 401, "{}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");
    let error = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains(says),
        "the error {error:?} should say {says:?}"
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("*"),
        "CORS headers on a refusal: {:?}",
        r.headers
    );
    eprintln!("401 {challenge} | {error}");
}

fn env(jwks: &str) -> Vec<(&str, &str)> {
    vec![
        ("LIVERSEG__AUTH__JWKS", jwks),
        ("LIVERSEG__AUTH__ISSUER", ISSUER),
        ("LIVERSEG__AUTH__AUDIENCE", AUDIENCE),
        ("LIVERSEG__AUTH__ROLES_CLAIM", "realm_access.roles"),
        // Debug logs: the check that no token is logged covers more.
        ("LIVERSEG__LOG__LEVEL", "debug"),
    ]
}

/// The audit trail, via `liverseg audit export`.
fn audit_trail(svc: &Service) -> Vec<Value> {
    let out = svc.cli(&["audit", "export"]);
    assert!(
        out.status.success(),
        "audit export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Waits until the trail has a record matching `want`; returns it.
fn wait_for_record(svc: &Service, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(15), || {
        found = audit_trail(svc).into_iter().find(|r| want(r));
        found.is_some()
    });
    assert!(
        ok,
        "no audit record for {what}; the trail:\n{}",
        audit_trail(svc)
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let record = found.unwrap();
    eprintln!("audit: {what}: {record}");
    record
}

fn assert_no_token_in_log(svc: &Service, tokens: &[&str]) {
    let log = svc.log_text();
    assert!(!log.is_empty());
    for token in tokens {
        // The signature part alone is unique to the token.
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !log.contains(token) && (signature.len() < 16 || !log.contains(signature)),
            "a token is in the service log"
        );
    }
    assert!(
        !log.to_lowercase().contains("bearer ey"),
        "a bearer header is in the log"
    );
}

/// Adds `authorization: Bearer <token>` to every call, when there is a token.
#[derive(Clone)]
struct Bearer(Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(r)
    }
}

type Client = LiversegClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

fn with_token(channel: Channel, token: Option<String>) -> Client {
    LiversegClient::with_interceptor(channel, Bearer(token))
}

#[test]
fn bearer_tokens_roles_and_audit_over_http_and_grpc() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some(rsa) = openssl_key(dir, "rsa-1", Algorithm::RS256) else {
        return;
    };
    let ec = openssl_key(dir, "ec-1", Algorithm::ES256).unwrap();
    // Same kid as the real key, another key: its signatures must not pass.
    let mut stranger = openssl_key(dir, "stranger", Algorithm::RS256).unwrap();
    stranger.kid = rsa.kid.clone();
    let jwks_path = dir.join("jwks.json");
    std::fs::write(&jwks_path, jwks(&[&rsa, &ec])).unwrap();
    let svc = Service::start(dir, &env(jwks_path.to_str().unwrap()));
    let port = svc.gateway_port;

    let viewer = sign(&rsa, &claims("viewer-7", &["liverseg-viewer"]));
    let viewer_ec = sign(
        &ec,
        &claims("viewer-ec", &["offline_access", "liverseg-viewer"]),
    );
    let editor = sign(&rsa, &claims("editor-3", &["liverseg-editor"]));
    let admin = sign(&rsa, &claims("admin-1", &["liverseg-admin"]));
    let no_role = sign(&rsa, &claims("nobody", &["offline_access"]));

    // ---- refused with 401 --------------------------------------------------------------------
    let r = get(port, "/dicom-web/studies", None);
    assert_401(&r, "authentication required");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"liverseg\"")
    );
    assert_401(
        &get(port, "/dicom-web/studies", Some("garbage")),
        "invalid token",
    );
    assert_401(
        &get(port, "/dicom-web/studies", Some("eyJ.eyJ.sig")),
        "invalid token",
    );
    let mut expired = claims("viewer-7", &["liverseg-viewer"]);
    expired["exp"] = (now() - 3600).into();
    expired["iat"] = (now() - 7200).into();
    expired["nbf"] = (now() - 7200).into();
    let expired = sign(&rsa, &expired);
    let r = get(port, "/dicom-web/studies", Some(&expired));
    assert_401(&r, "expired");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    let mut wrong_iss = claims("viewer-7", &["liverseg-viewer"]);
    wrong_iss["iss"] = "https://evil.example/realms/radiology".into();
    let wrong_iss = sign(&rsa, &wrong_iss);
    assert_401(
        &get(port, "/dicom-web/studies", Some(&wrong_iss)),
        "wrong issuer",
    );
    let mut wrong_aud = claims("viewer-7", &["liverseg-viewer"]);
    wrong_aud["aud"] = "another-app".into();
    let wrong_aud = sign(&rsa, &wrong_aud);
    assert_401(
        &get(port, "/dicom-web/studies", Some(&wrong_aud)),
        "wrong audience",
    );
    let forged = sign(&stranger, &claims("viewer-7", &["liverseg-admin"]));
    assert_401(
        &get(port, "/dicom-web/studies", Some(&forged)),
        "bad signature",
    );
    let payload = b64(claims("viewer-7", &["liverseg-admin"])
        .to_string()
        .as_bytes());
    let alg_none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    assert_401(
        &get(port, "/dicom-web/studies", Some(&alg_none)),
        "alg none",
    );
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(rsa.kid.clone());
    // HMAC keyed with the public modulus: the classic key-confusion attack.
    let secret = rsa.jwk["n"].as_str().unwrap().as_bytes().to_vec();
    let hs256 = jsonwebtoken::encode(
        &hs,
        &claims("viewer-7", &["liverseg-admin"]),
        &EncodingKey::from_secret(&secret),
    )
    .unwrap();
    assert_401(&get(port, "/dicom-web/studies", Some(&hs256)), "HS256");
    assert_401(&get(port, "/api/v1/jobs", None), "authentication required");

    // ---- what needs no token ---------------------------------------------------------------
    // A CORS preflight, and the pages a browser loads before it has a token.
    let pre = request(
        port,
        "OPTIONS",
        "/dicom-web/studies",
        &[
            ("Origin", "http://viewer.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
        b"",
    );
    assert!(
        pre.status < 300,
        "preflight: {} {:?}",
        pre.status,
        pre.headers
    );
    assert!(
        pre.header("access-control-allow-headers")
            .unwrap_or_default()
            .to_lowercase()
            .contains("authorization"),
        "the preflight allows Authorization: {:?}",
        pre.headers
    );
    let page = request(port, "GET", "/3d/1.2.3", &[], b"");
    assert_eq!(page.status, 200, "the 3D page's HTML needs no token");
    // No viewer installed here: a 404 from the handler, not a 401.
    assert_eq!(request(port, "GET", "/viewer/", &[], b"").status, 404);

    // ---- roles over HTTP ---------------------------------------------------------------------
    let r = get(port, "/dicom-web/studies", Some(&viewer));
    assert_eq!(r.status, 200, "viewer QIDO: {}", r.text());
    let r = get(port, "/dicom-web/studies", Some(&viewer_ec));
    assert_eq!(r.status, 200, "viewer ES256 QIDO: {}", r.text());
    assert_eq!(get(port, "/api/v1/jobs", Some(&viewer)).status, 200);
    let r = get(port, "/dicom-web/studies", Some(&no_role));
    assert_eq!(r.status, 403, "{}", r.text());

    let series = write_ct_series(
        &dir.join("ct"),
        3,
        16,
        "1.2.840.10008.1.2.1",
        Default::default(),
    );
    let files: Vec<Vec<u8>> = series
        .files
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    let r = stow(port, Some(&viewer), &files);
    assert_eq!(r.status, 403, "viewer STOW: {}", r.text());
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .contains("insufficient_scope")
    );
    assert!(r.json()["error"].as_str().unwrap().contains("editor"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    eprintln!("viewer STOW: 403 {}", r.json()["error"]);
    assert_eq!(stow(port, None, &files).status, 401);
    let r = stow(port, Some(&editor), &files);
    assert_eq!(r.status, 200, "editor STOW: {}", r.text());
    eprintln!("editor STOW: {} instances stored", files.len());

    // WADO by the viewer: metadata, an instance, a frame.
    let study = &series.study_uid;
    let r = get(
        port,
        &format!(
            "/dicom-web/studies/{study}/series/{}/metadata",
            series.series_uid
        ),
        Some(&viewer),
    );
    assert_eq!(r.status, 200, "metadata: {}", r.text());
    let sop = r.json()[0]["00080018"]["Value"][0]
        .as_str()
        .unwrap()
        .to_string();
    let frame = request(
        port,
        "GET",
        &format!(
            "/dicom-web/studies/{study}/series/{}/instances/{sop}/frames/1",
            series.series_uid
        ),
        &[
            ("Accept", "multipart/related; type=application/octet-stream"),
            ("Authorization", &format!("Bearer {viewer}")),
        ],
        b"",
    );
    assert_eq!(frame.status, 200, "frame: {}", frame.text());
    let r = get(
        port,
        &format!("/dicom-web/studies/{study}/series?Modality=CT"),
        Some(&viewer),
    );
    assert_eq!(r.status, 200);

    // ---- roles over gRPC (tonic, h2c on the same port) ----------------------------------------
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let missing_job = "0190a8a1-0000-7000-8000-000000000000".to_string();
    rt.block_on(async {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .expect("connect over h2c");
        let job = || pb::GetJobRequest {
            job_id: missing_job.clone(),
        };
        let e = with_token(channel.clone(), None)
            .get_job(job())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        eprintln!(
            "gRPC GetJob without a token: {:?} {}",
            e.code(),
            e.message()
        );
        let e = with_token(channel.clone(), Some("garbage".into()))
            .get_job(job())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let e = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "health without a token");

        // A viewer reads (the job does not exist: NOT_FOUND, past the check)...
        let e = with_token(channel.clone(), Some(viewer.clone()))
            .get_job(job())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        // ...but may not replay or list dead letters.
        let e = with_token(channel.clone(), Some(viewer.clone()))
            .replay_job(job())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        eprintln!("gRPC ReplayJob as viewer: {:?} {}", e.code(), e.message());
        let e = with_token(channel.clone(), Some(editor.clone()))
            .list_dead_letters(pb::ListDeadLettersRequest { limit: 10 })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        // An admin may: the job is missing, which is NOT_FOUND, not a refusal.
        let e = with_token(channel.clone(), Some(admin.clone()))
            .replay_job(job())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        eprintln!("gRPC ReplayJob as admin: {:?} {}", e.code(), e.message());
        with_token(channel.clone(), Some(admin.clone()))
            .list_dead_letters(pb::ListDeadLettersRequest { limit: 10 })
            .await
            .expect("ListDeadLetters as admin");
    });

    // ---- the audit trail -------------------------------------------------------------------------
    let peer_ok = |r: &Value| r["peer"].as_str().unwrap_or("").starts_with("127.0.0.1:");
    let r = wait_for_record(&svc, "the viewer's series metadata", |r| {
        r["action"] == "view"
            && r["actor"] == "viewer-7"
            && r["object"] == series.series_uid.as_str()
            && r["outcome"] == "ok"
    });
    assert!(peer_ok(&r), "peer is the client's address: {r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("/dicom-web/studies/{study}/series/{series}/metadata")
    );
    assert!(r["detail"].as_str().unwrap().contains("user=viewer-7-name"));
    let r = wait_for_record(&svc, "the viewer's frame", |r| {
        r["action"] == "view" && r["actor"] == "viewer-7" && r["object"] == sop.as_str()
    });
    assert!(r["detail"].as_str().unwrap().contains("frames 1"));
    let r = wait_for_record(&svc, "the viewer's QIDO search", |r| {
        r["action"] == "view"
            && r["actor"] == "viewer-7"
            && r["object"] == format!("/dicom-web/studies/{study}/series").as_str()
    });
    // Parameter names are recorded, their values (patient data) are not.
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("parameters: Modality")
    );
    assert!(!r["detail"].as_str().unwrap().contains("CT"));
    wait_for_record(&svc, "the ES256 viewer's search", |r| {
        r["action"] == "view" && r["actor"] == "viewer-ec"
    });
    let r = wait_for_record(&svc, "the editor's upload", |r| {
        r["action"] == "receive" && r["actor"] == "editor-3" && r["outcome"] == "ok"
    });
    assert_eq!(r["object"], study.as_str());
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("3 instances (3 stored"),
        "{r}"
    );
    assert!(peer_ok(&r), "{r}");
    wait_for_record(&svc, "the request without a token", |r| {
        r["actor"] == "anonymous"
            && r["action"] == "view"
            && r["outcome"] == "refused: no bearer token"
    });
    wait_for_record(&svc, "the expired token", |r| {
        r["actor"] == "anonymous"
            && r["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("refused:") && o.contains("expired"))
    });
    wait_for_record(&svc, "the forged token", |r| {
        r["outcome"] == "refused: bad signature"
    });
    let r = wait_for_record(&svc, "the viewer's STOW-RS", |r| {
        r["actor"] == "viewer-7"
            && r["action"] == "receive"
            && r["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("refused: editor access needed"))
    });
    assert_eq!(r["object"], "/dicom-web/studies");
    wait_for_record(&svc, "the viewer's ReplayJob", |r| {
        r["actor"] == "viewer-7"
            && r["action"] == "replay"
            && r["object"] == "/liverseg.v1.Liverseg/ReplayJob"
            && r["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("refused: admin access needed"))
    });
    wait_for_record(&svc, "the admin's ReplayJob", |r| {
        r["actor"] == "admin-1"
            && r["action"] == "replay"
            && r["object"] == missing_job.as_str()
            && r["outcome"]
                .as_str()
                .is_some_and(|o| o.starts_with("failed: no job"))
    });
    wait_for_record(&svc, "the gRPC call without a token", |r| {
        r["actor"] == "anonymous"
            && r["object"] == "/liverseg.v1.Liverseg/GetJob"
            && r["outcome"] == "refused: no bearer token"
    });

    assert_no_token_in_log(
        &svc,
        &[
            &viewer, &viewer_ec, &editor, &admin, &no_role, &expired, &wrong_iss, &wrong_aud,
            &forged, &hs256,
        ],
    );
}

/// A JWKS document served over HTTP/1.1, counting requests; `None` answers 503.
struct JwksServer {
    port: u16,
    body: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(body: Option<String>) -> JwksServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                if !head.starts_with("GET /realms/radiology/protocol/openid-connect/certs ") {
                    let _ = s.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
                h.fetch_add(1, Ordering::SeqCst);
                let answer = match b.lock().unwrap().clone() {
                    Some(json) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                        json.len()
                    ),
                    None => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string(),
                };
                let _ = s.write_all(answer.as_bytes());
            }
        });
        JwksServer { port, body, hits }
    }

    fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/realms/radiology/protocol/openid-connect/certs",
            self.port
        )
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[test]
fn jwks_over_http_key_rotation_and_an_unreachable_provider() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let Some(old) = openssl_key(dir, "2024-key", Algorithm::RS256) else {
        return;
    };
    let new = openssl_key(dir, "2025-key", Algorithm::RS256).unwrap();
    let other = openssl_key(dir, "unknown-key", Algorithm::RS256).unwrap();
    for sub in ["a", "b", "c"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let server = JwksServer::start(Some(jwks(&[&old])));
    let url = server.url();
    let svc = Service::start(&dir.join("a"), &env(&url));
    let port = svc.gateway_port;
    assert_eq!(server.hits(), 1, "fetched once at start");

    let viewer_old = sign(&old, &claims("viewer-7", &["liverseg-viewer"]));
    let r = get(port, "/dicom-web/studies", Some(&viewer_old));
    assert_eq!(r.status, 200, "{}", r.text());

    // The provider rotates its key: a token with the new kid makes the
    // gateway fetch the JWKS again.
    *server.body.lock().unwrap() = Some(jwks(&[&new]));
    let viewer_new = sign(&new, &claims("viewer-7", &["liverseg-viewer"]));
    let r = get(port, "/dicom-web/studies", Some(&viewer_new));
    assert_eq!(r.status, 200, "the rotated key: {}", r.text());
    assert_eq!(server.hits(), 2, "fetched again for the new kid");
    eprintln!("rotated key accepted after {} JWKS fetches", server.hits());
    // The old key left the set, and its tokens with it.
    assert_401(
        &get(port, "/dicom-web/studies", Some(&viewer_old)),
        "unknown key id",
    );
    // Another unknown kid within the minute: no fetch.
    let stranger = sign(&other, &claims("viewer-7", &["liverseg-viewer"]));
    assert_401(
        &get(port, "/dicom-web/studies", Some(&stranger)),
        "unknown key id",
    );
    assert_eq!(server.hits(), 2, "at most one fetch a minute");
    assert_no_token_in_log(&svc, &[&viewer_old, &viewer_new, &stranger]);
    drop(svc);

    // An identity provider that is down: the gateway starts, and answers
    // 503 (gRPC: UNAVAILABLE) until it can fetch the keys.
    let down = format!(
        "http://127.0.0.1:{}/realms/radiology/protocol/openid-connect/certs",
        free_port()
    );
    let svc = Service::start(&dir.join("b"), &env(&down));
    let r = get(svc.gateway_port, "/dicom-web/studies", Some(&viewer_new));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    eprintln!("provider down: 503 {}", r.json()["error"]);
    assert!(svc.log_text().contains("could not fetch the JWKS"));

    // A provider that answers 503 at first, then serves the keys.
    let flaky = JwksServer::start(None);
    let svc = Service::start(&dir.join("c"), &env(&flaky.url()));
    assert_eq!(
        get(svc.gateway_port, "/dicom-web/studies", Some(&viewer_new)).status,
        503
    );
    *flaky.body.lock().unwrap() = Some(jwks(&[&new]));
    let recovered = wait_until(Duration::from_secs(20), || {
        get(svc.gateway_port, "/dicom-web/studies", Some(&viewer_new)).status == 200
    });
    assert!(
        recovered,
        "the keys were fetched once the provider answered"
    );
    eprintln!("provider recovered after {} JWKS requests", flaky.hits());
}
