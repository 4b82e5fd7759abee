//! [`Blobs`] in an S3-compatible object store, so several server processes
//! share one blob store (tested against Ceph's RADOS Gateway).
//!
//! Through `object_store` (Apache Arrow's object-store crate), not a client
//! of our own: SigV4 signing, the standard AWS credential chain (the
//! `AWS_*` environment variables with session tokens, web identity, ECS and
//! EC2 instance roles), retries with backoff, and multipart uploads (one S3
//! PUT is at most 5 GiB; the default largest blob is 8 GiB). Objects are
//! `blobs/ab/<hex>`; an upload is of the verified temporary file, made
//! visible atomically by the store when it completes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};

use crate::error::ApiError;
use crate::storage::{Blobs, SideRuntime};

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
}

/// Parts of a multipart upload (S3 takes 5 MiB to 5 GiB a part).
const PART: usize = 16 << 20;

/// Blobs as objects in a bucket; temporaries in a local directory.
pub struct S3Blobs {
    store: Arc<AmazonS3>,
    temp: PathBuf,
    /// The store's own runtime, which each call blocks on.
    runtime: SideRuntime,
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
            .build()
            .map_err(|err| ApiError::bad_request(format!("the S3 settings: {err}")))?;
        let runtime = SideRuntime::new("hitsave-s3", "object store")?;
        Ok(Self { store: Arc::new(store), temp: temp.to_path_buf(), runtime })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.get()
    }

    fn object(digest: &str) -> Result<ObjectPath, ApiError> {
        let hex = digest
            .strip_prefix("blob1_")
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ApiError::bad_request(format!("{digest:?} is not a blob digest")))?;
        Ok(ObjectPath::from(format!("blobs/{}/{hex}", &hex[..2])))
    }
}

impl Blobs for S3Blobs {
    fn temp_dir(&self) -> PathBuf {
        self.temp.clone()
    }

    fn put_file(&self, digest: &str, file: &Path) -> Result<(), ApiError> {
        let object = Self::object(digest)?;
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
        std::fs::remove_file(file)?;
        Ok(())
    }

    fn exists(&self, digest: &str) -> Result<bool, ApiError> {
        let object = Self::object(digest)?;
        match self.runtime().block_on(self.store.head(&object)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(failed("HEAD", &object, err)),
        }
    }

    fn read_range(&self, digest: &str, start: u64, len: u64) -> Result<Box<dyn Read + Send>, ApiError> {
        let object = Self::object(digest)?;
        if len == 0 {
            return Ok(Box::new(std::io::empty()));
        }
        let options = GetOptions { range: Some(GetRange::Bounded(start..start + len)), ..GetOptions::default() };
        let result = match self.runtime().block_on(self.store.get_opts(&object, options)) {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ApiError::not_found(format!("blob {digest} is not stored")));
            }
            Err(err) => return Err(failed("GET", &object, err)),
        };
        Ok(Box::new(StreamReader {
            stream: result.into_stream(),
            chunk: bytes::Bytes::new(),
            handle: self.runtime().handle().clone(),
            object,
        }))
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
