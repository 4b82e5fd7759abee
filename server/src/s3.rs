//! [`Blobs`] in an S3-compatible object store (tested against Ceph's RADOS
//! Gateway), so several server processes share one blob store.
//!
//! Three operations are needed (PUT, HEAD, ranged GET), so this is a small
//! SigV4 client over reqwest rather than an SDK: requests are signed with
//! `UNSIGNED-PAYLOAD` (the server verifies every blob's BLAKE3 itself before
//! it is uploaded, and clients verify it again on download). Objects are
//! `blobs/ab/<hex>`; an upload is a single PUT of the verified temporary
//! file, which S3 makes visible atomically.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

use crate::error::ApiError;
use crate::storage::Blobs;

/// Where the blobs live.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// `http://host:port` (path-style addressing).
    pub endpoint: String,
    /// The bucket (must exist).
    pub bucket: String,
    /// The signing region (`us-east-1` for most S3-compatible stores).
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
}

/// Blobs as objects in a bucket; temporaries in a local directory.
pub struct S3Blobs {
    config: S3Config,
    temp: PathBuf,
    http: Mutex<Option<reqwest::blocking::Client>>,
}

fn storage_error(message: impl Into<String>) -> ApiError {
    ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", message)
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `(YYYYMMDD, YYYYMMDDTHHMMSSZ)` of a time.
fn amz_dates(time: SystemTime) -> (String, String) {
    let seconds = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let stamp = format!("{date}T{:02}{:02}{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60);
    (date, stamp)
}

impl S3Blobs {
    /// Blobs in `config.bucket`; upload temporaries in `temp`.
    pub fn open(config: S3Config, temp: &Path) -> Result<Self, ApiError> {
        std::fs::create_dir_all(temp)?;
        crate::install_crypto_provider();
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(3600))
            .build()
            .map_err(|err| storage_error(format!("cannot build an HTTP client: {err}")))?;
        let blobs = Self { config, temp: temp.to_path_buf(), http: Mutex::new(Some(http)) };
        // Fail at start, not at the first upload, if the bucket cannot be reached.
        let response = Self::send(blobs.request(reqwest::Method::HEAD, "", &[])?)?;
        if !response.status().is_success() {
            return Err(storage_error(format!(
                "object store {}: bucket {} answers {}",
                blobs.config.endpoint,
                blobs.config.bucket,
                response.status()
            )));
        }
        Ok(blobs)
    }

    fn object(digest: &str) -> Result<String, ApiError> {
        let hex = digest
            .strip_prefix("blob1_")
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ApiError::bad_request(format!("not a blob digest: {digest:?}")))?;
        Ok(format!("blobs/{}/{hex}", &hex[..2]))
    }

    /// A signed request for `object` (empty: the bucket) with extra headers.
    fn request(
        &self,
        method: reqwest::Method,
        object: &str,
        extra: &[(&str, String)],
    ) -> Result<reqwest::blocking::RequestBuilder, ApiError> {
        let config = &self.config;
        let path =
            if object.is_empty() { format!("/{}", config.bucket) } else { format!("/{}/{object}", config.bucket) };
        let host = config.endpoint.split("://").nth(1).unwrap_or(&config.endpoint).trim_end_matches('/').to_owned();
        let (date, stamp) = amz_dates(SystemTime::now());
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), host),
            ("x-amz-content-sha256".into(), "UNSIGNED-PAYLOAD".into()),
            ("x-amz-date".into(), stamp.clone()),
        ];
        headers.extend(extra.iter().map(|(name, value)| (name.to_ascii_lowercase(), value.clone())));
        headers.sort();
        let canonical_headers: String =
            headers.iter().map(|(name, value)| format!("{name}:{}\n", value.trim())).collect();
        let signed: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
        let signed = signed.join(";");
        let canonical = format!("{method}\n{path}\n\n{canonical_headers}\n{signed}\nUNSIGNED-PAYLOAD");
        let scope = format!("{date}/{}/s3/aws4_request", config.region);
        let to_sign =
            format!("AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
        let key = hmac(format!("AWS4{}", config.secret_key).as_bytes(), &date);
        let key = hmac(&key, &config.region);
        let key = hmac(&key, "s3");
        let key = hmac(&key, "aws4_request");
        let signature = hex::encode(hmac(&key, &to_sign));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            config.access_key
        );
        let http = self.http.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let http = http.as_ref().ok_or_else(|| storage_error("blob store closed"))?;
        let mut request = http
            .request(method, format!("{}{path}", config.endpoint.trim_end_matches('/')))
            .header("authorization", authorization);
        for (name, value) in headers.into_iter().filter(|(name, _)| name != "host") {
            request = request.header(name, value);
        }
        Ok(request)
    }

    fn send(request: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response, ApiError> {
        request.send().map_err(|err| storage_error(format!("object store: {}", err.without_url())))
    }
}

impl Drop for S3Blobs {
    fn drop(&mut self) {
        // reqwest's blocking client must not be dropped on an async worker.
        let http = self.http.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if http.is_some() {
            let _ = std::thread::Builder::new().name("hitsave-s3-close".into()).spawn(move || drop(http));
        }
    }
}

impl Blobs for S3Blobs {
    fn temp_dir(&self) -> PathBuf {
        self.temp.clone()
    }

    fn put_file(&self, digest: &str, file: &Path) -> Result<(), ApiError> {
        let object = Self::object(digest)?;
        if !self.exists(digest)? {
            let len = std::fs::metadata(file)?.len();
            let body = reqwest::blocking::Body::sized(std::fs::File::open(file)?, len);
            let request = self.request(reqwest::Method::PUT, &object, &[("content-length", len.to_string())])?;
            let response = Self::send(request.body(body))?;
            if !response.status().is_success() {
                return Err(storage_error(format!("object store PUT {object}: {}", response.status())));
            }
        }
        std::fs::remove_file(file)?;
        Ok(())
    }

    fn exists(&self, digest: &str) -> Result<bool, ApiError> {
        let object = Self::object(digest)?;
        let response = Self::send(self.request(reqwest::Method::HEAD, &object, &[])?)?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(storage_error(format!("object store HEAD {object}: {status}"))),
        }
    }

    fn read_range(&self, digest: &str, start: u64, len: u64) -> Result<Box<dyn Read + Send>, ApiError> {
        let object = Self::object(digest)?;
        if len == 0 {
            return Ok(Box::new(std::io::empty()));
        }
        let range = format!("bytes={start}-{}", start + len - 1);
        let response = Self::send(self.request(reqwest::Method::GET, &object, &[("range", range)])?)?;
        match response.status().as_u16() {
            200 | 206 => Ok(Box::new(response.take(len))),
            404 => Err(ApiError::not_found(format!("blob {digest} is not stored"))),
            status => Err(storage_error(format!("object store GET {object}: {status}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(amz_dates(UNIX_EPOCH), ("19700101".into(), "19700101T000000Z".into()));
        let leap = UNIX_EPOCH + Duration::from_secs(951_827_696); // 2000-02-29T12:34:56Z
        assert_eq!(amz_dates(leap), ("20000229".into(), "20000229T123456Z".into()));
        let later = UNIX_EPOCH + Duration::from_secs(1_795_000_000); // 2026-11-18T11:06:40Z
        assert_eq!(amz_dates(later).1, "20261118T110640Z");
    }
}
