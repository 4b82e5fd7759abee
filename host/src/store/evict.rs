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

/// Index rows read per query while choosing what to evict.
const EVICT_PAGE: usize = 16_384;
/// Entries chosen per round at most (the candidates kept in memory).
const EVICT_BATCH: usize = 65_536;
/// Entries deleted per write transaction (short, so other writers and a
/// fork wait briefly).
const DELETE_CHUNK: usize = 2048;

/// What the background evictor is asked.
pub(super) enum EvictorMessage {
    /// Evict down to this many bytes.
    Evict(u64),
    /// Answer once everything asked before is done.
    Barrier(std::sync::mpsc::SyncSender<()>),
}

/// The thread that keeps the budget off the callers' path (one per store
/// handle, started when a put first finds the store over its budget).
pub(super) struct Evictor {
    sender: std::sync::mpsc::Sender<EvictorMessage>,
    generation: u64,
}

/// Over the budget by more than this fraction, a put evicts itself instead
/// of leaving it to the background (a bound when the background cannot keep
/// up, or the processes are too short-lived for it to finish).
const OVERSHOOT: f64 = 0.25;

impl Store {
    /// The exact total size of the results: one row the triggers keep
    /// (`schema::SIZE_TOTAL`, created with them by the schema 3 migration);
    /// a scan only if that row is missing.
    pub(super) fn total_size(&self) -> Result<u64> {
        self.with_db(|conn| {
            let kept: Option<i64> =
                conn.query_row("SELECT value FROM totals WHERE name = 'size'", [], |row| row.get(0)).optional()?;
            Ok(match kept {
                Some(total) => total.max(0) as u64,
                None => conn.query_row("SELECT total(size) FROM records", [], |row| row.get::<_, f64>(0))? as u64,
            })
        })
    }

    /// After a put: over the budget, eviction down to [`EVICTION_TARGET`] of
    /// it is handed to the background evictor and the put returns; more than
    /// [`OVERSHOOT`] over (or without a thread), the put evicts itself.
    pub(super) fn keep_budget(&self, core: &Core) -> Result<()> {
        let max = self.max_size();
        let total = self.total_size()?;
        if total <= max {
            return Ok(());
        }
        let target = (max as f64 * EVICTION_TARGET) as u64;
        if total as f64 > max as f64 * (1.0 + OVERSHOOT) || !self.evict_in_background(target) {
            self.evict_to(core, target)?;
        }
        Ok(())
    }

    /// Asks the background evictor (started on first use, and again in a
    /// forked child) to evict down to `target`; `false` if no thread runs.
    fn evict_in_background(&self, target: u64) -> bool {
        let generation = fork_generation();
        let mut evictor = crate::fork::lock(&self.evictor);
        if evictor.as_ref().is_none_or(|running| running.generation != generation) {
            if let Some(stale) = evictor.take() {
                std::mem::forget(stale); // A thread of the parent process: it does not exist here.
            }
            let mut config = Config::for_dir(&self.root);
            config.max_size = self.max_size();
            config.inline_limit = self.inline_limit;
            config.fsync = self.fsync;
            config.lock_wait = self.lock_wait;
            let (sender, receiver) = std::sync::mpsc::channel::<EvictorMessage>();
            let spawned = std::thread::Builder::new().name("hitsave-evict".into()).spawn(move || {
                // Its own handle on the store: its own connection, never the callers'.
                let store = match Store::open(&config) {
                    Ok(store) => store,
                    Err(error) => {
                        crate::warn::error(&error);
                        return;
                    }
                };
                let mut messages = receiver.into_iter().peekable();
                while let Some(message) = messages.next() {
                    match message {
                        EvictorMessage::Evict(mut target) => {
                            // Requests that queued up meanwhile are one pass.
                            while let Some(EvictorMessage::Evict(next)) =
                                messages.next_if(|next| matches!(next, EvictorMessage::Evict(_)))
                            {
                                target = target.min(next);
                            }
                            let evicted = Core::shared().and_then(|core| store.evict_to(core, target));
                            if let Err(error) = evicted {
                                crate::warn::error(&error);
                            }
                        }
                        EvictorMessage::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
            match spawned {
                Ok(_) => *evictor = Some(Evictor { sender, generation }),
                Err(_) => return false,
            }
        }
        evictor.as_ref().is_some_and(|running| running.sender.send(EvictorMessage::Evict(target)).is_ok())
    }

    /// Waits until the background evictor has done what it was asked (for
    /// tests and tools that read sizes right after puts).
    pub fn wait_for_eviction(&self) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        let sent = {
            let evictor = crate::fork::lock(&self.evictor);
            evictor
                .as_ref()
                .filter(|running| running.generation == fork_generation())
                .is_some_and(|running| running.sender.send(EvictorMessage::Barrier(done)).is_ok())
        };
        if sent {
            let _ = wait.recv();
        }
    }

    /// Evicts, by the core's policy, until the total is at most `target`, in
    /// memory that does not grow with the store: each round pages through
    /// the index ([`EVICT_PAGE`] rows at a time, no transaction held) keeping
    /// only the lowest-ranked entries that free the bytes still needed (at
    /// most [`EVICT_BATCH`]), then deletes them in short write transactions
    /// ([`DELETE_CHUNK`] entries each).
    ///
    /// The result is the core's choice over the whole index: an entry the
    /// policy would evict first among all entries is also among the first
    /// of any subset holding it, so merging each page's choice with the
    /// candidates so far and asking the core again loses none of them.
    pub(super) fn evict_to(&self, core: &Core, target: u64) -> Result<(u64, u64)> {
        self.evict_paged(core, target, EVICT_PAGE, EVICT_BATCH)
    }

    fn evict_paged(&self, core: &Core, target: u64, page: usize, batch: usize) -> Result<(u64, u64)> {
        self.forget_recent();
        self.flush_hits()?;
        let (mut evicted, mut evicted_bytes) = (0, 0);
        loop {
            let total = self.total_size()?;
            if total <= target {
                break;
            }
            let chosen = self.eviction_candidates(core, total - target, page, batch)?;
            let (count, bytes) = self.delete_evicted(&chosen)?;
            evicted += count;
            evicted_bytes += bytes;
            if count == 0 {
                break; // Nothing left to evict (or others removed it first).
            }
        }
        Ok((evicted, evicted_bytes))
    }

    /// The keys of the entries the policy evicts first that together free
    /// at least `needed` bytes (at most `batch` of them), reading `page` rows at a time.
    fn eviction_candidates(&self, core: &Core, needed: u64, page: usize, batch: usize) -> Result<Vec<(String, u64)>> {
        let now = now();
        let mut candidates: Vec<(String, Entry)> = Vec::new();
        let mut after = String::new();
        loop {
            let rows: Vec<(String, Entry)> = self.with_db(|conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT key, size, compute_micros, last_access, hits FROM records WHERE key > ?1 ORDER BY key LIMIT ?2",
                )?;
                let rows = statement.query_map(params![PackedText(&after), page as i64], |row| {
                    Ok((
                        row.get::<_, Unpacked>(0)?.0,
                        Entry {
                            size: row.get::<_, i64>(1)?.max(0) as u64,
                            compute_micros: row.get::<_, i64>(2)?.max(0) as u64,
                            last_access: row.get::<_, i64>(3)?.max(0) as u64,
                            hits: row.get::<_, i64>(4)?.max(0) as u64,
                        },
                    ))
                })?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })?;
            let Some((last, _)) = rows.last() else { break };
            after = last.clone();
            let full = rows.len() == page;
            candidates.extend(rows);
            let entries: Vec<Entry> = candidates.iter().map(|(_, entry)| *entry).collect();
            let sum: u64 = entries.iter().map(|entry| entry.size).sum();
            let budget = sum.saturating_sub(needed);
            let mut chosen = core.evict(&entries, &EvictionParams { budget, now, half_life: HALF_LIFE_SECONDS })?;
            chosen.truncate(batch);
            let mut slots: Vec<Option<(String, Entry)>> = candidates.drain(..).map(Some).collect();
            candidates =
                chosen.iter().filter_map(|&index| slots.get_mut(index as usize).and_then(Option::take)).collect();
            if !full {
                break;
            }
        }
        Ok(candidates.into_iter().map(|(key, entry)| (key, entry.size)).collect())
    }

    /// Deletes chosen entries (and blobs no entry uses any more), in write
    /// transactions of [`DELETE_CHUNK`] entries; entries already gone are
    /// skipped.
    fn delete_evicted(&self, chosen: &[(String, u64)]) -> Result<(u64, u64)> {
        let (mut count, mut bytes) = (0u64, 0u64);
        for chunk in chosen.chunks(DELETE_CHUNK) {
            self.with_db(|conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let mut deleted = 0u64;
                for (key, size) in chunk {
                    let removed: Option<(Digest, bool)> = tx
                        .query_row(
                            "DELETE FROM records WHERE key = ?1 RETURNING result, inline IS NULL",
                            [PackedText(key)],
                            |row| Ok((result_column(row, 0)?, row.get(1)?)),
                        )
                        .optional()?;
                    let Some((result, blob)) = removed else { continue };
                    deleted += 1;
                    bytes += size;
                    if blob {
                        remove_blob_if_unused(&self.dir, &tx, &result)?;
                    }
                }
                tx.execute("UPDATE totals SET value = value + ?1 WHERE name = 'evictions'", [deleted as i64])?;
                tx.commit()?;
                count += deleted;
                Ok(())
            })?;
        }
        Ok((count, bytes))
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
                    remove_blob_if_unused(&self.dir, &tx, &digest)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewEval;

    #[test]
    fn paged_eviction_chooses_what_the_core_chooses_over_the_whole_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_dir(dir.path());
        config.max_size = 1 << 40;
        let store = Store::open(&config).unwrap();
        let core = Core::shared().unwrap();
        for index in 0..300u64 {
            let label = format!("entry {index}");
            let eval = NewEval {
                key: Digest::new(DigestKind::Key, *blake3::hash(label.as_bytes()).as_bytes()),
                function_id: label.clone(),
                function_name: "f".into(),
                language: "rust".into(),
                arguments: Digest::new(DigestKind::Value, *blake3::hash(label.as_bytes()).as_bytes()),
                codec: "raw".into(),
                compute_micros: 1000 + (index * 7919) % 100_003,
                graph: None,
            };
            let data = vec![index as u8; 10 + (index as usize * 37) % 3000];
            store.put_local(core, &eval, &data).unwrap();
        }
        let rows: Vec<(String, Entry)> = store
            .with_db(|conn| {
                let mut statement = conn.prepare("SELECT key, size, compute_micros, last_access, hits FROM records")?;
                let rows = statement.query_map([], |row| {
                    Ok((
                        row.get::<_, Unpacked>(0)?.0,
                        Entry {
                            size: row.get::<_, i64>(1)? as u64,
                            compute_micros: row.get::<_, i64>(2)? as u64,
                            last_access: row.get::<_, i64>(3)? as u64,
                            hits: row.get::<_, i64>(4)? as u64,
                        },
                    ))
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .unwrap();
        let total: u64 = rows.iter().map(|(_, entry)| entry.size).sum();
        let target = total / 3;
        let entries: Vec<Entry> = rows.iter().map(|(_, entry)| *entry).collect();
        let params = EvictionParams { budget: target, now: now(), half_life: HALF_LIFE_SECONDS };
        let mut expected: Vec<String> =
            core.evict(&entries, &params).unwrap().into_iter().map(|index| rows[index as usize].0.clone()).collect();
        expected.sort();
        // Pages of 7 rows, at most 5 entries per round: many pages, many rounds.
        let (count, bytes) = store.evict_paged(core, target, 7, 5).unwrap();
        let kept: std::collections::HashSet<String> = store
            .with_db(|conn| {
                let mut statement = conn.prepare("SELECT key FROM records")?;
                let rows = statement.query_map([], |row| Ok(row.get::<_, Unpacked>(0)?.0))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .unwrap();
        let mut evicted: Vec<String> =
            rows.iter().map(|(key, _)| key.clone()).filter(|key| !kept.contains(key)).collect();
        evicted.sort();
        assert!(expected.len() > 20, "the test evicts over several rounds: {}", expected.len());
        assert_eq!(evicted, expected);
        assert_eq!(count, expected.len() as u64);
        assert_eq!(store.total_size().unwrap(), total - bytes);
        assert!(store.total_size().unwrap() <= target);
    }
}
