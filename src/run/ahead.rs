//! Publishing while generating: a task beside a real-time run writes each entity's page as soon
//! as its good text is stored, so the publish at the end of the run writes only what changed
//! since (pages whose neighbours failed, the gate's `noindex` marks), the hubs, indexes and
//! sitemaps. While a run waits on the provider the CPU and the disk are idle; a site of 12,000
//! files otherwise costs seconds after the last answer. Best effort: anything that goes wrong
//! here only leaves more for the final publish, which alone decides what the site is.

use super::{job_info, key_index, page_input, site_info};
use crate::config::{Job, Project};
use crate::plan::{Plan, WorkItem};
use crate::publish::{self, Ahead, AheadWriter, PageInput};
use crate::sink::Sink;
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::{debug, info};

/// How often the task looks for newly stored texts.
const POLL: Duration = Duration::from_millis(500);

/// The running task, or nothing (publishing off, nothing to do, or the final publish would
/// refuse).
pub(super) struct AheadTask(Option<(oneshot::Sender<()>, tokio::task::JoinHandle<Ahead>)>);

impl AheadTask {
    /// Stops the task (after the write in progress) and returns what it wrote.
    pub(super) async fn finish(self) -> Ahead {
        let Some((stop, handle)) = self.0 else {
            return Ahead::default();
        };
        let _ = stop.send(());
        handle.await.unwrap_or_default()
    }
}

/// Starts writing pages ahead for the run's `work`, among the pages the run expects to have:
/// every entity with a good text now plus every one it is about to generate.
pub(super) async fn start(
    project: &Project,
    job: &Job,
    plan: &Plan,
    work: &[WorkItem],
    run_id: i64,
    store: Arc<dyn Store>,
    policy: publish::ShrinkPolicy,
) -> AheadTask {
    if work.is_empty() {
        return AheadTask(None);
    }
    match writer(project, job, plan, work, store.as_ref(), policy).await {
        Ok(Some(writer)) => {
            let (stop, stopped) = oneshot::channel();
            let pending: BTreeSet<String> = work
                .iter()
                .map(|w| plan.entities.keys[w.index].clone())
                .collect();
            let (project, job) = (project.clone(), job.clone());
            let entities = plan.entities.clone();
            let handle = tokio::spawn(async move {
                let ctx = Ctx {
                    project: &project,
                    job: &job,
                    entities: &entities,
                    run_id,
                    store: store.as_ref(),
                };
                ctx.run(writer, pending, stopped).await
            });
            AheadTask(Some((stop, handle)))
        }
        Ok(None) => AheadTask(None),
        Err(e) => {
            debug!(error = %e, "pages are not written ahead");
            AheadTask(None)
        }
    }
}

async fn writer(
    project: &Project,
    job: &Job,
    plan: &Plan,
    work: &[WorkItem],
    store: &dyn Store,
    policy: publish::ShrinkPolicy,
) -> Result<Option<AheadWriter>, super::RunError> {
    let sink = Sink::open(&project.publish.url).map_err(publish::PublishError::from)?;
    let site = site_info(project, store).await?;
    let entities = &plan.entities;
    let good = store.good_generations(&job.name, &entities.keys).await?;
    let noindex = super::gate::noindexed(store, &job.name).await?;
    let index = key_index(entities);
    let mut expected: BTreeMap<String, PageInput> = good
        .into_iter()
        .filter_map(|g| {
            page_input(
                job,
                entities,
                *index.get(g.entity_key.as_str())?,
                g,
                &noindex,
            )
        })
        .map(|p| (p.key.clone(), p))
        .collect();
    for w in work {
        let key = &entities.keys[w.index];
        expected
            .entry(key.clone())
            .or_insert_with(|| placeholder(job, entities, w.index));
    }
    let expected = expected.into_values().collect();
    Ok(AheadWriter::new(&sink, &site, &job_info(project, job), expected, policy).await?)
}

/// An expected page whose text is not there yet: what related links and hubs need of it.
fn placeholder(job: &Job, entities: &crate::source::Entities, i: usize) -> PageInput {
    PageInput {
        key: entities.keys[i].clone(),
        name: entities.name(i).to_string(),
        group: entities.group(i).map(str::to_string),
        output: serde_json::Value::Null,
        input_hash: String::new(),
        generation_id: 0,
        run_id: 0,
        generated_at: String::new(),
        noindex: None,
        related_by: publish::entity::related_value(job, entities, i),
        facts: publish::EntityFacts::of(job, entities, i),
    }
}

struct Ctx<'a> {
    project: &'a Project,
    job: &'a Job,
    entities: &'a crate::source::Entities,
    run_id: i64,
    store: &'a dyn Store,
}

impl Ctx<'_> {
    /// Until stopped: every [`POLL`], the pending entities this run has stored a good text for
    /// are written.
    async fn run(
        &self,
        mut writer: AheadWriter,
        mut pending: BTreeSet<String>,
        mut stopped: oneshot::Receiver<()>,
    ) -> Ahead {
        let Ok(sink) = Sink::open(&self.project.publish.url) else {
            return Ahead::default();
        };
        let index = key_index(self.entities);
        let no_marks = BTreeMap::new();
        let mut files = 0;
        while !pending.is_empty() {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep(POLL) => {}
            }
            let keys: Vec<String> = pending.iter().cloned().collect();
            let good = match self.store.good_generations(&self.job.name, &keys).await {
                Ok(g) => g,
                Err(e) => {
                    debug!(error = %e, "stopped writing pages ahead");
                    break;
                }
            };
            let ready: Vec<PageInput> = good
                .into_iter()
                .filter(|g| g.run_id == self.run_id)
                .filter_map(|g| {
                    let i = *index.get(g.entity_key.as_str())?;
                    page_input(self.job, self.entities, i, g, &no_marks)
                })
                .collect();
            for p in &ready {
                pending.remove(&p.key);
            }
            match writer.write(&sink, &ready).await {
                Ok(n) => files += n,
                Err(e) => {
                    debug!(error = %e, "stopped writing pages ahead");
                    break;
                }
            }
        }
        info!(files, job = %self.job.name, "pages written while generating");
        writer.finish()
    }
}
