//! The JSON API for operators, dashboards and the 3D page.
//!
//! * `GET /api/v1/jobs?state=S&limit=N` newest first; `GET /api/v1/jobs/{id}`
//! * `GET /api/v1/series/{uid}`; `GET /api/v1/series/{uid}/versions`: the
//!   segmentation versions of a CT series with lineage, Dice and volumes
//! * `GET /api/v1/studies/{study}/liver`: the newest liver mesh of a study
//!   and its volume; `.../liver.glb` and `.../liver.stl` the files

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use liverseg_core::{JobId, JobState, ResultObject, SegVersion};
use serde::Deserialize;

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/{id}", get(get_job))
        .route("/api/v1/series/{uid}", get(get_series))
        .route("/api/v1/series/{uid}/versions", get(versions))
        .route("/api/v1/studies/{study}/liver", get(liver))
        .route("/api/v1/studies/{study}/liver.glb", get(liver_glb))
        .route("/api/v1/studies/{study}/liver.stl", get(liver_stl))
        .with_state(state)
}

#[derive(Deserialize)]
struct JobsQuery {
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_jobs(
    State(state): State<AppState>,
    Query(q): Query<JobsQuery>,
) -> ApiResult<Response> {
    let filter = q
        .state
        .as_deref()
        .map(str::parse::<JobState>)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(state.deps.store.list_jobs(filter, limit).await?).into_response())
}

async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = id
        .parse::<JobId>()
        .map_err(|_| ApiError::bad_request(format!("{id:?} is not a job id")))?;
    match state.deps.store.get_job(id).await? {
        Some(job) => Ok(Json(job).into_response()),
        None => Err(ApiError::not_found("no such job")),
    }
}

async fn get_series(State(state): State<AppState>, Path(uid): Path<String>) -> ApiResult<Response> {
    match state.deps.store.get_series(&uid).await? {
        Some(s) => Ok(Json(s).into_response()),
        None => Err(ApiError::not_found("no such series")),
    }
}

async fn versions(State(state): State<AppState>, Path(uid): Path<String>) -> ApiResult<Response> {
    let versions = state.deps.store.seg_versions(&uid).await?;
    if versions.is_empty() && state.deps.store.get_series(&uid).await?.is_none() {
        return Err(ApiError::not_found("no such series"));
    }
    Ok(Json(versions).into_response())
}

/// The newest version of any CT series of the study, with its results.
async fn newest(state: &AppState, study: &str) -> ApiResult<(SegVersion, Vec<ResultObject>)> {
    let mut best: Option<SegVersion> = None;
    for s in state.deps.store.series_summaries(Some(study)).await? {
        if liverseg_dicom::sop::is_derived(&s.sample.sop_class_uid) {
            continue;
        }
        for v in state.deps.store.seg_versions(&s.series.series_uid).await? {
            if best.as_ref().is_none_or(|b| v.created_at >= b.created_at) {
                best = Some(v);
            }
        }
    }
    let version = best.ok_or_else(|| ApiError::not_found("the study has no liver segmentation"))?;
    let results = match version.job_id {
        Some(job) => state.deps.store.results(job).await?,
        None => Vec::new(),
    };
    if !results.iter().any(|r| r.kind == "glb") {
        return Err(ApiError::not_found(
            "the newest segmentation's mesh is not made yet",
        ));
    }
    Ok((version, results))
}

async fn liver(State(state): State<AppState>, Path(study): Path<String>) -> ApiResult<Response> {
    let (v, _) = newest(&state, &study).await?;
    // The verdict of the job that made this version (a correction keeps
    // the AI's verdict on coverage: the scan is the same).
    let mut assessment = None;
    for job in [v.job_id]
        .into_iter()
        .flatten()
        .chain(ai_job(&state, &v.source_series_uid).await?)
    {
        if let Some(a) = state
            .deps
            .store
            .get_job(job)
            .await?
            .and_then(|j| j.assessment)
        {
            assessment = Some(a);
            break;
        }
    }
    let (coverage, flags) = match &assessment {
        Some(a) => (
            serde_json::to_value(&a.coverage).unwrap_or_default(),
            serde_json::to_value(&a.flags).unwrap_or_default(),
        ),
        None => (serde_json::Value::Null, serde_json::json!([])),
    };
    Ok(Json(serde_json::json!({
        "coverage": coverage,
        "flags": flags,
        "study_uid": study,
        "series_uid": v.source_series_uid,
        "version": v.version,
        "origin": v.origin,
        "volume_ml": v.volume_ml,
        "dice_vs_ai": v.dice_vs_ai,
        "glb": format!("/api/v1/studies/{study}/liver.glb"),
        "stl": format!("/api/v1/studies/{study}/liver.stl"),
    }))
    .into_response())
}

/// The job that made the AI version of `series`, if any.
async fn ai_job(state: &AppState, series: &str) -> ApiResult<Option<liverseg_core::JobId>> {
    Ok(state
        .deps
        .store
        .seg_versions(series)
        .await?
        .into_iter()
        .find(|v| v.origin == liverseg_core::SegOrigin::Ai)
        .and_then(|v| v.job_id))
}

async fn file(state: &AppState, study: &str, kind: &str, media: &str) -> ApiResult<Response> {
    let (_, results) = newest(state, study).await?;
    let r = results
        .iter()
        .find(|r| r.kind == kind)
        .ok_or_else(|| ApiError::not_found(format!("no {kind} file")))?;
    let (blobs, key) = (state.deps.blobs.clone(), r.blob_key.clone());
    let bytes = tokio::task::spawn_blocking(move || blobs.read(&key))
        .await
        .map_err(|e| ApiError::internal("reading the mesh", e))?
        .map_err(|e| ApiError::internal("reading the mesh", e))?;
    let mut resp = crate::dicomweb::multipart::response(media.into(), Body::from(bytes));
    if kind == "stl" {
        resp.headers_mut().insert(
            axum::http::header::CONTENT_DISPOSITION,
            axum::http::HeaderValue::from_static("attachment; filename=\"liver.stl\""),
        );
    }
    Ok(resp)
}

async fn liver_glb(
    State(state): State<AppState>,
    Path(study): Path<String>,
) -> ApiResult<Response> {
    file(&state, &study, "glb", "model/gltf-binary").await
}

async fn liver_stl(
    State(state): State<AppState>,
    Path(study): Path<String>,
) -> ApiResult<Response> {
    file(&state, &study, "stl", "model/stl").await
}
