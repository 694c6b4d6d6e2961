//! DICOMweb (PS3.18) over the studies liverseg holds: the CT it received,
//! every version of the liver SEG, the Encapsulated STL and the volume SR.
//!
//! * [`qido`]: searches over the attributes indexed with each instance.
//! * [`wado`]: instances, metadata, frames, bulk data, rendered PNG.
//! * [`stow`]: uploads, stored through `liverseg-ingest`.
//! * [`metadata`]: the DICOM JSON of instances, cached per series.
//! * [`multipart`]: `multipart/related` bodies and Accept parsing.
//!
//! CORS is open (and on error responses too, which OHIF needs to show an
//! error rather than a network failure); JSON is gzip-compressed when the
//! client accepts it.

pub mod metadata;
pub mod multipart;
pub mod qido;
pub mod render;
pub mod stow;
pub mod wado;

use crate::AppState;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};

pub fn router(state: AppState) -> axum::Router {
    let max_upload = state.config.gateway.max_upload_bytes;
    axum::Router::new()
        .route("/studies", get(qido::studies).post(stow::store))
        .route("/series", get(qido::all_series))
        .route("/instances", get(qido::all_instances))
        .route(
            "/studies/{study}",
            get(wado::study).post(stow::store_in_study),
        )
        .route("/studies/{study}/metadata", get(wado::study_metadata))
        .route("/studies/{study}/series", get(qido::series))
        .route("/studies/{study}/instances", get(qido::study_instances))
        .route("/studies/{study}/series/{series}", get(wado::series))
        .route(
            "/studies/{study}/series/{series}/metadata",
            get(wado::series_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances",
            get(qido::instances),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}",
            get(wado::instance),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/metadata",
            get(wado::instance_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            get(wado::frames),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/rendered",
            get(render::instance_rendered),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
            get(render::frame_rendered),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/bulk/{tag}",
            get(wado::bulk),
        )
        .route("/stow", post(stow::store))
        .layer(axum::extract::DefaultBodyLimit::max(
            usize::try_from(max_upload).unwrap_or(usize::MAX),
        ))
        .layer(CompressionLayer::new().gzip(true))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(Any)
                // Mirrored rather than `*`: the wildcard does not cover
                // Authorization, which a bearer token needs.
                .allow_headers(AllowHeaders::mirror_request())
                .expose_headers(Any),
        )
        .with_state(state)
}

/// The DICOMweb root as clients reach it: `gateway.public_url` when set,
/// else from X-Forwarded-Proto/Host/Prefix and Host (a proxy in front of
/// the gateway rewrites those).
pub fn root_url(state: &AppState, headers: &HeaderMap) -> String {
    let public = state.config.gateway.public_url.trim_end_matches('/');
    if !public.is_empty() {
        return format!("{public}/dicom-web");
    }
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let proto = value("x-forwarded-proto").unwrap_or_else(|| "http".into());
    let host = match value("x-forwarded-host") {
        Some(forwarded) => forwarded,
        // Some clients (dicomweb-client) send Host without the port; the
        // URIs we hand out must still reach us.
        None => match value(header::HOST.as_str()) {
            Some(h) if !h.contains(':') && ![0, 80, 443].contains(&state.port) => {
                format!("{h}:{}", state.port)
            }
            Some(h) => h,
            None => format!("127.0.0.1:{}", state.port),
        },
    };
    let prefix = value("x-forwarded-prefix").unwrap_or_default();
    format!("{proto}://{host}{}/dicom-web", prefix.trim_end_matches('/'))
}
