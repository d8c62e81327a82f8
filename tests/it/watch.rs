//! `shopscribe watch` on the reviews example: a new delivery is ingested and runs the job exactly
//! once; an unchanged (or merely touched) folder runs nothing; a restarted watcher remembers what
//! it saw; a job held by another process stays due until it is free; a data-version query
//! triggers runs; one watcher polls at a time; and the CLI's `watch --once` does the same.

use serde_json::Value;
use shopscribe::config::Project;
use shopscribe::store::Store;
use shopscribe::watch::Watcher;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn project(dir: &Path) -> Project {
    shopscribe::demo::write_reviews_project(dir, true).unwrap();
    std::fs::create_dir_all(dir.join("data/reviews")).unwrap();
    shopscribe::config::load_with_env(dir, &|_| None).unwrap()
}

async fn watcher(p: &Project) -> (Watcher, Arc<dyn Store>) {
    let store = shopscribe::store::open(&p.store_url).await.unwrap();
    let provider = shopscribe::llm::from_config(&p.llm).unwrap();
    (
        Watcher::new(Arc::new(p.clone()), store.clone(), provider),
        store,
    )
}

/// Takes the poll lock as another watcher would; true when taken.
async fn poll_lock_taken_elsewhere(store: &dyn Store) -> bool {
    store
        .try_lock_job(
            shopscribe::watch::POLL_LOCK,
            "watch-elsewhere",
            Duration::from_secs(60),
        )
        .await
        .unwrap()
}

/// A delivery with one new review, built from a line of the sample data.
fn one_more_review(sample: &str, reviewer: &str) -> String {
    let line = sample
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap();
    let mut v = line;
    v["reviewerID"] = Value::String(reviewer.into());
    v["reviewText"] = Value::String("Arrived quickly and works as described.".into());
    format!("{v}\n")
}

#[tokio::test]
async fn a_new_delivery_runs_the_job_once_and_an_unchanged_folder_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = project(dir.path());
    let data = dir.path().join("data/reviews");
    let (day1, day2) = shopscribe::demo::review_deliveries(12, 4);
    std::fs::write(data.join("day1.jsonl"), &day1).unwrap();
    let (w, store) = watcher(&p).await;

    let first = w.poll().await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.ingested, vec!["reviews".to_string()]);
    assert_eq!(first.runs.len(), 1);
    assert_eq!(first.runs[0].job, "product_insights");
    assert!(first.runs[0].figures.generated > 0);

    // Nothing new: nothing happens.
    let second = w.poll().await;
    assert!(
        second.ingested.is_empty() && second.runs.is_empty(),
        "{second:?}"
    );
    // Touched but identical: listed as changed, ingested as "already ingested", no run.
    std::fs::write(data.join("day1.jsonl"), &day1).unwrap();
    let touched = w.poll().await;
    assert!(
        touched.ingested.is_empty() && touched.runs.is_empty(),
        "{touched:?}"
    );

    // A second delivery: exactly one run, which regenerates what changed.
    std::fs::write(data.join("day2.jsonl"), &day2).unwrap();
    let third = w.poll().await;
    assert_eq!(third.ingested, vec!["reviews".to_string()]);
    assert_eq!(third.runs.len(), 1);
    assert!(third.runs[0].figures.generated > 0);
    assert!(w.poll().await.runs.is_empty());

    // A restarted watcher (state in the store) sees nothing new either.
    let (again, _) = watcher(&p).await;
    let after_restart = again.poll().await;
    assert!(after_restart.ingested.is_empty() && after_restart.runs.is_empty());

    // The job is held by another process: the delivery is ingested, the run stays due...
    assert!(
        store
            .try_lock_job("product_insights", "api-elsewhere", Duration::from_secs(60))
            .await
            .unwrap()
    );
    std::fs::write(data.join("day3.jsonl"), one_more_review(&day2, "R-WATCH-1")).unwrap();
    let held = again.poll().await;
    assert_eq!(held.ingested, vec!["reviews".to_string()]);
    assert!(held.runs.is_empty());
    assert_eq!(held.busy, vec!["product_insights".to_string()]);
    // ... and runs once the job is free, even though the data was already ingested.
    store
        .unlock_job("product_insights", "api-elsewhere")
        .await
        .unwrap();
    let freed = again.poll().await;
    assert!(freed.ingested.is_empty());
    assert_eq!(freed.runs.len(), 1, "{freed:?}");
    // The product with the new review (and any whose peer comparison moved with it).
    assert!(freed.runs[0].figures.generated >= 1, "{freed:?}");
    assert!(again.poll().await.runs.is_empty());

    // Another watcher is polling: this one does nothing (not even look), then works once the
    // other is done.
    assert!(poll_lock_taken_elsewhere(store.as_ref()).await);
    std::fs::write(data.join("day4.jsonl"), one_more_review(&day2, "R-WATCH-2")).unwrap();
    let other = again.poll().await;
    assert!(
        other.ingested.is_empty() && other.runs.is_empty(),
        "{other:?}"
    );
    assert_eq!(other.busy, vec![shopscribe::watch::POLL_LOCK.to_string()]);
    store
        .unlock_job(shopscribe::watch::POLL_LOCK, "watch-elsewhere")
        .await
        .unwrap();
    let mine = again.poll().await;
    assert_eq!(mine.ingested, vec!["reviews".to_string()]);
    assert_eq!(mine.runs.len(), 1, "{mine:?}");
    assert!(
        poll_lock_taken_elsewhere(store.as_ref()).await,
        "the poll lock is released after the poll"
    );

    let runs = store.runs(Some("product_insights"), 20).await.unwrap();
    assert_eq!(runs.len(), 4, "four runs in all");
}

#[tokio::test]
async fn a_new_data_version_runs_the_jobs() {
    let dir = tempfile::tempdir().unwrap();
    shopscribe::demo::write_project(dir.path(), true).unwrap();
    let toml = dir.path().join("shopscribe.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(
        "\n[watch]\ndata_version_sql = \"SELECT count(*) || ':' || sum(visits) FROM domain_monthly\"\n",
    );
    std::fs::write(&toml, text).unwrap();
    let p = shopscribe::config::load_with_env(dir.path(), &|_| None).unwrap();
    let sqlite = shopscribe::store::sqlite::SqliteStore::open(&p.store_url)
        .await
        .unwrap();
    shopscribe::demo::load_rows(sqlite.pool(), &shopscribe::demo::sample_rows(15, 2))
        .await
        .unwrap();
    let (w, _) = watcher(&p).await;
    let first = w.poll().await;
    assert!(first.version_changed && first.runs.len() == 1, "{first:?}");
    assert_eq!(first.runs[0].figures.generated, 15);
    assert!(w.poll().await.runs.is_empty(), "same version: nothing");
    sqlx::query("UPDATE domain_monthly SET visits = visits + 1 WHERE year = (SELECT max(year) FROM domain_monthly)")
        .execute(sqlite.pool())
        .await
        .unwrap();
    let changed = w.poll().await;
    assert!(changed.version_changed, "{changed:?}");
    assert_eq!(changed.runs.len(), 1);
}

#[test]
fn watch_once_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let _ = project(dir.path());
    let (day1, _) = shopscribe::demo::review_deliveries(8, 1);
    std::fs::write(dir.path().join("data/reviews/day1.jsonl"), day1).unwrap();
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopscribe"))
            .args(["watch", "--once", "--project"])
            .arg(dir.path())
            .env_remove("OPENAI_API_KEY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = run();
    assert!(
        first.contains("ingested: reviews") && first.contains("product_insights #"),
        "{first}"
    );
    let second = run();
    assert!(
        second.contains("ingested: nothing") && second.contains("runs: ;"),
        "{second}"
    );
}

#[tokio::test]
async fn a_delivery_over_the_reject_threshold_still_gets_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = project(dir.path());
    let data = dir.path().join("data/reviews");
    let (day1, _) = shopscribe::demo::review_deliveries(10, 2);
    // Merged all the same, but the ingest reports an error: 4 of 6 lines are malformed.
    let bad = format!(
        "{}{}not json\n{{\"asin\": 1}}\n[]\n{{\n",
        one_more_review(&day1, "R-1"),
        one_more_review(&day1, "R-2")
    );
    std::fs::write(data.join("day1.jsonl"), &day1).unwrap();
    std::fs::write(data.join("day2.jsonl"), bad).unwrap();
    let (w, _) = watcher(&p).await;
    let first = w.poll().await;
    assert!(
        first.errors.iter().any(|e| e.contains("reject")),
        "{:?}",
        first.errors
    );
    assert_eq!(
        first.runs.len(),
        1,
        "the merged data is run anyway: {first:?}"
    );
    // The next poll retries the listing, finds everything ingested, and runs nothing more.
    let second = w.poll().await;
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    assert!(second.runs.is_empty(), "{second:?}");
    assert!(w.poll().await.runs.is_empty());
}

/// A run that could not even be created (here: the store's `runs` table unavailable, as when the
/// store is unreachable) leaves its job due: the next poll runs it without a new delivery.
#[tokio::test]
async fn a_run_that_could_not_start_stays_due() {
    let dir = tempfile::tempdir().unwrap();
    let p = project(dir.path());
    let (day1, _) = shopscribe::demo::review_deliveries(8, 4);
    std::fs::write(dir.path().join("data/reviews/day1.jsonl"), &day1).unwrap();
    let (w, _store) = watcher(&p).await;
    let pool = sqlx::SqlitePool::connect(&p.store_url).await.unwrap();
    let rename = |from: &'static str, to: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE {from} RENAME TO {to}"
            )))
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    rename("runs", "runs_away").await;
    let failed = w.poll().await;
    assert_eq!(failed.ingested, vec!["reviews".to_string()]);
    assert!(failed.runs.is_empty(), "{failed:?}");
    assert!(
        failed
            .errors
            .iter()
            .any(|e| e.starts_with("product_insights:")),
        "{failed:?}"
    );
    rename("runs_away", "runs").await;
    let retried = w.poll().await;
    assert!(retried.errors.is_empty(), "{:?}", retried.errors);
    assert!(retried.ingested.is_empty(), "nothing new to ingest");
    assert_eq!(retried.runs.len(), 1, "the job was still due");
    assert!(w.poll().await.runs.is_empty());
}
