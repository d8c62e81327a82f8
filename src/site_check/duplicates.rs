//! The site check's near-duplicate part: each job section's pages, read from their published
//! JSON (`JOB/SLUG.json`: the output, the entity's name and group, which are masked), compared
//! with [`similarity`](super::similarity). An indexable page more similar than
//! `max_similarity` to another indexable page of its job is a problem (both pages are named);
//! pages already marked `noindex` (by the run's near-duplicate gate) are counted, not failed.

use super::similarity::{Figures, Index, Page, output_text};
use super::{Kind, Problem, SiteReport};
use crate::sink::{Sink, SinkError};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The near-duplicate figures of one job section of a site.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobSimilarity {
    pub job: String,
    /// Over every page of the job, `noindex` ones included.
    pub figures: Figures,
    /// Indexable pages over the threshold (each one a problem).
    pub over: usize,
    /// Pages marked `noindex`.
    pub noindex: usize,
    pub max_similarity: f64,
}

impl JobSimilarity {
    /// One line of figures, then one per worst pair.
    pub fn lines(&self) -> Vec<String> {
        let f = &self.figures;
        let mut out = vec![format!(
            "{}: {} pages; similarity mean {:.2} ({}), nearest neighbour mean {:.2}, p99 {:.2}, max {:.2}; {} indexable over {:.2}, {} noindex",
            self.job,
            f.pages,
            f.mean,
            if f.mean_sampled {
                "sampled pairs"
            } else {
                "all pairs"
            },
            f.nearest_mean,
            f.nearest_p99,
            f.nearest_max,
            self.over,
            self.max_similarity,
            self.noindex
        )];
        for p in f.worst.iter().take(5) {
            out.push(format!("  {:.3}  {} ~ {}", p.similarity, p.a, p.b));
        }
        out
    }
}

/// A published page as the check compares it.
struct Published {
    html: String,
    key: String,
    text: String,
    masks: Vec<String>,
}

/// Reads the page JSON of `job/SLUG.json`, if it is one shopscribe wrote.
fn read_page(file: &str, bytes: &[u8]) -> Option<Published> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let content = v.get("content")?;
    let key = v.get("key")?.as_str()?.to_string();
    let masks = ["name", "group"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(|x| x.as_str()).map(str::to_string))
        .collect();
    Some(Published {
        html: format!("{}.html", file.strip_suffix(".json")?),
        key,
        text: output_text(content),
        masks,
    })
}

/// Compares the pages of every job section in `files` and adds figures and problems.
pub async fn check(
    sink: &Sink,
    files: &[String],
    noindex: &BTreeSet<String>,
    max_similarity: f64,
    report: &mut SiteReport,
) -> Result<(), SinkError> {
    let mut jobs: BTreeMap<String, Vec<Published>> = BTreeMap::new();
    let pages: Vec<String> = files
        .iter()
        .filter(|f| {
            f.ends_with(".json")
                && f.split_once('/')
                    .is_some_and(|(_, name)| !name.contains('/') && name != "manifest.json")
        })
        .cloned()
        .collect();
    let mut reads = std::pin::pin!(sink.get_all(pages));
    while let Some((file, bytes)) = futures::StreamExt::next(&mut reads).await {
        let Some((job, _)) = file.split_once('/') else {
            continue;
        };
        let Some(bytes) = bytes? else {
            continue;
        };
        if let Some(p) = read_page(&file, &bytes) {
            jobs.entry(job.to_string()).or_default().push(p);
        }
    }
    for (job, published) in jobs {
        let figures = check_job(&job, published, noindex, max_similarity, report);
        report.similarity.push(figures);
    }
    Ok(())
}

fn check_job(
    job: &str,
    published: Vec<Published>,
    noindex: &BTreeSet<String>,
    max_similarity: f64,
    report: &mut SiteReport,
) -> JobSimilarity {
    let indexable: Vec<bool> = published
        .iter()
        .map(|p| !noindex.contains(&p.html))
        .collect();
    let pages = published
        .par_iter()
        .map(|p| {
            let masks: Vec<&str> = p.masks.iter().map(String::as_str).collect();
            Page::new(p.key.clone(), &p.text, &masks)
        })
        .collect();
    let index = Index::new(pages);
    let cmp = index.compare();
    // Per indexable page: its most similar indexable page over the threshold.
    let mut over: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
    for &(a, b, s) in cmp.pairs.iter().filter(|p| p.2 > max_similarity) {
        let (a, b) = (a as usize, b as usize);
        if !(indexable[a] && indexable[b]) {
            continue;
        }
        for (me, other) in [(a, b), (b, a)] {
            let e = over.entry(me).or_insert((s, other));
            if s > e.0 {
                *e = (s, other);
            }
        }
    }
    for (&me, &(s, other)) in &over {
        report.problems.push(Problem {
            file: published[me].html.clone(),
            kind: Kind::NearDuplicate,
            message: format!(
                "its text is {s:.3} similar (word 5-shingle Jaccard) to the page of `{}`, over publish.max_similarity {max_similarity}",
                published[other].key
            ),
        });
    }
    JobSimilarity {
        job: job.to_string(),
        figures: index.figures(&cmp),
        over: over.len(),
        noindex: indexable.iter().filter(|i| !**i).count(),
        max_similarity,
    }
}
