//! The fact check: every tier or position word an output uses about a metric ("top 10 %",
//! "above the median", "leader", "weakness"…) must agree with that metric's tier in the prompt's
//! context. Deterministic and conservative: a phrase is attributed to the nearest metric label
//! before it in the same sentence (or, with none before, the nearest after it in the same
//! clause), a negated phrase
//! ("not in the top 10 %") is ignored, and sentences naming no metric are not checked.

use serde_json::Value;

/// The vocabulary is a setting of the job, declared with the rest of the configuration.
pub use crate::config::FactCheckConfig;

fn tier_label(tier: &str) -> &'static str {
    match tier {
        "top_10" => "top 10 %",
        "above_median" => "above median",
        "below_median" => "below median",
        "bottom_10" => "bottom 10 %",
        _ => "no tier",
    }
}

/// Lower case, one kind of space, and "10%" written "10 %", so phrases match however the
/// writer spaced them. Works on chars; positions refer to the returned string.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        let c = if c.is_whitespace() { ' ' } else { c };
        if c == '%' && !out.ends_with(' ') {
            out.push(' ');
        }
        if c == ' ' && out.ends_with(' ') {
            continue;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Byte offsets of whole-word occurrences of `needle` in `hay` (both normalised).
fn find_words(hay: &str, needle: &str) -> Vec<usize> {
    let mut out = Vec::new();
    if needle.is_empty() {
        return out;
    }
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    let mut from = 0;
    while let Some(p) = hay[from..].find(needle) {
        let at = from + p;
        let end = at + needle.len();
        if boundary(hay[..at].chars().next_back()) && boundary(hay[end..].chars().next()) {
            out.push(at);
        }
        from = at + needle.len().max(1);
        while !hay.is_char_boundary(from) {
            from += 1;
        }
    }
    out
}

/// Sentences: split after `.`, `!`, `?`, `;` followed by a space (or the end), and at new lines.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let end = match c {
            b'\n' => true,
            b'.' | b'!' | b'?' | b';' => i + 1 == b.len() || b[i + 1] == b' ',
            _ => false,
        };
        if end {
            out.push(&text[start..=i]);
            start = i + 1;
        }
    }
    out.push(&text[start..]);
    out.retain(|s| !s.trim().is_empty());
    out
}

struct MetricTier {
    label: String,
    /// `None`: the metric has no data in this context (listed as missing).
    tier: Option<String>,
    lower_is_better: bool,
}

fn metrics_of(context: &Value) -> Vec<MetricTier> {
    let mut out = Vec::new();
    for m in context
        .get("metrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(label) = m.get("label").and_then(Value::as_str) else {
            continue;
        };
        let Some(tier) = m.get("tier").and_then(Value::as_str) else {
            continue; // a value without a tier: nothing to contradict
        };
        out.push(MetricTier {
            label: normalise(label),
            tier: Some(tier.to_string()),
            lower_is_better: m
                .get("lower_is_better")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        });
    }
    for label in context
        .get("missing")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        out.push(MetricTier {
            label: normalise(label),
            tier: None,
            lower_is_better: false,
        });
    }
    out
}

/// What a phrase claims: the tiers it is true of.
fn allowed(kind: &str, lower_is_better: bool) -> &'static [&'static str] {
    let good: &'static [&'static str] = if lower_is_better {
        &["below_median", "bottom_10"]
    } else {
        &["top_10", "above_median"]
    };
    let bad: &'static [&'static str] = if lower_is_better {
        &["top_10", "above_median"]
    } else {
        &["below_median", "bottom_10"]
    };
    match kind {
        "top_10" => &["top_10"],
        "above_median" => &["top_10", "above_median"],
        "below_median" => &["below_median", "bottom_10"],
        "bottom_10" => &["bottom_10"],
        "strong" => good,
        _ => bad,
    }
}

/// True when the phrase at `at` is negated by a word just before it.
fn negated(sentence: &str, at: usize) -> bool {
    let before = &sentence[..at];
    let tail: Vec<&str> = before.split_whitespace().rev().take(3).collect();
    tail.iter().any(|w| {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'');
        matches!(w, "not" | "never" | "no" | "nor") || w.ends_with("n't")
    })
}

/// The metric mentions of a sentence, (start, end, metric index) in order: the longest label
/// winning where labels overlap ("revenue per visit" is not also "revenue").
fn metric_mentions(sentence: &str, metrics: &[MetricTier]) -> Vec<(usize, usize, usize)> {
    let mut mentions: Vec<(usize, usize, usize)> = Vec::new(); // (start, end, metric)
    for (mi, m) in metrics.iter().enumerate() {
        for at in find_words(sentence, &m.label) {
            mentions.push((at, at + m.label.len(), mi));
        }
    }
    mentions.sort_by_key(|&(s, e, _)| (s, std::cmp::Reverse(e)));
    let mut kept: Vec<(usize, usize, usize)> = Vec::new();
    for m in mentions {
        if kept.last().is_none_or(|k| m.0 >= k.1) {
            kept.push(m);
        }
    }
    kept
}

/// What the fact check says of `phrase` about the metric `m` when its tier does not allow it.
fn contradiction(m: &MetricTier, phrase: &str) -> String {
    match &m.tier {
        Some(t) => format!(
            "the fact check: \"{phrase}\" about {} contradicts its tier ({}{}): describe {} as {} its peers",
            m.label,
            tier_label(t),
            if m.lower_is_better {
                ", where lower is better"
            } else {
                ""
            },
            m.label,
            match t.as_str() {
                "top_10" => "in the top 10 % of",
                "above_median" => "above the median of",
                "below_median" => "below the median of",
                _ => "in the bottom 10 % of",
            }
        ),
        None => format!(
            "the fact check: \"{phrase}\" about {} has no data behind it (the metric is not available): do not position it",
            m.label
        ),
    }
}

/// Every contradiction in `texts` (the output's strings) against `context`'s tiers, one message
/// per metric and phrase, naming the metric, its tier and the offending phrase.
pub fn contradictions(config: &FactCheckConfig, texts: &[&str], context: &Value) -> Vec<String> {
    if !config.enabled {
        return Vec::new();
    }
    let metrics = metrics_of(context);
    if metrics.is_empty() {
        return Vec::new();
    }
    let vocab: Vec<(&str, String)> = [
        ("top_10", &config.top_10),
        ("above_median", &config.above_median),
        ("below_median", &config.below_median),
        ("bottom_10", &config.bottom_10),
        ("strong", &config.strong),
        ("weak", &config.weak),
    ]
    .into_iter()
    .flat_map(|(k, list)| list.iter().map(move |p| (k, normalise(p.trim()))))
    .filter(|(_, p)| !p.is_empty())
    .collect();
    let mut problems: Vec<String> = Vec::new();
    for text in texts {
        let text = normalise(text);
        for sentence in sentences(&text) {
            let kept = metric_mentions(sentence, &metrics);
            if kept.is_empty() {
                continue;
            }
            // Phrases, the longest winning where they overlap, outside metric labels.
            let mut phrases: Vec<(usize, usize, &str, &str)> = Vec::new();
            for (kind, p) in &vocab {
                for at in find_words(sentence, p) {
                    phrases.push((at, at + p.len(), kind, p.as_str()));
                }
            }
            phrases.sort_by_key(|&(s, e, _, _)| (s, std::cmp::Reverse(e)));
            let mut last_end = 0;
            for (start, end, kind, phrase) in phrases {
                if start < last_end
                    || kept.iter().any(|k| start < k.1 && end > k.0)
                    || negated(sentence, start)
                {
                    continue;
                }
                last_end = end;
                // The nearest label before the phrase; with none, the nearest after it in the
                // same clause ("strongest in revenue", not "unlike the top 10 %, revenue").
                let target = kept.iter().rev().find(|k| k.1 <= start).or_else(|| {
                    kept.iter()
                        .find(|k| k.0 >= end)
                        .filter(|k| !sentence[end..k.0].contains([',', ':', '(', '—']))
                });
                let Some(&(_, _, mi)) = target else { continue };
                let m = &metrics[mi];
                let ok = m
                    .tier
                    .as_deref()
                    .is_some_and(|t| allowed(kind, m.lower_is_better).contains(&t));
                if ok {
                    continue;
                }
                let message = contradiction(m, phrase);
                if !problems.contains(&message) {
                    problems.push(message);
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> Value {
        json!({
            "metrics": [
                {"label": "revenue", "tier": "bottom_10"},
                {"label": "revenue per visit", "tier": "top_10"},
                {"label": "visits", "tier": "above_median"},
                {"label": "conversion rate", "tier": "below_median"},
                {"label": "return rate", "tier": "top_10", "lower_is_better": true},
            ],
            "missing": ["order growth year over year"],
        })
    }

    fn check(text: &str) -> Vec<String> {
        contradictions(&FactCheckConfig::default(), &[text], &context())
    }

    #[test]
    fn a_bottom_10_metric_called_a_strength_is_rejected() {
        let p = check("Revenue is a clear strength of Acme.");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("\"strength\" about revenue"), "{p:?}");
        assert!(p[0].contains("bottom 10 %"), "{p:?}");
        let p = check("For revenue, Acme sits in the top 10% of its peers.");
        assert!(p[0].contains("\"top 10 %\" about revenue"), "{p:?}");
        let p = check("Acme is a leader on revenue.");
        assert!(p[0].contains("\"leader\" about revenue"), "{p:?}");
        assert!(!check("Revenue is above the median.").is_empty());
    }

    #[test]
    fn the_correct_wording_passes() {
        for ok in [
            "For revenue, Acme falls into the bottom 10 % of its peers.",
            "Revenue is well below the median; it is the clearest room for improvement.",
            "Revenue per visit stands out and sits in the top 10 % of shoe peers.",
            "On visits, it is above the median of all domains.",
            "Conversion rate trails the median.",
            "Its revenue per visit is its strongest result. Revenue lags behind.",
            "Revenue is not in the top 10 %.",
            "A shop in the top tier outperforms most comparable shops.",
            "Return rate is in the top 10 %, a weakness: lower is better.",
            "Data on order growth year over year was not available.",
            "Unlike the top 10 % of its peers, revenue is in the bottom 10 %.",
            "It is strongest in revenue per visit and visits.",
            "Its weakest positions are in revenue and conversion rate.",
        ] {
            assert!(check(ok).is_empty(), "{ok}: {:?}", check(ok));
        }
    }

    #[test]
    fn phrases_go_to_the_nearest_metric_and_missing_metrics_have_no_position() {
        // "top 10 %" belongs to revenue per visit, "trails" to conversion rate.
        assert!(
            check("Revenue per visit is in the top 10 %, while conversion rate trails the median.")
                .is_empty()
        );
        let p = check("Conversion rate is in the top 10 %, while revenue per visit trails.");
        assert_eq!(p.len(), 2, "{p:?}");
        let p = check("Order growth year over year is in the top 10 %.");
        assert!(p[0].contains("no data behind it"), "{p:?}");
        let p = check("Return rate is a strength.");
        assert!(p[0].contains("where lower is better"), "{p:?}");
        let off = FactCheckConfig {
            enabled: false,
            ..Default::default()
        };
        assert!(contradictions(&off, &["Revenue is a strength."], &context()).is_empty());
    }
}
