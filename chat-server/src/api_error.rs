//! The HTTP side's errors: every one is a status and a JSON object
//! `{"error": CODE, "message": TEXT}`, including the rejections of axum's
//! extractors (a path that does not decode, a bad query, a body too
//! large), which would otherwise answer in plain text.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use stomp_broker::store::StoreError;

use crate::quota::CreateError;

/// An error answer: a status and `{"error": CODE, "message": TEXT}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    /// The code, when not the status' own.
    code: Option<&'static str>,
    message: String,
    /// `Retry-After`, in seconds.
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, code: None, message: message.into(), retry_after: None }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// With `code` rather than the status' own.
    pub(crate) fn with_code(self, code: &'static str) -> Self {
        Self { code: Some(code), ..self }
    }

    /// With `Retry-After: secs`.
    pub(crate) fn with_retry_after(self, secs: u64) -> Self {
        Self { retry_after: Some(secs), ..self }
    }

    fn code(&self) -> &'static str {
        if let Some(code) = self.code {
            return code;
        }
        match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({ "error": self.code(), "message": self.message }));
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NameTaken(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
            StoreError::Invalid(_) => Self::bad_request(e.to_string()),
            other => {
                tracing::warn!(error = %other, "storage failed a request");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, format!("storage unavailable: {other}"))
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        Self::new(e.status(), e.body_text())
    }
}

/// A path segment that does not decode (`/api/rooms/%FF`).
impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::new(e.status(), e.body_text())
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Full(max) => Self::new(
                StatusCode::FORBIDDEN,
                format!("the server has its maximum of {max} rooms: no more can be made"),
            )
            .with_code("room_limit"),
            CreateError::Store(e) => e.into(),
        }
    }
}

pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;
