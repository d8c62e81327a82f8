//! One run of a job, end to end: source → features → plan → generate (bounded concurrency,
//! retries, validation, one repair attempt) → store → publish. Results are stored in small
//! batches as they complete, so a killed run loses at most the requests in flight, and a re-run
//! picks up exactly the entities without a good text for their current inputs.

use crate::config::{Job, Project};
use crate::llm::{ChatRequest, ErrorClass, Provider, ProviderError};
use crate::plan::{self, Plan, WorkItem};
use crate::prompt::Prompter;
use crate::publish::{self, JobInfo, PageInput, PublishReport, SiteInfo};
use crate::sink::Sink;
use crate::source;
use crate::store::{AttemptOutcome, GenerationStatus, NewGeneration, RunFigures, RunStatus, Store};
use crate::validate::Validator;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

mod ahead;
mod batch;
mod exclusive;
pub mod gate;
pub mod spool;
pub mod worker;

pub use exclusive::{run_exclusive, run_holding_lease};

/// Why a run (or its planning, or a worker of a distributed run) failed or was refused. The
/// lower layers' errors pass through as they are: each names its file, job or query itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The job's source could not be read.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// A prompt template does not parse or render.
    #[error(transparent)]
    Prompt(#[from] crate::prompt::PromptError),
    /// Publishing the site failed or was refused.
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
    /// No job (or dataset) of that name in the project.
    #[error(transparent)]
    NotFound(#[from] crate::config::NotFound),
    /// The job's output schema does not compile.
    #[error(transparent)]
    Schema(#[from] crate::validate::SchemaError),
    /// Repairing a dataset's gold table (left stale by an interrupted ingest) failed.
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    /// The task queue of a distributed run failed or cannot be used with this store.
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// A worker was pointed at a run the store does not have.
    #[error("no run {0}")]
    NoSuchRun(i64),
    /// A worker found no distributed run waiting for workers.
    #[error("no distributed run is waiting; start one with `shopscribe run JOB --workers 0`")]
    NoOpenRun,
    /// `--max-cost` was given but the project has no price for the model.
    #[error(
        "--max-cost needs a price for model `{model}`: add [llm.prices.\"{model}\"] to shopscribe.toml"
    )]
    NoPrice { model: String },
    /// The job's data checks excluded every entity of its source: nothing was spent, published
    /// or removed.
    #[error(
        "the data checks of `{job}` excluded all {excluded} entities of its source: nothing was generated, published or removed (`plan` lists the checks; --allow-shrink accepts an empty site)"
    )]
    ChecksExcludedAll { job: String, excluded: usize },
    /// The shrink guard stopped the publish, and data checks excluded some of the entities
    /// missing from it (the guard's refusal is the source).
    #[error(
        "{} ({excluded} entit{} of the source were excluded by the job's data checks; `plan` lists them)",
        crate::error::Chain(source),
        if *excluded == 1 { "y" } else { "ies" }
    )]
    ShrunkByChecks {
        excluded: usize,
        source: publish::PublishError,
    },
    /// The store would not take answers that were paid for: they were written to a spool file,
    /// which the next run of the job stores before it plans.
    #[error(
        "the store did not take {answers} paid answer(s) ({source}); they are kept in {} and the next run of the job stores them instead of paying again",
        path.display()
    )]
    Spooled {
        answers: usize,
        path: std::path::PathBuf,
        #[source]
        source: crate::store::StoreError,
    },
    /// The published site has problems and `publish.check = "error"`; `summary` counts them.
    #[error("the published site fails its check: {summary} (see `shopscribe check-site`)")]
    SiteCheck { summary: String },
    /// Writing or reading the spool failed.
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    /// A `fail_run` data check found failing entities: nothing was spent, published or removed.
    #[error(
        "the data check `{check}` of `{job}` fails for {entities} entit{}, e.g. {examples} (on_fail = \"fail_run\"): nothing was generated, published or removed",
        if *entities == 1 { "y" } else { "ies" }
    )]
    CheckFailed {
        job: String,
        check: String,
        entities: usize,
        examples: String,
    },
    /// The job's SQL returned no entities: nothing was spent, published or removed.
    #[error(
        "the source of `{job}` returned no entities ({sql}): nothing was generated, published or removed. An empty upstream, a failed load or a WHERE typo? If the job really has no entities now, run again with --allow-shrink (or set publish.max_shrink_share = 1)"
    )]
    EmptySource { job: String, sql: String },
    /// The estimate is above `--max-cost`; nothing was spent.
    #[error(
        "the estimated cost ${estimate:.4} exceeds --max-cost ${limit:.4}; nothing was sent (raise the limit or use --limit)"
    )]
    OverBudget { estimate: f64, limit: f64 },
    /// The provider cannot serve any request (bad key, unknown model, no quota).
    #[error("the run was stopped")]
    ProviderFatal(#[source] ProviderError),
    /// Another process runs the job (the API, `watch`, a distributed run, another `run`).
    #[error(
        "the job `{job}` is being run by {holder} (its lock's lease runs until {until}, renewed while it works); wait for it (run without --no-wait) or try again later"
    )]
    Busy {
        job: String,
        holder: String,
        until: String,
    },
    /// The job's lock lapsed and another process took it: this run stopped where it was.
    #[error(
        "the run of `{job}` was stopped: its lock was lost to another process (the store was unreachable for longer than the lease)"
    )]
    LockLost { job: String },
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Generate at most this many entities (the rest stay pending for the next run).
    pub limit: Option<usize>,
    /// Regenerate entities whose inputs did not change.
    pub force: bool,
    /// Draw a progress bar (only when stderr is a terminal).
    pub progress: bool,
    /// Refuse to start when the estimated cost exceeds this (USD), and stop cleanly once the
    /// actual spend reaches it (the rest stays pending).
    pub max_cost: Option<f64>,
    /// Bound to `:as_of` in the job's SQL (RFC 3339); default: now.
    pub as_of: Option<String>,
    /// Accept a source that removes more of the published pages than
    /// `publish.max_shrink_share` allows (an empty source included).
    pub allow_shrink: bool,
}

impl RunOptions {
    fn as_of(&self) -> String {
        self.as_of.clone().unwrap_or_else(crate::store::now_text)
    }
}

/// Normalises a user-given time ("2026-11-01", "2026-11-01T12:00:00Z", "…+01:00") to the
/// stored form (UTC, milliseconds), or explains the accepted forms.
pub fn parse_as_of(s: &str) -> Result<String, String> {
    use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Millis, true));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return Ok(t.to_rfc3339_opts(SecondsFormat::Millis, true));
    }
    Err(format!(
        "`{s}` is not a time; use 2026-11-01 or 2026-11-01T12:00:00Z"
    ))
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: i64,
    pub job: String,
    pub status: RunStatus,
    pub figures: RunFigures,
    pub publish: PublishReport,
    pub site_url: String,
    pub provider: String,
    pub model: String,
    pub error: Option<String>,
    /// The job's data checks on this run's source.
    pub checks: crate::checks::CheckReport,
    /// What the near-duplicate gate did, if it ran.
    pub similarity: Option<gate::GateReport>,
}

impl From<crate::plan::EstimateError> for RunError {
    fn from(e: crate::plan::EstimateError) -> Self {
        match e {
            crate::plan::EstimateError::Prompt(e) => RunError::Prompt(e),
            crate::plan::EstimateError::Store(e) => RunError::Store(e),
        }
    }
}

impl RunSummary {
    /// What a notification tells of this run.
    pub fn finished(&self) -> crate::notify::Finished<'_> {
        crate::notify::Finished {
            job: &self.job,
            run_id: self.run_id,
            status: self.status,
            figures: &self.figures,
            error: self.error.as_deref(),
            removed_keys: &self.publish.removed_keys,
        }
    }
}

/// The job's rows as entities, from the store's database or the configured source, with
/// `:as_of` bound to `as_of` (RFC 3339; default now).
pub async fn load_entities(project: &Project, job: &Job) -> Result<source::Entities, RunError> {
    load_entities_as_of(project, job, &crate::store::now_text()).await
}

pub async fn load_entities_as_of(
    project: &Project,
    job: &Job,
    as_of: &str,
) -> Result<source::Entities, RunError> {
    let settings = source::SourceSettings::of(project);
    let mut entities = source::fetch_entities(&settings, job, as_of).await?;
    if !job.checks.is_empty() {
        let t = Instant::now();
        entities.checks = source::apply_checks(
            &settings,
            &job.checks,
            &job.key_column,
            &mut entities,
            as_of,
        )
        .await?;
        info!(job = %job.name, checks = job.checks.len(), excluded = entities.checks.excluded, left = entities.len(), ms = t.elapsed().as_millis() as u64, "data checks run");
    }
    Ok(entities)
}

/// Builds the plan of a job without spending anything.
pub async fn plan_job(
    project: &Project,
    job: &Job,
    store: &dyn Store,
    provider: &dyn Provider,
    force: bool,
) -> Result<Plan, RunError> {
    plan_job_as_of(
        project,
        job,
        store,
        provider,
        force,
        &crate::store::now_text(),
    )
    .await
}

/// [`plan_job`] with `:as_of` bound to a given time.
pub async fn plan_job_as_of(
    project: &Project,
    job: &Job,
    store: &dyn Store,
    provider: &dyn Provider,
    force: bool,
    as_of: &str,
) -> Result<Plan, RunError> {
    // Answers a stopped run was paid for but could not store: stored first, so they are planned
    // as done instead of being paid for again.
    spool::replay(&project.spool_dir, &job.name, store).await?;
    let t = Instant::now();
    let entities = load_entities_as_of(project, job, as_of).await?;
    info!(job = %job.name, entities = entities.len(), ms = t.elapsed().as_millis() as u64, "source read");
    let t = Instant::now();
    let states = store.entity_states(&job.name).await?;
    let plan = plan::make_plan(job, entities, &states, provider, force);
    plan::check_prompts(job, &plan)?;
    info!(
        new = plan.new,
        changed = plan.changed,
        retry = plan.retry,
        unchanged = plan.unchanged,
        ms = t.elapsed().as_millis() as u64,
        "features derived and work planned"
    );
    Ok(plan)
}

/// Runs `job_name` of `project` end to end.
pub async fn run_job(
    project: &Project,
    job_name: &str,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    opts: &RunOptions,
) -> Result<RunSummary, RunError> {
    project.job(job_name)?;
    let run_id = store
        .create_run(job_name, provider.name(), provider.model())
        .await?;
    run_created(project, job_name, run_id, store, provider, opts).await
}

/// Starts the provider's limiter from what earlier runs learned of the server's buckets; a
/// store or parse failure only costs the first answer's latency, so it is logged, not fatal.
async fn remembered_limits(store: &dyn Store, provider: &dyn Provider) {
    let Some((limiter, key)) = provider.rate_limiter() else {
        return;
    };
    match store.state_get(&key).await {
        Ok(Some(text)) => match serde_json::from_str(&text) {
            Ok(learned) => limiter.assume(&learned),
            Err(e) => warn!(error = %e, "ignoring the remembered rate limits"),
        },
        Ok(None) => {}
        Err(e) => warn!(error = %e, "cannot read the remembered rate limits"),
    }
}

/// Keeps what the provider's limiter learned for the next run.
async fn remember_limits(store: &dyn Store, provider: &dyn Provider) {
    let Some((limiter, key)) = provider.rate_limiter() else {
        return;
    };
    let Some(learned) = limiter.learned() else {
        return;
    };
    let text = serde_json::to_string(&learned).expect("plain numbers");
    if let Err(e) = store.state_set(&key, &text).await {
        warn!(error = %e, "cannot keep the learned rate limits");
    }
}

/// [`run_job`] for a run already created (`Store::create_run`), so a caller can hand out its
/// id before the work starts (the HTTP API does).
pub async fn run_created(
    project: &Project,
    job_name: &str,
    run_id: i64,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    opts: &RunOptions,
) -> Result<RunSummary, RunError> {
    let job = project.job(job_name)?.clone();
    let started = Instant::now();
    // Renewed while this function runs: should the process die, the run is marked abandoned.
    let _lease = crate::store::RunLease::keep(store.clone(), run_id, project.workers.lease);
    // Long-lived processes (the API, `watch`) opened the store long ago: sweep at each run too.
    if let Err(e) = crate::store::mark_abandoned_runs(store.as_ref()).await {
        warn!(error = %e, "cannot check for abandoned runs");
    }
    info!(run_id, job = %job.name, provider = provider.name(), model = provider.model(), "run started");
    remembered_limits(store.as_ref(), provider.as_ref()).await;
    let result = match repair_gold(project, store.clone(), &job).await {
        Ok(()) => {
            execute(
                project,
                &job,
                run_id,
                store.clone(),
                provider.clone(),
                opts,
                started,
            )
            .await
        }
        Err(e) => Err(e),
    };
    remember_limits(store.as_ref(), provider.as_ref()).await;
    match result {
        Ok((mut figures, publish, fatal)) => {
            figures.duration_ms = started.elapsed().as_millis() as u64;
            let status = if fatal.is_some() {
                RunStatus::Failed
            } else if figures.failed > 0 || figures.pending > 0 {
                RunStatus::Partial
            } else {
                RunStatus::Succeeded
            };
            crate::store::with_reconnect("finishing the run", || {
                store.finish_run(run_id, status, &figures, fatal.as_deref())
            })
            .await?;
            info!(
                run_id,
                status = status.as_str(),
                ms = figures.duration_ms,
                "run finished"
            );
            let summary = RunSummary {
                run_id,
                job: job.name.clone(),
                status,
                figures,
                publish,
                site_url: project.publish.url.clone(),
                provider: provider.name().to_string(),
                model: provider.model().to_string(),
                error: fatal,
                checks: crate::checks::recorded(store.as_ref(), run_id)
                    .await
                    .unwrap_or_default(),
                similarity: gate::recorded(store.as_ref(), run_id).await,
            };
            crate::notify::send(project, &crate::notify::Event::Finished(summary.finished())).await;
            Ok(summary)
        }
        Err(e) => {
            let figures = RunFigures {
                duration_ms: started.elapsed().as_millis() as u64,
                ..Default::default()
            };
            let message = crate::error::chain_text(&e);
            let _ = store
                .finish_run(run_id, RunStatus::Failed, &figures, Some(&message))
                .await;
            crate::notify::send(
                project,
                &crate::notify::Event::Failed {
                    job: &job.name,
                    error: &message,
                },
            )
            .await;
            Err(e)
        }
    }
}

type Executed = (RunFigures, PublishReport, Option<String>);

/// Rebuilds the gold tables of the job's datasets that an interrupted ingest left behind their
/// silver, before the job's SQL reads them.
async fn repair_gold(project: &Project, store: Arc<dyn Store>, job: &Job) -> Result<(), RunError> {
    for name in &job.datasets {
        let Ok(dataset) = project.dataset(name) else {
            continue;
        };
        crate::ingest::rebuild_stale_gold(project, store.clone(), dataset).await?;
    }
    Ok(())
}

/// How far a run may shrink the published site (`--allow-shrink` accepts anything).
pub fn shrink_policy(project: &Project, allow_shrink: bool) -> publish::ShrinkPolicy {
    publish::ShrinkPolicy {
        max_share: if allow_shrink {
            1.0
        } else {
            project.publish.max_shrink_share
        },
    }
}

/// The site as this project publishes it (its store's id is the publisher's identity).
async fn site_info(project: &Project, store: &dyn Store) -> Result<SiteInfo, RunError> {
    Ok(SiteInfo {
        name: project.name.clone(),
        base_url: project.publish.base_url.clone(),
        publisher: publish::Publisher {
            project: project.name.clone(),
            id: crate::store::store_id(store).await?,
        },
        faq_markup: project.publish.faq_markup,
    })
}

/// Fails before anything is spent when the source is empty, when publishing it would remove
/// more of the job's pages than `policy` allows, or when the publish location holds another
/// project's pages of this job: a broken upstream never costs money nor shrinks the site.
pub async fn check_source_before_generating(
    project: &Project,
    job: &Job,
    entities: &source::Entities,
    store: &dyn Store,
    policy: publish::ShrinkPolicy,
) -> Result<(), RunError> {
    if let Some(c) = crate::checks::failed_run_check(&entities.checks.results) {
        return Err(RunError::CheckFailed {
            job: job.name.clone(),
            check: c.name.clone(),
            entities: c.entities,
            examples: c.examples.join(", "),
        });
    }
    if entities.is_empty() && policy.max_share < 1.0 && entities.checks.excluded > 0 {
        return Err(RunError::ChecksExcludedAll {
            job: job.name.clone(),
            excluded: entities.checks.excluded,
        });
    }
    if entities.is_empty() && policy.max_share < 1.0 {
        return Err(RunError::EmptySource {
            job: job.name.clone(),
            sql: job.sql_file.display().to_string(),
        });
    }
    let sink = Sink::open(&project.publish.url).map_err(publish::PublishError::from)?;
    let previous = publish::published_manifest(&sink, &job.name).await?;
    let site = site_info(project, store).await?;
    let checked = publish::check_publish(
        &sink,
        &site,
        &job.name,
        previous.as_ref(),
        entities.keys.iter().map(String::as_str),
        policy,
    );
    // Entities excluded by data checks count as not in the source: a check that excludes
    // half the site is stopped by the same guard as a collapsed upstream, and says so.
    match checked {
        Err(e @ publish::PublishError::Shrink { .. }) if entities.checks.excluded > 0 => {
            Err(RunError::ShrunkByChecks {
                excluded: entities.checks.excluded,
                source: e,
            })
        }
        other => Ok(other?),
    }
}

/// Publishes the latest good text of every entity currently in the source.
/// What the publisher needs to know of a job.
fn job_info(project: &Project, job: &Job) -> JobInfo {
    JobInfo {
        name: job.name.clone(),
        description: job.description.clone(),
        entity_label: job.entity_label.clone(),
        group_label: job.group_label.clone(),
        related: job.page.related.unwrap_or(project.publish.related),
    }
}

/// The page of entity `i` with its good generation `g` (`None` when the stored output is not
/// JSON), `noindex` when the near-duplicate gate's mark names this generation.
fn page_input(
    job: &Job,
    entities: &source::Entities,
    i: usize,
    g: crate::store::GoodGeneration,
    noindex: &std::collections::BTreeMap<String, gate::Noindex>,
) -> Option<PageInput> {
    let output = serde_json::from_str(&g.output).ok()?;
    let noindex = noindex
        .get(&g.entity_key)
        .filter(|m| m.generation_id == g.generation_id)
        .map(|m| m.reason.clone());
    Some(PageInput {
        name: entities.name(i).to_string(),
        group: entities.group(i).map(str::to_string),
        key: g.entity_key,
        output,
        input_hash: g.input_hash,
        generation_id: g.generation_id,
        run_id: g.run_id,
        generated_at: g.created_at,
        noindex,
        related_by: publish::entity::related_value(job, entities, i),
        facts: publish::EntityFacts::of(job, entities, i),
    })
}

/// Entity index by key.
fn key_index(entities: &source::Entities) -> std::collections::HashMap<&str, usize> {
    entities
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect()
}

async fn publish_job(
    project: &Project,
    job: &Job,
    entities: &source::Entities,
    store: &dyn Store,
    policy: publish::ShrinkPolicy,
    ahead: publish::Ahead,
) -> Result<PublishReport, RunError> {
    let t = Instant::now();
    let sink = Sink::open(&project.publish.url).map_err(publish::PublishError::from)?;
    let site = site_info(project, store).await?;
    let good = store.good_generations(&job.name, &entities.keys).await?;
    let noindex = gate::noindexed(store, &job.name).await?;
    let index = key_index(entities);
    let pages: Vec<PageInput> = good
        .into_iter()
        .filter_map(|g| {
            let i = *index.get(g.entity_key.as_str())?;
            page_input(job, entities, i, g, &noindex)
        })
        .collect();
    let report =
        publish::publish_ahead(&sink, &site, &job_info(project, job), pages, policy, ahead).await?;
    info!(
        pages = report.pages,
        written = report.files_written,
        unchanged = report.files_unchanged,
        removed = report.files_removed,
        ms = t.elapsed().as_millis() as u64,
        "site published"
    );
    let mut report = report;
    if project.publish.check != crate::config::SiteCheck::Off {
        let t = Instant::now();
        let opts = crate::site_check::CheckOptions {
            max_similarity: project.publish.max_similarity,
        };
        let checked = crate::site_check::check_site_with(&sink, &project.publish.base_url, &opts)
            .await
            .map_err(publish::PublishError::from)?;
        for p in checked.problems.iter().take(20) {
            warn!(file = %p.file, kind = p.kind.as_str(), "site check: {}", p.message);
        }
        info!(result = %checked.summary(), ms = t.elapsed().as_millis() as u64, "site checked");
        let failed = !checked.problems.is_empty()
            && project.publish.check == crate::config::SiteCheck::Error;
        let summary = checked.summary();
        report.check = Some(checked);
        if failed {
            return Err(RunError::SiteCheck { summary });
        }
    }
    if report.pages_removed > 0 {
        let some: Vec<&str> = report
            .removed_keys
            .iter()
            .take(10)
            .map(String::as_str)
            .collect();
        warn!(
            job = %job.name,
            pages = report.pages_removed,
            keys = %some.join(", "),
            "pages removed: their entities are no longer in the source"
        );
    }
    Ok(report)
}

async fn execute(
    project: &Project,
    job: &Job,
    run_id: i64,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    opts: &RunOptions,
    started: Instant,
) -> Result<Executed, RunError> {
    if provider.batch_api().is_some() {
        return batch::execute(project, job, run_id, store, provider, opts).await;
    }
    let plan = plan_job_as_of(
        project,
        job,
        store.as_ref(),
        provider.as_ref(),
        opts.force,
        &opts.as_of(),
    )
    .await?;
    crate::checks::record(store.as_ref(), run_id, &plan.entities.checks).await?;
    let policy = shrink_policy(project, opts.allow_shrink);
    check_source_before_generating(project, job, &plan.entities, store.as_ref(), policy).await?;
    let mut figures = RunFigures {
        entities: plan.entities.len() as u64,
        skipped: (plan.entities.len() - plan.work.len()) as u64,
        ..Default::default()
    };
    let mut work = plan.work.clone();
    if let Some(limit) = opts.limit
        && work.len() > limit
    {
        figures.pending = (work.len() - limit) as u64;
        work.truncate(limit);
    }
    if let Some(limit) = opts.max_cost {
        let (provider, store) = (provider.as_ref(), store.as_ref());
        check_max_cost(project, job, &plan, &work, provider, store, limit).await?;
    }

    // Pages are written as their texts are stored, while the rest is still generating.
    let ahead = ahead::start(project, job, &plan, &work, run_id, store.clone(), policy).await;
    let run = RunCtx {
        project,
        job,
        run_id,
        store: store.clone(),
        provider: provider.clone(),
    };
    let generated = generate(&run, &plan, work, opts, &mut figures).await;
    let ahead = ahead.finish().await;
    let fatal = generated?.fatal;
    info!(
        generated = figures.generated,
        failed = figures.failed,
        ms = started.elapsed().as_millis() as u64,
        "generation finished"
    );
    // After a fatal provider error no regeneration could be paid for: the gate is left out
    // and the next run's gate sees this run's pages as earlier ones.
    if fatal.is_none() {
        gate::run_gate(&run, &plan, opts.max_cost, &mut figures).await?;
    }

    // Publish what is good, also after a fatal provider error: nothing generated is held back.
    let (report, fatal) = publish_or_record(
        publish_job(project, job, &plan.entities, store.as_ref(), policy, ahead).await,
        fatal,
    );
    figures.pages_written = report.files_written as u64;
    figures.pages_removed = report.pages_removed as u64;
    Ok((figures, report, fatal))
}

/// Fails before anything is spent when the work's estimated cost is over `--max-cost`, or
/// cannot be estimated (no price for the model).
async fn check_max_cost(
    project: &Project,
    job: &Job,
    plan: &Plan,
    work: &[WorkItem],
    provider: &dyn Provider,
    store: &dyn Store,
    limit: f64,
) -> Result<(), RunError> {
    let est = plan::estimate_work(project, job, plan, work, provider, store).await?;
    match est.cost_usd {
        Some(c) if c > limit => return Err(RunError::OverBudget { estimate: c, limit }),
        None if !work.is_empty() => {
            return Err(RunError::NoPrice {
                model: provider.model().to_string(),
            });
        }
        _ => {}
    }
    info!(
        estimate = est.cost_usd.unwrap_or(0.0),
        limit, "cost estimate within --max-cost"
    );
    Ok(())
}

/// A publish that failed after generating fails the run with its figures kept (what was paid
/// for and stored is recorded; the next run publishes it), instead of losing them with an
/// early return.
fn publish_or_record(
    published: Result<PublishReport, RunError>,
    fatal: Option<String>,
) -> (PublishReport, Option<String>) {
    match published {
        Ok(r) => (r, fatal),
        Err(e) => {
            let e = crate::error::chain_text(&e);
            let failed = format!(
                "publishing failed: {e}; the generated texts are stored and the next run publishes them"
            );
            warn!(error = %e, "publishing failed; the run's figures are recorded");
            let both = match fatal {
                Some(f) => format!("{f}; {failed}"),
                None => failed,
            };
            (PublishReport::default(), Some(both))
        }
    }
}

/// What the stages of one run of one job share: the project, the job, the run, the store and
/// the provider.
pub(crate) struct RunCtx<'a> {
    pub project: &'a Project,
    pub job: &'a Job,
    pub run_id: i64,
    pub store: Arc<dyn Store>,
    pub provider: Arc<dyn Provider>,
}

/// The outcome of one entity's generation.
struct Outcome {
    generation: NewGeneration,
    /// How its last attempt ended (its text is the last entry of the attempt log).
    last_attempt: Option<AttemptOutcome>,
    fatal: Option<String>,
    /// The run stopped before this entity got an answer: it stays pending, unrecorded.
    stopped: bool,
}

/// Generates the work list's entities (at most `llm.max_in_flight` at once), storing their
/// answers as they come in chunks and counting them into `figures`; stops starting requests
/// after a run-fatal provider error, at `--max-cost`, or when the store does not take answers
/// (those are kept and stored once more at the end, or spooled).
pub(crate) async fn generate(
    run: &RunCtx<'_>,
    plan: &Plan,
    work: Vec<WorkItem>,
    opts: &RunOptions,
    figures: &mut RunFigures,
) -> Result<Generated, RunError> {
    let (project, job, run_id) = (run.project, run.job, run.run_id);
    if work.is_empty() {
        return Ok(Generated::default());
    }
    let prompter = Arc::new(Prompter::new(job)?);
    let validator = Arc::new(Validator::new(&job.schema, job.validate.clone())?);
    let caller = EntityCaller {
        prompter,
        validator,
        schema: Arc::new(job.schema.clone()),
        provider: run.provider.clone(),
        llm: &project.llm,
        job: &job.name,
        run_id,
        stop: AtomicBool::new(false),
        // Spend so far in micro-USD, updated by each task as it finishes so --max-cost stops
        // new requests at once (not when the consumer gets to the result).
        spent: std::sync::atomic::AtomicU64::new((figures.cost_usd * 1e6) as u64),
        max_cost: opts.max_cost,
    };
    let bar = progress_bar(work.len() as u64, opts.progress);
    let total = work.len() as u64;
    let calls = work.into_iter().map(|w| caller.call(plan, w));
    let mut collected = Collected {
        figures,
        out: Generated::default(),
        done: 0,
        unsaved: Vec::new(),
        first_error: None,
    };
    let mut results = futures::stream::iter(calls)
        .buffer_unordered(project.llm.max_in_flight)
        .ready_chunks(64);
    while let Some(chunk) = results.next().await {
        let batch: Vec<NewGeneration> = chunk
            .into_iter()
            .filter_map(|r| collected.take(r, &caller.stop))
            .collect();
        collected
            .store(batch, run.store.as_ref(), &caller.stop)
            .await;
        if let Some(b) = &bar {
            b.set_position(collected.done);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    collected
        .finish(project, job, run_id, run.store.as_ref(), total)
        .await
}

/// What every entity's generation in [`generate`] shares: the prompt, the validator, the
/// provider, and the flag and spend that stop new requests.
struct EntityCaller<'a> {
    prompter: Arc<Prompter>,
    validator: Arc<Validator>,
    schema: Arc<serde_json::Value>,
    provider: Arc<dyn Provider>,
    llm: &'a crate::config::LlmConfig,
    job: &'a str,
    run_id: i64,
    stop: AtomicBool,
    spent: std::sync::atomic::AtomicU64,
    max_cost: Option<f64>,
}

impl EntityCaller<'_> {
    /// One entity's generation, ready to be recorded; `None` when the run stopped before it
    /// started.
    async fn call(&self, plan: &Plan, w: WorkItem) -> Result<Option<Outcome>, RunError> {
        if self.stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let key = plan.entities.keys[w.index].clone();
        let name = plan.entities.name(w.index).to_string();
        let (system, user) = self.prompter.render(&key, &w.context)?;
        let request = self.request(&key, system, user, w.context.clone());
        let policy = AttemptPolicy {
            max_attempts: self.llm.max_attempts,
            budget: self.llm.max_entity_time,
            price: self.llm.price(),
        };
        let provider = &*self.provider;
        let mut outcome = generate_one(
            provider,
            &self.validator,
            request,
            &name,
            policy,
            &self.stop,
        )
        .await;
        if outcome.last_attempt == Some(AttemptOutcome::ContextTooLong) {
            outcome = self
                .retry_trimmed(&key, &name, &w.context, outcome, policy)
                .await?;
        }
        if outcome.fatal.is_some() {
            // Stop here, not when the consumer sees it, so no further request is started.
            self.stop.store(true, Ordering::Relaxed);
        }
        self.count_spend(&outcome);
        Ok(Some(Outcome {
            generation: NewGeneration {
                run_id: self.run_id,
                job: self.job.to_string(),
                entity_key: key,
                input_hash: w.input_hash,
                // Real-time calls, also the retries of a batch run.
                provider: crate::llm::realtime_name(provider.name()).to_string(),
                model: provider.model().to_string(),
                ..outcome.generation
            },
            last_attempt: outcome.last_attempt,
            fatal: outcome.fatal,
            stopped: outcome.stopped,
        }))
    }

    fn request(
        &self,
        key: &str,
        system: String,
        user: String,
        context: Arc<serde_json::Value>,
    ) -> ChatRequest {
        ChatRequest {
            entity_key: key.to_string(),
            system,
            user,
            schema: self.schema.clone(),
            max_output_tokens: self.llm.max_output_tokens,
            temperature: self.llm.temperature,
            context,
            variation: 0,
        }
    }

    /// Too long for the model: render again with the template's optional parts left out
    /// (`trim` is true) and try once more, if that made the prompt shorter. The two tries'
    /// attempts, tokens, cost and time add up on the one generation.
    async fn retry_trimmed(
        &self,
        key: &str,
        name: &str,
        context: &serde_json::Value,
        mut outcome: Outcome,
        policy: AttemptPolicy,
    ) -> Result<Outcome, RunError> {
        let mut trimmed = context.clone();
        trimmed["trim"] = serde_json::Value::Bool(true);
        let (system, user) = self.prompter.render(key, &trimmed)?;
        let before = &outcome.generation;
        let left = self.llm.max_attempts.saturating_sub(before.attempts);
        if left == 0
            || system.len() + user.len() >= before.prompt_system.len() + before.prompt_user.len()
        {
            return Ok(outcome);
        }
        let request = self.request(key, system, user, Arc::new(trimmed));
        let policy = AttemptPolicy {
            max_attempts: left,
            ..policy
        };
        let second = generate_one(
            &*self.provider,
            &self.validator,
            request,
            name,
            policy,
            &self.stop,
        )
        .await;
        let first = std::mem::replace(&mut outcome, second);
        let g = &mut outcome.generation;
        g.attempts += first.generation.attempts;
        g.tokens_in += first.generation.tokens_in;
        g.tokens_out += first.generation.tokens_out;
        g.cost_usd += first.generation.cost_usd;
        g.latency_ms += first.generation.latency_ms;
        let mut log = first.generation.attempt_log;
        log.append(&mut g.attempt_log);
        g.attempt_log = log;
        Ok(outcome)
    }

    /// Adds an entity's cost to the run's spend; at `--max-cost`, no new request starts.
    fn count_spend(&self, outcome: &Outcome) {
        let cost = (outcome.generation.cost_usd * 1e6) as u64;
        let total = self.spent.fetch_add(cost, Ordering::Relaxed) + cost;
        if self.max_cost.is_some_and(|m| total as f64 / 1e6 >= m)
            && !self.stop.swap(true, Ordering::Relaxed)
        {
            warn!(
                spent = total as f64 / 1e6,
                "--max-cost reached; the rest stays pending"
            );
        }
    }
}

/// The answers of [`generate`] as they come: counted, stored chunk by chunk.
struct Collected<'f> {
    figures: &'f mut RunFigures,
    out: Generated,
    /// Answers the store took.
    done: u64,
    /// Paid answers the store would not take: kept (at most a chunk and the requests in
    /// flight, since no new request starts once the store failed), stored later or spooled.
    unsaved: Vec<NewGeneration>,
    first_error: Option<RunError>,
}

impl Collected<'_> {
    /// Counts one entity's result; its generation when it is to be stored (`None` for one left
    /// pending: stopped, met a run-fatal error, or failed to render).
    fn take(
        &mut self,
        r: Result<Option<Outcome>, RunError>,
        stop: &AtomicBool,
    ) -> Option<NewGeneration> {
        let outcome = match r {
            Ok(Some(outcome)) => outcome,
            Ok(None) => return None,
            Err(e) => {
                // Stop, but keep what the others were paid for: stored below, then the error.
                stop.store(true, Ordering::Relaxed);
                self.first_error.get_or_insert(e);
                return None;
            }
        };
        if let Some(f) = outcome.fatal {
            // The row that met a run-fatal error is not recorded: it stays pending.
            if self.out.fatal.is_none() {
                warn!(error = %f, "provider error that no retry can fix; stopping the run");
                self.out.fatal = Some(f);
            }
            stop.store(true, Ordering::Relaxed);
            return None;
        }
        let g = outcome.generation;
        let figures = &mut *self.figures;
        // Left pending when stopped; whatever its earlier attempts used is still spent.
        figures.tokens_in += g.tokens_in as u64;
        figures.tokens_out += g.tokens_out as u64;
        figures.cost_usd += g.cost_usd;
        if outcome.stopped {
            return None;
        }
        match g.status {
            GenerationStatus::Ok => figures.generated += 1,
            _ => {
                figures.failed += 1;
                warn!(key = %g.entity_key, error = g.error.as_deref().unwrap_or(""), "entity failed");
            }
        }
        self.out.outcomes.push((g.entity_key.clone(), g.status));
        Some(g)
    }

    /// Stores a chunk of answers; once the store failed, they are kept with the others.
    async fn store(&mut self, mut batch: Vec<NewGeneration>, store: &dyn Store, stop: &AtomicBool) {
        if !self.unsaved.is_empty() {
            self.unsaved.append(&mut batch);
            return;
        }
        match crate::store::with_reconnect("storing generations", || {
            store.record_generations(&batch)
        })
        .await
        {
            Ok(()) => self.done += batch.len() as u64,
            Err(e) => {
                warn!(error = %e, answers = batch.len(), "cannot store the answers; no new request is started, and they are kept to be stored");
                stop.store(true, Ordering::Relaxed);
                self.unsaved = batch;
            }
        }
    }

    /// Stores the kept answers once more (the requests in flight drained, waiting out a
    /// connection failure) or spools them; then the first error, if any, or what was done.
    async fn finish(
        self,
        project: &Project,
        job: &Job,
        run_id: i64,
        store: &dyn Store,
        total: u64,
    ) -> Result<Generated, RunError> {
        let Collected {
            figures,
            out,
            mut done,
            unsaved,
            first_error,
        } = self;
        if !unsaved.is_empty() {
            match crate::store::with_reconnect("storing kept answers", || {
                store.record_generations(&unsaved)
            })
            .await
            {
                Ok(()) => done += unsaved.len() as u64,
                Err(source) => {
                    let path = spool::write(&project.spool_dir, &job.name, run_id, &unsaved)
                        .map_err(RunError::Spool)?;
                    return Err(RunError::Spooled {
                        answers: unsaved.len(),
                        path,
                        source,
                    });
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        figures.pending += total - done;
        Ok(out)
    }
}

/// What [`generate`] did.
#[derive(Debug, Default)]
pub(crate) struct Generated {
    /// A provider error that stopped the run.
    pub fatal: Option<String>,
    /// The recorded outcome of each entity that got one (stopped ones are absent: pending).
    pub outcomes: Vec<(String, GenerationStatus)>,
}

/// Limits of one entity's attempts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptPolicy {
    max_attempts: u32,
    budget: Duration,
    price: Option<crate::config::Price>,
}

/// Calls the provider until the output validates, a row-fatal error occurs, or the attempts or
/// the entity's time budget run out. Retryable errors back off with full jitter (a 429's shared
/// pause is enforced by the provider's limiter); a truncated answer is retried with twice the
/// output budget (doubled once, never again); a rejected output gets a repair attempt whose
/// prompt carries the validator's message. Either gives up after `MAX_TRUNCATED` /
/// `MAX_INVALID` such answers, so a model that keeps rambling or keeps breaking the schema is
/// not paid for forever, while a one-off bad answer (the common case) never costs an entity.
/// Every attempt's outcome is logged on the generation.
/// Invalid answers (each followed by a repair prompt) after which an entity is given up.
const MAX_INVALID: u32 = 3;
/// Truncated answers after which an entity is given up.
const MAX_TRUNCATED: u32 = 3;

async fn generate_one(
    provider: &dyn Provider,
    validator: &Validator,
    mut request: ChatRequest,
    name: &str,
    policy: AttemptPolicy,
    stop: &AtomicBool,
) -> Outcome {
    let started = Instant::now();
    let original_user = request.user.clone();
    let context = request.context.clone();
    let prompt_for_guard = format!("{}\n{}", request.system, original_user);
    let mut a = Attempts::new(&request, policy.price);
    while a.g.attempts < policy.max_attempts {
        if stop.load(Ordering::Relaxed) {
            return a.outcome(None, true);
        }
        if started.elapsed() >= policy.budget {
            a.g.error = Some(format!(
                "gave up after {:.0} s (llm.max_entity_seconds); last error: {}",
                started.elapsed().as_secs_f64(),
                a.g.error.as_deref().unwrap_or("none")
            ));
            break;
        }
        a.g.attempts += 1;
        match provider.complete(&request).await {
            Ok(resp) => {
                a.charge(resp.usage);
                a.g.latency_ms += resp.latency.as_millis() as u64;
                match validator.check(&resp.content, &prompt_for_guard, name, Some(&context)) {
                    Ok(_) => return a.valid(resp.content),
                    Err(rejection) => {
                        if !a.invalid(rejection.to_string(), &resp.content) {
                            break;
                        }
                        request.user = format!(
                            "{original_user}\n\nYour previous answer was rejected: {rejection}\n\
                             Previous answer:\n{}\n\nReturn a corrected JSON object.",
                            resp.content
                        );
                        a.g.prompt_user = request.user.clone();
                    }
                }
            }
            Err(e) => {
                a.log(AttemptOutcome::from(&e));
                a.g.error = Some(e.to_string());
                a.g.status = GenerationStatus::Failed;
                match e.class() {
                    ErrorClass::FatalForRun => return a.outcome(Some(e.to_string()), false),
                    ErrorClass::FatalForRow => break,
                    ErrorClass::Retryable => {
                        let Some(wait) = a.retry_wait(&e, &mut request) else {
                            break;
                        };
                        let left = policy.budget.saturating_sub(started.elapsed());
                        tokio::time::sleep(wait.min(left)).await;
                    }
                }
            }
        }
    }
    a.outcome(None, false)
}

/// One entity's attempts so far (see [`generate_one`]): the generation being recorded, how its
/// last attempt ended, and the counts and back-off that bound its retries.
struct Attempts {
    g: NewGeneration,
    last_attempt: Option<AttemptOutcome>,
    price: Option<crate::config::Price>,
    invalid_answers: u32,
    truncated_answers: u32,
    backoff: Duration,
}

impl Attempts {
    fn new(request: &ChatRequest, price: Option<crate::config::Price>) -> Attempts {
        Attempts {
            g: NewGeneration {
                run_id: 0,
                job: String::new(),
                entity_key: String::new(),
                input_hash: String::new(),
                status: GenerationStatus::Failed,
                prompt_system: request.system.clone(),
                prompt_user: request.user.clone(),
                output: None,
                error: None,
                provider: String::new(),
                model: String::new(),
                tokens_in: 0,
                tokens_out: 0,
                cost_usd: 0.0,
                latency_ms: 0,
                attempts: 0,
                attempt_log: Vec::new(),
            },
            last_attempt: None,
            price,
            invalid_answers: 0,
            truncated_answers: 0,
            backoff: Duration::from_millis(500),
        }
    }

    /// Counts an answer's tokens and their cost.
    fn charge(&mut self, usage: crate::llm::Usage) {
        let g = &mut self.g;
        g.tokens_in += usage.prompt_tokens;
        g.tokens_out += usage.completion_tokens;
        if let Some(p) = self.price {
            g.cost_usd += p.cost(
                usage.prompt_tokens as u64,
                usage.completion_tokens as u64,
                false,
            );
        }
    }

    fn log(&mut self, outcome: AttemptOutcome) {
        self.g.attempt_log.push(outcome.into());
        self.last_attempt = Some(outcome);
    }

    /// The entity's outcome as it stands.
    fn outcome(self, fatal: Option<String>, stopped: bool) -> Outcome {
        Outcome {
            generation: self.g,
            last_attempt: self.last_attempt,
            fatal,
            stopped,
        }
    }

    /// An answer that validates: the entity is done.
    fn valid(mut self, content: String) -> Outcome {
        self.log(AttemptOutcome::Ok);
        self.g.status = GenerationStatus::Ok;
        self.g.output = Some(content);
        self.g.error = None;
        self.outcome(None, false)
    }

    /// An answer the validator rejected, kept with its reason; false once [`MAX_INVALID`] such
    /// answers were given (the entity is given up), true when a repair may be asked for.
    fn invalid(&mut self, rejection: String, content: &str) -> bool {
        self.log(AttemptOutcome::Invalid);
        self.g.status = GenerationStatus::Invalid;
        self.g.error = Some(rejection);
        self.g.output = Some(content.to_string());
        self.invalid_answers += 1;
        self.invalid_answers < MAX_INVALID
    }

    /// How long to wait before retrying after the retryable error `e`; `None` when the entity is
    /// given up (too many truncated answers). A first truncated answer doubles the request's
    /// output budget and is retried at once.
    fn retry_wait(&mut self, e: &ProviderError, request: &mut ChatRequest) -> Option<Duration> {
        Some(match e {
            ProviderError::Truncated { usage, .. } => {
                self.charge(*usage);
                self.truncated_answers += 1;
                if self.truncated_answers >= MAX_TRUNCATED {
                    return None;
                }
                if self.truncated_answers == 1 {
                    request.max_output_tokens = request.max_output_tokens.saturating_mul(2);
                    Duration::ZERO
                } else {
                    full_jitter(Duration::from_millis(500))
                }
            }
            // The limiter already holds every request for the server's pause;
            // a little jitter spreads the restart.
            ProviderError::RateLimited { .. } => full_jitter(Duration::from_millis(100)),
            _ => {
                let w = full_jitter(self.backoff);
                self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
                w
            }
        })
    }
}

/// The attempt log's word for a provider error.
impl From<&ProviderError> for AttemptOutcome {
    fn from(e: &ProviderError) -> AttemptOutcome {
        match e {
            ProviderError::RateLimited { .. } => AttemptOutcome::RateLimited,
            ProviderError::Transient(_) => AttemptOutcome::Transient,
            ProviderError::InvalidRequest(_) => AttemptOutcome::InvalidRequest,
            ProviderError::ContextTooLong(_) => AttemptOutcome::ContextTooLong,
            ProviderError::Truncated { .. } => AttemptOutcome::Truncated,
            ProviderError::Fatal(_) | ProviderError::Client(_) => AttemptOutcome::Fatal,
        }
    }
}

/// "Full jitter" backoff: a uniform wait between zero and the current ceiling.
fn full_jitter(ceiling: Duration) -> Duration {
    use rand::RngExt;
    ceiling.mul_f64(rand::rng().random::<f64>())
}

fn progress_bar(len: u64, wanted: bool) -> Option<indicatif::ProgressBar> {
    crate::progress::terminal_bar(
        wanted,
        Some(len),
        "{spinner} generating [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
    )
}
