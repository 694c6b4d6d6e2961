//! WADO-RS: whole instances (Part 10), metadata (DICOM JSON), frames and
//! bulk data. Compressed pixel data is sent as stored when the client
//! accepts its transfer syntax (OHIF asks for `transfer-syntax=*`) and
//! decoded to native little endian otherwise.

use super::metadata::{self, ROOT, is_encapsulated};
use super::multipart::{self, Part, accept};
use super::root_url;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use liverseg_core::InstanceRecord;

const NATIVE_EXPLICIT: &str = "1.2.840.10008.1.2.1";

pub(crate) async fn study_records(state: &AppState, study: &str) -> ApiResult<Vec<InstanceRecord>> {
    let mut all = Vec::new();
    for s in state.deps.store.series_summaries(Some(study)).await? {
        all.extend(
            state
                .deps
                .store
                .series_instances(&s.series.series_uid)
                .await?,
        );
    }
    if all.is_empty() {
        return Err(ApiError::not_found(format!("no study {study}")));
    }
    Ok(all)
}

async fn series_records(
    state: &AppState,
    study: &str,
    series: &str,
) -> ApiResult<Vec<InstanceRecord>> {
    let all: Vec<InstanceRecord> = state
        .deps
        .store
        .series_instances(series)
        .await?
        .into_iter()
        .filter(|i| i.study_uid == study)
        .collect();
    if all.is_empty() {
        return Err(ApiError::not_found(format!(
            "no series {series} in study {study}"
        )));
    }
    Ok(all)
}

pub async fn instance_record(
    state: &AppState,
    study: &str,
    series: &str,
    instance: &str,
) -> ApiResult<InstanceRecord> {
    match state.deps.store.get_instance(instance).await? {
        Some(r) if r.study_uid == study && r.series_uid == series => Ok(r),
        _ => Err(ApiError::not_found(format!(
            "no instance {instance} in series {series} of study {study}"
        ))),
    }
}

/// Whole instances: `multipart/related; type="application/dicom"`, or the
/// bare file when exactly one was asked for as `application/dicom`.
async fn retrieve(
    headers: &HeaderMap,
    state: &AppState,
    records: Vec<InstanceRecord>,
) -> ApiResult<Response> {
    let ranges = accept(headers);
    let multipart_ok = ranges.iter().any(|r| {
        (r.media == "multipart/related" || r.media == "*/*" || r.media == "multipart/*")
            && r.part_type
                .as_deref()
                .is_none_or(|t| t == "application/dicom" || t == "*/*")
    });
    let single_ok = ranges.iter().any(|r| r.media == "application/dicom");
    if records.len() == 1 && single_ok && !multipart_ok {
        let path = state
            .deps
            .blobs
            .path(&records[0].blob_key)
            .map_err(|e| ApiError::internal("locating the instance", e))?;
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| ApiError::internal("reading the instance", e))?;
        return Ok(multipart::response(
            "application/dicom".into(),
            Body::from(bytes),
        ));
    }
    if !multipart_ok {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "instances are served as multipart/related; type=\"application/dicom\"",
        ));
    }
    let paths: Vec<std::path::PathBuf> = records
        .iter()
        .map(|r| state.deps.blobs.path(&r.blob_key))
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::internal("locating instances", e))?;
    let stream = futures::stream::iter(paths)
        .then(|p| async move { tokio::fs::read(p).await.map(Bytes::from) });
    Ok(multipart::related_stream("application/dicom", stream))
}

use futures::StreamExt;

pub async fn study(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let records = study_records(&state, &study).await?;
    retrieve(&headers, &state, records).await
}

pub async fn series(
    State(state): State<AppState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let records = series_records(&state, &study, &series).await?;
    retrieve(&headers, &state, records).await
}

pub async fn instance(
    State(state): State<AppState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let record = instance_record(&state, &study, &series, &instance).await?;
    retrieve(&headers, &state, vec![record]).await
}

fn metadata_response(state: &AppState, headers: &HeaderMap, json: &str) -> Response {
    let body = json.replace(ROOT, &root_url(state, headers));
    multipart::response("application/dicom+json".into(), Body::from(body))
}

pub async fn study_metadata(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let records = study_records(&state, &study).await?;
    let json = metadata::json_of(
        &state.metadata,
        &state.deps.blobs,
        &format!("study:{study}"),
        records,
    )
    .await?;
    Ok(metadata_response(&state, &headers, &json))
}

pub async fn series_metadata(
    State(state): State<AppState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let records = series_records(&state, &study, &series).await?;
    let json = metadata::json_of(&state.metadata, &state.deps.blobs, &series, records).await?;
    Ok(metadata_response(&state, &headers, &json))
}

pub async fn instance_metadata(
    State(state): State<AppState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let record = instance_record(&state, &study, &series, &instance).await?;
    let json = metadata::json_of(
        &state.metadata,
        &state.deps.blobs,
        &format!("instance:{instance}"),
        vec![record],
    )
    .await?;
    Ok(metadata_response(&state, &headers, &json))
}

/// Media type of compressed frames in a transfer syntax (PS3.18 8.7.3.5.1).
fn frame_media(ts: &str) -> &'static str {
    match ts {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "image/jphc"
        }
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        _ => "application/octet-stream",
    }
}

fn open(state: &AppState, record: &InstanceRecord) -> ApiResult<DefaultDicomObject> {
    let path = state
        .deps
        .blobs
        .path(&record.blob_key)
        .map_err(|e| ApiError::internal("locating the instance", e))?;
    OpenFileOptions::new()
        .open_file(&path)
        .map_err(|e| ApiError::internal("reading the instance", e))
}

fn parse_frame_list(list: &str) -> ApiResult<Vec<usize>> {
    list.split(',')
        .map(|f| match f.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "frame number {f:?} is not a positive integer"
            ))),
        })
        .collect()
}

/// Frame `n` (1-based) of a native pixel data value.
fn native_frame(obj: &DefaultDicomObject, data: &[u8], n: usize) -> ApiResult<Vec<u8>> {
    let int = |tag: Tag| -> usize {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_int::<u32>().ok())
            .unwrap_or(0) as usize
    };
    let (rows, cols) = (int(tags::ROWS), int(tags::COLUMNS));
    let samples = int(tags::SAMPLES_PER_PIXEL).max(1);
    let bits = int(tags::BITS_ALLOCATED).max(1);
    let pixels = rows * cols * samples;
    if bits == 1 {
        // Bit-packed across frame boundaries: repack the frame's bits.
        let start = (n - 1) * pixels;
        if (start + pixels).div_ceil(8) > data.len() {
            return Err(ApiError::not_found(format!("no frame {n}")));
        }
        let mut out = vec![0u8; pixels.div_ceil(8)];
        for i in 0..pixels {
            let bit = start + i;
            if (data[bit / 8] >> (bit % 8)) & 1 == 1 {
                out[i / 8] |= 1 << (i % 8);
            }
        }
        return Ok(out);
    }
    let size = pixels * bits / 8;
    data.get((n - 1) * size..n * size)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| ApiError::not_found(format!("no frame {n}")))
}

/// The fragments of frame `n` (1-based) of encapsulated pixel data.
fn encapsulated_frame(obj: &DefaultDicomObject, n: usize, frames: usize) -> ApiResult<Vec<u8>> {
    let pixel = obj
        .element(tags::PIXEL_DATA)
        .map_err(|_| ApiError::not_found("the instance has no pixel data"))?;
    let fragments = pixel
        .fragments()
        .ok_or_else(|| ApiError::internal("reading frames", "pixel data is not encapsulated"))?;
    if n > frames.max(1) {
        return Err(ApiError::not_found(format!("no frame {n}")));
    }
    if frames <= 1 {
        return Ok(fragments.iter().flatten().copied().collect());
    }
    if fragments.len() == frames {
        return Ok(fragments[n - 1].clone());
    }
    // Several fragments per frame: the basic offset table groups them.
    let table = pixel.offset_table().unwrap_or_default();
    if table.len() != frames {
        return Err(ApiError::internal(
            "reading frames",
            "fragments cannot be assigned to frames without an offset table",
        ));
    }
    let (start, end) = (
        table[n - 1] as usize,
        table.get(n).map(|&o| o as usize).unwrap_or(usize::MAX),
    );
    let mut pos = 0usize;
    let mut out = Vec::new();
    for f in fragments {
        if pos >= start && pos < end {
            out.extend_from_slice(f);
        }
        pos += f.len() + 8; // item header
    }
    Ok(out)
}

fn decoded_frame(obj: &DefaultDicomObject, n: usize) -> ApiResult<Vec<u8>> {
    use liverseg_dicom::dicom_pixeldata::PixelDecoder;
    let decoded = obj
        .decode_pixel_data_frame((n - 1) as u32)
        .map_err(|e| ApiError::internal("decoding the frame", e))?;
    Ok(decoded.data().to_vec())
}

pub async fn frames(
    State(state): State<AppState>,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let wanted = parse_frame_list(&list)?;
    let record = instance_record(&state, &study, &series, &instance).await?;
    let ranges = accept(&headers);
    let ts = record.transfer_syntax_uid.clone();
    let compressed = is_encapsulated(&ts);
    let media = frame_media(&ts);
    // As stored when acceptable; else native little endian.
    let as_stored = !compressed || ranges.iter().any(|r| r.allows(media, &ts));
    let native_ok = ranges
        .iter()
        .any(|r| r.allows("application/octet-stream", NATIVE_EXPLICIT));
    if !as_stored && !native_ok {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("frames are available as {media} ({ts}) or application/octet-stream"),
        ));
    }
    let state2 = state.clone();
    let parts = tokio::task::spawn_blocking(move || -> ApiResult<Vec<Part>> {
        let obj = open(&state2, &record)?;
        let frames = obj
            .element(tags::NUMBER_OF_FRAMES)
            .ok()
            .and_then(|e| e.to_int::<u32>().ok())
            .unwrap_or(1) as usize;
        let native_data = if compressed {
            None
        } else {
            Some(
                obj.element(tags::PIXEL_DATA)
                    .map_err(|_| ApiError::not_found("the instance has no pixel data"))?
                    .to_bytes()
                    .map_err(|e| ApiError::internal("reading pixel data", e))?
                    .into_owned(),
            )
        };
        wanted
            .iter()
            .map(|&n| {
                if n > frames {
                    return Err(ApiError::not_found(format!(
                        "frame {n} requested; the instance has {frames}"
                    )));
                }
                Ok(match &native_data {
                    Some(data) => Part {
                        content_type: format!("application/octet-stream; transfer-syntax={ts}"),
                        bytes: Bytes::from(native_frame(&obj, data, n)?),
                    },
                    None if as_stored => Part {
                        content_type: format!("{media}; transfer-syntax={ts}"),
                        bytes: Bytes::from(encapsulated_frame(&obj, n, frames)?),
                    },
                    None => Part {
                        content_type: format!(
                            "application/octet-stream; transfer-syntax={NATIVE_EXPLICIT}"
                        ),
                        bytes: Bytes::from(decoded_frame(&obj, n)?),
                    },
                })
            })
            .collect()
    })
    .await
    .map_err(|e| ApiError::internal("reading frames", e))??;
    let part_type = if compressed && as_stored {
        media
    } else {
        "application/octet-stream"
    };
    Ok(multipart::related(part_type, parts))
}

/// Bulk data of a top-level attribute (`7FE00010` gives all pixel data).
pub async fn bulk(
    State(state): State<AppState>,
    Path((study, series, instance, tag)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let key = u32::from_str_radix(&tag, 16)
        .ok()
        .filter(|_| tag.len() == 8)
        .ok_or_else(|| ApiError::bad_request(format!("{tag:?} is not an 8-digit hex tag")))?;
    let tag = Tag((key >> 16) as u16, key as u16);
    let record = instance_record(&state, &study, &series, &instance).await?;
    let bytes = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let obj = open(&state, &record)?;
        let e = obj
            .element(tag)
            .map_err(|_| ApiError::not_found(format!("the instance has no {tag}")))?;
        if let Some(fragments) = e.fragments() {
            return Ok(fragments.iter().flatten().copied().collect());
        }
        e.to_bytes()
            .map(|b| b.into_owned())
            .map_err(|e| ApiError::internal("reading bulk data", e))
    })
    .await
    .map_err(|e| ApiError::internal("reading bulk data", e))??;
    Ok(multipart::related(
        "application/octet-stream",
        vec![Part {
            content_type: "application/octet-stream".into(),
            bytes: Bytes::from(bytes),
        }],
    ))
}
