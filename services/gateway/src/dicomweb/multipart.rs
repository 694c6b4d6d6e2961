//! `multipart/related` response bodies, and the Accept header as DICOMweb
//! clients write it (several media ranges, quoted or bare `type`,
//! `transfer-syntax` repeated or `*`).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};

/// One media range of an Accept header.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    /// Lower-case `type/subtype`.
    pub media: String,
    /// The `type` parameter of `multipart/related`, lower-case, unquoted.
    pub part_type: Option<String>,
    pub transfer_syntaxes: Vec<String>,
}

impl MediaRange {
    /// Accepts a part of `media` in transfer syntax `ts`.
    pub fn allows(&self, media: &str, ts: &str) -> bool {
        let part = self.part_type.as_deref().unwrap_or(&self.media);
        let media_ok = part == media
            || part == "*/*"
            || (part.ends_with("/*") && media.starts_with(part.trim_end_matches('*')));
        let ts_ok = self.transfer_syntaxes.is_empty()
            || self.transfer_syntaxes.iter().any(|t| t == "*" || t == ts);
        media_ok && ts_ok
    }
}

/// The Accept header's ranges, in order; `*/*` when there is none.
pub fn accept(headers: &HeaderMap) -> Vec<MediaRange> {
    let raw: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let mut out = Vec::new();
    for range in raw.iter().flat_map(|r| split_outside_quotes(r, ',')) {
        let mut params = split_outside_quotes(&range, ';').into_iter();
        let media = params
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media.is_empty() {
            continue;
        }
        let mut r = MediaRange {
            media,
            part_type: None,
            transfer_syntaxes: Vec::new(),
        };
        for p in params {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "type" => r.part_type = Some(v.to_ascii_lowercase()),
                "transfer-syntax" => r.transfer_syntaxes.push(v),
                _ => {}
            }
        }
        out.push(r);
    }
    if out.is_empty() {
        out.push(MediaRange {
            media: "*/*".into(),
            part_type: None,
            transfer_syntaxes: Vec::new(),
        });
    }
    out
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let (mut parts, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == sep && !quoted {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

fn boundary() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("liverseg-{t:x}-{n:x}")
}

/// One part: its Content-Type and bytes.
pub struct Part {
    pub content_type: String,
    pub bytes: Bytes,
}

/// A `multipart/related` response whose root parts are `part_type`.
pub fn related(part_type: &str, parts: Vec<Part>) -> Response {
    let b = boundary();
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.bytes.len() + 128).sum());
    for p in &parts {
        body.extend_from_slice(
            format!(
                "--{b}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
                p.content_type,
                p.bytes.len()
            )
            .as_bytes(),
        );
        body.extend_from_slice(&p.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    response(
        format!("multipart/related; type=\"{part_type}\"; boundary={b}"),
        Body::from(body),
    )
}

/// A `multipart/related` response streamed part by part (whole series).
pub fn related_stream(
    part_type: &'static str,
    parts: impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> Response {
    use futures::StreamExt;
    let b = boundary();
    let (open, close) = (b.clone(), format!("--{b}--\r\n"));
    let body = parts
        .map(move |bytes| {
            bytes.map(|bytes| {
                let mut chunk = Vec::with_capacity(bytes.len() + 128);
                chunk.extend_from_slice(
                    format!(
                        "--{open}\r\nContent-Type: {part_type}\r\nContent-Length: {}\r\n\r\n",
                        bytes.len()
                    )
                    .as_bytes(),
                );
                chunk.extend_from_slice(&bytes);
                chunk.extend_from_slice(b"\r\n");
                Bytes::from(chunk)
            })
        })
        .chain(futures::stream::once(async move { Ok(Bytes::from(close)) }));
    response(
        format!("multipart/related; type=\"{part_type}\"; boundary={b}"),
        Body::from_stream(body),
    )
}

pub fn response(content_type: String, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Vec<MediaRange> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        accept(&h)
    }

    #[test]
    fn accept_headers_as_clients_write_them() {
        let r = parse(
            "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*, multipart/related; type=image/jls; transfer-syntax=1.2.840.10008.1.2.4.80",
        );
        assert_eq!(r.len(), 2);
        assert!(r[0].allows("application/octet-stream", "1.2.840.10008.1.2.1"));
        assert!(r[1].allows("image/jls", "1.2.840.10008.1.2.4.80"));
        assert!(!r[1].allows("image/jp2", "1.2.840.10008.1.2.4.90"));
        let r = parse(
            "multipart/related; type=application/octet-stream; transfer-syntax=*; transfer-syntax=*",
        );
        assert_eq!(r[0].part_type.as_deref(), Some("application/octet-stream"));
        assert!(parse("*/*")[0].allows("application/dicom", "1.2.840.10008.1.2.1"));
        assert!(accept(&HeaderMap::new())[0].allows("application/dicom", "x"));
    }
}
