//! Running the `shopscribe` binary from tests, and SQL on either store backend by its URL.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `shopscribe ARGS --project DIR` on the store at `store`, written by the mock OpenAI server at
/// `base_url`, with piped output and warnings only in its log.
pub fn with_mock(dir: &Path, store: &str, base_url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shopscribe"));
    c.args(args)
        .arg("--project")
        .arg(dir)
        .env("SHOPSCRIBE_STORE_URL", store)
        .env("SHOPSCRIBE_LLM_PROVIDER", "openai")
        .env("SHOPSCRIBE_LLM_BASE_URL", base_url)
        .env("OPENAI_API_KEY", "test-key")
        .env("RUST_LOG", "shopscribe=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Exit code, stdout and stderr of a finished command, for assertion messages and searches.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One `i64` from a query on the store at `url` (SQLite or PostgreSQL).
pub async fn scalar(url: &str, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    if url.starts_with("sqlite://") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    }
}

/// Runs one statement on the store at `url`.
pub async fn execute(url: &str, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    if url.starts_with("sqlite://") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
}

/// Good generations per entity in `table` (`generations`, or where a test moved it).
pub async fn good_per_entity(url: &str, table: &str) -> std::collections::HashMap<String, i64> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT entity_key, count(*) FROM {table} WHERE status = 'ok' GROUP BY entity_key"
    ));
    let rows: Vec<(String, i64)> = if url.starts_with("sqlite://") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    };
    rows.into_iter().collect()
}
