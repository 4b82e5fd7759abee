//! One memoized function, as every SDK calls it: the host's half of the call
//! path, so that no rule of it lives in two languages.
//!
//! A binding registers a [`Function`] (its identity, name, graph and cloud
//! setting), then for each call: [`Function::lookup`] (key and stored result
//! in one step, keys remembered by their argument stream), the compute lock
//! with [`lock_pause`] between attempts, and after the function ran
//! [`Function::finish`] (store, or remember why not: the policy's decline,
//! kept for [`Function::why`], and the one "not stored" warning per function
//! the binding gives in its language's way). Store errors become warnings
//! through [`crate::warn`], never failures: the caller always gets its value.
//!
//! What stays in a binding is what is intrinsically its own: binding
//! arguments to the signature, walking live values into the argument
//! stream, sync/async/promise plumbing, and the language-only codec.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hitsave_core::keys::FunctionIdentity;
use hitsave_core::{CoreError, Digest, ErrorCode};

use crate::cache::Cache;
use crate::error::{HitSaveError, Result};
use crate::payload::Payload;
use crate::runtime::Core;
use crate::store::{Graph, Hit, NewEval, PutOutcome, Store};
use crate::why::{NotStored, Why};

/// Argument streams up to this size have their key remembered.
const KEY_MEMO_STREAM: usize = 1024;
/// How many keys a function remembers before it starts afresh.
const KEY_MEMO_ENTRIES: usize = 4096;
/// How many declined results a function remembers for `why`.
const NOT_STORED_ENTRIES: usize = 1024;

/// Keys derived in this process by argument stream: `(key, argument digest)`.
type KeyMemo = HashMap<Box<[u8]>, (Digest, Digest)>;

/// A result the function computed, for [`Function::finish`].
pub struct Computed<'a> {
    /// Its key.
    pub key: Digest,
    /// The digest of its arguments.
    pub arguments: Digest,
    /// The codec `data` is encoded with.
    pub codec: &'a str,
    /// The encoded result (its parts are written in order, never joined).
    pub data: Payload<'a>,
    /// How long the function ran.
    pub compute_micros: u64,
    /// Whether its arguments were different after the call than before it
    /// (the binding walked them again): the function changed them, and a hit
    /// would return the result without changing them.
    pub changed_arguments: bool,
}

/// Why a result whose call changed its arguments is not stored.
pub const CHANGED_ARGUMENTS: &str = "the call changed its arguments (a hit would return the result without \
    changing them, and code after it would see other values): copy an argument before changing it";

/// A memoized function registered by a binding.
pub struct Function {
    identity: FunctionIdentity,
    function_id: String,
    function_name: String,
    language: String,
    graph: Option<Graph>,
    cloud: bool,
    keys: Mutex<KeyMemo>,
    not_stored: Mutex<HashMap<Digest, NotStored>>,
    warned_not_stored: AtomicBool,
}

/// What [`Function::finish`] did with a computed result.
#[derive(Debug)]
pub struct Finish {
    /// What storing did; `None` when the store failed (already warned).
    pub outcome: Option<PutOutcome>,
    /// A warning for the binding to give in its language's way (Python's
    /// `NotStoredWarning`, Node's `HitSaveNotStoredWarning`): the first
    /// result of this function in this process that the policy declined.
    pub warning: Option<String>,
}

impl Finish {
    /// The outcome as the SDKs name it: `stored`, `already_present`,
    /// `skipped` (a read-only store), `declined` (the policy) or `failed`
    /// (the store failed; warned already).
    pub fn outcome_name(&self) -> &'static str {
        outcome_name(self.outcome.as_ref())
    }
}

/// What storing did, as the SDKs name it ([`Finish::outcome_name`]).
pub fn outcome_name(outcome: Option<&PutOutcome>) -> &'static str {
    match outcome {
        Some(PutOutcome::Stored) => "stored",
        Some(PutOutcome::AlreadyPresent) => "already_present",
        Some(PutOutcome::Declined(_)) => "declined",
        Some(PutOutcome::Skipped) => "skipped",
        None => "failed",
    }
}

impl Function {
    /// A function known by `identity` (a code fingerprint, or an explicit
    /// name and version), stored under `function_name`, written by
    /// `language`, with its dependency graph when it has one. `cloud`:
    /// whether its reads may go to the cloud and its results be uploaded.
    pub fn new(
        identity: FunctionIdentity,
        function_name: String,
        language: &str,
        graph: Option<Graph>,
        cloud: bool,
    ) -> Self {
        let function_id = match &identity {
            FunctionIdentity::Fingerprint(fingerprint) => fingerprint.to_string(),
            FunctionIdentity::Explicit { name, version } => format!("{name}@{version}"),
        };
        Self {
            identity,
            function_id,
            function_name,
            language: language.to_owned(),
            graph,
            cloud,
            keys: Mutex::default(),
            not_stored: Mutex::default(),
            warned_not_stored: AtomicBool::new(false),
        }
    }

    /// The fingerprint, or `name@version`.
    pub fn function_id(&self) -> &str {
        &self.function_id
    }

    /// The name its results are stored under.
    pub fn function_name(&self) -> &str {
        &self.function_name
    }

    /// Its identity.
    pub fn identity(&self) -> &FunctionIdentity {
        &self.identity
    }

    /// Whether it reads from and uploads to the cloud.
    pub fn cloud(&self) -> bool {
        self.cloud
    }

    /// Its dependency graph, when it has one.
    pub fn graph(&self) -> Option<&Graph> {
        self.graph.as_ref()
    }

    /// The key and argument digest of a complete argument stream: remembered,
    /// else derived by the core component and remembered.
    pub fn key_of(&self, core: &Core, stream: &[u8]) -> Result<(Digest, Digest)> {
        if let Some(known) = self.known_key(stream) {
            return Ok(known);
        }
        let digest = core.value_digest(stream)?;
        let key = core.derive_key(&self.identity, &digest)?;
        if stream.len() <= KEY_MEMO_STREAM {
            let mut keys = crate::fork::lock(&self.keys);
            if keys.len() >= KEY_MEMO_ENTRIES {
                keys.clear();
            }
            keys.insert(stream.into(), (key, digest));
        }
        Ok((key, digest))
    }

    /// The remembered key of a complete argument stream, if any (never
    /// blocks: for a call on an event loop).
    pub fn known_key(&self, stream: &[u8]) -> Option<(Digest, Digest)> {
        if stream.len() > KEY_MEMO_STREAM {
            return None;
        }
        crate::fork::lock(&self.keys).get(stream).copied()
    }

    /// The stored result of `key`: the local store, then (for a function
    /// that uses it) the cloud.
    pub fn get(&self, cache: &Cache, key: &Digest) -> Result<Option<Hit>> {
        if self.cloud { cache.get_for(key, Some(&self.function_name)) } else { cache.get_local(key) }
    }

    /// Stores a result the function computed in `compute_micros` µs. Never
    /// fails: a store error is warned about (once per code) and reported as
    /// no outcome; a result the policy declines is remembered for
    /// [`Function::why`], and the first one gives the warning to print.
    pub fn finish(&self, cache: &Cache, core: &Core, computed: Computed<'_>) -> Finish {
        let Computed { key, arguments, codec, data, compute_micros, changed_arguments } = computed;
        let eval = NewEval {
            key,
            function_id: self.function_id.clone(),
            function_name: self.function_name.clone(),
            language: self.language.clone(),
            arguments,
            codec: codec.to_owned(),
            compute_micros,
            graph: self.graph.clone(),
        };
        // A result holding this machine's working or home directory is not
        // what another directory, user or machine computes (`crate::place`).
        let outcome = match crate::place::held_place(data.parts()) {
            _ if changed_arguments => Ok(PutOutcome::Declined(CHANGED_ARGUMENTS.to_owned())),
            Some(place) => Ok(PutOutcome::Declined(format!(
                "it holds {place} as text, which the same call run elsewhere (another directory, user or \
                 machine) would not return"
            ))),
            None if self.cloud => cache.put(core, &eval, data),
            None => cache.put_local(core, &eval, data),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                crate::warn::error(&error);
                return Finish { outcome: None, warning: None };
            }
        };
        let mut warning = None;
        if let PutOutcome::Declined(reason) = &outcome {
            let size = data.len();
            {
                let mut not_stored = crate::fork::lock(&self.not_stored);
                if not_stored.len() >= NOT_STORED_ENTRIES {
                    not_stored.clear();
                }
                not_stored.insert(key, NotStored { size, compute_micros, reason: reason.clone() });
            }
            if !self.warned_not_stored.swap(true, Ordering::Relaxed) {
                warning = Some(format!(
                    "hitsave: {}: a result of {size} bytes computed in {compute_micros} µs is returned but not stored: \
                     {reason} (docs/spec/policy.md)",
                    self.function_name
                ));
            }
        }
        Finish { outcome: Some(outcome), warning }
    }

    /// Why a call with these arguments is not a hit (`f.why(x)`), with what
    /// this process knows: a result it computed for them and the policy
    /// declined.
    pub fn why(&self, store: &Store, core: &Core, key: &Digest, arguments: &Digest) -> Result<Why> {
        let in_process = crate::fork::lock(&self.not_stored).get(key).cloned();
        crate::why::why_miss(store, core, &self.function_name, key, arguments, in_process)
    }
}

/// A function's identity from what a binding was given: a `code2`
/// fingerprint, or an explicit name and version (never both, never half of
/// one): `invalid_identity` otherwise.
pub fn identity(fingerprint: Option<&str>, name: Option<String>, version: Option<String>) -> Result<FunctionIdentity> {
    match (fingerprint, name, version) {
        (Some(fingerprint), None, None) => Ok(FunctionIdentity::Fingerprint(Digest::parse(fingerprint)?)),
        (None, Some(name), Some(version)) => Ok(FunctionIdentity::Explicit { name, version }),
        _ => Err(CoreError::new(
            ErrorCode::InvalidIdentity,
            "a function is identified by its code fingerprint, or by both a name and a version",
        )
        .into()),
    }
}

/// The error for a stored result only another language can read (its
/// language's own codec, such as Python's pickle or Node's v8
/// serialization).
pub fn foreign_codec(function_name: &str, language: &str, codec: &str) -> HitSaveError {
    HitSaveError::ForeignCodec(format!(
        "{function_name}: the stored result was written by {language} with the '{codec}' codec, which only that \
         language reads; call the function under another name and version (an explicit identity), or from that \
         language"
    ))
}

/// The pause before the next attempt at a compute lock another caller holds
/// (`attempt` counts from 0): 1 ms, doubling up to 50 ms; `None` once
/// `waited` reached `lock_wait` (`HITSAVE_LOCK_WAIT`): compute without the
/// lock. Bindings only sleep or await it.
pub fn lock_pause(attempt: u32, waited: Duration, lock_wait: Duration) -> Option<Duration> {
    if waited >= lock_wait {
        return None;
    }
    let pause = Duration::from_millis(1u64 << attempt.min(6)).min(Duration::from_millis(50));
    Some(pause.min(lock_wait - waited))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_pause_doubles_to_50_ms_and_stops_at_the_wait() {
        let wait = Duration::from_secs(1);
        let pauses: Vec<_> = (0..8).map(|n| lock_pause(n, Duration::ZERO, wait).unwrap().as_millis()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 50, 50]);
        assert_eq!(lock_pause(3, wait, wait), None);
        assert_eq!(lock_pause(6, Duration::from_millis(990), wait), Some(Duration::from_millis(10)));
    }
}
