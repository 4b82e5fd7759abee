//! The cloud suite: batch lookups per second, and a 256 MiB result's upload
//! and download against a plain HTTP transfer of the same bytes, all on
//! loopback with the embedded server in this process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::put;
use futures_util::StreamExt;
use hitsave_host::cloud::{CloudClient, RemoteEval};
use tokio::io::AsyncWriteExt;

use crate::{Row, fmt_duration, median, verdict};

pub(crate) fn fake(kind: &str, seed: &str) -> String {
    format!("{kind}1_{}", blake3::hash(seed.as_bytes()).to_hex())
}

/// A plain HTTP peer: PUT streams the body to a file, GET serves it.
fn plain_router(dir: std::path::PathBuf) -> axum::Router {
    let put_dir = dir.clone();
    axum::Router::new().route(
        "/plain",
        put(move |body: Body| {
            let path = put_dir.join("plain.bin");
            async move {
                let mut file = tokio::fs::File::create(&path).await.unwrap();
                let mut stream = body.into_data_stream();
                while let Some(chunk) = stream.next().await {
                    file.write_all(&chunk.unwrap()).await.unwrap();
                }
                file.sync_all().await.unwrap();
                "ok"
            }
        })
        .get(move || {
            let path = dir.join("plain.bin");
            async move {
                let file = tokio::fs::File::open(path).await.unwrap();
                Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20))
            }
        }),
    )
}

/// `n` small evals with their result bytes.
pub(crate) fn small_evals(n: usize) -> Vec<(RemoteEval, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let data = format!("result {i}").into_bytes();
            let eval = RemoteEval {
                key: fake("key", &i.to_string()),
                function_id: "f@1".into(),
                function_name: "f".into(),
                language: "python".into(),
                arguments: fake("val", &i.to_string()),
                codec: "portable".into(),
                blob: hitsave_host::hash::blob_digest(&data).to_string(),
                size: data.len() as u64,
                compute_micros: 1000,
                signature: None,
                graph: None,
                created: 0,
            };
            (eval, data)
        })
        .collect()
}

/// Lookups for 3 s from two threads, `batch` keys per request: keys per
/// second, and the 99th percentile of one request's latency.
pub(crate) fn lookup_rate(client: &Arc<CloudClient>, keys: &Arc<Vec<String>>, batch: usize) -> (f64, Duration) {
    let window = Duration::from_secs(3);
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (client, keys) = (client.clone(), keys.clone());
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut offset = t * 37;
                while start.elapsed() < window {
                    let slice: Vec<String> = (0..batch).map(|i| keys[(offset + i) % keys.len()].clone()).collect();
                    offset += batch;
                    let asked = Instant::now();
                    let found = client.lookup(&slice).unwrap();
                    latencies.push(asked.elapsed());
                    assert_eq!(found.len(), batch);
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let rate = (latencies.len() * batch) as f64 / start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    (rate, latencies[latencies.len() * 99 / 100])
}

/// `size` bytes that do not compress (xorshift).
pub(crate) fn random_bytes(size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    data
}

/// A 256 MiB-class result's record, by round.
pub(crate) fn big_eval(round: usize, bytes: &[u8]) -> RemoteEval {
    RemoteEval {
        key: fake("key", &format!("big{round}")),
        function_id: "f@1".into(),
        function_name: "big".into(),
        language: "python".into(),
        arguments: fake("val", &format!("big{round}")),
        codec: "portable".into(),
        blob: hitsave_host::hash::blob_digest(bytes).to_string(),
        size: bytes.len() as u64,
        compute_micros: 1,
        signature: None,
        graph: None,
        created: 0,
    }
}

pub fn cloud_suite() -> Vec<Row> {
    let base = std::env::temp_dir().join(format!("hitsave-bench-cloud-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("plain")).unwrap();
    let (metadata, blobs) = hitsave_server::open_embedded(&base.join("server")).unwrap();
    let (_, key) = hitsave_server::create_project(metadata.as_ref(), "bench").unwrap();
    let state =
        hitsave_server::AppState { metadata, blobs, limits: hitsave_server::Limits::default(), admin_token: None };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (url, plain_url) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(hitsave_server::serve(listener, state, std::future::pending()));
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_url = format!("http://{}/plain", plain.local_addr().unwrap());
        let router = plain_router(base.join("plain"));
        tokio::spawn(async move { axum::serve(plain, router).await });
        (url, plain_url)
    });
    let client = Arc::new(CloudClient::new(&url, &key, None).unwrap());
    let mut rows = Vec::new();

    // 1000 small evals, then lookups from two threads: batches of 100 keys, and one key per request.
    let evals = small_evals(1000);
    let items: Vec<(RemoteEval, bytes::Bytes)> = evals.iter().map(|(e, d)| (e.clone(), d.clone().into())).collect();
    client.upload(&items).unwrap();
    let keys: Arc<Vec<String>> = Arc::new(evals.iter().map(|(e, _)| e.key.clone()).collect());
    let rate = |batch: usize| lookup_rate(&client, &keys, batch).0;
    let _ = rate(1); // warm
    let single = rate(1);
    let batched = rate(100);
    rows.push(Row {
        what: "Eval lookups per second on loopback, 2 client threads".into(),
        peer: "one key per request / 100 keys per request".into(),
        ours: format!("{single:.0}/s single; {batched:.0}/s batched"),
        theirs: "—".into(),
        target: "≥ 5,000/s".into(),
        verdict: verdict(batched >= 5000.0),
    });

    // The same single-key lookups while another client stores results (one
    // eval and its blob per request, as the uploader sends a fresh result).
    let storing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (client, storing) = (client.clone(), storing.clone());
        std::thread::spawn(move || {
            let mut stored = 0usize;
            while storing.load(std::sync::atomic::Ordering::Relaxed) {
                let data = format!("written while others read {stored}").into_bytes();
                let mut eval = small_evals(1).pop().unwrap().0;
                eval.key = fake("key", &format!("w{stored}"));
                eval.blob = hitsave_host::hash::blob_digest(&data).to_string();
                eval.size = data.len() as u64;
                client.upload(&[(eval, data.into())]).unwrap();
                stored += 1;
            }
            stored
        })
    };
    let (while_storing, p99_storing) = lookup_rate(&client, &keys, 1);
    storing.store(false, std::sync::atomic::Ordering::Relaxed);
    let stored = writer.join().unwrap();
    let (alone, p99_alone) = lookup_rate(&client, &keys, 1);
    let ratio = while_storing / alone;
    rows.push(Row {
        what: format!("Single-key lookups per second while a third client stores results ({stored} stored meanwhile)"),
        peer: "the same lookups alone".into(),
        ours: format!("{while_storing:.0}/s, p99 {}", fmt_duration(p99_storing)),
        theirs: format!("{alone:.0}/s, p99 {}", fmt_duration(p99_alone)),
        target: format!("≥ 50 % (got {:.0} %)", ratio * 100.0),
        verdict: verdict(ratio >= 0.5),
    });

    // A 256 MiB result: upload (hash + existence check + PUT + record) and download (GET + verify).
    let data = random_bytes(256 << 20);
    hitsave_server::install_crypto_provider();
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
    let mut ours_up = Vec::new();
    let mut plain_up = Vec::new();
    let mut ours_down = Vec::new();
    let mut plain_down = Vec::new();
    for round in 0..3 {
        // Each round a new blob (the server dedups by content).
        let mut bytes = data.clone();
        bytes[0] = round as u8;
        bytes[1] = 0xAB;
        // Shared, as a stored result is (its mapping): the upload copies nothing.
        let shared = bytes::Bytes::from(bytes.clone());
        let start = Instant::now();
        let eval = big_eval(round, &bytes);
        client.upload(&[(eval.clone(), shared)]).unwrap();
        ours_up.push(start.elapsed());

        let start = Instant::now();
        let answer = http.put(&plain_url).body(bytes.clone()).send().unwrap();
        assert!(answer.status().is_success());
        plain_up.push(start.elapsed());

        let start = Instant::now();
        let back = client.download(&eval).unwrap();
        ours_down.push(start.elapsed());
        assert_eq!(back.len(), bytes.len());
        drop(back);

        let start = Instant::now();
        let plain = http.get(&plain_url).send().unwrap().bytes().unwrap();
        plain_down.push(start.elapsed());
        assert_eq!(plain.len(), bytes.len());
    }
    let mb = |d: Duration| (256.0 / d.as_secs_f64()) as u64;
    let (up, plain_up) = (median(ours_up), median(plain_up));
    let (down, plain_down) = (median(ours_down), median(plain_down));
    let up_ratio = plain_up.as_secs_f64() / up.as_secs_f64();
    let down_ratio = plain_down.as_secs_f64() / down.as_secs_f64();
    rows.push(Row {
        what: "Upload a 256 MiB result (hash, existence check, PUT verified by the server, record)".into(),
        peer: "plain HTTP PUT of the same bytes to a file (fsync), same server runtime".into(),
        ours: format!("{} ({} MiB/s)", fmt_duration(up), mb(up)),
        theirs: format!("{} ({} MiB/s)", fmt_duration(plain_up), mb(plain_up)),
        target: format!("≥ 70 % (got {:.0} %)", up_ratio * 100.0),
        verdict: verdict(up_ratio >= 0.7),
    });
    rows.push(Row {
        what: "Download a 256 MiB result (GET, verify BLAKE3)".into(),
        peer: "plain HTTP GET of the same bytes from a file".into(),
        ours: format!("{} ({} MiB/s)", fmt_duration(down), mb(down)),
        theirs: format!("{} ({} MiB/s)", fmt_duration(plain_down), mb(plain_down)),
        target: format!("≥ 70 % (got {:.0} %)", down_ratio * 100.0),
        verdict: verdict(down_ratio >= 0.7),
    });
    runtime.shutdown_background();
    let _ = std::fs::remove_dir_all(&base);
    rows
}
