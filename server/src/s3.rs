//! [`Blobs`] in an S3-compatible object store, so several server processes
//! share one blob store (tested against Ceph's RADOS Gateway).
//!
//! Through `object_store` (Apache Arrow's object-store crate), not a client
//! of our own: SigV4 signing, the standard AWS credential chain (the
//! `AWS_*` environment variables with session tokens, web identity, ECS and
//! EC2 instance roles), retries with backoff, and multipart uploads (one S3
//! PUT is at most 5 GiB; the default largest blob is 8 GiB). Objects are
//! `blobs/ab/<hex>`; an upload is sent to the store in parts while the
//! client sends it ([`Blobs::begin_upload`]) and made visible atomically by
//! the store when it completes, once the server has verified its digest.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};

use crate::error::ApiError;
use crate::storage::{BlobStream, Blobs, SideRuntime, Upload};

/// Where the blobs live. Credentials come from the standard AWS chain.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// `http://host:port` or `https://host` (path-style addressing); a bare
    /// `host:port` means `https://`.
    pub endpoint: String,
    /// The bucket (must exist).
    pub bucket: String,
    /// The signing region (`us-east-1` for most S3-compatible stores).
    pub region: String,
    /// Where in the bucket this server's objects live (`team-a/`: empty for
    /// the whole bucket). One metadata database owns its prefix: the collector
    /// deletes objects under it that the database does not name.
    pub prefix: String,
}

/// How long a request to the store is retried (with backoff) before it is
/// answered `503 storage_unavailable`.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Parts of a multipart upload (S3 takes 5 MiB to 5 GiB a part).
const PART: usize = 16 << 20;

/// Blobs as objects in a bucket; temporaries in a local directory.
pub struct S3Blobs {
    store: Arc<AmazonS3>,
    temp: PathBuf,
    /// The store's own runtime, which each call blocks on.
    runtime: SideRuntime,
    /// `S3Config::prefix`, empty or ending in `/`.
    prefix: String,
}

fn storage_error(message: impl Into<String>) -> ApiError {
    ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", message)
}

fn failed(what: &str, object: &ObjectPath, error: object_store::Error) -> ApiError {
    storage_error(format!("object store {what} {object}: {error}"))
}

impl S3Blobs {
    /// Blobs in `config.bucket`; upload temporaries in `temp`.
    pub fn open(config: S3Config, temp: &Path) -> Result<Self, ApiError> {
        std::fs::create_dir_all(temp)?;
        crate::install_crypto_provider();
        let endpoint = if config.endpoint.contains("://") {
            config.endpoint.clone()
        } else {
            format!("https://{}", config.endpoint)
        };
        let store = AmazonS3Builder::from_env()
            .with_endpoint(&endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(false)
            // While the store is down a request is answered 503 within about
            // 10 s (as for the metadata database), never held for minutes.
            .with_retry(object_store::RetryConfig { retry_timeout: RETRY_FOR, ..Default::default() })
            .build()
            .map_err(|err| ApiError::bad_request(format!("the S3 settings: {err}")))?;
        let runtime = SideRuntime::new("hitsave-s3", "object store")?;
        let prefix = config.prefix.trim_matches('/');
        if prefix.split('/').any(|part| part.is_empty() || part == "." || part == "..") && !prefix.is_empty() {
            return Err(ApiError::bad_request(format!(
                "the S3 prefix {:?} has an empty or dot segment",
                config.prefix
            )));
        }
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        Ok(Self { store: Arc::new(store), temp: temp.to_path_buf(), runtime, prefix })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.get()
    }

    /// A ranged GET of a blob: its object and the response's chunks.
    fn get_range(
        &self,
        digest: &str,
        start: u64,
        len: u64,
    ) -> Result<(ObjectPath, futures_util::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>), ApiError>
    {
        let object = self.object(digest)?;
        let options = GetOptions { range: Some(GetRange::Bounded(start..start + len)), ..GetOptions::default() };
        match self.runtime().block_on(self.store.get_opts(&object, options)) {
            Ok(result) => Ok((object, result.into_stream())),
            Err(object_store::Error::NotFound { .. }) => {
                Err(ApiError::not_found(format!("blob {digest} is not stored")))
            }
            Err(err) => Err(failed("GET", &object, err)),
        }
    }

    fn object(&self, digest: &str) -> Result<ObjectPath, ApiError> {
        let hex = digest
            .strip_prefix("blob1_")
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ApiError::bad_request(format!("{digest:?} is not a blob digest")))?;
        Ok(ObjectPath::from(format!("{}blobs/{}/{hex}", self.prefix, &hex[..2])))
    }

    /// Where the collector holds an object between hiding and purging it.
    fn held(&self, digest: &str) -> Result<ObjectPath, ApiError> {
        let object = self.object(digest)?;
        Ok(ObjectPath::from(format!("{}collected/{}", self.prefix, object.filename().unwrap_or_default())))
    }
}

impl Blobs for S3Blobs {
    fn temp_dir(&self) -> PathBuf {
        self.temp.clone()
    }

    fn put_file(&self, digest: &str, file: &Path) -> Result<(), ApiError> {
        let object = self.object(digest)?;
        if !self.exists(digest)? {
            let mut source = std::fs::File::open(file)?;
            let store = self.store.clone();
            self.runtime().block_on(async {
                let upload = store.put_multipart(&object).await.map_err(|err| failed("PUT", &object, err))?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
                let mut buffer = vec![0; PART];
                loop {
                    let read = source.read(&mut buffer)?;
                    if read == 0 {
                        break;
                    }
                    // At most a few parts in flight: memory stays bounded for an 8 GiB blob.
                    writer.wait_for_capacity(4).await.map_err(|err| failed("PUT", &object, err))?;
                    writer.write(&buffer[..read]);
                }
                writer.finish().await.map_err(|err| failed("PUT", &object, err))?;
                Ok::<_, ApiError>(())
            })?;
        }
        Ok(())
    }

    fn begin_upload(&self, digest: &str) -> Result<Option<Upload>, ApiError> {
        if self.exists(digest)? {
            return Ok(None);
        }
        let object = self.object(digest)?;
        let store = self.store.clone();
        Ok(Some(Upload::spawn(self.runtime(), move |mut received| async move {
            let upload = store.put_multipart(&object).await.map_err(|err| failed("PUT", &object, err))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
            while let Some(chunk) = received.next().await {
                // At most a few parts in flight: memory stays bounded for an 8 GiB blob.
                if let Err(err) = writer.wait_for_capacity(4).await {
                    let _ = writer.abort().await;
                    return Err(failed("PUT", &object, err));
                }
                writer.write(&chunk);
            }
            if !received.committed().await {
                // Not verified (or the client went away): the parts are
                // dropped and nothing appears under the digest.
                let _ = writer.abort().await;
                return Err(storage_error(format!("the upload of {object} was abandoned")));
            }
            writer.finish().await.map(drop).map_err(|err| failed("PUT", &object, err))
        })))
    }

    fn exists(&self, digest: &str) -> Result<bool, ApiError> {
        let object = self.object(digest)?;
        match self.runtime().block_on(self.store.head(&object)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(failed("HEAD", &object, err)),
        }
    }

    fn read_range(&self, digest: &str, start: u64, len: u64) -> Result<Box<dyn Read + Send>, ApiError> {
        if len == 0 {
            return Ok(Box::new(std::io::empty()));
        }
        let (object, stream) = self.get_range(digest, start, len)?;
        Ok(Box::new(StreamReader {
            stream,
            chunk: bytes::Bytes::new(),
            handle: self.runtime().handle().clone(),
            object,
        }))
    }

    fn stream_range(&self, digest: &str, start: u64, len: u64) -> Result<Option<BlobStream>, ApiError> {
        if len == 0 {
            return Ok(None);
        }
        let (object, stream) = self.get_range(digest, start, len)?;
        // Polled by the server's runtime; the connection behind it runs on this store's.
        Ok(Some(
            stream
                .map(move |chunk| {
                    chunk.map_err(|err| std::io::Error::other(format!("object store GET {object}: {err}")))
                })
                .boxed(),
        ))
    }

    fn stored_before(
        &self,
        before: std::time::SystemTime,
        batch: &mut dyn FnMut(Vec<String>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let before = before.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let prefix = ObjectPath::from(format!("{}blobs", self.prefix));
        let mut offset = prefix.clone();
        // Pages of 1000 (S3 lists in key order from `start-after`): memory stays bounded.
        loop {
            let page: Vec<object_store::ObjectMeta> = self.runtime().block_on(async {
                let mut stream = self.store.list_with_offset(Some(&prefix), &offset);
                let mut page = Vec::new();
                while page.len() < 1000
                    && let Some(meta) = stream.next().await
                {
                    page.push(meta.map_err(|err| failed("LIST", &prefix, err))?);
                }
                Ok::<_, ApiError>(page)
            })?;
            let Some(last) = page.iter().map(|meta| &meta.location).max() else { return Ok(()) };
            offset = last.clone();
            let digests: Vec<String> = page
                .iter()
                .filter(|meta| meta.last_modified.timestamp() < before)
                .filter_map(|meta| Some(format!("blob1_{}", meta.location.filename()?)))
                .filter(|digest| self.object(digest).is_ok())
                .collect();
            if !digests.is_empty() {
                batch(digests)?;
            }
        }
    }

    fn hide(&self, digest: &str) -> Result<bool, ApiError> {
        let (object, held) = (self.object(digest)?, self.held(digest)?);
        self.runtime().block_on(async {
            match self.store.copy(&object, &held).await {
                Ok(()) => {}
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(err) => return Err(failed("COPY", &object, err)),
            }
            self.store.delete(&object).await.map_err(|err| failed("DELETE", &object, err))?;
            Ok(true)
        })
    }

    fn restore(&self, digest: &str) -> Result<(), ApiError> {
        let (object, held) = (self.object(digest)?, self.held(digest)?);
        self.runtime().block_on(async {
            self.store.copy(&held, &object).await.map_err(|err| failed("COPY", &held, err))?;
            self.store.delete(&held).await.map_err(|err| failed("DELETE", &held, err))
        })
    }

    fn purge(&self, digest: &str) -> Result<(), ApiError> {
        let held = self.held(digest)?;
        match self.runtime().block_on(self.store.delete(&held)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(failed("DELETE", &held, err)),
        }
    }

    fn hidden(&self) -> Result<Vec<String>, ApiError> {
        let prefix = ObjectPath::from(format!("{}collected", self.prefix));
        self.runtime().block_on(async {
            let mut stream = self.store.list(Some(&prefix));
            let mut digests = Vec::new();
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|err| failed("LIST", &prefix, err))?;
                if let Some(name) = meta.location.filename() {
                    let digest = format!("blob1_{name}");
                    if self.object(&digest).is_ok() {
                        digests.push(digest);
                    }
                }
            }
            Ok(digests)
        })
    }
}

/// A ranged GET's body as a blocking [`Read`]: each chunk is awaited on the
/// store's runtime.
struct StreamReader {
    stream: futures_util::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
    handle: tokio::runtime::Handle,
    object: ObjectPath,
}

impl Read for StreamReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(err)) => {
                    return Err(std::io::Error::other(format!("object store GET {}: {err}", self.object)));
                }
                None => return Ok(0),
            }
        }
        let taken = self.chunk.len().min(buffer.len());
        buffer[..taken].copy_from_slice(&self.chunk.split_to(taken));
        Ok(taken)
    }
}
