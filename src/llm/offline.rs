//! The offline writer: a deterministic, network-free provider. It is template-based, not a
//! language model: it composes sentences from the prompt's template context (tiers, bins, peer
//! group) with phrasing chosen by a hash of the entity key, so pages read differently from one
//! another yet a re-run produces the same text. It only ever writes figures that the context —
//! and so the prompt — already holds, and it fits the job's JSON schema: a dedicated writer for
//! the domain-summary shape, and a generic schema filler for any other schema.

use super::{ChatRequest, ChatResponse, Provider, ProviderError, Usage, estimate_tokens_heuristic};
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use std::time::Instant;

#[derive(Debug, Default)]
pub struct OfflineWriter;

impl OfflineWriter {
    pub fn new() -> Self {
        OfflineWriter
    }
}

#[async_trait]
impl Provider for OfflineWriter {
    fn name(&self) -> &str {
        "offline"
    }
    fn model(&self) -> &str {
        "offline-template-v1"
    }
    async fn complete(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let start = Instant::now();
        let value = write(
            &req.context,
            &req.schema,
            &if req.variation == 0 {
                req.entity_key.clone()
            } else {
                format!("{}\u{1f}variation {}", req.entity_key, req.variation)
            },
        );
        let content = serde_json::to_string(&value)
            .map_err(|e| ProviderError::InvalidRequest(format!("offline writer: {e}")))?;
        Ok(ChatResponse {
            usage: Usage {
                prompt_tokens: estimate_tokens_heuristic(&req.system)
                    + estimate_tokens_heuristic(&req.user),
                completion_tokens: estimate_tokens_heuristic(&content),
            },
            content,
            latency: start.elapsed(),
        })
    }
}

/// Writes one output object for `schema` from the template `context`.
pub fn write(context: &Value, schema: &Value, key: &str) -> Value {
    let facts = Facts::from_context(context, key);
    let props = schema.get("properties").and_then(Value::as_object);
    let is_summary = props.is_some_and(|p| {
        ["title", "meta_description", "h1", "summary", "highlights"]
            .iter()
            .all(|k| p.contains_key(*k))
    });
    let is_insights = props.is_some_and(|p| {
        ["summary", "sentiment", "strengths", "weaknesses"]
            .iter()
            .all(|k| p.contains_key(*k))
    });
    if is_summary {
        domain_summary(&facts, props.unwrap())
    } else if is_insights {
        product_insights(&facts)
    } else {
        fill(schema, &facts, 0)
    }
}

/// What the writer knows about one entity, read from the template context.
struct Facts {
    seed: u64,
    name: String,
    entity_label: String,
    group_label: String,
    peer_basis: String,
    peer_name: String,
    peer_size: Option<u64>,
    group: Option<String>,
    metrics: Vec<MetricFact>,
    missing: Vec<String>,
}

struct MetricFact {
    /// A smaller value is better: a top tier is a weakness.
    lower_is_better: bool,
    label: String,
    tier: Option<String>,
    tier_label: Option<String>,
    detail: Option<String>,
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

impl Facts {
    fn from_context(c: &Value, key: &str) -> Facts {
        let entity = c.get("entity").cloned().unwrap_or(Value::Null);
        let peer = c.get("peer").cloned().unwrap_or(Value::Null);
        let metrics = c
            .get("metrics")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|m| MetricFact {
                        lower_is_better: m.get("lower_is_better").and_then(Value::as_bool)
                            == Some(true),
                        label: s(m, "label").unwrap_or_default(),
                        tier: s(m, "tier"),
                        tier_label: s(m, "tier_label"),
                        detail: if m.get("public").and_then(Value::as_bool) == Some(true) {
                            s(m, "value")
                        } else {
                            s(m, "bin")
                        },
                    })
                    .collect()
            })
            .unwrap_or_default();
        Facts {
            seed: u64::from_le_bytes(
                blake3::hash(key.as_bytes()).as_bytes()[..8]
                    .try_into()
                    .unwrap(),
            ),
            name: s(&entity, "name").unwrap_or_else(|| key.to_string()),
            entity_label: s(c, "entity_label").unwrap_or_else(|| "entity".into()),
            group_label: s(c, "group_label").unwrap_or_else(|| "category".into()),
            peer_basis: s(&peer, "basis").unwrap_or_else(|| "no_group".into()),
            peer_name: s(&peer, "name").unwrap_or_default(),
            peer_size: peer.get("size").and_then(Value::as_u64),
            group: s(&entity, "group"),
            metrics,
            missing: c
                .get("missing")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Picks one of `options` deterministically; `slot` decorrelates choices.
    fn pick<'a>(&self, slot: u64, options: &[&'a str]) -> &'a str {
        let h = self
            .seed
            .wrapping_add(slot.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let h = (h ^ (h >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        options[((h >> 33) % options.len() as u64) as usize]
    }

    fn peers_phrase(&self) -> String {
        let plural = format!("{}s", self.entity_label);
        match (self.peer_basis.as_str(), self.peer_size) {
            ("group", Some(n)) => format!(
                "the {n} {plural} in the {} {}",
                self.peer_name, self.group_label
            ),
            ("group", None) => format!(
                "other {plural} in the {} {}",
                self.peer_name, self.group_label
            ),
            (_, Some(n)) => format!("all {n} {plural} tracked"),
            _ => format!("all {plural} tracked"),
        }
    }

    fn short_peers(&self) -> String {
        if self.peer_basis == "group" {
            format!("{} peers", self.peer_name)
        } else {
            format!("all {}s", self.entity_label)
        }
    }

    /// Metrics in a tier, with "lower is better" ones mirrored (their bottom tier is good).
    fn in_tier(&self, good: &str, bad: &str) -> Vec<&MetricFact> {
        self.metrics
            .iter()
            .filter(|m| m.tier.as_deref() == Some(if m.lower_is_better { bad } else { good }))
            .collect()
    }

    fn best(&self) -> Vec<&MetricFact> {
        let mut v = self.in_tier("top_10", "bottom_10");
        v.extend(self.in_tier("above_median", "below_median"));
        v
    }

    fn worst(&self) -> Vec<&MetricFact> {
        let mut v = self.in_tier("bottom_10", "top_10");
        v.extend(self.in_tier("below_median", "above_median"));
        v
    }
}

fn metric_sentence(f: &Facts, i: usize, m: &MetricFact) -> String {
    let detail = m
        .detail
        .as_ref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    let slot = 100 + i as u64;
    let opener = f.pick(slot + 7, &["For", "On", "In terms of"]);
    let peers = f.short_peers();
    let label = &m.label;
    // A smaller value is better: the position is told without praise or blame words, which
    // would contradict it (the fact check rejects "stands out" for a high return rate).
    if m.lower_is_better {
        return match m.tier.as_deref() {
            Some(t @ ("top_10" | "above_median" | "below_median" | "bottom_10")) => format!(
                "{opener} {label}{detail}, where lower is better, it is {} {peers}.",
                match t {
                    "top_10" => "in the top 10 % of",
                    "above_median" => "above the median of",
                    "below_median" => "below the median of",
                    _ => "in the bottom 10 % of",
                }
            ),
            _ => match &m.detail {
                Some(d) => format!("Its {label} is in the range {d}."),
                None => String::new(),
            },
        };
    }
    match m.tier.as_deref() {
        Some("top_10") => format!(
            "{opener} {label}{detail}, it {} and sits in the top 10 % of {peers}.",
            f.pick(
                slot,
                &["stands out", "is a clear leader", "leads the field"]
            )
        ),
        Some("above_median") => format!(
            "{opener} {label}{detail}, it is {} the median of {peers}.",
            f.pick(slot, &["above", "ahead of", "better than"])
        ),
        Some("below_median") => format!(
            "{opener} {label}{detail}, it {} the median of {peers}.",
            f.pick(slot, &["trails", "sits below", "falls short of"])
        ),
        Some("bottom_10") => format!(
            "{opener} {label}{detail}, it {} the bottom 10 % of {peers}.",
            f.pick(slot, &["is in", "ranks in", "falls into"])
        ),
        _ => match &m.detail {
            Some(d) => format!("Its {label} is in the range {d}."),
            None => String::new(),
        },
    }
}

fn join_labels(items: &[&MetricFact], max: usize) -> String {
    let labels: Vec<&str> = items.iter().take(max).map(|m| m.label.as_str()).collect();
    match labels.len() {
        0 => String::new(),
        1 => labels[0].to_string(),
        n => format!("{} and {}", labels[..n - 1].join(", "), labels[n - 1]),
    }
}

fn fit(text: String, max: usize, fallback: impl FnOnce() -> String) -> String {
    if text.chars().count() <= max {
        text
    } else {
        fallback()
    }
}

fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = cut
        .rsplit_once(' ')
        .map(|(a, _)| a.to_string())
        .unwrap_or(cut);
    format!("{}…", cut.trim_end_matches([',', ';', ':']))
}

fn max_len(props: &Map<String, Value>, field: &str, default: usize) -> usize {
    props
        .get(field)
        .and_then(|p| p.get("maxLength"))
        .and_then(Value::as_u64)
        .map_or(default, |v| v as usize)
}

fn domain_summary(f: &Facts, props: &Map<String, Value>) -> Value {
    let name = &f.name;
    let best = f.best();
    let worst = f.worst();
    let title_max = max_len(props, "title", 60);
    let meta_max = max_len(props, "meta_description", 160);

    let title = fit(
        format!(
            "{name}: {}",
            f.pick(
                1,
                &[
                    "Performance vs Peers",
                    "How It Compares",
                    "Shop Performance Summary"
                ]
            )
        ),
        title_max,
        || {
            fit(format!("{name} performance"), title_max, || {
                truncate_chars(&format!("{name} performance"), title_max)
            })
        },
    );
    let h1 = format!(
        "{name} {}",
        f.pick(
            2,
            &[
                "compared with its peers",
                "performance at a glance",
                "against the competition"
            ]
        )
    );
    let meta = fit(
        format!(
            "How {name} compares with {} on traffic, conversion, order value and growth over the last twelve months.",
            f.short_peers()
        ),
        meta_max,
        || {
            truncate_chars(
                &format!(
                    "How {name} compares with {} over the last twelve months.",
                    f.short_peers()
                ),
                meta_max,
            )
        },
    );

    // Summary: intro, one sentence per known metric, then context, kept within 120–300 words.
    let mut sentences = Vec::new();
    let intro_basis = match f.peer_basis.as_str() {
        "group" => format!("{name} is measured against {}.", f.peers_phrase()),
        "no_group" => format!(
            "{name} has no assigned {}, so this summary compares it with {}.",
            f.group_label,
            f.peers_phrase()
        ),
        _ => format!(
            "{name} belongs to the {} {}, which has too few members for a fair comparison, so it is compared with {}.",
            f.group.as_deref().unwrap_or("unnamed"),
            f.group_label,
            f.peers_phrase()
        ),
    };
    sentences.push(format!(
        "{} {intro_basis}",
        f.pick(3, &[
            "This page summarises how the shop has performed over the last twelve months.",
            "Here is an overview of the shop's results over the last twelve months.",
            "The figures below describe a full year of trading, seen relative to comparable shops.",
        ])
    ));
    if !best.is_empty() {
        sentences.push(format!(
            "Its {} {} its strongest results relative to {}.",
            join_labels(&best, 3),
            if best.len() == 1 { "is" } else { "are" },
            f.short_peers()
        ));
    }
    for (i, m) in f.metrics.iter().enumerate() {
        let s = metric_sentence(f, i, m);
        if !s.is_empty() {
            sentences.push(s);
        }
    }
    if !worst.is_empty() {
        sentences.push(format!(
            "The clearest room for improvement is in {}, where {name} {} most of {}.",
            join_labels(&worst, 2),
            f.pick(4, &["trails", "lags behind", "sits behind"]),
            f.short_peers()
        ));
    }
    if !f.missing.is_empty() {
        sentences.push(format!(
            "Data on {} was not available for this period, so those measures are left out.",
            f.missing.join(", ")
        ));
    }
    let closers = [
        "Positions are relative: a shop in the top tier outperforms most comparable shops, not necessarily the whole market.",
        "Ranges are shown instead of exact figures, and every comparison uses the same twelve-month window.",
        "The summary is refreshed whenever new data arrives, so the positions above reflect the latest complete period.",
        "Tiers split the peer group into the top tenth, the upper half, the lower half and the bottom tenth.",
        "Shoppers and analysts can use these positions to see where the shop is strong and where competitors lead.",
        "Comparisons with peers make seasonal effects and market-wide swings easier to separate from the shop's own results.",
    ];
    let mut words = count_words(&sentences.join(" "));
    let mut k = 0;
    while words < 135 && k < closers.len() {
        let c = closers[(k + (f.seed as usize % closers.len())) % closers.len()];
        sentences.push(c.to_string());
        words += count_words(c);
        k += 1;
    }
    // Never exceed 300 words: drop metric sentences from the end (the intro stays).
    while count_words(&sentences.join(" ")) > 290 && sentences.len() > 2 {
        sentences.remove(sentences.len() - 2);
    }
    let summary = sentences.join(" ");

    let mut highlights: Vec<String> = Vec::new();
    for m in best.iter().take(2) {
        highlights.push(format!(
            "{} in the {} of {}",
            capitalize(&m.label),
            m.tier_label.clone().unwrap_or_default(),
            f.short_peers()
        ));
    }
    for m in worst.iter().take(2) {
        // A "lower is better" metric among the worst sits high: say where, not "below".
        let position = if m.lower_is_better {
            tier_phrase(m)
        } else if m.tier.as_deref() == Some("bottom_10") {
            "well below the median"
        } else {
            "below the median"
        };
        highlights.push(format!(
            "{} {position} of {}",
            capitalize(&m.label),
            f.short_peers()
        ));
    }
    let generic = [
        format!("Compared with {}", f.peers_phrase()),
        "Based on the last twelve months of data".to_string(),
        "Ranges and tiers instead of exact figures".to_string(),
    ];
    for g in generic {
        if highlights.len() >= 3 {
            break;
        }
        highlights.push(g);
    }
    highlights.truncate(5);

    let mut faq = vec![json!({
        "question": format!("How does {name} compare with its peers?"),
        "answer": format!(
            "{name} is compared with {}. {}",
            f.peers_phrase(),
            if best.is_empty() {
                "It does not reach the upper half of its peers on the measures available.".to_string()
            } else {
                format!("It is strongest in {}.", join_labels(&best, 2))
            }
        ),
    })];
    if !worst.is_empty() {
        faq.push(json!({
            "question": format!("Where does {name} trail its peers?"),
            "answer": format!("Its weakest positions are in {}.", join_labels(&worst, 2)),
        }));
    }
    faq.push(json!({
        "question": "Why are exact figures not shown?",
        "answer": "The underlying data is licensed, so this page shows ranges and relative positions instead of exact values.",
    }));
    json!({
        "title": title,
        "meta_description": meta,
        "h1": h1,
        "summary": summary,
        "highlights": highlights,
        "faq": faq,
    })
}

/// Product insights from review statistics: sentiment from the rating's position, strengths and
/// weaknesses from the best and worst positions, in words only (no figure the prompt lacks).
fn product_insights(f: &Facts) -> Value {
    let name = &f.name;
    let rating = f
        .metrics
        .iter()
        .find(|m| m.label.contains("average rating"));
    let sentiment = match rating.and_then(|m| m.tier.as_deref()) {
        Some("top_10" | "above_median") => "positive",
        Some("bottom_10") => "negative",
        _ => "mixed",
    };
    let best = f.best();
    let worst = f.worst();
    let mut strengths: Vec<String> = best
        .iter()
        .take(4)
        .map(|m| format!("{} {}", capitalize(&m.label), tier_phrase(m)))
        .collect();
    for generic in [
        "Reviews describe the product consistently",
        "Clear expectations from the listing",
    ] {
        if strengths.len() < 2 {
            strengths.push(generic.to_string());
        }
    }
    let weaknesses: Vec<String> = worst
        .iter()
        .take(4)
        .map(|m| format!("{} {}", capitalize(&m.label), tier_phrase(m)))
        .collect();
    let mood = match sentiment {
        "positive" => f.pick(
            11,
            &[
                "Customers are largely happy with",
                "Reviewers speak well of",
                "Buyers mostly recommend",
            ],
        ),
        "negative" => f.pick(
            11,
            &[
                "Customers are often disappointed by",
                "Reviewers raise repeated concerns about",
                "Buyers report problems with",
            ],
        ),
        _ => f.pick(
            11,
            &[
                "Customers have mixed views on",
                "Reviewers are divided about",
                "Opinions vary on",
            ],
        ),
    };
    let mut summary = format!("{mood} {name}, compared with the other products tracked.");
    if !best.is_empty() {
        summary.push_str(&format!(
            " It stands out for its {}.",
            join_labels(&best, 2)
        ));
    }
    if !worst.is_empty() {
        summary.push_str(&format!(
            " It trails other products on {}.",
            join_labels(&worst, 2)
        ));
    }
    summary.push_str(" This overview is built from review statistics and the most helpful and most recent reviews.");
    let themes: Vec<String> = f
        .metrics
        .iter()
        .filter(|m| m.tier.is_some())
        .take(4)
        .map(|m| m.label.clone())
        .collect();
    let themes = if themes.is_empty() {
        vec!["customer reviews".to_string()]
    } else {
        themes
    };
    let recommendation = match sentiment {
        "positive" => format!("A safe choice: most reviewers are satisfied with {name}."),
        "negative" => format!("Read the recent reviews before buying {name}."),
        _ => format!("Check whether the strengths of {name} match what you need."),
    };
    json!({
        "summary": summary,
        "sentiment": sentiment,
        "strengths": strengths,
        "weaknesses": weaknesses,
        "themes": themes,
        "recommendation": recommendation,
    })
}

/// "in the top 10 %", "above the median", … for a metric's tier.
fn tier_phrase(m: &MetricFact) -> &'static str {
    match m.tier.as_deref() {
        Some("top_10") => "in the top 10 %",
        Some("above_median") => "above the median",
        Some("below_median") => "below the median",
        Some("bottom_10") => "in the bottom 10 %",
        _ => "",
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

pub fn count_words(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Generic schema filler for shapes without a dedicated writer: strings get sentences about the
/// entity, arrays get as many items as `minItems` asks (at least one), enums their first value.
/// Numbers are written as their schema minimum (or 0), never taken from private data.
fn fill(schema: &Value, f: &Facts, depth: usize) -> Value {
    if let Some(e) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return e.clone();
    }
    let ty = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    out.insert(k.clone(), fill(p, f, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = schema
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1) as usize;
            let items = schema
                .get("items")
                .cloned()
                .unwrap_or(json!({"type": "string"}));
            (0..min)
                .map(|i| match items.get("type").and_then(Value::as_str) {
                    Some("string") | None => Value::String(nth_sentence(f, i, &items)),
                    _ => fill(&items, f, depth + 1),
                })
                .collect()
        }
        "number" | "integer" => schema.get("minimum").cloned().unwrap_or(json!(0)),
        "boolean" => Value::Bool(false),
        _ => Value::String(nth_sentence(f, depth, schema)),
    }
}

fn nth_sentence(f: &Facts, i: usize, schema: &Value) -> String {
    let mut pool: Vec<String> = f
        .metrics
        .iter()
        .enumerate()
        .map(|(j, m)| metric_sentence(f, j, m))
        .filter(|s| !s.is_empty())
        .collect();
    pool.insert(
        0,
        format!("{} is compared with {}.", f.name, f.peers_phrase()),
    );
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = schema
        .get("maxLength")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |m| m as usize);
    let mut out = pool[i % pool.len()].clone();
    let mut j = i + 1;
    while out.chars().count() < min && j < i + 1 + pool.len() {
        out.push(' ');
        out.push_str(&pool[j % pool.len()]);
        j += 1;
    }
    truncate_chars(&out, max)
}
