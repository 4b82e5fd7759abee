//! HitSave benchmarks against named peers, run in one process so the numbers
//! compare like with like. Each suite rewrites its own section of
//! `docs/benchmarks.md` (between `<!-- bench:NAME -->` markers).
//!
//! ```text
//! cargo run --release -p hitsave-bench -- foundation
//! ```

mod cloud;
mod scaleout;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hitsave_core::keys::FunctionIdentity;
use hitsave_core::stream::StreamWriter;
use hitsave_host::{Core, LoadOptions, LoadSource};

struct Row {
    what: String,
    peer: String,
    ours: String,
    theirs: String,
    target: String,
    verdict: String,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn fmt_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos() as f64;
    if nanos < 1_000.0 {
        format!("{nanos:.0} ns")
    } else if nanos < 1_000_000.0 {
        format!("{:.2} µs", nanos / 1e3)
    } else {
        format!("{:.2} ms", nanos / 1e6)
    }
}

/// Median time per call over `rounds` rounds of `calls` calls.
fn per_call(rounds: usize, calls: u32, mut call: impl FnMut()) -> Duration {
    let samples = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                call();
            }
            start.elapsed() / calls
        })
        .collect();
    median(samples)
}

fn verdict(ok: bool) -> String {
    if ok { "met".to_owned() } else { "**missed**".to_owned() }
}

fn foundation() -> Vec<Row> {
    let mut rows = Vec::new();
    let cache = std::env::temp_dir().join(format!("hitsave-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);

    // Component load: JIT every time versus the verified on-disk compile cache.
    let cold = median(
        (0..7)
            .map(|_| {
                let start = Instant::now();
                let core = Core::load(&LoadOptions { compiled_dir: None }).expect("loads");
                core.value_digest(&[0]).expect("first call");
                start.elapsed()
            })
            .collect(),
    );
    let options = LoadOptions { compiled_dir: Some(cache.clone()) };
    assert_eq!(Core::load(&options).expect("loads").source(), LoadSource::CompiledAndCached);
    let cached = median(
        (0..31)
            .map(|_| {
                let start = Instant::now();
                let core = Core::load(&options).expect("loads");
                core.value_digest(&[0]).expect("first call");
                let elapsed = start.elapsed();
                assert_eq!(core.source(), LoadSource::Cached);
                elapsed
            })
            .collect(),
    );
    rows.push(Row {
        what: "Load the core component and make a first call".into(),
        peer: "JIT-compiling it (`Component::new`)".into(),
        ours: format!("{} (compile cache)", fmt_duration(cached)),
        theirs: fmt_duration(cold),
        target: "cached ≤ 5 ms".into(),
        verdict: verdict(cached <= Duration::from_millis(5)),
    });

    // One small key derivation through the component versus natively.
    let core = Core::load(&options).expect("loads");
    let mut args = StreamWriter::new();
    args.list(2).int(42).str("train.csv");
    let arguments = core.value_digest(args.as_bytes()).expect("digest");
    let identity = FunctionIdentity::Explicit { name: "train".into(), version: "1".into() };
    let component_key = per_call(15, 20_000, || {
        black_box(core.derive_key(black_box(&identity), black_box(&arguments)).expect("key"));
    });
    let native_key = per_call(15, 20_000, || {
        black_box(hitsave_core::keys::derive_key(black_box(&identity), black_box(&arguments)).expect("key"));
    });
    rows.push(Row {
        what: "Derive one eval key (explicit identity + argument digest)".into(),
        peer: "the same Rust code called natively".into(),
        ours: fmt_duration(component_key),
        theirs: fmt_duration(native_key),
        target: "≤ 2 µs per call".into(),
        verdict: verdict(component_key <= Duration::from_micros(2)),
    });
    let stream = args.into_bytes();
    let component_digest = per_call(15, 20_000, || {
        black_box(core.value_digest(black_box(&stream)).expect("digest"));
    });
    let native_digest = per_call(15, 20_000, || {
        black_box(hitsave_core::canonical::digest(black_box(&stream)).expect("digest"));
    });
    rows.push(Row {
        what: "Digest small arguments `[42, \"train.csv\"]`".into(),
        peer: "the same Rust code called natively".into(),
        ours: fmt_duration(component_digest),
        theirs: fmt_duration(native_digest),
        target: "—".into(),
        verdict: "—".into(),
    });

    // BLAKE3 of a 256 MiB buffer: the host (all cores) versus single-threaded.
    let buffer: Vec<u8> = (0..256u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    // Interleaved, so drift in the machine's speed hits both sides alike;
    // the speed-up is the median of the per-pair ratios.
    let mut host_samples = Vec::new();
    let mut single_samples = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..11 {
        let start = Instant::now();
        black_box(blake3::hash(black_box(&buffer)));
        let single = start.elapsed();
        let start = Instant::now();
        black_box(hitsave_host::hash::blob_digest(black_box(&buffer)));
        let host = start.elapsed();
        ratios.push(single.as_secs_f64() / host.as_secs_f64());
        single_samples.push(single);
        host_samples.push(host);
    }
    ratios.sort_by(f64::total_cmp);
    let speedup = ratios[ratios.len() / 2];
    let (host, single) = (median(host_samples), median(single_samples));
    let gib = |duration: Duration| 256.0 / 1024.0 / duration.as_secs_f64();
    rows.push(Row {
        what: "BLAKE3 of a 256 MiB buffer".into(),
        peer: "`blake3::hash`, one thread".into(),
        ours: format!("{} ({:.2} GiB/s)", fmt_duration(host), gib(host)),
        theirs: format!("{} ({:.2} GiB/s)", fmt_duration(single), gib(single)),
        target: format!("≥ 1.6× (got {speedup:.2}×)"),
        verdict: verdict(speedup >= 1.6),
    });
    let _ = std::fs::remove_dir_all(&cache);
    rows
}

fn store_suite() -> Vec<Row> {
    use hitsave_host::Config;
    use hitsave_host::store::{NewEval, Store};
    let mut rows = Vec::new();
    // On the project's disk (not a tmpfs), so the file peers use the same disk.
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-store");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("bench dir");
    let core = Core::load(&LoadOptions { compiled_dir: Some(base.join("compiled")) }).expect("core");
    let store = Store::open(&Config::for_dir(base.join("store"))).expect("store");
    let eval = |index: u64| NewEval {
        key: hitsave_core::Digest::new(hitsave_core::DigestKind::Key, *blake3::hash(&index.to_le_bytes()).as_bytes()),
        function_id: "bench@1".into(),
        function_name: "bench".into(),
        language: "rust".into(),
        arguments: hitsave_core::Digest::new(
            hitsave_core::DigestKind::Value,
            *blake3::hash(&index.to_le_bytes()).as_bytes(),
        ),
        codec: "raw".into(),
        compute_micros: 5000,
        graph: None,
    };
    let small = vec![42u8; 100];

    // Insert of a small result: HitSave versus a bare SQLite insert in WAL mode.
    let mut next = 0u64;
    let insert = per_call(9, 500, || {
        next += 1;
        black_box(store.put_local(&core, &eval(next), &small).expect("put"));
    });
    let peer_db = rusqlite::Connection::open(base.join("peer.sqlite")).expect("peer db");
    peer_db.pragma_update(None, "journal_mode", "WAL").expect("wal");
    peer_db.pragma_update(None, "synchronous", "NORMAL").expect("sync");
    peer_db.execute("CREATE TABLE t (key BLOB PRIMARY KEY, value BLOB) WITHOUT ROWID", []).expect("table");
    let mut peer_next = 0u64;
    let peer_insert = per_call(9, 500, || {
        peer_next += 1;
        peer_db
            .execute(
                "INSERT INTO t VALUES (?1, ?2)",
                rusqlite::params![blake3::hash(&peer_next.to_le_bytes()).as_bytes(), small],
            )
            .expect("insert");
    });
    rows.push(Row {
        what: "Insert a small (100 B) result".into(),
        peer: "one bare SQLite INSERT (WAL, synchronous=NORMAL)".into(),
        ours: fmt_duration(insert),
        theirs: fmt_duration(peer_insert),
        target: "≤ 50 µs".into(),
        verdict: verdict(insert <= Duration::from_micros(50)),
    });

    // Warm lookup of a small inline result.
    let mut probe = 0u64;
    let lookup = per_call(15, 20_000, || {
        probe = probe % next + 1;
        black_box(store.get_local(&eval(probe).key).expect("get").expect("hit"));
    });
    let mut statement = peer_db.prepare_cached("SELECT value FROM t WHERE key = ?1").expect("select");
    let mut peer_probe = 0u64;
    let peer_lookup = per_call(15, 20_000, || {
        peer_probe = peer_probe % peer_next + 1;
        let value: Vec<u8> =
            statement.query_row([blake3::hash(&peer_probe.to_le_bytes()).as_bytes()], |row| row.get(0)).expect("row");
        black_box(value);
    });
    drop(statement);
    // The first lookup of each key in a process reads SQLite and verifies;
    // repeats are served from the process's verified recent hits.
    let fresh = Store::open(&Config::for_dir(base.join("store"))).expect("store");
    let first_reads = {
        let start = Instant::now();
        for index in 1..=next {
            black_box(fresh.get_local(&eval(index).key).expect("get").expect("hit"));
        }
        start.elapsed() / next as u32
    };
    drop(fresh);
    rows.push(Row {
        what: "First lookup of a small inline result in a process (SQLite + verify)".into(),
        peer: "one bare SQLite SELECT by primary key".into(),
        ours: fmt_duration(first_reads),
        theirs: fmt_duration(peer_lookup),
        target: "—".into(),
        verdict: "—".into(),
    });
    rows.push(Row {
        what: "Warm lookup of a small inline result (repeated in a process)".into(),
        peer: "one bare SQLite SELECT by primary key".into(),
        ours: fmt_duration(lookup),
        theirs: fmt_duration(peer_lookup),
        target: "≤ 5 µs".into(),
        verdict: verdict(lookup <= Duration::from_micros(5)),
    });

    // 1 GiB results are measured through `@memo` and `memo()` as users call
    // them (bench/python/bench_scale.py, bench/node/bench_memo.mjs).
    drop(store);
    let _ = std::fs::remove_dir_all(&base);
    rows
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {cpu}")
}

fn write_section(name: &str, title: &str, command: &str, rows: &[Row]) -> std::io::Result<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nMeasured by the suites under `bench/`, each against its named peers in one run. \
         Never asserted in tests (machines are noisy): rerun the command of a section to refresh it.\n"
            .to_owned()
    });
    let start = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let mut section = format!(
        "{start}\n## {title}\n\n`{command}` — {}, release build, medians.\n\n| what | peer | HitSave | peer | target | |\n|---|---|---|---|---|---|\n",
        machine()
    );
    for row in rows {
        section.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row.what, row.peer, row.ours, row.theirs, row.target, row.verdict
        ));
    }
    section.push_str(&end);
    let updated = match (existing.find(&start), existing.find(&end)) {
        (Some(a), Some(b)) if a < b => format!("{}{}{}", &existing[..a], section, &existing[b + end.len()..]),
        _ => format!("{}\n{}\n", existing.trim_end(), section),
    };
    std::fs::write(&path, updated)?;
    Ok(path)
}

fn main() {
    let suite = std::env::args().nth(1).unwrap_or_else(|| "foundation".to_owned());
    let (rows, title) = match suite.as_str() {
        "foundation" => (foundation(), "Foundation: component load, key derivation, native hashing"),
        "store" => (store_suite(), "Local store: lookup, insert"),
        "cloud" => (cloud::cloud_suite(), "Cloud: lookups, 256 MiB upload and download on loopback"),
        "scaleout" => (
            scaleout::scaleout_suite(),
            "Cloud scale-out: two servers on PostgreSQL and Ceph behind HAProxy, the object store",
        ),
        other => {
            eprintln!("unknown suite {other:?}; suites: foundation, store, cloud, scaleout (bench/scaleout.sh)");
            std::process::exit(2);
        }
    };
    for row in &rows {
        println!("{}: {} vs {} ({}) {}", row.what, row.ours, row.theirs, row.target, row.verdict);
    }
    let command = match suite.as_str() {
        "scaleout" => "bash bench/scaleout.sh".to_owned(),
        _ => format!("cargo run --release -p hitsave-bench -- {suite}"),
    };
    let path = write_section(&suite, title, &command, &rows).expect("write docs/benchmarks.md");
    println!("wrote {}", path.display());
}
