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
        stdin_tty: std::io::stdin().is_terminal(),
        exiting: true,
    };
    ExitCode::from(portcullis_linter::cli::run(std::env::args_os(), &mut io))
}
