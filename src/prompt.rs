//! Prompts: the template context of one entity (what the model may see) and its rendering with
//! the project's minijinja templates. Only prompt-visible facts enter the context, so the context
//! is also what the input hash covers.

use crate::config::Job;
use crate::features::{Features, NO_BIN, PeerBasis};
use crate::source::Entities;
use minijinja::Environment;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// A template that does not parse or does not render: the file, the line and what went wrong
/// (for an undefined variable, its name: "undefined value: `entity.nmae` is undefined").
#[derive(Debug, thiserror::Error)]
#[error(
    "the prompt template {}{}: {message}{}",
    template.display(),
    line.map(|l| format!(", line {l}")).unwrap_or_default(),
    match (key.is_empty(), others) {
        (true, _) => String::new(),
        (false, 0) => format!(" (entity `{key}`)"),
        (false, n) => format!(" (entity `{key}` and {n} more)"),
    }
)]
pub struct PromptError {
    /// The template's file.
    pub template: PathBuf,
    pub line: Option<usize>,
    /// The entity being rendered; empty when the template does not parse.
    pub key: String,
    pub message: String,
    /// Other entities whose prompt failed too (when several were checked at once).
    pub others: usize,
}

impl PromptError {
    /// From minijinja's error: its kind and detail (which names an undefined variable), without
    /// the `(in NAME:LINE)` suffix and the debug dump, since file and line are fields here.
    pub fn from_jinja(template: &Path, key: &str, e: &minijinja::Error) -> PromptError {
        PromptError {
            template: template.to_path_buf(),
            line: e.line(),
            key: key.into(),
            message: crate::config::template::jinja_message(e),
            others: 0,
        }
    }
}

/// Templates are named by their files (shared with the syntax check at load).
pub use crate::config::template::template_name;

/// Renders the job's system and user templates, with strict undefined behaviour: printing,
/// testing or iterating a variable the context does not have is an error naming it, so a typo
/// (`{{ entity.nmae }}`) fails at `plan` instead of rendering empty. Optional facts are tested
/// with `is defined` (`{% if m.bin is defined %}`) or given a `default`.
pub struct Prompter {
    env: Environment<'static>,
    system: String,
    user: String,
    files: [PathBuf; 2],
}

impl Prompter {
    pub fn new(job: &Job) -> Result<Prompter, PromptError> {
        let mut env = Environment::new();
        // Semi-strict: printing, iterating or filtering an undefined value is an error (a typo such as
        // `entity.nmae` fails at `plan`), while `{% if x %}` on a missing optional fact is false, as
        // templates written for the earlier lenient behaviour expect.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
        // `trim` is true only when a prompt is rendered again after a "context too long"
        // answer; it is false otherwise, without being part of the context (and its hash).
        env.add_global("trim", false);
        let files = [job.system_prompt_file.clone(), job.user_prompt_file.clone()];
        let names = [template_name(&files[0]), template_name(&files[1])];
        for (i, text) in [&job.system_template, &job.user_template]
            .into_iter()
            .enumerate()
        {
            env.add_template_owned(names[i].clone(), text.clone())
                .map_err(|e| PromptError::from_jinja(&files[i], "", &e))?;
        }
        let [system, user] = names;
        Ok(Prompter {
            env,
            system,
            user,
            files,
        })
    }

    /// (system, user) messages for one entity's context.
    pub fn render(&self, key: &str, context: &Value) -> Result<(String, String), PromptError> {
        let render = |name: &str, file: &Path| {
            let t = self.env.get_template(name).expect("added in new()");
            t.render(minijinja::value::Serde(context))
                .map(|s| s.trim().to_string())
                .map_err(|e| PromptError::from_jinja(file, key, &e))
        };
        Ok((
            render(&self.system, &self.files[0])?,
            render(&self.user, &self.files[1])?,
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job_with(user: &str) -> (tempfile::TempDir, Job) {
        let dir = tempfile::tempdir().unwrap();
        crate::demo::write_project(dir.path(), true).unwrap();
        let p = crate::config::load_with_env(dir.path(), &|_| None).unwrap();
        let mut job = p.job("domain_summaries").unwrap().clone();
        job.user_template = user.into();
        (dir, job)
    }

    #[test]
    fn an_undefined_variable_names_the_file_the_line_and_the_variable() {
        let (_dir, job) = job_with("Shop:\n{{ entity.nmae }}");
        let p = Prompter::new(&job).unwrap();
        let e = p
            .render(
                "a.com",
                &json!({"entity": {"name": "a"}, "group_label": "g"}),
            )
            .unwrap_err();
        assert_eq!(e.template, job.user_prompt_file);
        assert_eq!(e.line, Some(2));
        let msg = e.to_string();
        assert!(msg.contains("`entity.nmae` is undefined"), "{msg}");
        assert!(msg.contains("domain_summary.user.j2, line 2"), "{msg}");
        assert!(msg.contains("(entity `a.com`)"), "{msg}");
        assert!(!msg.contains("<string>") && !msg.contains("user:"), "{msg}");
    }

    #[test]
    fn a_missing_fact_is_false_in_a_test_an_error_when_printed_and_trim_defaults_to_false() {
        let ctx = json!({"m": {}, "entity": {"name": "a"}, "group_label": "g"});
        // Printed: an error naming it.
        let (_dir, job) = job_with("{% if m.bin is defined %}{{ m.bin }}{% endif %}|{{ m.tier }}");
        let e = Prompter::new(&job).unwrap().render("a", &ctx).unwrap_err();
        assert!(e.message.contains("`m.tier` is undefined"), "{e}");
        // Tested: false, as templates written for lenient undefined expect.
        let (_dir, job) = job_with("{% if m.tier %}x{% else %}none{% endif %}");
        assert_eq!(
            Prompter::new(&job).unwrap().render("a", &ctx).unwrap().1,
            "none"
        );
        let (_dir, job) = job_with(
            "{% if m.bin is defined %}{{ m.bin }}{% endif %}|{% if trim %}t{% else %}f{% endif %}",
        );
        let p = Prompter::new(&job).unwrap();
        assert_eq!(p.render("a", &ctx).unwrap().1, "|f");
        let mut ctx = ctx;
        ctx["trim"] = true.into();
        ctx["m"]["bin"] = "1–5".into();
        assert_eq!(p.render("a", &ctx).unwrap().1, "1–5|t");
    }
}
