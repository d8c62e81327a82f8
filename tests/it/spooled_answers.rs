//! Answers paid for while the store will not take them are never paid for again: the run stops
//! starting requests, keeps what it received, writes it to a spool file when it must end, and the
//! next run stores the spool before planning. Real processes, the mock OpenAI server, the store
//! on SQLite and PostgreSQL.

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::mock_openai::{MockConfig, MockServer};

fn shopscribe(dir: &Path, store: &str, server: &MockServer, args: &[&str]) -> Command {
    support::cli::with_mock(dir, store, &server.base_url, args)
}

async fn sql(store: &str, q: &str) {
    support::cli::execute(store, q).await
}

async fn good(store: &str, table: &str) -> HashMap<String, i64> {
    support::cli::good_per_entity(store, table).await
}

async fn paid_answers_are_spooled_and_stored_by_the_next_run(store: &str, dir: &Path) {
    let server = MockServer::start(MockConfig {
        latency: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let run = shopscribe(dir, store, &server, &["run", "domain_summaries"])
        .spawn()
        .unwrap();
    let t = Instant::now();
    while good(store, "generations").await.len() < 4 {
        assert!(t.elapsed() < Duration::from_secs(60), "nothing stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The store stops taking generations (as a store that is down or refusing writes).
    sql(store, "ALTER TABLE generations RENAME TO generations_away").await;
    let out = run.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("no new request is started"), "{said}");
    assert!(
        said.contains("the next run of the job stores them"),
        "{said}"
    );
    let spooled: Vec<_> = std::fs::read_dir(dir.join(".shopscribe/spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    let kept = std::fs::read_to_string(&spooled[0])
        .unwrap()
        .lines()
        .count();
    assert!(kept >= 1, "the answers received after the failure");
    let stored = good(store, "generations_away").await.len();
    let paid = server.seen().len();
    assert!(paid < 30, "no request started after the failure: {paid}");
    assert_eq!(
        stored + kept,
        paid,
        "every paid answer is stored or spooled"
    );

    // The next run stores the spool first, and pays only for the rest.
    sql(store, "ALTER TABLE generations_away RENAME TO generations").await;
    let next = shopscribe(dir, store, &server, &["run", "domain_summaries"])
        .output()
        .unwrap();
    assert!(next.status.success(), "{next:?}");
    assert_eq!(
        std::fs::read_dir(dir.join(".shopscribe/spool"))
            .unwrap()
            .count(),
        0
    );
    let per_entity = good(store, "generations").await;
    assert_eq!(per_entity.len(), 30);
    assert!(per_entity.values().all(|&n| n == 1), "{per_entity:?}");
    assert!(
        server.successes_per_input().values().all(|&n| n == 1),
        "no answer paid twice"
    );
    assert_eq!(server.seen().len(), 30);
}

fn project(dir: &Path) {
    shopscribe::demo::write_project(dir, true).unwrap();
    let path = dir.join("shopscribe.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_in_flight = 16\n", "max_in_flight = 2\n");
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_answers_are_spooled_and_stored_by_the_next_run_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let (url, _db) = support::sample_store(false, dir.path(), 30, 4).await;
    paid_answers_are_spooled_and_stored_by_the_next_run(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_answers_are_spooled_and_stored_by_the_next_run_postgres() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let (url, _db) = support::sample_store(true, dir.path(), 30, 4).await;
    paid_answers_are_spooled_and_stored_by_the_next_run(&url, dir.path()).await;
}
