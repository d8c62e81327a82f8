//! `shopscribe deliver`: objects that arrived in S3 (named, or in an event) are ingested into
//! the datasets whose `from` holds them, then every job reading those datasets runs.

use super::LOG_TARGET;
use super::logging::error_text;
use super::summary::print_summary;
use super::{App, Failure};
use crate::ingest::FileReport;
use crate::run::RunOptions;
use crate::serve::events::{self, RunRequest};
use crate::store::RunStatus;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DeliverArgs {
    #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
    project: PathBuf,
    /// Objects as s3://BUCKET/KEY (the key as stored, not URL-encoded).
    #[arg(value_name = "URI")]
    objects: Vec<String>,
    /// The bucket of one object (an EventBridge event's detail.bucket.name); with --key.
    #[arg(long, requires = "key")]
    bucket: Option<String>,
    /// The object's key as stored (detail.object.key); with --bucket.
    #[arg(long, requires = "bucket")]
    key: Option<String>,
    /// An S3 event notification or an EventBridge event, as JSON text (`-` reads stdin).
    #[arg(long, value_name = "JSON")]
    event: Option<String>,
}

pub async fn deliver(args: DeliverArgs) -> Result<ExitCode, Failure> {
    let app = App::load(&args.project)?;
    let mut uris = args.objects;
    if let (Some(b), Some(k)) = (args.bucket, args.key) {
        uris.push(format!("s3://{b}/{k}"));
    }
    let from_event = args.event.is_some();
    if let Some(text) = args.event {
        match event_request(text)? {
            RunRequest::Objects(u) => uris.extend(u),
            RunRequest::Test => {}
            RunRequest::Job(j) => {
                return Err(Failure::bad_usage(format!(
                    "--event names a job, not objects: use `shopscribe run {j}`"
                )));
            }
        }
    }
    if uris.is_empty() {
        if from_event {
            println!("Nothing to ingest: the event names no created object.");
            return Ok(ExitCode::SUCCESS);
        }
        return Err(Failure::bad_usage(
            "name the objects: s3://BUCKET/KEY, --bucket and --key, or --event JSON",
        ));
    }
    ingest_and_run(&app, &uris).await
}

/// `--event JSON` (or `-` for stdin) read as `POST /v1/runs` reads its body.
fn event_request(text: String) -> Result<RunRequest, Failure> {
    let text = if text == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| Failure::bad_usage(format!("cannot read the event from stdin: {e}")))?
    } else {
        text
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure::bad_usage(format!("--event is not JSON: {e}")))?;
    events::parse(&value).map_err(Failure::bad_usage)
}

/// Ingests each object into the datasets whose `from` holds it, then runs every job reading
/// those datasets (as `POST /v1/runs` does with an event). The jobs run even when the ingest
/// failed or found every object already ingested: a delivery whose earlier job died between its
/// ingest and its run still gets its run, and a run whose inputs are unchanged makes no LLM call.
async fn ingest_and_run(app: &App, uris: &[String]) -> Result<ExitCode, Failure> {
    let (objects, jobs) = events::route(&app.project, uris);
    if objects.is_empty() {
        println!(
            "Ignored: no dataset's `from` holds {} (or the format is not ingestable).",
            uris.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = Vec::new();
    for (dataset, uri) in &objects {
        let ds = app.dataset(dataset)?;
        match crate::ingest::ingest(&app.project, ds, Some(uri)).await {
            Ok(reports) => print_delivered(dataset, &reports),
            Err(e) => {
                let e = error_text(&e);
                tracing::error!(target: LOG_TARGET, dataset, uri, error = %e, "ingesting a delivered object failed");
                failed.push(format!("{dataset}: {uri}: {e}"));
            }
        }
    }
    let mut code = ExitCode::SUCCESS;
    for job in &jobs {
        let summary = app.run_job(job, &RunOptions::default(), true).await?;
        print_summary(&summary);
        if !matches!(summary.status, RunStatus::Succeeded) {
            code = ExitCode::from(1);
        }
    }
    if !failed.is_empty() {
        let message = format!("ingesting failed: {}", failed.join("; "));
        return Err(Failure::Run(message.into()));
    }
    Ok(code)
}

/// What each file of one delivered object brought.
fn print_delivered(dataset: &str, reports: &[FileReport]) {
    for r in reports {
        if r.skipped {
            println!(
                "{dataset}: {}: already ingested with the same content; skipped",
                r.uri
            );
        } else {
            println!(
                "{dataset}: {}: {} lines, {} rejected; {} new, {} changed, {} unchanged",
                r.uri, r.lines, r.rejected, r.merge.inserted, r.merge.changed, r.merge.unchanged
            );
        }
    }
}
