//! A bad upstream never shrinks the site, and two projects never remove each other's pages:
//! the `shopscribe` binary on the example project (offline writer), its store on SQLite and on a
//! real PostgreSQL.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::pg::{TestDb, load_pg};

/// Where a test project keeps its store (and its job's source table).
enum Backend {
    Sqlite(sqlx::SqlitePool),
    Postgres(TestDb, sqlx::PgPool),
}

impl Backend {
    /// A store for the example project in `dir`, holding `domains` sample domains.
    async fn new(postgres: bool, dir: &Path, domains: usize) -> Backend {
        let rows = shopscribe::demo::sample_rows(domains, 5);
        if postgres {
            let db = TestDb::new().await;
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            load_pg(&pool, &rows).await;
            Backend::Postgres(db, pool)
        } else {
            let url = format!("sqlite://{}", dir.join("shopscribe.db").display());
            let store = shopscribe::store::sqlite::SqliteStore::open(&url)
                .await
                .unwrap();
            shopscribe::demo::load_rows(store.pool(), &rows)
                .await
                .unwrap();
            Backend::Sqlite(store.pool().clone())
        }
    }

    fn store_url(&self) -> Option<&str> {
        match self {
            Backend::Sqlite(_) => None,
            Backend::Postgres(db, _) => Some(&db.url),
        }
    }

    /// Loads the `domains` sample domains again (the same ones: the same seed).
    async fn reload(&self, domains: usize) {
        let rows = shopscribe::demo::sample_rows(domains, 5);
        match self {
            Backend::Sqlite(p) => shopscribe::demo::load_rows(p, &rows).await.unwrap(),
            Backend::Postgres(_, p) => {
                sqlx::query("DROP TABLE domain_monthly")
                    .execute(p)
                    .await
                    .unwrap();
                load_pg(p, &rows).await;
            }
        }
    }

    /// Removes the source rows of all but `keep` domains (in domain order).
    async fn keep_domains(&self, keep: usize) {
        let sql = format!(
            "DELETE FROM domain_monthly WHERE domain NOT IN \
             (SELECT domain FROM (SELECT DISTINCT domain FROM domain_monthly ORDER BY domain LIMIT {keep}) k)"
        );
        match self {
            Backend::Sqlite(p) => sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .map(drop),
            Backend::Postgres(_, p) => sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .map(drop),
        }
        .unwrap();
    }
}

/// The example project in `dir` (offline writer), publishing into `site`.
fn project(dir: &Path) {
    shopscribe::demo::write_project(dir, true).unwrap();
}

fn shopscribe(dir: &Path, backend: &Backend, site: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shopscribe"));
    c.args(args)
        .arg("--project")
        .arg(dir)
        .env_remove("OPENAI_API_KEY")
        .env("SHOPSCRIBE_LLM_PROVIDER", "offline")
        .env("SHOPSCRIBE_PUBLISH_URL", site)
        .env("RUST_LOG", "shopscribe=warn");
    match backend.store_url() {
        Some(url) => c.env("SHOPSCRIBE_STORE_URL", url),
        None => c.env_remove("SHOPSCRIBE_STORE_URL"),
    };
    c.output().expect("start shopscribe")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The site's files under `job/` with their bytes, in name order.
fn files(site: &Path, job: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(site.join(job))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn pages(site: &Path, job: &str) -> usize {
    files(site, job)
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|x| x == "html") && !p.ends_with("index.html"))
        .count()
}

async fn an_empty_or_collapsed_source_removes_nothing(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    project(dir.path());
    let backend = Backend::new(postgres, dir.path(), 40).await;
    let run = |args: &[&str]| shopscribe(dir.path(), &backend, &site, args);

    let first = run(&["run", "domain_summaries"]);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(pages(&site, "domain_summaries"), 40);
    let published = files(&site, "domain_summaries");

    // A broken upstream: the job's SQL returns nothing. The run fails before spending anything,
    // and every file of the site stays as it was.
    backend.keep_domains(0).await;
    let empty = run(&["run", "domain_summaries"]);
    assert_eq!(empty.status.code(), Some(1), "{}", text(&empty));
    assert!(
        text(&empty).contains("returned no entities"),
        "{}",
        text(&empty)
    );
    assert_eq!(files(&site, "domain_summaries"), published);
    let plan = run(&["plan", "domain_summaries"]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(text(&plan).contains("A run would fail"), "{}", text(&plan));

    // A collapsed upstream: 10 of 40 left, 75 % would disappear (the default allows 50 %).
    backend.reload(40).await;
    backend.keep_domains(10).await;
    let collapsed = run(&["run", "domain_summaries"]);
    assert_eq!(collapsed.status.code(), Some(1), "{}", text(&collapsed));
    assert!(
        text(&collapsed).contains("30 of the 40 published pages (75 %) would be removed"),
        "{}",
        text(&collapsed)
    );
    assert!(text(&collapsed).contains("--allow-shrink"));
    assert_eq!(files(&site, "domain_summaries"), published);

    // A real shrink, accepted: the vanished entities' pages go, and the run says which.
    let accepted = run(&["run", "domain_summaries", "--allow-shrink"]);
    assert!(accepted.status.success(), "{}", text(&accepted));
    assert_eq!(pages(&site, "domain_summaries"), 10);
    let out = text(&accepted);
    assert!(
        out.contains("removed          30  pages of entities no longer in the source"),
        "{out}"
    );

    // A small shrink (1 of 10) is within the default share and needs no flag.
    backend.keep_domains(9).await;
    let small = run(&["run", "domain_summaries"]);
    assert!(small.status.success(), "{}", text(&small));
    assert_eq!(pages(&site, "domain_summaries"), 9);
    assert!(text(&small).contains("removed           1  pages"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_collapsed_source_removes_nothing_sqlite() {
    an_empty_or_collapsed_source_removes_nothing(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_collapsed_source_removes_nothing_postgres() {
    an_empty_or_collapsed_source_removes_nothing(true).await;
}

async fn two_projects_in_one_folder_never_remove_each_others_pages(postgres: bool) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let shared = tempfile::tempdir().unwrap();
    let site = shared.path().join("site");
    project(a.path());
    project(b.path());
    let store_a = Backend::new(postgres, a.path(), 30).await;
    let store_b = Backend::new(postgres, b.path(), 12).await;

    let first = shopscribe(a.path(), &store_a, &site, &["run", "domain_summaries"]);
    assert!(first.status.success(), "{}", text(&first));
    // A file of the folder that no publish wrote: never touched.
    let foreign = site.join("domain_summaries").join("notes.html");
    std::fs::write(&foreign, "kept").unwrap();
    let published = files(&site, "domain_summaries");

    // Project B publishes the same job into the same folder: refused, with both named, and
    // nothing of A's removed or rewritten.
    let second = shopscribe(b.path(), &store_b, &site, &["run", "domain_summaries"]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let out = text(&second);
    assert!(out.contains("published by another project"), "{out}");
    assert_eq!(files(&site, "domain_summaries"), published);
    let plan = shopscribe(b.path(), &store_b, &site, &["plan", "domain_summaries"]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(text(&plan).contains("published by another project"));

    // A's own shrink removes only pages its manifest lists: the foreign file stays.
    store_a.keep_domains(20).await;
    let shrink = shopscribe(
        a.path(),
        &store_a,
        &site,
        &["run", "domain_summaries", "--allow-shrink"],
    );
    assert!(shrink.status.success(), "{}", text(&shrink));
    assert_eq!(
        pages(&site, "domain_summaries"),
        21,
        "20 pages + notes.html"
    );
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "kept");

    // Two projects with different jobs share a folder without trouble.
    std::fs::write(
        b.path().join("shopscribe.toml"),
        std::fs::read_to_string(b.path().join("shopscribe.toml"))
            .unwrap()
            .replace("jobs.domain_summaries", "jobs.shop_pages"),
    )
    .unwrap();
    let other = shopscribe(b.path(), &store_b, &site, &["run", "shop_pages"]);
    assert!(other.status.success(), "{}", text(&other));
    assert_eq!(pages(&site, "shop_pages"), 12);
    assert_eq!(pages(&site, "domain_summaries"), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projects_in_one_folder_never_remove_each_others_pages_sqlite() {
    two_projects_in_one_folder_never_remove_each_others_pages(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projects_in_one_folder_never_remove_each_others_pages_postgres() {
    two_projects_in_one_folder_never_remove_each_others_pages(true).await;
}

async fn a_run_whose_publish_fails_records_what_it_generated(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    project(dir.path());
    let backend = Backend::new(postgres, dir.path(), 15).await;
    // The job's index cannot be written (a folder is in its way): the publish fails after every
    // text was generated and stored.
    std::fs::create_dir_all(site.join("domain_summaries/index.html")).unwrap();
    let failed = shopscribe(dir.path(), &backend, &site, &["run", "domain_summaries"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let out = text(&failed);
    assert!(out.contains("publishing failed"), "{out}");
    assert!(out.contains("generated        15"), "{out}");
    let report = shopscribe(dir.path(), &backend, &site, &["report", "1"]);
    assert!(report.status.success(), "{}", text(&report));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("reports/report-1.json")).unwrap())
            .unwrap();
    assert_eq!(json["run"]["status"], "failed", "{json}");
    assert_eq!(json["run"]["generated"], 15, "{json}");

    // Out of the way, the next run publishes them without generating anything.
    std::fs::remove_dir(site.join("domain_summaries/index.html")).unwrap();
    let next = shopscribe(dir.path(), &backend, &site, &["run", "domain_summaries"]);
    assert!(next.status.success(), "{}", text(&next));
    assert!(
        text(&next).contains("generated         0"),
        "{}",
        text(&next)
    );
    assert_eq!(pages(&site, "domain_summaries"), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_publish_fails_records_what_it_generated_sqlite() {
    a_run_whose_publish_fails_records_what_it_generated(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_publish_fails_records_what_it_generated_postgres() {
    a_run_whose_publish_fails_records_what_it_generated(true).await;
}

/// Entity keys `index` and `manifest` never overwrite the job's listing and manifest, and the
/// temporary files a killed publish left (`NAME#N`) are removed by the next one.
async fn reserved_names_and_leftover_temporaries(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    project(dir.path());
    let backend = Backend::new(postgres, dir.path(), 12).await;
    let rename = |from: &str, to: &str| {
        format!(
            "UPDATE domain_monthly SET domain = '{to}' WHERE domain = (SELECT min(domain) FROM domain_monthly WHERE domain > '{from}')"
        )
    };
    for sql in [
        rename("", "index"),
        rename("index", "manifest"),
        rename("manifest", "Index"),
    ] {
        match &backend {
            Backend::Sqlite(p) => sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .map(drop),
            Backend::Postgres(_, p) => sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .map(drop),
        }
        .unwrap();
    }
    std::fs::create_dir_all(site.join("domain_summaries")).unwrap();
    for leftover in [
        "domain_summaries/a.com.html#1",
        "domain_summaries/manifest.json#12",
        "index.html#3",
    ] {
        std::fs::write(site.join(leftover), "half a file").unwrap();
    }
    let run = shopscribe(dir.path(), &backend, &site, &["run", "domain_summaries"]);
    assert!(run.status.success(), "{}", text(&run));
    let listing = std::fs::read_to_string(site.join("domain_summaries/index.html")).unwrap();
    assert!(
        listing.contains(">index<") && listing.contains(">manifest<"),
        "{listing}"
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.join("domain_summaries/manifest.json")).unwrap(),
    )
    .unwrap();
    let slugs: Vec<&str> = manifest["entities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| ["index", "manifest", "Index"].contains(&e["key"].as_str().unwrap()))
        .map(|e| e["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs.len(), 3, "{manifest}");
    for s in slugs {
        assert!(s.len() > "manifest".len() && s.contains('-'), "hashed: {s}");
        assert!(site.join(format!("domain_summaries/{s}.html")).exists());
    }
    let names: Vec<String> = std::fs::read_dir(site.join("domain_summaries"))
        .unwrap()
        .chain(std::fs::read_dir(&site).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains('#')), "{names:?}");
    assert_eq!(pages(&site, "domain_summaries"), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_names_and_leftover_temporaries_sqlite() {
    reserved_names_and_leftover_temporaries(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_names_and_leftover_temporaries_postgres() {
    reserved_names_and_leftover_temporaries(true).await;
}
