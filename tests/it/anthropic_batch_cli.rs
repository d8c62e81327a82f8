//! `provider = "anthropic-batch"` end to end through the `shopscribe` binary against the mock of
//! Message Batches: the work goes into batches (custom ids the API accepts, the Messages body as
//! `params`), answers are validated, stored and priced at the batch prices (half by default),
//! errored and expired requests are retried in real time or in a follow-up batch as configured,
//! and a run killed (SIGKILL) while its batches are in flight is resumed by the next run without
//! paying twice.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test fixtures and expectations computed from small counts"
)]

use crate::support;

use sqlx::SqlitePool;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::mock_anthropic::{MockConfig, MockServer};

const DOMAINS: usize = 300;
const MODEL: &str = "claude-haiku-4-5";

/// The example project on Anthropic's model through Message Batches: fast polls, batches of 200
/// requests, a price (batch prices left to their default, half) and `extra_llm` in `[llm]`.
fn project(dir: &Path, extra_llm: &str) {
    shopscribe::demo::write_project(dir, true).unwrap();
    let path = dir.join("shopscribe.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("model = \"gpt-4o-mini\"", &format!("model = \"{MODEL}\""))
        .replace("api_key_env = \"OPENAI_API_KEY\"\n", "")
        .replace(
            "max_in_flight = 16\n",
            &format!(
                "max_in_flight = 16\nbatch_poll_seconds = 0.05\nbatch_poll_max_seconds = 0.2\n\
                 batch_max_requests = 200\n{extra_llm}\n"
            ),
        )
        + &format!("\n[llm.prices.\"{MODEL}\"]\ninput = 1.0\noutput = 5.0\n");
    std::fs::write(path, text).unwrap();
}

async fn store(dir: &Path) -> (String, SqlitePool) {
    let url = format!("sqlite://{}", dir.join("shopscribe.db").display());
    let s = shopscribe::store::sqlite::SqliteStore::open(&url)
        .await
        .unwrap();
    let rows = shopscribe::demo::sample_rows(DOMAINS, 13);
    shopscribe::demo::load_rows(s.pool(), &rows).await.unwrap();
    (url.clone(), SqlitePool::connect(&url).await.unwrap())
}

fn shopscribe(
    dir: &Path,
    url: &str,
    server: &MockServer,
    provider: &str,
    args: &[&str],
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shopscribe"));
    c.args(args)
        .arg("--project")
        .arg(dir)
        .env("SHOPSCRIBE_STORE_URL", url)
        .env("SHOPSCRIBE_LLM_PROVIDER", provider)
        .env("SHOPSCRIBE_LLM_BASE_URL", &server.base_url)
        .env("ANTHROPIC_API_KEY", "test-anthropic-key")
        .env_remove("OPENAI_API_KEY")
        .env("RUST_LOG", "shopscribe=info")
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

fn run_ok(dir: &Path, url: &str, server: &MockServer, args: &[&str]) -> String {
    let out = shopscribe(dir, url, server, "anthropic-batch", args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

crate::sqlite_row! {
    #[derive(Debug)]
    struct Gen {
        entity_key: String,
        input_hash: String,
        status: String,
        provider: String,
        model: String,
        tokens_in: i64,
        tokens_out: i64,
        cost_usd: f64,
        error: Option<String>,
    }
}

async fn generations(pool: &SqlitePool) -> Vec<Gen> {
    sqlx::query_as(
        "SELECT entity_key, input_hash, status, provider, model, tokens_in, tokens_out, cost_usd, \
         error FROM generations ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn good_per_entity(gens: &[Gen]) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for g in gens.iter().filter(|g| g.status == "ok") {
        *m.entry(g.entity_key.as_str()).or_default() += 1;
    }
    m
}

/// The entity of every custom id the store recorded.
async fn keys_by_custom_id(pool: &SqlitePool) -> HashMap<String, String> {
    sqlx::query_as::<_, (String, String)>("SELECT custom_id, entity_key FROM batch_items")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 + 1e-9 * b.abs()
}

/// 300 entities: two batches (200 + 100) of the Messages body, every answer validated and
/// stored once, priced at half the table's prices; the errored requests retried in real time at
/// real-time prices; the run recorded as `anthropic-batch`; a second run sends nothing, and
/// real time has nothing to do either (the same input hash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_batch_run_is_validated_stored_and_priced_at_batch_prices() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), "");
    let (url, pool) = store(dir.path()).await;
    let server = MockServer::start(MockConfig {
        batch_fail_every: Some(50),
        ..Default::default()
    })
    .await;
    let said = run_ok(dir.path(), &url, &server, &["run", "domain_summaries"]);

    let batches = server.batches();
    assert_eq!(
        batches
            .iter()
            .map(|b| b.custom_ids.len())
            .collect::<Vec<_>>(),
        vec![200, 100],
        "{said}"
    );
    assert!(
        batches
            .iter()
            .all(|b| b.status == "ended" && b.downloads == 1)
    );
    assert!(batches.iter().flat_map(|b| &b.models).all(|m| m == MODEL));
    // Every 50th request of each batch errored: 4 + 2 real-time retries, no more.
    let seen = server.seen();
    assert_eq!(seen.len(), 6, "{said}");
    assert!(seen.iter().all(|s| s.status == 200));

    let gens = generations(&pool).await;
    let good = good_per_entity(&gens);
    assert_eq!(good.len(), DOMAINS);
    assert!(good.values().all(|&n| n == 1), "one good text per entity");
    let (batch, realtime): (Vec<&Gen>, Vec<&Gen>) =
        gens.iter().partition(|g| g.provider == "anthropic-batch");
    assert_eq!(batch.len(), DOMAINS, "one batch answer per request");
    assert!(gens.iter().all(|g| g.model == MODEL));
    let failed: Vec<&&Gen> = batch.iter().filter(|g| g.status != "ok").collect();
    assert_eq!(failed.len(), 6);
    assert!(
        failed
            .iter()
            .all(|g| g.status == "failed" && g.error.as_deref().unwrap().contains("api_error"))
    );
    assert_eq!(realtime.len(), 6);
    assert!(
        realtime
            .iter()
            .all(|g| g.provider == "anthropic" && g.status == "ok")
    );
    let retried: HashSet<&str> = failed.iter().map(|g| g.entity_key.as_str()).collect();
    assert_eq!(
        retried,
        realtime.iter().map(|g| g.entity_key.as_str()).collect(),
        "exactly the errored requests were retried"
    );
    let price = |g: &Gen, i: f64, o: f64| (g.tokens_in as f64 * i + g.tokens_out as f64 * o) / 1e6;
    for g in batch.iter().filter(|g| g.status == "ok") {
        assert!(g.tokens_in > 0 && g.tokens_out > 0);
        assert!(close(g.cost_usd, price(g, 0.5, 2.5)), "{g:?}");
    }
    for g in &realtime {
        assert!(close(g.cost_usd, price(g, 1.0, 5.0)), "{g:?}");
    }
    let (provider, status, generated): (String, String, i64) =
        sqlx::query_as("SELECT provider, status, generated FROM runs ORDER BY id DESC")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (provider.as_str(), status.as_str(), generated),
        ("anthropic-batch", "succeeded", DOMAINS as i64)
    );
    // The custom ids are the API's pattern and map back to the entities they were made for.
    let by_id = keys_by_custom_id(&pool).await;
    for cid in batches.iter().flat_map(|b| &b.custom_ids) {
        let key = &by_id[cid];
        let g = gens.iter().find(|g| &g.entity_key == key).unwrap();
        assert_eq!(
            *cid,
            shopscribe::llm::batch::anthropic::custom_id(&g.input_hash, key)
        );
    }

    run_ok(dir.path(), &url, &server, &["run", "domain_summaries"]);
    assert_eq!(server.batches().len(), 2, "nothing changed, no batch");
    assert_eq!(server.seen().len(), 6);
    let plan = shopscribe(
        dir.path(),
        &url,
        &server,
        "anthropic",
        &["plan", "domain_summaries"],
    )
    .output()
    .unwrap();
    let plan_text = text(&plan);
    assert!(plan.status.success(), "{plan_text}");
    assert!(
        plan_text.contains(&format!("unchanged  {DOMAINS:>8}")),
        "{plan_text}"
    );
}

/// Expired and errored requests of ended batches go into one follow-up batch
/// (`batch_retry = "batch"`): it holds exactly them, and nothing is called in real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_errored_requests_go_into_a_follow_up_batch() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), "batch_retry = \"batch\"");
    let (url, pool) = store(dir.path()).await;
    let server = MockServer::start(MockConfig {
        batch_expire_every: Some(50),
        batch_fail_every: Some(70),
        ..Default::default()
    })
    .await;
    let said = run_ok(dir.path(), &url, &server, &["run", "domain_summaries"]);
    let batches = server.batches();
    assert_eq!(batches.len(), 3, "two batches and one follow-up: {said}");
    let (first, follow_up) = batches.split_at(2);
    let retried: HashSet<&str> = first
        .iter()
        .flat_map(|b| b.expired.iter().chain(&b.errored).map(String::as_str))
        .collect();
    // Of 200: expired 51, 101, 151; errored 70, 140. Of 100: expired 51; errored 70.
    assert_eq!(retried.len(), 7, "{batches:?}");
    assert_eq!(
        follow_up[0]
            .custom_ids
            .iter()
            .map(String::as_str)
            .collect::<HashSet<_>>(),
        retried
    );
    assert!(server.seen().is_empty(), "no real-time call");
    let gens = generations(&pool).await;
    let good = good_per_entity(&gens);
    assert_eq!(good.len(), DOMAINS);
    assert!(good.values().all(|&n| n == 1));
    assert!(gens.iter().all(|g| g.provider == "anthropic-batch"));
    assert_eq!(
        gens.len(),
        DOMAINS + 7,
        "the 7 recorded failed, then answered"
    );
    let expired_errors = gens
        .iter()
        .filter(|g| g.error.as_deref().is_some_and(|e| e.contains("expired")))
        .count();
    assert_eq!(expired_errors, 4);
}

/// `kill -9` while the run's batches are in flight: the next run collects the open batches
/// instead of submitting their requests again; every entity ends with exactly one good text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_while_its_batches_are_in_flight_is_resumed_without_paying_twice() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), "");
    let (url, pool) = store(dir.path()).await;
    let server = MockServer::start(MockConfig {
        batch_delay: Duration::from_secs(4),
        ..Default::default()
    })
    .await;
    let mut first = shopscribe(
        dir.path(),
        &url,
        &server,
        "anthropic-batch",
        &["run", "domain_summaries"],
    )
    .spawn()
    .unwrap();
    let t = Instant::now();
    let submitted = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM batches WHERE status = 'submitted'")
            .fetch_one(&pool)
            .await
            .unwrap_or(0)
    };
    while server.batches().is_empty() || submitted().await == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no batch was created"
        );
        assert!(first.try_wait().unwrap().is_none(), "the run ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    let _ = first.wait();
    let before = server.batches();
    assert!(before.iter().all(|b| b.status != "ended"), "{before:?}");
    assert_eq!(generations(&pool).await.len(), 0, "nothing collected yet");

    let said = run_ok(dir.path(), &url, &server, &["run", "domain_summaries"]);
    assert!(said.contains("resuming an open batch"), "{said}");
    let after = server.batches();
    for b in &before {
        let now = after.iter().find(|a| a.id == b.id).unwrap();
        assert_eq!((now.status.as_str(), now.downloads), ("ended", 1));
    }
    let mut ids = HashSet::new();
    for b in &after {
        for cid in &b.custom_ids {
            assert!(ids.insert(cid.clone()), "{cid} was submitted twice");
        }
    }
    assert_eq!(ids.len(), DOMAINS);
    assert!(server.seen().is_empty());
    let gens = generations(&pool).await;
    assert_eq!(
        gens.len(),
        DOMAINS,
        "one generation per entity, no duplicate"
    );
    assert!(good_per_entity(&gens).values().all(|&n| n == 1));
    // Every batch the provider created is collected. A row the kill left before its batch was
    // created is closed as never created (its entities went into this run's batches, once: the
    // server saw every custom id once, above).
    let left: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, error FROM batches WHERE status <> 'collected'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        left.iter()
            .all(|(s, e)| s == "failed" && e.as_deref() == Some("never created")),
        "{left:?}"
    );
    let created: i64 =
        sqlx::query_scalar("SELECT count(*) FROM batches WHERE batch_id IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        created as usize,
        after.len(),
        "one row per batch the provider has"
    );
}
