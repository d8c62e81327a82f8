//! Leases: named locks in the store (table `job_locks`) that lapse unless their holder renews
//! them, so no two processes (API, `watch`, cron, workers) do one piece of work at once. They
//! guard a job's runs (the lock is named after the job), a dataset's ingest (`ingest:<dataset>`)
//! and a store's watch poll (`watch:poll`). Work under a lease renews it every third of its
//! length while it lasts, so a killed holder frees it within one lease; a holder of this
//! machine whose process is gone is taken over at once.

use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// The lease of a job's lock and of a watch poll.
pub const TTL: Duration = Duration::from_secs(60);

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

/// A name for this process as a lease's holder: `ROLE-HOST:PIDNS@PID-RANDOM`.
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
) -> Result<bool, StoreError> {
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

/// Takes (or extends) the lock `name` with the lease [`TTL`]; false when another holder has it.
/// Store errors count as "not taken" (logged): the caller tries again later.
pub async fn try_take(store: &dyn Store, name: &str, holder: &str) -> bool {
    match take(store, name, holder, TTL).await {
        Ok(got) => got,
        Err(e) => {
            warn!(lock = name, error = %e, "cannot take the job lock");
            false
        }
    }
}

/// Renews the lock `name` for `holder` every third of `ttl` until the task is aborted; the task
/// ends when the lock was lost to another holder. That is only possible after the lease lapsed
/// — no renewal could write for a whole `ttl`: the store unreachable, or (SQLite) its one
/// writer busy that long — and then another process may be doing the same work.
fn renew(
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

/// Runs `work` holding the lock `name` (taken for `holder` with the lease [`TTL`], renewed while
/// `work` lasts, released after); `None` without running it when another holder has the lock,
/// or when the lock was lost while `work` ran (see [`hold`]).
pub async fn take_and_hold<T>(
    store: Arc<dyn Store>,
    name: &str,
    holder: &str,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    if !try_take(store.as_ref(), name, holder).await {
        return None;
    }
    hold(store, name, holder, TTL, work).await
}

/// Like [`take_and_hold`] with a lease of `ttl`, but waits while another holder has the lock
/// (checking every 250 ms; a crashed holder's lease lapses within `ttl`). `Ok(None)` when the
/// lock was lost while `work` ran; store errors end the wait.
pub async fn wait_and_hold<T>(
    store: Arc<dyn Store>,
    name: &str,
    holder: &str,
    ttl: Duration,
    work: impl std::future::Future<Output = T>,
) -> Result<Option<T>, StoreError> {
    let mut told: Option<std::time::Instant> = None;
    while !take(store.as_ref(), name, holder, ttl).await? {
        if told.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            let (other, until) = store.lock_holder(name).await?.unwrap_or_default();
            warn!(
                lock = name,
                holder = %other,
                lease_until = %until_text(until),
                "held by another process; waiting for it"
            );
            told = Some(std::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(hold(store, name, holder, ttl, work).await)
}

/// A lease's end as shown to people (RFC 3339, seconds).
pub fn until_text(until_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(until_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Runs `work` with the lock `name` already held by `holder`: renewed while `work` lasts,
/// released after whatever its outcome. `None` when the lock was lost meanwhile: `work` is then
/// dropped where it was, as in a crash — what it stored stays, the rest is left to the lock's
/// new holder, instead of two processes doing (and paying for) the same work.
pub async fn hold<T>(
    store: Arc<dyn Store>,
    name: &str,
    holder: &str,
    ttl: Duration,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let mut renewal = renew(store.clone(), name, holder, ttl);
    let out = tokio::select! {
        out = work => Some(out),
        _ = &mut renewal => None,
    };
    renewal.abort();
    if out.is_some()
        && let Err(e) = store.unlock_job(name, holder).await
    {
        warn!(lock = name, error = %e, "could not release the lock; it lapses by itself");
    }
    out
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
        let (out, ()) = tokio::join!(hold(store.clone(), "job", "a", ttl, work), thief);
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
        let out = hold(store.clone(), "other", "a", ttl, async { 7 }).await;
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
}
