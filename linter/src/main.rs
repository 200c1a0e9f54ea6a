//! `portcullis`: lint Kubernetes manifests for safe default-deny egress.

use std::io::IsTerminal;

/// mimalloc: a lint run allocates hundreds of thousands of small strings and maps and keeps most
/// of them to the end; glibc's allocator spends a fifth of such a run consolidating and
/// unlinking chunks (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

fn main() -> ExitCode {
    let stdout = std::io::stdout();
    // Colour also depends on --color, NO_COLOR and CLICOLOR_FORCE: decided in `cli::run`.
    let tty = stdout.is_terminal();
    let mut io = portcullis_linter::cli::Io {
        stdin: &mut std::io::stdin().lock(),
        stdout: &mut stdout.lock(),
        stderr: &mut std::io::stderr().lock(),
        tty,
        version: version(),
        width: if tty { terminal_width() } else { None },
        stdin_tty: std::io::stdin().is_terminal(),
        exiting: true,
    };
    ExitCode::from(portcullis_linter::cli::run(std::env::args_os(), &mut io))
}

/// The terminal's width: `COLUMNS`, else what `stty size` says of the controlling terminal
/// (no `ioctl` here: the crate forbids `unsafe`); `None` when neither answers.
fn terminal_width() -> Option<usize> {
    let sane = |n: usize| (20..=1000).contains(&n).then_some(n);
    if let Some(columns) = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse().ok()) {
        return sane(columns);
    }
    let tty = std::fs::File::open("/dev/tty").ok()?;
    let out =
        std::process::Command::new("stty").arg("size").stdin(tty).stderr(std::process::Stdio::null()).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    sane(text.split_whitespace().nth(1)?.parse().ok()?)
}

/// `--version`: the release and the commit, from `PORTCULLIS_COMMIT` at build time (the
/// README's install command, the action and the images set it). Read by the binary only, and
/// not from a build script: a build script that follows git HEAD rebuilds the library, and
/// everything above it, on every commit.
fn version() -> &'static str {
    match option_env!("PORTCULLIS_COMMIT") {
        Some(commit) => Box::leak(format!("{} ({commit})", env!("CARGO_PKG_VERSION")).into_boxed_str()),
        None => concat!(env!("CARGO_PKG_VERSION"), " (commit unknown: built without PORTCULLIS_COMMIT)"),
    }
}
