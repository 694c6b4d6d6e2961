//! WADO-RS rendered: a CT slice as PNG with the liver drawn over it (the
//! newest segmentation version of its series), as the original project's
//! PNG export did.
//!
//! Query parameters: `window=center,width` (default 40,400: abdomen) and
//! `overlay=false` for the plain slice.

use super::wado::instance_record;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use liverseg_core::InstanceRecord;
use liverseg_dicom::seg::{self, Slices};
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
pub struct RenderQuery {
    window: Option<String>,
    overlay: Option<String>,
}

pub async fn instance_rendered(
    State(state): State<AppState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    Query(q): Query<RenderQuery>,
) -> ApiResult<Response> {
    render(state, &study, &series, &instance, q).await
}

pub async fn frame_rendered(
    State(state): State<AppState>,
    Path((study, series, instance, frames)): Path<(String, String, String, String)>,
    Query(q): Query<RenderQuery>,
) -> ApiResult<Response> {
    if frames.trim() != "1" {
        return Err(ApiError::bad_request(
            "single-frame images render frame 1 only",
        ));
    }
    render(state, &study, &series, &instance, q).await
}

fn window(q: &RenderQuery) -> ApiResult<(f32, f32)> {
    let Some(w) = q.window.as_deref() else {
        return Ok((40.0, 400.0));
    };
    let mut parts = w.split(',').map(|p| p.trim().parse::<f32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(c)), Some(Ok(w))) if w > 0.0 && c.is_finite() && w.is_finite() => Ok((c, w)),
        _ => Err(ApiError::bad_request(format!(
            "window {w:?} is not center,width with a positive width"
        ))),
    }
}

async fn render(
    state: AppState,
    study: &str,
    series: &str,
    instance: &str,
    q: RenderQuery,
) -> ApiResult<Response> {
    let (center, width) = window(&q)?;
    let record = instance_record(&state, study, series, instance).await?;
    if liverseg_dicom::sop::is_derived(&record.sop_class_uid) {
        return Err(ApiError::bad_request(
            "only images render; this is a segmentation, report or mesh",
        ));
    }
    let overlay = !q
        .overlay
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("false"));
    let seg_key = if overlay {
        state
            .deps
            .store
            .seg_versions(series)
            .await?
            .last()
            .map(|v| v.blob_key.clone())
    } else {
        None
    };
    let blobs = state.deps.blobs.clone();
    let png = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let path = blobs
            .path(&record.blob_key)
            .map_err(|e| ApiError::internal("locating the image", e))?;
        let slice = liverseg_dicom::volume::load_series(&[path])
            .map_err(|e| ApiError::bad_request(format!("the image cannot be rendered: {e}")))?;
        let mask = match seg_key {
            Some(key) => {
                let bytes = blobs
                    .read(&key)
                    .map_err(|e| ApiError::internal("reading the segmentation", e))?;
                liver_on_slice(&bytes, &record)
            }
            None => None,
        };
        encode(
            &slice.hu,
            slice.dims[2],
            slice.dims[1],
            center,
            width,
            mask.as_deref(),
        )
    })
    .await
    .map_err(|e| ApiError::internal("rendering", e))??;
    Ok(super::multipart::response(
        "image/png".into(),
        Body::from(png),
    ))
}

/// The liver mask of the frames of a SEG that lie on this slice.
fn liver_on_slice(seg_bytes: &[u8], image: &InstanceRecord) -> Option<Vec<u8>> {
    let read = liverseg_dicom::repair::read_lenient(seg_bytes).ok()?;
    let seg = seg::parse(&read.dataset).ok()?;
    let liver = seg.liver_segment()?;
    let m = &image.meta;
    let slices = Slices {
        rows: m.rows? as usize,
        columns: m.columns? as usize,
        orientation: m.image_orientation?,
        pixel_spacing: m.pixel_spacing?,
        positions: vec![m.image_position?],
    };
    let normal = slices.normal();
    let z = liverseg_dicom::series::dot(m.image_position?, normal);
    // Only this slice's frames: the rest of the volume is not ours to check.
    let mut here = seg.clone();
    here.frames
        .retain(|f| (liverseg_dicom::series::dot(f.position, normal) - z).abs() < 0.01);
    seg::rasterize(&here, liver, &slices).ok()
}

/// Windowed greyscale with the liver tinted and outlined, as RGB PNG.
fn encode(
    hu: &[f32],
    width: usize,
    height: usize,
    center: f32,
    window: f32,
    mask: Option<&[u8]>,
) -> ApiResult<Vec<u8>> {
    let lo = center - window / 2.0;
    let mut rgb = Vec::with_capacity(width * height * 3);
    let inside = |x: usize, y: usize| mask.is_some_and(|m| m[y * width + x] == 1);
    for y in 0..height {
        for x in 0..width {
            let g = (((hu[y * width + x] - lo) / window).clamp(0.0, 1.0) * 255.0) as u8;
            if inside(x, y) {
                let edge = x == 0
                    || y == 0
                    || x + 1 == width
                    || y + 1 == height
                    || !inside(x - 1, y)
                    || !inside(x + 1, y)
                    || !inside(x, y - 1)
                    || !inside(x, y + 1);
                if edge {
                    rgb.extend_from_slice(&[255, 64, 32]);
                } else {
                    let blend = |a: u8, b: u8| ((a as u16 * 6 + b as u16 * 4) / 10) as u8;
                    rgb.extend_from_slice(&[blend(g, 255), blend(g, 96), blend(g, 64)]);
                }
            } else {
                rgb.extend_from_slice(&[g, g, g]);
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| ApiError::internal("encoding PNG", e))?;
        writer
            .write_image_data(&rgb)
            .map_err(|e| ApiError::internal("encoding PNG", e))?;
    }
    Ok(out)
}
