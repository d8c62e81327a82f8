//! `shopscribe report [RUN]`: a run's report as a self-contained HTML page and its JSON.

use super::{App, Failure};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Run id. Default: the latest run.
    run: Option<i64>,
    #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
    project: PathBuf,
    /// Folder for report-RUN.html and report-RUN.json. Default: PROJECT/reports.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub async fn report(args: ReportArgs) -> Result<ExitCode, Failure> {
    let app = App::load(&args.project)?;
    let store = app.store().await?;
    let Some((data, page)) = crate::report::report(store.as_ref(), args.run)
        .await
        .map_err(Failure::run)?
    else {
        return Err(Failure::bad_usage(format!(
            "no such run in {}",
            app.project.store_url
        )));
    };
    let dir = args.out.unwrap_or_else(|| app.project.dir.join("reports"));
    std::fs::create_dir_all(&dir).map_err(Failure::run)?;
    let id = data["run"]["id"].as_i64().unwrap_or(0);
    let html = dir.join(format!("report-{id}.html"));
    std::fs::write(&html, page).map_err(Failure::run)?;
    std::fs::write(
        dir.join(format!("report-{id}.json")),
        serde_json::to_vec_pretty(&data).unwrap_or_default(),
    )
    .map_err(Failure::run)?;
    println!("Report of run {id}: {}", html.display());
    Ok(ExitCode::SUCCESS)
}
