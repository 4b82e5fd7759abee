//! One error enum for everything the host does, with stable codes.
//!
//! The codes are part of HitSave's contract: Python's `HitSaveError.code`
//! and JavaScript's `err.code` carry the same strings, and
//! `docs/errors.md` lists them (a test keeps the three in step).

use std::path::PathBuf;

use hitsave_core::{CoreError, ErrorCode};

/// Everything that can go wrong in the host.
#[derive(Debug, thiserror::Error)]
pub enum HitSaveError {
    /// A domain error reported by the core (bad value, bad graph, ...).
    #[error("{0}")]
    Core(CoreError),
    /// The core component trapped: a bug in HitSave, never the user's input.
    #[error("the HitSave core trapped (this is a bug in HitSave; please report it): {0}")]
    CoreTrap(String),
    /// The embedded component could not be compiled or instantiated.
    #[error("cannot load the HitSave core component: {0}")]
    ComponentLoad(String),
    /// A file could not be read while hashing it.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The configuration (environment or `hitsave.toml`) is invalid.
    #[error("invalid configuration: {0}")]
    ConfigInvalid(String),
    /// The local store's files could not be read or written (permissions, disk full).
    #[error("local store {path}: {source}")]
    StoreIo {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The local store's index database failed.
    #[error("local store index: {0}")]
    StoreDatabase(String),
    /// The store was written by a newer HitSave.
    #[error(
        "the local store at {path} has schema version {found}; this HitSave reads up to {supported}: upgrade HitSave or set HITSAVE_CACHE_DIR to another directory"
    )]
    StoreTooNew {
        /// The store directory.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build reads.
        supported: i64,
    },
    /// The asked-for entry or function is not in the store.
    #[error("not found: {0}")]
    NotFound(String),
    /// A function's code could not be found or parsed to fingerprint it.
    #[error("cannot fingerprint the function's code: {0}; give it an explicit name and version instead")]
    CodeUnavailable(String),
    /// A stored result was written with a codec only another language reads.
    #[error("{0}")]
    ForeignCodec(String),
    /// The HitSave cloud is needed but not configured or not reachable.
    #[error("the HitSave cloud is not available: {0}")]
    CloudUnavailable(String),
    /// The cloud server refused a request (a bad key, a missing scope, a limit).
    #[error("the HitSave cloud refused the request ({status} {code}): {message}")]
    CloudRejected {
        /// HTTP status.
        status: u16,
        /// The server's stable code (docs/cloud.md).
        code: String,
        /// The server's message.
        message: String,
    },
    /// Bytes from the cloud did not match their digest.
    #[error("{0}")]
    CloudIntegrity(String),
    /// A language-only result from the cloud is not signed by a trusted key.
    #[error("{0}")]
    CloudUntrusted(String),
}

/// Stable codes of the host's own errors (the core's are [`ErrorCode::ALL`]).
pub const HOST_CODES: [&str; 14] = [
    "core_trap",
    "component_load",
    "io",
    "config_invalid",
    "store_io",
    "store_database",
    "store_too_new",
    "not_found",
    "code_unavailable",
    "foreign_codec",
    "cloud_unavailable",
    "cloud_rejected",
    "cloud_integrity",
    "cloud_untrusted",
];

impl HitSaveError {
    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Core(error) => error.code.as_str(),
            Self::CoreTrap(_) => "core_trap",
            Self::ComponentLoad(_) => "component_load",
            Self::Io { .. } => "io",
            Self::ConfigInvalid(_) => "config_invalid",
            Self::StoreIo { .. } => "store_io",
            Self::StoreDatabase(_) => "store_database",
            Self::StoreTooNew { .. } => "store_too_new",
            Self::NotFound(_) => "not_found",
            Self::CodeUnavailable(_) => "code_unavailable",
            Self::ForeignCodec(_) => "foreign_codec",
            Self::CloudUnavailable(_) => "cloud_unavailable",
            Self::CloudRejected { .. } => "cloud_rejected",
            Self::CloudIntegrity(_) => "cloud_integrity",
            Self::CloudUntrusted(_) => "cloud_untrusted",
        }
    }

    /// Where in the value the error arose (`[1]["x"]`), for core errors about one place.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Core(error) => error.path.as_deref(),
            _ => None,
        }
    }

    /// Every stable code, core codes first.
    pub fn all_codes() -> Vec<&'static str> {
        ErrorCode::ALL.iter().map(|code| code.as_str()).chain(HOST_CODES).collect()
    }
}

impl From<rusqlite::Error> for HitSaveError {
    fn from(error: rusqlite::Error) -> Self {
        Self::StoreDatabase(error.to_string())
    }
}

impl From<CoreError> for HitSaveError {
    fn from(error: CoreError) -> Self {
        Self::Core(error)
    }
}

/// Result with [`HitSaveError`].
pub type Result<T, E = HitSaveError> = std::result::Result<T, E>;
