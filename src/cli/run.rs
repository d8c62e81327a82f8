//! `shopscribe run JOB`: one run of a job under its lock, or a distributed run (`--workers`).

use super::summary::{exit_for, print_summary};
use super::{App, Failure, parse_time};
use crate::run::RunOptions;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Job name, as in `[jobs.NAME]`.
    job: String,
    /// Project folder holding shopscribe.toml.
    #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
    project: PathBuf,
    /// Generate at most N entities; the rest stay pending for the next run.
    #[arg(long)]
    limit: Option<usize>,
    /// Regenerate entities whose inputs did not change.
    #[arg(long)]
    force: bool,
    /// Refuse to start when the estimated cost (USD) is above this, and stop cleanly when
    /// the actual spend reaches it; the rest stays pending for the next run.
    #[arg(long, value_name = "USD")]
    max_cost: Option<f64>,
    /// Bound to `:as_of` in the job's SQL (2026-11-01 or RFC 3339). Default: now.
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
    /// Distributed run (PostgreSQL store): plan the work into the task queue; 0 only enqueues
    /// (start `shopscribe worker` processes anywhere), N also works it with N local workers.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Accept a source that would remove more of the job's published pages than
    /// publish.max_shrink_share allows (default 50 %), or that returns no entities at all.
    /// Without it such a run fails before spending anything and removes nothing.
    #[arg(long)]
    allow_shrink: bool,
    /// When another process is running this job (the API, `watch`, a distributed run,
    /// another `run`), exit at once (exit 1, naming it) instead of waiting for it.
    #[arg(long)]
    no_wait: bool,
}

pub async fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let as_of = parse_time(args.as_of)?;
    let app = App::load(&args.project)?;
    let opts = RunOptions {
        limit: args.limit,
        force: args.force,
        progress: args.workers.is_none(),
        max_cost: args.max_cost,
        as_of,
        allow_shrink: args.allow_shrink,
    };
    let wait = !args.no_wait;
    if let Some(n) = args.workers {
        return super::worker::distributed(&app, &args.job, &opts, n, wait).await;
    }
    let summary = app.run_job(&args.job, &opts, wait).await?;
    print_summary(&summary);
    Ok(exit_for(&summary))
}
