//! The store on either backend: every query written once (`?` placeholders, see
//! [`crate::db::dialect`] for the few differences), run through the process's [`Db`] handle.
//! The same tables and behaviour on SQLite and PostgreSQL; one conformance suite runs on both.

use super::*;
use crate::db::status::decode;
use crate::db::{Backend, Db, sql};

/// Up to this many keys, [`Store::good_generations`] reads the keys' rows by the primary key;
/// beyond, one pass over the job's rows costs less than that many lookups.
const KEYED_READ_MAX: usize = 1000;

pub struct SqlStore {
    db: Db,
}

impl SqlStore {
    pub fn new(db: Db) -> SqlStore {
        SqlStore { db }
    }

    /// The database handle (the ingest, the queue and the job source share it).
    pub fn db(&self) -> &Db {
        &self.db
    }
}

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for RunRecord
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(r: &'r R) -> Result<Self, sqlx::Error> {
        run_from_row(r)
    }
}

/// A `generations` row with its creation time.
struct GenerationRow(NewGeneration, String);

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for GenerationRow
where
    &'static str: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(r: &'r R) -> Result<Self, sqlx::Error> {
        generation_from_row(r).map(|(g, at)| GenerationRow(g, at))
    }
}

const INSERT_GENERATION: &str = "INSERT INTO generations (run_id, job, entity_key, input_hash, status, prompt_system, prompt_user, \
     output, error, provider, model, tokens_in, tokens_out, cost_usd, latency_ms, attempts, attempt_log, created_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id";

const UPSERT_ENTITY_STATE: &str = "INSERT INTO entity_state (job, entity_key, last_generation_id, last_status, last_input_hash, \
     good_generation_id, good_input_hash, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (job, entity_key) DO UPDATE SET last_generation_id = excluded.last_generation_id, \
     last_status = excluded.last_status, last_input_hash = excluded.last_input_hash, \
     good_generation_id = COALESCE(excluded.good_generation_id, entity_state.good_generation_id), \
     good_input_hash = COALESCE(excluded.good_input_hash, entity_state.good_input_hash), \
     updated_at = excluded.updated_at";

const BATCH_COLUMNS: &str =
    "SELECT id, run_id, job, input_file_id, batch_id, status, requests FROM batches";

type BatchRow = (i64, i64, String, String, Option<String>, String, i64);

fn batch_record(
    (row, run_id, job, input_file_id, batch_id, status, requests): BatchRow,
) -> Result<BatchRecord, sqlx::Error> {
    Ok(BatchRecord {
        row,
        run_id,
        job,
        input_file_id,
        batch_id,
        status: decode(&status)?,
        requests: requests as u64,
    })
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.db.backend().name()
    }

    async fn create_run(&self, job: &str, provider: &str, model: &str) -> Result<i64, StoreError> {
        Ok(sql(
            "INSERT INTO runs (job, status, provider, model, started_at, lease_expires_ms) \
                VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(job)
        .bind(RunStatus::Running.as_str())
        .bind(provider)
        .bind(model)
        .bind(now_text())
        .bind(now_ms() + RUN_LEASE.as_millis() as i64)
        .scalar(&self.db)
        .await?)
    }

    async fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        f: &RunFigures,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let n = |v: u64| v as i64;
        sql("UPDATE runs SET status = ?, finished_at = ?, entities = ?, generated = ?, skipped = ?, failed = ?, \
             pending = ?, tokens_in = ?, tokens_out = ?, cost_usd = ?, duration_ms = ?, pages_written = ?, \
             pages_removed = ?, error = ? WHERE id = ?")
        .bind(status.as_str())
        .bind(now_text())
        .bind(n(f.entities))
        .bind(n(f.generated))
        .bind(n(f.skipped))
        .bind(n(f.failed))
        .bind(n(f.pending))
        .bind(n(f.tokens_in))
        .bind(n(f.tokens_out))
        .bind(f.cost_usd)
        .bind(n(f.duration_ms))
        .bind(n(f.pages_written))
        .bind(n(f.pages_removed))
        .bind(error)
        .bind(run_id)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn renew_run_lease(&self, run_id: i64, ttl: Option<Duration>) -> Result<(), StoreError> {
        sql("UPDATE runs SET lease_expires_ms = ? WHERE id = ? AND status = ? AND lease_expires_ms IS NOT NULL")
            .bind(ttl.map(|t| now_ms() + t.as_millis() as i64))
            .bind(run_id)
            .bind(RunStatus::Running.as_str())
            .execute(&self.db)
            .await?;
        Ok(())
    }

    async fn abandon_lapsed_runs(&self) -> Result<Vec<AbandonedRun>, StoreError> {
        let rows: Vec<(i64, String)> = sql(abandon_sql(["?", "?", "?"]))
            .bind(now_text())
            .bind(ABANDONED_ERROR)
            .bind(now_ms())
            .fetch_all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, job)| AbandonedRun { id, job })
            .collect())
    }

    async fn run(&self, run_id: i64) -> Result<Option<RunRecord>, StoreError> {
        Ok(sql("SELECT * FROM runs WHERE id = ?")
            .bind(run_id)
            .fetch_optional(&self.db)
            .await?)
    }

    async fn runs(&self, job: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        Ok(
            sql("SELECT * FROM runs WHERE (CAST(? AS TEXT) IS NULL OR job = ?) ORDER BY id DESC LIMIT ?")
                .bind(job)
                .bind(job)
                .bind(i64::from(limit))
                .fetch_all(&self.db)
                .await?,
        )
    }

    async fn record_generations(&self, batch: &[NewGeneration]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let now = now_text();
        let mut tx = self.db.begin().await?;
        for g in batch {
            let log = serde_json::to_string(&g.attempt_log).unwrap_or_else(|_| "[]".into());
            let id: i64 = sql(INSERT_GENERATION)
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
                .bind(i64::from(g.tokens_in))
                .bind(i64::from(g.tokens_out))
                .bind(g.cost_usd)
                .bind(g.latency_ms as i64)
                .bind(i64::from(g.attempts))
                .bind(log)
                .bind(&now)
                .scalar(tx.target())
                .await?;
            let good = g.status == GenerationStatus::Ok;
            sql(UPSERT_ENTITY_STATE)
                .bind(&g.job)
                .bind(&g.entity_key)
                .bind(id)
                .bind(g.status.as_str())
                .bind(&g.input_hash)
                .bind(good.then_some(id))
                .bind(good.then_some(&g.input_hash))
                .bind(&now)
                .execute(tx.target())
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn entity_states(&self, job: &str) -> Result<HashMap<String, EntityState>, StoreError> {
        type Row = (String, String, String, Option<i64>, Option<String>);
        let rows: Vec<Row> = sql(
            "SELECT entity_key, last_status, last_input_hash, good_generation_id, good_input_hash \
             FROM entity_state WHERE job = ?",
        )
        .bind(job)
        .fetch_all(&self.db)
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for (key, last_status, last_input_hash, good_generation_id, good_input_hash) in rows {
            let state = EntityState {
                last_status: decode(&last_status)?,
                last_input_hash,
                good_generation_id,
                good_input_hash,
            };
            out.insert(key, state);
        }
        Ok(out)
    }

    async fn good_generations(
        &self,
        job: &str,
        keys: &[String],
    ) -> Result<Vec<GoodGeneration>, StoreError> {
        type Row = (i64, i64, String, String, Option<String>, String);
        // The statement up to its filter on the job; both reads below extend it.
        const PREFIX: &str = "SELECT g.id, g.run_id, g.entity_key, g.input_hash, g.output, g.created_at \
             FROM entity_state s JOIN generations g ON g.id = s.good_generation_id WHERE s.job = ?";
        let rows: Vec<Row> = if keys.len() <= KEYED_READ_MAX {
            // A few keys (a worker's claim, one page): read just theirs. Reading the whole job
            // here made every claim of a distributed run fetch every text stored so far.
            let list = serde_json::to_string(keys).expect("a list of strings");
            let text = format!(
                "{PREFIX} AND s.entity_key IN (SELECT value FROM {}) ORDER BY g.entity_key",
                self.db.backend().text_list_sql()
            );
            sql(text).bind(job).bind(list).fetch_all(&self.db).await?
        } else {
            // Most of the job (a publish): one pass over it, filtered here.
            let wanted: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
            let all: Vec<Row> = sql(format!("{PREFIX} ORDER BY g.entity_key"))
                .bind(job)
                .fetch_all(&self.db)
                .await?;
            all.into_iter()
                .filter(|r| wanted.contains(r.2.as_str()))
                .collect()
        };
        Ok(rows
            .into_iter()
            .map(
                |(generation_id, run_id, entity_key, input_hash, output, created_at)| {
                    GoodGeneration {
                        generation_id,
                        run_id,
                        entity_key,
                        input_hash,
                        output: output.unwrap_or_default(),
                        created_at,
                    }
                },
            )
            .collect())
    }

    async fn average_output_tokens(
        &self,
        job: &str,
        model: &str,
    ) -> Result<Option<f64>, StoreError> {
        Ok(sql(
            "SELECT CAST(AVG(tokens_out) AS DOUBLE PRECISION) FROM generations \
                WHERE job = ? AND model = ? AND status = ?",
        )
        .bind(job)
        .bind(model)
        .bind(GenerationStatus::Ok.as_str())
        .scalar(&self.db)
        .await?)
    }

    async fn insert_batch(
        &self,
        run_id: i64,
        job: &str,
        input_file_id: &str,
        items: &[BatchItem],
    ) -> Result<i64, StoreError> {
        let mut tx = self.db.begin().await?;
        let row: i64 = sql(
            "INSERT INTO batches (run_id, job, input_file_id, status, requests, created_at) \
                            VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(run_id)
        .bind(job)
        .bind(input_file_id)
        .bind(BatchStatus::Submitting.as_str())
        .bind(items.len() as i64)
        .bind(now_text())
        .scalar(tx.target())
        .await?;
        for it in items {
            sql("INSERT INTO batch_items (batch_row, custom_id, entity_key, input_hash, prompt_system, prompt_user) \
                 VALUES (?, ?, ?, ?, ?, ?)")
            .bind(row)
            .bind(&it.custom_id)
            .bind(&it.entity_key)
            .bind(&it.input_hash)
            .bind(&it.prompt_system)
            .bind(&it.prompt_user)
            .execute(tx.target())
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
        sql(
            "UPDATE batches SET batch_id = COALESCE(?, batch_id), status = ?, error = ?, \
             collected_at = COALESCE(?, collected_at) WHERE id = ?",
        )
        .bind(batch_id)
        .bind(status.as_str())
        .bind(error)
        .bind(status.is_final().then(now_text))
        .bind(row)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn open_batches(&self, job: &str) -> Result<Vec<BatchRecord>, StoreError> {
        let rows: Vec<BatchRow> = sql(format!(
            "{BATCH_COLUMNS} WHERE job = ? AND status IN (?, ?) ORDER BY id"
        ))
        .bind(job)
        .bind(BatchStatus::Submitting.as_str())
        .bind(BatchStatus::Submitted.as_str())
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(batch_record)
            .collect::<Result<_, _>>()?)
    }

    async fn batch_items(&self, row: i64) -> Result<Vec<BatchItem>, StoreError> {
        type Row = (String, String, String, String, String);
        let rows: Vec<Row> = sql(
            "SELECT custom_id, entity_key, input_hash, prompt_system, prompt_user \
             FROM batch_items WHERE batch_row = ? ORDER BY custom_id",
        )
        .bind(row)
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(custom_id, entity_key, input_hash, prompt_system, prompt_user)| BatchItem {
                    custom_id,
                    entity_key,
                    input_hash,
                    prompt_system,
                    prompt_user,
                },
            )
            .collect())
    }

    async fn generations_of(
        &self,
        job: &str,
        key: &str,
    ) -> Result<Vec<(NewGeneration, String)>, StoreError> {
        let rows: Vec<GenerationRow> =
            sql("SELECT * FROM generations WHERE job = ? AND entity_key = ? ORDER BY id")
                .bind(job)
                .bind(key)
                .fetch_all(&self.db)
                .await?;
        Ok(rows
            .into_iter()
            .map(|GenerationRow(g, at)| (g, at))
            .collect())
    }

    async fn run_generations(
        &self,
        run_id: i64,
    ) -> Result<Vec<(NewGeneration, String)>, StoreError> {
        let rows: Vec<GenerationRow> =
            sql("SELECT * FROM generations WHERE run_id = ? ORDER BY id")
                .bind(run_id)
                .fetch_all(&self.db)
                .await?;
        Ok(rows
            .into_iter()
            .map(|GenerationRow(g, at)| (g, at))
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sql("SELECT 1").execute(&self.db).await?;
        Ok(())
    }

    async fn state_get(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sql("SELECT value FROM service_state WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.db)
            .await?;
        Ok(row.map(|(v,)| v))
    }

    async fn state_set(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sql("INSERT INTO service_state (name, value, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
        .bind(name)
        .bind(value)
        .bind(now_text())
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn state_init(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sql(
            "INSERT INTO service_state (name, value, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .bind(now_text())
        .execute(&self.db)
        .await?;
        Ok(sql("SELECT value FROM service_state WHERE name = ?")
            .bind(name)
            .scalar(&self.db)
            .await?)
    }

    async fn state_delete(&self, name: &str) -> Result<(), StoreError> {
        sql("DELETE FROM service_state WHERE name = ?")
            .bind(name)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    async fn try_lock_job(
        &self,
        job: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        // The database's clock (see `Backend::now_ms_sql`), read once for the statement.
        let now = self.db.backend().now_ms_sql();
        let taken = sql(format!(
            "WITH t AS (SELECT {now} AS now_ms) \
             INSERT INTO job_locks (job, holder, expires_ms) SELECT ?, ?, t.now_ms + ? FROM t WHERE true \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
             WHERE job_locks.holder = excluded.holder OR job_locks.expires_ms < {now}"
        ))
        .bind(job)
        .bind(holder)
        .bind(ttl.as_millis() as i64)
        .execute(&self.db)
        .await?;
        Ok(taken > 0)
    }

    async fn unlock_job(&self, job: &str, holder: &str) -> Result<(), StoreError> {
        sql("DELETE FROM job_locks WHERE job = ? AND holder = ?")
            .bind(job)
            .bind(holder)
            .execute(&self.db)
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
        let taken =
            sql("UPDATE job_locks SET holder = ?, expires_ms = ? WHERE job = ? AND holder = ?")
                .bind(to)
                .bind(now_ms() + ttl.as_millis() as i64)
                .bind(job)
                .bind(from)
                .execute(&self.db)
                .await?;
        Ok(taken > 0)
    }

    async fn lock_holder(&self, job: &str) -> Result<Option<(String, i64)>, StoreError> {
        Ok(
            sql("SELECT holder, expires_ms FROM job_locks WHERE job = ? AND expires_ms >= ?")
                .bind(job)
                .bind(now_ms())
                .fetch_optional(&self.db)
                .await?,
        )
    }

    async fn queue_depth(&self) -> Result<u64, StoreError> {
        match self.db.backend() {
            // The task queue lives only on PostgreSQL.
            Backend::Sqlite => Ok(0),
            Backend::Postgres => {
                // The stored words in the text, not bound: the open-task index is partial on them.
                static OPEN_TASKS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                    format!(
                        "SELECT count(*) FROM tasks WHERE state IN ('{}', '{}')",
                        TaskState::Pending,
                        TaskState::Running
                    )
                });
                let n: i64 = sql(OPEN_TASKS.as_str()).scalar(&self.db).await?;
                Ok(n as u64)
            }
        }
    }
}
