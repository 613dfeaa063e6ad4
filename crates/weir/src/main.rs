//! `weir`: the telemetry pipeline's one binary.
//!
//! - `weir serve`: the collector on its embedded store.
//! - `weir ls [PREFIX]`, `weir cat PATH`: read streams from a running collector.
//! - `weir events [--type T] [--since 10m] [-f]`: the collector's own events.
//! - `weir emit KIND …`: send one envelope; `weir tail`: live envelopes or a followed
//!   stream.

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
    /// Run the agent: read sources, send them to flushers (`--config agent.toml`).
    Agent(cmd::agent::AgentArgs),
    /// Send the agent's dead letters again once the cause is fixed (agent stopped).
    ReplayDeadLetters(cmd::agent::ReplayArgs),
    /// Run a command, streaming its stdout and stderr to the collector; exits with its code.
    Run(cmd::run::RunArgs),
    /// List streams under a path prefix.
    Ls(cmd::read::LsArgs),
    /// Print a stream's entries.
    Cat(cmd::read::CatArgs),
    /// Send one envelope (log, counter, gauge, timer or event) and wait until it is stored.
    #[command(subcommand)]
    Emit(cmd::emit::EmitCommand),
    /// Print live envelopes, or follow a stored stream (`-f PATH`) or prefix (`-f PREFIX/`).
    Tail(cmd::tail::TailArgs),
    /// The collector's own events: started, streams refused, drops, retention, pauses.
    Events(cmd::events::EventsArgs),
    /// TLS helpers: `weir tls init DIR` writes a CA, a server pair and a client pair.
    #[command(subcommand)]
    Tls(cmd::tls::TlsCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Agent(args) = &cli.command {
        builder.worker_threads(args.threads.get());
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => cmd::serve::run(args).await,
            Command::Agent(args) => cmd::agent::run(args).await,
            Command::ReplayDeadLetters(args) => cmd::agent::replay(args).await,
            Command::Run(args) => cmd::run::run(args).await,
            Command::Ls(args) => cmd::read::ls(args).await,
            Command::Cat(args) => cmd::read::cat(args).await,
            Command::Emit(c) => cmd::emit::run(c).await,
            Command::Tail(args) => cmd::tail::run(args).await,
            Command::Events(args) => cmd::events::run(args).await,
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
