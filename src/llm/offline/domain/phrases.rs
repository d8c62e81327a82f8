//! The domain summary's phrase banks: many variants per slot, each a function of facts, so
//! sentences agree in number and every tier word stays next to the metric it describes (the
//! fact check reads the nearest label before a tier word, or the first one after it in the same
//! clause).

use super::super::grammar::{agree, capitalize, join, with_article};
use super::{Facts, MetricFact, Tier, Verdict, has_group, market, quantified, quantity};

/// Connectives that open the paragraph on what goes well ("" = none).
pub(super) const GOOD_LEADS: &[&str] = &[
    "",
    "",
    "On the positive side,",
    "Starting with what works,",
    "In its favour,",
    "Where it does well,",
    "First, the good news:",
    "To begin with its better results,",
    "Its best figures first:",
    "On the credit side,",
];

/// Connectives that open the paragraph on what falls behind.
pub(super) const BAD_LEADS: &[&str] = &[
    "",
    "",
    "By contrast,",
    "On the other side of the ledger,",
    "Less favourably,",
    "Against that,",
    "The weaker side of the picture:",
    "Where it falls behind,",
    "The less flattering figures:",
    "On the debit side,",
];

/// One sentence on metrics sharing `tier` (`labels` already joined, `n` of them). `later`: not
/// the first sentence of its paragraph, so "also" and "too" read naturally.
// Long because it is a phrase table: every tier's wordings side by side, so a reader compares
// them (and their agreement with `n`) in one place; split up, the variants hide from each other.
pub(super) fn group_sentence(
    f: &Facts,
    tier: Tier,
    lower_is_better: bool,
    labels: &str,
    n: usize,
    later: bool,
    slot: u64,
) -> String {
    let p = f.short_peers(slot + 1000);
    let name = &f.name;
    let be = agree(n, "is", "are");
    let q = quantified(n);
    let each = if n > 1 {
        format!(", {q}")
    } else {
        ",".to_string()
    };
    if lower_is_better {
        let side = if matches!(tier, Tier::Bottom10 | Tier::BelowMedian) {
            "a strength"
        } else {
            "a weakness"
        };
        return format!(
            "For {labels} lower is better, and {name} is {} of {p}: {side}.",
            tier.phrase()
        );
    }
    let also = if later { " also" } else { "" };
    let options: Vec<String> = match tier {
        Tier::Top10 => vec![
            format!("{labels} {be} in the top 10 % of {p}."),
            format!("{name} ranks in the top 10 % of {p} for {labels}."),
            format!("on {labels}, {name} sits in the top tenth of {p}."),
            format!(
                "its standout {} {be} {labels}{each} in the top 10 % of {p}.",
                agree(n, "result", "results")
            ),
            format!(
                "{} match it on {labels}, which {} it in the top 10 %.",
                share_of("few", &p),
                agree(n, "puts", "put")
            ),
            format!(
                "{labels} {} {name} among the top 10 % of {p}.",
                agree(n, "places", "place")
            ),
            format!("it leads the field on {labels}, with a place in the top 10 % of {p}."),
            format!(
                "the strongest {} {labels}{each} in the top 10 %.",
                agree(n, "result is", "results are")
            ),
        ],
        Tier::AboveMedian => vec![
            format!("{labels} {be}{also} above the median of {p}."),
            format!("it is{also} ahead of the median on {labels}."),
            format!("on {labels}, {name} does better than the median of {p}."),
            format!(
                "{labels}{also} {} in the upper half.",
                agree(n, "sits", "sit")
            ),
            format!("{name} is{also} in the upper half of {p} for {labels}."),
            format!(
                "{labels}{also} {} out above the median.",
                agree(n, "comes", "come")
            ),
            format!(
                "{labels} {be} better than the median of {p}{}.",
                if later { " as well" } else { "" }
            ),
            format!("it keeps {labels} above the median of {p}."),
        ],
        Tier::BelowMedian => vec![
            format!("{labels} {be}{also} below the median of {p}."),
            format!("it{also} trails the median on {labels}."),
            format!("on {labels}, it falls short of the median of {p}."),
            format!(
                "{labels}{also} {} in the lower half.",
                agree(n, "sits", "sit")
            ),
            format!("{name} is behind the median of {p} on {labels}."),
            format!(
                "{labels} {} the median of {p}.",
                agree(n, "trails", "trail")
            ),
            format!("in the lower half of {p} {be} {labels}."),
            format!(
                "{labels} {be} worse than the median{}.",
                if later { " too" } else { "" }
            ),
        ],
        Tier::Bottom10 => vec![
            format!("{labels} {be} in the bottom 10 % of {p}."),
            format!("it ranks in the bottom tenth of {p} on {labels}."),
            format!("on {labels}, {name} is among the bottom 10 % of {p}."),
            format!(
                "the weakest {} {labels}{each} in the bottom 10 %.",
                agree(n, "result is", "results are")
            ),
            format!(
                "{labels} {} it in the bottom 10 % of {p}.",
                agree(n, "leaves", "leave")
            ),
            format!(
                "the clearest room for improvement lies in {labels}, which {} in the bottom 10 %.",
                agree(n, "sits", "sit")
            ),
            format!("{labels} {be} in the bottom decile of {p}."),
        ],
    };
    options[f.index(slot, options.len())].clone()
}

/// A profile metric (audience, not performance): where it sits, without praise or blame.
pub(super) fn profile_sentence(f: &Facts, m: &MetricFact, t: Tier, slot: u64) -> String {
    let label = &m.label;
    let detail = m
        .detail
        .as_ref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    let more = matches!(t, Tier::Top10 | Tier::AboveMedian);
    let p = f.short_peers(slot + 1);
    let (t_, more) = (t.phrase(), if more { "more" } else { "less" });
    let options = [
        format!(
            "Its {label}{detail} is {t_} of {p}, which describes its audience rather than its results."
        ),
        format!("As for its audience, the {label}{detail} is {t_}."),
        format!(
            "The {label}{detail} is {t_}, so its customers shop {more} on phones than at the typical peer."
        ),
        format!("On {label}{detail}, a measure of audience rather than of success, it is {t_}."),
        format!(
            "Its {label}{detail}, {t_} of {p}, says who its customers are more than how it trades."
        ),
        format!("One profile note: the {label}{detail} is {t_}."),
        format!(
            "Its customers use phones {more} than those of the typical peer: the {label}{detail} is {t_}."
        ),
    ];
    options[f.index(slot, options.len())].clone()
}

pub(super) fn missing_sentence(f: &Facts, slot: u64) -> String {
    let n = f.missing.len();
    let list = join(&f.missing);
    let options = [
        format!(
            "No data on {list} was available for this period, so {} left out.",
            agree(n, "that measure is", "those measures are")
        ),
        format!(
            "{} {list} {} not reported, and no position is claimed for {}.",
            agree(n, "The measure", "The measures"),
            agree(n, "was", "were"),
            agree(n, "it", "them")
        ),
        format!("This period has no figures for {list}, so the comparison is silent there."),
        format!(
            "{} without data this period: {list}.",
            capitalize(agree(n, "one measure is", "some measures are"))
        ),
    ];
    options[f.index(slot, options.len())].clone()
}

/// When no performance metric reaches the better half.
pub(super) fn no_strengths(f: &Facts, slot: u64) -> String {
    let p = f.short_peers(slot);
    let options = [
        format!("None of its results reaches the upper half of {p} this period."),
        format!("It has no measure in the upper half of {p} this period."),
        format!("There is no bright spot among its results against {p} this period."),
        format!("Nothing in the data places it in the upper half of {p}."),
    ];
    options[f.index(slot, options.len())].clone()
}

/// When no performance metric falls into the worse half.
pub(super) fn no_weaknesses(f: &Facts, slot: u64) -> String {
    let p = f.short_peers(slot);
    let options = [
        format!("No result of its falls into the lower half of {p}."),
        format!("None of its results falls into the lower half of {p}."),
        format!("It has no measure in the lower half of {p} this period."),
        format!("Nothing in the data places it in the lower half of {p}."),
    ];
    options[f.index(slot, options.len())].clone()
}

/// The opening: where the shop stands overall and who it is compared with.
// Long because it is a phrase table: the wordings of every verdict side by side (see
// `group_sentence`).
pub(super) fn opening(
    f: &Facts,
    v: Option<Verdict>,
    (n, good, leading): (usize, usize, usize),
) -> Vec<String> {
    let name = &f.name;
    let basis = basis_first(f);
    // Without a verdict the overall sentence cannot carry the name: the basis opens.
    let name_first = v.is_some() && f.chance(704, 50);
    let it = if name_first { name.as_str() } else { "it" };
    let its = if name_first {
        format!("{name}'s")
    } else {
        "its".to_string()
    };
    // "The picture for it is …" reads badly: the shop is named or left implicit.
    let for_it = if name_first {
        format!(" for {name}")
    } else {
        String::new()
    };
    let p = f.short_peers(702);
    let (of_good, of_bad) = (count_of(good, n), count_of(n - good, n));
    let (ng, nb, nt) = (measures(good), measures(n - good), measures(leading));
    let top = count_of(leading, n);
    let overall = match v {
        None => "no measure has a peer position yet, so the note stays with what the data shows."
            .to_string(),
        Some(Verdict::Leader) => pick(
            f,
            703,
            vec![
                format!("{it} is one of the standout names among {p}: {of_good} above the median."),
                format!(
                    "the overall picture{for_it} is strong, with {nt} in the top tenth of {p}."
                ),
                format!(
                    "{} can match {its} record: {top} in the top tenth.",
                    share_of("few", &p)
                ),
                format!(
                    "taken together, {its} positions put it near the front of {p}, with {nt} in the top tenth."
                ),
            ],
        ),
        Some(Verdict::Strong) => pick(
            f,
            703,
            vec![
                format!("overall {it} performs well: {of_good} in the upper half of {p}."),
                format!("most of {its} positions are favourable: {of_good} above the median."),
                format!("{it} holds up well against {p}, with {ng} in the upper half."),
                format!(
                    "the balance{for_it} is clearly positive: {ng} ahead of the median and {nb} behind it."
                ),
            ],
        ),
        Some(Verdict::Balanced) => pick(
            f,
            703,
            vec![
                format!("{its} record is mixed: {ng} above the median of {p} and {nb} below it."),
                format!(
                    "the picture{for_it} is balanced, with {ng} in the upper half and {nb} in the lower half."
                ),
                format!(
                    "{it} sits near the middle of {p} overall, ahead on {ng} and behind on {nb}."
                ),
                format!(
                    "neither clearly ahead nor clearly behind, {it} is in the upper half on {ng} and in the lower half on {nb}."
                ),
            ],
        ),
        Some(Verdict::Weak) => pick(
            f,
            703,
            vec![
                format!(
                    "overall {it} finds the going harder than {}: {of_good} in the upper half.",
                    share_of("most", &p)
                ),
                format!(
                    "more of {its} positions are unfavourable than favourable: {of_bad} below the median."
                ),
                format!(
                    "{it} is behind the typical {} on most counts, with {ng} in the upper half.",
                    f.entity_label
                ),
                format!(
                    "the balance tilts against {it}: {nb} in the lower half and {ng} above the median."
                ),
            ],
        ),
        Some(Verdict::Trailing) => pick(
            f,
            703,
            vec![
                format!("{it} sits toward the back of {p}: {of_bad} below the median."),
                format!("the overall picture{for_it} is weak, with {ng} in the upper half of {p}."),
                format!("almost every measure places {it} in the lower half of {p}."),
                format!(
                    "{it} has had a difficult year relative to {p}, with {nb} below the median."
                ),
            ],
        ),
    };
    if name_first {
        vec![overall, basis_short(f)]
    } else {
        vec![basis, overall]
    }
}

/// The peer basis as the opening sentence, naming the shop (and sometimes its market).
fn basis_first(f: &Facts) -> String {
    let name = &f.name;
    let shop = match market(f) {
        Some(m) if f.chance(700, 70) => with_article(&format!("{m} shop")),
        _ => "a shop".to_string(),
    };
    match f.peer_basis {
        super::PeerBasis::Group => {
            let options = [
                format!(
                    "{name}, {shop} in the {} {}, is measured against {}.",
                    f.peer_name,
                    f.group_label,
                    match f.peer_size {
                        Some(n) => format!("all {n} {} in it", f.entities()),
                        None => format!("the other {} in it", f.entities()),
                    }
                ),
                format!(
                    "This note compares {name} with {} over the last twelve months.",
                    f.peers_phrase()
                ),
                format!("{name} is {shop} benchmarked against {}.", f.peers_phrase()),
                format!(
                    "The comparison set for {name} is {}, over a full year of trading.",
                    f.peers_phrase()
                ),
                format!(
                    "Over the past twelve months, {name} has been set against {}.",
                    f.peers_phrase()
                ),
            ];
            options[f.index(701, options.len())].clone()
        }
        super::PeerBasis::NoGroup => format!(
            "{name} has no assigned {}, so this note compares it with {}.",
            f.group_label,
            f.peers_phrase()
        ),
        super::PeerBasis::SmallGroup => format!(
            "{name} belongs to the {} {}, which has too few members for a fair comparison, so it is compared with {}.",
            f.group.as_deref().unwrap_or("unnamed"),
            f.group_label,
            f.peers_phrase()
        ),
    }
}

/// "one measure", "three measures", "no measure".
fn measures(n: usize) -> String {
    match n {
        0 => "no measure".into(),
        1 => "one measure".into(),
        n => format!("{} measures", quantity(n)),
    }
}

/// "three of its nine measures are", "one of its nine measures is", "its only measure is".
fn count_of(k: usize, n: usize) -> String {
    match (k, n) {
        (_, 1) => format!("its only measure is{}", if k == 1 { "" } else { " not" }),
        (0, n) => format!("none of its {} measures is", quantity(n)),
        (1, n) => format!("one of its {} measures is", quantity(n)),
        (k, n) => format!("{} of its {} measures are", quantity(k), quantity(n)),
    }
}

/// The peer basis as a second sentence, after an opening that named the shop.
fn basis_short(f: &Facts) -> String {
    match f.peer_basis {
        super::PeerBasis::Group => {
            let options = [
                format!("The comparison covers {}.", f.peers_phrase()),
                format!(
                    "Its peers are {}, over the same twelve months.",
                    f.peers_phrase()
                ),
                format!("Its peers here are {}.", f.peers_phrase()),
                format!("The yardstick is {}.", f.peers_phrase()),
            ];
            options[f.index(705, options.len())].clone()
        }
        super::PeerBasis::NoGroup => format!(
            "It has no assigned {}, so the comparison is with {}.",
            f.group_label,
            f.peers_phrase()
        ),
        super::PeerBasis::SmallGroup => format!(
            "Its {} ({}) is too small to compare within, so the comparison is with {}.",
            f.group_label,
            f.group.as_deref().unwrap_or("unnamed"),
            f.peers_phrase()
        ),
    }
}

/// "most of its Garden peers", but "most domains tracked" (never "most of all domains").
fn share_of(quantity: &str, peers: &str) -> String {
    match peers.strip_prefix("all ") {
        Some(rest) => format!("{quantity} {rest}"),
        None => format!("{quantity} of {peers}"),
    }
}

fn pick(f: &Facts, slot: u64, options: Vec<String>) -> String {
    options[f.index(slot, options.len())].clone()
}

fn good(f: &Facts, name: &str) -> Option<bool> {
    f.metric(name)
        .and_then(|m| m.standing())
        .map(|s| s.is_good())
}

/// What the positions say together: at most two observations, with no tier word (the metric
/// sentences carry those), true whenever their condition holds.
pub(super) fn patterns(f: &Facts, slot: u64) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |cond: bool, options: &[&str]| {
        if cond && out.len() < 2 {
            let i = f.index(
                slot + out.len() as u64 * 7 + options.len() as u64,
                options.len(),
            );
            out.push(options[i].to_string());
        }
    };
    let (visits, conv) = (good(f, "visits"), good(f, "conversion_rate"));
    let (aov, revenue) = (good(f, "average_order_value"), good(f, "revenue"));
    let (growth, ret) = (good(f, "revenue_growth_yoy"), good(f, "returning_share"));
    add(
        visits == Some(true) && conv == Some(false),
        &[
            "The pattern is one of a shop that attracts visitors more easily than it turns them into buyers.",
            "Traffic is not the problem here; turning that traffic into sales is.",
            "It wins attention more readily than it wins sales from that attention.",
            "Plenty of people arrive; comparatively few of them check out.",
            "The gap between its reach and its sales is the story of the year.",
        ],
    );
    add(
        visits == Some(false) && conv == Some(true),
        &[
            "Its audience is smaller than most, but a larger share of it goes on to buy.",
            "What it lacks in reach it makes up in how well it sells to those who arrive.",
            "A modest audience that buys readily: more reach would go a long way.",
            "Those who find the shop tend to buy; the open question is how to be found by more of them.",
            "It converts well for a shop of its reach, so traffic is the lever with the most room.",
        ],
    );
    add(
        aov == Some(true) && conv == Some(false),
        &[
            "Baskets are larger than at most peers, while fewer visitors go on to buy.",
            "It sells bigger baskets to a smaller share of its visitors.",
            "Fewer visitors buy, but those who do spend more per order than at most peers.",
            "Order size rather than the number of buyers carries its sales.",
        ],
    );
    add(
        revenue == Some(false) && growth == Some(true),
        &[
            "It is a smaller business than most of its peers, but one that is growing faster.",
            "Size is not yet on its side, but the growth figures point the right way.",
            "Smaller than most of the field, it is closing the gap.",
            "The business is modest in size and expanding faster than the typical peer.",
        ],
    );
    add(
        revenue == Some(true) && growth == Some(false),
        &[
            "Its scale is established, yet growth has been slower than at most peers.",
            "A large business by the standards of its peers, it is growing more slowly than they are.",
            "Size is on its side; momentum, for now, is not.",
            "An established business whose growth has cooled relative to the field.",
        ],
    );
    add(
        ret == Some(true),
        &[
            "Customers come back more often than at most peers, which points to a loyal base.",
            "A good share of its buyers return, a sign of a loyal customer base.",
            "Repeat custom is a recurring theme in its figures.",
            "Buyers tend to come back, which steadies its sales.",
            "Loyalty works in its favour: more of its buyers return than at the typical peer.",
            "It keeps the customers it wins better than most of the field.",
        ],
    );
    add(
        ret == Some(false) && visits == Some(true),
        &[
            "Many visitors come, but fewer of them come back.",
            "Keeping the customers it attracts is the open question.",
            "It attracts new custom easily, yet fewer buyers return than at most peers.",
        ],
    );
    out
}

/// Closing lines: how to read the positions. None names a metric, so none can contradict one.
pub(super) fn closers(f: &Facts) -> Vec<String> {
    let p = f.short_peers(800);
    let mut v = vec![
        format!("All positions are relative to {p} over the same twelve months."),
        "Read these as positions, not verdicts: a tier says how the shop compares, not why.".to_string(),
        "The next data refresh will show whether these positions hold.".to_string(),
        "Most exact figures stay private; the ranges shown are what the data licence allows.".to_string(),
        "Every shop in the comparison is measured over the same window, so seasonal swings affect them alike.".to_string(),
        format!("Tiers split {p} into the top tenth, the upper and lower halves and the bottom tenth."),
        "A change of tier in a later period would say more than any single range shown here.".to_string(),
        "Treat the tiers as a guide to where to look first, not as a full audit of the business.".to_string(),
        "Positions can shift as peers report new months, so the note is refreshed with each update.".to_string(),
        "Nothing here is advice to buy from or avoid the shop; it describes trading relative to peers.".to_string(),
        "Figures are compared like for like across the group, so the size of a shop alone does not decide its tier.".to_string(),
        "A shop's tier on one measure is independent of its tier on the others.".to_string(),
        "The note describes the year as reported; it does not forecast the next one.".to_string(),
        format!("Each position is computed against {p} alone, not against the market as a whole."),
        "Ranges are rounded bands, wide enough to keep private figures private.".to_string(),
        "One strong or weak measure rarely tells the whole story; the mix above matters more.".to_string(),
        "Where two shops share a tier, they may still differ widely within it.".to_string(),
        "Every shop is measured over the same months, so like is compared with like.".to_string(),
    ];
    if has_group(f) {
        v.push(format!(
            "Only shops in the {} {} enter the comparison.",
            f.peer_name, f.group_label
        ));
    }
    v
}

/// One highlight line on a metric, its tier word right after its label.
pub(super) fn highlight(f: &Facts, m: &MetricFact, slot: u64) -> String {
    let t = m.tier.expect("highlights are tiered");
    let p = f.short_peers(slot + 50);
    let label = capitalize(&m.label);
    let detail = m.detail.as_deref().unwrap_or("");
    let lower = if m.lower_is_better {
        ", where lower is better"
    } else {
        ""
    };
    let options = [
        format!("{label} {} of {p}{lower}", t.phrase()),
        format!("{label}{lower}: {} of {p}", t.phrase()),
        if detail.is_empty() {
            format!("{label} {}{lower}", t.phrase())
        } else {
            format!("{label} ({detail}) {}{lower}", t.phrase())
        },
    ];
    options[f.index(slot, options.len())].clone()
}

/// The FAQ's opening question.
pub(super) fn question(f: &Facts, slot: u64, name: &str) -> String {
    let p = f.short_peers(slot + 1);
    let options = [
        format!("How does {name} compare with {p}?"),
        format!("How does {name} perform against {p}?"),
        format!("Where does {name} stand among {p}?"),
        format!("Is {name} ahead of {p}?"),
    ];
    options[f.index(slot, options.len())].clone()
}
