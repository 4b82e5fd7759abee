//! The `hitsave` binary run as a user runs it, against a real store.

use std::path::Path;
use std::process::{Command, Output};

use hitsave_core::graph::{Node, NodeKind};
use hitsave_core::{Digest, DigestKind};
use hitsave_host::store::{Graph, NewEval, Store};
use hitsave_host::{Config, Core, LoadOptions};
use serde_json::Value;

fn hitsave(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hitsave"))
        .args(args)
        .env("HITSAVE_CACHE_DIR", dir)
        .env_remove("HITSAVE_CONFIG")
        .env_remove("HITSAVE_MAX_SIZE")
        .env_remove("HITSAVE_MODE")
        .current_dir(dir)
        .output()
        .expect("hitsave runs")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "hitsave failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&stdout(output)).expect("JSON output")
}

fn core() -> Core {
    Core::load(&LoadOptions { compiled_dir: Some(std::env::temp_dir().join("hitsave-test-compiled")) }).unwrap()
}

fn digest(kind: DigestKind, text: &str) -> Digest {
    Digest::new(kind, *blake3::hash(text.as_bytes()).as_bytes())
}

fn graph(core: &Core, load_data_source: &str) -> Graph {
    let content = |text: &str| digest(DigestKind::Blob, text);
    let nodes = vec![
        Node {
            kind: NodeKind::Function,
            name: "app:train".into(),
            content: content("def train(): ..."),
            deps: vec![1, 2],
        },
        Node {
            kind: NodeKind::Function,
            name: "app:load_data".into(),
            content: content(load_data_source),
            deps: vec![],
        },
        Node { kind: NodeKind::Constant, name: "app:SCALE".into(), content: content("3"), deps: vec![] },
    ];
    let _ = core;
    Graph::from_nodes("app:train", &nodes)
}

fn eval(label: &str, function: &str, language: &str, graph: Option<Graph>) -> NewEval {
    NewEval {
        key: digest(DigestKind::Key, label),
        function_id: format!("{function}@1"),
        function_name: function.into(),
        language: language.into(),
        arguments: digest(DigestKind::Value, label),
        // Raw bytes: not a portable stream, which `verify` would report.
        codec: "raw".into(),
        compute_micros: 1500,
        graph,
    }
}

/// Two functions, written from "python" and "node", one with a graph.
fn populated() -> (tempfile::TempDir, Core) {
    let dir = tempfile::tempdir().unwrap();
    let core = core();
    let store = Store::open(&Config::for_dir(dir.path())).unwrap();
    let old = graph(&core, "def load_data(): return read('a.csv')");
    store.put_local(&core, &eval("t1", "app:train", "python", Some(old.clone())), b"result one").unwrap();
    store.put_local(&core, &eval("t2", "app:train", "python", Some(old)), &vec![3u8; 200_000]).unwrap();
    store.put_local(&core, &eval("p1", "shared.parse", "node", None), b"parsed").unwrap();
    store.put_local(&core, &eval("p2", "shared.parse", "python", None), b"parsed too").unwrap();
    store.get_local(&digest(DigestKind::Key, "p1")).unwrap().unwrap();
    drop(store);
    (dir, core)
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["ls", "show", "why", "stats", "gc", "clear", "verify"] {
        let text = stdout(&hitsave(dir.path(), &[command, "--help"]));
        assert!(text.contains("Usage: hitsave"), "{command} --help: {text}");
        assert!(text.contains("--json"), "{command} --help lists --json");
    }
    let top = stdout(&hitsave(dir.path(), &["--help"]));
    for command in ["ls", "show", "why", "stats", "gc", "clear", "verify"] {
        assert!(top.contains(command), "hitsave --help lists {command}");
    }
}

#[test]
fn ls_lists_functions_from_both_languages() {
    let (dir, _) = populated();
    let text = stdout(&hitsave(dir.path(), &["ls"]));
    assert!(text.contains("app:train") && text.contains("shared.parse"), "{text}");
    let functions = json(&hitsave(dir.path(), &["ls", "--json"]));
    let parse = functions.as_array().unwrap().iter().find(|f| f["function_name"] == "shared.parse").unwrap();
    assert_eq!(parse["languages"], serde_json::json!(["node", "python"]));
    assert_eq!(parse["evals"], 2);
    assert_eq!(parse["hits"], 1);
    let train = json(&hitsave(dir.path(), &["ls", "app:train", "--json"]));
    assert_eq!(train.as_array().unwrap().len(), 2);
}

#[test]
fn show_accepts_a_key_prefix() {
    let (dir, _) = populated();
    let key = digest(DigestKind::Key, "t2").to_string();
    let record = json(&hitsave(dir.path(), &["show", &key[..16], "--json"]));
    assert_eq!(record["key"], key.as_str());
    assert_eq!(record["size"], 200_000);
    assert_eq!(record["inline"], false);
    let text = stdout(&hitsave(dir.path(), &["show", &key]));
    assert!(text.contains("app:train (python)"), "{text}");
    let missing = hitsave(dir.path(), &["show", "key1_ffff", "--json"]);
    assert_eq!(missing.status.code(), Some(1));
    let error: Value = serde_json::from_slice(&missing.stderr).unwrap();
    assert_eq!(error["error"]["code"], "not_found");
}

#[test]
fn why_names_the_dependency_that_changed() {
    let (dir, core) = populated();
    let store = Store::open(&Config::for_dir(dir.path())).unwrap();
    store
        .record_function(&core, "app:train", "python", &graph(&core, "def load_data(): return read('b.csv')"))
        .unwrap();
    drop(store);
    let report = json(&hitsave(dir.path(), &["why", "app:train", "--json"]));
    let group = &report["stored"][0];
    assert_eq!(group["evals"], 2);
    assert_eq!(group["current"], false);
    assert_eq!(group["changes"], serde_json::json!([["app:load_data", "modified"]]));
    let text = stdout(&hitsave(dir.path(), &["why", "app:train"]));
    assert!(text.contains("modified     app:load_data"), "{text}");
    let unknown = hitsave(dir.path(), &["why", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).starts_with("error[not_found]"));
}

#[test]
fn why_says_when_the_policy_declined_a_result() {
    let dir = tempfile::tempdir().unwrap();
    let core = core();
    let store = Store::open(&Config::for_dir(dir.path())).unwrap();
    let eval = NewEval {
        key: digest(DigestKind::Key, "cheap"),
        function_id: "cheap@1".into(),
        function_name: "app:cheap".into(),
        language: "python".into(),
        arguments: digest(DigestKind::Value, "cheap"),
        codec: "pickle".into(),
        compute_micros: 3,
        graph: None,
    };
    store.put_local(&core, &eval, &vec![0u8; 3 << 20]).unwrap();
    drop(store);
    // Nothing is stored for the function, yet `why` knows why.
    let report = json(&hitsave(dir.path(), &["why", "app:cheap", "--json"]));
    assert_eq!(report["stored"], serde_json::json!([]));
    assert_eq!(report["declined"]["size"], 3 << 20);
    assert_eq!(report["declined"]["compute_micros"], 3);
    let text = stdout(&hitsave(dir.path(), &["why", "app:cheap"]));
    assert!(text.contains("not stored by the cache policy: a result of 3.0 MiB computed in 3 µs"), "{text}");
}

#[test]
fn stats_gc_clear_and_verify() {
    let (dir, _) = populated();
    let stats = json(&hitsave(dir.path(), &["stats", "--json"]));
    assert_eq!(stats["evals"], 4);
    assert_eq!(stats["blobs"], 1);
    assert_eq!(stats["functions"], 2);

    let digest_hex = blake3::hash(&vec![3u8; 200_000]).to_hex().to_string();
    let blob = dir.path().join("blobs").join(&digest_hex[..2]).join(&digest_hex[2..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let report = json(&hitsave(dir.path(), &["verify", "--json"]));
    assert_eq!(report["checked"], 4);
    assert_eq!(report["corrupt"].as_array().unwrap().len(), 1);

    let gc = json(&hitsave(dir.path(), &["gc", "--max-size", "12", "--json"]));
    assert!(gc["evicted"].as_u64().unwrap() >= 2, "{gc}");
    assert!(json(&hitsave(dir.path(), &["stats", "--json"]))["size"].as_u64().unwrap() <= 12);

    let bad_size = hitsave(dir.path(), &["gc", "--max-size", "lots"]);
    assert_eq!(bad_size.status.code(), Some(2), "a bad size is a usage error");

    let refused = hitsave(dir.path(), &["clear"]);
    assert_eq!(refused.status.code(), Some(2), "clear needs a function or --all");
    let cleared = json(&hitsave(dir.path(), &["clear", "--all", "--json"]));
    assert!(cleared["removed"].as_u64().is_some());
    assert_eq!(json(&hitsave(dir.path(), &["stats", "--json"]))["evals"], 0);
    assert!(stdout(&hitsave(dir.path(), &["ls"])).starts_with("no stored results"));
}

#[test]
fn configuration_comes_from_env_and_hitsave_toml() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("hitsave.toml"), "cache_dir = \"store\"\nmax_size = \"3MiB\"\n").unwrap();
    let run = |extra: &[(&str, &str)], args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hitsave"));
        command
            .args(args)
            .current_dir(project.join("src"))
            .env_remove("HITSAVE_CACHE_DIR")
            .env_remove("HITSAVE_MAX_SIZE");
        for (name, value) in extra {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    // hitsave.toml found from a subdirectory; relative cache_dir is relative to the file.
    let stats = json(&run(&[], &["stats", "--json"]));
    assert_eq!(stats["max_size"], 3 << 20);
    assert_eq!(Path::new(stats["path"].as_str().unwrap()), project.join("store"));
    // The environment wins over the file.
    let stats = json(&run(&[("HITSAVE_MAX_SIZE", "1GB")], &["stats", "--json"]));
    assert_eq!(stats["max_size"], 1_000_000_000);
    // Bad values are typed errors naming what is wrong.
    let bad = run(&[("HITSAVE_MODE", "sometimes")], &["stats"]);
    assert_eq!(bad.status.code(), Some(1));
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(message.starts_with("error[config_invalid]") && message.contains("HITSAVE_MODE"), "{message}");
    std::fs::write(project.join("hitsave.toml"), "max_sise = 3\n").unwrap();
    let typo = run(&[], &["stats"]);
    assert!(String::from_utf8_lossy(&typo.stderr).contains("max_sise"), "unknown keys are named");
}

/// `hitsave serve` as a child process, killed when dropped.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cloud_cli(home: &Path, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hitsave"))
        .args(args)
        .env("HITSAVE_CACHE_DIR", cache)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("HITSAVE_CONFIG")
        .env_remove("HITSAVE_MODE")
        .env_remove("HITSAVE_CLOUD_URL")
        .env_remove("HITSAVE_API_KEY")
        .current_dir(cache)
        .output()
        .expect("hitsave runs")
}

/// `hitsave serve --create-project team` on a free port: the server, the
/// project's key and the server's URL.
fn serve_team(data: &Path) -> (Served, String, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_hitsave"))
        .args(["serve", "--listen", "127.0.0.1:0", "--create-project", "team", "--data"])
        .arg(data)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let key = lines.next().unwrap().unwrap().strip_prefix("project team: ").unwrap().to_owned();
    let url = lines.next().unwrap().unwrap().strip_prefix("listening on ").unwrap().to_owned();
    (Served(child), key, url)
}

#[test]
fn serve_login_keys_push_and_pull() {
    let root = tempfile::tempdir().unwrap();
    let (home, a, b) = (root.path().join("home"), root.path().join("a"), root.path().join("b"));
    for dir in [&home, &a, &b] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let (_served, key, url) = serve_team(&root.path().join("server"));

    let login = cloud_cli(&home, &a, &["login", "--url", &url, "--key", &key]);
    assert!(stdout(&login).contains("project team, scope read-write"));
    let bad = cloud_cli(&home, &a, &["login", "--url", &url, "--key", "hs_00_bad"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("error[cloud_rejected]"));

    // Results stored on machine A (before it used the cloud) are pushed by hand.
    let core = core();
    store_results(&core, &a);
    let pushed = json(&cloud_cli(&home, &a, &["push", "--json"]));
    assert_eq!(pushed["uploaded"], 3);
    assert_eq!(pushed["left"], 0);

    let pulled = json(&cloud_cli(&home, &b, &["pull", "app:train", "--json"]));
    assert_eq!(pulled["downloaded"], 3);
    let listing = json(&cloud_cli(&home, &b, &["ls", "--json"]));
    assert_eq!(listing[0]["function_name"], "app:train");

    let created = json(&cloud_cli(&home, &a, &["keys", "create", "--scope", "read", "--name", "ci", "--json"]));
    let id = created["id"].as_str().unwrap().to_owned();
    let keys = json(&cloud_cli(&home, &a, &["keys", "list", "--json"]));
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);

    // A read-only key's push is refused: cloud_rejected (not "unavailable"),
    // and the results stay queued.
    let (home_c, c) = (root.path().join("home-c"), root.path().join("c"));
    std::fs::create_dir_all(&home_c).unwrap();
    std::fs::create_dir_all(&c).unwrap();
    let read_key = created["key"].as_str().unwrap().to_owned();
    assert!(cloud_cli(&home_c, &c, &["login", "--url", &url, "--key", &read_key]).status.success());
    store_results(&core, &c);
    let refused = cloud_cli(&home_c, &c, &["push"]);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("error[cloud_rejected]") && said.contains("stay queued"), "{said}");

    assert!(cloud_cli(&home, &a, &["keys", "revoke", &id]).status.success());
    let keys = json(&cloud_cli(&home, &a, &["keys", "list", "--json"]));
    assert!(keys["keys"].as_array().unwrap().iter().any(|key| key["id"] == id.as_str() && key["revoked"] == true));
    // And a revoked key's too.
    let revoked = cloud_cli(&home_c, &c, &["push"]);
    assert_eq!(revoked.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&revoked.stderr).contains("error[cloud_rejected]"));
}

/// Three results of `app:train` in the local store in `dir`, keyed as an SDK
/// keys them (the client checks a record's key against its function and
/// arguments).
fn store_results(core: &Core, dir: &Path) {
    let mut local = Config::for_dir(dir);
    local.mode = hitsave_host::Mode::Local;
    let store = Store::open(&local).unwrap();
    for i in 0..3 {
        // Keys as an SDK derives them (the client checks a record's key against its function and arguments).
        let arguments = digest(DigestKind::Value, &format!("a{i}"));
        let identity = hitsave_core::keys::FunctionIdentity::Explicit { name: "train".into(), version: "1".into() };
        let eval = NewEval {
            key: core.derive_key(&identity, &arguments).unwrap(),
            function_id: "train@1".into(),
            function_name: "app:train".into(),
            language: "python".into(),
            arguments,
            codec: "portable".into(),
            compute_micros: 10_000,
            graph: None,
        };
        let mut result = hitsave_core::stream::StreamWriter::new();
        result.str(&format!("result {i}"));
        store.put_local(core, &eval, result.as_bytes()).unwrap();
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let (dir, _) = populated();
    // `hitsave ls --json | head -c 0`: the pipe's read end is closed before anything is written.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_hitsave"))
        .args(["ls", "--json"])
        .env("HITSAVE_CACHE_DIR", dir.path())
        .env_remove("HITSAVE_CONFIG")
        .env_remove("HITSAVE_MODE")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "status {:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn serve_stops_on_sigterm_and_takes_the_server_flags() {
    use std::io::{BufRead, BufReader};
    let root = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_hitsave"))
        .args(["serve", "--listen", "127.0.0.1:0", "--max-blob-size", "1000", "--admin-token", "t0k", "--data"])
        .arg(root.path().join("server"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut served = Served(child);
    let mut lines = BufReader::new(served.0.stdout.take().unwrap()).lines();
    let url = lines.next().unwrap().unwrap().strip_prefix("listening on ").unwrap().to_owned();
    // --admin-token: a project can be created over HTTP with it.
    let address = url.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let body = "{\"name\":\"p\"}";
    let request = format!(
        "POST /v1/projects HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer t0k\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    // SIGTERM (a container stop) ends it, with status 0, promptly.
    let status =
        std::process::Command::new("sh").args(["-c", &format!("kill -TERM {}", served.0.id())]).status().unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(exit) = served.0.try_wait().unwrap() {
            assert!(exit.success(), "{exit:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "hitsave serve ignored SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A TCP proxy to `upstream` that passes what the client sends at about
/// `bytes_per_second` (a slow link or a slow server); returns its URL.
fn slow_proxy(upstream: &str, bytes_per_second: usize) -> String {
    use std::io::{Read, Write};
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = std::net::TcpStream::connect(&upstream) else { continue };
            let (mut client_in, mut server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut server_in, mut client_out) = (server, client);
            std::thread::spawn(move || {
                let chunk = (bytes_per_second / 20).max(1);
                let mut buffer = vec![0; chunk];
                while let Ok(n) = client_in.read(&mut buffer) {
                    if n == 0 || server_out.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                let _ = server_out.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_in, &mut client_out);
                let _ = client_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    url
}

#[test]
fn push_waits_for_a_slow_server_that_keeps_moving() {
    let root = tempfile::tempdir().unwrap();
    let (home, a) = (root.path().join("home"), root.path().join("a"));
    for dir in [&home, &a] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let (_served, key, url) = serve_team(&root.path().join("server"));
    // 2 MiB/s: the 16 MiB result below takes about 8 s to send, longer than
    // push used to wait without a finished batch (5.5 s).
    let slow = slow_proxy(&url, 2 << 20);
    assert!(cloud_cli(&home, &a, &["login", "--url", &slow, "--key", &key]).status.success());
    let core = core();
    let mut local = Config::for_dir(&a);
    local.mode = hitsave_host::Mode::Local;
    let store = Store::open(&local).unwrap();
    let arguments = digest(DigestKind::Value, "big");
    let identity = hitsave_core::keys::FunctionIdentity::Explicit { name: "big".into(), version: "1".into() };
    let eval = NewEval {
        key: core.derive_key(&identity, &arguments).unwrap(),
        function_id: "big@1".into(),
        function_name: "app:big".into(),
        language: "python".into(),
        arguments,
        codec: "portable".into(),
        compute_micros: 60_000_000,
        graph: None,
    };
    let mut result = hitsave_core::stream::StreamWriter::new();
    let noise: Vec<u8> = (0..16u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    result.bytes(&noise);
    store.put_local(&core, &eval, result.as_bytes()).unwrap();
    drop(store);
    let started = std::time::Instant::now();
    let pushed = cloud_cli(&home, &a, &["push", "--json"]);
    let said = String::from_utf8_lossy(&pushed.stderr).into_owned();
    assert!(pushed.status.success(), "push gave up on a server that kept moving: {said}");
    assert_eq!(json(&pushed)["uploaded"], 1, "{said}");
    assert!(started.elapsed() > std::time::Duration::from_secs(6), "the link was slow: {:?}", started.elapsed());
}
