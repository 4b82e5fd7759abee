//! The local store: one directory shared by every language and the CLI.
//!
//! ```text
//! <cache dir>/
//!   index.sqlite        SQLite in WAL mode: eval records, small results inline,
//!                       dependency graphs, size accounting
//!   blobs/ab/cdef…      large results, content-addressed by their BLAKE3
//!   tmp/                blobs being written (unique names; renamed into place)
//!   locks/<key>         a key being computed (see `Store::lock_compute`)
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
use crate::runtime::Core;

/// The schema this build writes. Older stores are migrated forward on open.
pub const SCHEMA_VERSION: i64 = 2;

/// Eviction brings the store down to this fraction of the budget, so a
/// store at its budget does not evict on every put.
pub const EVICTION_TARGET: f64 = 0.9;

/// Seven days: after this long without access an entry's worth halves.
pub const HALF_LIFE_SECONDS: u64 = 7 * 86_400;

/// Hits are recorded in memory and written in batches of this many (or on
/// the next write, or when the store is dropped): a hit must not cost a
/// write transaction.
const HIT_BATCH: usize = 4096;
const HIT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE evals (
        key TEXT PRIMARY KEY NOT NULL,
        function_id TEXT NOT NULL,
        function_name TEXT NOT NULL,
        language TEXT NOT NULL,
        arguments TEXT NOT NULL,
        codec TEXT NOT NULL,
        result TEXT NOT NULL,
        inline BLOB,
        size INTEGER NOT NULL,
        compute_micros INTEGER NOT NULL,
        created INTEGER NOT NULL,
        last_access INTEGER NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0,
        graph TEXT
    ) WITHOUT ROWID;

    CREATE INDEX evals_by_result ON evals(result) WHERE inline IS NULL;
    CREATE TABLE graphs (
        fingerprint TEXT PRIMARY KEY NOT NULL,
        root TEXT NOT NULL,
        nodes TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE functions (
        name TEXT PRIMARY KEY NOT NULL,
        language TEXT NOT NULL,
        graph TEXT,
        seen INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE totals (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO totals VALUES ('evictions', 0);",
    // 1 -> 2: results waiting to be uploaded to the cloud (a persistent outbox).
    "CREATE TABLE outbox (key TEXT PRIMARY KEY NOT NULL, queued INTEGER NOT NULL) WITHOUT ROWID;",
];

/// Tables a build may add without a schema version: builds that do not know
/// them ignore them, so an older SDK sharing the store (pip and npm upgrade
/// separately) keeps working instead of refusing a newer schema. Created on
/// first open by a writer; readers treat a missing one as empty.
const ADDITIVE_TABLES: &[(&str, &str)] = &[(
    "declined",
    // The last result of each function the store's policy declined
    // (Store::declined, for `why` in a later process).
    "CREATE TABLE IF NOT EXISTS declined (
        function_name TEXT PRIMARY KEY NOT NULL,
        key TEXT NOT NULL,
        size INTEGER NOT NULL,
        compute_micros INTEGER NOT NULL,
        reason TEXT NOT NULL,
        at INTEGER NOT NULL
    ) WITHOUT ROWID;",
)];

fn ensure_additive_tables(conn: &mut Connection) -> Result<()> {
    for (name, create) in ADDITIVE_TABLES {
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [name],
            |row| row.get(0),
        )?;
        if !exists {
            conn.execute_batch(create)?;
        }
    }
    ensure_size_total(conn)
}

/// The total size of the results, kept exact in `totals` by triggers on
/// `evals`, in the same transaction as every insert and delete (by any
/// build: the triggers live in the file, so an older SDK sharing the store
/// keeps the total too). A put then reads one row instead of scanning the
/// index (a scan cost 330-430 ms at a million entries).
fn ensure_size_total(conn: &mut Connection) -> Result<()> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'evals_size_insert')",
        [],
        |row| row.get(0),
    )?;
    if exists {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TRIGGER IF NOT EXISTS evals_size_insert AFTER INSERT ON evals BEGIN
             UPDATE totals SET value = value + NEW.size WHERE name = 'size';
         END;
         CREATE TRIGGER IF NOT EXISTS evals_size_delete AFTER DELETE ON evals BEGIN
             UPDATE totals SET value = value - OLD.size WHERE name = 'size';
         END;
         CREATE TRIGGER IF NOT EXISTS evals_size_update AFTER UPDATE OF size ON evals BEGIN
             UPDATE totals SET value = value - OLD.size + NEW.size WHERE name = 'size';
         END;
         INSERT OR REPLACE INTO totals (name, value) VALUES ('size', (SELECT coalesce(sum(size), 0) FROM evals));",
    )?;
    tx.commit()?;
    Ok(())
}

/// How long a connection waits for another one's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Puts the index in WAL mode (a setting kept in the file). While another
/// connection holds the database, SQLite refuses the switch with
/// `SQLITE_BUSY` at once, without waiting through the busy timeout: callers
/// in several processes whose first calls create one store together met
/// "database is locked" here, and one of them computed without its cache. A
/// file already in WAL needs no switch; otherwise the switch is retried for
/// as long as the busy timeout.
fn enable_wal(conn: &Connection) -> Result<()> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let attempt = conn.query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0)).and_then(|mode| {
            if mode.eq_ignore_ascii_case("wal") { Ok(()) } else { conn.pragma_update(None, "journal_mode", "WAL") }
        });
        match attempt {
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::DatabaseBusy && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return Ok(other?),
        }
    }
}

/// The policy's reason not to store a result, in words.
fn decline_reason(decline: Decline, params: &StoreParams) -> String {
    match decline {
        Decline::OverBudget => format!("larger than the whole size budget ({} bytes)", params.budget),
        Decline::TooQuick => format!("computed in less than the minimum {} µs", params.min_compute_micros),
        Decline::CheaperToRecompute => "1 MiB or more and cheaper to compute again than to read back".to_owned(),
    }
}

/// An additive table a read-only process finds missing (no writer has opened the store since it was added).
fn missing_table(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(_, Some(message)) if message.starts_with("no such table"))
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

/// One function's results in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunctionSummary {
    /// Function name.
    pub function_name: String,
    /// Languages that wrote its results.
    pub languages: Vec<String>,
    /// Number of stored results.
    pub evals: u64,
    /// Their total size.
    pub size: u64,
    /// Total hits.
    pub hits: u64,
    /// Most recent access, seconds since the epoch.
    pub last_access: u64,
}

/// Store-wide numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Store directory.
    pub path: PathBuf,
    /// Stored results.
    pub evals: u64,
    /// Functions with results.
    pub functions: u64,
    /// Total result bytes (a blob shared by several results counts each time).
    pub size: u64,
    /// Bytes of result data inside the index.
    pub inline_size: u64,
    /// Blob files and their bytes on disk.
    pub blobs: u64,
    /// Bytes of blob files on disk.
    pub blob_bytes: u64,
    /// The budget.
    pub max_size: u64,
    /// Total hits recorded.
    pub hits: u64,
    /// Entries evicted by the policy since the store was created.
    pub evictions: u64,
    /// Schema version.
    pub schema_version: i64,
}

/// What `gc` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Entries evicted.
    pub evicted: u64,
    /// Bytes of results evicted.
    pub evicted_bytes: u64,
    /// Blob files no entry referenced.
    pub orphan_blobs: u64,
    /// Temp files left by killed writers.
    pub stale_temp_files: u64,
}

/// What `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries checked.
    pub checked: u64,
    /// Entries whose bytes did not match their digest (or whose blob was missing); removed.
    pub corrupt: Vec<String>,
}

/// Why a function's stored results no longer match its current code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WhyReport {
    /// The function.
    pub function_name: String,
    /// The graph fingerprint last seen for it (its current code).
    pub current: Option<String>,
    /// One group per distinct stored graph.
    pub stored: Vec<WhyGroup>,
    /// The last result the store's policy declined, if any ([`Store::declined`]).
    pub declined: Option<Declined>,
}

/// Stored results computed under one graph, and what changed since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WhyGroup {
    /// The stored graph's fingerprint.
    pub graph: Option<String>,
    /// How many results were computed under it.
    pub evals: u64,
    /// Whether this is the current code (its results can hit).
    pub current: bool,
    /// What changed between it and the current graph: `(node, change)`.
    pub changes: Vec<(String, String)>,
}

struct Db {
    conn: Connection,
    generation: u64,
}

use crate::fork::generation as fork_generation;

struct PendingHits {
    hits: HashMap<String, (u64, u64)>,
    since: Instant,
}

enum FlusherMessage {
    Batch(HashMap<String, (u64, u64)>),
    Barrier(std::sync::mpsc::SyncSender<()>),
}

struct Flusher {
    sender: std::sync::mpsc::Sender<FlusherMessage>,
    handle: Option<std::thread::JoinHandle<()>>,
    generation: u64,
}

/// Small results this process read recently, already verified: a repeated
/// hit skips SQLite. Results are immutable per key, so serving them from
/// memory is exact; any deletion through this store forgets them all.
#[derive(Default)]
struct RecentHits {
    entries: HashMap<String, (String, String, std::sync::Arc<[u8]>)>,
    order: std::collections::VecDeque<String>,
    bytes: usize,
}

/// Memory for [`RecentHits`].
const RECENT_BYTES: usize = 16 << 20;

impl RecentHits {
    fn get(&self, key: &str) -> Option<Hit> {
        self.entries.get(key).map(|(codec, language, bytes)| Hit {
            codec: codec.clone(),
            language: language.clone(),
            inline: true,
            data: ResultData::Inline(bytes.to_vec()),
        })
    }

    fn insert(&mut self, key: &str, codec: &str, language: &str, bytes: &[u8]) {
        if self.entries.contains_key(key) || bytes.len() > RECENT_BYTES / 64 {
            return;
        }
        while self.bytes + bytes.len() > RECENT_BYTES {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some((_, _, old)) = self.entries.remove(&oldest) {
                self.bytes -= old.len();
            }
        }
        self.bytes += bytes.len();
        self.order.push_back(key.to_owned());
        self.entries.insert(key.to_owned(), (codec.to_owned(), language.to_owned(), bytes.into()));
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// The local store. `Send + Sync`: share one per process.
pub struct Store {
    root: PathBuf,
    dir: Dir,
    db: Mutex<Option<Db>>,
    pending: Mutex<PendingHits>,
    flusher: Mutex<Option<Flusher>>,
    recent: Mutex<RecentHits>,
    /// Functions whose declined result this process recorded ([`Store::declined`]).
    declined_noted: Mutex<std::collections::HashSet<String>>,
    max_size: AtomicU64,
    inline_limit: u64,
    fsync: bool,
    read_only: bool,
    cloud: Option<std::sync::Arc<crate::cloud::CloudSync>>,
    upload_wait: Duration,
    lock_wait: Duration,
}

/// The right to compute one key, held until dropped: an exclusive `flock` on
/// `locks/<key>` in the store directory, which the OS also releases if the
/// process dies.
#[derive(Debug)]
pub struct ComputeLock {
    file: std::fs::File,
    path: PathBuf,
    waited: bool,
}

impl ComputeLock {
    /// Whether another process or thread held the lock when it was asked for:
    /// the result may have been stored meanwhile, so look it up again.
    pub fn waited(&self) -> bool {
        self.waited
    }
}

/// What one attempt at a compute lock found ([`Store::try_lock_compute`]).
#[derive(Debug)]
pub enum TryLock {
    /// Held until dropped.
    Acquired(ComputeLock),
    /// Another process or thread holds it: try again later (up to `lock_wait`).
    Busy,
    /// No lock: locking is off, the store is read-only, or no lock file can be made.
    Unavailable,
}

impl Drop for ComputeLock {
    fn drop(&mut self) {
        // Unlinked while still held, so no lock file outlives its computation;
        // a waiter that then locks this unlinked file sees that the path names
        // another file (or none) and starts over (`Store::lock_compute`).
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.file; // closing the file releases the lock
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// One attempt at an exclusive lock on `dir/name`, never waiting:
/// `Ok(Some)` held, `Ok(None)` busy (another holder), `Err` no lock can be made.
#[cfg(unix)]
fn try_lock_file(dir: &Path, name: &str) -> std::result::Result<Option<ComputeLock>, ()> {
    use std::os::unix::fs::MetadataExt as _;
    use std::os::unix::io::AsRawFd as _;
    let path = dir.join(name);
    // A few rounds: the directory may need making, and a holder may unlink
    // the file between our open and our lock (then we lock a stale file).
    for _ in 0..8 {
        let file = match std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|_| ())?;
                continue;
            }
            Err(_) => return Err(()),
        };
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return match std::io::Error::last_os_error().raw_os_error() {
                Some(code) if code == libc::EWOULDBLOCK => Ok(None),
                Some(code) if code == libc::EINTR => continue,
                _ => Err(()),
            };
        }
        // The previous holder unlinks the file when it is done: the lock only
        // counts if the path still names the file that is locked.
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
            _ => false,
        };
        if same {
            return Ok(Some(ComputeLock { file, path, waited: false }));
        }
    }
    Ok(None)
}

#[cfg(not(unix))]
fn try_lock_file(_dir: &Path, _name: &str) -> std::result::Result<Option<ComputeLock>, ()> {
    Err(())
}

/// Takes an exclusive lock on `dir/name`, polling for up to `wait`.
fn lock_file(dir: &Path, name: &str, wait: Duration) -> Option<ComputeLock> {
    let deadline = Instant::now() + wait;
    let mut waited = false;
    let mut pause = Duration::from_millis(1);
    loop {
        match try_lock_file(dir, name) {
            Ok(Some(mut lock)) => {
                lock.waited = waited;
                return Some(lock);
            }
            Ok(None) => {}
            Err(()) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        waited = true;
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
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

const RECORD_COLUMNS: &str = "key, function_id, function_name, language, arguments, codec, result, \
     inline IS NOT NULL, size, compute_micros, created, last_access, hits, graph";
/// Records per page of `verify`.
const VERIFY_PAGE: usize = 512;
const GET_SQL: &str = "SELECT codec, language, result, size, inline FROM evals WHERE key = ?1";

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EvalRecord> {
    Ok(EvalRecord {
        key: row.get(0)?,
        function_id: row.get(1)?,
        function_name: row.get(2)?,
        language: row.get(3)?,
        arguments: row.get(4)?,
        codec: row.get(5)?,
        result: row.get(6)?,
        inline: row.get(7)?,
        size: row.get::<_, i64>(8)? as u64,
        compute_micros: row.get::<_, i64>(9)? as u64,
        created: row.get::<_, i64>(10)? as u64,
        last_access: row.get::<_, i64>(11)? as u64,
        hits: row.get::<_, i64>(12)? as u64,
        graph: row.get(13)?,
    })
}

/// Deletes a blob file once no row refers to it. Only called inside a write
/// transaction, so a concurrent put cannot come to rely on it meanwhile.
fn remove_blob_if_unused(dir: &Dir, tx: &rusqlite::Transaction<'_>, result: &str) -> Result<()> {
    let still_used: bool =
        tx.query_row("SELECT EXISTS (SELECT 1 FROM evals WHERE result = ?1 AND inline IS NULL)", [result], |row| {
            row.get(0)
        })?;
    if !still_used {
        let _ = dir.remove_file(blob_path(&parse_result_digest(result)?));
    }
    Ok(())
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

/// Stores a graph (once per fingerprint) and makes it the function's current one.
fn record_graph(
    tx: &rusqlite::Transaction<'_>,
    fingerprint: &str,
    root: &str,
    json: &str,
    function_name: &str,
    language: &str,
    time: i64,
) -> Result<()> {
    tx.prepare_cached("INSERT INTO graphs (fingerprint, root, nodes) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")?
        .execute(params![fingerprint, root, json])?;
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
            recent: Mutex::new(RecentHits::default()),
            declined_noted: Mutex::default(),
            max_size: AtomicU64::new(config.max_size),
            inline_limit: config.inline_limit,
            fsync: config.fsync,
            read_only,
            cloud: crate::cloud::CloudSync::from_config(config)?,
            upload_wait: config.upload_wait,
            lock_wait: config.lock_wait,
        };
        store.with_db(|_| Ok(()))?;
        // Uploads a previous process queued but did not finish are retried now.
        if let Some(cloud) = &store.cloud
            && store.outbox_len().unwrap_or(0) > 0
        {
            cloud.wake_uploader();
        }
        Ok(store)
    }

    /// The cloud side, in `cloud` mode.
    pub fn cloud(&self) -> Option<&std::sync::Arc<crate::cloud::CloudSync>> {
        self.cloud.as_ref()
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The budget in bytes.
    pub fn max_size(&self) -> u64 {
        self.max_size.load(Ordering::Relaxed)
    }

    fn connect(&self) -> Result<Connection> {
        let path = self.root.join("index.sqlite");
        let mut conn = Connection::open(&path)?;
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
            for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
                tx.execute_batch(migration)?;
                tx.pragma_update(None, "user_version", index as i64 + 1)?;
            }
            tx.commit()?;
        }
        if !self.read_only {
            ensure_additive_tables(&mut conn)?;
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

    /// Looks a key up: the local store, then (in `cloud` mode) the cloud,
    /// whose result is verified and kept locally. Cloud failures are warnings
    /// and misses.
    pub fn get(&self, key: &Digest) -> Result<Option<Hit>> {
        self.get_for(key, None)
    }

    /// [`Store::get`] for a call of `function_name`, whose cloud lookups feed
    /// the prefetch policy (a function the cloud keeps answering is fetched
    /// in bulk in the background).
    pub fn get_for(&self, key: &Digest, function_name: Option<&str>) -> Result<Option<Hit>> {
        let local = self.get_local(key)?;
        if local.is_some() {
            return Ok(local);
        }
        Ok(self.cloud.as_ref().and_then(|cloud| cloud.fetch(self, key, function_name)))
    }

    /// Looks a key up in the local store only. A hit's bytes are verified; a
    /// corrupt or incomplete entry is removed and reported as a miss.
    pub fn get_local(&self, key: &Digest) -> Result<Option<Hit>> {
        self.read_local(key, true)
    }

    /// A hit this process already read and verified, from memory only: no
    /// SQLite, no file, no hashing, so it never blocks (Node's async call
    /// path answers repeated hits with it on the JavaScript thread). `None`
    /// means "not in memory", not a miss: ask [`Store::get`] then. Counts
    /// the hit like [`Store::get_local`].
    pub fn get_recent(&self, key: &Digest) -> Option<Hit> {
        let key_text = key.to_string();
        let hit = crate::fork::lock(&self.recent).get(&key_text)?;
        // Counting is buffered in memory; a failure there is only advisory.
        let _ = self.record_hit(key_text);
        Some(hit)
    }

    /// Whether the local store holds a result for `key` (no hit is counted, no bytes are read).
    pub fn contains(&self, key: &Digest) -> Result<bool> {
        Ok(self.record(&key.to_string())?.is_some())
    }

    /// Waits (up to the configured `lock_wait`) for the right to compute
    /// `key`, so two processes or threads missing the same key at once compute
    /// it once: the second waits, then finds the first one's result. `None`
    /// when the wait ran out (a computation that long, or two keys each
    /// waiting on the other through nested calls: computing anyway is the
    /// safe way out), when locking is off (`lock_wait = 0`), in `read-only`
    /// mode, or when the lock file cannot be made; the caller then computes
    /// without it, as before locks existed.
    pub fn lock_compute(&self, key: &Digest) -> Option<ComputeLock> {
        self.lock_compute_for(key, self.lock_wait)
    }

    /// Before computing after a miss: the key's compute lock
    /// ([`Store::lock_compute`]) and, when it is held, the local store read
    /// again: a hit there is what another process or thread stored while this
    /// one waited (or between its lookup and the lock). Read errors are the
    /// caller's to warn about.
    pub fn lock_and_reread(&self, key: &Digest) -> (Option<ComputeLock>, Result<Option<Hit>>) {
        let lock = self.lock_compute(key);
        let found = if lock.is_some() { self.get_local(key) } else { Ok(None) };
        (lock, found)
    }

    /// One attempt at the compute lock, never waiting (for callers that must
    /// not block a thread while they wait, such as Node's async path, which
    /// polls with timers): see [`TryLock`].
    pub fn try_lock_compute(&self, key: &Digest) -> TryLock {
        if self.read_only || self.lock_wait.is_zero() {
            return TryLock::Unavailable;
        }
        match try_lock_file(&self.root.join("locks"), &key.to_string()) {
            Ok(Some(lock)) => TryLock::Acquired(lock),
            Ok(None) => TryLock::Busy,
            Err(()) => TryLock::Unavailable,
        }
    }

    /// How long callers wait for another computation of a key (`lock_wait`).
    pub fn lock_wait(&self) -> Duration {
        self.lock_wait
    }

    /// [`Store::lock_compute`] with an explicit wait.
    pub fn lock_compute_for(&self, key: &Digest, wait: Duration) -> Option<ComputeLock> {
        if self.read_only || wait.is_zero() {
            return None;
        }
        lock_file(&self.root.join("locks"), &key.to_string(), wait)
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
                .query_row([&key_text], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)? as u64,
                        row.get::<_, Option<Vec<u8>>>(4)?,
                    ))
                })
                .optional()?)
        })?;
        let Some((codec, language, result, size, inline)) = found else { return Ok(None) };
        let expected = parse_result_digest(&result)?;
        let is_inline = inline.is_some();
        let data = match inline {
            Some(bytes) => ResultData::Inline(bytes),
            None => match self.map_blob(&expected)? {
                Some(map) => ResultData::Mapped(map),
                None => {
                    self.remove_corrupt(&key_text)?;
                    return Ok(None);
                }
            },
        };
        if crate::hash::blob_digest(data.bytes()) != expected || data.bytes().len() as u64 != size {
            self.remove_corrupt(&key_text)?;
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

    fn forget_recent(&self) {
        crate::fork::lock(&self.recent).clear();
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
    fn remove_corrupt(&self, key: &str) -> Result<()> {
        self.forget_recent();
        if self.read_only {
            return Ok(());
        }
        self.with_db(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let removed: Option<(String, bool)> = tx
                .query_row("DELETE FROM evals WHERE key = ?1 RETURNING result, inline IS NULL", [key], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            if let Some((result, true)) = removed {
                // A corrupt blob is removed even if other rows use it: they would fail too.
                let digest = parse_result_digest(&result)?;
                tx.execute("DELETE FROM evals WHERE result = ?1 AND inline IS NULL", [&result])?;
                let _ = self.dir.remove_file(blob_path(&digest));
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn record_hit(&self, key: String) -> Result<()> {
        let flush = {
            let mut pending = crate::fork::lock(&self.pending);
            let entry = pending.hits.entry(key).or_insert((0, 0));
            entry.0 += 1;
            entry.1 = now();
            pending.hits.len() >= HIT_BATCH || pending.since.elapsed() >= HIT_FLUSH_INTERVAL
        };
        if flush {
            self.flush_hits_in_background();
        }
        Ok(())
    }

    /// Writes buffered hit counts and access times to the index, and waits
    /// until batches handed to the background writer are written too.
    pub fn flush_hits(&self) -> Result<()> {
        let hits = self.take_pending();
        if self.read_only {
            return Ok(());
        }
        // The writer's sender, taken under the lock; the wait happens outside
        // it (and outside any fork section: the writer enters one to write).
        let generation = fork_generation();
        let sender = crate::fork::lock(&self.flusher)
            .as_ref()
            .filter(|running| running.generation == generation)
            .map(|running| running.sender.clone());
        if let Some(sender) = sender {
            let (done, wait) = std::sync::mpsc::sync_channel(1);
            if !hits.is_empty() {
                let _ = sender.send(FlusherMessage::Batch(hits.clone()));
            }
            if sender.send(FlusherMessage::Barrier(done)).is_ok() && wait.recv().is_ok() {
                return Ok(());
            }
            // The writer is gone: write here instead.
            let mut flusher = crate::fork::lock(&self.flusher);
            if flusher.as_ref().is_some_and(|running| running.generation == generation) {
                *flusher = None;
            }
        }
        if hits.is_empty() {
            return Ok(());
        }
        self.with_db(|conn| write_hits(conn, &hits))
    }

    fn take_pending(&self) -> HashMap<String, (u64, u64)> {
        let mut pending = crate::fork::lock(&self.pending);
        pending.since = Instant::now();
        std::mem::take(&mut pending.hits)
    }

    /// Hands a batch of hits to the background writer (started on first
    /// use, and again in a forked child), so a lookup never waits for the
    /// write transaction that records hits.
    fn flush_hits_in_background(&self) {
        let hits = self.take_pending();
        if hits.is_empty() || self.read_only {
            return;
        }
        let generation = fork_generation();
        let mut flusher = crate::fork::lock(&self.flusher);
        if flusher.as_ref().is_none_or(|running| running.generation != generation) {
            if let Some(stale) = flusher.take() {
                // A thread of the parent process: it does not exist here.
                std::mem::forget(stale);
            }
            let (sender, receiver) = std::sync::mpsc::channel::<FlusherMessage>();
            let path = self.root.join("index.sqlite");
            let spawned = std::thread::Builder::new().name("hitsave-hits".into()).spawn(move || {
                let mut conn: Option<Connection> = None;
                for message in receiver {
                    match message {
                        FlusherMessage::Batch(hits) => {
                            // A fork waits for this write (and its SQLite locks) to finish.
                            let _entered = crate::fork::enter();
                            if conn.is_none() {
                                conn = Connection::open(&path)
                                    .and_then(|conn| conn.busy_timeout(BUSY_TIMEOUT).map(|()| conn))
                                    .ok();
                            }
                            if let Some(conn) = conn.as_mut()
                                && let Err(err) = write_hits(conn, &hits)
                            {
                                crate::warn::error(&err);
                            }
                        }
                        FlusherMessage::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
            match spawned {
                Ok(handle) => *flusher = Some(Flusher { sender, handle: Some(handle), generation }),
                Err(_) => {
                    drop(flusher);
                    let _ = self.with_db(|conn| write_hits(conn, &hits));
                    return;
                }
            }
        }
        if let Some(running) = flusher.as_ref() {
            let _ = running.sender.send(FlusherMessage::Batch(hits));
        }
    }

    /// Stores a fresh result (and, in `cloud` mode, queues it for upload).
    /// The caller must still return its value if this fails.
    pub fn put(&self, core: &Core, eval: &NewEval, data: &[u8]) -> Result<PutOutcome> {
        let outcome = self.put_inner(core, eval, data)?;
        if outcome == PutOutcome::Stored
            && let Some(cloud) = &self.cloud
        {
            let key = eval.key.to_string();
            self.with_db(|conn| {
                conn.prepare_cached("INSERT INTO outbox (key, queued) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?
                    .execute(params![key, now() as i64])?;
                Ok(())
            })?;
            cloud.wake_uploader();
        }
        Ok(outcome)
    }

    /// Stores a result without queueing it for upload (downloaded from the
    /// cloud, or from a function memoized with `cloud=False`).
    pub fn put_local(&self, core: &Core, eval: &NewEval, data: &[u8]) -> Result<PutOutcome> {
        self.put_inner(core, eval, data)
    }

    /// Up to `limit` keys waiting for upload, oldest first.
    pub fn outbox(&self, limit: usize) -> Result<Vec<String>> {
        self.with_db(|conn| {
            Ok(conn
                .prepare_cached("SELECT key FROM outbox ORDER BY queued, key LIMIT ?1")?
                .query_map([limit as i64], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    /// How many results wait for upload.
    pub fn outbox_len(&self) -> Result<u64> {
        self.with_db(|conn| Ok(conn.query_row("SELECT count(*) FROM outbox", [], |row| row.get::<_, i64>(0))? as u64))
    }

    /// The bytes of the results waiting for upload.
    pub fn outbox_bytes(&self) -> Result<u64> {
        self.with_db(|conn| {
            Ok(conn.query_row(
                "SELECT COALESCE(SUM(e.size), 0) FROM outbox o JOIN evals e ON e.key = o.key",
                [],
                |row| row.get::<_, i64>(0),
            )? as u64)
        })
    }

    /// Removes an uploaded key from the outbox.
    pub fn outbox_done(&self, key: &str) -> Result<()> {
        self.with_db(|conn| {
            conn.prepare_cached("DELETE FROM outbox WHERE key = ?1")?.execute([key])?;
            Ok(())
        })
    }

    /// Queues every local result for upload (`hitsave push`); returns how many were queued.
    pub fn queue_all(&self, function_name: Option<&str>) -> Result<u64> {
        self.with_db(|conn| {
            let queued = conn.execute(
                "INSERT INTO outbox (key, queued) SELECT key, ?1 FROM evals WHERE ?2 IS NULL OR function_name = ?2
                 ON CONFLICT DO NOTHING",
                params![now() as i64, function_name],
            )?;
            Ok(queued as u64)
        })
    }

    /// An outbox entry as a record and its bytes, or `None` if it is no longer stored.
    pub fn upload_record(&self, key: &str) -> Result<Option<(crate::cloud::RemoteEval, Vec<u8>)>> {
        let Some(record) = self.record(key)? else { return Ok(None) };
        let Some(hit) = self.read_local(&Digest::parse(key)?, false)? else { return Ok(None) };
        let graph = match &record.graph {
            Some(fingerprint) => self.with_db(|conn| {
                Ok(conn
                    .query_row("SELECT root, nodes FROM graphs WHERE fingerprint = ?1", [fingerprint], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .optional()?)
            })?,
            None => None,
        };
        let data = hit.data.bytes().to_vec();
        let eval = crate::cloud::RemoteEval {
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

    /// Waits (up to the configured `upload_wait`) for queued uploads; returns how many are left.
    pub fn drain_uploads(&self) -> Result<u64> {
        match &self.cloud {
            Some(cloud) => cloud.drain(self, self.upload_wait),
            None => Ok(0),
        }
    }

    fn put_inner(&self, core: &Core, eval: &NewEval, data: &[u8]) -> Result<PutOutcome> {
        if self.read_only {
            return Ok(PutOutcome::Skipped);
        }
        let size = data.len() as u64;
        let store_params =
            StoreParams { budget: self.max_size(), min_compute_micros: 0, read_bytes_per_second: 1 << 30 };
        if let Some(decline) = core.store_decision(size, eval.compute_micros, &store_params)? {
            let reason = decline_reason(decline, &store_params);
            self.note_declined(eval, size, &reason);
            return Ok(PutOutcome::Declined(reason));
        }
        let inline = size <= self.inline_limit;
        let digest = if inline { crate::hash::blob_digest(data) } else { self.write_new_blob(data)? };
        let graph_row = match &eval.graph {
            Some(graph) => graph_row(core, graph)?,
            None => None,
        };
        let time = now() as i64;
        let key_text = eval.key.to_string();
        let arguments_text = eval.arguments.to_string();
        let result_text = digest.to_string();
        let insert_eval = |conn: &Connection| -> Result<usize> {
            let mut statement = conn.prepare_cached(
                "INSERT INTO evals (key, function_id, function_name, language, arguments, codec, result, inline, size,
                                    compute_micros, created, last_access, hits, graph)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, 0, ?12)
                 ON CONFLICT(key) DO NOTHING",
            )?;
            Ok(statement.execute(params![
                key_text,
                eval.function_id,
                eval.function_name,
                eval.language,
                arguments_text,
                eval.codec,
                result_text,
                if inline { Some(data) } else { None },
                size as i64,
                eval.compute_micros as i64,
                time,
                graph_row.as_ref().map(|(fingerprint, _)| fingerprint),
            ])?)
        };
        let outcome = self.with_db(|conn| {
            let inserted = if inline && graph_row.is_none() {
                // A small result without a graph is one INSERT (autocommit): no blob
                // to re-check, no graph to record alongside.
                insert_eval(conn)?
            } else {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                // Eviction deletes blobs only inside write transactions: if ours
                // vanished between the write above and now, write it again.
                if !inline && self.dir.metadata(blob_path(&digest)).is_err() {
                    self.write_new_blob(data)?;
                }
                if let (Some((fingerprint, json)), Some(graph)) = (&graph_row, &eval.graph) {
                    record_graph(&tx, fingerprint, &graph.root, json, &eval.function_name, &eval.language, time)?;
                }
                let inserted = insert_eval(&tx)?;
                tx.commit()?;
                inserted
            };
            Ok(if inserted == 1 { PutOutcome::Stored } else { PutOutcome::AlreadyPresent })
        })?;
        if outcome == PutOutcome::Stored && self.over_budget()? {
            self.evict_to(core, (self.max_size() as f64 * EVICTION_TARGET) as u64)?;
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

    /// Writes a large result: hashing (on one other thread) overlaps writing
    /// the temp file, then the file is renamed to its digest, or dropped if an
    /// identical blob is already there.
    fn write_new_blob(&self, data: &[u8]) -> Result<Digest> {
        let io = |path: &Path, source| HitSaveError::StoreIo { path: self.root.join(path), source };
        let temp = PathBuf::from("tmp").join(temp_name());
        let (digest, written) = std::thread::scope(|scope| {
            // One thread hashes while this one writes: on few cores, hashing
            // on all of them would take the CPU the write needs.
            let hashing = scope.spawn(|| Digest::blob(data));
            let written = (|| {
                let mut file = self.dir.create(&temp)?;
                file.write_all(data)?;
                if self.fsync {
                    file.sync_all()?;
                }
                Ok::<_, std::io::Error>(())
            })();
            (hashing.join().unwrap_or_else(|_| Digest::blob(data)), written)
        });
        let placed = written.and_then(|()| {
            let target = blob_path(&digest);
            if self.dir.metadata(&target).is_ok_and(|meta| meta.len() == data.len() as u64) {
                return self.dir.remove_file(&temp); // Identical results are stored once.
            }
            let parent = target.parent().expect("blob paths have a shard directory");
            self.dir.create_dir_all(parent)?;
            self.dir.rename(&temp, &self.dir, &target)?;
            if self.fsync {
                self.dir.open_dir(parent)?.into_std_file().sync_all()?;
            }
            Ok(())
        });
        if let Err(err) = placed {
            let _ = self.dir.remove_file(&temp);
            return Err(io(&temp, err));
        }
        Ok(digest)
    }

    /// The exact total size of the results: one row the triggers keep
    /// (`ensure_size_total`); a scan only for a read-only store opened on an
    /// index no writer has given the triggers yet.
    fn total_size(&self) -> Result<u64> {
        self.with_db(|conn| {
            let kept: Option<i64> =
                conn.query_row("SELECT value FROM totals WHERE name = 'size'", [], |row| row.get(0)).optional()?;
            Ok(match kept {
                Some(total) => total.max(0) as u64,
                None => conn.query_row("SELECT total(size) FROM evals", [], |row| row.get::<_, f64>(0))? as u64,
            })
        })
    }

    /// Whether the store is over its budget: the exact total, one indexed
    /// row read per put (whatever the number of entries; other processes'
    /// puts included).
    fn over_budget(&self) -> Result<bool> {
        Ok(self.total_size()? > self.max_size())
    }

    /// Evicts, by the core's policy, until the total is at most `target`.
    fn evict_to(&self, core: &Core, target: u64) -> Result<(u64, u64)> {
        self.forget_recent();
        self.flush_hits()?;
        self.with_db(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let rows: Vec<(String, Entry)> = {
                let mut statement = tx.prepare("SELECT key, size, compute_micros, last_access, hits FROM evals")?;
                statement
                    .query_map([], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            Entry {
                                size: row.get::<_, i64>(1)? as u64,
                                compute_micros: row.get::<_, i64>(2)? as u64,
                                last_access: row.get::<_, i64>(3)? as u64,
                                hits: row.get::<_, i64>(4)? as u64,
                            },
                        ))
                    })?
                    .collect::<rusqlite::Result<_>>()?
            };
            let entries: Vec<Entry> = rows.iter().map(|(_, entry)| *entry).collect();
            let chosen =
                core.evict(&entries, &EvictionParams { budget: target, now: now(), half_life: HALF_LIFE_SECONDS })?;
            let mut evicted_bytes = 0;
            for &index in &chosen {
                let (key, entry) = &rows[index as usize];
                evicted_bytes += entry.size;
                let removed: Option<(String, bool)> = tx
                    .query_row("DELETE FROM evals WHERE key = ?1 RETURNING result, inline IS NULL", [key], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?;
                if let Some((result, true)) = removed {
                    remove_blob_if_unused(&self.dir, &tx, &result)?;
                }
            }
            tx.execute("UPDATE totals SET value = value + ?1 WHERE name = 'evictions'", [chosen.len() as i64])?;
            tx.commit()?;
            Ok((chosen.len() as u64, evicted_bytes))
        })
    }

    /// Applies the budget now (optionally a smaller one), removes blob files
    /// no entry uses and temp files older than an hour.
    pub fn gc(&self, core: &Core, max_size: Option<u64>) -> Result<GcReport> {
        let budget = max_size.unwrap_or_else(|| self.max_size());
        let (evicted, evicted_bytes) =
            if self.total_size()? > budget { self.evict_to(core, budget) } else { Ok((0, 0)) }?;
        let mut report = GcReport { evicted, evicted_bytes, ..GcReport::default() };
        // Orphans: blob files without a row. Checked under the write lock, per shard.
        let shards: Vec<String> = match self.dir.read_dir("blobs") {
            Ok(entries) => entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect(),
            Err(_) => Vec::new(),
        };
        for shard in shards {
            if shard.len() != 2 || !shard.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let names: Vec<String> = match self.dir.read_dir(PathBuf::from("blobs").join(&shard)) {
                Ok(entries) => {
                    entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect()
                }
                Err(_) => continue,
            };
            self.with_db(|conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                for name in &names {
                    let Ok(digest) = Digest::parse(&format!("blob1_{shard}{name}")) else { continue };
                    let present = self.dir.metadata(blob_path(&digest)).is_ok();
                    remove_blob_if_unused(&self.dir, &tx, &digest.to_string())?;
                    if present && self.dir.metadata(blob_path(&digest)).is_err() {
                        report.orphan_blobs += 1;
                    }
                }
                tx.commit()?;
                Ok(())
            })?;
        }
        if let Ok(entries) = self.dir.read_dir("tmp") {
            for entry in entries.filter_map(|e| e.ok()) {
                let old = entry
                    .metadata()
                    .ok()
                    .and_then(|meta| meta.modified().ok())
                    .and_then(|time| time.into_std().elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(3600));
                if old && self.dir.remove_file(PathBuf::from("tmp").join(entry.file_name())).is_ok() {
                    report.stale_temp_files += 1;
                }
            }
        }
        Ok(report)
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
            let rows: Vec<(String, bool)> = {
                let mut statement = tx.prepare(
                    "DELETE FROM evals WHERE (?1 IS NULL OR function_name = ?1) RETURNING result, inline IS NULL",
                )?;
                statement
                    .query_map([function_name], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut blobs: Vec<&String> = rows.iter().filter(|(_, blob)| *blob).map(|(digest, _)| digest).collect();
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

    /// Re-hashes every entry; corrupt ones (or ones whose blob is missing)
    /// are reported and removed. `progress(done, total)` is called as it goes.
    pub fn verify(&self, mut progress: impl FnMut(u64, u64)) -> Result<VerifyReport> {
        let total = self
            .with_db(|conn| Ok(conn.query_row("SELECT count(*) FROM evals", [], |row| row.get::<_, i64>(0))?))?
            as u64;
        let mut report = VerifyReport::default();
        // Page by page, by key: memory stays bounded whatever the number of
        // entries (all records at once took 722 MiB at a million).
        let mut after = String::new();
        loop {
            let page: Vec<EvalRecord> = self.with_db(|conn| {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {RECORD_COLUMNS} FROM evals WHERE key > ?1 ORDER BY key LIMIT {VERIFY_PAGE}"
                ))?;
                Ok(statement.query_map([&after], record_from_row)?.collect::<rusqlite::Result<_>>()?)
            })?;
            let Some(last) = page.last() else { break };
            after = last.key.clone();
            for record in &page {
                let key = Digest::parse(&record.key)?;
                if !self.verify_one(&key, record)? {
                    report.corrupt.push(record.key.clone());
                    self.remove_corrupt(&record.key)?;
                }
                report.checked += 1;
                progress(report.checked, total.max(report.checked));
            }
        }
        Ok(report)
    }

    fn verify_one(&self, key: &Digest, record: &EvalRecord) -> Result<bool> {
        let expected = parse_result_digest(&record.result)?;
        let bytes = if record.inline {
            let inline: Option<Vec<u8>> = self.with_db(|conn| {
                Ok(conn
                    .query_row("SELECT inline FROM evals WHERE key = ?1", [key.to_string()], |row| row.get(0))
                    .optional()?
                    .flatten())
            })?;
            match inline {
                Some(bytes) => ResultData::Inline(bytes),
                None => return Ok(true), // removed meanwhile
            }
        } else {
            match self.map_blob(&expected)? {
                Some(map) => ResultData::Mapped(map),
                None => return Ok(false),
            }
        };
        let intact = crate::hash::blob_digest(bytes.bytes()) == expected && bytes.bytes().len() as u64 == record.size;
        // A result under the portable codec must also decode as one (a
        // record from elsewhere could claim the codec for other bytes).
        Ok(intact && (record.codec != crate::portable::CODEC || crate::portable::check(bytes.bytes()).is_ok()))
    }

    /// One record, without reading or verifying its result.
    pub fn record(&self, key: &str) -> Result<Option<EvalRecord>> {
        self.with_db(|conn| {
            Ok(conn
                .query_row(&format!("SELECT {RECORD_COLUMNS} FROM evals WHERE key = ?1"), [key], record_from_row)
                .optional()?)
        })
    }

    /// Records, all or of one function, newest first.
    pub fn evals(&self, function_name: Option<&str>) -> Result<Vec<EvalRecord>> {
        self.flush_hits()?;
        self.with_db(|conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM evals WHERE (?1 IS NULL OR function_name = ?1) ORDER BY created DESC, key"
            ))?;
            Ok(statement.query_map([function_name], record_from_row)?.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Per-function summaries, by name.
    pub fn functions(&self) -> Result<Vec<FunctionSummary>> {
        self.flush_hits()?;
        self.with_db(|conn| {
            let mut statement = conn.prepare(
                "SELECT function_name, group_concat(DISTINCT language), count(*), sum(size), sum(hits), max(last_access)
                 FROM evals GROUP BY function_name ORDER BY function_name",
            )?;
            Ok(statement
                .query_map([], |row| {
                    let languages: String = row.get(1)?;
                    let mut languages: Vec<String> = languages.split(',').map(str::to_owned).collect();
                    languages.sort();
                    Ok(FunctionSummary {
                        function_name: row.get(0)?,
                        languages,
                        evals: row.get::<_, i64>(2)? as u64,
                        size: row.get::<_, i64>(3)? as u64,
                        hits: row.get::<_, i64>(4)? as u64,
                        last_access: row.get::<_, i64>(5)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Store-wide numbers.
    pub fn stats(&self) -> Result<Stats> {
        self.flush_hits()?;
        let (evals, functions, size, inline_size, hits, evictions, schema_version) = self.with_db(|conn| {
            Ok(conn.query_row(
                "SELECT count(*), count(DISTINCT function_name), coalesce(sum(size), 0),
                        coalesce(sum(CASE WHEN inline IS NULL THEN 0 ELSE size END), 0), coalesce(sum(hits), 0),
                        (SELECT value FROM totals WHERE name = 'evictions'), (SELECT user_version FROM pragma_user_version)
                 FROM evals",
                [],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)? as u64,
                        row.get::<_, i64>(1)? as u64,
                        row.get::<_, i64>(2)? as u64,
                        row.get::<_, i64>(3)? as u64,
                        row.get::<_, i64>(4)? as u64,
                        row.get::<_, i64>(5)? as u64,
                        row.get::<_, i64>(6)?,
                    ))
                },
            )?)
        })?;
        let (mut blobs, mut blob_bytes) = (0, 0);
        if let Ok(shards) = self.dir.read_dir("blobs") {
            for shard in shards.filter_map(|e| e.ok()) {
                if let Ok(files) = self.dir.read_dir(PathBuf::from("blobs").join(shard.file_name())) {
                    for file in files.filter_map(|e| e.ok()) {
                        blobs += 1;
                        blob_bytes += file.metadata().map(|meta| meta.len()).unwrap_or(0);
                    }
                }
            }
        }
        Ok(Stats {
            path: self.root.clone(),
            evals,
            functions,
            size,
            inline_size,
            blobs,
            blob_bytes,
            max_size: self.max_size(),
            hits,
            evictions,
            schema_version,
        })
    }

    /// Which dependencies changed between a function's stored results and
    /// the code last seen for it.
    pub fn why(&self, core: &Core, function_name: &str) -> Result<WhyReport> {
        self.why_of(core, function_name, None)
    }

    /// [`Store::why`] over the results of one argument digest only (`None`:
    /// every result of the function).
    pub fn why_of(&self, core: &Core, function_name: &str, arguments: Option<&Digest>) -> Result<WhyReport> {
        let arguments = arguments.map(Digest::to_string);
        let (current, groups) = self.with_db(|conn| {
            let current: Option<String> = conn
                .query_row("SELECT graph FROM functions WHERE name = ?1", [function_name], |row| row.get(0))
                .optional()?
                .flatten();
            let mut statement = conn.prepare(
                "SELECT graph, count(*) FROM evals WHERE function_name = ?1 AND (?2 IS NULL OR arguments = ?2) \
                 GROUP BY graph ORDER BY max(created) DESC",
            )?;
            let groups: Vec<(Option<String>, i64)> = statement
                .query_map(params![function_name, arguments], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok((current, groups))
        })?;
        let declined = self.declined(function_name)?;
        if current.is_none() && groups.is_empty() && declined.is_none() {
            return Err(HitSaveError::NotFound(format!(
                "no function named {function_name:?} in {}",
                self.root.display()
            )));
        }
        let load = |fingerprint: &str| -> Result<Option<Graph>> {
            let json: Option<String> = self.with_db(|conn| {
                Ok(conn
                    .query_row("SELECT nodes FROM graphs WHERE fingerprint = ?1", [fingerprint], |row| row.get(0))
                    .optional()?)
            })?;
            json.map(|json| serde_json::from_str(&json).map_err(|err| HitSaveError::StoreDatabase(err.to_string())))
                .transpose()
        };
        let current_graph = match &current {
            Some(fingerprint) => load(fingerprint)?,
            None => None,
        };
        let mut stored = Vec::new();
        for (graph, count) in groups {
            let is_current = graph.is_some() && graph == current;
            let mut changes = Vec::new();
            if let (Some(fingerprint), Some(now_graph), false) = (&graph, &current_graph, is_current)
                && let Some(old_graph) = load(fingerprint)?
            {
                for change in core.diff(&old_graph.to_nodes()?, &now_graph.to_nodes()?, &now_graph.root)? {
                    changes.push((change.name, change.change.as_str().to_owned()));
                }
            }
            stored.push(WhyGroup { graph, evals: count as u64, current: is_current, changes });
        }
        Ok(WhyReport { function_name: function_name.to_owned(), current, stored, declined })
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

fn write_hits(conn: &mut Connection, hits: &HashMap<String, (u64, u64)>) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut statement =
            tx.prepare_cached("UPDATE evals SET hits = hits + ?2, last_access = max(last_access, ?3) WHERE key = ?1")?;
        for (key, (count, at)) in hits {
            statement.execute(params![key, *count as i64, *at as i64])?;
        }
    }
    tx.commit()?;
    Ok(())
}
