//! `provider = "anthropic-batch"` end to end through the `shopscribe` binary against the mock of
//! Message Batches: the work goes into batches (custom ids the API accepts, the Messages body as
//! `params`), answers are validated, stored and priced at the batch prices (half by default),
//! errored and expired requests are retried in real time or in a follow-up batch as configured,
//! and a run killed (SIGKILL) while its batches are in flight is resumed by the next run without
//! paying twice. The scenarios are the ones every batch API passes
//! (`tests/support/batch_cli.rs`); this file adds what is Anthropic's.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test fixtures and expectations computed from small counts"
)]

use crate::support;

use sqlx::SqlitePool;
use std::collections::HashMap;
use std::time::Duration;
use support::batch_cli::BatchCase;
use support::mock_anthropic::{MockConfig, MockServer};

const MODEL: &str = "claude-haiku-4-5";

/// The example project on Anthropic's model (its key variable left to the provider's default)
/// through Message Batches.
const ANTHROPIC: BatchCase = BatchCase {
    batch_provider: "anthropic-batch",
    realtime_provider: "anthropic",
    model: MODEL,
    prices: (1.0, 5.0),
    api_key: ("ANTHROPIC_API_KEY", "test-anthropic-key"),
    domains: 300,
    finished: "ended",
    adapt_config: on_anthropic,
};

fn on_anthropic(toml: String) -> String {
    toml.replace("model = \"gpt-4o-mini\"", &format!("model = \"{MODEL}\""))
        .replace("api_key_env = \"OPENAI_API_KEY\"\n", "")
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

/// 300 entities: two batches (200 + 100) of the Messages body, every answer validated and
/// stored once, priced at half the table's prices; the errored requests retried in real time at
/// real-time prices; the run recorded as `anthropic-batch`; a second run sends nothing, and
/// real time has nothing to do either (the same input hash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_batch_run_is_validated_stored_and_priced_at_batch_prices() {
    let s = ANTHROPIC.setup("").await;
    let server = MockServer::start(MockConfig {
        batch_fail_every: Some(50),
        ..Default::default()
    })
    .await;
    // Every 50th request of each batch errored: 4 + 2 real-time retries, no more.
    let (_, gens) = ANTHROPIC
        .run_with_realtime_retries(&s, &server, &[200, 100], 6, "api_error")
        .await;

    let batches = server.batches();
    assert!(batches.iter().flat_map(|b| &b.models).all(|m| m == MODEL));
    assert!(gens.iter().all(|g| g.model == MODEL));
    // The custom ids are the API's pattern and map back to the entities they were made for.
    let by_id = keys_by_custom_id(&s.pool).await;
    for cid in batches.iter().flat_map(|b| &b.custom_ids) {
        let key = &by_id[cid];
        let g = gens.iter().find(|g| &g.entity_key == key).unwrap();
        assert_eq!(
            *cid,
            shopscribe::llm::batch::anthropic::custom_id(&g.input_hash, key)
        );
    }

    ANTHROPIC.nothing_to_do_again(&s, &server);
}

/// Expired and errored requests of ended batches go into one follow-up batch
/// (`batch_retry = "batch"`): it holds exactly them, and nothing is called in real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_errored_requests_go_into_a_follow_up_batch() {
    let s = ANTHROPIC.setup("batch_retry = \"batch\"").await;
    let server = MockServer::start(MockConfig {
        batch_expire_every: Some(50),
        batch_fail_every: Some(70),
        ..Default::default()
    })
    .await;
    let (retried, gens) = ANTHROPIC.run_with_a_follow_up_batch(&s, &server, 2).await;
    // Of 200: expired 51, 101, 151; errored 70, 140. Of 100: expired 51; errored 70.
    assert_eq!(retried.len(), 7, "{:?}", server.batches());
    assert_eq!(
        gens.len(),
        ANTHROPIC.domains + 7,
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
    let s = ANTHROPIC.setup("").await;
    let server = MockServer::start(MockConfig {
        batch_delay: Duration::from_secs(4),
        ..Default::default()
    })
    .await;
    let (_, after) = ANTHROPIC.kill_in_flight_then_resume(&s, &server).await;

    // Every batch the provider created is collected. A row the kill left before its batch was
    // created is closed as never created (its entities went into this run's batches, once: the
    // server saw every custom id once).
    let left: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, error FROM batches WHERE status <> 'collected'")
            .fetch_all(&s.pool)
            .await
            .unwrap();
    assert!(
        left.iter()
            .all(|(s, e)| s == "failed" && e.as_deref() == Some("never created")),
        "{left:?}"
    );
    let created: i64 =
        sqlx::query_scalar("SELECT count(*) FROM batches WHERE batch_id IS NOT NULL")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(
        created as usize,
        after.len(),
        "one row per batch the provider has"
    );
}
