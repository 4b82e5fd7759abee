//! The host runtime: compile cache, pooling across threads, native hashing,
//! limits, and the error codes' documentation.

use std::sync::Arc;

use hitsave_core::stream::StreamWriter;
use hitsave_core::{ErrorCode, canonical};
use hitsave_host::runtime::compiled_path;
use hitsave_host::{Core, HitSaveError, LoadOptions, LoadSource, hash};

fn small_stream() -> Vec<u8> {
    let mut stream = StreamWriter::new();
    stream.map(2).str("lr").float(0.01).str("epochs").int(10);
    stream.into_bytes()
}

#[test]
fn compiled_component_is_cached_and_reused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LoadOptions { compiled_dir: Some(dir.path().to_path_buf()) };
    let first = Core::load(&options).expect("loads");
    assert_eq!(first.source(), LoadSource::CompiledAndCached);
    let second = Core::load(&options).expect("loads");
    assert_eq!(second.source(), LoadSource::Cached);
    let stream = small_stream();
    assert_eq!(first.value_digest(&stream).unwrap(), second.value_digest(&stream).unwrap());
    assert_eq!(second.value_digest(&stream).unwrap(), canonical::digest(&stream).unwrap());
}

#[test]
fn corrupt_compile_cache_is_replaced_not_trusted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LoadOptions { compiled_dir: Some(dir.path().to_path_buf()) };
    Core::load(&options).expect("loads");
    let path = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let core = Core::load(&options).expect("loads despite a corrupt cache file");
    assert_eq!(core.source(), LoadSource::CompiledAndCached);
    assert_eq!(core.value_digest(&small_stream()).unwrap(), canonical::digest(&small_stream()).unwrap());
    // Truncated to nothing: same.
    std::fs::write(&path, b"").unwrap();
    assert_eq!(Core::load(&options).unwrap().source(), LoadSource::CompiledAndCached);
    assert_eq!(Core::load(&options).unwrap().source(), LoadSource::Cached);
}

#[test]
fn unwritable_compile_cache_still_loads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let core = Core::load(&LoadOptions { compiled_dir: Some(file.join("compiled")) }).expect("loads");
    assert_eq!(core.source(), LoadSource::Compiled);
    assert!(core.value_digest(&small_stream()).is_ok());
}

#[test]
fn compile_cache_name_carries_component_and_engine() {
    let dir = std::path::Path::new("/x");
    let name = compiled_path(&wasmtime::Engine::default(), dir).file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("core-{}-", &hitsave_host::runtime::component_digest()[..24])), "{name}");
    assert!(name.ends_with(".cwasm"), "{name}");
}

#[test]
fn many_threads_share_one_core() {
    let core = Arc::new(Core::load(&LoadOptions::default()).expect("loads"));
    let handles: Vec<_> = (0..8)
        .map(|thread| {
            let core = Arc::clone(&core);
            std::thread::spawn(move || {
                for index in 0..200i64 {
                    let mut stream = StreamWriter::new();
                    stream.list(2).int(thread).int(index);
                    let stream = stream.into_bytes();
                    assert_eq!(core.value_digest(&stream).unwrap(), canonical::digest(&stream).unwrap());
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread ran");
    }
}

#[test]
fn errors_do_not_poison_the_core() {
    let core = Core::load(&LoadOptions::default()).expect("loads");
    for _ in 0..3 {
        let mut bad = StreamWriter::new();
        bad.list(2).int(1).unhashable("threading.Lock");
        let error = core.value_digest(bad.as_bytes()).unwrap_err();
        assert_eq!(error.code(), "unhashable_value");
        assert_eq!(error.path(), Some("[1]"));
        assert!(error.to_string().contains("threading.Lock"), "{error}");
        assert!(core.value_digest(&small_stream()).is_ok());
    }
}

#[test]
fn deepest_allowed_nesting_runs_in_the_component() {
    let core = Core::load(&LoadOptions::default()).expect("loads");
    // Maps recurse through two frames per level: the deepest case for the guest stack.
    let mut stream = StreamWriter::new();
    for _ in 0..canonical::MAX_DEPTH - 1 {
        stream.map(1).str("k");
    }
    stream.null();
    let component = core.value_digest(stream.as_bytes()).unwrap();
    // The unoptimised native build needs a bigger stack than a test thread has.
    let native_stream = stream.as_bytes().to_vec();
    let native = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || canonical::digest(&native_stream).unwrap())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(component, native);
    let mut deeper = StreamWriter::new();
    deeper.map(1).str("k");
    let mut bytes = deeper.into_bytes();
    bytes.extend_from_slice(stream.as_bytes());
    assert_eq!(core.value_digest(&bytes).unwrap_err().code(), "too_deep");
}

#[test]
fn large_buffers_are_hashed_natively_with_the_same_digest() {
    let core = Core::load(&LoadOptions::default()).expect("loads");
    let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
    assert_eq!(hash::blob_digest(&data).bytes, *blake3::hash(&data).as_bytes());
    let mut hashed = StreamWriter::new();
    hash::write_bytes(&mut hashed, &data);
    assert!(hashed.as_bytes().len() < 64, "a large buffer enters the stream as a digest");
    let mut inline = StreamWriter::new();
    inline.bytes(&data);
    assert_eq!(core.value_digest(hashed.as_bytes()).unwrap(), core.value_digest(inline.as_bytes()).unwrap());

    let mut array_hashed = StreamWriter::new();
    hash::write_array(&mut array_hashed, "uint16", &[3, 1 << 19], &data);
    let mut array_inline = StreamWriter::new();
    array_inline.array("uint16", &[3, 1 << 19], &data);
    assert_eq!(
        core.value_digest(array_hashed.as_bytes()).unwrap(),
        core.value_digest(array_inline.as_bytes()).unwrap()
    );
}

#[test]
fn files_enter_by_content() {
    let core = Core::load(&LoadOptions::default()).expect("loads");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    std::fs::write(&a, b"x,y\n1,2\n").unwrap();
    std::fs::write(&b, b"x,y\n1,2\n").unwrap();
    let digest = |path: &std::path::Path| {
        let mut stream = StreamWriter::new();
        hash::write_file(&mut stream, path).unwrap();
        core.value_digest(stream.as_bytes()).unwrap()
    };
    assert_eq!(digest(&a), digest(&b), "same contents, same digest, whatever the path");
    std::fs::write(&b, b"x,y\n1,3\n").unwrap();
    assert_ne!(digest(&a), digest(&b));
    let missing = hash::write_file(&mut StreamWriter::new(), &dir.path().join("missing")).unwrap_err();
    assert_eq!(missing.code(), "io");
}

#[test]
fn error_codes_are_documented_in_docs_errors_md() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/errors.md")).expect("docs/errors.md");
    let documented: Vec<&str> =
        doc.lines().filter_map(|line| line.strip_prefix("| `")).filter_map(|rest| rest.split('`').next()).collect();
    assert_eq!(documented, HitSaveError::all_codes(), "docs/errors.md lists every code, in order");
    assert_eq!(ErrorCode::ALL.len() + hitsave_host::error::HOST_CODES.len(), documented.len());
}
