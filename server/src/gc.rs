//! Retention and garbage collection: a server that does not only grow.
//!
//! One pass ([`collect`]), run by `hitsave-server gc` (from cron, say) and
//! by `serve` every `--gc-interval`:
//! 1. evals not used (looked up or stored) for `--retain` are removed (none
//!    without `--retain`: by default a result is kept for ever);
//! 2. a project's blob rows no eval of the project names, untouched (no
//!    upload, no eval naming it) for `--gc-grace`, are dropped, so the
//!    project's quota counts them no more;
//! 3. stored objects no project holds, written more than `--gc-grace` ago,
//!    are deleted: hidden first, then the metadata is asked again, then purged
//!    or put back (see [`Blobs`]: an upload racing the collector keeps its
//!    bytes).
//!
//! Several servers may collect at once (each step is idempotent), and a pass
//! stopped anywhere is finished by the next one (hidden objects are settled
//! first).

use std::time::{Duration, SystemTime};

use crate::error::ApiError;
use crate::storage::{Blobs, Metadata, now};

/// What a pass removes.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Evals not used for this long are removed (none: kept for ever).
    pub retain: Option<Duration>,
    /// Blobs no eval names are kept this long after their last upload or use
    /// (an upload's eval comes after its blob).
    pub grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self { retain: None, grace: Duration::from_secs(24 * 3600) }
    }
}

/// What a pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Evals removed by retention.
    pub evals: u64,
    /// Blob rows dropped from projects.
    pub blob_rows: u64,
    /// Stored objects deleted.
    pub objects: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} evals expired, {} blob rows dropped, {} stored blobs deleted",
            self.evals, self.blob_rows, self.objects
        )
    }
}

/// How stale a found eval's `used` time may be before a lookup refreshes it:
/// an eighth of the retention (an hour at most), so retention is accurate to
/// that and a busy key is written at most once per interval.
pub fn touch_interval(retain: Option<Duration>) -> Duration {
    let hour = Duration::from_secs(3600);
    retain.map_or(hour, |retain| (retain / 8).min(hour))
}

/// One pass of retention and collection.
pub fn collect(metadata: &dyn Metadata, blobs: &dyn Blobs, policy: &Policy) -> Result<Report, ApiError> {
    let mut report = Report::default();
    // A pass stopped between hiding and purging left objects aside: settle them.
    for digest in blobs.hidden()? {
        settle(metadata, blobs, &digest, &mut report)?;
    }
    let start = now();
    if let Some(retain) = policy.retain {
        report.evals = metadata.expire_evals(start.saturating_sub(retain.as_secs()))?;
    }
    report.blob_rows = metadata.drop_unnamed_blobs(start.saturating_sub(policy.grace.as_secs()))?;
    let before = SystemTime::now().checked_sub(policy.grace).unwrap_or(SystemTime::UNIX_EPOCH);
    blobs.stored_before(before, &mut |digests| {
        for digest in digests {
            if !metadata.blob_held(&digest)? && blobs.hide(&digest)? {
                settle(metadata, blobs, &digest, &mut report)?;
            }
        }
        Ok(())
    })?;
    Ok(report)
}

/// A hidden object is purged unless a project holds it now (an upload that
/// recorded its row meanwhile), then it goes back.
fn settle(metadata: &dyn Metadata, blobs: &dyn Blobs, digest: &str, report: &mut Report) -> Result<(), ApiError> {
    if metadata.blob_held(digest)? {
        blobs.restore(digest)
    } else {
        blobs.purge(digest)?;
        report.objects += 1;
        Ok(())
    }
}
