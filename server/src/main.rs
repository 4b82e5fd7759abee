//! `hitsave-server`: serve the HitSave cloud, or create a project.
//!
//! ```text
//! hitsave-server serve --listen 127.0.0.1:8787 --data ./hitsave-server-data
//! hitsave-server create-project team --data ./hitsave-server-data
//! ```
//!
//! Blobs go to an S3-compatible bucket when `HITSAVE_SERVER_S3_ENDPOINT` is
//! set (with `HITSAVE_SERVER_S3_BUCKET`, `HITSAVE_SERVER_S3_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`); see docs/cloud.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use hitsave_server::{AppState, Limits, create_project, open_storage};

#[derive(Parser)]
#[command(name = "hitsave-server", version, about = "The HitSave cloud server (protocol /v1: server/openapi.json)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API until interrupted (SIGINT or SIGTERM).
    Serve {
        /// Address to listen on (port 0 picks a free one; the line "listening on http://…" says which).
        #[arg(long, env = "HITSAVE_SERVER_LISTEN", default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// Directory of the embedded storage (SQLite metadata and blob files).
        #[arg(long, env = "HITSAVE_SERVER_DATA", default_value = "hitsave-server-data")]
        data: PathBuf,
        /// Largest blob accepted, in bytes.
        #[arg(long, env = "HITSAVE_SERVER_MAX_BLOB_SIZE", default_value_t = 8 << 30)]
        max_blob_size: u64,
        /// A token that may create projects with `POST /v1/projects` (unset: disabled).
        #[arg(long, env = "HITSAVE_SERVER_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// PostgreSQL for the metadata (postgres://user@host:port/db), so several servers can share it.
        #[arg(long, env = "HITSAVE_SERVER_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Create a project and print its first read-write API key.
    CreateProject {
        /// The project's name.
        name: String,
        /// Directory of the embedded storage.
        #[arg(long, env = "HITSAVE_SERVER_DATA", default_value = "hitsave-server-data")]
        data: PathBuf,
        /// PostgreSQL for the metadata, as for `serve`.
        #[arg(long, env = "HITSAVE_SERVER_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hitsave-server: error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::CreateProject { name, data, database_url } => {
            let (metadata, _) = open_storage(
                &data,
                database_url.as_deref().filter(|url| !url.is_empty()),
                None,
                hitsave_server::s3_from_env(),
            )
            .map_err(|err| err.to_string())?;
            let (_, key) = create_project(metadata.as_ref(), &name).map_err(|err| err.to_string())?;
            println!("{key}");
            Ok(())
        }
        Command::Serve { listen, data, max_blob_size, admin_token, database_url } => {
            let (metadata, blobs) = open_storage(
                &data,
                database_url.as_deref().filter(|url| !url.is_empty()),
                None,
                hitsave_server::s3_from_env(),
            )
            .map_err(|err| err.to_string())?;
            let state = AppState {
                metadata,
                blobs,
                limits: Limits { max_blob_size, ..Limits::default() },
                admin_token: admin_token.map(Arc::from),
            };
            hitsave_server::observe::init_logging();
            let runtime =
                tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
                let address = listener.local_addr().map_err(|e| e.to_string())?;
                println!("listening on http://{address}");
                use std::io::Write;
                let _ = std::io::stdout().flush();
                let shutdown = async {
                    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = async { match term.as_mut() { Some(term) => { term.recv().await; } None => std::future::pending().await } } => {}
                    }
                };
                hitsave_server::serve(listener, state, shutdown).await.map_err(|e| e.to_string())
            })
        }
    }
}
