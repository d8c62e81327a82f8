//! `provider = "openai-batch"` end to end through the `shopscribe` binary: the work goes through
//! the mock's Files and Batches endpoints, answers are validated, stored and priced at batch
//! prices, failed and expired requests are retried as configured, and a run killed (SIGKILL)
//! while its batches are in flight is resumed by the next run without a second batch. The
//! scenarios are the ones every batch API passes (`tests/support/batch_cli.rs`); this file adds
//! what is OpenAI's.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test fixtures and expectations computed from small counts"
)]

use crate::support;

use std::time::Duration;
use support::batch_cli::{BatchCase, close};
use support::mock_openai::{MockConfig, MockServer};

/// The example project as it is (OpenAI's `gpt-4o-mini`) on OpenAI's Batch API.
const OPENAI: BatchCase = BatchCase {
    batch_provider: "openai-batch",
    realtime_provider: "openai",
    model: "gpt-4o-mini",
    prices: (0.15, 0.60),
    api_key: ("OPENAI_API_KEY", "test-key"),
    domains: 500,
    finished: "completed",
    adapt_config: as_it_is,
};

fn as_it_is(toml: String) -> String {
    toml
}

/// `custom_id` = input hash ":" entity key.
fn key_of(custom_id: &str) -> &str {
    custom_id.split_once(':').unwrap().1
}

/// 500 entities: three batches (200 + 200 + 100), every answer validated and stored once, the
/// batch answers priced at the batch prices (half the real-time ones by default), the failed
/// lines retried in real time (`batch_retry = "realtime"`, the default) at real-time prices; the
/// run recorded as `openai-batch`; a second run sends nothing; switching to real time
/// regenerates nothing (the input hash is the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_run_through_the_cli_is_validated_stored_and_priced_at_batch_prices() {
    let s = OPENAI.setup("").await;
    let server = MockServer::start(MockConfig {
        batch_fail_every: Some(50),
        ..Default::default()
    })
    .await;
    // Every 50th line of each batch answered HTTP 500: 4 + 4 + 2 real-time retries, no more.
    let (said, gens) = OPENAI
        .run_with_realtime_retries(&s, &server, &[200, 200, 100], 10, "HTTP 500")
        .await;

    // The batches' own request counts, as the Batches API reports them.
    assert_eq!(
        server
            .batches()
            .iter()
            .map(|b| b.requests)
            .collect::<Vec<_>>(),
        vec![200, 200, 100],
        "{said}"
    );
    let total: f64 = gens.iter().map(|g| g.cost_usd).sum();
    let cost: f64 = sqlx::query_scalar("SELECT cost_usd FROM runs ORDER BY id DESC")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert!(close(cost, total), "{cost} vs {total}");
    let collected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM batches WHERE status = 'collected'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(collected, 3);
    let pages = std::fs::read_dir(s.dir.path().join("site/domain_summaries"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.ends_with(".html") && name != "index.html"
        })
        .count();
    assert_eq!(pages, OPENAI.domains);

    OPENAI.nothing_to_do_again(&s, &server);
}

/// A batch that expires keeps what it completed: those answers are in its output file, billed,
/// and stored; only the expired requests go into the follow-up batch (`batch_retry = "batch"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_batch_keeps_its_completed_lines_and_resubmits_only_the_missing() {
    let s = OPENAI.setup("batch_retry = \"batch\"").await;
    let server = MockServer::start(MockConfig {
        batch_expire_every: Some(50),
        ..Default::default()
    })
    .await;
    let (expired, gens) = OPENAI.run_with_a_follow_up_batch(&s, &server, 3).await;

    let batches = server.batches();
    let first = &batches[..3];
    assert!(
        first
            .iter()
            .all(|b| b.status == "expired" && b.downloads == 1)
    );
    // Lines 51, 101, 151 of each batch (the third has 100 lines): 3 + 3 + 1.
    assert_eq!(expired.len(), 7);
    let per_entity = |key: &str| gens.iter().filter(|g| g.entity_key == key).count();
    for b in first {
        for cid in &b.custom_ids {
            let key = key_of(cid);
            if expired.contains(cid) {
                // Recorded as failed from the expired batch, then answered by the follow-up.
                assert_eq!(per_entity(key), 2, "{key}");
                let failed = gens.iter().find(|g| g.entity_key == key).unwrap();
                assert_eq!(failed.status, "failed");
                assert!(failed.error.as_deref().unwrap().contains("expired"));
            } else {
                // Completed before the batch expired: stored from its output file, paid, and
                // never requested again.
                assert_eq!(per_entity(key), 1, "{key}");
                let g = gens.iter().find(|g| g.entity_key == key).unwrap();
                assert_eq!(g.status, "ok");
                assert!(g.cost_usd > 0.0);
                assert_eq!(format!("{}:{}", g.input_hash, key), *cid);
            }
        }
    }
    let (status, failed): (String, i64) =
        sqlx::query_as("SELECT status, failed FROM runs ORDER BY id DESC")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), failed), ("succeeded", 0));
}

/// `kill -9` while the run's batches are in flight at the provider: the next run collects the
/// open batches recorded in the store instead of submitting their requests again, submits only
/// what no batch holds, and every entity ends with exactly one good text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_while_its_batches_are_in_flight_is_resumed_by_the_next_run() {
    let s = OPENAI.setup("").await;
    let server = MockServer::start(MockConfig {
        batch_delay: Duration::from_secs(4),
        ..Default::default()
    })
    .await;
    OPENAI.kill_in_flight_then_resume(&s, &server).await;

    let after = server.batches();
    assert_eq!(
        after.iter().map(|b| b.requests).sum::<usize>(),
        OPENAI.domains,
        "{after:?}"
    );
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM batches WHERE status NOT IN ('collected')")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(open, 0, "every batch collected");
}
