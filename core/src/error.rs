//! The core's domain errors. Stable codes; see `wit/core.wit` (`error-code`).

use std::fmt;

/// Stable error codes of the core. The host adds its own (I/O, traps) around these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Truncated stream, unknown token or trailing bytes.
    MalformedStream,
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// Map keys or record fields equal after canonicalisation.
    DuplicateKey,
    /// A value that cannot be hashed faithfully.
    UnhashableValue,
    /// Unknown dtype or a byte length that does not match the shape.
    InvalidArray,
    /// Wrong digest length, kind or version.
    InvalidDigest,
    /// Dangling edge or repeated node name.
    InvalidGraph,
    /// An empty or disallowed name or version.
    InvalidIdentity,
    /// Nesting deeper than the limit.
    TooDeep,
}

impl ErrorCode {
    /// Every code, in WIT order.
    pub const ALL: [ErrorCode; 9] = [
        Self::MalformedStream,
        Self::InvalidUtf8,
        Self::DuplicateKey,
        Self::UnhashableValue,
        Self::InvalidArray,
        Self::InvalidDigest,
        Self::InvalidGraph,
        Self::InvalidIdentity,
        Self::TooDeep,
    ];

    /// The stable snake_case code shared by Rust, Python and Node.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MalformedStream => "malformed_stream",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::DuplicateKey => "duplicate_key",
            Self::UnhashableValue => "unhashable_value",
            Self::InvalidArray => "invalid_array",
            Self::InvalidDigest => "invalid_digest",
            Self::InvalidGraph => "invalid_graph",
            Self::InvalidIdentity => "invalid_identity",
            Self::TooDeep => "too_deep",
        }
    }
}

/// A domain error: a stable code, a message, and where in the value it arose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Place in the value (`[1]["x"][3]`), when the error is about one place.
    pub path: Option<String>,
}

impl CoreError {
    /// An error that is not about one place in a value.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), path: None }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(
                f,
                "{} at {}: {}",
                self.code.as_str(),
                if path.is_empty() { "the root" } else { path },
                self.message
            ),
            None => write!(f, "{}: {}", self.code.as_str(), self.message),
        }
    }
}

impl std::error::Error for CoreError {}
