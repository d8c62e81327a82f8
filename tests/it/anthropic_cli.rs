//! `provider = "anthropic"` end to end through the `shopscribe` binary against the in-process mock
//! of the Messages API: the key from `ANTHROPIC_API_KEY`, the base URL from
//! `SHOPSCRIBE_LLM_BASE_URL`, every answer the forced tool's input validated and stored once,
//! priced from the project's table, faults (500, 529 overloaded, 429 with `retry-after`, schema
//! violations, answers cut at `max_tokens`) retried, a rejected key stopping the run unprinted;
//! and the limiter learning Anthropic's buckets from its headers.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test fixtures and expectations computed from small counts"
)]

use crate::support;

use shopscribe::llm::Provider;
use shopscribe::llm::anthropic::AnthropicProvider;
use sqlx::SqlitePool;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::mock_anthropic::{Fault, MockConfig, MockServer};

const MODEL: &str = "claude-haiku-4-5";

/// The example project on Anthropic's model, priced in the project's table.
fn project(dir: &Path) {
    shopscribe::demo::write_project(dir, true).unwrap();
    let path = dir.join("shopscribe.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("model = \"gpt-4o-mini\"", &format!("model = \"{MODEL}\""))
        .replace("api_key_env = \"OPENAI_API_KEY\"\n", "")
        + &format!("\n[llm.prices.\"{MODEL}\"]\ninput = 1.0\noutput = 5.0\n");
    std::fs::write(path, text).unwrap();
}

async fn store(dir: &Path, domains: usize) -> (String, SqlitePool) {
    let url = format!("sqlite://{}", dir.join("shopscribe.db").display());
    let s = shopscribe::store::sqlite::SqliteStore::open(&url)
        .await
        .unwrap();
    let rows = shopscribe::demo::sample_rows(domains, 17);
    shopscribe::demo::load_rows(s.pool(), &rows).await.unwrap();
    (url.clone(), SqlitePool::connect(&url).await.unwrap())
}

fn shopscribe(dir: &Path, url: &str, server: &MockServer, key: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shopscribe"));
    c.args(args)
        .arg("--project")
        .arg(dir)
        .env("SHOPSCRIBE_STORE_URL", url)
        .env("SHOPSCRIBE_LLM_PROVIDER", "anthropic")
        .env("SHOPSCRIBE_LLM_BASE_URL", &server.base_url)
        .env("ANTHROPIC_API_KEY", key)
        .env_remove("OPENAI_API_KEY")
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

crate::sqlite_row! {
    #[derive(Debug)]
    struct Gen {
        entity_key: String,
        status: String,
        provider: String,
        model: String,
        tokens_in: i64,
        tokens_out: i64,
        cost_usd: f64,
        attempts: i64,
    }
}

/// 80 entities with a tenth of the requests faulted in every way the API fails: every entity
/// ends with exactly one valid text from the tool call, recorded as `anthropic` with the model,
/// its real usage and the table's price; the mock saw the system prompt, `max_tokens` and the
/// forced tool with the job's schema; a second run sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_run_through_the_binary_survives_faults_and_prices_every_answer() {
    const DOMAINS: usize = 80;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let (url, pool) = store(dir.path(), DOMAINS).await;
    let server = MockServer::start(MockConfig {
        latency: Duration::from_millis(20),
        random_faults: vec![
            (Fault::Status500, 0.03),
            (Fault::Overloaded, 0.03),
            (Fault::SchemaViolation, 0.02),
            (Fault::Truncated, 0.02),
        ],
        ..Default::default()
    })
    .await;
    server.script([Fault::RateLimit { retry_after_s: 1 }]);
    let key = "test-anthropic-key";
    let out = shopscribe(dir.path(), &url, &server, key, &["run", "domain_summaries"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let seen = server.seen();
    for status in [429, 500, 529] {
        assert!(seen.iter().any(|s| s.status == status), "no {status} drawn");
    }
    assert!(seen.iter().any(|s| s.fault == Some(Fault::SchemaViolation)));
    assert!(seen.iter().any(|s| s.fault == Some(Fault::Truncated)));
    let body = &seen[0].body;
    assert_eq!(body["model"], MODEL);
    assert!(body["system"].as_str().unwrap().len() > 20);
    assert_eq!(body["max_tokens"], 1200);
    assert_eq!(body["tool_choice"]["type"], "tool");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("schemas/domain_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        body["tools"][0]["input_schema"]["properties"],
        schema["properties"]
    );
    let dups = server.successes_per_input();
    assert_eq!(dups.len(), DOMAINS);
    assert!(dups.values().all(|&n| n == 1), "one paid success each");

    let gens: Vec<Gen> = sqlx::query_as(
        "SELECT entity_key, status, provider, model, tokens_in, tokens_out, cost_usd, attempts \
         FROM generations ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let ok: Vec<&Gen> = gens.iter().filter(|g| g.status == "ok").collect();
    assert_eq!(ok.len(), DOMAINS, "{gens:?}");
    let keys: std::collections::HashSet<&str> = ok.iter().map(|g| g.entity_key.as_str()).collect();
    assert_eq!(keys.len(), DOMAINS);
    for g in &ok {
        assert_eq!(
            (g.provider.as_str(), g.model.as_str()),
            ("anthropic", MODEL)
        );
        assert!(g.tokens_in > 0 && g.tokens_out > 0, "{g:?}");
        let price = (g.tokens_in as f64 * 1.0 + g.tokens_out as f64 * 5.0) / 1e6;
        assert!((g.cost_usd - price).abs() < 1e-9, "{g:?}");
    }
    assert!(ok.iter().any(|g| g.attempts > 1), "faults were retried");
    let text_of_page = std::fs::read_dir(dir.path().join("site/domain_summaries"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("html".as_ref()))
        .count();
    assert!(text_of_page > DOMAINS, "pages and index published");

    let requests = seen.len();
    let again = shopscribe(dir.path(), &url, &server, key, &["run", "domain_summaries"])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        server.seen().len(),
        requests,
        "nothing changed, nothing sent"
    );
}

/// A rejected key stops the run at once, leaves the entities pending and never prints the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_anthropic_key_stops_the_run_without_printing_it() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let (url, pool) = store(dir.path(), 40).await;
    let server = MockServer::start(MockConfig::default()).await;
    let key = "sk-ant-wrong-secret-key";
    let out = shopscribe(dir.path(), &url, &server, key, &["run", "domain_summaries"])
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("API key was rejected"), "{said}");
    assert!(!said.contains(key), "{said}");
    assert!(
        server.seen().len() <= 16,
        "stopped within one round of requests"
    );
    let ok: i64 = sqlx::query_scalar("SELECT count(*) FROM generations WHERE status = 'ok'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(ok, 0);

    // And without any key the run refuses before sending anything.
    let before = server.seen().len();
    let out = shopscribe(dir.path(), &url, &server, "", &["run", "domain_summaries"])
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("ANTHROPIC_API_KEY"), "{said}");
    assert_eq!(server.seen().len(), before);
}

/// Anthropic's buckets are learned from `anthropic-ratelimit-*`: a server allowing 40,000 output
/// tokens a minute enforced per second (~667 held) with answers of at most 200 tokens admits
/// about 3.3 requests a second; the client, configured with generous requests and input tokens
/// and no output limit at all, learns the output bucket from the first answers and keeps to it:
/// 30 requests take the ≥ 8 s the output bucket implies, with few 429s (only before the first
/// answer came back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_token_bucket_is_learned_from_anthropic_headers() {
    let server = MockServer::start(MockConfig {
        output_tokens_per_minute: Some(40_000.0),
        requests_per_minute: Some(6_000.0),
        burst: Duration::from_secs(1),
        latency: Duration::from_millis(50),
        ..Default::default()
    })
    .await;
    let provider = Arc::new(
        AnthropicProvider::new(shopscribe::llm::anthropic::AnthropicConfig {
            base_url: server.base_url.clone(),
            api_key: "test-anthropic-key".into(),
            model: MODEL.into(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            limits: shopscribe::llm::limiter::LimiterConfig {
                requests_per_minute: 600.0,
                tokens_per_minute: 1e9,
                max_in_flight: 16,
            },
        })
        .unwrap(),
    );
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let p = provider.clone();
        tasks.push(tokio::spawn(async move {
            let req = shopscribe::llm::ChatRequest {
                entity_key: format!("e{i}"),
                system: "Answer in JSON.".into(),
                user: format!("Domain: shop{i}.example"),
                schema: Arc::new(serde_json::json!({"type": "object"})),
                max_output_tokens: 200,
                temperature: 0.2,
                context: Arc::new(serde_json::Value::Null),
                variation: 0,
            };
            for _ in 0..20 {
                match p.complete(&req).await {
                    Ok(r) => return r,
                    Err(e) => assert_eq!(e.kind(), "rate_limited", "{e}"),
                }
            }
            panic!("never answered");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let took = t.elapsed();
    let n429 = server.count(429);
    assert!(n429 <= 6, "{n429} × 429");
    assert_eq!(server.count(200), 30);
    // 30 × 200 tokens, 667 held at the start, 667 per second: ≥ 8 s.
    assert!(took >= Duration::from_secs(8), "took {took:?}");
    assert!(took < Duration::from_secs(14), "took {took:?}");
    assert!(provider.limiter().pauses() <= 2);
}
