//! A STOW-RS client (PS3.18 10.5): one `POST {root}/studies` carrying every
//! object as a part of `multipart/related; type="application/dicom"`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StowError {
    #[error("{url:?} is not a usable STOW-RS root: {reason}")]
    Url { url: String, reason: String },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {authority}: {source}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP exchange with {authority}: {source}")]
    Http {
        authority: String,
        #[source]
        source: hyper::Error,
    },
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("{authority} did not answer within {0:?}", .timeout)]
    Timeout {
        authority: String,
        timeout: Duration,
    },
    #[error("{authority} answered {status}: {body}")]
    Status {
        authority: String,
        status: u16,
        body: String,
    },
}

/// Stores the Part 10 files at `root` (e.g. `http://pacs:8042/dicom-web`).
/// Only a 200 counts: 202 means some instances were refused.
pub async fn store(root: &str, files: &[PathBuf], timeout: Duration) -> Result<(), StowError> {
    let url = url::Url::parse(root).map_err(|e| StowError::Url {
        url: root.to_string(),
        reason: e.to_string(),
    })?;
    if url.scheme() != "http" {
        return Err(StowError::Url {
            url: root.to_string(),
            reason: "only http:// is supported for STOW-RS delivery".into(),
        });
    }
    let host = url.host_str().ok_or_else(|| StowError::Url {
        url: root.to_string(),
        reason: "no host".into(),
    })?;
    let authority = format!("{host}:{}", url.port_or_known_default().unwrap_or(80));
    let path = format!("{}/studies", url.path().trim_end_matches('/'));

    let boundary = format!("liverseg-{}", uuid::Uuid::now_v7().simple());
    let mut body = Vec::new();
    for path in files {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| StowError::Read {
                path: path.clone(),
                source,
            })?;
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());

    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, &authority)
        .header(
            hyper::header::CONTENT_TYPE,
            format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        )
        .header(hyper::header::ACCEPT, "application/dicom+json")
        .body(Full::new(Bytes::from(body)))?;

    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|source| StowError::Connect {
                authority: authority.clone(),
                source,
            })?;
        let http = |source| StowError::Http {
            authority: authority.clone(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(http)?;
        driver.abort();
        Ok::<_, StowError>((status, body.to_bytes()))
    };
    let (status, body) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| StowError::Timeout {
            authority: authority.clone(),
            timeout,
        })??;
    if status != 200 {
        return Err(StowError::Status {
            authority,
            status,
            body: String::from_utf8_lossy(&body).chars().take(300).collect(),
        });
    }
    Ok(())
}
