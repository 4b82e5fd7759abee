//! `hitsave-server`: serve the HitSave cloud, or create a project.
//!
//! ```text
//! hitsave-server serve --listen 127.0.0.1:8787 --data ./hitsave-server-data
//! hitsave-server create-project team --data ./hitsave-server-data
//! hitsave-server gc --retain 90d --data ./hitsave-server-data
//! ```
//!
//! Blobs go to an S3-compatible bucket when `HITSAVE_SERVER_S3_ENDPOINT` is
//! set (with `HITSAVE_SERVER_S3_BUCKET`, `HITSAVE_SERVER_S3_REGION`,
//! and credentials from the standard AWS chain); see docs/cloud.md.

use clap::{Parser, Subcommand};
use hitsave_server::create_project;

#[derive(Parser)]
#[command(name = "hitsave-server", version, about = "The HitSave cloud server (protocol /v1: server/openapi.json)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API until interrupted (SIGINT or SIGTERM).
    Serve(hitsave_server::command::ServeArgs),
    /// Run one retention and garbage-collection pass over the storage, then exit.
    Gc(hitsave_server::command::GcArgs),
    /// Create a project and print its first read-write API key.
    CreateProject {
        /// The project's name.
        name: String,
        #[command(flatten)]
        storage: hitsave_server::command::StorageArgs,
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
        Command::CreateProject { name, storage } => {
            let (metadata, _) = storage.open()?;
            let (_, key) = create_project(metadata.as_ref(), &name).map_err(|err| err.to_string())?;
            println!("{key}");
            Ok(())
        }
        Command::Serve(args) => hitsave_server::command::serve(&args),
        Command::Gc(args) => hitsave_server::command::gc(&args),
    }
}
