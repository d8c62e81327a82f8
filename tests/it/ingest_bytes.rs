//! Issue 12 regressions, through the `shopscribe` binary where a user meets them, on SQLite and
//! PostgreSQL: a delivery comes back from bronze byte for byte (CRLF, an over-size line, invalid
//! UTF-8, NUL, a byte-order mark, blank lines); NUL never breaks a PostgreSQL ingest or its gold;
//! one bad file never stops the others; blank lines are listed as skipped, not rejected; the
//! reviews example rejects numeric keys, null ratings, repeated keys and short `helpful` arrays;
//! a store error is said once and names the file.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};

/// The reviews example in `dir`, without data.
fn project(dir: &Path) {
    shopscribe::demo::write_reviews_project(dir, true).unwrap();
    std::fs::create_dir_all(dir.join("data/reviews")).unwrap();
}

fn shopscribe(dir: &Path, store: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shopscribe"));
    c.args(args).arg("-p").arg(dir).env_remove("OPENAI_API_KEY");
    match store {
        Some(url) => c.env("SHOPSCRIBE_STORE_URL", url),
        None => c.env_remove("SHOPSCRIBE_STORE_URL"),
    };
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn review(asin: &str, who: &str, t: i64, text: &str) -> String {
    serde_json::json!({"asin": asin, "reviewerID": who, "unixReviewTime": t, "overall": 4.0,
        "helpful": [1, 2], "reviewText": text})
    .to_string()
}

/// A JSON-lines delivery with every kind of awkward byte.
fn awkward_delivery() -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(b"\xEF\xBB\xBF");
    d.extend_from_slice(review("P1", "u1", 10, "first line after a BOM").as_bytes());
    d.extend_from_slice(b"\r\n");
    d.extend_from_slice(review("P1", "u2", 11, "a CRLF line").as_bytes());
    d.extend_from_slice(b"\r\n\n   \t\r\n");
    d.extend_from_slice(review("P2", "u1", 12, "after blank lines").as_bytes());
    d.push(b'\n');
    // Malformed, with a raw NUL and invalid UTF-8 inside.
    d.extend_from_slice(b"{\"asin\": \"P3\", \"reviewerID\": \"u\0x\", \xff\xfe\n");
    d.extend_from_slice(b"{\"asin\": \"P3\", \"oops\0\": 1\n");
    // Valid JSON holding an escaped NUL in the text and in the key.
    d.extend_from_slice(
        br#"{"asin": "P4\u0000", "reviewerID": "u1", "unixReviewTime": 13, "overall": 5.0, "helpful": [2, 2], "reviewText": "nul \u0000 inside"}"#,
    );
    d.push(b'\n');
    // Over the 1 MiB limit.
    d.extend_from_slice(review("P5", "u1", 14, &"x".repeat(1_100_000)).as_bytes());
    d.extend_from_slice(b"\r\n");
    // A last line without a line end.
    d.extend_from_slice(review("P6", "u1", 15, "no newline at the end").as_bytes());
    d
}

/// The recorded files (id, URI), from `ingest --files`.
fn file_ids(dir: &Path, store: Option<&str>) -> Vec<(i64, String)> {
    let out = shopscribe(dir, store, &["ingest", "reviews", "--files"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].parse().unwrap(), cols.last().unwrap().to_string())
        })
        .collect()
}

async fn a_delivery_comes_back_byte_for_byte(store: Option<&str>) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let delivered = awkward_delivery();
    std::fs::write(dir.path().join("data/reviews/a.jsonl"), &delivered).unwrap();
    let csv =
        b"\xEF\xBB\xBFasin,reviewerID,overall,unixReviewTime\r\nC1,u1,4,1\r\n\r\nC2,u2,,2\r\n";
    std::fs::write(dir.path().join("data/reviews/b.csv"), csv).unwrap();
    let out = shopscribe(dir.path(), store, &["ingest", "reviews"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // a.jsonl: 10 lines, 2 blank, 3 rejected of 8 records: over the 5 % limit, so the command
    // fails after ingesting both files.
    assert!(
        stdout.contains("a.jsonl: 10 lines (2 blank, skipped), 3 rejected; 5 new"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("b.csv: 2 lines, 1 rejected; 1 new"),
        "the CSV header is not a record; the empty line joins the next record: {stdout}"
    );
    assert!(!out.status.success());
    assert!(
        stderr.contains("2 of 2 files of `reviews` failed"),
        "{stderr}"
    );

    let files = file_ids(dir.path(), store);
    for (id, uri) in &files {
        let back = shopscribe(
            dir.path(),
            store,
            &["ingest", "reviews", "--bronze", &id.to_string()],
        );
        assert!(back.status.success(), "{}", text(&back.stderr));
        let want: &[u8] = if uri.ends_with("a.jsonl") {
            &delivered
        } else {
            csv
        };
        assert!(
            back.stdout == want,
            "{uri}: replayed {} bytes, delivered {}",
            back.stdout.len(),
            want.len()
        );
    }

    let listed = shopscribe(dir.path(), store, &["ingest", "reviews", "--rejects"]);
    let listed = text(&listed.stdout);
    assert_eq!(
        listed.matches(": skipped: blank line").count(),
        2,
        "{listed}"
    );
    assert!(
        listed.contains("a.jsonl:3: skipped: blank line"),
        "{listed}"
    );
    assert!(
        listed.contains("a.jsonl:4: skipped: blank line"),
        "{listed}"
    );
    assert!(
        listed.contains("b.csv:4: required field `overall` is null"),
        "{listed}"
    );

    // The rejected line with NUL and invalid UTF-8 is stored exactly, on either store.
    let db = shopscribe::ingest::db::IngestDb::connect(store.unwrap_or(&format!(
        "sqlite://{}",
        dir.path().join("shopscribe.db").display()
    )))
    .await
    .unwrap();
    let rejects = db.rejects("reviews", 100).await.unwrap();
    let nul = rejects.iter().find(|r| r.line_no == 6).unwrap();
    assert_eq!(
        nul.raw,
        b"{\"asin\": \"P3\", \"reviewerID\": \"u\0x\", \xff\xfe".to_vec()
    );
    assert!(nul.reason.starts_with("invalid UTF-8"), "{}", nul.reason);
    let over = rejects.iter().find(|r| r.line_no == 9).unwrap();
    assert!(
        over.reason.contains("over the 1048576-byte limit"),
        "{}",
        over.reason
    );
    assert_eq!(
        over.raw.len(),
        4096,
        "the reject shows 4 KB; bronze has it all"
    );

    // Gold was rebuilt despite the NUL: P4's text and key hold U+FFFD there; silver keeps the
    // value as JSON escapes it.
    let now = db.as_of("reviews", "9999").await.unwrap();
    let p4 = now.iter().find(|(k, _)| k.contains("P4")).unwrap();
    assert!(
        p4.0.contains("P4\\u0000") && p4.1.contains(r#""nul \u0000 inside""#),
        "{p4:?}"
    );
    let gold = shopscribe_gold(&db).await;
    assert!(
        gold.iter()
            .any(|(asin, ex)| asin == "P4\u{FFFD}" && ex.as_deref() == Some("nul \u{FFFD} inside")),
        "{gold:?}"
    );
    now
}

async fn shopscribe_gold(db: &shopscribe::ingest::db::IngestDb) -> Vec<(String, Option<String>)> {
    use shopscribe::ingest::db::IngestDb;
    let sql = "SELECT asin, most_recent_excerpt FROM product_summary ORDER BY asin";
    match db {
        IngestDb::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
        IngestDb::Pg(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
    }
}

#[tokio::test]
async fn a_delivery_comes_back_byte_for_byte_and_nul_is_kept_on_both_stores() {
    let lite = a_delivery_comes_back_byte_for_byte(None).await;
    let pg = support::pg::TestDb::new().await;
    let on_pg = a_delivery_comes_back_byte_for_byte(Some(&pg.url)).await;
    assert_eq!(lite, on_pg, "the same payloads on SQLite and PostgreSQL");
}

async fn one_bad_file_does_not_stop_the_delivery(store: Option<&str>) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let data = dir.path().join("data/reviews");
    std::fs::write(data.join("a.jsonl"), review("A", "u", 1, "a") + "\n").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..2000 {
        writeln!(
            gz,
            "{}",
            review(&format!("B{i}"), "u", 1, &format!("{i} {}", i * 7919))
        )
        .unwrap();
    }
    let full = gz.finish().unwrap();
    std::fs::write(data.join("b.jsonl.gz"), &full[..full.len() / 2]).unwrap();
    std::fs::write(data.join("c.jsonl"), review("C", "u", 1, "c") + "\n").unwrap();
    let out = shopscribe(dir.path(), store, &["ingest", "reviews"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("a.jsonl: 1 lines") && stdout.contains("c.jsonl: 1 lines"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 of 3 files of `reviews` failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("b.jsonl.gz"),
        "the failed file is named: {stderr}"
    );
    let files = file_ids(dir.path(), store);
    assert_eq!(files.len(), 3, "{files:?}");
    // The next ingest retries only the failed file (the others are skipped by checksum).
    let again = shopscribe(dir.path(), store, &["ingest", "reviews"]);
    assert!(text(&again.stdout).contains("a.jsonl: already ingested"));
    assert!(text(&again.stderr).contains("b.jsonl.gz"));
}

#[tokio::test]
async fn one_bad_file_does_not_stop_the_delivery_on_sqlite() {
    one_bad_file_does_not_stop_the_delivery(None).await;
}

#[tokio::test]
async fn one_bad_file_does_not_stop_the_delivery_on_postgres() {
    let db = support::pg::TestDb::new().await;
    one_bad_file_does_not_stop_the_delivery(Some(&db.url)).await;
}

/// The reviews example's dataset declaration rejects what it used to accept and stringify.
async fn lenient_records_are_rejected(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let lines = [
        review("P1", "u1", 1, "fine"),
        r#"{"asin": 139, "reviewerID": "u1", "overall": 4.0, "helpful": [0, 0]}"#.into(),
        r#"{"asin": "P2", "reviewerID": "u1", "overall": null, "helpful": [0, 0]}"#.into(),
        r#"{"asin": "P3", "reviewerID": "u1", "overall": 4.0, "overall": 1.0}"#.into(),
        r#"{"asin": "P4", "reviewerID": "u1", "overall": 4.0, "helpful": [1]}"#.into(),
        r#"{"asin": "P5", "reviewerID": "u1", "overall": 3.0}"#.into(),
    ];
    std::fs::write(
        dir.path().join("data/reviews/a.jsonl"),
        lines.join("\n") + "\n",
    )
    .unwrap();
    let out = shopscribe(dir.path(), store, &["ingest", "reviews"]);
    assert!(
        text(&out.stdout).contains("6 lines, 4 rejected; 2 new"),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let listed = text(&shopscribe(dir.path(), store, &["ingest", "reviews", "--rejects"]).stdout);
    for reason in [
        ":2: field `asin` should be a string but is 139",
        ":3: required field `overall` is null",
        ":4: duplicate key \"overall\"",
        ":5: field `helpful` should have 2 elements but has 1",
    ] {
        assert!(listed.contains(reason), "{reason}: {listed}");
    }
}

#[tokio::test]
async fn lenient_records_are_rejected_on_sqlite() {
    lenient_records_are_rejected(None).await;
}

#[tokio::test]
async fn lenient_records_are_rejected_on_postgres() {
    let db = support::pg::TestDb::new().await;
    lenient_records_are_rejected(Some(&db.url)).await;
}

/// A PostgreSQL error while ingesting is printed once, names the file, and carries no
/// "at line N" (that was PostgreSQL's own source line, shown as if it were the file's).
#[tokio::test]
async fn a_postgres_error_is_said_once_and_names_the_file() {
    let db = support::pg::TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    // Migrate, then make every reject insert fail.
    shopscribe::store::open(&db.url).await.unwrap();
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query("ALTER TABLE raw_rejects ADD CONSTRAINT no_rejects CHECK (line_no < 0)")
        .execute(&pool)
        .await
        .unwrap();
    std::fs::write(
        dir.path().join("data/reviews/a.jsonl"),
        review("P1", "u1", 1, "fine") + "\n{broken\n",
    )
    .unwrap();
    let out = shopscribe(dir.path(), Some(&db.url), &["ingest", "reviews"]);
    let stderr = text(&out.stderr);
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    let error = error[0];
    assert_eq!(
        error.matches("violates check constraint").count(),
        1,
        "{error}"
    );
    assert!(error.contains("a.jsonl"), "{error}");
    // sqlx writes PostgreSQL's source line after the message: "… \"no_rejects\" at line 2005".
    assert!(!error.contains("\"no_rejects\" at line"), "{error}");
}
