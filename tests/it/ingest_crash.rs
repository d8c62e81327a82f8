//! A killed ingest costs nothing later: its lock is taken over at once (the holder's process is
//! gone), its partial bronze and rejects are removed (a line is never listed twice), and gold it
//! did not finish rebuilding is rebuilt by the next ingest or run. Real processes (`kill -9`),
//! the reviews example, the store on SQLite and PostgreSQL.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test fixtures and expectations computed from small counts"
)]

use crate::support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::pg::TestDb;

fn project(dir: &Path) {
    shopscribe::demo::write_reviews_project(dir, true).unwrap();
    std::fs::create_dir_all(dir.join("data/reviews")).unwrap();
}

fn shopscribe(dir: &Path, store: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shopscribe"));
    c.args(args)
        .arg("-p")
        .arg(dir)
        .env_remove("OPENAI_API_KEY")
        .env("SHOPSCRIBE_STORE_URL", store)
        .env("RUST_LOG", "shopscribe=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn text(o: &Output) -> String {
    support::cli::text(o)
}

/// A large delivery: `n` reviews of 500 products, every 1000th line malformed.
fn big_delivery(n: usize) -> String {
    let mut out = String::with_capacity(n * 200);
    for i in 0..n {
        if i % 1000 == 999 {
            out.push_str(&format!("{{\"asin\": \"B{i}\", broken\n"));
            continue;
        }
        out.push_str(
            &serde_json::json!({"asin": format!("B{:06}", i % 500), "reviewerID": format!("R{i}"),
                "unixReviewTime": 1_700_000_000 + i as i64, "overall": (i % 5 + 1) as f64,
                "helpful": [1, 2], "reviewText": "Works as described, would buy again.",
                "summary": "Good"})
            .to_string(),
        );
        out.push('\n');
    }
    out
}

async fn scalar(store: &str, sql: &'static str) -> i64 {
    support::cli::scalar(store, sql).await
}

async fn execute(store: &str, sql: String) {
    support::cli::execute(store, &sql).await
}

async fn a_killed_ingest_costs_nothing_later(store: &str, dir: &Path) {
    std::fs::write(dir.join("data/reviews/big.jsonl"), big_delivery(300_000)).unwrap();

    // Killed while loading: it holds the dataset's lock (a 5-minute lease) and left a file
    // `loading` with part of its bronze and rejects written.
    let mut first = shopscribe(dir, store, &["ingest", "reviews"])
        .spawn()
        .unwrap();
    let t = Instant::now();
    while scalar(store, "SELECT count(*) FROM raw_rejects").await < 20 {
        assert!(t.elapsed() < Duration::from_secs(120), "nothing written");
        assert!(
            first.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(
        scalar(
            store,
            "SELECT count(*) FROM ingested_files WHERE status = 'loading'"
        )
        .await,
        1
    );

    // The next ingest takes the dead holder's lock at once, drops the partial file and ingests
    // the delivery whole.
    let t = Instant::now();
    let second = shopscribe(dir, store, &["ingest", "reviews"])
        .output()
        .unwrap();
    assert!(second.status.success(), "{}", text(&second));
    assert!(t.elapsed() < Duration::from_secs(100), "{:?}", t.elapsed());
    assert!(
        text(&second).contains("took over the lock of a process that is gone"),
        "{}",
        text(&second)
    );
    assert_eq!(scalar(store, "SELECT count(*) FROM raw_rejects").await, 300);
    let listed = shopscribe(
        dir,
        store,
        &["ingest", "reviews", "--rejects", "--limit", "1000"],
    )
    .output()
    .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.starts_with("300 "), "{listed}");
    let mut lines: Vec<&str> = listed
        .lines()
        .filter(|l| l.contains("big.jsonl:"))
        .collect();
    let n = lines.len();
    lines.sort();
    lines.dedup();
    assert_eq!((n, lines.len()), (300, 300), "every reject listed once");
    assert_eq!(
        scalar(store, "SELECT count(*) FROM product_summary").await,
        500
    );

    // Gold whose rebuild was cut short (here: emptied, with the flag an interrupted ingest
    // leaves) is rebuilt by the next ingest, although every file is already ingested ...
    let stale = "INSERT INTO service_state (name, value, updated_at) VALUES ('gold_stale:reviews', 'x', 'x')";
    execute(store, "DELETE FROM product_summary".into()).await;
    execute(store, stale.into()).await;
    let again = shopscribe(dir, store, &["ingest", "reviews"])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("already ingested"),
        "{}",
        text(&again)
    );
    assert_eq!(
        scalar(store, "SELECT count(*) FROM product_summary").await,
        500
    );
    // ... or by the next run of a job that reads the dataset, before its SQL reads gold.
    execute(store, "DELETE FROM product_summary".into()).await;
    execute(store, stale.into()).await;
    let run = shopscribe(dir, store, &["run", "product_insights"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("entities        500"), "{}", text(&run));
    assert_eq!(
        scalar(
            store,
            "SELECT count(*) FROM service_state WHERE name LIKE 'gold_stale:%'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ingest_costs_nothing_later_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let url = format!("sqlite://{}", dir.path().join("shopscribe.db").display());
    shopscribe::store::sqlite::SqliteStore::open(&url)
        .await
        .unwrap();
    a_killed_ingest_costs_nothing_later(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ingest_costs_nothing_later_postgres() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let db = TestDb::new().await;
    shopscribe::store::postgres::PostgresStore::open(&db.url)
        .await
        .unwrap();
    a_killed_ingest_costs_nothing_later(&db.url, dir.path()).await;
}

/// A live holder is waited for, and the wait says who holds the lock and until when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_waits_for_a_live_holder_and_says_who() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let url = format!("sqlite://{}", dir.path().join("shopscribe.db").display());
    let store = shopscribe::store::open(&url).await.unwrap();
    std::fs::write(
        dir.path().join("data/reviews/small.jsonl"),
        big_delivery(100),
    )
    .unwrap();
    // This test process holds the lock, with a 3-second lease.
    let me = shopscribe::lease::holder_name("test");
    assert!(
        store
            .try_lock_job("ingest:reviews", &me, Duration::from_secs(3))
            .await
            .unwrap()
    );
    let t = Instant::now();
    let out = shopscribe(dir.path(), &url, &["ingest", "reviews"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "it waited: {:?}",
        t.elapsed()
    );
    let said = text(&out);
    assert!(
        said.contains("held by another process; waiting for it"),
        "{said}"
    );
    assert!(said.contains(&me), "names the holder: {said}");
    assert!(said.contains("lease_until"), "{said}");
}
