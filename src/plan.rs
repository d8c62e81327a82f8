//! Planning: which entities need the writer, and what that should cost. Source rows → features →
//! per-entity context and input hash → compared with each entity's last good generation.

use crate::config::{Job, Project};
use crate::features::{self, FeatureOptions, Features};
use crate::llm::Provider;
use crate::prompt::{PromptError, Prompter, build_context, input_hash};
use crate::source::Entities;
use crate::store::EntityState;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Why an entity is on the work list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Never generated successfully (and never tried).
    New,
    /// Its inputs changed since its last good text.
    Changed,
    /// Its last attempt failed and it has no good text for these inputs.
    Retry,
    /// Unchanged, but `--force` asked for it.
    Forced,
}

#[derive(Debug, Clone)]
pub struct WorkItem {
    pub index: usize,
    pub input_hash: String,
    pub reason: Reason,
    pub context: Arc<Value>,
}

/// The outcome of planning a job.
pub struct Plan {
    pub entities: Entities,
    pub features: Features,
    pub work: Vec<WorkItem>,
    pub new: usize,
    pub changed: usize,
    pub retry: usize,
    pub unchanged: usize,
    /// Input hash per entity index (for the manifest and the store).
    pub hashes: Vec<String>,
}

pub fn feature_specs(job: &Job) -> Vec<features::MetricSpec> {
    job.metrics.iter().map(|m| m.spec.clone()).collect()
}

/// The job's features over all its entities (peer groups need the whole population).
pub fn job_features(job: &Job, entities: &Entities) -> Features {
    features::compute(
        &entities.input,
        &feature_specs(job),
        FeatureOptions {
            min_group_size: job.min_group_size,
        },
    )
}

/// Entity `i`'s prompt context and the input hash that decides whether it must be written again.
pub fn context_and_hash(
    job: &Job,
    entities: &Entities,
    features: &Features,
    provider: &dyn Provider,
    i: usize,
) -> (Value, String) {
    let context = build_context(job, entities, features, i);
    // Batch and real-time calls of one model hash alike (see `llm::realtime_name`).
    let hash = input_hash(
        job,
        crate::llm::realtime_name(provider.name()),
        provider.model(),
        &context,
    );
    (context, hash)
}

/// Builds the plan. `force` puts unchanged entities on the work list too.
pub fn make_plan(
    job: &Job,
    entities: Entities,
    states: &HashMap<String, EntityState>,
    provider: &dyn Provider,
    force: bool,
) -> Plan {
    let features = job_features(job, &entities);
    let mut plan = Plan {
        work: Vec::new(),
        new: 0,
        changed: 0,
        retry: 0,
        unchanged: 0,
        hashes: Vec::with_capacity(entities.len()),
        features,
        entities,
    };
    for i in 0..plan.entities.len() {
        let (context, hash) = context_and_hash(job, &plan.entities, &plan.features, provider, i);
        let state = states.get(&plan.entities.keys[i]);
        let reason = match state {
            None => Some(Reason::New),
            Some(s) if s.good_input_hash.as_deref() == Some(hash.as_str()) => {
                plan.unchanged += 1;
                force.then_some(Reason::Forced)
            }
            Some(s) if s.good_input_hash.is_none() || s.last_input_hash == hash => {
                Some(Reason::Retry)
            }
            Some(_) => Some(Reason::Changed),
        };
        match reason {
            Some(Reason::New) => plan.new += 1,
            Some(Reason::Changed) => plan.changed += 1,
            Some(Reason::Retry) => plan.retry += 1,
            _ => {}
        }
        if let Some(reason) = reason {
            plan.work.push(WorkItem {
                index: i,
                input_hash: hash.clone(),
                reason,
                context: Arc::new(context),
            });
        }
        plan.hashes.push(hash);
    }
    plan
}

/// Renders the prompts of every entity on the work list (and, for the first, the trimmed
/// variant a "context too long" answer asks for; with no work, the first entity's) and returns
/// the first template error, so that an undefined variable stops `plan` and `run` before any
/// provider call instead of in the middle of a paid run. The rendered texts are dropped.
pub fn check_prompts(job: &Job, plan: &Plan) -> Result<(), PromptError> {
    use rayon::prelude::*;
    let prompter = Prompter::new(job)?;
    let render = |i: usize, context: &Value| prompter.render(&plan.entities.keys[i], context);
    let failures: Vec<PromptError> = plan
        .work
        .par_iter()
        .filter_map(|w| render(w.index, &w.context).err())
        .collect();
    let count = failures.len();
    if let Some(mut first) = failures.into_iter().next() {
        first.others = count - 1;
        return Err(first);
    }
    let sample = match plan.work.first() {
        Some(w) => Some((w.index, (*w.context).clone())),
        None if !plan.entities.is_empty() => {
            let context = build_context(job, &plan.entities, &plan.features, 0);
            render(0, &context)?;
            Some((0, context))
        }
        None => None,
    };
    if let Some((i, mut context)) = sample {
        context["trim"] = Value::Bool(true);
        render(i, &context)?;
    }
    Ok(())
}

/// Token and cost estimate for a work list.
#[derive(Debug, Clone, Copy, Default)]
pub struct Estimate {
    pub requests: u64,
    pub prompt_tokens: u64,
    /// Expected output: the job's average output over its past good generations, or the
    /// `max_output_tokens` budget when there is no history (an upper bound).
    pub output_tokens: u64,
    pub output_from_history: bool,
    /// `None` when the project has no price for the model (the offline writer costs 0).
    pub cost_usd: Option<f64>,
}

/// Why a cost estimate could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EstimateError {
    /// A prompt of the work list did not render.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// The job's average output so far could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

pub async fn estimate_work(
    project: &Project,
    job: &Job,
    plan: &Plan,
    work: &[WorkItem],
    provider: &dyn Provider,
    store: &dyn crate::store::Store,
) -> Result<Estimate, EstimateError> {
    let prompter = crate::prompt::Prompter::new(job)?;
    let mut e = Estimate {
        requests: work.len() as u64,
        ..Default::default()
    };
    for w in work {
        let (system, user) = prompter.render(&plan.entities.keys[w.index], &w.context)?;
        e.prompt_tokens +=
            (provider.estimate_tokens(&system) + provider.estimate_tokens(&user) + 12) as u64;
    }
    let per_request = match store
        .average_output_tokens(&job.name, provider.model())
        .await?
    {
        Some(avg) => {
            e.output_from_history = true;
            avg.ceil() as u64
        }
        None => project.llm.max_output_tokens as u64,
    };
    e.output_tokens = per_request * e.requests;
    e.cost_usd = if provider.name() == "offline" {
        Some(0.0)
    } else {
        project.llm.price().map(|p| {
            let batch = provider.batch_api().is_some();
            p.cost(e.prompt_tokens, e.output_tokens, batch)
        })
    };
    Ok(e)
}
