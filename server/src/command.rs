//! `serve`: one definition of the command and its flags, for both
//! `hitsave-server serve` and `hitsave serve` (the `hitsave` of the Python
//! and Node packages too).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::{AppState, Limits, create_project, open_storage, s3_from_env};

/// Where the storage is, for every command that opens it (`serve`, `gc`,
/// `create-project`); blobs go to S3 when `HITSAVE_SERVER_S3_ENDPOINT` is set.
#[derive(clap::Args, Clone, Debug)]
pub struct StorageArgs {
    /// Directory of the embedded storage (SQLite metadata and blob files).
    #[arg(long, env = "HITSAVE_SERVER_DATA", default_value = "hitsave-server-data")]
    pub data: PathBuf,
    /// PostgreSQL for the metadata (postgres://user@host:port/db), so several servers can share it.
    #[arg(long, env = "HITSAVE_SERVER_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

impl StorageArgs {
    /// Opens the storage these flags name (an empty database URL means none).
    pub fn open(&self) -> Result<crate::Storage, String> {
        open_storage(&self.data, self.database_url.as_deref().filter(|url| !url.is_empty()), None, s3_from_env())
            .map_err(|err| err.to_string())
    }
}

/// Retention and collection, for `serve` and `gc`.
#[derive(clap::Args, Clone, Debug)]
pub struct PolicyArgs {
    /// Remove evals not looked up or stored for this long (`90d`, `12h`; unset: keep for ever).
    #[arg(long, env = "HITSAVE_SERVER_RETAIN", value_parser = humantime::parse_duration)]
    pub retain: Option<Duration>,
    /// Keep blobs no eval names this long after their last upload or use (then collect them).
    #[arg(long, env = "HITSAVE_SERVER_GC_GRACE", value_parser = humantime::parse_duration, default_value = "1day")]
    pub gc_grace: Duration,
}

impl PolicyArgs {
    /// The collector's policy.
    pub fn policy(&self) -> crate::gc::Policy {
        crate::gc::Policy { retain: self.retain, grace: self.gc_grace }
    }
}

/// The flags of `serve` (each also read from its environment variable).
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the line "listening on http://…" says which).
    #[arg(long, env = "HITSAVE_SERVER_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Where the storage is.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Largest blob accepted, in bytes.
    #[arg(long, env = "HITSAVE_SERVER_MAX_BLOB_SIZE", default_value_t = 8 << 30)]
    pub max_blob_size: u64,
    /// A token that may create projects with `POST /v1/projects` (unset: disabled).
    #[arg(long, env = "HITSAVE_SERVER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Bytes of blobs each project may hold (unset: no limit); an upload past it is 507 quota_exceeded.
    #[arg(long, env = "HITSAVE_SERVER_PROJECT_QUOTA")]
    pub project_quota: Option<u64>,
    /// Create this project first (if new) and print "project NAME: <its first API key>".
    #[arg(long, value_name = "NAME")]
    pub create_project: Option<String>,
    /// Retention and collection.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// How often to run a collection pass (`0s`: never; `hitsave-server gc` still can).
    #[arg(long, env = "HITSAVE_SERVER_GC_INTERVAL", value_parser = humantime::parse_duration, default_value = "1h")]
    pub gc_interval: Duration,
}

/// The flags of `gc`: the storage (as for `serve`) and the policy.
#[derive(clap::Args, Clone, Debug)]
pub struct GcArgs {
    /// Where the storage is.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Retention and collection.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// One retention and collection pass over the storage (see [`crate::gc`]);
/// prints what it removed.
pub fn gc(args: &GcArgs) -> Result<(), String> {
    let (metadata, blobs) = args.storage.open()?;
    let report =
        crate::gc::collect(metadata.as_ref(), blobs.as_ref(), &args.policy.policy()).map_err(|err| err.to_string())?;
    println!("{report}");
    Ok(())
}

/// Serves until SIGINT or SIGTERM (a container's stop, or PID 1 in one),
/// then stops gracefully. Prints the project line (with `--create-project`)
/// and "listening on http://…" on stdout, flushed, before serving.
pub fn serve(args: &ServeArgs) -> Result<(), String> {
    use std::io::Write;
    let (metadata, blobs) = args.storage.open()?;
    if let Some(name) = &args.create_project {
        match create_project(metadata.as_ref(), name) {
            Ok((_, key)) => println!("project {name}: {key}"),
            Err(err) if err.code == "conflict" => eprintln!("project {name} exists"),
            Err(err) => return Err(err.to_string()),
        }
    }
    let state = AppState {
        metadata,
        blobs,
        limits: Limits {
            max_blob_size: args.max_blob_size,
            project_quota: args.project_quota,
            gc: args.policy.policy(),
            gc_interval: Some(args.gc_interval).filter(|interval| !interval.is_zero()),
            ..Limits::default()
        },
        admin_token: args.admin_token.clone().map(Arc::from),
    };
    crate::observe::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|err| err.to_string())?;
    let listen = args.listen;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.map_err(|err| format!("cannot listen on {listen}: {err}"))?;
        let address = listener.local_addr().map_err(|err| err.to_string())?;
        println!("listening on http://{address}");
        let _ = std::io::stdout().flush();
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async {
                    match term.as_mut() {
                        Some(term) => {
                            term.recv().await;
                        }
                        None => std::future::pending().await,
                    }
                } => {}
            }
        };
        crate::serve(listener, state, shutdown).await.map_err(|err| err.to_string())
    })
}
