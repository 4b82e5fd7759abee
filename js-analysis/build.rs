//! `HITSAVE_JS_ANALYSIS_SOURCE`: a digest of this crate's source and
//! manifest, part of the name of the files that keep module summaries
//! across processes (`src/kept.rs`): an analysis changed in any way never
//! reads summaries an older one made.

use std::hash::{Hash, Hasher};

fn main() {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir("src")
        .expect("src")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();
    files.push("Cargo.toml".into());
    // SipHash with fixed keys: the same bytes give the same digest in every build.
    let mut hasher = std::hash::DefaultHasher::new();
    for file in &files {
        println!("cargo::rerun-if-changed={}", file.display());
        file.hash(&mut hasher);
        std::fs::read(file).expect("readable source").hash(&mut hasher);
    }
    println!("cargo::rerun-if-changed=src");
    println!("cargo::rustc-env=HITSAVE_JS_ANALYSIS_SOURCE={:016x}", hasher.finish());
}
