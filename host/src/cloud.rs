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

/// An outbox entry as the record to send and its bytes, or `None` if the
/// store no longer holds it.
pub fn upload_record(store: &Store, key: &str) -> Result<Option<(RemoteEval, Vec<u8>)>> {
    let Some(record) = store.record(key)? else { return Ok(None) };
    let Some(hit) = store.read_uncounted(&Digest::parse(key)?)? else { return Ok(None) };
    let graph = match &record.graph {
        Some(fingerprint) => store.graph_json(fingerprint)?,
        None => None,
    };
    let data = hit.data.bytes().to_vec();
    let eval = RemoteEval {
        key: record.key,
        function_id: record.function_id,
        function_name: record.function_name,
        language: record.language,
        arguments: record.arguments,
        codec: record.codec,
        blob: crate::hash::blob_digest(&data).to_string(),
        size: data.len() as u64,
        compute_micros: record.compute_micros,
        signature: None,
        graph: graph.map(|(_, nodes)| nodes),
        created: 0,
    };
    Ok(Some((eval, data)))
}

/// Context of the signing MAC's key derivation.
const SIGNING_CONTEXT: &str = "hitsave 2026-11 eval signature v1";

/// Backoff after the server could not be reached: doubles up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Evals per upload request, keys per lookup and records per page: half the
/// protocol's limit ([`hitsave_protocol::MAX_BATCH`]), so requests stay small.
const BATCH: usize = hitsave_protocol::MAX_BATCH / 2;
/// The results' bytes after which an upload group ends (and its records are
/// marked done), so a slow server shows progress every group.
const GROUP_BYTES: usize = 32 << 20;

/// The longest JSON answer the client reads (a page of 1000 records with
/// their graphs fits many times over).
pub const MAX_JSON_RESPONSE: u64 = 64 << 20;

/// An eval record as the server holds it (the protocol's [`hitsave_protocol::Eval`]).
pub type RemoteEval = hitsave_protocol::Eval;

/// Whether a record's key derives from its function identity (`code2_…`, or
/// `name@version`, split at any `@`) and its argument digest.
fn key_matches(eval: &RemoteEval) -> bool {
    let (Ok(key), Ok(arguments)) = (Digest::parse(&eval.key), Digest::parse(&eval.arguments)) else { return false };
    let Ok(core) = crate::runtime::Core::shared() else { return false };
    let derives = |identity: hitsave_core::keys::FunctionIdentity| {
        core.derive_key(&identity, &arguments).is_ok_and(|derived| derived == key)
    };
    if let Ok(fingerprint) = Digest::parse(&eval.function_id) {
        return derives(hitsave_core::keys::FunctionIdentity::Fingerprint(fingerprint));
    }
    eval.function_id.match_indices('@').any(|(at, _)| {
        derives(hitsave_core::keys::FunctionIdentity::Explicit {
            name: eval.function_id[..at].to_owned(),
            version: eval.function_id[at + 1..].to_owned(),
        })
    })
}

/// What a record's signature covers: every field that says what the result
/// is, each prefixed by its length.
fn mac_message(eval: &RemoteEval) -> Vec<u8> {
    let mut message = Vec::new();
    for field in [
        eval.key.as_str(),
        &eval.function_id,
        &eval.function_name,
        &eval.language,
        &eval.arguments,
        &eval.codec,
        &eval.blob,
        &eval.size.to_string(),
    ] {
        message.extend_from_slice(&(field.len() as u64).to_be_bytes());
        message.extend_from_slice(field.as_bytes());
    }
    message
}

/// Whether a codec is read by every language (only the digest check is needed).
pub fn is_portable(codec: &str) -> bool {
    codec == crate::portable::CODEC
}

fn unavailable(message: impl Into<String>) -> HitSaveError {
    HitSaveError::CloudUnavailable(message.into())
}

/// A client of one server with one API key.
pub struct CloudClient {
    base: String,
    key: String,
    /// The HTTP client and the fork generation it belongs to: a blocking
    /// reqwest client runs its own thread, which a forked child does not
    /// have, so a child builds its own (`CloudClient::http`).
    http: Mutex<(u64, reqwest::blocking::Client)>,
    signing: Option<[u8; 32]>,
    /// The limit on small requests (`cloud_timeout`).
    timeout: Duration,
    /// Blob transfers' async clients and the runtime driving them (one worker
    /// thread), made at the first transfer, per fork generation like `http`.
    transfers: Mutex<(u64, Option<Arc<Transfers>>)>,
    /// Blob bytes the server has taken so far, over every upload (progress a
    /// caller can watch while a long upload is under way).
    sent: Arc<std::sync::atomic::AtomicU64>,
}

/// reqwest's async clients, with their runtime: downloads need the read
/// timeout only the async client has; uploads watch their own progress.
struct Transfers {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    /// Uploads: no read timeout (the server says nothing while it receives).
    uploads: reqwest::Client,
}

/// How long a server may take to answer once it has a blob's last byte: it
/// hashes, syncs and moves the blob to its storage (S3 on a real server)
/// before it answers, so the allowance grows with the size (at 8 MiB/s).
fn finishing_allowance(size: u64, timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(60)) + Duration::from_secs(size / (8 << 20))
}

/// A blob as a request body, in 256 KiB frames, counting what the
/// connection has taken: a frame is asked for only when the one before is
/// written (or buffered), so a server that stops reading stops the count.
struct CountedBody {
    data: bytes::Bytes,
    taken: Arc<std::sync::atomic::AtomicU64>,
    /// The client's total ([`CloudClient::bytes_sent`]).
    total: Arc<std::sync::atomic::AtomicU64>,
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.data.is_empty() {
            return std::task::Poll::Ready(None);
        }
        let length = self.data.len().min(256 << 10);
        let frame = self.data.split_to(length);
        self.taken.fetch_add(frame.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.total.fetch_add(frame.len() as u64, std::sync::atomic::Ordering::Relaxed);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.data.len() as u64)
    }
}

/// `timeout` bounds small requests (blob transfers set their own).
fn http_client(timeout: Duration) -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .timeout(timeout)
        .user_agent(concat!("hitsave/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|err| HitSaveError::ConfigInvalid(format!("cannot build an HTTP client: {err}")))
}

/// Installs rustls's ring provider once (reqwest is built without a default provider).
fn install_crypto_provider() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl CloudClient {
    /// A client of `url` (`http://host:port`), authenticating with `api_key`;
    /// `signing_key` signs every record this client uploads and, when set, is the only signature it trusts.
    pub fn new(url: &str, api_key: &str, signing_key: Option<&str>) -> Result<Self> {
        Self::with_timeout(url, api_key, signing_key, crate::config::DEFAULT_CLOUD_TIMEOUT)
    }

    /// [`CloudClient::new`] with a limit on small requests other than the default.
    pub fn with_timeout(url: &str, api_key: &str, signing_key: Option<&str>, timeout: Duration) -> Result<Self> {
        install_crypto_provider();
        let http = Mutex::new((crate::fork::generation(), http_client(timeout)?));
        let signing = signing_key.map(|secret| blake3::derive_key(SIGNING_CONTEXT, secret.as_bytes()));
        let transfers = Mutex::new((crate::fork::generation(), None));
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            key: api_key.to_owned(),
            http,
            signing,
            timeout,
            transfers,
            sent: Arc::default(),
        })
    }

    /// Blob bytes the server has taken so far, over every upload of this client.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This process's HTTP client (a cheap handle); a forked child builds its own.
    fn http(&self) -> Result<reqwest::blocking::Client> {
        let mut http = crate::fork::lock(&self.http);
        let generation = crate::fork::generation();
        if http.0 != generation {
            let parents = std::mem::replace(&mut http.1, http_client(self.timeout)?);
            // Dropping it would join the parent's runtime thread, which this process does not have.
            std::mem::forget(parents);
            http.0 = generation;
        }
        Ok(http.1.clone())
    }

    /// This process's transfer clients (see [`CloudClient::download`] and
    /// [`CloudClient::upload`]).
    fn transfers(&self) -> Result<Arc<Transfers>> {
        let mut transfers = crate::fork::lock(&self.transfers);
        let generation = crate::fork::generation();
        if transfers.0 != generation {
            // The parent's runtime thread is not in this process: never drop (join) it here.
            if let Some(parents) = transfers.1.take() {
                std::mem::forget(parents);
            }
            transfers.0 = generation;
        }
        if let Some(made) = &transfers.1 {
            return Ok(made.clone());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hitsave-transfer")
            .enable_all()
            .build()
            .map_err(|err| unavailable(format!("cannot start the download runtime: {err}")))?;
        let client = reqwest::Client::builder()
            .connect_timeout(self.timeout.min(Duration::from_secs(3)))
            .read_timeout(self.timeout)
            .user_agent(concat!("hitsave/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| HitSaveError::ConfigInvalid(format!("cannot build an HTTP client: {err}")))?;
        let uploads = reqwest::Client::builder()
            .connect_timeout(self.timeout.min(Duration::from_secs(3)))
            .user_agent(concat!("hitsave/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| HitSaveError::ConfigInvalid(format!("cannot build an HTTP client: {err}")))?;
        let made = Arc::new(Transfers { runtime, client, uploads });
        transfers.1 = Some(made.clone());
        Ok(made)
    }

    /// The client a configuration describes, if it names a server and a key.
    pub fn from_config(config: &Config) -> Result<Option<Self>> {
        match (&config.cloud_url, &config.api_key) {
            (Some(url), Some(key)) => {
                Ok(Some(Self::with_timeout(url, key, config.signing_key.as_deref(), config.cloud_timeout)?))
            }
            _ => Ok(None),
        }
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response> {
        let response = request.bearer_auth(&self.key).send().map_err(|err| self.unreachable(err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: serde_json::Value = response.json().unwrap_or_default();
        Err(self.refusal(status, &body))
    }

    /// The error of a response that is not a success: the server's JSON
    /// error body; a 5xx counts as the server being unavailable.
    fn refusal(&self, status: reqwest::StatusCode, body: &serde_json::Value) -> HitSaveError {
        let code = body["error"]["code"].as_str().unwrap_or("unknown").to_owned();
        let message = body["error"]["message"].as_str().unwrap_or("").to_owned();
        if status.is_server_error() {
            return unavailable(format!("{}: {status} {code}: {message}", self.base));
        }
        HitSaveError::CloudRejected { status: status.as_u16(), code, message }
    }

    /// A request that got no answer (connection refused, timed out, reset).
    fn unreachable(&self, err: reqwest::Error) -> HitSaveError {
        unavailable(format!("{}: {}", self.base, err.without_url()))
    }

    fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Whether the server answers (`/v1/health`, no key needed).
    pub fn health(&self) -> Result<()> {
        let response = self.http()?.get(self.url_of("/v1/health")).send().map_err(|err| self.unreachable(err))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(unavailable(format!("{}: health check answered {}", self.base, response.status())))
        }
    }

    /// The key's project and scope.
    pub fn whoami(&self) -> Result<serde_json::Value> {
        self.json(self.send(self.http()?.get(self.url_of("/v1/whoami")))?)
    }

    /// A JSON answer, read up to [`MAX_JSON_RESPONSE`] bytes: a server that
    /// sends an endless body costs that much memory, not all of it.
    fn json<T: serde::de::DeserializeOwned>(&self, response: reqwest::blocking::Response) -> Result<T> {
        use std::io::Read;
        let mut body = Vec::new();
        response
            .take(MAX_JSON_RESPONSE + 1)
            .read_to_end(&mut body)
            .map_err(|err| unavailable(format!("{}: unreadable response: {err}", self.base)))?;
        if body.len() as u64 > MAX_JSON_RESPONSE {
            return Err(HitSaveError::CloudIntegrity(format!(
                "{}: an answer longer than {MAX_JSON_RESPONSE} bytes; not read",
                self.base
            )));
        }
        serde_json::from_slice(&body).map_err(|err| unavailable(format!("{}: unreadable response: {err}", self.base)))
    }

    /// The evals the server holds among `keys`.
    pub fn lookup(&self, keys: &[String]) -> Result<Vec<RemoteEval>> {
        let mut found = Vec::new();
        for chunk in keys.chunks(BATCH) {
            let asked = hitsave_protocol::Keys { keys: chunk.to_vec() };
            let response = self.send(self.http()?.post(self.url_of("/v1/evals/lookup")).json(&asked))?;
            found.extend(self.json::<hitsave_protocol::Evals>(response)?.evals);
        }
        Ok(found)
    }

    /// One page of a function's evals: `(evals, next cursor)`.
    pub fn list(&self, function_name: &str, after: Option<&str>) -> Result<(Vec<RemoteEval>, Option<String>)> {
        let mut url = self.url_of(&format!("/v1/functions/{}/evals?limit={BATCH}", encode_path(function_name)));
        if let Some(after) = after {
            url.push_str(&format!("&after={}", encode_path(after)));
        }
        let page: hitsave_protocol::Page = self.json(self.send(self.http()?.get(url))?)?;
        Ok((page.evals, page.next))
    }

    /// Every record of a function, page after page, and whether the listing
    /// is complete: a cursor that does not move on (a server repeating
    /// itself) ends it rather than paging forever.
    pub fn list_all(&self, function_name: &str) -> Result<(Vec<RemoteEval>, bool)> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (evals, next) = self.list(function_name, after.as_deref())?;
            all.extend(evals);
            match next {
                Some(next) if after.as_deref().is_none_or(|after| next.as_str() > after) => after = Some(next),
                Some(_) => return Ok((all, false)),
                None => return Ok((all, true)),
            }
        }
    }

    /// Downloads a result and verifies its size and digest. A transfer that
    /// stops (an error, or no byte for `cloud_timeout`: a stalled server)
    /// resumes where it stopped (range requests); five attempts in a row
    /// without progress give up.
    pub fn download(&self, eval: &RemoteEval) -> Result<Vec<u8>> {
        let expected = Digest::parse(&eval.blob)?;
        let mut data: Vec<u8> = Vec::with_capacity(eval.size.min(1 << 30) as usize);
        let mut idle_attempts = 0;
        loop {
            let before = data.len();
            match self.download_attempt(eval, &mut data) {
                Ok(()) if data.len() as u64 == eval.size => break,
                Ok(()) => {}
                Err(HitSaveError::CloudUnavailable(_)) if data.len() > before => {}
                Err(HitSaveError::CloudUnavailable(_)) if idle_attempts < 4 => {}
                Err(error) => return Err(error),
            }
            idle_attempts = if data.len() > before { 0 } else { idle_attempts + 1 };
            if idle_attempts >= 5 {
                return Err(unavailable(format!("{}: download of {} did not complete", self.base, eval.blob)));
            }
            std::thread::sleep(Duration::from_millis(200 * idle_attempts.max(1) as u64));
        }
        let actual = crate::hash::blob_digest(&data);
        if actual != expected || data.len() as u64 != eval.size {
            return Err(HitSaveError::CloudIntegrity(format!(
                "{}: downloaded bytes hash to {actual}, not {} (a tampered or damaged blob; nothing was stored)",
                eval.key, eval.blob
            )));
        }
        Ok(data)
    }

    /// One request for the rest of a blob, appended to `data`, with
    /// reqwest's async client, whose read timeout (unlike the blocking
    /// client's whole-request timeout) notices a transfer that stalls midway.
    fn download_attempt(&self, eval: &RemoteEval, data: &mut Vec<u8>) -> Result<()> {
        let interrupted =
            |err: reqwest::Error| unavailable(format!("{}: download interrupted: {}", self.base, err.without_url()));
        let transfers = self.transfers()?;
        let client = &transfers.client;
        let url = self.url_of(&format!("/v1/blobs/{}", eval.blob));
        transfers.runtime.block_on(async {
            let mut request = client.get(url).bearer_auth(&self.key);
            if !data.is_empty() {
                request = request.header(reqwest::header::RANGE, format!("bytes={}-", data.len()));
            }
            let mut response = request.send().await.map_err(interrupted)?;
            let status = response.status();
            if !status.is_success() {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                return Err(self.refusal(status, &body));
            }
            while let Some(chunk) = response.chunk().await.map_err(interrupted)? {
                data.extend_from_slice(&chunk);
                if data.len() as u64 > eval.size {
                    return Err(HitSaveError::CloudIntegrity(format!(
                        "{}: the server sent more than {} bytes",
                        eval.blob, eval.size
                    )));
                }
            }
            Ok(())
        })
    }

    /// Uploads a result: its blob unless the project holds it, then its record.
    pub fn upload(&self, evals: &[(RemoteEval, &[u8])]) -> Result<()> {
        for chunk in evals.chunks(BATCH) {
            let mut digests: Vec<String> = chunk.iter().map(|(eval, _)| eval.blob.clone()).collect();
            digests.sort_unstable();
            digests.dedup();
            let asked = hitsave_protocol::Digests { digests };
            let response = self.send(self.http()?.post(self.url_of("/v1/blobs/missing")).json(&asked))?;
            let missing = self.json::<hitsave_protocol::Missing>(response)?.missing;
            for digest in &missing {
                if let Some((_, data)) = chunk.iter().find(|(eval, _)| &eval.blob == digest) {
                    self.upload_blob(digest, data)?;
                }
            }
            let records =
                hitsave_protocol::Evals { evals: chunk.iter().map(|(eval, _)| self.signed(eval.clone())).collect() };
            self.send(self.http()?.post(self.url_of("/v1/evals")).json(&records))?;
        }
        Ok(())
    }

    /// Sends one blob. Progress is watched instead of a deadline: a server
    /// that takes no bytes for `cloud_timeout` while the body is being sent,
    /// or does not answer within [`finishing_allowance`] once all of it is,
    /// ends the attempt as `cloud_unavailable` (the outbox keeps the entry and
    /// the uploader tries again after its backoff). A slow link that keeps
    /// moving is never cut off.
    fn upload_blob(&self, digest: &str, data: &[u8]) -> Result<()> {
        let transfers = self.transfers()?;
        let total = data.len() as u64;
        let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let body =
            CountedBody { data: bytes::Bytes::copy_from_slice(data), taken: taken.clone(), total: self.sent.clone() };
        let request = transfers
            .uploads
            .put(self.url_of(&format!("/v1/blobs/{digest}")))
            .bearer_auth(&self.key)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap(body));
        let stalled = |what: String| unavailable(format!("{}: upload of {digest} stalled: {what}", self.base));
        transfers.runtime.block_on(async {
            let mut response = std::pin::pin!(request.send());
            let (mut seen, mut since) = (0, Instant::now());
            loop {
                match tokio::time::timeout(Duration::from_millis(100), &mut response).await {
                    Ok(answer) => {
                        let response = answer.map_err(|err| self.unreachable(err))?;
                        let status = response.status();
                        if status.is_success() {
                            return Ok(());
                        }
                        let body: serde_json::Value = response.json().await.unwrap_or_default();
                        return Err(self.refusal(status, &body));
                    }
                    Err(_) => {
                        let now = taken.load(std::sync::atomic::Ordering::Relaxed);
                        if now != seen {
                            (seen, since) = (now, Instant::now());
                        }
                        if now < total && since.elapsed() > self.timeout {
                            return Err(stalled(format!(
                                "the server took no bytes for {:?} ({now} of {total} sent)",
                                self.timeout
                            )));
                        }
                        let allowance = finishing_allowance(total, self.timeout);
                        if now == total && since.elapsed() > allowance {
                            return Err(stalled(format!("no answer {allowance:?} after the last byte")));
                        }
                    }
                }
            }
        })
    }

    /// Signs a record with the signing key, if there is one.
    pub fn signed(&self, mut eval: RemoteEval) -> RemoteEval {
        if let Some(key) = &self.signing {
            eval.signature = Some(blake3::keyed_hash(key, &mac_message(&eval)).to_hex().to_string());
        }
        eval
    }

    /// Whether a record may be loaded. With a signing key: only when its
    /// signature verifies, whatever the codec (a writer without the secret
    /// cannot file a result under the team's keys). Without one: portable
    /// results (their bytes are checked against the digest, the key against
    /// the function and arguments), never language-only ones.
    pub fn trusted(&self, eval: &RemoteEval) -> bool {
        if self.signing.is_none() {
            return is_portable(&eval.codec);
        }
        let (Some(key), Some(signature)) = (&self.signing, &eval.signature) else { return false };
        let Ok(presented) = blake3::Hash::from_hex(signature) else { return false };
        // blake3::Hash compares in constant time.
        presented == blake3::keyed_hash(key, &mac_message(eval))
    }

    /// Creates an API key for this key's project: the server's answer (the key is shown once).
    pub fn create_key(&self, scope: &str, name: &str) -> Result<serde_json::Value> {
        self.json(self.send(self.http()?.post(self.url_of("/v1/keys")).json(&json!({ "scope": scope, "name": name })))?)
    }

    /// The project's keys.
    pub fn list_keys(&self) -> Result<serde_json::Value> {
        self.json(self.send(self.http()?.get(self.url_of("/v1/keys")))?)
    }

    /// Revokes a key of the project.
    pub fn revoke_key(&self, id: &str) -> Result<()> {
        self.send(self.http()?.delete(self.url_of(&format!("/v1/keys/{}", encode_path(id)))))?;
        Ok(())
    }
}

/// Percent-encodes a path segment.
fn encode_path(segment: &str) -> String {
    let mut out = String::new();
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether the server answered recently, and when to try again if not.
struct Health {
    down_until: Option<Instant>,
    backoff: Duration,
    /// The server's last refusal (`cloud_rejected`: status, code, message),
    /// until a request succeeds.
    refused: Option<(u16, String, String)>,
    /// The fork generation whose background health check is running, if any.
    probing: Option<u64>,
}

/// A store's cloud side: read-through, background upload, bulk download.
pub struct CloudSync {
    client: CloudClient,
    config: Config,
    health: Mutex<Health>,
    uploading: AtomicBool,
    /// The fork generation `uploading` was last set in: a flag the parent's
    /// uploader set means nothing in a forked child.
    uploading_generation: std::sync::atomic::AtomicU64,
    /// Completed uploader runs (so a drain can tell a run that made no progress).
    runs: std::sync::atomic::AtomicU64,
    /// Per function: calls that reached the cloud, for the prefetch policy.
    usage: Mutex<std::collections::HashMap<String, Usage>>,
}

/// What the prefetch policy sees of one function in this process.
#[derive(Default)]
struct Usage {
    calls: u64,
    remote_hits: u64,
    misses: u64,
    /// A bulk fetch was considered (once per function per process).
    considered: bool,
}

impl CloudSync {
    /// Blob bytes uploaded so far by this process (progress while a long
    /// upload is under way).
    pub fn bytes_sent(&self) -> u64 {
        self.client.bytes_sent()
    }

    /// The cloud side a configuration asks for: `None` unless the mode is
    /// `cloud`; `config_invalid` if it is but no server or key is configured.
    pub fn from_config(config: &Config) -> Result<Option<Arc<Self>>> {
        if config.mode != Mode::Cloud {
            return Ok(None);
        }
        let client = CloudClient::from_config(config)?.ok_or_else(|| {
            HitSaveError::ConfigInvalid(
                "mode is cloud but no server is configured: set HITSAVE_CLOUD_URL and HITSAVE_API_KEY (or run `hitsave login`)"
                    .into(),
            )
        })?;
        Ok(Some(Arc::new(Self {
            client,
            config: config.clone(),
            health: Mutex::new(Health { down_until: None, backoff: FIRST_BACKOFF, refused: None, probing: None }),
            uploading: AtomicBool::new(false),
            uploading_generation: std::sync::atomic::AtomicU64::new(crate::fork::generation()),
            runs: std::sync::atomic::AtomicU64::new(0),
            usage: Mutex::new(std::collections::HashMap::new()),
        })))
    }

    /// The client.
    pub fn client(&self) -> &CloudClient {
        &self.client
    }

    /// The server's last refusal of this process's requests, if no request
    /// succeeded since (a revoked or read-only key): `cloud_rejected`.
    pub fn refusal(&self) -> Option<HitSaveError> {
        let health = crate::fork::lock(&self.health);
        health.refused.clone().map(|(status, code, message)| HitSaveError::CloudRejected { status, code, message })
    }

    fn reachable(&self) -> bool {
        let health = crate::fork::lock(&self.health);
        health.down_until.is_none_or(|until| Instant::now() >= until)
    }

    /// Notes the outcome of a request: an unreachable server is warned about
    /// once and skipped until the backoff passes.
    fn note<T>(&self, result: &Result<T>) {
        let mut health = crate::fork::lock(&self.health);
        match result {
            Err(error @ HitSaveError::CloudUnavailable(_)) => {
                crate::warn::error(error);
                health.down_until = Some(Instant::now() + health.backoff);
                health.backoff = (health.backoff * 2).min(MAX_BACKOFF);
            }
            Err(HitSaveError::CloudRejected { status, code, message }) => {
                health.refused = Some((*status, code.clone(), message.clone()));
                health.down_until = None;
                health.backoff = FIRST_BACKOFF;
            }
            other => {
                if other.is_ok() {
                    health.refused = None;
                }
                health.down_until = None;
                health.backoff = FIRST_BACKOFF;
            }
        }
    }

    /// [`CloudSync::reachable`] for a caller's path: once a server that was
    /// down has waited out its backoff, a background health check (not the
    /// caller) finds out whether it is back, and calls stay local until it
    /// answers. A server that accepts connections but never answers would
    /// otherwise cost a call the whole request timeout at every backoff.
    fn reachable_for_call(self: &Arc<Self>) -> bool {
        let mut health = crate::fork::lock(&self.health);
        let Some(until) = health.down_until else { return true };
        let generation = crate::fork::generation();
        if Instant::now() < until || health.probing == Some(generation) {
            return false;
        }
        health.probing = Some(generation);
        drop(health);
        let sync = self.clone();
        let spawned = std::thread::Builder::new().name("hitsave-health".into()).spawn(move || {
            let answer = sync.client.health();
            crate::fork::lock(&sync.health).probing = None;
            sync.note(&answer);
        });
        if spawned.is_err() {
            crate::fork::lock(&self.health).probing = None;
        }
        false
    }

    /// Read-through on a local miss: the server's record, downloaded,
    /// verified and stored locally. Failures are warnings and misses.
    /// `function_name`, when known, feeds the prefetch policy.
    pub fn fetch(self: &Arc<Self>, store: &Store, key: &Digest, function_name: Option<&str>) -> Option<Hit> {
        if !self.reachable_for_call() {
            return None;
        }
        let found = self.client.lookup(&[key.to_string()]);
        self.note(&found);
        // Only the record of the key asked: a server (buggy or hostile) that
        // answers with another key's record must not make this call return
        // another call's result.
        let asked = key.to_string();
        let eval = found.ok()?.into_iter().find(|eval| eval.key == asked);
        let hit = eval.and_then(|eval| {
            self.load(store, &eval).unwrap_or_else(|error| {
                crate::warn::error(&error);
                None
            })
        });
        if let Some(function_name) = function_name {
            self.consider_prefetch(store, function_name, hit.is_some());
        }
        hit
    }

    /// Counts a cloud lookup of a function and, when the core's prefetch
    /// policy says the function is worth it, fetches its results in bulk in
    /// the background (once per function per process).
    fn consider_prefetch(self: &Arc<Self>, store: &Store, function_name: &str, remote_hit: bool) {
        let (calls, remote_hits, misses) = {
            let mut usage = crate::fork::lock(&self.usage);
            let entry = usage.entry(function_name.to_owned()).or_default();
            entry.calls += 1;
            if remote_hit {
                entry.remote_hits += 1;
            } else {
                entry.misses += 1;
            }
            // Only worth asking the server once the cheap conditions hold.
            if entry.considered
                || entry.remote_hits < hitsave_core::policy::PREFETCH_MIN_REMOTE_HITS
                || entry.remote_hits <= entry.misses
            {
                return;
            }
            entry.considered = true;
            (entry.calls, entry.remote_hits, entry.misses)
        };
        let sync = self.clone();
        let function_name = function_name.to_owned();
        let free_bytes = store.stats().map(|stats| stats.max_size.saturating_sub(stats.size)).unwrap_or(0);
        let _ = std::thread::Builder::new().name("hitsave-prefetch".into()).spawn(move || {
            let mut local_config = sync.config.clone();
            local_config.mode = Mode::Local;
            let Ok(local) = Store::open(&local_config) else { return };
            let (mut remote_entries, mut remote_bytes) = (0u64, 0u64);
            let Ok((evals, _)) = sync.client.list_all(&function_name) else { return };
            for eval in evals {
                if !Digest::parse(&eval.key).ok().and_then(|key| local.contains(&key).ok()).unwrap_or(false) {
                    remote_entries += 1;
                    remote_bytes += eval.size;
                }
            }
            let stats = hitsave_core::policy::FunctionStats {
                calls,
                remote_hits,
                misses,
                remote_entries,
                remote_bytes,
                free_bytes,
            };
            let worth = crate::runtime::Core::shared().and_then(|core| core.should_prefetch(&stats)).unwrap_or(false);
            if worth {
                let _ = sync.download_function(&local, &function_name, |_, _| {});
            }
        });
    }

    /// Downloads one record into the local store, if trusted.
    fn load(&self, store: &Store, eval: &RemoteEval) -> Result<Option<Hit>> {
        // A result larger than the local store's whole budget could not be
        // kept: not downloaded (a record claiming 2^40 bytes is not a reason
        // to take that much memory).
        if eval.size > self.config.max_size {
            return Err(HitSaveError::CloudIntegrity(format!(
                "{} ({}): the server's result of {} bytes is larger than the local store's budget ({} bytes); not downloaded",
                eval.key, eval.function_name, eval.size, self.config.max_size
            )));
        }
        // A record's key must be the one its function and arguments derive:
        // a server (or a writer) cannot file one call's result under another
        // call's key. Records of an older key scheme are skipped the same way.
        if !key_matches(eval) {
            return Err(HitSaveError::CloudIntegrity(format!(
                "{} ({}): the record's key is not the key of its function ({}) and arguments ({}); not used",
                eval.key, eval.function_name, eval.function_id, eval.arguments
            )));
        }
        if !self.client.trusted(eval) {
            return Err(HitSaveError::CloudUntrusted(if self.client.signing.is_some() {
                format!(
                    "{} ({}, codec {}): the result's signature does not verify with this machine's signing secret \
                     (HITSAVE_SIGNING_KEY), so it was not written by a holder of it; not loaded",
                    eval.key, eval.function_name, eval.codec
                )
            } else {
                format!(
                    "{} ({}, codec {}): a language-only result from the cloud without a valid signature is never \
                     loaded; set HITSAVE_SIGNING_KEY to the project's signing secret",
                    eval.key, eval.function_name, eval.codec
                )
            }));
        }
        let data = self.client.download(eval);
        self.note(&data);
        let data = data?;
        // Decoded before it is kept: a record claiming the portable codec
        // whose bytes are not a portable result would otherwise raise in
        // every later call, offline too.
        if eval.codec == crate::portable::CODEC
            && let Err(error) = crate::portable::check(&data)
        {
            return Err(HitSaveError::CloudIntegrity(format!(
                "{} ({}): the server's result is marked portable but is not a portable result ({error}); not used",
                eval.key, eval.function_name
            )));
        }
        let new = NewEval {
            key: Digest::parse(&eval.key)?,
            function_id: eval.function_id.clone(),
            function_name: eval.function_name.clone(),
            language: eval.language.clone(),
            arguments: Digest::parse(&eval.arguments)?,
            codec: eval.codec.clone(),
            compute_micros: eval.compute_micros,
            graph: None,
        };
        // Keep it locally (not queued for upload: it came from there).
        if let Err(error) = store.put_local(crate::runtime::Core::shared()?, &new, &data) {
            crate::warn::error(&error);
        }
        Ok(Some(Hit {
            codec: eval.codec.clone(),
            language: eval.language.clone(),
            inline: true,
            data: ResultData::Inline(data),
        }))
    }

    /// Starts the background uploader if it is not running.
    pub fn wake_uploader(self: &Arc<Self>) {
        let generation = crate::fork::generation();
        if self.uploading_generation.swap(generation, Ordering::AcqRel) != generation {
            // Forked: the parent's uploader thread is not in this process.
            self.uploading.store(false, Ordering::Release);
        }
        if self.uploading.swap(true, Ordering::AcqRel) {
            return;
        }
        let sync = self.clone();
        let spawned = std::thread::Builder::new().name("hitsave-upload".into()).spawn(move || {
            let outcome = sync.upload_outbox();
            sync.runs.fetch_add(1, Ordering::AcqRel);
            sync.uploading.store(false, Ordering::Release);
            if let Err(error) = outcome
                && !matches!(error, HitSaveError::CloudUnavailable(_))
            {
                crate::warn::error(&error);
            }
        });
        if spawned.is_err() {
            self.uploading.store(false, Ordering::Release);
        }
    }

    /// Uploads everything in the outbox (its own store handle, so callers never wait on it).
    pub fn upload_outbox(&self) -> Result<u64> {
        let mut local = self.config.clone();
        local.mode = Mode::Local;
        let store = Store::open(&local)?;
        let mut uploaded = 0;
        loop {
            if !self.reachable() {
                return Ok(uploaded);
            }
            let keys = store.outbox(BATCH)?;
            if keys.is_empty() {
                return Ok(uploaded);
            }
            // A group ends at BATCH records or GROUP_BYTES of results (at
            // least one): each group's records are marked done when it is
            // sent, so progress shows (and survives an interruption) every few
            // tens of MiB, not only after 500 results.
            let mut batch: Vec<(RemoteEval, Vec<u8>)> = Vec::new();
            let mut gone = Vec::new();
            let mut bytes = 0;
            for key in &keys {
                if !batch.is_empty() && bytes >= GROUP_BYTES {
                    break;
                }
                match upload_record(&store, key)? {
                    Some(item) => {
                        bytes += item.1.len();
                        batch.push(item);
                    }
                    None => gone.push(key.clone()),
                }
            }
            let items: Vec<(RemoteEval, &[u8])> =
                batch.iter().map(|(eval, data)| (eval.clone(), data.as_slice())).collect();
            let result = self.client.upload(&items);
            self.note(&result);
            match result {
                Ok(()) => {}
                Err(HitSaveError::CloudRejected { status, code, message }) if status != 401 && status != 403 => {
                    // The server refuses these records for good (e.g. too large): drop them from the outbox.
                    crate::warn::error(&HitSaveError::CloudRejected { status, code, message });
                }
                Err(error) => return Err(error),
            }
            uploaded += batch.len() as u64;
            for key in batch.iter().map(|(eval, _)| &eval.key).chain(gone.iter()) {
                store.outbox_done(key)?;
            }
        }
    }

    /// Waits up to `timeout` for the outbox to empty (at process exit, so a
    /// short-lived process still shares its results). Returns what is left.
    pub fn drain(self: &Arc<Self>, store: &Store, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut before: Option<(u64, u64)> = None;
        loop {
            let left = store.outbox_len()?;
            if left == 0 || Instant::now() >= deadline || !self.reachable() {
                return Ok(left);
            }
            let runs = self.runs.load(Ordering::Acquire);
            match before {
                // A whole run finished since the last look and nothing moved: the
                // server refuses these (a read-only or revoked key); stop waiting.
                Some((earlier_runs, earlier_left))
                    if runs > earlier_runs && left >= earlier_left && !self.uploading.load(Ordering::Acquire) =>
                {
                    return Ok(left);
                }
                Some((earlier_runs, _)) if runs == earlier_runs => {}
                _ => before = Some((runs, left)),
            }
            self.wake_uploader();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fetches every result of a function the local store lacks; returns how many.
    /// `progress(done, total)` is called as downloads finish.
    pub fn download_function(
        &self,
        store: &Store,
        function_name: &str,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<u64> {
        let listed = self.client.list_all(function_name);
        self.note(&listed);
        let (evals, complete) = listed?;
        if !complete {
            crate::warn::error(&HitSaveError::CloudIntegrity(format!(
                "{function_name}: the server's page cursor did not advance; stopped listing"
            )));
        }
        let mut wanted = Vec::new();
        for eval in evals {
            if !store.contains(&Digest::parse(&eval.key)?)? {
                wanted.push(eval);
            }
        }
        let total = wanted.len() as u64;
        progress(0, total);
        let done = std::sync::atomic::AtomicU64::new(0);
        let progress = Mutex::new(progress);
        let failures = Mutex::new(Vec::new());
        // A few transfers at once: enough to fill a link, few enough for a small server.
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(eval) = wanted.get(index) else { break };
                        if let Err(error) = self.load(store, eval) {
                            failures.lock().unwrap_or_else(|p| p.into_inner()).push(error);
                        }
                        let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                        (progress.lock().unwrap_or_else(|p| p.into_inner()))(finished, total);
                    }
                });
            }
        });
        let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
        let failed = failures.len() as u64;
        if let Some(first) = failures.into_iter().next() {
            if failed == total {
                return Err(first);
            }
            crate::warn::error(&first);
        }
        Ok(total - failed)
    }
}
