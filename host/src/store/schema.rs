//! The index's schema: versioned migrations, tables a build may add without a version, the size total kept by triggers, WAL.

use super::*;

/// The migrations, in order: the one at index `i` takes a store from version `i` to `i + 1`.
pub(super) fn migrations() -> [std::borrow::Cow<'static, str>; SCHEMA_VERSION as usize] {
    [MIGRATION_1.into(), MIGRATION_2.into(), migration_3().into()]
}

const MIGRATION_1: &str =
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
    INSERT INTO totals VALUES ('evictions', 0);";

/// 1 -> 2: results waiting to be uploaded to the cloud (a persistent outbox).
const MIGRATION_2: &str = "CREATE TABLE outbox (key TEXT PRIMARY KEY NOT NULL, queued INTEGER NOT NULL) WITHOUT ROWID;";

/// The total size of the results, kept exact in `totals` by triggers on
/// `records`, in the same transaction as every insert and delete (the
/// triggers live in the file, so every build sharing the store keeps it). A
/// put then reads one row instead of scanning the index (a scan cost
/// 330-430 ms at a million entries).
const SIZE_TOTAL: &str = "CREATE TRIGGER records_size_insert AFTER INSERT ON records BEGIN
        UPDATE totals SET value = value + NEW.size WHERE name = 'size';
    END;
    CREATE TRIGGER records_size_delete AFTER DELETE ON records BEGIN
        UPDATE totals SET value = value - OLD.size WHERE name = 'size';
    END;
    CREATE TRIGGER records_size_update AFTER UPDATE OF size ON records BEGIN
        UPDATE totals SET value = value - OLD.size + NEW.size WHERE name = 'size';
    END;
    INSERT OR REPLACE INTO totals (name, value) VALUES ('size', (SELECT coalesce(sum(size), 0) FROM records));";

/// 2 -> 3: digests as 34-byte blobs (`packed.rs`), a function identity that
/// is its graph's fingerprint kept once (NULL in `function_id`), in tables
/// of new names: `records` for `evals`, `uploads` for `outbox`. The names are
/// new so that a process of an older build with the index already open
/// fails on its next statement ("no such table") instead of writing text
/// digests into the new tables, where lookups by blob would never see them.
fn migration_3() -> String {
    let pack = packed::pack_sql;
    format!(
        "CREATE TABLE records (
            key BLOB PRIMARY KEY NOT NULL,
            function_id,
            function_name TEXT NOT NULL,
            language TEXT NOT NULL,
            arguments BLOB NOT NULL,
            codec TEXT NOT NULL,
            result BLOB NOT NULL,
            inline BLOB,
            size INTEGER NOT NULL,
            compute_micros INTEGER NOT NULL,
            created INTEGER NOT NULL,
            last_access INTEGER NOT NULL,
            hits INTEGER NOT NULL DEFAULT 0,
            graph BLOB
        ) WITHOUT ROWID;
        INSERT INTO records
            SELECT {key}, CASE WHEN function_id = graph THEN NULL ELSE {function_id} END, function_name, language,
                   {arguments}, codec, {result}, inline, size, compute_micros, created, last_access, hits, {graph}
            FROM evals;
        DROP TABLE evals;
        CREATE INDEX records_by_result ON records(result) WHERE inline IS NULL;
        CREATE TABLE uploads (key BLOB PRIMARY KEY NOT NULL, queued INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO uploads SELECT {key}, queued FROM outbox;
        DROP TABLE outbox;
        {size_total}",
        key = pack("key"),
        function_id = pack("function_id"),
        arguments = pack("arguments"),
        result = pack("result"),
        graph = pack("graph"),
        size_total = SIZE_TOTAL,
    )
}

/// Tables a build may add without a schema version: builds that do not know
/// them ignore them, so an older SDK sharing the store (pip and npm upgrade
/// separately) keeps working instead of refusing a newer schema. Created on
/// first open by a writer; readers treat a missing one as empty.
pub(super) const ADDITIVE_TABLES: &[(&str, &str)] = &[(
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

pub(super) fn ensure_additive_tables(conn: &Connection) -> Result<()> {
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
    Ok(())
}

/// How long a connection waits for another one's write lock.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Puts the index in WAL mode (a setting kept in the file). While another
/// connection holds the database, SQLite refuses the switch with
/// `SQLITE_BUSY` at once, without waiting through the busy timeout: callers
/// in several processes whose first calls create one store together met
/// "database is locked" here, and one of them computed without its cache. A
/// file already in WAL needs no switch; otherwise the switch is retried for
/// as long as the busy timeout.
pub(super) fn enable_wal(conn: &Connection) -> Result<()> {
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

/// An additive table a read-only process finds missing (no writer has opened the store since it was added).
pub(super) fn missing_table(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(_, Some(message)) if message.starts_with("no such table"))
}
