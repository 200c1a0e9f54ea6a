use std::process::ExitCode;

fn main() -> ExitCode {
    portcullis_sensor::cli::main()
}
