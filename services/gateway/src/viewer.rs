//! The viewer at `/viewer` (the prebuilt OHIF, fetched once by
//! `deploy/fetch-viewer.sh`, never at run time) and the 3D liver page at
//! `/3d/{study}` (three.js from the same folder, at `/assets/three/`).
//!
//! OHIF is built to live at `/`; serving it under `/viewer` means
//! rewriting its absolute paths: `PUBLIC_URL` and the `="/` attributes of
//! index.html, webpack's public path in the top-level bundles, `url(/` in
//! its CSS and the icon paths of its manifest. `app-config.js` is made from
//! `assets/ohif-app-config.js` for this gateway's own DICOMweb root, plus
//! OHIF's `oidc` settings from `VIEWER_DIR/oidc.json` when that file exists
//! (with `auth.jwks` set, that is how OHIF gets the bearer token it sends
//! to DICOMweb). Paths
//! OHIF routes itself (`/viewer/viewer?StudyInstanceUIDs=...`) get
//! index.html; a missing static file is a 404.

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, Response};
use axum::routing::get;
use bytes::Bytes;
use std::collections::HashMap;
use std::path::{Component, PathBuf};
use std::sync::{Mutex, OnceLock};

const BASE: &str = "/viewer";
const APP_CONFIG: &str = include_str!("../assets/ohif-app-config.js");
const LIVER_3D: &str = include_str!("../assets/liver3d.html");

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/viewer", get(viewer_root))
        .route("/viewer/", get(viewer_root))
        .route("/viewer/{*path}", get(viewer))
        .route("/assets/three/{*path}", get(three))
        .route("/3d/{study}", get(liver_page))
        .route("/3d/{study}/", get(liver_page))
        .with_state(state)
}

/// A regular file, asked of the filesystem off the runtime.
async fn is_file(path: &std::path::Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file())
}

async fn viewer_dir(state: &AppState) -> ApiResult<PathBuf> {
    let dir = &state.config.gateway.viewer_dir;
    if dir.as_os_str().is_empty() || !is_file(&dir.join("ohif/index.html")).await {
        return Err(ApiError::not_found(
            "the viewer is not installed: run deploy/fetch-viewer.sh DIR and set gateway.viewer_dir",
        ));
    }
    Ok(dir.clone())
}

/// `rel` inside `root`, refusing `..` and absolute parts.
fn inside(root: PathBuf, rel: &str) -> Option<PathBuf> {
    let rel = std::path::Path::new(rel);
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| root.join(rel))
}

fn media_type(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "jpg" | "jpeg" => "image/jpeg",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        _ => "application/octet-stream",
    }
}

fn reply(content_type: &str, cache: &'static str, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Rewritten files, made once per process.
async fn rewritten(
    path: &std::path::Path,
    make: impl FnOnce(String) -> String,
) -> ApiResult<Bytes> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Bytes>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(path) {
        return Ok(hit.clone());
    }
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| ApiError::internal("reading the viewer", e))?;
    let bytes = Bytes::from(make(text));
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(path.to_path_buf(), bytes.clone());
    Ok(bytes)
}

async fn index(dir: &std::path::Path) -> ApiResult<Response> {
    let body = rewritten(&dir.join("ohif/index.html"), |html| {
        html.replace(
            "window.PUBLIC_URL = '/';",
            &format!("window.PUBLIC_URL = '{BASE}/';"),
        )
        .replace("=\"/", &format!("=\"{BASE}/"))
    })
    .await?;
    Ok(reply("text/html; charset=utf-8", "no-cache", body))
}

async fn viewer_root(State(state): State<AppState>) -> ApiResult<Response> {
    index(&viewer_dir(&state).await?).await
}

async fn viewer(
    State(state): State<AppState>,
    Path(rel): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let dir = viewer_dir(&state).await?;
    if rel.is_empty() || rel == "index.html" {
        return index(&dir).await;
    }
    if rel == "app-config.js" {
        let root = crate::dicomweb::root_url(&state, &headers);
        let mut config = APP_CONFIG
            .replace("__DICOMWEB_ROOT__", &root)
            .replace("__ROUTER_BASENAME__", BASE);
        config.push_str(&oidc_config(&dir).await?);
        return Ok(reply(
            "text/javascript; charset=utf-8",
            "no-cache",
            Bytes::from(config),
        ));
    }
    let ohif = dir.join("ohif");
    let file = match inside(ohif.clone(), &rel) {
        Some(p) if is_file(&p).await => Some(p),
        _ => None,
    };
    let Some(file) = file else {
        let is_static = std::path::Path::new(&rel).extension().is_some_and(|e| {
            matches!(
                e.to_str().unwrap_or(""),
                "js" | "mjs"
                    | "css"
                    | "map"
                    | "wasm"
                    | "json"
                    | "png"
                    | "ico"
                    | "svg"
                    | "jpg"
                    | "woff"
                    | "woff2"
                    | "ttf"
                    | "txt"
                    | "xml"
                    | "html"
            )
        });
        if is_static {
            return Err(ApiError::not_found(format!("no viewer file {rel}")));
        }
        // OHIF's own routes (/viewer/viewer?..., /viewer/segmentation?...).
        return index(&dir).await;
    };
    let top = file.parent() == Some(ohif.as_path());
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    // Hashed bundle names never change content.
    let cache = if name
        .split('.')
        .any(|p| p.len() >= 16 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let body = match (top, ext) {
        (true, "js") => {
            rewritten(&file, |js| {
                js.replace(
                    "__webpack_require__.p = \"/\";",
                    &format!("__webpack_require__.p = \"{BASE}/\";"),
                )
                .replace(
                    "'/dicom-microscopy-viewer/",
                    &format!("'{BASE}/dicom-microscopy-viewer/"),
                )
            })
            .await?
        }
        (true, "css") => {
            rewritten(&file, |css| css.replace("url(/", &format!("url({BASE}/"))).await?
        }
        (true, "json") if name == "manifest.json" => {
            rewritten(&file, |m| {
                m.replace("\"/assets/", &format!("\"{BASE}/assets/"))
            })
            .await?
        }
        _ => Bytes::from(
            tokio::fs::read(&file)
                .await
                .map_err(|e| ApiError::internal("reading the viewer", e))?,
        ),
    };
    Ok(reply(media_type(&file), cache, body))
}

/// `window.config.oidc = ...;` from `dir/oidc.json` (OHIF's `oidc` array:
/// authority, client_id, redirect_uri, scope ...), or nothing without the
/// file. A file that is not a JSON array or object is an error, not a
/// viewer silently without sign-in.
async fn oidc_config(dir: &std::path::Path) -> ApiResult<String> {
    let path = dir.join("oidc.json");
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(ApiError::internal("reading the viewer's oidc.json", e)),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ApiError::internal("reading the viewer's oidc.json", e))?;
    let value = match value {
        serde_json::Value::Array(_) => value,
        serde_json::Value::Object(_) => serde_json::Value::Array(vec![value]),
        _ => {
            return Err(ApiError::internal(
                "reading the viewer's oidc.json",
                "not a JSON array or object",
            ));
        }
    };
    // JSON is a JavaScript expression; `</` cannot end a script here, but
    // keep the output inert anyway.
    let js = value.to_string().replace("</", "<\\/");
    Ok(format!(
        "\n// From the viewer folder's oidc.json: OHIF signs in and sends the bearer token to DICOMweb.\nwindow.config.oidc = {js};\n"
    ))
}

async fn three(State(state): State<AppState>, Path(rel): Path<String>) -> ApiResult<Response> {
    let dir = state.config.gateway.viewer_dir.join("three");
    let file = match inside(dir, &rel) {
        Some(p) if is_file(&p).await => p,
        _ => return Err(ApiError::not_found(format!("no file {rel}"))),
    };
    let body = tokio::fs::read(&file)
        .await
        .map_err(|e| ApiError::internal("reading three.js", e))?;
    Ok(reply(
        media_type(&file),
        "public, max-age=86400",
        Bytes::from(body),
    ))
}

async fn liver_page(Path(_study): Path<String>) -> Html<&'static str> {
    // The page reads the study from its own URL.
    Html(LIVER_3D)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oidc_settings_from_the_viewer_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(oidc_config(dir.path()).await.unwrap(), "");
        std::fs::write(
            dir.path().join("oidc.json"),
            r#"{"authority": "https://idp.example/realms/r", "client_id": "ohif", "scope": "openid"}"#,
        )
        .unwrap();
        let js = oidc_config(dir.path()).await.unwrap();
        assert!(js.contains("window.config.oidc = [{"), "{js}");
        assert!(js.contains(r#""client_id":"ohif""#), "{js}");
        std::fs::write(dir.path().join("oidc.json"), "42").unwrap();
        assert!(oidc_config(dir.path()).await.is_err());
    }
}
