//! The HitSave cloud client, used by both SDKs and the CLI through the
//! [`crate::cache::Cache`], which puts it in front of the local store (the
//! store knows nothing of the cloud; this module uses the store).
//!
//! - [`CloudClient`]: the `/v1` protocol (`server/openapi.json`) over
//!   reqwest with rustls: batch lookups, blob uploads after a batch
//!   existence check, downloads that resume with range requests and are
//!   verified against their digest, paged listings, key management.
//! - [`CloudSync`]: what a cache in `cloud` mode does with it. A local miss
//!   reads through (lookup, download, verify, store locally); a fresh result
//!   is queued in the store's persistent outbox and uploaded by a background
//!   thread, so a call never waits on the network. An unreachable server is
//!   one warning, then local-only until a retry (with backoff) finds it again.
//!
//! With the project's signing secret (`HITSAVE_SIGNING_KEY`, a keyed BLAKE3
//! MAC over what the record says: key, function, arguments, codec, digest,
//! size) every record is signed on upload, and a client that has the secret
//! loads from the cloud only records whose signature verifies. Without the
//! secret, portable results are loaded after the key and digest checks (so
//! an unsigned team cache trusts every holder of a read-write key to file
//! honest results: docs/cloud.md, "Trust") and language-only results
//! (`pickle`, `v8`, which run code when loaded) never are.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hitsave_core::Digest;
use serde_json::json;

use crate::config::{Config, Mode};
use crate::error::{HitSaveError, Result};
use crate::store::{Hit, NewEval, ResultData, Store};

mod client;
mod sync;
mod trust;

pub use client::CloudClient;
pub use sync::{CloudSync, upload_record};
use trust::{SIGNING_CONTEXT, key_matches, mac_message};

/// Backoff after the server could not be reached: doubles up to the maximum.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_secs(2);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Evals per upload request, keys per lookup and records per page: half the
/// protocol's limit ([`hitsave_protocol::MAX_BATCH`]), so requests stay small.
pub(super) const BATCH: usize = hitsave_protocol::MAX_BATCH / 2;
/// The results' bytes after which an upload group ends (and its records are
/// marked done), so a slow server shows progress every group.
pub(super) const GROUP_BYTES: usize = 32 << 20;

/// The longest JSON answer the client reads (a page of 1000 records with
/// their graphs fits many times over).
pub const MAX_JSON_RESPONSE: u64 = 64 << 20;

/// An eval record as the server holds it (the protocol's [`hitsave_protocol::Eval`]).
pub type RemoteEval = hitsave_protocol::Eval;

/// Whether a codec is read by every language (only the digest check is needed).
pub fn is_portable(codec: &str) -> bool {
    codec == crate::portable::CODEC
}

pub(super) fn unavailable(message: impl Into<String>) -> HitSaveError {
    HitSaveError::CloudUnavailable(message.into())
}
