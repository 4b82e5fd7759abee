//! The local store with real SQLite and real files: round trips, dedup,
//! concurrent writers in several processes, SIGKILL at random points,
//! corruption, eviction, and a store that cannot be written.
//!
//! Child processes are this test binary run again with `HITSAVE_TEST_ROLE`
//! set, executing only `child_process_entry`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use hitsave_core::{Digest, DigestKind};
use hitsave_host::Cache;
use hitsave_host::config::{Config, Mode};
use hitsave_host::memo::{self, Source};
use hitsave_host::store::{NewEval, PutOutcome, TryLock};
use hitsave_host::{Core, LoadOptions};

fn core() -> &'static Core {
    static CORE: OnceLock<Core> = OnceLock::new();
    CORE.get_or_init(|| {
        let dir = std::env::temp_dir().join("hitsave-test-compiled");
        Core::load(&LoadOptions { compiled_dir: Some(dir) }).expect("core loads")
    })
}

fn key(label: &str) -> Digest {
    Digest::new(DigestKind::Key, *blake3::hash(label.as_bytes()).as_bytes())
}

fn eval(label: &str, function: &str, compute_micros: u64) -> NewEval {
    NewEval {
        key: key(label),
        // The label rides along so tests can tell which entry a record is.
        function_id: format!("{function}#{label}"),
        function_name: function.to_owned(),
        language: "rust".to_owned(),
        arguments: Digest::new(DigestKind::Value, *blake3::hash(label.as_bytes()).as_bytes()),
        codec: "raw".to_owned(),
        compute_micros,
        graph: None,
    }
}

/// Deterministic content for an entry: small ones inline, every fifth one a blob.
fn content(index: u64) -> Vec<u8> {
    let len = if index.is_multiple_of(5) { 100_000 + (index as usize % 7) * 1000 } else { 10 + (index as usize % 50) };
    (0..len).map(|i| (i as u64).wrapping_mul(31).wrapping_add(index) as u8).collect()
}

fn config(dir: &Path) -> Config {
    Config::for_dir(dir)
}

fn spawn_child(role: &str, dir: &Path, extra: &[(&str, String)]) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
        .env("HITSAVE_TEST_ROLE", role)
        .env("HITSAVE_TEST_DIR", dir)
        .stdout(Stdio::null());
    for (name, value) in extra {
        command.env(name, value);
    }
    command
}

/// Runs in child processes only.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var("HITSAVE_TEST_ROLE") else { return };
    let dir = PathBuf::from(std::env::var("HITSAVE_TEST_DIR").expect("dir"));
    let store = Cache::open(&config(&dir)).expect("open");
    match role.as_str() {
        "writer" => {
            // Overlapping ranges across processes: the same key from two processes.
            let first: u64 = std::env::var("HITSAVE_TEST_FIRST").unwrap().parse().unwrap();
            for index in first..first + 60 {
                let outcome =
                    store.put(core(), &eval(&format!("entry {index}"), "f", 1000), &content(index)).expect("put");
                assert!(matches!(outcome, PutOutcome::Stored | PutOutcome::AlreadyPresent));
                // Read back something another process may be writing.
                let other = index.saturating_sub(30);
                if let Some(hit) = store.get(&key(&format!("entry {other}"))).expect("get") {
                    assert_eq!(hit.data.bytes(), content(other).as_slice());
                }
            }
        }
        "forever" => {
            // Written until killed.
            for index in 0.. {
                let _ = store.put(core(), &eval(&format!("entry {index}"), "f", 1000), &content(index));
            }
        }
        "disk-full" => {
            // RLIMIT_FSIZE is 1 MiB here: a 4 MiB result cannot be written.
            // It takes 100 ms to compute, so the policy wants it stored (a
            // result made in a blink is declined as cheaper to recompute, and
            // then no write is tried: how long a clone takes must not decide
            // what this test sees).
            let big = vec![7u8; 4 << 20];
            let call = memo::call(Some(&store), core(), eval("big", "f", 0), || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                Ok::<_, ()>(big.clone())
            })
            .expect("computes");
            assert_eq!(call.source, Source::Computed);
            assert_eq!(call.data.bytes(), big.as_slice(), "the value is returned even though it was not stored");
            assert_eq!(call.warnings.len(), 1);
            assert_eq!(call.warnings[0].code(), "store_io");
            // Small results still go in.
            let small =
                memo::call(Some(&store), core(), eval("small", "f", 0), || Ok::<_, ()>(b"ok".to_vec())).unwrap();
            assert!(small.warnings.is_empty());
            println!("disk-full child done");
        }
        "fork" => {
            store.put(core(), &eval("before fork", "f", 10), b"parent").expect("put");
            // SAFETY: this process runs one test on one thread; the child only
            // uses the store (which reopens its connection), then leaves with
            // _exit so no parent state is torn down twice.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let ok = store.get(&key("before fork")).ok().flatten().is_some_and(|hit| hit.data.bytes() == b"parent")
                    && store.put(core(), &eval("from child", "f", 10), b"child").is_ok();
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            let mut status = 0;
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child could use the store");
            // The parent's connection still works and sees the child's write.
            assert_eq!(store.get(&key("from child")).unwrap().unwrap().data.bytes(), b"child");
            assert_eq!(store.get(&key("before fork")).unwrap().unwrap().data.bytes(), b"parent");
            println!("fork child done");
        }
        "lock" => {
            // The parent holds the key: a short wait runs out, then a long one
            // gets the lock once the parent lets go.
            let short = store.lock_compute_for(&key("across"), Duration::from_millis(20));
            println!("lock: {}", if short.is_some() { "free" } else { "held" });
            drop(short);
            let lock = store.lock_compute_for(&key("across"), Duration::from_secs(60)).expect("released");
            println!("lock: got it, waited {}", lock.waited());
        }
        "hold-lock" => {
            // Takes a key's lock and keeps it until killed.
            let _lock = store.lock_compute(&key("held by the dead")).expect("free");
            println!("lock: taken");
            std::thread::sleep(Duration::from_secs(600));
        }
        "fork-busy" => {
            // Another thread keeps using the store while this one forks: a
            // child must never inherit a lock that thread held.
            store.put(core(), &eval("before fork", "f", 10), b"parent").expect("put");
            let store = std::sync::Arc::new(store);
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let busy = {
                let (store, stop) = (store.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut index = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _ = store.get(&key("before fork"));
                        let _ =
                            store.put(core(), &eval(&format!("busy {}", index % 64), "f", 10), &content(index % 64));
                        let _ = core().value_digest(&[0x03, 1, 0, 0, 0, 0, 0, 0, 0]);
                        index += 1;
                    }
                })
            };
            for round in 0..200 {
                // SAFETY: the child only uses the store and the core, then leaves with _exit.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0, "fork failed");
                if pid == 0 {
                    let ok =
                        store.get(&key("before fork")).ok().flatten().is_some_and(|hit| hit.data.bytes() == b"parent")
                            && store.put(core(), &eval(&format!("child {round}"), "f", 10), b"child").is_ok()
                            && core().value_digest(&[0x00]).is_ok();
                    unsafe { libc::_exit(if ok { 0 } else { 1 }) };
                }
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                let mut status = 0;
                loop {
                    let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                    if done == pid {
                        break;
                    }
                    if std::time::Instant::now() > deadline {
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        unsafe { libc::waitpid(pid, &mut status, 0) };
                        panic!("the child of fork {round} hung");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child {round} failed");
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            busy.join().unwrap();
            println!("fork-busy done");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn results_round_trip_inline_and_as_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    for index in 0..10 {
        assert_eq!(
            store.put(core(), &eval(&format!("k{index}"), "f", 10), &content(index)).unwrap(),
            PutOutcome::Stored
        );
    }
    for index in 0..10 {
        let hit = store.get(&key(&format!("k{index}"))).unwrap().expect("stored");
        assert_eq!(hit.data.bytes(), content(index).as_slice());
        assert_eq!(hit.inline, content(index).len() as u64 <= config(dir.path()).inline_limit);
    }
    assert!(store.get(&key("absent")).unwrap().is_none());
    // A second put of the same key keeps the first.
    assert_eq!(store.put(core(), &eval("k1", "f", 10), b"other").unwrap(), PutOutcome::AlreadyPresent);
    assert_eq!(store.get(&key("k1")).unwrap().unwrap().data.bytes(), content(1).as_slice());
    // The empty result is a result.
    store.put(core(), &eval("empty", "f", 10), b"").unwrap();
    assert_eq!(store.get(&key("empty")).unwrap().unwrap().data.bytes(), b"");
}

#[test]
fn callers_opening_a_new_store_at_once_all_get_it() {
    // Two processes whose first calls race create one store together; SQLite
    // answers the switch to WAL with "database is locked" at once (no busy
    // wait) while another connection holds the new file, which once made the
    // second caller compute without its cache (CI, the compute-lock test).
    for _ in 0..30 {
        let dir = tempfile::tempdir().unwrap();
        let start = std::sync::Barrier::new(6);
        std::thread::scope(|scope| {
            for thread in 0..6 {
                let (dir, start) = (dir.path(), &start);
                scope.spawn(move || {
                    start.wait();
                    let store = Cache::open(&config(dir)).expect("every caller opens the new store");
                    let label = format!("t{thread}");
                    store.put(core(), &eval(&label, "f", 10), label.as_bytes()).unwrap();
                });
            }
        });
        let store = Cache::open(&config(dir.path())).unwrap();
        for thread in 0..6 {
            assert!(store.get(&key(&format!("t{thread}"))).unwrap().is_some());
        }
    }
}

#[test]
fn identical_results_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    let big = content(0);
    store.put(core(), &eval("a", "f", 10), &big).unwrap();
    store.put(core(), &eval("b", "g", 10), &big).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!((stats.evals, stats.blobs), (2, 1));
    assert_eq!(stats.blob_bytes, big.len() as u64);
    // Clearing one function keeps the blob the other still uses.
    assert_eq!(store.clear(Some("f")).unwrap(), 1);
    assert_eq!(store.get(&key("b")).unwrap().unwrap().data.bytes(), big.as_slice());
    assert_eq!(store.clear(None).unwrap(), 1);
    assert_eq!(store.stats().unwrap().blobs, 0);
}

#[test]
fn hits_and_last_access_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    store.put(core(), &eval("a", "f", 10), b"value").unwrap();
    for _ in 0..3 {
        store.get(&key("a")).unwrap().unwrap();
    }
    drop(store);
    let store = Cache::open(&config(dir.path())).unwrap();
    let record = store.record(&key("a").to_string()).unwrap().unwrap();
    assert_eq!(record.hits, 3);
    let functions = store.functions().unwrap();
    assert_eq!(functions.len(), 1);
    assert_eq!((functions[0].evals, functions[0].hits), (1, 3));
}

#[test]
fn concurrent_writers_in_several_processes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    Cache::open(&config(dir.path())).unwrap();
    // Four processes, overlapping key ranges [0,60), [30,90), [60,120), [90,150).
    let children: Vec<_> = (0..4u64)
        .map(|n| spawn_child("writer", dir.path(), &[("HITSAVE_TEST_FIRST", (n * 30).to_string())]).spawn().unwrap())
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a writer process failed");
    }
    let store = Cache::open(&config(dir.path())).unwrap();
    for index in 0..150 {
        let hit = store.get(&key(&format!("entry {index}"))).unwrap().unwrap_or_else(|| panic!("entry {index} lost"));
        assert_eq!(hit.data.bytes(), content(index).as_slice());
    }
    assert_eq!(store.stats().unwrap().evals, 150);
    let report = store.verify(|_, _| {}).unwrap();
    assert_eq!((report.checked, report.corrupt.len()), (150, 0));
}

#[test]
fn writer_killed_at_random_points_leaves_only_whole_entries() {
    let dir = tempfile::tempdir().unwrap();
    Cache::open(&config(dir.path())).unwrap();
    let rounds: u64 = std::env::var("HITSAVE_SOAK").ok().and_then(|n| n.parse().ok()).unwrap_or(12);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..rounds {
        let mut child = spawn_child("forever", dir.path(), &[]).spawn().unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 250));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let store = Cache::open(&config(dir.path())).expect("the store opens after a kill");
        let records = store.evals(None).unwrap();
        for record in &records {
            let hit = store.get(&Digest::parse(&record.key).unwrap()).unwrap();
            // Every listed entry is whole: its bytes verify and match what was written.
            let hit = hit.unwrap_or_else(|| panic!("round {round}: listed entry {} is not whole", record.key));
            let index: u64 = record.function_id.rsplit("entry ").next().unwrap().parse().unwrap();
            assert_eq!(hit.data.bytes(), content(index).as_slice(), "round {round}");
        }
        assert!(store.verify(|_, _| {}).unwrap().corrupt.is_empty(), "round {round}");
    }
    let store = Cache::open(&config(dir.path())).unwrap();
    assert!(store.stats().unwrap().evals > 0, "the writers got something stored");
    // Temp files of killed writers are cleaned by gc once stale; none is ever served.
    store.gc(core(), None).unwrap();
}

/// A store holding one large result (entry "a"): the directory, the store,
/// the result's bytes and its blob file.
fn store_with_one_blob() -> (tempfile::TempDir, Cache, Vec<u8>, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    let big = content(0);
    store.put(core(), &eval("a", "f", 10), &big).unwrap();
    let digest = blake3::hash(&big).to_hex().to_string();
    let blob = dir.path().join("blobs").join(&digest[..2]).join(&digest[2..]);
    (dir, store, big, blob)
}

#[test]
fn corrupted_blob_is_a_miss_and_is_removed() {
    let (_dir, store, big, blob) = store_with_one_blob();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1234] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    assert!(store.get(&key("a")).unwrap().is_none(), "corrupt bytes are never served");
    assert!(store.record(&key("a").to_string()).unwrap().is_none(), "the bad entry is removed");
    // Recompute and store again through the shared call path.
    let call = memo::call(Some(&store), core(), eval("a", "f", 0), || Ok::<_, ()>(big.clone())).unwrap();
    assert_eq!(call.source, Source::Computed);
    let again = memo::call(Some(&store), core(), eval("a", "f", 0), || -> Result<Vec<u8>, ()> {
        panic!("a hit must not compute")
    })
    .unwrap();
    assert_eq!((again.source, again.data.bytes()), (Source::Hit, big.as_slice()));
}

#[test]
fn a_blob_that_cannot_be_mapped_is_a_warning_and_keeps_its_entry() {
    let (dir, store, big, blob) = store_with_one_blob();
    let aside = dir.path().join("aside");
    // Something that opens but cannot be mapped (as root, permissions would
    // not stop a read): a directory where the blob file was.
    std::fs::rename(&blob, &aside).unwrap();
    std::fs::create_dir(&blob).unwrap();
    let error = store.get(&key("a")).unwrap_err();
    assert_eq!(error.code(), "store_io");
    assert!(store.record(&key("a").to_string()).unwrap().is_some(), "a good entry is not dropped for a mapping error");
    std::fs::remove_dir(&blob).unwrap();
    std::fs::rename(&aside, &blob).unwrap();
    assert_eq!(store.get(&key("a")).unwrap().unwrap().data.bytes(), big.as_slice());
}

#[test]
fn verify_reports_and_drops_corrupt_inline_and_missing_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    store.put(core(), &eval("blob", "f", 10), &content(0)).unwrap();
    store.put(core(), &eval("good", "f", 10), b"fine").unwrap();
    let digest = blake3::hash(&content(0)).to_hex().to_string();
    std::fs::remove_file(dir.path().join("blobs").join(&digest[..2]).join(&digest[2..])).unwrap();
    let report = store.verify(|_, _| {}).unwrap();
    assert_eq!(report.checked, 2);
    assert_eq!(report.corrupt, vec![key("blob").to_string()]);
    assert_eq!(store.stats().unwrap().evals, 1);
}

#[test]
fn verify_reports_a_portable_record_that_does_not_decode() {
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    let mut portable = eval("claims portable", "f", 10);
    portable.codec = "portable".into();
    store.put(core(), &portable, b"\xff not a portable stream").unwrap();
    let mut good = eval("is portable", "f", 10);
    good.codec = "portable".into();
    let mut stream = hitsave_core::stream::StreamWriter::new();
    stream.str("fine");
    store.put(core(), &good, stream.as_bytes()).unwrap();
    let report = store.verify(|_, _| {}).unwrap();
    assert_eq!(report.checked, 2);
    assert_eq!(report.corrupt, vec![key("claims portable").to_string()]);
}

#[test]
fn eviction_keeps_the_budget_and_expensive_small_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.max_size = 1 << 20;
    let store = Cache::open(&config).unwrap();
    // Small results that took a minute each, and large ones that took a millisecond.
    for index in 0..20 {
        store.put(core(), &eval(&format!("small {index}"), "expensive", 60_000_000), &vec![index as u8; 2000]).unwrap();
    }
    for index in 0..10 {
        store.put(core(), &eval(&format!("large {index}"), "cheap", 1000), &vec![index as u8; 200_000]).unwrap();
        // Eviction runs in the background; a put never leaves the store more
        // than a quarter over its budget (plus the result just put).
        let index = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
        let total: i64 = index.query_row("SELECT value FROM totals WHERE name = 'size'", [], |row| row.get(0)).unwrap();
        assert!(total as u64 <= config.max_size + config.max_size / 4 + 200_000, "{total}");
    }
    let stats = store.stats().unwrap();
    assert!(stats.size <= config.max_size, "{} over the budget {}", stats.size, config.max_size);
    assert!(stats.evictions > 0);
    for index in 0..20 {
        assert!(store.get(&key(&format!("small {index}"))).unwrap().is_some(), "expensive small entry {index} kept");
    }
    // gc with a smaller budget evicts the rest of the cheap ones first.
    let report = store.gc(core(), Some(50_000)).unwrap();
    assert!(report.evicted > 0);
    assert!(store.stats().unwrap().size <= 50_000);
    assert_eq!(store.stats().unwrap().blobs, 0, "evicted blobs are deleted");
}

#[test]
fn reverting_an_edit_hits_the_old_result_again() {
    // Old versions stay until the budget needs the room: a key that comes back hits.
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    let mut runs = 0;
    for version in ["v1", "v2", "v1"] {
        memo::call(Some(&store), core(), eval(&format!("train {version}"), "train", 0), || {
            runs += 1;
            Ok::<_, ()>(version.as_bytes().to_vec())
        })
        .unwrap();
    }
    assert_eq!(runs, 2, "the third call (v1 again) was a hit");
}

#[test]
fn unwritable_store_still_returns_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    store.put(core(), &eval("kept", "f", 10), &content(6)).unwrap();
    // Block the blob tree: creating any shard directory now fails.
    std::fs::remove_dir_all(dir.path().join("blobs")).unwrap();
    std::fs::write(dir.path().join("blobs"), b"in the way").unwrap();
    let big = content(0);
    let call = memo::call(Some(&store), core(), eval("big", "f", 0), || Ok::<_, ()>(big.clone())).unwrap();
    assert_eq!(call.data.bytes(), big.as_slice());
    assert_eq!(call.warnings.iter().map(|w| w.code()).collect::<Vec<_>>(), vec!["store_io"]);
    // What was stored before is untouched.
    assert_eq!(store.get(&key("kept")).unwrap().unwrap().data.bytes(), content(6).as_slice());
    // Computation errors are the caller's own and store nothing.
    let failed = memo::call(Some(&store), core(), eval("fails", "f", 0), || Err::<Vec<u8>, _>("boom"));
    assert_eq!(failed.unwrap_err(), "boom");
    assert!(store.record(&key("fails").to_string()).unwrap().is_none());
}

#[test]
fn full_disk_still_returns_the_value() {
    let dir = tempfile::tempdir().unwrap();
    Cache::open(&config(dir.path())).unwrap();
    let mut command = spawn_child("disk-full", dir.path(), &[]);
    command.stdout(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 1 << 20, rlim_max: 1 << 20 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("disk-full child done"));
    let store = Cache::open(&config(dir.path())).unwrap();
    assert!(store.get(&key("small")).unwrap().is_some());
    assert!(store.get(&key("big")).unwrap().is_none());
    assert!(store.verify(|_, _| {}).unwrap().corrupt.is_empty());
}

#[test]
fn read_only_mode_reads_but_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    Cache::open(&config(dir.path())).unwrap().put(core(), &eval("a", "f", 10), b"value").unwrap();
    let mut read_only = config(dir.path());
    read_only.mode = Mode::ReadOnly;
    let store = Cache::open(&read_only).unwrap();
    assert_eq!(store.get(&key("a")).unwrap().unwrap().data.bytes(), b"value");
    assert_eq!(store.put(core(), &eval("b", "f", 10), b"new").unwrap(), PutOutcome::Skipped);
    assert!(store.get(&key("b")).unwrap().is_none());
}

#[test]
fn a_newer_schema_is_refused_without_changes() {
    let dir = tempfile::tempdir().unwrap();
    Cache::open(&config(dir.path())).unwrap();
    let conn = rusqlite_connection(&dir.path().join("index.sqlite"));
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = Cache::open(&config(dir.path())).err().expect("refused");
    assert_eq!(error.code(), "store_too_new");
}

/// A store as builds with schema 2 wrote it (digests as text): this build
/// migrates it on open, keeping every record, result and queued upload, and a
/// process of the older build that had it open fails instead of writing text
/// rows into the new tables.
#[test]
fn a_schema_2_store_is_migrated_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite_connection(&dir.path().join("index.sqlite"));
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
        CREATE TABLE evals (
            key TEXT PRIMARY KEY NOT NULL, function_id TEXT NOT NULL, function_name TEXT NOT NULL,
            language TEXT NOT NULL, arguments TEXT NOT NULL, codec TEXT NOT NULL, result TEXT NOT NULL,
            inline BLOB, size INTEGER NOT NULL, compute_micros INTEGER NOT NULL, created INTEGER NOT NULL,
            last_access INTEGER NOT NULL, hits INTEGER NOT NULL DEFAULT 0, graph TEXT
        ) WITHOUT ROWID;
        CREATE INDEX evals_by_result ON evals(result) WHERE inline IS NULL;
        CREATE TABLE graphs (fingerprint TEXT PRIMARY KEY NOT NULL, root TEXT NOT NULL, nodes TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE functions (name TEXT PRIMARY KEY NOT NULL, language TEXT NOT NULL, graph TEXT, seen INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE totals (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO totals VALUES ('evictions', 3);
        CREATE TABLE outbox (key TEXT PRIMARY KEY NOT NULL, queued INTEGER NOT NULL) WITHOUT ROWID;
        PRAGMA user_version = 2;",
    )
    .unwrap();
    let fingerprint = Digest::new(DigestKind::Code, *blake3::hash(b"code").as_bytes()).to_string();
    let large = content(0);
    let large_digest = Digest::blob(&large);
    let hex = large_digest.hex();
    std::fs::create_dir_all(dir.path().join("blobs").join(&hex[..2])).unwrap();
    std::fs::write(dir.path().join("blobs").join(&hex[..2]).join(&hex[2..]), &large).unwrap();
    // (label, function id, inline bytes, result bytes, graph)
    type Row<'a> = (&'a str, String, Option<&'a [u8]>, &'a [u8], Option<&'a str>);
    let rows: [Row; 3] = [
        ("small", fingerprint.clone(), Some(b"small"), b"small", Some(&fingerprint)),
        ("explicit", "f@1".into(), Some(b"other"), b"other", None),
        ("large", fingerprint.clone(), None, &large, Some(&fingerprint)),
    ];
    for (label, function_id, inline, bytes, graph) in &rows {
        conn.execute(
            "INSERT INTO evals VALUES (?1, ?2, 'f', 'rust', ?3, 'raw', ?4, ?5, ?6, 7, 100, 200, 4, ?7)",
            rusqlite::params![
                key(label).to_string(),
                function_id,
                eval(label, "f", 0).arguments.to_string(),
                Digest::blob(bytes).to_string(),
                inline,
                bytes.len() as i64,
                graph,
            ],
        )
        .unwrap();
    }
    conn.execute("INSERT INTO outbox VALUES (?1, 5)", [key("large").to_string()]).unwrap();
    // An older build's process, its statement prepared before the migration.
    let mut older = conn.prepare("INSERT INTO evals (key, function_id, function_name, language, arguments, codec, result, size, compute_micros, created, last_access) VALUES ('k', 'f', 'f', 'rust', 'a', 'raw', 'r', 0, 0, 0, 0)").unwrap();

    let store = Cache::open(&config(dir.path())).unwrap();
    for (label, function_id, _, bytes, graph) in &rows {
        let record = store.record(&key(label).to_string()).unwrap().expect("kept");
        assert_eq!(record.key, key(label).to_string());
        assert_eq!(&record.function_id, function_id);
        assert_eq!(record.arguments, eval(label, "f", 0).arguments.to_string());
        assert_eq!(record.result, Digest::blob(bytes).to_string());
        assert_eq!(record.graph.as_deref(), *graph);
        assert_eq!((record.hits, record.created, record.last_access), (4, 100, 200));
        assert_eq!(store.get(&key(label)).unwrap().expect("a hit").data.bytes(), *bytes);
    }
    assert_eq!(store.outbox(10).unwrap(), vec![key("large").to_string()]);
    let stats = store.stats().unwrap();
    assert_eq!((stats.evals, stats.size, stats.evictions, stats.schema_version), (3, 10 + large.len() as u64, 3, 3));
    assert!(store.verify(|_, _| {}).unwrap().corrupt.is_empty());
    // Digests are blobs now, and an identity that is the graph's fingerprint is not kept twice.
    let index = rusqlite_connection(&dir.path().join("index.sqlite"));
    let (key_type, ids): (String, i64) = index
        .query_row(
            "SELECT typeof(key), count(function_id) FROM records WHERE key = (SELECT min(key) FROM records)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(key_type, "blob");
    let kept_ids: i64 = index.query_row("SELECT count(function_id) FROM records", [], |row| row.get(0)).unwrap();
    assert_eq!(kept_ids, 1, "only the explicit identity is kept beside its graph ({ids})");
    let error = older.execute([]).expect_err("the older build's statement fails");
    assert!(error.to_string().contains("no such table"), "{error}");
    // Puts, evictions and clears after the migration keep the size total exact.
    store.put(core(), &eval("after", "g", 10), &content(1)).unwrap();
    store.clear(Some("f")).unwrap();
    assert_eq!(store.stats().unwrap().size, content(1).len() as u64);
    assert_eq!(store.stats().unwrap().blobs, 0, "the migrated large result's blob went with its record");
}

fn rusqlite_connection(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn gc_removes_orphan_blobs_but_not_used_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    store.put(core(), &eval("used", "f", 10), &content(0)).unwrap();
    let orphan = blake3::hash(b"nobody refers to this").to_hex().to_string();
    std::fs::create_dir_all(dir.path().join("blobs").join(&orphan[..2])).unwrap();
    std::fs::write(dir.path().join("blobs").join(&orphan[..2]).join(&orphan[2..]), b"nobody refers to this").unwrap();
    let report = store.gc(core(), None).unwrap();
    assert_eq!((report.evicted, report.orphan_blobs), (0, 1));
    assert_eq!(store.get(&key("used")).unwrap().unwrap().data.bytes(), content(0).as_slice());
}

#[test]
fn forks_while_another_thread_uses_the_store_never_hang_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let output = spawn_child("fork-busy", dir.path(), &[]).stdout(Stdio::piped()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("fork-busy done"));
}

#[test]
fn a_forked_child_opens_its_own_connection() {
    // Forked from a process of its own: forking this multi-threaded test
    // process could copy a lock another test thread holds into the child.
    let dir = tempfile::tempdir().unwrap();
    Cache::open(&config(dir.path())).unwrap();
    let output = spawn_child("fork", dir.path(), &[]).stdout(Stdio::piped()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("fork child done"));
}

#[test]
fn hits_written_in_the_background_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    // More distinct keys than one batch, so a batch goes to the background writer.
    for index in 0..5000u64 {
        store.put(core(), &eval(&format!("k{index}"), "f", 10), &index.to_le_bytes()).unwrap();
    }
    for index in 0..5000u64 {
        assert!(store.get(&key(&format!("k{index}"))).unwrap().is_some());
    }
    assert_eq!(store.stats().unwrap().hits, 5000, "stats waits for the background writer");
    drop(store);
    let store = Cache::open(&config(dir.path())).unwrap();
    assert_eq!(store.functions().unwrap()[0].hits, 5000);
}

#[test]
fn the_compute_lock_lets_one_caller_compute_and_the_others_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Cache::open(&config(dir.path())).unwrap());
    let k = key("locked");

    let first = store.lock_compute(&k).expect("a free key locks at once");
    assert!(!first.waited());
    // On Linux a byte-range lock in one shared file (nothing made per key);
    // elsewhere a lock file per key.
    let per_key = dir.path().join("locks").join(k.to_string());
    assert!(if cfg!(target_os = "linux") { !per_key.exists() } else { per_key.is_file() });
    // Another key is not blocked by it.
    let other = store.lock_compute_for(&key("other"), Duration::from_millis(50)).expect("another key is free");
    drop(other);
    // The same key, from another thread: a short wait runs out, a long one
    // gets the lock once the first holder is done.
    let waiter = {
        let store = store.clone();
        std::thread::spawn(move || {
            assert!(store.lock_compute_for(&k, Duration::from_millis(100)).is_none(), "the key is held");
            let asked = std::time::Instant::now();
            let lock = store.lock_compute_for(&k, Duration::from_secs(30)).expect("the lock is released");
            (asked, std::time::Instant::now(), lock)
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    let released = std::time::Instant::now();
    drop(first);
    let (asked, acquired, lock) = waiter.join().unwrap();
    assert!(acquired >= released, "the lock was only granted after it was released");
    assert!(asked >= released || lock.waited(), "asked while it was held, so it waited");
    drop(lock);
    // No per-key lock file is left behind (the shared range file stays).
    let left: Vec<_> = std::fs::read_dir(dir.path().join("locks")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|name| name == "keys"), "{left:?}");

    // One attempt, never waiting: held, then busy for another caller, then free again.
    let held = match store.try_lock_compute(&k) {
        TryLock::Acquired(lock) => lock,
        other => panic!("a free key: {other:?}"),
    };
    assert!(matches!(store.try_lock_compute(&k), TryLock::Busy));
    drop(held);
    assert!(matches!(store.try_lock_compute(&k), TryLock::Acquired(_)));

    // Off: lock_wait = 0, and in read-only mode.
    let mut off = config(dir.path());
    off.lock_wait = Duration::ZERO;
    assert!(Cache::open(&off).unwrap().lock_compute(&k).is_none());
    assert!(matches!(Cache::open(&off).unwrap().try_lock_compute(&k), TryLock::Unavailable));
    let mut read_only = config(dir.path());
    read_only.mode = Mode::ReadOnly;
    assert!(Cache::open(&read_only).unwrap().lock_compute(&k).is_none());
}

#[test]
fn the_compute_lock_is_shared_between_processes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    let held = store.lock_compute(&key("across")).unwrap();
    let mut child = spawn_child("lock", dir.path(), &[]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()))
        .map(|line| line.unwrap())
        // libtest may print "test child_process_entry ... " on the same line first.
        .filter_map(|line| line.find("lock: ").map(|at| line[at..].to_owned()));
    assert_eq!(lines.next().as_deref(), Some("lock: held"), "another process sees the lock");
    drop(held);
    // Released, the child gets it (having waited, unless it asked only after the drop).
    assert!(lines.next().is_some_and(|line| line.starts_with("lock: got it")));
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_killed_holders_compute_lock_is_released_by_the_os() {
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    let mut child = spawn_child("hold-lock", dir.path(), &[]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()))
        .map(|line| line.unwrap())
        .filter_map(|line| line.find("lock: ").map(|at| line[at..].to_owned()));
    assert_eq!(lines.next().as_deref(), Some("lock: taken"));
    let k = key("held by the dead");
    assert!(matches!(store.try_lock_compute(&k), TryLock::Busy), "the child holds it");
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let lock = store.lock_compute_for(&k, Duration::from_secs(10)).expect("released when its holder died");
    drop(lock);
}

#[test]
fn concurrent_calls_of_one_key_compute_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    let runs = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<(Source, Vec<u8>)> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    let call = memo::call(Some(&store), core(), eval("shared", "f", 0), || {
                        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(300));
                        Ok::<_, ()>(b"once".to_vec())
                    })
                    .unwrap();
                    (call.source, call.data.bytes().to_vec())
                })
            })
            .collect();
        calls.into_iter().map(|call| call.join().unwrap()).collect()
    });
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1, "the others waited and read its result");
    assert_eq!(results.iter().filter(|(source, _)| *source == Source::Computed).count(), 1);
    assert!(results.iter().all(|(_, data)| data == b"once"));
}

#[test]
fn a_declined_result_is_recorded_for_later_processes() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![7u8; 2 << 20];
    {
        let store = Cache::open(&config(dir.path())).unwrap();
        // 2 MiB computed in 1 µs: cheaper to compute again than to read back.
        let cheaper = PutOutcome::Declined("1 MiB or more and cheaper to compute again than to read back".into());
        assert_eq!(store.put(core(), &eval("cheap", "f", 1), &big).unwrap(), cheaper);
        // Recorded once per function per process: a second decline writes nothing.
        assert_eq!(store.put(core(), &eval("cheap 2", "f", 1), &big).unwrap(), cheaper);
        assert_eq!(store.put(core(), &eval("kept", "g", 10), b"small").unwrap(), PutOutcome::Stored);
    }
    // A later process (a fresh store object) still knows why.
    let store = Cache::open(&config(dir.path())).unwrap();
    let declined = store.declined("f").unwrap().expect("the decline was recorded");
    assert_eq!(declined.key, key("cheap").to_string());
    assert_eq!((declined.size, declined.compute_micros), (2 << 20, 1));
    assert!(declined.reason.contains("cheaper to compute again"), "{}", declined.reason);
    assert_eq!(store.declined("g").unwrap(), None);

    // Over the whole budget: the other reason.
    let mut small_budget = config(dir.path());
    small_budget.max_size = 1 << 20;
    let store = Cache::open(&small_budget).unwrap();
    let over = PutOutcome::Declined(format!("larger than the whole size budget ({} bytes)", 1 << 20));
    assert_eq!(store.put(core(), &eval("huge", "h", 60_000_000), &big).unwrap(), over);
    assert!(store.declined("h").unwrap().unwrap().reason.contains("larger than the whole size budget"));

    // Clearing a function forgets its record; a read-only process reads records too.
    assert_eq!(store.clear(Some("f")).unwrap(), 0);
    assert_eq!(store.declined("f").unwrap(), None);
    let mut read_only = config(dir.path());
    read_only.mode = Mode::ReadOnly;
    assert!(Cache::open(&read_only).unwrap().declined("h").unwrap().is_some());
}

#[test]
fn the_size_total_stays_exact_through_puts_evictions_clears_and_other_writers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.max_size = 300_000;
    let store = Cache::open(&config).unwrap();
    for index in 0..40 {
        store.put(core(), &eval(&format!("e{index}"), "f", 1000 + index), &vec![index as u8; 20_000]).unwrap();
    }
    store.put(core(), &eval("g0", "g", 10), b"small").unwrap();
    store.clear(Some("g")).unwrap();
    store.gc(core(), Some(100_000)).unwrap();
    // Another writer (a second store on the same directory, as another process would be).
    let other = Cache::open(&config).unwrap();
    other.put(core(), &eval("other", "h", 10), &[7u8; 5000]).unwrap();
    store.wait_for_eviction();
    other.wait_for_eviction();
    let index = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    let kept: i64 = index.query_row("SELECT value FROM totals WHERE name = 'size'", [], |row| row.get(0)).unwrap();
    let scanned: i64 = index.query_row("SELECT coalesce(sum(size), 0) FROM records", [], |row| row.get(0)).unwrap();
    assert_eq!(kept, scanned);
    assert_eq!(store.stats().unwrap().size as i64, scanned);
    assert!(scanned <= 100_000 + 5000, "{scanned}");
}

#[test]
fn verify_pages_through_every_record() {
    // More than one page (512 records): every record is checked, a corrupt
    // one after the first page is found, and progress counts to the total.
    let dir = tempfile::tempdir().unwrap();
    let store = Cache::open(&config(dir.path())).unwrap();
    let labels: Vec<String> = (0..1300).map(|i| format!("page {i}")).collect();
    // The record whose key sorts last is a blob (certainly past the first page).
    let last = labels.iter().max_by_key(|label| key(label).to_string()).unwrap().clone();
    for label in &labels {
        if *label == last {
            store.put(core(), &eval(label, "f", 10), &content(10)).unwrap();
        } else {
            store.put(core(), &eval(label, "f", 10), label.as_bytes()).unwrap();
        }
    }
    let digest = blake3::hash(&content(10)).to_hex().to_string();
    std::fs::remove_file(dir.path().join("blobs").join(&digest[..2]).join(&digest[2..])).unwrap();
    let mut seen = Vec::new();
    let report = store.verify(|done, total| seen.push((done, total))).unwrap();
    assert_eq!(report.checked, 1300);
    assert_eq!(report.corrupt, vec![key(&last).to_string()]);
    assert_eq!(seen.last(), Some(&(1300, 1300)));
}
