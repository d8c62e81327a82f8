//! Near-duplicate detection over a job's pages: how alike each page's wording is to the others.
//!
//! A page's text is lowercased and split into words; the entity's own name and its group's name
//! each become one mask word, so pages are compared on their wording rather than their names.
//! Similarity is the Jaccard index of two pages' sets of word 5-shingles (five consecutive
//! words, hashed to `u64`). Comparing every pair is quadratic, so larger jobs go through
//! MinHash and LSH: a 125-value one-permutation MinHash signature per page (densified by
//! rotation), cut into 25 bands of 5 values; pages sharing a band are candidates, and every
//! candidate pair is then measured exactly on its shingle sets. A pair of similarity `s` shares
//! a band with probability `1 − (1 − s⁵)²⁵`: 0.99995 at 0.8, 1 − 2·10⁻¹⁰ at 0.9, 0.55 at 0.5,
//! 0.06 at 0.3. Jobs of up to [`ALL_PAIRS_MAX`] pages compare every pair exactly instead.
//!
//! The figures: each page's nearest-neighbour similarity (the highest exact similarity among
//! the pairs compared; 0 when LSH proposed none, i.e. below its detection range), their mean,
//! p99 and max, the worst pairs, and the mean over *all* pairs, exact for small jobs and
//! otherwise estimated from a fixed sample of [`MEAN_SAMPLE`] random pairs.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Words per shingle.
pub const SHINGLE_WORDS: usize = 5;
/// Values per MinHash signature (bands × rows).
pub const SLOTS: usize = BANDS * ROWS;
pub const BANDS: usize = 25;
pub const ROWS: usize = 5;
/// Jobs of at most this many pages compare every pair exactly (≤ 499,500 pairs).
pub const ALL_PAIRS_MAX: usize = 1_000;
/// Pairs sampled for the mean similarity of a larger job.
pub const MEAN_SAMPLE: usize = 20_000;
/// Worst pairs kept in a report.
pub const WORST_PAIRS: usize = 10;
/// Within one LSH bucket of more pages than this (a block of identical boilerplate pages),
/// each page is paired with its next `BUCKET_WINDOW` members only, so one huge bucket cannot
/// make the pass quadratic; every member still gets near neighbours from it.
const BUCKET_WINDOW: usize = 200;
/// The token standing for a masked name (no word hashes to it in practice).
const MASK: u64 = 0x9e37_79b9_7f4a_7c15;

/// One page as compared: its key and its set of shingle hashes (sorted, unique).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub key: String,
    shingles: Vec<u64>,
}

impl Page {
    /// `text` with each phrase of `masks` (the entity's name, its group) replaced by a mask.
    pub fn new(key: impl Into<String>, text: &str, masks: &[&str]) -> Page {
        Page {
            key: key.into(),
            shingles: shingle_set(&tokens(text, masks)),
        }
    }

    pub fn shingles(&self) -> &[u64] {
        &self.shingles
    }
}

/// A fast 64-bit mixer (the splitmix64 finaliser).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a over a word's bytes, mixed.
fn word_hash(word: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in word.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// The lowercased words of `text` (runs of letters and digits), hashed.
fn words(text: &str) -> Vec<u64> {
    let mut out = Vec::with_capacity(text.len() / 5);
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            out.push(word_hash(&word));
            word.clear();
        }
    }
    if !word.is_empty() {
        out.push(word_hash(&word));
    }
    out
}

/// The word hashes of `text`, each occurrence of a phrase of `masks` replaced by [`MASK`]
/// (longer phrases first, so "North Wear Outlet" is masked whole before "North Wear").
pub fn tokens(text: &str, masks: &[&str]) -> Vec<u64> {
    let mut toks = words(text);
    let mut phrases: Vec<Vec<u64>> = masks
        .iter()
        .map(|m| words(m))
        .filter(|p| !p.is_empty())
        .collect();
    phrases.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for phrase in &phrases {
        toks = mask_phrase(&toks, phrase);
    }
    toks
}

fn mask_phrase(toks: &[u64], phrase: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        if toks[i..].starts_with(phrase) {
            out.push(MASK);
            i += phrase.len();
        } else {
            out.push(toks[i]);
            i += 1;
        }
    }
    out
}

/// The sorted, unique hashes of every run of [`SHINGLE_WORDS`] consecutive tokens; a text of
/// fewer words is one shingle of all of them (empty for no words).
pub fn shingle_set(tokens: &[u64]) -> Vec<u64> {
    let combine = |w: &[u64]| {
        w.iter()
            .fold(0x51_7cc1_b727_220a_u64, |h, &t| mix(h.rotate_left(21) ^ t))
    };
    let mut out: Vec<u64> = if tokens.len() < SHINGLE_WORDS {
        if tokens.is_empty() {
            Vec::new()
        } else {
            vec![combine(tokens)]
        }
    } else {
        tokens.windows(SHINGLE_WORDS).map(combine).collect()
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// The Jaccard index of two sorted, unique sets: |a ∩ b| / |a ∪ b| (0 when both are empty).
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 0.0;
    }
    // Branch-free merge: which side advances is unpredictable on hashes, so the three-way
    // `match` mispredicted about every other step; this loop is where a job of up to
    // ALL_PAIRS_MAX pages, compared pair by pair, spends its time.
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        both += usize::from(x == y);
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    both as f64 / (a.len() + b.len() - both) as f64
}

/// One-permutation MinHash: each shingle falls into one of [`SLOTS`] bins by its high bits and
/// keeps the minimum of its low bits there; an empty bin borrows the next non-empty bin's value
/// to its right (circularly), offset by the distance, so near-identical sets densify alike.
fn signature(shingles: &[u64]) -> [u32; SLOTS] {
    let mut sig = [u32::MAX; SLOTS];
    for &s in shingles {
        let h = mix(s ^ 0x2545_f491_4f6c_dd1d);
        let bin = (((h >> 32) * SLOTS as u64) >> 32) as usize;
        let v = h as u32;
        if v < sig[bin] {
            sig[bin] = v;
        }
    }
    let filled: Vec<bool> = sig.iter().map(|&v| v != u32::MAX).collect();
    if !filled.iter().any(|&f| f) {
        return sig;
    }
    for i in 0..SLOTS {
        if filled[i] {
            continue;
        }
        let mut d = 1;
        while !filled[(i + d) % SLOTS] {
            d += 1;
        }
        sig[i] = sig[(i + d) % SLOTS].wrapping_add((d as u32).wrapping_mul(0x9e37_79b9));
    }
    sig
}

/// The hash of band `b` of a signature: pages with equal band hashes are candidates.
fn band_key(sig: &[u32; SLOTS], b: usize) -> u64 {
    sig[b * ROWS..(b + 1) * ROWS]
        .iter()
        .fold(mix(b as u64 + 1), |h, &v| mix(h ^ v as u64))
}

/// Two pages and their exact similarity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub similarity: f64,
}

/// The similarity figures of one set of pages (see the module's doc for their definitions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub pages: usize,
    /// Mean similarity over all pairs (exact, or over a sample: `mean_sampled`).
    pub mean: f64,
    pub mean_sampled: bool,
    /// Of the pages' nearest-neighbour similarities.
    pub nearest_mean: f64,
    pub nearest_p99: f64,
    pub nearest_max: f64,
    /// The most similar pairs, most similar first.
    pub worst: Vec<Pair>,
}

/// Pages with their signatures, compared once by [`Index::compare`].
pub struct Index {
    pages: Vec<Page>,
    signatures: Vec<[u32; SLOTS]>,
}

/// Every pair compared, with each page's nearest neighbour.
pub struct Comparison {
    /// Every compared pair (indices into the index's pages, `a < b`) with its similarity.
    pub pairs: Vec<(u32, u32, f64)>,
    /// Per page: the similarity to its nearest compared neighbour and that neighbour.
    pub nearest: Vec<(f64, Option<u32>)>,
}

impl Index {
    /// Signatures in parallel (rayon).
    pub fn new(pages: Vec<Page>) -> Index {
        let signatures = pages.par_iter().map(|p| signature(&p.shingles)).collect();
        Index { pages, signatures }
    }

    pub fn pages(&self) -> &[Page] {
        &self.pages
    }

    /// The candidate pairs (`a < b`, unique): every pair for small sets, else LSH's.
    pub fn candidates(&self) -> Vec<(u32, u32)> {
        let n = self.pages.len();
        if n <= ALL_PAIRS_MAX {
            return (0..n as u32)
                .flat_map(|a| (a + 1..n as u32).map(move |b| (a, b)))
                .collect();
        }
        let mut pairs: Vec<(u32, u32)> = (0..BANDS)
            .into_par_iter()
            .flat_map_iter(|b| self.band_pairs(b))
            .collect();
        pairs.par_sort_unstable();
        pairs.dedup();
        pairs
    }

    /// The pairs of pages (not empty) sharing band `b`.
    fn band_pairs(&self, b: usize) -> Vec<(u32, u32)> {
        let mut keys: Vec<(u64, u32)> = self
            .signatures
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.pages[*i].shingles.is_empty())
            .map(|(i, s)| (band_key(s, b), i as u32))
            .collect();
        keys.sort_unstable();
        let mut out = Vec::new();
        for run in keys.chunk_by(|x, y| x.0 == y.0).filter(|r| r.len() > 1) {
            for (i, &(_, a)) in run.iter().enumerate() {
                for &(_, c) in run.iter().skip(i + 1).take(BUCKET_WINDOW) {
                    out.push((a.min(c), a.max(c)));
                }
            }
        }
        out
    }

    /// Measures every candidate pair exactly and finds each page's nearest neighbour.
    pub fn compare(&self) -> Comparison {
        let pairs: Vec<(u32, u32, f64)> = self
            .candidates()
            .into_par_iter()
            .map(|(a, b)| {
                let s = jaccard(
                    &self.pages[a as usize].shingles,
                    &self.pages[b as usize].shingles,
                );
                (a, b, s)
            })
            .filter(|p| p.2 > 0.0)
            .collect();
        let mut nearest = vec![(0.0, None); self.pages.len()];
        for &(a, b, s) in &pairs {
            for (me, other) in [(a, b), (b, a)] {
                let slot = &mut nearest[me as usize];
                if s > slot.0 {
                    *slot = (s, Some(other));
                }
            }
        }
        Comparison { pairs, nearest }
    }

    /// The figures of a comparison of this index.
    pub fn figures(&self, cmp: &Comparison) -> Figures {
        let n = self.pages.len();
        let mut near: Vec<f64> = cmp.nearest.iter().map(|x| x.0).collect();
        near.sort_by(f64::total_cmp);
        let (mean, mean_sampled) = self.mean_similarity(cmp);
        let mut worst: Vec<&(u32, u32, f64)> = cmp.pairs.iter().collect();
        let cut = worst.len().min(WORST_PAIRS);
        if cut > 0 {
            worst.select_nth_unstable_by(cut - 1, |x, y| y.2.total_cmp(&x.2));
        }
        worst.truncate(cut);
        worst.sort_by(|x, y| y.2.total_cmp(&x.2).then((x.0, x.1).cmp(&(y.0, y.1))));
        Figures {
            pages: n,
            mean,
            mean_sampled,
            nearest_mean: if n == 0 {
                0.0
            } else {
                near.iter().sum::<f64>() / n as f64
            },
            nearest_p99: quantile(&near, 0.99),
            nearest_max: near.last().copied().unwrap_or(0.0),
            worst: worst
                .into_iter()
                .map(|&(a, b, s)| Pair {
                    a: self.pages[a as usize].key.clone(),
                    b: self.pages[b as usize].key.clone(),
                    similarity: s,
                })
                .collect(),
        }
    }

    /// The mean over all pairs: exact when every pair was compared, else over a fixed sample.
    fn mean_similarity(&self, cmp: &Comparison) -> (f64, bool) {
        let n = self.pages.len();
        if n < 2 {
            return (0.0, false);
        }
        if n <= ALL_PAIRS_MAX {
            let total = (n * (n - 1) / 2) as f64;
            return (cmp.pairs.iter().map(|p| p.2).sum::<f64>() / total, false);
        }
        // A fixed generator: the same pages give the same figure on every check.
        let mut state = 0x853c_49e6_748f_ea9b_u64;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix(state)
        };
        let sample: Vec<(usize, usize)> = (0..MEAN_SAMPLE)
            .map(|_| {
                let a = (next() % n as u64) as usize;
                let b = (a + 1 + (next() % (n as u64 - 1)) as usize) % n;
                (a, b)
            })
            .collect();
        let sum: f64 = sample
            .par_iter()
            .map(|&(a, b)| jaccard(&self.pages[a].shingles, &self.pages[b].shingles))
            .sum();
        (sum / MEAN_SAMPLE as f64, true)
    }
}

/// The `q` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The text of a page's output: every string in it (titles, summary, lists, FAQ), in order.
pub fn output_text(output: &serde_json::Value) -> String {
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push_str(" .\n");
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(output, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn text(rng: &mut StdRng, words: usize) -> Vec<String> {
        (0..words)
            .map(|_| format!("w{}", rng.random_range(0..5_000u32)))
            .collect()
    }

    /// The shingle sets by the definition, without hashing tricks: for checking the fast path.
    fn naive(words: &[String]) -> std::collections::HashSet<String> {
        words.windows(5).map(|w| w.join(" ")).collect()
    }

    #[test]
    fn identical_texts_are_one_and_disjoint_ones_zero() {
        let a = Page::new(
            "a",
            "The quick brown fox jumps over the lazy dog today.",
            &[],
        );
        let b = Page::new(
            "b",
            "the QUICK brown fox, jumps over the lazy dog today",
            &[],
        );
        assert_eq!(jaccard(a.shingles(), b.shingles()), 1.0);
        let c = Page::new(
            "c",
            "Completely different words are used in this one here.",
            &[],
        );
        assert_eq!(jaccard(a.shingles(), c.shingles()), 0.0);
        assert_eq!(jaccard(&[], &[]), 0.0);
        assert_eq!(a.shingles().len(), 6, "ten words, six 5-shingles");
    }

    /// The merge counts what a set intersection counts, for sets of any overlap and length
    /// (one side empty, equal elements at either end).
    #[test]
    fn jaccard_is_the_set_definition() {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..500 {
            let universe = 1 + round % 90;
            let mut pick = |n: usize| {
                let mut v: Vec<u64> = (0..n)
                    .map(|_| rng.random_range(0..universe as u64))
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let (a, b) = (pick(round % 40), pick((round * 7) % 50));
            let sa: std::collections::HashSet<u64> = a.iter().copied().collect();
            let sb: std::collections::HashSet<u64> = b.iter().copied().collect();
            let union = sa.union(&sb).count();
            let want = if union == 0 {
                0.0
            } else {
                sa.intersection(&sb).count() as f64 / union as f64
            };
            assert_eq!(jaccard(&a, &b), want, "{a:?} {b:?}");
        }
    }

    #[test]
    fn names_are_masked_so_only_the_wording_counts() {
        let masks_a = ["North Wear", "Apparel"];
        let masks_b = ["blue-shop.com", "Garden"];
        let a = Page::new(
            "a",
            "North Wear is a clear leader among Apparel shops, and North Wear grows.",
            &masks_a,
        );
        let b = Page::new(
            "b",
            "Blue-Shop.com is a clear leader among Garden shops, and blue-shop.com grows.",
            &masks_b,
        );
        assert_eq!(jaccard(a.shingles(), b.shingles()), 1.0);
        let unmasked_a = Page::new("a", "North Wear is a clear leader among Apparel shops", &[]);
        let unmasked_b = Page::new(
            "b",
            "Blue-Shop.com is a clear leader among Garden shops",
            &[],
        );
        assert!(jaccard(unmasked_a.shingles(), unmasked_b.shingles()) < 0.5);
    }

    #[test]
    fn known_jaccard_is_recovered() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..20 {
            let a = text(&mut rng, 200);
            let mut b = a.clone();
            for _ in 0..rng.random_range(1..30) {
                let i = rng.random_range(0..b.len());
                b[i] = format!("x{}", rng.random_range(0..1_000_000u32));
            }
            let (sa, sb) = (naive(&a), naive(&b));
            let want = sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64;
            let pa = Page::new("a", &a.join(" "), &[]);
            let pb = Page::new("b", &b.join(" "), &[]);
            let got = jaccard(pa.shingles(), pb.shingles());
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
            // The MinHash estimate agrees within its sampling error (σ ≈ √(J(1−J)/125) ≤ 0.045).
            let (ga, gb) = (signature(pa.shingles()), signature(pb.shingles()));
            let est = ga.iter().zip(&gb).filter(|(x, y)| x == y).count() as f64 / SLOTS as f64;
            assert!((est - want).abs() < 0.2, "estimate {est} vs {want}");
        }
    }

    /// 3,000 random pages (all pairs above ALL_PAIRS_MAX, so through LSH), 60 planted copies at
    /// 0.95–1.0 and 30 at 0.8–0.9: every one is found with its exact similarity.
    #[test]
    fn planted_duplicates_are_all_found_by_lsh() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut texts: Vec<Vec<String>> = (0..3_000).map(|_| text(&mut rng, 180)).collect();
        let mut planted = Vec::new();
        for (i, lo) in (0..90).map(|i| (i, if i < 60 { 0.95 } else { 0.8 })) {
            let src = i * 30;
            let dst = src + 1;
            let mut copy = texts[src].clone();
            let base = Page::new("", &texts[src].join(" "), &[]);
            // Change words one at a time while the pair stays at or above its band's floor.
            loop {
                let mut next = copy.clone();
                let k = rng.random_range(0..next.len());
                next[k] = format!("y{}", rng.random_range(0..1_000_000u32));
                let s = jaccard(
                    base.shingles(),
                    Page::new("", &next.join(" "), &[]).shingles(),
                );
                if s < lo || rng.random_range(0..4) == 0 {
                    break;
                }
                copy = next;
            }
            texts[dst] = copy;
            planted.push((src as u32, dst as u32));
        }
        let pages: Vec<Page> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| Page::new(format!("p{i}"), &t.join(" "), &[]))
            .collect();
        let index = Index::new(pages);
        let cmp = index.compare();
        for (a, b) in planted {
            let want = jaccard(
                index.pages()[a as usize].shingles(),
                index.pages()[b as usize].shingles(),
            );
            assert!(want >= 0.8);
            let found = cmp.pairs.iter().find(|p| (p.0, p.1) == (a, b));
            assert_eq!(found.map(|p| p.2), Some(want), "pair {a}–{b} at {want}");
            assert!(cmp.nearest[b as usize].0 >= want);
        }
        let f = index.figures(&cmp);
        assert_eq!(f.pages, 3_000);
        assert!(f.mean_sampled && f.mean < 0.01, "random texts: {}", f.mean);
        assert_eq!(f.worst.len(), WORST_PAIRS);
        assert!(f.worst[0].similarity >= f.worst[9].similarity);
        assert!(f.nearest_max >= 0.95 && f.nearest_p99 >= 0.8);
    }

    #[test]
    fn small_sets_compare_every_pair_exactly() {
        let texts = [
            "one two three four five six seven",
            "one two three four five six eight",
            "nine ten eleven twelve thirteen fourteen",
        ];
        let index = Index::new(
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| Page::new(i.to_string(), t, &[]))
                .collect(),
        );
        let cmp = index.compare();
        let f = index.figures(&cmp);
        // Pages 0 and 1 share 2 of 4 shingles: 0.5; page 2 shares none.
        assert_eq!(cmp.nearest[0], (0.5, Some(1)));
        assert_eq!(cmp.nearest[2], (0.0, None));
        assert!(!f.mean_sampled);
        assert!((f.mean - 0.5 / 3.0).abs() < 1e-12);
        assert_eq!(f.nearest_max, 0.5);
        assert_eq!(
            f.worst,
            vec![Pair {
                a: "0".into(),
                b: "1".into(),
                similarity: 0.5
            }]
        );
        assert_eq!(quantile(&[0.1, 0.2, 0.3], 0.99), 0.3);
    }

    #[test]
    fn output_text_takes_every_string() {
        let v =
            serde_json::json!({"title": "T", "faq": [{"question": "Q", "answer": "A"}], "n": 3});
        assert_eq!(output_text(&v), "T .\nQ .\nA .\n");
    }
}
