//! `outloop`: call approved actions against a client's services without holding the key.
//!
//! `main` parses the command line, calls the library and maps errors to one line on stderr
//! and an exit code: 0 ran, 1 internal error, 2 usage or config error, 3 denied by policy,
//! 4 backend error, 5 upstream unreachable, timed out or refused by a safety check.

#![allow(clippy::print_stdout, clippy::print_stderr)]

/// Prints one line to stdout. A closed pipe (`outloop … | head -1`) ends the process quietly
/// with exit code 0 instead of panicking, as command-line tools do.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($arg)*).and_then(|()| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// Prints one line to stderr; a closed stderr is ignored rather than a panic.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod agent_setup;
mod cli;
mod commands;
mod config_watch;
mod daemon;
mod doctor;
mod edit;
mod exec;
mod import;
mod mcp;
mod packs;
mod policy_test;
mod proxy;
mod scan;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help and version to stdout with exit 0, and usage errors with exit 2.
            let code = e.exit_code();
            let _ = e.print();
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    init_logging(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            errln!("outloop: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let json = cli.json_errors();
    let outcome = runtime.block_on(commands::run(cli));
    // Shutting down drops the tasks still running (a broker request dropped this way appends
    // its audit record as `cancelled`), then waits for blocking work. A read of stdin stays
    // blocked while the peer keeps it open (an MCP client that sent a signal instead of
    // closing it), so the wait is bounded; audit appends take milliseconds.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            errln!("outloop: {}", e.message());
            if json {
                let obj = serde_json::json!({
                    "error": { "kind": e.kind().as_str(), "message": e.message() }
                });
                outln!("{obj}");
            }
            ExitCode::from(u8::try_from(e.kind().exit_code()).unwrap_or(1))
        }
    }
}

/// Sends the libraries' warnings (`tracing`: a canary that cannot be fetched or searched for,
/// a keystore that fell back to the identity file) to stderr, filtered by `OUTLOOP_LOG`
/// (`tracing-subscriber` `EnvFilter` syntax, e.g. `warn` or `outloop_core=debug`).
///
/// Always on, at `warn`, for `outloop serve`: its stderr is the operator's log. For
/// `outloop mcp`, the MCP SDK's own errors only (`rmcp=error`: a message dropped for passing
/// its 16 MiB line limit, a broken pipe), which the agent host keeps in its server log. For
/// other commands only when `OUTLOOP_LOG` is set: an agent runs them, and a warning about a
/// canary would tell it where the tripwires are (`outloop doctor` reports them to the human).
fn init_logging(command: &cli::Command) {
    let default = match command {
        cli::Command::Serve { .. } => Some("warn"),
        cli::Command::Mcp { .. } => Some("rmcp=error"),
        _ => None,
    };
    let Some(filter) = std::env::var("OUTLOOP_LOG")
        .ok()
        .or_else(|| default.map(str::to_owned))
    else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}
