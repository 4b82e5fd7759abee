//! The scale-out suite (#15): lookups per second and p99 latency with two
//! server processes on PostgreSQL and an S3 object store (Ceph's RADOS
//! Gateway) behind HAProxy, against one server on the embedded storage, in
//! one run; and a 256 MiB result uploaded and downloaded through the object
//! store against a plain S3 PUT and GET of the same bytes to the same gateway.
//!
//! `bash bench/scaleout.sh` brings up the real servers on 127.0.0.1 and runs
//! it; by hand it needs `HITSAVE_BENCH_DATABASE_URL`, `HITSAVE_BENCH_HAPROXY`,
//! `HITSAVE_BENCH_SERVER` (the release `hitsave-server`) and the S3 settings
//! (`HITSAVE_SERVER_S3_ENDPOINT`, `HITSAVE_SERVER_S3_BUCKET`, `AWS_*`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hitsave_host::cloud::CloudClient;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use crate::cloud::{big_eval, lookup_rate, random_bytes, small_evals};
use crate::{Row, fmt_duration, median, verdict};

const ADMIN: &str = "bench-admin-token";

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run bash bench/scaleout.sh"))
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_healthy(base: &str) {
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/v1/health")).send().map(|r| r.status().is_success()).ok() != Some(true) {
        assert!(Instant::now() < deadline, "{base} never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `hitsave-server serve` on PostgreSQL and the object store.
fn server(data: &std::path::Path) -> (Process, String) {
    let port = free_port();
    let child = Command::new(var("HITSAVE_BENCH_SERVER"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .env("HITSAVE_SERVER_DATABASE_URL", var("HITSAVE_BENCH_DATABASE_URL"))
        .env("HITSAVE_SERVER_ADMIN_TOKEN", ADMIN)
        .env("HITSAVE_SERVER_LOG", "off")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base);
    (Process(child), base)
}

/// HAProxy with health checks and retries in front of `servers`.
fn balancer(dir: &std::path::Path, servers: &[&str]) -> (Process, String) {
    let port = free_port();
    let backends: String = servers
        .iter()
        .enumerate()
        .map(|(i, base)| format!("  server s{i} {} check\n", base.trim_start_matches("http://")))
        .collect();
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 512\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  \
             timeout server 60s\n  retries 3\n  option redispatch 1\n  option http-keep-alive\n\
             frontend hitsave\n  bind 127.0.0.1:{port}\n  default_backend servers\n\
             backend servers\n  balance roundrobin\n  option httpchk GET /v1/health\n{backends}"
        ),
    )
    .unwrap();
    let child = Command::new(var("HITSAVE_BENCH_HAPROXY"))
        .args(["-db", "-q", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base);
    (Process(child), base)
}

/// A project and its key, through the admin route.
fn project(base: &str, name: &str) -> String {
    let answer: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{base}/v1/projects"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "name": name }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    answer["key"].as_str().expect("a key").to_owned()
}

/// Keys per second and p99 of single-key lookups of 1000 stored evals.
fn lookups(client: &Arc<CloudClient>) -> (f64, Duration) {
    let evals = small_evals(1000);
    let items: Vec<_> = evals.iter().map(|(e, d)| (e.clone(), bytes::Bytes::from(d.clone()))).collect();
    client.upload(&items).unwrap();
    let keys = Arc::new(evals.iter().map(|(e, _)| e.key.clone()).collect::<Vec<_>>());
    let _ = lookup_rate(client, &keys, 1); // warm
    lookup_rate(client, &keys, 1)
}

pub fn scaleout_suite() -> Vec<Row> {
    hitsave_server::install_crypto_provider();
    let base_dir = std::env::temp_dir().join(format!("hitsave-bench-scaleout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base_dir);
    std::fs::create_dir_all(&base_dir).unwrap();
    let mut rows = Vec::new();

    // One server on the embedded storage, in this process.
    let (metadata, blobs) = hitsave_server::open_embedded(&base_dir.join("embedded")).unwrap();
    let (_, key) = hitsave_server::create_project(metadata.as_ref(), "bench").unwrap();
    let state =
        hitsave_server::AppState { metadata, blobs, limits: hitsave_server::Limits::default(), admin_token: None };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let embedded_url = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(hitsave_server::serve(listener, state, std::future::pending()));
        url
    });
    let embedded = Arc::new(CloudClient::new(&embedded_url, &key, None).unwrap());
    let (one_rate, one_p99) = lookups(&embedded);
    runtime.shutdown_background();

    // Two servers on PostgreSQL + the object store behind HAProxy.
    let (_a, a) = server(&base_dir.join("a"));
    let (_b, b) = server(&base_dir.join("b"));
    let (_lb, lb) = balancer(&base_dir, &[&a, &b]);
    let key = project(&lb, &format!("bench-{}", std::process::id()));
    let balanced = Arc::new(CloudClient::with_timeout(&lb, &key, None, Duration::from_secs(600)).unwrap());
    let (two_rate, two_p99) = lookups(&balanced);
    rows.push(Row {
        what: "Single-key eval lookups, 2 client threads: two servers on PostgreSQL + Ceph RGW behind HAProxy".into(),
        peer: "one server on the embedded storage (SQLite + directory)".into(),
        ours: format!("{two_rate:.0}/s, p99 {}", fmt_duration(two_p99)),
        theirs: format!("{one_rate:.0}/s, p99 {}", fmt_duration(one_p99)),
        target: "—".into(),
        verdict: "—".into(),
    });

    // 256 MiB through one of the servers and the object store, against the
    // gateway itself (through HAProxy too: one more copy of every byte).
    let direct = Arc::new(CloudClient::with_timeout(&a, &key, None, Duration::from_secs(600)).unwrap());
    let store = AmazonS3Builder::from_env()
        .with_endpoint(var("HITSAVE_SERVER_S3_ENDPOINT"))
        .with_allow_http(true)
        .with_bucket_name(var("HITSAVE_SERVER_S3_BUCKET"))
        .with_region("us-east-1")
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap();
    let s3 = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let data = random_bytes(256 << 20);
    let (mut up, mut plain_up, mut down, mut plain_down) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut down_balanced = Vec::new();
    for round in 0..3 {
        let mut bytes = data.clone();
        bytes[0] = round as u8;
        bytes[1] = 0xCD;
        let eval = big_eval(round + 100, &bytes);
        // Shared, as a stored result is (its mapping): the upload copies nothing.
        let shared = bytes::Bytes::from(bytes.clone());
        let start = Instant::now();
        direct.upload(&[(eval.clone(), shared)]).unwrap();
        up.push(start.elapsed());

        let object = ObjectPath::from(format!("plain/{round}"));
        let payload = PutPayload::from(bytes::Bytes::from(bytes.clone()));
        let start = Instant::now();
        s3.block_on(store.put(&object, payload)).unwrap();
        plain_up.push(start.elapsed());

        let start = Instant::now();
        let back = direct.download(&eval).unwrap();
        down.push(start.elapsed());
        assert_eq!(back.len(), bytes.len());
        drop(back);

        let start = Instant::now();
        let back = balanced.download(&eval).unwrap();
        down_balanced.push(start.elapsed());
        assert_eq!(back.len(), bytes.len());
        drop(back);

        let start = Instant::now();
        let plain = s3.block_on(async { store.get(&object).await.unwrap().bytes().await.unwrap() });
        plain_down.push(start.elapsed());
        assert_eq!(plain.len(), bytes.len());
        let _ = s3.block_on(store.delete(&object));
    }
    let mb = |d: Duration| (256.0 / d.as_secs_f64()) as u64;
    let (up, plain_up, down, plain_down) = (median(up), median(plain_up), median(down), median(plain_down));
    let down_balanced = median(down_balanced);
    let (up_ratio, down_ratio) =
        (plain_up.as_secs_f64() / up.as_secs_f64(), plain_down.as_secs_f64() / down.as_secs_f64());
    rows.push(Row {
        what: "Upload a 256 MiB result to a server on PostgreSQL + Ceph RGW (hash, check, PUT, record)".into(),
        peer: "one plain S3 PUT of the same bytes to the same gateway".into(),
        ours: format!("{} ({} MiB/s)", fmt_duration(up), mb(up)),
        theirs: format!("{} ({} MiB/s)", fmt_duration(plain_up), mb(plain_up)),
        target: format!("≥ 70 % (got {:.0} %)", up_ratio * 100.0),
        verdict: verdict(up_ratio >= 0.7),
    });
    rows.push(Row {
        what: "Download it (GET through the server from the gateway, verify BLAKE3)".into(),
        peer: "one plain S3 GET of the same bytes from the same gateway".into(),
        ours: format!(
            "{} ({} MiB/s); through HAProxy {} ({} MiB/s)",
            fmt_duration(down),
            mb(down),
            fmt_duration(down_balanced),
            mb(down_balanced)
        ),
        theirs: format!("{} ({} MiB/s)", fmt_duration(plain_down), mb(plain_down)),
        target: format!("≥ 70 % (got {:.0} %)", down_ratio * 100.0),
        verdict: verdict(down_ratio >= 0.7),
    });
    let _ = std::fs::remove_dir_all(&base_dir);
    rows
}
