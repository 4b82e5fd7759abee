//! Project chores.
//!
//! - `cargo run -p hitsave-xtask -- component [--check]`: build the core
//!   component reproducibly and write `core/component/hitsave_core.wasm`
//!   (or, with `--check`, fail if the committed file differs from a fresh build).
//! - `cargo run -p hitsave-xtask -- vectors [--check]`: write (or check) `tests/vectors/*.json`.

mod vectors;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// The committed component, relative to the workspace root.
const COMPONENT_PATH: &str = "core/component/hitsave_core.wasm";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|arg| arg == "--check");
    let result = match args.first().map(String::as_str) {
        Some("component") => component(check),
        Some("vectors") => vectors::run(&root(), check),
        _ => Err("usage: xtask (component|vectors) [--check]".to_owned()),
    };
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the core for `wasm32-unknown-unknown` with a scrubbed environment,
/// paths remapped (so the bytes do not depend on where the clone lives) and
/// its own target directory, then encodes the module as a component.
fn component(check: bool) -> Result<String, String> {
    let root = root();
    let target_dir = root.join("target/component");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let rustflags = [
        "-Ctarget-feature=+simd128".to_owned(),
        // Room for MAX_DEPTH levels of nesting with margin (the default is 1 MiB).
        "-Clink-arg=-zstack-size=4194304".to_owned(),
        format!("--remap-path-prefix={}=/hitsave", root.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
    ]
    .join("\x1f");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_") && name != "CARGO_HOME"
            || name == "RUSTFLAGS"
            || name == "RUSTC_WRAPPER"
            || name == "RUSTC_WORKSPACE_WRAPPER"
        {
            command.env_remove(name.as_ref());
        }
    }
    let status = command
        .current_dir(&root)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .args([
            "build",
            "--locked",
            "-p",
            "hitsave-core",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "component",
            "--target-dir",
        ])
        .arg(&target_dir)
        .status()
        .map_err(|err| format!("cannot run cargo: {err}"))?;
    if !status.success() {
        return Err(format!("building the core for wasm failed: {status}"));
    }
    let module_path = target_dir.join("wasm32-unknown-unknown/component/hitsave_core.wasm");
    let module = std::fs::read(&module_path).map_err(|err| format!("cannot read {}: {err}", module_path.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .map_err(|err| format!("not a core module the encoder accepts: {err:#}"))?
        .validate(true)
        .encode()
        .map_err(|err| format!("cannot encode the component: {err:#}"))?;
    let committed = root.join(COMPONENT_PATH);
    if check {
        let current = std::fs::read(&committed).map_err(|err| format!("cannot read {}: {err}", committed.display()))?;
        if current != component {
            return Err(format!(
                "{COMPONENT_PATH} differs from a fresh build ({} vs {} bytes, blake3 {} vs {}): run `cargo run -p hitsave-xtask -- component` and commit it",
                current.len(),
                component.len(),
                blake3_hex(&current),
                blake3_hex(&component)
            ));
        }
        return Ok(format!("{COMPONENT_PATH} is reproduced byte for byte ({} bytes)", component.len()));
    }
    std::fs::write(&committed, &component).map_err(|err| format!("cannot write {}: {err}", committed.display()))?;
    Ok(format!("wrote {COMPONENT_PATH} ({} bytes)", component.len()))
}

fn blake3_hex(bytes: &[u8]) -> String {
    hitsave_core::Digest::blob(bytes).hex()
}
