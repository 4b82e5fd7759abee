//! The `/v1` protocol client: one server, one API key, reqwest with rustls; blob transfers on an async runtime of their own with stall detection.

use super::*;

/// A client of one server with one API key.
pub struct CloudClient {
    base: String,
    key: String,
    /// The HTTP client and the fork generation it belongs to: a blocking
    /// reqwest client runs its own thread, which a forked child does not
    /// have, so a child builds its own (`CloudClient::http`).
    http: Mutex<(u64, reqwest::blocking::Client)>,
    pub(super) signing: Option<[u8; 32]>,
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
pub(super) struct Transfers {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    /// Uploads: no read timeout (the server says nothing while it receives).
    uploads: reqwest::Client,
}

/// How long a server may take to answer once it has a blob's last byte: it
/// hashes, syncs and moves the blob to its storage (S3 on a real server)
/// before it answers, so the allowance grows with the size (at 8 MiB/s).
pub(super) fn finishing_allowance(size: u64, timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(60)) + Duration::from_secs(size / (8 << 20))
}

/// A blob as a request body, in 256 KiB frames, counting what the
/// connection has taken: a frame is asked for only when the one before is
/// written (or buffered), so a server that stops reading stops the count.
pub(super) struct CountedBody {
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
pub(super) fn http_client(timeout: Duration) -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .timeout(timeout)
        .user_agent(concat!("hitsave/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|err| HitSaveError::ConfigInvalid(format!("cannot build an HTTP client: {err}")))
}

/// Installs rustls's ring provider once (reqwest is built without a default provider).
pub(super) fn install_crypto_provider() {
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

    /// Downloads a result into memory and verifies its size and digest
    /// (see [`Self::download_into`]).
    pub fn download(&self, eval: &RemoteEval) -> Result<Vec<u8>> {
        let mut data: Vec<u8> = Vec::with_capacity(eval.size.min(1 << 30) as usize);
        self.download_into(eval, &mut |chunk| {
            data.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(data)
    }

    /// Downloads a result, handing its bytes to `sink` in order as they
    /// arrive (nothing is held here), and verifies their size and digest,
    /// hashed on the way: an error means the bytes given to `sink` must not
    /// be used. A transfer that stops (an error, or no byte for
    /// `cloud_timeout`: a stalled server) resumes where it stopped (range
    /// requests); five attempts in a row without progress give up. An error
    /// from `sink` (a full disk) ends the download with it.
    pub fn download_into(&self, eval: &RemoteEval, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<Digest> {
        let expected = Digest::parse(&eval.blob)?;
        let mut received = Received { len: 0, hasher: blake3::Hasher::new(), sink };
        let mut idle_attempts = 0;
        loop {
            let before = received.len;
            match self.download_attempt(eval, &mut received) {
                Ok(()) if received.len == eval.size => break,
                Ok(()) => {}
                Err(HitSaveError::CloudUnavailable(_)) if received.len > before => {}
                Err(HitSaveError::CloudUnavailable(_)) if idle_attempts < 4 => {}
                Err(error) => return Err(error),
            }
            idle_attempts = if received.len > before { 0 } else { idle_attempts + 1 };
            if idle_attempts >= 5 {
                return Err(unavailable(format!("{}: download of {} did not complete", self.base, eval.blob)));
            }
            std::thread::sleep(Duration::from_millis(200 * idle_attempts.max(1) as u64));
        }
        let actual = Digest::new(hitsave_core::DigestKind::Blob, *received.hasher.finalize().as_bytes());
        if actual != expected {
            return Err(HitSaveError::CloudIntegrity(format!(
                "{}: downloaded bytes hash to {actual}, not {} (a tampered or damaged blob; nothing was stored)",
                eval.key, eval.blob
            )));
        }
        Ok(actual)
    }

    /// One request for the rest of a blob, from `received.len` on, with
    /// reqwest's async client, whose read timeout (unlike the blocking
    /// client's whole-request timeout) notices a transfer that stalls midway.
    fn download_attempt(&self, eval: &RemoteEval, received: &mut Received<'_>) -> Result<()> {
        let interrupted =
            |err: reqwest::Error| unavailable(format!("{}: download interrupted: {}", self.base, err.without_url()));
        let transfers = self.transfers()?;
        let client = &transfers.client;
        let url = self.url_of(&format!("/v1/blobs/{}", eval.blob));
        transfers.runtime.block_on(async {
            let mut request = client.get(url).bearer_auth(&self.key);
            if received.len > 0 {
                request = request.header(reqwest::header::RANGE, format!("bytes={}-", received.len));
            }
            let mut response = request.send().await.map_err(interrupted)?;
            let status = response.status();
            if !status.is_success() {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                return Err(self.refusal(status, &body));
            }
            while let Some(chunk) = response.chunk().await.map_err(interrupted)? {
                if received.len + chunk.len() as u64 > eval.size {
                    return Err(HitSaveError::CloudIntegrity(format!(
                        "{}: the server sent more than {} bytes",
                        eval.blob, eval.size
                    )));
                }
                received.take(&chunk)?;
            }
            Ok(())
        })
    }

    /// Uploads a result: its blob unless the project holds it, then its record.
    pub fn upload(&self, evals: &[(RemoteEval, bytes::Bytes)]) -> Result<()> {
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
    fn upload_blob(&self, digest: &str, data: &bytes::Bytes) -> Result<()> {
        let transfers = self.transfers()?;
        let total = data.len() as u64;
        let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // A shared reference to the bytes (a mapped result stays mapped): no copy.
        let body = CountedBody { data: data.clone(), taken: taken.clone(), total: self.sent.clone() };
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
pub(super) fn encode_path(segment: &str) -> String {
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

/// What a download has received so far: its length and hash, and where its bytes went.
struct Received<'a> {
    len: u64,
    hasher: blake3::Hasher,
    sink: &'a mut dyn FnMut(&[u8]) -> Result<()>,
}

impl Received<'_> {
    fn take(&mut self, chunk: &[u8]) -> Result<()> {
        (self.sink)(chunk)?;
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        Ok(())
    }
}
