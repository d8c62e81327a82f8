//! The `shopscribe` command line: parsing and dispatch only; the work lives in the library.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use shopscribe::config::{self, Project};
use shopscribe::run::{RunOptions, RunSummary};
use shopscribe::store::RunStatus;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "shopscribe",
    version,
    about = "Turns e-commerce performance data into published, SEO-ready text, one page per entity.",
    long_about = "Turns e-commerce performance data into published, SEO-ready text, one page per entity, \
and keeps it current: only entities whose inputs changed are sent to the writer again.",
    after_help = "Examples:\n  shopscribe demo                       # sample data, offline writer, site in ./shopscribe-demo/site\n  shopscribe init my-project            # scaffold a project to edit\n  shopscribe plan domain_summaries -p my-project\n  shopscribe run domain_summaries -p my-project --limit 50\n  shopscribe history domain_summaries northwear.com -p my-project\n\nExit codes: 0 ok, 1 the run failed or left entities failed/pending, 2 bad usage or configuration."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    /// More detail in logs (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline on generated sample data: no server, no API key needed.
    #[command(
        after_help = "Examples:\n  shopscribe demo\n  shopscribe demo --dir /tmp/demo --domains 2000\n\nWrites the example project into DIR, generates sample data into DIR/shopscribe.db, runs the\n`domain_summaries` job and publishes the site to DIR/site. Running it again regenerates the\nsample data (same seed, same data) and therefore generates nothing new."
    )]
    Demo {
        /// Folder for the project, its store and its site.
        #[arg(long, default_value = "shopscribe-demo")]
        dir: PathBuf,
        /// Number of sample domains.
        #[arg(long, default_value_t = 500)]
        domains: usize,
        /// Seed of the sample data generator.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Scaffold the example project (config, SQL, prompts, schema) without data.
    #[command(
        after_help = "Example:\n  shopscribe init my-project && $EDITOR my-project/shopscribe.toml"
    )]
    Init {
        /// Folder to create; existing files are never overwritten.
        dir: PathBuf,
    },
    /// Generate and publish the texts of a job: only entities whose inputs changed.
    #[command(
        after_help = "Examples:\n  shopscribe run domain_summaries\n  shopscribe run domain_summaries --project ./my-project --limit 100\n  shopscribe run domain_summaries --force   # regenerate everything"
    )]
    Run {
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
    },
    /// Show what a run would do: new, changed and unchanged entities and a token estimate.
    #[command(after_help = "Example:\n  shopscribe plan domain_summaries --project ./my-project")]
    Plan {
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
    },
    /// Ingest raw deliveries (JSON lines, JSON arrays, CSV; gzip too) of a dataset: bronze with
    /// rejects and their reasons, silver with full SCD2 history.
    #[command(
        after_help = "Examples:\n  shopscribe ingest reviews                      # every file in the dataset's folder\n  shopscribe ingest reviews --from ./incoming    # another folder or one file\n  shopscribe ingest reviews --rejects            # the rejected lines and why\n  shopscribe ingest reviews --files              # the files recorded, with their ids\n  shopscribe ingest reviews --bronze 3 > f.jsonl # file 3's lines exactly as delivered\n\nA file already ingested with the same content is skipped. The command fails (exit 1) when a\nfile's rejected share is above datasets.NAME.max_reject_share; its lines are kept all the same."
    )]
    Ingest {
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
    },
    /// Ingest objects that arrived in S3 and run the jobs that read their datasets: what
    /// `POST /v1/runs` does with an S3 or EventBridge event, as one command (the AWS Batch job
    /// that an EventBridge "Object Created" rule submits, see deploy/aws).
    #[command(
        after_help = "Examples:\n  shopscribe deliver --bucket raw-deliveries --key reviews/2026-12/part-1.jsonl\n  shopscribe deliver s3://raw-deliveries/reviews/2026-12/part-1.jsonl\n  shopscribe deliver --event \"$(cat event.json)\"   # an S3 event notification or EventBridge event\n\nObjects outside every dataset's `from` are ignored (exit 0). An object already ingested with the\nsame content (a notification delivered twice, or late) is skipped, and the runs that follow find\nthe inputs unchanged: no LLM call. The jobs reading the datasets run even when the ingest fails\nor finds nothing new. Exit 1 when an ingest or a run failed."
    )]
    Deliver {
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
    },
    /// Work a distributed run: claim tasks from the PostgreSQL queue until none is left.
    #[command(
        after_help = "Examples:\n  shopscribe run domain_summaries --workers 0      # plan into the queue\n  for i in 1 2 3 4; do shopscribe worker & done; wait\n\nA worker that dies loses nothing: its tasks return to the queue when its lease lapses\n(workers.lease_seconds). The last worker out publishes the site and finishes the run."
    )]
    Worker {
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
    },
    /// Write a run's report: a self-contained HTML page and its JSON (throughput, latency,
    /// attempts and error classes, tokens and cost, failed entities with reasons).
    #[command(
        after_help = "Examples:\n  shopscribe report            # the latest run\n  shopscribe report 42 --out /tmp/reports"
    )]
    Report {
        /// Run id. Default: the latest run.
        run: Option<i64>,
        #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
        project: PathBuf,
        /// Folder for report-RUN.html and report-RUN.json. Default: PROJECT/reports.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Serve the HTTP API: on-demand insights, run requests (also S3 / EventBridge events),
    /// run status, /healthz, /readyz, /metrics and /openapi.json.
    #[command(
        after_help = "Examples:\n  export SHOPSCRIBE_API_TOKENS=\"app:read:$(openssl rand -hex 32),ci:write:$(openssl rand -hex 32)\"\n  shopscribe serve --project ./my-project --bind 0.0.0.0:8080\n  curl -H \"Authorization: Bearer $TOKEN\" localhost:8080/v1/jobs/domain_summaries/entities/northwear.com\n\nTokens come only from SHOPSCRIBE_API_TOKENS (NAME:SCOPE:TOKEN, comma-separated; scope read or\nwrite). Limits and timeouts are in the [serve] section of shopscribe.toml. SIGTERM or Ctrl-C stops\naccepting requests, finishes those in flight, the runs in progress and their publishing, then exits."
    )]
    Serve {
        #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
        project: PathBuf,
        /// Address to listen on. Default: serve.bind (127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
    },
    /// Poll the datasets' delivery locations (and watch.data_version_sql); on new or changed
    /// data, ingest it and run the jobs that read it.
    #[command(
        after_help = "Examples:\n  shopscribe watch --project ./my-project               # every watch.interval_seconds\n  shopscribe watch --once                               # one poll, e.g. from cron\n\nWhat was seen is kept in the store, so a restart neither repeats nor misses work. A job that is\nalready running elsewhere (API, another watcher) is retried on the next poll."
    )]
    Watch {
        #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
        project: PathBuf,
        /// Seconds between polls. Default: watch.interval_seconds (60).
        #[arg(long, value_name = "SECONDS")]
        interval: Option<f64>,
        /// Poll once and exit (1 if something failed).
        #[arg(long)]
        once: bool,
    },
    /// Check a published site: titles (≤ 60 characters) and meta descriptions (≤ 160), both unique;
    /// canonical links to themselves; JSON-LD that parses with its type's required fields;
    /// internal links that resolve; sitemaps listing every page and nothing else; `lang`.
    #[command(
        after_help = "Examples:\n  shopscribe check-site -p my-project            # the project's publish.url\n  shopscribe check-site --site ./site --base-url https://shops.example.com\n  shopscribe check-site --site s3://bucket/site\n\nExit 0 when clean, 1 with problems (each listed: file, kind, what). Also run after each\npublish (publish.check = warn | error | off)."
    )]
    CheckSite {
        #[arg(short, long, env = "SHOPSCRIBE_PROJECT", default_value = ".")]
        project: PathBuf,
        /// The site to check (a folder, file:///…, s3://…). Default: the project's publish.url.
        #[arg(long, value_name = "URL")]
        site: Option<String>,
        /// Its public root. Default: the project's publish.base_url.
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// How many problems to list.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Every generated version of one entity's text, with the inputs and run that produced it.
    #[command(
        after_help = "Examples:\n  shopscribe history domain_summaries northwear.com\n  shopscribe history domain_summaries northwear.com --as-of 2026-11-01   # the text online then\n  shopscribe history domain_summaries northwear.com --full               # prompts and outputs too"
    )]
    History {
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
    },
}

fn init_logging(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "shopscribe=info,warn",
        1 => "shopscribe=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder
            .with_ansi(colour(
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
                std::env::var_os("NO_COLOR"),
            ))
            .compact()
            .init(),
        LogFormat::Json => builder.with_ansi(false).json().init(),
    }
}

/// Colour codes only for a terminal, and never when `NO_COLOR` is set to anything
/// (https://no-color.org).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The last line of a failed command: plain text for people, a JSON event under
/// `--log-format json` so that stderr stays one JSON object per line.
fn report_error(format: LogFormat, e: &anyhow::Error, code: u8) {
    match format {
        LogFormat::Human => eprintln!("error: {}", error_text(e)),
        LogFormat::Json => tracing::error!(exit_code = code, "{}", error_text(e)),
    }
}

/// Says (as a log event) that the offline writer writes the texts because no key is set.
fn note_offline(project: &Project) {
    if project.llm.fell_back_to_offline {
        tracing::info!(
            "${} is not set, so the offline writer (deterministic templates, no LLM) writes the texts",
            project.llm.api_key_env
        );
    }
}

/// Errors that are the user's to fix (exit 2) versus failures of the run (exit 1).
enum Failure {
    Usage(anyhow::Error),
    Run(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format;
    init_logging(format, cli.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(Failure::Usage(e)) => {
            report_error(format, &e, 2);
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            report_error(format, &e, 1);
            ExitCode::from(1)
        }
    }
}

/// An error and its causes, each said once: a cause whose text the message already holds (many
/// errors print their source inside their own text) is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// `--as-of`: a date or RFC 3339 time, normalised; a bad one is a usage error.
fn parse_time(t: Option<String>) -> Result<Option<String>, Failure> {
    t.map(|t| shopscribe::run::parse_as_of(&t))
        .transpose()
        .map_err(|e| Failure::Usage(anyhow::anyhow!(e)))
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes and systemd send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing work in progress");
}

fn load_project(dir: &Path) -> Result<Project, Failure> {
    config::load(dir).map_err(|e| Failure::Usage(e.into()))
}

async fn dispatch(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Init { dir } => {
            let written = shopscribe::demo::write_project(&dir, false)
                .with_context(|| format!("cannot write the project into {}", dir.display()))
                .map_err(Failure::Usage)?;
            println!(
                "Project in {}: wrote {} file(s){}.",
                dir.display(),
                written.len(),
                if written.len() < shopscribe::demo::DOMAINS_PROJECT.len() {
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
        Command::Demo { dir, domains, seed } => demo(&dir, domains, seed).await,
        Command::Run {
            job,
            project,
            limit,
            force,
            max_cost,
            as_of,
            workers,
            allow_shrink,
            no_wait,
        } => {
            let as_of = parse_time(as_of)?;
            let project = load_project(&project)?;
            let opts = RunOptions {
                limit,
                force,
                progress: workers.is_none(),
                max_cost,
                as_of,
                allow_shrink,
            };
            if let Some(n) = workers {
                return distributed(&project, &job, &opts, n, !no_wait).await;
            }
            let summary = run(&project, &job, opts, !no_wait).await?;
            print_summary(&summary);
            Ok(exit_for(&summary))
        }
        Command::Ingest {
            dataset,
            project,
            from,
            rejects,
            files,
            bronze,
            limit,
        } => {
            let project = load_project(&project)?;
            let ds = project
                .dataset(&dataset)
                .map_err(|e| Failure::Usage(anyhow::anyhow!(e)))?;
            if files || bronze.is_some() {
                return show_bronze(&project, &ds.name, bronze, limit).await;
            }
            if rejects {
                let db = shopscribe::ingest::db::IngestDb::connect(&project.store_url)
                    .await
                    .map_err(|e| Failure::Run(e.into()))?;
                let rows = db
                    .rejects(&ds.name, limit)
                    .await
                    .map_err(|e| Failure::Run(e.into()))?;
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
                return Ok(ExitCode::SUCCESS);
            }
            shopscribe::ingest::show_progress(true);
            let (reports, failure) =
                match shopscribe::ingest::ingest(&project, ds, from.as_deref()).await {
                    Ok(reports) => (reports, None),
                    // Some files failed: the others' outcomes are shown, then the failures.
                    Err(e @ shopscribe::ingest::IngestError::Files { .. }) => {
                        let shopscribe::ingest::IngestError::Files { reports, .. } = &e else {
                            unreachable!()
                        };
                        (reports.clone(), Some(e))
                    }
                    Err(e) => return Err(Failure::Run(e.into())),
                };
            for r in &reports {
                if r.skipped {
                    println!("{}: already ingested with the same content; skipped", r.uri);
                } else {
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
            }
            if let Some(e) = failure {
                return Err(Failure::Run(e.into()));
            }
            if reports.is_empty() {
                println!(
                    "No data files (.jsonl, .ndjson, .json, .csv, optionally .gz) at {}",
                    from.as_deref().unwrap_or(&ds.from)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Deliver {
            project,
            objects,
            bucket,
            key,
            event,
        } => {
            let project = load_project(&project)?;
            let usage = |m: String| Failure::Usage(anyhow::anyhow!(m));
            let mut uris = objects;
            if let (Some(b), Some(k)) = (bucket, key) {
                uris.push(format!("s3://{b}/{k}"));
            }
            let from_event = event.is_some();
            if let Some(text) = event {
                let text = if text == "-" {
                    std::io::read_to_string(std::io::stdin())
                        .map_err(|e| usage(format!("cannot read the event from stdin: {e}")))?
                } else {
                    text
                };
                let value: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| usage(format!("--event is not JSON: {e}")))?;
                match shopscribe::serve::events::parse(&value).map_err(usage)? {
                    shopscribe::serve::events::RunRequest::Objects(u) => uris.extend(u),
                    shopscribe::serve::events::RunRequest::Test => {}
                    shopscribe::serve::events::RunRequest::Job(j) => {
                        return Err(usage(format!(
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
                return Err(usage(
                    "name the objects: s3://BUCKET/KEY, --bucket and --key, or --event JSON".into(),
                ));
            }
            deliver(&project, &uris).await
        }
        Command::Serve { project, bind } => {
            let project = load_project(&project)?;
            // Missing or malformed tokens are a set-up problem (exit 2), found before binding.
            shopscribe::serve::auth::Auth::from_env()
                .map_err(|e| Failure::Usage(anyhow::anyhow!(e)))?;
            note_offline(&project);
            shopscribe::serve::serve(project, bind, shutdown_signal())
                .await
                .map_err(Failure::Run)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch {
            project,
            interval,
            once,
        } => {
            let project = Arc::new(load_project(&project)?);
            let interval = match interval {
                Some(s) if s.is_finite() && s > 0.0 => std::time::Duration::from_secs_f64(s),
                Some(_) => {
                    return Err(Failure::Usage(anyhow::anyhow!(
                        "--interval must be a positive number of seconds"
                    )));
                }
                None => project.watch.interval,
            };
            let (store, provider) = open(&project).await?;
            let watcher = shopscribe::watch::Watcher::new(project.clone(), store, provider);
            if once {
                let p = watcher.poll().await;
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
                for e in &p.errors {
                    tracing::error!("{e}");
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
        Command::Report { run, project, out } => {
            let project = load_project(&project)?;
            let store = shopscribe::store::open(&project.store_url)
                .await
                .map_err(|e| Failure::Run(e.into()))?;
            let Some((data, page)) = shopscribe::report::report(store.as_ref(), run)
                .await
                .map_err(|e| Failure::Run(e.into()))?
            else {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "no such run in {}",
                    project.store_url
                )));
            };
            let dir = out.unwrap_or_else(|| project.dir.join("reports"));
            std::fs::create_dir_all(&dir).map_err(|e| Failure::Run(e.into()))?;
            let id = data["run"]["id"].as_i64().unwrap_or(0);
            let html = dir.join(format!("report-{id}.html"));
            std::fs::write(&html, page).map_err(|e| Failure::Run(e.into()))?;
            std::fs::write(
                dir.join(format!("report-{id}.json")),
                serde_json::to_vec_pretty(&data).unwrap_or_default(),
            )
            .map_err(|e| Failure::Run(e.into()))?;
            println!("Report of run {id}: {}", html.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker {
            project,
            run,
            job,
            id,
        } => {
            let project = load_project(&project)?;
            let opts = shopscribe::run::worker::WorkerOptions {
                id: id.unwrap_or_else(shopscribe::run::worker::WorkerOptions::default_id),
                run,
                job,
            };
            worker(&project, &opts).await
        }
        Command::Plan {
            job,
            project,
            force,
            as_of,
            enqueue,
            allow_shrink,
        } => {
            let project = load_project(&project)?;
            let as_of = parse_time(as_of)?;
            let code = plan(&project, &job, force, as_of.clone(), allow_shrink).await?;
            if enqueue {
                let opts = RunOptions {
                    force,
                    as_of,
                    allow_shrink,
                    ..Default::default()
                };
                return distributed(&project, &job, &opts, 0, true).await;
            }
            Ok(code)
        }
        Command::CheckSite {
            project,
            site,
            base_url,
            limit,
        } => {
            let project = load_project(&project)?;
            let url = match site {
                Some(s) => {
                    config::normalise_location(&s, &std::env::current_dir().unwrap_or_default())
                        .map_err(|e| Failure::Usage(anyhow::anyhow!(e)))?
                }
                None => project.publish.url.clone(),
            };
            let base = base_url.unwrap_or_else(|| project.publish.base_url.clone());
            let sink = shopscribe::publish::sink::Sink::open(&url)
                .map_err(|e| Failure::Usage(e.into()))?;
            let opts = shopscribe::site_check::CheckOptions {
                max_similarity: project.publish.max_similarity,
            };
            let report = shopscribe::site_check::check_site_with(&sink, &base, &opts)
                .await
                .map_err(|e| Failure::Run(e.into()))?;
            println!("Site {url}: {}", report.summary());
            for job in &report.similarity {
                for line in job.lines() {
                    println!("  similarity {line}");
                }
            }
            for p in report.problems.iter().take(limit) {
                println!("  {}  {}: {}", p.kind.as_str(), p.file, p.message);
            }
            if report.problems.len() > limit {
                println!("  … and {} more (--limit)", report.problems.len() - limit);
            }
            Ok(if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::History {
            job,
            key,
            project,
            as_of,
            full,
        } => {
            let project = load_project(&project)?;
            let as_of = parse_time(as_of)?;
            history(&project, &job, &key, as_of, full).await
        }
    }
}

async fn open(
    project: &Project,
) -> Result<
    (
        Arc<dyn shopscribe::store::Store>,
        Arc<dyn shopscribe::llm::Provider>,
    ),
    Failure,
> {
    let store = shopscribe::store::open(&project.store_url)
        .await
        .map_err(|e| Failure::Run(e.into()))?;
    let provider =
        shopscribe::llm::from_config(&project.llm).map_err(|e| Failure::Usage(e.into()))?;
    note_offline(project);
    Ok((store, provider))
}

/// One run of `job` under the job's lock (waiting for it unless `wait` is false).
async fn run(
    project: &Project,
    job: &str,
    opts: RunOptions,
    wait: bool,
) -> Result<RunSummary, Failure> {
    project
        .job(job)
        .map_err(|e| Failure::Usage(anyhow::anyhow!(e)))?;
    let (store, provider) = open(project).await?;
    shopscribe::run::locked::run_exclusive(project, store, provider, job, &opts, wait)
        .await
        .map_err(|e| Failure::Run(e.into()))
}

/// `deliver`: ingest each object into the datasets whose `from` holds it, then run every job
/// reading those datasets (as `POST /v1/runs` does with an event). The jobs run even when the
/// ingest failed or found every object already ingested: a delivery whose earlier job died
/// between its ingest and its run still gets its run, and a run whose inputs are unchanged makes
/// no LLM call.
async fn deliver(project: &Project, uris: &[String]) -> Result<ExitCode, Failure> {
    let (objects, jobs) = shopscribe::serve::events::route(project, uris);
    if objects.is_empty() {
        println!(
            "Ignored: no dataset's `from` holds {} (or the format is not ingestable).",
            uris.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = Vec::new();
    for (dataset, uri) in &objects {
        let ds = project
            .dataset(dataset)
            .map_err(|e| Failure::Usage(anyhow::anyhow!(e)))?;
        match shopscribe::ingest::ingest(project, ds, Some(uri)).await {
            Ok(reports) => {
                for r in &reports {
                    if r.skipped {
                        println!(
                            "{dataset}: {}: already ingested with the same content; skipped",
                            r.uri
                        );
                    } else {
                        println!(
                            "{dataset}: {}: {} lines, {} rejected; {} new, {} changed, {} unchanged",
                            r.uri,
                            r.lines,
                            r.rejected,
                            r.merge.inserted,
                            r.merge.changed,
                            r.merge.unchanged
                        );
                    }
                }
            }
            Err(e) => {
                tracing::error!(dataset, uri, error = %e, "ingesting a delivered object failed");
                failed.push(format!("{dataset}: {uri}: {}", error_text(&e.into())));
            }
        }
    }
    let mut code = ExitCode::SUCCESS;
    for job in &jobs {
        let opts = RunOptions {
            limit: None,
            force: false,
            progress: false,
            max_cost: None,
            as_of: None,
            allow_shrink: false,
        };
        let summary = run(project, job, opts, true).await?;
        print_summary(&summary);
        if !matches!(summary.status, RunStatus::Succeeded) {
            code = ExitCode::from(1);
        }
    }
    if !failed.is_empty() {
        return Err(Failure::Run(anyhow::anyhow!(
            "ingesting failed: {}",
            failed.join("; ")
        )));
    }
    Ok(code)
}

async fn queue_of(project: &Project) -> Result<shopscribe::queue::Queue, Failure> {
    shopscribe::queue::Queue::connect(&project.store_url, project.workers.lease)
        .await
        .map_err(|e| Failure::Usage(e.into()))
}

/// `run --workers N`: enqueue, then work with N local workers (each its own provider, so each
/// takes 1/N of the rate limit like separate processes would).
async fn distributed(
    project: &Project,
    job: &str,
    opts: &RunOptions,
    n: usize,
    wait: bool,
) -> Result<ExitCode, Failure> {
    project
        .job(job)
        .map_err(|e| Failure::Usage(anyhow::anyhow!(e)))?;
    let queue = queue_of(project).await?;
    let (store, provider) = open(project).await?;
    let e = shopscribe::run::worker::enqueue(
        project,
        job,
        store.as_ref(),
        provider.as_ref(),
        &queue,
        opts,
        wait,
    )
    .await
    .map_err(|e| Failure::Run(e.into()))?;
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
    if n == 0 {
        println!(
            "Start workers anywhere with access to the store: shopscribe worker -p {}",
            project.dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut handles = Vec::new();
    for i in 0..n {
        let provider =
            shopscribe::llm::from_config(&project.llm).map_err(|e| Failure::Usage(e.into()))?;
        let (project, store, queue) = (project.clone(), store.clone(), queue.clone());
        let opts = shopscribe::run::worker::WorkerOptions {
            id: format!(
                "{}-{i}",
                shopscribe::run::worker::WorkerOptions::default_id()
            ),
            run: Some(e.run_id),
            job: None,
        };
        handles.push(tokio::spawn(async move {
            shopscribe::run::worker::work(&project, store, provider, &queue, &opts).await
        }));
    }
    let mut code = ExitCode::SUCCESS;
    for h in handles {
        let r = h
            .await
            .map_err(|e| Failure::Run(e.into()))?
            .map_err(|e| Failure::Run(e.into()))?;
        if let Some(s) = r.finished {
            print_summary(&s);
            code = exit_for(&s);
        }
    }
    Ok(code)
}

async fn worker(
    project: &Project,
    opts: &shopscribe::run::worker::WorkerOptions,
) -> Result<ExitCode, Failure> {
    let queue = queue_of(project).await?;
    let (store, provider) = open(project).await?;
    let reports = shopscribe::run::worker::work_until_idle(project, store, provider, &queue, opts)
        .await
        .map_err(|e| Failure::Run(e.into()))?;
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

async fn history(
    project: &Project,
    job: &str,
    key: &str,
    as_of: Option<String>,
    full: bool,
) -> Result<ExitCode, Failure> {
    project
        .job(job)
        .map_err(|e| Failure::Usage(anyhow::anyhow!(e)))?;
    let store = shopscribe::store::open(&project.store_url)
        .await
        .map_err(|e| Failure::Run(e.into()))?;
    let versions = store
        .generations_of(job, key)
        .await
        .map_err(|e| Failure::Run(e.into()))?;
    if versions.is_empty() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "no generation of `{key}` in job `{job}`"
        )));
    }
    println!("{} version(s) of `{key}` in `{job}`:", versions.len());
    println!(
        "  {:<24}  {:>5}  {:<8}  {:<32}  {:<22}  {:>6}  {:>6}  attempts",
        "created", "run", "status", "input hash", "provider / model", "in", "out"
    );
    for (g, at) in &versions {
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
    if let Some(t) = as_of {
        let current = versions.iter().rev().find(|(g, at)| {
            at.as_str() <= t.as_str() && g.status == shopscribe::store::GenerationStatus::Ok
        });
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
    Ok(ExitCode::SUCCESS)
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn plan(
    project: &Project,
    job_name: &str,
    force: bool,
    as_of: Option<String>,
    allow_shrink: bool,
) -> Result<ExitCode, Failure> {
    let job = project
        .job(job_name)
        .map_err(|e| Failure::Usage(anyhow::anyhow!(e)))?;
    let (store, provider) = open(project).await?;
    let as_of = as_of.unwrap_or_else(shopscribe::store::now_text);
    let plan = shopscribe::run::plan_job_as_of(
        project,
        job,
        store.as_ref(),
        provider.as_ref(),
        force,
        &as_of,
    )
    .await
    .map_err(|e| Failure::Run(e.into()))?;
    let est = shopscribe::plan::estimate_work(
        project,
        job,
        &plan,
        &plan.work,
        provider.as_ref(),
        store.as_ref(),
    )
    .await
    .map_err(|e| Failure::Run(e.into()))?;
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
        Some(c) => println!("Estimated cost: {}", config::format_usd(c)),
        None => println!(
            "Estimated cost: unknown (add [llm.prices.\"{}\"] with input/output USD per 1M tokens)",
            provider.model()
        ),
    }
    // What a run would refuse (an empty or collapsed source, another project's folder) is
    // told here, before anything is spent; exit 1 as the run would.
    let policy = shopscribe::run::shrink_policy(project, allow_shrink);
    if let Err(e) = shopscribe::run::check_source_before_generating(
        project,
        job,
        &plan.entities,
        store.as_ref(),
        policy,
    )
    .await
    {
        println!("A run would fail: {e}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per data check: how many entities it excluded, flagged or failed, with examples.
fn print_checks(checks: &shopscribe::checks::CheckReport) {
    if checks.is_empty() {
        return;
    }
    println!(
        "  checks     {:>8}  run, {} failing, {} entit{} excluded",
        checks.results.len(),
        checks.failed().count(),
        checks.excluded,
        if checks.excluded == 1 { "y" } else { "ies" }
    );
    for c in &checks.results {
        println!("    {c}");
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "a run lasts far fewer than 2^53 ms"
)]
fn print_summary(s: &RunSummary) {
    let f = &s.figures;
    println!(
        "Run {} of `{}`: {} in {:.2} s ({} / {})",
        s.run_id,
        s.job,
        s.status.as_str(),
        f.duration_ms as f64 / 1000.0,
        s.provider,
        s.model
    );
    println!("  entities   {:>8}", f.entities);
    println!("  generated  {:>8}", f.generated);
    println!("  skipped    {:>8}  (inputs unchanged)", f.skipped);
    println!("  failed     {:>8}", f.failed);
    print_checks(&s.checks);
    if f.pending > 0 {
        println!("  pending    {:>8}  (left for the next run)", f.pending);
    }
    println!("  tokens     {:>8} in, {} out", f.tokens_in, f.tokens_out);
    println!("  cost       {:>8}", config::format_usd(f.cost_usd));
    println!(
        "  site       {} files written, {} unchanged, {} removed",
        s.publish.files_written, s.publish.files_unchanged, s.publish.files_removed
    );
    if let Some(g) = &s.similarity {
        print_gate(g);
    }
    if let Some(c) = &s.publish.check {
        println!("  check      {}", c.summary());
    }
    if s.publish.pages_removed > 0 {
        let keys = &s.publish.removed_keys;
        let shown: Vec<&str> = keys.iter().take(10).map(String::as_str).collect();
        println!(
            "  removed    {:>8}  pages of entities no longer in the source: {}{}",
            s.publish.pages_removed,
            shown.join(", "),
            if keys.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    if let Some(e) = &s.error {
        println!("  error      {e}");
    }
}

/// The near-duplicate gate's lines of a run summary.
fn print_gate(g: &shopscribe::run::gate::GateReport) {
    let f = &g.figures;
    println!(
        "  similarity {:>8}  pages of this run compared; nearest neighbour p99 {:.2}, max {:.2}, mean {:.2}; pairwise mean {:.2}",
        g.checked, f.nearest_p99, f.nearest_max, f.nearest_mean, f.mean
    );
    if g.regenerated > 0 {
        println!(
            "  varied     {:>8}  pages regenerated over max_similarity {:.2}: {} calls, {}",
            g.regenerated,
            g.max_similarity,
            g.calls,
            config::format_usd(g.cost_usd)
        );
    }
    if !g.noindex.is_empty() {
        println!(
            "  noindex    {:>8}  near-duplicates published noindex, out of the sitemap:",
            g.noindex.len()
        );
        for (key, m) in g.noindex.iter().take(10) {
            println!("    {key}: {}", m.reason);
        }
    }
}

fn exit_for(s: &RunSummary) -> ExitCode {
    match s.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

/// `ingest --files` (the recorded files) or `ingest --bronze ID` (one file's lines as delivered).
async fn show_bronze(
    project: &Project,
    dataset: &str,
    bronze: Option<i64>,
    limit: i64,
) -> Result<ExitCode, Failure> {
    use std::io::Write;
    let db = shopscribe::ingest::db::IngestDb::connect(&project.store_url)
        .await
        .map_err(|e| Failure::Run(e.into()))?;
    let Some(id) = bronze else {
        let files = db
            .files(dataset, limit)
            .await
            .map_err(|e| Failure::Run(e.into()))?;
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
        return Ok(ExitCode::SUCCESS);
    };
    if db
        .file(dataset, id)
        .await
        .map_err(|e| Failure::Run(e.into()))?
        .is_none()
    {
        return Err(Failure::Usage(anyhow::anyhow!(
            "no file {id} recorded for dataset `{dataset}`; `shopscribe ingest {dataset} --files` lists them"
        )));
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // Each item's bytes as delivered, its line end included.
    let written = db.bronze_lines(id, |_, raw| out.write_all(raw)).await;
    match written.and_then(|_| {
        out.flush()
            .map_err(|e| shopscribe::store::StoreError::Query(sqlx::Error::Io(e)))
    }) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `| head`: the reader went away; not an error.
        Err(shopscribe::store::StoreError::Query(sqlx::Error::Io(e)))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(Failure::Run(e.into())),
    }
}

/// The reviews half of the demo: DIR/reviews holds the reviews example, two deliveries are
/// ingested (bronze, rejects, SCD2, gold) and `product_insights` publishes into the same site.
/// Ingests one dataset of the demo's reviews project, logging what each file brought.
async fn demo_ingest(project: &Project, rdir: &Path, dataset: &str) -> Result<(), Failure> {
    let ds = project
        .dataset(dataset)
        .map_err(|e| Failure::Usage(anyhow::anyhow!(e)))?;
    let reports = shopscribe::ingest::ingest(project, ds, None)
        .await
        .map_err(|e| Failure::Run(e.into()))?;
    for r in &reports {
        if r.skipped {
            tracing::info!("{dataset}: {} already ingested; skipped", r.uri);
        } else {
            tracing::info!(
                "{dataset}: {} — {} lines, {} rejected (see `shopscribe ingest {dataset} --rejects -p {}`), {} new, {} changed, {} unchanged",
                r.uri.rsplit('/').next().unwrap_or(&r.uri),
                r.lines,
                r.rejected,
                rdir.display(),
                r.merge.inserted,
                r.merge.changed,
                r.merge.unchanged
            );
        }
    }
    Ok(())
}

async fn demo_reviews(dir: &Path, seed: u64) -> Result<RunSummary, Failure> {
    let rdir = dir.join("reviews");
    let fresh = !rdir.join("shopscribe.toml").exists();
    shopscribe::demo::write_reviews_project(&rdir, false)
        .with_context(|| format!("cannot write the reviews example into {}", rdir.display()))
        .map_err(Failure::Usage)?;
    if fresh {
        // One site for both examples: the reviews pages go next to the domain pages.
        let toml = rdir.join("shopscribe.toml");
        let text = std::fs::read_to_string(&toml).map_err(|e| Failure::Usage(e.into()))?;
        std::fs::write(
            &toml,
            text.replacen("url = \"site\"", "url = \"../site\"", 1),
        )
        .map_err(|e| Failure::Usage(e.into()))?;
    }
    const PRODUCTS: usize = 60;
    let data = rdir.join("data/reviews");
    std::fs::create_dir_all(&data).map_err(|e| Failure::Usage(e.into()))?;
    let (day1, day2) = shopscribe::demo::review_deliveries(PRODUCTS, seed);
    for (name, text) in [("day1.jsonl", day1), ("day2.jsonl", day2)] {
        std::fs::write(data.join(name), text).map_err(|e| Failure::Usage(e.into()))?;
    }
    let products = rdir.join("data/products");
    std::fs::create_dir_all(&products).map_err(|e| Failure::Usage(e.into()))?;
    std::fs::write(
        products.join("catalog.jsonl"),
        shopscribe::demo::product_metadata(PRODUCTS),
    )
    .map_err(|e| Failure::Usage(e.into()))?;
    let project = load_project(&rdir)?;
    // A demo folder written by an earlier version has no products dataset: it keeps working.
    for dataset in ["reviews", "products"]
        .into_iter()
        .filter(|d| project.datasets.contains_key(*d))
    {
        demo_ingest(&project, &rdir, dataset).await?;
    }
    let summary = run(
        &project,
        "product_insights",
        RunOptions {
            progress: true,
            ..Default::default()
        },
        true,
    )
    .await?;
    print_summary(&summary);
    Ok(summary)
}

async fn demo(dir: &Path, domains: usize, seed: u64) -> Result<ExitCode, Failure> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
        .map_err(Failure::Usage)?;
    shopscribe::demo::write_project(dir, false)
        .with_context(|| format!("cannot write the example project into {}", dir.display()))
        .map_err(Failure::Usage)?;
    let project = load_project(dir)?;
    let store = shopscribe::store::sqlite::SqliteStore::open(&project.store_url)
        .await
        .map_err(|e| Failure::Run(e.into()))?;
    let rows = shopscribe::demo::sample_rows(domains, seed);
    shopscribe::demo::load_rows(store.pool(), &rows)
        .await
        .map_err(|e| Failure::Run(e.into()))?;
    tracing::info!(
        "Sample data: {domains} domains, {} monthly rows in {}",
        rows.len(),
        project.store_url
    );
    let summary = run(
        &project,
        "domain_summaries",
        RunOptions {
            progress: true,
            ..Default::default()
        },
        true,
    )
    .await?;
    print_summary(&summary);
    let reviews = demo_reviews(dir, seed).await?;
    let index = Path::new(summary.site_url.trim_start_matches("file://")).join("index.html");
    println!(
        "Demo finished in {:.2} s. Open {}",
        started.elapsed().as_secs_f64(),
        index.display()
    );
    if exit_for(&reviews) != ExitCode::SUCCESS {
        return Ok(exit_for(&reviews));
    }
    Ok(exit_for(&summary))
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use super::colour;
        assert!(colour(true, None));
        assert!(!colour(false, None), "not a terminal");
        assert!(!colour(true, Some("1".into())), "NO_COLOR set");
        assert!(
            colour(true, Some("".into())),
            "an empty NO_COLOR does not count"
        );
    }
}
