//! `shopscribe ingest DATASET`: raw deliveries into bronze and silver; `--rejects`, `--files`
//! and `--bronze ID` read back what was recorded.

use super::{App, Failure};
use crate::config::Dataset;
use crate::ingest::db::IngestDb;
use crate::ingest::{FileReport, IngestError};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct IngestArgs {
    dataset: String,
    #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
    project: PathBuf,
    /// A folder or file to read instead of the dataset's `from`.
    #[arg(long, value_name = "URI")]
    from: Option<String>,
    /// List rejected lines (newest files first) instead of ingesting.
    #[arg(long)]
    rejects: bool,
    /// List the files recorded for the dataset (id, status, lines, rejects, URI) instead of
    /// ingesting.
    #[arg(long, conflicts_with_all = ["rejects", "bronze"])]
    files: bool,
    /// Print the lines of recorded file ID exactly as delivered (from bronze), instead of
    /// ingesting: `--bronze 3 > replay.jsonl`.
    #[arg(long, value_name = "ID", conflicts_with = "rejects")]
    bronze: Option<i64>,
    /// How many rejected lines to list.
    #[arg(long, default_value_t = 50)]
    limit: i64,
}

pub async fn ingest(args: IngestArgs) -> Result<ExitCode, Failure> {
    let app = App::load(&args.project)?;
    let ds = app.dataset(&args.dataset)?;
    let store_url = &app.project.store_url;
    if args.files {
        return list_files(store_url, &ds.name, args.limit).await;
    }
    if let Some(id) = args.bronze {
        return print_bronze(store_url, &ds.name, id).await;
    }
    if args.rejects {
        return list_rejects(store_url, &ds.name, args.limit).await;
    }
    crate::ingest::show_progress(true);
    ingest_files(&app, ds, args.from.as_deref()).await
}

/// Ingests the dataset's files (or those at `from`) and prints what each brought.
async fn ingest_files(app: &App, ds: &Dataset, from: Option<&str>) -> Result<ExitCode, Failure> {
    let (reports, failure) = match crate::ingest::ingest(&app.project, ds, from).await {
        Ok(reports) => (reports, None),
        // Some files failed: the others' outcomes are shown, then the failures.
        Err(e @ IngestError::Files { .. }) => {
            let IngestError::Files { reports, .. } = &e else {
                unreachable!()
            };
            (reports.clone(), Some(e))
        }
        Err(e) => return Err(Failure::run(e)),
    };
    for r in &reports {
        print_file(r);
    }
    if let Some(e) = failure {
        return Err(Failure::run(e));
    }
    if reports.is_empty() {
        println!(
            "No data files (.jsonl, .ndjson, .json, .csv, optionally .gz) at {}",
            from.unwrap_or(&ds.from)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_file(r: &FileReport) {
    if r.skipped {
        println!("{}: already ingested with the same content; skipped", r.uri);
        return;
    }
    let m = &r.merge;
    let blank = if r.blank > 0 {
        format!(" ({} blank, skipped)", r.blank)
    } else {
        String::new()
    };
    println!(
        "{}: {} lines{blank}, {} rejected; {} new, {} changed, {} unchanged, {} duplicates, {} stale, {} deleted",
        r.uri,
        r.lines,
        r.rejected,
        m.inserted,
        m.changed,
        m.unchanged,
        m.duplicates,
        m.stale,
        m.deleted
    );
}

/// `--rejects`: the rejected and skipped lines with their reasons, newest files first.
async fn list_rejects(store_url: &str, dataset: &str, limit: i64) -> Result<ExitCode, Failure> {
    let db = IngestDb::connect(store_url).await.map_err(Failure::run)?;
    let rows = db.rejects(dataset, limit).await.map_err(Failure::run)?;
    println!(
        "{} rejected or skipped line(s) shown (at most {limit}):",
        rows.len()
    );
    for r in rows {
        // Shown, not stored: control characters (a NUL, an escape) as their codes.
        let raw: String = String::from_utf8_lossy(&r.raw)
            .chars()
            .take(120)
            .flat_map(|c| {
                if c.is_control() && c != '\t' {
                    c.escape_unicode().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect();
        let kind = if r.kind == "skipped" { "skipped: " } else { "" };
        println!("{}:{}: {kind}{}\n    {raw}", r.uri, r.line_no, r.reason);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--files`: the files recorded for the dataset.
async fn list_files(store_url: &str, dataset: &str, limit: i64) -> Result<ExitCode, Failure> {
    let db = IngestDb::connect(store_url).await.map_err(Failure::run)?;
    let files = db.files(dataset, limit).await.map_err(Failure::run)?;
    println!(
        "{:>6}  {:<8} {:>10} {:>9}  uri",
        "id", "status", "lines", "rejected"
    );
    for f in files {
        println!(
            "{:>6}  {:<8} {:>10} {:>9}  {}",
            f.id, f.status, f.lines, f.rejected, f.uri
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--bronze ID`: one file's lines exactly as delivered, on stdout.
async fn print_bronze(store_url: &str, dataset: &str, id: i64) -> Result<ExitCode, Failure> {
    use crate::store::StoreError;
    use std::io::Write;
    let db = IngestDb::connect(store_url).await.map_err(Failure::run)?;
    if db.file(dataset, id).await.map_err(Failure::run)?.is_none() {
        return Err(Failure::bad_usage(format!(
            "no file {id} recorded for dataset `{dataset}`; `shopscribe ingest {dataset} --files` lists them"
        )));
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // Each item's bytes as delivered, its line end included.
    let written = db.bronze_lines(id, |_, raw| out.write_all(raw)).await;
    match written.and_then(|_| {
        out.flush()
            .map_err(|e| StoreError::Query(sqlx::Error::Io(e)))
    }) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `| head`: the reader went away; not an error.
        Err(StoreError::Query(sqlx::Error::Io(e)))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(Failure::run(e)),
    }
}
