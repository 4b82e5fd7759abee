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
    /// In the same transaction each eval's blob row is touched (so the collector, which drops rows
    /// untouched for its grace period, cannot drop it under the eval); a blob the project no longer
    /// holds fails the whole batch with `409 blob_missing`.
    fn put_evals(&self, project: ProjectId, evals: &[Eval]) -> Result<Vec<bool>, ApiError>;
    /// The evals the project has among `keys`; a found eval last used before `touch_before`
    /// (seconds since the epoch) is marked used now (retention is by least-recent use).
    fn get_evals(&self, project: ProjectId, keys: &[String], touch_before: u64) -> Result<Vec<Eval>, ApiError>;
    /// Removes the evals last used (looked up or stored) before `before`; how many.
    fn expire_evals(&self, before: u64) -> Result<u64, ApiError>;
    /// Drops the blob rows no eval of their project names and no upload or eval touched since
    /// `before` (a blob uploaded for an eval still to come is kept for the grace period); how many.
    fn drop_unnamed_blobs(&self, before: u64) -> Result<u64, ApiError>;
    /// Whether any project holds `digest`.
    fn blob_held(&self, digest: &str) -> Result<bool, ApiError>;
    /// A function's evals ordered by key, after `after`, at most `limit`.
    fn list_evals(
        &self,
        project: ProjectId,
        function_name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Eval>, ApiError>;
}

/// A blob's bytes as they arrive from where they are stored ([`Blobs::stream_range`]).
pub type BlobStream = futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// A blob sent to its store while the client is still uploading it
/// ([`Blobs::begin_upload`]): the store's part of the work overlaps the
/// receiving instead of following it. Nothing is visible under the digest
/// until [`Upload::finish`], called once the bytes are verified; dropped
/// unfinished (a digest mismatch, a timeout, a client gone), the upload is
/// aborted.
pub struct Upload {
    chunks: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    commit: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), ApiError>>,
}

impl Upload {
    /// An upload whose bytes `store` receives from a channel on `runtime`:
    /// it gets every chunk, then `true` to make them visible or `false` to
    /// abort (when the upload is dropped unfinished).
    pub fn spawn<F>(runtime: &tokio::runtime::Runtime, store: impl FnOnce(Receiver) -> F) -> Self
    where
        F: std::future::Future<Output = Result<(), ApiError>> + Send + 'static,
    {
        let (chunks, receiver) = tokio::sync::mpsc::channel(64);
        let (commit, committed) = tokio::sync::oneshot::channel();
        let done = runtime.spawn(store(Receiver { chunks: receiver, committed }));
        Self { chunks: Some(chunks), commit: Some(commit), done }
    }

    /// Passes `chunk` on (waiting while the store is behind).
    pub async fn write(&mut self, chunk: bytes::Bytes) -> Result<(), ApiError> {
        let sent = match &self.chunks {
            Some(chunks) => chunks.send(chunk).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The store stopped taking bytes: its error says why.
        self.chunks = None;
        self.commit = None;
        match self.outcome().await {
            Err(err) => Err(err),
            Ok(()) => Err(ApiError::internal("the blob store stopped an upload without an error")),
        }
    }

    /// What the store's task ended with.
    async fn outcome(&mut self) -> Result<(), ApiError> {
        (&mut self.done).await.map_err(|err| ApiError::internal(format!("blob upload: {err}")))?
    }

    /// Makes the bytes visible under the digest; returns once they are stored.
    pub async fn finish(mut self) -> Result<(), ApiError> {
        self.chunks = None;
        if let Some(commit) = self.commit.take() {
            let _ = commit.send(());
        }
        self.outcome().await
    }
}

/// The store's end of an [`Upload`].
pub struct Receiver {
    chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    committed: tokio::sync::oneshot::Receiver<()>,
}

impl Receiver {
    /// The next chunk; `None` once the upload sent them all (or was dropped).
    pub async fn next(&mut self) -> Option<bytes::Bytes> {
        self.chunks.recv().await
    }

    /// After the last chunk: whether the bytes are to be made visible (`false`: abort).
    pub async fn committed(self) -> bool {
        self.committed.await.is_ok()
    }
}

/// Content-addressed bytes. Digests are `blob1_<hex>` of the content.
///
/// The collector removes an object in three steps, so an upload racing it
/// never loses its bytes: [`Blobs::hide`] (the object is gone from its
/// place), then it asks the metadata whether a project holds the digest, then
/// [`Blobs::purge`] or [`Blobs::restore`]. An upload records its row first
/// and then checks the object is in place (storing it again if not), so one
/// of the two always sees the other.
pub trait Blobs: Send + Sync {
    /// A directory for upload temporaries on the same filesystem as [`Blobs::put_file`] wants.
    fn temp_dir(&self) -> PathBuf;
    /// Stores a complete, verified temporary file as the blob `digest`
    /// (atomically; nothing if it is stored). The file stays where it is: the
    /// caller removes it (and may store it again if the object was collected
    /// meanwhile).
    fn put_file(&self, digest: &str, file: &Path) -> Result<(), ApiError>;
    /// An upload of `digest` streamed to the store as it is received, for a
    /// store whose writes are slow enough to be worth overlapping (an object
    /// store); `None` when it takes the verified temporary file
    /// ([`Blobs::put_file`]), or when the digest is already stored.
    fn begin_upload(&self, _digest: &str) -> Result<Option<Upload>, ApiError> {
        Ok(None)
    }
    /// Whether the bytes of `digest` are stored.
    fn exists(&self, digest: &str) -> Result<bool, ApiError>;
    /// Reads `len` bytes from `start`.
    fn read_range(&self, digest: &str, start: u64, len: u64) -> Result<Box<dyn Read + Send>, ApiError>;
    /// The same bytes as the chunks the store sends them in, to pass on as
    /// they come (an object store's response: no thread blocked on it, no
    /// copy); `None` when the store is read with [`Blobs::read_range`].
    fn stream_range(&self, _digest: &str, _start: u64, _len: u64) -> Result<Option<BlobStream>, ApiError> {
        Ok(None)
    }
    /// The digests stored, in batches, whose object was written before `before`.
    fn stored_before(
        &self,
        before: std::time::SystemTime,
        batch: &mut dyn FnMut(Vec<String>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError>;
    /// Moves an object out of its place into the collector's holding area; `false` if it was absent.
    fn hide(&self, digest: &str) -> Result<bool, ApiError>;
    /// Puts a hidden object back (a project holds it after all).
    fn restore(&self, digest: &str) -> Result<(), ApiError>;
    /// Deletes a hidden object.
    fn purge(&self, digest: &str) -> Result<(), ApiError>;
    /// The digests in the holding area (left by a collector that was stopped between its steps).
    fn hidden(&self) -> Result<Vec<String>, ApiError>;
    /// Whether the store answers (the readiness check asks): a look-up of a blob no one stores.
    fn ping(&self) -> Result<(), ApiError> {
        self.exists(&format!("blob1_{}", "0".repeat(64))).map(drop)
    }
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Metadata in one SQLite file (WAL), for one server process: one
/// connection writes, a few others read, so lookups never wait for a write
/// transaction (and its fsync) to finish.
pub struct SqliteMetadata {
    connection: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
}

/// Read connections per SQLite metadata file.
const READERS: usize = 4;

/// The schema's versions in order: `PRAGMA user_version` says how many were
/// applied. Version 1 is the schema before versions were recorded (so it
/// creates only what is missing); never edit a published step, add one.
const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2];

/// Retention and the collector: when an eval was last used, when a blob row
/// was last touched (uploads and evals naming it), and the indexes they need.
const SCHEMA_V2: &str = "
ALTER TABLE evals ADD COLUMN used INTEGER NOT NULL DEFAULT 0;
UPDATE evals SET used = created;
ALTER TABLE blobs ADD COLUMN touched INTEGER NOT NULL DEFAULT 0;
UPDATE blobs SET touched = CAST(strftime('%s', 'now') AS INTEGER);
CREATE INDEX evals_by_use ON evals(used);
CREATE INDEX evals_by_blob ON evals(project, blob);
CREATE INDEX blobs_by_digest ON blobs(digest);
";

const SCHEMA_V1: &str = "
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
        let mut connection = connection;
        migrate(&mut connection)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open(path)?;
                reader.busy_timeout(std::time::Duration::from_secs(10))?;
                reader.pragma_update(None, "query_only", true)?;
                Ok(Mutex::new(reader))
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Self { connection: Mutex::new(connection), readers, next_reader: Default::default() })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, ApiError> {
        let mut connection = self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(f(&mut connection)?)
    }

    /// Runs a read on a read connection: a free one if any, else the next in turn.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, ApiError> {
        let start = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let free = (0..self.readers.len()).find_map(|i| self.readers[(start + i) % self.readers.len()].try_lock().ok());
        let connection = match free {
            Some(connection) => connection,
            None => self.readers[start % self.readers.len()].lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
        Ok(f(&connection)?)
    }
}

/// Applies the steps of [`MIGRATIONS`] the file has not seen, each in its own
/// transaction (a server stopped mid-way resumes); a file written by a newer
/// server is refused rather than misread.
fn migrate(connection: &mut Connection) -> Result<(), ApiError> {
    let applied: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if applied > known {
        return Err(ApiError::internal(format!(
            "the metadata has schema version {applied}, newer than this server's {known}: run a newer hitsave-server"
        )));
    }
    for (version, step) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let tx = connection.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
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

/// `409 blob_missing`: the eval's blob is not (or no longer) the project's.
pub(crate) fn blob_missing(eval: &Eval) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "blob_missing",
        format!("{}: upload blob {} first", eval.key, eval.blob),
    )
}

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
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    fn create_project(&self, name: &str) -> Result<ProjectId, ApiError> {
        self.with(|c| {
            c.execute("INSERT INTO projects (name, created) VALUES (?1, ?2)", params![name, now() as i64])?;
            Ok(c.last_insert_rowid())
        })
    }

    fn project_name(&self, project: ProjectId) -> Result<Option<String>, ApiError> {
        self.read(|c| {
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
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, project, scope, name, secret_hash, created, revoked FROM api_keys WHERE id = ?1",
            )?
            .query_row(params![id], key_from_row)
            .optional()
        })
    }

    fn keys(&self, project: ProjectId) -> Result<Vec<KeyRecord>, ApiError> {
        self.read(|c| {
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
            c.prepare_cached(
                "INSERT INTO blobs (project, digest, size, touched) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO UPDATE SET touched = excluded.touched",
            )?
            .execute(params![project, digest, size as i64, now() as i64])?;
            Ok(())
        })
    }

    fn blob_size(&self, project: ProjectId, digest: &str) -> Result<Option<u64>, ApiError> {
        self.read(|c| {
            c.prepare_cached("SELECT size FROM blobs WHERE project = ?1 AND digest = ?2")?
                .query_row(params![project, digest], |row| row.get::<_, i64>(0).map(|size| size as u64))
                .optional()
        })
    }

    fn project_bytes(&self, project: ProjectId) -> Result<u64, ApiError> {
        self.read(|c| {
            c.query_row("SELECT COALESCE(SUM(size), 0) FROM blobs WHERE project = ?1", [project], |row| {
                row.get::<_, i64>(0)
            })
        })
        .map(|bytes| bytes as u64)
    }

    fn put_evals(&self, project: ProjectId, evals: &[Eval]) -> Result<Vec<bool>, ApiError> {
        self.with(|c| -> rusqlite::Result<Result<Vec<bool>, ApiError>> {
            let tx = c.transaction()?;
            let mut stored = Vec::with_capacity(evals.len());
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO evals (project, key, function_id, function_name, language, arguments, codec, blob, size,
                        compute_micros, signature, graph, created, used)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13) ON CONFLICT DO NOTHING",
                )?;
                let mut touch =
                    tx.prepare_cached("UPDATE blobs SET touched = ?3 WHERE project = ?1 AND digest = ?2")?;
                for eval in evals {
                    if touch.execute(params![project, eval.blob, now() as i64])? == 0 {
                        return Ok(Err(blob_missing(eval)));
                    }
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
            Ok(Ok(stored))
        })?
    }

    fn get_evals(&self, project: ProjectId, keys: &[String], touch_before: u64) -> Result<Vec<Eval>, ApiError> {
        let (found, stale) = self.read(|c| {
            let mut found = Vec::new();
            let mut stale = Vec::new();
            let mut select =
                c.prepare_cached(&format!("SELECT {EVAL_COLUMNS}, used FROM evals WHERE project = ?1 AND key = ?2"))?;
            for key in keys {
                let row = select
                    .query_row(params![project, key], |row| Ok((eval_from_row(row)?, row.get::<_, i64>(12)?)))
                    .optional()?;
                if let Some((eval, used)) = row {
                    if (used as u64) < touch_before {
                        stale.push(eval.key.clone());
                    }
                    found.push(eval);
                }
            }
            Ok((found, stale))
        })?;
        if !stale.is_empty() {
            self.with(|c| {
                let tx = c.transaction()?;
                {
                    let mut touch = tx.prepare_cached("UPDATE evals SET used = ?3 WHERE project = ?1 AND key = ?2")?;
                    for key in &stale {
                        touch.execute(params![project, key, now() as i64])?;
                    }
                }
                tx.commit()
            })?;
        }
        Ok(found)
    }
    fn expire_evals(&self, before: u64) -> Result<u64, ApiError> {
        self.with(|c| c.execute("DELETE FROM evals WHERE used < ?1", [before as i64])).map(|n| n as u64)
    }

    fn drop_unnamed_blobs(&self, before: u64) -> Result<u64, ApiError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM blobs WHERE touched < ?1 AND NOT EXISTS
                    (SELECT 1 FROM evals WHERE evals.project = blobs.project AND evals.blob = blobs.digest)",
                [before as i64],
            )
        })
        .map(|n| n as u64)
    }

    fn blob_held(&self, digest: &str) -> Result<bool, ApiError> {
        self.read(|c| {
            c.prepare_cached("SELECT 1 FROM blobs WHERE digest = ?1 LIMIT 1")?
                .query_row([digest], |_| Ok(()))
                .optional()
        })
        .map(|row| row.is_some())
    }

    fn list_evals(
        &self,
        project: ProjectId,
        function_name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Eval>, ApiError> {
        self.read(|c| {
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

    /// Where the collector holds an object between hiding and purging it.
    fn held(&self, digest: &str) -> Result<PathBuf, ApiError> {
        let path = self.path(digest)?;
        Ok(self.root.join("collected").join(path.file_name().unwrap_or_default()))
    }
}

impl Blobs for DirBlobs {
    fn temp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn put_file(&self, digest: &str, file: &Path) -> Result<(), ApiError> {
        let path = self.path(digest)?;
        if path.exists() {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        // A link, not a rename: the temporary stays for the caller (who may
        // need it again), and an object stored meanwhile is not replaced.
        match std::fs::hard_link(file, &path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(err) => return Err(err.into()),
        }
        // The link is durable before the upload is acknowledged.
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

    fn stored_before(
        &self,
        before: std::time::SystemTime,
        batch: &mut dyn FnMut(Vec<String>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        // One batch per fan-out directory (`blobs/ab/`): memory stays bounded.
        for dir in std::fs::read_dir(self.root.join("blobs"))? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            let mut digests = Vec::new();
            for entry in std::fs::read_dir(dir.path())? {
                let entry = entry?;
                let name = entry.file_name();
                let Some(hex) = name.to_str() else { continue };
                let digest = format!("blob1_{hex}");
                if self.path(&digest).is_err() {
                    continue;
                }
                // A file removed since the listing is someone else's collection.
                let Ok(metadata) = entry.metadata() else { continue };
                if metadata.modified()? < before {
                    digests.push(digest);
                }
            }
            if !digests.is_empty() {
                batch(digests)?;
            }
        }
        Ok(())
    }

    fn hide(&self, digest: &str) -> Result<bool, ApiError> {
        let path = self.path(digest)?;
        let held = self.held(digest)?;
        std::fs::create_dir_all(held.parent().unwrap_or(&self.root))?;
        match std::fs::rename(&path, &held) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    fn restore(&self, digest: &str) -> Result<(), ApiError> {
        let path = self.path(digest)?;
        std::fs::create_dir_all(path.parent().unwrap_or(&self.root))?;
        // Content-addressed: replacing a copy stored meanwhile changes no byte.
        std::fs::rename(self.held(digest)?, &path)?;
        Ok(())
    }

    fn purge(&self, digest: &str) -> Result<(), ApiError> {
        match std::fs::remove_file(self.held(digest)?) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.into()),
            _ => Ok(()),
        }
    }

    fn ping(&self) -> Result<(), ApiError> {
        if self.root.join("blobs").is_dir() {
            Ok(())
        } else {
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, "the blob directory is gone").into())
        }
    }

    fn hidden(&self) -> Result<Vec<String>, ApiError> {
        let mut digests = Vec::new();
        let dir = self.root.join("collected");
        if !dir.is_dir() {
            return Ok(digests);
        }
        for entry in std::fs::read_dir(dir)? {
            if let Some(hex) = entry?.file_name().to_str() {
                let digest = format!("blob1_{hex}");
                if self.path(&digest).is_ok() {
                    digests.push(digest);
                }
            }
        }
        Ok(digests)
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
