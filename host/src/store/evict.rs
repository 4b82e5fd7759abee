//! The size budget: the total, cost-aware eviction through the core's policy, and `gc`.

use super::*;

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

impl Store {
    /// The exact total size of the results: one row the triggers keep
    /// (`ensure_size_total`); a scan only for a read-only store opened on an
    /// index no writer has given the triggers yet.
    pub(super) fn total_size(&self) -> Result<u64> {
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
    pub(super) fn over_budget(&self) -> Result<bool> {
        Ok(self.total_size()? > self.max_size())
    }

    /// Evicts, by the core's policy, until the total is at most `target`.
    pub(super) fn evict_to(&self, core: &Core, target: u64) -> Result<(u64, u64)> {
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
}
