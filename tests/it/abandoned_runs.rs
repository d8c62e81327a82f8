//! A run whose process is killed does not stay `running` for ever: the next `shopscribe` process
//! that opens the store marks it `abandoned` once its lease lapsed, with the figures of what it
//! stored, and a run that is alive is never marked. Real processes (the binary, `kill -9`), the
//! mock OpenAI server, the store on SQLite and on a real PostgreSQL.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test fixtures and expectations computed from small counts"
)]

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::mock_openai::{MockConfig, MockServer};

/// The example project written by the mock, one request at a time, with a 1-second run lease.
fn project(dir: &Path) {
    shopscribe::demo::write_project(dir, true).unwrap();
    let path = dir.join("shopscribe.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_in_flight = 16\n", "max_in_flight = 1\n")
        + "\n[workers]\nlease_seconds = 1\n";
    std::fs::write(path, text).unwrap();
}

fn shopscribe(dir: &Path, store: &str, server: &MockServer, args: &[&str]) -> Command {
    support::cli::with_mock(dir, store, &server.base_url, args)
}

/// The status and generated count of run `id`, read without going through the binary.
async fn run_row(store: &str, id: i64) -> (String, i64) {
    let sql = "SELECT status, generated FROM runs WHERE id = 1";
    assert_eq!(id, 1);
    if store.starts_with("sqlite://") {
        let pool = sqlx::SqlitePool::connect(store).await.unwrap();
        sqlx::query_as(sql).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(store).await.unwrap();
        sqlx::query_as(sql).fetch_one(&pool).await.unwrap()
    }
}

async fn good_generations(store: &str) -> i64 {
    support::cli::scalar(
        store,
        "SELECT count(*) FROM generations WHERE run_id = 1 AND status = 'ok'",
    )
    .await
}

async fn a_killed_run_is_marked_abandoned(store: &str, dir: &Path) {
    let server = MockServer::start(MockConfig {
        latency: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let mut run = shopscribe(dir, store, &server, &["run", "domain_summaries"])
        .spawn()
        .unwrap();
    // Wait for the first stored answers (results are committed in small batches).
    let t = Instant::now();
    while good_generations(store).await < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no generation stored"
        );
        assert!(run.try_wait().unwrap().is_none(), "the run ended early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Alive for more than two leases: another process opening the store leaves it running.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let plan = shopscribe(dir, store, &server, &["plan", "domain_summaries"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{plan:?}");
    assert_eq!(run_row(store, 1).await.0, "running", "a live run is kept");

    run.kill().unwrap();
    run.wait().unwrap();
    assert_eq!(run_row(store, 1).await.0, "running", "nothing marks it yet");
    let stored = good_generations(store).await;

    // The lease lapses within a second; the next process that opens the store marks the run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = shopscribe(dir, store, &server, &["report", "1"])
        .output()
        .unwrap();
    assert!(report.status.success(), "{report:?}");
    assert_eq!(
        run_row(store, 1).await,
        ("abandoned".to_string(), stored),
        "marked, with the generations it stored"
    );
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert!(stderr.contains("marked abandoned"), "{stderr}");

    // The next run continues where the killed one stopped: only the rest is generated.
    let before = server.seen().len();
    let next = shopscribe(dir, store, &server, &["run", "domain_summaries"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&next.stdout);
    assert!(next.status.success(), "{out}");
    let generated: i64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("generated"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(generated + stored, 30, "{out}");
    assert_eq!(server.seen().len() - before, generated as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_marked_abandoned_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let (url, _db) = support::sample_store(false, dir.path(), 30, 3).await;
    a_killed_run_is_marked_abandoned(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_is_marked_abandoned_postgres() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let (url, _db) = support::sample_store(true, dir.path(), 30, 3).await;
    a_killed_run_is_marked_abandoned(&url, dir.path()).await;
}
