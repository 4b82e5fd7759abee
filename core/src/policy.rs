//! Cache policy: cost-aware eviction, whether to store, whether to prefetch.
//!
//! Only IEEE-754 `+ - * /` and integer arithmetic are used (no `ln`, no
//! `pow`), so the native build and the component give the same answer to the
//! last bit. `docs/spec/policy.md` states the formulas.

/// One stored entry as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Bytes the entry occupies.
    pub size: u64,
    /// Time it took to compute, microseconds.
    pub compute_micros: u64,
    /// Last access, seconds since the epoch.
    pub last_access: u64,
    /// Times served from the cache.
    pub hits: u64,
}

/// Eviction tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvictionParams {
    /// Target total size in bytes.
    pub budget: u64,
    /// Now, seconds since the epoch.
    pub now: u64,
    /// Seconds without access after which an entry's value halves (0: no decay).
    pub half_life: u64,
}

/// Bytes of bookkeeping charged to every entry, so tiny entries are not free.
pub const ENTRY_OVERHEAD: u64 = 4096;
/// Microseconds added to every compute time: a recomputation is never free.
pub const COMPUTE_FLOOR_MICROS: u64 = 1000;

/// The value per byte of keeping an entry. Higher is kept longer.
pub fn retention_score(entry: &Entry, now: u64, half_life: u64) -> f64 {
    let worth = (entry.compute_micros as f64 + COMPUTE_FLOOR_MICROS as f64) * (entry.hits as f64 + 1.0);
    let age = now.saturating_sub(entry.last_access) as f64;
    let decayed = if half_life == 0 { worth } else { worth * half_life as f64 / (half_life as f64 + age) };
    decayed / (entry.size as f64 + ENTRY_OVERHEAD as f64)
}

/// Indices of the entries to evict, first to go first, so that what remains
/// fits the budget.
pub fn evict(entries: &[Entry], params: &EvictionParams) -> Vec<u32> {
    let total: u128 = entries.iter().map(|entry| u128::from(entry.size)).sum();
    let budget = u128::from(params.budget);
    if total <= budget {
        return Vec::new();
    }
    let mut order: Vec<(f64, usize)> = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| (retention_score(entry, params.now, params.half_life), index))
        .collect();
    // Lowest score first; ties: least recently used, then larger, then input order.
    order.sort_by(|a, b| {
        let (ea, eb) = (&entries[a.1], &entries[b.1]);
        a.0.total_cmp(&b.0).then(ea.last_access.cmp(&eb.last_access)).then(eb.size.cmp(&ea.size)).then(a.1.cmp(&b.1))
    });
    let mut remaining = total;
    let mut chosen = Vec::new();
    for (_, index) in order {
        if remaining <= budget {
            break;
        }
        remaining -= u128::from(entries[index].size);
        chosen.push(index as u32);
    }
    chosen
}

/// Tunables for storing fresh results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreParams {
    /// The store's budget; larger results are never stored.
    pub budget: u64,
    /// Results faster than this are not stored.
    pub min_compute_micros: u64,
    /// Estimated read throughput, bytes per second (0: do not estimate).
    pub read_bytes_per_second: u64,
}

/// Results at least this large are skipped when reading them back would
/// take more than twice as long as computing them again.
pub const LARGE_RESULT: u64 = 1 << 20;

/// Why a fresh result is not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decline {
    /// Larger than the whole budget.
    OverBudget,
    /// Computed faster than the minimum compute time.
    TooQuick,
    /// At least [`LARGE_RESULT`] and slower to read back than twice its compute time.
    CheaperToRecompute,
}

impl Decline {
    /// The stable name of the reason (`docs/spec/policy.md`, the test vectors).
    pub fn name(self) -> &'static str {
        match self {
            Self::OverBudget => "over-budget",
            Self::TooQuick => "too-quick",
            Self::CheaperToRecompute => "cheaper-to-recompute",
        }
    }
}

/// Whether a fresh result is worth storing: `None` stores it, otherwise why not.
pub fn store_decision(size: u64, compute_micros: u64, params: &StoreParams) -> Option<Decline> {
    if size > params.budget {
        return Some(Decline::OverBudget);
    }
    if compute_micros < params.min_compute_micros {
        return Some(Decline::TooQuick);
    }
    if size >= LARGE_RESULT && params.read_bytes_per_second > 0 {
        let read_micros = size as f64 * 1e6 / params.read_bytes_per_second as f64;
        if read_micros > 2.0 * compute_micros as f64 {
            return Some(Decline::CheaperToRecompute);
        }
    }
    None
}

/// Call statistics of one function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionStats {
    /// Calls in this process.
    pub calls: u64,
    /// Calls answered by the cloud after a local miss.
    pub remote_hits: u64,
    /// Calls that missed everywhere.
    pub misses: u64,
    /// Results in the cloud not held locally.
    pub remote_entries: u64,
    /// Their total size.
    pub remote_bytes: u64,
    /// Free local budget.
    pub free_bytes: u64,
}

/// Remote hits needed before a bulk fetch is considered.
pub const PREFETCH_MIN_REMOTE_HITS: u64 = 3;

/// Whether to fetch all of a function's cloud results at once: the function
/// keeps finding its results in the cloud (at least three remote hits, and
/// more remote hits than misses), and the bulk fits in half the free room.
pub fn should_prefetch(stats: &FunctionStats) -> bool {
    stats.remote_entries > 0
        && stats.remote_hits >= PREFETCH_MIN_REMOTE_HITS
        && stats.remote_hits > stats.misses
        && stats.remote_bytes <= stats.free_bytes / 2
}
