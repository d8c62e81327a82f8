//! Product insights follow each product's own facts.

use super::super::write;
use crate::validate::fact_check::{FactCheckConfig, contradictions};
use crate::validate::leaked_numbers;
use serde_json::{Value, json};

const SCHEMA: &str = include_str!("../../../../examples/reviews/schemas/product_insights.json");

fn product(rating: &str, tiers: [&str; 6], bins: [&str; 4]) -> Value {
    let m = |name: &str, label: &str, tier: &str| json!({"name": name, "label": label, "public": false, "tier": tier});
    let mut metrics = vec![
        m("review_count", "number of reviews", tiers[0]),
        m("avg_rating", "average rating", tiers[1]),
        m("five_star_share", "share of five-star reviews", tiers[2]),
        m(
            "low_star_share",
            "share of one- and two-star reviews",
            tiers[3],
        ),
        m("helpful_ratio", "share of helpful votes", tiers[4]),
        m(
            "rating_trend",
            "rating trend over the last 90 days",
            tiers[5],
        ),
    ];
    metrics[0]["public"] = json!(true);
    metrics[0]["value"] = json!("29");
    metrics[1]["public"] = json!(true);
    metrics[1]["value"] = json!(rating);
    metrics[3]["lower_is_better"] = json!(true);
    for (i, b) in bins.iter().enumerate() {
        metrics[i + 2]["bin"] = json!(b);
    }
    json!({"entity_label": "product", "group_label": "category",
        "entity": {"key": "B1", "name": "B1", "group": null, "attributes": {}},
        "peer": {"basis": "no_group", "name": "all products", "size": 60},
        "metrics": metrics, "missing": []})
}

fn check(ctx: &Value) -> Value {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let out = write(ctx, &schema, "B1");
    let v = jsonschema::validator_for(&schema).unwrap();
    assert!(v.is_valid(&out), "{out:#}");
    let texts: Vec<String> = ["summary", "recommendation"]
        .iter()
        .map(|k| out[*k].as_str().unwrap().to_string())
        .chain(["strengths", "weaknesses", "themes"].iter().flat_map(|k| {
            out[*k]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
        }))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert!(
        contradictions(&FactCheckConfig::default(), &refs, ctx).is_empty(),
        "{out:#}"
    );
    assert!(
        leaked_numbers(&texts.join("\n"), &format!("{ctx} 2 5 1 6")).is_empty(),
        "{out:#}"
    );
    out
}

#[test]
fn a_middling_rating_with_few_five_star_reviews_is_not_praised() {
    // 3.48 stars, above the median of a weak field, fewer than 40 % five-star reviews.
    let ctx = product(
        "3.48",
        [
            "above_median",
            "above_median",
            "above_median",
            "below_median",
            "above_median",
            "below_median",
        ],
        ["20–40 %", "10–20 %", "50–75 %", "-1–-0.25"],
    );
    let out = check(&ctx);
    assert_eq!(out["sentiment"], "mixed");
    let all = out.to_string().to_lowercase();
    assert!(
        !all.contains("safe choice") && !all.contains("well-supported"),
        "{out:#}"
    );
    assert!(
        !all.contains("satisfied buyers") && !all.contains("enthusias"),
        "{out:#}"
    );
    assert!(
        all.contains("ratings have slipped"),
        "the falling trend is told: {out:#}"
    );
}

#[test]
fn themes_and_lists_follow_the_facts() {
    let good = check(&product(
        "4.6",
        [
            "top_10",
            "top_10",
            "top_10",
            "bottom_10",
            "above_median",
            "above_median",
        ],
        ["60–80 %", "under 10 %", "50–75 %", "0.25–1"],
    ));
    let bad = check(&product(
        "2.2",
        [
            "below_median",
            "bottom_10",
            "bottom_10",
            "top_10",
            "below_median",
            "bottom_10",
        ],
        ["under 20 %", "40 % or more", "under 25 %", "under -1"],
    ));
    assert_eq!(good["sentiment"], "positive");
    assert_eq!(bad["sentiment"], "negative");
    assert_ne!(good["themes"], bad["themes"]);
    assert_ne!(good["strengths"], bad["strengths"]);
    let themes = good["themes"].to_string();
    assert!(
        themes.contains("few complaints") && themes.contains("rising ratings"),
        "{themes}"
    );
    assert!(
        themes.contains("top-rated") && themes.contains("five-star enthusiasm"),
        "{themes}"
    );
    let themes = bad["themes"].to_string();
    assert!(
        themes.contains("frequent complaints") && themes.contains("falling ratings"),
        "{themes}"
    );
    assert!(good["weaknesses"].as_array().unwrap().is_empty());
    assert_eq!(
        bad["strengths"].as_array().unwrap().len(),
        2,
        "fillers state the evidence: {bad:#}"
    );
}

#[test]
fn bin_bounds_read_negative_and_open_ranges() {
    use super::bounds;
    assert_eq!(bounds("-1–-0.25"), (Some(-1.0), Some(-0.25)));
    assert_eq!(bounds("under -1"), (None, Some(-1.0)));
    assert_eq!(bounds("1 or more"), (Some(1.0), None));
    assert_eq!(bounds("0.25–1"), (Some(0.25), Some(1.0)));
}
