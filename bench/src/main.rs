//! HitSave benchmarks against named peers, run in one process so the numbers
//! compare like with like. Each suite rewrites its own section of
//! `docs/benchmarks.md` (between `<!-- bench:NAME -->` markers).
//!
//! ```text
//! cargo run --release -p hitsave-bench -- foundation
//! ```

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
    match suite.as_str() {
        "foundation" => {
            let rows = foundation();
            for row in &rows {
                println!("{}: {} vs {} ({}) {}", row.what, row.ours, row.theirs, row.target, row.verdict);
            }
            let path = write_section(
                "foundation",
                "Foundation: component load, key derivation, native hashing",
                "cargo run --release -p hitsave-bench -- foundation",
                &rows,
            )
            .expect("write docs/benchmarks.md");
            println!("wrote {}", path.display());
        }
        other => {
            eprintln!("unknown suite {other:?}; suites: foundation");
            std::process::exit(2);
        }
    }
}
