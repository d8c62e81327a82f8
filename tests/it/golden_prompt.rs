//! Golden test: one entity's features (its template context) and rendered prompt, from a small
//! hand-made dataset through the example project's SQL, config and templates.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test --test it golden_prompt::`
//! and review the diff. Hand-checked: gamma.co.uk is 3rd of 6 in Garden (rank 41.7, below
//! median); its AOV $70 against Garden [50, 60, …, 100] gives median $75, p10 $55, p90 $95 (numpy
//! linear); solo.com has no category, so it is compared with all 7 and its AOV $75 ranks 50.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test fixtures and expectations computed from small counts"
)]

use shopscribe::demo::{MonthRow, load_rows};
use shopscribe::llm::offline::OfflineWriter;
use std::collections::HashMap;
use std::path::Path;

fn month_rows() -> Vec<MonthRow> {
    let mut rows = Vec::new();
    // Six shops in "Garden" (a peer group), one without a category.
    let shops: [(&str, Option<&str>, f64); 7] = [
        ("alpha.com", Some("Garden"), 1.0),
        ("beta.com", Some("Garden"), 2.0),
        ("gamma.co.uk", Some("Garden"), 3.0),
        ("delta.de", Some("Garden"), 4.0),
        ("epsilon.com", Some("Garden"), 5.0),
        ("zeta.com", Some("Garden"), 6.0),
        ("solo.com", None, 3.5),
    ];
    for (domain, category, s) in shops {
        for k in 0..13 {
            let idx = 2026 * 12 + 9 - (12 - k);
            // Growth: the latest month is (1 + s / 10) times the month a year before.
            let factor = if k == 12 { 1.0 + s / 10.0 } else { 1.0 };
            let visits = (1000.0 * s * factor) as i64;
            let orders = (20.0 * s * s * factor) as i64;
            rows.push(MonthRow {
                domain: domain.into(),
                category: category.map(Into::into),
                country: if domain.ends_with(".de") {
                    "DE"
                } else if domain.ends_with(".uk") {
                    "UK"
                } else {
                    "US"
                }
                .into(),
                year: idx / 12,
                month: idx % 12 + 1,
                visits,
                orders,
                revenue: orders as f64 * (40.0 + 10.0 * s),
                returning_share: Some(0.2 + s / 20.0),
                // The lone shop has no mobile data: the feature must be absent, not NaN.
                mobile_share: (domain != "solo.com").then_some(0.5 + s / 40.0),
            });
        }
    }
    rows
}

fn check_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(actual, expected, "{name} differs from the golden file");
}

#[tokio::test]
async fn features_and_prompt_of_one_entity_match_the_golden_files() {
    let tmp = tempfile::tempdir().unwrap();
    shopscribe::demo::write_project(tmp.path(), true).unwrap();
    let project = shopscribe::config::load_with_env(tmp.path(), &|_| None).unwrap();
    let store = shopscribe::store::sqlite::SqliteStore::open(&project.store_url)
        .await
        .unwrap();
    load_rows(store.pool(), &month_rows()).await.unwrap();
    let job = project.job("domain_summaries").unwrap();
    let entities = shopscribe::run::load_entities(&project, job).await.unwrap();
    assert_eq!(entities.len(), 7);
    let plan =
        shopscribe::plan::make_plan(job, entities, &HashMap::new(), &OfflineWriter::new(), false);
    assert_eq!(plan.new, 7);
    let prompter = shopscribe::prompt::Prompter::new(job).unwrap();

    for key in ["gamma.co.uk", "solo.com"] {
        let w = plan
            .work
            .iter()
            .find(|w| plan.entities.keys[w.index] == key)
            .unwrap();
        let context = serde_json::to_string_pretty(&*w.context).unwrap();
        assert!(!context.contains("NaN") && !context.contains("null,\n      \"label\""));
        let (system, user) = prompter.render(key, &w.context).unwrap();
        assert!(!user.contains("NaN"));
        check_golden(&format!("{key}.context.json"), &(context + "\n"));
        check_golden(
            &format!("{key}.prompt.txt"),
            &format!("{system}\n---\n{user}\n"),
        );
    }
}
