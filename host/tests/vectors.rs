//! Every shared vector through the embedded component *and* the native core:
//! both must give the answer the vector file pins.

use std::path::PathBuf;
use std::sync::OnceLock;

use hitsave_core::graph::{self, Node, NodeKind};
use hitsave_core::keys::{self, FunctionIdentity};
use hitsave_core::notation::{self, Buffers};
use hitsave_core::policy::{self, Entry, EvictionParams, FunctionStats, StoreParams};
use hitsave_core::{Digest, canonical};
use hitsave_host::{Core, HitSaveError, LoadOptions};
use serde_json::Value;

fn core() -> &'static Core {
    static CORE: OnceLock<Core> = OnceLock::new();
    CORE.get_or_init(|| Core::load(&LoadOptions::default()).expect("the embedded component loads"))
}

fn vectors(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("vector file exists")).expect("vector file is JSON")
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_else(|| panic!("{field} is a string in {value}"))
}

fn u64_of(value: &Value, field: &str) -> u64 {
    value[field].as_u64().unwrap_or_else(|| panic!("{field} is an integer in {value}"))
}

#[test]
fn value_vectors_match_in_component_and_native() {
    let file = vectors("values.json");
    let cases = file["cases"].as_array().expect("cases");
    assert!(cases.len() > 50, "the value vectors cover many cases");
    for case in cases {
        let name = text(case, "name");
        let stream = hex::decode(text(case, "stream")).expect("hex");
        assert_eq!(
            hex::encode(notation::to_stream(&case["value"], Buffers::Inline).expect("notation")),
            text(case, "stream"),
            "{name}: notation writes the pinned stream"
        );
        let (component_bytes, component_digest) = core().encode(&stream).expect(name);
        let native = canonical::encode(&stream).expect(name);
        assert_eq!(hex::encode(&component_bytes), text(case, "canonical"), "{name}: component canonical bytes");
        assert_eq!(hex::encode(&native.canonical), text(case, "canonical"), "{name}: native canonical bytes");
        assert_eq!(component_digest.to_string(), text(case, "digest"), "{name}: component digest");
        assert_eq!(native.digest.to_string(), text(case, "digest"), "{name}: native digest");
        // Buffers hashed by the host give the same digest as inline ones.
        let hashed = notation::to_stream(&case["value"], Buffers::Digest).expect("notation");
        assert_eq!(core().value_digest(&hashed).expect(name).to_string(), text(case, "digest"), "{name}: host-hashed");
    }
    for pair in file["equal"].as_array().expect("equal") {
        let find =
            |name: &str| cases.iter().find(|case| case["name"] == name).map(|case| text(case, "digest").to_owned());
        let (a, b) = (pair[0].as_str().expect("name"), pair[1].as_str().expect("name"));
        assert_eq!(find(a), find(b), "{a} equals {b}");
    }
}

#[test]
fn value_error_vectors_match_in_component_and_native() {
    let file = vectors("values.json");
    for case in file["errors"].as_array().expect("errors") {
        let name = text(case, "name");
        let stream = hex::decode(text(case, "stream")).expect("hex");
        let native = canonical::encode(&stream).expect_err(name);
        let component = core().encode(&stream).expect_err(name);
        assert_eq!(native.code.as_str(), text(case, "code"), "{name}: native code");
        assert_eq!(component.code(), text(case, "code"), "{name}: component code");
        assert_eq!(native.path.as_deref(), case["path"].as_str(), "{name}: native path");
        assert_eq!(component.path(), case["path"].as_str(), "{name}: component path");
        assert!(matches!(component, HitSaveError::Core(_)), "{name}: a domain error, not a trap");
    }
}

fn identity_from(value: &Value) -> FunctionIdentity {
    match value.get("fingerprint") {
        Some(digest) => FunctionIdentity::Fingerprint(Digest::parse(digest.as_str().expect("text")).expect("digest")),
        None => FunctionIdentity::Explicit {
            name: text(value, "name").to_owned(),
            version: text(value, "version").to_owned(),
        },
    }
}

#[test]
fn key_vectors_match_in_component_and_native() {
    let file = vectors("keys.json");
    for case in file["cases"].as_array().expect("cases") {
        let name = text(case, "name");
        let stream = notation::to_stream(&case["arguments"], Buffers::Inline).expect("notation");
        let arguments = core().value_digest(&stream).expect(name);
        assert_eq!(arguments.to_string(), text(case, "arguments_digest"), "{name}");
        let identity = identity_from(&case["identity"]);
        assert_eq!(core().derive_key(&identity, &arguments).expect(name).to_string(), text(case, "key"), "{name}");
        assert_eq!(keys::derive_key(&identity, &arguments).expect(name).to_string(), text(case, "key"), "{name}");
    }
    for case in file["errors"].as_array().expect("errors") {
        let name = text(case, "name");
        let arguments = Digest::parse(text(case, "arguments_digest")).expect("digest");
        let identity = identity_from(&case["identity"]);
        assert_eq!(core().derive_key(&identity, &arguments).expect_err(name).code(), text(case, "code"), "{name}");
        assert_eq!(
            keys::derive_key(&identity, &arguments).expect_err(name).code.as_str(),
            text(case, "code"),
            "{name}"
        );
    }
}

fn nodes_from(value: &Value) -> Vec<Node> {
    value
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| Node {
            kind: NodeKind::ALL.into_iter().find(|kind| kind.as_str() == text(node, "kind")).expect("kind"),
            name: text(node, "name").to_owned(),
            content: Digest::parse(text(node, "content")).expect("digest"),
            deps: node["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .map(|dep| dep.as_u64().expect("index") as u32)
                .collect(),
        })
        .collect()
}

#[test]
fn graph_vectors_match_in_component_and_native() {
    let file = vectors("graphs.json");
    for case in file["fingerprints"].as_array().expect("fingerprints") {
        let name = text(case, "name");
        let nodes = nodes_from(&case["nodes"]);
        let component = core().fingerprints(&nodes).expect(name);
        assert_eq!(component, graph::fingerprints(&nodes).expect(name), "{name}");
        for (node, digest) in nodes.iter().zip(&component) {
            assert_eq!(digest.to_string(), text(&case["fingerprints"], &node.name), "{name}: {}", node.name);
        }
    }
    for case in file["edits"].as_array().expect("edits") {
        let name = text(case, "name");
        let before = nodes_from(&case["before"]);
        let after = nodes_from(&case["after"]);
        let (old, new) = (core().fingerprints(&before).expect(name), core().fingerprints(&after).expect(name));
        let mut changed: Vec<&str> = before
            .iter()
            .zip(old.iter().zip(&new))
            .filter(|(_, (a, b))| a != b)
            .map(|(node, _)| node.name.as_str())
            .collect();
        changed.sort_unstable();
        let expected: Vec<&str> =
            case["changed"].as_array().expect("changed").iter().map(|n| n.as_str().expect("name")).collect();
        assert_eq!(changed, expected, "{name}: exactly the edited node and its dependents change");
    }
    for case in file["diffs"].as_array().expect("diffs") {
        let name = text(case, "name");
        let (old, new) = (nodes_from(&case["old"]), nodes_from(&case["new"]));
        let root = text(case, "root");
        let component = core().diff(&old, &new, root).expect(name);
        assert_eq!(component, graph::diff(&old, &new, root).expect(name), "{name}");
        let rendered: Vec<Value> = component
            .iter()
            .map(|change| serde_json::json!({"name": change.name, "change": change.change.as_str()}))
            .collect();
        assert_eq!(Value::Array(rendered), case["changes"], "{name}");
    }
    for case in file["errors"].as_array().expect("errors") {
        let name = text(case, "name");
        let nodes = nodes_from(&case["nodes"]);
        assert_eq!(core().fingerprints(&nodes).expect_err(name).code(), text(case, "code"), "{name}");
    }
}

#[test]
fn policy_vectors_match_in_component_and_native() {
    let file = vectors("policy.json");
    for case in file["evict"].as_array().expect("evict") {
        let name = text(case, "name");
        let entries: Vec<Entry> = case["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| Entry {
                size: u64_of(e, "size"),
                compute_micros: u64_of(e, "compute_micros"),
                last_access: u64_of(e, "last_access"),
                hits: u64_of(e, "hits"),
            })
            .collect();
        let p = &case["params"];
        let params =
            EvictionParams { budget: u64_of(p, "budget"), now: u64_of(p, "now"), half_life: u64_of(p, "half_life") };
        let expected: Vec<u32> =
            case["evict"].as_array().expect("evict").iter().map(|i| i.as_u64().expect("index") as u32).collect();
        assert_eq!(core().evict(&entries, &params).expect(name), expected, "{name}");
        assert_eq!(policy::evict(&entries, &params), expected, "{name}");
    }
    for case in file["should_store"].as_array().expect("should_store") {
        let name = text(case, "name");
        let p = &case["params"];
        let params = StoreParams {
            budget: u64_of(p, "budget"),
            min_compute_micros: u64_of(p, "min_compute_micros"),
            read_bytes_per_second: u64_of(p, "read_bytes_per_second"),
        };
        let (size, micros) = (u64_of(case, "size"), u64_of(case, "compute_micros"));
        let expected = case["decline"].as_str();
        assert_eq!(case["store"].as_bool().expect("bool"), expected.is_none(), "{name}");
        let decided = core().store_decision(size, micros, &params).expect(name);
        assert_eq!(decided.map(policy::Decline::name), expected, "{name}");
        assert_eq!(policy::store_decision(size, micros, &params).map(policy::Decline::name), expected, "{name}");
    }
    for case in file["should_prefetch"].as_array().expect("should_prefetch") {
        let name = text(case, "name");
        let s = &case["stats"];
        let stats = FunctionStats {
            calls: u64_of(s, "calls"),
            remote_hits: u64_of(s, "remote_hits"),
            misses: u64_of(s, "misses"),
            remote_entries: u64_of(s, "remote_entries"),
            remote_bytes: u64_of(s, "remote_bytes"),
            free_bytes: u64_of(s, "free_bytes"),
        };
        let expected = case["prefetch"].as_bool().expect("bool");
        assert_eq!(core().should_prefetch(&stats).expect(name), expected, "{name}");
        assert_eq!(policy::should_prefetch(&stats), expected, "{name}");
    }
}
