//! The demo end to end through the real binary in a temp dir: counts, files, sitemap, escaping of
//! hostile names, and an idempotent second run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

fn shopscribe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopscribe"))
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("SHOPSCRIBE_STORE_URL")
        .env_remove("SHOPSCRIBE_PUBLISH_URL")
        .env_remove("SHOPSCRIBE_LLM_PROVIDER")
        .output()
        .expect("run shopscribe")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The number printed after `label` in a run summary.
fn figure(out: &str, label: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            l.trim_start()
                .strip_prefix(label)
                .map(|r| r.split_whitespace().next().unwrap().to_string())
        })
        .unwrap_or_else(|| panic!("no `{label}` in:\n{out}"))
        .parse()
        .unwrap()
}

fn files_with_mtimes(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), m.modified().unwrap());
            }
        }
    }
    out
}

#[test]
fn demo_publishes_every_domain_then_does_nothing_on_a_second_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let d = dir.to_str().unwrap();

    let out = shopscribe(&["demo", "--dir", d, "--domains", "120"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("offline writer"),
        "the demo says it runs offline"
    );
    assert_eq!(figure(&text, "entities"), 120);
    assert_eq!(figure(&text, "generated"), 120);
    assert_eq!(figure(&text, "failed"), 0);
    // The sample data's absurd months (orders above visits, a negative revenue, a trillion
    // visits, a 170 % share) are left out by the example SQL and flagged by its data checks.
    assert!(
        text.contains("checks            5  run, 4 failing, 0 entities excluded"),
        "{text}"
    );
    for check in [
        "orders_above_visits",
        "negative_values",
        "inflated_base",
        "shares_out_of_range",
    ] {
        assert!(
            text.contains(&format!("check `{check}` (warn): 1 entity flagged, e.g. ")),
            "{check}: {text}"
        );
    }
    assert!(
        text.contains(&format!("Open {}", dir.join("site/index.html").display())),
        "{text}"
    );

    let site = dir.join("site");
    let job = site.join("domain_summaries");
    let pages: Vec<_> = std::fs::read_dir(&job)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        pages
            .iter()
            .filter(|p| p.ends_with(".html") && *p != "index.html")
            .count(),
        120
    );
    assert_eq!(
        pages
            .iter()
            .filter(|p| p.ends_with(".json") && *p != "manifest.json")
            .count(),
        120
    );
    let sitemap = std::fs::read_to_string(job.join("sitemap-1.xml")).unwrap();
    let hubs = std::fs::read_dir(job.join("groups")).unwrap().count();
    assert_eq!(hubs, 20, "one hub per category");
    assert_eq!(
        sitemap.matches("<url>").count(),
        120 + hubs,
        "pages and hubs"
    );
    let root_sitemap = std::fs::read_to_string(site.join("sitemap.xml")).unwrap();
    assert!(
        root_sitemap.contains("<sitemapindex")
            && root_sitemap.contains("domain_summaries/sitemap-1.xml")
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job.join("manifest.json")).unwrap()).unwrap();
    let entries = manifest["entities"].as_array().unwrap();
    assert_eq!(entries.len(), 120);
    assert!(
        entries
            .iter()
            .all(|e| e["input_hash"].as_str().unwrap().len() == 32 && e["run_id"] == 1)
    );

    // The reviews half: two deliveries ingested, product pages in the same site.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("day1.jsonl — ") && err.contains("3 rejected"),
        "{err}"
    );
    let products = std::fs::read_dir(site.join("product_insights"))
        .unwrap()
        .count();
    assert_eq!(
        products,
        60 * 2 + 4,
        "60 products: html + json each, index, sitemap, manifest, groups/"
    );
    let categories = std::fs::read_dir(site.join("product_insights/groups"))
        .unwrap()
        .count();
    assert_eq!(categories, 4, "one hub per product category");
    assert!(root_sitemap.contains("product_insights/sitemap-1.xml"));

    // A page carries its SEO parts.
    let one = pages
        .iter()
        .find(|p| p.ends_with(".com.html") || p.ends_with(".de.html") || p.ends_with(".co.uk.html"))
        .unwrap();
    let html = std::fs::read_to_string(job.join(one)).unwrap();
    for needle in [
        "<title>",
        "<meta name=\"description\"",
        "<link rel=\"canonical\" href=\"https:&#x2f;&#x2f;example.com&#x2f;domain_summaries&#x2f;",
        "application/ld+json",
        "<meta property=\"og:title\"",
        "<meta name=\"twitter:card\" content=\"summary\">",
        "\"@type\":\"WebSite\"",
        "\"@type\":\"Organization\"",
        "\"@type\":\"BreadcrumbList\"",
        "class=\"breadcrumbs\"",
        "<h1>",
        "Frequently asked questions",
    ] {
        assert!(html.contains(needle), "{needle} missing in {one}");
    }
    // FAQ rich results are for a few authoritative sites: the markup is opt-in.
    assert!(!html.contains("\"@type\":\"FAQPage\""), "{one}");
    assert!(
        !html.contains(":null"),
        "no null in the structured data: {one}"
    );
    // Every page links to its category's hub, and the hub links back to its members.
    let hub_href = html
        .split("href=\"groups&#x2f;")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no hub link in {one}"))
        .to_string();
    let hub = std::fs::read_to_string(job.join("groups").join(&hub_href)).unwrap();
    assert!(hub.contains(&format!("href=\"..&#x2f;{one}\"")), "{hub}");
    assert!(hub.contains("\"@type\":\"CollectionPage\""));
    let robots = std::fs::read_to_string(site.join("robots.txt")).unwrap();
    assert!(
        robots.contains("Sitemap: https://example.com/sitemap.xml"),
        "{robots}"
    );

    // Second demo: same seed, same data → nothing generated, no file rewritten.
    let before = files_with_mtimes(&site);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = shopscribe(&["demo", "--dir", d, "--domains", "120"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(figure(&text, "generated"), 0);
    assert_eq!(figure(&text, "skipped"), 120);
    assert_eq!(
        files_with_mtimes(&site),
        before,
        "a no-op run must not touch the site"
    );
    assert!(text.contains("0 files written"), "{text}");

    // `plan` agrees: everything unchanged.
    let out = shopscribe(&["plan", "domain_summaries", "--project", d]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(figure(&text, "unchanged"), 120);
    assert_eq!(figure(&text, "to write"), 0);

    // `--force` regenerates all, and identical texts still rewrite no page: a page's date (its
    // dateModified and sitemap lastmod) is when its content last changed, not the run's.
    let sitemap_before = std::fs::read(job.join("sitemap-1.xml")).unwrap();
    let pages_before: Vec<(PathBuf, SystemTime)> = files_with_mtimes(&site)
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|x| x == "html"))
        .collect();
    let out = shopscribe(&[
        "run",
        "domain_summaries",
        "--project",
        d,
        "--force",
        "--limit",
        "10",
    ]);
    let text = stdout(&out);
    assert_eq!(figure(&text, "generated"), 10);
    assert_eq!(figure(&text, "pending"), 110);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a run that leaves entities pending exits 1"
    );
    assert_eq!(
        std::fs::read(job.join("sitemap-1.xml")).unwrap(),
        sitemap_before
    );
    let pages_after: Vec<(PathBuf, SystemTime)> = files_with_mtimes(&site)
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|x| x == "html"))
        .collect();
    assert_eq!(pages_after, pages_before, "no page rewritten");
}

#[test]
fn hostile_names_are_escaped_and_only_changed_entities_regenerate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let d = dir.to_str().unwrap();
    assert!(
        shopscribe(&["demo", "--dir", d, "--domains", "60"])
            .status
            .success()
    );

    // Rename one domain and one category to markup, straight in the source table.
    let db = dir.join("shopscribe.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let victim: String = rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        let victim: String = sqlx::query_scalar("SELECT domain FROM domain_monthly WHERE category = (SELECT category FROM domain_monthly WHERE category IS NOT NULL GROUP BY category ORDER BY COUNT(*) DESC LIMIT 1) LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE domain_monthly SET domain = '<script>alert(1)</script>.com' WHERE domain = ?")
            .bind(&victim)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE domain_monthly SET category = 'Toys</script><script>alert(2)</script>' WHERE category = 'Toys & Games'")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        victim
    });

    let out = shopscribe(&["run", "domain_summaries", "--project", d]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = figure(&text, "generated");
    assert!(
        (1..60).contains(&generated),
        "only changed entities regenerate, got {generated}"
    );
    assert!(
        text.contains("2 removed") || text.contains("removed"),
        "{text}"
    );

    let job = dir.join("site/domain_summaries");
    assert!(
        !job.join(format!("{victim}.html")).exists(),
        "the renamed domain's old page is removed"
    );
    let mut hostile_pages = 0;
    for e in std::fs::read_dir(&job).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "html") {
            let html = std::fs::read_to_string(&p).unwrap();
            assert!(
                !html.contains("<script>alert"),
                "unescaped markup in {}",
                p.display()
            );
            if html.contains("&lt;script&gt;alert(1)") || html.contains("Toys&lt;/script&gt;") {
                hostile_pages += 1;
            }
            if p.ends_with("index.html") {
                continue;
            }
            // JSON-LD cannot be closed early by a name.
            let ld_start = html.find("application/ld+json").unwrap();
            let ld = &html[ld_start..];
            let end = ld.find("</script>").unwrap();
            assert!(
                !ld[..end].contains('<'),
                "raw < inside JSON-LD in {}",
                p.display()
            );
        }
    }
    assert!(
        hostile_pages >= 2,
        "the hostile names appear escaped ({hostile_pages} pages)"
    );
    let slugged: Vec<_> = std::fs::read_dir(&job)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            n.starts_with("script-alert-1-script-.com-") || n.starts_with("script-alert-1-script-")
        })
        .collect();
    assert_eq!(
        slugged.len(),
        2,
        "the markup key gets a safe slug: {slugged:?}"
    );
}

#[test]
fn bad_usage_and_bad_config_exit_2() {
    let out = shopscribe(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    let tmp = tempfile::tempdir().unwrap();
    let out = shopscribe(&[
        "run",
        "domain_summaries",
        "--project",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shopscribe init"));
    let out = shopscribe(&["init", tmp.path().to_str().unwrap()]);
    assert!(out.status.success());
    let out = shopscribe(&[
        "run",
        "no_such_job",
        "--project",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("domain_summaries"));
    // A project without data: the SQL fails with the file named, exit 1.
    let out = shopscribe(&[
        "run",
        "domain_summaries",
        "--project",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("domain_summaries.sql") && err.contains("no such table"),
        "{err}"
    );
}

#[test]
fn ingest_lists_files_and_replays_a_delivery_from_bronze() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = shopscribe(&["demo", "--dir", dir.to_str().unwrap(), "--domains", "10"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reviews = dir.join("reviews");
    let p = reviews.to_str().unwrap();

    let out = shopscribe(&["ingest", "reviews", "-p", p, "--files"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let day1 = reviews.join("data/reviews/day1.jsonl");
    let row = text
        .lines()
        .find(|l| l.ends_with(&format!("file://{}", day1.display())))
        .unwrap_or_else(|| panic!("day 1 listed:\n{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    let id = cols[0];
    assert_eq!(cols[1], "done", "{row}");
    assert!(
        cols[3].parse::<u64>().unwrap() > 0,
        "day 1 has rejected lines: {row}"
    );

    // The delivery comes back byte for byte, malformed lines included.
    let out = shopscribe(&["ingest", "reviews", "-p", p, "--bronze", id]);
    assert!(out.status.success());
    let delivered = std::fs::read(&day1).unwrap();
    assert_eq!(out.stdout, delivered);

    let out = shopscribe(&["ingest", "reviews", "-p", p, "--bronze", "999"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--files"));
}
