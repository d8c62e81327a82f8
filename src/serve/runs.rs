//! Runs started by the service (`POST /v1/runs`) and by `watch`: at most one run of a job at a
//! time — in this process by a per-job slot, across processes by a lock row in the store (with
//! a lease renewed while the run lasts, so a killed holder frees it). A request for a job that
//! is already running is queued: one follow-up run starts when the current one ends (several
//! requests in the meantime collapse into it, since one run picks up every change).

use super::entities::EntityService;
use super::metrics::Metrics;
use crate::config::Project;
use crate::lease;
use crate::llm::Provider;
use crate::store::{RunStatus, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How often a queued run checks whether another process released the job.
const LOCK_POLL: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Slot {
    active: bool,
    run_id: Option<i64>,
    queued: bool,
}

/// Where a requested run stands, as the API says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    /// Started now: the ticket's `run_id` is set.
    Running,
    /// After the run `behind`, or waiting for another process that holds the job.
    Queued,
}

impl TicketStatus {
    /// The word the API and the logs use (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Running => "running",
            TicketStatus::Queued => "queued",
        }
    }
}

/// What became of a run request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ticket {
    pub job: String,
    pub status: TicketStatus,
    pub run_id: Option<i64>,
    pub behind: Option<i64>,
}

pub struct Runner {
    project: Arc<Project>,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    metrics: Arc<Metrics>,
    entities: Option<Arc<EntityService>>,
    /// This process's name on job locks.
    holder: String,
    slots: Mutex<HashMap<String, Slot>>,
    /// Ingestion of event-announced files, one at a time.
    ingest_gate: tokio::sync::Mutex<()>,
    tasks: TaskTracker,
}

impl Runner {
    pub fn new(
        project: Arc<Project>,
        store: Arc<dyn Store>,
        provider: Arc<dyn Provider>,
        metrics: Arc<Metrics>,
        entities: Option<Arc<EntityService>>,
    ) -> Runner {
        Runner {
            project,
            store,
            provider,
            metrics,
            entities,
            holder: lease::holder_name("serve"),
            slots: Mutex::default(),
            ingest_gate: tokio::sync::Mutex::new(()),
            tasks: TaskTracker::new(),
        }
    }

    /// Starts a run of `job`, or queues one behind the run in progress.
    pub async fn request(self: &Arc<Self>, job: &str) -> Ticket {
        let rx = {
            let mut slots = self.slots.lock().unwrap();
            let slot = slots.entry(job.to_string()).or_default();
            if slot.active {
                slot.queued = true;
                return Ticket {
                    job: job.to_string(),
                    status: TicketStatus::Queued,
                    run_id: None,
                    behind: slot.run_id,
                };
            }
            slot.active = true;
            let (tx, rx) = oneshot::channel();
            let this = self.clone();
            let name = job.to_string();
            self.tasks
                .spawn(async move { this.job_loop(name, tx).await });
            rx
        };
        // The run's id exists as soon as it holds the job's lock; another process may hold it.
        match tokio::time::timeout(Duration::from_secs(3), rx).await {
            Ok(Ok(id)) => Ticket {
                job: job.to_string(),
                status: TicketStatus::Running,
                run_id: Some(id),
                behind: None,
            },
            _ => Ticket {
                job: job.to_string(),
                status: TicketStatus::Queued,
                run_id: None,
                behind: None,
            },
        }
    }

    async fn job_loop(self: Arc<Self>, job: String, first: oneshot::Sender<i64>) {
        let mut first = Some(first);
        loop {
            // Shutting down, a request waiting for another process's run gets at most one
            // lease period; it is then dropped loudly (that process's run, or the next one,
            // covers the data unless it started before the data arrived).
            let mut waited_closing = Duration::ZERO;
            while !lease::try_take(self.store.as_ref(), &job, &self.holder).await {
                if self.tasks.is_closed() {
                    if waited_closing >= lease::TTL {
                        warn!(
                            job,
                            "shutting down: a requested run was still waiting for another process holding the job and is dropped; request it again"
                        );
                        self.slots.lock().unwrap().remove(&job);
                        return;
                    }
                    waited_closing += LOCK_POLL;
                }
                tokio::time::sleep(LOCK_POLL).await;
            }
            let mut run_id = None;
            let result = crate::run::run_holding_lease(
                &self.project,
                self.store.clone(),
                self.provider.clone(),
                &job,
                &self.holder,
                |id| {
                    run_id = Some(id);
                    self.slots
                        .lock()
                        .unwrap()
                        .entry(job.clone())
                        .or_default()
                        .run_id = Some(id);
                    if let Some(tx) = first.take() {
                        let _ = tx.send(id);
                    }
                },
            )
            .await;
            match &result {
                Ok(s) => {
                    info!(job, run_id, status = s.status.as_str(), "run finished");
                    self.metrics.run(&job, s.status.as_str());
                }
                Err(e) => {
                    warn!(job, run_id, error = %crate::error::Chain(e), "run failed");
                    self.metrics.run(&job, RunStatus::Failed.as_str());
                }
            }
            if let Some(e) = &self.entities {
                e.invalidate(&job);
            }
            let mut slots = self.slots.lock().unwrap();
            let slot = slots.entry(job.clone()).or_default();
            // A queued follow-up runs even during shutdown: its request was accepted (202).
            if slot.queued {
                slot.queued = false;
                slot.run_id = None;
                continue;
            }
            slots.remove(&job);
            return;
        }
    }

    /// Ingests the announced objects of each dataset, then requests a run of every job that
    /// reads one of them. Runs in the background; failures are logged and notified.
    pub fn ingest_then_run(self: &Arc<Self>, objects: Vec<(String, String)>, jobs: Vec<String>) {
        let this = self.clone();
        self.tasks.spawn(async move {
            let _gate = this.ingest_gate.lock().await;
            for (dataset, uri) in &objects {
                let Ok(ds) = this.project.dataset(dataset) else {
                    continue;
                };
                match crate::ingest::ingest(&this.project, ds, Some(uri)).await {
                    Ok(reports) => info!(dataset, uri, files = reports.len(), "ingested"),
                    Err(e) => {
                        let e = crate::error::chain_text(&e);
                        warn!(dataset, uri, error = %e, "ingesting an announced file failed");
                        let what = format!("ingest {dataset}");
                        let message = format!("{uri}: {e}");
                        crate::notify::send(
                            &this.project,
                            &crate::notify::Event::Failed {
                                job: &what,
                                error: &message,
                            },
                        )
                        .await;
                    }
                }
            }
            drop(_gate);
            for job in jobs {
                this.request(&job).await;
            }
        });
    }

    /// Waits for every run and ingestion in progress (and queued runs already promised) to
    /// end. New requests are refused by the server before this is called.
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}
