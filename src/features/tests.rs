//! Feature math against hand-computed values.

use super::*;

fn spec(name: &str, unit: Unit, bins: BinSpec, min: Option<f64>, max: Option<f64>) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        label: name.into(),
        unit,
        public: false,
        bins,
        valid_min: min,
        valid_max: max,
        bin_suffix: String::new(),
    }
}

/// Entities 0–4 in group A, 5 alone in group B, 6 and 7 without a group.
fn input(metric: Vec<f64>) -> FeatureInput {
    FeatureInput {
        group_ids: vec![0, 0, 0, 0, 0, 1, NO_GROUP, NO_GROUP],
        group_names: vec!["A".into(), "B".into()],
        metrics: vec![metric],
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn group_quantiles_ranks_and_tiers() {
    let f = compute(
        &input(vec![1.0, 2.0, 3.0, 4.0, 100.0, 7.0, 5.0, f64::NAN]),
        &[spec("visits", Unit::Count, BinSpec::Auto, Some(0.0), None)],
        FeatureOptions { min_group_size: 3 },
    );
    let m = &f.metrics[0];
    // Group A = [1, 2, 3, 4, 100]: numpy.quantile(..., [.1, .5, .9]) = [1.4, 3, 61.6].
    let a = m.group_stats[0];
    assert_eq!(a.n, 5);
    assert!(
        close(a.p10, 1.4) && close(a.p50, 3.0) && close(a.p90, 61.6),
        "{a:?}"
    );
    // Ranks (share below + half the ties): 10, 30, 50, 70, 90.
    let ranks: Vec<f32> = m.rank[..5].to_vec();
    assert_eq!(ranks, vec![10.0, 30.0, 50.0, 70.0, 90.0]);
    assert_eq!(
        m.tier[..5].to_vec(),
        vec![
            Tier::Bottom10,
            Tier::BelowMedian,
            Tier::AboveMedian,
            Tier::AboveMedian,
            Tier::Top10
        ]
    );

    // The one-member group B and the ungrouped are compared with the population
    // [1, 2, 3, 4, 5, 7, 100]: 7 ranks (5 + 0.5) / 7, 5 ranks (4 + 0.5) / 7.
    assert_eq!(f.basis[5], PeerBasis::SmallGroup);
    assert_eq!(f.basis[6], PeerBasis::NoGroup);
    assert_eq!(f.basis[0], PeerBasis::Group);
    assert!((m.rank[5] as f64 - 5.5 / 7.0 * 100.0).abs() < 1e-4);
    assert!((m.rank[6] as f64 - 4.5 / 7.0 * 100.0).abs() < 1e-4);
    let p = m.population;
    assert_eq!(p.n, 7);
    assert!(
        close(p.p10, 1.6) && close(p.p50, 4.0) && close(p.p90, 44.2),
        "{p:?}"
    );
    assert_eq!(m.peer_stats(&f, 5), &m.population);
    assert_eq!(m.peer_stats(&f, 1), &m.group_stats[0]);
    // Group B still has its own stats even though nobody is compared with it.
    assert_eq!(m.group_stats[1].n, 1);

    // The missing value has no feature at all.
    assert!(m.values[7].is_nan() && m.rank[7].is_nan());
    assert_eq!(m.tier[7], Tier::None);
    assert_eq!(m.bin[7], NO_BIN);
    assert_eq!(m.invalid, 0);
}

#[test]
fn ties_share_a_rank() {
    let f = compute(
        &input(vec![5.0, 5.0, 5.0, 5.0, 5.0, 1.0, 1.0, 1.0]),
        &[spec("x", Unit::Ratio, BinSpec::Auto, None, None)],
        FeatureOptions { min_group_size: 3 },
    );
    let m = &f.metrics[0];
    assert!(m.rank[..5].iter().all(|&r| r == 50.0));
    assert!(m.tier[..5].iter().all(|&t| t == Tier::AboveMedian));
    // Population [1, 1, 1, 5, 5, 5, 5, 5]: a 1 ranks (0 + 1.5) / 8 = 18.75.
    assert!(close(m.rank[6] as f64, 18.75));
}

#[test]
fn tiers_at_their_edges() {
    assert_eq!(Tier::from_rank(90.0), Tier::Top10);
    assert_eq!(Tier::from_rank(89.99), Tier::AboveMedian);
    assert_eq!(Tier::from_rank(50.0), Tier::AboveMedian);
    assert_eq!(Tier::from_rank(49.99), Tier::BelowMedian);
    assert_eq!(Tier::from_rank(10.01), Tier::BelowMedian);
    assert_eq!(Tier::from_rank(10.0), Tier::Bottom10);
    assert_eq!(Tier::from_rank(0.0), Tier::Bottom10);
    assert_eq!(Tier::from_rank(f64::NAN), Tier::None);
}

#[test]
fn exactly_ten_percent_are_top_and_bottom_in_a_group_of_100() {
    let values: Vec<f64> = (0..100).map(|i| i as f64).collect();
    let input = FeatureInput {
        group_ids: vec![0; 100],
        group_names: vec!["g".into()],
        metrics: vec![values],
    };
    let f = compute(
        &input,
        &[spec("x", Unit::Count, BinSpec::Auto, None, None)],
        FeatureOptions::default(),
    );
    let tiers = &f.metrics[0].tier;
    assert_eq!(tiers.iter().filter(|&&t| t == Tier::Top10).count(), 10);
    assert_eq!(tiers.iter().filter(|&&t| t == Tier::Bottom10).count(), 10);
    assert_eq!(
        tiers.iter().filter(|&&t| t == Tier::AboveMedian).count(),
        40
    );
}

#[test]
fn nan_infinite_out_of_range_zero_and_negative_values() {
    let growth = spec(
        "growth",
        Unit::Percent,
        BinSpec::Edges(vec![-0.1, 0.0, 0.1]),
        None,
        Some(10.0),
    );
    let share = spec("share", Unit::Count, BinSpec::Auto, Some(0.0), Some(1.0));
    let input = FeatureInput {
        group_ids: vec![0; 8],
        group_names: vec!["A".into()],
        metrics: vec![
            vec![-0.5, -0.05, 0.0, 0.05, 0.5, f64::INFINITY, 50.0, f64::NAN],
            vec![0.0, 0.5, -0.2, 1.5, 0.25, f64::NEG_INFINITY, 1.0, 0.75],
        ],
    };
    let f = compute(
        &input,
        &[growth, share],
        FeatureOptions { min_group_size: 1 },
    );
    let g = &f.metrics[0];
    // Infinity and 50 (above max) are invalid; NaN is merely missing.
    assert_eq!(g.invalid, 2);
    assert!(g.values[5].is_nan() && g.values[6].is_nan() && g.values[7].is_nan());
    assert_eq!(g.group_stats[0].n, 5);
    // Negative values are valid here and binned by the configured edges.
    let labels: Vec<Option<&str>> = (0..5)
        .map(|i| g.bins.as_ref().unwrap().label(g.bin[i]))
        .collect();
    assert_eq!(
        labels,
        vec![
            Some("under -10 %"),
            Some("-10 % to 0 %"),
            Some("0–10 %"),
            Some("0–10 %"),
            Some("10 % or more")
        ]
    );
    assert!(g.rank[6].is_nan() && g.tier[6] == Tier::None);

    let s = &f.metrics[1];
    // -0.2 is below min, 1.5 above max, -inf not finite: three invalid values.
    assert_eq!(s.invalid, 3);
    // Zero is a valid value with a rank, but a log-scale (auto) bin cannot hold it.
    assert!(!s.rank[0].is_nan());
    assert_eq!(s.bin[0], NO_BIN);
    assert_ne!(s.bin[1], NO_BIN);
}

#[test]
fn empty_input_is_fine() {
    let input = FeatureInput {
        metrics: vec![vec![]],
        ..Default::default()
    };
    let f = compute(
        &input,
        &[spec("x", Unit::Count, BinSpec::Auto, None, None)],
        FeatureOptions::default(),
    );
    assert!(f.metrics[0].values.is_empty());
    assert_eq!(f.metrics[0].population.n, 0);
    assert!(f.metrics[0].bins.is_none());
}
