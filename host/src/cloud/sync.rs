//! What a cache in `cloud` mode does with the client: read-through, the background uploader of the outbox, bulk downloads and the prefetch policy, server health with backoff.

use super::*;

/// An outbox entry as the record to send and its bytes (a large result's
/// still mapped from its blob file, not copied: an 8 GiB result is sent
/// without 8 GiB of memory), or `None` if the store no longer holds it.
pub fn upload_record(store: &Store, key: &str) -> Result<Option<(RemoteEval, bytes::Bytes)>> {
    let Some(record) = store.record(key)? else { return Ok(None) };
    let Some(hit) = store.read_uncounted(&Digest::parse(key)?)? else { return Ok(None) };
    let graph = match &record.graph {
        Some(fingerprint) => store.graph_json(fingerprint)?,
        None => None,
    };
    let data = hit.data.into_shared();
    let eval = RemoteEval {
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

/// Whether the server answered recently, and when to try again if not.
pub(super) struct Health {
    down_until: Option<Instant>,
    backoff: Duration,
    /// The server's last refusal (`cloud_rejected`: status, code, message),
    /// until a request succeeds.
    refused: Option<(u16, String, String)>,
    /// The fork generation whose background health check is running, if any.
    probing: Option<u64>,
}

/// A store's cloud side: read-through, background upload, bulk download.
pub struct CloudSync {
    client: CloudClient,
    config: Config,
    health: Mutex<Health>,
    uploading: AtomicBool,
    /// The fork generation `uploading` was last set in: a flag the parent's
    /// uploader set means nothing in a forked child.
    uploading_generation: std::sync::atomic::AtomicU64,
    /// Completed uploader runs (so a drain can tell a run that made no progress).
    runs: std::sync::atomic::AtomicU64,
    /// Per function: calls that reached the cloud, for the prefetch policy.
    usage: Mutex<std::collections::HashMap<String, Usage>>,
}

/// What the prefetch policy sees of one function in this process.
#[derive(Default)]
pub(super) struct Usage {
    calls: u64,
    remote_hits: u64,
    misses: u64,
    /// A bulk fetch was considered (once per function per process).
    considered: bool,
}

impl CloudSync {
    /// Blob bytes uploaded so far by this process (progress while a long
    /// upload is under way).
    pub fn bytes_sent(&self) -> u64 {
        self.client.bytes_sent()
    }

    /// The cloud side a configuration asks for: `None` unless the mode is
    /// `cloud`; `config_invalid` if it is but no server or key is configured.
    pub fn from_config(config: &Config) -> Result<Option<Arc<Self>>> {
        if config.mode != Mode::Cloud {
            return Ok(None);
        }
        let client = CloudClient::from_config(config)?.ok_or_else(|| {
            HitSaveError::ConfigInvalid(
                "mode is cloud but no server is configured: set HITSAVE_CLOUD_URL and HITSAVE_API_KEY (or run `hitsave login`)"
                    .into(),
            )
        })?;
        Ok(Some(Arc::new(Self {
            client,
            config: config.clone(),
            health: Mutex::new(Health { down_until: None, backoff: FIRST_BACKOFF, refused: None, probing: None }),
            uploading: AtomicBool::new(false),
            uploading_generation: std::sync::atomic::AtomicU64::new(crate::fork::generation()),
            runs: std::sync::atomic::AtomicU64::new(0),
            usage: Mutex::new(std::collections::HashMap::new()),
        })))
    }

    /// The client.
    pub fn client(&self) -> &CloudClient {
        &self.client
    }

    /// The server's last refusal of this process's requests, if no request
    /// succeeded since (a revoked or read-only key): `cloud_rejected`.
    pub fn refusal(&self) -> Option<HitSaveError> {
        let health = crate::fork::lock(&self.health);
        health.refused.clone().map(|(status, code, message)| HitSaveError::CloudRejected { status, code, message })
    }

    fn reachable(&self) -> bool {
        let health = crate::fork::lock(&self.health);
        health.down_until.is_none_or(|until| Instant::now() >= until)
    }

    /// Notes the outcome of a request: an unreachable server is warned about
    /// once and skipped until the backoff passes.
    fn note<T>(&self, result: &Result<T>) {
        let mut health = crate::fork::lock(&self.health);
        match result {
            Err(error @ HitSaveError::CloudUnavailable(_)) => {
                crate::warn::error(error);
                health.down_until = Some(Instant::now() + health.backoff);
                health.backoff = (health.backoff * 2).min(MAX_BACKOFF);
            }
            Err(HitSaveError::CloudRejected { status, code, message }) => {
                health.refused = Some((*status, code.clone(), message.clone()));
                health.down_until = None;
                health.backoff = FIRST_BACKOFF;
            }
            other => {
                if other.is_ok() {
                    health.refused = None;
                }
                health.down_until = None;
                health.backoff = FIRST_BACKOFF;
            }
        }
    }

    /// [`CloudSync::reachable`] for a caller's path: once a server that was
    /// down has waited out its backoff, a background health check (not the
    /// caller) finds out whether it is back, and calls stay local until it
    /// answers. A server that accepts connections but never answers would
    /// otherwise cost a call the whole request timeout at every backoff.
    fn reachable_for_call(self: &Arc<Self>) -> bool {
        let mut health = crate::fork::lock(&self.health);
        let Some(until) = health.down_until else { return true };
        let generation = crate::fork::generation();
        if Instant::now() < until || health.probing == Some(generation) {
            return false;
        }
        health.probing = Some(generation);
        drop(health);
        let sync = self.clone();
        let spawned = std::thread::Builder::new().name("hitsave-health".into()).spawn(move || {
            let answer = sync.client.health();
            crate::fork::lock(&sync.health).probing = None;
            sync.note(&answer);
        });
        if spawned.is_err() {
            crate::fork::lock(&self.health).probing = None;
        }
        false
    }

    /// Read-through on a local miss: the server's record, downloaded,
    /// verified and stored locally. Failures are warnings and misses.
    /// `function_name`, when known, feeds the prefetch policy.
    pub fn fetch(self: &Arc<Self>, store: &Store, key: &Digest, function_name: Option<&str>) -> Option<Hit> {
        if !self.reachable_for_call() {
            return None;
        }
        let found = self.client.lookup(&[key.to_string()]);
        self.note(&found);
        // Only the record of the key asked: a server (buggy or hostile) that
        // answers with another key's record must not make this call return
        // another call's result.
        let asked = key.to_string();
        let eval = found.ok()?.into_iter().find(|eval| eval.key == asked);
        let hit = eval.and_then(|eval| {
            self.load(store, &eval).unwrap_or_else(|error| {
                crate::warn::error(&error);
                None
            })
        });
        if let Some(function_name) = function_name {
            self.consider_prefetch(store, function_name, hit.is_some());
        }
        hit
    }

    /// Counts a cloud lookup of a function and, when the core's prefetch
    /// policy says the function is worth it, fetches its results in bulk in
    /// the background (once per function per process).
    fn consider_prefetch(self: &Arc<Self>, store: &Store, function_name: &str, remote_hit: bool) {
        let (calls, remote_hits, misses) = {
            let mut usage = crate::fork::lock(&self.usage);
            let entry = usage.entry(function_name.to_owned()).or_default();
            entry.calls += 1;
            if remote_hit {
                entry.remote_hits += 1;
            } else {
                entry.misses += 1;
            }
            // Only worth asking the server once the cheap conditions hold.
            if entry.considered
                || entry.remote_hits < hitsave_core::policy::PREFETCH_MIN_REMOTE_HITS
                || entry.remote_hits <= entry.misses
            {
                return;
            }
            entry.considered = true;
            (entry.calls, entry.remote_hits, entry.misses)
        };
        let sync = self.clone();
        let function_name = function_name.to_owned();
        let free_bytes = store.stats().map(|stats| stats.max_size.saturating_sub(stats.size)).unwrap_or(0);
        let _ = std::thread::Builder::new().name("hitsave-prefetch".into()).spawn(move || {
            let mut local_config = sync.config.clone();
            local_config.mode = Mode::Local;
            let Ok(local) = Store::open(&local_config) else { return };
            let (mut remote_entries, mut remote_bytes) = (0u64, 0u64);
            let Ok((evals, _)) = sync.client.list_all(&function_name) else { return };
            for eval in evals {
                if !Digest::parse(&eval.key).ok().and_then(|key| local.contains(&key).ok()).unwrap_or(false) {
                    remote_entries += 1;
                    remote_bytes += eval.size;
                }
            }
            let stats = hitsave_core::policy::FunctionStats {
                calls,
                remote_hits,
                misses,
                remote_entries,
                remote_bytes,
                free_bytes,
            };
            let worth = crate::runtime::Core::shared().and_then(|core| core.should_prefetch(&stats)).unwrap_or(false);
            if worth {
                let _ = sync.download_function(&local, &function_name, |_, _| {});
            }
        });
    }

    /// Downloads one record into the local store, if trusted.
    fn load(&self, store: &Store, eval: &RemoteEval) -> Result<Option<Hit>> {
        // A result larger than the local store's whole budget could not be
        // kept: not downloaded (a record claiming 2^40 bytes is not a reason
        // to take that much memory).
        if eval.size > self.config.max_size {
            return Err(HitSaveError::CloudIntegrity(format!(
                "{} ({}): the server's result of {} bytes is larger than the local store's budget ({} bytes); not downloaded",
                eval.key, eval.function_name, eval.size, self.config.max_size
            )));
        }
        // A record's key must be the one its function and arguments derive:
        // a server (or a writer) cannot file one call's result under another
        // call's key. Records of an older key scheme are skipped the same way.
        if !key_matches(eval) {
            return Err(HitSaveError::CloudIntegrity(format!(
                "{} ({}): the record's key is not the key of its function ({}) and arguments ({}); not used",
                eval.key, eval.function_name, eval.function_id, eval.arguments
            )));
        }
        if !self.client.trusted(eval) {
            return Err(HitSaveError::CloudUntrusted(if self.client.signing.is_some() {
                format!(
                    "{} ({}, codec {}): the result's signature does not verify with this machine's signing secret \
                     (HITSAVE_SIGNING_KEY), so it was not written by a holder of it; not loaded",
                    eval.key, eval.function_name, eval.codec
                )
            } else {
                format!(
                    "{} ({}, codec {}): a language-only result from the cloud without a valid signature is never \
                     loaded; set HITSAVE_SIGNING_KEY to the project's signing secret",
                    eval.key, eval.function_name, eval.codec
                )
            }));
        }
        let new = NewEval {
            key: Digest::parse(&eval.key)?,
            function_id: eval.function_id.clone(),
            function_name: eval.function_name.clone(),
            language: eval.language.clone(),
            arguments: Digest::parse(&eval.arguments)?,
            codec: eval.codec.clone(),
            compute_micros: eval.compute_micros,
            graph: None,
        };
        let core = crate::runtime::Core::shared()?;
        // A result the store keeps as a file goes straight to one (memory
        // holds a chunk at a time, not the result; four bulk downloads at
        // once, not four results), then the hit maps it, as a local hit would.
        if eval.size > store.inline_limit()
            && let Some(mut incoming) = store.incoming()?
        {
            let downloaded = self.client.download_into(eval, &mut |chunk| incoming.write(chunk));
            self.note(&downloaded);
            let digest = downloaded?;
            let data = incoming.map()?;
            check_portable(eval, &data)?;
            // Kept locally (not queued for upload: it came from there).
            if let Err(error) = store.put_incoming(core, &new, incoming, &digest) {
                crate::warn::error(&error);
            }
            return Ok(Some(Hit {
                codec: eval.codec.clone(),
                language: eval.language.clone(),
                inline: false,
                data: ResultData::Mapped(data),
            }));
        }
        let data = self.client.download(eval);
        self.note(&data);
        let data = data?;
        check_portable(eval, &data)?;
        if let Err(error) = store.put_local(core, &new, &data) {
            crate::warn::error(&error);
        }
        Ok(Some(Hit {
            codec: eval.codec.clone(),
            language: eval.language.clone(),
            inline: true,
            data: ResultData::Inline(data),
        }))
    }

    /// Starts the background uploader if it is not running.
    pub fn wake_uploader(self: &Arc<Self>) {
        let generation = crate::fork::generation();
        if self.uploading_generation.swap(generation, Ordering::AcqRel) != generation {
            // Forked: the parent's uploader thread is not in this process.
            self.uploading.store(false, Ordering::Release);
        }
        if self.uploading.swap(true, Ordering::AcqRel) {
            return;
        }
        let sync = self.clone();
        let spawned = std::thread::Builder::new().name("hitsave-upload".into()).spawn(move || {
            let outcome = sync.upload_outbox();
            sync.runs.fetch_add(1, Ordering::AcqRel);
            sync.uploading.store(false, Ordering::Release);
            if let Err(error) = outcome
                && !matches!(error, HitSaveError::CloudUnavailable(_))
            {
                crate::warn::error(&error);
            }
        });
        if spawned.is_err() {
            self.uploading.store(false, Ordering::Release);
        }
    }

    /// Uploads everything in the outbox (its own store handle, so callers never wait on it).
    pub fn upload_outbox(&self) -> Result<u64> {
        let mut local = self.config.clone();
        local.mode = Mode::Local;
        let store = Store::open(&local)?;
        let mut uploaded = 0;
        loop {
            if !self.reachable() {
                return Ok(uploaded);
            }
            let keys = store.outbox(BATCH)?;
            if keys.is_empty() {
                return Ok(uploaded);
            }
            // A group ends at BATCH records or GROUP_BYTES of results (at
            // least one): each group's records are marked done when it is
            // sent, so progress shows (and survives an interruption) every few
            // tens of MiB, not only after 500 results.
            let mut batch: Vec<(RemoteEval, bytes::Bytes)> = Vec::new();
            let mut gone = Vec::new();
            let mut bytes = 0;
            for key in &keys {
                if !batch.is_empty() && bytes >= GROUP_BYTES {
                    break;
                }
                match upload_record(&store, key)? {
                    Some(item) => {
                        bytes += item.1.len();
                        batch.push(item);
                    }
                    None => gone.push(key.clone()),
                }
            }
            let result = self.client.upload(&batch);
            self.note(&result);
            match result {
                Ok(()) => {}
                Err(HitSaveError::CloudRejected { status, code, message }) if status != 401 && status != 403 => {
                    // The server refuses these records for good (e.g. too large): drop them from the outbox.
                    crate::warn::error(&HitSaveError::CloudRejected { status, code, message });
                }
                Err(error) => return Err(error),
            }
            uploaded += batch.len() as u64;
            for key in batch.iter().map(|(eval, _)| &eval.key).chain(gone.iter()) {
                store.outbox_done(key)?;
            }
        }
    }

    /// Waits up to `timeout` for the outbox to empty (at process exit, so a
    /// short-lived process still shares its results). Returns what is left.
    pub fn drain(self: &Arc<Self>, store: &Store, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut before: Option<(u64, u64)> = None;
        loop {
            let left = store.outbox_len()?;
            if left == 0 || Instant::now() >= deadline || !self.reachable() {
                return Ok(left);
            }
            let runs = self.runs.load(Ordering::Acquire);
            match before {
                // A whole run finished since the last look and nothing moved: the
                // server refuses these (a read-only or revoked key); stop waiting.
                Some((earlier_runs, earlier_left))
                    if runs > earlier_runs && left >= earlier_left && !self.uploading.load(Ordering::Acquire) =>
                {
                    return Ok(left);
                }
                Some((earlier_runs, _)) if runs == earlier_runs => {}
                _ => before = Some((runs, left)),
            }
            self.wake_uploader();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fetches every result of a function the local store lacks; returns how many.
    /// `progress(done, total)` is called as downloads finish.
    pub fn download_function(
        &self,
        store: &Store,
        function_name: &str,
        mut progress: impl FnMut(u64, u64) + Send,
    ) -> Result<u64> {
        let listed = self.client.list_all(function_name);
        self.note(&listed);
        let (evals, complete) = listed?;
        if !complete {
            crate::warn::error(&HitSaveError::CloudIntegrity(format!(
                "{function_name}: the server's page cursor did not advance; stopped listing"
            )));
        }
        let mut wanted = Vec::new();
        for eval in evals {
            if !store.contains(&Digest::parse(&eval.key)?)? {
                wanted.push(eval);
            }
        }
        let total = wanted.len() as u64;
        progress(0, total);
        let done = std::sync::atomic::AtomicU64::new(0);
        let progress = Mutex::new(progress);
        let failures = Mutex::new(Vec::new());
        // A few transfers at once: enough to fill a link, few enough for a small server.
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(eval) = wanted.get(index) else { break };
                        if let Err(error) = self.load(store, eval) {
                            failures.lock().unwrap_or_else(|p| p.into_inner()).push(error);
                        }
                        let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                        (progress.lock().unwrap_or_else(|p| p.into_inner()))(finished, total);
                    }
                });
            }
        });
        let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
        let failed = failures.len() as u64;
        if let Some(first) = failures.into_iter().next() {
            if failed == total {
                return Err(first);
            }
            crate::warn::error(&first);
        }
        Ok(total - failed)
    }
}

/// Decodes a record's result before it is kept when it claims the portable
/// codec: bytes that are not a portable result would otherwise raise in every
/// later call, offline too.
fn check_portable(eval: &RemoteEval, data: &[u8]) -> Result<()> {
    if eval.codec == crate::portable::CODEC
        && let Err(error) = crate::portable::check(data)
    {
        return Err(HitSaveError::CloudIntegrity(format!(
            "{} ({}): the server's result is marked portable but is not a portable result ({error}); not used",
            eval.key, eval.function_name
        )));
    }
    Ok(())
}
