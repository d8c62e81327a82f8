//! Distributed runs: one process plans a run into the PostgreSQL task queue, any number of
//! workers (on any machines) claim tasks under leases, generate, and mark them done; the last
//! one out — exactly one, by an atomic claim on the run row — publishes and finishes the run.

use super::{
    Generated, RunError, RunOptions, RunSummary, generate, load_entities, plan_job_as_of,
    publish_job,
};
use crate::config::Project;
use crate::llm::Provider;
use crate::plan::{self, WorkItem};
use crate::queue::{Queue, Task};
use crate::store::{GenerationStatus, RunFigures, RunStatus, Store, TaskState};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// A run planned into the queue.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub run_id: i64,
    pub tasks: u64,
    /// Entities left out because a running distributed run already has them queued.
    pub already_queued: u64,
    pub entities: u64,
    pub skipped: u64,
    pub pending: u64,
}

/// Plans `job` and puts its work list into the task queue as a new distributed run.
pub async fn enqueue(
    project: &Project,
    job_name: &str,
    store: &dyn Store,
    provider: &dyn Provider,
    queue: &Queue,
    opts: &RunOptions,
    wait: bool,
) -> Result<Enqueued, RunError> {
    let job = project.job(job_name)?;
    // Planned under the job's lock: no other run of the job meanwhile. The run's workers take
    // the lock again while they work it (under the run's own holder name, shared by them all).
    let holder = crate::lease::holder_name("enqueue");
    super::exclusive::acquire(store, &job.name, &holder, wait).await?;
    let queued = enqueue_locked(project, job, store, provider, queue, opts).await;
    if let Err(e) = store.unlock_job(&job.name, &holder).await {
        warn!(error = %e, "could not release the job's lock; it lapses by itself");
    }
    queued
}

/// The lock holder of a distributed run: every worker of the run renews the job's lock under it.
pub fn distributed_holder(run_id: i64) -> String {
    format!("distributed-run-{run_id}")
}

async fn enqueue_locked(
    project: &Project,
    job: &crate::config::Job,
    store: &dyn Store,
    provider: &dyn Provider,
    queue: &Queue,
    opts: &RunOptions,
) -> Result<Enqueued, RunError> {
    // Planned and checked before the run exists: a failing or empty source leaves no run behind.
    let plan = plan_job_as_of(project, job, store, provider, opts.force, &opts.as_of()).await?;
    let policy = super::shrink_policy(project, opts.allow_shrink);
    super::check_source_before_generating(project, job, &plan.entities, store, policy).await?;
    // Workers send real-time calls, also for an `openai-batch` project.
    let writer = crate::llm::realtime_name(provider.name());
    let run_id = store
        .create_run(&job.name, writer, provider.model())
        .await?;
    crate::checks::record(store, run_id, &plan.entities.checks).await?;
    // Entities already queued with the same inputs by a run still being worked are left to it.
    let queued = queue.queued(&job.name).await?;
    let mut work: Vec<WorkItem> = plan
        .work
        .iter()
        .filter(|w| !queued.contains(&(plan.entities.keys[w.index].clone(), w.input_hash.clone())))
        .cloned()
        .collect();
    let already_queued = (plan.work.len() - work.len()) as u64;
    let pending = opts.limit.filter(|&l| work.len() > l).map_or(0, |l| {
        let p = work.len() - l;
        work.truncate(l);
        p
    });
    let skipped = (plan.entities.len() - plan.work.len()) as u64;
    queue
        .mark_distributed(run_id, plan.entities.len() as u64, skipped)
        .await?;
    let t = Instant::now();
    let tasks: Vec<(String, String)> = work
        .iter()
        .map(|w| (plan.entities.keys[w.index].clone(), w.input_hash.clone()))
        .collect();
    let n = queue.enqueue(run_id, &tasks).await?;
    info!(
        run_id,
        tasks = n,
        ms = t.elapsed().as_millis() as u64,
        "run enqueued"
    );
    Ok(Enqueued {
        run_id,
        already_queued,
        tasks: n,
        entities: plan.entities.len() as u64,
        skipped,
        pending: pending as u64,
    })
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Unique name of this worker (host, pid and a random suffix by default).
    pub id: String,
    /// The run to work on; default: the oldest running distributed run (of `job`, if given).
    pub run: Option<i64>,
    pub job: Option<String>,
}

impl WorkerOptions {
    pub fn default_id() -> String {
        use rand::RngExt;
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        format!(
            "{host}-{}-{:04x}",
            std::process::id(),
            rand::rng().random::<u16>()
        )
    }
}

/// What one worker did.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    pub run_id: i64,
    pub job: String,
    pub claimed: u64,
    pub generated: u64,
    pub failed: u64,
    /// The run's summary when this worker was the one that finished it.
    pub finished: Option<RunSummary>,
}

/// Works distributed runs, oldest first, until none has anything left for a worker: after each
/// run (its tasks done, or taken by live workers, its publish step taken or done) it moves on to
/// the next runnable one, so a run whose publisher died does not stop the runs queued after it.
/// With `opts.run`, works that run only. No run with work left is not an error (none is
/// returned): the workers of a pool that start after the work is done simply exit.
pub async fn work_until_idle(
    project: &Project,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    queue: &Queue,
    opts: &WorkerOptions,
) -> Result<Vec<WorkerReport>, RunError> {
    if opts.run.is_some() {
        return Ok(vec![work(project, store, provider, queue, opts).await?]);
    }
    let mut reports: Vec<WorkerReport> = Vec::new();
    let mut tried: Vec<i64> = Vec::new();
    while let Some((run_id, _)) = queue.open_run(opts.job.as_deref(), &tried).await? {
        let one = WorkerOptions {
            run: Some(run_id),
            ..opts.clone()
        };
        reports.push(work(project, store.clone(), provider.clone(), queue, &one).await?);
        // Once per run and process: a run this worker could not finish is left to others.
        tried.push(run_id);
    }
    Ok(reports)
}

/// Works a distributed run until no task is left, then finishes it if this worker is last.
pub async fn work(
    project: &Project,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    queue: &Queue,
    opts: &WorkerOptions,
) -> Result<WorkerReport, RunError> {
    let (run_id, job_name) = run_to_work(store.as_ref(), queue, opts).await?;
    let job = project.job(&job_name)?.clone();
    let me = opts.id.clone();
    info!(run_id, job = %job.name, worker = %me, "worker started");
    // The job's lock, shared by the run's workers (one holder name): a CLI run, the API or
    // `watch` running the job meanwhile wait for the workers, and a worker waits for them.
    let lock = distributed_holder(run_id);
    super::exclusive::acquire(store.as_ref(), &job.name, &lock, true).await?;
    let worker = RunWorker {
        project,
        store,
        provider,
        queue,
        run_id,
        job,
        me,
        lock,
    };

    // Every worker derives the same features from the same source; contexts come from here.
    let entities = load_entities(project, &worker.job).await?;
    let plan = plan::make_plan(
        &worker.job,
        entities,
        &HashMap::new(),
        worker.provider.as_ref(),
        true,
    );

    let beat = worker.start_heartbeat().await?;
    let mut report = WorkerReport {
        run_id,
        job: worker.job.name.clone(),
        ..Default::default()
    };
    let result = worker.work_tasks(&plan, &mut report).await;
    beat.stop();
    let _ = queue.leave(&worker.me).await;
    let mut fatal = match result {
        Ok(fatal) => fatal,
        Err(e) => {
            worker.release_if_last().await;
            return Err(e);
        }
    };
    info!(run_id, worker = %worker.me, claimed = report.claimed, generated = report.generated, "worker done");

    // One process at a time finishes the run: the first to claim the (leased) publish step once
    // no task is open, or once the run failed (a run-fatal error, here or in another worker).
    let counts = queue.counts(run_id).await?;
    let (status, error) = queue.run_status(run_id).await?;
    if fatal.is_none() && status != RunStatus::Running {
        fatal = Some(error.unwrap_or_else(|| format!("the run is {status}")));
    }
    if (counts.open() == 0 || fatal.is_some()) && queue.become_publisher(run_id, &worker.me).await?
    {
        report.finished = Some(worker.publish_and_finish(&plan, counts, fatal).await?);
    } else {
        worker.release_if_last().await;
    }
    Ok(report)
}

/// The run a worker works: `opts.run`, or else the oldest distributed run with work left.
async fn run_to_work(
    store: &dyn Store,
    queue: &Queue,
    opts: &WorkerOptions,
) -> Result<(i64, String), RunError> {
    Ok(match opts.run {
        Some(id) => {
            let run = store.run(id).await?.ok_or(RunError::NoSuchRun(id))?;
            (id, run.job)
        }
        None => queue
            .open_run(opts.job.as_deref(), &[])
            .await?
            .ok_or(RunError::NoOpenRun)?,
    })
}

/// One worker on one distributed run: what each step of [`work`] needs.
struct RunWorker<'a> {
    project: &'a Project,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    queue: &'a Queue,
    run_id: i64,
    job: crate::config::Job,
    /// This worker's id (its task claims and heartbeats).
    me: String,
    /// The holder name of the job's lock, shared by the run's workers.
    lock: String,
}

/// The heartbeat task of a worker (see [`RunWorker::start_heartbeat`]).
struct Heartbeat {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

impl RunWorker<'_> {
    /// Heartbeats: keep leases alive and take 1/N of the rate limit, N = live workers.
    async fn start_heartbeat(&self) -> Result<Heartbeat, RunError> {
        let run_id = self.run_id;
        let live = self.queue.heartbeat(run_id, &self.me).await?;
        self.provider.set_rate_share(1.0 / live as f64);
        let stop = Arc::new(AtomicBool::new(false));
        let (queue, me, provider, stopped) = (
            self.queue.clone(),
            self.me.clone(),
            self.provider.clone(),
            stop.clone(),
        );
        let (store, job_name, lock) =
            (self.store.clone(), self.job.name.clone(), self.lock.clone());
        let task = tokio::spawn(async move {
            // Often enough that a newly started worker is counted within a second (until then
            // the others run at their old share), rarely enough to cost nothing.
            let every = (queue.lease() / 3).min(Duration::from_secs(1));
            while !stopped.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
                match queue.heartbeat(run_id, &me).await {
                    Ok(n) => provider.set_rate_share(1.0 / n as f64),
                    Err(e) => warn!(error = %e, "heartbeat failed; retrying"),
                }
                if let Err(e) = store
                    .try_lock_job(&job_name, &lock, crate::lease::TTL)
                    .await
                {
                    warn!(error = %e, "cannot renew the job's lock; retrying");
                }
            }
        });
        Ok(Heartbeat { stop, task })
    }

    /// Claims and works tasks until none is open or the run stops running; the run-fatal
    /// error that stopped it, if one did (the run is then failed for every worker).
    async fn work_tasks(
        &self,
        plan: &plan::Plan,
        report: &mut WorkerReport,
    ) -> Result<Option<String>, RunError> {
        let index: HashMap<&str, usize> = plan
            .work
            .iter()
            .enumerate()
            .map(|(i, w)| (plan.entities.keys[w.index].as_str(), i))
            .collect();
        let mut figures = RunFigures::default();
        let (run_id, me) = (self.run_id, self.me.as_str());
        loop {
            let (status, _) = self.queue.run_status(run_id).await?;
            if status != RunStatus::Running {
                info!(run_id, status = %status, "the run is no longer running; stopping");
                return Ok(None);
            }
            let tasks = self
                .queue
                .claim(run_id, me, self.project.workers.claim_batch as i64)
                .await?;
            if tasks.is_empty() {
                if self.queue.counts(run_id).await?.open() == 0 {
                    return Ok(None);
                }
                // Others hold the rest; their leases may lapse if they died.
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            report.claimed += tasks.len() as u64;
            if let Some(fatal) = self
                .work_claimed(&tasks, plan, &index, &mut figures, report)
                .await?
            {
                return Ok(Some(fatal));
            }
        }
    }

    /// Works one claim: marks what needs no call, generates the rest, marks each task by its
    /// outcome and gives back the ones left unanswered. A run-fatal error fails the run.
    async fn work_claimed(
        &self,
        tasks: &[Task],
        plan: &plan::Plan,
        index: &HashMap<&str, usize>,
        figures: &mut RunFigures,
        report: &mut WorkerReport,
    ) -> Result<Option<String>, RunError> {
        let (queue, run_id, me) = (self.queue, self.run_id, self.me.as_str());
        let (work, done, gone) = sort_tasks(
            tasks,
            &plan.work,
            index,
            self.store.as_ref(),
            &self.job.name,
        )
        .await?;
        queue.complete(run_id, me, &done, TaskState::Done).await?;
        queue.complete(run_id, me, &gone, TaskState::Failed).await?;
        let by_key: HashMap<&str, i64> = tasks
            .iter()
            .map(|t| (t.entity_key.as_str(), t.seq))
            .collect();
        let run = super::RunCtx {
            project: self.project,
            job: &self.job,
            run_id,
            store: self.store.clone(),
            provider: self.provider.clone(),
        };
        let Generated { fatal, outcomes } =
            generate(&run, plan, work, &RunOptions::default(), figures).await?;
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        let mut answered = HashSet::new();
        for (key, status) in &outcomes {
            answered.insert(key.as_str());
            if let Some(&seq) = by_key.get(key.as_str()) {
                if *status == GenerationStatus::Ok {
                    ok.push(seq)
                } else {
                    bad.push(seq)
                }
            }
        }
        report.generated += ok.len() as u64;
        report.failed += bad.len() as u64;
        queue.complete(run_id, me, &ok, TaskState::Done).await?;
        queue.complete(run_id, me, &bad, TaskState::Failed).await?;
        let unanswered: Vec<i64> = tasks
            .iter()
            .filter(|t| {
                !answered.contains(t.entity_key.as_str())
                    && !done.contains(&t.seq)
                    && !gone.contains(&t.seq)
            })
            .map(|t| t.seq)
            .collect();
        if let Some(f) = fatal {
            queue.release(run_id, me, &unanswered).await?;
            queue.fail_run(run_id, &f).await?;
            return Ok(Some(f));
        }
        if !unanswered.is_empty() {
            queue.release(run_id, me, &unanswered).await?;
        }
        Ok(None)
    }

    /// With the publish step won: publishes the job (renewing the step's lease meanwhile),
    /// records the run's outcome, releases the job's lock and notifies.
    async fn publish_and_finish(
        &self,
        plan: &plan::Plan,
        counts: crate::queue::Counts,
        fatal: Option<String>,
    ) -> Result<RunSummary, RunError> {
        let (queue, run_id, me) = (self.queue, self.run_id, self.me.as_str());
        let project = self.project;
        // Renewed while publishing: should this worker die, another takes the step over.
        let renew = {
            let (queue, me) = (queue.clone(), me.to_string());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(queue.lease() / 3).await;
                    if let Err(e) = queue.renew_publisher(run_id, &me).await {
                        warn!(error = %e, "cannot renew the publish lease; retrying");
                    }
                }
            })
        };
        // A distributed run has no command line of its own here: the configured share applies.
        let policy = super::shrink_policy(project, false);
        let published = publish_job(
            project,
            &self.job,
            &plan.entities,
            self.store.as_ref(),
            policy,
            Default::default(),
        )
        .await;
        renew.abort();
        let report_pub = match published {
            Ok(r) => r,
            Err(e) => {
                // Given up at once: the next worker (or this one's next start) publishes.
                let _ = queue.resign_publisher(run_id, me).await;
                self.release_if_last().await;
                return Err(e);
            }
        };
        let f = self.final_figures(counts, &report_pub).await?;
        let status = if fatal.is_some() {
            RunStatus::Failed
        } else if f.failed > 0 {
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        };
        let store = self.store.as_ref();
        store
            .finish_run(run_id, status, &f, fatal.as_deref())
            .await?;
        if let Err(e) = store.unlock_job(&self.job.name, &self.lock).await {
            warn!(error = %e, "could not release the job's lock; it lapses by itself");
        }
        info!(run_id, worker = %me, status = status.as_str(), "run finished and published by this worker");
        let summary = RunSummary {
            run_id,
            job: self.job.name.clone(),
            status,
            figures: f,
            publish: report_pub,
            site_url: project.publish.url.clone(),
            provider: crate::llm::realtime_name(self.provider.name()).to_string(),
            model: self.provider.model().to_string(),
            error: fatal,
            checks: crate::checks::recorded(store, run_id)
                .await
                .unwrap_or_default(),
            similarity: super::gate::recorded(store, run_id).await,
        };
        crate::notify::send(project, &crate::notify::Event::Finished(summary.finished())).await;
        Ok(summary)
    }

    /// The run's figures over all its workers: its tasks' counts, the spend its generations
    /// recorded, its time since it started, and this publish.
    async fn final_figures(
        &self,
        counts: crate::queue::Counts,
        published: &crate::publish::PublishReport,
    ) -> Result<RunFigures, RunError> {
        let (entities, skipped, started_at) = self.queue.run_started(self.run_id).await?;
        let (tokens_in, tokens_out, cost) = self.queue.spend(self.run_id).await?;
        let duration_ms = chrono::DateTime::parse_from_rfc3339(&started_at)
            .map(|t| {
                (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                    .num_milliseconds()
                    .max(0) as u64
            })
            .unwrap_or(0);
        Ok(RunFigures {
            entities,
            generated: counts.done as u64,
            skipped,
            failed: counts.failed as u64,
            pending: counts.open() as u64,
            tokens_in: tokens_in as u64,
            tokens_out: tokens_out as u64,
            cost_usd: cost,
            duration_ms,
            pages_written: published.files_written as u64,
            pages_removed: published.pages_removed as u64,
        })
    }

    async fn release_if_last(&self) {
        release_if_last(
            self.queue,
            self.store.as_ref(),
            self.run_id,
            &self.job.name,
            &self.lock,
        )
        .await;
    }
}

/// Releases the job's lock held for the run when no worker of the run is alive any more (this
/// one has left): otherwise a run stopped short would hold up the job's next run for a lease.
async fn release_if_last(queue: &Queue, store: &dyn Store, run_id: i64, job: &str, lock: &str) {
    match queue.live_workers(run_id).await {
        Ok(0) => {
            if let Err(e) = store.unlock_job(job, lock).await {
                warn!(error = %e, "could not release the job's lock; it lapses by itself");
            }
        }
        Ok(_) => {}
        Err(e) => {
            warn!(error = %e, "cannot count the run's workers; the job's lock lapses by itself")
        }
    }
}

/// Splits claimed tasks into work to do, tasks already done (a re-claimed task whose entity was
/// stored by a worker that died before marking it), and tasks whose entity left the source.
async fn sort_tasks(
    tasks: &[Task],
    all: &[WorkItem],
    index: &HashMap<&str, usize>,
    store: &dyn Store,
    job: &str,
) -> Result<(Vec<WorkItem>, Vec<i64>, Vec<i64>), RunError> {
    let (mut work, mut done, mut gone) = (Vec::new(), Vec::new(), Vec::new());
    // An entity whose current good text already has the task's inputs is not paid for again:
    // another run (a CLI run, an earlier queue of the same job) or a worker that died after
    // storing it has written it. One keyed read per claim.
    let keys: Vec<String> = tasks.iter().map(|t| t.entity_key.clone()).collect();
    let good: HashMap<String, String> = store
        .good_generations(job, &keys)
        .await?
        .into_iter()
        .map(|g| (g.entity_key, g.input_hash))
        .collect();
    for t in tasks {
        let Some(&i) = index.get(t.entity_key.as_str()) else {
            gone.push(t.seq);
            continue;
        };
        let item = &all[i];
        if good.get(&t.entity_key) == Some(&item.input_hash) {
            done.push(t.seq);
            continue;
        }
        work.push(item.clone());
    }
    Ok((work, done, gone))
}
