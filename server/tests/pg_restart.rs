//! The server survives its PostgreSQL: a restart, and a database that is down
//! for a while, cost at most the requests made while it was down (answered
//! `503 storage_unavailable`, never a hang or a `500`), and the server serves
//! again as soon as the database is back, with no restart of its own.
//!
//! Needs a real cluster it may stop: `HITSAVE_TEST_DATABASE_URL` and
//! `HITSAVE_TEST_PGROOT` (scripts/test.sh sets both after
//! scripts/postgres-up.sh). It runs alone, since it stops the database.
//!
//! And the same for its object store: the RADOS Gateway of
//! scripts/ceph-up.sh (`HITSAVE_TEST_CROOT` and the S3 settings) is stopped
//! and started again.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-tests";

fn ctl(root: &str, action: &str) {
    let status = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres-ctl.sh"))
        .args([root, action])
        .status()
        .unwrap();
    assert!(status.success(), "postgres-ctl.sh {action} failed");
}

/// A server on `storage` in this process (default limits, the admin token):
/// its runtime and base URL.
fn serve((metadata, blobs): hitsave_server::Storage) -> (tokio::runtime::Runtime, String) {
    let state = hitsave_server::AppState {
        metadata,
        blobs,
        limits: hitsave_server::Limits::default(),
        admin_token: Some(Arc::from(ADMIN)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(hitsave_server::serve(listener, state, std::future::pending()));
    hitsave_server::install_crypto_provider();
    (runtime, base)
}

#[test]
fn the_server_survives_a_database_restart_and_an_outage() {
    let (Ok(url), Ok(root)) = (std::env::var("HITSAVE_TEST_DATABASE_URL"), std::env::var("HITSAVE_TEST_PGROOT")) else {
        eprintln!("skipped: HITSAVE_TEST_DATABASE_URL and HITSAVE_TEST_PGROOT are not set (scripts/test.sh sets them)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let storage =
        hitsave_server::open_storage(dir.path(), Some(&url), Some("t_restart"), None).expect("storage on PostgreSQL");
    let (runtime, base) = serve(storage);
    // Longer than the server's own bound on waiting for the database: a
    // request that times out here hung.
    let http = Client::builder().timeout(Duration::from_secs(40)).build().unwrap();
    let name = format!("restart-{}", std::process::id());
    let created: Value = http
        .post(format!("{base}/v1/projects"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": name }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key = created["key"].as_str().expect("a key").to_string();
    let whoami = || http.get(format!("{base}/v1/whoami")).bearer_auth(&key).send().expect("an answer, not a hang");
    assert_eq!(whoami().status(), StatusCode::OK);

    // A restart: every pooled connection is now closed. The pool checks a
    // connection before handing it out, so the next request already works.
    ctl(&root, "restart");
    for attempt in 0..4 {
        let response = whoami();
        assert_eq!(response.status(), StatusCode::OK, "request {attempt} after the restart");
    }
    let made = http
        .post(format!("{base}/v1/keys"))
        .bearer_auth(&key)
        .json(&json!({ "scope": "read", "name": "after" }))
        .send()
        .unwrap();
    assert!(made.status().is_success(), "a write after the restart: {}", made.status());

    // An outage: requests are answered 503 within the server's bound, not 500, not a hang.
    ctl(&root, "stop");
    for _ in 0..3 {
        let started = Instant::now();
        let response = whoami();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    let health = http.get(format!("{base}/v1/health")).send().expect("an answer, not a hang");
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE, "health while the database is down");
    ctl(&root, "start");
    assert_eq!(http.get(format!("{base}/v1/health")).send().unwrap().status(), StatusCode::OK);
    for attempt in 0..4 {
        assert_eq!(whoami().status(), StatusCode::OK, "request {attempt} after the database came back");
    }
    let keys: Value = http.get(format!("{base}/v1/keys")).bearer_auth(&key).send().unwrap().json().unwrap();
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(2), "{keys}");
    runtime.shutdown_background();
}

#[test]
fn the_server_survives_an_object_store_outage() {
    let Ok(croot) = std::env::var("HITSAVE_TEST_CROOT") else {
        eprintln!("skipped: HITSAVE_TEST_CROOT and the S3 settings are not set (scripts/test.sh sets them)");
        return;
    };
    let Some(s3) = hitsave_server::s3_from_env() else {
        panic!("HITSAVE_TEST_CROOT without HITSAVE_SERVER_S3_ENDPOINT")
    };
    let rgw = |action: &str| {
        let status = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/ceph-ctl.sh"))
            .args([croot.as_str(), action])
            .status()
            .unwrap();
        assert!(status.success(), "ceph-ctl.sh {action} failed");
    };
    let dir = tempfile::tempdir().unwrap();
    let s3 = hitsave_server::s3::S3Config { prefix: format!("outage-{}", std::process::id()), ..s3 };
    let storage = hitsave_server::open_storage(dir.path(), None, None, Some(s3)).expect("storage");
    let (runtime, base) = serve(storage);
    let http = Client::builder().timeout(Duration::from_secs(40)).build().unwrap();
    let created: Value = http
        .post(format!("{base}/v1/projects"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "outage" }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let key = created["key"].as_str().expect("a key").to_string();
    let put = |data: &[u8]| {
        let digest = format!("blob1_{}", blake3::hash(data).to_hex());
        let response = http.put(format!("{base}/v1/blobs/{digest}")).bearer_auth(&key).body(data.to_vec()).send();
        (digest, response.expect("an answer, not a hang"))
    };
    let get = |digest: &str| http.get(format!("{base}/v1/blobs/{digest}")).bearer_auth(&key).send().expect("an answer");
    let (kept, response) = put(b"stored before the outage");
    assert_eq!(response.status(), StatusCode::CREATED);

    rgw("stop-rgw");
    // Started again however the test ends (other tests of the run use it).
    struct Restart<F: Fn(&str)>(F);
    impl<F: Fn(&str)> Drop for Restart<F> {
        fn drop(&mut self) {
            (self.0)("start-rgw");
        }
    }
    let restart = Restart(rgw);
    let started = Instant::now();
    let response = get(&kept);
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.json::<Value>().unwrap()["error"]["code"], "storage_unavailable");
    assert!(started.elapsed() < Duration::from_secs(30), "answered within the retry bound");
    let (_, response) = put(b"stored during the outage");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health = http.get(format!("{base}/v1/health")).send().unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE, "readiness while the store is down");
    let health = health.text().unwrap();
    assert!(health.contains("object store"), "the answer says which storage: {health}");
    let live = http.get(format!("{base}/v1/health/live")).send().unwrap();
    assert_eq!(live.status(), StatusCode::OK, "liveness does not depend on storage");
    // Metadata-only requests keep working.
    assert_eq!(http.get(format!("{base}/v1/whoami")).bearer_auth(&key).send().unwrap().status(), StatusCode::OK);

    drop(restart);
    assert_eq!(http.get(format!("{base}/v1/health")).send().unwrap().status(), StatusCode::OK);
    let body = get(&kept);
    assert_eq!(body.status(), StatusCode::OK);
    assert_eq!(body.bytes().unwrap().as_ref(), b"stored before the outage");
    let (again, response) = put(b"stored during the outage");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(get(&again).bytes().unwrap().as_ref(), b"stored during the outage");
    runtime.shutdown_background();
}
