//! Shared test support: the mock OpenAI-compatible and Anthropic servers, throwaway
//! PostgreSQL databases, running the binary, and the Batch API scenarios both batch APIs share.
#![allow(dead_code)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "expectations computed from small counts"
)]
pub mod batch_cli;
pub mod cli;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test servers: token estimates and counts from request sizes"
)]
pub mod mock_anthropic;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test servers: token estimates and counts from request sizes"
)]
pub mod mock_openai;
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test servers: token estimates and counts from request sizes"
)]
pub mod pg;

/// The domains example in a temporary folder with its LLM pointed at the mock at `base_url`
/// (client limits far above anything a test sends), and `domains` sample domains (drawn with
/// `seed`) in its SQLite store.
pub async fn domains_project(
    base_url: &str,
    domains: usize,
    seed: u64,
) -> (
    tempfile::TempDir,
    shopscribe::config::Project,
    shopscribe::store::sqlite::SqliteStore,
) {
    let (dir, project) = example_project(base_url, None);
    let sqlite = shopscribe::store::sqlite::SqliteStore::open(&project.store_url)
        .await
        .unwrap();
    shopscribe::demo::load_rows(sqlite.pool(), &shopscribe::demo::sample_rows(domains, seed))
        .await
        .unwrap();
    (dir, project, sqlite)
}

/// The example project in a new folder, written by the mock LLM at `base_url` (no rate limits to
/// speak of), its store at `store_url` (default: its own SQLite file).
pub fn example_project(
    base_url: &str,
    store_url: Option<&str>,
) -> (tempfile::TempDir, shopscribe::config::Project) {
    let dir = tempfile::tempdir().unwrap();
    shopscribe::demo::write_project(dir.path(), true).unwrap();
    let (base, store) = (base_url.to_string(), store_url.map(str::to_string));
    let env = move |k: &str| match k {
        "SHOPSCRIBE_LLM_PROVIDER" => Some("openai".to_string()),
        "SHOPSCRIBE_LLM_BASE_URL" => Some(base.clone()),
        "SHOPSCRIBE_STORE_URL" => store.clone(),
        _ => None,
    };
    let mut project = shopscribe::config::load_with_env(dir.path(), &env).unwrap();
    project.llm.requests_per_minute = 600_000.0;
    project.llm.tokens_per_minute = 1e9;
    (dir, project)
}

/// A migrated store holding `domains` sample domains (drawn with `seed`): a throwaway PostgreSQL
/// database, or the SQLite file `dir/shopscribe.db`. Returns its URL and the database's guard.
pub async fn sample_store(
    postgres: bool,
    dir: &std::path::Path,
    domains: usize,
    seed: u64,
) -> (String, Option<pg::TestDb>) {
    let rows = shopscribe::demo::sample_rows(domains, seed);
    if postgres {
        let db = pg::TestDb::new().await;
        shopscribe::store::postgres::PostgresStore::open(&db.url)
            .await
            .unwrap();
        pg::load_pg(&sqlx::PgPool::connect(&db.url).await.unwrap(), &rows).await;
        (db.url.clone(), Some(db))
    } else {
        let url = format!("sqlite://{}", dir.join("shopscribe.db").display());
        let s = shopscribe::store::sqlite::SqliteStore::open(&url)
            .await
            .unwrap();
        shopscribe::demo::load_rows(s.pool(), &rows).await.unwrap();
        (url, None)
    }
}

/// A struct read from a SQLite row by column name: `sqlite_row! { struct Gen { key: String } }`.
/// (sqlx's `FromRow` derive needs its `macros` feature, which shopscribe does not build: that
/// feature compiled sqlx, SQLite and rustls a second time for the proc-macro.)
#[macro_export]
macro_rules! sqlite_row {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($fvis:vis $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        $vis struct $name {
            $($fvis $field: $ty),*
        }
        impl<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> for $name {
            fn from_row(row: &'r sqlx::sqlite::SqliteRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row;
                Ok($name {
                    $($field: row.try_get(stringify!($field))?),*
                })
            }
        }
    };
}
