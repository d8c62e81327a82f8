//! Feature derivation: from one row of base metrics per entity to the ~80 columns a prompt can
//! use — the peer group's p10 / median / p90, the entity's percentile rank in its group, a tier
//! and a privacy bin per metric. Pure functions over columnar data, no I/O.
//!
//! Conventions (documented in the README):
//! - quantiles use linear interpolation between order statistics, numpy's default;
//! - percentile ranks are scipy's `percentileofscore(kind="mean")`: share below + half the ties;
//! - tiers come from the rank: ≥ 90 top 10 %, ≥ 50 above median, > 10 below median, else bottom;
//! - a missing, non-finite or out-of-range value makes every feature of that metric absent for
//!   that entity (never NaN downstream) and is excluded from its group's statistics;
//! - an entity without a group, or in a group smaller than `min_group_size`, is compared with the
//!   whole population, and [`PeerBasis`] says why.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

pub mod bins;
pub mod quantile;
mod units;

pub use bins::{Bins, NO_BIN};
pub use units::Unit;

use quantile::{count_f64, from_ordered_key, ordered_key, quantile_sorted};
use rayon::prelude::*;

/// Marks an entity without a group in [`FeatureInput::group_ids`].
pub const NO_GROUP: u32 = u32::MAX;

/// How one metric is turned into features.
#[derive(Debug, Clone)]
pub struct MetricSpec {
    pub name: String,
    /// Human wording used in bins and prompts ("visits", "conversion rate").
    pub label: String,
    pub unit: Unit,
    /// Exact values (and exact peer quantiles) reach the prompt only when true.
    pub public: bool,
    pub bins: BinSpec,
    /// Values outside [min, max] are treated as invalid data, not as extreme performance.
    pub valid_min: Option<f64>,
    pub valid_max: Option<f64>,
    /// Suffix appended to bin labels ("visits" gives "10K–50K visits").
    pub bin_suffix: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BinSpec {
    /// Log-scale 1–5–10 edges over the values seen.
    Auto,
    /// Ascending edges from the config.
    Edges(Vec<f64>),
}

/// Columnar input: one position per entity.
#[derive(Debug, Clone, Default)]
pub struct FeatureInput {
    /// Group index into `group_names`, or [`NO_GROUP`].
    pub group_ids: Vec<u32>,
    pub group_names: Vec<String>,
    /// One column per metric spec, in spec order; NaN means missing.
    pub metrics: Vec<Vec<f64>>,
}

impl FeatureInput {
    pub fn len(&self) -> usize {
        self.group_ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.group_ids.is_empty()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FeatureOptions {
    /// Groups with fewer entities than this are not used as peer groups.
    pub min_group_size: usize,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        FeatureOptions { min_group_size: 5 }
    }
}

/// Whom an entity is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerBasis {
    Group,
    /// The entity has no group: compared with everyone.
    NoGroup,
    /// Its group is smaller than `min_group_size`: compared with everyone.
    SmallGroup,
}

/// Position of an entity in its peer group, from its percentile rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tier {
    None = 0,
    Bottom10,
    BelowMedian,
    AboveMedian,
    Top10,
}

impl Tier {
    pub fn from_rank(rank: f64) -> Tier {
        if rank.is_nan() {
            Tier::None
        } else if rank >= 90.0 {
            Tier::Top10
        } else if rank >= 50.0 {
            Tier::AboveMedian
        } else if rank > 10.0 {
            Tier::BelowMedian
        } else {
            Tier::Bottom10
        }
    }
    /// Stable code used in prompts and templates.
    pub fn code(self) -> Option<&'static str> {
        match self {
            Tier::None => None,
            Tier::Bottom10 => Some("bottom_10"),
            Tier::BelowMedian => Some("below_median"),
            Tier::AboveMedian => Some("above_median"),
            Tier::Top10 => Some("top_10"),
        }
    }
    pub fn label(self) -> Option<&'static str> {
        match self {
            Tier::None => None,
            Tier::Bottom10 => Some("bottom 10 %"),
            Tier::BelowMedian => Some("below median"),
            Tier::AboveMedian => Some("above median"),
            Tier::Top10 => Some("top 10 %"),
        }
    }
}

/// p10 / median / p90 of one metric within one peer set; NaN when `n == 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerStats {
    pub n: u32,
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
}

impl PeerStats {
    fn of_sorted(sorted: &[f64]) -> PeerStats {
        PeerStats {
            n: entity_id(sorted.len()),
            p10: quantile_sorted(sorted, 0.1).unwrap_or(f64::NAN),
            p50: quantile_sorted(sorted, 0.5).unwrap_or(f64::NAN),
            p90: quantile_sorted(sorted, 0.9).unwrap_or(f64::NAN),
        }
    }
}

/// An entity's position (or a count of entities) as the u32 the columns store; [`compute`]
/// refuses inputs with more entities than that.
#[inline]
fn entity_id(i: usize) -> u32 {
    u32::try_from(i).expect("compute checked that entity positions fit in u32")
}

/// A percentile rank (0–100) as stored: f32 keeps ~7 digits, more than any prompt shows.
#[inline]
#[expect(
    clippy::cast_possible_truncation,
    reason = "narrowing to f32 is the storage format; ranks lie in 0–100"
)]
fn stored_rank(r: f64) -> f32 {
    r as f32
}

/// All derived features of one metric, one position per entity.
#[derive(Debug, Clone)]
pub struct MetricFeatures {
    /// Cleaned values: NaN where missing or invalid.
    pub values: Vec<f64>,
    /// Values present but rejected (non-finite or outside the valid range).
    pub invalid: usize,
    /// Per group (index = group id); groups below `min_group_size` still get stats.
    pub group_stats: Vec<PeerStats>,
    /// Over every valid value of the metric.
    pub population: PeerStats,
    /// Percentile rank within the entity's peer set, 0–100; NaN when absent.
    pub rank: Vec<f32>,
    pub tier: Vec<Tier>,
    pub bin: Vec<u16>,
    pub bins: Option<Bins>,
}

impl MetricFeatures {
    /// The stats an entity is compared with.
    pub fn peer_stats(&self, features: &Features, entity: usize) -> &PeerStats {
        match features.basis[entity] {
            PeerBasis::Group => &self.group_stats[features.group_ids[entity] as usize],
            _ => &self.population,
        }
    }
}

/// The result of [`compute`].
#[derive(Debug, Clone)]
pub struct Features {
    pub group_ids: Vec<u32>,
    pub basis: Vec<PeerBasis>,
    /// Entities per group (index = group id).
    pub group_sizes: Vec<u32>,
    pub metrics: Vec<MetricFeatures>,
}

/// Derives every feature of every metric. Metrics are processed in parallel (rayon).
pub fn compute(input: &FeatureInput, specs: &[MetricSpec], opts: FeatureOptions) -> Features {
    assert_eq!(
        input.metrics.len(),
        specs.len(),
        "one column per metric spec"
    );
    let n = input.len();
    assert!(u32::try_from(n).is_ok(), "at most u32::MAX entities");
    let n_groups = input.group_names.len();

    // Group membership as a counting sort: members[offsets[g]..offsets[g+1]] are group g's
    // entities; the ungrouped come last.
    let mut group_sizes = vec![0u32; n_groups];
    for &g in &input.group_ids {
        if g != NO_GROUP {
            group_sizes[g as usize] += 1;
        }
    }
    let mut offsets = Vec::with_capacity(n_groups + 2);
    offsets.push(0usize);
    for &s in &group_sizes {
        offsets.push(offsets.last().unwrap() + s as usize);
    }
    let mut cursor = offsets.clone();
    let ungrouped_start = *offsets.last().unwrap();
    cursor.push(ungrouped_start);
    let mut members = vec![0u32; n];
    for (i, &g) in input.group_ids.iter().enumerate() {
        let slot = if g == NO_GROUP { n_groups } else { g as usize };
        members[cursor[slot]] = entity_id(i);
        cursor[slot] += 1;
    }

    let basis: Vec<PeerBasis> = input
        .group_ids
        .iter()
        .map(|&g| {
            if g == NO_GROUP {
                PeerBasis::NoGroup
            } else if (group_sizes[g as usize] as usize) < opts.min_group_size {
                PeerBasis::SmallGroup
            } else {
                PeerBasis::Group
            }
        })
        .collect();

    let metrics = specs
        .par_iter()
        .zip(input.metrics.par_iter())
        .map(|(spec, column)| {
            metric_features(spec, column, &members, &offsets, ungrouped_start, &basis)
        })
        .collect();

    Features {
        group_ids: input.group_ids.clone(),
        basis,
        group_sizes,
        metrics,
    }
}

fn clean(spec: &MetricSpec, column: &[f64]) -> (Vec<f64>, usize) {
    let mut invalid = 0;
    let values = column
        .iter()
        .map(|&v| {
            if v.is_nan() {
                return f64::NAN;
            }
            let ok = v.is_finite()
                && spec.valid_min.is_none_or(|m| v >= m)
                && spec.valid_max.is_none_or(|m| v <= m);
            if ok {
                v
            } else {
                invalid += 1;
                f64::NAN
            }
        })
        .collect();
    (values, invalid)
}

fn metric_features(
    spec: &MetricSpec,
    column: &[f64],
    members: &[u32],
    offsets: &[usize],
    ungrouped_start: usize,
    basis: &[PeerBasis],
) -> MetricFeatures {
    let n = column.len();
    let n_groups = offsets.len() - 1;
    let (values, invalid) = clean(spec, column);

    let (bins, bin) = binned(spec, &values);

    // Per group (then the ungrouped as one more run): the valid values as (order key, entity)
    // pairs, sorted. Walking a sorted run assigns ranks to ties in one pass, with no search.
    let mut runs: Vec<f64> = Vec::with_capacity(n);
    let mut run_offsets = Vec::with_capacity(n_groups + 2);
    run_offsets.push(0usize);
    let mut rank = vec![f32::NAN; n];
    let mut pairs: Vec<(i64, u32)> = Vec::new();
    // Entities compared with the whole population, ranked after the population is sorted.
    let mut population_queries: Vec<(i64, u32)> = Vec::new();
    for g in 0..=n_groups {
        let (lo, hi) = if g < n_groups {
            (offsets[g], offsets[g + 1])
        } else {
            (ungrouped_start, members.len())
        };
        pairs.clear();
        pairs.extend(members[lo..hi].iter().filter_map(|&m| {
            let v = values[m as usize];
            (!v.is_nan()).then(|| (ordered_key(v), m))
        }));
        pairs.sort_unstable();
        runs.extend(pairs.iter().map(|&(k, _)| from_ordered_key(k)));
        run_offsets.push(runs.len());
        if pairs
            .first()
            .is_some_and(|&(_, m)| basis[m as usize] == PeerBasis::Group)
        {
            assign_ranks(&pairs, &mut rank);
        } else {
            population_queries.extend_from_slice(&pairs);
        }
    }
    let group_stats: Vec<PeerStats> = (0..n_groups)
        .map(|g| PeerStats::of_sorted(&runs[run_offsets[g]..run_offsets[g + 1]]))
        .collect();

    // The population, sorted once; its members' ranks by one merge walk over sorted queries.
    // `runs` is already a sequence of sorted runs (one per group): the stable sort detects and
    // merges them (n log runs) where an unstable sort would sort from scratch (n log n).
    let mut all = runs;
    all.sort_by_key(|&v| ordered_key(v));
    let population = PeerStats::of_sorted(&all);
    rank_in_population(&all, &mut population_queries, &mut rank);
    let tier = rank
        .iter()
        .map(|&r| Tier::from_rank(f64::from(r)))
        .collect();

    MetricFeatures {
        values,
        invalid,
        group_stats,
        population,
        rank,
        tier,
        bin,
        bins,
    }
}

/// The metric's bins (declared edges, or automatic log-scale ones when the values allow) and
/// each entity's bin ([`NO_BIN`] for none).
fn binned(spec: &MetricSpec, values: &[f64]) -> (Option<Bins>, Vec<u16>) {
    let bins = match &spec.bins {
        BinSpec::Auto => Bins::auto(values, &spec.unit, &spec.bin_suffix),
        BinSpec::Edges(e) => Some(Bins::from_edges(e.clone(), &spec.unit, &spec.bin_suffix)),
    };
    let bin: Vec<u16> = match &bins {
        // Auto bins are log-scale: zero and negative values have no bin there.
        Some(b) if spec.bins == BinSpec::Auto => values
            .iter()
            .map(|&v| if v > 0.0 { b.index(v) } else { NO_BIN })
            .collect(),
        Some(b) => values.iter().map(|&v| b.index(v)).collect(),
        None => vec![NO_BIN; values.len()],
    };
    (bins, bin)
}

/// The ranks of the entities compared with the whole population (`queries`: (order key,
/// entity)), by one merge walk of the sorted queries over the sorted population `all`.
fn rank_in_population(all: &[f64], queries: &mut [(i64, u32)], rank: &mut [f32]) {
    queries.sort_unstable();
    let total = count_f64(all.len());
    let mut below = 0usize;
    let mut q = 0;
    while q < queries.len() {
        let key = queries[q].0;
        let v = from_ordered_key(key);
        while below < all.len() && all[below] < v {
            below += 1;
        }
        let mut equal = 0;
        while below + equal < all.len() && all[below + equal] == v {
            equal += 1;
        }
        let r = stored_rank((count_f64(below) + 0.5 * count_f64(equal)) * 100.0 / total);
        while q < queries.len() && queries[q].0 == key {
            rank[queries[q].1 as usize] = r;
            q += 1;
        }
    }
}

/// Ranks of one sorted peer run, ties sharing the mean rank (see `quantile::percentile_rank_sorted`).
fn assign_ranks(sorted: &[(i64, u32)], rank: &mut [f32]) {
    let n = count_f64(sorted.len());
    let mut start = 0;
    while start < sorted.len() {
        let key = sorted[start].0;
        let mut end = start + 1;
        while end < sorted.len() && sorted[end].0 == key {
            end += 1;
        }
        let r = stored_rank((count_f64(start) + 0.5 * count_f64(end - start)) * 100.0 / n);
        for &(_, m) in &sorted[start..end] {
            rank[m as usize] = r;
        }
        start = end;
    }
}

#[cfg(test)]
mod tests;
