//! The task queue of distributed runs, in PostgreSQL: a run's planned work as `tasks` rows that
//! any number of workers claim with `FOR UPDATE SKIP LOCKED` under an expiring lease (extended
//! by heartbeats; a dead worker's tasks return when it lapses), plus the `workers` table whose
//! live rows tell each worker its share of the provider's rate limit. Its statements are
//! written with `?` placeholders and run through [`crate::db::sql`], like the store's.

use crate::db::dialect::copy_escape;
use crate::db::status::{RunMode, RunStatus, TaskState, decode};
use crate::db::{Db, StoreError, sql};
use sqlx::PgPool;
use std::sync::LazyLock;
use std::time::Duration;

/// A statement's text with the stored words it names (`{pending}`, `{running}`, `{done}` for
/// task states, `{run_running}`, `{run_failed}` for run statuses, `{distributed}`) put in from
/// their enums: the text PostgreSQL plans with stays today's, so the partial index on open
/// tasks (`state IN ('pending', 'running')`) still applies, which a bound parameter would hide.
fn with_words(template: &str) -> String {
    [
        ("{pending}", TaskState::Pending.as_str()),
        ("{running}", TaskState::Running.as_str()),
        ("{done}", TaskState::Done.as_str()),
        ("{run_running}", RunStatus::Running.as_str()),
        ("{run_failed}", RunStatus::Failed.as_str()),
        ("{distributed}", RunMode::Distributed.as_str()),
    ]
    .into_iter()
    .fold(template.to_string(), |sql, (word, text)| {
        sql.replace(word, text)
    })
}

/// A statement of the queue, its text made once by [`with_words`].
macro_rules! queue_sql {
    ($name:ident = $template:literal) => {
        static $name: LazyLock<String> = LazyLock::new(|| with_words($template));
    };
}

queue_sql!(
    MARK_DISTRIBUTED = "UPDATE runs SET mode = '{distributed}', entities = ?, skipped = ?, lease_expires_ms = NULL WHERE id = ?"
);
queue_sql!(
    QUEUED = "SELECT t.entity_key, t.input_hash FROM tasks t JOIN runs r ON r.id = t.run_id \
     WHERE r.job = ? AND r.status = '{run_running}' AND t.state IN ('{pending}', '{running}')"
);
queue_sql!(
    CLAIM = "UPDATE tasks t SET state = '{running}', worker = ?, attempts = t.attempts + 1, \
     lease_until = now() + make_interval(secs => ?) \
     FROM (SELECT run_id, seq FROM tasks \
           WHERE run_id = ? AND (state = '{pending}' OR (state = '{running}' AND lease_until < now())) \
           ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED) c \
     WHERE t.run_id = c.run_id AND t.seq = c.seq \
     RETURNING t.seq, t.entity_key, t.input_hash, t.attempts"
);
queue_sql!(
    COMPLETE = "UPDATE tasks SET state = ?, lease_until = NULL \
     WHERE run_id = ? AND seq = ANY(?) AND worker = ? AND state = '{running}'"
);
queue_sql!(
    RELEASE = "UPDATE tasks SET state = '{pending}', worker = NULL, lease_until = NULL \
     WHERE run_id = ? AND seq = ANY(?) AND worker = ? AND state = '{running}'"
);
queue_sql!(
    EXTEND_LEASES = "UPDATE tasks SET lease_until = now() + make_interval(secs => ?) \
     WHERE run_id = ? AND worker = ? AND state = '{running}'"
);
queue_sql!(
    OPEN_RUN = "SELECT id, job FROM runs r WHERE mode = '{distributed}' AND finished_at IS NULL \
     AND (?::text IS NULL OR job = ?) AND NOT (id = ANY(?)) \
     AND ((status = '{run_running}' AND EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = r.id \
             AND (t.state = '{pending}' OR (t.state = '{running}' AND t.lease_until < now())))) \
          OR publisher IS NULL OR publisher_until < now()) \
     ORDER BY id LIMIT 1"
);
queue_sql!(
    FAIL_RUN = "UPDATE runs SET status = '{run_failed}', error = ? WHERE id = ? AND status = '{run_running}'"
);

/// Workers of a run with a heartbeat within two thirds of a lease: (run id, lease seconds).
const LIVE_WORKERS: &str = "SELECT count(*) FROM workers \
     WHERE run_id = ? AND heartbeat > now() - make_interval(secs => ?)";

/// Why the task queue of distributed runs cannot be used or a query of it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The project's store is not PostgreSQL (`backend` names what it is).
    #[error(
        "distributed runs need a PostgreSQL store (store.url = \"postgres://…\"); this project uses {backend}"
    )]
    NotPostgres { backend: String },
    /// A query of the queue failed. Its text is the database's message once, as for
    /// [`StoreError::Query`] (no source chain repeating it).
    #[error("task queue: {}", crate::db::error::describe(.0))]
    Db(sqlx::Error),
    /// The store's database cannot be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> QueueError {
        QueueError::Db(e)
    }
}

/// One claimed task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub seq: i64,
    pub entity_key: String,
    pub input_hash: String,
    pub attempts: i32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
}

impl Counts {
    pub fn open(&self) -> i64 {
        self.pending + self.running
    }
}

#[derive(Clone)]
pub struct Queue {
    /// Keeps this process's handle on the database open (the pool is its pool).
    _db: Db,
    pool: PgPool,
    lease: Duration,
}

impl Queue {
    pub async fn connect(store_url: &str, lease: Duration) -> Result<Queue, QueueError> {
        if !(store_url.starts_with("postgres://") || store_url.starts_with("postgresql://")) {
            return Err(QueueError::NotPostgres {
                backend: store_url.split(':').next().unwrap_or("?").to_string(),
            });
        }
        // The store's own pool and migrations: this process's handle on the database.
        let db = Db::open(store_url).await?;
        let pool = db
            .postgres()
            .cloned()
            .ok_or_else(|| QueueError::NotPostgres {
                backend: db.backend().name().to_string(),
            })?;
        Ok(Queue {
            _db: db,
            pool,
            lease,
        })
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The lease in seconds, as `make_interval(secs => ?)` takes it.
    fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// Marks a run distributed (its tasks are in the queue): worked by whichever workers attach to it, so no process holds
    /// its lease (it is never marked abandoned for want of one).
    pub async fn mark_distributed(
        &self,
        run_id: i64,
        entities: u64,
        skipped: u64,
    ) -> Result<(), QueueError> {
        sql(MARK_DISTRIBUTED.as_str())
            .bind(entities as i64)
            .bind(skipped as i64)
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Adds tasks with one COPY (about a million rows in a few seconds).
    pub async fn enqueue(
        &self,
        run_id: i64,
        tasks: &[(String, String)],
    ) -> Result<u64, QueueError> {
        let mut conn = self.pool.acquire().await?;
        let mut copy = conn
            .copy_in_raw(
                "COPY tasks (run_id, seq, entity_key, input_hash) FROM STDIN WITH (FORMAT text)",
            )
            .await?;
        let mut buf = String::with_capacity(1 << 20);
        for (seq, (key, hash)) in tasks.iter().enumerate() {
            buf.push_str(&run_id.to_string());
            buf.push('\t');
            buf.push_str(&seq.to_string());
            buf.push('\t');
            copy_escape(key, &mut buf);
            buf.push('\t');
            copy_escape(hash, &mut buf);
            buf.push('\n');
            if buf.len() > (1 << 20) {
                copy.send(std::mem::take(&mut buf).into_bytes()).await?;
            }
        }
        if !buf.is_empty() {
            copy.send(buf.into_bytes()).await?;
        }
        Ok(copy.finish().await?)
    }

    /// The (entity, input hash) pairs of `job` still pending or being worked in its running
    /// distributed runs: queueing them again would pay for them twice.
    pub async fn queued(
        &self,
        job: &str,
    ) -> Result<std::collections::HashSet<(String, String)>, QueueError> {
        let rows: Vec<(String, String)> =
            sql(QUEUED.as_str()).bind(job).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().collect())
    }

    /// Claims up to `n` tasks: pending ones, or running ones whose lease lapsed (a dead worker's).
    pub async fn claim(&self, run_id: i64, worker: &str, n: i64) -> Result<Vec<Task>, QueueError> {
        let rows: Vec<(i64, String, String, i32)> = sql(CLAIM.as_str())
            .bind(worker)
            .bind(self.lease_secs())
            .bind(run_id)
            .bind(n)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, entity_key, input_hash, attempts)| Task {
                seq,
                entity_key,
                input_hash,
                attempts,
            })
            .collect())
    }

    /// Sets the final state of tasks this worker still holds; returns how many it held.
    pub async fn complete(
        &self,
        run_id: i64,
        worker: &str,
        seqs: &[i64],
        state: TaskState,
    ) -> Result<u64, QueueError> {
        Ok(sql(COMPLETE.as_str())
            .bind(state.as_str())
            .bind(run_id)
            .bind(seqs)
            .bind(worker)
            .execute(&self.pool)
            .await?)
    }

    /// Gives tasks back (the worker stops early).
    pub async fn release(&self, run_id: i64, worker: &str, seqs: &[i64]) -> Result<(), QueueError> {
        sql(RELEASE.as_str())
            .bind(run_id)
            .bind(seqs)
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records that `worker` is alive, extends its leases, and returns how many workers are
    /// alive on the run (heartbeat within two leases' thirds).
    pub async fn heartbeat(&self, run_id: i64, worker: &str) -> Result<i64, QueueError> {
        sql("INSERT INTO workers (id, run_id) VALUES (?, ?) \
             ON CONFLICT (id) DO UPDATE SET heartbeat = now(), run_id = excluded.run_id")
        .bind(worker)
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        sql(EXTEND_LEASES.as_str())
            .bind(self.lease_secs())
            .bind(run_id)
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(self.live_workers(run_id).await?.max(1))
    }

    /// Workers of the run with a live heartbeat.
    pub async fn live_workers(&self, run_id: i64) -> Result<i64, QueueError> {
        Ok(sql(LIVE_WORKERS)
            .bind(run_id)
            .bind(self.lease_secs() * 2.0 / 3.0)
            .scalar(&self.pool)
            .await?)
    }

    pub async fn leave(&self, worker: &str) -> Result<(), QueueError> {
        sql("DELETE FROM workers WHERE id = ?")
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn counts(&self, run_id: i64) -> Result<Counts, QueueError> {
        let rows: Vec<(String, i64)> =
            sql("SELECT state, count(*) AS n FROM tasks WHERE run_id = ? GROUP BY state")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?;
        let mut c = Counts::default();
        for (state, n) in rows {
            match decode::<TaskState>(&state)? {
                TaskState::Pending => c.pending = n,
                TaskState::Running => c.running = n,
                TaskState::Done => c.done = n,
                TaskState::Failed => c.failed = n,
            }
        }
        Ok(c)
    }

    /// The oldest distributed run (of `job`, if given; not one of `skip`) with something for a
    /// worker to do: a task to claim (pending, or a dead worker's), or its publish step free (no
    /// publisher, or one whose lease lapsed) while it is not finished: (run id, job).
    pub async fn open_run(
        &self,
        job: Option<&str>,
        skip: &[i64],
    ) -> Result<Option<(i64, String)>, QueueError> {
        Ok(sql(OPEN_RUN.as_str())
            .bind(job)
            .bind(job)
            .bind(skip)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The run's status and error, to stop when another worker failed it.
    pub async fn run_status(&self, run_id: i64) -> Result<(RunStatus, Option<String>), QueueError> {
        let (status, error): (String, Option<String>) =
            sql("SELECT status, error FROM runs WHERE id = ?")
                .bind(run_id)
                .fetch_one(&self.pool)
                .await?;
        Ok((decode(&status)?, error))
    }

    /// Fails the run for every worker (a run-fatal provider error).
    pub async fn fail_run(&self, run_id: i64, error: &str) -> Result<(), QueueError> {
        sql(FAIL_RUN.as_str())
            .bind(error)
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// One process at a time wins the right to publish and finish the run: a leased step
    /// (renewed with [`Queue::renew_publisher`]), taken over by another worker once the lease of
    /// a publisher that died lapsed, or once it gave the step up ([`Queue::resign_publisher`]).
    pub async fn become_publisher(&self, run_id: i64, worker: &str) -> Result<bool, QueueError> {
        let taken = sql(
            "UPDATE runs SET publisher = ?, publisher_until = now() + make_interval(secs => ?) \
             WHERE id = ? AND finished_at IS NULL \
             AND (publisher IS NULL OR publisher = ? OR coalesce(publisher_until, '-infinity') < now())",
        )
        .bind(worker)
        .bind(self.lease_secs())
        .bind(run_id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(taken == 1)
    }

    /// Extends the publisher's lease while it publishes.
    pub async fn renew_publisher(&self, run_id: i64, worker: &str) -> Result<(), QueueError> {
        sql(
            "UPDATE runs SET publisher_until = now() + make_interval(secs => ?) \
             WHERE id = ? AND publisher = ? AND finished_at IS NULL",
        )
        .bind(self.lease_secs())
        .bind(run_id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives the publish step up (publishing failed): the next worker takes it at once.
    pub async fn resign_publisher(&self, run_id: i64, worker: &str) -> Result<(), QueueError> {
        sql("UPDATE runs SET publisher = NULL, publisher_until = NULL \
             WHERE id = ? AND publisher = ? AND finished_at IS NULL")
        .bind(run_id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Tokens and cost recorded on the run's generations.
    pub async fn spend(&self, run_id: i64) -> Result<(i64, i64, f64), QueueError> {
        Ok(sql(
            "SELECT COALESCE(SUM(tokens_in), 0)::int8 AS i, COALESCE(SUM(tokens_out), 0)::int8 AS o, \
             COALESCE(SUM(cost_usd), 0)::float8 AS c FROM generations WHERE run_id = ?",
        )
        .bind(run_id)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn run_started(&self, run_id: i64) -> Result<(u64, u64, String), QueueError> {
        let (entities, skipped, started_at): (i64, i64, String) =
            sql("SELECT entities, skipped, started_at FROM runs WHERE id = ?")
                .bind(run_id)
                .fetch_one(&self.pool)
                .await?;
        Ok((entities as u64, skipped as u64, started_at))
    }
}

#[cfg(test)]
mod sql_tests {
    use super::*;

    #[test]
    fn every_statement_names_only_known_words() {
        for sql in [
            &MARK_DISTRIBUTED,
            &QUEUED,
            &CLAIM,
            &COMPLETE,
            &RELEASE,
            &EXTEND_LEASES,
            &OPEN_RUN,
            &FAIL_RUN,
        ] {
            assert!(!sql.contains('{'), "{}", sql.as_str());
            // Placeholders are written `?` as everywhere else (db::sql numbers them).
            assert!(!sql.contains('$'), "{}", sql.as_str());
        }
        assert!(!LIVE_WORKERS.contains('$'));
        assert!(CLAIM.contains("state = 'pending' OR (state = 'running' AND lease_until < now())"));
        assert!(FAIL_RUN.contains("status = 'failed'"));
    }
}
