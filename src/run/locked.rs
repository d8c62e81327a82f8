//! A run under its job's lock in the store, so no two processes (API, `watch`, cron) run one job
//! at once. The lock is a lease: renewed every third of `LOCK_TTL` while the run lasts, so a
//! killed holder frees it within a minute.

use super::{RunError, RunOptions, RunSummary, run_created};
use crate::config::Project;
use crate::llm::Provider;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

pub const LOCK_TTL: Duration = Duration::from_secs(60);

/// A name for this process on job locks.
pub fn holder_name(role: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    format!(
        "{role}-{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Takes (or extends) the job's lock; false when another holder has it. Store errors count as
/// "not taken" (logged): the caller tries again later.
pub async fn try_lock(store: &dyn Store, job: &str, holder: &str) -> bool {
    match store.try_lock_job(job, holder, LOCK_TTL).await {
        Ok(got) => got,
        Err(e) => {
            warn!(job, error = %e, "cannot take the job lock");
            false
        }
    }
}

/// With the lock held by `holder`: creates the run, hands its id to `started`, runs it while
/// renewing the lock, and releases the lock at the end whatever the outcome.
pub async fn run_holding_lock(
    project: &Project,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    job: &str,
    holder: &str,
    started: impl FnOnce(i64),
) -> Result<RunSummary, RunError> {
    let renew = {
        let (store, job, holder) = (store.clone(), job.to_string(), holder.to_string());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOCK_TTL / 3).await;
                match store.try_lock_job(&job, &holder, LOCK_TTL).await {
                    Ok(true) => {}
                    // Only possible after the lease lapsed (store unreachable for a minute):
                    // another process may now run this job too.
                    Ok(false) => {
                        tracing::error!(
                            job,
                            "the job lock was lost to another process while this run goes on"
                        )
                    }
                    Err(e) => warn!(job, error = %e, "could not renew the job lock"),
                }
            }
        })
    };
    let result = async {
        let run_id = store
            .create_run(job, provider.name(), provider.model())
            .await?;
        started(run_id);
        run_created(
            project,
            job,
            run_id,
            store.clone(),
            provider,
            &RunOptions::default(),
        )
        .await
    }
    .await;
    renew.abort();
    if let Err(e) = store.unlock_job(job, holder).await {
        warn!(job, error = %e, "could not release the job lock; it lapses by itself");
    }
    result
}
