//! The cache a binding or the CLI opens: the local [`Store`] and, in `cloud`
//! mode, the team's cloud in front of it ([`CloudSync`]). A local miss reads
//! through to the cloud; a fresh result is stored locally and queued for
//! upload. The store knows nothing of the cloud and the cloud sync only uses
//! the store: this is the one place that composes them.
//!
//! A `Cache` dereferences to its [`Store`], so everything local (locks,
//! stats, `why`, eviction, `clear`) is called on it directly.

use std::sync::Arc;
use std::time::Duration;

use hitsave_core::Digest;

use crate::cloud::CloudSync;
use crate::config::Config;
use crate::error::Result;
use crate::payload::Payload;
use crate::runtime::Core;
use crate::store::{Hit, NewEval, PutOutcome, Store};

/// The local store with the cloud (if configured) in front of it. `Send + Sync`: share one per process.
pub struct Cache {
    store: Store,
    cloud: Option<Arc<CloudSync>>,
    upload_wait: Duration,
}

impl Cache {
    /// Opens the store a configuration names and, in `cloud` mode, its cloud;
    /// uploads a previous process queued but did not finish are retried now.
    pub fn open(config: &Config) -> Result<Self> {
        let store = Store::open(config)?;
        let cloud = CloudSync::from_config(config)?;
        if let Some(cloud) = &cloud
            && store.outbox_len().unwrap_or(0) > 0
        {
            cloud.wake_uploader();
        }
        Ok(Self { store, cloud, upload_wait: config.upload_wait })
    }

    /// The local store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cloud side, in `cloud` mode.
    pub fn cloud(&self) -> Option<&Arc<CloudSync>> {
        self.cloud.as_ref()
    }

    /// Looks a key up: the local store, then (in `cloud` mode) the cloud,
    /// whose result is verified and kept locally. Cloud failures are warnings
    /// and misses.
    pub fn get(&self, key: &Digest) -> Result<Option<Hit>> {
        self.get_for(key, None)
    }

    /// [`Cache::get`] for a call of `function_name`, whose cloud lookups feed
    /// the prefetch policy (a function the cloud keeps answering is fetched
    /// in bulk in the background).
    pub fn get_for(&self, key: &Digest, function_name: Option<&str>) -> Result<Option<Hit>> {
        let local = self.store.get_local(key)?;
        if local.is_some() {
            return Ok(local);
        }
        Ok(self.cloud.as_ref().and_then(|cloud| cloud.fetch(&self.store, key, function_name)))
    }

    /// Stores a fresh result and, in `cloud` mode, queues it for upload (the
    /// upload runs in the background). The caller must still return its
    /// value if this fails.
    pub fn put<'a>(&self, core: &Core, eval: &NewEval, data: impl Into<Payload<'a>>) -> Result<PutOutcome> {
        let outcome = self.store.put_local(core, eval, data)?;
        if outcome == PutOutcome::Stored
            && let Some(cloud) = &self.cloud
        {
            self.store.queue_upload(&eval.key)?;
            cloud.wake_uploader();
        }
        Ok(outcome)
    }

    /// Waits (up to the configured `upload_wait`) for queued uploads; returns how many are left.
    pub fn drain_uploads(&self) -> Result<u64> {
        match &self.cloud {
            Some(cloud) => cloud.drain(&self.store, self.upload_wait),
            None => Ok(0),
        }
    }
}

impl std::ops::Deref for Cache {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}
