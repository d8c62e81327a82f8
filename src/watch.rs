//! `shopscribe watch`: polls the datasets' delivery locations (folder or `s3://`) and an
//! optional "data version" query; when something changed it ingests and runs the jobs that read
//! the changed data. What it has seen is kept in the store (`service_state`), so a restarted
//! watcher neither repeats work nor misses a delivery that landed while it was down. Jobs run
//! one at a time under the store's job lock, so a watcher, the API and cron never run one job
//! twice at once; a job held elsewhere is retried on the next poll.

use crate::config::Project;
use crate::lease;
use crate::llm::Provider;
use crate::run::RunSummary;
use crate::store::Store;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// What one poll did.
#[derive(Debug, Default)]
pub struct Poll {
    /// Datasets found changed and ingested.
    pub ingested: Vec<String>,
    /// True when the data version query returned a new value.
    pub version_changed: bool,
    /// Runs made.
    pub runs: Vec<RunSummary>,
    /// Jobs that were due but held by another process (retried next poll).
    pub busy: Vec<String>,
    /// Problems met (also logged); the next poll tries again.
    pub errors: Vec<String>,
}

/// The lock a watcher holds while it polls (job names cannot contain `:`).
pub const POLL_LOCK: &str = "watch:poll";

pub struct Watcher {
    project: Arc<Project>,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    holder: String,
}

impl Watcher {
    pub fn new(project: Arc<Project>, store: Arc<dyn Store>, provider: Arc<dyn Provider>) -> Self {
        let holder = format!("watch-{}-{:08x}", std::process::id(), rand::random::<u32>());
        Watcher {
            project,
            store,
            provider,
            holder,
        }
    }

    /// Polls once: detect, ingest, run. Jobs made due by a change are kept in the store
    /// (`watch:due`) before the change is marked as seen, so a crash or a job busy elsewhere
    /// delays a run but never loses it. One watcher of a store polls at a time (the lock
    /// [`POLL_LOCK`]: the due list is read, changed and written back); another one finds
    /// `POLL_LOCK` in [`Poll::busy`] and does nothing this time.
    pub async fn poll(&self) -> Poll {
        let work = self.poll_holding_lock();
        match lease::take_and_hold(self.store.clone(), POLL_LOCK, &self.holder, work).await {
            Some(poll) => poll,
            None => Poll {
                busy: vec![POLL_LOCK.to_string()],
                ..Poll::default()
            },
        }
    }

    async fn poll_holding_lock(&self) -> Poll {
        let mut poll = Poll::default();
        let mut due = match self.due().await {
            Ok(d) => d,
            Err(e) => {
                poll.errors.push(e.to_string());
                return poll;
            }
        };
        for name in &self.project.watch.datasets {
            self.poll_dataset(name, &mut due, &mut poll).await;
        }
        if let Some(sql) = &self.project.watch.data_version_sql
            && !self.poll_data_version(sql, &mut due, &mut poll).await
        {
            return poll;
        }
        self.run_due(&mut due, &mut poll).await;
        if let Err(e) = self.save_due(&due).await {
            poll.errors.push(e.to_string());
        }
        poll
    }

    /// Ingests the dataset `name` when its deliveries changed since the last poll, its jobs
    /// made due first.
    async fn poll_dataset(&self, name: &str, due: &mut BTreeSet<String>, poll: &mut Poll) {
        let Ok(ds) = self.project.dataset(name) else {
            return;
        };
        let state = format!("watch:dataset:{name}");
        let (fp, files) = match crate::ingest::fingerprint(&ds.from).await {
            Ok(f) => f,
            Err(e) => {
                let e = crate::error::chain_text(&e);
                warn!(dataset = %name, error = %e, "cannot list the delivery location");
                poll.errors.push(format!("{name}: {e}"));
                return;
            }
        };
        match self.store.state_get(&state).await {
            Ok(Some(old)) if old == fp => return,
            Ok(_) => {}
            Err(e) => {
                poll.errors.push(format!("{name}: {e}"));
                return;
            }
        }
        info!(dataset = %name, files, "new or changed deliveries");
        // The dataset's jobs are due before anything is ingested: a crash during the
        // ingest, or a file merged but over the reject threshold (an error), must not leave
        // merged data that no run ever picks up.
        let due_before = due.clone();
        due.extend(self.project.jobs_reading(name).map(|j| j.name.clone()));
        if let Err(e) = self.save_due(due).await {
            poll.errors.push(e.to_string());
            return;
        }
        match crate::ingest::ingest(&self.project, ds, None).await {
            Ok(reports) => {
                let fresh = reports.iter().filter(|r| !r.skipped).count();
                info!(dataset = %name, files = reports.len(), ingested = fresh, "ingested");
                if fresh > 0 {
                    poll.ingested.push(name.to_string());
                } else {
                    // Touched but identical files (same checksums): nothing to run.
                    *due = due_before;
                }
                if let Err(e) = self.mark(due, &state, &fp).await {
                    poll.errors.push(e.to_string());
                }
            }
            Err(e) => {
                let e = crate::error::chain_text(&e);
                warn!(dataset = %name, error = %e, "ingest failed; its jobs run anyway and the ingest is retried next poll");
                poll.errors.push(format!("{name}: {e}"));
            }
        }
    }

    /// Makes `watch.jobs` due when the data version query gives a new value. False when the
    /// store cannot say what the last value was: the poll ends there.
    async fn poll_data_version(
        &self,
        sql: &str,
        due: &mut BTreeSet<String>,
        poll: &mut Poll,
    ) -> bool {
        let settings = crate::source::SourceSettings::of(&self.project);
        match crate::source::data_version(&settings, sql).await {
            Ok(v) => {
                let state = "watch:data_version";
                let old = match self.store.state_get(state).await {
                    Ok(old) => old,
                    Err(e) => {
                        poll.errors.push(e.to_string());
                        return false;
                    }
                };
                if old.as_deref() != Some(v.as_str()) {
                    info!(version = %v, "the data version changed");
                    poll.version_changed = true;
                    due.extend(self.project.watch.jobs.iter().cloned());
                    if let Err(e) = self.mark(due, state, &v).await {
                        poll.errors.push(e.to_string());
                    }
                }
            }
            Err(e) => {
                let e = crate::error::chain_text(&e);
                warn!(error = %e, "the data version query failed");
                poll.errors.push(e);
            }
        }
        true
    }

    /// Runs the due jobs; a job stays due when it could not run (busy elsewhere, or its run
    /// never created or stopped).
    async fn run_due(&self, due: &mut BTreeSet<String>, poll: &mut Poll) {
        for job in due.clone() {
            if !self.project.jobs.contains_key(&job) {
                due.remove(&job); // dropped from the config since
                continue;
            }
            match self.run(&job).await {
                Ok(Some(summary)) => {
                    due.remove(&job);
                    poll.runs.push(summary);
                }
                Ok(None) => poll.busy.push(job.clone()),
                Err((created, e)) => {
                    // A run that failed is recorded and notified; the next change or run picks
                    // the rest up, so a broken job does not loop on every poll. A run that was
                    // never created (the store unreachable) or was stopped (its lock lost)
                    // did not do the work: the job stays due for the next poll.
                    if created && !matches!(e, crate::run::RunError::LockLost { .. }) {
                        due.remove(&job);
                    }
                    poll.errors
                        .push(format!("{job}: {}", crate::error::Chain(&e)));
                }
            }
        }
    }

    async fn due(&self) -> Result<BTreeSet<String>, crate::store::StoreError> {
        Ok(self
            .store
            .state_get("watch:due")
            .await?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default())
    }

    async fn save_due(&self, due: &BTreeSet<String>) -> Result<(), crate::store::StoreError> {
        let text = serde_json::to_string(due).expect("a set of strings serialises");
        self.store.state_set("watch:due", &text).await
    }

    /// Records the due jobs first, then the change as seen.
    async fn mark(
        &self,
        due: &BTreeSet<String>,
        state: &str,
        value: &str,
    ) -> Result<(), crate::store::StoreError> {
        self.save_due(due).await?;
        self.store.state_set(state, value).await
    }

    /// Runs a job under its lock; `None` when another process holds it. An error comes with
    /// whether the run had been created (and so recorded and notified).
    async fn run(&self, job: &str) -> Result<Option<RunSummary>, (bool, crate::run::RunError)> {
        if !lease::try_take(self.store.as_ref(), job, &self.holder).await {
            info!(job, "job is running elsewhere; trying again next poll");
            return Ok(None);
        }
        let mut created = false;
        crate::run::run_holding_lease(
            &self.project,
            self.store.clone(),
            self.provider.clone(),
            job,
            &self.holder,
            |_| created = true,
        )
        .await
        .map(Some)
        .map_err(|e| (created, e))
    }

    /// Polls every `interval` until `shutdown` resolves. The signal is listened for from the
    /// start; a poll in progress (with its runs) finishes before the loop ends.
    pub async fn run_forever(
        &self,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let stop = tokio_util::sync::CancellationToken::new();
        let trigger = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        while !stop.is_cancelled() {
            let p = self.poll().await;
            info!(
                ingested = p.ingested.len(),
                runs = p.runs.len(),
                busy = p.busy.len(),
                errors = p.errors.len(),
                "poll done"
            );
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
        info!("watch stopped");
    }
}
