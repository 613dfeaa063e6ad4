//! `weir`: the telemetry pipeline's one binary.
//!
//! - `weir serve`: the collector on its embedded store.
//! - `weir ls [PREFIX]`, `weir cat PATH`: read streams from a running collector.

use clap::{Parser, Subcommand};

mod cmd;
mod config_file;

/// weir: capture, keep and serve logs, metrics and events as numbered streams.
#[derive(Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector: ingest bundles and Loggregator envelopes, store them, serve them.
    Serve(cmd::serve::ServeArgs),
    /// List streams under a path prefix.
    Ls(cmd::read::LsArgs),
    /// Print a stream's entries.
    Cat(cmd::read::CatArgs),
    /// TLS helpers: `weir tls init DIR` writes a CA, a server pair and a client pair.
    #[command(subcommand)]
    Tls(cmd::tls::TlsCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => cmd::serve::run(args).await,
            Command::Ls(args) => cmd::read::ls(args).await,
            Command::Cat(args) => cmd::read::cat(args).await,
            Command::Tls(c) => cmd::tls::run(c),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` (e.g. `RUST_LOG=weir=debug`) sets the level: `info` by
/// default, `warn` for the storage engine's own chatter.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
