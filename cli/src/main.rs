//! The `hitsave` binary: see [`hitsave_cli::run`].

fn main() {
    std::process::exit(hitsave_cli::run(std::env::args_os()));
}
