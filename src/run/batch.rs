//! A run through the Batch API: collect batches an earlier (perhaps killed) process left open,
//! plan, write the work as batch files, poll, validate and store every answer, then retry the
//! failed and expired requests in real time or in follow-up batches.

use super::{Executed, RunError, RunOptions, load_entities_as_of, publish_job};
use crate::config::{BatchRetry, Job, Project};
use crate::llm::batch::{BatchApi, BatchInfo, BatchPhase, BatchResult, split};
use crate::llm::{ChatRequest, ErrorClass, Provider, ProviderError};
use crate::plan::{self, WorkItem};
use crate::prompt::Prompter;
use crate::store::{
    AttemptOutcome, BatchItem, BatchRecord, BatchStatus, GenerationStatus, NewGeneration,
    RunFigures, Store,
};
use crate::validate::Validator;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Rounds of batches for one run: the first, then at most two follow-ups.
const MAX_ROUNDS: usize = 3;

pub(super) async fn execute(
    project: &Project,
    job: &Job,
    run_id: i64,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    opts: &RunOptions,
) -> Result<Executed, RunError> {
    let client = provider.batch_api().expect("batch provider");
    super::spool::replay(&project.spool_dir, &job.name, store.as_ref()).await?;
    let entities = load_entities_as_of(project, job, &opts.as_of()).await?;
    crate::checks::record(store.as_ref(), run_id, &entities.checks).await?;
    let policy = super::shrink_policy(project, opts.allow_shrink);
    super::check_source_before_generating(project, job, &entities, store.as_ref(), policy).await?;
    let names: HashMap<String, String> = (0..entities.len())
        .map(|i| (entities.keys[i].clone(), entities.name(i).to_string()))
        .collect();
    let validator = Validator::new(&job.schema, job.validate.clone())?;
    let contexts = entity_contexts(job, &entities);
    let ctx = Collect {
        contexts: &contexts,
        project,
        job,
        run_id,
        store: store.as_ref(),
        client,
        validator: &validator,
        names: &names,
        provider: provider.as_ref(),
    };
    let mut figures = RunFigures {
        entities: entities.len() as u64,
        ..Default::default()
    };

    ctx.collect_open(&mut figures).await?;

    // One plan: the entities' hashes do not change between rounds, only their states do.
    let states = store.entity_states(&job.name).await?;
    let plan = plan::make_plan(job, entities, &states, provider.as_ref(), opts.force);
    plan::check_prompts(job, &plan)?;
    figures.skipped = (plan.entities.len() - plan.work.len()) as u64;
    let mut attempted = plan.work.clone();
    if let Some(limit) = opts.limit
        && attempted.len() > limit
    {
        figures.pending = (attempted.len() - limit) as u64;
        attempted.truncate(limit);
    }
    let run = super::RunCtx {
        project,
        job,
        run_id,
        store: store.clone(),
        provider: provider.clone(),
    };
    let (realtime_failed, fatal) =
        rounds(&ctx, &run, &plan, &attempted, opts, &mut figures).await?;

    // Failed = attempted entities still without a good text for their current inputs.
    let still = match realtime_failed {
        Some(n) => n as usize,
        None => still_to_do(store.as_ref(), job, &plan, &attempted)
            .await?
            .len(),
    };
    if fatal.is_some() {
        figures.pending += still as u64;
    } else {
        figures.failed = still as u64;
    }
    if fatal.is_none() {
        // Regenerations are real-time calls, like the retries of a batch run.
        super::gate::run_gate(&run, &plan, opts.max_cost, &mut figures).await?;
    }
    let (report, fatal) = super::publish_or_record(
        publish_job(
            project,
            job,
            &plan.entities,
            store.as_ref(),
            policy,
            Default::default(),
        )
        .await,
        fatal,
    );
    figures.pages_written = report.files_written as u64;
    figures.pages_removed = report.pages_removed as u64;
    Ok((figures, report, fatal))
}

/// The rounds of batches: the attempted work first, then (at most [`MAX_ROUNDS`] in all) what
/// is still without a good text, in follow-up batches or once in real time
/// (`llm.batch_retry`). Returns how many real-time retries failed (when they ran) and the
/// run-fatal provider error that stopped the rounds, if one did.
async fn rounds(
    ctx: &Collect<'_>,
    run: &super::RunCtx<'_>,
    plan: &plan::Plan,
    attempted: &[WorkItem],
    opts: &RunOptions,
    figures: &mut RunFigures,
) -> Result<(Option<u64>, Option<String>), RunError> {
    let (project, job) = (ctx.project, ctx.job);
    let mut realtime_failed = None;
    let mut fatal = None;
    for round in 0..MAX_ROUNDS {
        let mut work: Vec<WorkItem> = if round == 0 {
            attempted.to_vec()
        } else {
            still_to_do(ctx.store, job, plan, attempted).await?
        };
        if work.is_empty() {
            break;
        }
        if round == 0
            && let Some(limit) = opts.max_cost
        {
            check_batch_cost(ctx, plan, &work, limit).await?;
        }
        if round > 0 && project.llm.batch_retry == BatchRetry::Realtime {
            info!(
                requests = work.len(),
                "retrying failed batch requests in real time"
            );
            let before = figures.failed;
            fatal = super::generate(run, plan, std::mem::take(&mut work), opts, figures)
                .await?
                .fatal;
            realtime_failed = Some(figures.failed - before);
            break;
        }
        info!(round, requests = work.len(), "submitting batch work");
        let records = match ctx.submit(plan, &work).await {
            Ok(r) => r,
            Err(e) if e.fatal_for_run() => {
                fatal = Some(crate::error::chain_text(&e));
                break;
            }
            Err(e) => return Err(e.into()),
        };
        for r in &records {
            ctx.collect(r, figures).await?;
        }
    }
    Ok((realtime_failed, fatal))
}

/// Fails before anything is submitted when the first round's cost at batch prices is over
/// `--max-cost`, or cannot be estimated (no price for the model).
async fn check_batch_cost(
    ctx: &Collect<'_>,
    plan: &plan::Plan,
    work: &[WorkItem],
    limit: f64,
) -> Result<(), RunError> {
    let (project, job, provider, store) = (ctx.project, ctx.job, ctx.provider, ctx.store);
    let est = plan::estimate_work(project, job, plan, work, provider, store).await?;
    let batch_cost = project
        .llm
        .price()
        .map(|p| p.cost(est.prompt_tokens, est.output_tokens, true));
    match batch_cost {
        Some(c) if c > limit => return Err(RunError::OverBudget { estimate: c, limit }),
        None => {
            return Err(RunError::NoPrice {
                model: provider.model().to_string(),
            });
        }
        _ => {}
    }
    Ok(())
}

/// The entities' template contexts, for the fact check of the answers collected.
fn entity_contexts(
    job: &Job,
    entities: &crate::source::Entities,
) -> HashMap<String, serde_json::Value> {
    let features = plan::job_features(job, entities);
    (0..entities.len())
        .map(|i| {
            (
                entities.keys[i].clone(),
                crate::prompt::build_context(job, entities, &features, i),
            )
        })
        .collect()
}

/// The attempted items whose entity still has no good text for its current input hash.
async fn still_to_do(
    store: &dyn Store,
    job: &Job,
    plan: &plan::Plan,
    attempted: &[WorkItem],
) -> Result<Vec<WorkItem>, RunError> {
    let states = store.entity_states(&job.name).await?;
    Ok(attempted
        .iter()
        .filter(|w| {
            states
                .get(&plan.entities.keys[w.index])
                .and_then(|s| s.good_input_hash.as_deref())
                != Some(w.input_hash.as_str())
        })
        .cloned()
        .collect())
}

struct Collect<'a> {
    project: &'a Project,
    job: &'a Job,
    run_id: i64,
    store: &'a dyn Store,
    client: &'a dyn BatchApi,
    validator: &'a Validator,
    names: &'a HashMap<String, String>,
    contexts: &'a HashMap<String, serde_json::Value>,
    provider: &'a dyn Provider,
}

/// Why submitting or collecting batches failed: the provider, or the store or a prompt on
/// this side. Any of them stops the batch work; only the provider's classes say more.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
enum BatchError {
    /// The batch API failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Recording or reading the batches and their answers failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A prompt did not render.
    #[error(transparent)]
    Prompt(#[from] crate::prompt::PromptError),
}

impl BatchError {
    /// No further batch of the run can succeed: the provider said so, or this side failed
    /// (which, like a provider unusable, leaves the rest pending for the next run).
    fn fatal_for_run(&self) -> bool {
        match self {
            BatchError::Provider(e) => e.class() == ErrorClass::FatalForRun,
            BatchError::Store(_) | BatchError::Prompt(_) => true,
        }
    }
}

impl From<BatchError> for RunError {
    fn from(e: BatchError) -> RunError {
        match e {
            BatchError::Provider(e) => RunError::ProviderFatal(e),
            BatchError::Store(e) => RunError::Store(e),
            BatchError::Prompt(e) => RunError::Prompt(e),
        }
    }
}

/// Retries a batch API call that failed transiently (5 attempts, backoff from 1 s).
async fn retrying<T, F, Fut>(what: &str, mut f: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut wait = Duration::from_secs(1);
    for attempt in 1.. {
        match f().await {
            Err(e) if e.class() == ErrorClass::Retryable && attempt < 5 => {
                warn!(error = %e, attempt, "{what} failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
    unreachable!()
}

impl Collect<'_> {
    /// Batches an earlier process submitted and never collected: they are paid for, collect them.
    async fn collect_open(&self, figures: &mut RunFigures) -> Result<(), RunError> {
        for b in self.store.open_batches(&self.job.name).await? {
            info!(
                row = b.row,
                batch = b.batch_id.as_deref().unwrap_or("?"),
                "resuming an open batch"
            );
            self.collect(&b, figures).await?;
        }
        Ok(())
    }

    /// Writes the work as batch files and creates the batches, recording each before creating it.
    async fn submit(
        &self,
        plan: &plan::Plan,
        work: &[WorkItem],
    ) -> Result<Vec<BatchRecord>, BatchError> {
        let prompter = Prompter::new(self.job)?;
        let schema = Arc::new(self.job.schema.clone());
        let mut lines = Vec::with_capacity(work.len());
        let mut items = HashMap::with_capacity(work.len());
        for w in work {
            let key = &plan.entities.keys[w.index];
            let (system, user) = prompter.render(key, &w.context)?;
            let request = ChatRequest {
                entity_key: key.clone(),
                system,
                user,
                schema: schema.clone(),
                max_output_tokens: self.project.llm.max_output_tokens,
                temperature: self.project.llm.temperature,
                context: w.context.clone(),
                variation: 0,
            };
            let body = self
                .provider
                .request_body(&request)
                .expect("batch providers write bodies");
            let cid = self.client.custom_id(&w.input_hash, key);
            lines.push(self.client.request_line(&cid, &body));
            items.insert(
                cid.clone(),
                BatchItem {
                    custom_id: cid,
                    entity_key: key.clone(),
                    input_hash: w.input_hash.clone(),
                    prompt_system: request.system,
                    prompt_user: request.user,
                },
            );
        }
        let mut records = Vec::new();
        let (max_requests, max_bytes) = self.client.limits();
        let max_requests = max_requests.min(self.project.llm.batch_max_requests);
        for chunk in split(lines, max_requests, max_bytes) {
            let chunk_items: Vec<BatchItem> = chunk
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| items.get(v["custom_id"].as_str()?).cloned())
                .collect();
            let file_id = retrying("staging a batch", || self.client.stage(&chunk)).await?;
            let row = self
                .store
                .insert_batch(self.run_id, &self.job.name, &file_id, &chunk_items)
                .await?;
            let info =
                retrying("creating a batch", || self.client.create(&file_id, &chunk)).await?;
            self.store
                .update_batch(row, Some(&info.id), BatchStatus::Submitted, None)
                .await?;
            info!(batch = %info.id, requests = chunk_items.len(), "batch created");
            records.push(BatchRecord {
                row,
                run_id: self.run_id,
                job: self.job.name.clone(),
                input_file_id: file_id,
                batch_id: Some(info.id),
                status: BatchStatus::Submitted,
                requests: chunk_items.len() as u64,
            });
        }
        Ok(records)
    }

    /// Waits for one batch, then validates and stores every answer; a request without a good
    /// answer is stored as failed (its entity is retried by the next round or run).
    async fn collect(&self, b: &BatchRecord, figures: &mut RunFigures) -> Result<(), BatchError> {
        let fail = BatchError::Store;
        let batch_id = match &b.batch_id {
            Some(id) => id.clone(),
            None => match self.adopt_or_recreate(b).await? {
                Some(id) => id,
                None => return Ok(()),
            },
        };
        let llm = &self.project.llm;
        let info = self
            .client
            .wait(&batch_id, llm.batch_poll_first, llm.batch_poll_max)
            .await?;
        info!(batch = %batch_id, status = %info.status, "batch finished");
        let mut results: HashMap<String, BatchResult> =
            retrying("downloading batch results", || self.client.results(&info))
                .await?
                .into_iter()
                .collect();
        let states = self
            .store
            .entity_states(&self.job.name)
            .await
            .map_err(fail)?;
        let price = llm.price();
        let mut generations = Vec::new();
        for it in self.store.batch_items(b.row).await.map_err(fail)? {
            // Already stored by a process killed after recording but before closing the batch.
            if states
                .get(&it.entity_key)
                .is_some_and(|s| s.good_input_hash.as_deref() == Some(it.input_hash.as_str()))
            {
                continue;
            }
            let result = results.remove(&it.custom_id);
            let g = self.batch_generation(&it, result, &batch_id, &info, price);
            figures.tokens_in += g.tokens_in as u64;
            figures.tokens_out += g.tokens_out as u64;
            figures.cost_usd += g.cost_usd;
            if g.status == GenerationStatus::Ok {
                figures.generated += 1;
            }
            generations.push(g);
        }
        for chunk in generations.chunks(500) {
            self.store.record_generations(chunk).await.map_err(fail)?;
        }
        let status = if info.phase == BatchPhase::Completed {
            BatchStatus::Collected
        } else {
            BatchStatus::Failed
        };
        self.store
            .update_batch(
                b.row,
                None,
                status,
                (status == BatchStatus::Failed).then_some(info.status.as_str()),
            )
            .await
            .map_err(fail)?;
        Ok(())
    }

    /// The generation of one batch request from its result in batch `info`: an answer
    /// (validated, unless it was cut off), the provider's error for it, or none at all.
    fn batch_generation(
        &self,
        it: &BatchItem,
        result: Option<BatchResult>,
        batch_id: &str,
        info: &BatchInfo,
        price: Option<crate::config::Price>,
    ) -> NewGeneration {
        let name = self
            .names
            .get(&it.entity_key)
            .cloned()
            .unwrap_or_else(|| it.entity_key.clone());
        let mut g = NewGeneration {
            run_id: self.run_id,
            job: self.job.name.clone(),
            entity_key: it.entity_key.clone(),
            input_hash: it.input_hash.clone(),
            status: GenerationStatus::Failed,
            prompt_system: it.prompt_system.clone(),
            prompt_user: it.prompt_user.clone(),
            output: None,
            error: None,
            provider: self.provider.name().to_string(),
            model: self.provider.model().to_string(),
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
            latency_ms: 0,
            attempts: 1,
            attempt_log: Vec::new(),
        };
        match result {
            Some(BatchResult::Answer {
                content,
                usage,
                truncated,
            }) => {
                g.tokens_in = usage.prompt_tokens;
                g.tokens_out = usage.completion_tokens;
                g.cost_usd = price.map_or(0.0, |p| {
                    p.cost(
                        usage.prompt_tokens as u64,
                        usage.completion_tokens as u64,
                        true,
                    )
                });
                if truncated {
                    g.error = Some("the answer was cut off at the output token limit".into());
                    g.attempt_log.push(AttemptOutcome::Truncated.into());
                } else {
                    let prompt = format!("{}\n{}", it.prompt_system, it.prompt_user);
                    match self.validator.check(
                        &content,
                        &prompt,
                        &name,
                        self.contexts.get(&it.entity_key),
                    ) {
                        Ok(_) => {
                            g.status = GenerationStatus::Ok;
                            g.attempt_log.push(AttemptOutcome::Ok.into());
                        }
                        Err(rejection) => {
                            g.status = GenerationStatus::Invalid;
                            g.error = Some(rejection.to_string());
                            g.attempt_log.push(AttemptOutcome::Invalid.into());
                        }
                    }
                }
                g.output = Some(content);
            }
            Some(BatchResult::Error(message)) => {
                g.error = Some(message);
                g.attempt_log.push(AttemptOutcome::BatchError.into());
            }
            None => {
                g.error = Some(format!(
                    "no answer in batch {batch_id} (status {})",
                    info.status
                ));
                g.attempt_log.push(AttemptOutcome::BatchMissing.into());
            }
        }
        g
    }

    /// A batch recorded by a process killed before it stored the provider's id: adopts the
    /// batch if the provider created it, else creates it again where the provider kept the
    /// staged input; else (the requests died with the process) closes the row, and its entities
    /// are planned again by this run. Returns the batch id to collect, if any.
    async fn adopt_or_recreate(&self, b: &BatchRecord) -> Result<Option<String>, BatchError> {
        let fail = BatchError::Store;
        let found = retrying("listing batches", || {
            self.client.find_created(&b.input_file_id, b.requests)
        })
        .await?;
        let info: Option<BatchInfo> = match found {
            Some(info) => Some(info),
            None => {
                retrying("creating a batch", || {
                    self.client.create_from_staged(&b.input_file_id)
                })
                .await?
            }
        };
        match info {
            Some(info) => {
                self.store
                    .update_batch(b.row, Some(&info.id), BatchStatus::Submitted, None)
                    .await
                    .map_err(fail)?;
                Ok(Some(info.id))
            }
            None => {
                warn!(
                    row = b.row,
                    "a batch recorded before a kill was never created; its entities are planned again"
                );
                self.store
                    .update_batch(b.row, None, BatchStatus::Failed, Some("never created"))
                    .await
                    .map_err(fail)?;
                Ok(None)
            }
        }
    }
}
