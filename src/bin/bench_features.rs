//! Benchmark of the features stage: N entities × 10 metrics in G groups (default 1,000,000 ×
//! 10 in 300), heavy-tailed values with ~5 % ungrouped entities and ~2 % missing values.
//! Prints the best and median of R timed runs and the process's peak resident memory.
//!
//!   cargo run --release --bin bench_features -- [ENTITIES] [GROUPS] [RUNS]

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use shopscribe::features::{
    BinSpec, FeatureInput, FeatureOptions, MetricSpec, NO_GROUP, Unit, compute,
};
use std::time::Instant;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let groups: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(300);
    let runs: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5);

    let mut rng = StdRng::seed_from_u64(7);
    let heavy = LogNormal::new(8.0, 1.5).unwrap();
    let group_ids: Vec<u32> = (0..n)
        .map(|_| {
            if rng.random::<f64>() < 0.05 {
                NO_GROUP
            } else {
                rng.random_range(0..groups as u32)
            }
        })
        .collect();
    let metrics: Vec<Vec<f64>> = (0..10)
        .map(|m| {
            (0..n)
                .map(|_| {
                    if rng.random::<f64>() < 0.02 {
                        f64::NAN
                    } else if m >= 6 {
                        rng.random::<f64>() * 2.0 - 0.5 // growth-like: negatives allowed
                    } else {
                        heavy.sample(&mut rng)
                    }
                })
                .collect()
        })
        .collect();
    let input = FeatureInput {
        group_ids,
        group_names: (0..groups).map(|g| format!("group {g}")).collect(),
        metrics,
    };
    let specs: Vec<MetricSpec> = (0..10)
        .map(|m| MetricSpec {
            name: format!("m{m}"),
            label: format!("metric {m}"),
            unit: if m % 2 == 0 {
                Unit::Count
            } else {
                Unit::Currency("$".into())
            },
            public: false,
            bins: if m >= 6 {
                BinSpec::Edges(vec![-0.25, 0.0, 0.25, 0.5, 1.0])
            } else {
                BinSpec::Auto
            },
            valid_min: None,
            valid_max: None,
            bin_suffix: String::new(),
        })
        .collect();
    let rss_before = peak_rss_mb();

    let mut times = Vec::new();
    let mut check = 0.0;
    for _ in 0..runs {
        let t = Instant::now();
        let f = compute(&input, &specs, FeatureOptions::default());
        times.push(t.elapsed().as_secs_f64());
        check += f.metrics[0].rank[0] as f64;
        drop(f);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "features: {n} entities x 10 metrics in {groups} groups, {} threads: best {:.3} s, median {:.3} s over {runs} runs",
        rayon::current_num_threads(),
        times[0],
        times[times.len() / 2]
    );
    println!(
        "peak RSS: {:.0} MB (input alone: {:.0} MB) [checksum {check:.1}]",
        peak_rss_mb(),
        rss_before
    );
}
