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

/// Renews the lock `name` for `holder` every third of `ttl` until the task is aborted; the task
/// ends when the lock was lost to another holder. That is only possible after the lease lapsed
/// (the store unreachable for a whole `ttl`), and then another process may be doing the same
/// work.
fn renew_lease(
    store: Arc<dyn Store>,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> tokio::task::JoinHandle<()> {
    let (name, holder) = (name.to_string(), holder.to_string());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ttl / 3).await;
            match store.try_lock_job(&name, &holder, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(
                        lock = name,
                        "the lock was lost to another process; the work under it is stopped"
                    );
                    return;
                }
                Err(e) => warn!(lock = name, error = %e, "could not renew the lock"),
            }
        }
    })
}

/// Runs `work` holding the lock `name` (taken for `holder`, renewed while `work` lasts,
/// released after); `None` without running it when another holder has the lock, or when the
/// lock was lost while `work` ran (see [`holding`]).
pub async fn with_lock<T>(
    store: Arc<dyn Store>,
    name: &str,
    holder: &str,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    if !try_lock(store.as_ref(), name, holder).await {
        return None;
    }
    holding(store, name, holder, LOCK_TTL, work).await
}

/// Like [`with_lock`], but waits while another holder has the lock (checking every 250 ms; a
/// crashed holder's lease lapses within [`LOCK_TTL`]). `Ok(None)` when the lock was lost while
/// `work` ran; store errors end the wait.
pub async fn with_lock_waiting<T>(
    store: Arc<dyn Store>,
    name: &str,
    holder: &str,
    work: impl std::future::Future<Output = T>,
) -> Result<Option<T>, crate::store::StoreError> {
    let mut told = false;
    while !store.try_lock_job(name, holder, LOCK_TTL).await? {
        if !told {
            tracing::info!(lock = name, "held by another process; waiting for it");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(holding(store, name, holder, LOCK_TTL, work).await)
}

/// Runs `work` with the lock `name` already held by `holder`: renewed while `work` lasts,
/// released after whatever its outcome. `None` when the lock was lost meanwhile: `work` is then
/// dropped where it was, as in a crash — what it stored stays, the rest is left to the lock's
/// new holder, instead of two processes doing (and paying for) the same work.
async fn holding<T>(
    store: Arc<dyn Store>,
    name: &str,
    holder: &str,
    ttl: Duration,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let mut renew = renew_lease(store.clone(), name, holder, ttl);
    let out = tokio::select! {
        out = work => Some(out),
        _ = &mut renew => None,
    };
    renew.abort();
    if out.is_some()
        && let Err(e) = store.unlock_job(name, holder).await
    {
        warn!(lock = name, error = %e, "could not release the lock; it lapses by itself");
    }
    out
}

/// With the lock held by `holder`: creates the run, hands its id to `started`, runs it while
/// renewing the lock, and releases the lock at the end whatever the outcome. A run whose lock
/// was lost meanwhile is stopped and marked failed (see [`holding`]).
pub async fn run_holding_lock(
    project: &Project,
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    job: &str,
    holder: &str,
    started: impl FnOnce(i64),
) -> Result<RunSummary, RunError> {
    // The run's id, once created (an atomic: the future is sent between threads; 0 = none).
    let created = std::sync::atomic::AtomicI64::new(0);
    let run = async {
        let run_id = store
            .create_run(job, provider.name(), provider.model())
            .await?;
        created.store(run_id, std::sync::atomic::Ordering::Relaxed);
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
    // Boxed: a run's future is large, and callers nest this one in their own.
    match holding(store.clone(), job, holder, LOCK_TTL, Box::pin(run)).await {
        Some(result) => result,
        None => {
            let lost = RunError::LockLost {
                job: job.to_string(),
            };
            let id = created.load(std::sync::atomic::Ordering::Relaxed);
            if id != 0 {
                // The figures stopped with the run; its generations are in the store.
                let figures = crate::store::RunFigures::default();
                let message = lost.to_string();
                if let Err(e) = store
                    .finish_run(
                        id,
                        crate::store::RunStatus::Failed,
                        &figures,
                        Some(&message),
                    )
                    .await
                {
                    warn!(run = id, error = %e, "cannot mark the stopped run failed");
                }
            }
            Err(lost)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease taken over by another holder (as after the store was unreachable for a whole
    /// lease) stops the work under it at the next renewal, and the new holder keeps the lock.
    #[tokio::test]
    async fn work_stops_when_its_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let sqlite = crate::store::sqlite::SqliteStore::open(&url).await.unwrap();
        let pool = sqlite.pool().clone();
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let ttl = Duration::from_millis(300);
        assert!(store.try_lock_job("job", "a", ttl).await.unwrap());
        let finished = std::sync::atomic::AtomicBool::new(false);
        let work = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            finished.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        let thief = async {
            // Renewals keep the lease alive until it is made to lapse; then `b` takes it.
            tokio::time::sleep(Duration::from_millis(250)).await;
            assert!(!store.try_lock_job("job", "b", ttl).await.unwrap());
            sqlx::query("UPDATE job_locks SET expires_ms = 0")
                .execute(&pool)
                .await
                .unwrap();
            assert!(
                store
                    .try_lock_job("job", "b", Duration::from_secs(60))
                    .await
                    .unwrap()
            );
        };
        let started = std::time::Instant::now();
        let (out, ()) = tokio::join!(holding(store.clone(), "job", "a", ttl, work), thief);
        assert!(out.is_none(), "the work was stopped");
        assert!(!finished.load(std::sync::atomic::Ordering::SeqCst));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            !store.try_lock_job("job", "a", ttl).await.unwrap(),
            "the new holder keeps the lock"
        );

        // Undisturbed, the work completes and the lock is released.
        let out = holding(store.clone(), "other", "a", ttl, async { 7 }).await;
        assert_eq!(out, Some(7));
        assert!(store.try_lock_job("other", "b", ttl).await.unwrap());
    }
}
