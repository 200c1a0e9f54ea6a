//! What portcullis's long-running binaries (`portcullis-webhook`, `portcullis-sensor`) share:
//! logging to stderr, the async runtime with one error path, and the shutdown signals.
//!
//! Behind the `service` feature, which those two crates enable: the `portcullis` CLI and the
//! engine do not pay for a log subscriber or signal handling.

use std::future::Future;
use std::io::Write as _;
use std::process::ExitCode;

/// How logs are written (always to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Sets up logging: the `PORTCULLIS_LOG` filter (`info` by default), colour only on a terminal.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Runs `main` on a multi-threaded runtime (`workers` threads, or one per core) and turns its
/// result into the exit code; an error is logged and printed as `PROGRAM: error: …`.
pub fn run<F>(program: &str, workers: Option<usize>, main: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    let result = match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(main),
        Err(e) => Err(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            let _ = writeln!(std::io::stderr(), "{program}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM (what Kubernetes sends) or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}
