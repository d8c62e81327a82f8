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

/// This machine's name, as the kernel has it (`HOSTNAME` is often not exported); `None` when
/// it cannot be known, and then no lock is ever taken over from a "dead" holder.
fn this_host() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace))
}

/// This process's PID namespace (`/proc/self/ns/pid`, e.g. `4026531836`): two containers that
/// share a host name (host networking) still have different ones, so a pid is only compared
/// within its own namespace.
fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid").ok().and_then(|l| {
        l.to_str()
            .and_then(|s| s.strip_prefix("pid:["))
            .and_then(|s| s.strip_suffix(']'))
            .map(str::to_string)
    })
}

/// A name for this process on job locks: `ROLE-HOST:PIDNS@PID-RANDOM`.
pub fn holder_name(role: &str) -> String {
    let host = this_host().unwrap_or_else(|| "unknown".into());
    let ns = pid_namespace().unwrap_or_else(|| "unknown".into());
    format!(
        "{role}-{host}:{ns}@{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// True when `holder` names a process of this machine that no longer exists: a lock it holds
/// can be taken over at once instead of waiting for its lease. Only for holder names made by
/// [`holder_name`] on this host; a process of another machine (or an unknown host) is never
/// judged gone, and a reused pid only makes us wait for the lease as before.
pub fn holder_is_gone(holder: &str) -> bool {
    let Some(host) = this_host() else {
        return false;
    };
    let Some((rest, _random)) = holder.rsplit_once('-') else {
        return false;
    };
    let Some((role_host, pid)) = rest.rsplit_once('@') else {
        return false;
    };
    let Some((_role, host_ns)) = role_host.split_once('-') else {
        return false;
    };
    let Some((their_host, their_ns)) = host_ns.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if pid_namespace().as_deref() != Some(their_ns) {
        return false;
    }
    their_host == host
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Takes (or extends) the lock `name` for `holder`; also takes it over at once from a holder
/// that is gone (see [`holder_is_gone`]) rather than waiting for its lease to lapse.
pub async fn take(
    store: &dyn Store,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, crate::store::StoreError> {
    if store.try_lock_job(name, holder, ttl).await? {
        return Ok(true);
    }
    match store.lock_holder(name).await? {
        Some((other, _)) if holder_is_gone(&other) => {
            let taken = store.take_over_lock(name, &other, holder, ttl).await?;
            if taken {
                warn!(lock = name, dead = %other, "took over the lock of a process that is gone");
            }
            Ok(taken)
        }
        _ => Ok(false),
    }
}

/// Takes (or extends) the job's lock; false when another holder has it. Store errors count as
/// "not taken" (logged): the caller tries again later.
pub async fn try_lock(store: &dyn Store, job: &str, holder: &str) -> bool {
    match take(store, job, holder, LOCK_TTL).await {
        Ok(got) => got,
        Err(e) => {
            warn!(job, error = %e, "cannot take the job lock");
            false
        }
    }
}

/// Renews the lock `name` for `holder` every third of `ttl` until the task is aborted; the task
/// ends when the lock was lost to another holder. That is only possible after the lease lapsed
/// — no renewal could write for a whole `ttl`: the store unreachable, or (SQLite) its one
/// writer busy that long — and then another process may be doing the same work.
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

/// Like [`with_lock`] with a lease of `ttl`, but waits while another holder has the lock
/// (checking every 250 ms; a crashed holder's lease lapses within `ttl`). `Ok(None)` when the
/// lock was lost while `work` ran; store errors end the wait.
pub async fn with_lock_waiting<T>(
    store: Arc<dyn Store>,
    name: &str,
    holder: &str,
    ttl: Duration,
    work: impl std::future::Future<Output = T>,
) -> Result<Option<T>, crate::store::StoreError> {
    let mut told: Option<std::time::Instant> = None;
    while !take(store.as_ref(), name, holder, ttl).await? {
        if told.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            let (other, until) = store.lock_holder(name).await?.unwrap_or_default();
            warn!(
                lock = name,
                holder = %other,
                lease_until = %lease_text(until),
                "held by another process; waiting for it"
            );
            told = Some(std::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(holding(store, name, holder, ttl, work).await)
}

/// Takes the job's lock for `holder`, waiting while another process holds it (saying who, and
/// until when, once, then every minute) — or, without `wait`, failing at once with
/// [`RunError::Busy`] naming the holder. A crashed holder's lease lapses within [`LOCK_TTL`].
pub async fn acquire(
    store: &dyn Store,
    job: &str,
    holder: &str,
    wait: bool,
) -> Result<(), RunError> {
    let mut told: Option<std::time::Instant> = None;
    loop {
        if take(store, job, holder, LOCK_TTL).await? {
            if told.is_some() {
                tracing::info!(job, "the job's lock is free now; starting");
            }
            return Ok(());
        }
        let (other, until_ms) = store
            .lock_holder(job)
            .await?
            .unwrap_or_else(|| ("another process".into(), crate::store::now_ms()));
        let until = lease_text(until_ms);
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

/// A lease's end as shown to people (RFC 3339, seconds).
fn lease_text(until_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(until_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
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
    let holder = holder_name("run");
    acquire(store.as_ref(), job, &holder, wait).await?;
    let lost = RunError::LockLost {
        job: job.to_string(),
    };
    let run = super::run_job(project, job, store.clone(), provider, opts);
    match holding(store, job, &holder, LOCK_TTL, Box::pin(run)).await {
        Some(result) => result,
        None => Err(lost),
    }
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
    match holding(store.clone(), job, holder, LOCK_TTL, Box::pin(run)).await {
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

    /// A lease taken over by another holder (as after the store was unreachable for a whole
    /// lease) stops the work under it at the next renewal, and the new holder keeps the lock.
    #[tokio::test]
    async fn work_stops_when_its_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let sqlite = crate::store::sqlite::SqliteStore::open(&url).await.unwrap();
        let pool = sqlite.pool().clone();
        let store: Arc<dyn Store> = sqlite.into_store();
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

    /// Only a holder of this machine whose process is gone is judged gone.
    #[test]
    fn a_holder_is_gone_only_when_its_process_on_this_host_is() {
        let me = holder_name("run");
        assert!(!holder_is_gone(&me), "this process: {me}");
        let host = this_host().expect("the kernel knows its host name");
        // A child that has exited: its pid no longer exists.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let ns = pid_namespace().expect("a pid namespace");
        assert!(holder_is_gone(&format!(
            "ingest-{host}:{ns}@{pid}-0000abcd"
        )));
        // Another machine, another pid namespace (a container sharing the host name), a living
        // process, a malformed or foreign name: never.
        assert!(!holder_is_gone(&format!(
            "ingest-other:{ns}@{pid}-0000abcd"
        )));
        assert!(!holder_is_gone(&format!("ingest-{host}:1@{pid}-0000abcd")));
        assert!(!holder_is_gone(&format!("ingest-{host}@{pid}-0000abcd")));
        assert!(!holder_is_gone(&format!("run-{host}:{ns}@1-0000abcd")));
        assert!(!holder_is_gone("distributed-run-7"));
        assert!(!holder_is_gone("serve-host-123-abcd"));
    }

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
