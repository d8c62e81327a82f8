//! The production store: PostgreSQL through the process's pool, migrations applied on open.
//! Its queries are the shared ones of [`super::sql`] (one conformance suite runs on both
//! backends); this is the handle that also hands out the PostgreSQL pool.

use super::sql::SqlStore;
use super::{Store, StoreError};
use crate::db::Db;
use sqlx::PgPool;
use std::sync::Arc;

pub struct PostgresStore {
    store: SqlStore,
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to and migrates the PostgreSQL store at `url`, or shares this process's open
    /// handle on it.
    pub async fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let db = Db::open(url).await?;
        let pool = db.postgres().cloned().ok_or_else(|| StoreError::Open {
            url: crate::db::redact_url(url),
            source: sqlx::Error::Configuration("not a PostgreSQL store URL".into()),
        })?;
        Ok(PostgresStore {
            store: SqlStore::new(db),
            pool,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The store behind the [`Store`] seam.
    pub fn into_store(self) -> Arc<dyn Store> {
        Arc::new(self.store)
    }
}
