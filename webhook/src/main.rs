fn main() -> std::process::ExitCode {
    portcullis_webhook::cli::main()
}
