//! The index's schema: versioned migrations, tables a build may add without a version, the size total kept by triggers, WAL.

use super::*;

pub(super) const MIGRATIONS: &[&str] = &[
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

pub(super) fn ensure_additive_tables(conn: &mut Connection) -> Result<()> {
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
pub(super) fn ensure_size_total(conn: &mut Connection) -> Result<()> {
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
