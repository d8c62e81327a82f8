//! Publishing: each entity's latest good text as `JOB/SLUG.json` and `JOB/SLUG.html` (title,
//! meta description, canonical link, JSON-LD; every text escaped), the job's `index.html`,
//! sitemaps and `manifest.json`, plus the site root (`index.html`, `sitemap.xml` as a sitemap
//! index, `manifest.json`, `style.css`). Only files whose bytes changed are written. Every
//! entity page links its related pages (`related.rs`) and states its entity's facts in its
//! structured data (`entity.rs`).

pub mod entity;
mod listing;
pub mod related;

pub use entity::EntityFacts;

use crate::sink::{Sink, SinkError};
use futures::{StreamExt, TryStreamExt};
use minijinja::Environment;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// Most URLs in one sitemap file (the sitemaps.org limit).
const SITEMAP_MAX_URLS: usize = 50_000;

/// Why publishing a job's pages failed or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The publish location cannot be opened, read or written.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A page, listing or index did not render (minijinja's error is the source).
    #[error("rendering {what} failed")]
    Render {
        what: String,
        source: minijinja::Error,
    },
    /// The run would remove more of the job's published pages than allowed (or all of them):
    /// nothing was removed or written.
    #[error(
        "refusing to publish `{job}`: {}; nothing was removed. If the data really shrank, run again with --allow-shrink (or set publish.max_shrink_share, now {max_share})",
        shrink_reason(*published, *vanished, *max_share)
    )]
    Shrink {
        job: String,
        /// Pages published now.
        published: usize,
        /// Of those, the pages whose entities are no longer in the source.
        vanished: usize,
        max_share: f64,
        /// A few of the vanished keys, for the message's reader.
        examples: Vec<String>,
    },
    /// Another project (another store) published this job into the same location.
    #[error("{0}")]
    Foreign(Box<ForeignPages>),
}

/// The pages of a job at a location that another project published.
#[derive(Debug, thiserror::Error)]
#[error(
    "{url}/{job} holds the pages of job `{job}` published by another project (`{}`, id {}; this project is `{}`, id {}): two projects must not publish one job into one folder, or each would remove the other's pages. Publish to another folder (publish.url) or rename the job; if this project replaces the other one, remove {url}/{job}/manifest.json first (its pages are then left in place, not removed)",
    owner.project, owner.id, project.project, project.id
)]
pub struct ForeignPages {
    pub url: String,
    pub job: String,
    /// Who published the pages there.
    pub owner: Publisher,
    /// Who tried to publish.
    pub project: Publisher,
}

fn shrink_reason(published: usize, vanished: usize, max_share: f64) -> String {
    if vanished == published {
        format!(
            "the source has none of the {published} entities published, so every page would be removed (an empty or broken source?)"
        )
    } else {
        format!(
            "{vanished} of the {published} published pages ({:.0} %) would be removed because their entities are no longer in the source, more than the {:.0} % allowed",
            vanished as f64 * 100.0 / published as f64,
            max_share * 100.0
        )
    }
}

/// One entity's page input.
#[derive(Debug, Clone)]
pub struct PageInput {
    pub key: String,
    pub name: String,
    pub group: Option<String>,
    pub output: Value,
    pub input_hash: String,
    pub generation_id: i64,
    pub run_id: i64,
    pub generated_at: String,
    /// Why the page is published `noindex` and left out of the sitemap (the near-duplicate
    /// gate's reason), if it is.
    pub noindex: Option<String>,
    /// Its value of the metric related pages are ranked by (NaN: none).
    pub related_by: f64,
    /// What its structured data says about the entity beyond its name.
    pub facts: EntityFacts,
}

/// What the site and job are called and where they live publicly.
#[derive(Debug, Clone)]
pub struct SiteInfo {
    pub name: String,
    pub base_url: String,
    /// The project publishing, recorded in each job's manifest.
    pub publisher: Publisher,
    /// `FAQPage` structured data for pages with an FAQ (the FAQ itself is always shown).
    pub faq_markup: bool,
}

/// The project that published a job's pages into a folder: kept in the job's manifest, so a
/// publish removes only what its own project published there and refuses another project's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Publisher {
    /// `project.name`, for messages.
    pub project: String,
    /// The project's store id (one store is one project), the identity compared.
    pub id: String,
}

/// How far one publish may shrink a job's pages: the largest share of its published pages that
/// may be removed (1.0 accepts anything, an empty source included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShrinkPolicy {
    pub max_share: f64,
}

#[derive(Debug, Clone)]
pub struct JobInfo {
    pub name: String,
    pub description: String,
    pub entity_label: String,
    pub group_label: String,
    /// Related links per entity page (0: none).
    pub related: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishReport {
    pub pages: usize,
    /// Files written (pages, indexes, sitemaps, manifests).
    pub files_written: usize,
    pub files_unchanged: usize,
    pub files_removed: usize,
    /// Pages removed because their entities left the source (a changed slug does not count).
    pub pages_removed: usize,
    /// Their keys, in key order.
    pub removed_keys: Vec<String>,
    /// The site check that followed the publish, if it ran.
    pub check: Option<crate::site_check::SiteReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestEntry {
    pub key: String,
    pub slug: String,
    pub name: String,
    pub input_hash: String,
    pub generation_id: i64,
    pub run_id: i64,
    pub generated_at: String,
    /// blake3 of the published HTML and JSON, to skip unchanged pages without reading them.
    pub html_hash: String,
    pub json_hash: String,
    /// blake3 of what the page says (its output, name and group, its entity's facts and its
    /// related links): unchanged by a regeneration that wrote the same text, so `modified_at`
    /// keeps its date.
    #[serde(default)]
    pub content_hash: String,
    /// When the page's content last changed: its `dateModified` and its sitemap `<lastmod>`.
    #[serde(default)]
    pub modified_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobManifest {
    pub job: String,
    /// Slugs of the job's hub pages (one per peer group) under `JOB/groups/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hubs: Vec<String>,
    /// Who published these pages; absent in manifests of earlier versions (adopted by the next
    /// publish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<Publisher>,
    pub entities: Vec<ManifestEntry>,
}

/// The manifest of `job` as published at `sink`; `None` when there is none (or it cannot be
/// read as one: then nothing of it is removed either).
pub async fn published_manifest(
    sink: &Sink,
    job: &str,
) -> Result<Option<JobManifest>, PublishError> {
    Ok(sink
        .get(&format!("{job}/manifest.json"))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Checks that this project may publish `job` over what is at the location: the manifest there
/// is its own (or an earlier version's, without a publisher), and the entities in `current`
/// keep enough of the published pages (see [`ShrinkPolicy`]). Run before anything is spent or
/// written, and again by [`publish`] itself.
pub fn check_publish<'a>(
    sink: &Sink,
    site: &SiteInfo,
    job: &str,
    previous: Option<&JobManifest>,
    current: impl IntoIterator<Item = &'a str>,
    policy: ShrinkPolicy,
) -> Result<(), PublishError> {
    let Some(previous) = previous else {
        return Ok(());
    };
    if let Some(owner) = &previous.publisher
        && owner.id != site.publisher.id
    {
        return Err(PublishError::Foreign(Box::new(ForeignPages {
            url: sink.url().trim_end_matches('/').to_string(),
            job: job.to_string(),
            owner: owner.clone(),
            project: site.publisher.clone(),
        })));
    }
    let published = previous.entities.len();
    if published == 0 || policy.max_share >= 1.0 {
        return Ok(());
    }
    let current: std::collections::HashSet<&str> = current.into_iter().collect();
    let vanished: Vec<&ManifestEntry> = previous
        .entities
        .iter()
        .filter(|e| !current.contains(e.key.as_str()))
        .collect();
    if vanished.len() == published || vanished.len() as f64 > policy.max_share * published as f64 {
        return Err(PublishError::Shrink {
            job: job.to_string(),
            published,
            vanished: vanished.len(),
            max_share: policy.max_share,
            examples: vanished.iter().take(5).map(|e| e.key.clone()).collect(),
        });
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
struct RootManifest {
    site: String,
    jobs: BTreeMap<String, RootJob>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct RootJob {
    title: String,
    pages: usize,
    sitemaps: Vec<String>,
    manifest: String,
}

/// Names of a job folder's own files (without extension), never used as an entity's slug.
const RESERVED_SLUGS: [&str; 2] = ["index", "manifest"];

/// A file-name-safe, collision-free slug for an entity key: `[A-Za-z0-9._-]`, with a short hash
/// of the key appended whenever anything had to be changed.
pub fn slug(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches(|c| c == '-' || c == '.').to_string();
    // The job's own files are `index.html` and `manifest.json`: an entity keyed `index` or
    // `manifest` (in any case: some file systems ignore it) gets a hashed slug instead.
    let reserved = RESERVED_SLUGS.iter().any(|r| s.eq_ignore_ascii_case(r));
    if s == key && !s.is_empty() && s.len() <= 120 && !reserved {
        s
    } else {
        let short: String = s.chars().take(100).collect();
        let h = &blake3::hash(key.as_bytes()).to_hex()[..8];
        if short.is_empty() {
            format!("entity-{h}")
        } else {
            format!("{short}-{h}")
        }
    }
}

/// JSON for a `<script type="application/ld+json">` element: `<`, `>` and `&` are escaped as
/// Unicode sequences so no text can close the script element.
pub fn script_safe_json(v: &Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..32].to_string()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Templates named *.html are auto-escaped by minijinja: every value is HTML-escaped unless
    // marked safe, and only the pre-escaped JSON-LD is.
    env.add_template("page.html", include_str!("templates/page.html"))
        .expect("built-in template");
    env.add_template("index.html", include_str!("templates/index.html"))
        .expect("built-in template");
    env
}

fn humanize(field: &str) -> String {
    let s = field.replace('_', " ");
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// The site's identity, shared by every page: one `WebSite` and its publisher `Organization`,
/// referred to by `@id` from each page's own nodes.
fn site_identity(site: &SiteInfo) -> Vec<Value> {
    let org = format!("{}/#organization", site.base_url);
    vec![
        json!({"@type": "WebSite", "@id": format!("{}/#website", site.base_url),
               "name": site.name, "url": format!("{}/", site.base_url), "publisher": {"@id": org}}),
        json!({"@type": "Organization", "@id": org, "name": site.name,
               "url": format!("{}/", site.base_url)}),
    ]
}

/// A `BreadcrumbList` of (name, absolute URL) from the home page down.
fn breadcrumb_list(crumbs: &[(String, String)]) -> Value {
    let items: Vec<Value> = crumbs
        .iter()
        .enumerate()
        .map(|(i, (name, url))| {
            json!({"@type": "ListItem", "position": i + 1, "name": name, "item": url})
        })
        .collect();
    json!({"@type": "BreadcrumbList", "itemListElement": items})
}

/// JSON-LD with `null` members left out (a missing meta description is absent, not `null`).
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// The peer group of a page as the site links it: its hub page.
struct Hub {
    name: String,
    slug: String,
}

/// What a page links to and says about itself beyond its output.
struct PageFacts<'a> {
    slug: &'a str,
    /// When its content last changed (see [`ManifestEntry::modified_at`]).
    modified_at: &'a str,
    hub: Option<&'a Hub>,
    /// Its related pages, nearest first: (name, slug).
    related: &'a [(&'a str, String)],
}

/// `text` cut at a word boundary to at most `max` characters, with "…" when cut.
fn clip(text: &str, max: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let mut out = String::new();
    for word in text.split(' ') {
        if out.chars().count() + word.chars().count() + 2 > max {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.trim_end_matches([',', ';', ':', '.']).to_string() + "…"
}

/// The `<title>` of a job's index: short enough to be shown whole.
fn index_title(site: &SiteInfo, job: &JobInfo) -> String {
    clip(
        &format!("{}s: {}", humanize(&job.entity_label), site.name),
        crate::site_check::MAX_TITLE,
    )
}

fn job_title(site: &SiteInfo, job: &JobInfo) -> String {
    if job.description.is_empty() {
        format!("{} {}s", site.name, job.entity_label)
    } else {
        job.description.clone()
    }
}

fn render_page(
    env: &Environment,
    site: &SiteInfo,
    job: &JobInfo,
    p: &PageInput,
    facts: &PageFacts,
) -> Result<String, PublishError> {
    let slug = facts.slug;
    let out = &p.output;
    let str_field = |k: &str| out.get(k).and_then(Value::as_str).map(str::to_string);
    let title = str_field("title").unwrap_or_else(|| clip(&p.name, crate::site_check::MAX_TITLE));
    // Without a meta description field (the reviews schema has none), the summary's opening.
    let description = str_field("meta_description").or_else(|| {
        str_field("summary")
            .map(|s| clip(&s, crate::site_check::MAX_DESCRIPTION))
            .filter(|s| !s.is_empty())
    });
    let h1 = str_field("h1").unwrap_or_else(|| p.name.clone());
    let canonical = format!("{}/{}/{}.html", site.base_url, job.name, slug);
    let updated = facts
        .modified_at
        .get(..10)
        .unwrap_or(facts.modified_at)
        .to_string();
    let paragraphs: Vec<String> = str_field("summary")
        .map(|s| {
            s.split("\n\n")
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();

    let sections = output_sections(out);

    let section = job_title(site, job);
    let head = PageHead {
        title: &title,
        description: description.as_deref(),
        canonical: &canonical,
        section: &section,
    };
    let graph = page_graph(site, job, p, facts, &head);
    let json_ld = script_safe_json(&without_nulls(
        json!({"@context": "https://schema.org", "@graph": graph}),
    ));

    let ctx = json!({
        "title": title,
        "description": description,
        "canonical": canonical,
        "json_ld": json_ld,
        "site_name": site.name,
        "og_type": "article",
        "job_title": section,
        "hub": facts.hub.map(|h| json!({"name": h.name, "href": format!("groups/{}.html", h.slug)})),
        "h1": h1,
        "group": p.group,
        "group_label": job.group_label,
        "facts": p.facts.visible(),
        "related_heading": related_heading(job, p.group.as_deref()),
        "related": facts.related.iter().map(|(name, slug)| json!({"name": name, "href": format!("{slug}.html")})).collect::<Vec<_>>(),
        "paragraphs": paragraphs,
        "sections": sections,
        "updated": updated,
        "noindex": p.noindex.is_some(),
    });
    env.get_template("page.html")
        .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
        .map_err(|e| PublishError::Render {
            what: format!("the page of `{}`", p.key),
            source: e,
        })
}

/// Every field of an entity's output but the title, description, h1 and summary, as a page
/// section: so any schema renders without a custom template.
fn output_sections(out: &Value) -> Vec<Value> {
    let mut sections = Vec::new();
    if let Some(obj) = out.as_object() {
        for (k, v) in obj {
            if ["title", "meta_description", "h1", "summary"].contains(&k.as_str()) {
                continue;
            }
            let heading = if k == "faq" {
                "Frequently asked questions".to_string()
            } else {
                humanize(k)
            };
            match v {
                Value::String(s) => sections.push(json!({"heading": heading, "text": s})),
                Value::Array(items)
                    if items.iter().all(|i| i.get("question").is_some()) && !items.is_empty() =>
                {
                    sections.push(json!({"heading": heading, "qa": items}))
                }
                Value::Array(items) if !items.is_empty() => {
                    let items: Vec<String> = items
                        .iter()
                        .map(|i| {
                            i.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| i.to_string())
                        })
                        .collect();
                    sections.push(json!({"heading": heading, "items": items}))
                }
                Value::Number(n) => {
                    sections.push(json!({"heading": heading, "text": n.to_string()}))
                }
                _ => {}
            }
        }
    }
    sections
}

/// What a page's head says of it (title, description, its own URL) and the title of its job's
/// section: shared by its HTML and its structured data.
struct PageHead<'a> {
    title: &'a str,
    description: Option<&'a str>,
    canonical: &'a str,
    section: &'a str,
}

/// A page's structured data (JSON-LD `@graph`): the site's identity, the page with its
/// breadcrumb trail and its entity, and its FAQ when `publish.faq_markup` is on.
fn page_graph(
    site: &SiteInfo,
    job: &JobInfo,
    p: &PageInput,
    facts: &PageFacts,
    head: &PageHead,
) -> Vec<Value> {
    let mut crumbs = vec![
        (site.name.clone(), format!("{}/index.html", site.base_url)),
        (
            head.section.to_string(),
            format!("{}/{}/index.html", site.base_url, job.name),
        ),
    ];
    if let Some(h) = facts.hub {
        crumbs.push((
            h.name.clone(),
            format!("{}/{}/groups/{}.html", site.base_url, job.name, h.slug),
        ));
    }
    let canonical = head.canonical;
    crumbs.push((p.name.clone(), canonical.to_string()));
    let mut graph = site_identity(site);
    graph.push(json!({
        "@type": "WebPage",
        "@id": canonical,
        "url": canonical,
        "name": head.title,
        "description": head.description,
        "dateModified": facts.modified_at,
        "isPartOf": {"@id": format!("{}/#website", site.base_url)},
        "publisher": {"@id": format!("{}/#organization", site.base_url)},
        "breadcrumb": breadcrumb_list(&crumbs),
        "about": entity::about_node(&p.facts, &p.name, &p.key, p.group.as_deref(), canonical, head.description),
    }));
    if let Some(faq) = p
        .output
        .get("faq")
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty() && site.faq_markup)
    {
        let questions: Vec<Value> = faq
            .iter()
            .map(|q| {
                json!({
                    "@type": "Question",
                    "name": q.get("question"),
                    "acceptedAnswer": {"@type": "Answer", "text": q.get("answer")},
                })
            })
            .collect();
        graph.push(json!({"@type": "FAQPage", "mainEntity": questions}));
    }
    graph
}

/// The heading of a page's related links: "Similar products in Kitchen", or "Similar domains"
/// for an entity without a group (its related pages come from the whole job).
fn related_heading(job: &JobInfo, group: Option<&str>) -> String {
    match group {
        Some(g) => format!("Similar {}s in {g}", job.entity_label),
        None => format!("Similar {}s", job.entity_label),
    }
}

/// The related pages of every page (see [`related`]): (name, slug) in nearness order.
fn related_links<'a>(
    pages: &'a [PageInput],
    slugs: &[String],
    n: usize,
) -> Vec<Vec<(&'a str, String)>> {
    let ranked: Vec<related::Ranked> = pages
        .iter()
        .map(|p| related::Ranked {
            group: p.group.as_deref(),
            value: p.related_by,
            key: &p.key,
        })
        .collect();
    related::related(&ranked, n)
        .into_iter()
        .map(|near| {
            near.into_iter()
                .map(|j| (pages[j].name.as_str(), slugs[j].clone()))
                .collect()
        })
        .collect()
}

fn sitemap(urls: &[(String, String)]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    for (loc, lastmod) in urls {
        s.push_str(&format!(
            "  <url><loc>{}</loc><lastmod>{}</lastmod></url>\n",
            xml_escape(loc),
            xml_escape(lastmod)
        ));
    }
    s.push_str("</urlset>\n");
    s
}

/// What a page says: its text, and what surrounds it (its entity's facts, its related links).
/// A page with neither hashes as before they existed, so an upgrade keeps its date.
fn content_hash(p: &PageInput, related: &[(&str, String)]) -> String {
    let says = if related.is_empty() && p.facts == EntityFacts::default() {
        json!([p.output, p.name, p.group])
    } else {
        json!([p.output, p.name, p.group, p.facts.to_json(), related])
    };
    hash(&serde_json::to_vec(&says).expect("JSON serialises"))
}

/// When a page's content last changed: kept from the manifest while its content hash is the
/// same (a regeneration that wrote the same text keeps its date and its bytes); else its
/// generation time, or `now` when its text is the one already published and only what
/// surrounds it changed (a neighbour moved, so its related links did).
fn modified_at(
    prev: Option<&ManifestEntry>,
    p: &PageInput,
    content_hash: &str,
    now: &str,
) -> String {
    match prev {
        Some(e) if e.content_hash == content_hash && !e.modified_at.is_empty() => {
            e.modified_at.clone()
        }
        Some(e) if e.generation_id == p.generation_id && e.generated_at == p.generated_at => {
            now.to_string()
        }
        _ => p.generated_at.clone(),
    }
}

/// One entity's page, its data file and its manifest entry.
#[allow(clippy::too_many_arguments)]
fn render_entity(
    env: &Environment<'static>,
    site: &SiteInfo,
    job: &JobInfo,
    p: &PageInput,
    slug: &str,
    related: &[(&str, String)],
    hub: Option<&Hub>,
    prev: Option<&ManifestEntry>,
    now: &str,
) -> Result<(Vec<u8>, Vec<u8>, ManifestEntry), PublishError> {
    let content_hash = content_hash(p, related);
    let modified_at = modified_at(prev, p, &content_hash, now);
    let facts = PageFacts {
        slug,
        modified_at: &modified_at,
        hub,
        related,
    };
    let html = render_page(env, site, job, p, &facts)?.into_bytes();
    let json = serde_json::to_vec_pretty(&json!({
        "key": p.key,
        "name": p.name,
        "group": p.group,
        "input_hash": p.input_hash,
        "generated_at": p.generated_at,
        "content": p.output,
    }))
    .expect("JSON values serialise");
    let entry = ManifestEntry {
        key: p.key.clone(),
        slug: slug.to_string(),
        name: p.name.clone(),
        input_hash: p.input_hash.clone(),
        generation_id: p.generation_id,
        run_id: p.run_id,
        generated_at: p.generated_at.clone(),
        html_hash: hash(&html),
        json_hash: hash(&json),
        content_hash,
        modified_at,
    };
    Ok((html, json, entry))
}

/// One file of an entity's page to write, with the hash its manifest entry records for it (so
/// whoever writes it can remember what it wrote without telling the HTML from the JSON again).
#[derive(Debug, PartialEq)]
struct PageFile {
    path: String,
    bytes: Vec<u8>,
    hash: String,
}

/// How an entity's two files stand against the last publish and what was written ahead.
#[derive(Default)]
struct EntityWrites {
    /// The files to write now.
    now: Vec<PageFile>,
    /// Files whose bytes the last publish already wrote.
    unchanged: usize,
    /// Files an [`AheadWriter`] already wrote with these bytes.
    ahead: usize,
}

fn entity_writes(
    job: &str,
    (html, json, entry): (Vec<u8>, Vec<u8>, &ManifestEntry),
    prev: Option<&ManifestEntry>,
    ahead: &HashMap<String, String>,
) -> EntityWrites {
    let mut out = EntityWrites::default();
    let same_slug = prev.is_some_and(|e| e.slug == entry.slug);
    for (ext, bytes, new_hash, old_hash) in [
        ("html", html, &entry.html_hash, prev.map(|e| &e.html_hash)),
        ("json", json, &entry.json_hash, prev.map(|e| &e.json_hash)),
    ] {
        let path = format!("{job}/{}.{ext}", entry.slug);
        if same_slug && old_hash == Some(new_hash) {
            out.unchanged += 1;
        } else if ahead.get(&path) == Some(new_hash) {
            out.ahead += 1;
        } else {
            out.now.push(PageFile {
                path,
                bytes,
                hash: new_hash.clone(),
            });
        }
    }
    out
}

/// Writes a job's entity pages while its run is still generating, so the publish at the end has
/// only the remainder to write (pages are rendered as the final publish will render them: the
/// same `now`, related links among every page the run expects to have). Created only when the
/// final publish would be allowed ([`check_publish`]); what it wrote is handed to
/// [`publish_ahead`] as [`Ahead`], whose files it does not write again while their bytes are
/// the same. A page it wrote that the final publish renders differently (a neighbour failed, the
/// near-duplicate gate marked it) is simply written again.
pub struct AheadWriter {
    env: Environment<'static>,
    site: SiteInfo,
    job: JobInfo,
    previous: HashMap<String, ManifestEntry>,
    hubs: BTreeMap<String, Hub>,
    /// Each expected page's slug and related links (name, slug), by key.
    links: HashMap<String, (String, Vec<(String, String)>)>,
    now: String,
    written: HashMap<String, String>,
}

/// What an [`AheadWriter`] wrote: path → hash of the bytes, and the time it rendered with.
#[derive(Debug, Default)]
pub struct Ahead {
    pub now: Option<String>,
    pub files: HashMap<String, String>,
}

impl AheadWriter {
    /// `expected` are the pages the run expects to publish (their texts may still be missing:
    /// only key, name, group and ranking value are read here). `None` when the final publish
    /// would refuse (it reports why).
    pub async fn new(
        sink: &Sink,
        site: &SiteInfo,
        job: &JobInfo,
        mut expected: Vec<PageInput>,
        policy: ShrinkPolicy,
    ) -> Result<Option<AheadWriter>, PublishError> {
        expected.sort_by(|a, b| a.key.cmp(&b.key));
        let previous = published_manifest(sink, &job.name).await?;
        let keys = expected.iter().map(|p| p.key.as_str());
        if check_publish(sink, site, &job.name, previous.as_ref(), keys, policy).is_err() {
            return Ok(None);
        }
        let previous: HashMap<String, ManifestEntry> = previous
            .map(|m| m.entities.into_iter().map(|e| (e.key.clone(), e)).collect())
            .unwrap_or_default();
        let hubs = hubs_of(&expected);
        let slugs: Vec<String> = expected.iter().map(|p| slug(&p.key)).collect();
        let related = related_links(&expected, &slugs, job.related);
        let links = expected
            .iter()
            .zip(slugs)
            .zip(related)
            .map(|((p, slug), rel)| {
                let rel = rel.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
                (p.key.clone(), (slug, rel))
            })
            .collect();
        Ok(Some(AheadWriter {
            env: environment(),
            site: site.clone(),
            job: job.clone(),
            previous,
            hubs,
            links,
            now: crate::store::now_text(),
            written: HashMap::new(),
        }))
    }

    /// Renders and writes these pages (expected ones with their final texts); returns how many
    /// files it wrote.
    pub async fn write(&mut self, sink: &Sink, pages: &[PageInput]) -> Result<usize, PublishError> {
        let mut writes = Vec::new();
        for p in pages {
            let Some((slug, rel)) = self.links.get(&p.key) else {
                continue;
            };
            let related: Vec<(&str, String)> =
                rel.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
            let hub = p.group.as_ref().and_then(|g| self.hubs.get(g));
            let prev = self.previous.get(&p.key);
            let (html, json, entry) = render_entity(
                &self.env, &self.site, &self.job, p, slug, &related, hub, prev, &self.now,
            )?;
            let w = entity_writes(&self.job.name, (html, json, &entry), prev, &self.written).now;
            for f in &w {
                self.written.insert(f.path.clone(), f.hash.clone());
            }
            writes.extend(w);
        }
        let n = writes.len();
        put_all(sink, writes).await?;
        Ok(n)
    }

    pub fn finish(self) -> Ahead {
        Ahead {
            now: Some(self.now),
            files: self.written,
        }
    }
}

/// Writes files, 16 at a time.
async fn put_all(sink: &Sink, writes: Vec<PageFile>) -> Result<(), PublishError> {
    futures::stream::iter(
        writes
            .into_iter()
            .map(|f| async move { sink.put(&f.path, f.bytes).await }),
    )
    .buffer_unordered(16)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// One hub page per peer group.
fn hubs_of(pages: &[PageInput]) -> BTreeMap<String, Hub> {
    let mut hubs = BTreeMap::new();
    for g in pages.iter().filter_map(|p| p.group.as_ref()) {
        hubs.entry(g.clone()).or_insert_with(|| Hub {
            name: g.clone(),
            slug: slug(g),
        });
    }
    hubs
}

/// Publishes one job's pages and refreshes the site root.
pub async fn publish(
    sink: &Sink,
    site: &SiteInfo,
    job: &JobInfo,
    pages: Vec<PageInput>,
    policy: ShrinkPolicy,
) -> Result<PublishReport, PublishError> {
    publish_ahead(sink, site, job, pages, policy, Ahead::default()).await
}

/// [`publish`] after an [`AheadWriter`] wrote part of the pages: those files are not written
/// again while their bytes are the same.
pub async fn publish_ahead(
    sink: &Sink,
    site: &SiteInfo,
    job: &JobInfo,
    mut pages: Vec<PageInput>,
    policy: ShrinkPolicy,
    ahead: Ahead,
) -> Result<PublishReport, PublishError> {
    let env = environment();
    pages.sort_by(|a, b| a.key.cmp(&b.key));
    let manifest_path = format!("{}/manifest.json", job.name);
    remove_temporaries(sink, &job.name);
    let previous = published_manifest(sink, &job.name).await?;
    check_publish(
        sink,
        site,
        &job.name,
        previous.as_ref(),
        pages.iter().map(|p| p.key.as_str()),
        policy,
    )?;
    let previous_hubs = previous.as_ref().map(|m| m.hubs.clone());
    let previous: HashMap<String, ManifestEntry> = previous
        .map(|m| m.entities.into_iter().map(|e| (e.key.clone(), e)).collect())
        .unwrap_or_default();

    let mut report = PublishReport {
        pages: pages.len(),
        ..Default::default()
    };
    // One hub page per peer group, linking its members; every member page links to its hub.
    let hubs = hubs_of(&pages);
    let entries = write_entity_pages(
        sink,
        (&env, site, job),
        &pages,
        &hubs,
        &previous,
        ahead,
        &mut report,
    )
    .await?;
    remove_gone_pages(sink, &job.name, &previous, &entries, &mut report).await?;

    // The job's index, its hubs, sitemaps and manifest; rewritten only when their bytes change.
    let job_pages = listing::JobPages {
        env: &env,
        site,
        job,
        pages: &pages,
        entries: &entries,
        hubs: &hubs,
    };
    let mut files = job_pages.index_and_hubs()?;
    // Hubs of groups that are gone: removed, as listed in this project's manifest.
    if let Some(prev) = &previous_hubs {
        for gone in prev
            .iter()
            .filter(|h| !hubs.values().any(|c| &c.slug == *h))
        {
            sink.delete(&format!("{}/groups/{gone}.html", job.name))
                .await?;
            report.files_removed += 1;
        }
    }
    let urls = job_pages.sitemap_urls();
    let mut sitemaps = Vec::new();
    for (i, chunk) in urls.chunks(SITEMAP_MAX_URLS).enumerate() {
        let name = format!("{}/sitemap-{}.xml", job.name, i + 1);
        files.push((name.clone(), sitemap(chunk).into_bytes()));
        sitemaps.push(name);
    }
    let manifest = JobManifest {
        job: job.name.clone(),
        hubs: hubs.values().map(|h| h.slug.clone()).collect(),
        publisher: Some(site.publisher.clone()),
        entities: entries,
    };
    files.push((
        manifest_path.clone(),
        serde_json::to_vec_pretty(&manifest).expect("serialisable"),
    ));

    // The root: merge this job into the root manifest, then index, sitemap index and style.
    let this_job = RootJob {
        title: job_title(site, job),
        pages: pages.len(),
        sitemaps: sitemaps.clone(),
        manifest: manifest_path,
    };
    files.extend(listing::root_files(sink, &env, site, &job.name, this_job).await?);
    for (path, bytes) in files {
        if sink.put_if_changed(&path, bytes).await? {
            report.files_written += 1;
        } else {
            report.files_unchanged += 1;
        }
    }
    Ok(report)
}

/// Removes the temporary files an interrupted publish left in the job's folders and the root.
fn remove_temporaries(sink: &Sink, job: &str) {
    let stale = sink.remove_temporaries(job)
        + sink.remove_temporaries(&format!("{job}/groups"))
        + sink.remove_temporaries("");
    if stale > 0 {
        tracing::info!(
            files = stale,
            "removed temporary files an interrupted publish left"
        );
    }
}

/// Renders and writes the entity pages (the ones whose bytes changed, and not those an
/// [`AheadWriter`] already wrote); their manifest entries, in page order.
async fn write_entity_pages(
    sink: &Sink,
    (env, site, job): (&Environment<'static>, &SiteInfo, &JobInfo),
    pages: &[PageInput],
    hubs: &BTreeMap<String, Hub>,
    previous: &HashMap<String, ManifestEntry>,
    ahead: Ahead,
    report: &mut PublishReport,
) -> Result<Vec<ManifestEntry>, PublishError> {
    let mut entries = Vec::with_capacity(pages.len());
    let mut writes: Vec<PageFile> = Vec::new();
    let slugs: Vec<String> = pages.iter().map(|p| slug(&p.key)).collect();
    let related = related_links(pages, &slugs, job.related);
    let now = ahead.now.unwrap_or_else(crate::store::now_text);
    for ((p, slug), related) in pages.iter().zip(&slugs).zip(&related) {
        let prev = previous.get(&p.key);
        let hub = p.group.as_ref().and_then(|g| hubs.get(g));
        let (html, json, entry) = render_entity(env, site, job, p, slug, related, hub, prev, &now)?;
        let w = entity_writes(&job.name, (html, json, &entry), prev, &ahead.files);
        // A file written ahead was written by this run: it counts as written, not unchanged.
        report.files_unchanged += w.unchanged;
        report.files_written += w.ahead;
        writes.extend(w.now);
        entries.push(entry);
    }
    report.files_written += writes.len();
    put_all(sink, writes).await?;
    Ok(entries)
}

/// Pages of entities that left the source (or changed slug) are removed: only pages this
/// project's manifest lists, never other files of the folder.
async fn remove_gone_pages(
    sink: &Sink,
    job: &str,
    previous: &HashMap<String, ManifestEntry>,
    entries: &[ManifestEntry],
    report: &mut PublishReport,
) -> Result<(), PublishError> {
    let current: HashMap<&str, &str> = entries
        .iter()
        .map(|e| (e.key.as_str(), e.slug.as_str()))
        .collect();
    for (key, e) in previous {
        let now = current.get(key.as_str());
        if now != Some(&e.slug.as_str()) {
            sink.delete(&format!("{job}/{}.html", e.slug)).await?;
            sink.delete(&format!("{job}/{}.json", e.slug)).await?;
            report.files_removed += 2;
            if now.is_none() {
                report.removed_keys.push(key.clone());
            }
        }
    }
    report.removed_keys.sort();
    report.pages_removed = report.removed_keys.len();
    Ok(())
}
