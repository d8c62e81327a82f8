//! Product insights from review statistics: sentiment from the average rating (its exact value
//! when the prompt shows it, else its tier) and the share of complaints; strengths, weaknesses
//! and themes from each product's own positions, told in what they mean for a shopper ("few
//! complaints", "ratings slipped over the last 90 days"), never a claim the figures lack.

use super::grammar::{agree, capitalize, sentence_case};
use super::{Facts, MetricFact, PeerBasis, Standing, fill, fit, max_len, truncate_chars};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sentiment {
    Positive,
    Mixed,
    Negative,
}

impl Sentiment {
    fn code(self) -> &'static str {
        match self {
            Sentiment::Positive => "positive",
            Sentiment::Mixed => "mixed",
            Sentiment::Negative => "negative",
        }
    }
}

/// Where a range lies against zero, from its label ("0.25–1", "under -1", "1 or more").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Flat,
    Down,
}

fn number(s: &str) -> Option<f64> {
    let t: String = s
        .trim()
        .chars()
        .filter(|c| c.is_ascii_digit() || matches!(c, '.' | '-'))
        .collect();
    t.parse().ok()
}

/// The bounds of a bin label: "under X", "X or more", "A–B" (either may be negative).
fn bounds(label: &str) -> (Option<f64>, Option<f64>) {
    let l = label.trim();
    if let Some(x) = l.strip_prefix("under ") {
        return (None, number(x));
    }
    if let Some(x) = l.strip_suffix(" or more") {
        return (number(x), None);
    }
    match l.split_once('–') {
        Some((a, b)) => (number(a), number(b)),
        None => (None, None),
    }
}

fn direction(m: &MetricFact) -> Option<Direction> {
    let (lo, hi) = bounds(m.detail.as_deref()?);
    match (lo, hi) {
        (Some(lo), _) if lo >= 0.0 => Some(Direction::Up),
        (_, Some(hi)) if hi <= 0.0 => Some(Direction::Down),
        (Some(_), Some(_)) => Some(Direction::Flat),
        _ => None,
    }
}

fn sentiment(f: &Facts) -> Sentiment {
    let rating = f.metric("avg_rating");
    let stars = rating.and_then(|m| m.value.as_deref()).and_then(number);
    let complaints = f.metric("low_star_share").and_then(|m| m.standing());
    match (stars, rating.and_then(|m| m.standing())) {
        (Some(r), _) if r < 3.0 => Sentiment::Negative,
        (_, Some(Standing::Trailing)) => Sentiment::Negative,
        // Praise needs a good absolute rating, not only a good rank among weak products.
        (Some(r), Some(s)) if r >= 4.0 && s.is_good() && complaints != Some(Standing::Trailing) => {
            Sentiment::Positive
        }
        (None, Some(Standing::Leading)) => Sentiment::Positive,
        _ => Sentiment::Mixed,
    }
}

/// The products a product's positions are measured against: "products in the Kitchen category"
/// when its peer group is its category, else "products tracked" — a page must not claim a
/// comparison with every product when the tiers come from its category.
fn compared_with(f: &Facts) -> String {
    let products = f.entities();
    match f.peer_basis {
        PeerBasis::Group => format!("{products} in the {} {}", f.peer_name, f.group_label),
        PeerBasis::NoGroup | PeerBasis::SmallGroup => format!("{products} tracked"),
    }
}

/// A shopper's reading of one metric's position: (strength or weakness line, theme).
fn reading(f: &Facts, m: &MetricFact, slot: u64) -> Option<(String, String)> {
    let st = m.standing()?;
    let good = st.is_good();
    let extreme = matches!(st, Standing::Leading | Standing::Trailing);
    let d = m.detail.clone().unwrap_or_default();
    let alt = f.chance(slot, 50);
    let tier = m.tier.map(|t| t.phrase()).unwrap_or_default();
    let (line, theme) = match (m.name.as_str(), good) {
        ("review_count", true) if extreme => (
            format!(
                "One of the most reviewed {}, with {d} reviews",
                compared_with(f)
            ),
            "review volume",
        ),
        ("review_count", true) => (
            format!("{d} reviews, more than most {}", compared_with(f)),
            "review volume",
        ),
        ("review_count", false) => (
            format!("Only {d} reviews so far, fewer than most products: a small sample"),
            "few reviews so far",
        ),
        // "Satisfied" needs a good absolute rating, not only a rank among weaker products.
        ("avg_rating", true) => (
            format!("Average rating of {d}, {tier} of {}", compared_with(f)),
            match number(&d) {
                Some(r) if r >= 4.0 && extreme => "top-rated",
                Some(r) if r >= 4.0 => "satisfied buyers",
                _ => "rating ahead of most products",
            },
        ),
        ("avg_rating", false) => (
            format!("Average rating of {d}, {tier} of {}", compared_with(f)),
            "low ratings",
        ),
        ("five_star_share", true) => (
            if alt {
                format!("Five-star reviews make up {d} of the total, more than for most products")
            } else {
                format!("More five-star reviews than most products ({d})")
            },
            // Enthusiasm only when most reviews give five stars, not merely more than elsewhere.
            if bounds(&d).0.is_some_and(|lo| lo >= 50.0) {
                "five-star enthusiasm"
            } else {
                "five-star share"
            },
        ),
        ("five_star_share", false) => (
            format!("Fewer five-star reviews than most products ({d})"),
            "few five-star reviews",
        ),
        ("low_star_share", true) if extreme => (
            format!("Very few complaints: one- and two-star reviews are {d} of the total"),
            "few complaints",
        ),
        ("low_star_share", true) => (
            format!("Fewer complaints than most products (one- and two-star reviews: {d})"),
            "few complaints",
        ),
        ("low_star_share", false) => (
            format!("More one- and two-star reviews than most products ({d} of the total)"),
            "frequent complaints",
        ),
        ("helpful_ratio", true) => (
            format!("Reviews other shoppers find helpful ({d} of votes)"),
            "useful reviews",
        ),
        ("helpful_ratio", false) => (
            format!("Fewer of its reviews are voted helpful ({d})"),
            "review usefulness",
        ),
        ("rating_trend", good) => trend_reading(m, good, &d),
        _ => (format!("{} {tier}", capitalize(&m.label)), m.label.as_str()),
    };
    Some((line, theme.to_string()))
}

fn trend_reading(m: &MetricFact, good: bool, d: &str) -> (String, &'static str) {
    match (direction(m), good) {
        (Some(Direction::Up), _) => (
            format!("Ratings have risen over the last 90 days ({d})"),
            "rising ratings",
        ),
        (Some(Direction::Down), _) => (
            format!("Ratings have slipped over the last 90 days ({d})"),
            "falling ratings",
        ),
        (_, true) => (
            format!("Recent ratings holding up better than most products ({d})"),
            "steady recent ratings",
        ),
        (_, false) => (
            format!("Recent ratings weaker than for most products ({d})"),
            "softer recent ratings",
        ),
    }
}

/// Readings split by side, the extremes first.
/// A shopper's line on one metric and its theme ("Few complaints: …", "few complaints").
type Reading = (String, String);

fn readings(f: &Facts) -> (Vec<Reading>, Vec<Reading>) {
    let mut good: Vec<(Standing, String, String)> = Vec::new();
    let mut bad: Vec<(Standing, String, String)> = Vec::new();
    for (i, m) in f.metrics.iter().enumerate() {
        let (Some(st), Some((line, theme))) = (m.standing(), reading(f, m, 900 + i as u64)) else {
            continue;
        };
        if st.is_good() {
            good.push((st, line, theme));
        } else {
            bad.push((st, line, theme));
        }
    }
    good.sort_by_key(|(s, _, _)| *s);
    bad.sort_by_key(|(s, _, _)| std::cmp::Reverse(*s));
    let strip =
        |v: Vec<(Standing, String, String)>| v.into_iter().map(|(_, l, t)| (l, t)).collect();
    (strip(good), strip(bad))
}

fn summary(f: &Facts, s: Sentiment, good: &[(String, String)], bad: &[(String, String)]) -> String {
    let name = &f.name;
    let stars = f.metric("avg_rating").and_then(|m| m.value.clone());
    let count = f.metric("review_count").and_then(|m| m.value.clone());
    let basis = match (&stars, &count) {
        (Some(r), Some(n)) => format!(", which averages {r} stars across {n} reviews"),
        (Some(r), None) => format!(", which averages {r} stars"),
        _ => String::new(),
    };
    let mood = match s {
        Sentiment::Positive => f.pick(
            11,
            &[
                "Customers are largely happy with",
                "Reviewers speak well of",
                "Buyers mostly recommend",
                "Most reviewers are pleased with",
            ],
        ),
        Sentiment::Negative => f.pick(
            11,
            &[
                "Customers are often disappointed by",
                "Reviewers raise repeated concerns about",
                "Many buyers report problems with",
                "Reviews are largely critical of",
            ],
        ),
        Sentiment::Mixed => f.pick(
            11,
            &[
                "Customers have mixed views on",
                "Reviewers are divided about",
                "Opinions vary on",
                "Reviews are split on",
            ],
        ),
    };
    let mut out = vec![format!("{mood} {name}{basis}.")];
    if let Some((_, theme)) = good.first() {
        out.push(format!(
            "{} {theme}{}.",
            f.pick(
                12,
                &[
                    &format!(
                        "Compared with the other {}, its clearest plus is",
                        compared_with(f)
                    ),
                    "Its best point against other products:",
                    "What sets it apart from most products is"
                ]
            ),
            match good.get(1) {
                Some((_, t2)) if f.chance(13, 60) => format!(", followed by {t2}"),
                _ => String::new(),
            }
        ));
    }
    if let Some((_, theme)) = bad.first() {
        out.push(format!(
            "{} {theme}.",
            f.pick(
                14,
                &[
                    "The main reservation is",
                    "Against that, reviews point to",
                    "Where it falls short of most products:",
                    "The figure to watch is"
                ]
            )
        ));
    }
    out.push(
        f.pick(15, &[
            "This overview is built from review statistics and the most helpful and most recent reviews.",
            "It rests on the review statistics and the most helpful and most recent reviews.",
            &format!("Every point above comes from the review statistics, compared with all {}.", compared_with(f)),
        ])
        .to_string(),
    );
    out.iter()
        .map(|x| sentence_case(x, name))
        .collect::<Vec<_>>()
        .join(" ")
}

fn recommendation(f: &Facts, s: Sentiment) -> String {
    let name = &f.name;
    let many = f
        .metric("review_count")
        .and_then(|m| m.standing())
        .is_some_and(|s| s.is_good());
    let n = f.metric("review_count").and_then(|m| m.value.clone());
    match (s, many, n) {
        (Sentiment::Positive, true, Some(n)) => format!("A well-supported choice: {n} reviews, and most of them are favourable."),
        (Sentiment::Positive, _, Some(n)) => format!("Promising, but {n} {} a small sample; read the latest before buying {name}.", agree(n.parse::<u64>().map_or(2, |v| v as usize), "review is", "reviews are")),
        (Sentiment::Positive, _, None) => format!("Reviewers are largely satisfied with {name}."),
        (Sentiment::Mixed, _, _) => f.pick(16, &[
            "Read the one- and two-star reviews first: opinions on this product are divided.",
            "Worth a look if its strong points match your needs; check the critical reviews first.",
            "Compare it with alternatives before buying: the reviews are mixed.",
        ]).to_string(),
        (Sentiment::Negative, _, _) => format!("Read the recent reviews before buying {name}: many reviewers were not satisfied."),
    }
}

/// Fields another schema may add (title, meta description, h1), and any other property.
fn extras(f: &Facts, schema: &Value, out: &mut Map<String, Value>, s: Sentiment) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let name = &f.name;
    let stars = f.metric("avg_rating").and_then(|m| m.value.clone());
    let summary = out
        .get("summary")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    for (k, p) in props {
        if out.contains_key(k) {
            continue;
        }
        let text = match k.as_str() {
            "title" => {
                let max = max_len(props, "title", 60);
                let t = match &stars {
                    Some(r) => format!(
                        "{name} Reviews: {r} Stars, {} Verdict",
                        capitalize(s.code())
                    ),
                    None => format!("{name} Reviews: {} Verdict", capitalize(s.code())),
                };
                fit(t, max, || truncate_chars(&format!("{name} Reviews"), max))
            }
            "h1" => format!("{name}: what reviewers say"),
            "meta_description" => truncate_chars(&summary, max_len(props, k, 160)),
            _ => {
                out.insert(k.clone(), fill(p, f, 1));
                continue;
            }
        };
        out.insert(k.clone(), Value::String(text));
    }
}

pub(super) fn insights(f: &Facts, schema: &Value) -> Value {
    let s = sentiment(f);
    let (good, bad) = readings(f);
    let mut strengths: Vec<String> = good.iter().take(4).map(|(l, _)| l.clone()).collect();
    // The schema asks for two strengths: with fewer, say what the evidence is, not praise.
    let count = f.metric("review_count").and_then(|m| m.value.clone());
    for filler in [
        count.map(|n| format!("Rated by {n} reviewers")),
        Some(format!(
            "Review statistics compared with all {}",
            compared_with(f)
        )),
    ]
    .into_iter()
    .flatten()
    {
        if strengths.len() < 2 {
            strengths.push(filler);
        }
    }
    let weaknesses: Vec<String> = bad.iter().take(4).map(|(l, _)| l.clone()).collect();
    let mut themes: Vec<String> = Vec::new();
    for (_, t) in good
        .iter()
        .zip(bad.iter())
        .flat_map(|(g, b)| [g, b])
        .chain(good.iter().skip(bad.len()))
        .chain(bad.iter().skip(good.len()))
    {
        if !themes.contains(t) && themes.len() < 6 {
            themes.push(t.clone());
        }
    }
    if themes.is_empty() {
        themes.push("customer reviews".into());
    }
    let mut out = Map::new();
    out.insert("summary".into(), summary(f, s, &good, &bad).into());
    out.insert("sentiment".into(), s.code().into());
    out.insert("strengths".into(), json!(strengths));
    out.insert("weaknesses".into(), json!(weaknesses));
    out.insert("themes".into(), json!(themes));
    out.insert("recommendation".into(), recommendation(f, s).into());
    extras(f, schema, &mut out, s);
    Value::Object(out)
}

#[cfg(test)]
mod tests;
