//! Product pages and related links through the real binary: after `shopscribe demo`, product
//! pages are named by their product (by the ASIN without metadata), carry `Product` JSON-LD whose
//! rating is the stored average and count, domain pages claim no rating, no structured data
//! holds a `null`, every entity page links its nearest peers by rank, and an incremental run
//! that moves one domain keeps every page's related links right, skipped pages included (those
//! whose links changed are dated anew, the others keep their date).

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Output};

/// Related links per page: the default of `publish.related`, which the examples keep.
const RELATED: usize = 5;

fn shopscribe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopscribe"))
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("SHOPSCRIBE_STORE_URL")
        .env_remove("SHOPSCRIBE_PUBLISH_URL")
        .env_remove("SHOPSCRIBE_LLM_PROVIDER")
        .env("RUST_LOG", "shopscribe=warn")
        .output()
        .expect("run shopscribe")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Undoes minijinja's HTML escaping.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

/// The text between the first `open` and the next `close`.
fn between<'a>(html: &'a str, open: &str, close: &str) -> Option<&'a str> {
    html.split_once(open)?.1.split_once(close).map(|(a, _)| a)
}

/// One published entity page, read back.
struct Page {
    key: String,
    group: Option<String>,
    generated_at: String,
    title: String,
    h1: String,
    json_ld: Vec<Value>,
    /// Slugs of its related links, in page order.
    related: Vec<String>,
}

/// Every entity page of `job` in `site`, by slug.
fn pages(site: &Path, job: &str) -> BTreeMap<String, Page> {
    let dir = site.join(job);
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let Some(slug) = name.strip_suffix(".html").filter(|s| *s != "index") else {
            continue;
        };
        let html = std::fs::read_to_string(dir.join(&name)).unwrap();
        let data: Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{slug}.json"))).unwrap())
                .unwrap();
        let json_ld = html
            .split("<script type=\"application/ld+json\">")
            .skip(1)
            .map(|s| serde_json::from_str(s.split("</script>").next().unwrap()).unwrap())
            .collect();
        let related = between(&html, "<nav class=\"related\"", "</nav>")
            .map(|nav| {
                nav.split("<a href=\"")
                    .skip(1)
                    .map(|a| unescape(a.split('"').next().unwrap()))
                    .map(|href| href.strip_suffix(".html").unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            slug.to_string(),
            Page {
                key: data["key"].as_str().unwrap().to_string(),
                group: data["group"].as_str().map(str::to_string),
                generated_at: data["generated_at"].as_str().unwrap().to_string(),
                title: unescape(between(&html, "<title>", "</title>").unwrap()),
                h1: unescape(between(&html, "<h1>", "</h1>").unwrap()),
                json_ld,
                related,
            },
        );
    }
    out
}

/// Every JSON value nested in `v` (itself included).
fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Object(m) => m.values().for_each(|x| walk(x, out)),
        Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
        _ => {}
    }
}

/// The first node of type `t` anywhere in a page's structured data.
fn node<'a>(page: &'a Page, t: &str) -> Option<&'a Value> {
    let mut all = Vec::new();
    page.json_ld.iter().for_each(|v| walk(v, &mut all));
    all.into_iter().find(|v| v["@type"] == t)
}

/// The related pages the spec asks for, computed independently of the publisher: the other
/// members of the page's group (everybody without one) sorted by distance in rank, the lower
/// rank first at equal distance, where rank orders by value (missing last), then key.
fn expected_related(values: &HashMap<String, (Option<String>, f64)>, key: &str) -> Vec<String> {
    let group = &values[key].0;
    let mut members: Vec<(&String, f64)> = values
        .iter()
        .filter(|(_, (g, _))| group.is_none() || g == group)
        .map(|(k, (_, v))| (k, *v))
        .collect();
    members.sort_by(|a, b| {
        (a.1.is_nan(), a.1, a.0)
            .partial_cmp(&(b.1.is_nan(), b.1, b.0))
            .unwrap_or_else(|| a.0.cmp(b.0))
    });
    let pos = members.iter().position(|(k, _)| *k == key).unwrap();
    let mut others: Vec<(usize, usize, &String)> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != pos)
        .map(|(i, (k, _))| (i.abs_diff(pos), i, *k))
        .collect();
    others.sort();
    others
        .into_iter()
        .take(RELATED)
        .map(|(_, _, k)| k.clone())
        .collect()
}

/// (group, value of the `related_by` metric, NaN when missing or invalid) per key of `job`,
/// read from the project's source through the library.
fn source_values(project_dir: &Path, job: &str) -> HashMap<String, (Option<String>, f64)> {
    let project = shopscribe::config::load_with_env(project_dir, &|_| None).unwrap();
    let job = project.job(job).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let entities = rt
        .block_on(shopscribe::run::load_entities(&project, job))
        .unwrap();
    let m = job.page.related_by;
    let spec = &job.metrics[m].spec;
    (0..entities.len())
        .map(|i| {
            let v = entities.input.metrics[m][i];
            let valid = v.is_finite()
                && spec.valid_min.is_none_or(|lo| v >= lo)
                && spec.valid_max.is_none_or(|hi| v <= hi);
            (
                entities.keys[i].clone(),
                (
                    entities.group(i).map(str::to_string),
                    if valid { v } else { f64::NAN },
                ),
            )
        })
        .collect()
}

/// Every page links exactly the expected related pages (so: the configured count, or fewer in
/// a smaller group; all of its group; none twice; each resolving to a published page).
fn assert_related(site: &Path, job: &str, project_dir: &Path) -> BTreeMap<String, Page> {
    let published = pages(site, job);
    let values = source_values(project_dir, job);
    let by_slug: HashMap<&str, &Page> = published.iter().map(|(s, p)| (s.as_str(), p)).collect();
    for (slug, page) in &published {
        let keys: Vec<String> = page
            .related
            .iter()
            .map(|s| {
                by_slug
                    .get(s.as_str())
                    .unwrap_or_else(|| panic!("{slug} links {s}, not a page of {job}"))
                    .key
                    .clone()
            })
            .collect();
        assert_eq!(keys, expected_related(&values, &page.key), "{job}/{slug}");
        if let Some(g) = &page.group {
            let size = values
                .values()
                .filter(|(x, _)| x.as_ref() == Some(g))
                .count();
            assert_eq!(keys.len(), RELATED.min(size - 1), "{job}/{slug}");
            assert!(keys.iter().all(|k| values[k].0.as_ref() == Some(g)));
        }
    }
    published
}

type CatalogRow = (
    String,
    i64,
    f64,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The reviews store's figures and metadata per ASIN.
fn catalog(reviews_dir: &Path) -> Vec<CatalogRow> {
    let url = format!("sqlite://{}", reviews_dir.join("shopscribe.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query_as(
            "SELECT s.asin, s.review_count, s.avg_rating, c.title, c.brand, c.category
             FROM product_summary s LEFT JOIN product_catalog c ON c.asin = s.asin
             WHERE s.dataset = 'reviews' ORDER BY s.asin",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    })
}

fn product_pages_carry_the_products_facts(site: &Path, reviews: &Path) {
    let products: HashMap<String, Page> = pages(site, "product_insights")
        .into_values()
        .map(|p| (p.key.clone(), p))
        .collect();
    let rows = catalog(reviews);
    assert_eq!(rows.len(), products.len());
    let without: Vec<&CatalogRow> = rows.iter().filter(|r| r.3.is_none()).collect();
    assert_eq!(
        without.len(),
        2,
        "the demo leaves two products without metadata"
    );
    for (asin, count, avg, title, brand, category) in &rows {
        let page = &products[asin];
        let name = title.as_deref().unwrap_or(asin);
        assert_eq!(page.title, name, "{asin}: <title> is the product's name");
        assert_eq!(page.h1, name, "{asin}: <h1> is the product's name");
        assert_eq!(&page.group, category, "{asin}: the category is its group");
        let product = node(page, "Product").unwrap_or_else(|| panic!("{asin}: no Product"));
        assert_eq!(product["name"], name);
        assert_eq!(product["sku"], asin.as_str());
        assert_eq!(product["brand"]["name"].as_str(), brand.as_deref());
        assert_eq!(product["category"].as_str(), category.as_deref());
        assert!(
            product["description"]
                .as_str()
                .is_some_and(|d| d.len() > 20)
        );
        let rating = &product["aggregateRating"];
        assert_eq!(rating["@type"], "AggregateRating");
        assert_eq!(rating["reviewCount"].as_i64(), Some(*count), "{asin}");
        // The average as the prompt shows a public ratio: two decimals.
        let expected = (avg * 100.0).round() / 100.0;
        assert_eq!(
            rating["ratingValue"].as_f64(),
            Some(expected),
            "{asin}: {avg}"
        );
        assert_eq!(
            (
                rating["bestRating"].as_f64(),
                rating["worstRating"].as_f64()
            ),
            (Some(5.0), Some(1.0))
        );
    }
}

fn no_null_and_no_rating_on_domain_pages(site: &Path) {
    for job in ["domain_summaries", "product_insights"] {
        for (slug, page) in pages(site, job) {
            let mut all = Vec::new();
            page.json_ld.iter().for_each(|v| walk(v, &mut all));
            assert!(
                !all.iter().any(|v| v.is_null()),
                "{job}/{slug}: a null in its JSON-LD"
            );
            if job == "domain_summaries" {
                let claims = all.iter().any(|v| {
                    v.get("aggregateRating").is_some()
                        || v.get("review").is_some()
                        || ["AggregateRating", "Review", "Product"]
                            .iter()
                            .any(|t| v["@type"] == *t)
                });
                assert!(!claims, "{job}/{slug}: a domain page rates itself");
            }
        }
    }
}

/// Multiplies one grouped domain's visits so it moves to the top of its category.
fn move_one_domain(dir: &Path, values: &HashMap<String, (Option<String>, f64)>) -> String {
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for (g, _) in values.values() {
        if let Some(g) = g {
            *sizes.entry(g).or_default() += 1;
        }
    }
    let group = sizes
        .iter()
        .max_by_key(|(g, n)| (**n, *g))
        .unwrap()
        .0
        .to_string();
    let mut members: Vec<(&String, f64)> = values
        .iter()
        .filter(|(_, (g, v))| g.as_deref() == Some(&group) && !v.is_nan())
        .map(|(k, (_, v))| (k, *v))
        .collect();
    members.sort_by(|a, b| a.1.total_cmp(&b.1));
    let domain = members[members.len() / 3].0.clone();
    let url = format!("sqlite://{}", dir.join("shopscribe.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("UPDATE domain_monthly SET visits = visits * 40 WHERE domain = ?")
            .bind(&domain)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    domain
}

#[test]
fn product_pages_name_and_rate_products_and_every_page_links_its_nearest_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let d = dir.to_str().unwrap();
    let demo = shopscribe(&["demo", "--dir", d, "--domains", "100"]);
    assert!(demo.status.success(), "{}", text(&demo));
    let site = dir.join("site");
    let reviews = dir.join("reviews");

    product_pages_carry_the_products_facts(&site, &reviews);
    no_null_and_no_rating_on_domain_pages(&site);
    assert_related(&site, "product_insights", &reviews);
    let before = assert_related(&site, "domain_summaries", &dir);
    let check = shopscribe(&["check-site", "-p", d]);
    assert!(check.status.success(), "{}", text(&check));

    // One domain jumps to the top of its category; the run regenerates only what changed, and
    // every page — those skipped too — links its new nearest peers.
    let moved = move_one_domain(&dir, &source_values(&dir, "domain_summaries"));
    let run = shopscribe(&["run", "domain_summaries", "--project", d]);
    assert!(run.status.success(), "{}", text(&run));
    let after = assert_related(&site, "domain_summaries", &dir);
    let modified = |p: &Page| node(p, "WebPage").unwrap()["dateModified"].clone();
    let mut relinked_but_skipped = 0;
    for (slug, p) in after.iter().filter(|(_, p)| p.key != moved) {
        let b = &before[slug];
        if p.generated_at != b.generated_at {
            continue;
        }
        if p.related == b.related {
            assert_eq!(
                modified(p),
                modified(b),
                "{slug}: nothing changed, same date"
            );
        } else {
            relinked_but_skipped += 1;
            assert!(
                modified(p).as_str() > modified(b).as_str(),
                "{slug}: its links changed, so did its date"
            );
        }
    }
    assert!(
        relinked_but_skipped > 0,
        "some pages whose inputs did not change got new related links: {}",
        text(&run)
    );
    let check = shopscribe(&["check-site", "-p", d]);
    assert!(check.status.success(), "{}", text(&check));
}
