//! `shopscribe serve`: the HTTP API until SIGTERM or Ctrl-C.

use super::{App, Failure, note_offline, shutdown_signal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
    project: PathBuf,
    /// Address to listen on. Default: serve.bind (127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
}

pub async fn serve(args: ServeArgs) -> Result<ExitCode, Failure> {
    let app = App::load(&args.project)?;
    // Missing or malformed tokens are a set-up problem (exit 2), found before binding.
    crate::serve::auth::Auth::from_env().map_err(Failure::usage)?;
    note_offline(&app.project);
    // The service opens its own store and writer.
    let project = Arc::unwrap_or_clone(app.project);
    crate::serve::serve(project, args.bind, shutdown_signal())
        .await
        .map_err(Failure::run)?;
    Ok(ExitCode::SUCCESS)
}
