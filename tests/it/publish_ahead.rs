//! Pages are published while the run is still generating (`run::ahead`), through the binary: a
//! slow real-time run against the mock has entity pages on disk before it ends, and the site it
//! leaves is the one a publish after generation writes: every page, a manifest listing each,
//! sitemaps, a clean `check-site`, and pages whose neighbours failed rewritten with the final
//! related links.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test fixtures and expectations computed from small counts"
)]

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::mock_openai::{MockConfig, MockServer, domain_summary_responder};

const DOMAINS: usize = 120;

fn project(dir: &Path) {
    shopscribe::demo::write_project(dir, true).unwrap();
}

async fn store(dir: &Path) -> String {
    let url = format!("sqlite://{}", dir.join("shopscribe.db").display());
    let s = shopscribe::store::sqlite::SqliteStore::open(&url)
        .await
        .unwrap();
    let rows = shopscribe::demo::sample_rows(DOMAINS, 13);
    shopscribe::demo::load_rows(s.pool(), &rows).await.unwrap();
    url
}

fn shopscribe(dir: &Path, url: &str, server: &MockServer, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shopscribe"));
    c.args(args)
        .arg("--project")
        .arg(dir)
        .env("SHOPSCRIBE_STORE_URL", url)
        .env("SHOPSCRIBE_LLM_PROVIDER", "openai")
        .env("SHOPSCRIBE_LLM_BASE_URL", &server.base_url)
        .env("OPENAI_API_KEY", "test-key")
        .env("RUST_LOG", "shopscribe=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn entity_pages(site: &Path) -> usize {
    std::fs::read_dir(site.join("domain_summaries"))
        .map(|d| {
            d.filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.ends_with(".html") && n != "index.html"
            })
            .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_written_while_the_run_generates_and_the_site_is_complete_after() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let url = store(dir.path()).await;
    // 120 entities at 40/s, 100 ms each: about three seconds of generation. The entities whose
    // name `fails` only ever get answers that break the schema: they end invalid, so the pages
    // next to them, written ahead with links to them, must be written again without.
    let server = MockServer::start(MockConfig {
        latency: Duration::from_millis(100),
        requests_per_minute: Some(2400.0),
        responder: Arc::new(|body| {
            let user = body["messages"][1]["content"].as_str().unwrap_or("");
            if fails(user.lines().next().unwrap_or("")) {
                r#"{"title": 42}"#.to_string()
            } else {
                domain_summary_responder(body)
            }
        }),
        ..Default::default()
    })
    .await;
    let site = dir.path().join("site");
    let mut child = shopscribe(dir.path(), &url, &server, &["run", "domain_summaries"])
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut pages_while_sending = 0;
    let mut manifest_while_running = false;
    while child.try_wait().unwrap().is_none() {
        let n = entity_pages(&site);
        if server.seen().len() < DOMAINS {
            pages_while_sending = pages_while_sending.max(n);
        }
        manifest_while_running |= site.join("domain_summaries/manifest.json").exists();
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the run did not end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().unwrap();
    let failed: std::collections::HashSet<String> = server
        .seen()
        .iter()
        .map(|s| s.input.clone())
        .filter(|i| fails(i))
        .collect();
    assert!(!failed.is_empty(), "some entities must fail for this test");
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Partial (exit 1): the failing entities are failed, everything else is published.
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("failed     {:>8}", failed.len())),
        "{said}"
    );
    assert!(
        pages_while_sending >= 20,
        "pages appear while requests are still being sent: {pages_while_sending}\n{said}"
    );
    // The manifest may exist only at the very end (the final publish writes it last).
    let _ = manifest_while_running;
    assert!(said.contains("pages written while generating"), "{said}");

    // The site is complete and consistent: every good entity has its page, the manifest lists
    // exactly those, and check-site finds nothing wrong (every related link resolves, although
    // two entities the run expected failed).
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.join("domain_summaries/manifest.json")).unwrap(),
    )
    .unwrap();
    let listed = manifest["entities"].as_array().unwrap().len();
    assert_eq!(listed, DOMAINS - failed.len(), "{said}");
    assert_eq!(entity_pages(&site), DOMAINS - failed.len());
    let check = Command::new(env!("CARGO_BIN_EXE_shopscribe"))
        .args(["check-site", "--project"])
        .arg(dir.path())
        .env("SHOPSCRIBE_STORE_URL", &url)
        .output()
        .unwrap();
    let check_said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{check_said}");

    // A second run writes nothing: the pages written ahead are the final ones.
    let again = shopscribe(dir.path(), &url, &server, &["run", "domain_summaries"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    let again_said = String::from_utf8_lossy(&again.stderr).to_string();
    // It retries the failed entities (which fail again) and rewrites no page.
    assert!(again_said.contains("site published"), "{again_said}");
    assert!(again_said.contains(" written=0 "), "{again_said}");
}

/// The entities this test's mock never answers well (about one in eight, by name).
fn fails(first_line: &str) -> bool {
    first_line.bytes().map(u32::from).sum::<u32>() % 8 == 0
}
