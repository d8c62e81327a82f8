//! `shopscribe history JOB KEY`: every generated version of one entity's text.

use super::{App, Failure, parse_time};
use crate::store::{GenerationStatus, NewGeneration};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct HistoryArgs {
    job: String,
    /// The entity's key.
    key: String,
    #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
    project: PathBuf,
    /// Show the good version that was current at this time, in full.
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
    /// Print every version's prompt and output.
    #[arg(long)]
    full: bool,
}

pub async fn history(args: HistoryArgs) -> Result<ExitCode, Failure> {
    let app = App::load(&args.project)?;
    let as_of = parse_time(args.as_of)?;
    let (job, key) = (&args.job, &args.key);
    app.job(job)?;
    let versions = app
        .store()
        .await?
        .generations_of(job, key)
        .await
        .map_err(Failure::run)?;
    if versions.is_empty() {
        return Err(Failure::bad_usage(format!(
            "no generation of `{key}` in job `{job}`"
        )));
    }
    print_versions(job, key, &versions, args.full);
    if let Some(t) = as_of {
        print_online_as_of(&versions, &t);
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per version (with prompts and output under `--full`).
fn print_versions(job: &str, key: &str, versions: &[(NewGeneration, String)], full: bool) {
    println!("{} version(s) of `{key}` in `{job}`:", versions.len());
    println!(
        "  {:<24}  {:>5}  {:<8}  {:<32}  {:<22}  {:>6}  {:>6}  attempts",
        "created", "run", "status", "input hash", "provider / model", "in", "out"
    );
    for (g, at) in versions {
        println!(
            "  {at:<24}  {:>5}  {:<8}  {:<32}  {:<22}  {:>6}  {:>6}  {} {}",
            g.run_id,
            g.status.as_str(),
            g.input_hash,
            format!("{}/{}", g.provider, g.model),
            g.tokens_in,
            g.tokens_out,
            g.attempts,
            g.error
                .as_deref()
                .map(|e| format!("— {e}"))
                .unwrap_or_default()
        );
        if full {
            println!(
                "    system: {}\n    user:\n{}\n    output: {}\n",
                g.prompt_system,
                indent(&g.prompt_user),
                g.output.as_deref().unwrap_or("(none)")
            );
        }
    }
}

/// The good version that was current at `t`, in full.
fn print_online_as_of(versions: &[(NewGeneration, String)], t: &str) {
    let current = versions
        .iter()
        .rev()
        .find(|(g, at)| at.as_str() <= t && g.status == GenerationStatus::Ok);
    match current {
        Some((g, at)) => {
            println!(
                "\nOnline as of {t}: the version of {at} (run {}, input hash {}):",
                g.run_id, g.input_hash
            );
            println!("{}", g.output.as_deref().unwrap_or(""));
            println!("Prompt it was written from:\n{}", indent(&g.prompt_user));
        }
        None => println!("\nNo good version existed as of {t}."),
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
