//! Canonical bytes written by hand from `docs/spec/values.md`, independent of
//! the vector generator, plus pinned digests: if any of these change, the
//! encoding changed and every stored key with it.

use hitsave_core::canonical;
use hitsave_core::stream::StreamWriter;

fn canonical_hex(build: impl FnOnce(&mut StreamWriter)) -> String {
    let mut stream = StreamWriter::new();
    build(&mut stream);
    hex::encode(canonical::encode(stream.as_bytes()).expect("valid stream").canonical)
}

#[test]
fn scalars_have_the_documented_bytes() {
    assert_eq!(
        canonical_hex(|s| {
            s.null();
        }),
        "00"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.bool(false);
        }),
        "01"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.bool(true);
        }),
        "02"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.int(0);
        }),
        "0300000000"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.int(1);
        }),
        "030000000101"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.int(-1);
        }),
        "0300000001ff"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.int(128);
        }),
        "03000000020080"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.int(-129);
        }),
        "0300000002ff7f"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.bigint(false, &[0, 0, 0, 0, 0, 0, 0, 0, 1]);
        }),
        "0300000009010000000000000000"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.float(1.5);
        }),
        "043ff8000000000000"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.float(-0.0);
        }),
        "048000000000000000"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.float(1.0);
        }),
        "043ff0000000000000"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.float(f64::from_bits(0xfff8_0000_0000_0001));
        }),
        "047ff8000000000000"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.str("a");
        }),
        "05000000000000000161"
    );
    assert_eq!(
        canonical_hex(|s| {
            s.typed("py:builtins.tuple").list(0);
        }),
        "0f000000000000001170793a6275696c74696e732e7475706c65070000000000000000"
    );
}

#[test]
fn containers_have_the_documented_bytes() {
    assert_eq!(
        canonical_hex(|s| {
            s.list(1).int(1);
        }),
        "070000000000000001030000000101"
    );
    // Entries in the order given.
    assert_eq!(
        canonical_hex(|s| {
            s.map(2).str("a").null().int(2).bool(true);
        }),
        concat!("08", "0000000000000002", "05000000000000000161", "00", "030000000102", "02")
    );
    // Members sorted by canonical bytes and kept once; 2.0 is another member than 2.
    assert_eq!(
        canonical_hex(|s| {
            s.set(4).int(2).int(1).float(2.0).int(1);
        }),
        concat!("09", "0000000000000003", "030000000101", "030000000102", "044000000000000000")
    );
    // Fields sorted by name.
    assert_eq!(
        canonical_hex(|s| {
            s.record("P", 2).field("y").int(2).field("x").int(1);
        }),
        concat!(
            "0a",
            "0000000000000001",
            "50",
            "0000000000000002",
            "0000000000000001",
            "78",
            "030000000101",
            "0000000000000001",
            "79",
            "030000000102"
        )
    );
}

#[test]
fn buffers_enter_by_their_blake3() {
    let content_hash = blake3::hash(b"hello").to_hex().to_string();
    assert_eq!(
        canonical_hex(|s| {
            s.bytes(b"hello");
        }),
        format!("060000000000000005{content_hash}")
    );
    assert_eq!(
        canonical_hex(|s| {
            s.file_digest(5, blake3::hash(b"hello").as_bytes());
        }),
        format!("0c0000000000000005{content_hash}")
    );
    assert_eq!(
        canonical_hex(|s| {
            s.array("uint8", &[5], b"hello");
        }),
        format!("0b000000000000000575696e7438000000000000000100000000000000050000000000000005{content_hash}")
    );
}

#[test]
fn digests_are_pinned() {
    let digest = |build: &dyn Fn(&mut StreamWriter)| {
        let mut stream = StreamWriter::new();
        build(&mut stream);
        canonical::digest(stream.as_bytes()).expect("valid").to_string()
    };
    // BLAKE3 derive-key("hitsave 2026-12 value v2") of the canonical bytes.
    let expected_null = {
        let mut hasher = blake3::Hasher::new_derive_key("hitsave 2026-12 value v2");
        hasher.update(&[0]);
        format!("val2_{}", hasher.finalize().to_hex())
    };
    assert_eq!(
        digest(&|s| {
            s.null();
        }),
        expected_null
    );
    assert_eq!(
        digest(&|s| {
            s.null();
        }),
        "val2_03fa7f13e1da6be9697e140bc8aa8329c5247cfa004a6dd5aa5823b709259a92"
    );
}
