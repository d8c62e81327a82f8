//! The near-duplicate gate of a run: after generating and before publishing, each page this run
//! wrote is compared with the job's other current pages ([`similarity`]). A page more similar
//! than `publish.max_similarity` to a page that stays is regenerated with a variation
//! instruction, up to `publish.max_variations` times; a page still over it is published
//! `noindex` and left out of the sitemap, with the reason kept in the store.
//!
//! Of two pages of this run that resemble each other, the one first in key order stays and the
//! other is regenerated; pages of earlier runs always stay. Every regeneration is a paid call
//! and is stored at once like any generation (spooled if the store will not take it). The
//! reasons live in `service_state` (`noindex:JOB`, keyed by entity, each naming the generation
//! it judged), so a later generation of the entity clears its mark by itself; the gate's figures
//! of a run are kept as `run_similarity:RUN` for the summary and the report.

use super::{AttemptPolicy, Outcome, RunError, generate_one, spool};
use crate::config::{Job, Project};
use crate::llm::{ChatRequest, Provider};
use crate::plan::{Plan, WorkItem};
use crate::prompt::Prompter;
use crate::site_check::similarity::{Comparison, Figures, Index, Page, output_text};
use crate::store::{GenerationStatus, NewGeneration, RunFigures, Store};
use crate::validate::Validator;
use futures::StreamExt;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tracing::{info, warn};

/// A page the gate published `noindex`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Noindex {
    /// The generation judged: a later generation of the entity is not marked.
    pub generation_id: i64,
    pub similar_to: String,
    pub similarity: f64,
    pub variations: u32,
    pub reason: String,
}

/// What the gate did in one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub max_similarity: f64,
    /// Pages of this run compared with the job's pages.
    pub checked: usize,
    /// Pages regenerated at least once.
    pub regenerated: usize,
    /// Regeneration requests sent (each one paid), with their tokens and cost.
    pub calls: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    /// The pages left `noindex` by this run, by key.
    pub noindex: BTreeMap<String, Noindex>,
    /// The job's figures after the gate.
    pub figures: Figures,
}

/// The `service_state` names of the gate's records.
fn noindex_state(job: &str) -> String {
    format!("noindex:{job}")
}
fn report_state(run_id: i64) -> String {
    format!("run_similarity:{run_id}")
}

/// The gate's figures of a run, if it ran.
pub async fn recorded(store: &dyn Store, run_id: i64) -> Option<GateReport> {
    let text = store.state_get(&report_state(run_id)).await.ok()??;
    serde_json::from_str(&text).ok()
}

/// The job's pages marked `noindex`, by key (each still to be matched to its generation).
pub async fn noindexed(
    store: &dyn Store,
    job: &str,
) -> Result<BTreeMap<String, Noindex>, RunError> {
    let text = store.state_get(&noindex_state(job)).await?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

/// One page in the gate: its text, and the generation the text is from.
struct Current {
    key: String,
    masks: Vec<String>,
    text: String,
    generation_id: i64,
    /// Written by this run (and so open to regeneration).
    this_run: bool,
}

impl Current {
    fn page(&self) -> Page {
        let masks: Vec<&str> = self.masks.iter().map(String::as_str).collect();
        Page::new(self.key.clone(), &self.text, &masks)
    }
}

/// The job's current pages, in key order.
async fn current_pages(
    store: &dyn Store,
    job: &Job,
    plan: &Plan,
    run_id: i64,
) -> Result<Vec<Current>, RunError> {
    let e = &plan.entities;
    let index: HashMap<&str, usize> = e
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut out: Vec<Current> = Vec::new();
    for g in store.good_generations(&job.name, &e.keys).await? {
        let (Some(&i), Ok(output)) = (
            index.get(g.entity_key.as_str()),
            serde_json::from_str::<serde_json::Value>(&g.output),
        ) else {
            continue;
        };
        out.push(Current {
            masks: [Some(e.name(i)), e.group(i)]
                .into_iter()
                .flatten()
                .map(str::to_string)
                .collect(),
            text: output_text(&output),
            generation_id: g.generation_id,
            this_run: g.run_id == run_id,
            key: g.entity_key,
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The pages open to regeneration that are too similar to a page that stays, with that page
/// and the similarity. Pages not open stay; an open page stays unless it resembles one that
/// stays, taken in key order (so of two new look-alikes the first stays).
fn too_similar(cmp: &Comparison, open: &[bool], max_similarity: f64) -> Vec<(usize, usize, f64)> {
    let mut over: Vec<Vec<(usize, f64)>> = vec![Vec::new(); open.len()];
    for &(a, b, s) in cmp.pairs.iter().filter(|p| p.2 > max_similarity) {
        over[a as usize].push((b as usize, s));
        over[b as usize].push((a as usize, s));
    }
    let mut stays: Vec<bool> = open.iter().map(|o| !o).collect();
    let mut out = Vec::new();
    for p in (0..open.len()).filter(|&p| open[p]) {
        let worst = over[p]
            .iter()
            .filter(|(q, _)| stays[*q])
            .max_by(|x, y| x.1.total_cmp(&y.1));
        match worst {
            Some(&(q, s)) => out.push((p, q, s)),
            None => stays[p] = true,
        }
    }
    out
}

/// Runs the gate over a run's pages (see the module's doc); `None` when it is off
/// (`max_similarity` 1) or the run wrote no page.
pub(super) async fn run_gate(
    run: &super::RunCtx<'_>,
    plan: &Plan,
    max_cost: Option<f64>,
    figures: &mut RunFigures,
) -> Result<Option<GateReport>, RunError> {
    let (project, job, run_id) = (run.project, run.job, run.run_id);
    let (store, provider) = (run.store.clone(), run.provider.clone());
    let max = project.publish.max_similarity;
    let mut pages = current_pages(store.as_ref(), job, plan, run_id).await?;
    if max >= 1.0 || !pages.iter().any(|p| p.this_run) {
        return Ok(None);
    }
    let t = std::time::Instant::now();
    let mut report = GateReport {
        max_similarity: max,
        checked: pages.iter().filter(|p| p.this_run).count(),
        ..Default::default()
    };
    let work: HashMap<&str, &WorkItem> = plan
        .work
        .iter()
        .map(|w| (plan.entities.keys[w.index].as_str(), w))
        .collect();
    let mut open: Vec<bool> = pages.iter().map(|p| p.this_run).collect();
    let mut regenerated = vec![false; pages.len()];
    let mut variation = 0;
    // The last comparison gives the report's figures too: all pairs of a job up to 1,000 pages
    // are compared exactly, so comparing again would double the gate's time.
    let (index, cmp, over) = loop {
        let index = Index::new(pages.par_iter().map(Current::page).collect());
        let cmp = index.compare();
        let over = too_similar(&cmp, &open, max);
        let spent = max_cost.is_some_and(|m| figures.cost_usd >= m);
        if over.is_empty() || variation >= project.publish.max_variations || spent {
            break (index, cmp, over);
        }
        variation += 1;
        let asked: Vec<(usize, f64)> = over.iter().map(|&(p, _, s)| (p, s)).collect();
        let answers = regenerate(
            project, job, &pages, &work, &asked, variation, run_id, &store, &provider,
        )
        .await?;
        open = vec![false; pages.len()];
        for (p, g) in answers {
            count(&mut report, figures, &g);
            regenerated[p] = true;
            open[p] = true;
            if g.status == GenerationStatus::Ok
                && let Some(out) = g
                    .output
                    .as_deref()
                    .and_then(|o| serde_json::from_str(o).ok())
            {
                pages[p].text = output_text(&out);
            }
        }
        // Their new generation ids, for the noindex records.
        let keys: Vec<String> = asked.iter().map(|&(p, _)| pages[p].key.clone()).collect();
        let ids: HashMap<String, i64> = store
            .good_generations(&job.name, &keys)
            .await?
            .into_iter()
            .map(|g| (g.entity_key, g.generation_id))
            .collect();
        for &(p, _) in &asked {
            pages[p].generation_id = ids
                .get(&pages[p].key)
                .copied()
                .unwrap_or(pages[p].generation_id);
        }
    };
    report.regenerated = regenerated.iter().filter(|r| **r).count();
    report.noindex = marks(&pages, &over, variation, max);
    report.figures = index.figures(&cmp);
    keep(store.as_ref(), job, run_id, &pages, &report).await?;
    info!(job = %job.name, checked = report.checked, regenerated = report.regenerated, calls = report.calls, noindex = report.noindex.len(), max = report.figures.nearest_max, ms = t.elapsed().as_millis() as u64, "near-duplicate gate");
    Ok(Some(report))
}

/// The noindex marks of the pages still `over` after `variations` regenerations.
fn marks(
    pages: &[Current],
    over: &[(usize, usize, f64)],
    variations: u32,
    max: f64,
) -> BTreeMap<String, Noindex> {
    over.iter()
        .map(|&(p, q, s)| {
            let reason = format!(
                "its text is {s:.3} similar to the page of `{}` (word 5-shingle Jaccard, over publish.max_similarity {max}) after {variations} variation(s)",
                pages[q].key
            );
            let mark = Noindex {
                generation_id: pages[p].generation_id,
                similar_to: pages[q].key.clone(),
                similarity: s,
                variations,
                reason,
            };
            (pages[p].key.clone(), mark)
        })
        .collect()
}

/// Adds one regeneration's spend to the gate's report and the run's figures.
fn count(report: &mut GateReport, figures: &mut RunFigures, g: &NewGeneration) {
    report.calls += g.attempts as u64;
    report.tokens_in += g.tokens_in as u64;
    report.tokens_out += g.tokens_out as u64;
    report.cost_usd += g.cost_usd;
    figures.tokens_in += g.tokens_in as u64;
    figures.tokens_out += g.tokens_out as u64;
    figures.cost_usd += g.cost_usd;
}

/// Keeps the noindex marks (this run's, and earlier ones whose generation is still current)
/// and the run's figures.
async fn keep(
    store: &dyn Store,
    job: &Job,
    run_id: i64,
    pages: &[Current],
    report: &GateReport,
) -> Result<(), RunError> {
    let current: HashMap<&str, i64> = pages
        .iter()
        .map(|p| (p.key.as_str(), p.generation_id))
        .collect();
    let mut marks = noindexed(store, &job.name).await?;
    marks.retain(|k, m| current.get(k.as_str()) == Some(&m.generation_id));
    marks.extend(report.noindex.clone());
    let text = serde_json::to_string(&marks).expect("marks serialise");
    store.state_set(&noindex_state(&job.name), &text).await?;
    let text = serde_json::to_string(report).expect("the gate's report serialises");
    store.state_set(&report_state(run_id), &text).await?;
    Ok(())
}

/// The sentence added to a regeneration's user prompt (network providers read it; the offline
/// writer varies its phrasing by [`ChatRequest::variation`] instead).
fn variation_instruction(similarity: f64) -> String {
    format!(
        "\n\nYour previous text for this page was too similar to another page of this site ({:.0} % of its five-word sequences are shared). Write it again with a different structure and different wording: other sentence openings, another order of the points, no phrasing reused from other pages. The facts stay the same.",
        similarity * 100.0
    )
}

/// Regenerates the pages `asked` (index, similarity) with a variation instruction, stores every
/// answer at once, and returns them.
#[allow(clippy::too_many_arguments)]
async fn regenerate(
    project: &Project,
    job: &Job,
    pages: &[Current],
    work: &HashMap<&str, &WorkItem>,
    asked: &[(usize, f64)],
    variation: u32,
    run_id: i64,
    store: &Arc<dyn Store>,
    provider: &Arc<dyn Provider>,
) -> Result<Vec<(usize, NewGeneration)>, RunError> {
    let prompter = Prompter::new(job)?;
    let validator = Arc::new(Validator::new(&job.schema, job.validate.clone())?);
    let schema = Arc::new(job.schema.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let llm = &project.llm;
    let policy = AttemptPolicy {
        max_attempts: llm.max_attempts,
        budget: llm.max_entity_time,
        price: llm.price(),
    };
    let mut tasks = Vec::new();
    for &(p, similarity) in asked {
        let Some(w) = work.get(pages[p].key.as_str()) else {
            continue;
        };
        let key = pages[p].key.clone();
        let (system, user) = prompter.render(&key, &w.context)?;
        let request = ChatRequest {
            entity_key: key.clone(),
            system,
            user: user + &variation_instruction(similarity),
            schema: schema.clone(),
            max_output_tokens: llm.max_output_tokens,
            temperature: llm.temperature,
            context: w.context.clone(),
            variation,
        };
        let template = NewGeneration {
            run_id,
            job: job.name.clone(),
            entity_key: key,
            input_hash: w.input_hash.clone(),
            provider: crate::llm::realtime_name(provider.name()).to_string(),
            model: provider.model().to_string(),
            ..empty_generation()
        };
        let name = pages[p].masks.first().cloned().unwrap_or_default();
        let (provider, validator, stop) = (provider.clone(), validator.clone(), stop.clone());
        tasks.push(async move {
            let Outcome { generation, .. } =
                generate_one(provider.as_ref(), &validator, request, &name, policy, &stop).await;
            let g = NewGeneration {
                run_id: template.run_id,
                job: template.job,
                entity_key: template.entity_key,
                input_hash: template.input_hash,
                provider: template.provider,
                model: template.model,
                ..generation
            };
            (p, g)
        });
    }
    let answers: Vec<(usize, NewGeneration)> = futures::stream::iter(tasks)
        .buffer_unordered(llm.max_in_flight)
        .collect()
        .await;
    store_answers(project, job, run_id, store.as_ref(), &answers).await?;
    Ok(answers)
}

/// A generation with nothing in it yet, for struct update syntax.
fn empty_generation() -> NewGeneration {
    NewGeneration {
        run_id: 0,
        job: String::new(),
        entity_key: String::new(),
        input_hash: String::new(),
        status: GenerationStatus::Failed,
        prompt_system: String::new(),
        prompt_user: String::new(),
        output: None,
        error: None,
        provider: String::new(),
        model: String::new(),
        tokens_in: 0,
        tokens_out: 0,
        cost_usd: 0.0,
        latency_ms: 0,
        attempts: 0,
        attempt_log: Vec::new(),
    }
}

/// Stores paid answers, or spools them when the store will not take them.
async fn store_answers(
    project: &Project,
    job: &Job,
    run_id: i64,
    store: &dyn Store,
    answers: &[(usize, NewGeneration)],
) -> Result<(), RunError> {
    // Only answers: a request that met a run-fatal error or never ran has no attempt to keep.
    let batch: Vec<NewGeneration> = answers
        .iter()
        .filter(|(_, g)| g.attempts > 0)
        .map(|(_, g)| g.clone())
        .collect();
    if batch.is_empty() {
        return Ok(());
    }
    match crate::store::with_reconnect("storing regenerations", || store.record_generations(&batch))
        .await
    {
        Ok(()) => Ok(()),
        Err(source) => {
            warn!(error = %source, "cannot store the regenerations; spooling them");
            let path = spool::write(&project.spool_dir, &job.name, run_id, &batch)?;
            Err(RunError::Spooled {
                answers: batch.len(),
                path,
                source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(texts: &[&str]) -> Index {
        Index::new(
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| Page::new(format!("k{i}"), t, &[]))
                .collect(),
        )
    }

    const A: &str = "the shop is compared with similar shops over the last twelve months";
    const B: &str = "readers who follow the category will find the usual signals of demand here";

    #[test]
    fn of_two_new_look_alikes_the_first_stays_and_earlier_pages_always_stay() {
        // k0 and k1 new and alike: k1 is regenerated (like k0), k2 differs.
        let i = index(&[A, A, B]);
        assert_eq!(
            too_similar(&i.compare(), &[true, true, true], 0.9),
            vec![(1, 0, 1.0)]
        );
        // k0 earlier, k1 and k2 new copies of it: both are regenerated, k0 stays.
        let i = index(&[A, A, A]);
        assert_eq!(
            too_similar(&i.compare(), &[false, true, true], 0.9),
            vec![(1, 0, 1.0), (2, 0, 1.0)]
        );
        // Only earlier pages alike: nothing of this run to regenerate.
        assert!(too_similar(&i.compare(), &[false, false, false], 0.9).is_empty());
        // At or under the threshold nothing is.
        assert!(too_similar(&index(&[A, A]).compare(), &[true, true], 1.0).is_empty());
    }

    #[test]
    fn the_variation_instruction_says_why_and_what_to_do() {
        let s = variation_instruction(0.97);
        assert!(s.contains("97 %") && s.contains("different structure and different wording"));
    }
}
