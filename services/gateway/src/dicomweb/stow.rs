//! STOW-RS: `POST /studies` (and `/studies/{study}`) with
//! `multipart/related; type="application/dicom"` (the `type` quoted or
//! not, as OHIF sends it).
//!
//! The whole body is read into temporary files first: a malformed or
//! oversized body is refused before anything is stored. Each instance is
//! then stored by `liverseg-ingest` as a C-STORE would be: a CT slice joins
//! its series (which becomes a job once no more slices arrive), a SEG is a
//! correction and becomes a new version, or is refused with the reason.

use super::root_url;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use liverseg_ingest::correction::Origin;
use liverseg_ingest::receive::Outcome;
use liverseg_store::blob;
use serde_json::{Value, json};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

pub async fn store(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    audited(state, caller, headers, None, body).await
}

pub async fn store_in_study(
    State(state): State<AppState>,
    caller: Caller,
    Path(study): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    audited(state, caller, headers, Some(study), body).await
}

/// What an upload brought, for its audit record.
#[derive(Default)]
struct Summary {
    bytes: u64,
    parts: usize,
    stored: usize,
    refused: usize,
    studies: Vec<String>,
}

impl Summary {
    fn study(&mut self, uid: &str) {
        if !uid.is_empty() && !self.studies.iter().any(|s| s == uid) {
            self.studies.push(uid.to_string());
        }
    }
}

/// [`receive`], with its `receive` record in the audit trail (corrections
/// leave their own `resubmit` records).
async fn audited(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    study: Option<String>,
    body: Body,
) -> ApiResult<Response> {
    let mut summary = Summary::default();
    if let Some(study) = &study {
        summary.study(study);
    }
    let result = receive(&state, &caller, headers, study, body, &mut summary).await;
    let outcome = match &result {
        Ok(_) if summary.refused == 0 => "ok".to_string(),
        Ok(_) => format!("partial: {} of {} refused", summary.refused, summary.parts),
        Err(e) => format!("refused: {}", e.message),
    };
    state.audit.record(
        &caller,
        "receive",
        &summary.studies.join(","),
        &outcome,
        &format!(
            "stow-rs: {} instances ({} stored, {} refused), {} bytes{}",
            summary.parts,
            summary.stored,
            summary.refused,
            summary.bytes,
            caller.username_detail()
        ),
    );
    result
}

/// The boundary of a `multipart/related` body whose parts are DICOM.
fn boundary(headers: &HeaderMap) -> ApiResult<String> {
    let unsupported = |why: String| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, why);
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unsupported("Content-Type is missing".into()))?;
    let mut params = ct.split(';');
    let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "multipart/related" {
        return Err(unsupported(format!(
            "Content-Type {media:?} is not multipart/related; type=\"application/dicom\""
        )));
    }
    let (mut boundary, mut part_type) = (None, None);
    for p in params {
        if let Some((k, v)) = p.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "boundary" => boundary = Some(v),
                "type" => part_type = Some(v.to_ascii_lowercase()),
                _ => {}
            }
        }
    }
    if let Some(t) = part_type.filter(|t| t != "application/dicom") {
        return Err(unsupported(format!(
            "parts of type {t:?} are not accepted; send application/dicom"
        )));
    }
    boundary
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ApiError::bad_request("the multipart Content-Type has no boundary"))
}

/// Temporary files of a request, removed unless handed on.
struct Temps(Vec<PathBuf>);

impl Drop for Temps {
    fn drop(&mut self) {
        for p in self.0.drain(..) {
            blob::discard(&p);
        }
    }
}

async fn read_parts(
    state: &AppState,
    boundary: String,
    body: Body,
    limit: u64,
    summary: &mut Summary,
) -> ApiResult<Temps> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the upload exceeds gateway.max_upload_bytes ({limit} bytes)"),
        )
    };
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut temps = Temps(Vec::new());
    let malformed = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            too_large()
        }
        e => ApiError::bad_request(format!("malformed multipart body: {e}")),
    };
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        if let Some(ct) = field.content_type()
            && ct.essence_str() != "application/dicom"
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("a part of type {ct} was sent; parts must be application/dicom"),
            ));
        }
        let blobs = state.deps.blobs.clone();
        let (file, path) = tokio::task::spawn_blocking(move || blobs.temp_file())
            .await
            .map_err(|e| ApiError::internal("creating a temporary file", e))?
            .map_err(|e| ApiError::internal("creating a temporary file", e))?;
        temps.0.push(path);
        let mut file = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            summary.bytes += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal("writing an upload", e))?;
        }
        file.flush()
            .await
            .map_err(|e| ApiError::internal("writing an upload", e))?;
    }
    if temps.0.is_empty() {
        return Err(ApiError::bad_request("the multipart body has no parts"));
    }
    Ok(temps)
}

async fn receive(
    state: &AppState,
    caller: &Caller,
    headers: HeaderMap,
    study: Option<String>,
    body: Body,
    summary: &mut Summary,
) -> ApiResult<Response> {
    let boundary = boundary(&headers)?;
    let limit = state.config.gateway.max_upload_bytes;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the upload ({len} bytes) exceeds gateway.max_upload_bytes ({limit} bytes)"),
        ));
    }
    // Below the disk watermark nothing is read: the client may retry later.
    if let Err(low) = liverseg_ingest::space::check(&state.config).await {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            low.to_string(),
        ));
    }
    let mut temps = read_parts(state, boundary, body, limit, summary).await?;
    summary.parts = temps.0.len();
    let peer = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(|v| format!("stow {v}"))
        .unwrap_or_else(|| "stow".into());
    let origin = Origin { via: "stow", peer };
    let root = root_url(state, &headers);

    let (mut stored, mut failed) = (Vec::new(), Vec::new());
    for path in std::mem::take(&mut temps.0) {
        if let Some(study) = &study {
            // Instances of another study are refused before being stored.
            let p = path.clone();
            let header =
                tokio::task::spawn_blocking(move || liverseg_dicom::instance::read_header(&p))
                    .await
                    .map_err(|e| ApiError::internal("reading an upload", e))?;
            if let Ok(h) = header
                && &h.identity.study_uid != study
            {
                summary.refused += 1;
                failed.push(json!({
                    "00081150": {"vr": "UI", "Value": [h.identity.sop_class_uid]},
                    "00081155": {"vr": "UI", "Value": [h.identity.sop_instance_uid]},
                    "00081197": {"vr": "US", "Value": [0xA900]},
                    "reason": format!("the instance belongs to study {}, not {study}", h.identity.study_uid),
                }));
                blob::discard(&path);
                continue;
            }
        }
        let (identity, outcome) = state.ingest.accept_file(path, &origin).await;
        let (class, uid) = identity
            .as_ref()
            .map(|i| (i.sop_class_uid.clone(), i.sop_instance_uid.clone()))
            .unwrap_or_default();
        if let Some(id) = &identity {
            summary.study(&id.study_uid);
            if id.sop_class_uid == liverseg_dicom::sop::SEGMENTATION_STORAGE {
                let outcome = match &outcome {
                    Outcome::Stored { .. } => "ok".to_string(),
                    Outcome::Unchanged { .. } => "ok (already held)".to_string(),
                    Outcome::Refused { reason, .. } => format!("refused: {reason}"),
                };
                state.audit.record(
                    caller,
                    "resubmit",
                    &id.sop_instance_uid,
                    &outcome,
                    &format!(
                        "stow-rs: correction in study {} (SEG series {}){}",
                        id.study_uid,
                        id.series_uid,
                        caller.username_detail()
                    ),
                );
            }
        }
        match &outcome {
            Outcome::Refused { .. } => summary.refused += 1,
            _ => summary.stored += 1,
        }
        match outcome {
            Outcome::Stored { series_uid } | Outcome::Unchanged { series_uid } => {
                let id = identity.expect("stored instances have an identity");
                if !liverseg_dicom::sop::is_derived(&id.sop_class_uid) {
                    state.tracker.touch(&series_uid);
                }
                stored.push(json!({
                    "00081150": {"vr": "UI", "Value": [class]},
                    "00081155": {"vr": "UI", "Value": [uid]},
                    "00081190": {"vr": "UR", "Value": [format!(
                        "{root}/studies/{}/series/{}/instances/{}",
                        id.study_uid, id.series_uid, id.sop_instance_uid)]},
                }));
            }
            Outcome::Refused { status, reason } => {
                failed.push(json!({
                    "00081150": {"vr": "UI", "Value": [class]},
                    "00081155": {"vr": "UI", "Value": [uid]},
                    "00081197": {"vr": "US", "Value": [status]},
                    "reason": reason,
                }));
            }
        }
    }
    if stored.is_empty() {
        let reasons: Vec<Value> = failed
            .iter()
            .map(|f| {
                json!({
                    "sop_instance_uid": f["00081155"]["Value"][0],
                    "status": f["00081197"]["Value"][0],
                    "reason": f["reason"],
                })
            })
            .collect();
        let first = reasons
            .first()
            .and_then(|r| r["reason"].as_str())
            .unwrap_or("refused")
            .to_string();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("no instance was stored: {first}"),
        )
        .with_details(Value::Array(reasons)));
    }
    let mut answer = serde_json::Map::new();
    if let Some(study) = &study {
        answer.insert(
            "00081190".into(),
            json!({"vr": "UR", "Value": [format!("{root}/studies/{study}")]}),
        );
    }
    answer.insert("00081199".into(), json!({"vr": "SQ", "Value": stored}));
    let status = if failed.is_empty() {
        StatusCode::OK
    } else {
        // Keep only DICOM attributes in the DICOM JSON answer.
        let failed: Vec<Value> = failed
            .into_iter()
            .map(|mut f| {
                if let Some(o) = f.as_object_mut() {
                    o.remove("reason");
                }
                f
            })
            .collect();
        answer.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
        StatusCode::ACCEPTED
    };
    let mut r = (status, axum::Json(Value::Object(answer))).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/dicom+json"),
    );
    Ok(r)
}
