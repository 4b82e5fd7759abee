//! A property test against `server/openapi.json` (in the spirit of
//! schemathesis): random requests to every documented operation, with valid,
//! malformed and hostile parameters, bodies and credentials. Every answer
//! must be a status the document lists for that operation, every error a JSON
//! body with a documented code, and every success carry the properties its
//! schema requires. The server must never answer 5xx.

use std::sync::Arc;

use proptest::prelude::*;
use reqwest::blocking::Client;
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-properties";

struct Fixture {
    base: String,
    document: Value,
    write_key: String,
    read_key: String,
    blob: String,
    eval_key: String,
    http: Client,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (metadata, blobs) = hitsave_server::open_embedded(dir.path()).unwrap();
        let (_, write_key) = hitsave_server::create_project(metadata.as_ref(), "props").unwrap();
        let state = hitsave_server::AppState {
            metadata,
            blobs,
            limits: hitsave_server::Limits {
                max_blob_size: 1 << 20,
                max_json_body: 64 << 10,
                max_batch: 50,
                ..hitsave_server::Limits::default()
            },
            admin_token: Some(Arc::from(ADMIN)),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(hitsave_server::serve(listener, state, std::future::pending()));
        hitsave_server::install_crypto_provider();
        let http = Client::builder().timeout(std::time::Duration::from_secs(30)).build().unwrap();
        let document: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap(),
        )
        .unwrap();
        // Something to find: one blob and one eval.
        let data = b"a stored result".to_vec();
        let blob = format!("blob1_{}", blake3::hash(&data).to_hex());
        http.put(format!("{base}/v1/blobs/{blob}")).bearer_auth(&write_key).body(data.clone()).send().unwrap();
        let eval_key = format!("key1_{}", blake3::hash(b"k").to_hex());
        let eval = json!({ "key": eval_key, "function_id": "f@1", "function_name": "f", "language": "python",
            "arguments": format!("val1_{}", blake3::hash(b"a").to_hex()), "codec": "portable", "blob": blob,
            "size": data.len(), "compute_micros": 1 });
        http.post(format!("{base}/v1/evals")).bearer_auth(&write_key).json(&json!({ "evals": [eval] })).send().unwrap();
        let read_key: Value = http
            .post(format!("{base}/v1/keys"))
            .bearer_auth(&write_key)
            .json(&json!({ "scope": "read", "name": "props" }))
            .send()
            .unwrap()
            .json()
            .unwrap();
        Fixture {
            base,
            document,
            write_key,
            read_key: read_key["key"].as_str().unwrap().to_owned(),
            blob,
            eval_key,
            http,
            _runtime: runtime,
            _dir: dir,
        }
    })
}

/// A JSON value: sometimes well-formed for the API, often not.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9_]{0,70}".prop_map(Value::from),
        Just(Value::from(format!("blob1_{}", "ab".repeat(32)))),
        Just(Value::from(format!("key1_{}", "cd".repeat(32)))),
        Just(Value::from("read")),
        Just(Value::from("read-write")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("digests".to_owned()),
                    Just("keys".to_owned()),
                    Just("evals".to_owned()),
                    Just("scope".to_owned()),
                    Just("name".to_owned()),
                    Just("key".to_owned()),
                    Just("size".to_owned()),
                    "[a-z]{1,8}"
                ],
                inner,
                0..5
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

#[derive(Clone, Debug)]
enum Credential {
    None,
    Garbage(String),
    Read,
    Write,
    Admin,
}

fn credential() -> impl Strategy<Value = Credential> {
    prop_oneof![
        Just(Credential::None),
        "[ -~]{0,40}".prop_map(Credential::Garbage),
        Just(Credential::Read),
        Just(Credential::Write),
        Just(Credential::Admin),
    ]
}

#[derive(Clone, Debug)]
enum PathValue {
    Known,
    Valid,
    Garbage(String),
}

fn path_value() -> impl Strategy<Value = PathValue> {
    prop_oneof![
        Just(PathValue::Known),
        Just(PathValue::Valid),
        // Not `.` or `..`: a URL resolves those dot segments before sending
        // (`/v1/functions/../evals` is `/v1/evals`), so no request holds them.
        "[A-Za-z0-9_.~-]{1,30}"
            .prop_filter("a dot segment", |text| text != "." && text != "..")
            .prop_map(PathValue::Garbage)
    ]
}

fn operations(document: &Value) -> Vec<(String, String)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.push((path.clone(), method.clone()));
        }
    }
    operations.sort();
    operations
}

/// The schema a `$ref` names.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let mut node = document;
            for part in reference.trim_start_matches("#/").split('/') {
                node = &node[part];
            }
            node
        }
        None => schema,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_answer_is_documented(
        operation in any::<prop::sample::Index>(),
        parameter in path_value(),
        body in json_value(),
        raw_body in prop::option::of("[ -~]{0,60}"),
        credential in credential(),
        range in prop::option::of("[ -~]{0,20}"),
        after in prop::option::of("[a-z0-9_]{0,70}"),
        limit in prop::option::of(-5i64..2000),
    ) {
        let fixture = fixture();
        let operations = operations(&fixture.document);
        let (path, method) = &operations[operation.index(operations.len())];
        let spec = &fixture.document["paths"][path][method];
        let value = |name: &str| -> String {
            match (&parameter, name) {
                (PathValue::Known, "digest") => fixture.blob.clone(),
                (PathValue::Known, "name") => "f".into(),
                (PathValue::Known | PathValue::Valid, "id") => "0123456789abcdef".into(),
                (PathValue::Valid, "digest") => format!("blob1_{}", "ef".repeat(32)),
                (PathValue::Valid, "name") => "nothing-here".into(),
                (PathValue::Garbage(text), _) => text.clone(),
                _ => "x".into(),
            }
        };
        let mut url = format!("{}{}", fixture.base, path.replace("{digest}", &value("digest")).replace("{name}", &value("name")).replace("{id}", &value("id")));
        if path.ends_with("/evals") && method == "get" {
            let mut query = Vec::new();
            if let Some(after) = &after { query.push(format!("after={after}")); }
            if let Some(limit) = limit { query.push(format!("limit={limit}")); }
            if !query.is_empty() { url = format!("{url}?{}", query.join("&")); }
        }
        let mut request = fixture.http.request(method.to_uppercase().parse().unwrap(), &url);
        request = match &credential {
            Credential::None => request,
            Credential::Garbage(text) => request.header("authorization", text.as_str()),
            Credential::Read => request.bearer_auth(&fixture.read_key),
            Credential::Write => request.bearer_auth(&fixture.write_key),
            Credential::Admin => request.bearer_auth(ADMIN),
        };
        if let Some(range) = &range {
            request = request.header("range", range.as_str());
        }
        if method == "put" {
            request = request.body(raw_body.clone().unwrap_or_default());
        } else if method == "post" {
            request = match &raw_body {
                Some(raw) if raw.len() % 3 == 0 => request.header("content-type", "application/json").body(raw.clone()),
                _ => request.json(&body),
            };
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        prop_assert!(status < 500, "{method} {url} answered {status}: {text}");
        let documented: Vec<String> = spec["responses"].as_object().unwrap().keys().cloned().collect();
        // 405 for a wrong method and 404 for an unknown route come from the router's fallbacks.
        prop_assert!(documented.contains(&status.to_string()) || status == 404 && parameter_is_garbage(&parameter),
            "{method} {path} answered {status}, not in {documented:?}: {text}");
        if status >= 400 {
            let body: Value = serde_json::from_str(&text).map_err(|err| TestCaseError::fail(format!("{status} {text}: {err}")))?;
            let codes = &fixture.document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"];
            prop_assert!(codes.as_array().unwrap().contains(&body["error"]["code"]), "undocumented code in {text}");
            prop_assert!(body["error"]["message"].is_string());
        } else if let Some(schema) = spec["responses"][status.to_string()]["content"]["application/json"]["schema"].as_object() {
            let body: Value = serde_json::from_str(&text).map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
            let schema = Value::Object(schema.clone());
            let schema = resolve(&fixture.document, &schema);
            for required in schema["required"].as_array().into_iter().flatten() {
                prop_assert!(body.get(required.as_str().unwrap()).is_some(), "{method} {path}: {text} lacks {required}");
            }
        }
        let _ = &fixture.eval_key;
    }
}

fn parameter_is_garbage(parameter: &PathValue) -> bool {
    matches!(parameter, PathValue::Garbage(_))
}
