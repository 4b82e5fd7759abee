//! The call path every SDK shares: look up, else compute and store, and never
//! let the cache cost the caller their result.
//!
//! Bindings bring what is intrinsically theirs (binding arguments, encoding
//! the result with a codec); this module decides what happens around the
//! store. A store that cannot be read is a miss with a warning; a result that
//! cannot be stored is returned all the same, with a warning.

use std::time::Instant;

use crate::cache::Cache;
use crate::error::HitSaveError;
use crate::runtime::Core;
use crate::store::{NewEval, PutOutcome, ResultData};

/// Where a call's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The local store.
    Hit,
    /// The function ran.
    Computed,
}

/// A call's result.
#[derive(Debug)]
pub struct Call {
    /// The encoded result.
    pub data: ResultData,
    /// Hit or computed.
    pub source: Source,
    /// What went wrong with the cache along the way (the value is still good).
    pub warnings: Vec<HitSaveError>,
    /// What storing did, when the value was computed and storing was tried.
    pub stored: Option<PutOutcome>,
}

/// Looks `eval.key` up; on a miss takes the key's compute lock
/// ([`crate::store::Store::lock_compute`]), looks again, runs `compute` (which returns the
/// encoded result) and stores it. `eval.compute_micros` is filled in here. Errors of
/// `compute` are returned as they are and nothing is stored.
pub fn call<E>(
    store: Option<&Cache>,
    core: &Core,
    mut eval: NewEval,
    compute: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<Call, E> {
    let mut warnings = Vec::new();
    if let Some(store) = store {
        match store.get(&eval.key) {
            Ok(Some(hit)) => return Ok(Call { data: hit.data, source: Source::Hit, warnings, stored: None }),
            Ok(None) => {}
            Err(err) => warnings.push(err),
        }
    }
    // Another process or thread computing this key: wait for it (the lock is
    // held until this call returns), then read what it stored.
    let (_lock, reread) = store.map(|store| store.lock_and_reread(&eval.key)).unwrap_or((None, Ok(None)));
    if let Ok(Some(hit)) = reread {
        return Ok(Call { data: hit.data, source: Source::Hit, warnings, stored: None });
    }
    let start = Instant::now();
    let data = compute()?;
    eval.compute_micros = start.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
    let mut stored = None;
    if let Some(store) = store {
        match store.put(core, &eval, &data) {
            Ok(outcome) => stored = Some(outcome),
            Err(err) => warnings.push(err),
        }
    }
    for warning in &warnings {
        crate::warn::error(warning);
    }
    Ok(Call { data: ResultData::Inline(data), source: Source::Computed, warnings, stored })
}
