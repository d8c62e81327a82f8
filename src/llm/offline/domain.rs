//! The domain summary: a short analyst's note on one shop against its peers. An opening on its
//! overall position, a paragraph on where it does well and one on where it falls behind (each
//! grouping metrics of one tier into one sentence), a paragraph on what is neutral or missing,
//! and a closing line. Order, connectives and wording come from independent sub-hashes of the
//! key. Every tier word sits next to a metric of that tier, so the fact check can verify it.

use super::grammar::{
    agree, capitalize, continue_with, join, market_adjective, number_word, quantifier,
    sentence_case,
};
use super::{
    Facts, MetricFact, PeerBasis, Standing, Tier, count_words, fit, max_len, truncate_chars,
};
use serde_json::{Map, Value, json};

mod headings;
mod phrases;

/// The overall picture, from the share of measures in the better half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Leader,
    Strong,
    Balanced,
    Weak,
    Trailing,
}

/// Metrics that describe the audience rather than performance (a high mobile share is neither
/// good nor bad): told as a profile, never as a strength or a weakness.
fn is_profile(m: &MetricFact) -> bool {
    m.name.contains("mobile") || m.label.contains("mobile")
}

/// Counts behind the verdict: (measures with a tier, in the better half, in the top tier).
fn tally(f: &Facts) -> (usize, usize, usize) {
    let rated: Vec<Standing> = f
        .metrics
        .iter()
        .filter(|m| !is_profile(m))
        .filter_map(|m| m.standing())
        .collect();
    let good = rated.iter().filter(|s| s.is_good()).count();
    let leading = rated.iter().filter(|s| **s == Standing::Leading).count();
    (rated.len(), good, leading)
}

fn verdict(f: &Facts) -> Option<Verdict> {
    let (n, good, leading) = tally(f);
    if n == 0 {
        return None;
    }
    let share = good as f64 / n as f64;
    Some(if leading * 2 >= n && share >= 0.7 {
        Verdict::Leader
    } else if share >= 0.7 {
        Verdict::Strong
    } else if share >= 0.4 {
        Verdict::Balanced
    } else if share >= 0.2 {
        Verdict::Weak
    } else {
        Verdict::Trailing
    })
}

/// A metric's label with its range or exact value, sometimes ("visits (100K–500K visits)").
fn labelled(f: &Facts, m: &MetricFact, slot: u64) -> String {
    match &m.detail {
        Some(d) if m.value.is_some() => match f.index(slot, 3) {
            0 => format!("{} ({d})", m.label),
            1 => format!("{} of {d}", m.label),
            _ => m.label.clone(),
        },
        Some(d) if f.chance(slot, 55) => format!("{} ({d})", m.label),
        _ => m.label.clone(),
    }
}

/// Performance metrics grouped by (standing, lower is better), each group in context order.
fn groups(f: &Facts, standing: Standing) -> Vec<(Tier, Vec<&MetricFact>)> {
    let mut out: Vec<(Tier, Vec<&MetricFact>)> = Vec::new();
    for m in f
        .with_standing(standing)
        .into_iter()
        .filter(|m| !is_profile(m))
    {
        let tier = m.tier.expect("a standing has a tier");
        match out.iter_mut().find(|(t, _)| *t == tier) {
            Some((_, v)) => v.push(m),
            None => out.push((tier, vec![m])),
        }
    }
    out
}

/// The sentences on one side (good or bad): a group sentence per tier, the stronger tier first.
fn side(f: &Facts, good: bool, slot: u64) -> Vec<String> {
    let order = if good {
        [Standing::Leading, Standing::Ahead]
    } else {
        [Standing::Trailing, Standing::Behind]
    };
    let mut out = Vec::new();
    for (k, standing) in order.into_iter().enumerate() {
        for (j, (tier, metrics)) in groups(f, standing).into_iter().enumerate() {
            let slot = slot + 10 * k as u64 + j as u64;
            // Long lists read better split: at most four labels per sentence, evenly.
            let size = metrics.len().div_ceil(metrics.len().div_ceil(4));
            for (c, chunk) in metrics.chunks(size).enumerate() {
                let labels: Vec<String> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, m)| labelled(f, m, slot * 31 + i as u64))
                    .collect();
                let later = !out.is_empty() || c > 0;
                let sentence = |bump: u64| {
                    phrases::group_sentence(
                        f,
                        tier,
                        chunk[0].lower_is_better,
                        &join(&labels),
                        chunk.len(),
                        later,
                        slot + 7 * c as u64 + 101 * bump,
                    )
                };
                // Two sentences in a row opening alike ("It also trails… It also trails…")
                // read as a template: pick another phrasing (deterministically) until they differ.
                let mut text = sentence(0);
                for bump in 1..8 {
                    if !same_opening(out.last(), &text) {
                        break;
                    }
                    text = sentence(bump);
                }
                out.push(text);
            }
        }
    }
    out
}

/// Whether `next` opens with the same three words as `prev` (case aside).
fn same_opening(prev: Option<&String>, next: &str) -> bool {
    let opening = |s: &str| -> Vec<String> {
        s.split_whitespace()
            .take(3)
            .map(str::to_lowercase)
            .collect()
    };
    prev.is_some_and(|p| opening(p) == opening(next))
}

/// The sentences on what is neither good nor bad: profile metrics, metrics without a tier and
/// missing ones.
fn neutral(f: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    for (i, m) in f.metrics.iter().filter(|m| is_profile(m)).enumerate() {
        if let Some(t) = m.tier {
            out.push(phrases::profile_sentence(f, m, t, 300 + i as u64));
        }
    }
    let untiered: Vec<&MetricFact> = f.metrics.iter().filter(|m| m.tier.is_none()).collect();
    for (i, m) in untiered.iter().enumerate() {
        if let Some(d) = &m.detail {
            out.push(format!(
                "{} {} {d}, without a peer position to compare it with.",
                capitalize(&m.label),
                f.pick(
                    310 + i as u64,
                    &["is in the range", "falls in the range", "reads"]
                )
            ));
        }
    }
    if !f.missing.is_empty() {
        out.push(phrases::missing_sentence(f, 320));
    }
    out
}

fn paragraph(f: &Facts, sentences: &[String]) -> String {
    sentences
        .iter()
        .map(|s| sentence_case(s, &f.name))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prefixes the first sentence of a side with a connective ("By contrast, …") when one is
/// picked; the connective is part of the sentence, so the fact check reads the same text.
fn lead_in(f: &Facts, mut sentences: Vec<String>, options: &[&str], slot: u64) -> Vec<String> {
    let c = f.pick(slot, options);
    if let Some(first) = sentences.first_mut()
        && !c.is_empty()
    {
        *first = format!("{c} {}", continue_with(first, &f.name));
    }
    sentences
}

/// The summary's paragraphs, within 120–300 words.
fn narrative(f: &Facts) -> String {
    let v = verdict(f);
    let opening = phrases::opening(f, v, tally(f));
    let good = side(f, true, 100);
    let bad = side(f, false, 200);
    let good = if good.is_empty() {
        vec![phrases::no_strengths(f, 150)]
    } else {
        lead_in(f, good, phrases::GOOD_LEADS, 160)
    };
    let bad = if bad.is_empty() {
        vec![phrases::no_weaknesses(f, 250)]
    } else {
        lead_in(f, bad, phrases::BAD_LEADS, 260)
    };
    let mut middle = neutral(f);
    let patterns = phrases::patterns(f, 400);
    // The pattern note goes with the side it explains or in the middle paragraph.
    let (mut good, mut bad) = (good, bad);
    match f.index(410, 3) {
        0 => good.extend(patterns),
        1 => bad.extend(patterns),
        _ => {
            middle.splice(0..0, patterns);
        }
    }
    // Weaker shops lead with what holds them back more often than stronger ones.
    let bad_first = match v {
        Some(Verdict::Weak | Verdict::Trailing) => f.chance(420, 60),
        Some(Verdict::Balanced) => f.chance(420, 35),
        _ => f.chance(420, 12),
    };
    let (first, second) = if bad_first { (bad, good) } else { (good, bad) };
    let mut paragraphs: Vec<Vec<String>> = vec![opening, first, second];
    if !middle.is_empty() {
        // Short middle notes sometimes join the opening instead of standing alone.
        if middle.len() == 1 && f.chance(430, 40) {
            paragraphs[0].extend(middle);
        } else {
            paragraphs.push(middle);
        }
    }
    let closers = phrases::closers(f);
    let start = f.index(440, closers.len());
    let mut closing = vec![closers[start].clone()];
    let words = |p: &Vec<Vec<String>>, c: &Vec<String>| {
        p.iter()
            .flatten()
            .chain(c)
            .map(|s| count_words(s))
            .sum::<usize>()
    };
    let mut k = 1;
    while words(&paragraphs, &closing) < 125 && k < closers.len() {
        closing.push(closers[(start + k * 5) % closers.len()].clone());
        k += 1;
    }
    // Never exceed 300 words: drop sentences from the longest paragraph (openings stay).
    while words(&paragraphs, &closing) > 290 {
        let longest = (1..paragraphs.len()).max_by_key(|&i| paragraphs[i].len());
        match longest {
            Some(i) if paragraphs[i].len() > 1 => {
                paragraphs[i].pop();
            }
            _ => break,
        }
    }
    if f.chance(450, 50) || paragraphs.len() < 4 {
        paragraphs.push(closing);
    } else {
        paragraphs.last_mut().expect("the opening").extend(closing);
    }
    paragraphs
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| paragraph(f, p))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The strongest and weakest performance metrics, for titles, highlights and FAQ.
fn extremes(f: &Facts) -> (Vec<&MetricFact>, Vec<&MetricFact>) {
    let best = f.best().into_iter().filter(|m| !is_profile(m)).collect();
    let worst = f.worst().into_iter().filter(|m| !is_profile(m)).collect();
    (best, worst)
}

fn highlights(f: &Facts) -> Vec<String> {
    let (best, worst) = extremes(f);
    let mut out: Vec<String> = Vec::new();
    for (i, m) in best.iter().take(2).enumerate() {
        out.push(phrases::highlight(f, m, 500 + i as u64));
    }
    for (i, m) in worst.iter().take(2).enumerate() {
        out.push(phrases::highlight(f, m, 510 + i as u64));
    }
    let generic = [
        format!("Compared with {}", f.peers_phrase()),
        capitalize(f.pick(
            520,
            &[
                "based on the last twelve months of data",
                "twelve months of trading, compared like for like",
                "ranges and tiers instead of exact private figures",
                "one comparison window for every shop in the group",
            ],
        )),
        match f.missing.len() {
            0 => "Every tracked measure has data for this period".to_string(),
            n => format!(
                "No data this period on {}",
                if n > 2 {
                    format!("{} measures", number_word(n).unwrap_or("several"))
                } else {
                    join(&f.missing)
                }
            ),
        },
    ];
    for g in generic {
        if out.len() >= 3 {
            break;
        }
        out.push(g);
    }
    out.truncate(5);
    out
}

fn faq(f: &Facts) -> Vec<Value> {
    let name = &f.name;
    let (best, worst) = extremes(f);
    let labels = |v: &[&MetricFact], n: usize| {
        join(
            &v.iter()
                .take(n)
                .map(|m| m.label.clone())
                .collect::<Vec<_>>(),
        )
    };
    let mut out = vec![json!({
        "question": phrases::question(f, 600, name),
        "answer": format!(
            "{} {}",
            sentence_case(&format!("{name} is compared with {}.", f.peers_phrase()), name),
            if best.is_empty() {
                "It does not reach the upper half of its peers on the measures available.".to_string()
            } else {
                format!("It is strongest in {}.", labels(&best, 2))
            }
        ),
    })];
    if !worst.is_empty() {
        out.push(json!({
            "question": f.pick(610, &[
                "Where does it fall behind?",
                "What could it improve?",
                "Which measures hold it back?",
                "Where are its weaker positions?",
            ]),
            "answer": format!("Its weakest positions are in {}.", labels(&worst, 2)),
        }));
    }
    let exact: Vec<&MetricFact> = f.metrics.iter().filter(|m| m.value.is_some()).collect();
    // A page that shows an exact figure must not claim that none is shown.
    out.push(if exact.is_empty() {
        json!({
            "question": "Why are exact figures not shown?",
            "answer": "The underlying data is licensed, so this page shows ranges and relative positions instead of exact values.",
        })
    } else {
        let shown: Vec<String> = exact
            .iter()
            .map(|m| format!("the {} ({})", m.label, m.value.as_deref().unwrap_or_default()))
            .collect();
        json!({
            "question": "Which figures are exact?",
            "answer": format!(
                "Only {} {} shown exactly. The other measures are licensed data, so the page gives their ranges and relative positions instead.",
                join(&shown),
                agree(shown.len(), "is", "are")
            ),
        })
    });
    out
}

pub(super) fn summary(f: &Facts, props: &Map<String, Value>) -> Value {
    let title_max = max_len(props, "title", 60);
    let meta_max = max_len(props, "meta_description", 160);
    let h1_max = max_len(props, "h1", 100);
    let title = headings::title(f, verdict(f), title_max);
    let h1 = headings::h1(f, verdict(f), h1_max);
    let meta = headings::meta(f, verdict(f), meta_max);
    json!({
        "title": title,
        "meta_description": meta,
        "h1": h1,
        "summary": narrative(f),
        "highlights": highlights(f),
        "faq": faq(f),
    })
}

/// The first of `candidates` that fits in `max` characters, trying from the hashed one on.
fn first_fitting(candidates: Vec<String>, start: usize, max: usize, fallback: String) -> String {
    let n = candidates.len();
    (0..n)
        .map(|k| &candidates[(start + k) % n])
        .find(|c| c.chars().count() <= max)
        .cloned()
        .unwrap_or_else(|| fit(fallback.clone(), max, || truncate_chars(&fallback, max)))
}

/// Verdict helpers shared by the headings and the opening.
fn quantity(n: usize) -> String {
    number_word(n).map_or_else(|| "many".to_string(), str::to_string)
}

fn market(f: &Facts) -> Option<String> {
    f.market.as_deref().map(market_adjective)
}

fn has_group(f: &Facts) -> bool {
    f.peer_basis == PeerBasis::Group
}

fn labels_of(v: &[&MetricFact], n: usize) -> String {
    join(
        &v.iter()
            .take(n)
            .map(|m| m.label.clone())
            .collect::<Vec<_>>(),
    )
}

fn quantified(n: usize) -> String {
    quantifier(n)
}

#[cfg(test)]
mod tests;
