/// mimalloc: reviews build and drop many small objects next to a large long-lived cache, a
/// pattern where glibc malloc spent a third of each review (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis_webhook::cli::main()
}
