//! Ingestion benchmark: N review lines (~600 bytes each, the Amazon reviews shape) into the
//! store, then a second delivery (10 % edited, 10 % new, the rest repeated) through the SCD2
//! merge. Prints lines/s for both and the process's peak memory.
//!
//!   cargo run --release --features bench --bin bench_ingest -- [sqlite|postgres|parse] [N] [shuffled]
//!
//! The products (`asin`, the key's first part) come in order, three reviews each, as in the
//! public review dumps; with `shuffled` they come in random order.
//! `parse` times only the JSON line → candidate step, on one thread.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "a benchmark: counts and durations turned into rates and sizes for printing"
)]

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use shopscribe::config::{Dataset, FieldType};
use shopscribe::ingest::db::IngestDb;
use std::io::Write;
use std::time::Instant;

/// The number on the `name:` line of `/proc/self/<file>` (NaN where there is none).
fn proc_number(file: &str, name: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/self/{file}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

/// Bytes this process has handed to `write` calls so far (files and sockets), in MB: what an
/// ingest costs in writes, the part of its time the profile shows in the kernel.
fn written_mb() -> f64 {
    proc_number("io", "wchar") / 1e6
}

fn peak_rss_mb() -> f64 {
    proc_number("status", "VmHWM") / 1024.0
}

/// Sentences review text is made of: picked by line number, so the text varies like real
/// reviews (different lengths, punctuation, quotes, a few non-ASCII characters) and is
/// deterministic.
const SENTENCES: [&str; 16] = [
    "This product does what it says on the box.",
    "The build quality is solid and nothing rattles, even after a month of daily use.",
    "Shipping was quick and the package arrived well protected.",
    "The price was fair for what you get, although I have seen it cheaper during sales.",
    "My only complaint is the manual: it's short and the diagrams are tiny.",
    "Setup took about ten minutes, including unpacking.",
    "It replaced an older model that lasted six years; so far this one feels sturdier.",
    "The \"quick start\" guide skips a step, so read the full instructions first.",
    "Customer service answered within a day and sent a replacement part for free.",
    "Battery life is closer to 8 hours than the advertised 10, which is still fine.",
    "Colour matches the photos, and the finish doesn't show fingerprints.",
    "I bought a second one as a gift for my parents — they love it.",
    "It is a little louder than I expected, but not a deal-breaker.",
    "Cleaning is easy: everything detachable goes in the dishwasher.",
    "After three weeks the hinge started to squeak; a drop of oil fixed it.",
    "Would recommend to anyone who needs something reliable and simple. Café-approved!",
];

/// Review text of about `target` bytes for line `i`.
fn review_text(i: usize, target: usize) -> String {
    let mut s = String::with_capacity(target + 100);
    let mut k = i.wrapping_mul(2_654_435_761);
    while s.len() < target {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(SENTENCES[k % SENTENCES.len()]);
        k = k / SENTENCES.len() + 7 * i + s.len();
    }
    s
}

/// A delivery of review lines in the Amazon shape. Day 2 has 1.1 n lines: every tenth review
/// edited (newer version), n / 10 new ones, the rest repeated unchanged, and one malformed
/// line in a thousand (rejected and kept in bronze).
fn write_delivery(path: &std::path::Path, n: usize, day: u32, shuffled: bool) {
    // A bijection of the product numbers below 10^9 + 7 (a prime): the same products, in
    // random order.
    let product = |i: usize| {
        if shuffled {
            (i / 3) * 48_271 % 1_000_000_007
        } else {
            i / 3
        }
    };
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let total = if day == 1 { n } else { n + n / 10 };
    for i in 0..total {
        if day == 2 && i % 1000 == 999 {
            writeln!(
                w,
                "{{\"reviewerID\": \"A{i:012}\", \"asin\": \"B{:09}\", \"reviewText\": \"cut off",
                product(i)
            )
            .unwrap();
            continue;
        }
        let edited = day == 2 && i % 10 == 0;
        let mut text = review_text(i, 280 + i % 140);
        if edited {
            text.insert_str(0, "Update after two months: still working. ");
        }
        let line = serde_json::json!({
            "reviewerID": format!("A{:012}", i * 7919 % 10_000_019),
            "asin": format!("B{:09}", product(i)),
            "reviewerName": format!("Reviewer {i}"),
            "helpful": [i % 7, i % 11],
            "reviewText": text,
            "overall": (i % 5 + 1) as f64,
            "summary": format!("{} — {}", ["Great", "Good value", "Okay", "Disappointing", "Works"][i % 5], i % 1000),
            "unixReviewTime": 1_400_000_000 + i as i64 + if edited { 86_400 } else { 0 },
            "reviewTime": "05 21, 2014"
        });
        writeln!(w, "{line}").unwrap();
    }
}

/// One thread, no store: JSON line → candidate (canonical payload, key, hash) through the
/// general path (a `serde_json` value tree) and through the borrowed fast path the ingest uses.
fn parse_only(dir: &std::path::Path, n: usize) {
    use shopscribe::ingest::{parse, read};
    let ds = reviews_dataset();
    let path = dir.join("day1.jsonl");
    write_delivery(&path, n, 1, false);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for _ in 0..2 {
        let t = Instant::now();
        let mut bytes = 0;
        for l in &lines {
            let c = read::parse_json_line(l, false).and_then(|m| parse::candidate(&ds, m, false));
            bytes += c.unwrap().payload.len();
        }
        let slow = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for l in &lines {
            bytes -= parse::candidate_from_json_line(&ds, l)
                .unwrap()
                .payload
                .len();
        }
        let fast = t.elapsed().as_secs_f64();
        assert_eq!(bytes, 0, "both paths give the same payloads");
        println!(
            "parse: {} lines on one thread: value tree {:.0} ns/line, borrowed fast path {:.0} ns/line ({:.1}x)",
            lines.len(),
            slow * 1e9 / lines.len() as f64,
            fast * 1e9 / lines.len() as f64,
            slow / fast
        );
    }
}

fn reviews_dataset() -> Dataset {
    Dataset {
        name: "reviews".into(),
        from: String::new(),
        key: vec!["asin".into(), "reviewerID".into()],
        version: Some("unixReviewTime".into()),
        snapshot: false,
        types: [
            ("overall".to_string(), FieldType::Float),
            ("unixReviewTime".to_string(), FieldType::Int),
            ("helpful".to_string(), FieldType::Array),
        ]
        .into_iter()
        .collect(),
        max_line_bytes: 1 << 20,
        max_reject_share: 0.05,
        gold: None,
        required: Vec::new(),
        array_lengths: Default::default(),
        duplicate_keys_allowed: false,
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let backend = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("sqlite")
        .to_string();
    let n: usize = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let shuffled = args.get(3).is_some_and(|a| a == "shuffled");
    let dir = tempfile::tempdir().unwrap();
    if backend == "parse" {
        parse_only(dir.path(), n);
        return;
    }
    let (url, _guard) = if backend == "postgres" {
        let admin = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("shopscribe_ingest_bench_{}", std::process::id());
        let pool = sqlx::PgPool::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .unwrap();
        let mut u = url::Url::parse(&admin).unwrap();
        u.set_path(&name);
        (u.to_string(), Some((pool, name)))
    } else {
        (
            format!("sqlite://{}", dir.path().join("s.db").display()),
            None,
        )
    };
    let ds = reviews_dataset();
    let day1 = dir.path().join("day1.jsonl");
    let day2 = dir.path().join("day2.jsonl");
    write_delivery(&day1, n, 1, shuffled);
    write_delivery(&day2, n, 2, shuffled);
    let size = std::fs::metadata(&day1).unwrap().len();
    let db = IngestDb::connect(&url).await.unwrap();
    let rss0 = peak_rss_mb();
    let w0 = written_mb();
    let t = Instant::now();
    let r1 = shopscribe::ingest::ingest_file(&db, &ds, &day1)
        .await
        .unwrap();
    let t1 = t.elapsed().as_secs_f64();
    let w1 = written_mb();
    let t = Instant::now();
    let r2 = shopscribe::ingest::ingest_file(&db, &ds, &day2)
        .await
        .unwrap();
    let t2 = t.elapsed().as_secs_f64();
    let w2 = written_mb();
    println!(
        "{backend}: delivery 1: {} lines ({:.0} bytes/line) in {t1:.2} s = {:.0} lines/s; inserted {}; wrote {:.0} MB",
        r1.lines,
        size as f64 / n as f64,
        r1.lines as f64 / t1,
        r1.merge.inserted,
        w1 - w0
    );
    println!(
        "{backend}: delivery 2 (SCD2 merge): {} lines in {t2:.2} s = {:.0} lines/s; new {}, changed {}, unchanged {}; wrote {:.0} MB",
        r2.lines,
        r2.lines as f64 / t2,
        r2.merge.inserted,
        r2.merge.changed,
        r2.merge.unchanged,
        w2 - w1
    );
    println!(
        "{backend}: peak RSS {:.0} MB (before ingesting: {rss0:.0} MB)",
        peak_rss_mb()
    );
    // What bronze costs in the store: compressed blocks against the delivered bytes.
    let (stored, raw): (i64, i64) = match &db {
        IngestDb::Sqlite(p) => sqlx::query_as(
            "SELECT CAST(SUM(LENGTH(data)) AS INTEGER), CAST(SUM(raw_bytes) AS INTEGER) FROM raw_blocks",
        )
        .fetch_one(p)
        .await
        .unwrap(),
        IngestDb::Pg(p) => sqlx::query_as(
            "SELECT SUM(octet_length(data))::BIGINT, SUM(raw_bytes)::BIGINT FROM raw_blocks",
        )
        .fetch_one(p)
        .await
        .unwrap(),
    };
    println!(
        "{backend}: bronze {:.0} MB compressed for {:.0} MB of lines ({:.1} %)",
        stored as f64 / 1e6,
        raw as f64 / 1e6,
        100.0 * stored as f64 / raw as f64
    );
    if let Some((pool, name)) = _guard {
        drop(db);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
}
