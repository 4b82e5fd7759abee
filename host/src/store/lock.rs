//! Compute locks, so two processes or threads missing one key compute it once.
//!
//! On Linux a key's lock is an open-file-description lock (`F_OFD_SETLK`) on
//! one byte of `locks/keys`, at an offset taken from the key: nothing is
//! created or removed per computation, so a miss pays an `open`, one
//! `fcntl` and a `close`. Elsewhere, or where the file system refuses OFD
//! locks, it is an exclusive `flock` on a file `locks/<key>` made for the
//! computation and removed after it. Either way the OS releases the lock if
//! the process dies. (Builds before OFD locks used the files only: an older
//! SDK and a newer one computing the same key at the same moment both
//! compute, and the first to store wins; no result is ever wrong.)

use super::*;

/// The shared lock file of the byte-range locks.
const RANGE_FILE: &str = "keys";

/// The right to compute one key, held until dropped; the OS also releases
/// it if the process dies.
#[derive(Debug)]
pub struct ComputeLock {
    file: std::fs::File,
    /// The per-key lock file to remove when done (none for a byte-range lock).
    path: Option<PathBuf>,
    waited: bool,
}

impl ComputeLock {
    /// Whether another process or thread held the lock when it was asked for:
    /// the result may have been stored meanwhile, so look it up again.
    pub fn waited(&self) -> bool {
        self.waited
    }
}

/// What one attempt at a compute lock found ([`Store::try_lock_compute`]).
#[derive(Debug)]
pub enum TryLock {
    /// Held until dropped.
    Acquired(ComputeLock),
    /// Another process or thread holds it: try again later (up to `lock_wait`).
    Busy,
    /// No lock: locking is off, the store is read-only, or no lock file can be made.
    Unavailable,
}

impl Drop for ComputeLock {
    fn drop(&mut self) {
        // Unlinked while still held, so no lock file outlives its computation;
        // a waiter that then locks this unlinked file sees that the path names
        // another file (or none) and starts over (`Store::lock_compute`).
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
        let _ = &self.file; // closing the file releases the lock
    }
}

/// Whether OFD locks are known not to work here (then per-key files are used).
static NO_RANGE_LOCKS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One attempt at the byte-range lock of `name` in `dir/keys`: `Ok(Some)`
/// held, `Ok(None)` busy, `Err(true)` no OFD locks here (use files),
/// `Err(false)` no lock can be made.
#[cfg(target_os = "linux")]
fn try_lock_range(dir: &Path, name: &str) -> std::result::Result<Option<ComputeLock>, bool> {
    use std::os::unix::io::AsRawFd as _;
    if NO_RANGE_LOCKS.load(Ordering::Relaxed) {
        return Err(true);
    }
    let path = dir.join(RANGE_FILE);
    let open = || std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
    let file = match open() {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|_| false)?;
            open().map_err(|_| false)?
        }
        Err(_) => return Err(false),
    };
    // One byte per key, at an offset from the key's hash (63 bits: two keys
    // share a byte with probability 2^-63, and then one only waits).
    let hash = blake3::hash(name.as_bytes());
    let offset = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes")) >> 1;
    // SAFETY: a zeroed `flock` is valid; the fields are set below.
    let mut range: libc::flock = unsafe { std::mem::zeroed() };
    range.l_type = libc::F_WRLCK as libc::c_short;
    range.l_whence = libc::SEEK_SET as libc::c_short;
    range.l_start = offset as libc::off_t;
    range.l_len = 1;
    loop {
        // SAFETY: fcntl on a descriptor this function owns, with a valid `flock`.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &range) } == 0 {
            return Ok(Some(ComputeLock { file, path: None, waited: false }));
        }
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(code) if code == libc::EAGAIN || code == libc::EACCES => Ok(None),
            Some(code) if code == libc::EINTR => continue,
            Some(code) if code == libc::EINVAL || code == libc::ENOLCK || code == libc::EOPNOTSUPP => {
                NO_RANGE_LOCKS.store(true, Ordering::Relaxed);
                Err(true)
            }
            _ => Err(false),
        };
    }
}

#[cfg(not(target_os = "linux"))]
fn try_lock_range(_dir: &Path, _name: &str) -> std::result::Result<Option<ComputeLock>, bool> {
    Err(true)
}

/// One attempt at the compute lock of `name` in `dir`: a byte-range lock
/// where the OS has them, else a per-key lock file.
pub(super) fn try_lock_key(dir: &Path, name: &str) -> std::result::Result<Option<ComputeLock>, ()> {
    match try_lock_range(dir, name) {
        Ok(lock) => Ok(lock),
        Err(true) => try_lock_file(dir, name),
        Err(false) => Err(()),
    }
}

/// One attempt at an exclusive lock on `dir/name`, never waiting:
/// `Ok(Some)` held, `Ok(None)` busy (another holder), `Err` no lock can be made.
#[cfg(unix)]
pub(super) fn try_lock_file(dir: &Path, name: &str) -> std::result::Result<Option<ComputeLock>, ()> {
    use std::os::unix::fs::MetadataExt as _;
    use std::os::unix::io::AsRawFd as _;
    let path = dir.join(name);
    // A few rounds: the directory may need making, and a holder may unlink
    // the file between our open and our lock (then we lock a stale file).
    for _ in 0..8 {
        let file = match std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|_| ())?;
                continue;
            }
            Err(_) => return Err(()),
        };
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return match std::io::Error::last_os_error().raw_os_error() {
                Some(code) if code == libc::EWOULDBLOCK => Ok(None),
                Some(code) if code == libc::EINTR => continue,
                _ => Err(()),
            };
        }
        // The previous holder unlinks the file when it is done: the lock only
        // counts if the path still names the file that is locked.
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
            _ => false,
        };
        if same {
            return Ok(Some(ComputeLock { file, path: Some(path), waited: false }));
        }
    }
    Ok(None)
}

#[cfg(not(unix))]
pub(super) fn try_lock_file(_dir: &Path, _name: &str) -> std::result::Result<Option<ComputeLock>, ()> {
    Err(())
}

/// Takes the compute lock of `name` in `dir` ([`try_lock_key`]), polling for up to `wait`.
pub(super) fn lock_key(dir: &Path, name: &str, wait: Duration) -> Option<ComputeLock> {
    let deadline = Instant::now() + wait;
    let mut waited = false;
    let mut pause = Duration::from_millis(1);
    loop {
        match try_lock_key(dir, name) {
            Ok(Some(mut lock)) => {
                lock.waited = waited;
                return Some(lock);
            }
            Ok(None) => {}
            Err(()) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        waited = true;
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

impl Store {
    /// Waits (up to the configured `lock_wait`) for the right to compute
    /// `key`, so two processes or threads missing the same key at once compute
    /// it once: the second waits, then finds the first one's result. `None`
    /// when the wait ran out (a computation that long, or two keys each
    /// waiting on the other through nested calls: computing anyway is the
    /// safe way out), when locking is off (`lock_wait = 0`), in `read-only`
    /// mode, or when the lock file cannot be made; the caller then computes
    /// without it, as before locks existed.
    pub fn lock_compute(&self, key: &Digest) -> Option<ComputeLock> {
        self.lock_compute_for(key, self.lock_wait)
    }

    /// Before computing after a miss: the key's compute lock
    /// ([`Store::lock_compute`]) and, when it is held, the local store read
    /// again: a hit there is what another process or thread stored while this
    /// one waited (or between its lookup and the lock). Read errors are the
    /// caller's to warn about.
    pub fn lock_and_reread(&self, key: &Digest) -> (Option<ComputeLock>, Result<Option<Hit>>) {
        let lock = self.lock_compute(key);
        let found = if lock.is_some() { self.get_local(key) } else { Ok(None) };
        (lock, found)
    }

    /// One attempt at the compute lock, never waiting (for callers that must
    /// not block a thread while they wait, such as Node's async path, which
    /// polls with timers): see [`TryLock`].
    pub fn try_lock_compute(&self, key: &Digest) -> TryLock {
        if self.read_only || self.lock_wait.is_zero() {
            return TryLock::Unavailable;
        }
        match try_lock_key(&self.root.join("locks"), &key.to_string()) {
            Ok(Some(lock)) => TryLock::Acquired(lock),
            Ok(None) => TryLock::Busy,
            Err(()) => TryLock::Unavailable,
        }
    }

    /// How long callers wait for another computation of a key (`lock_wait`).
    pub fn lock_wait(&self) -> Duration {
        self.lock_wait
    }

    /// [`Store::lock_compute`] with an explicit wait.
    pub fn lock_compute_for(&self, key: &Digest, wait: Duration) -> Option<ComputeLock> {
        if self.read_only || wait.is_zero() {
            return None;
        }
        lock_key(&self.root.join("locks"), &key.to_string(), wait)
    }
}
