//! Why a call misses, in one place for every SDK: `f.why(x)` in Python and
//! Node both print [`Why`]'s `Display`, so the two cannot drift.
//!
//! The answer is about *these arguments*: when results for them were stored
//! under other code, it names the dependencies that changed since; a result
//! of other arguments computed under the current code does not make the
//! code "unchanged" for these.
//!
//! ```no_run
//! # fn example(store: &hitsave_host::Store, key: &hitsave_core::Digest, args: &hitsave_core::Digest) -> hitsave_host::Result<()> {
//! let core = hitsave_host::Core::shared()?;
//! let why = hitsave_host::why::why_miss(store, core, "app:train", key, args, None)?;
//! println!("{why}"); // miss: code changed since results were stored: features:featurize modified
//! # Ok(()) }
//! ```

use std::fmt;

use hitsave_core::Digest;

use crate::error::{HitSaveError, Result};
use crate::runtime::Core;
use crate::store::{Declined, Store};

/// A result this process computed but the store's policy declined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotStored {
    /// Its size in bytes.
    pub size: u64,
    /// How long it took to compute.
    pub compute_micros: u64,
    /// Why, in words (`docs/spec/policy.md`).
    pub reason: String,
}

/// Why a call with given arguments is not a hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// The last result for these arguments was computed but not stored.
    NotStored(NotStored),
    /// Nothing of this function is stored at all.
    NothingStored {
        /// A result of the function the policy declined, if any.
        declined: Option<Declined>,
    },
    /// Results for these arguments (or, when there are none, for the
    /// function) were stored under other code; these dependencies changed.
    CodeChanged {
        /// `node change` (`features:featurize modified`), sorted.
        changes: Vec<String>,
    },
    /// The function's code is what results were stored under; these
    /// arguments were never computed (or their result was removed).
    CodeUnchanged {
        /// A result of the function the policy declined, if any.
        declined: Option<Declined>,
    },
    /// No result for these arguments, nothing else to say.
    NoResult {
        /// A result of the function the policy declined, if any.
        declined: Option<Declined>,
    },
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let note = |declined: &Option<Declined>| match declined {
            Some(d) => format!(
                "; a result of this function was not stored by the cache policy ({} bytes, computed in {} µs: {})",
                d.size, d.compute_micros, d.reason
            ),
            None => String::new(),
        };
        match self {
            Self::NotStored(n) => write!(
                f,
                "miss: the last result for these arguments ({} bytes, computed in {} µs) was not stored: {} (docs/spec/policy.md)",
                n.size, n.compute_micros, n.reason
            ),
            Self::NothingStored { declined } => {
                write!(f, "miss: nothing is stored for this function yet{}", note(declined))
            }
            Self::CodeChanged { changes } => {
                write!(f, "miss: code changed since results were stored: {}", changes.join(", "))
            }
            Self::CodeUnchanged { declined } => {
                write!(f, "miss: the code is unchanged; no result is stored for these arguments{}", note(declined))
            }
            Self::NoResult { declined } => write!(f, "miss: no result is stored for these arguments{}", note(declined)),
        }
    }
}

/// Why the call with eval key `key` and argument digest `arguments` misses
/// (the caller found no hit). `in_process` is what this process knows of a
/// result it computed and the policy declined; the function's current graph
/// must have been recorded (`Store::record_function`).
pub fn why_miss(
    store: &Store,
    core: &Core,
    function_name: &str,
    key: &Digest,
    arguments: &Digest,
    in_process: Option<NotStored>,
) -> Result<Why> {
    if let Some(not_stored) = in_process {
        return Ok(Why::NotStored(not_stored));
    }
    // What an earlier process saw the policy decline (recorded once per function per process).
    let declined = store.declined(function_name)?;
    if let Some(d) = &declined
        && d.key == key.to_string()
    {
        return Ok(Why::NotStored(NotStored {
            size: d.size,
            compute_micros: d.compute_micros,
            reason: d.reason.clone(),
        }));
    }
    let changes_of = |groups: &[crate::store::WhyGroup]| -> Vec<String> {
        let mut changes: Vec<String> = groups
            .iter()
            .filter(|group| !group.current)
            .flat_map(|group| group.changes.iter().map(|(node, change)| format!("{node} {change}")))
            .collect();
        changes.sort();
        changes.dedup();
        changes
    };
    // These arguments, stored under other code: what changed since.
    let mine = match store.why_of(core, function_name, Some(arguments)) {
        Ok(report) => report.stored,
        Err(HitSaveError::NotFound(_)) => Vec::new(),
        Err(other) => return Err(other),
    };
    let changes = changes_of(&mine);
    if !changes.is_empty() {
        return Ok(Why::CodeChanged { changes });
    }
    if mine.is_empty() {
        // Never computed with these arguments: what the function's other results say.
        let all = match store.why(core, function_name) {
            Ok(report) => report,
            Err(HitSaveError::NotFound(_)) => return Ok(Why::NothingStored { declined }),
            Err(other) => return Err(other),
        };
        if all.stored.iter().any(|group| group.current) {
            return Ok(Why::CodeUnchanged { declined });
        }
        let changes = changes_of(&all.stored);
        if !changes.is_empty() {
            return Ok(Why::CodeChanged { changes });
        }
    }
    Ok(Why::NoResult { declined })
}
