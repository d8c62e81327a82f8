//! Data checks through the binary, on a SQLite and a PostgreSQL source: a project whose source
//! has an absurd month (orders three times the visits), a month of −$5M revenue, a zero-visit
//! month with orders, an inflated base (10^12 visits) and a 170 % share. `plan` counts the
//! checks, `run` excludes exactly those domains (the share one is only flagged), none of them
//! gets a page, and a `fail_run` check stops the run before anything is generated. Without the
//! checks, the same data would call the absurd domains "top 10 %" / "bottom 10 %".

use crate::support;

use shopscribe::demo::MonthRow;
use std::path::Path;
use std::process::{Command, Output};
use support::pg::TestDb;

fn shopscribe(args: &[&str], source_url: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shopscribe"));
    c.args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("SHOPSCRIBE_STORE_URL")
        .env_remove("SHOPSCRIBE_PUBLISH_URL")
        .env_remove("SHOPSCRIBE_LLM_PROVIDER")
        .env_remove("SHOPSCRIBE_SOURCE_URL");
    if let Some(url) = source_url {
        c.env("SHOPSCRIBE_SOURCE_URL", url);
    }
    c.output().expect("run shopscribe")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The domains given an absurd month, by what is wrong with them.
struct Bad {
    orders_above_visits: String,
    negative_revenue: String,
    zero_visits: String,
    inflated: String,
    share: String,
}

/// Clean sample rows (the generator's own absurd values repaired), then one absurd month for
/// each of five chosen domains.
fn rows() -> (Vec<MonthRow>, Bad) {
    let mut rows = shopscribe::demo::sample_rows(80, 21);
    for r in &mut rows {
        if r.visits > 100_000_000_000 || r.visits <= 0 {
            r.visits = 10_000;
        }
        if r.orders > r.visits || r.orders < 0 {
            r.orders = r.visits / 50;
        }
        if r.revenue < 0.0 {
            r.revenue = r.revenue.abs() / 50.0;
        }
        r.mobile_share = r.mobile_share.map(|s| s.clamp(0.0, 1.0));
        r.returning_share = r.returning_share.map(|s| s.clamp(0.0, 1.0));
    }
    let mut domains: Vec<String> = rows.iter().map(|r| r.domain.clone()).collect();
    domains.sort();
    domains.dedup();
    let pick = |i: usize| domains[i * 11 % domains.len()].clone();
    let bad = Bad {
        orders_above_visits: pick(1),
        negative_revenue: pick(2),
        zero_visits: pick(3),
        inflated: pick(4),
        share: pick(5),
    };
    let first = |rows: &[MonthRow], d: &str| rows.iter().position(|r| r.domain == d).unwrap();
    let i = first(&rows, &bad.orders_above_visits);
    rows[i].orders = rows[i].visits * 3;
    let i = first(&rows, &bad.negative_revenue);
    rows[i].revenue = -5_000_000.0;
    let i = first(&rows, &bad.zero_visits);
    rows[i].orders = rows[i].orders.max(12);
    rows[i].visits = 0;
    let i = first(&rows, &bad.inflated);
    rows[i].visits = 1_000_000_000_000;
    let i = first(&rows, &bad.share);
    rows[i].mobile_share = Some(1.7);
    (rows, bad)
}

/// The example's checks, which only warn (its SQL already drops absurd months), made to
/// exclude, except the last one (`shares_out_of_range`), which stays a warning.
fn excluding(dir: &Path) {
    let path = dir.join("shopscribe.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let (head, last) = toml.rsplit_once("on_fail = \"warn\"").unwrap();
    let toml = head.replace("on_fail = \"warn\"", "on_fail = \"exclude_entity\"")
        + "on_fail = \"warn\""
        + last;
    std::fs::write(&path, toml).unwrap();
}

/// `rows` with the absurd months deleted and out-of-range shares set to NULL.
fn rows_without_absurd_months(rows: &[MonthRow]) -> (Vec<MonthRow>, usize) {
    let mut out: Vec<MonthRow> = rows
        .iter()
        .filter(|r| {
            r.visits >= 0
                && r.orders >= 0
                && r.revenue >= 0.0
                && r.orders <= r.visits
                && r.visits <= 100_000_000_000
        })
        .cloned()
        .collect();
    let dropped = rows.len() - out.len();
    for r in &mut out {
        r.mobile_share = r.mobile_share.filter(|s| (0.0..=1.0).contains(s));
        r.returning_share = r.returning_share.filter(|s| (0.0..=1.0).contains(s));
    }
    (out, dropped)
}

/// The example project in `dir`, its `domain_monthly` in the project's own SQLite store.
async fn sqlite_project(dir: &Path, rows: &[MonthRow]) {
    shopscribe::demo::write_project(dir, true).unwrap();
    let p = shopscribe::config::load_with_env(dir, &|_| None).unwrap();
    let store = shopscribe::store::sqlite::SqliteStore::open(&p.store_url)
        .await
        .unwrap();
    shopscribe::demo::load_rows(store.pool(), rows)
        .await
        .unwrap();
}

/// `domain_monthly` in PostgreSQL, with BIGINT counts (10^12 visits do not fit an INTEGER).
async fn load_pg(url: &str, rows: &[MonthRow]) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query(
        "CREATE TABLE domain_monthly (domain TEXT NOT NULL, category TEXT, country TEXT NOT NULL, \
         year INTEGER NOT NULL, month INTEGER NOT NULL, visits BIGINT, orders BIGINT, revenue DOUBLE PRECISION, \
         returning_share DOUBLE PRECISION, mobile_share DOUBLE PRECISION, PRIMARY KEY (domain, year, month))",
    )
    .execute(&pool)
    .await
    .unwrap();
    for chunk in rows.chunks(500) {
        let mut qb = sqlx::QueryBuilder::new(
            "INSERT INTO domain_monthly (domain, category, country, year, month, visits, orders, revenue, returning_share, mobile_share) ",
        );
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(&r.domain)
                .push_bind(&r.category)
                .push_bind(&r.country)
                .push_bind(r.year)
                .push_bind(r.month)
                .push_bind(r.visits)
                .push_bind(r.orders)
                .push_bind(r.revenue)
                .push_bind(r.returning_share)
                .push_bind(r.mobile_share);
        });
        qb.build().execute(&pool).await.unwrap();
    }
    pool.close().await;
}

/// The `check NAME (…)` line of a plan or run summary.
fn check_line<'a>(out: &'a str, name: &str) -> &'a str {
    let needle = format!("check `{name}` (");
    out.lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no line for check {name} in:\n{out}"))
}

/// Every file of the published site that is `key`'s page or names it (as a JSON string, a link).
fn site_files_naming(site: &Path, key: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![site.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_stem().is_some_and(|s| s == key)
                || std::fs::read_to_string(&p).is_ok_and(|t| {
                    t.contains(&format!("\"{key}\"")) || t.contains(&format!("/{key}.html"))
                })
            {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

/// `plan` and `run` with the example's checks: exactly the four absurd domains are excluded,
/// the share one flagged; none of the four is on the site, the flagged one is.
fn plan_and_run_exclude_exactly_the_absurd_domains(dir: &Path, bad: &Bad, source: Option<&str>) {
    let d = dir.to_str().unwrap();
    let out = shopscribe(&["plan", "domain_summaries", "--project", d], source);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("checks            5  run, 5 failing, 4 entities excluded"),
        "{t}"
    );
    for (name, key) in [
        ("orders_above_visits", &bad.orders_above_visits),
        ("negative_values", &bad.negative_revenue),
        ("zero_visit_months_with_orders", &bad.zero_visits),
        ("inflated_base", &bad.inflated),
    ] {
        let line = check_line(&t, name);
        assert!(
            line.ends_with(&format!(": 1 entity excluded, e.g. {key}")),
            "{line}"
        );
    }
    let line = check_line(&t, "shares_out_of_range");
    assert!(
        line.ends_with(&format!("(warn): 1 entity flagged, e.g. {}", bad.share)),
        "{line}"
    );
    assert!(
        t.contains("Plan for `domain_summaries` (76 entities"),
        "{t}"
    );

    let out = shopscribe(&["run", "domain_summaries", "--project", d], source);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("entities         76"), "{t}");
    assert!(t.contains("failed            0"), "{t}");
    assert!(
        t.contains("checks            5  run, 5 failing, 4 entities excluded"),
        "{t}"
    );
    assert!(check_line(&t, "inflated_base").ends_with(&format!("e.g. {}", bad.inflated)));
    let site = dir.join("site");
    for key in [
        &bad.orders_above_visits,
        &bad.negative_revenue,
        &bad.zero_visits,
        &bad.inflated,
    ] {
        let hits = site_files_naming(&site, key);
        assert!(hits.is_empty(), "{key} is on the site: {hits:?}");
    }
    assert!(
        site.join("domain_summaries")
            .join(format!("{}.json", bad.share))
            .exists(),
        "a flagged domain keeps its page"
    );

    // The run report lists the checks.
    let reports = dir.join("reports");
    let out = shopscribe(
        &["report", "--project", d, "--out", reports.to_str().unwrap()],
        source,
    );
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("report-1.json")).unwrap())
            .unwrap();
    assert_eq!(json["checks"]["excluded"], 4, "{json}");
    assert_eq!(json["checks"]["results"][3]["name"], "inflated_base");
    assert_eq!(
        json["checks"]["results"][3]["examples"][0],
        bad.inflated.as_str()
    );
    let html = std::fs::read_to_string(reports.join("report-1.html")).unwrap();
    assert!(html.contains("<h2>Data checks</h2>"), "{html}");
}

/// A `fail_run` check (inline SQL, `:as_of` bound) stops `plan` and `run` with exit 1 before
/// anything is generated, naming the check and the key.
fn a_fail_run_check_stops_the_run_before_generation(dir: &Path, bad: &Bad, source: Option<&str>) {
    let d = dir.to_str().unwrap();
    let path = dir.join("shopscribe.toml");
    let toml = std::fs::read_to_string(&path).unwrap()
        + r#"
[[jobs.domain_summaries.checks]]
name = "no_trillion_visits"
sql = "SELECT domain FROM domain_monthly WHERE visits > 100000000000 AND CAST(:as_of AS TEXT) <> ''"
on_fail = "fail_run"
"#;
    std::fs::write(&path, toml).unwrap();
    let out = shopscribe(&["plan", "domain_summaries", "--project", d], source);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "A run would fail: the data check `no_trillion_visits` of `domain_summaries` fails for 1 entity, e.g. {}",
            bad.inflated
        )),
        "{t}"
    );
    let out = shopscribe(&["run", "domain_summaries", "--project", d], source);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("the data check `no_trillion_visits`"), "{t}");
    assert!(
        t.contains("nothing was generated, published or removed"),
        "{t}"
    );
    assert!(!t.contains("generated  "), "no generation summary: {t}");
    assert!(
        !dir.join("site").exists()
            || std::fs::read_dir(dir.join("site"))
                .unwrap()
                .next()
                .is_none(),
        "nothing published"
    );
}

#[tokio::test]
async fn sqlite_checks_exclude_exactly_the_absurd_domains_and_fail_run_stops_the_run() {
    let (rows, bad) = rows();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    sqlite_project(&dir, &rows).await;
    excluding(&dir);
    plan_and_run_exclude_exactly_the_absurd_domains(&dir, &bad, None);

    let tmp2 = tempfile::tempdir().unwrap();
    let dir2 = tmp2.path().join("p");
    sqlite_project(&dir2, &rows).await;
    excluding(&dir2);
    a_fail_run_check_stops_the_run_before_generation(&dir2, &bad, None);
}

#[tokio::test]
async fn postgres_checks_exclude_exactly_the_absurd_domains_and_fail_run_stops_the_run() {
    let (rows, bad) = rows();
    let db = TestDb::new().await;
    load_pg(&db.url, &rows).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    shopscribe::demo::write_project(&dir, true).unwrap();
    excluding(&dir);
    plan_and_run_exclude_exactly_the_absurd_domains(&dir, &bad, Some(&db.url));

    let tmp2 = tempfile::tempdir().unwrap();
    let dir2 = tmp2.path().join("p");
    shopscribe::demo::write_project(&dir2, true).unwrap();
    excluding(&dir2);
    a_fail_run_check_stops_the_run_before_generation(&dir2, &bad, Some(&db.url));
}

/// The example itself only warns: its SQL treats an absurd month as a missing month, so every
/// domain keeps a page and no claim comes from the absurd month — each context (tiers, bins,
/// peers) is exactly the one the same rows give with those months deleted (the 170 % share set
/// to NULL). Then, switched to `exclude_entity`, the flagged domains' pages are removed, and a
/// check excluding (nearly) everything is stopped by the shrink guard.
#[tokio::test]
async fn the_example_sql_treats_absurd_months_as_missing_and_exclusion_removes_pages() {
    use shopscribe::llm::offline::OfflineWriter;
    let (rows, bad) = rows();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    sqlite_project(&dir, &rows).await;
    let d = dir.to_str().unwrap();
    let out = shopscribe(&["run", "domain_summaries", "--project", d], None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("entities         80"), "{t}");
    assert!(
        t.contains("checks            5  run, 5 failing, 0 entities excluded"),
        "{t}"
    );
    assert!(
        check_line(&t, "inflated_base")
            .ends_with(&format!("(warn): 1 entity flagged, e.g. {}", bad.inflated))
    );

    // The same rows without the absurd months.
    let (clean_rows, _) = rows_without_absurd_months(&rows);
    let tmp2 = tempfile::tempdir().unwrap();
    let clean = tmp2.path().join("p");
    sqlite_project(&clean, &clean_rows).await;
    let contexts = |dir: &Path| {
        let dir = dir.to_path_buf();
        async move {
            let p = shopscribe::config::load_with_env(&dir, &|_| None).unwrap();
            let job = p.job("domain_summaries").unwrap();
            let entities = shopscribe::run::load_entities(&p, job).await.unwrap();
            let plan = shopscribe::plan::make_plan(
                job,
                entities,
                &std::collections::HashMap::new(),
                &OfflineWriter::new(),
                false,
            );
            plan.work
                .iter()
                .map(|w| (plan.entities.keys[w.index].clone(), (*w.context).clone()))
                .collect::<std::collections::BTreeMap<_, _>>()
        }
    };
    let with_absurd = contexts(&dir).await;
    let without = contexts(&clean).await;
    assert_eq!(with_absurd.len(), 80);
    for key in [
        &bad.orders_above_visits,
        &bad.negative_revenue,
        &bad.zero_visits,
        &bad.inflated,
        &bad.share,
    ] {
        assert_eq!(with_absurd[key.as_str()], without[key.as_str()], "{key}");
    }
    assert_eq!(with_absurd, without, "peers are not distorted either");
    let path = dir.join("shopscribe.toml");

    // Excluding them now removes their published pages (they count as not in the source)…
    let toml = std::fs::read_to_string(&path)
        .unwrap()
        .replace("on_fail = \"warn\"", "on_fail = \"exclude_entity\"");
    std::fs::write(&path, &toml).unwrap();
    let out = shopscribe(&["run", "domain_summaries", "--project", d], None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("5 entities excluded"), "{t}");
    assert!(t.contains("removed           5  pages"), "{t}");
    for key in [&bad.orders_above_visits, &bad.inflated, &bad.share] {
        let hits = site_files_naming(&dir.join("site"), key);
        assert!(hits.is_empty(), "{key} is still on the site: {hits:?}");
    }
    // …and a check that would exclude the whole site is stopped like an empty source.
    let toml = toml
        + r#"
[[jobs.domain_summaries.checks]]
name = "everything"
sql = "SELECT domain FROM domain_monthly"
"#;
    std::fs::write(&path, toml).unwrap();
    let out = shopscribe(&["run", "domain_summaries", "--project", d], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("the data checks of `domain_summaries` excluded all 80 entities of its source: nothing was generated, published or removed"),
        "{t}"
    );
    // A check excluding most (not all) of the site: the shrink guard says the checks did it.
    let toml = std::fs::read_to_string(&path).unwrap().replace(
        "sql = \"SELECT domain FROM domain_monthly\"",
        "sql = \"SELECT domain FROM domain_monthly WHERE domain > 'c'\"",
    );
    std::fs::write(&path, toml).unwrap();
    let out = shopscribe(&["run", "domain_summaries", "--project", d], None);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("refusing to publish `domain_summaries`"), "{t}");
    assert!(
        t.contains("of the source were excluded by the job's data checks; `plan` lists them"),
        "{t}"
    );
    let kept = std::fs::read_dir(dir.join("site/domain_summaries"))
        .unwrap()
        .count();
    assert!(kept > 75 * 2, "nothing removed: {kept} files");
}
