//! A run report: a self-contained HTML page (inline SVG, no scripts) and its JSON — throughput
//! over time, a histogram of the writer's latency per entity, attempts and error classes, tokens
//! and cost, and the failed entities with their reasons: what a user looks at after a long job.

use crate::store::{GenerationStatus, NewGeneration, RunRecord, Store, StoreError};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Latency buckets (upper bounds, ms) of the histogram. A generation records the latencies of
/// its answered attempts summed (not each attempt's, and not the waits between them), so the
/// histogram counts one value per entity and says so.
const LATENCY_BOUNDS: &[(u64, &str)] = &[
    (100, "< 0.1 s"),
    (250, "0.1–0.25 s"),
    (500, "0.25–0.5 s"),
    (1000, "0.5–1 s"),
    (2000, "1–2 s"),
    (5000, "2–5 s"),
    (10_000, "5–10 s"),
    (u64::MAX, "≥ 10 s"),
];

fn seconds(t: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp_millis() as f64 / 1000.0)
}

/// The report's data.
pub fn build(run: &RunRecord, generations: &[(NewGeneration, String)]) -> Value {
    let start = seconds(&run.started_at).unwrap_or(0.0);
    let end = generations
        .iter()
        .filter_map(|(_, t)| seconds(t))
        .fold(start, f64::max);
    let span = (end - start).max(1.0);
    let bucket = (span / 60.0).max(1.0).ceil();
    let n_buckets = ((span / bucket).ceil() as usize).max(1);
    let mut throughput = vec![0u64; n_buckets];
    let mut latency = vec![0u64; LATENCY_BOUNDS.len()];
    let mut attempts: BTreeMap<u32, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed = Vec::new();
    for (g, t) in generations {
        if let Some(s) = seconds(t) {
            let i = (((s - start) / bucket) as usize).min(n_buckets - 1);
            throughput[i] += 1;
        }
        latency[LATENCY_BOUNDS
            .iter()
            .position(|(b, _)| g.latency_ms < *b)
            .unwrap_or(LATENCY_BOUNDS.len() - 1)] += 1;
        *attempts.entry(g.attempts).or_default() += 1;
        for o in &g.attempt_log {
            *outcomes.entry(o.clone()).or_default() += 1;
        }
        if g.status != GenerationStatus::Ok {
            failed.push(json!({"key": g.entity_key, "status": g.status.as_str(), "attempts": g.attempts, "error": g.error}));
        }
    }
    json!({
        "run": {
            "id": run.id, "job": run.job, "status": run.status, "provider": run.provider, "model": run.model,
            "started_at": run.started_at, "finished_at": run.finished_at, "error": run.error,
            "entities": run.figures.entities, "generated": run.figures.generated, "skipped": run.figures.skipped,
            "failed": run.figures.failed, "pending": run.figures.pending, "tokens_in": run.figures.tokens_in,
            "tokens_out": run.figures.tokens_out, "cost_usd": micro_usd(run.figures.cost_usd), "duration_ms": run.figures.duration_ms,
        },
        "throughput": {"bucket_seconds": bucket, "counts": throughput},
        "latency_per_entity": LATENCY_BOUNDS.iter().zip(&latency).map(|((_, l), n)| json!({"bucket": l, "count": n})).collect::<Vec<_>>(),
        "attempts": attempts.iter().map(|(a, n)| json!({"attempts": a, "count": n})).collect::<Vec<_>>(),
        "outcomes": outcomes,
        "failed": failed,
    })
}

/// A cost rounded to micro-dollars for the JSON (a sum of many float costs carries noise:
/// 1.2464430000000006).
fn micro_usd(usd: f64) -> f64 {
    (usd * 1e6).round() / 1e6
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Round tick step for a value axis from 0 to `max`: 1, 2 or 5 times a power of ten, giving
/// at most five ticks; counts never get fractional ticks.
fn tick_step(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if max.div_ceil(step * m) <= 4 {
                return step * m;
            }
        }
        step *= 10;
    }
}

/// An SVG bar chart of (label, value) pairs with its axes: value ticks with grid lines on the
/// left, category labels under the bars (every n-th when there are many), and both axis titles.
fn bars(items: &[(String, u64)], width: f64, height: f64, x_title: &str, y_title: &str) -> String {
    const LEFT: f64 = 46.0;
    const TOP: f64 = 8.0;
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let step = tick_step(max);
    let top = (max.div_ceil(step) * step).max(step) as f64;
    let plot = width - LEFT;
    let w = plot / items.len().max(1) as f64;
    let base = TOP + height;
    let mut svg = format!(
        r#"<svg viewBox="0 0 {width} {}" width="100%" role="img" font-size="9">"#,
        base + 34.0
    );
    let mut t = 0u64;
    while t as f64 <= top {
        let y = base - t as f64 / top * height;
        svg.push_str(&format!(
            r##"<line x1="{LEFT}" x2="{width}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e5ec"/><text x="{:.1}" y="{:.1}" text-anchor="end">{t}</text>"##,
            LEFT - 4.0,
            y + 3.0
        ));
        t += step;
    }
    svg.push_str(&format!(
        r##"<text transform="translate(10 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        TOP + height / 2.0,
        esc(y_title)
    ));
    let every = items.len().div_ceil(12).max(1);
    for (i, (label, v)) in items.iter().enumerate() {
        let h = (*v as f64 / top) * height;
        svg.push_str(&format!(
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#2446c7"><title>{}: {v}</title></rect>"##,
            LEFT + i as f64 * w + 1.0,
            base - h,
            (w - 2.0).max(1.0),
            h,
            esc(label)
        ));
        if i % every == 0 {
            svg.push_str(&format!(
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                LEFT + i as f64 * w + w / 2.0,
                base + 12.0,
                esc(label)
            ));
        }
    }
    svg.push_str(&format!(
        r##"<line x1="{LEFT}" x2="{width}" y1="{base:.1}" y2="{base:.1}" stroke="#5a6275"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text></svg>"##,
        LEFT + plot / 2.0,
        base + 28.0,
        esc(x_title)
    ));
    svg
}

/// The HTML page of a report built by [`build`]. Every text is escaped.
pub fn html(r: &Value) -> String {
    let run = &r["run"];
    let get = |k: &str| run[k].to_string().trim_matches('"').to_string();
    let bucket = r["throughput"]["bucket_seconds"].as_f64().unwrap_or(1.0);
    let (tp, lat, att) = chart_series(r, bucket);
    let (outcomes, failed, checks) = table_rows(r);
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Run {id} of {job}</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2330}}
table{{border-collapse:collapse}}td,th{{padding:.2rem .6rem;border-bottom:1px solid #e3e5ec;text-align:left;vertical-align:top}}
.figs td:first-child{{color:#5a6275}}</style></head><body>
<h1>Run {id} of <code>{job}</code>: {status}</h1>
<table class="figs"><tr><td>provider / model</td><td>{provider} / {model}</td></tr>
<tr><td>started / finished</td><td>{started} / {finished}</td></tr>
<tr><td>entities</td><td>{entities}</td></tr><tr><td>generated</td><td>{generated}</td></tr>
<tr><td>skipped (unchanged)</td><td>{skipped}</td></tr><tr><td>failed</td><td>{failedn}</td></tr><tr><td>pending</td><td>{pending}</td></tr>
<tr><td>tokens</td><td>{tin} in / {tout} out</td></tr><tr><td>cost</td><td>{cost}</td></tr><tr><td>duration</td><td>{dur} ms</td></tr>
<tr><td>error</td><td>{error}</td></tr></table>
{checks}
<h2>Throughput (texts per {bucket:.0} s)</h2>{tp}
<h2>Writer latency per entity</h2>
<p>Time spent waiting for the writer's answers, summed over each entity's attempts (failed requests and the waits between retries are not timed).</p>{lat}
<h2>Attempts per entity</h2>{att}
<h2>Attempt outcomes</h2><table><tr><th>outcome</th><th>count</th></tr>{outcomes}</table>
<h2>Failed entities</h2><table><tr><th>key</th><th>status</th><th>attempts</th><th>reason</th></tr>{failed}</table>
</body></html>"#,
        id = esc(&get("id")),
        job = esc(&get("job")),
        status = esc(&get("status")),
        provider = esc(&get("provider")),
        model = esc(&get("model")),
        started = esc(&get("started_at")),
        finished = esc(&get("finished_at")),
        entities = esc(&get("entities")),
        generated = esc(&get("generated")),
        skipped = esc(&get("skipped")),
        failedn = esc(&get("failed")),
        pending = esc(&get("pending")),
        tin = esc(&get("tokens_in")),
        tout = esc(&get("tokens_out")),
        cost = esc(&crate::config::format_usd(
            run["cost_usd"].as_f64().unwrap_or(0.0)
        )),
        dur = esc(&get("duration_ms")),
        error = esc(run["error"].as_str().unwrap_or("none")),
        tp = bars(&tp, 600.0, 120.0, "seconds since the start", "texts"),
        lat = bars(&lat, 600.0, 120.0, "latency", "entities"),
        att = bars(&att, 300.0, 80.0, "attempts", "entities"),
    )
}

/// A chart's bars: (label, count).
type Series = Vec<(String, u64)>;

/// The report's charts as bars: throughput per `bucket` seconds, writer latency per entity,
/// attempts per entity.
fn chart_series(r: &Value, bucket: f64) -> (Series, Series, Series) {
    let tp: Vec<(String, u64)> = r["throughput"]["counts"]
        .as_array()
        .map(|a| {
            a.iter()
                .enumerate()
                .map(|(i, v)| {
                    (
                        format!("{:.0} s", i as f64 * bucket),
                        v.as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let lat: Vec<(String, u64)> = r["latency_per_entity"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    (
                        b["bucket"].as_str().unwrap_or("").to_string(),
                        b["count"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let att: Vec<(String, u64)> = r["attempts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| (b["attempts"].to_string(), b["count"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    (tp, lat, att)
}

/// The rows of the report's tables (escaped): attempt outcomes, failed entities (the first
/// 500) and the data checks' section with the near-duplicate gate's.
fn table_rows(r: &Value) -> (String, String, String) {
    let mut outcomes = String::new();
    if let Some(o) = r["outcomes"].as_object() {
        for (k, v) in o {
            outcomes.push_str(&format!("<tr><td>{}</td><td>{v}</td></tr>", esc(k)));
        }
    }
    let mut failed = String::new();
    for f in r["failed"].as_array().into_iter().flatten().take(500) {
        failed.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(f["key"].as_str().unwrap_or("")),
            esc(f["status"].as_str().unwrap_or("")),
            f["attempts"],
            esc(f["error"].as_str().unwrap_or(""))
        ));
    }
    let mut checks = String::new();
    if let Some(results) = r["checks"]["results"].as_array() {
        checks.push_str(&format!(
            "<h2>Data checks</h2><p>{} entities excluded before features.</p><table><tr><th>check</th><th>on_fail</th><th>entities</th><th>examples</th></tr>",
            r["checks"]["excluded"]
        ));
        for c in results {
            let examples: Vec<&str> = c["examples"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            checks.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(c["name"].as_str().unwrap_or("")),
                esc(c["on_fail"].as_str().unwrap_or("")),
                c["entities"],
                esc(&examples.join(", "))
            ));
        }
        checks.push_str("</table>");
    }
    checks.push_str(&similarity_section(&r["similarity"]));
    (outcomes, failed, checks)
}

/// The near-duplicate gate's section: figures, worst pairs, regenerations and noindex pages.
fn similarity_section(g: &Value) -> String {
    if g.is_null() {
        return String::new();
    }
    let f = &g["figures"];
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut out = format!(
        "<h2>Near-duplicates</h2><p>{} pages of this run compared with the job's {} pages (word 5-shingle Jaccard, names masked). Nearest-neighbour similarity: mean {:.3}, p99 {:.3}, max {:.3}; mean over {} pairs {:.3}. {} pages regenerated over {:.2} ({} calls, {}); {} published noindex.</p>",
        g["checked"],
        f["pages"],
        num(&f["nearest_mean"]),
        num(&f["nearest_p99"]),
        num(&f["nearest_max"]),
        if f["mean_sampled"].as_bool() == Some(true) {
            "sampled"
        } else {
            "all"
        },
        num(&f["mean"]),
        g["regenerated"],
        num(&g["max_similarity"]),
        g["calls"],
        esc(&crate::config::format_usd(num(&g["cost_usd"]))),
        g["noindex"].as_object().map_or(0, |m| m.len()),
    );
    out.push_str("<table><tr><th>similarity</th><th>page</th><th>page</th></tr>");
    for p in f["worst"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "<tr><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
            num(&p["similarity"]),
            esc(p["a"].as_str().unwrap_or("")),
            esc(p["b"].as_str().unwrap_or(""))
        ));
    }
    out.push_str("</table>");
    if let Some(marks) = g["noindex"].as_object().filter(|m| !m.is_empty()) {
        out.push_str("<table><tr><th>noindex page</th><th>reason</th></tr>");
        for (key, m) in marks {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(key),
                esc(m["reason"].as_str().unwrap_or(""))
            ));
        }
        out.push_str("</table>");
    }
    out
}

/// Builds the report of `run_id` (default: the latest run) and returns (json, html).
pub async fn report(
    store: &dyn Store,
    run_id: Option<i64>,
) -> Result<Option<(Value, String)>, StoreError> {
    let run = match run_id {
        Some(id) => store.run(id).await?,
        None => store.runs(None, 1).await?.into_iter().next(),
    };
    let Some(run) = run else { return Ok(None) };
    let generations = store.run_generations(run.id).await?;
    let mut data = build(&run, &generations);
    let checks = crate::checks::recorded(store, run.id).await?;
    if !checks.is_empty() {
        data["checks"] = serde_json::to_value(&checks).expect("check results serialise");
    }
    if let Some(gate) = crate::run::gate::recorded(store, run.id).await {
        data["similarity"] = serde_json::to_value(&gate).expect("the gate's report serialises");
    }
    let page = html(&data);
    Ok(Some((data, page)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunFigures, RunStatus};

    fn generation(
        key: &str,
        status: GenerationStatus,
        latency_ms: u64,
        log: &[&str],
    ) -> NewGeneration {
        NewGeneration {
            run_id: 1,
            job: "j".into(),
            entity_key: key.into(),
            input_hash: "h".into(),
            status,
            prompt_system: String::new(),
            prompt_user: String::new(),
            output: None,
            error: (status != GenerationStatus::Ok)
                .then(|| "the prompt is too long <for> the model".into()),
            provider: "openai".into(),
            model: "m".into(),
            tokens_in: 10,
            tokens_out: 5,
            cost_usd: 0.0,
            latency_ms,
            attempts: log.len() as u32,
            attempt_log: log.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn figures_histograms_and_escaping() {
        let run = RunRecord {
            id: 7,
            job: "j".into(),
            status: RunStatus::Partial,
            provider: "openai".into(),
            model: "m".into(),
            started_at: "2026-11-22T00:00:00.000Z".into(),
            finished_at: Some("2026-11-22T00:02:00.000Z".into()),
            figures: RunFigures {
                entities: 3,
                generated: 2,
                failed: 1,
                ..Default::default()
            },
            error: None,
        };
        let gens = vec![
            (
                generation("a", GenerationStatus::Ok, 80, &["ok"]),
                "2026-11-22T00:00:01.000Z".to_string(),
            ),
            (
                generation("b", GenerationStatus::Ok, 1600, &["transient", "ok"]),
                "2026-11-22T00:01:00.000Z".to_string(),
            ),
            (
                generation(
                    "<script>c</script>",
                    GenerationStatus::Failed,
                    300,
                    &["context_too_long"],
                ),
                "2026-11-22T00:01:59.000Z".to_string(),
            ),
        ];
        let r = build(&run, &gens);
        assert_eq!(
            r["throughput"]["bucket_seconds"], 2.0,
            "two minutes in 60 buckets of 2 s"
        );
        let tp: u64 = r["throughput"]["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(tp, 3);
        let lat: Vec<u64> = r["latency_per_entity"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .collect();
        // One value per entity: 80 ms; 1,600 ms (two attempts together); 300 ms.
        assert_eq!(lat, vec![1, 0, 1, 0, 1, 0, 0, 0]);
        assert_eq!(r["outcomes"]["transient"], 1);
        assert_eq!(r["outcomes"]["ok"], 2);
        assert_eq!(r["failed"].as_array().unwrap().len(), 1);
        let page = html(&r);
        assert!(
            page.contains("&lt;script&gt;c&lt;/script&gt;") && !page.contains("<script>"),
            "escaped"
        );
        assert!(page.contains("too long &lt;for&gt; the model"));
        assert!(page.contains("<svg"));
    }

    #[test]
    fn cost_is_shown_as_money_and_charts_have_axis_values() {
        let run = RunRecord {
            id: 1,
            job: "j".into(),
            status: RunStatus::Succeeded,
            provider: "openai".into(),
            model: "m".into(),
            started_at: "2026-11-22T00:00:00.000Z".into(),
            finished_at: None,
            figures: RunFigures {
                cost_usd: 1.2464430000000006,
                ..Default::default()
            },
            error: None,
        };
        let gens: Vec<_> = (0..37)
            .map(|i| {
                (
                    generation(&format!("k{i}"), GenerationStatus::Ok, 700, &["ok"]),
                    format!("2026-11-22T00:{:02}:00.000Z", i),
                )
            })
            .collect();
        let r = build(&run, &gens);
        assert_eq!(r["run"]["cost_usd"], 1.246443, "rounded to micro-dollars");
        let page = html(&r);
        assert!(page.contains("<td>cost</td><td>$1.2464</td>"), "{page}");
        assert!(!page.contains("1.2464430000000006"));
        // 37 entities in one latency bucket: ticks 0, 10, 20, 30, 40.
        for t in ["0", "10", "20", "30", "40"] {
            assert!(
                page.contains(&format!(r#"text-anchor="end">{t}</text>"#)),
                "tick {t}"
            );
        }
        assert!(page.contains(">latency</text>") && page.contains(">entities</text>"));
        // 37 throughput buckets: every 4th labelled, the first at 0 s.
        assert!(page.contains(">0 s</text>"));
        assert_eq!(tick_step(0), 1);
        assert_eq!(tick_step(3), 1);
        assert_eq!(tick_step(7), 2);
        assert_eq!(tick_step(37), 10);
        assert_eq!(tick_step(120), 50);
    }
}
