//! Benchmark of the LLM engine against the in-process mock server (tests/it/support/mock_openai.rs).
//!
//!   cargo run --release --features bench --bin bench_llm -- [SCENARIO|all] [ENTITIES]
//!
//! Every limited scenario runs ENTITIES (default per scenario) entities through the whole
//! pipeline against a mock at 800 ms latency with 5 % HTTP 500s, the client at 256 in flight:
//! - limit:      per-second buckets, 6,000 RPM / 2M TPM; client configured at the same limits.
//! - adapt:      the same with the client configured 20 % above the server's true limit.
//! - adapt600:   per-second buckets at 600 RPM, client configured at 720 RPM (60 s of work).
//! - burst:      60 s buckets (a minute of quota, as OpenAI's), 600 RPM, 600 entities.
//! - burst-over: 60 s buckets, 600 RPM, client configured at 720 RPM, 1,500 entities.
//! - burst-warm: `burst` run twice on one store, a minute apart (the server's bucket full again);
//!   the second run (`--force`, every entity again) is measured: it starts from the bucket the
//!   first one learned, as a project's later runs do.
//! - client:     mock at 0 ms latency and no limits; requests/s the client alone sustains.
//!
//! Each figure is printed beside the minimum the limit allows (the server's bucket, its refill
//! and the connections in flight, simulated request by request) and the ratio.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "a benchmark: counts and durations turned into rates and sizes for printing"
)]

#[path = "../../tests/it/support/mock_openai.rs"]
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

/// A summary of 80–140 words drawn from a 3,000-word vocabulary, seeded by the shop's name: as
/// unlike its neighbours as real pages are, so the near-duplicate gate and the site check do the
/// work they do on a real site (identical canned texts would make every pair a candidate).
fn responder(body: &Value) -> String {
    let user = body["messages"][1]["content"].as_str().unwrap_or("");
    let name = user
        .lines()
        .next()
        .and_then(|l| l.split_once(": "))
        .map_or("?", |(_, n)| n);
    let mut x = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = 80 + (next() % 61) as usize;
    let mut text = format!("{name} is compared with similar shops.");
    for i in 0..words {
        text.push(if i % 12 == 11 { '.' } else { ' ' });
        if i % 12 == 11 {
            text.push(' ');
        }
        // A word of letters only (the privacy guard reads digits as figures).
        let mut n = next() % 3000;
        text.push('w');
        for _ in 0..3 {
            text.push((b'a' + (n % 26) as u8) as char);
            n /= 26;
        }
    }
    text.push('.');
    json!({"summary": text}).to_string()
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
    (dir, p, sqlite.into_store())
}

/// One limited scenario: the mock's limits and bucket, the client's configuration.
struct Scenario {
    name: &'static str,
    what: &'static str,
    entities: usize,
    server_rpm: f64,
    server_tpm: f64,
    /// How much quota the mock's buckets hold, in time of their refill.
    burst: Duration,
    /// The client's configured limits over the server's.
    client_factor: f64,
    /// Measure a second run that starts from what a first one learned.
    warm: bool,
}

const LATENCY: Duration = Duration::from_millis(800);
const IN_FLIGHT: usize = 256;

fn scenarios() -> Vec<Scenario> {
    let minute = Duration::from_secs(60);
    let second = Duration::from_secs(1);
    vec![
        Scenario {
            name: "limit",
            what: "per-second buckets (6,000 RPM = 100/s, 1 s of burst), client at the limit",
            entities: 6000,
            server_rpm: 6000.0,
            server_tpm: 2_000_000.0,
            burst: second,
            client_factor: 1.0,
            warm: false,
        },
        Scenario {
            name: "adapt",
            what: "per-second buckets (6,000 RPM), client configured 20 % above",
            entities: 6000,
            server_rpm: 6000.0,
            server_tpm: 2_000_000.0,
            burst: second,
            client_factor: 1.2,
            warm: false,
        },
        Scenario {
            name: "adapt600",
            what: "per-second buckets (600 RPM = 10/s), client configured at 720 RPM (+20 %)",
            entities: 600,
            server_rpm: 600.0,
            server_tpm: 2_000_000.0,
            burst: second,
            client_factor: 1.2,
            warm: false,
        },
        Scenario {
            name: "burst",
            what: "60 s buckets (600 RPM, a minute of quota held), client at the limit",
            entities: 600,
            server_rpm: 600.0,
            server_tpm: 2_000_000.0,
            burst: minute,
            client_factor: 1.0,
            warm: false,
        },
        Scenario {
            name: "burst-warm",
            what: "60 s buckets (600 RPM), client at the limit, the project's second run (bucket remembered)",
            entities: 600,
            server_rpm: 600.0,
            server_tpm: 2_000_000.0,
            burst: minute,
            client_factor: 1.0,
            warm: true,
        },
        Scenario {
            name: "burst-over",
            what: "60 s buckets (600 RPM), client configured at 720 RPM (+20 %)",
            entities: 1500,
            server_rpm: 600.0,
            server_tpm: 2_000_000.0,
            burst: minute,
            client_factor: 1.2,
            warm: false,
        },
    ]
}

/// The least time `requests` independent requests can take: each starts when the server's
/// bucket (`capacity`, refilled at `rate` per second, full at the start) holds one and one of
/// `in_flight` connections is free, and takes `latency`.
fn minimum_seconds(
    requests: usize,
    capacity: f64,
    rate: f64,
    in_flight: usize,
    latency: f64,
) -> f64 {
    let mut starts: Vec<f64> = Vec::with_capacity(requests);
    for i in 0..requests {
        let bucket = ((i as f64 + 1.0 - capacity) / rate).max(0.0);
        let slot = if i >= in_flight {
            starts[i - in_flight] + latency
        } else {
            0.0
        };
        starts.push(bucket.max(slot));
    }
    starts.last().map_or(0.0, |s| s + latency)
}

async fn limited(sc: &Scenario, entities: usize) {
    let (rpm, tpm) = (sc.server_rpm, sc.server_tpm);
    let server = MockServer::start(MockConfig {
        latency: LATENCY,
        requests_per_minute: Some(rpm),
        tokens_per_minute: Some(tpm),
        burst: sc.burst,
        random_faults: vec![(Fault::Status500, 0.05)],
        responder: Arc::new(responder),
        ..Default::default()
    })
    .await;
    let (_dir, mut p, store) = project(entities, &server.base_url).await;
    p.llm.requests_per_minute = rpm * sc.client_factor;
    p.llm.tokens_per_minute = tpm * sc.client_factor;
    p.llm.max_in_flight = IN_FLIGHT;
    let mut provider =
        Arc::new(OpenAiProvider::new(openai_config(&p.llm, "test-key".into())).unwrap());
    let mut opts = RunOptions::default();
    if sc.warm {
        let t = Instant::now();
        run_job(&p, "bench", store.clone(), provider.clone(), &opts)
            .await
            .unwrap();
        println!(
            "  (first run {:.1} s; waiting 61 s for the server's bucket to fill again)",
            t.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(61)).await;
        server.forget_seen();
        // A new process: a fresh provider, what was learned only in the store.
        provider = Arc::new(OpenAiProvider::new(openai_config(&p.llm, "test-key".into())).unwrap());
        opts.force = true;
    }
    let t = Instant::now();
    let s = run_job(&p, "bench", store.clone(), provider.clone(), &opts)
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
    let first_to_last = match (seen.first(), seen.last()) {
        (Some(a), Some(b)) => b.at.duration_since(a.at).as_secs_f64(),
        _ => 0.0,
    };
    let (rate, capacity) = (rpm / 60.0, rpm / 60.0 * sc.burst.as_secs_f64());
    let lat = LATENCY.as_secs_f64();
    let min_entities = minimum_seconds(entities, capacity, rate, IN_FLIGHT, lat);
    let accepted = total - n429;
    let min_requests = minimum_seconds(accepted, capacity, rate, IN_FLIGHT, lat);
    println!("{} — {}: {entities} entities", sc.name, sc.what);
    println!(
        "  {took:.1} s end to end | minimum the limit allows (bucket of {capacity:.0} refilled at {rate:.0}/s, \
         {IN_FLIGHT} in flight, {:.0} ms each): {min_entities:.1} s for the entities (ratio {:.2}), \
         {min_requests:.1} s for the {accepted} requests the server accepted (ratio {:.2})",
        lat * 1000.0,
        took / min_entities,
        took / min_requests
    );
    println!(
        "  requests {total} (first arrival to last answer {:.1} s: ratio {:.2} to the requests' minimum), \
         HTTP 500 {n500}, HTTP 429 {n429} ({:.2} %), shared pauses {}, client rate at end {:.0}/min, client bucket {:.0}",
        first_to_last + lat,
        (first_to_last + lat) / min_requests,
        100.0 * n429 as f64 / total as f64,
        provider.limiter().pauses(),
        provider.limiter().current_rpm(),
        provider.limiter().request_capacity()
    );
    println!(
        "  generated {}, failed {}, lost {lost}, duplicate successful requests {dups}, busiest 60 s window {} (limit {rpm}), \
         busiest 1 s window {} (limit {rate:.0} + burst)",
        s.figures.generated,
        s.figures.failed,
        server.busiest_window(Duration::from_secs(60)),
        server.busiest_window(Duration::from_secs(1))
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
    let entities: Option<usize> = args.get(2).and_then(|a| a.parse().ok());
    if matches!(which, "client" | "all") {
        client_only(5).await;
    }
    for sc in scenarios() {
        if which == sc.name || which == "all" {
            limited(&sc, entities.unwrap_or(sc.entities)).await;
        }
    }
}
