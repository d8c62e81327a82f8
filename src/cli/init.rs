//! `shopscribe init DIR`: the example project, without data, to edit.

use super::Failure;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct InitArgs {
    /// Folder to create; existing files are never overwritten.
    dir: PathBuf,
}

pub fn init(InitArgs { dir }: InitArgs) -> Result<ExitCode, Failure> {
    let written = crate::demo::write_project(&dir, false).map_err(|e| {
        Failure::usage(super::Context::new(
            format!("cannot write the project into {}", dir.display()),
            e,
        ))
    })?;
    println!(
        "Project in {}: wrote {} file(s){}.",
        dir.display(),
        written.len(),
        if written.len() < crate::demo::DOMAINS_PROJECT.len() {
            " (existing files kept)"
        } else {
            ""
        }
    );
    println!(
        "Next: point sql/domain_summaries.sql at your data, then `shopscribe plan domain_summaries -p {}`.",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
