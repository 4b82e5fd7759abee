//! The outbox: results waiting for upload, kept in the index (table `uploads`) so they survive the process (the cloud sync reads it; the store knows no cloud).

use super::*;

impl Store {
    /// Queues a stored result for upload (the outbox survives the process).
    pub fn queue_upload(&self, key: &Digest) -> Result<()> {
        self.with_db(|conn| {
            conn.prepare_cached("INSERT INTO uploads (key, queued) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?
                .execute(params![Packed(key), now() as i64])?;
            Ok(())
        })
    }

    /// Up to `limit` keys waiting for upload, oldest first.
    pub fn outbox(&self, limit: usize) -> Result<Vec<String>> {
        self.with_db(|conn| {
            Ok(conn
                .prepare_cached("SELECT key FROM uploads ORDER BY queued, key LIMIT ?1")?
                .query_map([limit as i64], |row| Ok(row.get::<_, Unpacked>(0)?.0))?
                .collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    /// How many results wait for upload.
    pub fn outbox_len(&self) -> Result<u64> {
        self.with_db(|conn| Ok(conn.query_row("SELECT count(*) FROM uploads", [], |row| row.get::<_, i64>(0))? as u64))
    }

    /// The bytes of the results waiting for upload.
    pub fn outbox_bytes(&self) -> Result<u64> {
        self.with_db(|conn| {
            Ok(conn.query_row(
                "SELECT COALESCE(SUM(r.size), 0) FROM uploads u JOIN records r ON r.key = u.key",
                [],
                |row| row.get::<_, i64>(0),
            )? as u64)
        })
    }

    /// Removes an uploaded key from the outbox.
    pub fn outbox_done(&self, key: &str) -> Result<()> {
        self.with_db(|conn| {
            conn.prepare_cached("DELETE FROM uploads WHERE key = ?1")?.execute([PackedText(key)])?;
            Ok(())
        })
    }

    /// Queues every local result for upload (`hitsave push`); returns how many were queued.
    pub fn queue_all(&self, function_name: Option<&str>) -> Result<u64> {
        self.with_db(|conn| {
            let queued = conn.execute(
                "INSERT INTO uploads (key, queued) SELECT key, ?1 FROM records WHERE ?2 IS NULL OR function_name = ?2
                 ON CONFLICT DO NOTHING",
                params![now() as i64, function_name],
            )?;
            Ok(queued as u64)
        })
    }
}
