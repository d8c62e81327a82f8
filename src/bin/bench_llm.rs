//! Benchmark of the LLM engine against the in-process mock server (tests/support/mock_openai.rs).
//!
//!   cargo run --release --bin bench_llm -- [limit|adapt|client|all] [ENTITIES]
//!
//! - limit:  the mock enforces 6,000 requests/min and 2,000,000 tokens/min continuously (one
//!   second of burst), 800 ms latency, 5 % HTTP 500s; the client is configured at the
//!   same limits; ENTITIES (default 6,000) entities through the whole pipeline.
//! - adapt:  the same with the client configured 20 % above the server's true limit.
//! - client: mock at 0 ms latency and no limits; requests/s the client alone sustains.
//!
//! Each figure is printed beside the theoretical minimum the limit allows and the ratio.

#[path = "../../tests/support/mock_openai.rs"]
mod mock_openai;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mock_openai::{Fault, MockConfig, MockServer};
use serde_json::{Value, json};
use shopscribe::llm::openai::OpenAiProvider;
use shopscribe::llm::{ChatRequest, Provider, openai_config};
use shopscribe::run::{RunOptions, run_job};
use shopscribe::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOML: &str = r#"
[project]
name = "bench"
[llm]
provider = "openai"
model = "gpt-4o-mini"
max_output_tokens = 200
structured_output = "json_schema"
[publish]
url = "site"
[jobs.bench]
sql = "sql/domain_summaries.sql"
key = "domain"
group = "category"
entity_label = "domain"
system_prompt = "system.j2"
user_prompt = "user.j2"
schema = "schema.json"
[jobs.bench.validate]
name_in = ["summary"]
[[jobs.bench.metrics]]
column = "visits"
[[jobs.bench.metrics]]
column = "revenue"
unit = "currency"
"#;

fn responder(body: &Value) -> String {
    let user = body["messages"][1]["content"].as_str().unwrap_or("");
    let name = user
        .lines()
        .next()
        .and_then(|l| l.split_once(": "))
        .map_or("?", |(_, n)| n);
    json!({"summary": format!("{name} is compared with similar shops.")}).to_string()
}

async fn project(
    entities: usize,
    base_url: &str,
) -> (
    tempfile::TempDir,
    shopscribe::config::Project,
    Arc<dyn Store>,
) {
    let dir = tempfile::tempdir().unwrap();
    shopscribe::demo::write_project(dir.path(), true).unwrap();
    std::fs::write(dir.path().join("shopscribe.toml"), TOML).unwrap();
    std::fs::write(
        dir.path().join("system.j2"),
        "Summarise the shop in one JSON object with a summary.",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("user.j2"),
        "Shop: {{ entity.name }}\n{% for m in metrics %}{{ m.label }}: {{ m.tier_label }}\n{% endfor %}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("schema.json"),
        r#"{"type":"object","additionalProperties":false,"required":["summary"],"properties":{"summary":{"type":"string"}}}"#,
    )
    .unwrap();
    let base = base_url.to_string();
    let p = shopscribe::config::load_with_env(dir.path(), &move |k| {
        (k == "SHOPSCRIBE_LLM_BASE_URL").then(|| base.clone())
    })
    .unwrap();
    let sqlite = shopscribe::store::sqlite::SqliteStore::open(&p.store_url)
        .await
        .unwrap();
    shopscribe::demo::load_rows(sqlite.pool(), &shopscribe::demo::sample_rows(entities, 3))
        .await
        .unwrap();
    (dir, p, Arc::new(sqlite))
}

async fn limited(entities: usize, client_factor: f64) {
    let (rpm, tpm) = (6000.0, 2_000_000.0);
    let server = MockServer::start(MockConfig {
        latency: Duration::from_millis(800),
        requests_per_minute: Some(rpm),
        tokens_per_minute: Some(tpm),
        random_faults: vec![(Fault::Status500, 0.05)],
        responder: Arc::new(responder),
        ..Default::default()
    })
    .await;
    let (_dir, mut p, store) = project(entities, &server.base_url).await;
    p.llm.requests_per_minute = rpm * client_factor;
    p.llm.tokens_per_minute = tpm * client_factor;
    p.llm.max_in_flight = 256;
    let provider = Arc::new(OpenAiProvider::new(openai_config(&p.llm, "test-key".into())).unwrap());
    let t = Instant::now();
    let s = run_job(
        &p,
        "bench",
        store.clone(),
        provider.clone(),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    let took = t.elapsed().as_secs_f64();
    let seen = server.seen();
    let total = seen.len();
    let n429 = server.count(429);
    let n500 = server.count(500);
    let dups = server
        .successes_per_input()
        .values()
        .filter(|&&n| n > 1)
        .count();
    let states = store.entity_states("bench").await.unwrap();
    let lost = entities
        - states
            .values()
            .filter(|s| s.good_input_hash.is_some())
            .count();
    // The limit allows rpm/60 requests per second; every entity needs one successful request.
    let min_entities = entities as f64 / (rpm / 60.0);
    let min_requests = (total - n429) as f64 / (rpm / 60.0);
    println!(
        "{}: {entities} entities in {took:.1} s | theoretical minimum {min_entities:.1} s for the entities (ratio {:.2}), \
         {min_requests:.1} s for the {} requests the server accepted (ratio {:.2})",
        if client_factor > 1.0 {
            "adapt (client at 120 % of the server limit)"
        } else {
            "limit"
        },
        took / min_entities,
        total - n429,
        took / min_requests
    );
    println!(
        "  requests {total}, HTTP 500 {n500}, HTTP 429 {n429} ({:.2} %), shared pauses {}, client rate at end {:.0}/min",
        100.0 * n429 as f64 / total as f64,
        provider.limiter().pauses(),
        provider.limiter().current_rpm()
    );
    println!(
        "  generated {}, failed {}, lost {lost}, duplicate successful requests {dups}, busiest 60 s window {} (limit {rpm})",
        s.figures.generated,
        s.figures.failed,
        server.busiest_window(Duration::from_secs(60))
    );
}

async fn client_only(seconds: u64) {
    let server = MockServer::start(MockConfig {
        responder: Arc::new(responder),
        ..Default::default()
    })
    .await;
    let (_dir, mut p, _store) = project(10, &server.base_url).await;
    p.llm.requests_per_minute = 1e9;
    p.llm.tokens_per_minute = 1e12;
    p.llm.max_in_flight = 64;
    let provider = Arc::new(OpenAiProvider::new(openai_config(&p.llm, "test-key".into())).unwrap());
    let req = ChatRequest {
        entity_key: "x".into(),
        system: "Summarise the shop in one JSON object with a summary.".into(),
        user: "Shop: northwear.com\nvisits: top 10 %\nrevenue: above median".into(),
        schema: Arc::new(json!({"type":"object","properties":{"summary":{"type":"string"}}})),
        max_output_tokens: 200,
        temperature: 0.4,
        context: Arc::new(Value::Null),
        variation: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (provider, req) = (provider.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                provider.complete(&req).await.expect("mock answers");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let rps = total as f64 / t.elapsed().as_secs_f64();
    println!(
        "client: {total} requests in {:.1} s = {rps:.0} requests/s (target ≥ 3,000/s; mock server on the same 2 cores; ratio {:.2})",
        t.elapsed().as_secs_f64(),
        rps / 3000.0
    );
}

#[tokio::main]
async fn main() {
    // Phase timings of the run (RUST_LOG=shopscribe=info shows them).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("all");
    let entities: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(6000);
    if matches!(which, "client" | "all") {
        client_only(5).await;
    }
    if matches!(which, "limit" | "all") {
        limited(entities, 1.0).await;
    }
    if matches!(which, "adapt" | "all") {
        limited(entities, 1.2).await;
    }
}
