//! PostgreSQL benchmarks (issue 4) against the server at DATABASE_URL (default local), each in a
//! fresh database that is dropped afterwards.
//!
//!   cargo run --release --features bench --bin bench_pg -- enqueue [N]          # N planned tasks by COPY (default 1,000,000)
//!   cargo run --release --features bench --bin bench_pg -- claims [N] [W] [B]   # N tasks, W workers claiming B at a time, completing
//!   cargo run --release --features bench --bin bench_pg -- workers [N] [W]      # full worker loops (offline writer = 0 ms LLM)
//!   cargo run --release --features bench --bin bench_pg -- stream [N]           # the source stage streaming N rows; peak memory
//!
//! With RUST_LOG (e.g. `RUST_LOG=shopscribe=info`) the product's log events print its step timings.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "a benchmark: counts and durations turned into rates and sizes for printing"
)]

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use shopscribe::queue::Queue;
use sqlx::Connection;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

struct Db {
    url: String,
    name: String,
}

impl Db {
    async fn new() -> Db {
        let name = format!("shopscribe_bench_{}", std::process::id());
        let mut c = sqlx::PgConnection::connect(&admin_url())
            .await
            .expect("PostgreSQL at DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .unwrap();
        let mut u = url::Url::parse(&admin_url()).unwrap();
        u.set_path(&name);
        Db {
            url: u.to_string(),
            name,
        }
    }
    async fn drop(self) {
        let mut c = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut c)
        .await
        .unwrap();
    }
}

fn tasks(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("shop-{i:07}.example.com"),
                format!("{:032x}", (i as u128) * 0x9E37_79B9_7F4A_7C15),
            )
        })
        .collect()
}

async fn enqueue(n: usize) {
    let db = Db::new().await;
    let store = shopscribe::store::open(&db.url).await.unwrap();
    let q = Queue::connect(&db.url, Duration::from_secs(60))
        .await
        .unwrap();
    let run = store.create_run("bench", "offline", "m").await.unwrap();
    let t = tasks(n);
    let start = Instant::now();
    let inserted = q.enqueue(run, &t).await.unwrap();
    let took = start.elapsed().as_secs_f64();
    println!(
        "enqueue: {inserted} tasks in {took:.2} s ({:.0} tasks/s; target ≤ 10 s for 1,000,000)",
        inserted as f64 / took
    );
    db.drop().await;
}

async fn claims(n: usize, workers: usize, batch: i64) {
    let db = Db::new().await;
    let store = shopscribe::store::open(&db.url).await.unwrap();
    let q = Queue::connect(&db.url, Duration::from_secs(60))
        .await
        .unwrap();
    let run = store.create_run("bench", "offline", "m").await.unwrap();
    q.enqueue(run, &tasks(n)).await.unwrap();
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let q = Queue::connect(&db.url, Duration::from_secs(60))
            .await
            .unwrap();
        handles.push(tokio::spawn(async move {
            let me = format!("w{w}");
            let mut done = 0u64;
            loop {
                let got = q.claim(run, &me, batch).await.unwrap();
                if got.is_empty() {
                    break;
                }
                let seqs: Vec<i64> = got.iter().map(|t| t.seq).collect();
                done += q
                    .complete(run, &me, &seqs, shopscribe::store::TaskState::Done)
                    .await
                    .unwrap();
            }
            done
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "claims: {total} tasks claimed and completed by {workers} workers ({batch} per claim) in {took:.2} s = {:.0} tasks/s (target ≥ 2,000/s)",
        total as f64 / took
    );
    db.drop().await;
}

async fn workers(n: usize, workers: usize) {
    let db = Db::new().await;
    let dir = tempfile::tempdir().unwrap();
    shopscribe::demo::write_project(dir.path(), true).unwrap();
    let url = db.url.clone();
    let mut project = shopscribe::config::load_with_env(dir.path(), &move |k| match k {
        "SHOPSCRIBE_STORE_URL" => Some(url.clone()),
        "SHOPSCRIBE_LLM_PROVIDER" => Some("offline".into()),
        _ => None,
    })
    .unwrap();
    project.workers.claim_batch = 64;
    project.llm.max_in_flight = 64;
    let store = shopscribe::store::open(&db.url).await.unwrap();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query("CREATE TABLE domain_monthly (domain TEXT NOT NULL, category TEXT, country TEXT NOT NULL, year INTEGER NOT NULL, month INTEGER NOT NULL, visits INTEGER, orders INTEGER, revenue DOUBLE PRECISION, returning_share DOUBLE PRECISION, mobile_share DOUBLE PRECISION)")
        .execute(&pool).await.unwrap();
    let rows = shopscribe::demo::sample_rows(n, 9);
    for chunk in rows.chunks(1000) {
        let mut qb = sqlx::QueryBuilder::new("INSERT INTO domain_monthly ");
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(&r.domain)
                .push_bind(&r.category)
                .push_bind(&r.country)
                .push_bind(r.year)
                .push_bind(r.month)
                .push_bind(r.visits as i32)
                .push_bind(r.orders as i32)
                .push_bind(r.revenue)
                .push_bind(r.returning_share)
                .push_bind(r.mobile_share);
        });
        qb.build().execute(&pool).await.unwrap();
    }
    let q = Queue::connect(&db.url, Duration::from_secs(60))
        .await
        .unwrap();
    let provider = shopscribe::llm::from_config(&project.llm).unwrap();
    let opts = shopscribe::run::RunOptions::default();
    let e = shopscribe::run::worker::enqueue(
        &project,
        "domain_summaries",
        store.as_ref(),
        provider.as_ref(),
        &q,
        &opts,
        true,
    )
    .await
    .unwrap();
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let (project, store, q) = (project.clone(), store.clone(), q.clone());
        let provider = shopscribe::llm::from_config(&project.llm).unwrap();
        let wo = shopscribe::run::worker::WorkerOptions {
            id: format!("w{w}"),
            run: Some(e.run_id),
            job: None,
        };
        handles.push(tokio::spawn(async move {
            shopscribe::run::worker::work(&project, store, provider, &q, &wo)
                .await
                .unwrap()
        }));
    }
    let mut generated = 0;
    for h in handles {
        generated += h.await.unwrap().generated;
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "workers: {generated} of {} tasks through {workers} full worker loops (source, features, prompt, offline writer, validation, PostgreSQL, publish) in {took:.2} s = {:.0} tasks/s",
        e.tasks,
        generated as f64 / took
    );
    drop(store);
    db.drop().await;
}

async fn stream(n: usize) {
    let db = Db::new().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    // One row per entity, already aggregated: the source stage reads it as the job's result.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE entities AS SELECT 'shop-' || lpad(i::text, 7, '0') || '.example.com' AS domain, \
         'category ' || (i % 300) AS category, (ARRAY['US','UK','DE'])[1 + i % 3] AS country, 12 AS months_reported, \
         (i % 9973) * 13 + 100 AS visits, (i % 997) + 1 AS orders, ((i % 7919) * 3.7)::float8 AS revenue, \
         ((i % 50) / 1000.0)::float8 AS conversion_rate, (20 + i % 300)::float8 AS average_order_value, \
         ((i % 40) / 10.0)::float8 AS revenue_per_visit, ((i % 200) / 100.0 - 1)::float8 AS revenue_growth_yoy, \
         ((i % 180) / 100.0 - 0.9)::float8 AS orders_growth_yoy, ((i % 70) / 100.0)::float8 AS returning_share, \
         ((i % 90) / 100.0)::float8 AS mobile_share FROM generate_series(1, {n}) i"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    shopscribe::demo::write_project(dir.path(), true).unwrap();
    std::fs::write(
        dir.path().join("sql/domain_summaries.sql"),
        "SELECT * FROM entities",
    )
    .unwrap();
    let url = db.url.clone();
    let project = shopscribe::config::load_with_env(dir.path(), &move |k| {
        (k == "SHOPSCRIBE_SOURCE_URL").then(|| url.clone())
    })
    .unwrap();
    // The demo's data checks read its monthly rows (`domain_monthly`); this source is already
    // one aggregated row per entity and has none, so its copy of the job has no checks: the
    // figure is the stream into entities and the features, as it was before checks existed.
    let mut job = project.job("domain_summaries").unwrap().clone();
    job.checks.clear();
    let job = &job;
    let before = peak_rss_mb();
    let start = Instant::now();
    let entities = shopscribe::run::load_entities(&project, job).await.unwrap();
    let took = start.elapsed().as_secs_f64();
    let after_source = peak_rss_mb();
    let start_f = Instant::now();
    let features = shopscribe::features::compute(
        &entities.input,
        &shopscribe::plan::feature_specs(job),
        Default::default(),
    );
    println!(
        "stream: {} rows from PostgreSQL into entities in {took:.2} s ({:.0} rows/s); features {:.2} s; peak RSS {:.0} MB after the source, {:.0} MB after features (before: {before:.0} MB; target ≤ 600 MB)",
        entities.len(),
        entities.len() as f64 / took,
        start_f.elapsed().as_secs_f64(),
        after_source,
        peak_rss_mb()
    );
    drop((features, entities, pool));
    db.drop().await;
}

#[tokio::main]
async fn main() {
    // Step timings of the product's own log events under RUST_LOG (none by default).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    match args.get(1).map(String::as_str).unwrap_or("all") {
        "enqueue" => enqueue(num(2, 1_000_000)).await,
        "claims" => claims(num(2, 100_000), num(3, 4), num(4, 16) as i64).await,
        "workers" => workers(num(2, 5_000), num(3, 4)).await,
        "stream" => stream(num(2, 1_000_000)).await,
        _ => {
            enqueue(1_000_000).await;
            claims(100_000, 4, 16).await;
            workers(5_000, 4).await;
            stream(1_000_000).await;
        }
    }
    let _ = Arc::new(());
}
