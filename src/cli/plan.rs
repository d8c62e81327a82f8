//! `shopscribe plan JOB`: what a run would do and cost, before anything is spent; `--enqueue`
//! also puts the work into the task queue as a distributed run.

use super::summary::print_checks;
use super::{App, Failure, parse_time};
use crate::config::{Job, format_usd};
use crate::llm::Provider;
use crate::plan::{Estimate, Plan};
use crate::run::RunOptions;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct PlanArgs {
    job: String,
    #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
    project: PathBuf,
    /// Plan as if every entity had to be regenerated.
    #[arg(long)]
    force: bool,
    /// Bound to `:as_of` in the job's SQL. Default: now.
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
    /// Also put the work into the task queue as a distributed run (PostgreSQL store).
    #[arg(long)]
    enqueue: bool,
    /// Plan as `run --allow-shrink` would (see `run --help`).
    #[arg(long)]
    allow_shrink: bool,
}

pub async fn plan(args: PlanArgs) -> Result<ExitCode, Failure> {
    let app = App::load(&args.project)?;
    let as_of = parse_time(args.as_of)?;
    let code = show_plan(
        &app,
        &args.job,
        args.force,
        as_of.clone(),
        args.allow_shrink,
    )
    .await?;
    if args.enqueue {
        let opts = RunOptions {
            force: args.force,
            as_of,
            allow_shrink: args.allow_shrink,
            ..Default::default()
        };
        return super::worker::distributed(&app, &args.job, &opts, 0, true).await;
    }
    Ok(code)
}

/// Prints the plan and its estimate; exit 1 when a run would refuse the source.
async fn show_plan(
    app: &App,
    job_name: &str,
    force: bool,
    as_of: Option<String>,
    allow_shrink: bool,
) -> Result<ExitCode, Failure> {
    let project = &app.project;
    let job = app.job(job_name)?;
    let (store, provider) = app.store_and_provider().await?;
    let as_of = as_of.unwrap_or_else(crate::store::now_text);
    let plan = crate::run::plan_job_as_of(
        project,
        job,
        store.as_ref(),
        provider.as_ref(),
        force,
        &as_of,
    )
    .await
    .map_err(Failure::run)?;
    let est = crate::plan::estimate_work(
        project,
        job,
        &plan,
        &plan.work,
        provider.as_ref(),
        store.as_ref(),
    )
    .await
    .map_err(Failure::run)?;
    print_plan(job, &plan, &est, provider.as_ref(), force);
    // What a run would refuse (an empty or collapsed source, another project's folder) is
    // told here, before anything is spent; exit 1 as the run would.
    let policy = crate::run::shrink_policy(project, allow_shrink);
    if let Err(e) = crate::run::check_source_before_generating(
        project,
        job,
        &plan.entities,
        store.as_ref(),
        policy,
    )
    .await
    {
        println!("A run would fail: {}", crate::error::Chain(&e));
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(job: &Job, plan: &Plan, est: &Estimate, provider: &dyn Provider, force: bool) {
    println!(
        "Plan for `{}` ({} entities, writer {} / {}):",
        job.name,
        plan.entities.len(),
        provider.name(),
        provider.model()
    );
    println!("  new        {:>8}", plan.new);
    println!("  changed    {:>8}", plan.changed);
    println!("  retry      {:>8}  (last attempt failed)", plan.retry);
    println!(
        "  unchanged  {:>8}{}",
        plan.unchanged,
        if force {
            "  (regenerated: --force)"
        } else {
            ""
        }
    );
    println!("  to write   {:>8}", plan.work.len());
    print_checks(&plan.entities.checks);
    for n in plan.entities.non_numeric() {
        println!("Warning: {n}.");
    }
    println!(
        "Estimated tokens: {} prompt + {} output ({}).",
        est.prompt_tokens,
        est.output_tokens,
        if est.output_from_history {
            "output from this job's average so far"
        } else {
            "output at the max_output_tokens budget: an upper bound"
        }
    );
    match est.cost_usd {
        Some(c) => println!("Estimated cost: {}", format_usd(c)),
        None => println!(
            "Estimated cost: unknown (add [llm.prices.\"{}\"] with input/output USD per 1M tokens)",
            provider.model()
        ),
    }
}
