//! The `shopscribe` binary: parse the command line, set up logging, run the command, turn its
//! outcome into an exit code. The commands live in the library's `cli` module (`src/cli/`), the
//! work in the rest of the library.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use shopscribe::cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let format = args.log_format;
    cli::logging::init(format, args.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(cli::dispatch(args.command)) {
        Ok(code) => code,
        Err(failure) => {
            let code = failure.exit_code();
            cli::logging::report_error(format, failure.error(), code);
            ExitCode::from(code)
        }
    }
}
