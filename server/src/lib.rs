//! `hitsave-server`: the HitSave cloud. A team's machines share results
//! through it: content-addressed blobs (re-hashed by the server on upload)
//! and eval records mapping keys to blobs, per project, behind API keys.
//!
//! The protocol is `/v1`, written down in `server/openapi.json` (a test
//! keeps the router and the document in step). Storage is behind
//! [`storage::Metadata`] and [`storage::Blobs`]; the embedded default is
//! SQLite plus a directory ([`open_embedded`]).

pub mod command;
pub mod error;
pub mod gc;
pub mod observe;
pub mod pg;
pub mod pg_tls;
pub mod s3;
pub mod storage;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use serde_json::json;
use std::io::Read;

use tokio::io::AsyncWriteExt;

pub use error::ApiError;
use hitsave_protocol::{Digests, Evals, Keys, NewKey, NewProject, Page, PageQuery};
use storage::{Blobs, KeyRecord, Metadata, ProjectId, Scope};

/// Installs rustls's ring provider for reqwest clients (once; reqwest is
/// built without a default provider, and building a client without one panics).
pub fn install_crypto_provider() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Limits a server enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest blob accepted, in bytes.
    pub max_blob_size: u64,
    /// Largest JSON request body, in bytes.
    pub max_json_body: usize,
    /// Most keys in one batch lookup or evals in one upload.
    pub max_batch: usize,
    /// How long a connection may take to send a request's headers, and stay
    /// idle between requests (a slow or silent client is closed).
    pub header_timeout: std::time::Duration,
    /// How long an upload may go without sending a byte (`408` then).
    pub body_idle_timeout: std::time::Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// After SIGINT/SIGTERM, how long requests in flight may still finish.
    pub shutdown_grace: std::time::Duration,
    /// Bytes of blobs one project may hold (none: no limit).
    pub project_quota: Option<u64>,
    /// Retention and collection ([`gc`]); the retention also sets how often a
    /// lookup refreshes an eval's last use.
    pub gc: gc::Policy,
    /// How often `serve` runs a collection pass (none: never; `hitsave-server gc` still can).
    pub gc_interval: Option<std::time::Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_blob_size: 8 << 30,
            max_json_body: 16 << 20,
            max_batch: hitsave_protocol::MAX_BATCH,
            header_timeout: std::time::Duration::from_secs(10),
            body_idle_timeout: std::time::Duration::from_secs(60),
            max_connections: 1000,
            shutdown_grace: std::time::Duration::from_secs(30),
            project_quota: None,
            gc: gc::Policy::default(),
            gc_interval: None,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Projects, keys, blob ownership and evals.
    pub metadata: Arc<dyn Metadata>,
    /// The blob bytes.
    pub blobs: Arc<dyn Blobs>,
    /// Size limits.
    pub limits: Limits,
    /// A token that may create projects over HTTP (`POST /v1/projects`); none disables it.
    pub admin_token: Option<Arc<str>>,
}

/// The two storage halves a server runs on.
pub type Storage = (Arc<dyn Metadata>, Arc<dyn Blobs>);

/// Storage from settings: PostgreSQL metadata when `database_url` is given
/// (optionally in `schema`), else SQLite in `dir`; blobs in an S3-compatible
/// bucket when `s3` is given, else in `dir`.
pub fn open_storage(
    dir: &std::path::Path,
    database_url: Option<&str>,
    schema: Option<&str>,
    s3: Option<s3::S3Config>,
) -> Result<Storage, ApiError> {
    std::fs::create_dir_all(dir)?;
    let metadata: Arc<dyn Metadata> = match database_url {
        None => Arc::new(storage::SqliteMetadata::open(&dir.join("metadata.sqlite"))?),
        Some(url) => Arc::new(pg::PostgresMetadata::open(url, schema)?),
    };
    let blobs: Arc<dyn Blobs> = match s3 {
        None => Arc::new(storage::DirBlobs::open(dir)?),
        Some(config) => Arc::new(s3::S3Blobs::open(config, &dir.join("tmp"))?),
    };
    Ok((metadata, blobs))
}

/// The S3 settings in the environment, if `HITSAVE_SERVER_S3_ENDPOINT` is
/// set: the endpoint, `HITSAVE_SERVER_S3_BUCKET` (default `hitsave`),
/// `HITSAVE_SERVER_S3_REGION` (default `us-east-1`) and
/// `HITSAVE_SERVER_S3_PREFIX` (default none); credentials from the
/// standard AWS chain (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, web identity, instance roles).
pub fn s3_from_env() -> Option<s3::S3Config> {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    Some(s3::S3Config {
        endpoint: var("HITSAVE_SERVER_S3_ENDPOINT")?,
        bucket: var("HITSAVE_SERVER_S3_BUCKET").unwrap_or_else(|| "hitsave".into()),
        region: var("HITSAVE_SERVER_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
        prefix: var("HITSAVE_SERVER_S3_PREFIX").unwrap_or_default(),
    })
}

/// The embedded default storage in `dir`: `metadata.sqlite` and `blobs/`.
pub fn open_embedded(dir: &std::path::Path) -> Result<Storage, ApiError> {
    std::fs::create_dir_all(dir)?;
    let metadata = storage::SqliteMetadata::open(&dir.join("metadata.sqlite"))?;
    let blobs = storage::DirBlobs::open(dir)?;
    Ok((Arc::new(metadata), Arc::new(blobs)))
}

/// Runs blocking storage work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|err| ApiError::internal(format!("storage task failed: {err}")))?
}

fn random_hex(bytes: usize) -> Result<String, ApiError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|err| ApiError::internal(format!("no randomness: {err}")))?;
    Ok(hex::encode(buffer))
}

/// A new API key for a project: the record to store and the key text to hand out once.
pub fn new_key(project: ProjectId, scope: Scope, name: &str) -> Result<(KeyRecord, String), ApiError> {
    let id = random_hex(8)?;
    let secret = random_hex(32)?;
    let record = KeyRecord {
        id: id.clone(),
        project,
        scope,
        name: name.to_owned(),
        secret_hash: *blake3::hash(secret.as_bytes()).as_bytes(),
        created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        revoked: false,
    };
    Ok((record, format!("hs_{id}_{secret}")))
}

/// Characters a project name may not hold: control characters, and the
/// invisible ones that make lookalikes (`"team\u{200b}"` beside `"team"`):
/// soft hyphen, zero-width spaces and joiners, direction marks and
/// overrides, word joiners, the byte-order mark. `server/openapi.json` says
/// the same in its pattern.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// Creates a project with a first read-write key; returns `(project id, key text)`.
pub fn create_project(metadata: &dyn Metadata, name: &str) -> Result<(ProjectId, String), ApiError> {
    let padded = name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace);
    if name.is_empty() || name.chars().count() > 128 || padded || name.chars().any(invisible) {
        return Err(ApiError::bad_request(
            "a project name is 1-128 characters, without spaces at its ends and without control or invisible characters",
        ));
    }
    let project = metadata.create_project(name)?;
    let (record, text) = new_key(project, Scope::ReadWrite, "first key")?;
    metadata.add_key(&record)?;
    Ok((project, text))
}

/// The caller, authenticated by `Authorization: Bearer hs_<id>_<secret>`.
#[derive(Clone, Debug)]
pub struct Auth {
    /// The key's project.
    pub project: ProjectId,
    /// What the key may do.
    pub scope: Scope,
    /// The key's public id.
    pub key_id: String,
}

impl Auth {
    fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if scope == Scope::ReadWrite && self.scope != Scope::ReadWrite {
            return Err(ApiError::forbidden("this API key is read-only"));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <API key>"))?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| ApiError::unauthorized("expected a Bearer token"))?;
        let mut parts_of = token.trim().splitn(3, '_');
        let (Some("hs"), Some(id), Some(secret)) = (parts_of.next(), parts_of.next(), parts_of.next()) else {
            return Err(ApiError::unauthorized("malformed API key"));
        };
        let (id, secret) = (id.to_owned(), secret.to_owned());
        let metadata = state.metadata.clone();
        let record = blocking(move || metadata.key(&id)).await?;
        // Compare hashes in constant time (blake3::Hash's equality is), even for unknown ids.
        let presented = blake3::hash(secret.as_bytes());
        let stored = blake3::Hash::from_bytes(record.as_ref().map(|r| r.secret_hash).unwrap_or([0; 32]));
        match record {
            Some(record) if presented == stored && !record.revoked => {
                if let Some(slot) = parts.extensions.get::<observe::ProjectSlot>() {
                    *slot.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(record.project);
                }
                Ok(Auth { project: record.project, scope: record.scope, key_id: record.id })
            }
            _ => Err(ApiError::unauthorized("unknown or revoked API key")),
        }
    }
}

/// `Query<T>` whose rejections are JSON errors (`400 bad_request`), like every other error.
pub struct QueryParams<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// `Path<T>` whose rejections (a segment that is not UTF-8) are JSON errors (`400 bad_request`).
pub struct PathParam<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// `Json<T>` whose rejections are JSON errors with stable codes.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", rejection.body_text()))
            }
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// The longest name-like field of an eval (`function_id`, `function_name`,
/// `language`, `codec`, `signature`) and the longest `graph`, in characters
/// (as `maxLength` in `server/openapi.json` counts them).
pub const MAX_NAME_FIELD: usize = 1024;
/// See [`MAX_NAME_FIELD`]. A graph of tens of thousands of functions fits.
pub const MAX_GRAPH_FIELD: usize = 4 << 20;
/// A lookup answer stops carrying graphs past this many bytes (the records
/// stay; clients do not need the graphs to use them).
pub const MAX_LOOKUP_GRAPH_BYTES: usize = 32 << 20;

/// A text field every backend stores alike: no NUL (PostgreSQL's text
/// refuses it, SQLite would keep it), at most `max` characters.
fn check_text(what: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::bad_request(format!("{what} must not contain a NUL character")));
    }
    // Bytes bound characters from above: count them only when it can matter.
    if value.len() > max && value.chars().count() > max {
        return Err(ApiError::bad_request(format!("{what} is {} characters; at most {max}", value.chars().count())));
    }
    Ok(())
}

/// `{kind}{version}_{64 hex}`. Keys and argument digests of any scheme
/// version (`key1_`, `key2_`), so clients of different releases can share one
/// server: their keys never collide, each scheme hashing with its own
/// context. Blobs are plain BLAKE3, always `blob1_`.
fn check_digest(text: &str, kind: &str) -> Result<(), ApiError> {
    let ok = text.strip_prefix(kind).and_then(|rest| rest.split_once('_')).is_some_and(|(version, hex)| {
        let version_ok = if kind == "blob" {
            version == "1"
        } else {
            !version.is_empty() && version.len() <= 3 && version.bytes().all(|b| b.is_ascii_digit())
        };
        version_ok && hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(())
    } else {
        let expected = if kind == "blob" { "blob1_".to_owned() } else { format!("{kind}<version>_") };
        Err(ApiError::bad_request(format!("{text:?} is not a {expected}… digest")))
    }
}

/// The router of the whole `/v1` API.
pub fn router(state: AppState) -> Router {
    let json_limit = axum::extract::DefaultBodyLimit::max(state.limits.max_json_body);
    let metrics = Arc::new(observe::Metrics::default());
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/health", get(health))
        .route("/v1/health/live", get(liveness))
        .route("/v1/whoami", get(whoami))
        .route("/v1/projects", post(create_project_route))
        .route("/v1/blobs/missing", post(missing_blobs))
        .route("/v1/blobs/{digest}", put(put_blob).get(get_blob).layer(axum::extract::DefaultBodyLimit::disable()))
        .route("/v1/evals", post(put_evals))
        .route("/v1/evals/lookup", post(lookup_evals))
        .route("/v1/functions/{name}/evals", get(list_evals))
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{id}", delete(revoke_key))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "bad_request", "method not allowed on this route")
        })
        .layer(json_limit)
        .layer(axum::middleware::from_fn(head_limits))
        .layer(axum::middleware::from_fn(move |request, next| observe::observe(metrics.clone(), request, next)))
        .with_state(state)
}

/// The longest request target (path and query) the server reads.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names and values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most header fields a request may carry.
pub const MAX_HEADERS: usize = 100;
/// What the HTTP layer itself accepts, above the limits the API answers with
/// JSON (`head_limits`): past these, hyper answers alone, with an empty body.
const HYPER_MAX_HEADERS: usize = 1000;

/// `414 uri_too_long` and `431 headers_too_large` as JSON errors like every
/// other, for heads within what the HTTP layer parses (a request past even
/// that gets hyper's own empty 414 or 431).
async fn head_limits(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let uri = request.uri().path_and_query().map_or(0, |target| target.as_str().len());
    if uri > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {uri} bytes; at most {MAX_URI_BYTES}"),
        )
        .into_response();
    }
    let headers = request.headers();
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request has {} header fields, {bytes} bytes; at most {MAX_HEADERS} fields, {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// The server's metrics in Prometheus' text format (no authentication: counts
/// by route and status, no names, keys or digests; keep it off the public
/// internet as any metrics endpoint).
async fn metrics_text(Extension(metrics): Extension<Arc<observe::Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
}

/// Readiness: up, and both storages (metadata and blobs) answer; a load
/// balancer takes a server whose storage is gone out of rotation on its
/// `503 storage_unavailable`.
async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let (metadata, blobs) = (state.metadata.clone(), state.blobs.clone());
    blocking(move || {
        metadata.ping()?;
        blobs.ping()
    })
    .await?;
    Ok(Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION"), "protocol": "v1" })))
}

/// Liveness: the process serves requests (no storage is asked, so a
/// database outage does not get every server restarted).
async fn liveness() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn whoami(State(state): State<AppState>, auth: Auth) -> Result<Json<serde_json::Value>, ApiError> {
    let metadata = state.metadata.clone();
    let project = auth.project;
    let name = blocking(move || metadata.project_name(project)).await?;
    Ok(Json(json!({ "project": name, "scope": auth.scope.as_str(), "key_id": auth.key_id })))
}

async fn create_project_route(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let Some(admin) = state.admin_token.clone() else {
        return Err(ApiError::forbidden("creating projects over HTTP is disabled (no admin token configured)"));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("missing the admin token"))?;
    if blake3::hash(presented.as_bytes()) != blake3::hash(admin.as_bytes()) {
        return Err(ApiError::unauthorized("wrong admin token"));
    }
    // The body is read only once the token is right: a caller without it
    // learns nothing from how its body is parsed.
    let JsonBody(body) = JsonBody::<NewProject>::from_request(request, &state).await?;
    let metadata = state.metadata.clone();
    let (project, key) = blocking(move || create_project(metadata.as_ref(), &body.name)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "project": project, "key": key }))))
}

async fn missing_blobs(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<Digests>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if body.digests.len() > state.limits.max_batch {
        return Err(ApiError::bad_request(format!("at most {} digests per request", state.limits.max_batch)));
    }
    for digest in &body.digests {
        check_digest(digest, "blob")?;
    }
    let metadata = state.metadata.clone();
    let missing = blocking(move || {
        let mut missing = Vec::new();
        for digest in body.digests {
            if metadata.blob_size(auth.project, &digest)?.is_none() {
                missing.push(digest);
            }
        }
        Ok(missing)
    })
    .await?;
    Ok(Json(json!({ "missing": missing })))
}

/// Deletes an upload temporary unless disarmed (a dropped connection leaves nothing behind).
struct TempGuard(Option<std::path::PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `507 quota_exceeded` when `used` bytes and `adding` more pass `quota`.
fn check_quota(used: u64, adding: u64, quota: u64) -> Result<(), ApiError> {
    if used.saturating_add(adding) > quota {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "quota_exceeded",
            format!("the project holds {used} bytes of its {quota}; this blob of {adding} bytes does not fit"),
        ));
    }
    Ok(())
}

/// How long a request body refused before it was read is still read (and
/// discarded) after the answer.
const UNREAD_BODY_LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and discards `body` in the background for at most `linger`, so the
/// connection is not closed under a client still sending (its kernel could
/// drop the answer on the reset). The connection closes after it.
fn discard_for(body: Body, linger: std::time::Duration) {
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let _ = tokio::time::timeout(linger, async { while let Some(Ok(_)) = stream.next().await {} }).await;
    });
}

/// Where an upload's bytes go as they arrive: a temporary file, stored once
/// verified, or the blob store itself ([`storage::Blobs::begin_upload`]).
enum Sink {
    File(tokio::fs::File),
    Store(storage::Upload),
}

async fn put_blob(
    State(state): State<AppState>,
    Extension(metrics): Extension<Arc<observe::Metrics>>,
    auth: Auth,
    PathParam(digest): PathParam<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    auth.require(Scope::ReadWrite)?;
    check_digest(&digest, "blob")?;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(declared) = declared
        && declared > state.limits.max_blob_size
    {
        // Refused before the body is read: a client that sent `Expect:
        // 100-continue` never sends it; one already sending gets the answer
        // while the body is read and discarded for a few seconds (closing
        // with unread bytes could reset the connection before the client
        // reads the answer).
        discard_for(body, UNREAD_BODY_LINGER);
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("blobs are limited to {} bytes; the request declares {declared}", state.limits.max_blob_size),
        ));
    }
    // Over the project's quota: refused before the body is read when its
    // length says so, else once it is (a blob the project holds costs nothing).
    let quota = match state.limits.project_quota {
        Some(quota) => {
            let (metadata, project, held) = (state.metadata.clone(), auth.project, digest.clone());
            let (used, already) =
                blocking(move || Ok((metadata.project_bytes(project)?, metadata.blob_size(project, &held)?.is_some())))
                    .await?;
            if !already
                && let Some(declared) = declared
                && let Err(refused) = check_quota(used, declared, quota)
            {
                discard_for(body, UNREAD_BODY_LINGER);
                return Err(refused);
            }
            (!already).then_some((used, quota))
        }
        None => None,
    };
    // An object store gets the bytes while they arrive (its upload overlaps
    // the client's); otherwise they go to a temporary file, stored once verified.
    let upload = {
        let (blobs, wanted) = (state.blobs.clone(), digest.clone());
        blocking(move || blobs.begin_upload(&wanted)).await?
    };
    let (mut sink, guard) = match upload {
        Some(upload) => (Sink::Store(upload), TempGuard(None)),
        None => {
            let temp = state.blobs.temp_dir().join(format!("upload-{}", random_hex(12)?));
            let file = tokio::fs::File::create(&temp).await?;
            (Sink::File(file), TempGuard(Some(temp)))
        }
    };
    let mut hasher = blake3::Hasher::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    let idle = state.limits.body_idle_timeout;
    // A write that fails (a full disk) is answered once the body is read, so
    // the client gets its `503 storage_unavailable` instead of a connection
    // closed mid-send; the rest is discarded, still under the size limit.
    let mut write_failed: Option<ApiError> = None;
    loop {
        let Ok(next) = tokio::time::timeout(idle, stream.next()).await else {
            // A client that stopped sending (or sends a byte a minute) does not hold a connection and a file for ever.
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the upload sent nothing for {} s", idle.as_secs()),
            ));
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|err| ApiError::bad_request(format!("upload interrupted: {err}")))?;
        size += chunk.len() as u64;
        if size > state.limits.max_blob_size {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("blobs are limited to {} bytes", state.limits.max_blob_size),
            ));
        }
        if write_failed.is_none() {
            hasher.update(&chunk);
            let written = match &mut sink {
                Sink::File(file) => file.write_all(&chunk).await.map_err(ApiError::from),
                Sink::Store(upload) => upload.write(chunk).await,
            };
            if let Err(error) = written {
                write_failed = Some(error);
            }
        }
    }
    if let Some(error) = write_failed {
        return Err(error);
    }
    if let Some((used, quota)) = quota {
        check_quota(used, size, quota)?;
    }
    if let Sink::File(file) = &sink {
        file.sync_all().await?;
    }
    let actual = format!("blob1_{}", hasher.finalize().to_hex());
    if actual != digest {
        // (An upload in flight is dropped here: aborted, nothing stored.)
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "digest_mismatch",
            format!("the uploaded bytes hash to {actual}, not {digest}"),
        ));
    }
    if let Sink::Store(upload) = sink {
        upload.finish().await?;
    }
    let (metadata, blobs) = (state.metadata.clone(), state.blobs.clone());
    let stored = digest.clone();
    let temp = guard.0.clone();
    blocking(move || {
        if let Some(temp) = &temp {
            blobs.put_file(&stored, temp)?;
        }
        metadata.add_blob(auth.project, &stored, size)?;
        // A collector may have taken the object between the two (it was
        // stored and no project held it): the row is recorded now, so the
        // collector puts it back or this stores it again (see storage::Blobs).
        // An object this upload just wrote is younger than the collector's
        // grace period, so only a temporary's object can have been taken.
        if !blobs.exists(&stored)? {
            match &temp {
                Some(temp) => blobs.put_file(&stored, temp)?,
                None => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage_unavailable",
                        format!("blob {stored} was removed from the store while it was uploaded; upload it again"),
                    ));
                }
            }
        }
        Ok(())
    })
    .await?;
    drop(guard);
    metrics.blobs_stored.inc();
    Ok((StatusCode::CREATED, Json(json!({ "digest": digest, "size": size }))))
}

/// Why a `Range` header is not served.
#[derive(Debug, PartialEq)]
enum RangeRefusal {
    /// Not one `bytes=first-last` (or `bytes=first-`, `bytes=-suffix`) range with `first <= last`: 400.
    Malformed,
    /// Well formed, but no byte of it is in the blob: 416.
    Unsatisfiable,
}

/// `(start, length)` of a `Range: bytes=…` header over `size` bytes.
fn parse_range(value: &str, size: u64) -> Result<(u64, u64), RangeRefusal> {
    use RangeRefusal::{Malformed, Unsatisfiable};
    let spec = value.trim().strip_prefix("bytes=").ok_or(Malformed)?;
    let (first, last) = spec.split_once('-').ok_or(Malformed)?;
    let number = |text: &str| {
        // Digits only (`u64::from_str` would take a `+`).
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Malformed);
        }
        // More digits than a u64 holds: past any blob's end.
        Ok(text.parse::<u64>().unwrap_or(u64::MAX))
    };
    if first.is_empty() {
        let suffix = number(last)?;
        if suffix == 0 || size == 0 {
            return Err(Unsatisfiable);
        }
        let start = size.saturating_sub(suffix);
        return Ok((start, size - start));
    }
    let start = number(first)?;
    let end = if last.is_empty() { None } else { Some(number(last)?) };
    if end.is_some_and(|end| end < start) {
        return Err(Malformed);
    }
    if start >= size {
        return Err(Unsatisfiable);
    }
    let end = end.map_or(size - 1, |end| end.min(size - 1));
    Ok((start, end - start + 1))
}

async fn get_blob(
    State(state): State<AppState>,
    auth: Auth,
    PathParam(digest): PathParam<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_digest(&digest, "blob")?;
    let metadata = state.metadata.clone();
    let owned = digest.clone();
    let size = blocking(move || metadata.blob_size(auth.project, &owned))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("blob {digest} is not stored in this project")))?;
    let (status, start, len) = match headers.get(header::RANGE).and_then(|value| value.to_str().ok()) {
        None => (StatusCode::OK, 0, size),
        Some(range) => match parse_range(range, size) {
            Ok((start, len)) => (StatusCode::PARTIAL_CONTENT, start, len),
            Err(RangeRefusal::Malformed) => {
                return Err(ApiError::bad_request(format!(
                    "Range {range:?} is not one range of bytes (bytes=first-last, bytes=first- or bytes=-suffix)"
                )));
            }
            Err(RangeRefusal::Unsatisfiable) => {
                let mut response = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!("{range} of {size} bytes"),
                )
                .into_response();
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                return Ok(response);
            }
        },
    };
    let blobs = state.blobs.clone();
    let owned = digest.clone();
    let body = match blocking(move || blobs.stream_range(&owned, start, len)).await? {
        // An object store's response, passed on chunk by chunk as it comes.
        Some(stream) => Body::from_stream(stream),
        None => read_body(&state, &digest, start, len).await?,
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(value) = HeaderValue::from_str(&format!("\"{digest}\"")) {
        headers.insert(header::ETAG, value);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        headers.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

/// A blob's bytes read from a store read by [`Blobs::read_range`] (a
/// directory), on a blocking thread, sent in frames of up to 1 MiB.
async fn read_body(state: &AppState, digest: &str, start: u64, len: u64) -> Result<Body, ApiError> {
    let blobs = state.blobs.clone();
    let owned = digest.to_owned();
    let mut reader = blocking(move || blobs.read_range(&owned, start, len)).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        // Frames of 1 MiB, whatever the reader returns at a time: fewer, larger sends.
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let mut filled = 0;
            let error = loop {
                match reader.read(&mut buffer[filled..]) {
                    Ok(0) => break None,
                    Ok(n) => {
                        filled += n;
                        if filled == buffer.len() {
                            break None;
                        }
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => break Some(err),
                }
            };
            if filled > 0 && sender.blocking_send(Ok(bytes::Bytes::copy_from_slice(&buffer[..filled]))).is_err() {
                break;
            }
            if let Some(err) = error {
                let _ = sender.blocking_send(Err(err));
                break;
            }
            if filled < buffer.len() {
                break;
            }
        }
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    Ok(Body::from_stream(stream))
}

async fn put_evals(
    State(state): State<AppState>,
    Extension(metrics): Extension<Arc<observe::Metrics>>,
    auth: Auth,
    JsonBody(body): JsonBody<Evals>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.require(Scope::ReadWrite)?;
    if body.evals.len() > state.limits.max_batch {
        return Err(ApiError::bad_request(format!("at most {} evals per request", state.limits.max_batch)));
    }
    for eval in &body.evals {
        check_digest(&eval.key, "key")?;
        check_digest(&eval.arguments, "val")?;
        check_digest(&eval.blob, "blob")?;
        if eval.function_name.is_empty() || eval.codec.is_empty() || eval.language.is_empty() {
            return Err(ApiError::bad_request(format!("{}: function_name, codec and language are required", eval.key)));
        }
        for (what, value) in [
            ("function_id", &eval.function_id),
            ("function_name", &eval.function_name),
            ("language", &eval.language),
            ("codec", &eval.codec),
        ] {
            check_text(&format!("{}: {what}", eval.key), value, MAX_NAME_FIELD)?;
        }
        if let Some(signature) = &eval.signature {
            check_text(&format!("{}: signature", eval.key), signature, MAX_NAME_FIELD)?;
        }
        if let Some(graph) = &eval.graph {
            check_text(&format!("{}: graph", eval.key), graph, MAX_GRAPH_FIELD)?;
        }
    }
    let metadata = state.metadata.clone();
    let results = blocking(move || {
        // Every eval must point at a blob this project holds, of the stated size.
        for eval in &body.evals {
            match metadata.blob_size(auth.project, &eval.blob)? {
                Some(size) if size == eval.size => {}
                Some(size) => {
                    return Err(ApiError::bad_request(format!(
                        "{}: blob {} has {size} bytes, not {}",
                        eval.key, eval.blob, eval.size
                    )));
                }
                None => return Err(storage::blob_missing(eval)),
            }
        }
        let stored = metadata.put_evals(auth.project, &body.evals)?;
        metrics.evals_stored.inc_by(stored.iter().filter(|stored| **stored).count() as u64);
        Ok(body
            .evals
            .iter()
            .zip(stored)
            .map(|(eval, stored)| json!({ "key": eval.key, "status": if stored { "stored" } else { "exists" } }))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(json!({ "results": results })))
}

async fn lookup_evals(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<Keys>,
) -> Result<Json<Evals>, ApiError> {
    if body.keys.len() > state.limits.max_batch {
        return Err(ApiError::bad_request(format!("at most {} keys per request", state.limits.max_batch)));
    }
    for key in &body.keys {
        check_digest(key, "key")?;
    }
    // A key asked twice is answered once (1000 copies of one key with a large
    // graph would otherwise build a response a thousand times its size).
    let mut keys = body.keys;
    keys.sort_unstable();
    keys.dedup();
    let metadata = state.metadata.clone();
    let touch_before = storage::now().saturating_sub(gc::touch_interval(state.limits.gc.retain).as_secs());
    let mut evals = blocking(move || metadata.get_evals(auth.project, &keys, touch_before)).await?;
    let mut graph_bytes = 0usize;
    for eval in &mut evals {
        graph_bytes += eval.graph.as_ref().map_or(0, String::len);
        if graph_bytes > MAX_LOOKUP_GRAPH_BYTES {
            eval.graph = None;
        }
    }
    Ok(Json(Evals { evals }))
}

async fn list_evals(
    State(state): State<AppState>,
    auth: Auth,
    PathParam(name): PathParam<String>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page>, ApiError> {
    let limit = page.limit.unwrap_or(state.limits.max_batch);
    if !(1..=state.limits.max_batch).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit is 1 to {}, not {limit}", state.limits.max_batch)));
    }
    check_text("the function name", &name, MAX_NAME_FIELD)?;
    if let Some(after) = &page.after {
        check_text("after", after, MAX_NAME_FIELD)?;
    }
    let metadata = state.metadata.clone();
    let evals = blocking(move || metadata.list_evals(auth.project, &name, page.after.as_deref(), limit)).await?;
    let next = if evals.len() == limit { evals.last().map(|eval| eval.key.clone()) } else { None };
    Ok(Json(Page { evals, next }))
}

async fn create_key(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<NewKey>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require(Scope::ReadWrite)?;
    let scope = Scope::parse(&body.scope).ok_or_else(|| ApiError::bad_request("scope is read or read-write"))?;
    check_text("a key name", &body.name, MAX_NAME_FIELD)?;
    let (record, text) = new_key(auth.project, scope, &body.name)?;
    let metadata = state.metadata.clone();
    let id = record.id.clone();
    blocking(move || metadata.add_key(&record)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "key": text, "scope": scope.as_str(), "name": body.name }))))
}

async fn list_keys(State(state): State<AppState>, auth: Auth) -> Result<Json<serde_json::Value>, ApiError> {
    auth.require(Scope::ReadWrite)?;
    let metadata = state.metadata.clone();
    let keys = blocking(move || metadata.keys(auth.project)).await?;
    let keys: Vec<_> = keys
        .iter()
        .map(|key| {
            json!({ "id": key.id, "scope": key.scope.as_str(), "name": key.name, "created": key.created, "revoked": key.revoked })
        })
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

async fn revoke_key(
    State(state): State<AppState>,
    auth: Auth,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::ReadWrite)?;
    let metadata = state.metadata.clone();
    if blocking(move || metadata.revoke_key(auth.project, &id)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such key in this project"))
    }
}

/// Runs a collection pass a minute after start (or `interval`, if shorter)
/// and then every `interval`, each logged as one line.
async fn collect_every(interval: std::time::Duration, state: AppState) {
    let mut next = interval.min(std::time::Duration::from_secs(60));
    loop {
        tokio::time::sleep(next).await;
        next = interval;
        let (metadata, blobs, policy) = (state.metadata.clone(), state.blobs.clone(), state.limits.gc);
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || gc::collect(metadata.as_ref(), blobs.as_ref(), &policy)).await {
            Ok(Ok(report)) => tracing::info!(
                evals = report.evals,
                blob_rows = report.blob_rows,
                objects = report.objects,
                latency_ms = started.elapsed().as_millis() as u64,
                "collection pass"
            ),
            Ok(Err(error)) => tracing::warn!(code = error.code, error = %error, "collection pass failed"),
            Err(error) => tracing::warn!(error = %error, "collection pass panicked"),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves (and collects
/// every `limits.gc_interval`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use tower::ServiceExt;

    let limits = state.limits;
    // Uploads that a crashed or killed server left behind (an hour old: a
    // live upload of another server sharing the directory is younger).
    clean_temp_files(&state.blobs.temp_dir(), std::time::Duration::from_secs(3600));
    let collector = limits.gc_interval.map(|interval| tokio::spawn(collect_every(interval, state.clone())));
    let app = router(state);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_headers(HYPER_MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors and the like: try again shortly rather than spin or stop.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper::service::service_fn({
            let app = app.clone();
            move |request: hyper::Request<hyper::body::Incoming>| app.clone().oneshot(request.map(Body::new))
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener); // new connections are refused from here
    // Requests in flight finish, up to the grace period; then the rest are cut.
    if let Some(collector) = collector {
        collector.abort();
    }
    let _ = tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await;
    Ok(())
}

/// Removes files in `dir` older than `age` (uploads a killed server left).
fn clean_temp_files(dir: &std::path::Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let old = entry.metadata().ok().and_then(|meta| meta.modified().ok()).and_then(|at| at.elapsed().ok());
        if old.is_some_and(|old| old >= age) && entry.file_type().is_ok_and(|kind| kind.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{RangeRefusal::*, parse_range};

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Ok((90, 10)));
        assert_eq!(parse_range("bytes=-5", 100), Ok((95, 5)));
        assert_eq!(parse_range("bytes=-500", 100), Ok((0, 100)));
        assert_eq!(parse_range("bytes=50-500", 100), Ok((50, 50)));
        assert_eq!(parse_range("bytes=100-", 100), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=0-0", 0), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=-0", 100), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=5-1", 100), Err(Malformed));
        assert_eq!(parse_range("bytes=0-1,3-4", 100), Err(Malformed));
        assert_eq!(parse_range("items=0-1", 100), Err(Malformed));
        assert_eq!(parse_range("bytes=+1-2", 100), Err(Malformed));
        assert_eq!(parse_range("bytes=a-", 100), Err(Malformed));
        assert_eq!(parse_range("bytes=-", 100), Err(Malformed));
        assert_eq!(parse_range("bytes=99999999999999999999-", 100), Err(Unsatisfiable));
        assert_eq!(parse_range("bytes=10-99999999999999999999", 100), Ok((10, 90)));
    }
}
