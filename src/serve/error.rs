//! The API's errors: a status, a stable machine-readable code and a message for people, always
//! as JSON: `{"error": {"code": "not_found", "message": "...", "request_id": "..."}}`.
//!
//! What goes wrong inside the server (the store, the source, the LLM provider, a bug) reaches
//! the client as a stable code and a fixed message only; the details (paths, SQL, database and
//! provider messages) go to the log with the request's id, which the client sees in the body
//! and in `X-Request-Id` and can quote.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// A failure inside the server: `detail` is logged (with the request id), never sent.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error while serving a request");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to answer; the request id in this error identifies it in the server's log",
        )
    }
    /// A dependency is unavailable: the client sees `code` and `message`; `detail` is logged.
    pub fn unavailable(
        code: &'static str,
        message: impl Into<String>,
        detail: impl std::fmt::Display,
    ) -> ApiError {
        let message = message.into();
        tracing::error!(code, error = %detail, "{message}");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
    pub fn too_many(code: &'static str, message: impl Into<String>, after: u64) -> ApiError {
        ApiError {
            retry_after: Some(after.max(1)),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let Some(id) = super::current_request_id() {
            error["request_id"] = serde_json::Value::String(id.to_string());
        }
        let body = serde_json::json!({ "error": error });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(s) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"shopscribe\""),
            );
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::unavailable(
            "store_unavailable",
            "the store cannot be reached; try again shortly",
            crate::error::Chain(&e),
        )
    }
}
