//! The embedded store: one SQLite file (WAL mode), so `shopscribe demo` needs nothing installed.

use super::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// The page size of a store created by shopscribe (SQLite's default is 4 KiB). Bulk writes of
/// ~600-byte records move a quarter as many pages through the WAL and its checkpoint: writing
/// 1M versions in key order with their two indexes, then the commit, took 7.9–8.2 s at 4 KiB
/// and 4.9 s at 16 KiB (the `sqlite3` shell on this machine, BENCHMARKS.md). An existing store
/// keeps the page size it was created with (changing it needs a VACUUM outside WAL mode).
pub const STORE_PAGE_SIZE: u32 = 16384;

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open {
            url: url.to_string(),
            source,
        };
        if let Some(parent) = std::path::Path::new(url.trim_start_matches("sqlite://")).parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(open_err)?
            .create_if_missing(true)
            .page_size(STORE_PAGE_SIZE)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// The pool, for the job source and the demo's data generator (same database file).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn create_run(&self, job: &str, provider: &str, model: &str) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (job, status, provider, model, started_at, lease_expires_ms) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(job)
        .bind(RunStatus::Running.as_str())
        .bind(provider)
        .bind(model)
        .bind(now_text())
        .bind(now_ms() + RUN_LEASE.as_millis() as i64)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        f: &RunFigures,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE runs SET status = ?, finished_at = ?, entities = ?, generated = ?, skipped = ?, failed = ?, \
             pending = ?, tokens_in = ?, tokens_out = ?, cost_usd = ?, duration_ms = ?, pages_written = ?, pages_removed = ?, \
             error = ? WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(now_text())
        .bind(f.entities as i64)
        .bind(f.generated as i64)
        .bind(f.skipped as i64)
        .bind(f.failed as i64)
        .bind(f.pending as i64)
        .bind(f.tokens_in as i64)
        .bind(f.tokens_out as i64)
        .bind(f.cost_usd)
        .bind(f.duration_ms as i64)
        .bind(f.pages_written as i64)
        .bind(f.pages_removed as i64)
        .bind(error)
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn renew_run_lease(&self, run_id: i64, ttl: Option<Duration>) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET lease_expires_ms = ? WHERE id = ? AND status = ? AND lease_expires_ms IS NOT NULL")
            .bind(ttl.map(|t| now_ms() + t.as_millis() as i64))
            .bind(run_id)
            .bind(RunStatus::Running.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn abandon_lapsed_runs(&self) -> Result<Vec<AbandonedRun>, StoreError> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(abandon_sql(["?", "?", "?"])))
                .bind(now_text())
                .bind(ABANDONED_ERROR)
                .bind(now_ms())
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id, job)| AbandonedRun { id, job })
            .collect())
    }

    async fn run(&self, run_id: i64) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = ?")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| run_from_row(&r)).transpose()?)
    }

    async fn runs(&self, job: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM runs WHERE (? IS NULL OR job = ?) ORDER BY id DESC LIMIT ?")
                .bind(job)
                .bind(job)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(run_from_row).collect::<Result<_, _>>()?)
    }

    async fn record_generations(&self, batch: &[NewGeneration]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let now = now_text();
        let mut tx = self.pool.begin().await?;
        for g in batch {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO generations (run_id, job, entity_key, input_hash, status, prompt_system, prompt_user, \
                 output, error, provider, model, tokens_in, tokens_out, cost_usd, latency_ms, attempts, attempt_log, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(g.run_id)
            .bind(&g.job)
            .bind(&g.entity_key)
            .bind(&g.input_hash)
            .bind(g.status.as_str())
            .bind(&g.prompt_system)
            .bind(&g.prompt_user)
            .bind(&g.output)
            .bind(&g.error)
            .bind(&g.provider)
            .bind(&g.model)
            .bind(g.tokens_in as i64)
            .bind(g.tokens_out as i64)
            .bind(g.cost_usd)
            .bind(g.latency_ms as i64)
            .bind(g.attempts as i64)
            .bind(serde_json::to_string(&g.attempt_log).unwrap_or_else(|_| "[]".into()))
            .bind(&now)
            .fetch_one(&mut *tx)
            .await?;
            let good = g.status == GenerationStatus::Ok;
            sqlx::query(
                "INSERT INTO entity_state (job, entity_key, last_generation_id, last_status, last_input_hash, \
                 good_generation_id, good_input_hash, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (job, entity_key) DO UPDATE SET last_generation_id = excluded.last_generation_id, \
                 last_status = excluded.last_status, last_input_hash = excluded.last_input_hash, \
                 good_generation_id = COALESCE(excluded.good_generation_id, entity_state.good_generation_id), \
                 good_input_hash = COALESCE(excluded.good_input_hash, entity_state.good_input_hash), \
                 updated_at = excluded.updated_at",
            )
            .bind(&g.job)
            .bind(&g.entity_key)
            .bind(id)
            .bind(g.status.as_str())
            .bind(&g.input_hash)
            .bind(good.then_some(id))
            .bind(good.then_some(&g.input_hash))
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn entity_states(&self, job: &str) -> Result<HashMap<String, EntityState>, StoreError> {
        let rows = sqlx::query(
            "SELECT entity_key, last_status, last_input_hash, good_generation_id, good_input_hash \
             FROM entity_state WHERE job = ?",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            out.insert(
                r.try_get("entity_key")?,
                EntityState {
                    last_status: crate::db::status::decode(
                        &r.try_get::<String, _>("last_status")?,
                    )?,
                    last_input_hash: r.try_get("last_input_hash")?,
                    good_generation_id: r.try_get("good_generation_id")?,
                    good_input_hash: r.try_get("good_input_hash")?,
                },
            );
        }
        Ok(out)
    }

    async fn good_generations(
        &self,
        job: &str,
        keys: &[String],
    ) -> Result<Vec<GoodGeneration>, StoreError> {
        let wanted: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
        let rows = sqlx::query(
            "SELECT g.id, g.run_id, g.entity_key, g.input_hash, g.output, g.created_at \
             FROM entity_state s JOIN generations g ON g.id = s.good_generation_id \
             WHERE s.job = ? ORDER BY g.entity_key",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let key: String = r.try_get("entity_key")?;
            if !wanted.contains(key.as_str()) {
                continue;
            }
            out.push(GoodGeneration {
                generation_id: r.try_get("id")?,
                run_id: r.try_get("run_id")?,
                entity_key: key,
                input_hash: r.try_get("input_hash")?,
                output: r
                    .try_get::<Option<String>, _>("output")?
                    .unwrap_or_default(),
                created_at: r.try_get("created_at")?,
            });
        }
        Ok(out)
    }

    async fn average_output_tokens(
        &self,
        job: &str,
        model: &str,
    ) -> Result<Option<f64>, StoreError> {
        let avg: Option<f64> = sqlx::query_scalar(
            "SELECT AVG(tokens_out) FROM generations WHERE job = ? AND model = ? AND status = ?",
        )
        .bind(job)
        .bind(model)
        .bind(GenerationStatus::Ok.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(avg)
    }

    async fn insert_batch(
        &self,
        run_id: i64,
        job: &str,
        input_file_id: &str,
        items: &[BatchItem],
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row: i64 = sqlx::query_scalar(
            "INSERT INTO batches (run_id, job, input_file_id, status, requests, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(run_id)
        .bind(job)
        .bind(input_file_id)
        .bind(BatchStatus::Submitting.as_str())
        .bind(items.len() as i64)
        .bind(now_text())
        .fetch_one(&mut *tx)
        .await?;
        for it in items {
            sqlx::query(
                "INSERT INTO batch_items (batch_row, custom_id, entity_key, input_hash, prompt_system, prompt_user) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(row)
            .bind(&it.custom_id)
            .bind(&it.entity_key)
            .bind(&it.input_hash)
            .bind(&it.prompt_system)
            .bind(&it.prompt_user)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    async fn update_batch(
        &self,
        row: i64,
        batch_id: Option<&str>,
        status: BatchStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE batches SET batch_id = COALESCE(?, batch_id), status = ?, error = ?, \
             collected_at = COALESCE(?, collected_at) WHERE id = ?",
        )
        .bind(batch_id)
        .bind(status.as_str())
        .bind(error)
        .bind(status.is_final().then(now_text))
        .bind(row)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn open_batches(&self, job: &str) -> Result<Vec<BatchRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM batches WHERE job = ? AND status IN (?, ?) ORDER BY id")
                .bind(job)
                .bind(BatchStatus::Submitting.as_str())
                .bind(BatchStatus::Submitted.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(BatchRecord {
                    row: r.try_get("id")?,
                    run_id: r.try_get("run_id")?,
                    job: r.try_get("job")?,
                    input_file_id: r.try_get("input_file_id")?,
                    batch_id: r.try_get("batch_id")?,
                    status: crate::db::status::decode(&r.try_get::<String, _>("status")?)?,
                    requests: r.try_get::<i64, _>("requests")? as u64,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn batch_items(&self, row: i64) -> Result<Vec<BatchItem>, StoreError> {
        let rows = sqlx::query("SELECT * FROM batch_items WHERE batch_row = ? ORDER BY custom_id")
            .bind(row)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BatchItem {
                    custom_id: r.try_get("custom_id")?,
                    entity_key: r.try_get("entity_key")?,
                    input_hash: r.try_get("input_hash")?,
                    prompt_system: r.try_get("prompt_system")?,
                    prompt_user: r.try_get("prompt_user")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn generations_of(
        &self,
        job: &str,
        key: &str,
    ) -> Result<Vec<(NewGeneration, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM generations WHERE job = ? AND entity_key = ? ORDER BY id")
                .bind(job)
                .bind(key)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(generation_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
    async fn run_generations(
        &self,
        run_id: i64,
    ) -> Result<Vec<(NewGeneration, String)>, StoreError> {
        let rows = sqlx::query("SELECT * FROM generations WHERE run_id = ? ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(generation_from_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn state_get(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM service_state WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn state_set(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO service_state (name, value, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(value)
        .bind(now_text())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn state_delete(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM service_state WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn take_over_lock(
        &self,
        job: &str,
        from: &str,
        to: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE job_locks SET holder = ?, expires_ms = ? WHERE job = ? AND holder = ?",
        )
        .bind(to)
        .bind(now_ms() + ttl.as_millis() as i64)
        .bind(job)
        .bind(from)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn state_init(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO service_state (name, value, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .bind(now_text())
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM service_state WHERE name = ?")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn try_lock_job(
        &self,
        job: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO job_locks (job, holder, expires_ms) VALUES (?, ?, ?) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
             WHERE job_locks.holder = excluded.holder OR job_locks.expires_ms < ?",
        )
        .bind(job)
        .bind(holder)
        .bind(now + ttl.as_millis() as i64)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn unlock_job(&self, job: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM job_locks WHERE job = ? AND holder = ?")
            .bind(job)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn lock_holder(&self, job: &str) -> Result<Option<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT holder, expires_ms FROM job_locks WHERE job = ? AND expires_ms >= ?",
        )
        .bind(job)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        // The task queue lives only on PostgreSQL.
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn page_size(pool: &SqlitePool, schema: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("PRAGMA {schema}.page_size")))
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_new_store_has_large_pages_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let new = format!("sqlite://{}", dir.path().join("new.db").display());
        let store = SqliteStore::open(&new).await.unwrap();
        assert_eq!(
            page_size(store.pool(), "main").await,
            STORE_PAGE_SIZE as i64
        );

        // A store created with SQLite's default 4 KiB pages opens unchanged (and still works).
        let old_path = dir.path().join("old.db");
        let old = format!("sqlite://{}", old_path.display());
        let opts = SqliteConnectOptions::from_str(&old)
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePool::connect_with(opts).await.unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let store = SqliteStore::open(&old).await.unwrap();
        assert_eq!(page_size(store.pool(), "main").await, 4096);
        store.create_run("job", "offline", "m").await.unwrap();
    }
}
