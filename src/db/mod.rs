//! The one database layer. [`Db`] is the handle every part of shopscribe reaches the store's
//! database through (the store, the ingest, the queue, the locks): one pool per database,
//! opened and migrated once per process however many parts ask for it. [`dialect`] names the
//! few SQLite/PostgreSQL differences, [`query`] runs a statement written once on either,
//! [`status`] types every word the database keeps, and [`migrations`] is the schema (one numbered
//! sequence for both backends).

pub mod dialect;
pub mod error;
pub mod migrations;
pub mod query;
mod redact;
pub mod status;

pub use dialect::Backend;
pub use error::StoreError;
use migrations::Schema;
pub use query::{Target, sql};
pub use redact::redact_url;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

/// The page size of a store created by shopscribe (SQLite's default is 4 KiB). Bulk writes of
/// ~600-byte records move a quarter as many pages through the WAL and its checkpoint: writing
/// 1M versions in key order with their two indexes, then the commit, took 7.9–8.2 s at 4 KiB
/// and 4.9 s at 16 KiB (the `sqlite3` shell on this machine, BENCHMARKS.md). An existing store
/// keeps the page size it was created with (changing it needs a VACUUM outside WAL mode).
pub const STORE_PAGE_SIZE: u32 = 16384;

/// A handle on the store's database; cheap to clone (every clone shares the pool).
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// SQLite: the ingest's one writer connection. An ingest attaches a scratch database file
    /// per delivered file to the connection it writes on, and detaches it after the merge:
    /// with one connection that is always the same one (attachments are per connection, at
    /// most ten at once), made on first use and kept as long as the handle.
    ingest_writer: tokio::sync::OnceCell<SqlitePool>,
    url: String,
}

/// The pool of either backend.
#[derive(Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The handles of this process by URL: a database asked for again while a handle on it lives
/// gets that handle (its pool, no second migration); once every handle is dropped, the pool
/// is closed and the next open starts afresh.
static OPEN: LazyLock<tokio::sync::Mutex<HashMap<String, Weak<Inner>>>> =
    LazyLock::new(Default::default);

impl Db {
    /// The database of a normalised store URL, opened and migrated if no handle on it is open
    /// in this process.
    pub async fn open(url: &str) -> Result<Db, StoreError> {
        // Held while opening, so two parts asking at once share one pool and one migration.
        let mut open = OPEN.lock().await;
        if let Some(inner) = open.get(url).and_then(Weak::upgrade) {
            return Ok(Db { inner });
        }
        open.retain(|_, h| h.strong_count() > 0);
        let pool = match Backend::of_url(url) {
            Backend::Sqlite => {
                let pool = open_sqlite(url).await?;
                migrations::renumber_sqlite_store(&pool).await?;
                migrations::migrator(Schema::Sqlite).run(&pool).await?;
                Pool::Sqlite(pool)
            }
            Backend::Postgres => {
                let pool = open_postgres(url).await?;
                migrations::migrator(Schema::Postgres).run(&pool).await?;
                Pool::Postgres(pool)
            }
        };
        let inner = Arc::new(Inner {
            pool,
            ingest_writer: tokio::sync::OnceCell::new(),
            url: url.to_string(),
        });
        open.insert(url.to_string(), Arc::downgrade(&inner));
        Ok(Db { inner })
    }

    pub fn backend(&self) -> Backend {
        match self.inner.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Where statements run by default: the pool.
    pub fn target(&self) -> Target<'_> {
        match &self.inner.pool {
            Pool::Sqlite(p) => Target::SqlitePool(p),
            Pool::Postgres(p) => Target::PgPool(p),
        }
    }

    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match &self.inner.pool {
            Pool::Sqlite(p) => Some(p),
            Pool::Postgres(_) => None,
        }
    }

    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.inner.pool {
            Pool::Postgres(p) => Some(p),
            Pool::Sqlite(_) => None,
        }
    }

    /// SQLite: the ingest's writer (see [`Inner::ingest_writer`]), opened on first use; an
    /// error on PostgreSQL, where the ingest writes through the pool.
    pub async fn sqlite_ingest_writer(&self) -> Result<SqlitePool, StoreError> {
        let url = &self.inner.url;
        if self.sqlite().is_none() {
            return Err(open_error(
                url,
                sqlx::Error::Configuration("the ingest writer is SQLite's".into()),
            ));
        }
        let pool = self
            .inner
            .ingest_writer
            .get_or_try_init(|| async {
                let opts = SqliteConnectOptions::from_str(url)
                    .map_err(|e| open_error(url, e))?
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30));
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts)
                    .await
                    .map_err(|e| open_error(url, e))
            })
            .await?;
        Ok(pool.clone())
    }
}

/// A transaction on either backend; dropped without [`Tx::commit`], it rolls back.
pub enum Tx<'c> {
    Sqlite(sqlx::Transaction<'c, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'c, sqlx::Postgres>),
}

impl Tx<'_> {
    /// Where the transaction's statements run.
    pub fn target(&mut self) -> Target<'_> {
        match self {
            Tx::Sqlite(t) => Target::SqliteConn(t),
            Tx::Postgres(t) => Target::PgConn(t),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
    }
}

impl Db {
    pub async fn begin(&self) -> Result<Tx<'static>, sqlx::Error> {
        Ok(match &self.inner.pool {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }
}

impl<'c> From<&'c Db> for Target<'c> {
    fn from(db: &'c Db) -> Target<'c> {
        db.target()
    }
}

fn open_error(url: &str, source: sqlx::Error) -> StoreError {
    StoreError::Open {
        url: redact_url(url),
        source,
    }
}

async fn open_sqlite(url: &str) -> Result<SqlitePool, StoreError> {
    if let Some(parent) = std::path::Path::new(url.trim_start_matches("sqlite://")).parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|e| open_error(url, e))?
        .create_if_missing(true)
        .page_size(STORE_PAGE_SIZE)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .map_err(|e| open_error(url, e))
}

async fn open_postgres(url: &str) -> Result<PgPool, StoreError> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(|e| open_error(url, e))?
        .application_name("shopscribe")
        // A query stuck for minutes is a bug or a lock: fail it with PostgreSQL's message.
        // (The ingest's sessions lift both for their own long transactions.)
        .options([("statement_timeout", "300s"), ("lock_timeout", "30s")]);
    PgPoolOptions::new()
        .max_connections(10)
        // Fail fast while the server is down; callers retry on a fresh connection
        // (`with_reconnect`) instead of waiting out a long acquire.
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(opts)
        .await
        .map_err(|e| open_error(url, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_is_opened_once_while_a_handle_lives() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let a = Db::open(&url).await.unwrap();
        let b = Db::open(&url).await.unwrap();
        assert!(Arc::ptr_eq(&a.inner, &b.inner), "one pool for both");
        let weak = Arc::downgrade(&a.inner);
        drop((a, b));
        assert!(weak.upgrade().is_none(), "closed with its last handle");
        let c = Db::open(&url).await.unwrap();
        assert_eq!(c.backend(), Backend::Sqlite);
    }
}
