//! Related pages: every entity page links the pages of its peer group nearest to it by rank, so
//! the site is a linked graph rather than a flat list. Pure and deterministic.
//!
//! An entity's rank is its position in its group ordered by one metric (`page.related_by`):
//! ascending value, equal values by key, entities without a valid value last (by key). Its
//! related pages are the `n` nearest positions, the lower-ranked one first at equal distance,
//! listed nearest first. An entity without a group is ranked among all of the job's pages (its
//! peers in the features are everybody too); a group of one has no related pages.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// One page as ranked: its group, its value of the ranking metric (NaN: none), its key.
#[derive(Debug, Clone, Copy)]
pub struct Ranked<'a> {
    pub group: Option<&'a str>,
    pub value: f64,
    pub key: &'a str,
}

/// For every page (by index into `pages`), the indexes of up to `n` related pages.
pub fn related(pages: &[Ranked], n: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); pages.len()];
    if n == 0 {
        return out;
    }
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut ungrouped = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        match p.group {
            Some(g) => groups.entry(g).or_default().push(i),
            None => ungrouped.push(i),
        }
    }
    for members in groups.into_values() {
        let order = ranked(pages, members);
        for (pos, &i) in order.iter().enumerate() {
            out[i] = nearest(&order, pos, n);
        }
    }
    if !ungrouped.is_empty() {
        let order = ranked(pages, (0..pages.len()).collect());
        for (pos, &i) in order.iter().enumerate() {
            if pages[i].group.is_none() {
                out[i] = nearest(&order, pos, n);
            }
        }
    }
    out
}

/// `members` in rank order: by value, NaN last, then by key.
fn ranked(pages: &[Ranked], mut members: Vec<usize>) -> Vec<usize> {
    members.sort_by(|&a, &b| {
        let (x, y) = (&pages[a], &pages[b]);
        match (x.value.is_nan(), y.value.is_nan()) {
            (false, true) => Ordering::Less,
            (true, false) => Ordering::Greater,
            (true, true) => Ordering::Equal,
            (false, false) => x.value.total_cmp(&y.value),
        }
        .then_with(|| x.key.cmp(y.key))
    });
    members
}

/// Up to `n` members of `order` nearest to position `pos`, nearest first, the lower one first
/// at equal distance.
fn nearest(order: &[usize], pos: usize, n: usize) -> Vec<usize> {
    let mut picked = Vec::with_capacity(n.min(order.len()));
    let (mut below, mut above) = (pos, pos + 1);
    while picked.len() < n && (below > 0 || above < order.len()) {
        let take_below = below > 0 && (above >= order.len() || pos - (below - 1) <= above - pos);
        if take_below {
            below -= 1;
            picked.push(order[below]);
        } else {
            picked.push(order[above]);
            above += 1;
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page<'a>(key: &'a str, group: Option<&'a str>, value: f64) -> Ranked<'a> {
        Ranked { group, value, key }
    }

    #[test]
    fn neighbours_by_rank_within_the_group_nearest_first() {
        let a = Some("a");
        let pages = [
            page("p1", a, 10.0),
            page("p2", a, 30.0),
            page("p3", a, 20.0),
            page("p4", a, 40.0),
            page("p5", a, 50.0),
            page("q1", Some("b"), 25.0),
        ];
        let r = related(&pages, 2);
        // Ranks in group a: p1 p3 p2 p4 p5.
        assert_eq!(r[1], vec![2, 3], "p2: p3 below, then p4 above");
        assert_eq!(r[0], vec![2, 1], "p1 at the bottom: the next two up");
        assert_eq!(r[4], vec![3, 1], "p5 at the top: the next two down");
        assert!(r[5].is_empty(), "a group of one has no related pages");
        assert!(r.iter().enumerate().all(|(i, v)| !v.contains(&i)));
    }

    #[test]
    fn missing_values_rank_last_and_ties_go_by_key() {
        let g = Some("g");
        let pages = [
            page("c", g, f64::NAN),
            page("b", g, 1.0),
            page("a", g, 1.0),
            page("d", g, 2.0),
        ];
        // Order: a b d c.
        assert_eq!(related(&pages, 1)[0], vec![3], "c's neighbour is d");
        assert_eq!(related(&pages, 3)[2], vec![1, 3, 0]);
        assert_eq!(
            related(&pages, 10)[2].len(),
            3,
            "fewer when the group is smaller"
        );
        assert!(related(&pages, 0).iter().all(Vec::is_empty));
    }

    #[test]
    fn an_entity_without_a_group_is_ranked_among_all_pages() {
        let pages = [
            page("x", None, 5.0),
            page("g1", Some("g"), 4.0),
            page("g2", Some("g"), 9.0),
            page("h1", Some("h"), 6.0),
        ];
        let r = related(&pages, 2);
        assert_eq!(r[0], vec![1, 3], "4 below, 6 above, whatever their groups");
        assert_eq!(r[1], vec![2], "grouped pages stay in their group");
    }
}
