//! Writes and checks `tests/vectors/*.json`.
//!
//! The inputs are listed here; the expected outputs come from the native core.
//! The Rust tests then require the embedded component to give the same
//! answers, and the Python and Node suites read the same files. Generation
//! also asserts the properties the vectors exist to show (equal values share
//! a digest, a one-node edit changes exactly its dependents), so a vector file
//! that contradicts the spec cannot be written.

use std::collections::BTreeMap;
use std::path::Path;

use hitsave_core::graph::{self, Node, NodeKind};
use hitsave_core::keys::{self, FunctionIdentity};
use hitsave_core::notation::{self, Buffers};
use hitsave_core::policy::{self, Entry, EvictionParams, FunctionStats, StoreParams};
use hitsave_core::stream::StreamWriter;
use hitsave_core::{Digest, canonical};
use serde_json::{Value, json};

const HEADER: &str = "Written by `cargo run -p hitsave-xtask -- vectors`; checked by CI. Do not edit by hand.";

pub fn run(root: &Path, check: bool) -> Result<String, String> {
    let files =
        [("values.json", values()?), ("keys.json", keys()?), ("graphs.json", graphs()?), ("policy.json", policies())];
    let dir = root.join("tests/vectors");
    let mut stale = Vec::new();
    for (name, content) in &files {
        let text = serde_json::to_string_pretty(content).map_err(|err| err.to_string())? + "\n";
        let path = dir.join(name);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(*name);
            }
        } else {
            std::fs::create_dir_all(&dir).map_err(|err| err.to_string())?;
            std::fs::write(&path, text).map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        }
    }
    if !stale.is_empty() {
        return Err(format!(
            "tests/vectors is not current ({}): run `cargo run -p hitsave-xtask -- vectors` and commit",
            stale.join(", ")
        ));
    }
    Ok(format!("tests/vectors: {} files {}", files.len(), if check { "are current" } else { "written" }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn value_digest(value: &Value) -> Result<Digest, String> {
    let stream = notation::to_stream(value, Buffers::Inline)?;
    canonical::digest(&stream).map_err(|err| err.to_string())
}

fn nested_lists(depth: usize) -> Value {
    (0..depth).fold(json!(0), |inner, _| json!([inner]))
}

fn values() -> Result<Value, String> {
    let big = "ab".repeat(5000);
    let ten_pow_30 = "1000000000000000000000000000000";
    // (name, notation, name of a case it must equal)
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("null", json!(null), None),
        ("false", json!(false), None),
        ("true", json!(true), None),
        ("int 0", json!(0), None),
        ("int 1", json!(1), None),
        ("int -1", json!(-1), None),
        ("int 127", json!(127), None),
        ("int 128", json!(128), None),
        ("int -128", json!(-128), None),
        ("int -129", json!(-129), None),
        ("int 255", json!(255), None),
        ("int i64 max", json!(i64::MAX), None),
        ("int i64 min", json!(i64::MIN), None),
        ("int 2^64", json!({"int": "18446744073709551616"}), None),
        ("int -2^64", json!({"int": "-18446744073709551616"}), None),
        ("int 10^30", json!({"int": ten_pow_30}), None),
        ("bigint 5 equals int 5", json!({"bigint": "5"}), Some("int 5")),
        ("int 5", json!(5), None),
        ("bigint -1 equals int -1", json!({"bigint": "-1"}), Some("int -1")),
        ("bigint 0 with leading zero bytes equals int 0", json!({"bigint": "0"}), Some("int 0")),
        ("float 1.5", json!({"float": "1.5"}), None),
        ("float -2.25", json!({"float": "-2.25"}), None),
        ("float 0.1", json!({"float": "0.1"}), None),
        ("float 1.0 differs from int 1", json!({"float": "1.0"}), None),
        ("float -1.0 differs from int -1", json!({"float": "-1.0"}), None),
        ("float 0.0 differs from int 0", json!({"float": "0.0"}), None),
        ("float -0.0 differs from float 0.0", json!({"float": "-0.0"}), None),
        ("float 2^64 differs from int 2^64", json!({"float": "18446744073709551616"}), None),
        ("float 1e300", json!({"float": "1e300"}), None),
        ("int 1e300", json!({"int": format!("{:.0}", 1e300_f64)}), None),
        ("float 2^53+2", json!({"float": "9007199254740994"}), None),
        ("int 2^53+2", json!(9007199254740994_i64), None),
        ("float max", json!({"float": "1.7976931348623157e308"}), None),
        ("float smallest subnormal", json!({"float_bits": "0000000000000001"}), None),
        ("float nan", json!({"float": "nan"}), None),
        ("float nan with payload equals nan", json!({"float_bits": "7ff8000000000001"}), Some("float nan")),
        ("float negative nan equals nan", json!({"float_bits": "fff8000000000000"}), Some("float nan")),
        ("float signalling nan equals nan", json!({"float_bits": "7ff0000000000001"}), Some("float nan")),
        ("float inf", json!({"float": "inf"}), None),
        ("float -inf", json!({"float": "-inf"}), None),
        ("str empty", json!(""), None),
        ("str hello", json!("hello"), None),
        ("str unicode", json!("héllo ✓ 🦀"), None),
        ("str with nul", json!("a\u{0}b"), None),
        ("bytes empty", json!({"bytes": ""}), None),
        ("bytes hello", json!({"bytes": hex(b"hello")}), None),
        ("bytes 5000 (hashed by the host)", json!({"bytes": big}), None),
        ("list empty", json!([]), None),
        ("list mixed", json!([1, "a", null, {"float": "2.5"}]), None),
        ("list nested", json!([[1, [2, [3]]], []]), None),
        ("tuple differs from list", json!({"typed": "py:builtins.tuple", "value": [1, 2]}), None),
        ("list 1 2", json!([1, 2]), None),
        ("list of floats differs from list of ints", json!([{"float": "1.0"}, {"float": "2.0"}]), None),
        ("map empty", json!({"map": []}), None),
        ("map a b", json!({"map": [["a", 1], ["b", 2]]}), None),
        ("map b a differs from map a b (insertion order)", json!({"map": [["b", 2], ["a", 1]]}), None),
        ("map int keys", json!({"map": [[2, "y"], [1, "x"]]}), None),
        ("map float key differs from int key", json!({"map": [[{"float": "2.0"}, "y"], [1, "x"]]}), None),
        (
            "ordered dict differs from dict",
            json!({"typed": "py:collections.OrderedDict", "value": {"map": [["a", 1], ["b", 2]]}}),
            None,
        ),
        ("map mixed keys", json!({"map": [["a", 1], [1, "a"], [null, true], [[1, 2], {"bytes": "00"}]]}), None),
        ("set empty", json!({"set": []}), None),
        ("set 1 2 3", json!({"set": [1, 2, 3]}), None),
        ("set 3 1 2 equals set 1 2 3", json!({"set": [3, 1, 2]}), Some("set 1 2 3")),
        ("set with a repeated member equals set 1", json!({"set": [1, 1]}), Some("set 1")),
        ("set 1", json!({"set": [1]}), None),
        ("set with 1 and 1.0 has two members", json!({"set": [1, {"float": "1.0"}]}), None),
        ("frozenset differs from set", json!({"typed": "py:builtins.frozenset", "value": {"set": [1, 2, 3]}}), None),
        ("record point", json!({"record": "geometry.Point", "fields": [["x", 1], ["y", 2]]}), None),
        (
            "record fields reordered equals record point",
            json!({"record": "geometry.Point", "fields": [["y", 2], ["x", 1]]}),
            Some("record point"),
        ),
        ("record other name", json!({"record": "geometry.Vector", "fields": [["x", 1], ["y", 2]]}), None),
        (
            "record with a float field differs",
            json!({"record": "geometry.Point", "fields": [["x", {"float": "1.0"}], ["y", 2]]}),
            None,
        ),
        ("record empty", json!({"record": "Unit", "fields": []}), None),
        (
            "array float64 [2]",
            json!({"array": {"dtype": "float64", "shape": [2], "data": hex(&[1.5f64.to_le_bytes(), (-2.0f64).to_le_bytes()].concat())}}),
            None,
        ),
        (
            "array int32 [2,2]",
            json!({"array": {"dtype": "int32", "shape": [2, 2], "data": hex(&[1i32, 2, 3, 4].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())}}),
            None,
        ),
        (
            "array int32 [4] differs from [2,2]",
            json!({"array": {"dtype": "int32", "shape": [4], "data": hex(&[1i32, 2, 3, 4].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())}}),
            None,
        ),
        ("array uint8 [5]", json!({"array": {"dtype": "uint8", "shape": [5], "data": hex(b"hello")}}), None),
        ("array float32 empty [0,3]", json!({"array": {"dtype": "float32", "shape": [0, 3], "data": ""}}), None),
        (
            "array scalar shape []",
            json!({"array": {"dtype": "int64", "shape": [], "data": hex(&7i64.to_le_bytes())}}),
            None,
        ),
        (
            "array 8000 bytes (hashed by the host)",
            json!({"array": {"dtype": "uint16", "shape": [40, 100], "data": "0102".repeat(4000)}}),
            None,
        ),
        ("file hello", json!({"file": hex(b"hello")}), None),
        ("path", json!({"typed": "py:pathlib.PurePosixPath", "value": "/data/input.csv"}), None),
        ("str same text as path", json!("/data/input.csv"), None),
        ("another path type differs", json!({"typed": "py:pathlib.PureWindowsPath", "value": "/data/input.csv"}), None),
        (
            "bytearray differs from bytes",
            json!({"typed": "py:builtins.bytearray", "value": {"bytes": hex(b"hello")}}),
            None,
        ),
        ("js bigint 5 differs from int 5", json!({"typed": "js:bigint", "value": 5}), None),
        ("js Date", json!({"typed": "js:Date", "value": {"float": "0.0"}}), None),
        (
            "record named like a Date differs from a js Date",
            json!({"record": "Date", "fields": [["time", {"float": "0.0"}]]}),
            None,
        ),
        (
            "typed nested",
            json!({"typed": "py:builtins.tuple", "value": [{"typed": "py:builtins.tuple", "value": []}]}),
            None,
        ),
        ("function", json!({"function": format!("code2_{}", "ab".repeat(32))}), None),
    ];
    let mut digests: BTreeMap<&str, Digest> = BTreeMap::new();
    let mut out = Vec::new();
    for (name, value, _) in &cases {
        let stream = notation::to_stream(value, Buffers::Inline)?;
        let encoded = canonical::encode(&stream).map_err(|err| format!("{name}: {err}"))?;
        let hashed = canonical::encode(&notation::to_stream(value, Buffers::Digest)?).map_err(|err| err.to_string())?;
        if hashed != encoded {
            return Err(format!("{name}: inline and host-hashed buffers disagree"));
        }
        digests.insert(name, encoded.digest);
        out.push(json!({
            "name": name,
            "value": value,
            "stream": hex(&stream),
            "canonical": hex(&encoded.canonical),
            "digest": encoded.digest.to_string(),
        }));
    }
    let mut equal = Vec::new();
    for (name, _, same_as) in &cases {
        if let Some(other) = same_as {
            if digests.get(name) != digests.get(other) {
                return Err(format!("{name} must equal {other}"));
            }
            equal.push(json!([name, other]));
        }
    }
    // Values not declared equal must all differ.
    let mut seen: BTreeMap<Digest, &str> = BTreeMap::new();
    for (name, _, same_as) in &cases {
        if same_as.is_none()
            && let Some(other) = seen.insert(digests[name], name)
        {
            return Err(format!("{name} and {other} share a digest but are different values"));
        }
    }

    let mut errors = Vec::new();
    let notation_errors: Vec<(&str, Value)> = vec![
        ("unhashable value names its path", json!([0, {"map": [["x", [0, 0, 0, {"unhashable": "threading.Lock"}]]]}])),
        (
            "unhashable inside a record field",
            json!({"record": "Job", "fields": [["lock", {"unhashable": "_thread.lock"}]]}),
        ),
        ("unhashable inside a set", json!({"set": [1, {"unhashable": "generator"}]})),
        ("unhashable as a map key", json!({"map": [[{"unhashable": "socket"}, 1]]})),
        ("unhashable under an int key", json!({"map": [[7, {"unhashable": "Promise"}]]})),
        ("duplicate map key", json!({"map": [[1, "a"], [1, "b"]]})),
        ("duplicate map key written differently", json!({"map": [[1, "a"], [{"bigint": "1"}, "b"]]})),
        ("duplicate record field", json!({"record": "P", "fields": [["x", 1], ["x", 2]]})),
        ("unknown dtype", json!({"array": {"dtype": "float128", "shape": [1], "data": "00".repeat(16)}})),
        (
            "array length does not match shape",
            json!({"array": {"dtype": "float64", "shape": [3], "data": "00".repeat(16)}}),
        ),
    ];
    for (name, value) in notation_errors {
        let stream = notation::to_stream(&value, Buffers::Inline)?;
        let error = canonical::encode(&stream).err().ok_or(format!("{name}: expected an error"))?;
        errors.push(json!({"name": name, "value": value, "stream": hex(&stream), "code": error.code.as_str(), "path": error.path}));
    }
    let mut raw: Vec<(&str, Vec<u8>)> = Vec::new();
    raw.push(("invalid utf-8 string", StreamWriter::new().list(1).str_bytes(&[0x66, 0xff]).as_bytes().to_vec()));
    raw.push(("empty stream", Vec::new()));
    raw.push((
        "too deep: 512 lists around a leaf (513 levels)",
        notation::to_stream(&nested_lists(canonical::MAX_DEPTH), Buffers::Inline)?,
    ));
    raw.push(("truncated int", vec![0x03, 1, 2]));
    raw.push(("unknown token", vec![0x42]));
    raw.push(("trailing bytes", vec![0x00, 0x00]));
    raw.push(("count larger than the stream", vec![0x09, 0xff, 0xff, 0xff, 0x7f]));
    raw.push(("bigint sign byte out of range", vec![0x04, 2, 0, 0, 0, 0]));
    raw.push(("function fingerprint of an unknown version", {
        let mut stream = vec![0x10, 9];
        stream.extend_from_slice(&[0u8; 32]);
        stream
    }));
    raw.push(("function fingerprint of the previous scheme (code1)", {
        let mut stream = vec![0x10, 1];
        stream.extend_from_slice(&[0u8; 32]);
        stream
    }));
    raw.push(("typed value without a type name", vec![0x12, 0, 0, 0, 0, 0x00]));
    raw.push(("the retired path token", vec![0x11, 1, 0, 0, 0, b'a']));
    for (name, stream) in raw {
        let error = canonical::encode(&stream).err().ok_or(format!("{name}: expected an error"))?;
        errors.push(json!({"name": name, "value": null, "stream": hex(&stream), "code": error.code.as_str(), "path": error.path}));
    }
    Ok(json!({
        "about": HEADER,
        "spec": "docs/spec/values.md",
        "scheme": "val2",
        "cases": out,
        "equal": equal,
        "errors": errors,
    }))
}

fn keys() -> Result<Value, String> {
    let fingerprint = Digest::new(hitsave_core::DigestKind::Code, *blake3::hash(b"example fingerprint").as_bytes());
    let argument_sets = vec![
        json!([]),
        json!([1, 2]),
        json!([{"float": "1.0"}, 2]),
        json!({"typed": "py:builtins.tuple", "value": [1, 2]}),
        json!([{"map": [["lr", {"float": "0.01"}], ["epochs", 10]]}]),
        json!(["data.csv", {"bytes": "00ff"}]),
    ];
    let identities = vec![
        ("fingerprint", json!({"fingerprint": fingerprint.to_string()})),
        ("explicit train v1", json!({"name": "train", "version": "1"})),
        ("explicit train v2", json!({"name": "train", "version": "2"})),
        ("explicit unicode", json!({"name": "modèle.entraîner", "version": "2026-11-23"})),
    ];
    let mut cases = Vec::new();
    let mut seen = BTreeMap::new();
    for (identity_name, identity) in &identities {
        for arguments in &argument_sets {
            let arguments_digest = value_digest(arguments)?;
            let key = keys::derive_key(&identity_from(identity)?, &arguments_digest).map_err(|err| err.to_string())?;
            if let Some((other_identity, other_arguments)) = seen.insert(key, (identity_name, arguments.clone())) {
                return Err(format!(
                    "{identity_name} {arguments} and {other_identity} {other_arguments} share a key: every call must have its own"
                ));
            }
            cases.push(json!({
                "name": format!("{identity_name} {arguments}"),
                "identity": identity,
                "arguments": arguments,
                "arguments_digest": arguments_digest.to_string(),
                "key": key.to_string(),
            }));
        }
    }
    let valid_arguments = value_digest(&json!([]))?.to_string();
    let error_cases = vec![
        ("empty name", json!({"name": "", "version": "1"}), valid_arguments.clone()),
        ("empty version", json!({"name": "train", "version": ""}), valid_arguments.clone()),
        ("control character in name", json!({"name": "tra\nin", "version": "1"}), valid_arguments.clone()),
        ("name longer than 256 bytes", json!({"name": "n".repeat(257), "version": "1"}), valid_arguments.clone()),
        (
            "arguments digest of the wrong kind",
            json!({"name": "train", "version": "1"}),
            Digest::blob(b"x").to_string(),
        ),
        (
            "fingerprint of the wrong kind",
            json!({"fingerprint": Digest::blob(b"x").to_string()}),
            valid_arguments.clone(),
        ),
    ];
    let mut errors = Vec::new();
    for (name, identity, arguments) in error_cases {
        let arguments_digest = Digest::parse(&arguments).map_err(|err| err.to_string())?;
        let error = keys::derive_key(&identity_from(&identity)?, &arguments_digest)
            .err()
            .ok_or(format!("{name}: expected an error"))?;
        errors.push(
            json!({"name": name, "identity": identity, "arguments_digest": arguments, "code": error.code.as_str()}),
        );
    }
    Ok(json!({"about": HEADER, "spec": "docs/spec/keys.md", "scheme": "key2", "cases": cases, "errors": errors}))
}

/// Reads an identity from its vector notation.
pub fn identity_from(value: &Value) -> Result<FunctionIdentity, String> {
    if let Some(text) = value.get("fingerprint").and_then(Value::as_str) {
        return Ok(FunctionIdentity::Fingerprint(Digest::parse(text).map_err(|err| err.to_string())?));
    }
    let field =
        |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned).ok_or(format!("identity lacks {name}"));
    Ok(FunctionIdentity::Explicit { name: field("name")?, version: field("version")? })
}

/// A graph in vector notation: `[kind, name, content source text, [dep names]]`.
type GraphSpec<'a> = Vec<(&'a str, &'a str, &'a str, Vec<&'a str>)>;

fn kind_from(text: &str) -> NodeKind {
    NodeKind::ALL.into_iter().find(|kind| kind.as_str() == text).expect("known node kind")
}

fn build(spec: &GraphSpec) -> Result<(Vec<Node>, Value), String> {
    let mut nodes = Vec::new();
    let mut notation = Vec::new();
    for (kind, name, source, deps) in spec {
        let content = value_digest(&json!(source))?;
        let indices = deps
            .iter()
            .map(|dep| {
                spec.iter()
                    .position(|(_, other, _, _)| other == dep)
                    .map(|index| index as u32)
                    .ok_or(format!("unknown dep {dep}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        nodes.push(Node { kind: kind_from(kind), name: (*name).to_owned(), content, deps: indices.clone() });
        notation.push(json!({"kind": kind, "name": name, "content": content.to_string(), "deps": indices}));
    }
    Ok((nodes, Value::Array(notation)))
}

fn fingerprint_map(nodes: &[Node]) -> Result<BTreeMap<String, Digest>, String> {
    let digests = graph::fingerprints(nodes).map_err(|err| err.to_string())?;
    Ok(nodes.iter().zip(digests).map(|(node, digest)| (node.name.clone(), digest)).collect())
}

fn graphs() -> Result<Value, String> {
    let project: GraphSpec = vec![
        ("function", "app:f", "def f(x): return g(x) + k(x)", vec!["app:g", "app:k"]),
        ("function", "app:g", "def g(x): return h(x) * SCALE", vec!["app:h", "app:SCALE"]),
        ("function", "app:h", "def h(x): return x + 1", vec![]),
        ("function", "app:k", "def k(x): return numpy.sum(x)", vec!["numpy"]),
        ("package", "numpy", "numpy==2.1.0", vec![]),
        ("constant", "app:SCALE", "3", vec![]),
        ("function", "app:m", "def m(x): return g(x)", vec!["app:g"]),
        ("function", "app:n", "def n(): return 0", vec![]),
        ("function", "app:p", "def p(x): return q(x - 1) if x else 0", vec!["app:q"]),
        ("function", "app:q", "def q(x): return p(x) + h(x)", vec!["app:p", "app:h"]),
        ("class", "app:Model", "class Model(Base): ...", vec!["app:Base", "app:Model.fit"]),
        ("class", "app:Base", "class Base: ...", vec![]),
        ("function", "app:Model.fit", "def fit(self): return Model.defaults()", vec!["app:Model"]),
    ];
    let cases: Vec<(&str, GraphSpec)> = vec![
        ("single node", vec![("function", "a", "def a(): return 1", vec![])]),
        (
            "chain",
            vec![("function", "a", "a", vec!["b"]), ("function", "b", "b", vec!["c"]), ("function", "c", "c", vec![])],
        ),
        (
            "diamond",
            vec![
                ("function", "a", "a", vec!["b", "c"]),
                ("function", "b", "b", vec!["d"]),
                ("function", "c", "c", vec!["d"]),
                ("function", "d", "d", vec![]),
            ],
        ),
        ("self loop", vec![("function", "fact", "def fact(n): return n * fact(n - 1) if n else 1", vec!["fact"])]),
        (
            "two-node cycle",
            vec![
                ("function", "even", "even", vec!["odd"]),
                ("function", "odd", "odd", vec!["even"]),
                ("function", "main", "main", vec!["even"]),
            ],
        ),
        ("duplicate edges", vec![("function", "a", "a", vec!["b", "b"]), ("function", "b", "b", vec![])]),
        ("project", project.clone()),
    ];
    let mut fingerprint_cases = Vec::new();
    for (name, spec) in &cases {
        let (nodes, notation) = build(spec)?;
        let map = fingerprint_map(&nodes)?;
        // Reversing the input order must not change anything.
        let mut reversed = spec.clone();
        reversed.reverse();
        if fingerprint_map(&build(&reversed)?.0)? != map {
            return Err(format!("{name}: fingerprints depend on input order"));
        }
        fingerprint_cases.push(json!({
            "name": name,
            "nodes": notation,
            "fingerprints": map.iter().map(|(name, digest)| (name.clone(), json!(digest.to_string()))).collect::<serde_json::Map<_, _>>(),
        }));
    }

    // One-node edits: exactly the edited node and the nodes that reach it change.
    let edits: Vec<(&str, &str, Vec<&str>)> = vec![
        ("edit a leaf", "app:h", vec!["app:f", "app:g", "app:h", "app:m", "app:p", "app:q"]),
        ("edit a constant", "app:SCALE", vec!["app:SCALE", "app:f", "app:g", "app:m"]),
        ("edit a package version", "numpy", vec!["app:f", "app:k", "numpy"]),
        ("edit inside a cycle", "app:p", vec!["app:p", "app:q"]),
        ("edit a base class", "app:Base", vec!["app:Base", "app:Model", "app:Model.fit"]),
        ("edit an unreached function", "app:n", vec!["app:n"]),
    ];
    let (before_nodes, before_notation) = build(&project)?;
    let before = fingerprint_map(&before_nodes)?;
    let mut edit_cases = Vec::new();
    let mut diff_cases = Vec::new();
    for (name, edited, expected) in edits {
        let source =
            format!("{} # edited", project.iter().find(|node| node.1 == edited).expect("edited node exists").2);
        let after_spec: GraphSpec = project
            .iter()
            .map(|(kind, node, text, deps)| {
                (*kind, *node, if *node == edited { source.as_str() } else { *text }, deps.clone())
            })
            .collect();
        let (after_nodes, after_notation) = build(&after_spec)?;
        let after = fingerprint_map(&after_nodes)?;
        let changed: Vec<&str> =
            before.keys().filter(|node| before[*node] != after[*node]).map(String::as_str).collect();
        if changed != expected {
            return Err(format!("{name}: changed {changed:?}, expected {expected:?}"));
        }
        edit_cases.push(json!({"name": name, "before": before_notation, "after": after_notation, "changed": changed}));
        let changes = graph::diff(&before_nodes, &after_nodes, "app:f").map_err(|err| err.to_string())?;
        diff_cases.push(json!({
            "name": format!("why app:f missed after: {name}"),
            "old": before_notation,
            "new": after_notation,
            "root": "app:f",
            "changes": changes.iter().map(|change| json!({"name": change.name, "change": change.change.as_str()})).collect::<Vec<_>>(),
        }));
    }
    // A dependency swapped for another and a kind change.
    let swapped: GraphSpec = vec![
        ("function", "app:f", "def f(x): return g2(x)", vec!["app:g2"]),
        ("function", "app:g2", "def g2(x): return x", vec![]),
        ("function", "app:g", "def g(x): return h(x) * SCALE", vec![]),
    ];
    let old_small: GraphSpec = vec![
        ("function", "app:f", "def f(x): return g(x)", vec!["app:g"]),
        ("function", "app:g", "def g(x): return h(x) * SCALE", vec![]),
        ("constant", "app:g2", "4", vec![]),
    ];
    let (old_nodes, old_notation) = build(&old_small)?;
    let (new_nodes, new_notation) = build(&swapped)?;
    let changes = graph::diff(&old_nodes, &new_nodes, "app:f").map_err(|err| err.to_string())?;
    diff_cases.push(json!({
        "name": "dependency swapped",
        "old": old_notation,
        "new": new_notation,
        "root": "app:f",
        "changes": changes.iter().map(|change| json!({"name": change.name, "change": change.change.as_str()})).collect::<Vec<_>>(),
    }));

    let content = value_digest(&json!("x"))?.to_string();
    let errors = vec![
        json!({"name": "repeated name", "nodes": [{"kind": "function", "name": "a", "content": content, "deps": []}, {"kind": "class", "name": "a", "content": content, "deps": []}], "code": "invalid_graph"}),
        json!({"name": "dangling edge", "nodes": [{"kind": "function", "name": "a", "content": content, "deps": [1]}], "code": "invalid_graph"}),
    ];
    Ok(json!({
        "about": HEADER,
        "spec": "docs/spec/keys.md",
        "scheme": "code2",
        "fingerprints": fingerprint_cases,
        "edits": edit_cases,
        "diffs": diff_cases,
        "errors": errors,
    }))
}

fn policies() -> Value {
    const DAY: u64 = 86_400;
    let now = 1_800_000_000;
    let entry = |size: u64, compute_micros: u64, age: u64, hits: u64| Entry {
        size,
        compute_micros,
        last_access: now - age,
        hits,
    };
    let evictions: Vec<(&str, Vec<Entry>, u64)> = vec![
        ("under budget evicts nothing", vec![entry(100, 10, 0, 0), entry(200, 10, 0, 0)], 1000),
        (
            "expensive small entry is kept over a cheap large one",
            vec![entry(4_000, 60_000_000, DAY, 0), entry(50_000_000, 2_000, 0, 5)],
            10_000_000,
        ),
        (
            "older of two equal entries goes first",
            vec![entry(1_000_000, 1_000_000, 0, 1), entry(1_000_000, 1_000_000, 30 * DAY, 1)],
            1_500_000,
        ),
        (
            "entry with more hits is kept",
            vec![entry(1_000_000, 1_000_000, DAY, 20), entry(1_000_000, 1_000_000, DAY, 0)],
            1_500_000,
        ),
        (
            "several go until the rest fits",
            vec![entry(300, 10, 0, 0), entry(300, 20, 0, 0), entry(300, 30, 0, 0), entry(300, 1_000_000_000, 0, 0)],
            650,
        ),
        ("zero budget evicts everything", vec![entry(1, 1, 0, 0), entry(2, 2, 0, 0)], 0),
        ("empty store", vec![], 0),
    ];
    let evict_cases: Vec<Value> = evictions
        .into_iter()
        .map(|(name, entries, budget)| {
            let params = EvictionParams { budget, now, half_life: 7 * DAY };
            let evicted = policy::evict(&entries, &params);
            json!({
                "name": name,
                "entries": entries.iter().map(|e| json!({"size": e.size, "compute_micros": e.compute_micros, "last_access": e.last_access, "hits": e.hits})).collect::<Vec<_>>(),
                "params": {"budget": params.budget, "now": params.now, "half_life": params.half_life},
                "evict": evicted,
            })
        })
        .collect();
    let store_params = StoreParams { budget: 10 << 30, min_compute_micros: 0, read_bytes_per_second: 1 << 30 };
    let stores: Vec<(&str, u64, u64, StoreParams)> = vec![
        ("small fast result is stored", 100, 5, store_params),
        ("large result slower to compute than to read is stored", 100 << 20, 1_000_000, store_params),
        ("large result faster to compute than to read is not", 512 << 20, 1_000, store_params),
        ("result larger than the budget is not", 11 << 30, 3_600_000_000, store_params),
        (
            "result under the minimum compute time is not",
            100,
            5,
            StoreParams { min_compute_micros: 1_000, ..store_params },
        ),
        (
            "read estimate disabled stores large results",
            512 << 20,
            1_000,
            StoreParams { read_bytes_per_second: 0, ..store_params },
        ),
    ];
    let store_cases: Vec<Value> = stores
        .into_iter()
        .map(|(name, size, compute_micros, params)| {
            json!({
                "name": name, "size": size, "compute_micros": compute_micros,
                "params": {"budget": params.budget, "min_compute_micros": params.min_compute_micros, "read_bytes_per_second": params.read_bytes_per_second},
                "store": policy::store_decision(size, compute_micros, &params).is_none(),
                "decline": policy::store_decision(size, compute_micros, &params).map(policy::Decline::name),
            })
        })
        .collect();
    let stats = FunctionStats {
        calls: 10,
        remote_hits: 6,
        misses: 2,
        remote_entries: 40,
        remote_bytes: 1 << 20,
        free_bytes: 1 << 30,
    };
    let prefetches: Vec<(&str, FunctionStats)> = vec![
        ("frequent remote hits prefetch", stats),
        ("too few remote hits", FunctionStats { remote_hits: 2, misses: 0, ..stats }),
        ("more misses than remote hits", FunctionStats { misses: 7, ..stats }),
        (
            "bulk does not fit half the free room",
            FunctionStats { remote_bytes: 600 << 20, free_bytes: 1 << 30, ..stats },
        ),
        ("nothing remote", FunctionStats { remote_entries: 0, remote_bytes: 0, ..stats }),
    ];
    let prefetch_cases: Vec<Value> = prefetches
        .into_iter()
        .map(|(name, s)| {
            json!({
                "name": name,
                "stats": {"calls": s.calls, "remote_hits": s.remote_hits, "misses": s.misses, "remote_entries": s.remote_entries, "remote_bytes": s.remote_bytes, "free_bytes": s.free_bytes},
                "prefetch": policy::should_prefetch(&s),
            })
        })
        .collect();
    json!({"about": HEADER, "spec": "docs/spec/policy.md", "evict": evict_cases, "should_store": store_cases, "should_prefetch": prefetch_cases})
}

#[cfg(test)]
mod tests {}
