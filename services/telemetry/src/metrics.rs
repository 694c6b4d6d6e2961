//! Every metric liverseg exports, in one place: names, help texts, labels
//! and the functions the roles call. Recording goes through the `metrics`
//! facade, so a crate without a recorder installed (tests, the command
//! line) pays nothing. Labels take values from small fixed sets, never
//! UIDs or AE titles, so the number of series stays bounded.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::time::Duration;

pub const ASSOCIATIONS: &str = "liverseg_associations_total";
pub const INSTANCES: &str = "liverseg_instances_received_total";
pub const BYTES: &str = "liverseg_received_bytes_total";
pub const SERIES: &str = "liverseg_series_completed_total";
pub const JOBS: &str = "liverseg_jobs";
pub const JOBS_FINISHED: &str = "liverseg_jobs_finished_total";
pub const RESULTS: &str = "liverseg_segmentation_outcomes_total";
pub const QUEUE_MESSAGES: &str = "liverseg_queue_messages";
pub const QUEUE_LAG: &str = "liverseg_queue_oldest_message_age_seconds";
pub const STAGE: &str = "liverseg_stage_duration_seconds";
pub const MODEL_SLICE: &str = "liverseg_model_slice_seconds";
pub const DELIVERIES: &str = "liverseg_deliveries_total";
pub const DEAD_LETTERS: &str = "liverseg_dead_letters_total";
pub const HTTP_REQUESTS: &str = "liverseg_http_requests_total";
pub const HTTP_DURATION: &str = "liverseg_http_request_duration_seconds";

/// Stage durations: from a 10 ms decode to a ten-minute delivery backlog.
const STAGE_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// One network call on one slice: tens to hundreds of milliseconds on a CPU.
const SLICE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0,
];
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Installs the process-wide recorder and describes every metric.
pub(crate) fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = builder()?.install_recorder()?;
    describe();
    Ok(handle)
}

/// Histograms with buckets (Prometheus can aggregate those across
/// replicas), not client-side summaries.
fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(STAGE.into()), STAGE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(MODEL_SLICE.into()), SLICE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_BUCKETS)
}

fn describe() {
    describe_counter!(
        ASSOCIATIONS,
        "DICOM associations by outcome (accepted, rejected, busy)"
    );
    describe_counter!(
        INSTANCES,
        "Instances received by way (dimse, stow, grpc) and outcome (stored, unchanged, refused)"
    );
    describe_counter!(BYTES, "Bytes of instances received, by way");
    describe_counter!(
        SERIES,
        "Completed series by outcome (queued, stored, skipped)"
    );
    describe_gauge!(
        JOBS,
        "Jobs in the metadata store by state, read at scrape time"
    );
    describe_counter!(
        JOBS_FINISHED,
        "Job runs ended in this process by kind and outcome (done, failed, dead)"
    );
    describe_counter!(
        RESULTS,
        "Segmentations by outcome (liver, partial, uncertain, no_liver): a partial and uncertain result counts under both"
    );
    describe_gauge!(
        QUEUE_MESSAGES,
        "Queue messages by state (waiting, in_flight), read at scrape time"
    );
    describe_gauge!(
        QUEUE_LAG,
        "Age of the oldest unacknowledged queue message (0 when empty)"
    );
    describe_histogram!(
        STAGE,
        metrics::Unit::Seconds,
        "Duration of each worker stage (load, decode, inference, seg, mesh, sr, store, delivery)"
    );
    describe_histogram!(
        MODEL_SLICE,
        metrics::Unit::Seconds,
        "Wall time of one network call on one slice"
    );
    describe_counter!(
        DELIVERIES,
        "Result sends by protocol (c-store, stow-rs) and outcome (delivered, failed)"
    );
    describe_counter!(
        DEAD_LETTERS,
        "Jobs that became dead (attempts or deliveries exhausted)"
    );
    describe_counter!(
        HTTP_REQUESTS,
        "Gateway requests (DICOMweb, gRPC, viewer, API) by route template, method and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Gateway request duration by route template"
    );
}

/// How an instance reached us.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    Dimse,
    Stow,
    Grpc,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Dimse => "dimse",
            Via::Stow => "stow",
            Via::Grpc => "grpc",
        }
    }
}

pub fn association(outcome: &'static str) {
    counter!(ASSOCIATIONS, "outcome" => outcome).increment(1);
}

/// One instance received: `outcome` is stored, unchanged or refused.
pub fn instance_received(via: Via, outcome: &'static str, bytes: u64) {
    counter!(INSTANCES, "via" => via.as_str(), "outcome" => outcome).increment(1);
    counter!(BYTES, "via" => via.as_str()).increment(bytes);
}

pub fn series_completed(outcome: &'static str) {
    counter!(SERIES, "outcome" => outcome).increment(1);
}

/// Jobs by state as the store counts them now.
pub fn jobs_by_state<'a>(counts: impl IntoIterator<Item = (&'a str, i64)>) {
    for (state, n) in counts {
        gauge!(JOBS, "state" => state.to_string()).set(n as f64);
    }
}

/// One segmentation's verdict: `no_liver`, or `liver` plus any of
/// `partial` and `uncertain`.
pub fn segmentation_outcome(a: &liverseg_core::Assessment) {
    use liverseg_core::Flag;
    if !a.liver_found {
        counter!(RESULTS, "outcome" => "no_liver").increment(1);
        return;
    }
    counter!(RESULTS, "outcome" => "liver").increment(1);
    if a.flags.contains(&Flag::PartialCoverage) {
        counter!(RESULTS, "outcome" => "partial").increment(1);
    }
    if a.flags.contains(&Flag::Uncertain) {
        counter!(RESULTS, "outcome" => "uncertain").increment(1);
    }
}

pub fn job_finished(kind: &'static str, outcome: &'static str) {
    counter!(JOBS_FINISHED, "kind" => kind, "outcome" => outcome).increment(1);
    if outcome == "dead" {
        counter!(DEAD_LETTERS).increment(1);
    }
}

pub fn queue(waiting: u64, in_flight: u64, oldest: Option<Duration>) {
    gauge!(QUEUE_MESSAGES, "state" => "waiting").set(waiting as f64);
    gauge!(QUEUE_MESSAGES, "state" => "in_flight").set(in_flight as f64);
    gauge!(QUEUE_LAG).set(oldest.map_or(0.0, |d| d.as_secs_f64()));
}

pub fn stage(stage: &'static str, seconds: f64) {
    histogram!(STAGE, "stage" => stage).record(seconds);
}

pub fn model_slices(seconds: &[f32]) {
    let h = histogram!(MODEL_SLICE);
    for s in seconds {
        h.record(f64::from(*s));
    }
}

pub fn delivery(protocol: &'static str, delivered: bool) {
    let outcome = if delivered { "delivered" } else { "failed" };
    counter!(DELIVERIES, "protocol" => protocol, "outcome" => outcome).increment(1);
}

/// One gateway request; `route` is the matched template, not the path, so
/// UIDs never become label values.
pub fn http_request(route: String, method: &str, status: u16, seconds: f64) {
    histogram!(HTTP_DURATION, "route" => route.clone()).record(seconds);
    counter!(
        HTTP_REQUESTS,
        "route" => route,
        "method" => method.to_string(),
        "status" => status.to_string()
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_render_as_prometheus_text_with_buckets() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            association("accepted");
            instance_received(Via::Dimse, "stored", 1000);
            instance_received(Via::Dimse, "stored", 24);
            model_slices(&[0.07, 0.09]);
            stage("inference", 3.2);
            job_finished("segment", "dead");
            http_request("/dicom-web/studies".into(), "GET", 200, 0.004);
        });
        let text = handle.render();
        for line in [
            "liverseg_associations_total{outcome=\"accepted\"} 1",
            "liverseg_received_bytes_total{via=\"dimse\"} 1024",
            "liverseg_model_slice_seconds_bucket{le=\"0.08\"} 1",
            "liverseg_model_slice_seconds_count 2",
            "liverseg_stage_duration_seconds_bucket{stage=\"inference\",le=\"5\"} 1",
            "liverseg_dead_letters_total 1",
            "# HELP liverseg_jobs_finished_total",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(text.contains("route=\"/dicom-web/studies\""), "{text}");
    }
}
