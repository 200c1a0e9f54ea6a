//! `portcullis`: lint Kubernetes manifests for safe default-deny egress.

use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut io = portcullis_linter::cli::Io {
        stdin: &mut std::io::stdin().lock(),
        stdout: &mut stdout.lock(),
        stderr: &mut std::io::stderr().lock(),
        tty,
        stdin_tty: std::io::stdin().is_terminal(),
    };
    ExitCode::from(portcullis_linter::cli::run(std::env::args_os(), &mut io))
}
