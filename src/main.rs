//! The `shopscribe` binary. Everything it does is the library's `cli::main` (`src/cli/`): keeping
//! the binary's crate to this call keeps a clean build from compiling the command layer twice.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shopscribe::cli::main()
}
