//! What the store reports: per-function summaries, totals, verification, and why stored results no longer match.

use super::*;

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

/// Records per page of `verify`.
pub(super) const VERIFY_PAGE: usize = 512;

impl Store {
    /// Re-hashes every entry; corrupt ones (or ones whose blob is missing)
    /// are reported and removed. `progress(done, total)` is called as it goes.
    pub fn verify(&self, mut progress: impl FnMut(u64, u64)) -> Result<VerifyReport> {
        let total = self
            .with_db(|conn| Ok(conn.query_row("SELECT count(*) FROM records", [], |row| row.get::<_, i64>(0))?))?
            as u64;
        let mut report = VerifyReport::default();
        // Page by page, by key: memory stays bounded whatever the number of
        // entries (all records at once took 722 MiB at a million).
        let mut after = String::new();
        loop {
            let page: Vec<EvalRecord> = self.with_db(|conn| {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {RECORD_COLUMNS} FROM records WHERE key > ?1 ORDER BY key LIMIT {VERIFY_PAGE}"
                ))?;
                Ok(statement.query_map([PackedText(&after)], record_from_row)?.collect::<rusqlite::Result<_>>()?)
            })?;
            let Some(last) = page.last() else { break };
            after = last.key.clone();
            for record in &page {
                let key = Digest::parse(&record.key)?;
                if !self.verify_one(&key, record)? {
                    report.corrupt.push(record.key.clone());
                    self.remove_corrupt(&key)?;
                }
                report.checked += 1;
                progress(report.checked, total.max(report.checked));
            }
        }
        Ok(report)
    }

    pub(super) fn verify_one(&self, key: &Digest, record: &EvalRecord) -> Result<bool> {
        let expected = parse_result_digest(&record.result)?;
        let bytes = if record.inline {
            let inline: Option<Vec<u8>> = self.with_db(|conn| {
                Ok(conn
                    .query_row("SELECT inline FROM records WHERE key = ?1", [Packed(key)], |row| row.get(0))
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

    /// Per-function summaries, by name.
    pub fn functions(&self) -> Result<Vec<FunctionSummary>> {
        self.flush_hits()?;
        self.with_db(|conn| {
            let mut statement = conn.prepare(
                "SELECT function_name, group_concat(DISTINCT language), count(*), sum(size), sum(hits), max(last_access)
                 FROM records GROUP BY function_name ORDER BY function_name",
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
        self.wait_for_eviction();
        self.flush_hits()?;
        let (evals, functions, size, inline_size, hits, evictions, schema_version) = self.with_db(|conn| {
            Ok(conn.query_row(
                "SELECT count(*), count(DISTINCT function_name), coalesce(sum(size), 0),
                        coalesce(sum(CASE WHEN inline IS NULL THEN 0 ELSE size END), 0), coalesce(sum(hits), 0),
                        (SELECT value FROM totals WHERE name = 'evictions'), (SELECT user_version FROM pragma_user_version)
                 FROM records",
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
        let (current, groups) = self.with_db(|conn| {
            let current: Option<String> = conn
                .query_row("SELECT graph FROM functions WHERE name = ?1", [function_name], |row| row.get(0))
                .optional()?
                .flatten();
            let mut statement = conn.prepare(
                "SELECT graph, count(*) FROM records WHERE function_name = ?1 AND (?2 IS NULL OR arguments = ?2) \
                 GROUP BY graph ORDER BY max(created) DESC",
            )?;
            let groups: Vec<(Option<String>, i64)> = statement
                .query_map(params![function_name, arguments.map(Packed)], |row| {
                    Ok((row.get::<_, Option<Unpacked>>(0)?.map(|graph| graph.0), row.get(1)?))
                })?
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
