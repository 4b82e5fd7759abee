//! `hitsave-protocol`: the `/v1` wire types of the HitSave cloud.
//!
//! The cloud client (`hitsave_host::cloud`) and the server
//! (`hitsave-server`) both speak in these types, so a field cannot exist on
//! one side only; `server/tests/api.rs` checks them against
//! `server/openapi.json`, the protocol's written contract (`docs/cloud.md`).

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// How many keys, digests or evals one request may carry, and the longest
/// page of a listing (a server's default limit; `maxItems` in openapi.json).
pub const MAX_BATCH: usize = 1000;

/// An eval record: a key mapped to a content-addressed result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eval {
    /// The eval key, `key2_…`.
    pub key: String,
    /// The function's identity: a `code2` fingerprint or `name@version`.
    pub function_id: String,
    /// The function's name (`hitsave ls`).
    pub function_name: String,
    /// Language that wrote it (`python`, `node`).
    pub language: String,
    /// `val2_…` digest of the arguments.
    pub arguments: String,
    /// Result codec (`portable`, `pickle`, `v8`).
    pub codec: String,
    /// `blob1_…` digest of the result bytes.
    pub blob: String,
    /// Result size in bytes.
    pub size: u64,
    /// How long the function ran, in microseconds.
    pub compute_micros: u64,
    /// HMAC of the record by a key the uploading client holds (hex), for
    /// language-only codecs; the server keeps it as given.
    #[serde(default)]
    pub signature: Option<String>,
    /// The dependency graph (JSON), for `why`.
    #[serde(default)]
    pub graph: Option<String>,
    /// Seconds since the epoch when the server first stored it (ignored on upload).
    #[serde(default)]
    pub created: u64,
}

/// `POST /v1/evals/lookup`: the keys asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    /// `key2_…` keys, at most [`MAX_BATCH`].
    pub keys: Vec<String>,
}

/// `POST /v1/evals` (the records to store) and the lookup's answer (the
/// records found).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evals {
    /// At most [`MAX_BATCH`] records.
    pub evals: Vec<Eval>,
}

/// `GET /v1/functions/{name}/evals`: one page of a function's records, by key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The records, ordered by key.
    pub evals: Vec<Eval>,
    /// The cursor of the next page (`?after=`), or none after the last.
    pub next: Option<String>,
}

/// The query of a listing: `?after=KEY&limit=N`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageQuery {
    /// Records after this key.
    pub after: Option<String>,
    /// At most this many (1 to [`MAX_BATCH`]).
    pub limit: Option<usize>,
}

/// `POST /v1/blobs/missing`: the blob digests asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// `blob1_…` digests, at most [`MAX_BATCH`].
    pub digests: Vec<String>,
}

/// The answer to [`Digests`]: those the project does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// `blob1_…` digests to upload.
    pub missing: Vec<String>,
}

/// `POST /v1/projects` (admin token): a new project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProject {
    /// Its unique name.
    pub name: String,
}

/// `POST /v1/keys`: a new API key of the caller's project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    /// `read` or `read-write`.
    pub scope: String,
    /// A label for `hitsave keys list`.
    #[serde(default)]
    pub name: String,
}

/// Every error's body: `{"error": {"code", "message"}}`, the code stable
/// (`docs/cloud.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's stable code and explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code (`unauthorized`, `storage_unavailable`, …).
    pub code: String,
    /// What happened, for people.
    pub message: String,
}
