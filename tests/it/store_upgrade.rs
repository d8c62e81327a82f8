//! Stores made by an earlier release open in place with this code and keep working, on both
//! backends: the stores of `tests/fixtures/store-98df198/` were made by the release binary of
//! commit 98df198 (how: the README there). Opening checks the applied migrations' checksums
//! (sqlx refuses a store whose applied migration differs from the code's), every stored word
//! must read as its typed status, and the ingest, a run and a new delivery must work on them.

use crate::support;

use shopscribe::ingest::db::IngestDb;
use shopscribe::store::{FileStatus, GenerationStatus, RunStatus};
use std::io::Read;
use std::path::Path;

fn gunzip(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/store-98df198")
        .join(name);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// What the release stored, read back; then new work on the same store.
async fn opens_and_works(url: &str, current_reviews: usize) {
    let store = shopscribe::store::open(url).await.unwrap();
    let runs = store.runs(None, 10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (runs[0].job.as_str(), runs[0].status),
        ("product_insights", RunStatus::Succeeded)
    );
    assert_eq!(runs[0].figures.generated, 18);
    let states = store.entity_states("product_insights").await.unwrap();
    assert_eq!(states.len(), 18);
    assert!(
        states
            .values()
            .all(|s| s.last_status == GenerationStatus::Ok)
    );
    let generations = store.run_generations(runs[0].id).await.unwrap();
    assert_eq!(generations.len(), 18);
    assert!(
        generations
            .iter()
            .all(|(g, _)| g.status == GenerationStatus::Ok && g.attempt_log == ["ok"])
    );
    assert!(store.state_get("store_id").await.unwrap().is_some());

    let db = IngestDb::connect(url).await.unwrap();
    let files = db.files("reviews", 10).await.unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|f| f.status == FileStatus::Done));
    let rejects = db.rejects("reviews", 10).await.unwrap();
    assert_eq!(
        rejects.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
        ["rejected", "skipped"]
    );
    let mut bronze = 0;
    db.bronze_lines(files[1].id, |_, _| {
        bronze += 1;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(bronze, 122, "the first delivery's lines, as delivered");
    assert_eq!(
        db.as_of("reviews", "9999").await.unwrap().len(),
        current_reviews
    );

    // New work: a delivery through the whole ingest (lock, recovery, merge, gold), then a run.
    let dir = tempfile::tempdir().unwrap();
    shopscribe::demo::write_reviews_project(dir.path(), true).unwrap();
    let incoming = dir.path().join("day3.jsonl");
    std::fs::write(
        &incoming,
        "{\"asin\": \"B000000001\", \"reviewerID\": \"NEW\", \"overall\": 5.0, \"unixReviewTime\": 1700000000, \"helpful\": [1, 2], \"reviewText\": \"Still going strong.\", \"summary\": \"ok\"}\n",
    )
    .unwrap();
    let store_url = url.to_string();
    let project = shopscribe::config::load_with_env(dir.path(), &move |k| match k {
        "SHOPSCRIBE_STORE_URL" => Some(store_url.clone()),
        "SHOPSCRIBE_LLM_PROVIDER" => Some("offline".to_string()),
        _ => None,
    })
    .unwrap();
    let reports = shopscribe::ingest::ingest(
        &project,
        project.dataset("reviews").unwrap(),
        Some(incoming.to_str().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(reports[0].merge.inserted, 1, "{:?}", reports[0].merge);
    assert_eq!(
        db.as_of("reviews", "9999").await.unwrap().len(),
        current_reviews + 1
    );
    let provider = shopscribe::llm::from_config(&project.llm).unwrap();
    let summary = shopscribe::run::run_job(
        &project,
        "product_insights",
        store.clone(),
        provider,
        &shopscribe::run::RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.status, RunStatus::Succeeded, "{summary:?}");
    // The new review moves its product's figures (and with them its peers' quantiles).
    assert!(summary.figures.generated >= 1, "{summary:?}");
    assert_eq!(summary.figures.failed, 0, "{summary:?}");
    assert_eq!(store.runs(None, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_sqlite_store_of_the_earlier_release_opens_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shopscribe.db");
    std::fs::write(&path, gunzip("sqlite.db.gz")).unwrap();
    let url = format!("sqlite://{}", path.display());
    opens_and_works(&url, 145).await;
    // That release numbered SQLite's migrations apart from PostgreSQL's (ingest 4, gold 5):
    // renumbered in place to the one sequence, every checksum kept.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(applied, versions(&[]));
}

/// The one numbering's versions with their descriptions, with the PostgreSQL-only ones given.
fn versions(postgres_only: &[(i64, &str)]) -> Vec<(i64, String)> {
    let mut all: Vec<(i64, String)> = [
        (1, "init"),
        (2, "attempt log"),
        (3, "batches"),
        (5, "ingest"),
        (7, "gold"),
        (10, "service"),
        (11, "bronze blocks"),
        (12, "record lines"),
        (13, "run leases"),
        (14, "ingest bytes"),
        (17, "product catalog"),
    ]
    .iter()
    .chain(postgres_only)
    .map(|(v, d)| (*v, d.to_string()))
    .collect();
    all.sort();
    all
}

#[tokio::test]
async fn a_postgres_store_of_the_earlier_release_opens_and_works() {
    use sqlx::Connection;
    let db = support::pg::TestDb::new().await;
    let dump = String::from_utf8(gunzip("postgres.sql.gz")).unwrap();
    // The dump sets the session's search path to nothing: restored on a connection of its own.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(dump))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    opens_and_works(&db.url, 142).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(applied, versions(&[(4, "tasks"), (15, "publish lease")]));
}
