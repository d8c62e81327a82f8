//! A run of a job under the job's lease ([`crate::lease`]), so no two processes (API, `watch`,
//! cron, a distributed run) run one job at once: taking the lease for a run (waiting or not),
//! and running with it held, marking the run failed if it is stopped before its end.

use super::{RunError, RunOptions, RunSummary, run_created};
use crate::config::Project;
use crate::lease;
use crate::llm::Provider;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// Takes the job's lock for `holder`, waiting while another process holds it (saying who, and
/// until when, once, then every minute) — or, without `wait`, failing at once with
/// [`RunError::Busy`] naming the holder. A crashed holder's lease lapses within [`lease::TTL`].
pub async fn acquire(
    store: &dyn Store,
    job: &str,
    holder: &str,
    wait: bool,
) -> Result<(), RunError> {
    let mut told: Option<std::time::Instant> = None;
    loop {
        if lease::take(store, job, holder, lease::TTL).await? {
            if told.is_some() {
                tracing::info!(job, "the job's lock is free now; starting");
            }
            return Ok(());
        }
        let (other, until_ms) = store
            .lock_holder(job)
            .await?
            .unwrap_or_else(|| ("another process".into(), crate::store::now_ms()));
        let until = lease::until_text(until_ms);
        if !wait {
            return Err(RunError::Busy {
                job: job.to_string(),
                holder: other,
                until,
            });
        }
        if told.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            tracing::warn!(
                job,
                holder = %other,
                lease_until = %until,
                "the job is being run by another process; waiting for it (--no-wait exits instead)"
            );
            told = Some(std::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A run of the job under its lock, waiting for the lock (or not, see [`acquire`]): what the CLI
/// `run` does, so it never runs beside the API, `watch`, a distributed run or another `run`.
pub async fn run_exclusive(
    project: &Project,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    job: &str,
    opts: &RunOptions,
    wait: bool,
) -> Result<RunSummary, RunError> {
    project.job(job)?;
    let holder = lease::holder_name("run");
    acquire(store.as_ref(), job, &holder, wait).await?;
    let lost = RunError::LockLost {
        job: job.to_string(),
    };
    let run = super::run_job(project, job, store.clone(), provider, opts);
    match lease::hold(store, job, &holder, lease::TTL, Box::pin(run)).await {
        Some(result) => result,
        None => Err(lost),
    }
}

/// With the lock held by `holder`: creates the run, hands its id to `started`, runs it while
/// renewing the lock, and releases the lock at the end whatever the outcome. A run whose lock
/// was lost meanwhile is stopped and marked failed (see [`lease::hold`]).
pub async fn run_holding_lease(
    project: &Project,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    job: &str,
    holder: &str,
    started: impl FnOnce(i64),
) -> Result<RunSummary, RunError> {
    let lost = RunError::LockLost {
        job: job.to_string(),
    };
    let reason = lost.to_string();
    let run = async {
        let run_id = store
            .create_run(job, provider.name(), provider.model())
            .await?;
        // Dropped with this future if the run does not reach its end here (its lock lost, or
        // the caller's own future dropped, e.g. a watch poll whose lock was lost).
        let mut guard = StoppedRun {
            store: store.clone(),
            run_id,
            reason,
            ended: false,
        };
        started(run_id);
        let result = run_created(
            project,
            job,
            run_id,
            store.clone(),
            provider,
            &RunOptions::default(),
        )
        .await;
        guard.ended = true;
        result
    };
    // Boxed: a run's future is large, and callers nest this one in their own.
    match lease::hold(store.clone(), job, holder, lease::TTL, Box::pin(run)).await {
        Some(result) => result,
        None => Err(lost),
    }
}

/// Marks a created run failed when it is dropped before its end, so no run stays `running`
/// after it was stopped. Only a run still `running` is marked: one that had recorded its
/// outcome (and was stopped while notifying, say) keeps it.
struct StoppedRun {
    store: Arc<dyn Store>,
    run_id: i64,
    reason: String,
    ended: bool,
}

impl Drop for StoppedRun {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, id, reason) = (self.store.clone(), self.run_id, self.reason.clone());
        runtime.spawn(async move {
            match store.run(id).await {
                Ok(Some(run)) if run.status == crate::store::RunStatus::Running => {
                    // Its figures stopped with it; its generations are in the store.
                    let figures = crate::store::RunFigures::default();
                    let failed = crate::store::RunStatus::Failed;
                    if let Err(e) = store.finish_run(id, failed, &figures, Some(&reason)).await {
                        warn!(run = id, error = %e, "cannot mark the stopped run failed");
                    }
                }
                Ok(_) => {}
                Err(e) => warn!(run = id, error = %e, "cannot read the stopped run"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run dropped before its end is marked failed; one that had recorded its outcome keeps it.
    #[tokio::test]
    async fn a_run_dropped_before_its_end_is_marked_failed() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store: Arc<dyn Store> = crate::store::sqlite::SqliteStore::open(&url)
            .await
            .unwrap()
            .into_store();
        let guard = |run_id| StoppedRun {
            store: store.clone(),
            run_id,
            reason: "stopped".into(),
            ended: false,
        };
        let stopped = store.create_run("job", "mock", "m").await.unwrap();
        let done = store.create_run("job", "mock", "m").await.unwrap();
        let figures = crate::store::RunFigures::default();
        store
            .finish_run(done, crate::store::RunStatus::Succeeded, &figures, None)
            .await
            .unwrap();
        drop(guard(stopped));
        drop(guard(done));
        let status = |id| {
            let store = store.clone();
            async move { store.run(id).await.unwrap().unwrap().status }
        };
        let t = std::time::Instant::now();
        while status(stopped).await == crate::store::RunStatus::Running {
            assert!(t.elapsed() < Duration::from_secs(5), "never marked");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status(stopped).await, crate::store::RunStatus::Failed);
        assert_eq!(
            store.run(stopped).await.unwrap().unwrap().error.as_deref(),
            Some("stopped")
        );
        assert_eq!(status(done).await, crate::store::RunStatus::Succeeded);
    }
}
