//! What a finished run prints (run, demo, deliver, workers) and the exit code it means.

use crate::config::format_usd;
use crate::run::RunSummary;
use crate::store::RunStatus;
use std::process::ExitCode;

#[expect(
    clippy::cast_precision_loss,
    reason = "a run's milliseconds are far below 2^52"
)]
pub fn print_summary(s: &RunSummary) {
    let f = &s.figures;
    println!(
        "Run {} of `{}`: {} in {:.2} s ({} / {})",
        s.run_id,
        s.job,
        s.status.as_str(),
        f.duration_ms as f64 / 1000.0,
        s.provider,
        s.model
    );
    println!("  entities   {:>8}", f.entities);
    println!("  generated  {:>8}", f.generated);
    println!("  skipped    {:>8}  (inputs unchanged)", f.skipped);
    println!("  failed     {:>8}", f.failed);
    print_checks(&s.checks);
    if f.pending > 0 {
        println!("  pending    {:>8}  (left for the next run)", f.pending);
    }
    println!("  tokens     {:>8} in, {} out", f.tokens_in, f.tokens_out);
    println!("  cost       {:>8}", format_usd(f.cost_usd));
    println!(
        "  site       {} files written, {} unchanged, {} removed",
        s.publish.files_written, s.publish.files_unchanged, s.publish.files_removed
    );
    if let Some(g) = &s.similarity {
        print_gate(g);
    }
    if let Some(c) = &s.publish.check {
        println!("  check      {}", c.summary());
    }
    if s.publish.pages_removed > 0 {
        let keys = &s.publish.removed_keys;
        let shown: Vec<&str> = keys.iter().take(10).map(String::as_str).collect();
        println!(
            "  removed    {:>8}  pages of entities no longer in the source: {}{}",
            s.publish.pages_removed,
            shown.join(", "),
            if keys.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    if let Some(e) = &s.error {
        println!("  error      {e}");
    }
}

/// One line per data check: how many entities it excluded, flagged or failed, with examples.
pub fn print_checks(checks: &crate::checks::CheckReport) {
    if checks.is_empty() {
        return;
    }
    println!(
        "  checks     {:>8}  run, {} failing, {} entit{} excluded",
        checks.results.len(),
        checks.failed().count(),
        checks.excluded,
        if checks.excluded == 1 { "y" } else { "ies" }
    );
    for c in &checks.results {
        println!("    {c}");
    }
}

/// The near-duplicate gate's lines of a run summary.
fn print_gate(g: &crate::run::gate::GateReport) {
    let f = &g.figures;
    println!(
        "  similarity {:>8}  pages of this run compared; nearest neighbour p99 {:.2}, max {:.2}, mean {:.2}; pairwise mean {:.2}",
        g.checked, f.nearest_p99, f.nearest_max, f.nearest_mean, f.mean
    );
    if g.regenerated > 0 {
        println!(
            "  varied     {:>8}  pages regenerated over max_similarity {:.2}: {} calls, {}",
            g.regenerated,
            g.max_similarity,
            g.calls,
            format_usd(g.cost_usd)
        );
    }
    if !g.noindex.is_empty() {
        println!(
            "  noindex    {:>8}  near-duplicates published noindex, out of the sitemap:",
            g.noindex.len()
        );
        for (key, m) in g.noindex.iter().take(10) {
            println!("    {key}: {}", m.reason);
        }
    }
}

/// 0 when the run succeeded, 1 for every other outcome.
pub fn exit_for(s: &RunSummary) -> ExitCode {
    match s.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}
