//! Benchmark of the features stage: N entities × 10 metrics in G groups (default 1,000,000 ×
//! 10 in 300), heavy-tailed values with ~5 % ungrouped entities and ~2 % missing values.
//! Prints the best and median of R timed runs (wall and CPU time) and the process's peak
//! resident memory.
//!
//!   cargo run --release --features bench --bin bench_features -- [ENTITIES] [GROUPS] [RUNS] [--export DIR]
//!
//! `--export DIR` also writes the generated data and the results, for the Polars anchor
//! (`scripts/bench_features_polars.sh` runs both on the same data):
//! - `input.csv`: `group,m0,…,m9`, one row per entity (empty = no group / missing value);
//! - `specs.json`: each metric's name, bins (`"auto"` or the edges), valid range and the
//!   minimum peer-group size;
//! - `rust_features.csv` (rank, tier code 0–4, bin per entity of every metric) and
//!   `rust_stats.csv` (n, p10, p50, p90 per group and metric; group `population` for everyone):
//!   what the anchor checks its own results against.

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

/// User + system CPU time of the process so far (all threads), from /proc (10 ms ticks): the
/// figure that a busy machine distorts least.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let export = args.iter().position(|a| a == "--export").map(|i| {
        let dir = args.get(i + 1).expect("--export needs a folder").clone();
        args.drain(i..i + 2);
        std::path::PathBuf::from(dir)
    });
    let n: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let groups: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(300);
    let runs: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5);

    let groups_u32 = u32::try_from(groups).expect("fewer than 2^32 groups");
    let mut rng = StdRng::seed_from_u64(7);
    let heavy = LogNormal::new(8.0, 1.5).unwrap();
    let group_ids: Vec<u32> = (0..n)
        .map(|_| {
            if rng.random::<f64>() < 0.05 {
                NO_GROUP
            } else {
                rng.random_range(0..groups_u32)
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
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average before: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let mut times = Vec::new();
    let mut cpu_times = Vec::new();
    let mut check = 0.0;
    for _ in 0..runs {
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let f = compute(&input, &specs, FeatureOptions::default());
        times.push(t.elapsed().as_secs_f64());
        cpu_times.push(cpu_seconds() - cpu);
        check += f.metrics[0].rank[0] as f64;
        drop(f);
    }
    if let Some(dir) = &export {
        let f = compute(&input, &specs, FeatureOptions::default());
        export::write(dir, &input, &specs, &f, FeatureOptions::default())
            .unwrap_or_else(|e| panic!("--export {}: {e}", dir.display()));
        println!("exported input and results to {}", dir.display());
    }
    times.sort_by(f64::total_cmp);
    cpu_times.sort_by(f64::total_cmp);
    println!(
        "features: {n} entities x 10 metrics in {groups} groups, {} threads: best {:.3} s, median {:.3} s over {runs} runs (CPU time per run: best {:.2} s, median {:.2} s)",
        rayon::current_num_threads(),
        times[0],
        times[times.len() / 2],
        cpu_times[0],
        cpu_times[cpu_times.len() / 2]
    );
    println!(
        "peak RSS: {:.0} MB (input alone: {:.0} MB) [checksum {check:.1}]",
        peak_rss_mb(),
        rss_before
    );
}

/// The `--export` files (see the module's documentation).
mod export {
    use shopscribe::features::{BinSpec, FeatureInput, FeatureOptions, Features, MetricSpec};
    use shopscribe::features::{NO_BIN, NO_GROUP};
    use std::fmt::Write as _;
    use std::io::{BufWriter, Write};
    use std::path::Path;

    pub fn write(
        dir: &Path,
        input: &FeatureInput,
        specs: &[MetricSpec],
        features: &Features,
        opts: FeatureOptions,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        write_input(&dir.join("input.csv"), input, specs)?;
        std::fs::write(dir.join("specs.json"), specs_json(specs, opts))?;
        write_features(&dir.join("rust_features.csv"), features, specs)?;
        write_stats(&dir.join("rust_stats.csv"), features, specs)
    }

    /// A float as CSV: Rust's shortest round-trip form, empty for NaN.
    fn cell(out: &mut String, v: f64) {
        if !v.is_nan() {
            write!(out, "{v:?}").unwrap();
        }
    }

    fn write_input(path: &Path, input: &FeatureInput, specs: &[MetricSpec]) -> std::io::Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(path)?);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        writeln!(w, "group,{}", names.join(","))?;
        let mut line = String::new();
        for (i, &g) in input.group_ids.iter().enumerate() {
            line.clear();
            if g != NO_GROUP {
                write!(line, "{g}").unwrap();
            }
            for column in &input.metrics {
                line.push(',');
                cell(&mut line, column[i]);
            }
            line.push('\n');
            w.write_all(line.as_bytes())?;
        }
        w.flush()
    }

    fn specs_json(specs: &[MetricSpec], opts: FeatureOptions) -> String {
        let metrics: Vec<serde_json::Value> = specs
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "bins": match &s.bins {
                        BinSpec::Auto => serde_json::json!("auto"),
                        BinSpec::Edges(e) => serde_json::json!(e),
                    },
                    "display_factor": s.unit.display_factor(),
                    "valid_min": s.valid_min,
                    "valid_max": s.valid_max,
                })
            })
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({
            "min_group_size": opts.min_group_size,
            "no_bin": NO_BIN,
            "metrics": metrics,
        }))
        .unwrap()
    }

    fn write_features(path: &Path, f: &Features, specs: &[MetricSpec]) -> std::io::Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(path)?);
        let header: Vec<String> = specs
            .iter()
            .map(|s| format!("rank_{0},tier_{0},bin_{0}", s.name))
            .collect();
        writeln!(w, "{}", header.join(","))?;
        let mut line = String::new();
        for i in 0..f.group_ids.len() {
            line.clear();
            for (k, m) in f.metrics.iter().enumerate() {
                if k > 0 {
                    line.push(',');
                }
                cell(&mut line, f64::from(m.rank[i]));
                write!(line, ",{},{}", m.tier[i] as u8, m.bin[i]).unwrap();
            }
            line.push('\n');
            w.write_all(line.as_bytes())?;
        }
        w.flush()
    }

    fn write_stats(path: &Path, f: &Features, specs: &[MetricSpec]) -> std::io::Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(path)?);
        writeln!(w, "metric,group,n,p10,p50,p90")?;
        for (spec, m) in specs.iter().zip(&f.metrics) {
            let rows = m
                .group_stats
                .iter()
                .enumerate()
                .map(|(g, s)| (g.to_string(), s))
                .chain(std::iter::once(("population".to_string(), &m.population)));
            for (group, s) in rows {
                let mut line = format!("{},{group},{}", spec.name, s.n);
                for q in [s.p10, s.p50, s.p90] {
                    line.push(',');
                    cell(&mut line, q);
                }
                writeln!(w, "{line}")?;
            }
        }
        w.flush()
    }
}
