//! On-demand insights: `GET /v1/jobs/{job}/entities/{key}`.
//!
//! A job's source rows and their features are loaded once into a snapshot (peer groups need the
//! whole population, so one entity's inputs cannot be computed alone) and reused for
//! `serve.snapshot_seconds`; after that the old snapshot keeps answering while a new one loads.
//! An entity's context and input hash are computed on first use. Answers are cached in memory
//! as ready-to-send JSON, checked against the current input hash on every hit.
//!
//! When the store has no good text for the current inputs (or `?refresh=true`), the entity is
//! generated on the spot with the same engine as a run (retries, validation, repair, cost) and
//! recorded under the job's "service run". Requests for the same entity and inputs share one
//! generation (single flight); it runs in its own task, so a client that hangs up does not
//! waste the call and the answer still lands in the store.

use super::error::ApiError;
use crate::config::{Job, Project};
use crate::llm::Provider;
use crate::plan::{Plan, Reason, WorkItem};
use crate::prompt::build_context;
use crate::run::RunOptions;
use crate::store::{GenerationStatus, RunFigures, RunStatus, Store};
use axum::body::Bytes;
use axum::http::StatusCode;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// A job's entities and features as of one read of its source.
pub struct Snapshot {
    plan: Plan,
    index: HashMap<String, usize>,
    hashes: Vec<OnceLock<String>>,
    loaded: Instant,
    /// A reload of this snapshot is under way (or backing off after a failure).
    reloading: std::sync::atomic::AtomicBool,
}

/// A good text, as served.
pub struct Cached {
    pub input_hash: String,
    pub body: Bytes,
}

/// Where an answer came from (the `X-Shopscribe-Source` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Store,
    Generated,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Store => "store",
            Source::Generated => "generated",
        }
    }
}

type Flight = Shared<BoxFuture<'static, Result<Arc<Cached>, ApiError>>>;

/// Most answers kept in memory; beyond it an arbitrary one is dropped (the store has them all).
const MAX_CACHED: usize = 200_000;

pub struct EntityService {
    project: Arc<Project>,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    metrics: Arc<super::metrics::Metrics>,
    snapshots: Mutex<HashMap<String, Arc<Snapshot>>>,
    /// One source read per job at a time.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    cache: std::sync::RwLock<HashMap<(String, String), Arc<Cached>>>,
    flights: Mutex<HashMap<(String, String, String), Flight>>,
    /// The run each job's on-demand generations are recorded under, with its running figures.
    service_runs: tokio::sync::Mutex<HashMap<String, ServiceRun>>,
    /// Generations in progress, waited for on shutdown.
    tasks: TaskTracker,
}

/// The run a job's on-demand generations are recorded under, held by this process.
struct ServiceRun {
    id: i64,
    figures: RunFigures,
    /// Renewed while the process lives: a killed server's service run is marked abandoned.
    _lease: crate::store::RunLease,
}

impl EntityService {
    pub fn new(
        project: Arc<Project>,
        store: Arc<dyn Store>,
        provider: Arc<dyn Provider>,
        metrics: Arc<super::metrics::Metrics>,
    ) -> EntityService {
        EntityService {
            project,
            store,
            provider,
            metrics,
            snapshots: Mutex::default(),
            loading: Mutex::default(),
            cache: Default::default(),
            flights: Mutex::default(),
            service_runs: Default::default(),
            tasks: TaskTracker::new(),
        }
    }

    /// Forgets a job's snapshot (its data changed: the next request reads the source again).
    pub fn invalidate(&self, job: &str) {
        self.snapshots.lock().unwrap().remove(job);
    }

    async fn snapshot(self: &Arc<Self>, job: &Job) -> Result<Arc<Snapshot>, ApiError> {
        let ttl = self.project.serve.snapshot_ttl;
        let current = self.snapshots.lock().unwrap().get(&job.name).cloned();
        if let Some(s) = &current {
            if s.loaded.elapsed() < ttl {
                return Ok(s.clone());
            }
            // Stale: answer from it while one task reads the source again (one at a time; after
            // a failure the next attempt waits, so a dead source is not hammered per request).
            use std::sync::atomic::Ordering;
            if s.reloading
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let this = self.clone();
                let (job, old) = (job.clone(), s.clone());
                tokio::spawn(async move {
                    if let Err(e) = this.load(&job, true).await {
                        warn!(job = %job.name, error = %e.message, "reloading the job's source failed; the old snapshot stays (next try in 30 s)");
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        old.reloading.store(false, Ordering::Release);
                    }
                });
            }
            return Ok(s.clone());
        }
        self.load(job, false).await
    }

    async fn load(&self, job: &Job, refresh: bool) -> Result<Arc<Snapshot>, ApiError> {
        let gate = self
            .loading
            .lock()
            .unwrap()
            .entry(job.name.clone())
            .or_default()
            .clone();
        let Ok(_guard) = gate.try_lock() else {
            if refresh {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "source_unavailable",
                    "already reloading",
                ));
            }
            // Someone else is loading it: wait for them, then use theirs.
            let _g = gate.lock().await;
            if let Some(s) = self.snapshots.lock().unwrap().get(&job.name) {
                return Ok(s.clone());
            }
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "source_unavailable",
                format!("the source of job `{}` could not be read", job.name),
            ));
        };
        if !refresh && let Some(s) = self.snapshots.lock().unwrap().get(&job.name) {
            return Ok(s.clone());
        }
        let t = Instant::now();
        let entities = crate::run::load_entities(&self.project, job)
            .await
            .map_err(|e| {
                // The error names SQL files, lines and database messages: the log's, not the
                // client's.
                ApiError::unavailable(
                    "source_unavailable",
                    format!("the source of job `{}` could not be read", job.name),
                    crate::error::Chain(&e),
                )
            })?;
        // A `fail_run` data check stops on-demand generation as it stops a run: nothing is
        // written from a source the project declared unfit.
        if let Some(c) = crate::checks::failed_run_check(&entities.checks.results) {
            return Err(ApiError::unavailable(
                "source_unavailable",
                format!(
                    "the source of job `{}` fails its data check `{}`",
                    job.name, c.name
                ),
                c,
            ));
        }
        let features = crate::plan::job_features(job, &entities);
        let index = entities
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let hashes = (0..entities.len()).map(|_| OnceLock::new()).collect();
        let snapshot = Arc::new(Snapshot {
            plan: Plan {
                entities,
                features,
                work: Vec::new(),
                new: 0,
                changed: 0,
                retry: 0,
                unchanged: 0,
                hashes: Vec::new(),
            },
            index,
            hashes,
            loaded: Instant::now(),
            reloading: Default::default(),
        });
        info!(job = %job.name, entities = snapshot.index.len(), ms = t.elapsed().as_millis() as u64, "source snapshot loaded");
        self.snapshots
            .lock()
            .unwrap()
            .insert(job.name.clone(), snapshot.clone());
        Ok(snapshot)
    }

    fn hash(&self, job: &Job, s: &Snapshot, i: usize) -> String {
        s.hashes[i]
            .get_or_init(|| {
                let (_, hash) = crate::plan::context_and_hash(
                    job,
                    &s.plan.entities,
                    &s.plan.features,
                    self.provider.as_ref(),
                    i,
                );
                hash
            })
            .clone()
    }

    /// The current text of one entity. `may_generate` is asked (once, only when this request
    /// would start a new generation) whether the caller may spend on one.
    pub async fn get(
        self: &Arc<Self>,
        job: &Job,
        key: &str,
        refresh: bool,
        may_generate: impl FnOnce() -> Result<(), ApiError>,
    ) -> Result<(Arc<Cached>, Source), ApiError> {
        let snap = self.snapshot(job).await?;
        let Some(&i) = snap.index.get(key) else {
            return Err(ApiError::not_found(format!(
                "job `{}` has no entity `{key}` in its source",
                job.name
            )));
        };
        let hash = self.hash(job, &snap, i);
        let cache_key = (job.name.clone(), key.to_string());
        if !refresh {
            if let Some(c) = self.cache.read().unwrap().get(&cache_key)
                && c.input_hash == hash
            {
                return Ok((c.clone(), Source::Cache));
            }
            let good = self
                .store
                .good_generations(&job.name, &[key.to_string()])
                .await?;
            if let Some(g) = good.into_iter().next()
                && g.input_hash == hash
            {
                let cached = Arc::new(answer(job, &snap, i, &g)?);
                self.remember(cache_key, cached.clone());
                return Ok((cached, Source::Store));
            }
        }
        let flight_key = (job.name.clone(), key.to_string(), hash.clone());
        let flight = {
            let mut flights = self.flights.lock().unwrap();
            match flights.get(&flight_key) {
                Some(f) => f.clone(),
                None => {
                    // A flight that finished between our store read and now left its answer
                    // in the cache: use it rather than paying again.
                    if !refresh
                        && let Some(c) = self.cache.read().unwrap().get(&cache_key)
                        && c.input_hash == hash
                    {
                        return Ok((c.clone(), Source::Cache));
                    }
                    may_generate()?;
                    let this = self.clone();
                    let (job, snap, fk) = (job.clone(), snap.clone(), flight_key.clone());
                    let ck = cache_key.clone();
                    let task = self.tasks.spawn(async move {
                        // Removed however the task ends (a panic included), after the answer
                        // is cached, so no request can fall between the two and pay again.
                        let _unflight = Unflight(this.clone(), fk);
                        let r = this.generate(&job, &snap, i, hash, refresh).await;
                        if let Ok(c) = &r {
                            this.remember(ck, c.clone());
                        }
                        r
                    });
                    let f: Flight = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(ApiError::internal(format!("generation task failed: {e}")))
                        })
                    }
                    .boxed()
                    .shared();
                    flights.insert(flight_key, f.clone());
                    f
                }
            }
        };
        // The flight's task has cached the answer already.
        Ok((flight.await?, Source::Generated))
    }

    fn remember(&self, key: (String, String), value: Arc<Cached>) {
        let mut cache = self.cache.write().unwrap();
        if cache.len() >= MAX_CACHED && !cache.contains_key(&key) {
            let victim = cache.keys().next().cloned();
            if let Some(v) = victim {
                cache.remove(&v);
            }
        }
        cache.insert(key, value);
    }

    async fn service_run(&self, job: &str) -> Result<i64, ApiError> {
        let mut runs = self.service_runs.lock().await;
        if let Some(run) = runs.get(job) {
            return Ok(run.id);
        }
        let id = self
            .store
            .create_run(job, self.provider.name(), self.provider.model())
            .await?;
        info!(job, run_id = id, "service run for on-demand generations");
        let lease =
            crate::store::RunLease::keep(self.store.clone(), id, self.project.workers.lease);
        runs.insert(
            job.to_string(),
            ServiceRun {
                id,
                figures: RunFigures::default(),
                _lease: lease,
            },
        );
        Ok(id)
    }

    /// Adds one generation's figures to its service run and records them, so the run row is
    /// always current (and final if the process dies).
    async fn account(&self, job: &str, add: &RunFigures) -> Result<(), ApiError> {
        let mut runs = self.service_runs.lock().await;
        let Some(ServiceRun { id, figures: f, .. }) = runs.get_mut(job) else {
            return Ok(());
        };
        f.entities += 1;
        f.generated += add.generated;
        f.failed += add.failed;
        f.tokens_in += add.tokens_in;
        f.tokens_out += add.tokens_out;
        f.cost_usd += add.cost_usd;
        f.duration_ms += add.duration_ms;
        let status = if f.failed > 0 {
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        };
        self.store.finish_run(*id, status, f, None).await?;
        Ok(())
    }

    async fn generate(
        &self,
        job: &Job,
        snap: &Snapshot,
        i: usize,
        hash: String,
        refresh: bool,
    ) -> Result<Arc<Cached>, ApiError> {
        let t = Instant::now();
        let key = snap.plan.entities.keys[i].clone();
        let run_id = self.service_run(&job.name).await?;
        let context = build_context(job, &snap.plan.entities, &snap.plan.features, i);
        let work = vec![WorkItem {
            index: i,
            input_hash: hash.clone(),
            reason: if refresh {
                Reason::Forced
            } else {
                Reason::Changed
            },
            context: Arc::new(context),
        }];
        let mut figures = RunFigures::default();
        let run = crate::run::RunCtx {
            project: &self.project,
            job,
            run_id,
            store: self.store.clone(),
            provider: self.provider.clone(),
        };
        let generated =
            crate::run::generate(&run, &snap.plan, work, &RunOptions::default(), &mut figures)
                .await
                .map_err(|e| {
                    ApiError::internal(format!(
                        "generation could not start: {}",
                        crate::error::Chain(&e)
                    ))
                })?;
        figures.duration_ms = t.elapsed().as_millis() as u64;
        if let Err(e) = self.account(&job.name, &figures).await {
            // The text itself is stored; only the service run's tally is behind.
            warn!(job = %job.name, error = %e.message, "could not update the service run's figures");
        }
        if let Some(fatal) = generated.fatal {
            self.metrics.generation("provider_unavailable");
            return Err(ApiError {
                retry_after: Some(60),
                ..ApiError::unavailable(
                    "llm_unavailable",
                    "the LLM provider cannot be used right now (its key, quota or endpoint)",
                    fatal,
                )
            });
        }
        self.answer_of(job, snap, i, &key, generated.outcomes.first().map(|o| o.1))
            .await
    }

    /// The API's answer for an entity whose generation ended with `status` (`None`: stopped
    /// before it finished): the stored text, or why there is none.
    async fn answer_of(
        &self,
        job: &Job,
        snap: &Snapshot,
        i: usize,
        key: &str,
        status: Option<GenerationStatus>,
    ) -> Result<Arc<Cached>, ApiError> {
        match status {
            Some(GenerationStatus::Ok) => {
                self.metrics.generation(GenerationStatus::Ok.as_str());
                let good = self
                    .store
                    .good_generations(&job.name, &[key.to_string()])
                    .await?;
                let g = good
                    .into_iter()
                    .next()
                    .ok_or_else(|| ApiError::internal("the new text was not found in the store"))?;
                Ok(Arc::new(answer(job, snap, i, &g)?))
            }
            Some(_) => {
                // Invalid answers count as failed here, as they always did.
                self.metrics.generation(GenerationStatus::Failed.as_str());
                let last = self.store.generations_of(&job.name, key).await?;
                let last = last.last().map(|(g, _)| g);
                let error = last.and_then(|g| g.error.clone());
                // A validator's reason is about the text and helps the client; a provider's
                // error (addresses, answers of an upstream server) stays in the log.
                let reason = match last {
                    Some(g) if g.status == GenerationStatus::Invalid => {
                        error.unwrap_or_else(|| "no reason recorded".into())
                    }
                    _ => {
                        warn!(job = %job.name, key, error = error.as_deref().unwrap_or("none"), "on-demand generation failed");
                        "the LLM provider gave no usable answer".into()
                    }
                };
                Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "generation_failed",
                    format!("no valid text could be generated for `{key}`: {reason}"),
                ))
            }
            None => {
                self.metrics.generation("stopped");
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "generation_stopped",
                    "the generation was stopped before it finished; try again",
                ))
            }
        }
    }

    /// Records the final figures of every service run (graceful shutdown).
    pub async fn close(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        let runs = self.service_runs.lock().await;
        for (job, ServiceRun { id, figures: f, .. }) in runs.iter() {
            let status = if f.failed > 0 {
                RunStatus::Partial
            } else {
                RunStatus::Succeeded
            };
            if let Err(e) = self.store.finish_run(*id, status, f, None).await {
                warn!(job, run_id = id, error = %e, "could not record the service run's figures");
            }
        }
    }
}

/// Removes a flight from the map when its task ends, whatever way it ends.
struct Unflight(Arc<EntityService>, (String, String, String));

impl Drop for Unflight {
    fn drop(&mut self) {
        if let Ok(mut flights) = self.0.flights.lock() {
            flights.remove(&self.1);
        }
    }
}

/// The JSON answer for a good generation.
fn answer(
    job: &Job,
    snap: &Snapshot,
    i: usize,
    g: &crate::store::GoodGeneration,
) -> Result<Cached, ApiError> {
    let output: serde_json::Value = serde_json::from_str(&g.output)
        .map_err(|e| ApiError::internal(format!("stored output is not JSON: {e}")))?;
    let e = &snap.plan.entities;
    let body = serde_json::json!({
        "job": job.name,
        "key": g.entity_key,
        "name": e.name(i),
        "group": e.group(i),
        "version": g.generation_id,
        "run_id": g.run_id,
        "input_hash": g.input_hash,
        "generated_at": g.created_at,
        "output": output,
    });
    Ok(Cached {
        input_hash: g.input_hash.clone(),
        body: Bytes::from(serde_json::to_vec(&body).expect("JSON serialises")),
    })
}
