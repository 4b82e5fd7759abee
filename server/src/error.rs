//! Every error the server returns: an HTTP status and a JSON body
//! `{"error": {"code", "message"}}` with a stable code (docs/cloud.md).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An API error.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

/// Every stable code, with its status (the order of docs/cloud.md).
pub const CODES: [(&str, u16); 15] = [
    ("bad_request", 400),
    ("digest_mismatch", 400),
    ("unauthorized", 401),
    ("forbidden", 403),
    ("not_found", 404),
    ("request_timeout", 408),
    ("conflict", 409),
    ("blob_missing", 409),
    ("payload_too_large", 413),
    ("uri_too_long", 414),
    ("range_not_satisfiable", 416),
    ("headers_too_large", 431),
    ("internal", 500),
    ("storage_unavailable", 503),
    ("quota_exceeded", 507),
];

impl ApiError {
    /// An error with a status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(error: rusqlite::Error) -> Self {
        // The storage, not the request: a busy or locked database, a full
        // disk (SQLITE_FULL; a file-size limit arrives as an I/O error), an
        // I/O error, a read-only file system. The client retries later.
        if let rusqlite::Error::SqliteFailure(code, _) = &error
            && matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
            )
        {
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", format!("metadata: {error}"));
        }
        if let rusqlite::Error::SqliteFailure(code, _) = &error
            && code.code == rusqlite::ErrorCode::ConstraintViolation
        {
            // Not the SQL constraint's text: the schema is the server's own business.
            return Self::new(StatusCode::CONFLICT, "conflict", "the request conflicts with what the server holds");
        }
        Self::internal(format!("metadata: {error}"))
    }
}

impl From<std::io::Error> for ApiError {
    fn from(error: std::io::Error) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", format!("blob storage: {error}"))
    }
}

/// An error answer's stable code, kept on the response for its log line.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = hitsave_protocol::ErrorBody {
            error: hitsave_protocol::ErrorDetail { code: self.code.to_owned(), message: self.message },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}
