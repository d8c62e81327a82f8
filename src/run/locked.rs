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

/// Renews the lock `name` for `holder` every third of [`LOCK_TTL`] until the task is aborted.
fn renew_lease(store: Arc<dyn Store>, name: &str, holder: &str) -> tokio::task::JoinHandle<()> {
    let (name, holder) = (name.to_string(), holder.to_string());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(LOCK_TTL / 3).await;
            match store.try_lock_job(&name, &holder, LOCK_TTL).await {
                Ok(true) => {}
                // Only possible after the lease lapsed (store unreachable for a minute):
                // another process may now hold it too.
                Ok(false) => {
                    tracing::error!(
                        lock = name,
                        "the lock was lost to another process while its work goes on"
                    )
                }
                Err(e) => warn!(lock = name, error = %e, "could not renew the lock"),
            }
        }
    })
}

/// Runs `work` holding the lock `name` (taken for `holder`, renewed while `work` lasts,
/// released after); `None` without running it when another holder has the lock.
pub async fn with_lock<T>(
    store: Arc<dyn Store>,
    name: &str,
    holder: &str,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    if !try_lock(store.as_ref(), name, holder).await {
        return None;
    }
    Some(holding(store, name, holder, work).await)
}

/// Runs `work` with the lock `name` already held by `holder`: renewed while `work` lasts,
/// released after whatever its outcome.
async fn holding<T>(
    store: Arc<dyn Store>,
    name: &str,
    holder: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    let renew = renew_lease(store.clone(), name, holder);
    let out = work.await;
    renew.abort();
    if let Err(e) = store.unlock_job(name, holder).await {
        warn!(lock = name, error = %e, "could not release the lock; it lapses by itself");
    }
    out
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
    let run = async {
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
    };
    holding(store.clone(), job, holder, run).await
}
