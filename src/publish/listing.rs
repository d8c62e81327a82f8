//! The pages around a job's entity pages: the job's index, one hub page per peer group, the
//! job's sitemaps, and the site root (index, sitemap index, `robots.txt`, style and the root
//! manifest that several jobs and projects publishing into one site share).

use super::{
    Hub, JobInfo, ManifestEntry, PageInput, PublishError, RootJob, RootManifest, SiteInfo,
    breadcrumb_list, clip, humanize, index_title, job_title, script_safe_json, site_identity,
    xml_escape,
};
use crate::sink::Sink;
use minijinja::Environment;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A file of the site: its path and bytes.
pub(super) type File = (String, Vec<u8>);

/// One listing page: a title, a trail of crumbs (name, relative link, URL) and its entries.
struct Listing<'a> {
    title: &'a str,
    description: String,
    canonical: &'a str,
    css: &'a str,
    crumbs: Vec<(String, String, String)>,
    show_group: bool,
    entries: Vec<Value>,
    /// What the page is, for an error.
    what: &'a str,
}

/// A job's published entities (their pages in key order, and the manifest entries written
/// for them), with what its listing pages are rendered with.
pub(super) struct JobPages<'a> {
    pub env: &'a Environment<'static>,
    pub site: &'a SiteInfo,
    pub job: &'a JobInfo,
    pub pages: &'a [PageInput],
    pub entries: &'a [ManifestEntry],
    pub hubs: &'a BTreeMap<String, Hub>,
}

impl JobPages<'_> {
    /// The job's index page and its hub pages.
    pub fn index_and_hubs(&self) -> Result<Vec<File>, PublishError> {
        let (site, job) = (self.site, self.job);
        let home = (site.name.clone(), format!("{}/index.html", site.base_url));
        let section_url = format!("{}/{}/index.html", site.base_url, job.name);
        let index = self.job_index(&home, &section_url)?;
        let mut files: Vec<File> = vec![(format!("{}/index.html", job.name), index.into_bytes())];
        let job_title = job_title(site, job);
        for hub in self.hubs.values() {
            let html = self.hub_page(hub, &home, &section_url, &job_title)?;
            files.push((
                format!("{}/groups/{}.html", job.name, hub.slug),
                html.into_bytes(),
            ));
        }
        Ok(files)
    }

    fn job_index(
        &self,
        home: &(String, String),
        section_url: &str,
    ) -> Result<String, PublishError> {
        let (site, job, pages) = (self.site, self.job, self.pages);
        let index_entries: Vec<Value> = self
            .entries
            .iter()
            .zip(pages)
            .map(|(e, p)| {
                let hub = p.group.as_ref().and_then(|g| self.hubs.get(g));
                json!({"href": format!("{}.html", e.slug), "name": e.name, "group": p.group,
                       "group_href": hub.map(|h| format!("groups/{}.html", h.slug))})
            })
            .collect();
        self.render(Listing {
            title: &index_title(site, job),
            description: if job.description.is_empty() {
                format!("{} {}s.", pages.len(), job.entity_label)
            } else {
                clip(
                    &format!(
                        "{}: {} {}s.",
                        job.description,
                        pages.len(),
                        job.entity_label
                    ),
                    crate::site_check::MAX_DESCRIPTION,
                )
            },
            canonical: section_url,
            css: "../style.css",
            crumbs: vec![(home.0.clone(), "../index.html".into(), home.1.clone())],
            show_group: pages.iter().any(|p| p.group.is_some()),
            entries: index_entries,
            what: "the job index",
        })
    }

    fn hub_page(
        &self,
        hub: &Hub,
        home: &(String, String),
        section_url: &str,
        job_title: &str,
    ) -> Result<String, PublishError> {
        let (site, job) = (self.site, self.job);
        let members: Vec<Value> = self
            .entries
            .iter()
            .zip(self.pages)
            .filter(|(_, p)| p.group.as_deref() == Some(hub.name.as_str()))
            .map(|(e, _)| json!({"href": format!("../{}.html", e.slug), "name": e.name}))
            .collect();
        let title = format!("{}: {}", humanize(&job.group_label), hub.name);
        self.render(Listing {
            title: &title,
            description: format!(
                "{} {}s in the {} {}.",
                members.len(),
                job.entity_label,
                hub.name,
                job.group_label
            ),
            canonical: &format!("{}/{}/groups/{}.html", site.base_url, job.name, hub.slug),
            css: "../../style.css",
            crumbs: vec![
                (home.0.clone(), "../../index.html".into(), home.1.clone()),
                (
                    job_title.to_string(),
                    "../index.html".into(),
                    section_url.to_string(),
                ),
            ],
            show_group: false,
            entries: members,
            what: "a hub page",
        })
    }

    fn render(&self, l: Listing) -> Result<String, PublishError> {
        let (site, job) = (self.site, self.job);
        let mut graph = site_identity(site);
        let mut trail: Vec<(String, String)> = l
            .crumbs
            .iter()
            .map(|(n, _, u)| (n.clone(), u.clone()))
            .collect();
        trail.push((l.title.to_string(), l.canonical.to_string()));
        graph.push(
            json!({"@type": "CollectionPage", "@id": l.canonical, "url": l.canonical,
            "name": l.title, "isPartOf": {"@id": format!("{}/#website", site.base_url)},
            "breadcrumb": breadcrumb_list(&trail)}),
        );
        let json_ld = script_safe_json(&json!({"@context": "https://schema.org", "@graph": graph}));
        let crumbs: Vec<Value> = l
            .crumbs
            .into_iter()
            .map(|(name, href, _)| json!({"name": name, "href": href}))
            .collect();
        self.env
            .get_template("index.html")
            .and_then(|t| {
                t.render(minijinja::value::Serde(json!({
                    "title": l.title,
                    "description": l.description,
                    "canonical": l.canonical,
                    "css": l.css,
                    "site_name": site.name,
                    "json_ld": json_ld,
                    "crumbs": crumbs,
                    "name_heading": humanize(&job.entity_label),
                    "group_heading": humanize(&job.group_label),
                    "show_group": l.show_group,
                    "entries": l.entries,
                })))
            })
            .map_err(|e| PublishError::Render {
                what: l.what.to_string(),
                source: e,
            })
    }

    /// The URLs the job's sitemaps list with their dates: its indexable entity pages (a
    /// `noindex` page is still published and linked, but no sitemap offers it for indexing)
    /// and its hubs, dated by their newest member.
    pub fn sitemap_urls(&self) -> Vec<(String, String)> {
        let (site, job) = (self.site, self.job);
        let mut urls: Vec<(String, String)> = self
            .entries
            .iter()
            .zip(self.pages)
            .filter(|(_, p)| p.noindex.is_none())
            .map(|(e, _)| {
                (
                    format!("{}/{}/{}.html", site.base_url, job.name, e.slug),
                    e.modified_at.get(..10).unwrap_or("").to_string(),
                )
            })
            .collect();
        for hub in self.hubs.values() {
            let newest = self
                .entries
                .iter()
                .zip(self.pages)
                .filter(|(_, p)| p.group.as_deref() == Some(hub.name.as_str()))
                .map(|(e, _)| e.modified_at.get(..10).unwrap_or(""))
                .max()
                .unwrap_or("")
                .to_string();
            urls.push((
                format!("{}/{}/groups/{}.html", site.base_url, job.name, hub.slug),
                newest,
            ));
        }
        urls
    }
}

/// The site root with this job merged into the root manifest: index, sitemap index,
/// `robots.txt`, style and the manifest.
pub(super) async fn root_files(
    sink: &Sink,
    env: &Environment<'static>,
    site: &SiteInfo,
    job_name: &str,
    this_job: RootJob,
) -> Result<Vec<File>, PublishError> {
    let mut root: RootManifest = sink
        .get("manifest.json")
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    // Several projects may publish into one site: the first one names it, so each publishing
    // the same pages does not flip the root files back and forth.
    if root.site.is_empty() {
        root.site = site.name.clone();
    }
    root.jobs.insert(job_name.to_string(), this_job);
    let mut sitemap_index = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    for j in root.jobs.values() {
        for s in &j.sitemaps {
            sitemap_index.push_str(&format!(
                "  <sitemap><loc>{}</loc></sitemap>\n",
                xml_escape(&format!("{}/{s}", site.base_url))
            ));
        }
    }
    sitemap_index.push_str("</sitemapindex>\n");
    let root_entries: Vec<Value> = root
        .jobs
        .iter()
        .map(|(name, j)| json!({"href": format!("{name}/index.html"), "name": format!("{} ({} pages)", j.title, j.pages)}))
        .collect();
    let root_index = env
        .get_template("index.html")
        .and_then(|t| {
            t.render(minijinja::value::Serde(json!({
                "title": root.site,
                "canonical": format!("{}/index.html", site.base_url),
                "css": "style.css",
                "site_name": root.site,
                "json_ld": script_safe_json(&json!({"@context": "https://schema.org",
                    "@graph": site_identity(&SiteInfo { name: root.site.clone(), ..site.clone() })})),
                "name_heading": "Section",
                "show_group": false,
                "entries": root_entries,
            })))
        })
        .map_err(|e| PublishError::Render {
            what: "the site index".into(),
            source: e,
        })?;
    Ok(vec![
        ("index.html".into(), root_index.into_bytes()),
        ("sitemap.xml".into(), sitemap_index.into_bytes()),
        (
            "robots.txt".into(),
            format!(
                "User-agent: *\nAllow: /\n\nSitemap: {}/sitemap.xml\n",
                site.base_url
            )
            .into_bytes(),
        ),
        (
            "style.css".into(),
            include_bytes!("templates/style.css").to_vec(),
        ),
        (
            "manifest.json".into(),
            serde_json::to_vec_pretty(&root).expect("serialisable"),
        ),
    ])
}
