//! The published-site linter: reads a site back from its location (a folder or S3) and checks
//! what search engines and readers rely on — every page has `lang`, a title of at most 60
//! characters and a meta description of at most 160, both unique across the site; a canonical
//! link to itself; JSON-LD that parses and carries its type's required fields; internal links
//! that resolve; sitemaps that list every published page and nothing else (pages marked
//! `noindex` left out); and no indexable page whose wording nearly duplicates another page of
//! its job (`duplicates.rs`, `similarity.rs`). Run by `shopscribe check-site` and after each
//! publish.

mod duplicates;
mod html;
pub mod similarity;

pub use duplicates::JobSimilarity;

use crate::sink::{Sink, SinkError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Longest title and meta description a search engine shows whole.
pub const MAX_TITLE: usize = 60;
pub const MAX_DESCRIPTION: usize = 160;

/// What kind of problem a page has (stable names, shown and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    NoLang,
    NoTitle,
    LongTitle,
    DuplicateTitle,
    NoDescription,
    LongDescription,
    DuplicateDescription,
    Canonical,
    JsonLd,
    BrokenLink,
    NotInSitemap,
    SitemapExtra,
    /// An indexable page whose text is more similar to another indexable page of its job than
    /// `publish.max_similarity`.
    NearDuplicate,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NoLang => "no_lang",
            Kind::NoTitle => "no_title",
            Kind::LongTitle => "long_title",
            Kind::DuplicateTitle => "duplicate_title",
            Kind::NoDescription => "no_description",
            Kind::LongDescription => "long_description",
            Kind::DuplicateDescription => "duplicate_description",
            Kind::Canonical => "canonical",
            Kind::JsonLd => "json_ld",
            Kind::BrokenLink => "broken_link",
            Kind::NotInSitemap => "not_in_sitemap",
            Kind::SitemapExtra => "sitemap_extra",
            Kind::NearDuplicate => "near_duplicate",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// The file, relative to the site's root.
    pub file: String,
    pub kind: Kind,
    pub message: String,
}

/// The outcome of one check.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SiteReport {
    /// HTML files read.
    pub pages: usize,
    pub problems: Vec<Problem>,
    /// The near-duplicate figures of each job section.
    pub similarity: Vec<JobSimilarity>,
}

impl SiteReport {
    /// Problems per kind, for summaries.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for p in &self.problems {
            *out.entry(p.kind.as_str()).or_insert(0) += 1;
        }
        out
    }

    /// One line: "clean" or the counts per kind.
    pub fn summary(&self) -> String {
        if self.problems.is_empty() {
            return format!("{} pages, clean", self.pages);
        }
        let kinds: Vec<String> = self
            .counts()
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        format!(
            "{} pages, {} problems: {}",
            self.pages,
            self.problems.len(),
            kinds.join(", ")
        )
    }
}

/// What the check accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckOptions {
    /// The highest similarity an indexable page may have to another of its job
    /// (`publish.max_similarity`).
    pub max_similarity: f64,
}

impl Default for CheckOptions {
    fn default() -> CheckOptions {
        CheckOptions {
            max_similarity: crate::config::DEFAULT_MAX_SIMILARITY,
        }
    }
}

/// [`check_site_with`] with the default options.
pub async fn check_site(sink: &Sink, base_url: &str) -> Result<SiteReport, SinkError> {
    check_site_with(sink, base_url, &CheckOptions::default()).await
}

/// Reads every HTML page and sitemap at `sink` and checks them; `base_url` is the site's
/// public root (canonical links and sitemap locations are compared with it).
pub async fn check_site_with(
    sink: &Sink,
    base_url: &str,
    opts: &CheckOptions,
) -> Result<SiteReport, SinkError> {
    let base_url = base_url.trim_end_matches('/');
    let files = sink.list().await?;
    let present: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    let mut report = SiteReport::default();
    let mut seen = Seen::default();
    let html: Vec<String> = files
        .iter()
        .filter(|f| f.ends_with(".html"))
        .cloned()
        .collect();
    let mut reads = std::pin::pin!(sink.get_all(html));
    while let Some((file, bytes)) = futures::StreamExt::next(&mut reads).await {
        let Some(bytes) = bytes? else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let page = html::Page::read(&text);
        report.pages += 1;
        check_page(&file, &page, base_url, &present, &mut seen, &mut report);
    }
    seen.report_duplicates(&mut report);
    let Seen { pages, noindex, .. } = seen;
    check_sitemaps(sink, base_url, &present, &pages, &noindex, &mut report).await?;
    duplicates::check(sink, &files, &noindex, opts.max_similarity, &mut report).await?;
    report
        .problems
        .sort_by(|a, b| (a.kind, &a.file).cmp(&(b.kind, &b.file)));
    Ok(report)
}

fn problem(file: &str, kind: Kind, message: String) -> Problem {
    Problem {
        file: file.to_string(),
        kind,
        message,
    }
}

/// What the pages read so far show the site-wide checks: the pages with each title and
/// description, the indexable published pages and the `noindex` ones.
#[derive(Default)]
struct Seen {
    titles: HashMap<String, Vec<String>>,
    descriptions: HashMap<String, Vec<String>>,
    pages: BTreeSet<String>,
    noindex: BTreeSet<String>,
}

impl Seen {
    /// Every page that shares its title or description with another.
    fn report_duplicates(&self, report: &mut SiteReport) {
        for (what, seen, kind) in [
            ("title", &self.titles, Kind::DuplicateTitle),
            (
                "meta description",
                &self.descriptions,
                Kind::DuplicateDescription,
            ),
        ] {
            for (value, files) in seen.iter().filter(|(_, f)| f.len() > 1) {
                for f in files {
                    report.problems.push(problem(
                        f,
                        kind,
                        format!(
                            "the same {what} as {} other page(s): {value}",
                            files.len() - 1
                        ),
                    ));
                }
            }
        }
    }
}

/// The checks of one HTML page `file`: language, title, description, canonical link,
/// structured data and internal links (against the files `present`).
fn check_page(
    file: &str,
    page: &html::Page,
    base_url: &str,
    present: &BTreeSet<&str>,
    seen: &mut Seen,
    report: &mut SiteReport,
) {
    if page.noindex() {
        seen.noindex.insert(file.to_string());
    } else if is_published_page(file) {
        seen.pages.insert(file.to_string());
    }
    if page.lang.as_deref().is_none_or(str::is_empty) {
        report
            .problems
            .push(problem(file, Kind::NoLang, "<html> has no lang".into()));
    }
    check_title_and_description(file, page, seen, report);
    let own = format!("{base_url}/{file}");
    match &page.canonical {
        Some(c) if *c == own => {}
        Some(c) => report.problems.push(problem(
            file,
            Kind::Canonical,
            format!("canonical {c} is not the page's own URL {own}"),
        )),
        None => report
            .problems
            .push(problem(file, Kind::Canonical, "no canonical link".into())),
    }
    for block in &page.json_ld {
        if let Err(e) = check_json_ld(block) {
            let m = crate::error::chain_text(&e);
            report.problems.push(problem(file, Kind::JsonLd, m));
        }
    }
    for href in &page.links {
        if let Some(target) = resolve(file, href, base_url)
            && !present.contains(target.as_str())
        {
            report.problems.push(problem(
                file,
                Kind::BrokenLink,
                format!("link {href} leads nowhere ({target} is not published)"),
            ));
        }
    }
}

/// A page's title and meta description: there (a description on published pages), and not
/// longer than search results show.
fn check_title_and_description(
    file: &str,
    page: &html::Page,
    seen: &mut Seen,
    report: &mut SiteReport,
) {
    match &page.title {
        None => report
            .problems
            .push(problem(file, Kind::NoTitle, "no <title>".into())),
        Some(t) => {
            if t.chars().count() > MAX_TITLE {
                report.problems.push(problem(
                    file,
                    Kind::LongTitle,
                    format!(
                        "title of {} characters (at most {MAX_TITLE}): {t}",
                        t.chars().count()
                    ),
                ));
            }
            seen.titles
                .entry(t.clone())
                .or_default()
                .push(file.to_string());
        }
    }
    match &page.description {
        None if is_published_page(file) => report.problems.push(problem(
            file,
            Kind::NoDescription,
            "no meta description".into(),
        )),
        None => {}
        Some(d) => {
            if d.chars().count() > MAX_DESCRIPTION {
                report.problems.push(problem(
                    file,
                    Kind::LongDescription,
                    format!(
                        "meta description of {} characters (at most {MAX_DESCRIPTION})",
                        d.chars().count()
                    ),
                ));
            }
            seen.descriptions
                .entry(d.clone())
                .or_default()
                .push(file.to_string());
        }
    }
}

/// Entity pages and hubs (what sitemaps must list): HTML below a job's folder, not its index.
fn is_published_page(file: &str) -> bool {
    file.contains('/') && !file.ends_with("/index.html")
}

/// The site file an `href` of `from` points at, if it is internal (relative, or absolute under
/// the base URL); fragments and queries are ignored.
fn resolve(from: &str, href: &str, base_url: &str) -> Option<String> {
    let href = href.split(['#', '?']).next().unwrap_or("");
    if href.is_empty() || href.starts_with("mailto:") || href.starts_with("tel:") {
        return None;
    }
    let rel = if let Some(rest) = href.strip_prefix(base_url) {
        rest.trim_start_matches('/').to_string()
    } else if href.contains("://") || href.starts_with("//") {
        return None;
    } else if let Some(abs) = href.strip_prefix('/') {
        abs.to_string()
    } else {
        let dir = from.rsplit_once('/').map_or("", |(d, _)| d);
        if dir.is_empty() {
            href.to_string()
        } else {
            format!("{dir}/{href}")
        }
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    Some(if joined.is_empty() || rel.ends_with('/') {
        format!(
            "{joined}{}index.html",
            if joined.is_empty() { "" } else { "/" }
        )
    } else {
        joined
    })
}

/// What is wrong with a page's JSON-LD block (a site check problem, not a failure).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonLdError {
    /// The block is not JSON.
    #[error("JSON-LD does not parse")]
    Parse(#[source] serde_json::Error),
    /// A top-level node has no `@type`.
    #[error("a JSON-LD node has no @type")]
    Untyped,
    /// A node lacks a member its type requires.
    #[error("JSON-LD {ty} has no {member}")]
    Missing { ty: String, member: &'static str },
    /// An AggregateRating counts nothing.
    #[error("JSON-LD AggregateRating has neither reviewCount nor ratingCount")]
    NoRatingCount,
    /// A member written as `null` (absent members are left out).
    #[error("JSON-LD member `{0}` is null")]
    Null(String),
}

/// Required members per structured-data type (those this site writes), checked on every node,
/// nested ones included (a page's `about` Product, its `breadcrumb`, a Product's rating); no
/// member may be `null`.
fn check_json_ld(text: &str) -> Result<(), JsonLdError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(JsonLdError::Parse)?;
    let nodes: Vec<&serde_json::Value> = match v.get("@graph").and_then(|g| g.as_array()) {
        Some(g) => g.iter().collect(),
        None => vec![&v],
    };
    for n in nodes {
        if n.get("@type").and_then(|t| t.as_str()).is_none() {
            return Err(JsonLdError::Untyped);
        }
        check_node(n)?;
    }
    Ok(())
}

/// One typed node and the typed nodes inside it.
fn check_node(n: &serde_json::Value) -> Result<(), JsonLdError> {
    use serde_json::Value;
    let present = |r: &str| n.get(r).is_some_and(|x| !x.is_null());
    if let Some(t) = n.get("@type").and_then(Value::as_str) {
        let required: &[&'static str] = match t {
            "WebPage" | "CollectionPage" => &["name", "url"],
            "WebSite" => &["name", "url"],
            "Organization" | "Brand" => &["name"],
            "BreadcrumbList" => &["itemListElement"],
            "FAQPage" => &["mainEntity"],
            "Product" => &["name"],
            "AggregateRating" => &["ratingValue"],
            _ => &[],
        };
        for r in required {
            if !present(r) {
                return Err(JsonLdError::Missing {
                    ty: t.to_string(),
                    member: r,
                });
            }
        }
        if t == "AggregateRating" && !present("reviewCount") && !present("ratingCount") {
            return Err(JsonLdError::NoRatingCount);
        }
    }
    let Some(members) = n.as_object() else {
        return Ok(());
    };
    for (k, v) in members {
        match v {
            // An absent member is left out, never written as null.
            Value::Null => return Err(JsonLdError::Null(k.clone())),
            Value::Object(_) => check_node(v)?,
            Value::Array(items) => items.iter().try_for_each(check_node)?,
            _ => {}
        }
    }
    Ok(())
}

/// The sitemaps the root `sitemap.xml` names must list every published page, and nothing
/// that is not one.
async fn check_sitemaps(
    sink: &Sink,
    base_url: &str,
    present: &BTreeSet<&str>,
    pages: &BTreeSet<String>,
    noindex: &BTreeSet<String>,
    report: &mut SiteReport,
) -> Result<(), SinkError> {
    let Some(index) = sink.get("sitemap.xml").await? else {
        report.problems.push(Problem {
            file: "sitemap.xml".into(),
            kind: Kind::NotInSitemap,
            message: "no sitemap.xml".into(),
        });
        return Ok(());
    };
    let mut listed: BTreeSet<String> = BTreeSet::new();
    for loc in html::locs(&String::from_utf8_lossy(&index)) {
        let Some(rel) = loc
            .strip_prefix(base_url)
            .map(|r| r.trim_start_matches('/').to_string())
        else {
            continue;
        };
        if !present.contains(rel.as_str()) {
            report.problems.push(Problem {
                file: "sitemap.xml".into(),
                kind: Kind::SitemapExtra,
                message: format!("names the sitemap {loc}, which is not published"),
            });
            continue;
        }
        if let Some(bytes) = sink.get(&rel).await? {
            for u in html::locs(&String::from_utf8_lossy(&bytes)) {
                match u
                    .strip_prefix(base_url)
                    .map(|r| r.trim_start_matches('/').to_string())
                {
                    Some(r) if pages.contains(&r) => {
                        listed.insert(r);
                    }
                    Some(r) if noindex.contains(&r) => report.problems.push(Problem {
                        file: rel.clone(),
                        kind: Kind::SitemapExtra,
                        message: format!("lists {u}, which is marked noindex"),
                    }),
                    _ => report.problems.push(Problem {
                        file: rel.clone(),
                        kind: Kind::SitemapExtra,
                        message: format!("lists {u}, which is not a published page"),
                    }),
                }
            }
        }
    }
    for p in pages.iter().filter(|p| !listed.contains(*p)) {
        report.problems.push(Problem {
            file: p.clone(),
            kind: Kind::NotInSitemap,
            message: "published but in no sitemap".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_relative_to_their_page() {
        let base = "https://example.com";
        assert_eq!(
            resolve("job/a.html", "b.html", base).as_deref(),
            Some("job/b.html")
        );
        assert_eq!(
            resolve("job/groups/x.html", "../a.html", base).as_deref(),
            Some("job/a.html")
        );
        assert_eq!(
            resolve("job/a.html", "../index.html", base).as_deref(),
            Some("index.html")
        );
        assert_eq!(
            resolve("index.html", "job/index.html", base).as_deref(),
            Some("job/index.html")
        );
        assert_eq!(
            resolve("job/a.html", "https://example.com/job/", base).as_deref(),
            Some("job/index.html")
        );
        assert_eq!(resolve("job/a.html", "https://other.org/x", base), None);
        assert_eq!(resolve("job/a.html", "#top", base), None);
    }

    #[test]
    fn json_ld_needs_its_required_fields() {
        assert!(check_json_ld(r#"{"@graph":[{"@type":"WebPage","name":"a","url":"u"}]}"#).is_ok());
        assert!(
            check_json_ld(r#"{"@type":"WebPage","name":"a"}"#)
                .unwrap_err()
                .to_string()
                .contains("url")
        );
        assert!(check_json_ld(r#"{"@type":"Product","name":null}"#).is_err());
        assert!(
            check_json_ld(r#"{"@type":"WebPage","name":"a","url":"u","description":null}"#)
                .unwrap_err()
                .to_string()
                .contains("null")
        );
        let product = |rating: &str| {
            format!(
                r#"{{"@graph":[{{"@type":"WebPage","name":"a","url":"u","about":{{"@type":"Product","name":"K","aggregateRating":{rating}}}}}]}}"#
            )
        };
        assert!(
            check_json_ld(&product(
                r#"{"@type":"AggregateRating","ratingValue":4.5,"reviewCount":3}"#
            ))
            .is_ok()
        );
        assert!(
            check_json_ld(&product(
                r#"{"@type":"AggregateRating","ratingValue":4.5,"ratingCount":3}"#
            ))
            .is_ok()
        );
        assert!(
            check_json_ld(&product(r#"{"@type":"AggregateRating","ratingValue":4.5}"#))
                .unwrap_err()
                .to_string()
                .contains("reviewCount")
        );
        assert!(
            check_json_ld(&product(r#"{"@type":"AggregateRating","reviewCount":3}"#))
                .unwrap_err()
                .to_string()
                .contains("ratingValue")
        );
        assert!(
            check_json_ld(
                r#"{"@type":"WebPage","name":"a","url":"u","about":{"@type":"Product"}}"#
            )
            .unwrap_err()
            .to_string()
            .contains("Product has no name"),
            "a nested Product is checked too"
        );
        assert!(
            check_json_ld("{not json")
                .unwrap_err()
                .to_string()
                .contains("parse")
        );
    }
}
