//! The `shopscribe` command line: the clap definitions, the [`App`] context every project
//! command shares, and one module per command (parse its arguments, call the library, print).

mod check_site;
mod deliver;
mod demo;
mod history;
mod ingest;
mod init;
pub mod logging;
mod plan;
mod report;
mod run;
mod serve;
mod summary;
mod watch;
mod worker;

use crate::config::{self, Dataset, Job, Project};
use crate::llm::Provider;
use crate::run::{RunOptions, RunSummary};
use crate::store::Store;
use clap::{Parser, Subcommand};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

#[derive(Parser)]
#[command(
    name = "shopscribe",
    version,
    about = "Turns e-commerce performance data into published, SEO-ready text, one page per entity.",
    long_about = "Turns e-commerce performance data into published, SEO-ready text, one page per entity, \
and keeps it current: only entities whose inputs changed are sent to the writer again.",
    after_help = "Examples:\n  shopscribe demo                       # sample data, offline writer, site in ./shopscribe-demo/site\n  shopscribe init my-project            # scaffold a project to edit\n  shopscribe plan domain_summaries -p my-project\n  shopscribe run domain_summaries -p my-project --limit 50\n  shopscribe history domain_summaries northwear.com -p my-project\n\nExit codes: 0 ok, 1 the run failed or left entities failed/pending, 2 bad usage or configuration."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = logging::LogFormat::Human, global = true)]
    pub log_format: logging::LogFormat,
    /// More detail in logs (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

// Each variant's doc comment and `after_help` are its `--help`; its arguments live in the
// command's module.
#[derive(Subcommand)]
pub enum Command {
    /// Run the whole pipeline on generated sample data: no server, no API key needed.
    #[command(
        after_help = "Examples:\n  shopscribe demo\n  shopscribe demo --dir /tmp/demo --domains 2000\n\nWrites the example project into DIR, generates sample data into DIR/shopscribe.db, runs the\n`domain_summaries` job and publishes the site to DIR/site. Running it again regenerates the\nsample data (same seed, same data) and therefore generates nothing new."
    )]
    Demo(demo::DemoArgs),
    /// Scaffold the example project (config, SQL, prompts, schema) without data.
    #[command(
        after_help = "Example:\n  shopscribe init my-project && $EDITOR my-project/shopscribe.toml"
    )]
    Init(init::InitArgs),
    /// Generate and publish the texts of a job: only entities whose inputs changed.
    #[command(
        after_help = "Examples:\n  shopscribe run domain_summaries\n  shopscribe run domain_summaries --project ./my-project --limit 100\n  shopscribe run domain_summaries --force   # regenerate everything"
    )]
    Run(run::RunArgs),
    /// Show what a run would do: new, changed and unchanged entities and a token estimate.
    #[command(after_help = "Example:\n  shopscribe plan domain_summaries --project ./my-project")]
    Plan(plan::PlanArgs),
    /// Ingest raw deliveries (JSON lines, JSON arrays, CSV; gzip too) of a dataset: bronze with
    /// rejects and their reasons, silver with full SCD2 history.
    #[command(
        after_help = "Examples:\n  shopscribe ingest reviews                      # every file in the dataset's folder\n  shopscribe ingest reviews --from ./incoming    # another folder or one file\n  shopscribe ingest reviews --rejects            # the rejected lines and why\n  shopscribe ingest reviews --files              # the files recorded, with their ids\n  shopscribe ingest reviews --bronze 3 > f.jsonl # file 3's lines exactly as delivered\n\nA file already ingested with the same content is skipped. The command fails (exit 1) when a\nfile's rejected share is above datasets.NAME.max_reject_share; its lines are kept all the same."
    )]
    Ingest(ingest::IngestArgs),
    /// Ingest objects that arrived in S3 and run the jobs that read their datasets: what
    /// `POST /v1/runs` does with an S3 or EventBridge event, as one command (the AWS Batch job
    /// that an EventBridge "Object Created" rule submits, see deploy/aws).
    #[command(
        after_help = "Examples:\n  shopscribe deliver --bucket raw-deliveries --key reviews/2026-12/part-1.jsonl\n  shopscribe deliver s3://raw-deliveries/reviews/2026-12/part-1.jsonl\n  shopscribe deliver --event \"$(cat event.json)\"   # an S3 event notification or EventBridge event\n\nObjects outside every dataset's `from` are ignored (exit 0). An object already ingested with the\nsame content (a notification delivered twice, or late) is skipped, and the runs that follow find\nthe inputs unchanged: no LLM call. The jobs reading the datasets run even when the ingest fails\nor finds nothing new. Exit 1 when an ingest or a run failed."
    )]
    Deliver(deliver::DeliverArgs),
    /// Work a distributed run: claim tasks from the PostgreSQL queue until none is left.
    #[command(
        after_help = "Examples:\n  shopscribe run domain_summaries --workers 0      # plan into the queue\n  for i in 1 2 3 4; do shopscribe worker & done; wait\n\nA worker that dies loses nothing: its tasks return to the queue when its lease lapses\n(workers.lease_seconds). The last worker out publishes the site and finishes the run."
    )]
    Worker(worker::WorkerArgs),
    /// Write a run's report: a self-contained HTML page and its JSON (throughput, latency,
    /// attempts and error classes, tokens and cost, failed entities with reasons).
    #[command(
        after_help = "Examples:\n  shopscribe report            # the latest run\n  shopscribe report 42 --out /tmp/reports"
    )]
    Report(report::ReportArgs),
    /// Serve the HTTP API: on-demand insights, run requests (also S3 / EventBridge events),
    /// run status, /healthz, /readyz, /metrics and /openapi.json.
    #[command(
        after_help = "Examples:\n  export SHOPSCRIBE_API_TOKENS=\"app:read:$(openssl rand -hex 32),ci:write:$(openssl rand -hex 32)\"\n  shopscribe serve --project ./my-project --bind 0.0.0.0:8080\n  curl -H \"Authorization: Bearer $TOKEN\" localhost:8080/v1/jobs/domain_summaries/entities/northwear.com\n\nTokens come only from SHOPSCRIBE_API_TOKENS (NAME:SCOPE:TOKEN, comma-separated; scope read or\nwrite). Limits and timeouts are in the [serve] section of shopscribe.toml. SIGTERM or Ctrl-C stops\naccepting requests, finishes those in flight, the runs in progress and their publishing, then exits."
    )]
    Serve(serve::ServeArgs),
    /// Poll the datasets' delivery locations (and watch.data_version_sql); on new or changed
    /// data, ingest it and run the jobs that read it.
    #[command(
        after_help = "Examples:\n  shopscribe watch --project ./my-project               # every watch.interval_seconds\n  shopscribe watch --once                               # one poll, e.g. from cron\n\nWhat was seen is kept in the store, so a restart neither repeats nor misses work. A job that is\nalready running elsewhere (API, another watcher) is retried on the next poll."
    )]
    Watch(watch::WatchArgs),
    /// Check a published site: titles (≤ 60 characters) and meta descriptions (≤ 160), both unique;
    /// canonical links to themselves; JSON-LD that parses with its type's required fields;
    /// internal links that resolve; sitemaps listing every page and nothing else; `lang`.
    #[command(
        after_help = "Examples:\n  shopscribe check-site -p my-project            # the project's publish.url\n  shopscribe check-site --site ./site --base-url https://shops.example.com\n  shopscribe check-site --site s3://bucket/site\n\nExit 0 when clean, 1 with problems (each listed: file, kind, what). Also run after each\npublish (publish.check = warn | error | off)."
    )]
    CheckSite(check_site::CheckSiteArgs),
    /// Every generated version of one entity's text, with the inputs and run that produced it.
    #[command(
        after_help = "Examples:\n  shopscribe history domain_summaries northwear.com\n  shopscribe history domain_summaries northwear.com --as-of 2026-11-01   # the text online then\n  shopscribe history domain_summaries northwear.com --full               # prompts and outputs too"
    )]
    History(history::HistoryArgs),
}

/// The target of the binary's own log events: the one they had when the CLI was `main.rs`, so
/// that log filters and whoever reads the logs see the same lines.
const LOG_TARGET: &str = "shopscribe";

/// The whole `shopscribe` process: parse the command line, set up logging, run the command on a
/// tokio runtime, turn its outcome into an exit code. Synchronous and in the library so that the
/// binary only calls it: a `block_on` of [`dispatch`]'s future in `main.rs` made the binary's
/// crate generate code for the library's async state machines a second time (62 s of a clean
/// release build).
pub fn main() -> ExitCode {
    let args = Cli::parse();
    let format = args.log_format;
    logging::init(format, args.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(args.command)) {
        Ok(code) => code,
        Err(failure) => {
            let code = failure.exit_code();
            logging::report_error(format, failure.error(), code);
            ExitCode::from(code)
        }
    }
}

/// Runs one command to its exit code.
pub async fn dispatch(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Demo(args) => demo::demo(args).await,
        Command::Init(args) => init::init(args),
        Command::Run(args) => run::run(args).await,
        Command::Plan(args) => plan::plan(args).await,
        Command::Ingest(args) => ingest::ingest(args).await,
        Command::Deliver(args) => deliver::deliver(args).await,
        Command::Worker(args) => worker::worker(args).await,
        Command::Report(args) => report::report(args).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Watch(args) => watch::watch(args).await,
        Command::CheckSite(args) => check_site::check_site(args).await,
        Command::History(args) => history::history(args).await,
    }
}

/// Any error a command fails with, its causes kept (the last line prints them with
/// [`crate::error::Chain`]).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors that are the user's to fix (exit 2) versus failures of the work (exit 1).
#[derive(Debug)]
pub enum Failure {
    Usage(BoxError),
    Run(BoxError),
}

impl Failure {
    /// A usage or configuration error with its cause kept.
    fn usage(e: impl Into<BoxError>) -> Self {
        Failure::Usage(e.into())
    }

    /// A usage or configuration error the library words as text (`no job named …`).
    fn bad_usage(message: impl std::fmt::Display) -> Self {
        Failure::Usage(message.to_string().into())
    }

    /// A failure of the work itself.
    fn run(e: impl Into<BoxError>) -> Self {
        Failure::Run(e.into())
    }

    /// The process's exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Run(_) => 1,
        }
    }

    pub fn error(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            Failure::Usage(e) | Failure::Run(e) => e.as_ref(),
        }
    }
}

/// What a command was doing when an error happened ("cannot create DIR"), the error itself kept
/// as the cause.
#[derive(Debug, thiserror::Error)]
#[error("{doing}")]
pub struct Context {
    doing: String,
    #[source]
    source: BoxError,
}

impl Context {
    pub fn new(doing: impl Into<String>, source: impl Into<BoxError>) -> Context {
        Context {
            doing: doing.into(),
            source: source.into(),
        }
    }
}

/// What the commands working on a project share: the validated project, its store and its
/// writer, each opened at most once per process and only when a command first needs it (so a
/// command that never touches the store never opens it, and one that runs several jobs shares
/// one store and one rate limiter).
pub struct App {
    pub project: Arc<Project>,
    store: tokio::sync::OnceCell<Arc<dyn Store>>,
    provider: OnceLock<Arc<dyn Provider>>,
}

impl App {
    /// Loads and validates `DIR/shopscribe.toml` (every problem is a usage error).
    pub fn load(dir: &Path) -> Result<App, Failure> {
        Self::load_with(dir, &config::Overrides::default())
    }

    /// As [`App::load`], with settings that replace the file's.
    pub fn load_with(dir: &Path, overrides: &config::Overrides) -> Result<App, Failure> {
        let project = config::load_with_overrides(dir, overrides).map_err(Failure::usage)?;
        Ok(App {
            project: Arc::new(project),
            store: tokio::sync::OnceCell::new(),
            provider: OnceLock::new(),
        })
    }

    /// The project's store, opened (and migrated) on first use.
    pub async fn store(&self) -> Result<Arc<dyn Store>, Failure> {
        self.store
            .get_or_try_init(|| crate::store::open(&self.project.store_url))
            .await
            .cloned()
            .map_err(Failure::run)
    }

    /// The project's writer, built on first use (a bad key or setting is a usage error).
    pub fn provider(&self) -> Result<Arc<dyn Provider>, Failure> {
        if let Some(p) = self.provider.get() {
            return Ok(p.clone());
        }
        let provider = self.new_provider()?;
        note_offline(&self.project);
        Ok(self.provider.get_or_init(|| provider).clone())
    }

    /// A writer of its own (with its own rate limiter), for a local worker of a distributed run.
    pub fn new_provider(&self) -> Result<Arc<dyn Provider>, Failure> {
        crate::llm::from_config(&self.project.llm).map_err(Failure::usage)
    }

    /// The store and the writer, opened in that order.
    pub async fn store_and_provider(&self) -> Result<(Arc<dyn Store>, Arc<dyn Provider>), Failure> {
        let store = self.store().await?;
        Ok((store, self.provider()?))
    }

    /// The PostgreSQL task queue of distributed runs (another store is a usage error).
    pub async fn queue(&self) -> Result<crate::queue::Queue, Failure> {
        crate::queue::Queue::connect(&self.project.store_url, self.project.workers.lease)
            .await
            .map_err(Failure::usage)
    }

    /// The job named on the command line.
    pub fn job(&self, name: &str) -> Result<&Job, Failure> {
        self.project.job(name).map_err(Failure::usage)
    }

    /// The dataset named on the command line.
    pub fn dataset(&self, name: &str) -> Result<&Dataset, Failure> {
        self.project.dataset(name).map_err(Failure::usage)
    }

    /// One run of `job` under the job's lock (waiting for it unless `wait` is false).
    pub async fn run_job(
        &self,
        job: &str,
        opts: &RunOptions,
        wait: bool,
    ) -> Result<RunSummary, Failure> {
        self.job(job)?;
        let (store, provider) = self.store_and_provider().await?;
        crate::run::run_exclusive(&self.project, store, provider, job, opts, wait)
            .await
            .map_err(Failure::run)
    }
}

/// Says (as a log event) that the offline writer writes the texts because no key is set.
fn note_offline(project: &Project) {
    if project.llm.fell_back_to_offline {
        tracing::info!(
            target: LOG_TARGET, "${} is not set, so the offline writer (deterministic templates, no LLM) writes the texts",
            project.llm.api_key_env
        );
    }
}

/// `--as-of`: a date or RFC 3339 time, normalised; a bad one is a usage error.
fn parse_time(t: Option<String>) -> Result<Option<String>, Failure> {
    t.map(|t| crate::run::parse_as_of(&t))
        .transpose()
        .map_err(Failure::bad_usage)
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
    tracing::info!(target: LOG_TARGET, "shutting down: finishing work in progress");
}
