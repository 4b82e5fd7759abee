//! The local store: one directory shared by every language and the CLI.
//!
//! ```text
//! <cache dir>/
//!   index.sqlite        SQLite in WAL mode: eval records, small results inline,
//!                       dependency graphs, size accounting
//!   blobs/ab/cdef…      large results, content-addressed by their BLAKE3
//!   tmp/                blobs being written (unique names; renamed into place)
//!   locks/keys          compute locks: one byte per key being computed (Linux)
//!   locks/<key>         a key being computed, elsewhere (see `Store::lock_compute`)
//!   compiled/           the compiled core component (see `runtime`)
//! ```
//!
//! Guarantees:
//! - Every read verifies the result's BLAKE3; a mismatch (or a missing blob)
//!   is a miss, and the bad entry is removed. A torn entry is never served.
//! - Blobs are written to a unique temp file and renamed into place, so a
//!   blob file is whole or absent; its index row is inserted only after the
//!   rename. A process killed at any point leaves a store that opens and
//!   serves only whole entries.
//! - Many processes and threads read and write at once: SQLite serialises
//!   writers; blob existence checks and deletions happen inside write
//!   transactions so eviction never removes a blob a concurrent put relies on.
//!   Two processes computing the same key both succeed; the first row stays.
//!   To spare the second computation, callers take the key's compute lock
//!   ([`Store::lock_compute`]) before computing and look again once they hold it.
//! - The size budget is kept by the core's cost-aware eviction policy after
//!   every put that crosses it.
//! - Blob paths come only from validated hex digests and are opened through
//!   `cap-std`, so no path from data can leave the store directory.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use hitsave_core::graph::{Node, NodeKind};
use hitsave_core::policy::{Decline, Entry, EvictionParams, StoreParams};
use hitsave_core::{Digest, DigestKind};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Mode};
use crate::error::{HitSaveError, Result};
use crate::fork::generation as fork_generation;
use crate::payload::Payload;
use crate::runtime::Core;

mod evict;
mod hits;
mod lock;
mod outbox;
mod packed;
mod report;
mod schema;

pub use evict::GcReport;
use hits::{Flusher, PendingHits, RecentHits};
pub use lock::{ComputeLock, TryLock};
use packed::{Packed, PackedText, Unpacked};
pub use report::{FunctionSummary, Stats, VerifyReport, WhyGroup, WhyReport};
use schema::{BUSY_TIMEOUT, enable_wal, ensure_additive_tables, migrations, missing_table};

/// The schema this build writes. Older stores are migrated forward on open.
pub const SCHEMA_VERSION: i64 = 3;

/// Eviction brings the store down to this fraction of the budget, so a
/// store at its budget does not evict on every put.
pub const EVICTION_TARGET: f64 = 0.9;

/// Seven days: after this long without access an entry's worth halves.
pub const HALF_LIFE_SECONDS: u64 = 7 * 86_400;

/// The policy's reason not to store a result, in words.
fn decline_reason(decline: Decline, params: &StoreParams) -> String {
    match decline {
        Decline::OverBudget => format!("larger than the whole size budget ({} bytes)", params.budget),
        Decline::TooQuick => format!("computed in less than the minimum {} µs", params.min_compute_micros),
        Decline::CheaperToRecompute => "1 MiB or more and cheaper to compute again than to read back".to_owned(),
    }
}

/// A result the store's policy declined (see [`Store::declined`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Declined {
    /// The eval key of the declined result.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// How long it took to compute.
    pub compute_micros: u64,
    /// Why, in words (`docs/spec/policy.md`).
    pub reason: String,
    /// When, seconds since the epoch.
    pub at: u64,
}

/// Where a result's bytes live.
#[derive(Debug)]
pub enum ResultData {
    /// Small results, copied out of the index.
    Inline(Vec<u8>),
    /// Large results, memory-mapped from their blob file, copy-on-write: a
    /// caller may hand the pages out as a writable buffer (Python's numpy
    /// results use them in place) and writes stay private to this mapping,
    /// never reaching the file.
    Mapped(memmap2::MmapMut),
}

impl ResultData {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Inline(bytes) => bytes,
            Self::Mapped(map) => map,
        }
    }

    /// The bytes as a shared buffer, without copying them (a mapped
    /// result's buffer keeps its mapping).
    pub fn into_shared(self) -> bytes::Bytes {
        match self {
            Self::Inline(bytes) => bytes::Bytes::from(bytes),
            Self::Mapped(map) => bytes::Bytes::from_owner(map),
        }
    }
}

/// What a caller tells the store about a fresh result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEval {
    /// The eval key (`key2`).
    pub key: Digest,
    /// The function identity: its `code2` fingerprint, or `name@version` for an explicit one.
    pub function_id: String,
    /// The function's qualified name, for people.
    pub function_name: String,
    /// `python`, `node`, `rust`, …
    pub language: String,
    /// The `val2` digest of the arguments.
    pub arguments: Digest,
    /// The result codec (`portable`, `pickle`, `v8`, …).
    pub codec: String,
    /// How long the result took to compute.
    pub compute_micros: u64,
    /// The dependency graph the result was computed under, if known.
    pub graph: Option<Graph>,
}

/// A dependency graph with the node its function is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    /// Name of the memoized function's node.
    pub root: String,
    /// The nodes.
    pub nodes: Vec<GraphNode>,
}

/// A node of a stored graph (the serialisable twin of [`hitsave_core::graph::Node`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphNode {
    /// `function`, `class`, `constant`, `package` or `module`.
    pub kind: String,
    /// Unique name.
    pub name: String,
    /// Content digest, text form.
    pub content: String,
    /// Indices of dependencies.
    pub deps: Vec<u32>,
}

impl Graph {
    /// Converts core nodes.
    pub fn from_nodes(root: &str, nodes: &[Node]) -> Self {
        Self {
            root: root.to_owned(),
            nodes: nodes
                .iter()
                .map(|node| GraphNode {
                    kind: node.kind.as_str().to_owned(),
                    name: node.name.clone(),
                    content: node.content.to_string(),
                    deps: node.deps.clone(),
                })
                .collect(),
        }
    }

    /// Converts back to core nodes.
    pub fn to_nodes(&self) -> Result<Vec<Node>> {
        self.nodes
            .iter()
            .map(|node| {
                let kind = NodeKind::ALL.into_iter().find(|kind| kind.as_str() == node.kind).ok_or_else(|| {
                    HitSaveError::StoreDatabase(format!("stored graph has an unknown kind {:?}", node.kind))
                })?;
                Ok(Node {
                    kind,
                    name: node.name.clone(),
                    content: Digest::parse(&node.content)?,
                    deps: node.deps.clone(),
                })
            })
            .collect()
    }
}

/// A stored eval record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EvalRecord {
    /// Eval key, text form.
    pub key: String,
    /// Function identity.
    pub function_id: String,
    /// Function name.
    pub function_name: String,
    /// Language that wrote it.
    pub language: String,
    /// Argument digest, text form.
    pub arguments: String,
    /// Result codec.
    pub codec: String,
    /// Result digest (`blob1_…`).
    pub result: String,
    /// Whether the result is inline in the index.
    pub inline: bool,
    /// Result size in bytes.
    pub size: u64,
    /// Compute time in microseconds.
    pub compute_micros: u64,
    /// Created, seconds since the epoch.
    pub created: u64,
    /// Last access, seconds since the epoch.
    pub last_access: u64,
    /// Times served from the store.
    pub hits: u64,
    /// Fingerprint of the stored dependency graph, if any.
    pub graph: Option<String>,
}

/// A hit: what a caller needs to decode the result, and the verified bytes.
#[derive(Debug)]
pub struct Hit {
    /// The result codec.
    pub codec: String,
    /// The language that stored it.
    pub language: String,
    /// Whether the bytes were inline in the index.
    pub inline: bool,
    /// The result bytes, verified against the record's digest.
    pub data: ResultData,
}

/// What `put` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored.
    Stored,
    /// An entry for this key was already there (another process computed it too); it was kept.
    AlreadyPresent,
    /// Not stored: the core's policy judged it not worth it; why, in words
    /// (`docs/spec/policy.md`).
    Declined(String),
    /// Not stored: the store is read-only.
    Skipped,
}

/// A graph's fingerprint and JSON, as `graphs` keeps them.
type GraphRow = std::sync::Arc<(String, String)>;

struct Db {
    conn: Connection,
    generation: u64,
}

/// The local store. `Send + Sync`: share one per process.
pub struct Store {
    root: PathBuf,
    dir: Dir,
    db: Mutex<Option<Db>>,
    pending: Mutex<PendingHits>,
    flusher: Mutex<Option<Flusher>>,
    evictor: Mutex<Option<evict::Evictor>>,
    recent: Mutex<RecentHits>,
    /// Functions whose declined result this process recorded ([`Store::declined`]).
    declined_noted: Mutex<std::collections::HashSet<String>>,
    /// The last graph each function put, with its fingerprint and JSON
    /// ([`Store::graph_row`]): every put of a function names the same graph.
    graph_rows: Mutex<HashMap<String, (Graph, Option<GraphRow>)>>,
    max_size: AtomicU64,
    inline_limit: u64,
    fsync: bool,
    read_only: bool,
    lock_wait: Duration,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A large result arriving into the store ([`Store::incoming`]): written to
/// a temp file as it comes, kept with [`Store::put_incoming`]; dropped
/// without being kept, its file is removed.
pub struct Incoming<'s> {
    store: &'s Store,
    temp: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    len: u64,
}

impl Incoming<'_> {
    /// Appends the next bytes.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.file.write_all(chunk).map_err(|source| self.error(source))?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// How many bytes arrived.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing arrived.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes that arrived, mapped copy-on-write like a stored blob's
    /// (they stay valid once the file is kept, renamed, or removed).
    pub fn map(&mut self) -> Result<memmap2::MmapMut> {
        self.flush()?;
        if self.len == 0 {
            return Err(self.error(std::io::Error::other("an empty result is kept inline, not as a file")));
        }
        // SAFETY: the file is this store's own temp file, written only here
        // and renamed (never modified) once kept; the map is private.
        unsafe { memmap2::MmapOptions::new().map_copy(self.file.get_ref()) }.map_err(|source| self.error(source))
    }

    fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|source| self.error(source))?;
        if self.store.fsync {
            self.file.get_ref().sync_all().map_err(|source| self.error(source))?;
        }
        Ok(())
    }

    fn error(&self, source: std::io::Error) -> HitSaveError {
        HitSaveError::StoreIo { path: self.store.root.join(&self.temp), source }
    }
}

impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        // Gone already when it was kept (renamed into place).
        let _ = self.store.dir.remove_file(&self.temp);
    }
}

fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}-{}-{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos)
}

/// The path of a blob inside the store, from a validated digest.
fn blob_path(digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    PathBuf::from("blobs").join(&hex[..2]).join(&hex[2..])
}

fn parse_result_digest(text: &str) -> Result<Digest> {
    let digest = Digest::parse(text)?;
    digest.expect(DigestKind::Blob, "a result digest")?;
    Ok(digest)
}

const RECORD_COLUMNS: &str = "key, coalesce(function_id, graph), function_name, language, arguments, codec, result, \
     inline IS NOT NULL, size, compute_micros, created, last_access, hits, graph";
const GET_SQL: &str = "SELECT codec, language, result, size, inline FROM records WHERE key = ?1";

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EvalRecord> {
    Ok(EvalRecord {
        key: row.get::<_, Unpacked>(0)?.0,
        function_id: row.get::<_, Unpacked>(1)?.0,
        function_name: row.get(2)?,
        language: row.get(3)?,
        arguments: row.get::<_, Unpacked>(4)?.0,
        codec: row.get(5)?,
        result: row.get::<_, Unpacked>(6)?.0,
        inline: row.get(7)?,
        size: row.get::<_, i64>(8)? as u64,
        compute_micros: row.get::<_, i64>(9)? as u64,
        created: row.get::<_, i64>(10)? as u64,
        last_access: row.get::<_, i64>(11)? as u64,
        hits: row.get::<_, i64>(12)? as u64,
        graph: row.get::<_, Option<Unpacked>>(13)?.map(|graph| graph.0),
    })
}

/// Deletes a blob file once no row refers to it. Only called inside a write
/// transaction, so a concurrent put cannot come to rely on it meanwhile.
fn remove_blob_if_unused(dir: &Dir, tx: &rusqlite::Transaction<'_>, result: &Digest) -> Result<()> {
    let still_used: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM records WHERE result = ?1 AND inline IS NULL)",
        [Packed(result)],
        |row| row.get(0),
    )?;
    if !still_used {
        let _ = dir.remove_file(blob_path(result));
    }
    Ok(())
}

/// A result digest as a column holds it.
fn result_column(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Digest> {
    let text = row.get::<_, Unpacked>(index)?.0;
    parse_result_digest(&text)
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Blob, Box::new(err)))
}

/// The root's `code2` fingerprint and the JSON of a graph, or `None` when
/// the graph has no node named as its root.
fn graph_row(core: &Core, graph: &Graph) -> Result<Option<(String, String)>> {
    let nodes = graph.to_nodes()?;
    let fingerprints = core.fingerprints(&nodes)?;
    let Some(index) = nodes.iter().position(|node| node.name == graph.root) else { return Ok(None) };
    let json = serde_json::to_string(graph).map_err(|err| HitSaveError::StoreDatabase(err.to_string()))?;
    Ok(Some((fingerprints[index].to_string(), json)))
}

/// Stores a graph (once per fingerprint) and makes it the function's current
/// one. Reads first and writes only what is missing or different: every put
/// of a function names the same graph, and a write would dirty two more pages
/// in each put's commit.
fn record_graph(
    tx: &rusqlite::Transaction<'_>,
    fingerprint: &str,
    root: &str,
    json: &str,
    function_name: &str,
    language: &str,
    time: i64,
) -> Result<()> {
    let stored: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM graphs WHERE fingerprint = ?1)")?
        .query_row([fingerprint], |row| row.get(0))?;
    if !stored {
        tx.prepare_cached("INSERT INTO graphs (fingerprint, root, nodes) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")?
            .execute(params![fingerprint, root, json])?;
    }
    let current = tx
        .prepare_cached("SELECT graph = ?2 AND language = ?3 FROM functions WHERE name = ?1")?
        .query_row(params![function_name, fingerprint, language], |row| row.get::<_, Option<bool>>(0))
        .optional()?
        .flatten()
        .unwrap_or(false);
    if current {
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO functions (name, language, graph, seen) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(name) DO UPDATE SET language = excluded.language, graph = excluded.graph, seen = excluded.seen",
    )?
    .execute(params![function_name, language, fingerprint, time])?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store a configuration names.
    pub fn open(config: &Config) -> Result<Self> {
        let root = config.cache_dir.clone();
        let io = |path: &Path, source| HitSaveError::StoreIo { path: path.to_path_buf(), source };
        std::fs::create_dir_all(&root).map_err(|err| io(&root, err))?;
        let dir = Dir::open_ambient_dir(&root, ambient_authority()).map_err(|err| io(&root, err))?;
        let read_only = config.mode == Mode::ReadOnly;
        if !read_only {
            for sub in ["blobs", "tmp"] {
                dir.create_dir_all(sub).map_err(|err| io(&root.join(sub), err))?;
            }
        }
        let store = Self {
            root,
            dir,
            db: Mutex::new(None),
            pending: Mutex::new(PendingHits { hits: HashMap::new(), since: Instant::now() }),
            flusher: Mutex::new(None),
            evictor: Mutex::new(None),
            recent: Mutex::new(RecentHits::default()),
            declined_noted: Mutex::default(),
            graph_rows: Mutex::default(),
            max_size: AtomicU64::new(config.max_size),
            inline_limit: config.inline_limit,
            fsync: config.fsync,
            read_only,
            lock_wait: config.lock_wait,
        };
        store.with_db(|_| Ok(()))?;
        Ok(store)
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Results larger than this are kept as files, not in the index.
    pub fn inline_limit(&self) -> u64 {
        self.inline_limit
    }

    /// The budget in bytes.
    pub fn max_size(&self) -> u64 {
        self.max_size.load(Ordering::Relaxed)
    }

    fn connect(&self) -> Result<Connection> {
        let path = self.root.join("index.sqlite");
        let conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        enable_wal(&conn)?;
        conn.pragma_update(None, "synchronous", if self.fsync { "FULL" } else { "NORMAL" })?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(HitSaveError::StoreTooNew {
                path: self.root.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < SCHEMA_VERSION {
            if self.read_only {
                return Err(HitSaveError::StoreDatabase(format!(
                    "the store at {} needs a schema upgrade, which read-only mode cannot do",
                    self.root.display()
                )));
            }
            // Migrate under the write lock; re-read the version in case another process did it first.
            let tx = rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
            let current: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
            for (index, migration) in migrations().iter().enumerate().skip(current as usize) {
                tx.execute_batch(migration)?;
                tx.pragma_update(None, "user_version", index as i64 + 1)?;
            }
            tx.commit()?;
        }
        if !self.read_only {
            ensure_additive_tables(&conn)?;
        }
        Ok(conn)
    }

    /// Runs `work` with this process's connection; a forked child opens its own.
    fn with_db<R>(&self, work: impl FnOnce(&mut Connection) -> Result<R>) -> Result<R> {
        let mut guard = crate::fork::lock(&self.db);
        let generation = fork_generation();
        if guard.as_ref().is_none_or(|db| db.generation != generation) {
            if let Some(db) = guard.take() {
                // Never close the parent's connection from a forked child.
                std::mem::forget(db);
            }
            *guard = Some(Db { conn: self.connect()?, generation });
        }
        let db = guard.as_mut().expect("connection was just opened");
        work(&mut db.conn)
    }

    /// Looks a key up in the local store. A hit's bytes are verified; a
    /// corrupt or incomplete entry is removed and reported as a miss.
    pub fn get_local(&self, key: &Digest) -> Result<Option<Hit>> {
        self.read_local(key, true)
    }

    /// [`Store::get_local`] without counting a hit (an upload reads the result it sends).
    pub fn read_uncounted(&self, key: &Digest) -> Result<Option<Hit>> {
        self.read_local(key, false)
    }

    /// Whether the local store holds a result for `key` (no hit is counted, no bytes are read).
    pub fn contains(&self, key: &Digest) -> Result<bool> {
        Ok(self.record(&key.to_string())?.is_some())
    }

    /// [`Store::get_local`]; `count_hit` false for reads that are not calls
    /// (the uploader), so they do not count as hits for eviction.
    fn read_local(&self, key: &Digest, count_hit: bool) -> Result<Option<Hit>> {
        let key_text = key.to_string();
        let remembered = if count_hit { self.get_recent(key) } else { crate::fork::lock(&self.recent).get(&key_text) };
        if remembered.is_some() {
            return Ok(remembered);
        }
        let found = self.with_db(|conn| {
            let mut statement = conn.prepare_cached(GET_SQL)?;
            Ok(statement
                .query_row([Packed(key)], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        result_column(row, 2)?,
                        row.get::<_, i64>(3)? as u64,
                        row.get::<_, Option<Vec<u8>>>(4)?,
                    ))
                })
                .optional()?)
        })?;
        let Some((codec, language, expected, size, inline)) = found else { return Ok(None) };
        let is_inline = inline.is_some();
        let data = match inline {
            Some(bytes) => ResultData::Inline(bytes),
            None => match self.map_blob(&expected)? {
                Some(map) => ResultData::Mapped(map),
                None => {
                    self.remove_corrupt(key)?;
                    return Ok(None);
                }
            },
        };
        if crate::hash::blob_digest(data.bytes()) != expected || data.bytes().len() as u64 != size {
            self.remove_corrupt(key)?;
            return Ok(None);
        }
        if let ResultData::Inline(bytes) = &data {
            crate::fork::lock(&self.recent).insert(&key_text, &codec, &language, bytes);
        }
        if count_hit {
            self.record_hit(key_text)?;
        }
        Ok(Some(Hit { codec, language, inline: is_inline, data }))
    }

    /// Maps a blob. `None` when it is missing or empty: damage, and the entry
    /// goes. An error when it is there but cannot be opened or mapped
    /// (permissions, address space, a strict overcommit limit): a warning and
    /// a miss for the caller, never a reason to drop a good entry.
    fn map_blob(&self, digest: &Digest) -> Result<Option<memmap2::MmapMut>> {
        let path = blob_path(digest);
        let io = |source| HitSaveError::StoreIo { path: self.root.join(&path), source };
        let file = match self.dir.open(&path) {
            Ok(file) => file.into_std(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io(err)),
        };
        if file.metadata().map_err(io)?.len() == 0 {
            // An empty file cannot be mapped; an empty result is always inline, so this is damage.
            return Ok(None);
        }
        // SAFETY: blob files are never modified in place (written under a
        // temp name, then renamed); a file replaced or truncated underneath
        // the map is caught by the digest check that follows every map. The
        // map is private (copy-on-write): writes through it never reach the file.
        unsafe { memmap2::MmapOptions::new().map_copy(&file) }.map(Some).map_err(io)
    }

    /// Drops an entry whose bytes failed verification (and its blob, if no
    /// other entry uses it).
    fn remove_corrupt(&self, key: &Digest) -> Result<()> {
        self.forget_recent();
        if self.read_only {
            return Ok(());
        }
        self.with_db(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let removed: Option<(Digest, bool)> = tx
                .query_row(
                    "DELETE FROM records WHERE key = ?1 RETURNING result, inline IS NULL",
                    [Packed(key)],
                    |row| Ok((result_column(row, 0)?, row.get(1)?)),
                )
                .optional()?;
            if let Some((result, true)) = removed {
                // A corrupt blob is removed even if other rows use it: they would fail too.
                tx.execute("DELETE FROM records WHERE result = ?1 AND inline IS NULL", [Packed(&result)])?;
                let _ = self.dir.remove_file(blob_path(&result));
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Stores a fresh result in the local store. The caller must still
    /// return its value if this fails.
    pub fn put_local<'a>(&self, core: &Core, eval: &NewEval, data: impl Into<Payload<'a>>) -> Result<PutOutcome> {
        self.put_inner(core, eval, data.into())
    }

    /// The root and node list (JSON) of a stored graph, by its fingerprint.
    pub fn graph_json(&self, fingerprint: &str) -> Result<Option<(String, String)>> {
        self.with_db(|conn| {
            Ok(conn
                .query_row("SELECT root, nodes FROM graphs WHERE fingerprint = ?1", [fingerprint], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .optional()?)
        })
    }

    fn put_inner(&self, core: &Core, eval: &NewEval, data: Payload<'_>) -> Result<PutOutcome> {
        if self.read_only {
            return Ok(PutOutcome::Skipped);
        }
        let size = data.len();
        if let Some(reason) = self.decline(core, eval, size)? {
            return Ok(PutOutcome::Declined(reason));
        }
        // A small result kept in the index: its one slice as it is, or its parts joined.
        let inline_bytes: Option<std::borrow::Cow<'_, [u8]>> =
            (size <= self.inline_limit).then(|| data.as_one().map_or_else(|| data.to_vec().into(), Into::into));
        let digest = match &inline_bytes {
            Some(bytes) => crate::hash::blob_digest(bytes),
            None => self.write_new_blob(data)?,
        };
        self.insert_eval(core, eval, size, &digest, inline_bytes.as_deref(), || {
            // Eviction deletes blobs only inside write transactions: if ours
            // vanished between the write above and now, write it again.
            if self.dir.metadata(blob_path(&digest)).is_err() {
                self.write_new_blob(data)?;
            }
            Ok(())
        })
    }

    /// Starts receiving a large result into the store (a file under `tmp/`,
    /// never a buffer in memory); `None` for a read-only store.
    pub fn incoming(&self) -> Result<Option<Incoming<'_>>> {
        if self.read_only {
            return Ok(None);
        }
        let temp = PathBuf::from("tmp").join(temp_name());
        // Readable too: the caller maps what arrived to check it before it is kept.
        let mut options = cap_std::fs::OpenOptions::new();
        options.read(true).write(true).create_new(true);
        let file = self
            .dir
            .open_with(&temp, &options)
            .map_err(|source| HitSaveError::StoreIo { path: self.root.join(&temp), source })?;
        Ok(Some(Incoming {
            store: self,
            temp,
            file: std::io::BufWriter::with_capacity(1 << 20, file.into_std()),
            len: 0,
        }))
    }

    /// Keeps a result received with [`Store::incoming`] whose bytes hash to
    /// `digest` (the caller verified them): its file is renamed into place,
    /// never copied. Declined by the policy like any other put.
    pub fn put_incoming(
        &self,
        core: &Core,
        eval: &NewEval,
        incoming: Incoming<'_>,
        digest: &Digest,
    ) -> Result<PutOutcome> {
        let size = incoming.len;
        if let Some(reason) = self.decline(core, eval, size)? {
            return Ok(PutOutcome::Declined(reason));
        }
        let mut incoming = incoming;
        incoming.flush()?;
        // Placed inside the write transaction: eviction cannot remove it before its row exists.
        self.insert_eval(core, eval, size, digest, None, || {
            self.place_blob(&incoming.temp, digest, size)
                .map_err(|source| HitSaveError::StoreIo { path: self.root.join(&incoming.temp), source })
        })
    }

    /// The policy's reason not to keep a result of `size` bytes, if it has one (noted for `why`).
    fn decline(&self, core: &Core, eval: &NewEval, size: u64) -> Result<Option<String>> {
        let store_params =
            StoreParams { budget: self.max_size(), min_compute_micros: 0, read_bytes_per_second: 1 << 30 };
        Ok(match core.store_decision(size, eval.compute_micros, &store_params)? {
            Some(decline) => {
                let reason = decline_reason(decline, &store_params);
                self.note_declined(eval, size, &reason);
                Some(reason)
            }
            None => None,
        })
    }

    /// Inserts a result's row (with its graph, if any). A result not kept
    /// inline has its blob made sure of by `place_blob`, called inside the
    /// write transaction.
    fn insert_eval(
        &self,
        core: &Core,
        eval: &NewEval,
        size: u64,
        digest: &Digest,
        inline_bytes: Option<&[u8]>,
        place_blob: impl FnOnce() -> Result<()>,
    ) -> Result<PutOutcome> {
        let graph_row = match &eval.graph {
            Some(graph) => self.graph_row(core, &eval.function_name, graph)?,
            None => None,
        };
        let time = now() as i64;
        let fingerprint = graph_row.as_deref().map(|(fingerprint, _)| fingerprint.as_str());
        // An identity that is the graph's fingerprint is kept once (NULL: the graph's).
        let function_id = (fingerprint != Some(eval.function_id.as_str())).then(|| PackedText(&eval.function_id));
        let insert_eval = |conn: &Connection| -> Result<usize> {
            let mut statement = conn.prepare_cached(
                "INSERT INTO records (key, function_id, function_name, language, arguments, codec, result, inline, size,
                                    compute_micros, created, last_access, hits, graph)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, 0, ?12)
                 ON CONFLICT(key) DO NOTHING",
            )?;
            Ok(statement.execute(params![
                Packed(&eval.key),
                function_id,
                eval.function_name,
                eval.language,
                Packed(&eval.arguments),
                eval.codec,
                Packed(digest),
                inline_bytes,
                size as i64,
                eval.compute_micros as i64,
                time,
                fingerprint.map(PackedText),
            ])?)
        };
        let outcome = self.with_db(|conn| {
            let inserted = if inline_bytes.is_some() && graph_row.is_none() {
                // A small result without a graph is one INSERT (autocommit): no blob
                // to re-check, no graph to record alongside.
                insert_eval(conn)?
            } else {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                if inline_bytes.is_none() {
                    place_blob()?;
                }
                if let (Some((fingerprint, json)), Some(graph)) = (graph_row.as_deref(), &eval.graph) {
                    record_graph(&tx, fingerprint, &graph.root, json, &eval.function_name, &eval.language, time)?;
                }
                let inserted = insert_eval(&tx)?;
                tx.commit()?;
                inserted
            };
            Ok(if inserted == 1 { PutOutcome::Stored } else { PutOutcome::AlreadyPresent })
        })?;
        if outcome == PutOutcome::Stored {
            self.keep_budget(core)?;
        }
        Ok(outcome)
    }

    /// Records the graph a function has now, so `why` can compare stored
    /// results against the current code even before a new result is stored.
    pub fn record_function(&self, core: &Core, function_name: &str, language: &str, graph: &Graph) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let Some((fingerprint, json)) = graph_row(core, graph)? else {
            return Err(HitSaveError::Core(hitsave_core::CoreError::new(
                hitsave_core::ErrorCode::InvalidGraph,
                format!("the graph has no node named {:?}", graph.root),
            )));
        };
        self.with_db(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            record_graph(&tx, &fingerprint, &graph.root, &json, function_name, language, now() as i64)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// [`graph_row`], kept per function: a function's puts name one graph,
    /// whose fingerprint (a call into the core) and JSON are made once.
    fn graph_row(&self, core: &Core, function_name: &str, graph: &Graph) -> Result<Option<GraphRow>> {
        if let Some((known, row)) = crate::fork::lock(&self.graph_rows).get(function_name)
            && known == graph
        {
            return Ok(row.clone());
        }
        let row = graph_row(core, graph)?.map(std::sync::Arc::new);
        crate::fork::lock(&self.graph_rows).insert(function_name.to_owned(), (graph.clone(), row.clone()));
        Ok(row)
    }

    /// Writes a large result: hashing (on one other thread) overlaps writing
    /// the temp file, part by part from where each lies (never joined), then
    /// the file is renamed to its digest, or dropped if an identical blob is
    /// already there.
    fn write_new_blob(&self, data: Payload<'_>) -> Result<Digest> {
        let io = |path: &Path, source| HitSaveError::StoreIo { path: self.root.join(path), source };
        let temp = PathBuf::from("tmp").join(temp_name());
        let len = data.len();
        let (digest, written) = std::thread::scope(|scope| {
            // One thread hashes while this one writes: on few cores, hashing
            // on all of them would take the CPU the write needs.
            let hashing = scope.spawn(|| data.digest());
            let written = (|| {
                let mut file = self.dir.create(&temp)?;
                for part in data.parts() {
                    file.write_all(part)?;
                }
                if self.fsync {
                    file.sync_all()?;
                }
                Ok::<_, std::io::Error>(())
            })();
            (hashing.join().unwrap_or_else(|_| data.digest()), written)
        });
        if let Err(err) = written.and_then(|()| self.place_blob(&temp, &digest, len)) {
            let _ = self.dir.remove_file(&temp);
            return Err(io(&temp, err));
        }
        Ok(digest)
    }

    /// Renames a whole temp file to its blob's path (or removes it when an
    /// identical blob is there already: identical results are stored once).
    fn place_blob(&self, temp: &Path, digest: &Digest, len: u64) -> std::io::Result<()> {
        let target = blob_path(digest);
        if self.dir.metadata(&target).is_ok_and(|meta| meta.len() == len) {
            return self.dir.remove_file(temp);
        }
        let parent = target.parent().expect("blob paths have a shard directory");
        self.dir.create_dir_all(parent)?;
        self.dir.rename(temp, &self.dir, &target)?;
        if self.fsync {
            self.dir.open_dir(parent)?.into_std_file().sync_all()?;
        }
        Ok(())
    }

    /// Records a result the policy declined, once per function per process
    /// (a declined result is typically a cheap one, called often: one write
    /// per call would cost more than the call). Best effort: `why` is advice.
    fn note_declined(&self, eval: &NewEval, size: u64, reason: &str) {
        if !crate::fork::lock(&self.declined_noted).insert(eval.function_name.clone()) {
            return;
        }
        let _ = self.with_db(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO declined (function_name, key, size, compute_micros, reason, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    eval.function_name,
                    eval.key.to_string(),
                    size as i64,
                    eval.compute_micros as i64,
                    reason,
                    now() as i64
                ],
            )?;
            Ok(())
        });
    }

    /// The last result of `function_name` that the store's policy declined
    /// (recorded once per function per process), so `why` can say so in a
    /// later process: "never cached" is otherwise a mystery.
    pub fn declined(&self, function_name: &str) -> Result<Option<Declined>> {
        self.with_db(|conn| {
            let found = conn
                .query_row(
                    "SELECT key, size, compute_micros, reason, at FROM declined WHERE function_name = ?1",
                    [function_name],
                    |row| {
                        Ok(Declined {
                            key: row.get(0)?,
                            size: row.get::<_, i64>(1)? as u64,
                            compute_micros: row.get::<_, i64>(2)? as u64,
                            reason: row.get(3)?,
                            at: row.get::<_, i64>(4)? as u64,
                        })
                    },
                )
                .optional();
            match found {
                Ok(found) => Ok(found),
                // A read-only process on a store no writer has opened since the table was added.
                Err(err) if missing_table(&err) => Ok(None),
                Err(err) => Err(err.into()),
            }
        })
    }

    /// Removes every entry, or those of one function. Returns how many.
    pub fn clear(&self, function_name: Option<&str>) -> Result<u64> {
        self.forget_recent();
        self.flush_hits()?;
        let removed = self.with_db(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let rows: Vec<(Digest, bool)> = {
                let mut statement = tx.prepare(
                    "DELETE FROM records WHERE (?1 IS NULL OR function_name = ?1) RETURNING result, inline IS NULL",
                )?;
                statement
                    .query_map([function_name], |row| Ok((result_column(row, 0)?, row.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut blobs: Vec<&Digest> = rows.iter().filter(|(_, blob)| *blob).map(|(digest, _)| digest).collect();
            blobs.sort();
            blobs.dedup();
            for result in blobs {
                remove_blob_if_unused(&self.dir, &tx, result)?;
            }
            match tx.execute("DELETE FROM declined WHERE ?1 IS NULL OR function_name = ?1", [function_name]) {
                Err(err) if !missing_table(&err) => return Err(err.into()),
                _ => {}
            }
            if let Some(name) = function_name {
                tx.execute("DELETE FROM functions WHERE name = ?1", [name])?;
            } else {
                tx.execute("DELETE FROM functions", [])?;
                tx.execute("DELETE FROM graphs", [])?;
            }
            tx.commit()?;
            Ok(rows.len() as u64)
        })?;
        Ok(removed)
    }

    /// One record, without reading or verifying its result.
    pub fn record(&self, key: &str) -> Result<Option<EvalRecord>> {
        self.with_db(|conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {RECORD_COLUMNS} FROM records WHERE key = ?1"),
                    [PackedText(key)],
                    record_from_row,
                )
                .optional()?)
        })
    }

    /// Records, all or of one function, newest first.
    pub fn evals(&self, function_name: Option<&str>) -> Result<Vec<EvalRecord>> {
        self.flush_hits()?;
        self.with_db(|conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE (?1 IS NULL OR function_name = ?1) ORDER BY created DESC, key"
            ))?;
            Ok(statement.query_map([function_name], record_from_row)?.collect::<rusqlite::Result<_>>()?)
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.flush_hits();
        let flusher = self.flusher.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(mut flusher) = flusher {
            if flusher.generation == fork_generation() {
                let handle = flusher.handle.take();
                drop(flusher.sender);
                if let Some(handle) = handle {
                    let _ = handle.join();
                }
            } else {
                std::mem::forget(flusher);
            }
        }
    }
}
