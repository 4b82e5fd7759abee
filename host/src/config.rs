//! Configuration: environment variables over `hitsave.toml` over defaults.
//!
//! `docs/configuration.md` is the one table of every setting; keep it in step.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{HitSaveError, Result};

/// How HitSave uses its caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Call functions directly; read and write nothing.
    Off,
    /// Read and write the local store only.
    Local,
    /// Local store plus the cloud server.
    Cloud,
    /// Read the caches, never write them.
    ReadOnly,
}

impl Mode {
    fn parse(text: &str, origin: &str) -> Result<Self> {
        match text {
            "off" => Ok(Self::Off),
            "local" => Ok(Self::Local),
            "cloud" => Ok(Self::Cloud),
            "read-only" => Ok(Self::ReadOnly),
            other => Err(HitSaveError::ConfigInvalid(format!(
                "{origin}: mode must be off, local, cloud or read-only, got {other:?}"
            ))),
        }
    }

    /// The spelling used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Local => "local",
            Self::Cloud => "cloud",
            Self::ReadOnly => "read-only",
        }
    }
}

/// Resolved configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The local store directory, shared by every language and the CLI.
    pub cache_dir: PathBuf,
    /// Size budget of the local store in bytes; kept automatically.
    pub max_size: u64,
    /// Cache mode.
    pub mode: Mode,
    /// Whether blob files and the index are fsynced before a put returns.
    pub fsync: bool,
    /// Results up to this many bytes are stored inside the index.
    pub inline_limit: u64,
    /// The `hitsave.toml` that was read, if any.
    pub config_file: Option<PathBuf>,
    /// The cloud server's base URL.
    pub cloud_url: Option<String>,
    /// The API key for the cloud server.
    pub api_key: Option<String>,
    /// The project's signing secret for language-only results in the cloud.
    pub signing_key: Option<String>,
    /// How long a process waits at exit for its queued uploads.
    pub upload_wait: std::time::Duration,
    /// How long a call waits for another process or thread computing the
    /// same key before computing it too (zero: no compute locks).
    pub lock_wait: std::time::Duration,
    /// How long a small cloud request (a lookup on a call's path, an
    /// existence check, an eval upload) may take before the server counts as
    /// unreachable.
    pub cloud_timeout: std::time::Duration,
}

/// Default wait for another computation of the same key.
pub const DEFAULT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Default limit on a small cloud request.
pub const DEFAULT_CLOUD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Default wait at exit for queued uploads.
pub const DEFAULT_UPLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where `hitsave login` keeps API keys: `$XDG_CONFIG_HOME/hitsave/credentials.toml`
/// (or `~/.config/hitsave/credentials.toml`).
pub fn credentials_file() -> Option<PathBuf> {
    env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".config")))
        .map(|dir| dir.join("hitsave").join("credentials.toml"))
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
/// The credentials file: an API key per server URL.
pub struct Credentials {
    /// The server `hitsave login` last logged in to: the default cloud URL.
    #[serde(default)]
    pub current: Option<String>,
    /// Server URL to its API key.
    #[serde(default)]
    pub servers: std::collections::BTreeMap<String, ServerCredentials>,
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
/// What is kept for one server.
pub struct ServerCredentials {
    /// The API key.
    pub api_key: String,
}

impl Credentials {
    /// Reads the credentials file (empty when there is none).
    pub fn load() -> Result<Self> {
        let Some(path) = credentials_file() else { return Ok(Self::default()) };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str(&text).map_err(|err| HitSaveError::ConfigInvalid(format!("{}: {err}", path.display())))
            }
            Err(_) => Ok(Self::default()),
        }
    }

    /// Writes the file (readable by its owner only), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |err: std::io::Error| HitSaveError::ConfigInvalid(format!("cannot write {}: {err}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = toml::to_string(self).map_err(|err| HitSaveError::ConfigInvalid(err.to_string()))?;
        let temp = path.with_extension("toml.tmp");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)
                .map_err(io)?;
            file.write_all(text.as_bytes()).map_err(io)?;
        }
        std::fs::rename(&temp, path).map_err(io)
    }
}

/// Default budget: 10 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 10 << 30;
/// Default inline limit: 64 KiB.
pub const DEFAULT_INLINE_LIMIT: u64 = 64 << 10;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    cache_dir: Option<PathBuf>,
    max_size: Option<SizeValue>,
    mode: Option<String>,
    fsync: Option<bool>,
    inline_limit: Option<SizeValue>,
    cloud_url: Option<String>,
    api_key: Option<String>,
    signing_key: Option<String>,
    upload_wait: Option<u64>,
    lock_wait: Option<u64>,
    cloud_timeout: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    fn bytes(&self, origin: &str) -> Result<u64> {
        match self {
            Self::Bytes(bytes) => Ok(*bytes),
            Self::Text(text) => parse_size(text).map_err(|err| HitSaveError::ConfigInvalid(format!("{origin}: {err}"))),
        }
    }
}

/// Parses a size: a number of bytes with an optional unit (`B`, `KB`, `MB`,
/// `GB`, `TB` in powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` in powers of 1024;
/// `K`, `M`, `G`, `T` as the binary ones). Spaces and case are ignored.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    let split = compact.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(compact.len());
    let (number, unit) = compact.split_at(split);
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u64.pow(2),
        "gb" => 1000_u64.pow(3),
        "tb" => 1000_u64.pow(4),
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(format!("unknown size unit in {text:?}")),
    };
    let value: f64 = number.parse().map_err(|_| format!("not a size: {text:?}"))?;
    if !value.is_finite() || value < 0.0 || value * multiplier as f64 > u64::MAX as f64 {
        return Err(format!("not a size: {text:?}"));
    }
    Ok((value * multiplier as f64).round() as u64)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The `hitsave.toml` to read: `$HITSAVE_CONFIG`, else the nearest
/// `hitsave.toml` from the current directory upwards, else
/// `$XDG_CONFIG_HOME/hitsave/hitsave.toml` (or `~/.config/...`) if it exists.
pub fn config_file() -> Option<PathBuf> {
    if let Some(path) = env("HITSAVE_CONFIG") {
        return Some(PathBuf::from(path));
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            let candidate = dir.join("hitsave.toml");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let user = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".config")))?
        .join("hitsave/hitsave.toml");
    user.is_file().then_some(user)
}

impl Config {
    /// Reads the environment and the `hitsave.toml` [`config_file`] finds.
    pub fn load() -> Result<Self> {
        Self::load_from(config_file().as_deref())
    }

    /// Reads the environment and, if given, one `hitsave.toml`.
    pub fn load_from(file: Option<&Path>) -> Result<Self> {
        let parsed: FileConfig = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|err| HitSaveError::ConfigInvalid(format!("cannot read {}: {err}", path.display())))?;
                toml::from_str(&text)
                    .map_err(|err| HitSaveError::ConfigInvalid(format!("{}: {err}", path.display())))?
            }
            None => FileConfig::default(),
        };
        let origin = |key: &str| match file {
            Some(path) => format!("{} ({key})", path.display()),
            None => key.to_owned(),
        };
        // A relative cache_dir in a file is relative to that file.
        let file_cache_dir = parsed.cache_dir.map(|dir| match file.and_then(Path::parent) {
            Some(base) if dir.is_relative() => base.join(dir),
            _ => dir,
        });
        let cache_dir = env("HITSAVE_CACHE_DIR")
            .map(PathBuf::from)
            .or(file_cache_dir)
            .or_else(crate::paths::cache_dir)
            .ok_or_else(|| HitSaveError::ConfigInvalid("no cache directory: set HITSAVE_CACHE_DIR or HOME".into()))?;
        let max_size = match env("HITSAVE_MAX_SIZE") {
            Some(text) => {
                parse_size(&text).map_err(|err| HitSaveError::ConfigInvalid(format!("HITSAVE_MAX_SIZE: {err}")))?
            }
            None => match &parsed.max_size {
                Some(value) => value.bytes(&origin("max_size"))?,
                None => DEFAULT_MAX_SIZE,
            },
        };
        let mode = match env("HITSAVE_MODE") {
            Some(text) => Some(Mode::parse(&text, "HITSAVE_MODE")?),
            None => match &parsed.mode {
                Some(text) => Some(Mode::parse(text, &origin("mode"))?),
                None => None,
            },
        };
        let fsync = match env("HITSAVE_FSYNC") {
            Some(text) => match text.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                other => {
                    return Err(HitSaveError::ConfigInvalid(format!(
                        "HITSAVE_FSYNC must be true or false, got {other:?}"
                    )));
                }
            },
            None => parsed.fsync.unwrap_or(false),
        };
        let inline_limit = match &parsed.inline_limit {
            Some(value) => value.bytes(&origin("inline_limit"))?,
            None => DEFAULT_INLINE_LIMIT,
        };
        let credentials = Credentials::load()?;
        let cloud_url = env("HITSAVE_CLOUD_URL")
            .or(parsed.cloud_url)
            .or_else(|| credentials.current.clone())
            .map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &cloud_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(HitSaveError::ConfigInvalid(format!(
                "the cloud URL must start with http:// or https://, got {url:?}"
            )));
        }
        let api_key = match env("HITSAVE_API_KEY").or(parsed.api_key) {
            Some(key) => Some(key),
            None => match &cloud_url {
                Some(url) => credentials.servers.get(url).map(|server| server.api_key.clone()),
                None => None,
            },
        };
        let signing_key = env("HITSAVE_SIGNING_KEY").or(parsed.signing_key);
        // Unset, the mode is `cloud` when a server and a key are configured, else `local`.
        let mode = mode.unwrap_or(if cloud_url.is_some() && api_key.is_some() { Mode::Cloud } else { Mode::Local });
        let seconds = |name: &str, from_file: Option<u64>, default| match env(name) {
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(std::time::Duration::from_secs_f64)
                .ok_or_else(|| {
                    HitSaveError::ConfigInvalid(format!("{name} must be a number of seconds, got {text:?}"))
                }),
            None => Ok(from_file.map(std::time::Duration::from_secs).unwrap_or(default)),
        };
        let upload_wait = seconds("HITSAVE_UPLOAD_WAIT", parsed.upload_wait, DEFAULT_UPLOAD_WAIT)?;
        let lock_wait = seconds("HITSAVE_LOCK_WAIT", parsed.lock_wait, DEFAULT_LOCK_WAIT)?;
        let cloud_timeout = seconds("HITSAVE_CLOUD_TIMEOUT", parsed.cloud_timeout, DEFAULT_CLOUD_TIMEOUT)?;
        if cloud_timeout.is_zero() {
            return Err(HitSaveError::ConfigInvalid("HITSAVE_CLOUD_TIMEOUT must be more than 0 seconds".into()));
        }
        Ok(Self {
            cache_dir,
            max_size,
            mode,
            fsync,
            inline_limit,
            config_file: file.map(Path::to_path_buf),
            cloud_url,
            api_key,
            signing_key,
            upload_wait,
            lock_wait,
            cloud_timeout,
        })
    }

    /// A configuration for a store in `dir` with defaults otherwise (tests, tools).
    pub fn for_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: dir.into(),
            max_size: DEFAULT_MAX_SIZE,
            mode: Mode::Local,
            fsync: false,
            inline_limit: DEFAULT_INLINE_LIMIT,
            config_file: None,
            cloud_url: None,
            api_key: None,
            signing_key: None,
            upload_wait: DEFAULT_UPLOAD_WAIT,
            lock_wait: DEFAULT_LOCK_WAIT,
            cloud_timeout: DEFAULT_CLOUD_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("10 gb").unwrap(), 10_000_000_000);
        assert_eq!(parse_size("1.5M").unwrap(), 3 << 19);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("-1").is_err());
    }
}
