//! One error type for every HTTP handler: a status and a JSON body
//! `{"error": "..."}` (plus details), so clients always get a reason.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Our own failure: logged, answered without internals.
    pub fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "{what} failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{what} failed"))
    }
}

impl From<liverseg_store::StoreError> for ApiError {
    fn from(e: liverseg_store::StoreError) -> Self {
        tracing::warn!(error = %e, "metadata store failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metadata store unavailable",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let (Some(details), Some(obj)) = (self.details, body.as_object_mut()) {
            obj.insert("details".into(), details);
        }
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
