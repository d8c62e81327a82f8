//! The offline writer: a deterministic, network-free provider. It is template-based, not a
//! language model: it composes sentences from the prompt's template context (tiers, bins, peer
//! group) with phrasing chosen by a hash of the entity key, so pages read differently from one
//! another yet a re-run produces the same text. It only ever writes figures that the context —
//! and so the prompt — already holds, and it fits the job's JSON schema: a dedicated writer for
//! the domain-summary shape ([`domain`]), one for product insights ([`product`]), and a generic
//! schema filler for any other schema.

mod domain;
mod grammar;
mod product;

use super::{ChatRequest, ChatResponse, Provider, ProviderError, Usage, estimate_tokens_heuristic};
use async_trait::async_trait;
use grammar::{capitalize, plural};
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
        "offline-template-v2"
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
        domain::summary(&facts, props.unwrap())
    } else if is_insights {
        product::insights(&facts, schema)
    } else {
        fill(schema, &facts, 0)
    }
}

/// A metric's position among its peers, as the context's `tier` code gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Tier {
    Top10,
    AboveMedian,
    BelowMedian,
    Bottom10,
}

impl Tier {
    fn from_code(code: &str) -> Option<Tier> {
        match code {
            "top_10" => Some(Tier::Top10),
            "above_median" => Some(Tier::AboveMedian),
            "below_median" => Some(Tier::BelowMedian),
            "bottom_10" => Some(Tier::Bottom10),
            _ => None,
        }
    }

    /// "in the top 10 %", "above the median", … (the fact check's own vocabulary).
    fn phrase(self) -> &'static str {
        match self {
            Tier::Top10 => "in the top 10 %",
            Tier::AboveMedian => "above the median",
            Tier::BelowMedian => "below the median",
            Tier::Bottom10 => "in the bottom 10 %",
        }
    }
}

/// How good a metric's position is for the entity: its tier, mirrored when lower is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Standing {
    Leading,
    Ahead,
    Behind,
    Trailing,
}

impl Standing {
    fn is_good(self) -> bool {
        matches!(self, Standing::Leading | Standing::Ahead)
    }
}

/// What the writer knows about one entity, read from the template context.
struct Facts {
    seed: u64,
    name: String,
    entity_label: String,
    group_label: String,
    peer_basis: PeerBasis,
    peer_name: String,
    peer_size: Option<u64>,
    group: Option<String>,
    /// The `country` attribute, when the prompt shows it.
    market: Option<String>,
    metrics: Vec<MetricFact>,
    missing: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerBasis {
    Group,
    NoGroup,
    SmallGroup,
}

struct MetricFact {
    /// The metric's column name ("conversion_rate"): what the writers key themes on.
    name: String,
    label: String,
    tier: Option<Tier>,
    /// A smaller value is better: a top tier is a weakness.
    lower_is_better: bool,
    /// The exact value of a public metric, else the range (bin) shown in the prompt.
    detail: Option<String>,
    /// The exact value, for public metrics only.
    value: Option<String>,
}

impl MetricFact {
    fn standing(&self) -> Option<Standing> {
        let t = self.tier?;
        Some(match (t, self.lower_is_better) {
            (Tier::Top10, false) | (Tier::Bottom10, true) => Standing::Leading,
            (Tier::AboveMedian, false) | (Tier::BelowMedian, true) => Standing::Ahead,
            (Tier::BelowMedian, false) | (Tier::AboveMedian, true) => Standing::Behind,
            (Tier::Bottom10, false) | (Tier::Top10, true) => Standing::Trailing,
        })
    }
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

fn metric_of(m: &Value) -> MetricFact {
    let public = m.get("public").and_then(Value::as_bool) == Some(true);
    let value = if public { s(m, "value") } else { None };
    MetricFact {
        name: s(m, "name").unwrap_or_default(),
        lower_is_better: m.get("lower_is_better").and_then(Value::as_bool) == Some(true),
        label: s(m, "label").unwrap_or_default(),
        tier: s(m, "tier").as_deref().and_then(Tier::from_code),
        detail: value.clone().or_else(|| s(m, "bin")),
        value,
    }
}

/// A 64-bit hash of `text`.
fn hash64(text: &str) -> u64 {
    u64::from_le_bytes(
        blake3::hash(text.as_bytes()).as_bytes()[..8]
            .try_into()
            .unwrap(),
    )
}

impl Facts {
    fn from_context(c: &Value, key: &str) -> Facts {
        let entity = c.get("entity").cloned().unwrap_or(Value::Null);
        let peer = c.get("peer").cloned().unwrap_or(Value::Null);
        let metrics = c
            .get("metrics")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(metric_of).collect())
            .unwrap_or_default();
        let market = entity
            .get("attributes")
            .and_then(|a| a.get("country"))
            .and_then(Value::as_str)
            .filter(|m| !m.trim().is_empty())
            .map(str::to_string);
        Facts {
            seed: hash64(key),
            name: s(&entity, "name").unwrap_or_else(|| key.to_string()),
            entity_label: s(c, "entity_label").unwrap_or_else(|| "entity".into()),
            group_label: s(c, "group_label").unwrap_or_else(|| "category".into()),
            peer_basis: match s(&peer, "basis").as_deref() {
                Some("group") => PeerBasis::Group,
                Some("small_group") => PeerBasis::SmallGroup,
                _ => PeerBasis::NoGroup,
            },
            peer_name: s(&peer, "name").unwrap_or_default(),
            peer_size: peer.get("size").and_then(Value::as_u64),
            group: s(&entity, "group"),
            market,
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

    /// An independent sub-hash of the key for `slot`, so every choice varies on its own.
    fn roll(&self, slot: u64) -> u64 {
        let h = self
            .seed
            .wrapping_add(slot.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let h = (h ^ (h >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let h = (h ^ (h >> 29)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^ (h >> 32)
    }

    /// Picks one of `options` deterministically; `slot` decorrelates choices.
    fn pick<'a>(&self, slot: u64, options: &[&'a str]) -> &'a str {
        options[self.index(slot, options.len())]
    }

    fn index(&self, slot: u64, n: usize) -> usize {
        (self.roll(slot) % n.max(1) as u64) as usize
    }

    /// True in about `percent` % of entities, independently per slot.
    fn chance(&self, slot: u64, percent: u64) -> bool {
        self.roll(slot) % 100 < percent
    }

    fn entities(&self) -> String {
        plural(&self.entity_label)
    }

    /// The full peer set: "the 38 domains in the Garden category", "all 500 domains tracked".
    fn peers_phrase(&self) -> String {
        let plural = self.entities();
        match (self.peer_basis, self.peer_size) {
            (PeerBasis::Group, Some(n)) => format!(
                "the {n} {plural} in the {} {}",
                self.peer_name, self.group_label
            ),
            (PeerBasis::Group, None) => format!(
                "other {plural} in the {} {}",
                self.peer_name, self.group_label
            ),
            (_, Some(n)) => format!("all {n} {plural} tracked"),
            _ => format!("all {plural} tracked"),
        }
    }

    /// A short name of the peers for `slot`: "Garden peers", "other Garden domains", ….
    fn short_peers(&self, slot: u64) -> String {
        let e = self.entities();
        if self.peer_basis == PeerBasis::Group {
            let g = &self.peer_name;
            let options = [
                format!("{g} peers"),
                format!("other {g} {e}"),
                format!("its {g} peers"),
                format!("the {g} field"),
                format!("comparable {g} {e}"),
                format!("the rest of the {g} {}", self.group_label),
                format!("its {g} rivals"),
                format!("fellow {g} {e}"),
                format!("the {g} group"),
            ];
            options[self.index(slot, options.len())].clone()
        } else {
            let options = [
                format!("all {e} tracked"),
                format!("the {e} tracked"),
                format!("the wider field of {e}"),
                format!("the {e} on record"),
                format!("the {e} in the data set"),
                format!("the full set of {e}"),
            ];
            options[self.index(slot, options.len())].clone()
        }
    }

    /// Metrics in a standing, in the context's order.
    fn with_standing(&self, standing: Standing) -> Vec<&MetricFact> {
        self.metrics
            .iter()
            .filter(|m| m.standing() == Some(standing))
            .collect()
    }

    /// The metrics in the better half, the best first.
    fn best(&self) -> Vec<&MetricFact> {
        let mut v = self.with_standing(Standing::Leading);
        v.extend(self.with_standing(Standing::Ahead));
        v
    }

    /// The metrics in the worse half, the worst first.
    fn worst(&self) -> Vec<&MetricFact> {
        let mut v = self.with_standing(Standing::Trailing);
        v.extend(self.with_standing(Standing::Behind));
        v
    }

    fn metric(&self, name: &str) -> Option<&MetricFact> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// One plain sentence on a metric's position, for the generic filler: "Visits (1K–5K visits)
/// are above the median of all domains tracked."
fn metric_sentence(f: &Facts, i: usize, m: &MetricFact) -> String {
    let detail = m
        .detail
        .as_ref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    let label = capitalize(&m.label);
    match m.tier {
        Some(t) => format!(
            "{label}{detail}{}: {} of {}.",
            if m.lower_is_better {
                ", where lower is better"
            } else {
                ""
            },
            t.phrase(),
            f.short_peers(100 + i as u64)
        ),
        None => match &m.detail {
            Some(d) => format!("{label}: {d}."),
            None => String::new(),
        },
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
