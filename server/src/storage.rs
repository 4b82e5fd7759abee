//! Storage behind two traits: [`Metadata`] (projects, API keys, which blobs
//! a project holds, eval records) and [`Blobs`] (content-addressed bytes).
//!
//! The embedded default is [`SqliteMetadata`] + [`DirBlobs`]: one SQLite file
//! and one directory, so `hitsave serve` works with no setup. Both traits are
//! synchronous and `Send + Sync`; the HTTP layer calls them on tokio's
//! blocking pool.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// A project's id.
pub type ProjectId = i64;

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Look up and download.
    Read,
    /// Also upload and manage keys.
    ReadWrite,
}

impl Scope {
    /// The spelling in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::ReadWrite => "read-write",
        }
    }

    /// Parses `read` or `read-write`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Self::Read),
            "read-write" => Some(Self::ReadWrite),
            _ => None,
        }
    }
}

/// An API key as stored: the secret only as its BLAKE3.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    /// Public id (the `<id>` of `hs_<id>_<secret>`).
    pub id: String,
    /// The project it belongs to.
    pub project: ProjectId,
    /// What it may do.
    pub scope: Scope,
    /// A label for people.
    pub name: String,
    /// BLAKE3 of the secret.
    pub secret_hash: [u8; 32],
    /// Seconds since the epoch.
    pub created: u64,
    /// Revoked keys authenticate nothing.
    pub revoked: bool,
}

/// An eval record: a key mapped to a content-addressed result (the
/// protocol's, shared with the client).
pub use hitsave_protocol::Eval;

/// Projects, keys, blob ownership and eval records.
pub trait Metadata: Send + Sync {
    /// Whether the storage answers (the health check asks).
    fn ping(&self) -> Result<(), ApiError>;
    /// Creates a project.
    fn create_project(&self, name: &str) -> Result<ProjectId, ApiError>;
    /// A project's name.
    fn project_name(&self, project: ProjectId) -> Result<Option<String>, ApiError>;
    /// Stores a new key.
    fn add_key(&self, key: &KeyRecord) -> Result<(), ApiError>;
    /// A key by id.
    fn key(&self, id: &str) -> Result<Option<KeyRecord>, ApiError>;
    /// A project's keys.
    fn keys(&self, project: ProjectId) -> Result<Vec<KeyRecord>, ApiError>;
    /// Revokes a key; `false` if the project has no such key.
    fn revoke_key(&self, project: ProjectId, id: &str) -> Result<bool, ApiError>;
    /// Records that a project holds a blob (after its bytes are stored).
    fn add_blob(&self, project: ProjectId, digest: &str, size: u64) -> Result<(), ApiError>;
    /// The size of a blob the project holds.
    fn blob_size(&self, project: ProjectId, digest: &str) -> Result<Option<u64>, ApiError>;
    /// The bytes of every blob a project holds (for its quota).
    fn project_bytes(&self, project: ProjectId) -> Result<u64, ApiError>;
    /// Stores evals whose keys are new; `true` per eval that was stored, `false` when the key existed.
    fn put_evals(&self, project: ProjectId, evals: &[Eval]) -> Result<Vec<bool>, ApiError>;
    /// The evals the project has among `keys`.
    fn get_evals(&self, project: ProjectId, keys: &[String]) -> Result<Vec<Eval>, ApiError>;
    /// A function's evals ordered by key, after `after`, at most `limit`.
    fn list_evals(
        &self,
        project: ProjectId,
        function_name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Eval>, ApiError>;
}

/// Content-addressed bytes. Digests are `blob1_<hex>` of the content.
pub trait Blobs: Send + Sync {
    /// A directory for upload temporaries on the same filesystem as [`Blobs::put_file`] wants.
    fn temp_dir(&self) -> PathBuf;
    /// Takes a complete, verified temporary file as the blob `digest` (atomically).
    fn put_file(&self, digest: &str, file: &Path) -> Result<(), ApiError>;
    /// Whether the bytes of `digest` are stored.
    fn exists(&self, digest: &str) -> Result<bool, ApiError>;
    /// Reads `len` bytes from `start`.
    fn read_range(&self, digest: &str, start: u64, len: u64) -> Result<Box<dyn Read + Send>, ApiError>;
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Metadata in one SQLite file (WAL), for one server process.
pub struct SqliteMetadata {
    connection: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    project INTEGER NOT NULL REFERENCES projects(id),
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS blobs (
    project INTEGER NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (project, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evals (
    project INTEGER NOT NULL,
    key TEXT NOT NULL,
    function_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    language TEXT NOT NULL,
    arguments TEXT NOT NULL,
    codec TEXT NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    compute_micros INTEGER NOT NULL,
    signature TEXT,
    graph TEXT,
    created INTEGER NOT NULL,
    PRIMARY KEY (project, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS evals_by_function ON evals(project, function_name, key);
";

impl SqliteMetadata {
    /// Opens (or creates) `path`.
    pub fn open(path: &Path) -> Result<Self, ApiError> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // An acknowledged write survives the server process being killed (and, with FULL, power loss).
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(SCHEMA)?;
        Ok(Self { connection: Mutex::new(connection) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, ApiError> {
        let mut connection = self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(f(&mut connection)?)
    }
}

fn eval_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Eval> {
    Ok(Eval {
        key: row.get(0)?,
        function_id: row.get(1)?,
        function_name: row.get(2)?,
        language: row.get(3)?,
        arguments: row.get(4)?,
        codec: row.get(5)?,
        blob: row.get(6)?,
        size: row.get::<_, i64>(7)? as u64,
        compute_micros: row.get::<_, i64>(8)? as u64,
        signature: row.get(9)?,
        graph: row.get(10)?,
        created: row.get::<_, i64>(11)? as u64,
    })
}

const EVAL_COLUMNS: &str = "key, function_id, function_name, language, arguments, codec, blob, size, compute_micros, signature, graph, created";

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    let scope: String = row.get(2)?;
    let hash: Vec<u8> = row.get(4)?;
    let mut secret_hash = [0u8; 32];
    if hash.len() == 32 {
        secret_hash.copy_from_slice(&hash);
    }
    Ok(KeyRecord {
        id: row.get(0)?,
        project: row.get(1)?,
        scope: Scope::parse(&scope).unwrap_or(Scope::Read),
        name: row.get(3)?,
        secret_hash,
        created: row.get::<_, i64>(5)? as u64,
        revoked: row.get::<_, i64>(6)? != 0,
    })
}

impl Metadata for SqliteMetadata {
    fn ping(&self) -> Result<(), ApiError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    fn create_project(&self, name: &str) -> Result<ProjectId, ApiError> {
        self.with(|c| {
            c.execute("INSERT INTO projects (name, created) VALUES (?1, ?2)", params![name, now() as i64])?;
            Ok(c.last_insert_rowid())
        })
    }

    fn project_name(&self, project: ProjectId) -> Result<Option<String>, ApiError> {
        self.with(|c| {
            c.query_row("SELECT name FROM projects WHERE id = ?1", params![project], |row| row.get(0)).optional()
        })
    }

    fn add_key(&self, key: &KeyRecord) -> Result<(), ApiError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO api_keys (id, project, scope, name, secret_hash, created, revoked) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
                params![key.id, key.project, key.scope.as_str(), key.name, &key.secret_hash[..], key.created as i64],
            )?;
            Ok(())
        })
    }

    fn key(&self, id: &str) -> Result<Option<KeyRecord>, ApiError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT id, project, scope, name, secret_hash, created, revoked FROM api_keys WHERE id = ?1",
            )?
            .query_row(params![id], key_from_row)
            .optional()
        })
    }

    fn keys(&self, project: ProjectId) -> Result<Vec<KeyRecord>, ApiError> {
        self.with(|c| {
            c.prepare(
                "SELECT id, project, scope, name, secret_hash, created, revoked FROM api_keys WHERE project = ?1 ORDER BY created, id",
            )?
            .query_map(params![project], key_from_row)?
            .collect()
        })
    }

    fn revoke_key(&self, project: ProjectId, id: &str) -> Result<bool, ApiError> {
        self.with(|c| {
            Ok(c.execute("UPDATE api_keys SET revoked = 1 WHERE project = ?1 AND id = ?2", params![project, id])? > 0)
        })
    }

    fn add_blob(&self, project: ProjectId, digest: &str, size: u64) -> Result<(), ApiError> {
        self.with(|c| {
            c.prepare_cached("INSERT INTO blobs (project, digest, size) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")?
                .execute(params![project, digest, size as i64])?;
            Ok(())
        })
    }

    fn blob_size(&self, project: ProjectId, digest: &str) -> Result<Option<u64>, ApiError> {
        self.with(|c| {
            c.prepare_cached("SELECT size FROM blobs WHERE project = ?1 AND digest = ?2")?
                .query_row(params![project, digest], |row| row.get::<_, i64>(0).map(|size| size as u64))
                .optional()
        })
    }

    fn project_bytes(&self, project: ProjectId) -> Result<u64, ApiError> {
        self.with(|c| {
            c.query_row("SELECT COALESCE(SUM(size), 0) FROM blobs WHERE project = ?1", [project], |row| {
                row.get::<_, i64>(0)
            })
        })
        .map(|bytes| bytes as u64)
    }

    fn put_evals(&self, project: ProjectId, evals: &[Eval]) -> Result<Vec<bool>, ApiError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let mut stored = Vec::with_capacity(evals.len());
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO evals (project, key, function_id, function_name, language, arguments, codec, blob, size,
                        compute_micros, signature, graph, created)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT DO NOTHING",
                )?;
                for eval in evals {
                    let changed = insert.execute(params![
                        project,
                        eval.key,
                        eval.function_id,
                        eval.function_name,
                        eval.language,
                        eval.arguments,
                        eval.codec,
                        eval.blob,
                        eval.size as i64,
                        eval.compute_micros as i64,
                        eval.signature,
                        eval.graph,
                        now() as i64
                    ])?;
                    stored.push(changed > 0);
                }
            }
            tx.commit()?;
            Ok(stored)
        })
    }

    fn get_evals(&self, project: ProjectId, keys: &[String]) -> Result<Vec<Eval>, ApiError> {
        self.with(|c| {
            let mut select =
                c.prepare_cached(&format!("SELECT {EVAL_COLUMNS} FROM evals WHERE project = ?1 AND key = ?2"))?;
            let mut found = Vec::new();
            for key in keys {
                if let Some(eval) = select.query_row(params![project, key], eval_from_row).optional()? {
                    found.push(eval);
                }
            }
            Ok(found)
        })
    }

    fn list_evals(
        &self,
        project: ProjectId,
        function_name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Eval>, ApiError> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "SELECT {EVAL_COLUMNS} FROM evals WHERE project = ?1 AND function_name = ?2 AND key > ?3 ORDER BY key LIMIT ?4"
            ))?
            .query_map(params![project, function_name, after.unwrap_or(""), limit as i64], eval_from_row)?
            .collect()
        })
    }
}

/// Blobs as files in a directory: `blobs/ab/<hex>`, written by rename.
pub struct DirBlobs {
    root: PathBuf,
}

impl DirBlobs {
    /// Uses (and creates) `root`.
    pub fn open(root: &Path) -> Result<Self, ApiError> {
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(Self { root: root.to_path_buf() })
    }

    fn path(&self, digest: &str) -> Result<PathBuf, ApiError> {
        let hex =
            digest.strip_prefix("blob1_").filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        let hex = hex.ok_or_else(|| ApiError::bad_request(format!("not a blob digest: {digest:?}")))?;
        Ok(self.root.join("blobs").join(&hex[..2]).join(hex))
    }
}

impl Blobs for DirBlobs {
    fn temp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn put_file(&self, digest: &str, file: &Path) -> Result<(), ApiError> {
        let path = self.path(digest)?;
        if path.exists() {
            std::fs::remove_file(file)?;
            return Ok(());
        }
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        std::fs::rename(file, &path)?;
        // The rename is durable before the upload is acknowledged.
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    fn exists(&self, digest: &str) -> Result<bool, ApiError> {
        Ok(self.path(digest)?.is_file())
    }

    fn read_range(&self, digest: &str, start: u64, len: u64) -> Result<Box<dyn Read + Send>, ApiError> {
        let mut file = std::fs::File::open(self.path(digest)?)
            .map_err(|_| ApiError::not_found(format!("blob {digest} is not stored")))?;
        file.seek(SeekFrom::Start(start))?;
        Ok(Box::new(file.take(len)))
    }
}

/// A small tokio runtime of a storage backend's own: the [`Metadata`] and
/// [`Blobs`] traits are synchronous (their callers run on tokio's blocking
/// pool), so an async client (the PostgreSQL pool, the object store) runs
/// here and each call blocks on it.
pub struct SideRuntime(Option<tokio::runtime::Runtime>);

impl SideRuntime {
    /// One worker thread named `name`.
    pub fn new(name: &str, what: &str) -> Result<Self, ApiError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|err| ApiError::internal(format!("{what} runtime: {err}")))?;
        Ok(Self(Some(runtime)))
    }

    /// The runtime (it lives until this is dropped).
    pub fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime lives until it is dropped")
    }
}

impl Drop for SideRuntime {
    fn drop(&mut self) {
        // A server's state may be dropped on an async worker, where dropping
        // a runtime (which waits for its tasks) is forbidden.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
