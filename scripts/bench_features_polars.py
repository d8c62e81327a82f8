"""The anchor of the features benchmark: shopscribe's features stage (src/features/) written in
Polars, run on the data `bench_features --export DIR` generated, and checked against the results
shopscribe exported beside it. Started by scripts/bench_features_polars.sh.

    python scripts/bench_features_polars.py DIR [RUNS]

The same features as src/features/mod.rs, per metric:
- a value is kept when present, finite and inside the metric's valid range;
- an entity is compared with its group when it has one with at least `min_group_size` entities,
  otherwise with the whole population;
- percentile rank = (values below + half the ties) * 100 / valid values in the peer set
  (scipy's `percentileofscore(kind="mean")`), which is (average rank - 0.5) * 100 / n;
- tier from the rank (>= 90, >= 50, > 10, else bottom; none when absent), stored as 0-4;
- bin = the number of edges <= value (automatic log-scale 1-5-10 edges over the positive values,
  where zero and negatives have no bin; or the configured edges);
- per group and for the population: n, p10, p50, p90 by linear interpolation.

Timed: everything from the loaded frame to the materialised results (per-entity columns, group
and population statistics), as `compute` is timed in bench_features. Loading the CSV is not.
"""

import json
import math
import os
import statistics
import sys
import time

import polars as pl

TIER_NONE, BOTTOM_10, BELOW_MEDIAN, ABOVE_MEDIAN, TOP_10 = range(5)


def round_edge(e):
    # src/features/bins.rs round_edge: 12 significant digits.
    digits = 12 - int(math.ceil(math.log10(abs(e))))
    f = 10.0**digits
    return round(e * f) / f


def auto_edges(lo, hi, scale):
    """src/features/bins.rs Bins::auto, from the smallest and largest positive value."""
    lo, hi = lo * scale, hi * scale
    edges = []
    decade = 10.0 ** math.floor(math.log10(lo))
    while len(edges) < 40:
        for step in (1.0, 5.0):
            e = decade * step
            if lo < e <= hi:
                edges.append(round_edge(e) / scale)
        decade *= 10.0
        if decade > hi:
            break
    if not edges:
        d = 10.0 ** math.floor(math.log10(lo))
        edges.append(round_edge(5.0 * d if lo >= 5.0 * d else d) / scale)
    return edges


def cleaned(m):
    v = pl.col(m["name"])
    ok = v.is_not_null() & v.is_finite()
    if m["valid_min"] is not None:
        ok = ok & (v >= m["valid_min"])
    if m["valid_max"] is not None:
        ok = ok & (v <= m["valid_max"])
    return pl.when(ok).then(v)


def compute(df, spec):
    metrics = spec["metrics"]
    no_bin = spec["no_bin"]
    # Cleaned values and the peer basis first, materialised once: every feature reads them.
    frame = df.with_columns(
        *(cleaned(m).alias(m["name"]) for m in metrics),
        in_group=pl.col("group").is_not_null()
        & (pl.len().over("group") >= spec["min_group_size"]),
    )

    # Automatic bins need the range of the positive values.
    auto = [m for m in metrics if m["bins"] == "auto"]
    ranges = frame.select(
        e
        for m in auto
        for e in (
            pl.col(m["name"]).filter(pl.col(m["name"]) > 0).min().alias(f"lo_{m['name']}"),
            pl.col(m["name"]).filter(pl.col(m["name"]) > 0).max().alias(f"hi_{m['name']}"),
        )
    ).row(0, named=True) if auto else {}

    columns, stats = [], []
    for m in metrics:
        name = m["name"]
        v = pl.col(name)
        r_group = (v.rank("average").over("group") - 0.5) * 100.0 / v.count().over("group")
        r_pop = (v.rank("average") - 0.5) * 100.0 / v.count()
        rank = pl.when(pl.col("in_group")).then(r_group).otherwise(r_pop).cast(pl.Float32)
        if m["bins"] == "auto":
            lo = ranges[f"lo_{name}"]
            edges = auto_edges(lo, ranges[f"hi_{name}"], m["display_factor"]) if lo else None
            binnable = v > 0
        else:
            edges = m["bins"]
            binnable = v.is_not_null()
        if edges:
            index = pl.lit(pl.Series(edges, dtype=pl.Float64)).search_sorted(v, side="right")
            bin_ = pl.when(binnable).then(index).otherwise(no_bin).cast(pl.UInt16)
        else:
            bin_ = pl.lit(no_bin, dtype=pl.UInt16)
        columns += [v.alias(f"value_{name}"), rank.alias(f"rank_{name}"), bin_.alias(f"bin_{name}")]
        stats += [
            v.count().alias(f"n_{name}"),
            *(v.quantile(q, "linear").alias(f"p{round(q * 100)}_{name}") for q in (0.1, 0.5, 0.9)),
        ]
    lf = frame.lazy()
    per_entity, groups, population = pl.collect_all([
        lf.select(columns),
        lf.filter(pl.col("group").is_not_null()).group_by("group").agg(stats),
        lf.select(stats),
    ])
    # Tiers from the stored (f32) rank, as shopscribe derives them.
    per_entity = per_entity.with_columns(
        tier(pl.col(f"rank_{m['name']}")).alias(f"tier_{m['name']}") for m in metrics
    )
    return per_entity, groups, population


def tier(rank):
    return (
        pl.when(rank >= 90.0).then(TOP_10)
        .when(rank >= 50.0).then(ABOVE_MEDIAN)
        .when(rank > 10.0).then(BELOW_MEDIAN)
        .when(rank.is_not_null()).then(BOTTOM_10)
        .otherwise(TIER_NONE)
        .cast(pl.UInt8)
    )


def check(dir, spec, per_entity, groups, population):
    """The Polars results against the ones shopscribe exported: the same features or a failure."""
    rust = pl.read_csv(os.path.join(dir, "rust_features.csv"))
    rust_stats = pl.read_csv(os.path.join(dir, "rust_stats.csv"), schema_overrides={"group": pl.Utf8})
    problems = []
    for m in spec["metrics"]:
        name = m["name"]
        ours = per_entity[f"rank_{name}"].cast(pl.Float64)
        theirs = rust[f"rank_{name}"].cast(pl.Float64)
        differ = ((ours - theirs).abs() > 1e-3) | (ours.is_null() != theirs.is_null())
        if differ.sum():
            problems.append(f"{name}: {differ.sum()} ranks differ")
        for col in ("tier", "bin"):
            d = (per_entity[f"{col}_{name}"].cast(pl.Int64) != rust[f"{col}_{name}"]).sum()
            if d:
                problems.append(f"{name}: {d} {col}s differ")
        expected = rust_stats.filter(pl.col("metric") == name)
        got = groups.select(
            pl.col("group").cast(pl.Utf8),
            pl.col(f"n_{name}").alias("n"),
            *(pl.col(f"p{q}_{name}").alias(f"p{q}") for q in (10, 50, 90)),
        ).vstack(population.select(
            pl.lit("population").alias("group"),
            pl.col(f"n_{name}").alias("n"),
            *(pl.col(f"p{q}_{name}").alias(f"p{q}") for q in (10, 50, 90)),
        ))
        joined = expected.join(got, on="group", how="inner", suffix="_polars")
        # Groups without a valid value have n = 0 in shopscribe and no row here.
        if joined.height != expected.filter(pl.col("n") > 0).height:
            problems.append(f"{name}: {joined.height} groups matched of {expected.height}")
        if (joined["n"] != joined["n_polars"]).sum():
            problems.append(f"{name}: group sizes differ")
        for q in ("p10", "p50", "p90"):
            rel = ((joined[q] - joined[f"{q}_polars"]).abs() / joined[q].abs().clip(1e-12)).max()
            if rel is not None and rel > 1e-9:
                problems.append(f"{name}: {q} differs (relative {rel:.2e})")
    return problems


def main():
    dir = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    spec = json.load(open(os.path.join(dir, "specs.json")))
    schema = {"group": pl.UInt32} | {m["name"]: pl.Float64 for m in spec["metrics"]}
    df = pl.read_csv(os.path.join(dir, "input.csv"), schema=schema)
    times, cpu_times = [], []
    for _ in range(runs):
        t, cpu = time.perf_counter(), time.process_time()
        result = compute(df, spec)
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - cpu)
    problems = check(dir, spec, *result)
    times.sort()
    print(
        f"polars {pl.__version__}: {df.height} entities x {len(spec['metrics'])} metrics, "
        f"{pl.thread_pool_size()} threads: best {times[0]:.3f} s, "
        f"median {statistics.median(times):.3f} s over {runs} runs "
        f"(CPU time per run: best {min(cpu_times):.2f} s, median {statistics.median(cpu_times):.2f} s)"
    )
    if problems:
        print("polars results differ from shopscribe's:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("polars results equal shopscribe's (ranks within 1e-3, tiers, bins, group stats)")


if __name__ == "__main__":
    main()
