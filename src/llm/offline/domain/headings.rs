//! Title, h1 and meta description of a domain page: a dozen patterns each, filled with the
//! facts that tell pages apart (category, market, overall picture, strongest and weakest
//! measure), so two pages differ by more than their names. A pattern too long for the schema's
//! limit gives way to the next one.

use super::super::grammar::{capitalize, with_article};
use super::{Facts, Verdict, extremes, first_fitting, has_group, labels_of, market};

/// Title-case words for the overall picture (never a claim about one metric).
fn verdict_words(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Leader) => "Top-Tier Results",
        Some(Verdict::Strong) => "Strong Results",
        Some(Verdict::Balanced) => "Mixed Results",
        Some(Verdict::Weak) => "Uneven Results",
        Some(Verdict::Trailing) => "Weak Results",
        None => "Results",
    }
}

fn verdict_phrase(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Leader) => "one of the best records",
        Some(Verdict::Strong) => "a strong record",
        Some(Verdict::Balanced) => "a mixed record",
        Some(Verdict::Weak) => "an uneven record",
        Some(Verdict::Trailing) => "a weak record",
        None => "a record without peer positions",
    }
}

fn title_case(s: &str) -> String {
    s.split(' ')
        .map(|w| match w {
            "of" | "and" | "per" | "over" | "vs" | "in" | "across" => w.to_string(),
            _ => capitalize(w),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How headings name the peer set: (in the group, the group's peers, the group's shops) —
/// "in Garden", "Garden peers", "Garden shops", or across all entities without a group.
struct Field {
    in_g: String,
    peers: String,
    shops: String,
    /// Title case, for titles: "Garden", "All Domains".
    name: String,
}

fn field(f: &Facts) -> Field {
    if has_group(f) {
        let g = &f.peer_name;
        Field {
            in_g: format!("in {g}"),
            peers: format!("{g} peers"),
            shops: format!("{g} shops"),
            name: g.clone(),
        }
    } else {
        let e = f.entities();
        Field {
            in_g: format!("across all {e}"),
            peers: format!("all tracked {e}"),
            shops: format!("all tracked {e}"),
            name: format!("All {}", capitalize(&e)),
        }
    }
}

pub(super) fn title(f: &Facts, v: Option<Verdict>, max: usize) -> String {
    let name = &f.name;
    let fd = field(f);
    let g = &fd.name;
    let in_g = title_case(&fd.in_g);
    let (best, _) = extremes(f);
    let top = best
        .first()
        .map_or_else(|| "Peer Position".to_string(), |m| title_case(&m.label));
    let mk = market(f).unwrap_or_else(|| "Online".into());
    let n = f.peer_size.map(|n| n.to_string()).unwrap_or_default();
    let vw = verdict_words(v);
    let e = title_case(&f.entities());
    let candidates = if has_group(f) {
        vec![
            format!("{name}: {g} Shop Benchmark"),
            format!("{name} vs {g} Peers: {vw}"),
            format!("How {name} Compares {in_g}"),
            format!("{name} Performance Review ({mk}, {g})"),
            format!("{name}: Best on {top} {in_g}"),
            format!("{name} {in_g}: {vw}"),
            format!("{name} Benchmarked Against {n} {g} Shops"),
            format!("{name} Scorecard: {mk} {g} Shop"),
            format!("{name}: {mk} {g} Performance"),
            format!("{name} Twelve-Month Review vs {g}"),
            format!("{name}: {top} and More vs {g}"),
            format!("{name} Among {g} Shops: {vw}"),
        ]
    } else {
        vec![
            format!("{name}: Shop Benchmark {in_g}"),
            format!("{name} vs All Tracked {e}: {vw}"),
            format!("How {name} Compares {in_g}"),
            format!("{name} Performance Review ({mk})"),
            format!("{name}: Best on {top}"),
            format!("{name} {in_g}: {vw}"),
            format!("{name} Benchmarked Against {n} {e}"),
            format!("{name} Scorecard: {mk} Shop"),
            format!("{name}: {mk} Shop Performance"),
            format!("{name} Twelve-Month Review"),
            format!("{name}: {top} and More"),
            format!("{name} Among All {e}: {vw}"),
        ]
    };
    let start = f.index(1, candidates.len());
    first_fitting(candidates, start, max, format!("{name}: {vw}"))
}

pub(super) fn h1(f: &Facts, v: Option<Verdict>, max: usize) -> String {
    let name = &f.name;
    let fd = field(f);
    let (in_g, gp, gs) = (&fd.in_g, &fd.peers, &fd.shops);
    let (best, _) = extremes(f);
    let top = best.first().map_or("its position", |m| m.label.as_str());
    let shop = market(f).map_or_else(|| "shop".to_string(), |m| format!("{m} shop"));
    let vp = verdict_phrase(v);
    let candidates = vec![
        format!("{name} compared with {}", f.short_peers(2)),
        format!("How {name} performs against {gp}"),
        format!("{name}: {vp} among {gs}"),
        format!("{name} {in_g}: a twelve-month review"),
        format!("{name} at a glance: {top} and the rest"),
        format!("{name} against {}", f.peers_phrase()),
        format!("The {shop} {name} and its peers {in_g}"),
        format!("{name}: position, ranges and peer comparison"),
        format!("Twelve months of {name} against {gp}"),
        format!("{name}, {} {in_g}", with_article(&shop)),
        format!("Where {name} stands {in_g}"),
        format!("{name} and {}: {vp}", f.short_peers(3)),
    ];
    let start = f.index(2, candidates.len());
    first_fitting(candidates, start, max, name.clone())
}

pub(super) fn meta(f: &Facts, v: Option<Verdict>, max: usize) -> String {
    let name = &f.name;
    let fd = field(f);
    let in_g = &fd.in_g;
    let (best, worst) = extremes(f);
    let strong = if best.is_empty() {
        "no measure in the upper half".to_string()
    } else {
        format!("strongest in {}", labels_of(&best, 2))
    };
    let weak = if worst.is_empty() {
        "no measure in the lower half".to_string()
    } else {
        format!("weakest in {}", labels_of(&worst, 1))
    };
    let shop = market(f).map_or_else(|| "shop".to_string(), |m| format!("{m} shop"));
    let p = f.short_peers(4);
    let vp = verdict_phrase(v);
    let candidates = vec![
        format!(
            "{name} against {p}: {strong}; {weak}. Ranges and tiers for the last twelve months."
        ),
        format!(
            "How {name}, {} {in_g}, ranks on traffic, conversion, order value and growth: {vp}.",
            with_article(&shop)
        ),
        format!(
            "{} for {name} {in_g}: {strong}; {weak}. Twelve months, compared with peers.",
            capitalize(vp)
        ),
        format!("See where {name} stands among {p} over twelve months: {strong}; {weak}."),
        format!(
            "{name} benchmarked against {}: {vp}, {strong}.",
            f.peers_phrase()
        ),
        format!("Twelve months of {name} in ranges and tiers: {strong}; {weak}, against {p}."),
        format!("{name} {in_g}: {strong}; {weak}. A peer comparison in ranges, not exact figures."),
        format!(
            "Is {name} ahead of {p}? {}: {strong}; {weak}.",
            capitalize(vp)
        ),
        format!(
            "{} {name} compared with {p}: {vp}, {strong}.",
            capitalize(&with_article(&shop))
        ),
        format!("Peer benchmark for {name} {in_g} over the last twelve months: {strong}; {weak}."),
        format!("{name} at a glance: {vp} among {p}, {strong}."),
        format!("What twelve months of data say about {name} {in_g}: {strong}; {weak}."),
    ];
    let start = f.index(5, candidates.len());
    let fallback = format!("How {name} compares with {p} over the last twelve months.");
    first_fitting(candidates, start, max, fallback)
}
