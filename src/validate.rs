//! Output checks: the job's JSON Schema, word-count bounds, the entity's name, banned phrases,
//! the privacy guard (the output may state no number that its prompt did not contain) and the
//! fact check (no tier or position word that contradicts a metric's tier: [`fact_check`]).

pub mod fact_check;

use crate::config::ValidateConfig;
use serde_json::Value;
use std::collections::HashSet;

/// A compiled set of checks for one job.
pub struct Validator {
    schema: jsonschema::Validator,
    rules: ValidateConfig,
}

/// Why an output was rejected: every problem found, readable by a person and by an LLM asked
/// to repair its answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct Rejection {
    pub problems: Vec<String>,
}

/// The job's output schema is not a JSON Schema that compiles (the config check catches this
/// first; this is for a schema given directly).
#[derive(Debug, thiserror::Error)]
#[error("the job's output schema does not compile")]
pub struct SchemaError(#[source] jsonschema::ValidationError<'static>);

impl Validator {
    pub fn new(schema: &Value, rules: ValidateConfig) -> Result<Validator, SchemaError> {
        let schema = jsonschema::validator_for(schema).map_err(SchemaError)?;
        Ok(Validator { schema, rules })
    }

    /// Parses and checks `content`; `prompt` is the full text the model saw (system + user)
    /// and `name` the entity's display name. Without the entity's template `context` the fact
    /// check is skipped.
    pub fn check(
        &self,
        content: &str,
        prompt: &str,
        name: &str,
        context: Option<&Value>,
    ) -> Result<Value, Rejection> {
        let value: Value =
            serde_json::from_str(strip_code_fence(content)).map_err(|e| Rejection {
                problems: vec![format!("the output is not valid JSON: {e}")],
            })?;
        let mut problems: Vec<String> = self
            .schema
            .iter_errors(&value)
            .map(|e| {
                let path = e.instance_path().to_string();
                let at = if path.is_empty() {
                    "the output".to_string()
                } else {
                    format!("`{path}`")
                };
                format!("{at}: {e}")
            })
            .collect();

        for (field, (lo, hi)) in &self.rules.word_count {
            if let Some(text) = value.get(field).and_then(Value::as_str) {
                let n = text.split_whitespace().count();
                if n < *lo || n > *hi {
                    problems.push(format!(
                        "`{field}` has {n} words; it must have {lo} to {hi}"
                    ));
                }
            }
        }
        let lname = name.to_lowercase();
        for field in &self.rules.name_in {
            if let Some(text) = value.get(field).and_then(Value::as_str)
                && !text.to_lowercase().contains(&lname)
            {
                problems.push(format!("`{field}` must mention \"{name}\""));
            }
        }
        let all_text = collect_strings(&value);
        let lower = all_text.to_lowercase();
        for phrase in &self.rules.banned_phrases {
            if lower.contains(&phrase.to_lowercase()) {
                problems.push(format!(
                    "the output contains the banned phrase \"{phrase}\""
                ));
            }
        }
        if self.rules.privacy_guard {
            let leaked = leaked_numbers(&all_text, prompt);
            if !leaked.is_empty() {
                problems.push(format!(
                    "the output states numbers that are not in the prompt: {} (use only the given ranges and tiers)",
                    leaked.join(", ")
                ));
            }
        }
        if let Some(context) = context {
            let texts = strings_of(&value);
            problems.extend(fact_check::contradictions(
                &self.rules.fact_check,
                &texts,
                context,
            ));
        }
        if problems.is_empty() {
            Ok(value)
        } else {
            Err(Rejection { problems })
        }
    }
}

/// Models sometimes wrap JSON in a Markdown code fence; accept that, nothing else.
fn strip_code_fence(s: &str) -> &str {
    let t = s.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let rest = rest.strip_prefix("json").unwrap_or(rest);
        if let Some(inner) = rest.trim_end().strip_suffix("```") {
            return inner.trim();
        }
    }
    t
}

/// Every string in a JSON value (keys excluded), one by one.
fn strings_of(v: &Value) -> Vec<&str> {
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

/// Every string in a JSON value (keys excluded), joined by newlines.
fn collect_strings(v: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            Value::Number(n) => {
                out.push_str(&n.to_string());
                out.push('\n');
            }
            _ => {}
        }
    }
    let mut out = String::new();
    walk(v, &mut out);
    out
}

/// The numbers written in `text`, normalised: thousands separators removed ("12,345" → 12345),
/// leading zeros and trailing decimal zeros dropped, signs ignored ("-10" and "10" are one).
pub fn numbers_in(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() {
            let separator_then_digit =
                (b[i] == b',' || b[i] == b'.') && i + 1 < b.len() && b[i + 1].is_ascii_digit();
            if b[i].is_ascii_digit() || separator_then_digit {
                i += 1;
            } else {
                break;
            }
        }
        out.push(normalise_number(&text[start..i]));
    }
    out
}

fn normalise_number(raw: &str) -> String {
    // A comma followed by exactly three digits is a thousands separator; any other comma is a
    // decimal comma.
    let parts: Vec<&str> = raw.split(',').collect();
    let thousands = parts.len() > 1
        && parts[1..].iter().all(|p| {
            p.len() >= 3
                && p[..3].bytes().all(|c| c.is_ascii_digit())
                && (p.len() == 3 || p.as_bytes()[3] == b'.')
        });
    let s = if thousands {
        raw.replace(',', "")
    } else {
        raw.replace(',', ".")
    };
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i.to_string(), f.trim_end_matches('0').to_string()),
        None => (s.clone(), String::new()),
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

/// Numbers in `output` that do not occur in `prompt`.
pub fn leaked_numbers(output: &str, prompt: &str) -> Vec<String> {
    let allowed: HashSet<String> = numbers_in(prompt).into_iter().collect();
    let mut seen = HashSet::new();
    numbers_in(output)
        .into_iter()
        .filter(|n| !allowed.contains(n) && seen.insert(n.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validator() -> Validator {
        let schema = json!({
            "type": "object",
            "required": ["title", "summary"],
            "additionalProperties": false,
            "properties": {
                "title": {"type": "string", "maxLength": 60},
                "summary": {"type": "string"}
            }
        });
        let mut rules = ValidateConfig {
            privacy_guard: true,
            ..Default::default()
        };
        rules.name_in = vec!["summary".into()];
        rules.word_count.insert("summary".into(), (3, 50));
        rules.banned_phrases = vec!["As an AI".into()];
        Validator::new(&schema, rules).unwrap()
    }

    #[test]
    fn numbers_are_normalised() {
        assert_eq!(
            numbers_in("12,345 visits, 2.50 %, $1,000.5 and 007"),
            vec!["12345", "2.5", "1000.5", "7"]
        );
        assert_eq!(
            numbers_in("10K–50K, -10 % to 0 %"),
            vec!["10", "50", "10", "0"]
        );
        assert_eq!(numbers_in("2,5 % in German"), vec!["2.5"]);
        assert_eq!(numbers_in("shop24.de"), vec!["24"]);
    }

    #[test]
    fn accepts_a_good_output() {
        let v = validator();
        let out =
            r#"{"title": "Acme at a glance", "summary": "Acme sells 10K–50K units, top 10 %."}"#;
        assert!(
            v.check(out, "units 10K–50K; top 10 %", "Acme", None)
                .is_ok()
        );
        let fenced = format!("```json\n{out}\n```");
        assert!(
            v.check(&fenced, "units 10K–50K; top 10 %", "Acme", None)
                .is_ok()
        );
    }

    #[test]
    fn rejects_leaked_numbers() {
        let v = validator();
        let out = r#"{"title": "Acme", "summary": "Acme made $1,234,567 in revenue, top 10 %."}"#;
        let err = v
            .check(out, "revenue $1M–$5M, top 10 %", "Acme", None)
            .unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].contains("1234567"), "{err}");
    }

    #[test]
    fn rejects_over_long_title_missing_fields_and_name() {
        let v = validator();
        let long = "x".repeat(61);
        let out = format!(r#"{{"title": "{long}", "summary": "A fine shop indeed."}}"#);
        let err = v.check(&out, "", "Acme", None).unwrap_err().to_string();
        assert!(err.contains("/title"), "{err}");
        assert!(err.contains("must mention \"Acme\""), "{err}");

        let err = v
            .check(r#"{"title": "Acme"}"#, "", "Acme", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"summary\" is a required property"), "{err}");

        let err = v
            .check("not json", "", "Acme", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn rejects_word_counts_and_banned_phrases() {
        let v = validator();
        let err = v
            .check(r#"{"title": "t", "summary": "Acme"}"#, "", "Acme", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("has 1 words; it must have 3 to 50"), "{err}");
        let err = v
            .check(
                r#"{"title": "t", "summary": "As an AI, Acme is great."}"#,
                "",
                "Acme",
                None,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("banned phrase"), "{err}");
    }

    #[test]
    fn the_fact_check_rejects_a_bottom_10_metric_called_a_strength() {
        let v = validator();
        let context = serde_json::json!({"metrics": [
            {"label": "revenue", "tier": "bottom_10"},
            {"label": "visits", "tier": "top_10"},
        ]});
        let bad = r#"{"title": "t", "summary": "Acme: revenue is its greatest strength, visits in the top 10 %."}"#;
        let err = v
            .check(bad, "top 10 %", "Acme", Some(&context))
            .unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(
            err.problems[0].contains("\"strength\" about revenue"),
            "{err}"
        );
        assert!(err.problems[0].contains("bottom 10 %"), "{err}");
        let good = r#"{"title": "t", "summary": "Acme: revenue is in the bottom 10 %, visits in the top 10 %."}"#;
        assert!(
            v.check(good, "top 10 % bottom 10 %", "Acme", Some(&context))
                .is_ok()
        );
        // Without a context (or with the check off) nothing is checked.
        assert!(v.check(bad, "top 10 %", "Acme", None).is_ok());
    }
}
