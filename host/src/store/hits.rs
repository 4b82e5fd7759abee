//! Hit counting without a write per hit (batched, written by a background thread) and the memory of verified hits.

use super::*;

/// Hits are recorded in memory and written in batches of this many (or on
/// the next write, or when the store is dropped): a hit must not cost a
/// write transaction.
pub(super) const HIT_BATCH: usize = 4096;

pub(super) const HIT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

pub(super) struct PendingHits {
    pub(super) hits: HashMap<String, (u64, u64)>,
    pub(super) since: Instant,
}

pub(super) enum FlusherMessage {
    Batch(HashMap<String, (u64, u64)>),
    Barrier(std::sync::mpsc::SyncSender<()>),
}

pub(super) struct Flusher {
    pub(super) sender: std::sync::mpsc::Sender<FlusherMessage>,
    pub(super) handle: Option<std::thread::JoinHandle<()>>,
    pub(super) generation: u64,
}

/// Small results this process read recently, already verified: a repeated
/// hit skips SQLite. Results are immutable per key, so serving them from
/// memory is exact; any deletion through this store forgets them all.
#[derive(Default)]
pub(super) struct RecentHits {
    pub(super) entries: HashMap<String, (String, String, std::sync::Arc<[u8]>)>,
    pub(super) order: std::collections::VecDeque<String>,
    pub(super) bytes: usize,
}

/// Memory for [`RecentHits`].
pub(super) const RECENT_BYTES: usize = 16 << 20;

impl RecentHits {
    pub(super) fn get(&self, key: &str) -> Option<Hit> {
        self.entries.get(key).map(|(codec, language, bytes)| Hit {
            codec: codec.clone(),
            language: language.clone(),
            inline: true,
            data: ResultData::Inline(bytes.to_vec()),
        })
    }

    pub(super) fn insert(&mut self, key: &str, codec: &str, language: &str, bytes: &[u8]) {
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

    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }
}

pub(super) fn write_hits(conn: &mut Connection, hits: &HashMap<String, (u64, u64)>) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut statement = tx
            .prepare_cached("UPDATE records SET hits = hits + ?2, last_access = max(last_access, ?3) WHERE key = ?1")?;
        for (key, (count, at)) in hits {
            statement.execute(params![PackedText(key), *count as i64, *at as i64])?;
        }
    }
    tx.commit()?;
    Ok(())
}

impl Store {
    /// A hit this process already read and verified, from memory only: no
    /// SQLite, no file, no hashing, so it never blocks (Node's async call
    /// path answers repeated hits with it on the JavaScript thread). `None`
    /// means "not in memory", not a miss: ask [`Store::get_local`] then. Counts
    /// the hit like [`Store::get_local`].
    pub fn get_recent(&self, key: &Digest) -> Option<Hit> {
        let key_text = key.to_string();
        let hit = crate::fork::lock(&self.recent).get(&key_text)?;
        // Counting is buffered in memory; a failure there is only advisory.
        let _ = self.record_hit(key_text);
        Some(hit)
    }

    pub(super) fn forget_recent(&self) {
        crate::fork::lock(&self.recent).clear();
    }

    pub(super) fn record_hit(&self, key: String) -> Result<()> {
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

    pub(super) fn take_pending(&self) -> HashMap<String, (u64, u64)> {
        let mut pending = crate::fork::lock(&self.pending);
        pending.since = Instant::now();
        std::mem::take(&mut pending.hits)
    }

    /// Hands a batch of hits to the background writer (started on first
    /// use, and again in a forked child), so a lookup never waits for the
    /// write transaction that records hits.
    pub(super) fn flush_hits_in_background(&self) {
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
}
