//! The near-duplicate gate of a run, through the real binary, the mock OpenAI server and the
//! store on SQLite and PostgreSQL: pages whose text duplicates another page of the run are
//! regenerated with a variation instruction; a model that keeps answering duplicates gets its
//! pages published `noindex`, out of the sitemap, with the reason in the summary and the report,
//! and a later run keeps them so without paying again; `check-site` reports the figures, passes
//! the `noindex` pages and fails an indexable duplicate.

use crate::support;

use serde_json::{Value, json};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use support::mock_openai::{MockConfig, MockServer, domain_summary_responder};

const ENTITIES: usize = 12;
/// Part of the variation instruction the gate adds to a regeneration's prompt.
const INSTRUCTION: &str = "too similar to another page of this site";

/// The same wording for every entity (only the name differs, and names are masked); with
/// `obey`, a regeneration asked for a different text gets the entity's own varied text.
fn duplicating(obey: bool) -> impl Fn(&Value) -> String + Send + Sync {
    move |body: &Value| {
        let user = body["messages"][1]["content"].as_str().unwrap_or("");
        if obey && user.contains(INSTRUCTION) {
            return domain_summary_responder(body);
        }
        let name = user
            .lines()
            .next()
            .and_then(|l| l.split_once(": "))
            .map_or("this shop", |(_, n)| n)
            .trim()
            .to_string();
        let same = json!({"messages": [{}, {"content": "Domain: SAMENAME"}]});
        domain_summary_responder(&same).replace("SAMENAME", &name)
    }
}

fn run(dir: &Path, store: &str, server: &MockServer, args: &[&str]) -> Output {
    support::cli::with_mock(dir, store, &server.base_url, args)
        .output()
        .unwrap()
}

fn variations(server: &MockServer) -> usize {
    server
        .seen()
        .iter()
        .filter(|s| {
            s.body["messages"][1]["content"]
                .as_str()
                .is_some_and(|u| u.contains(INSTRUCTION))
        })
        .count()
}

fn site_file(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("site/domain_summaries").join(name)).unwrap_or_default()
}

async fn setup(
    postgres: bool,
    obey: bool,
) -> (
    tempfile::TempDir,
    String,
    Option<support::pg::TestDb>,
    MockServer,
) {
    let dir = tempfile::tempdir().unwrap();
    shopscribe::demo::write_project(dir.path(), true).unwrap();
    let (url, db) = support::sample_store(postgres, dir.path(), ENTITIES, 21).await;
    let server = MockServer::start(MockConfig {
        responder: Arc::new(duplicating(obey)),
        ..Default::default()
    })
    .await;
    (dir, url, db, server)
}

async fn duplicates_are_regenerated_with_a_variation_instruction(postgres: bool) {
    let (dir, url, _db, server) = setup(postgres, true).await;
    let out = run(dir.path(), &url, &server, &["run", "domain_summaries"]);
    let said = support::cli::text(&out);
    assert!(out.status.success(), "{said}");
    // All twelve alike: the first in key order stays, the other eleven are asked once more, and
    // their new texts differ.
    assert_eq!(server.seen().len(), ENTITIES + ENTITIES - 1, "{said}");
    assert_eq!(variations(&server), ENTITIES - 1);
    assert!(
        said.contains("varied     ") && said.contains("11 calls"),
        "{said}"
    );
    assert!(!said.contains("noindex    "), "{said}");
    let sitemap = site_file(dir.path(), "sitemap-1.xml");
    let pages = std::fs::read_dir(dir.path().join("site/domain_summaries"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".html") && n != "index.html")
        .collect::<Vec<_>>();
    assert_eq!(pages.len(), ENTITIES);
    for p in &pages {
        assert!(sitemap.contains(p.as_str()), "{p} in the sitemap");
        assert!(!site_file(dir.path(), p).contains("noindex"), "{p}");
    }
    assert_eq!(
        support::cli::scalar(&url, "SELECT count(*) FROM generations WHERE status = 'ok'").await,
        (ENTITIES + ENTITIES - 1) as i64,
        "every paid answer is stored"
    );
}

async fn persistent_duplicates_are_published_noindex(postgres: bool) {
    let (dir, url, _db, server) = setup(postgres, false).await;
    let out = run(dir.path(), &url, &server, &["run", "domain_summaries"]);
    let said = support::cli::text(&out);
    assert!(out.status.success(), "{said}");
    let dup = ENTITIES - 1;
    assert_eq!(
        server.seen().len(),
        ENTITIES + 2 * dup,
        "two variations each: {said}"
    );
    assert_eq!(variations(&server), 2 * dup);
    assert!(said.contains(&format!("{} calls", 2 * dup)), "{said}");
    assert!(said.contains("noindex          11"), "{said}");
    assert!(said.contains("after 2 variation(s)"), "{said}");

    let manifest: Value = serde_json::from_str(&site_file(dir.path(), "manifest.json")).unwrap();
    let slugs: Vec<String> = manifest["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["slug"].as_str().unwrap().to_string())
        .collect();
    let sitemap = site_file(dir.path(), "sitemap-1.xml");
    let noindex: Vec<&String> = slugs
        .iter()
        .filter(|s| {
            site_file(dir.path(), &format!("{s}.html"))
                .contains(r#"<meta name="robots" content="noindex">"#)
        })
        .collect();
    assert_eq!(noindex.len(), dup);
    for s in &slugs {
        let listed = sitemap.contains(&format!("/{s}.html<"));
        assert_eq!(
            listed,
            !noindex.contains(&s),
            "{s}: only indexable pages in the sitemap"
        );
    }

    // The report keeps the reasons; check-site passes the noindex pages and gives the figures.
    let out = run(
        dir.path(),
        &url,
        &server,
        &["report", "--out", dir.path().join("r").to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", support::cli::text(&out));
    let report = std::fs::read_dir(dir.path().join("r"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .unwrap();
    let report: Value = serde_json::from_slice(&std::fs::read(report.path()).unwrap()).unwrap();
    let marks = report["similarity"]["noindex"].as_object().unwrap();
    assert_eq!(marks.len(), dup);
    assert!(marks.values().all(|m| {
        m["reason"]
            .as_str()
            .unwrap()
            .contains("similar to the page of")
    }));
    assert_eq!(report["similarity"]["calls"], 2 * dup as u64);
    let html = std::fs::read_dir(dir.path().join("r"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with(".html"))
        .unwrap();
    assert!(
        std::fs::read_to_string(html.path())
            .unwrap()
            .contains("Near-duplicates")
    );

    let check = run(dir.path(), &url, &server, &["check-site"]);
    let said = support::cli::text(&check);
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains("clean") && said.contains("11 noindex"),
        "{said}"
    );
    assert!(
        said.contains("max 1.00") && said.contains("  1.000  "),
        "worst pairs: {said}"
    );

    // Nothing changed: nothing paid, the marks stay.
    let before = server.seen().len();
    let out = run(dir.path(), &url, &server, &["run", "domain_summaries"]);
    assert!(out.status.success(), "{}", support::cli::text(&out));
    assert_eq!(server.seen().len(), before);
    let still = slugs
        .iter()
        .filter(|s| site_file(dir.path(), &format!("{s}.html")).contains("noindex"))
        .count();
    assert_eq!(still, dup);

    // An indexable duplicate is a problem that names it.
    let victim = format!("{}.html", noindex[0]);
    let path = dir.path().join("site/domain_summaries").join(&victim);
    let page = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        page.replace(r#"<meta name="robots" content="noindex">"#, ""),
    )
    .unwrap();
    let check = run(dir.path(), &url, &server, &["check-site"]);
    let said = support::cli::text(&check);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(
        said.lines()
            .any(|l| l.contains("near_duplicate") && l.contains(&victim)),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_regenerated_with_a_variation_instruction_sqlite() {
    duplicates_are_regenerated_with_a_variation_instruction(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_regenerated_with_a_variation_instruction_postgres() {
    duplicates_are_regenerated_with_a_variation_instruction(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_duplicates_are_published_noindex_sqlite() {
    persistent_duplicates_are_published_noindex(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_duplicates_are_published_noindex_postgres() {
    persistent_duplicates_are_published_noindex(true).await;
}
