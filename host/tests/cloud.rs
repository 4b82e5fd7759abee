//! Two machines (two store directories) sharing results through a real
//! server on 127.0.0.1, through the store's cloud mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hitsave_core::Digest;
use hitsave_host::store::{NewEval, PutOutcome};
use hitsave_host::{Cache, Config, Core, Mode};

struct Server {
    url: String,
    data: tempfile::TempDir,
    metadata: Arc<dyn hitsave_server::storage::Metadata>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn serve_on(listener: std::net::TcpListener, data: tempfile::TempDir) -> Server {
    let (metadata, blobs) = hitsave_server::open_embedded(data.path()).unwrap();
    let state = hitsave_server::AppState {
        metadata: metadata.clone(),
        blobs,
        limits: hitsave_server::Limits::default(),
        admin_token: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let listener = runtime.block_on(async { tokio::net::TcpListener::from_std(listener) }).unwrap();
    runtime.spawn(hitsave_server::serve(listener, state, std::future::pending()));
    Server { url, data, metadata, runtime: Some(runtime) }
}

fn server() -> Server {
    serve_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), tempfile::tempdir().unwrap())
}

fn project(server: &Server, name: &str) -> String {
    hitsave_server::create_project(server.metadata.as_ref(), name).unwrap().1
}

fn machine(url: &str, key: &str, signing: Option<&str>) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_dir(dir.path());
    config.mode = Mode::Cloud;
    config.cloud_url = Some(url.to_owned());
    config.api_key = Some(key.to_owned());
    config.signing_key = signing.map(str::to_owned);
    config.upload_wait = Duration::from_secs(20);
    (dir, config)
}

/// A digest for a seed: an argument digest (`val`), or the key (`key`) of
/// the function `f@1` called with that seed's argument digest, as a real SDK
/// derives it (the client checks records' keys); anything else by its kind.
fn digest(kind: &str, seed: &str) -> Digest {
    let bytes = *blake3::hash(seed.as_bytes()).as_bytes();
    match kind {
        "val" => Digest::new(hitsave_core::DigestKind::Value, bytes),
        "key" => core()
            .derive_key(
                &hitsave_core::keys::FunctionIdentity::Explicit { name: "f".into(), version: "1".into() },
                &digest("val", seed),
            )
            .unwrap(),
        other => Digest::parse(&format!("{other}1_{}", blake3::hash(seed.as_bytes()).to_hex())).unwrap(),
    }
}

fn eval(seed: &str, function: &str, codec: &str) -> NewEval {
    NewEval {
        key: digest("key", seed),
        function_id: "f@1".into(),
        function_name: function.into(),
        language: "python".into(),
        arguments: digest("val", seed),
        codec: codec.into(),
        compute_micros: 50_000,
        graph: None,
    }
}

/// `data` as a portable result (a bytes value): what the client accepts from
/// the cloud under the portable codec.
fn portable(data: &[u8]) -> Vec<u8> {
    let mut out = hitsave_core::stream::StreamWriter::new();
    out.bytes(data);
    out.into_bytes()
}

fn core() -> &'static Core {
    Core::shared().unwrap()
}

#[test]
fn a_result_computed_on_one_machine_hits_on_another() {
    let server = server();
    let key = project(&server, "team");
    let (_a_dir, a_config) = machine(&server.url, &key, None);
    let (_b_dir, b_config) = machine(&server.url, &key, None);
    let a = Cache::open(&a_config).unwrap();
    let small = b"a small result".to_vec();
    let large: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    assert_eq!(a.put(core(), &eval("small", "f", "portable"), &portable(&small)).unwrap(), PutOutcome::Stored);
    assert_eq!(a.put(core(), &eval("large", "f", "portable"), &portable(&large)).unwrap(), PutOutcome::Stored);
    assert_eq!(a.drain_uploads().unwrap(), 0, "the outbox empties");

    let b = Cache::open(&b_config).unwrap();
    assert!(b.get_local(&digest("key", "small")).unwrap().is_none());
    let hit = b.get(&digest("key", "small")).unwrap().expect("read through the cloud");
    assert_eq!(hit.data.bytes(), &portable(&small)[..]);
    let hit = b.get(&digest("key", "large")).unwrap().unwrap();
    assert_eq!(hit.data.bytes(), &portable(&large)[..]);
    assert!(!hit.inline, "a large result arrives as the store's file, mapped, as a local hit is");
    assert!(b.get_local(&digest("key", "large")).unwrap().is_some(), "kept locally");
    assert_eq!(temp_files(&b_config), 0, "its download file became the stored blob");
    assert_eq!(b.outbox_len().unwrap(), 0, "a downloaded result is not uploaded back");
    assert!(b.get(&digest("key", "never")).unwrap().is_none());
}

#[test]
fn bulk_download_of_a_function() {
    let server = server();
    let key = project(&server, "bulk");
    let (_a_dir, a_config) = machine(&server.url, &key, None);
    let (_b_dir, b_config) = machine(&server.url, &key, None);
    let a = Cache::open(&a_config).unwrap();
    for i in 0..12 {
        a.put(core(), &eval(&format!("f{i}"), "train", "portable"), &portable(format!("result {i}").as_bytes()))
            .unwrap();
    }
    a.put(core(), &eval("other", "other", "portable"), &portable(b"x")).unwrap();
    a.drain_uploads().unwrap();
    let b = Cache::open(&b_config).unwrap();
    let mut calls = Vec::new();
    let fetched = b.cloud().unwrap().download_function(&b, "train", |done, total| calls.push((done, total))).unwrap();
    assert_eq!(fetched, 12);
    assert_eq!(calls.last(), Some(&(12, 12)));
    for i in 0..12 {
        assert!(b.get_local(&digest("key", &format!("f{i}"))).unwrap().is_some());
    }
    assert!(b.get_local(&digest("key", "other")).unwrap().is_none());
    assert_eq!(b.cloud().unwrap().download_function(&b, "train", |_, _| {}).unwrap(), 0, "nothing left to fetch");
}

#[test]
fn an_unreachable_server_costs_nothing_and_uploads_resume_at_the_next_start() {
    // A port with nothing listening (yet).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{address}");
    let (dir, mut config) = machine(&url, "hs_0000000000000000_none", None);
    config.upload_wait = Duration::from_millis(300);
    let store = Cache::open(&config).unwrap();
    let start = Instant::now();
    assert_eq!(
        store.put(core(), &eval("offline", "f", "portable"), &portable(b"computed offline")).unwrap(),
        PutOutcome::Stored
    );
    assert!(store.get(&digest("key", "elsewhere")).unwrap().is_none());
    assert!(store.get(&digest("key", "elsewhere-too")).unwrap().is_none());
    assert!(store.get(&digest("key", "offline")).unwrap().is_some(), "local hits still work");
    store.drain_uploads().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10), "no hang: {:?}", start.elapsed());
    assert_eq!(store.outbox_len().unwrap(), 1, "the upload waits in the outbox");
    drop(store);

    // The server comes up on that address; the next process start uploads what was queued.
    let server = serve_on(std::net::TcpListener::bind(address).unwrap(), tempfile::tempdir().unwrap());
    let key = project(&server, "late");
    config.api_key = Some(key.clone());
    config.upload_wait = Duration::from_secs(20);
    let store = Cache::open(&config).unwrap();
    assert_eq!(store.drain_uploads().unwrap(), 0);
    let client = hitsave_host::cloud::CloudClient::new(&server.url, &key, None).unwrap();
    assert_eq!(client.lookup(&[digest("key", "offline").to_string()]).unwrap().len(), 1);
    drop(dir);
}

#[test]
fn a_server_that_never_answers_costs_one_timeout_then_nothing_until_it_is_back() {
    // The project exists in the server's data before the server answers.
    let data = tempfile::tempdir().unwrap();
    let key = {
        let (metadata, _) = hitsave_server::open_embedded(data.path()).unwrap();
        hitsave_server::create_project(metadata.as_ref(), "back").unwrap().1
    };
    // A "black hole": connections are accepted by the kernel, requests never answered.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = black_hole.local_addr().unwrap();
    let (_dir, mut config) = machine(&format!("http://{address}"), &key, None);
    config.cloud_timeout = Duration::from_secs(1);
    let store = Cache::open(&config).unwrap();
    let timed = |seed: &str| {
        let start = Instant::now();
        let found = store.get(&digest("key", seed)).unwrap();
        (found.is_some(), start.elapsed())
    };
    let (found, first) = timed("a");
    assert!(!found);
    assert!(first >= Duration::from_millis(900) && first < Duration::from_secs(5), "one cloud_timeout: {first:?}");
    assert!(timed("b").1 < Duration::from_millis(500), "within the backoff: local only");
    // Past the backoff, a background health check asks; the call does not wait for it.
    std::thread::sleep(Duration::from_millis(2200));
    let (_, after_backoff) = timed("c");
    assert!(after_backoff < Duration::from_millis(500), "the call waited on the server again: {after_backoff:?}");

    // The server comes back on that address, with a result another machine stored.
    drop(black_hole);
    let server = serve_on(std::net::TcpListener::bind(address).unwrap(), data);
    let (_other_dir, other_config) = machine(&server.url, &key, None);
    let other = Cache::open(&other_config).unwrap();
    other.put(core(), &eval("shared", "f", "portable"), &portable(b"from the other machine")).unwrap();
    other.drain_uploads().unwrap();
    // The process that saw it down reads through again once a health check finds it back,
    // and no call waits meanwhile.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (found, took) = timed("shared");
        assert!(took < Duration::from_millis(500), "a call waited {took:?}");
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "the server was never found back");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_tampered_blob_is_rejected_and_nothing_is_stored() {
    let server = server();
    let key = project(&server, "tamper");
    let (_a_dir, a_config) = machine(&server.url, &key, None);
    let (_b_dir, b_config) = machine(&server.url, &key, None);
    let a = Cache::open(&a_config).unwrap();
    let data = b"the honest result".to_vec();
    a.put(core(), &eval("t", "f", "portable"), &data).unwrap();
    a.drain_uploads().unwrap();
    // Someone edits the blob on the server's disk.
    let hex = blake3::hash(&data).to_hex().to_string();
    let path = server.data.path().join("blobs").join(&hex[..2]).join(&hex);
    std::fs::write(&path, b"the forged result").unwrap();
    let b = Cache::open(&b_config).unwrap();
    assert!(b.get(&digest("key", "t")).unwrap().is_none(), "a blob that fails its digest is a miss");
    assert!(b.get_local(&digest("key", "t")).unwrap().is_none(), "and is not stored");
}

#[test]
fn language_only_results_load_only_when_signed_by_a_trusted_key() {
    let server = server();
    let key = project(&server, "signed");
    let (_a_dir, a_config) = machine(&server.url, &key, Some("team secret"));
    let a = Cache::open(&a_config).unwrap();
    a.put(core(), &eval("pickled", "f", "pickle"), b"pickle bytes").unwrap();
    a.put(core(), &eval("portable", "f", "portable"), &portable(b"portable bytes")).unwrap();
    a.drain_uploads().unwrap();

    let (_b_dir, b_config) = machine(&server.url, &key, Some("team secret"));
    let b = Cache::open(&b_config).unwrap();
    assert_eq!(b.get(&digest("key", "pickled")).unwrap().unwrap().data.bytes(), b"pickle bytes");

    assert!(b.get(&digest("key", "portable")).unwrap().is_some(), "a signed portable record loads");

    // Without the secret: portable results by their key and digest checks,
    // language-only ones never. With another secret: nothing the team signed.
    for (signing, portable_loads) in [(None, true), (Some("another secret"), false)] {
        let (_dir, config) = machine(&server.url, &key, signing);
        let c = Cache::open(&config).unwrap();
        assert!(c.get(&digest("key", "pickled")).unwrap().is_none(), "untrusted with {signing:?}");
        assert_eq!(c.get(&digest("key", "portable")).unwrap().is_some(), portable_loads, "portable with {signing:?}");
    }

    // A portable record filed by a key holder without the secret (first
    // writer wins, so it could claim any key): a machine with the secret
    // never loads it; one without the secret does (docs/cloud.md, "Trust").
    let (_u_dir, u_config) = machine(&server.url, &key, None);
    let u = Cache::open(&u_config).unwrap();
    u.put(core(), &eval("unsigned", "f", "portable"), &portable(b"claimed value")).unwrap();
    u.drain_uploads().unwrap();
    let (_t_dir, t_config) = machine(&server.url, &key, Some("team secret"));
    let t = Cache::open(&t_config).unwrap();
    assert!(t.get(&digest("key", "unsigned")).unwrap().is_none(), "an unsigned portable record is not loaded");
    let (_o_dir, o_config) = machine(&server.url, &key, None);
    assert!(Cache::open(&o_config).unwrap().get(&digest("key", "unsigned")).unwrap().is_some());

    // A forged record: uploaded by a key holder without the signing secret.
    let (_f_dir, f_config) = machine(&server.url, &key, Some("forger's guess"));
    let f = Cache::open(&f_config).unwrap();
    f.put(core(), &eval("forged", "f", "pickle"), b"malicious pickle").unwrap();
    f.drain_uploads().unwrap();
    let (_d_dir, d_config) = machine(&server.url, &key, Some("team secret"));
    let d = Cache::open(&d_config).unwrap();
    assert!(d.get(&digest("key", "forged")).unwrap().is_none(), "a forged eval is never loaded");
}

#[test]
fn a_read_only_key_cannot_upload_but_the_result_stays_local() {
    let server = server();
    let key = project(&server, "ro");
    let client = hitsave_host::cloud::CloudClient::new(&server.url, &key, None).unwrap();
    let reader = client.create_key("read", "laptop").unwrap()["key"].as_str().unwrap().to_owned();
    let (_dir, config) = machine(&server.url, &reader, None);
    let store = Cache::open(&config).unwrap();
    assert_eq!(store.put(core(), &eval("r", "f", "portable"), &portable(b"mine")).unwrap(), PutOutcome::Stored);
    store.drain_uploads().unwrap();
    assert!(store.get(&digest("key", "r")).unwrap().is_some());
    assert!(client.lookup(&[digest("key", "r").to_string()]).unwrap().is_empty());
    let keys = client.list_keys().unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
}

#[test]
fn a_function_the_cloud_keeps_answering_is_prefetched_in_bulk() {
    let server = server();
    let key = project(&server, "prefetch");
    let (_a_dir, a_config) = machine(&server.url, &key, None);
    let (_b_dir, b_config) = machine(&server.url, &key, None);
    let a = Cache::open(&a_config).unwrap();
    for i in 0..10 {
        a.put(core(), &eval(&format!("hot{i}"), "hot", "portable"), &portable(format!("hot {i}").as_bytes())).unwrap();
    }
    a.drain_uploads().unwrap();
    let b = Cache::open(&b_config).unwrap();
    for i in 0..2 {
        assert!(b.get_for(&digest("key", &format!("hot{i}")), Some("hot")).unwrap().is_some());
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(b.get_local(&digest("key", "hot9")).unwrap().is_none(), "two remote hits are not enough (policy: 3)");
    assert!(b.get_for(&digest("key", "hot2"), Some("hot")).unwrap().is_some());
    let deadline = Instant::now() + Duration::from_secs(20);
    while (3..10).any(|i| b.get_local(&digest("key", &format!("hot{i}"))).unwrap().is_none()) {
        assert!(Instant::now() < deadline, "the rest of the function was not prefetched");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_download_that_stalls_midway_resumes_instead_of_hanging() {
    use std::io::{BufRead, BufReader, Write};
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let blob = hitsave_host::hash::blob_digest(&data).to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = data.clone();
    // A server that sends the first half of the blob and then stops sending
    // (the connection stays open), and answers a range request in full.
    std::thread::spawn(move || {
        let mut stalled = Vec::new();
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut range_start = None;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range_start = value.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
            match range_start {
                None => {
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", served.len());
                    stream.write_all(head.as_bytes()).unwrap();
                    stream.write_all(&served[..served.len() / 2]).unwrap();
                    stream.flush().unwrap();
                    stalled.push(stream); // never closed, never finished
                }
                Some(start) => {
                    let rest = &served[start..];
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\n\r\n",
                        rest.len(),
                        served.len() - 1,
                        served.len()
                    );
                    stream.write_all(head.as_bytes()).unwrap();
                    stream.write_all(rest).unwrap();
                }
            }
        }
    });
    let client =
        hitsave_host::cloud::CloudClient::with_timeout(&url, "hs_0_0", None, Duration::from_millis(500)).unwrap();
    let eval = hitsave_host::cloud::RemoteEval {
        key: digest("key", "stall").to_string(),
        function_id: "f@1".into(),
        function_name: "f".into(),
        language: "python".into(),
        arguments: digest("val", "stall").to_string(),
        codec: "portable".into(),
        blob,
        size: data.len() as u64,
        compute_micros: 1,
        signature: None,
        graph: None,
        created: 0,
    };
    let start = Instant::now();
    let downloaded = client.download(&eval).unwrap();
    assert_eq!(downloaded, data, "the first half and the resumed rest, verified");
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
}

/// A server for one blob upload: it answers `/v1/blobs/missing` with the
/// blob, accepts records, and reads an upload's body `pace` bytes at a time,
/// pausing `pause` between reads, or, with `pace` 0, reads 64 KiB and then
/// stops reading (the connection stays open). Returns its URL and a channel
/// that gets the number of body bytes of each finished upload.
fn blob_server(blob: String, pace: usize, pause: Duration) -> (String, std::sync::mpsc::Receiver<usize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (finished, uploads) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stalled = Vec::new();
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut request, mut length) = (String::new(), 0usize);
            reader.read_line(&mut request).unwrap();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
            }
            let answer = |stream: &mut std::net::TcpStream, status: &str, body: String| {
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(body.as_bytes()).unwrap();
            };
            if request.starts_with("PUT ") {
                if pace == 0 {
                    let mut first = vec![0; 64 << 10];
                    reader.read_exact(&mut first).unwrap();
                    stalled.push((stream, reader)); // never read again, never closed
                    continue;
                }
                let (mut buffer, mut read) = (vec![0; pace], 0);
                while read < length {
                    let want = pace.min(length - read);
                    reader.read_exact(&mut buffer[..want]).unwrap();
                    read += want;
                    std::thread::sleep(pause);
                }
                finished.send(read).unwrap();
                answer(&mut stream, "201 Created", "{}".into());
            } else {
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let reply = if request.contains("/v1/blobs/missing") {
                    serde_json::json!({ "missing": [blob] })
                } else {
                    serde_json::json!({})
                };
                answer(&mut stream, "200 OK", reply.to_string());
            }
        }
    });
    (url, uploads)
}

fn remote_eval(seed: &str, data: &[u8]) -> hitsave_host::cloud::RemoteEval {
    hitsave_host::cloud::RemoteEval {
        key: digest("key", seed).to_string(),
        function_id: "f@1".into(),
        function_name: "f".into(),
        language: "python".into(),
        arguments: digest("val", seed).to_string(),
        codec: "portable".into(),
        blob: hitsave_host::hash::blob_digest(data).to_string(),
        size: data.len() as u64,
        compute_micros: 1,
        signature: None,
        graph: None,
        created: 0,
    }
}

#[test]
fn an_upload_the_server_stops_reading_ends_instead_of_hanging() {
    // 32 MiB: more than the socket buffers on both sides and hyper's own hold.
    let data: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    let eval = remote_eval("upload-stall", &data);
    let (url, uploads) = blob_server(eval.blob.clone(), 0, Duration::ZERO);
    let client =
        hitsave_host::cloud::CloudClient::with_timeout(&url, "hs_0_0", None, Duration::from_millis(500)).unwrap();
    let start = Instant::now();
    let err = client.upload(&[(eval, data.clone().into())]).unwrap_err();
    assert_eq!(err.code(), "cloud_unavailable", "{err}");
    assert!(err.to_string().contains("stalled"), "{err}");
    // Before: the blocking client's one-hour whole-request timeout.
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    assert!(uploads.try_recv().is_err());
}

#[test]
fn a_slow_upload_that_keeps_moving_is_not_cut_off() {
    // The server reads 1 MiB every 100 ms: 32 MiB (more than the socket
    // buffers hold, so the client waits on the server throughout) takes
    // ~3.2 s, ten times the 300 ms timeout, and finishes.
    let data: Vec<u8> = (0..32u32 << 20).map(|i| (i % 241) as u8).collect();
    let eval = remote_eval("upload-slow", &data);
    let (url, uploads) = blob_server(eval.blob.clone(), 1 << 20, Duration::from_millis(100));
    let client =
        hitsave_host::cloud::CloudClient::with_timeout(&url, "hs_0_0", None, Duration::from_millis(300)).unwrap();
    let start = Instant::now();
    client.upload(&[(eval, data.clone().into())]).unwrap();
    assert_eq!(uploads.try_recv().unwrap(), data.len());
    assert!(start.elapsed() > Duration::from_secs(3), "the server read slowly: {:?}", start.elapsed());
}

/// A fake server: `answer` gets each request line and writes the whole
/// response (status line, headers, body) to the stream.
fn fake_server(answer: impl Fn(&str, &mut std::net::TcpStream) + Send + 'static) -> String {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut request, mut length) = (String::new(), 0usize);
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            answer(&request, &mut stream);
        }
    });
    url
}

fn reply(stream: &mut std::net::TcpStream, kind: &str, body: &[u8]) {
    use std::io::Write;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// A server that answers every lookup and listing with `record` and every
/// blob download with `data`, whatever was asked.
fn lying_server(record: hitsave_host::cloud::RemoteEval, data: Vec<u8>) -> String {
    fake_server(move |request, stream| {
        if request.contains("/v1/evals/lookup") {
            reply(stream, "application/json", serde_json::json!({ "evals": [record] }).to_string().as_bytes());
        } else if request.starts_with("GET ") && request.contains("/v1/blobs/") {
            reply(stream, "application/octet-stream", &data);
        } else {
            reply(stream, "application/json", b"{}");
        }
    })
}

#[test]
fn a_server_answering_with_another_keys_record_is_a_miss_not_that_result() {
    // Asked for f(1)'s key, the server answers with f(2)'s record and blob.
    let data = portable(b"the result of f(2)");
    let url = lying_server(remote_eval("f(2)", &data), data);
    let (_dir, config) = machine(&url, "hs_0_0", None);
    let store = Cache::open(&config).unwrap();
    let asked = digest("key", "f(1)");
    assert!(store.get(&asked).unwrap().is_none(), "another key's record is never this key's result");
    assert!(store.get_local(&asked).unwrap().is_none(), "and nothing is stored under the asked key");
}

#[test]
fn a_portable_record_whose_blob_is_not_portable_is_a_miss_and_is_not_kept() {
    let garbage = b"\xff\xfe not a portable stream".to_vec();
    let url = lying_server(remote_eval("f(1)", &garbage), garbage);
    let (_dir, config) = machine(&url, "hs_0_0", None);
    let store = Cache::open(&config).unwrap();
    let asked = digest("key", "f(1)");
    assert!(store.get(&asked).unwrap().is_none(), "not served");
    assert!(store.get_local(&asked).unwrap().is_none(), "not stored, so a later offline call does not fail");
}

/// Files left in a store's `tmp/` directory.
fn temp_files(config: &Config) -> usize {
    std::fs::read_dir(config.cache_dir.join("tmp")).map_or(0, |dir| dir.count())
}

#[test]
fn a_large_download_that_fails_its_checks_leaves_nothing_behind() {
    // Larger than the inline limit: received into a file in the store, not memory.
    let large: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let honest = portable(&large);
    // Bytes that are not the record's (same length, another digest).
    let mut forged = honest.clone();
    *forged.last_mut().unwrap() ^= 1;
    // Bytes that are the record's, but not a portable result.
    let garbage = vec![0xffu8; 3_000_000];
    for (record, sent, what) in [
        (remote_eval("f(1)", &honest), forged, "a blob that fails its digest"),
        (remote_eval("f(1)", &garbage), garbage.clone(), "a portable record whose blob is not portable"),
    ] {
        let url = lying_server(record, sent);
        let (_dir, config) = machine(&url, "hs_0_0", None);
        let store = Cache::open(&config).unwrap();
        let asked = digest("key", "f(1)");
        assert!(store.get(&asked).unwrap().is_none(), "{what}: not served");
        assert!(store.get_local(&asked).unwrap().is_none(), "{what}: not stored");
        assert_eq!(temp_files(&config), 0, "{what}: its download file is removed");
        assert!(!config.cache_dir.join("blobs").read_dir().unwrap().any(|_| true), "{what}: no blob kept");
    }
    // The same server telling the truth: served and kept (a result that took long enough to be worth keeping).
    let mut record = remote_eval("f(1)", &honest);
    record.compute_micros = 10_000_000;
    let url = lying_server(record, honest.clone());
    let (_dir, config) = machine(&url, "hs_0_0", None);
    let store = Cache::open(&config).unwrap();
    assert_eq!(store.get(&digest("key", "f(1)")).unwrap().unwrap().data.bytes(), &honest[..]);
    assert!(store.get_local(&digest("key", "f(1)")).unwrap().is_some());
    assert_eq!(temp_files(&config), 0);
}

#[test]
fn a_record_filed_under_a_key_its_function_and_arguments_do_not_derive_is_refused() {
    // f(2)'s record and result, relabelled with f(1)'s key.
    let data = portable(b"the result of f(2)");
    let mut forged = remote_eval("f(2)", &data);
    forged.key = digest("key", "f(1)").to_string();
    let url = lying_server(forged, data);
    let (_dir, config) = machine(&url, "hs_0_0", None);
    let store = Cache::open(&config).unwrap();
    let asked = digest("key", "f(1)");
    assert!(store.get(&asked).unwrap().is_none(), "f(1) never returns f(2)'s result");
    assert!(store.get_local(&asked).unwrap().is_none());
}

#[test]
fn a_server_repeating_its_page_cursor_ends_a_listing_instead_of_looping() {
    let record = remote_eval("page", &portable(b"x"));
    let url = fake_server(move |request, stream| {
        if request.contains("/v1/functions/") {
            let page = serde_json::json!({ "evals": [record], "next": "key2_same" });
            reply(stream, "application/json", page.to_string().as_bytes());
        } else {
            reply(stream, "application/json", b"{}");
        }
    });
    let (_dir, config) = machine(&url, "hs_0_0", None);
    let store = Cache::open(&config).unwrap();
    let start = Instant::now();
    let _ = store.cloud().unwrap().download_function(&store, "f", |_, _| {});
    assert!(start.elapsed() < Duration::from_secs(20), "a repeated cursor was followed for {:?}", start.elapsed());
}

#[test]
fn a_record_claiming_more_than_the_local_budget_is_not_downloaded() {
    let mut huge = remote_eval("huge", b"");
    huge.size = 1 << 40;
    let url = fake_server(move |request, stream| {
        use std::io::Write;
        if request.contains("/v1/evals/lookup") {
            reply(stream, "application/json", serde_json::json!({ "evals": [huge] }).to_string().as_bytes());
        } else if request.starts_with("GET ") && request.contains("/v1/blobs/") {
            // An endless blob.
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n");
            let chunk = vec![0u8; 1 << 20];
            while stream.write_all(&chunk).is_ok() {}
        } else {
            reply(stream, "application/json", b"{}");
        }
    });
    let (_dir, config) = machine(&url, "hs_0_0", None);
    let store = Cache::open(&config).unwrap();
    let start = Instant::now();
    assert!(store.get(&digest("key", "huge")).unwrap().is_none());
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
}

#[test]
fn an_endless_answer_is_read_only_up_to_the_limit() {
    let url = fake_server(move |request, stream| {
        use std::io::Write;
        if request.contains("/v1/evals/lookup") {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"evals\": [\"");
            let chunk = vec![b'a'; 1 << 20];
            while stream.write_all(&chunk).is_ok() {}
        } else {
            reply(stream, "application/json", b"{}");
        }
    });
    let (_dir, mut config) = machine(&url, "hs_0_0", None);
    // Without the bound the client reads until this timeout ends the request
    // (gigabytes of memory on the way); with it, it stops after 64 MiB.
    config.cloud_timeout = Duration::from_secs(30);
    let store = Cache::open(&config).unwrap();
    let start = Instant::now();
    assert!(store.get(&digest("key", "endless")).unwrap().is_none(), "a miss, after at most 64 MiB read");
    assert!(start.elapsed() < Duration::from_secs(20), "read for {:?}: the answer was not bounded", start.elapsed());
}
