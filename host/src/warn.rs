//! Cache warnings, said once per error code per process (one seen-set for
//! every binding and the host itself), so a broken cache is said once rather
//! than on every call. The value is always returned: a warning never fails a
//! call.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::error::HitSaveError;

/// Prints `message` under `code` to stderr, the first time `code` is seen in
/// this process; returns whether it printed.
pub fn once(code: &str, message: &str) -> bool {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = crate::fork::lock(&SEEN);
    let first = seen.get_or_insert_with(HashSet::new).insert(code.to_owned());
    if first {
        // Say what actually happened: a cloud problem leaves the local store
        // in use; a store problem means the value was returned uncached.
        let consequence = if code.starts_with("cloud_") {
            "the local cache is used; the cloud is not, for now"
        } else {
            "the result is returned; the cache was not used for it"
        };
        eprintln!("hitsave: warning[{code}]: {message} ({consequence})");
    }
    first
}

/// [`once`] for a cache error.
pub fn error(error: &HitSaveError) -> bool {
    once(error.code(), &error.to_string())
}
