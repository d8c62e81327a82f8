//! Ingestion and SCD2 history, the same scenarios on SQLite and PostgreSQL: new, changed,
//! unchanged, duplicates within a file, out-of-order versions, snapshot deletion, a re-delivered
//! old file, composite keys that would collide if concatenated, rejects with reasons, as-of reads.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test fixtures and expectations computed from small counts"
)]

use crate::support;

use serde_json::Value;
use shopscribe::config::{Dataset, FieldType};
use shopscribe::ingest::db::IngestDb;
use shopscribe::ingest::ingest_file;
use std::path::{Path, PathBuf};

fn dataset(snapshot: bool) -> Dataset {
    Dataset {
        name: "reviews".into(),
        from: "file:///unused".into(),
        key: vec!["asin".into(), "reviewerID".into()],
        version: Some("unixReviewTime".into()),
        snapshot,
        types: [
            ("overall".to_string(), FieldType::Float),
            ("unixReviewTime".to_string(), FieldType::Int),
        ]
        .into_iter()
        .collect(),
        max_line_bytes: 2000,
        max_reject_share: 0.5,
        gold: None,
        required: Vec::new(),
        array_lengths: Default::default(),
        duplicate_keys_allowed: false,
    }
}

fn write(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn review(asin: &str, who: &str, t: i64, stars: f64, text: &str) -> String {
    serde_json::json!({"asin": asin, "reviewerID": who, "unixReviewTime": t, "overall": stars, "reviewText": text}).to_string()
}

async fn current(db: &IngestDb) -> Vec<(String, Value)> {
    db.as_of("reviews", "9999-12-31T00:00:00.000Z")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, p)| (k, serde_json::from_str(&p).unwrap()))
        .collect()
}

async fn scenario(url: &str) {
    let db = IngestDb::connect(url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(false);

    // Day 1: three reviews, a duplicate of one (a later version wins), a malformed line, a line
    // without a key, a wrong type, a composite key that collides when concatenated.
    let day1 = write(
        dir.path(),
        "day1.jsonl",
        &[
            &review("A1", "u1", 100, 5.0, "great"),
            &review("A1", "u2", 100, 3.0, "ok"),
            &review("A1", "u1", 90, 4.0, "older duplicate, earlier version"),
            "{\"asin\": \"A2\", \"reviewerID\": ",
            r#"{"reviewerID": "u9", "overall": 1}"#,
            r#"{"asin": "A3", "reviewerID": "u3", "overall": "five", "unixReviewTime": 1}"#,
            &review(
                "A1u",
                "3",
                100,
                2.0,
                "collides with A1+u3 when concatenated",
            ),
            &review("A1", "u3", 100, 1.0, "distinct from A1u+3"),
        ],
    );
    let r = ingest_file(&db, &ds, &day1).await.unwrap();
    assert_eq!((r.lines, r.accepted, r.rejected), (8, 5, 3), "{r:?}");
    assert_eq!(
        (r.merge.inserted, r.merge.duplicates, r.merge.changed),
        (4, 1, 0),
        "{r:?}"
    );
    let rejects = db.rejects("reviews", 10).await.unwrap();
    let reasons: Vec<&str> = rejects.iter().map(|x| x.reason.as_str()).collect();
    assert!(reasons[0].starts_with("malformed JSON"), "{reasons:?}");
    assert_eq!(reasons[1], "missing key field `asin`");
    assert!(reasons[2].contains("overall"), "{reasons:?}");
    assert_eq!(rejects[0].line_no, 4, "the line number is kept");
    assert!(
        rejects[0].raw.starts_with(b"{\"asin\": \"A2\""),
        "the raw line is kept as delivered"
    );
    let now = current(&db).await;
    assert_eq!(now.len(), 4);
    let a1u1 = now.iter().find(|(k, _)| k == r#"["A1","u1"]"#).unwrap();
    assert_eq!(
        a1u1.1["reviewText"], "great",
        "the higher version of a duplicate wins"
    );
    assert!(
        now.iter().any(|(k, _)| k == r#"["A1u","3"]"#)
            && now.iter().any(|(k, _)| k == r#"["A1","u3"]"#)
    );
    let after_day1 = shopscribe::store::now_text();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    // The same content again under another name: skipped, nothing changes.
    let again = write(
        dir.path(),
        "day1-copy.jsonl",
        &std::fs::read_to_string(&day1)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
    );
    assert!(ingest_file(&db, &ds, &again).await.unwrap().skipped);

    // Day 2: one edit, one unchanged, one new, one out-of-order older version, and equal-version
    // duplicates resolved by file order (the last line wins).
    let day2 = write(
        dir.path(),
        "day2.jsonl",
        &[
            &review("A1", "u1", 200, 4.0, "edited: still good"),
            &review("A1", "u2", 100, 3.0, "ok"),
            &review("B1", "u5", 150, 2.0, "new"),
            &review("A1", "u3", 50, 5.0, "an older version arriving late"),
            &review("B2", "u6", 10, 1.0, "first"),
            &review(
                "B2",
                "u6",
                10,
                2.0,
                "second, same version: file order decides",
            ),
        ],
    );
    let r = ingest_file(&db, &ds, &day2).await.unwrap();
    let m = r.merge;
    assert_eq!(
        (m.changed, m.unchanged, m.inserted, m.stale, m.duplicates),
        (1, 1, 2, 1, 1),
        "{r:?}"
    );
    let now = current(&db).await;
    assert_eq!(now.len(), 6);
    assert_eq!(
        now.iter().find(|(k, _)| k == r#"["A1","u1"]"#).unwrap().1["reviewText"],
        "edited: still good"
    );
    assert_eq!(
        now.iter().find(|(k, _)| k == r#"["A1","u3"]"#).unwrap().1["reviewText"],
        "distinct from A1u+3"
    );
    assert_eq!(
        now.iter().find(|(k, _)| k == r#"["B2","u6"]"#).unwrap().1["overall"],
        2.0
    );

    // History: the old version is closed, not overwritten, and readable as of day 1.
    let versions = db.versions("reviews", r#"["A1","u1"]"#).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions[0].1.is_some() && versions[1].1.is_none());
    let then = db.as_of("reviews", &after_day1).await.unwrap();
    assert_eq!(then.len(), 4);
    assert!(
        then.iter()
            .any(|(k, p)| k == r#"["A1","u1"]"# && p.contains("\"great\""))
    );

    // Snapshot mode: a complete delivery; absent keys are marked deleted (history kept).
    let snap = dataset(true);
    let day3 = write(
        dir.path(),
        "day3.jsonl",
        &[
            &review("A1", "u1", 200, 4.0, "edited: still good"),
            &review("B1", "u5", 150, 2.0, "new"),
        ],
    );
    let r = ingest_file(&db, &snap, &day3).await.unwrap();
    assert_eq!(
        (r.merge.deleted, r.merge.unchanged, r.merge.inserted),
        (4, 2, 0),
        "{r:?}"
    );
    let now = current(&db).await;
    assert_eq!(now.len(), 2);
    let gone = db.versions("reviews", r#"["A1","u2"]"#).await.unwrap();
    assert!(
        gone.last().unwrap().2,
        "a deleted version closes the history"
    );
    // A deleted record that comes back is current again.
    let day4 = write(
        dir.path(),
        "day4.jsonl",
        &[
            &review("A1", "u1", 200, 4.0, "edited: still good"),
            &review("B1", "u5", 150, 2.0, "new"),
            &review("A1", "u2", 100, 3.0, "ok"),
        ],
    );
    let r = ingest_file(&db, &snap, &day4).await.unwrap();
    assert_eq!((r.merge.changed, r.merge.deleted), (1, 0), "{r:?}");
    assert_eq!(current(&db).await.len(), 3);
}

/// Every item of a delivery comes back from bronze exactly as delivered, in order, with its
/// line number: accepted and rejected lines, across many blocks and chunks (and more blocks
/// than one page of the reader).
async fn bronze_keeps_every_line(url: &str) {
    let db = IngestDb::connect(url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (0..23_456)
        .map(|i| match i % 997 {
            5 => format!("{{\"asin\": \"broken {i}"),
            7 => format!("[{i}, \"not an object\"]"),
            _ => review(
                &format!("B{i}"),
                "u",
                i,
                4.0,
                &format!("text {i} — ü\\t\"q\""),
            ),
        })
        .collect();
    // A blank line is an item too: kept in bronze and listed as skipped, not rejected.
    lines.insert(100, String::new());
    let path = dir.path().join("many.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let r = ingest_file(&db, &dataset(false), &path).await.unwrap();
    assert_eq!((r.lines, r.blank), (23_457, 1));
    assert_eq!(r.rejected, 2 * 24, "{r:?}");
    let mut back = Vec::new();
    let n = db
        .bronze_lines(r.file_id, |line, raw| {
            back.push((line, String::from_utf8(raw.to_vec()).unwrap()));
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(n, 23_457);
    let expected: Vec<(i64, String)> = lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| (i as i64 + 1, l + "\n"))
        .collect();
    assert_eq!(back.len(), expected.len());
    for (got, want) in back.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    let rejects = db.rejects("reviews", 1000).await.unwrap();
    assert_eq!(rejects.len(), 48 + 1);
    let blank = rejects.iter().find(|r| r.kind == "skipped").unwrap();
    assert_eq!(
        (blank.line_no, blank.reason.as_str(), blank.raw.as_slice()),
        (101, "blank line", &b""[..])
    );
    let by_line: std::collections::HashMap<i64, &String> =
        expected.iter().map(|(l, raw)| (*l, raw)).collect();
    assert!(
        rejects
            .iter()
            .all(|r| by_line[&r.line_no].trim_end().as_bytes() == r.raw),
        "rejects keep their line number and raw text"
    );
}

#[tokio::test]
async fn scd2_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenario(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
}

#[tokio::test]
async fn scd2_on_postgres() {
    let db = support::pg::TestDb::new().await;
    scenario(&db.url).await;
}

#[tokio::test]
async fn bronze_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    bronze_keeps_every_line(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
}

#[tokio::test]
async fn bronze_on_postgres() {
    let db = support::pg::TestDb::new().await;
    bronze_keeps_every_line(&db.url).await;
}

#[tokio::test]
async fn csv_and_gzip_and_the_reject_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let db = IngestDb::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let mut ds = dataset(false);
    ds.max_reject_share = 0.2;
    let csv = "asin,reviewerID,overall,unixReviewTime,reviewText\nA1,u1,5,100,\"good, really\"\nA2,u2,bad,100,x\nA3,u3,4,100,fine\n";
    let p = dir.path().join("d.csv.gz");
    {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(
            std::fs::File::create(&p).unwrap(),
            flate2::Compression::fast(),
        );
        e.write_all(csv.as_bytes()).unwrap();
        e.finish().unwrap();
    }
    let err = ingest_file(&db, &ds, &p).await.unwrap_err().to_string();
    assert!(
        err.contains("1 of 3 lines rejected") && err.contains("--rejects"),
        "{err}"
    );
    // The file is recorded and its good lines merged all the same: nothing is lost.
    let now = db
        .as_of("reviews", "9999-12-31T00:00:00.000Z")
        .await
        .unwrap();
    assert_eq!(now.len(), 2);
    assert!(
        now[0].1.contains("\"overall\":5.0") && now[0].1.contains("good, really"),
        "{now:?}"
    );
}

/// A store written before bronze blocks existed: its files' lines are rows of `raw_records`,
/// still listed as rejects and read back by `bronze_lines`.
async fn legacy_bronze_rows_stay_readable(url: &str) {
    let db = IngestDb::connect(url).await.unwrap();
    let file = db
        .begin_file("reviews", "file:///old.jsonl", 10, "old-sum")
        .await
        .unwrap();
    db.drop_staging(file).await.unwrap();
    let rows = [
        (1i64, "{\"asin\": \"A1\"}", "ok", None),
        (2, "{broken", "rejected", Some("malformed JSON: old")),
    ];
    for (line, raw, status, reason) in rows {
        let sql = "INSERT INTO raw_records (file_id, line_no, raw, status, reason) VALUES ";
        match &db {
            IngestDb::Sqlite(p) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{sql}(?, ?, ?, ?, ?)")))
                    .bind(file)
                    .bind(line)
                    .bind(raw)
                    .bind(status)
                    .bind(reason)
                    .execute(p)
                    .await
                    .unwrap();
            }
            IngestDb::Pg(p) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{sql}($1, $2, $3, $4, $5)")))
                    .bind(file)
                    .bind(line)
                    .bind(raw)
                    .bind(status)
                    .bind(reason)
                    .execute(p)
                    .await
                    .unwrap();
            }
        }
    }
    let mut back = Vec::new();
    db.bronze_lines(file, |line, raw| {
        back.push((line, String::from_utf8(raw.to_vec()).unwrap()));
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(
        back,
        [
            (1, "{\"asin\": \"A1\"}\n".to_string()),
            (2, "{broken\n".to_string())
        ]
    );
    let rejects = db.rejects("reviews", 10).await.unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(
        (rejects[0].line_no, rejects[0].reason.as_str()),
        (2, "malformed JSON: old")
    );
}

#[tokio::test]
async fn legacy_bronze_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    legacy_bronze_rows_stay_readable(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await;
}

#[tokio::test]
async fn legacy_bronze_on_postgres() {
    let db = support::pg::TestDb::new().await;
    legacy_bronze_rows_stay_readable(&db.url).await;
}

/// Current keys of `reviews` with the line each version came from.
async fn current_lines(db: &IngestDb) -> Vec<(String, Option<i64>)> {
    let sql = "SELECT record_key, line_no FROM records WHERE dataset = 'reviews' AND valid_to IS NULL AND deleted = 0 ORDER BY record_key";
    match db {
        IngestDb::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
        IngestDb::Pg(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
    }
}

/// Keys new to the store, several times in one delivery: the highest version wins, a missing
/// version counts as lowest, equal versions go to the last line; every version names its line;
/// a snapshot delivery does not delete its own new keys.
async fn new_keys_in_one_delivery(url: &str) {
    let db = IngestDb::connect(url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let day1 = write(
        dir.path(),
        "day1.jsonl",
        &[
            &review("N1", "u", 5, 1.0, "five"),
            &review("N1", "u", 7, 2.0, "seven"),
            &review("N1", "u", 6, 3.0, "six"),
            r#"{"asin": "N2", "reviewerID": "u", "reviewText": "no version"}"#,
            &review("N2", "u", 1, 1.0, "versioned"),
            &review("N3", "u", 1, 1.0, "first, version 1"),
            r#"{"asin": "N3", "reviewerID": "u", "reviewText": "later, no version"}"#,
            &review("N4", "u", 3, 1.0, "only"),
            &review("N4", "u", 3, 1.0, "same version, later line"),
        ],
    );
    let r = ingest_file(&db, &dataset(false), &day1).await.unwrap();
    assert_eq!(
        (
            r.accepted,
            r.merge.inserted,
            r.merge.duplicates,
            r.merge.changed
        ),
        (9, 4, 5, 0),
        "{r:?}"
    );
    let text = |now: &[(String, Value)], k: &str| {
        now.iter().find(|(key, _)| key == k).unwrap().1["reviewText"].clone()
    };
    let now = current(&db).await;
    assert_eq!(text(&now, r#"["N1","u"]"#), "seven");
    assert_eq!(text(&now, r#"["N2","u"]"#), "versioned");
    assert_eq!(text(&now, r#"["N3","u"]"#), "first, version 1");
    assert_eq!(text(&now, r#"["N4","u"]"#), "same version, later line");
    assert_eq!(
        current_lines(&db).await,
        [
            (r#"["N1","u"]"#.to_string(), Some(2)),
            (r#"["N2","u"]"#.to_string(), Some(5)),
            (r#"["N3","u"]"#.to_string(), Some(6)),
            (r#"["N4","u"]"#.to_string(), Some(9)),
        ],
        "each version names the line it came from"
    );
    for key in [r#"["N1","u"]"#, r#"["N4","u"]"#] {
        assert_eq!(
            db.versions("reviews", key).await.unwrap().len(),
            1,
            "lines of one delivery are not history"
        );
    }

    let day2 = write(
        dir.path(),
        "day2.jsonl",
        &[
            &review("N1", "u", 7, 2.0, "seven"),
            &review("N5", "u", 1, 1.0, "new in a snapshot"),
        ],
    );
    let r = ingest_file(&db, &dataset(true), &day2).await.unwrap();
    assert_eq!(
        (r.merge.unchanged, r.merge.inserted, r.merge.deleted),
        (1, 1, 3),
        "{r:?}"
    );
    let keys: Vec<String> = current(&db).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [r#"["N1","u"]"#, r#"["N5","u"]"#]);
}

/// A delivery that breaks off midway (a truncated gzip, read after several chunks were loaded)
/// fails and is recorded as failed; silver gets none of its records; the full file ingests.
async fn a_file_that_fails_midway_leaves_silver_as_it_was(url: &str) {
    use std::io::Write;
    let db = IngestDb::connect(url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(false);
    let first = write(
        dir.path(),
        "a.jsonl",
        &[&review("K0", "u", 1, 1.0, "before")],
    );
    ingest_file(&db, &ds, &first).await.unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..30_000 {
        // Incompressible text, so the cut falls well after the first chunks.
        let text: String = (0..40)
            .map(|j| char::from(b'a' + ((i * 31 + j * 17 + i / 7) % 26) as u8))
            .collect();
        writeln!(gz, "{}", review(&format!("K{i}"), "u", 2, 2.0, &text)).unwrap();
    }
    let full = gz.finish().unwrap();
    let cut = dir.path().join("b.jsonl.gz");
    std::fs::write(&cut, &full[..full.len() * 2 / 3]).unwrap();
    let err = ingest_file(&db, &ds, &cut).await.unwrap_err();
    assert!(err.to_string().contains("b.jsonl.gz"), "{err}");
    let files = db.files("reviews", 10).await.unwrap();
    assert_eq!(
        files[0].status,
        shopscribe::store::FileStatus::Failed,
        "{files:?}"
    );
    let now = current(&db).await;
    assert_eq!(now.len(), 1, "nothing of the broken file is in silver");
    assert_eq!(now[0].1["reviewText"], "before");

    let whole = dir.path().join("c.jsonl.gz");
    std::fs::write(&whole, &full).unwrap();
    let r = ingest_file(&db, &ds, &whole).await.unwrap();
    assert_eq!((r.merge.inserted, r.merge.changed), (29_999, 1), "{r:?}");
    assert_eq!(current(&db).await.len(), 30_000);
}

#[tokio::test]
async fn new_keys_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    new_keys_in_one_delivery(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
}

#[tokio::test]
async fn new_keys_on_postgres() {
    let db = support::pg::TestDb::new().await;
    new_keys_in_one_delivery(&db.url).await;
}

#[tokio::test]
async fn failed_file_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_file_that_fails_midway_leaves_silver_as_it_was(&format!(
        "sqlite://{}",
        dir.path().join("s.db").display()
    ))
    .await;
}

#[tokio::test]
async fn failed_file_on_postgres() {
    let db = support::pg::TestDb::new().await;
    a_file_that_fails_midway_leaves_silver_as_it_was(&db.url).await;
}

/// Keys of the versions the last delivery of `reviews` added (not its deletion markers), in the
/// order they were inserted (row id).
async fn keys_by_id(db: &IngestDb) -> Vec<String> {
    let sql = "SELECT record_key FROM records WHERE dataset = 'reviews' AND valid_to IS NULL AND deleted = 0
               AND valid_from = (SELECT MAX(valid_from) FROM records WHERE dataset = 'reviews') ORDER BY id";
    match db {
        IngestDb::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        IngestDb::Pg(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
    }
}

/// Two deliveries of several chunks each (the second a snapshot), once in random key order and
/// once sorted by key (the same lines; a stable sort keeps each key's lines in their order, so
/// the same lines win): the same counts and the same current records. On SQLite the shuffled delivery is merged in
/// key order (its versions' ids follow their keys).
async fn key_order_does_not_change_the_result(shuffled_url: &str, sorted_url: &str, sqlite: bool) {
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 11_000;
    // 7919 is prime and does not divide N: a bijection of 0..N, in random-looking order.
    let key = |i: usize| format!("P{:05}", i * 7919 % N);
    let absent = (0..N)
        .filter(|i| i % 17 == 0 && i % 10 != 0 && i % 11 != 0)
        .count();
    let day = |d: i64| -> Vec<(String, String)> {
        let mut lines = Vec::new();
        for i in 0..N {
            if d == 1 || i % 10 == 0 {
                lines.push((
                    key(i),
                    review(&key(i), "u", d * 10, 4.0, &format!("day {d}")),
                ));
            } else if i % 17 != 0 {
                // Day 2 repeats day 1's line (unchanged, or losing to a newer duplicate below),
                // so it is several chunks long too; every 17th key is absent (snapshot: deleted).
                lines.push((key(i), review(&key(i), "u", 10, 4.0, "day 1")));
            }
        }
        // Duplicates within the delivery: a newer version (wins) and an older one (loses).
        for i in (0..N).step_by(11) {
            lines.push((key(i), review(&key(i), "u", d * 10 + 1, 5.0, "newer")));
            lines.push((key(i), review(&key(i), "u", d * 10 - 1, 1.0, "older")));
        }
        if d == 2 {
            for i in 0..500 {
                let k = format!("Q{:05}", i * 7 % 500);
                lines.push((k.clone(), review(&k, "u", 1, 3.0, "new on day 2")));
            }
        }
        lines
    };
    let shuffled_db = IngestDb::connect(shuffled_url).await.unwrap();
    let sorted_db = IngestDb::connect(sorted_url).await.unwrap();
    for d in [1, 2] {
        // Day 2 is a snapshot delivery: closes, inserts and deletions in key order.
        let ds = dataset(d == 2);
        let lines = day(d);
        let shuffled: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        let mut by_key = lines.clone();
        by_key.sort_by(|a, b| a.0.cmp(&b.0));
        let sorted: Vec<&str> = by_key.iter().map(|(_, l)| l.as_str()).collect();
        let a = write(dir.path(), &format!("shuffled{d}.jsonl"), &shuffled);
        let b = write(dir.path(), &format!("sorted{d}.jsonl"), &sorted);
        let ra = ingest_file(&shuffled_db, &ds, &a).await.unwrap();
        let rb = ingest_file(&sorted_db, &ds, &b).await.unwrap();
        assert_eq!(ra.merge, rb.merge, "day {d}");
        assert!(ra.merge.duplicates > 0, "{ra:?}");
        if d == 2 {
            assert!(ra.lines > 2 * 5000, "several chunks: {ra:?}");
            // Changed: every tenth key (edited) and every eleventh (a newer duplicate); deleted:
            // every 17th key that is neither.
            assert_eq!(
                (ra.merge.changed, ra.merge.inserted, ra.merge.deleted),
                (1100 + 1000 - 100, 500, absent as u64),
                "{ra:?}"
            );
            assert_eq!(ra.merge.unchanged, (N - 2000 - absent) as u64, "{ra:?}");
        }
        assert_eq!(
            current(&shuffled_db).await,
            current(&sorted_db).await,
            "day {d}"
        );
        if sqlite {
            let ids = keys_by_id(&shuffled_db).await;
            let added = if d == 1 { N } else { 2000 + 500 };
            assert!(
                ids.len() == added && ids.is_sorted(),
                "day {d}: inserted in key order"
            );
        }
    }
    let now = current(&shuffled_db).await;
    assert_eq!(now.len(), N + 500 - absent);
    let text = |k: &str| {
        let k = format!(r#"["{k}","u"]"#);
        now.iter().find(|(key, _)| *key == k).unwrap().1["reviewText"].clone()
    };
    assert_eq!(text(&key(0)), "newer", "day 2's newer duplicate");
    assert_eq!(text(&key(10)), "day 2");
    assert_eq!(text(&key(1)), "day 1");
}

#[tokio::test]
async fn key_order_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = |n: &str| format!("sqlite://{}", dir.path().join(n).display());
    key_order_does_not_change_the_result(&url("a.db"), &url("b.db"), true).await;
}

#[tokio::test]
async fn key_order_on_postgres() {
    let a = support::pg::TestDb::new().await;
    let b = support::pg::TestDb::new().await;
    key_order_does_not_change_the_result(&a.url, &b.url, false).await;
}
