//! Prompts: the template context of one entity (what the model may see) and its rendering with
//! the project's minijinja templates. Only prompt-visible facts enter the context, so the context
//! is also what the input hash covers.

use crate::config::Job;
use crate::features::{Features, NO_BIN, PeerBasis};
use crate::source::Entities;
use minijinja::Environment;
use serde_json::{Map, Value, json};

#[derive(Debug, thiserror::Error)]
#[error("template `{template}` failed for entity `{key}`: {message}")]
pub struct PromptError {
    pub template: String,
    pub key: String,
    pub message: String,
}

/// Renders the job's system and user templates.
pub struct Prompter {
    env: Environment<'static>,
}

impl Prompter {
    pub fn new(job: &Job) -> Result<Prompter, PromptError> {
        let mut env = Environment::new();
        // A missing attribute (`entity.attributes.country` on a row without one) renders as empty
        // and tests false, so templates can branch on optional facts.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, text) in [
            ("system", &job.system_template),
            ("user", &job.user_template),
        ] {
            env.add_template_owned(name, text.clone())
                .map_err(|e| PromptError {
                    template: name.into(),
                    key: String::new(),
                    message: e.to_string(),
                })?;
        }
        Ok(Prompter { env })
    }

    /// (system, user) messages for one entity's context.
    pub fn render(&self, key: &str, context: &Value) -> Result<(String, String), PromptError> {
        let render = |name: &str| {
            let t = self.env.get_template(name).expect("added in new()");
            t.render(minijinja::value::Serde(context))
                .map(|s| s.trim().to_string())
                .map_err(|e| PromptError {
                    template: name.into(),
                    key: key.into(),
                    message: format!("{e:#}"),
                })
        };
        Ok((render("system")?, render("user")?))
    }
}

/// The template context of entity `i`. Every value is a finished string or an integer: no NaN,
/// no raw float reaches a prompt. Non-public metrics carry only their bin and tier.
pub fn build_context(job: &Job, entities: &Entities, features: &Features, i: usize) -> Value {
    let basis = features.basis[i];
    let peer = match basis {
        PeerBasis::Group => {
            let g = features.group_ids[i] as usize;
            json!({
                "basis": "group",
                "name": entities.input.group_names[g],
                "size": features.group_sizes[g],
            })
        }
        PeerBasis::NoGroup | PeerBasis::SmallGroup => json!({
            "basis": if basis == PeerBasis::NoGroup { "no_group" } else { "small_group" },
            "name": format!("all {}s", job.entity_label),
            "size": entities.len(),
        }),
    };
    let mut metrics = Vec::with_capacity(job.metrics.len());
    let mut missing = Vec::new();
    for (m, jm) in job.metrics.iter().enumerate() {
        let mf = &features.metrics[m];
        let v = mf.values[i];
        if v.is_nan() {
            missing.push(Value::String(jm.spec.label.clone()));
            continue;
        }
        let mut o = Map::new();
        o.insert("name".into(), jm.spec.name.clone().into());
        o.insert("label".into(), jm.spec.label.clone().into());
        o.insert("public".into(), jm.spec.public.into());
        if jm.lower_is_better {
            o.insert("lower_is_better".into(), true.into());
        }
        if let Some(code) = mf.tier[i].code() {
            o.insert("tier".into(), code.into());
            o.insert(
                "tier_label".into(),
                mf.tier[i].label().unwrap_or_default().into(),
            );
        }
        if mf.bin[i] != NO_BIN
            && let Some(label) = mf.bins.as_ref().and_then(|b| b.label(mf.bin[i]))
        {
            o.insert("bin".into(), label.into());
        }
        let stats = mf.peer_stats(features, i);
        if jm.spec.public {
            let unit = &jm.spec.unit;
            o.insert("value".into(), unit.format_value(v).into());
            if stats.n > 0 {
                o.insert("peer_p10".into(), unit.format_value(stats.p10).into());
                o.insert("peer_median".into(), unit.format_value(stats.p50).into());
                o.insert("peer_p90".into(), unit.format_value(stats.p90).into());
            }
            if !mf.rank[i].is_nan() {
                o.insert("rank".into(), (mf.rank[i].round() as i64).into());
            }
        } else if stats.n > 0
            && let Some(b) = &mf.bins
        {
            let mb = b.index(stats.p50);
            if let Some(label) = b.label(mb) {
                o.insert("peer_median_bin".into(), label.into());
            }
        }
        metrics.push(Value::Object(o));
    }
    json!({
        "entity_label": job.entity_label,
        "group_label": job.group_label,
        "entity": {
            "key": entities.keys[i],
            "name": entities.name(i),
            "group": entities.group(i),
            "attributes": entities.attributes(i),
        },
        "peer": peer,
        "metrics": metrics,
        "missing": missing,
    })
}

/// The input hash of one entity: its prompt-visible context, the template texts, the provider and
/// model, and the output schema. Anything else changing does not re-spend money.
pub fn input_hash(job: &Job, provider: &str, model: &str, context: &Value) -> String {
    let mut h = blake3::Hasher::new();
    for part in [
        context.to_string().as_str(),
        &job.system_template,
        &job.user_template,
        provider,
        model,
        &job.schema_text,
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex()[..32].to_string()
}
