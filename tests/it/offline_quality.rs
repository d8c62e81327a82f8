//! The offline writer's text on the 500-domain demo, through the real binary: no grammar slips,
//! summaries that are not near-copies of one another (word 5-shingle Jaccard with the entity and
//! category names masked), no repeated title, h1 or meta description, at least ten patterns for
//! each of them, product insights that differ per product, and a clean `check-site`.
//! The figures are printed (`--nocapture`) so BENCHMARKS.md can quote them.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test fixtures and expectations computed from small counts"
)]

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output};

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

/// One published page's data file: the entity's name, its group and the writer's output.
struct Page {
    name: String,
    group: Option<String>,
    content: Value,
}

fn pages(dir: &Path) -> Vec<Page> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if !file.ends_with(".json") || file == "manifest.json" {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        out.push(Page {
            name: v["name"].as_str().unwrap().to_string(),
            group: v["group"].as_str().map(str::to_string),
            content: v["content"].clone(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Phrases a careful writer never produces (lower case, matched on word boundaries).
const SLIPS: &[&str] = &[
    "in the above",
    "in the below",
    "in above",
    "in below",
    "the above median of",
    "the below median of",
    "is its strongest results",
    "are its strongest result",
    "is its weakest results",
    "are its weakest result",
    "most of all",
    "a above",
    "a top",
    "an top",
    "an below",
    "a bottom 10",
    "results is",
    "result are",
    "1 domains",
    "1 products",
];

/// The slips in `text`: listed phrases, a doubled word ("the the"), and a/an before the wrong
/// sound ("a above", "an revenue"; "an hour", "a unique" and acronyms are not flagged).
fn slips(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '(' | ')'))
        .map(|w| w.trim_end_matches(['.', '!', '?']))
        .filter(|w| !w.is_empty())
        .collect();
    let joined = format!(" {} ", words.join(" "));
    let mut found: Vec<String> = SLIPS
        .iter()
        .filter(|s| joined.contains(&format!(" {s} ")))
        .map(|s| s.to_string())
        .collect();
    let raw: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    for pair in raw.windows(2) {
        // "revenue, revenue per visit" and "customers. Customers" are lists and sentences.
        let plain = pair[0].chars().all(char::is_alphabetic);
        if plain && pair[0] == pair[1] {
            found.push(format!("doubled \"{}\"", pair[0]));
        }
    }
    let original: Vec<&str> = text.split_whitespace().collect();
    for (i, pair) in words.windows(2).enumerate() {
        let next = pair[1].trim_matches(|c: char| !c.is_alphanumeric());
        let first = next.chars().next().unwrap_or(' ');
        let acronym = original
            .get(i + 1)
            .is_some_and(|w| w.len() > 1 && w.chars().all(|c| c.is_ascii_uppercase()));
        if pair[0] == "a" && "aeio".contains(first) && first.is_alphabetic() {
            found.push(format!("\"a {next}\""));
        }
        if pair[0] == "an" && first.is_alphabetic() && !"aeiouh".contains(first) && !acronym {
            found.push(format!("\"an {next}\""));
        }
    }
    if text.contains(" .") || text.contains(" ,") || text.contains("..") {
        found.push("space or dot before punctuation".into());
    }
    found.extend(repeated_openings(text));
    found
}

/// Two sentences in a row that open with the same three words ("It also trails the median on
/// X. It also trails the median on Y.") read as a template, not as an analyst.
fn repeated_openings(text: &str) -> Vec<String> {
    let openings: Vec<Vec<String>> = text
        .split_inclusive(['.', '!', '?'])
        .map(|s| {
            s.split_whitespace()
                .take(3)
                .map(str::to_lowercase)
                .collect()
        })
        .filter(|o: &Vec<String>| o.len() == 3)
        .collect();
    openings
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| format!("two sentences open with \"{}\"", w[0].join(" ")))
        .collect()
}

/// The summary's word 5-shingles (hashed, sorted, unique) with the entity's and its group's
/// names replaced by placeholders, so equal templates filled with other names still match.
fn shingles(text: &str, name: &str, group: Option<&str>) -> Vec<u64> {
    let mut t = text
        .to_lowercase()
        .replace(&name.to_lowercase(), " ENTITY ");
    if let Some(g) = group {
        t = t.replace(&g.to_lowercase(), " GROUP ");
    }
    let words: Vec<&str> = t
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '%' && c != '$'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut out: Vec<u64> = words
        .windows(5)
        .map(|w| {
            let h = blake3::hash(w.join(" ").as_bytes());
            u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap())
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - common;
    if union == 0 {
        0.0
    } else {
        common as f64 / union as f64
    }
}

/// Mean and max Jaccard over every pair (exact: 500 pages are ~125,000 pairs), and the most
/// similar pair.
fn pairwise(sets: &[Vec<u64>]) -> (f64, f64, (usize, usize)) {
    let (mut sum, mut max, mut n, mut worst) = (0.0, 0.0f64, 0usize, (0, 0));
    for i in 0..sets.len() {
        for j in i + 1..sets.len() {
            let s = jaccard(&sets[i], &sets[j]);
            sum += s;
            if s > max {
                max = s;
                worst = (i, j);
            }
            n += 1;
        }
    }
    (sum / n.max(1) as f64, max, worst)
}

/// A summary's shape: its sentence count per paragraph ("3-2-4-1").
fn shape(summary: &str) -> String {
    summary
        .split("\n\n")
        .map(|p| {
            // A sentence ends at . ! ? before a space or the end ("0.5 %", "a.com" go on).
            let b = p.trim().as_bytes();
            (0..b.len())
                .filter(|&i| b".!?".contains(&b[i]) && (i + 1 == b.len() || b[i + 1] == b' '))
                .count()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `field` with the name, group and market masked: what is left is the pattern.
fn pattern(p: &Page, field: &str) -> String {
    let mut t = p.content[field].as_str().unwrap_or_default().to_string();
    t = t.replace(&p.name, "ENTITY");
    if let Some(g) = &p.group {
        t = t.replace(g.as_str(), "GROUP");
    }
    t
}

fn largest_share<'a>(items: impl Iterator<Item = &'a str>) -> (usize, usize, String) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut n = 0;
    for i in items {
        *counts.entry(i).or_default() += 1;
        n += 1;
    }
    let (top, c) = counts
        .iter()
        .max_by_key(|(k, c)| (**c, std::cmp::Reverse(**k)))
        .map(|(k, c)| (k.to_string(), *c))
        .unwrap_or_default();
    (c, n, top)
}

fn assert_distinct(pages: &[Page], field: &str) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for p in pages {
        let v = p.content[field].as_str().unwrap();
        if let Some(other) = seen.insert(v, &p.name) {
            panic!("{field} \"{v}\" on both {other} and {}", p.name);
        }
    }
}

fn check_domains(site: &Path) {
    let domains = pages(&site.join("domain_summaries"));
    assert_eq!(domains.len(), 500);

    let mut slipped: Vec<String> = Vec::new();
    for p in &domains {
        let mut texts = Vec::new();
        strings(&p.content, &mut texts);
        for t in texts {
            for s in slips(&t) {
                slipped.push(format!("{}: {s} in \"{t}\"", p.name));
            }
        }
    }
    let with_slips: HashSet<&str> = slipped
        .iter()
        .map(|s| s.split(':').next().unwrap())
        .collect();
    eprintln!("domain pages with slips: {}", with_slips.len());

    let sets: Vec<Vec<u64>> = domains
        .iter()
        .map(|p| {
            shingles(
                p.content["summary"].as_str().unwrap(),
                &p.name,
                p.group.as_deref(),
            )
        })
        .collect();
    let (mean, max, (a, b)) = pairwise(&sets);
    eprintln!(
        "summary 5-shingle Jaccard (names masked): mean {mean:.3}, max {max:.3} ({} and {})",
        domains[a].name, domains[b].name
    );
    let shapes: Vec<String> = domains
        .iter()
        .map(|p| shape(p.content["summary"].as_str().unwrap()))
        .collect();
    let (top, n, which) = largest_share(shapes.iter().map(String::as_str));
    let distinct: HashSet<&String> = shapes.iter().collect();
    eprintln!(
        "summary shapes: {} distinct, the commonest ({which}) on {top} of {n}",
        distinct.len()
    );
    let mut patterns = Vec::new();
    for field in ["title", "h1", "meta_description"] {
        let all: HashSet<&str> = domains
            .iter()
            .map(|p| p.content[field].as_str().unwrap())
            .collect();
        let masked: HashSet<String> = domains.iter().map(|p| pattern(p, field)).collect();
        eprintln!(
            "{field}: {} distinct of {}, {} distinct with names masked",
            all.len(),
            domains.len(),
            masked.len()
        );
        patterns.push((field, masked.len()));
    }

    assert!(slipped.is_empty(), "{} slips:\n{}", slipped.len(), {
        slipped.truncate(20);
        slipped.join("\n")
    });
    assert!(mean <= 0.10, "mean Jaccard {mean:.3} > 0.10");
    assert!(max <= 0.30, "max Jaccard {max:.3} > 0.30");
    assert!(
        top * 5 <= n,
        "one summary shape ({which}) on {top} of {n} pages"
    );
    for field in ["title", "h1", "meta_description"] {
        assert_distinct(&domains, field);
    }
    for (field, masked) in patterns {
        // Ten patterns at least, each filled with facts beyond the names.
        assert!(
            masked >= 50,
            "{field}: only {masked} distinct with names masked"
        );
    }
}

fn check_products(site: &Path) {
    let products = pages(&site.join("product_insights"));
    assert_eq!(products.len(), 60);
    let mut slipped = Vec::new();
    for p in &products {
        let mut texts = Vec::new();
        strings(&p.content, &mut texts);
        for t in texts {
            for s in slips(&t) {
                slipped.push(format!("{}: {s} in \"{t}\"", p.name));
            }
            // Products are compared within their category: a page must not claim a comparison
            // with every product tracked.
            if p.group.is_some() && t.contains("products tracked") {
                slipped.push(format!("{}: compared with all products in \"{t}\"", p.name));
            }
        }
    }
    assert!(slipped.is_empty(), "{}", slipped.join("\n"));
    assert!(
        products.iter().filter(|p| p.group.is_some()).count() >= 50,
        "the demo's products have their categories"
    );
    let mut lists_ok = Vec::new();
    for field in ["strengths", "weaknesses", "themes"] {
        let lists: Vec<String> = products
            .iter()
            .map(|p| p.content[field].to_string())
            .collect();
        let (top, n, which) = largest_share(lists.iter().map(String::as_str));
        let distinct: HashSet<&String> = lists.iter().collect();
        eprintln!(
            "product {field}: {} distinct lists of {n}, the commonest on {top}",
            distinct.len()
        );
        // An empty weaknesses list is an honest answer for several good products.
        if field != "weaknesses" {
            lists_ok.push((
                top * 10 <= n,
                format!("{field} list {which} on {top} of {n}"),
            ));
        }
    }
    let summaries: Vec<&str> = products
        .iter()
        .map(|p| p.content["summary"].as_str().unwrap())
        .collect();
    let sets: Vec<Vec<u64>> = products
        .iter()
        .zip(&summaries)
        .map(|(p, s)| shingles(s, &p.name, None))
        .collect();
    let (mean, max, _) = pairwise(&sets);
    eprintln!("product summary Jaccard: mean {mean:.3}, max {max:.3}");
    for (ok, what) in lists_ok {
        assert!(ok, "{what} products");
    }
    assert!(mean <= 0.15, "product summaries: mean Jaccard {mean:.3}");
}

#[test]
fn the_demo_reads_like_a_careful_analyst_wrote_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let d = dir.to_str().unwrap();
    let out = shopscribe(&["demo", "--dir", d]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let site = dir.join("site");
    let check = shopscribe(&["check-site", "-p", d]);
    let domains = std::panic::catch_unwind(|| check_domains(&site));
    let products = std::panic::catch_unwind(|| check_products(&site));
    assert!(
        check.status.success(),
        "check-site: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    if let Err(e) = domains {
        std::panic::resume_unwind(e);
    }
    if let Err(e) = products {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn the_lint_finds_each_kind_of_slip() {
    for bad in [
        "Visits in the above median of Garden peers",
        "Its visits is its strongest results.",
        "It trails most of all domains.",
        "It is a above-median shop.",
        "It is an top performer.",
        "It sits in the the top tier.",
        "Revenue is is strong.",
        "Its result are good .",
        "Orders come in above the median.",
        "It also trails the median on visits. It also trails the median on orders.",
    ] {
        assert!(!slips(bad).is_empty(), "{bad}");
    }
    for good in [
        "Visits are above the median of Garden peers.",
        "Its strongest result is visits; an upper-half position, a UK shop, an SEO page.",
        "It trails most domains: an honest reading of a unique shop.",
    ] {
        assert!(slips(good).is_empty(), "{good}: {:?}", slips(good));
    }
}
