//! `shopscribe watch`: poll the delivery locations; on new data, ingest it and run its jobs.

use super::LOG_TARGET;
use super::{App, Failure, shutdown_signal};
use crate::watch::{Poll, Watcher};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct WatchArgs {
    #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
    project: PathBuf,
    /// Seconds between polls. Default: watch.interval_seconds (60).
    #[arg(long, value_name = "SECONDS")]
    interval: Option<f64>,
    /// Poll once and exit (1 if something failed).
    #[arg(long)]
    once: bool,
}

pub async fn watch(args: WatchArgs) -> Result<ExitCode, Failure> {
    let app = App::load(&args.project)?;
    let interval = match args.interval {
        Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
        Some(_) => {
            return Err(Failure::bad_usage(
                "--interval must be a positive number of seconds",
            ));
        }
        None => app.project.watch.interval,
    };
    let (store, provider) = app.store_and_provider().await?;
    let watcher = Watcher::new(app.project.clone(), store, provider);
    if args.once {
        let p = watcher.poll().await;
        print_poll(&p);
        for e in &p.errors {
            tracing::error!(target: LOG_TARGET, "{e}");
        }
        return Ok(if p.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    watcher.run_forever(interval, shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

fn print_poll(p: &Poll) {
    println!(
        "ingested: {}; data version changed: {}; runs: {}; busy elsewhere: {}",
        if p.ingested.is_empty() {
            "nothing".to_string()
        } else {
            p.ingested.join(", ")
        },
        p.version_changed,
        p.runs
            .iter()
            .map(|r| format!("{} #{} {}", r.job, r.run_id, r.status.as_str()))
            .collect::<Vec<_>>()
            .join(", "),
        p.busy.join(", ")
    );
}
