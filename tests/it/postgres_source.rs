//! The job source on PostgreSQL: the example SQL gives the same features as on SQLite, `:as_of`
//! is bound, types are read, and a bad query's error names the file, the message and the line.

use crate::support;

use sqlx::PgPool;
use std::collections::HashMap;
use support::pg::{TestDb, load_pg};

/// The example project; its source is `source_url` when given.
fn project(dir: &std::path::Path, source_url: Option<&str>) -> shopscribe::config::Project {
    shopscribe::demo::write_project(dir, true).unwrap();
    let src = source_url.map(str::to_string);
    shopscribe::config::load_with_env(dir, &move |k| {
        (k == "SHOPSCRIBE_SOURCE_URL")
            .then(|| src.clone())
            .flatten()
    })
    .unwrap()
}

#[tokio::test]
async fn the_example_sql_gives_the_same_features_on_sqlite_and_postgresql() {
    let rows = shopscribe::demo::sample_rows(400, 5);
    let db = TestDb::new().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    load_pg(&pool, &rows).await;

    let lite_dir = tempfile::tempdir().unwrap();
    let lite = project(lite_dir.path(), None);
    let store = shopscribe::store::sqlite::SqliteStore::open(&lite.store_url)
        .await
        .unwrap();
    shopscribe::demo::load_rows(store.pool(), &rows)
        .await
        .unwrap();
    let pg_dir = tempfile::tempdir().unwrap();
    let pg = project(pg_dir.path(), Some(&db.url));

    let job = lite.job("domain_summaries").unwrap();
    let a = shopscribe::run::load_entities(&lite, job).await.unwrap();
    let b = shopscribe::run::load_entities(&pg, job).await.unwrap();
    assert_eq!(a.len(), 400);
    assert_eq!(a.keys, b.keys);
    assert!((0..a.len()).all(|i| a.group(i) == b.group(i)));
    for (m, (ca, cb)) in a.input.metrics.iter().zip(&b.input.metrics).enumerate() {
        for (i, (x, y)) in ca.iter().zip(cb).enumerate() {
            let same = (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-9 * x.abs().max(1.0);
            assert!(same, "metric {m} of {}: {x} vs {y}", a.keys[i]);
        }
    }
    let offline = shopscribe::llm::offline::OfflineWriter::new();
    let pa = shopscribe::plan::make_plan(job, a, &HashMap::new(), &offline, false);
    let pb = shopscribe::plan::make_plan(job, b, &HashMap::new(), &offline, false);
    let ctx = |p: &shopscribe::plan::Plan| {
        p.work
            .iter()
            .map(|w| w.context.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ctx(&pa),
        ctx(&pb),
        "identical prompt contexts (features) on both databases"
    );
    assert_eq!(
        pa.hashes, pb.hashes,
        "and identical input hashes: moving the warehouse re-spends nothing"
    );
}

#[tokio::test]
async fn as_of_is_bound_and_types_are_read() {
    let db = TestDb::new().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    sqlx::query("CREATE TABLE snap (domain TEXT, visits NUMERIC(12,3), seen DATE, at TIMESTAMPTZ, ok BOOLEAN, n SMALLINT)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO snap VALUES ('a.com', 1234.5, '2026-10-01', '2026-10-01 12:00:00+00', true, 3), \
         ('b.com', -7.25, '2026-11-15', '2026-11-15 08:30:00+00', false, 4)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut p = project(dir.path(), Some(&db.url));
    let mut job = p.jobs["domain_summaries"].clone();
    job.sql = "SELECT domain, visits, seen, at, ok, n, visits AS orders, visits AS revenue, visits AS conversion_rate, \
               visits AS average_order_value, visits AS revenue_per_visit, visits AS revenue_growth_yoy, \
               visits AS orders_growth_yoy, visits AS returning_share, visits AS mobile_share, 'x' AS category, \
               'US' AS country, 12 AS months_reported \
               FROM snap WHERE at <= CAST(:as_of AS TIMESTAMPTZ) ORDER BY domain"
        .into();
    // The example's data checks read `domain_monthly`, which this source does not have.
    job.checks.clear();
    job.attributes = vec![
        "seen".into(),
        "at".into(),
        "ok".into(),
        "n".into(),
        "country".into(),
    ];
    p.jobs.insert("domain_summaries".into(), job.clone());
    let e = shopscribe::run::load_entities_as_of(&p, &job, "2026-11-01T00:00:00.000Z")
        .await
        .unwrap();
    assert_eq!(e.keys, vec!["a.com"], ":as_of filters");
    assert_eq!(e.input.metrics[0], vec![1234.5]);
    let attrs = &e.attributes(0);
    assert_eq!(attrs["seen"], "2026-10-01");
    assert_eq!(attrs["at"], "2026-10-01T12:00:00.000Z");
    assert_eq!(attrs["ok"], 1);
    assert_eq!(attrs["n"], 3);
    let e = shopscribe::run::load_entities_as_of(&p, &job, "2026-12-01T00:00:00.000Z")
        .await
        .unwrap();
    assert_eq!(e.keys, vec!["a.com", "b.com"]);
    assert_eq!(e.input.metrics[0][1], -7.25);
}

#[tokio::test]
async fn a_bad_source_query_names_the_file_the_message_and_the_line() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = project(dir.path(), Some(&db.url));
    let mut job = p.jobs["domain_summaries"].clone();
    job.sql = "SELECT domain,\n       visits\nFROM domain_monthy\nWHERE 1 = 1".into();
    p.jobs.insert("domain_summaries".into(), job.clone());
    let err = shopscribe::run::load_entities(&p, &job)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("domain_summaries.sql"), "{err}");
    assert!(
        err.contains("relation \"domain_monthy\" does not exist"),
        "{err}"
    );
    assert!(err.contains("line 3, column 6"), "{err}");

    // A statement timeout turns a runaway query into an error, not a hang.
    p.source.statement_timeout = std::time::Duration::from_millis(200);
    job.sql = "SELECT 'a' AS domain, pg_sleep(5)".into();
    let t = std::time::Instant::now();
    let err = shopscribe::run::load_entities(&p, &job)
        .await
        .unwrap_err()
        .to_string();
    assert!(t.elapsed() < std::time::Duration::from_secs(3), "{err}");
    assert!(err.contains("statement timeout"), "{err}");

    // The source session is read-only.
    job.sql = "CREATE TABLE sneaky (x int)".into();
    let err = shopscribe::run::load_entities(&p, &job)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("read-only"), "{err}");

    // Unreachable source.
    p.source.url = Some("postgres://postgres@127.0.0.1:1/nope".into());
    let err = shopscribe::run::load_entities(&p, &job)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot connect to the source database"),
        "{err}"
    );
}
