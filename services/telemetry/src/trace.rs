//! Trace context across processes, and pseudonyms for span attributes.
//!
//! The queue message carries the W3C `traceparent` (and `tracestate`) of
//! the span that enqueued it; the worker makes its job span a child of it.
//! Without an exporter the current span has no context and the carrier
//! stays empty, which the worker treats as "start a new trace".

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// W3C trace context headers, as stored in a queue message.
pub type Carrier = BTreeMap<String, String>;

struct Inject<'a>(&'a mut Carrier);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct Extract<'a>(&'a Carrier);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The context of `span`, ready to travel (empty when not exported).
pub fn carrier_of(span: &tracing::Span) -> Carrier {
    let mut carrier = Carrier::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut Inject(&mut carrier));
    carrier
}

/// The context of the current span.
pub fn current_carrier() -> Carrier {
    carrier_of(&tracing::Span::current())
}

/// Makes `span` a child of the span that `carrier` came from; an empty or
/// unreadable carrier leaves it a root.
pub fn continue_from(span: &tracing::Span, carrier: &Carrier) {
    if carrier.is_empty() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Extract(carrier));
    // Fails only when the span is disabled by the filter: nothing to link.
    let _ = span.set_parent(parent);
}

/// A stable, non-reversible stand-in for an identifier (a Study Instance
/// UID, an AE title) in spans: 16 hex digits of SHA-256. The same input
/// gives the same pseudonym in every process, so spans still correlate.
pub fn pseudonym(identifier: &str) -> String {
    let digest = Sha256::digest(format!("liverseg-trace:{identifier}").as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_short_and_distinct() {
        let a = pseudonym("1.2.840.113619.2.55.3.604688119");
        assert_eq!(a, pseudonym("1.2.840.113619.2.55.3.604688119"));
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, pseudonym("1.2.840.113619.2.55.3.604688120"));
        assert!(!a.contains("1.2.840"));
    }

    #[test]
    fn the_carrier_continues_the_trace_in_another_span_tree() {
        use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
        use tracing_subscriber::layer::SubscriberExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let association = tracing::info_span!("dicom.association");
            let carrier = carrier_of(&association);
            assert!(carrier["traceparent"].starts_with("00-"), "{carrier:?}");
            // As the worker does with the message it dequeued.
            let job = tracing::info_span!(parent: None, "job");
            continue_from(&job, &carrier);
            let (a, j) = (association.context(), job.context());
            assert_eq!(
                a.span().span_context().trace_id(),
                j.span().span_context().trace_id()
            );
            assert_ne!(
                a.span().span_context().span_id(),
                j.span().span_context().span_id()
            );
        });
    }

    #[test]
    fn a_span_without_an_exporter_carries_nothing_and_ignores_empty_carriers() {
        let span = tracing::info_span!("job");
        assert!(carrier_of(&span).is_empty());
        continue_from(&span, &Carrier::new());
    }
}
