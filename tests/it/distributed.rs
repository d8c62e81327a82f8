//! Distributed runs and crash safety, with real processes: the `shopscribe` binary as workers
//! against a real PostgreSQL and the in-process mock OpenAI server.

use crate::support;

use sqlx::PgPool;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::mock_openai::{MockConfig, MockServer};
use support::pg::{TestDb, load_pg};

/// The example project, its store (and source) on `db`, its writer the mock.
fn project(dir: &Path, extra_llm: &str, lease_seconds: u32) {
    shopscribe::demo::write_project(dir, true).unwrap();
    let path = dir.join("shopscribe.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "max_in_flight = 16\n",
        &format!("max_in_flight = 16\nrequest_timeout_seconds = 5\n{extra_llm}\n"),
    ) + &format!("\n[workers]\nlease_seconds = {lease_seconds}\nclaim_batch = 8\n");
    std::fs::write(path, text).unwrap();
}

fn cmd(dir: &Path, db: &TestDb, server: &MockServer, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shopscribe"));
    c.args(args)
        .arg("--project")
        .arg(dir)
        .env("SHOPSCRIBE_STORE_URL", &db.url)
        .env("SHOPSCRIBE_LLM_PROVIDER", "openai")
        .env("SHOPSCRIBE_LLM_BASE_URL", &server.base_url)
        .env("OPENAI_API_KEY", "test-key")
        .env(
            "RUST_LOG",
            std::env::var("TEST_CHILD_LOG").unwrap_or_else(|_| "shopscribe=warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn spawn(c: &mut Command) -> Child {
    c.spawn().expect("start shopscribe")
}

fn wait_ok(child: Child, what: &str) -> String {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

async fn seed(db: &TestDb, domains: usize) -> PgPool {
    let pool = PgPool::connect(&db.url).await.unwrap();
    load_pg(&pool, &shopscribe::demo::sample_rows(domains, 21)).await;
    pool
}

async fn scalar(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_do_every_task_once_within_the_global_limit() {
    let server = MockServer::start(MockConfig {
        latency: Duration::from_millis(40),
        requests_per_minute: Some(1200.0),
        ..Default::default()
    })
    .await;
    let db = TestDb::new().await;
    let pool = seed(&db, 150).await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        "requests_per_minute = 1200\ntokens_per_minute = 100000000",
        6,
    );

    let out = wait_ok(
        spawn(&mut cmd(
            dir.path(),
            &db,
            &server,
            &["run", "domain_summaries", "--workers", "0"],
        )),
        "enqueue",
    );
    assert!(out.contains("150 task(s)"), "{out}");
    let t = Instant::now();
    let workers: Vec<Child> = (0..3)
        .map(|_| spawn(&mut cmd(dir.path(), &db, &server, &["worker"])))
        .collect();
    let outputs: Vec<String> = workers.into_iter().map(|w| wait_ok(w, "worker")).collect();
    let took = t.elapsed();

    assert_eq!(
        outputs
            .iter()
            .filter(|o| o.contains("This worker finished the run"))
            .count(),
        1,
        "exactly one publisher: {outputs:#?}"
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM tasks WHERE state = 'done'").await,
        150
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM tasks WHERE state <> 'done'").await,
        0
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM (SELECT entity_key FROM generations WHERE status = 'ok' GROUP BY entity_key HAVING count(*) > 1) d").await,
        0,
        "no entity generated twice"
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM runs WHERE status = 'succeeded' AND publisher IS NOT NULL"
        )
        .await,
        1
    );
    let dups: Vec<_> = server
        .successes_per_input()
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(dups.is_empty(), "{dups:?}");
    assert!(outputs.iter().filter(|o| o.contains("claimed 0,")).count() < 3);
    // 20 requests/s for all workers together: 150 requests need ≥ 7 s; the server's one-second
    // burst allows 20 more in any window.
    let seen = server.seen();
    let n429 = seen.iter().filter(|s| s.status == 429).count();
    // Until a starting worker's first heartbeats are seen, the others still run at their old
    // share; the server's 429s and the shared pause absorb that start-up overlap.
    assert!(
        n429 * 100 <= seen.len() * 10,
        "{n429} of {} requests were 429s",
        seen.len()
    );
    // Every arrival counts, 429s included: the limit plus its burst, plus the same 10 %
    // start-up overlap allowed above (a worker ignoring the shared limit would send ~3×).
    let busiest = server.busiest_window(Duration::from_secs(5));
    assert!(
        busiest <= (5 * 20 + 20) * 110 / 100,
        "busiest 5 s window {busiest} > limit"
    );
    assert!(
        took >= Duration::from_secs(6),
        "took {took:?}: faster than the limit allows"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("site/domain_summaries"))
            .unwrap()
            .count(),
        150 * 2 + 3 + 1,
        "html + json per entity, index, sitemap, manifest, and the hubs folder groups/"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_tasks_finish_on_the_others() {
    let server = MockServer::start(MockConfig {
        latency: Duration::from_millis(150),
        ..Default::default()
    })
    .await;
    let db = TestDb::new().await;
    let pool = seed(&db, 120).await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        "requests_per_minute = 60000\ntokens_per_minute = 100000000",
        2,
    );
    wait_ok(
        spawn(&mut cmd(
            dir.path(),
            &db,
            &server,
            &["run", "domain_summaries", "--workers", "0"],
        )),
        "enqueue",
    );

    let mut victim = spawn(&mut cmd(
        dir.path(),
        &db,
        &server,
        &["worker", "--id", "victim"],
    ));
    let survivor = spawn(&mut cmd(
        dir.path(),
        &db,
        &server,
        &["worker", "--id", "survivor"],
    ));
    let t = Instant::now();
    while scalar(
        &pool,
        "SELECT count(*) FROM tasks WHERE worker = 'victim' AND state = 'done'",
    )
    .await
        < 8
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the victim never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.kill().unwrap(); // SIGKILL: no cleanup, leases held
    victim.wait().unwrap();
    let held = scalar(
        &pool,
        "SELECT count(*) FROM tasks WHERE worker = 'victim' AND state = 'running'",
    )
    .await;
    let out = wait_ok(survivor, "survivor");
    assert!(out.contains("This worker finished the run"), "{out}");
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM tasks WHERE state = 'done'").await,
        120
    );
    let entities_ok = scalar(
        &pool,
        "SELECT count(DISTINCT entity_key) FROM generations WHERE status = 'ok'",
    )
    .await;
    assert_eq!(entities_ok, 120, "no entity lost");
    let extra = scalar(
        &pool,
        "SELECT count(*) FROM generations WHERE status = 'ok'",
    )
    .await
        - 120;
    assert!(
        extra <= held,
        "only tasks in flight at the kill may be generated twice ({extra} > {held})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_and_the_site_matches_the_store() {
    let server = MockServer::start(MockConfig {
        latency: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let db = TestDb::new().await;
    let pool = seed(&db, 100).await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        "requests_per_minute = 60000\ntokens_per_minute = 100000000\nmax_attempts = 8",
        5,
    );
    // max_in_flight is 16 in the example config.
    let mut run = spawn(&mut cmd(
        dir.path(),
        &db,
        &server,
        &["run", "domain_summaries"],
    ));
    let t = Instant::now();
    loop {
        let n = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM generations")
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
        if n >= 20 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run.kill().unwrap();
    run.wait().unwrap();
    let before = server.successes_per_input().len();
    assert!(before < 100, "killed mid-run");
    let out = wait_ok(
        spawn(&mut cmd(
            dir.path(),
            &db,
            &server,
            &["run", "domain_summaries"],
        )),
        "resumed run",
    );
    assert!(out.contains("succeeded"), "{out}");
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(DISTINCT entity_key) FROM generations WHERE status = 'ok'"
        )
        .await,
        100
    );
    let successes: usize = server.successes_per_input().values().sum();
    // At the kill, up to max_in_flight (16) answers may be received but not yet committed, and
    // up to 16 more requests on the wire: only those can be paid twice.
    assert!(
        successes <= 100 + 2 * 16,
        "only requests in flight at the kill are paid twice: {successes}"
    );
    // The site matches the store: one page per entity with a good text, manifest hashes = store.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("site/domain_summaries/manifest.json")).unwrap(),
    )
    .unwrap();
    let entries = manifest["entities"].as_array().unwrap();
    assert_eq!(entries.len(), 100);
    for e in entries {
        let key = e["key"].as_str().unwrap();
        let hash: String =
            sqlx::query_scalar("SELECT good_input_hash FROM entity_state WHERE entity_key = $1")
                .bind(key)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(e["input_hash"].as_str().unwrap(), hash);
        assert!(
            dir.path()
                .join(format!(
                    "site/domain_summaries/{}.html",
                    e["slug"].as_str().unwrap()
                ))
                .exists()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarting_mid_run_corrupts_nothing_and_the_rerun_completes() {
    let cluster = support::pg::PrivateCluster::start();
    let server = MockServer::start(MockConfig {
        latency: Duration::from_millis(150),
        ..Default::default()
    })
    .await;
    let pool = PgPool::connect(&cluster.url).await.unwrap();
    load_pg(&pool, &shopscribe::demo::sample_rows(300, 31)).await;
    pool.close().await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        "requests_per_minute = 60000\ntokens_per_minute = 100000000",
        5,
    );
    let db = TestDb::of_url(&cluster.url);
    let mut run = spawn(&mut cmd(
        dir.path(),
        &db,
        &server,
        &["run", "domain_summaries"],
    ));
    // Restart the server once some results are stored.
    let t = Instant::now();
    loop {
        if let Ok(pool) = PgPool::connect(&cluster.url).await {
            let n = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM generations")
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
            pool.close().await;
            if n >= 20 {
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the run never stored anything"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.restart(Duration::from_millis(500));
    assert!(
        run.try_wait().unwrap().is_none(),
        "the restart happened while the run was writing"
    );
    let out = run.wait_with_output().unwrap();
    let first = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The run rides through the restart: the pool reconnects, and store writes that still fail
    // on a dead connection are retried on a fresh one.
    assert!(out.status.success(), "{first}");

    let out = wait_ok(
        spawn(&mut cmd(
            dir.path(),
            &db,
            &server,
            &["run", "domain_summaries"],
        )),
        "re-run",
    );
    assert!(out.contains("succeeded"), "{out}");
    let pool = PgPool::connect(&cluster.url).await.unwrap();
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(DISTINCT entity_key) FROM generations WHERE status = 'ok'"
        )
        .await,
        300
    );
    // entity_state agrees with the generations it points at.
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM entity_state s JOIN generations g ON g.id = s.good_generation_id \
                       WHERE g.status = 'ok' AND g.input_hash = s.good_input_hash"
        )
        .await,
        300
    );
    let successes: usize = server.successes_per_input().values().sum();
    assert!(
        successes <= 300 + 16,
        "{successes} paid answers for 300 entities"
    );
}

/// A distributed run whose publisher cannot publish, or died while publishing, does not stay
/// `running` for ever nor hold up the runs queued after it: the publish step is leased, given up
/// on failure, and a later `shopscribe worker` (no `--run`) publishes it, then moves on to the
/// next runnable run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_publish_is_taken_over_and_later_runs_are_worked() {
    let server = MockServer::start(MockConfig::default()).await;
    let db = TestDb::new().await;
    let pool = seed(&db, 20).await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), "", 2);
    let status = |id: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM runs WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let enqueue = |force: bool| {
        let mut args = vec!["run", "domain_summaries", "--workers", "0"];
        if force {
            args.push("--force");
        }
        wait_ok(spawn(&mut cmd(dir.path(), &db, &server, &args)), "enqueue")
    };

    // Run 1: its only worker generates everything, then cannot publish (its site location is
    // unusable); it gives the step up and fails.
    enqueue(false);
    let out = cmd(dir.path(), &db, &server, &["worker"])
        .env("SHOPSCRIBE_PUBLISH_URL", "/dev/null/site")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(status(1).await, "running");
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM tasks WHERE run_id = 1 AND state = 'done'"
        )
        .await,
        20
    );
    // Run 2 is queued behind it, at once: the failed worker left no lock behind it.
    let t = Instant::now();
    enqueue(true);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());

    // The next worker publishes run 1, then works and publishes run 2.
    let out = wait_ok(
        spawn(&mut cmd(dir.path(), &db, &server, &["worker"])),
        "worker",
    );
    assert!(out.contains("on run 1"), "{out}");
    assert!(out.contains("on run 2"), "{out}");
    assert_eq!(
        out.matches("This worker finished the run").count(),
        2,
        "{out}"
    );
    assert_eq!(status(1).await, "succeeded");
    assert_eq!(status(2).await, "succeeded");
    assert!(dir.path().join("site/domain_summaries/index.html").exists());

    // Run 3's publisher died mid-publish: its lease (2 s here) is left to lapse, then the
    // step is taken over. Until then no worker touches the run.
    enqueue(true);
    let out = cmd(dir.path(), &db, &server, &["worker"])
        .env("SHOPSCRIBE_PUBLISH_URL", "/dev/null/site")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    sqlx::query(
        "UPDATE runs SET publisher = 'a-dead-worker', publisher_until = now() + interval '2 seconds' WHERE id = 3",
    )
    .execute(&pool)
    .await
    .unwrap();
    let early = cmd(dir.path(), &db, &server, &["worker"]).output().unwrap();
    assert!(early.status.success(), "{early:?}");
    assert!(String::from_utf8_lossy(&early.stdout).contains("nothing to do"));
    assert_eq!(status(3).await, "running");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let out = wait_ok(
        spawn(&mut cmd(dir.path(), &db, &server, &["worker"])),
        "worker",
    );
    assert!(out.contains("This worker finished the run"), "{out}");
    assert_eq!(status(3).await, "succeeded");
}
