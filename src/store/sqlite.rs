//! The embedded store: one SQLite file (WAL mode), so `shopscribe demo` needs nothing installed.
//! Its queries are the shared ones of [`super::sql`]; this is the handle that also hands out
//! the SQLite pool (the job source and the demo's data generator use the same file).

use super::sql::SqlStore;
use super::{Store, StoreError};
use crate::db::Db;
use sqlx::SqlitePool;
use std::sync::Arc;

pub use crate::db::STORE_PAGE_SIZE;

pub struct SqliteStore {
    store: SqlStore,
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) and migrates the SQLite store at `url`, or shares this
    /// process's open handle on it.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let db = Db::open(url).await?;
        let pool = db.sqlite().cloned().ok_or_else(|| StoreError::Open {
            url: crate::db::redact_url(url),
            source: sqlx::Error::Configuration("not a SQLite store URL".into()),
        })?;
        Ok(SqliteStore {
            store: SqlStore::new(db),
            pool,
        })
    }

    /// The pool, for the job source and the demo's data generator (same database file).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The store behind the [`Store`] seam.
    pub fn into_store(self) -> Arc<dyn Store> {
        Arc::new(self.store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    use std::str::FromStr;

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
        store
            .into_store()
            .create_run("job", "offline", "m")
            .await
            .unwrap();
    }
}
