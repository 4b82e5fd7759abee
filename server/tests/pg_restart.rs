//! The server survives its PostgreSQL: a restart, and a database that is down
//! for a while, cost at most the requests made while it was down (answered
//! `503 storage_unavailable`, never a hang or a `500`), and the server serves
//! again as soon as the database is back, with no restart of its own.
//!
//! Needs a real cluster it may stop: `HITSAVE_TEST_DATABASE_URL` and
//! `HITSAVE_TEST_PGROOT` (scripts/test.sh sets both after
//! scripts/postgres-up.sh). It runs alone, since it stops the database.

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

#[test]
fn the_server_survives_a_database_restart_and_an_outage() {
    let (Ok(url), Ok(root)) = (std::env::var("HITSAVE_TEST_DATABASE_URL"), std::env::var("HITSAVE_TEST_PGROOT")) else {
        eprintln!("skipped: HITSAVE_TEST_DATABASE_URL and HITSAVE_TEST_PGROOT are not set (scripts/test.sh sets them)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (metadata, blobs) =
        hitsave_server::open_storage(dir.path(), Some(&url), Some("t_restart"), None).expect("storage on PostgreSQL");
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
