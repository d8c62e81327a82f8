//! `shopscribe worker`: work distributed runs from the PostgreSQL task queue; and the
//! distributed run of `run --workers N` / `plan --enqueue` (enqueue, then maybe work locally).

use super::summary::{exit_for, print_summary};
use super::{App, Failure};
use crate::run::RunOptions;
use crate::run::worker::{Enqueued, WorkerOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct WorkerArgs {
    #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
    project: PathBuf,
    /// The run to work on. Default: the oldest distributed run still running.
    #[arg(long)]
    run: Option<i64>,
    /// Only runs of this job.
    #[arg(long)]
    job: Option<String>,
    /// This worker's name in the queue. Default: host-pid-random.
    #[arg(long)]
    id: Option<String>,
}

pub async fn worker(args: WorkerArgs) -> Result<ExitCode, Failure> {
    let app = App::load(&args.project)?;
    let opts = WorkerOptions {
        id: args.id.unwrap_or_else(WorkerOptions::default_id),
        run: args.run,
        job: args.job,
    };
    let queue = app.queue().await?;
    let (store, provider) = app.store_and_provider().await?;
    let reports = crate::run::worker::work_until_idle(&app.project, store, provider, &queue, &opts)
        .await
        .map_err(Failure::run)?;
    if reports.is_empty() {
        println!(
            "No distributed run has work left for a worker{}: nothing to do. Queue one with `shopscribe run JOB --workers 0`.",
            opts.job
                .as_deref()
                .map(|j| format!(" (job `{j}`)"))
                .unwrap_or_default()
        );
    }
    let mut code = ExitCode::SUCCESS;
    for r in reports {
        println!(
            "Worker {} on run {} of `{}`: claimed {}, generated {}, failed {}.",
            opts.id, r.run_id, r.job, r.claimed, r.generated, r.failed
        );
        if let Some(s) = r.finished {
            println!("This worker finished the run:");
            print_summary(&s);
            if exit_for(&s) != ExitCode::SUCCESS {
                code = exit_for(&s);
            }
        }
    }
    Ok(code)
}

/// `run --workers N`: enqueue, then work with N local workers (each its own provider, so each
/// takes 1/N of the rate limit like separate processes would).
pub async fn distributed(
    app: &App,
    job: &str,
    opts: &RunOptions,
    n: usize,
    wait: bool,
) -> Result<ExitCode, Failure> {
    app.job(job)?;
    let queue = app.queue().await?;
    let (store, provider) = app.store_and_provider().await?;
    let e = crate::run::worker::enqueue(
        &app.project,
        job,
        store.as_ref(),
        provider.as_ref(),
        &queue,
        opts,
        wait,
    )
    .await
    .map_err(Failure::run)?;
    print_enqueued(job, &e);
    if n == 0 {
        println!(
            "Start workers anywhere with access to the store: shopscribe worker -p {}",
            app.project.dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut handles = Vec::new();
    for i in 0..n {
        let provider = app.new_provider()?;
        let (project, store, queue) = (app.project.clone(), store.clone(), queue.clone());
        let opts = WorkerOptions {
            id: format!("{}-{i}", WorkerOptions::default_id()),
            run: Some(e.run_id),
            job: None,
        };
        handles.push(tokio::spawn(async move {
            crate::run::worker::work(&project, store, provider, &queue, &opts).await
        }));
    }
    let mut code = ExitCode::SUCCESS;
    for h in handles {
        let r = h.await.map_err(Failure::run)?.map_err(Failure::run)?;
        if let Some(s) = r.finished {
            print_summary(&s);
            code = exit_for(&s);
        }
    }
    Ok(code)
}

fn print_enqueued(job: &str, e: &Enqueued) {
    println!(
        "Run {} of `{job}` queued: {} task(s) ({} entities, {} unchanged{}{}).",
        e.run_id,
        e.tasks,
        e.entities,
        e.skipped,
        if e.already_queued > 0 {
            format!(", {} already queued by a running run", e.already_queued)
        } else {
            String::new()
        },
        if e.pending > 0 {
            format!(", {} left for later by --limit", e.pending)
        } else {
            String::new()
        }
    );
}
