//! Every way of running a job takes the job's lock, and queued work is never paid twice: real
//! `shopscribe` processes against the mock OpenAI server, the store on SQLite and PostgreSQL.

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::mock_openai::{MockConfig, MockServer};

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
    support::cli::with_mock(dir, store, &server.base_url, args)
}

fn text(o: &Output) -> String {
    support::cli::text(o)
}

/// Good generations per entity, from the store.
async fn good_per_entity(store: &str) -> HashMap<String, i64> {
    support::cli::good_per_entity(store, "generations").await
}

async fn a_second_run_of_a_job_waits_or_exits(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), 2);
    let (url, _db) = support::sample_store(postgres, dir.path(), 24, 8).await;
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

    // --no-wait: exits at once, naming the holder, and sends nothing. It talks to a server of
    // its own, so what it sends is told apart from the first run's calls (which go on meanwhile).
    let idle = MockServer::start(MockConfig::default()).await;
    let refused = shopscribe(
        dir.path(),
        &url,
        &idle,
        &["run", "domain_summaries", "--no-wait"],
    )
    .output()
    .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = text(&refused);
    assert!(said.contains("is being run by run-"), "{said}");
    assert!(idle.seen().is_empty(), "the refused run sent nothing");

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
    let (url, _db) = support::sample_store(true, dir.path(), 30, 8).await;
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
