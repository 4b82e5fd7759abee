//! `hitsave-cli`: the `hitsave` command.
//!
//! One implementation in Rust. The `hitsave` binary calls [`run`]; the
//! Python and Node packages call the same function through their native
//! modules, so every install has the same commands and output.
//!
//! ```text
//! hitsave ls [FUNCTION]        functions and their results
//! hitsave show KEY             one stored result
//! hitsave why FUNCTION         which dependencies changed since results were stored
//! hitsave stats                store-wide numbers
//! hitsave gc [--max-size N]    apply the size budget now; remove orphans
//! hitsave clear FUNCTION|--all remove results
//! hitsave verify               re-hash everything; drop corrupt entries
//! hitsave push [FUNCTION]      upload local results to the cloud
//! hitsave pull FUNCTION        download a function's cloud results
//! hitsave login --url URL      keep an API key for a server
//! hitsave keys create|list|revoke   manage the project's API keys
//! hitsave serve                run the cloud server (the standalone binary)
//! ```
//!
//! Every command takes `--json` for machine-readable output and `--help`.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use hitsave_host::config::parse_size;
use hitsave_host::store::{EvalRecord, Stats};
use hitsave_host::{Config, Core, HitSaveError, Store};
use serde::Serialize;

/// `println!` that ends the command quietly when stdout is closed (`hitsave ls | head`)
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_out(format_args!($($arg)*))
    };
}

/// One line to stdout. A reader that went away (a broken pipe) ends the
/// process with status 0, as Unix tools do; any other write error with 1.
#[doc(hidden)]
pub fn write_out(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_fmt(line).and_then(|()| out.write_all(b"\n")) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("hitsave: cannot write to stdout: {err}");
        std::process::exit(1);
    }
}

/// HitSave: results of slow, pure functions, saved once and shared.
#[derive(Debug, Parser)]
#[command(name = "hitsave", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// The store directory (overrides HITSAVE_CACHE_DIR and hitsave.toml).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List functions with stored results, or one function's results.
    Ls {
        /// Show this function's results instead of the function list.
        function: Option<String>,
    },
    /// Show one stored result's record.
    Show {
        /// The eval key (`key2_…`), or a unique prefix of it.
        key: String,
    },
    /// Explain which dependencies changed between a function's stored results and its current code.
    Why {
        /// The function name, as `hitsave ls` shows it.
        function: String,
    },
    /// Store-wide numbers: entries, sizes, budget, hits, evictions.
    Stats,
    /// Apply the size budget now, and remove blob files and temp files no entry uses.
    Gc {
        /// Evict down to this size instead of the configured budget (e.g. 500MB, 2GiB).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
    },
    /// Remove stored results: one function's, or with --all every one.
    Clear {
        /// The function whose results to remove.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        function: Option<String>,
        /// Remove every stored result.
        #[arg(long)]
        all: bool,
    },
    /// Re-hash every stored result; report and remove corrupt ones.
    Verify,
    /// Upload local results to the cloud (what the background uploader does, by hand).
    Push {
        /// Only this function's results.
        function: Option<String>,
    },
    /// Download a function's results from the cloud into the local store.
    Pull {
        /// The function name, as `hitsave ls` shows it.
        function: String,
    },
    /// Keep an API key for a cloud server (in the user's credentials file) and make it the default server.
    Login {
        /// The server's URL (http://host:port); default HITSAVE_CLOUD_URL.
        #[arg(long)]
        url: Option<String>,
        /// The API key (hs_…); default: read one line from standard input.
        #[arg(long)]
        key: Option<String>,
    },
    /// Manage the API keys of the current key's project.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Run the HitSave cloud server (the same as `hitsave-server serve`: one definition).
    Serve(hitsave_server::command::ServeArgs),
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Create a key; its secret is printed once.
    Create {
        /// `read` or `read-write`.
        #[arg(long, default_value = "read")]
        scope: String,
        /// A label (who or what uses it).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List the project's keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key id (the part after `hs_`).
        id: String,
    },
}

/// Runs the CLI with these arguments (the first is the program name) and
/// returns the process exit code: 0 on success, 1 on an error, 2 on a usage
/// error.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return code;
        }
    };
    match execute(&cli) {
        Ok(()) => 0,
        Err(err) => {
            if cli.global.json {
                let body = serde_json::json!({"error": {"code": err.code(), "message": err.to_string()}});
                eprintln!("{body}");
            } else {
                eprintln!("error[{}]: {err}", err.code());
            }
            1
        }
    }
}

fn config(global: &Global) -> Result<Config, HitSaveError> {
    let mut config = Config::load()?;
    if let Some(dir) = &global.cache_dir {
        config.cache_dir = dir.clone();
    }
    Ok(config)
}

fn open(global: &Global) -> Result<Store, HitSaveError> {
    Store::open(&config(global)?)
}

/// The store with its cloud side, whatever the configured mode.
fn open_cloud(global: &Global) -> Result<hitsave_host::Cache, HitSaveError> {
    let mut config = config(global)?;
    config.mode = hitsave_host::Mode::Cloud;
    config.upload_wait = std::time::Duration::from_secs(24 * 3600);
    hitsave_host::Cache::open(&config)
}

fn client(global: &Global) -> Result<hitsave_host::cloud::CloudClient, HitSaveError> {
    hitsave_host::cloud::CloudClient::from_config(&config(global)?)?.ok_or_else(|| {
        HitSaveError::ConfigInvalid(
            "no cloud server configured: run `hitsave login --url URL` or set HITSAVE_CLOUD_URL and HITSAVE_API_KEY"
                .into(),
        )
    })
}

fn execute_cloud(cli: &Cli) -> Option<Result<(), HitSaveError>> {
    let json = cli.global.json;
    let global = &cli.global;
    Some(match &cli.command {
        Command::Push { function } => (|| {
            let store = open_cloud(global)?;
            let queued = store.queue_all(function.as_deref())?;
            let total = store.outbox_len()?;
            let total_bytes = store.outbox_bytes()?;
            let bar = progress_bar(total_bytes, "uploading", true);
            let cloud = store.cloud().expect("cloud mode").clone();
            // Waits while anything moves (a record done, or blob bytes taken
            // by the server): a slow server that keeps moving is never cut off.
            // It stops when the uploader stops trying (the server is down or
            // refuses these records) or nothing moved for PUSH_PATIENCE.
            let mut moved = (total, cloud.bytes_sent(), std::time::Instant::now());
            let left = loop {
                let asked = std::time::Instant::now();
                let left = cloud.drain(&store, std::time::Duration::from_millis(500))?;
                if let Some(bar) = &bar {
                    bar.set_position(total_bytes.saturating_sub(store.outbox_bytes()?));
                }
                if left == 0 {
                    break 0;
                }
                if asked.elapsed() < std::time::Duration::from_millis(400) {
                    break left; // the drain stopped early: unreachable, or a run that moved nothing
                }
                let now = (left, cloud.bytes_sent());
                if now != (moved.0, moved.1) {
                    moved = (now.0, now.1, std::time::Instant::now());
                } else if moved.2.elapsed() > PUSH_PATIENCE {
                    break left;
                }
            };
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            if json {
                print_json(&serde_json::json!({ "queued": queued, "uploaded": total - left, "left": left }));
            } else {
                outln!("uploaded {} result(s); {left} left", total - left);
            }
            if left > 0 {
                // The server said no (a revoked or read-only key): that, not "unavailable".
                if let Some(HitSaveError::CloudRejected { status, code, message }) = cloud.refusal() {
                    return Err(HitSaveError::CloudRejected {
                        status,
                        code,
                        message: format!("{message} ({left} result(s) not uploaded; they stay queued)"),
                    });
                }
                return Err(HitSaveError::CloudUnavailable(format!(
                    "{left} result(s) could not be uploaded; they stay queued"
                )));
            }
            Ok(())
        })(),
        Command::Pull { function } => (|| {
            let store = open_cloud(global)?;
            let cloud = store.cloud().expect("cloud mode").clone();
            let mut bar: Option<indicatif::ProgressBar> = None;
            let fetched = cloud.download_function(&store, function, |done, total| {
                if bar.is_none() {
                    bar = progress_bar(total, "downloading", false);
                }
                if let Some(bar) = &bar {
                    bar.set_position(done);
                }
            })?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            if json {
                print_json(&serde_json::json!({ "downloaded": fetched }));
            } else {
                outln!("downloaded {fetched} result(s) of {function}");
            }
            Ok(())
        })(),
        Command::Login { url, key } => (|| {
            let config = config(global)?;
            let url = url
                .clone()
                .or(config.cloud_url)
                .ok_or_else(|| HitSaveError::ConfigInvalid("give --url (or set HITSAVE_CLOUD_URL)".into()))?;
            let url = url.trim_end_matches('/').to_owned();
            let key = match key {
                Some(key) => key.clone(),
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|err| HitSaveError::ConfigInvalid(format!("cannot read the key: {err}")))?;
                    line.trim().to_owned()
                }
            };
            let who = hitsave_host::cloud::CloudClient::new(&url, &key, None)?.whoami()?;
            let path = hitsave_host::config::credentials_file().ok_or_else(|| {
                HitSaveError::ConfigInvalid("no config directory: set HOME or XDG_CONFIG_HOME".into())
            })?;
            let mut credentials = hitsave_host::config::Credentials::load()?;
            credentials.servers.insert(url.clone(), hitsave_host::config::ServerCredentials { api_key: key });
            credentials.current = Some(url.clone());
            credentials.save(&path)?;
            if json {
                print_json(
                    &serde_json::json!({ "url": url, "project": who["project"], "scope": who["scope"], "credentials": path }),
                );
            } else {
                outln!(
                    "logged in to {url}: project {}, scope {} (key kept in {})",
                    who["project"].as_str().unwrap_or("?"),
                    who["scope"].as_str().unwrap_or("?"),
                    path.display()
                );
            }
            Ok(())
        })(),
        Command::Keys { action } => (|| {
            let client = client(global)?;
            match action {
                KeysAction::Create { scope, name } => {
                    let created = client.create_key(scope, name)?;
                    if json {
                        print_json(&created);
                    } else {
                        outln!("{}", created["key"].as_str().unwrap_or_default());
                        eprintln!(
                            "(id {}, scope {}: the key is shown once)",
                            created["id"].as_str().unwrap_or_default(),
                            created["scope"].as_str().unwrap_or_default()
                        );
                    }
                }
                KeysAction::List => {
                    let keys = client.list_keys()?;
                    if json {
                        print_json(&keys);
                    } else {
                        outln!("{:<18} {:<11} {:<8} NAME", "ID", "SCOPE", "STATE");
                        for key in keys["keys"].as_array().into_iter().flatten() {
                            outln!(
                                "{:<18} {:<11} {:<8} {}",
                                key["id"].as_str().unwrap_or_default(),
                                key["scope"].as_str().unwrap_or_default(),
                                if key["revoked"].as_bool().unwrap_or(false) { "revoked" } else { "active" },
                                key["name"].as_str().unwrap_or_default()
                            );
                        }
                    }
                }
                KeysAction::Revoke { id } => {
                    client.revoke_key(id)?;
                    if json {
                        print_json(&serde_json::json!({ "revoked": id }));
                    } else {
                        outln!("revoked {id}");
                    }
                }
            }
            Ok(())
        })(),
        Command::Serve(args) => hitsave_server::command::serve(args).map_err(HitSaveError::ConfigInvalid),
        _ => return None,
    })
}

fn print_json(value: &impl Serialize) {
    outln!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}")));
}

/// `1.5 MiB`, `312 B`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `3m ago`, `2d ago`, `never`.
fn ago(seconds_since_epoch: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let age = now.saturating_sub(seconds_since_epoch);
    match age {
        0..60 => format!("{age}s ago"),
        60..3600 => format!("{}m ago", age / 60),
        3600..86_400 => format!("{}h ago", age / 3600),
        _ => format!("{}d ago", age / 86_400),
    }
}

fn micros(value: u64) -> String {
    match value {
        0..1000 => format!("{value} µs"),
        1000..1_000_000 => format!("{:.1} ms", value as f64 / 1e3),
        _ => format!("{:.1} s", value as f64 / 1e6),
    }
}

/// How long `hitsave push` waits with nothing moving (no record done, no
/// byte taken) before it stops and says what is left.
const PUSH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// A progress bar on a terminal: of `total` items, or bytes when `bytes`.
fn progress_bar(total: u64, what: &str, bytes: bool) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() || total < 2 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    let template = if bytes {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})"
    } else {
        "{msg} [{bar:30}] {pos}/{len} ({eta})"
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    Some(bar)
}

fn execute(cli: &Cli) -> Result<(), HitSaveError> {
    if let Some(result) = execute_cloud(cli) {
        return result;
    }
    let json = cli.global.json;
    let store = open(&cli.global)?;
    match &cli.command {
        Command::Ls { function: None } => {
            let functions = store.functions()?;
            if json {
                print_json(&functions);
            } else if functions.is_empty() {
                outln!("no stored results in {}", store.path().display());
            } else {
                outln!(
                    "{:<40} {:>8} {:>10} {:>8} {:<12} LANGUAGES",
                    "FUNCTION",
                    "RESULTS",
                    "SIZE",
                    "HITS",
                    "LAST USED"
                );
                for function in functions {
                    outln!(
                        "{:<40} {:>8} {:>10} {:>8} {:<12} {}",
                        function.function_name,
                        function.evals,
                        human_size(function.size),
                        function.hits,
                        ago(function.last_access),
                        function.languages.join(",")
                    );
                }
            }
        }
        Command::Ls { function: Some(name) } => {
            let evals = store.evals(Some(name))?;
            if evals.is_empty() && !json {
                return Err(HitSaveError::NotFound(format!("no results for {name:?}; `hitsave ls` lists functions")));
            }
            if json {
                print_json(&evals);
            } else {
                outln!("{:<22} {:>10} {:>10} {:>6} {:<12} CODEC", "KEY", "SIZE", "COMPUTE", "HITS", "LAST USED");
                for eval in evals {
                    outln!(
                        "{:<22} {:>10} {:>10} {:>6} {:<12} {}",
                        format!("{}…", &eval.key[..20.min(eval.key.len())]),
                        human_size(eval.size),
                        micros(eval.compute_micros),
                        eval.hits,
                        ago(eval.last_access),
                        eval.codec
                    );
                }
            }
        }
        Command::Show { key } => {
            let record = find_record(&store, key)?;
            if json {
                print_json(&record);
            } else {
                print_record(&record);
            }
        }
        Command::Why { function } => {
            let core = Core::shared()?;
            let report = store.why(core, function)?;
            if json {
                print_json(&report);
            } else {
                outln!("{}", report.function_name);
                match &report.current {
                    Some(current) => outln!("  current code: {current}"),
                    None => outln!("  current code: not recorded yet (run the function once)"),
                }
                for group in &report.stored {
                    let label = group.graph.as_deref().unwrap_or("(no dependency graph recorded)");
                    if group.current {
                        outln!("  {} result(s) under {label}: current, these can hit", group.evals);
                    } else if group.changes.is_empty() {
                        outln!("  {} result(s) under {label}: code differs (graph not comparable)", group.evals);
                    } else {
                        outln!("  {} result(s) under {label}: stale because", group.evals);
                        for (node, change) in &group.changes {
                            outln!("    {change:<12} {node}");
                        }
                    }
                }
                if let Some(declined) = &report.declined {
                    outln!(
                        "  not stored by the cache policy: a result of {} computed in {} µs ({}), {}",
                        human_size(declined.size),
                        declined.compute_micros,
                        declined.reason,
                        ago(declined.at)
                    );
                }
            }
        }
        Command::Stats => {
            let stats = store.stats()?;
            if json {
                print_json(&stats);
            } else {
                print_stats(&stats);
            }
        }
        Command::Gc { max_size } => {
            let core = Core::shared()?;
            let report = store.gc(core, *max_size)?;
            if json {
                print_json(&report);
            } else {
                outln!(
                    "evicted {} result(s) ({}); removed {} orphan blob(s) and {} stale temp file(s)",
                    report.evicted,
                    human_size(report.evicted_bytes),
                    report.orphan_blobs,
                    report.stale_temp_files
                );
            }
        }
        Command::Clear { function, all } => {
            let removed = store.clear(if *all { None } else { function.as_deref() })?;
            if json {
                print_json(&serde_json::json!({"removed": removed}));
            } else {
                outln!("removed {removed} result(s)");
            }
        }
        Command::Verify => {
            let total = store.stats()?.evals;
            let bar = if json { None } else { progress_bar(total, "verifying", false) };
            let report = store.verify(|done, _| {
                if let Some(bar) = &bar {
                    bar.set_position(done);
                }
            })?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            if json {
                print_json(&report);
            } else {
                outln!("checked {} result(s); {} corrupt", report.checked, report.corrupt.len());
                for key in &report.corrupt {
                    outln!("  removed {key}");
                }
            }
        }
        // Handled by execute_cloud before the store is opened.
        Command::Push { .. }
        | Command::Pull { .. }
        | Command::Login { .. }
        | Command::Keys { .. }
        | Command::Serve(_) => {}
    }
    Ok(())
}

fn find_record(store: &Store, key: &str) -> Result<EvalRecord, HitSaveError> {
    if let Some(record) = store.record(key)? {
        return Ok(record);
    }
    let matches: Vec<EvalRecord> =
        store.evals(None)?.into_iter().filter(|record| record.key.starts_with(key)).collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().expect("one match")),
        0 => Err(HitSaveError::NotFound(format!("no stored result with key {key:?}"))),
        n => Err(HitSaveError::NotFound(format!("{n} keys start with {key:?}; give more of it"))),
    }
}

fn print_record(record: &EvalRecord) {
    outln!("key           {}", record.key);
    outln!("function      {} ({})", record.function_name, record.language);
    outln!("identity      {}", record.function_id);
    outln!("arguments     {}", record.arguments);
    outln!(
        "result        {} ({}, {}, {})",
        record.result,
        human_size(record.size),
        record.codec,
        if record.inline { "inline" } else { "blob" }
    );
    outln!("computed in   {}", micros(record.compute_micros));
    outln!("created       {}", ago(record.created));
    outln!("last used     {}", ago(record.last_access));
    outln!("hits          {}", record.hits);
    if let Some(graph) = &record.graph {
        outln!("code          {graph}");
    }
}

fn print_stats(stats: &Stats) {
    outln!("store         {}", stats.path.display());
    outln!("results       {} in {} function(s)", stats.evals, stats.functions);
    outln!("size          {} of {} budget", human_size(stats.size), human_size(stats.max_size));
    outln!("  inline      {}", human_size(stats.inline_size));
    outln!("  blobs       {} file(s), {}", stats.blobs, human_size(stats.blob_bytes));
    outln!("hits          {}", stats.hits);
    outln!("evictions     {}", stats.evictions);
    outln!("schema        v{}", stats.schema_version);
}
