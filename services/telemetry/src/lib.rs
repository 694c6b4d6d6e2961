//! What liverseg tells its operators: structured logs, OpenTelemetry traces
//! exported over OTLP, and Prometheus metrics.
//!
//! * [`init`] installs all three once per process.
//! * [`trace`]: the W3C trace context carried inside queue messages, so a
//!   study's trace runs from the association through the queue into the
//!   worker process and on to delivery; and [`trace::pseudonym`] for
//!   identifiers that must appear in spans.
//! * [`metrics`]: every metric's name, help text and recording function.
//!
//! Nothing here reads patient data: callers put UIDs and AE titles into
//! spans only as pseudonyms and never touch names, IDs or birth dates.

pub mod metrics;
pub mod trace;

use liverseg_core::Config;
use liverseg_core::config::LogFormat;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid configuration: key `log.level`, value {value:?}: {source}")]
    Filter {
        value: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot set up the OTLP exporter for {endpoint:?}: {source}")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
    #[error("a global metrics recorder is already installed: {0}")]
    Recorder(#[from] metrics_exporter_prometheus::BuildError),
}

/// Owns the exporters; [`Telemetry::shutdown`] flushes the spans still
/// buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
}

/// Installs logging (text or JSON on stderr), trace export when
/// `telemetry.otlp_endpoint` is set, and the Prometheus recorder. `roles`
/// is recorded on every span's resource. Must run inside a Tokio runtime:
/// the gRPC exporter's channel lives on it.
pub fn init(config: &Config, roles: &str) -> Result<Telemetry, TelemetryError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).map_err(|source| {
        TelemetryError::Filter {
            value: config.log.level.clone(),
            source,
        }
    })?;
    let endpoint = config.telemetry.otlp_endpoint.trim();
    let provider = if endpoint.is_empty() {
        None
    } else {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|source| TelemetryError::Exporter {
                endpoint: endpoint.to_string(),
                source,
            })?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(config.telemetry.service_name.clone())
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("service.instance.id", instance_id()),
                KeyValue::new("liverseg.roles", roles.to_string()),
            ])
            .build();
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        )
    };
    let otel_layer = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("liverseg")));
    let (text, json) = match config.log.format {
        LogFormat::Text => (
            Some(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            ),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel_layer)
        .try_init()?;
    let prometheus = metrics::install()?;
    Ok(Telemetry {
        provider,
        prometheus,
    })
}

impl Telemetry {
    /// The metrics in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.prometheus.render()
    }

    /// A cheap handle for the `/metrics` endpoint.
    pub fn metrics_handle(&self) -> metrics_exporter_prometheus::PrometheusHandle {
        self.prometheus.clone()
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is still buffered and stops the exporter. Blocking:
    /// call it off the async runtime.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("liverseg: flushing traces failed: {e}");
        }
    }
}

/// Host name and process id: tells replicas apart in a trace.
fn instance_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{host}-{}", std::process::id())
}
