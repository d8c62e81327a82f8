//! The domain writer on many generated contexts: every output passes the schema, the word
//! count, the fact check and the privacy guard, is deterministic, and changes with the key.

use super::super::write;
use crate::validate::fact_check::{FactCheckConfig, contradictions};
use crate::validate::leaked_numbers;
use serde_json::{Value, json};

const SCHEMA: &str = include_str!("../../../../examples/domains/schemas/domain_summary.json");

const METRICS: [(&str, &str, &str); 10] = [
    ("visits", "visits", "100K–500K visits"),
    ("orders", "orders", "1K–5K orders"),
    ("revenue", "revenue", "$100K–$500K"),
    ("conversion_rate", "conversion rate", "1.5–2 %"),
    ("average_order_value", "average order value", "$110"),
    ("revenue_per_visit", "revenue per visit", "$1–$2"),
    (
        "revenue_growth_yoy",
        "revenue growth year over year",
        "-25 % to -10 %",
    ),
    ("orders_growth_yoy", "order growth year over year", "0–10 %"),
    ("returning_share", "share of returning customers", "30–40 %"),
    ("mobile_share", "share of mobile visits", "50–60 %"),
];
const TIERS: [&str; 4] = ["top_10", "above_median", "below_median", "bottom_10"];

/// A context with `tiers[i]` for metric i (`None`: missing) and the given peer basis.
pub(crate) fn context(name: &str, tiers: &[Option<usize>], basis: &str) -> Value {
    let mut metrics = Vec::new();
    let mut missing = Vec::new();
    for (i, (col, label, detail)) in METRICS.iter().enumerate() {
        match tiers.get(i).copied().flatten() {
            Some(t) => {
                let public = *col == "average_order_value";
                let mut m = json!({"name": col, "label": label, "public": public,
                    "tier": TIERS[t], "tier_label": TIERS[t].replace('_', " ")});
                if public {
                    m["value"] = json!(detail);
                } else {
                    m["bin"] = json!(detail);
                }
                metrics.push(m);
            }
            None => missing.push(json!(label)),
        }
    }
    let (peer, group) = match basis {
        "group" => (
            json!({"basis": "group", "name": "Garden", "size": 38}),
            json!("Garden"),
        ),
        "small_group" => (
            json!({"basis": "small_group", "name": "all domains", "size": 500}),
            json!("Tiny"),
        ),
        _ => (
            json!({"basis": "no_group", "name": "all domains", "size": 500}),
            Value::Null,
        ),
    };
    json!({
        "entity_label": "domain", "group_label": "category",
        "entity": {"key": name, "name": name, "group": group, "attributes": {"country": "UK"}},
        "peer": peer, "metrics": metrics, "missing": missing,
    })
}

/// A small deterministic generator, so the cases are the same on every run.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

fn problems(ctx: &Value, out: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let mut p: Vec<String> = v.iter_errors(out).map(|e| e.to_string()).collect();
    let texts: Vec<&str> = strings(out);
    p.extend(contradictions(&FactCheckConfig::default(), &texts, ctx));
    // The prompt shows every fact of the context; the system prompt adds its own numbers.
    let prompt = format!("{ctx} top 10 % 60 160 120 300 3 5 4");
    let leaked = leaked_numbers(&texts.join("\n"), &prompt);
    if !leaked.is_empty() {
        p.push(format!("leaked {leaked:?}"));
    }
    let words = out["summary"].as_str().unwrap().split_whitespace().count();
    if !(120..=300).contains(&words) {
        p.push(format!("{words} words"));
    }
    let name = ctx["entity"]["name"].as_str().unwrap();
    for f in ["h1", "summary"] {
        if !out[f].as_str().unwrap().contains(name) {
            p.push(format!("{f} without the name"));
        }
    }
    let all = texts.join("\n").to_lowercase();
    for slip in [
        "in the above",
        "above median of",
        "most of all",
        "of every",
        "few of all",
        "results is",
        "result are",
        " a above",
        " an top",
        "  ",
        " .",
        "one measures",
        "none measures",
    ] {
        if all.contains(slip) {
            p.push(format!("slip \"{slip}\""));
        }
    }
    p
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => vec![],
    }
}

fn schema() -> Value {
    serde_json::from_str(SCHEMA).unwrap()
}

#[test]
fn generated_contexts_pass_every_check() {
    let mut state = 7;
    for case in 0..400 {
        let basis = ["group", "no_group", "small_group"][case % 3];
        let tiers: Vec<Option<usize>> = (0..10)
            .map(|_| match lcg(&mut state) % 12 {
                0 => None,
                r => Some((r % 4) as usize),
            })
            .collect();
        let name = format!("shop{case}.co.uk");
        let mut ctx = context(&name, &tiers, basis);
        // Every other case has a "lower is better" metric: its praise and blame are mirrored.
        if case % 2 == 1 {
            for m in ctx["metrics"].as_array_mut().unwrap() {
                if m["name"] == "revenue_per_visit" {
                    m["lower_is_better"] = true.into();
                }
            }
        }
        let out = write(&ctx, &schema(), &name);
        let p = problems(&ctx, &out);
        assert!(p.is_empty(), "{name} {tiers:?}: {p:?}\n{out:#}");
    }
}

#[test]
fn edge_cases_all_top_all_bottom_all_missing_and_no_group() {
    for (label, tiers, basis) in [
        ("all top", vec![Some(0); 10], "group"),
        ("all bottom", vec![Some(3); 10], "group"),
        ("all above", vec![Some(1); 10], "no_group"),
        ("all below", vec![Some(2); 10], "small_group"),
        ("all missing", vec![None; 10], "no_group"),
        ("one metric", vec![Some(0)], "group"),
    ] {
        let ctx = context("edge.com", &tiers, basis);
        let out = write(&ctx, &schema(), "edge.com");
        let p = problems(&ctx, &out);
        assert!(p.is_empty(), "{label}: {p:?}\n{out:#}");
    }
}

#[test]
fn same_context_same_text_and_another_key_other_wording() {
    let tiers: Vec<Option<usize>> = (0..10).map(|i| Some(i % 4)).collect();
    let ctx = context("same.com", &tiers, "group");
    let a = write(&ctx, &schema(), "same.com");
    assert_eq!(a, write(&ctx, &schema(), "same.com"));
    // A different key (another variation) over the same facts: clearly different wording.
    let b = write(&ctx, &schema(), "same.com#1");
    let words = |v: &Value| -> std::collections::HashSet<String> {
        let w: Vec<String> = v["summary"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        w.windows(5).map(|x| x.join(" ")).collect()
    };
    let (sa, sb) = (words(&a), words(&b));
    let jaccard = sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64;
    assert!(
        jaccard < 0.5,
        "5-shingle Jaccard {jaccard:.2} between two keys"
    );
}
