//! Every way of running a job takes the job's lock, and queued work is never paid twice: real
//! `shopscribe` processes against the mock OpenAI server, the store on SQLite and PostgreSQL.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::mock_openai::{MockConfig, MockServer};
use support::pg::{TestDb, load_pg};

fn project(dir: &Path, in_flight: usize) {
    shopscribe::demo::write_project(dir, true).unwrap();
    let path = dir.join("shopscribe.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "max_in_flight = 16\n",
        &format!("max_in_flight = {in_flight}\n"),
    );
    std::fs::write(path, text).unwrap();
}

fn shopscribe(dir: &Path, store: &str, server: &MockServer, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shopscribe"));
    c.args(args)
        .arg("--project")
        .arg(dir)
        .env("SHOPSCRIBE_STORE_URL", store)
        .env("SHOPSCRIBE_LLM_PROVIDER", "openai")
        .env("SHOPSCRIBE_LLM_BASE_URL", &server.base_url)
        .env("OPENAI_API_KEY", "test-key")
        .env("RUST_LOG", "shopscribe=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Good generations per entity, from the store.
async fn good_per_entity(store: &str) -> HashMap<String, i64> {
    let sql =
        "SELECT entity_key, count(*) FROM generations WHERE status = 'ok' GROUP BY entity_key";
    let rows: Vec<(String, i64)> = if store.starts_with("sqlite://") {
        let pool = sqlx::SqlitePool::connect(store).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(store).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    };
    rows.into_iter().collect()
}

/// A store with `domains` sample domains, migrated: (url, guard).
async fn store(postgres: bool, dir: &Path, domains: usize) -> (String, Option<TestDb>) {
    let rows = shopscribe::demo::sample_rows(domains, 8);
    if postgres {
        let db = TestDb::new().await;
        shopscribe::store::postgres::PostgresStore::open(&db.url)
            .await
            .unwrap();
        load_pg(&sqlx::PgPool::connect(&db.url).await.unwrap(), &rows).await;
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

async fn a_second_run_of_a_job_waits_or_exits(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), 2);
    let (url, _db) = store(postgres, dir.path(), 24).await;
    let server = MockServer::start(MockConfig {
        latency: Duration::from_millis(250),
        ..Default::default()
    })
    .await;
    let first = shopscribe(dir.path(), &url, &server, &["run", "domain_summaries"])
        .spawn()
        .unwrap();
    let t = Instant::now();
    while server.seen().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the first run never called"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // --no-wait: exits at once, naming the holder, and sends nothing.
    let calls = server.seen().len();
    let refused = shopscribe(
        dir.path(),
        &url,
        &server,
        &["run", "domain_summaries", "--no-wait"],
    )
    .output()
    .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = text(&refused);
    assert!(said.contains("is being run by run-"), "{said}");
    assert!(
        server.seen().len() - calls <= 2,
        "only the first run's calls"
    );

    // Waiting: it says who it waits for, starts once the first is done, and finds nothing to do.
    let second = shopscribe(dir.path(), &url, &server, &["run", "domain_summaries"])
        .spawn()
        .unwrap();
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", text(&first));
    let second = second.wait_with_output().unwrap();
    assert!(second.status.success(), "{}", text(&second));
    let said = text(&second);
    assert!(said.contains("waiting for it"), "{said}");
    assert!(said.contains("generated         0"), "{said}");

    let good = good_per_entity(&url).await;
    assert_eq!(good.len(), 24);
    assert!(
        good.values().all(|&n| n == 1),
        "one paid text each: {good:?}"
    );
    assert!(
        server.successes_per_input().values().all(|&n| n == 1),
        "no entity sent twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_of_a_job_waits_or_exits_sqlite() {
    a_second_run_of_a_job_waits_or_exits(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_of_a_job_waits_or_exits_postgres() {
    a_second_run_of_a_job_waits_or_exits(true).await;
}

/// Queueing a job twice queues its work once; and a worker does not pay for an entity whose
/// current text (here written by a CLI run meanwhile) already has the task's inputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_is_never_paid_twice() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), 8);
    let (url, _db) = store(true, dir.path(), 30).await;
    let server = MockServer::start(MockConfig::default()).await;
    let run = |args: &[&str]| {
        shopscribe(dir.path(), &url, &server, args)
            .output()
            .unwrap()
    };

    let first = run(&["run", "domain_summaries", "--workers", "0"]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("30 task(s)"), "{}", text(&first));
    let second = run(&["run", "domain_summaries", "--workers", "0"]);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("0 task(s)") && text(&second).contains("30 already queued"),
        "{}",
        text(&second)
    );

    // A CLI run writes every entity before any worker starts; the workers then find each task
    // already done and call nothing.
    let cli = run(&["run", "domain_summaries"]);
    assert!(cli.status.success(), "{}", text(&cli));
    assert_eq!(server.seen().len(), 30);
    // One worker works both queued runs, oldest first; a second finds nothing left to do.
    let w = run(&["worker"]);
    assert!(w.status.success(), "{}", text(&w));
    assert_eq!(
        text(&w).matches("This worker finished the run").count(),
        2,
        "{}",
        text(&w)
    );
    let idle = run(&["worker"]);
    assert!(idle.status.success(), "{}", text(&idle));
    assert!(text(&idle).contains("nothing to do"), "{}", text(&idle));
    assert_eq!(server.seen().len(), 30, "the workers paid for nothing");
    let good = good_per_entity(&url).await;
    assert_eq!(good.len(), 30);
    assert!(good.values().all(|&n| n == 1), "{good:?}");
}
