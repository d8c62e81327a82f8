//! The error of every database operation: the store, the ingest, the queue, the locks.

/// Why a database operation failed: opening, migrating, or a query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be opened or reached (sqlx's error is the source).
    #[error("cannot open the store at {url}")]
    Open { url: String, source: sqlx::Error },
    /// Applying the schema migrations failed.
    #[error("cannot migrate the store")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed. Its text is the database's message once (no source chain repeating it),
    /// without the "at line N" sqlx adds for PostgreSQL: that is a line of PostgreSQL's own source
    /// code, not of any query or delivered file.
    #[error("store query failed: {}", describe(.0))]
    Query(sqlx::Error),
    /// A file the store works in (an ingest's scratch database) cannot be created.
    #[error("cannot create {}", path.display())]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        StoreError::Query(e)
    }
}

/// A database error's own words: the message (and PostgreSQL's detail), nothing repeated.
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => {
            let mut s = d.message().to_string();
            if let Some(detail) = d
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.detail())
            {
                s.push_str(" (");
                s.push_str(detail);
                s.push(')');
            }
            s
        }
        other => other.to_string(),
    }
}

impl StoreError {
    /// True when the database connection failed (server restarting, network blip) rather than
    /// the query: worth retrying on a fresh connection.
    pub fn is_connection(&self) -> bool {
        match self {
            StoreError::Query(e) | StoreError::Open { source: e, .. } => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::Protocol(_)
                | sqlx::Error::Tls(_) => true,
                // 08xxx connection exceptions, 57P0x operator intervention (shutdown, restart).
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
                _ => false,
            },
            StoreError::Migrate(_) | StoreError::File { .. } => false,
        }
    }
}

/// Retries a store operation while the database connection is down (up to ~60 s), so a
/// PostgreSQL restart mid-run costs a pause, not the run. Other errors return at once.
pub async fn with_reconnect<T, F, Fut>(what: &str, mut f: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = std::time::Instant::now();
    loop {
        match f().await {
            Err(e)
                if e.is_connection() && started.elapsed() < std::time::Duration::from_secs(60) =>
            {
                tracing::warn!(error = %e, "{what}: the store connection failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn connection_errors_are_retried_and_others_are_not() {
        assert!(StoreError::Query(sqlx::Error::PoolTimedOut).is_connection());
        assert!(!StoreError::Query(sqlx::Error::RowNotFound).is_connection());
        let mut calls = 0;
        let r = with_reconnect("test", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(StoreError::Query(sqlx::Error::PoolTimedOut))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        let mut calls = 0;
        let r: Result<(), _> = with_reconnect("test", || {
            calls += 1;
            async { Err(StoreError::Query(sqlx::Error::RowNotFound)) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1, "a query error is not retried");
    }
}
