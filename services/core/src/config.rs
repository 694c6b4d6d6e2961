//! Typed configuration and its layered loader.
//!
//! Layers, later wins: the built-in defaults (`config/default.toml`,
//! embedded), an optional TOML file, then `LIVERSEG__SECTION__KEY`
//! environment variables. The result is checked once, here; a bad value is
//! refused with its key, its value and the reason, and the typed `Config` is
//! passed down from `main`. Nothing else reads the environment.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The built-in defaults, embedded so that the binary runs with no files.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Prefix of configuration environment variables; `__` separates levels.
pub const ENV_PREFIX: &str = "LIVERSEG__";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub storage: StorageConfig,
    pub queue: QueueConfig,
    pub listener: ListenerConfig,
    pub series: SeriesConfig,
    pub worker: WorkerConfig,
    pub gateway: GatewayConfig,
    pub admin: AdminConfig,
    pub delivery: DeliveryConfig,
    pub results: ResultsConfig,
    pub auth: AuthConfig,
    pub telemetry: TelemetryConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub metadata_url: String,
    /// Below this many free bytes new associations and uploads are refused.
    pub min_free_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub url: String,
    pub stream: String,
    pub group: String,
    pub visibility_timeout_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicatePolicy {
    /// Keep the instance received first; answer success; record the conflict.
    Keep,
    /// Replace the stored instance; record the conflict.
    Overwrite,
    /// Answer "duplicate SOP instance" (0x0111); record the conflict.
    Reject,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub bind: SocketAddr,
    pub ae_title: String,
    pub allowed_calling_aes: Vec<String>,
    pub max_associations: u32,
    pub max_pdu_length: u32,
    pub timeout_seconds: u64,
    pub duplicate_policy: DuplicatePolicy,
    pub stable_seconds: u64,
    pub complete_on_release: bool,
    pub max_instance_bytes: u64,
    pub max_series_instances: u64,
    /// PEM certificate chain and key for DICOM TLS; empty: plain TCP.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// PEM CA bundle; when set, client certificates are required.
    pub tls_client_ca: PathBuf,
    /// Refuse plain TCP on a non-loopback address.
    pub require_tls: bool,
}

impl ListenerConfig {
    pub fn tls_enabled(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesConfig {
    pub min_slices: u32,
    pub max_tilt_degrees: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub concurrency: u32,
    pub max_attempts: u32,
    pub retry_delay_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub bind: SocketAddr,
    /// Absolute base URL behind a proxy; empty: from the request.
    pub public_url: String,
    pub max_upload_bytes: u64,
    /// OHIF and three.js as fetched by `deploy/fetch-viewer.sh`; empty: none.
    pub viewer_dir: PathBuf,
    /// 0 keeps studies forever.
    pub retention_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub bind: SocketAddr,
}

/// Where results go and how hard to try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// C-STORE destinations.
    pub destinations: Vec<DicomNode>,
    /// STOW-RS roots (`http://host:port/dicom-web`).
    pub stow_urls: Vec<String>,
    /// Failed delivery rounds before the job is dead.
    pub max_attempts: u32,
    /// First retry delay; doubled after each failure up to the maximum.
    pub backoff_initial_seconds: u64,
    pub backoff_max_seconds: u64,
    /// Per-association (and per-request) timeout.
    pub timeout_seconds: u64,
    /// C-STORE over TLS, verified against `tls_ca`.
    pub tls: bool,
    pub tls_ca: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

impl DeliveryConfig {
    /// The delay before delivery attempt `failures + 1`: exponential, capped.
    pub fn backoff(&self, failures: u32) -> std::time::Duration {
        let exp = failures.saturating_sub(1).min(30);
        let secs = self
            .backoff_initial_seconds
            .saturating_mul(1u64 << exp)
            .min(self.backoff_max_seconds);
        std::time::Duration::from_secs(secs)
    }
}

/// What the worker makes besides the SEG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsConfig {
    /// Triangle budget of the liver mesh (STL, glTF, Encapsulated STL).
    pub mesh_max_triangles: u32,
}

/// A DICOM application entity on the network, written `AE@HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DicomNode {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for DicomNode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || invalid("AE@HOST:PORT", format!("{s:?}"), "expected AE@HOST:PORT");
        let (ae, addr) = s.trim().split_once('@').ok_or_else(usage)?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(usage)?;
        let port: u16 = port.parse().map_err(|_| usage())?;
        check_ae_title("AE title", ae)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(usage());
        }
        Ok(DicomNode {
            ae_title: ae.to_string(),
            host: host.to_string(),
            port,
        })
    }
}

impl TryFrom<String> for DicomNode {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DicomNode> for String {
    fn from(n: DicomNode) -> String {
        n.to_string()
    }
}

impl std::fmt::Display for DicomNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.ae_title, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.ae_title, self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Bearer-token authentication of the gateway (OIDC JWT against a JWKS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// JWKS file path or http(s) URL; empty: no authentication.
    pub jwks: String,
    pub issuer: String,
    pub audience: String,
    /// Refuse to serve off loopback without authentication.
    pub required: bool,
    /// Dotted path of the roles array in the token's claims.
    pub roles_claim: String,
    pub viewer_role: String,
    pub editor_role: String,
    pub admin_role: String,
    pub leeway_seconds: u64,
}

impl AuthConfig {
    pub fn enabled(&self) -> bool {
        !self.jwks.trim().is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector URL; empty turns trace export off.
    pub otlp_endpoint: String,
    pub service_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid TOML: {source}")]
    ParseFile {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid configuration: key `{key}`, value {value}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

fn invalid(key: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl Config {
    /// The built-in defaults alone.
    pub fn defaults() -> Config {
        Config::load(None, std::iter::empty()).expect("built-in defaults are valid")
    }

    /// Loads defaults, then `file`, then the `LIVERSEG__*` variables among
    /// `env`, and validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut merged: toml::Table = DEFAULT_TOML.parse().expect("built-in defaults parse");
        let defaults = merged.clone();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                path: path.to_path_buf(),
                source,
            })?;
            let layer: toml::Table = text.parse().map_err(|source| ConfigError::ParseFile {
                path: path.to_path_buf(),
                source,
            })?;
            merge(&mut merged, layer);
        }
        let mut env: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (name, raw) in env {
            apply_env(&mut merged, &defaults, &name, &raw)?;
        }
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(merged.clone()))
            .map_err(|e| {
            let key = e.path().to_string();
            let value = lookup(&merged, &key)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "(absent)".into());
            invalid(&key, value, e.into_inner().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Rules that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.listener;
        check_ae_title("listener.ae_title", &l.ae_title)?;
        for ae in &l.allowed_calling_aes {
            check_ae_title("listener.allowed_calling_aes", ae)?;
        }
        if l.allowed_calling_aes.is_empty() && !l.bind.ip().is_loopback() {
            return Err(invalid(
                "listener.allowed_calling_aes",
                "[]",
                format!(
                    "an empty allow-list accepts any calling AE and is only allowed while \
                     listener.bind is a loopback address, not {}; list the PACS AE titles",
                    l.bind
                ),
            ));
        }
        if l.tls_enabled() == l.tls_key.as_os_str().is_empty() {
            return Err(invalid(
                "listener.tls_cert/listener.tls_key",
                "one of them",
                "set both the certificate chain and its private key, or neither",
            ));
        }
        if !l.tls_enabled() && l.require_tls && !l.bind.ip().is_loopback() {
            return Err(invalid(
                "listener.tls_cert",
                "\"\"",
                format!(
                    "listener.bind {} is not a loopback address and DICOM TLS is not configured; \
                     set listener.tls_cert and listener.tls_key, or listener.require_tls = false \
                     to accept plain DICOM on the network (unencrypted)",
                    l.bind
                ),
            ));
        }
        if !l.tls_client_ca.as_os_str().is_empty() && !l.tls_enabled() {
            return Err(invalid(
                "listener.tls_client_ca",
                l.tls_client_ca.display(),
                "client certificates need listener.tls_cert and listener.tls_key",
            ));
        }
        in_range(
            "listener.max_instance_bytes",
            l.max_instance_bytes,
            1 << 20,
            1 << 40,
        )?;
        in_range(
            "listener.max_series_instances",
            l.max_series_instances,
            1,
            1_000_000,
        )?;
        let d = &self.delivery;
        if d.tls && d.tls_ca.as_os_str().is_empty() {
            return Err(invalid(
                "delivery.tls_ca",
                "\"\"",
                "delivery over TLS verifies the destinations: name their CA bundle",
            ));
        }
        if d.tls_cert.as_os_str().is_empty() != d.tls_key.as_os_str().is_empty() {
            return Err(invalid(
                "delivery.tls_cert/delivery.tls_key",
                "one of them",
                "set both the client certificate and its private key, or neither",
            ));
        }
        let a = &self.auth;
        if !a.enabled() && a.required && !self.gateway.bind.ip().is_loopback() {
            return Err(invalid(
                "auth.jwks",
                "\"\"",
                format!(
                    "gateway.bind {} is not a loopback address and authentication is not \
                     configured; set auth.jwks (with auth.issuer and auth.audience), or \
                     auth.required = false to serve DICOMweb and gRPC to anyone who can connect",
                    self.gateway.bind
                ),
            ));
        }
        if a.enabled() && (a.issuer.trim().is_empty() || a.audience.trim().is_empty()) {
            return Err(invalid(
                "auth.issuer/auth.audience",
                "\"\"",
                "tokens are only accepted from a named issuer for a named audience",
            ));
        }
        in_range("auth.leeway_seconds", a.leeway_seconds, 0, 600)?;
        in_range(
            "listener.max_associations",
            l.max_associations.into(),
            1,
            4096,
        )?;
        in_range(
            "listener.max_pdu_length",
            l.max_pdu_length.into(),
            4096,
            131_072,
        )?;
        in_range("listener.timeout_seconds", l.timeout_seconds, 1, 3600)?;
        check_url(
            "gateway.public_url",
            &self.gateway.public_url,
            &["http", "https"],
        )?;
        in_range(
            "gateway.max_upload_bytes",
            self.gateway.max_upload_bytes,
            1024,
            1 << 40,
        )?;
        in_range("listener.stable_seconds", l.stable_seconds, 1, 86_400)?;
        in_range(
            "series.min_slices",
            self.series.min_slices.into(),
            1,
            100_000,
        )?;
        let tilt = self.series.max_tilt_degrees;
        if !(0.0..=90.0).contains(&tilt) {
            return Err(invalid(
                "series.max_tilt_degrees",
                tilt,
                "must be between 0 and 90",
            ));
        }
        in_range("worker.concurrency", self.worker.concurrency.into(), 1, 256)?;
        in_range(
            "worker.max_attempts",
            self.worker.max_attempts.into(),
            1,
            100,
        )?;
        in_range(
            "worker.retry_delay_seconds",
            self.worker.retry_delay_seconds,
            0,
            86_400,
        )?;
        in_range(
            "queue.visibility_timeout_seconds",
            self.queue.visibility_timeout_seconds,
            1,
            7 * 86_400,
        )?;
        check_url(
            "storage.metadata_url",
            &self.storage.metadata_url,
            &["sqlite", "postgres", "postgresql"],
        )?;
        check_url("queue.url", &self.queue.url, &["sqlite", "redis", "rediss"])?;
        check_url(
            "telemetry.otlp_endpoint",
            &self.telemetry.otlp_endpoint,
            &["http", "https"],
        )?;
        if self.telemetry.service_name.trim().is_empty() {
            return Err(invalid(
                "telemetry.service_name",
                "\"\"",
                "must not be empty",
            ));
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "\"\"", "must not be empty"));
        }
        if self.queue.stream.trim().is_empty() || self.queue.group.trim().is_empty() {
            return Err(invalid(
                "queue.stream/queue.group",
                "\"\"",
                "must not be empty",
            ));
        }
        let d = &self.delivery;
        in_range("delivery.max_attempts", d.max_attempts.into(), 1, 1000)?;
        in_range(
            "delivery.backoff_initial_seconds",
            d.backoff_initial_seconds,
            1,
            86_400,
        )?;
        in_range(
            "delivery.backoff_max_seconds",
            d.backoff_max_seconds,
            d.backoff_initial_seconds,
            7 * 86_400,
        )?;
        in_range("delivery.timeout_seconds", d.timeout_seconds, 1, 3600)?;
        for url in &d.stow_urls {
            check_url("delivery.stow_urls", url, &["http", "https"])?;
        }
        in_range(
            "results.mesh_max_triangles",
            self.results.mesh_max_triangles.into(),
            100,
            10_000_000,
        )?;
        if self.log.level.trim().is_empty() {
            return Err(invalid("log.level", "\"\"", "must not be empty"));
        }
        Ok(())
    }

    /// The effective configuration as TOML, with passwords in URLs masked.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.storage.metadata_url = redact_url(&shown.storage.metadata_url);
        shown.queue.url = redact_url(&shown.queue.url);
        toml::to_string_pretty(&shown).expect("configuration serialises")
    }
}

/// Masks the password of a URL (`postgres://u:****@h/db`); other text is
/// returned unchanged. Use it wherever a backend URL may be shown.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => raw.to_string(),
    }
}

fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (k, v) in layer {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => merge(b, l),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn lookup<'a>(table: &'a toml::Table, dotted: &str) -> Option<&'a toml::Value> {
    let mut parts = dotted.split('.');
    let mut cur = table.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_table()?.get(p)?;
    }
    Some(cur)
}

/// Sets one `LIVERSEG__A__B` variable, typed after the built-in default of
/// the same key (so `LIVERSEG__LISTENER__ALLOWED_CALLING_AES=PACS,CT1` is a
/// list and `..._STABLE_SECONDS=abc` is refused, not passed on as a string).
fn apply_env(
    merged: &mut toml::Table,
    defaults: &toml::Table,
    name: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let path: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let key = path.join(".");
    let shown_key = format!("{key} (from {name})");
    let Some(default) = lookup(defaults, &key).filter(|_| path.len() == 2) else {
        return Err(invalid(
            &shown_key,
            format!("{raw:?}"),
            "no such configuration key",
        ));
    };
    let value = match default {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| invalid(&shown_key, format!("{raw:?}"), "expected an integer"))?,
        toml::Value::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| invalid(&shown_key, format!("{raw:?}"), "expected a number"))?,
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => {
                return Err(invalid(
                    &shown_key,
                    format!("{raw:?}"),
                    "expected true or false",
                ));
            }
        },
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        _ => {
            return Err(invalid(
                &shown_key,
                format!("{raw:?}"),
                "cannot be set from the environment",
            ));
        }
    };
    if let Some(toml::Value::Table(section)) = merged.get_mut(&path[0]) {
        section.insert(path[1].clone(), value);
    }
    Ok(())
}

fn in_range(key: &str, v: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(invalid(key, v, format!("must be between {min} and {max}")));
    }
    Ok(())
}

/// AE titles: 1 to 16 characters of the DICOM default repertoire, no
/// backslash or control characters, not only spaces (PS3.5 table 6.2-1).
pub fn check_ae_title(key: &str, ae: &str) -> Result<(), ConfigError> {
    let bad = |reason: &str| Err(invalid(key, format!("{ae:?}"), reason));
    if ae.trim().is_empty() {
        return bad("an AE title must not be empty or only spaces");
    }
    if ae.len() > 16 {
        return bad("an AE title has at most 16 characters");
    }
    if !ae.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
        return bad("an AE title holds printable ASCII without backslash");
    }
    Ok(())
}

fn check_url(key: &str, raw: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    if raw.is_empty() {
        return Ok(());
    }
    let shown = format!("{:?}", redact_url(raw));
    let parsed = url::Url::parse(raw).map_err(|e| invalid(key, &shown, e.to_string()))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(invalid(
            key,
            &shown,
            format!(
                "unsupported scheme; use an empty value (embedded) or one of {}",
                schemes.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dicom_nodes() {
        let t: DicomNode = "ORTHANC@127.0.0.1:4242".parse().unwrap();
        assert_eq!(
            (t.ae_title.as_str(), t.host.as_str(), t.port),
            ("ORTHANC", "127.0.0.1", 4242)
        );
        let t: DicomNode = "PACS@[::1]:104".parse().unwrap();
        assert_eq!(
            (t.host.as_str(), t.to_string().as_str()),
            ("::1", "PACS@[::1]:104")
        );
        for bad in [
            "ORTHANC",
            "@h:1",
            "A@h",
            "A@h:x",
            "A@:1",
            "A@h:0",
            "WAY_TOO_LONG_AE_TITLE@h:1",
        ] {
            assert!(bad.parse::<DicomNode>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn delivery_destinations_come_from_the_environment() {
        let env = |v: &str| {
            vec![(
                "LIVERSEG__DELIVERY__DESTINATIONS".to_string(),
                v.to_string(),
            )]
        };
        let c = Config::load(None, env("PACS@10.0.0.5:104, ORTHANC@127.0.0.1:4242")).unwrap();
        let shown: Vec<String> = c
            .delivery
            .destinations
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(shown, ["PACS@10.0.0.5:104", "ORTHANC@127.0.0.1:4242"]);
        let err = Config::load(None, env("PACS@host"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("delivery.destinations") && err.contains("AE@HOST:PORT"),
            "{err}"
        );
    }

    #[test]
    fn delivery_backoff_doubles_up_to_the_cap() {
        let d = Config::defaults().delivery;
        let waits: Vec<u64> = (1..=8).map(|n| d.backoff(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 600, 600]);
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_secure_and_embedded() {
        let c = Config::defaults();
        assert_eq!(c.listener.bind.to_string(), "127.0.0.1:11112");
        assert_eq!(c.listener.ae_title, "LIVERSEG");
        assert!(c.listener.allowed_calling_aes.is_empty());
        assert_eq!(c.storage.data_dir, PathBuf::from("./liverseg-data"));
        assert_eq!(c.storage.metadata_url, "");
        assert_eq!(c.queue.url, "");
        assert_eq!(c.listener.stable_seconds, 5);
        assert_eq!(c.listener.duplicate_policy, DuplicatePolicy::Keep);
    }

    #[test]
    fn layers_apply_in_order_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[listener]\nae_title = \"FROMFILE\"\nstable_seconds = 9\n[storage]\ndata_dir = \"/srv/x\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("LIVERSEG__LISTENER__AE_TITLE", "FROMENV"),
                ("LIVERSEG__LISTENER__ALLOWED_CALLING_AES", "PACS, CT1,,"),
                ("LIVERSEG__LISTENER__COMPLETE_ON_RELEASE", "yes"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listener.ae_title, "FROMENV");
        assert_eq!(c.listener.stable_seconds, 9);
        assert_eq!(c.storage.data_dir, PathBuf::from("/srv/x"));
        assert_eq!(c.listener.allowed_calling_aes, vec!["PACS", "CT1"]);
        assert!(c.listener.complete_on_release);
    }

    fn err(file_text: Option<&str>, vars: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        if let Some(t) = file_text {
            std::fs::write(&file, t).unwrap();
        }
        Config::load(file_text.map(|_| file.as_path()), env(vars))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_values_name_key_value_and_reason() {
        let e = err(None, &[("LIVERSEG__LISTENER__STABLE_SECONDS", "soon")]);
        assert!(
            e.contains("listener.stable_seconds") && e.contains("soon") && e.contains("integer"),
            "{e}"
        );

        let e = err(Some("[listener]\nduplicate_policy = \"merge\"\n"), &[]);
        assert!(
            e.contains("listener.duplicate_policy") && e.contains("merge") && e.contains("keep"),
            "{e}"
        );

        let e = err(Some("[listener]\nbind = \"nowhere\"\n"), &[]);
        assert!(e.contains("listener.bind") && e.contains("nowhere"), "{e}");

        let e = err(Some("[listener]\nae_titel = \"X\"\n"), &[]);
        assert!(e.contains("ae_titel"), "{e}");

        let e = err(None, &[("LIVERSEG__LISTENER__NOPE", "1")]);
        assert!(
            e.contains("listener.nope") && e.contains("no such configuration key"),
            "{e}"
        );

        let e = err(
            None,
            &[("LIVERSEG__LISTENER__AE_TITLE", "MUCH_TOO_LONG_AE_TITLE")],
        );
        assert!(e.contains("16 characters"), "{e}");

        let e = err(
            None,
            &[("LIVERSEG__STORAGE__METADATA_URL", "mysql://x@y/z")],
        );
        assert!(
            e.contains("storage.metadata_url") && e.contains("unsupported scheme"),
            "{e}"
        );

        let e = err(None, &[("LIVERSEG__LISTENER__STABLE_SECONDS", "0")]);
        assert!(e.contains("between 1 and"), "{e}");
    }

    #[test]
    fn empty_allow_list_only_on_loopback() {
        let e = err(None, &[("LIVERSEG__LISTENER__BIND", "0.0.0.0:11112")]);
        assert!(
            e.contains("listener.allowed_calling_aes") && e.contains("loopback"),
            "{e}"
        );
        let ok = Config::load(
            None,
            env(&[
                ("LIVERSEG__LISTENER__BIND", "0.0.0.0:11112"),
                ("LIVERSEG__LISTENER__ALLOWED_CALLING_AES", "ORTHANC"),
                ("LIVERSEG__LISTENER__REQUIRE_TLS", "false"),
            ]),
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
        assert!(Config::load(None, env(&[("LIVERSEG__LISTENER__BIND", "[::1]:104")])).is_ok());
    }

    #[test]
    fn security_is_required_off_loopback() {
        // The listener on the network wants TLS, or an explicit opt-out.
        let e = err(
            None,
            &[
                ("LIVERSEG__LISTENER__BIND", "0.0.0.0:11112"),
                ("LIVERSEG__LISTENER__ALLOWED_CALLING_AES", "ORTHANC"),
            ],
        );
        assert!(
            e.contains("listener.tls_cert") && e.contains("require_tls"),
            "{e}"
        );
        let tls = [
            ("LIVERSEG__LISTENER__BIND", "0.0.0.0:11112"),
            ("LIVERSEG__LISTENER__ALLOWED_CALLING_AES", "ORTHANC"),
            ("LIVERSEG__LISTENER__TLS_CERT", "/etc/liverseg/tls.crt"),
            ("LIVERSEG__LISTENER__TLS_KEY", "/etc/liverseg/tls.key"),
        ];
        assert!(Config::load(None, env(&tls)).is_ok());
        let e = err(None, &tls[..3]);
        assert!(e.contains("neither"), "{e}");

        // The gateway on the network wants tokens, or an explicit opt-out.
        let e = err(None, &[("LIVERSEG__GATEWAY__BIND", "0.0.0.0:8080")]);
        assert!(
            e.contains("auth.jwks") && e.contains("auth.required"),
            "{e}"
        );
        let e = err(
            None,
            &[
                ("LIVERSEG__GATEWAY__BIND", "0.0.0.0:8080"),
                ("LIVERSEG__AUTH__JWKS", "/etc/liverseg/jwks.json"),
            ],
        );
        assert!(e.contains("auth.issuer"), "{e}");
        let oidc = [
            ("LIVERSEG__GATEWAY__BIND", "0.0.0.0:8080"),
            ("LIVERSEG__AUTH__JWKS", "https://login.example.org/jwks"),
            ("LIVERSEG__AUTH__ISSUER", "https://login.example.org"),
            ("LIVERSEG__AUTH__AUDIENCE", "liverseg"),
        ];
        assert!(Config::load(None, env(&oidc)).is_ok());
        let open = [
            ("LIVERSEG__GATEWAY__BIND", "0.0.0.0:8080"),
            ("LIVERSEG__AUTH__REQUIRED", "false"),
        ];
        assert!(Config::load(None, env(&open)).is_ok());

        // Delivery over TLS verifies its peers.
        let e = err(None, &[("LIVERSEG__DELIVERY__TLS", "true")]);
        assert!(e.contains("delivery.tls_ca"), "{e}");
    }

    #[test]
    fn secrets_are_redacted() {
        let c = Config::load(
            None,
            env(&[
                (
                    "LIVERSEG__STORAGE__METADATA_URL",
                    "postgres://liver:s3cret@db:5432/liverseg",
                ),
                ("LIVERSEG__QUEUE__URL", "redis://:hunter2@cache:6379/0"),
            ]),
        )
        .unwrap();
        let shown = c.to_redacted_toml();
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://liver:****@db:5432/liverseg"),
            "{shown}"
        );
        // The printed configuration loads back to the same values but the secrets.
        let back: Config = toml::from_str(&shown).unwrap();
        assert_eq!(back.listener, c.listener);
    }
}
