//! shopscribe's own state: runs, every generation ever made, and a current pointer per entity.
//! One [`Store`] trait; SQLite is the embedded default (PostgreSQL follows behind the same trait).

pub mod postgres;
pub mod sql;
pub mod sqlite;

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use crate::db::error::{StoreError, describe, with_reconnect};
pub use crate::db::status::{
    AttemptOutcome, BatchStatus, FileStatus, GenerationStatus, RunMode, RunStatus, TaskState,
};

/// How long a run's lease lasts unless its process renews it (see [`RunLease`]); a run created
/// with [`Store::create_run`] holds one this long from its creation.
pub const RUN_LEASE: Duration = Duration::from_secs(60);

/// A run abandoned by its process, as marked by [`Store::abandon_lapsed_runs`].
#[derive(Debug, Clone, PartialEq)]
pub struct AbandonedRun {
    pub id: i64,
    pub job: String,
}

/// The text recorded as an abandoned run's error.
pub const ABANDONED_ERROR: &str = "abandoned: the process working this run stopped renewing its lease before the run ended (killed, crashed or cut off); the generations it stored are kept and counted, and the next run continues where it stopped";

/// Keeps a run's lease alive while this process works the run: renewed at once and every third
/// of `ttl`, until dropped. A process that dies stops renewing, and the run is marked
/// `abandoned` by the next process that opens the store once `ttl` has passed.
pub struct RunLease {
    renew: tokio::task::JoinHandle<()>,
}

impl RunLease {
    pub fn keep(store: Arc<dyn Store>, run_id: i64, ttl: Duration) -> RunLease {
        let renew = tokio::spawn(async move {
            loop {
                if let Err(e) = store.renew_run_lease(run_id, Some(ttl)).await {
                    tracing::warn!(run = run_id, error = %e, "cannot renew the run's lease");
                }
                tokio::time::sleep(ttl / 3).await;
            }
        });
        RunLease { renew }
    }
}

impl Drop for RunLease {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

/// A run's figures, written when it finishes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RunFigures {
    pub entities: u64,
    pub generated: u64,
    pub skipped: u64,
    pub failed: u64,
    pub pending: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    pub duration_ms: u64,
    pub pages_written: u64,
    /// Pages removed because their entities left the source.
    pub pages_removed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub job: String,
    pub status: RunStatus,
    pub provider: String,
    pub model: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub figures: RunFigures,
    pub error: Option<String>,
}

/// One generation outcome to record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewGeneration {
    pub run_id: i64,
    pub job: String,
    pub entity_key: String,
    pub input_hash: String,
    pub status: GenerationStatus,
    pub prompt_system: String,
    pub prompt_user: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub provider: String,
    pub model: String,
    pub tokens_in: u32,
    pub tokens_out: u32,
    pub cost_usd: f64,
    pub latency_ms: u64,
    pub attempts: u32,
    /// The outcome of each attempt, in order: the texts of [`AttemptOutcome`] ("ok",
    /// "invalid", "rate_limited", "transient", …).
    pub attempt_log: Vec<String>,
}

/// Where an entity stands: its last attempt and its last good text.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityState {
    pub last_status: GenerationStatus,
    pub last_input_hash: String,
    pub good_generation_id: Option<i64>,
    pub good_input_hash: Option<String>,
}

/// The latest good text of an entity, as published.
#[derive(Debug, Clone, PartialEq)]
pub struct GoodGeneration {
    pub generation_id: i64,
    pub run_id: i64,
    pub entity_key: String,
    pub input_hash: String,
    pub output: String,
    pub created_at: String,
}

/// A Batch API submission as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    /// The store's row id.
    pub row: i64,
    pub run_id: i64,
    pub job: String,
    pub input_file_id: String,
    pub batch_id: Option<String>,
    pub status: BatchStatus,
    pub requests: u64,
}

/// One request of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    pub custom_id: String,
    pub entity_key: String,
    pub input_hash: String,
    pub prompt_system: String,
    pub prompt_user: String,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;
    async fn create_run(&self, job: &str, provider: &str, model: &str) -> Result<i64, StoreError>;
    async fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        figures: &RunFigures,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Extends a running run's lease to `ttl` from now, or (`None`) clears it: no process holds
    /// the run (a distributed run is worked by whichever workers attach to it). A cleared lease
    /// is never set again by a renewal.
    async fn renew_run_lease(&self, run_id: i64, ttl: Option<Duration>) -> Result<(), StoreError>;
    /// Marks `abandoned` every `running` run whose lease has lapsed (its process is gone), with
    /// the figures of the generations it stored; returns them.
    async fn abandon_lapsed_runs(&self) -> Result<Vec<AbandonedRun>, StoreError>;
    async fn run(&self, run_id: i64) -> Result<Option<RunRecord>, StoreError>;
    async fn runs(&self, job: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StoreError>;
    /// Appends generations and moves each entity's current pointer, atomically per batch.
    async fn record_generations(&self, batch: &[NewGeneration]) -> Result<(), StoreError>;
    async fn entity_states(&self, job: &str) -> Result<HashMap<String, EntityState>, StoreError>;
    /// The latest good generation of each listed entity (entities without one are left out),
    /// in key order. Its cost follows the number of keys, not the job's size, for a few keys.
    async fn good_generations(
        &self,
        job: &str,
        keys: &[String],
    ) -> Result<Vec<GoodGeneration>, StoreError>;
    /// Average output tokens of the job's good generations with `model` (for cost estimates).
    async fn average_output_tokens(
        &self,
        job: &str,
        model: &str,
    ) -> Result<Option<f64>, StoreError>;
    /// Records a batch about to be created (status `submitting`) with its items; returns its row.
    async fn insert_batch(
        &self,
        run_id: i64,
        job: &str,
        input_file_id: &str,
        items: &[BatchItem],
    ) -> Result<i64, StoreError>;
    /// Sets the provider's batch id (status `submitted`), or another status with an error.
    async fn update_batch(
        &self,
        row: i64,
        batch_id: Option<&str>,
        status: BatchStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Batches of a job not yet collected (`submitting` or `submitted`).
    async fn open_batches(&self, job: &str) -> Result<Vec<BatchRecord>, StoreError>;
    async fn batch_items(&self, row: i64) -> Result<Vec<BatchItem>, StoreError>;
    /// Every generation recorded by one run, oldest first, with its creation time.
    async fn run_generations(
        &self,
        run_id: i64,
    ) -> Result<Vec<(NewGeneration, String)>, StoreError>;
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
    /// A named state value (e.g. what `watch` has already seen).
    async fn state_get(&self, name: &str) -> Result<Option<String>, StoreError>;
    async fn state_set(&self, name: &str, value: &str) -> Result<(), StoreError>;
    /// Sets a named state value unless it exists; returns the value stored (the first writer's).
    async fn state_init(&self, name: &str, value: &str) -> Result<String, StoreError>;
    async fn state_delete(&self, name: &str) -> Result<(), StoreError>;
    /// Takes (or extends, for the same holder) the lock of a job for `ttl`; false when another
    /// holder has it and it has not expired.
    async fn try_lock_job(
        &self,
        job: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;
    /// Releases the lock if `holder` has it.
    async fn unlock_job(&self, job: &str, holder: &str) -> Result<(), StoreError>;
    /// Takes the lock `job` from `from` (a holder known to be gone) for `to`, whatever its
    /// expiry; false when `from` no longer holds it.
    async fn take_over_lock(
        &self,
        job: &str,
        from: &str,
        to: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;
    /// Who holds the lock `job` and until when (Unix ms), if anyone has it unexpired.
    async fn lock_holder(&self, job: &str) -> Result<Option<(String, i64)>, StoreError>;
    /// Distributed tasks not yet done or failed (0 where there is no queue).
    async fn queue_depth(&self) -> Result<u64, StoreError>;
    /// Every generation of one entity, oldest first.
    async fn generations_of(
        &self,
        job: &str,
        key: &str,
    ) -> Result<Vec<(NewGeneration, String)>, StoreError>;
}

/// A `runs` row, on either backend (the tables and column types are the same).
pub(crate) fn run_from_row<'r, R: sqlx::Row>(r: &'r R) -> Result<RunRecord, sqlx::Error>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let n = |c: &'static str| r.try_get::<i64, _>(c).map(|v| v as u64);
    Ok(RunRecord {
        id: r.try_get("id")?,
        job: r.try_get("job")?,
        status: crate::db::status::decode(&r.try_get::<String, _>("status")?)?,
        provider: r.try_get("provider")?,
        model: r.try_get("model")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        error: r.try_get("error")?,
        figures: RunFigures {
            entities: n("entities")?,
            generated: n("generated")?,
            skipped: n("skipped")?,
            failed: n("failed")?,
            pending: n("pending")?,
            tokens_in: n("tokens_in")?,
            tokens_out: n("tokens_out")?,
            cost_usd: r.try_get("cost_usd")?,
            duration_ms: n("duration_ms")?,
            pages_written: n("pages_written")?,
            pages_removed: n("pages_removed")?,
        },
    })
}

/// A `generations` row with its creation time, on either backend.
pub(crate) fn generation_from_row<'r, R: sqlx::Row>(
    r: &'r R,
) -> Result<(NewGeneration, String), sqlx::Error>
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let n = |c: &'static str| r.try_get::<i64, _>(c);
    Ok((
        NewGeneration {
            run_id: r.try_get("run_id")?,
            job: r.try_get("job")?,
            entity_key: r.try_get("entity_key")?,
            input_hash: r.try_get("input_hash")?,
            status: crate::db::status::decode(&r.try_get::<String, _>("status")?)?,
            prompt_system: r.try_get("prompt_system")?,
            prompt_user: r.try_get("prompt_user")?,
            output: r.try_get("output")?,
            error: r.try_get("error")?,
            provider: r.try_get("provider")?,
            model: r.try_get("model")?,
            tokens_in: n("tokens_in")? as u32,
            tokens_out: n("tokens_out")? as u32,
            cost_usd: r.try_get("cost_usd")?,
            latency_ms: n("latency_ms")? as u64,
            attempts: n("attempts")? as u32,
            attempt_log: serde_json::from_str(&r.try_get::<String, _>("attempt_log")?)
                .unwrap_or_default(),
        },
        r.try_get("created_at")?,
    ))
}

/// Opens the store named by a normalised URL (this process's handle on its database, opened
/// and migrated once, see [`crate::db::Db`]), and marks the runs whose
/// process is gone `abandoned` (see [`Store::abandon_lapsed_runs`]).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let store: Arc<dyn Store> = Arc::new(sql::SqlStore::new(crate::db::Db::open(url).await?));
    // A housekeeping step: a failure here must not keep anyone from the store.
    if let Err(e) = mark_abandoned_runs(store.as_ref()).await {
        tracing::warn!(error = %e, "cannot check for abandoned runs");
    }
    Ok(store)
}

/// The store's id: made at random the first time it is asked for and kept, so every process on
/// one store (one project) gives the same, and another store another one. The site records it
/// as the publisher of each job's pages.
pub async fn store_id(store: &dyn Store) -> Result<String, StoreError> {
    let fresh = format!("{:032x}", rand::random::<u128>());
    store.state_init("store_id", &fresh).await
}

/// Marks runs whose process is gone `abandoned`, with a warning for each.
pub async fn mark_abandoned_runs(store: &dyn Store) -> Result<Vec<AbandonedRun>, StoreError> {
    let runs = store.abandon_lapsed_runs().await?;
    for r in &runs {
        tracing::warn!(run = r.id, job = %r.job, "a run whose process stopped before it ended was marked abandoned");
    }
    Ok(runs)
}

/// The `UPDATE` of [`Store::abandon_lapsed_runs`], with `{}` for the placeholders of (finished
/// time, error text, now in ms) in that order: the same text on both backends.
pub(crate) fn abandon_sql(p: [&str; 3]) -> String {
    format!(
        "UPDATE runs SET status = '{abandoned}', finished_at = {t}, error = {e}, lease_expires_ms = NULL,
            generated = (SELECT count(*) FROM generations g WHERE g.run_id = runs.id AND g.status = '{ok}'),
            failed = (SELECT count(*) FROM generations g WHERE g.run_id = runs.id AND g.status <> '{ok}'),
            tokens_in = (SELECT coalesce(sum(g.tokens_in), 0) FROM generations g WHERE g.run_id = runs.id),
            tokens_out = (SELECT coalesce(sum(g.tokens_out), 0) FROM generations g WHERE g.run_id = runs.id),
            cost_usd = (SELECT coalesce(sum(g.cost_usd), 0) FROM generations g WHERE g.run_id = runs.id)
         WHERE status = '{running}' AND lease_expires_ms IS NOT NULL AND lease_expires_ms < {n}
         RETURNING id, job",
        abandoned = RunStatus::Abandoned.as_str(),
        ok = GenerationStatus::Ok.as_str(),
        running = RunStatus::Running.as_str(),
        t = p[0],
        e = p[1],
        n = p[2]
    )
}

/// Current UTC time as stored: RFC 3339 with milliseconds.
pub fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Current Unix time in milliseconds (lock expiry).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
