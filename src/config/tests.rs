use super::*;
use std::collections::HashMap;

fn project_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    crate::demo::write_project(dir.path(), true).unwrap();
    dir
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn the_example_project_loads() {
    let dir = project_dir();
    let p = load_with_env(dir.path(), &env_of(&[])).unwrap();
    let job = p.job("domain_summaries").unwrap();
    assert_eq!(job.metrics.len(), 10);
    assert_eq!(p.llm.provider, ProviderKind::Offline);
    assert!(p.llm.fell_back_to_offline);
    assert!(p.store_url.starts_with("sqlite:///"));
    assert!(p.publish.url.ends_with("/site"));
    assert!(
        p.job("nope")
            .unwrap_err()
            .to_string()
            .contains("domain_summaries")
    );
}

#[test]
fn an_override_stands_for_the_files_value() {
    let dir = project_dir();
    let shared = Overrides {
        publish_url: Some("../site".into()),
    };
    let p = load_from(dir.path(), &env_of(&[]), &shared).unwrap();
    let abs = std::path::absolute(dir.path()).unwrap();
    assert_eq!(
        p.publish.url,
        format!("file://{}", abs.join("../site").display()),
        "resolved against the project folder, as the file's value is"
    );
    let env = env_of(&[("SHOPSCRIBE_PUBLISH_URL", "s3://bucket/site")]);
    let p = load_from(dir.path(), &env, &shared).unwrap();
    assert_eq!(
        p.publish.url, "s3://bucket/site",
        "the environment still wins"
    );
    let bad = Overrides {
        publish_url: Some("ftp://x/site".into()),
    };
    let e = load_from(dir.path(), &env_of(&[]), &bad).unwrap_err();
    assert!(e.to_string().contains("publish.url"), "{e}");
}

#[test]
fn environment_overrides_win() {
    let dir = project_dir();
    let env = env_of(&[
        ("SHOPSCRIBE_STORE_URL", "sqlite:///tmp/elsewhere.db"),
        ("SHOPSCRIBE_PUBLISH_URL", "s3://bucket/site"),
        ("SHOPSCRIBE_LLM_MODEL", "gpt-4.1-mini"),
        ("OPENAI_API_KEY", "sk-test"),
    ]);
    let p = load_with_env(dir.path(), &env).unwrap();
    assert_eq!(p.store_url, "sqlite:///tmp/elsewhere.db");
    assert_eq!(p.publish.url, "s3://bucket/site");
    assert_eq!(p.llm.model, "gpt-4.1-mini");
    assert_eq!(
        p.llm.provider,
        ProviderKind::OpenAi,
        "auto picks openai when the key is set"
    );
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let dir = project_dir();
    let path = dir.path().join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("provider = \"auto\"", "provider = \"gpt\"")
        .replace(
            "unit = \"currency\"\nmin = 0\n",
            "unit = \"dollars\"\nmin = 0\n",
        )
        .replace("bins = [25, 50, 75, 100, 150, 250, 500]", "bins = [50, 25]")
        .replace(
            "schema = \"schemas/domain_summary.json\"",
            "schema = \"schemas/missing.json\"",
        );
    std::fs::write(&path, text).unwrap();
    let err = load_with_env(dir.path(), &env_of(&[])).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("shopscribe.toml has 4 problems"), "{msg}");
    assert!(
        msg.contains("llm.provider: unknown provider `gpt`"),
        "{msg}"
    );
    assert!(
        msg.contains("jobs.domain_summaries.metrics[2].unit: unknown unit `dollars`"),
        "{msg}"
    );
    assert!(
        msg.contains("jobs.domain_summaries.metrics[4].bins"),
        "{msg}"
    );
    assert!(
        msg.contains("jobs.domain_summaries.schema: cannot read"),
        "{msg}"
    );
}

#[test]
fn every_unknown_key_is_listed_at_once_with_its_line() {
    let dir = project_dir();
    let path = dir.path().join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[store]\n", "[store]\nurll = \"x\"\n")
        .replace("[llm]\n", "[llm]\nmodle = \"x\"\n")
        .replace(
            "banned_phrases = [",
            "word_count2 = { summary = [1, 2] }\nbanned_phrases = [",
        )
        .replace("min = 0\nmax = 1\n", "min = 0\nmax = 1\nlabl = \"x\"\n");
    std::fs::write(&path, text).unwrap();
    let err = load_with_env(dir.path(), &env_of(&[])).unwrap_err();
    let msg = err.to_string();
    // `labl` went into the three metrics with `min = 0`, `max = 1`: six unknown keys.
    assert_eq!(err.problems.len(), 6, "{msg}");
    assert!(
        err.problems[0].starts_with(
            "store.urll: unknown field `urll`, expected `url` or `spool_dir` (line 9)"
        ),
        "{msg}"
    );
    assert!(
        err.problems[1].starts_with("llm.modle: unknown field `modle`"),
        "{msg}"
    );
    assert!(
        err.problems[2].starts_with("jobs.domain_summaries.validate.word_count2: unknown field"),
        "{msg}"
    );
    assert!(
        err.problems[3].starts_with("jobs.domain_summaries.metrics[3].labl: unknown field"),
        "{msg}"
    );
}

#[test]
fn unknown_keys_and_validation_problems_are_reported_together() {
    let dir = project_dir();
    let path = dir.path().join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[store]\n", "[store]\nurll = \"x\"\n")
        .replace("provider = \"auto\"", "provider = \"gpt\"");
    std::fs::write(&path, text).unwrap();
    let msg = load_with_env(dir.path(), &env_of(&[]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("has 2 problems"), "{msg}");
    assert!(
        msg.contains("store.urll: unknown field") && msg.contains("llm.provider: unknown provider"),
        "{msg}"
    );
}

#[test]
fn a_wrong_type_is_reported_with_the_unknown_keys_found_before_it() {
    let dir = project_dir();
    let path = dir.path().join(CONFIG_FILE);
    // Tables are read in name order: `jobs` before `llm`.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("min_group_size = 5\n", "min_group_size = 5\nurll = \"x\"\n")
        .replace("max_in_flight = 16", "max_in_flight = \"many\"");
    std::fs::write(&path, text).unwrap();
    let err = load_with_env(dir.path(), &env_of(&[])).unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert!(err.problems[0].contains("urll"), "{err}");
    assert!(err.problems[1].contains("max_in_flight"), "{err}");
}

#[test]
fn money_has_one_format() {
    assert_eq!(format_usd(1.2464430000000006), "$1.2464");
    assert_eq!(format_usd(0.0), "$0.0000");
    assert_eq!(format_usd(-0.0), "$0.0000");
}

#[test]
fn a_missing_project_says_how_to_create_one() {
    let dir = tempfile::tempdir().unwrap();
    let msg = load_with_env(dir.path(), &env_of(&[]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("shopscribe init"), "{msg}");
}

#[test]
fn dataset_shape_declarations_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    crate::demo::write_reviews_project(dir.path(), true).unwrap();
    let p = load_with_env(dir.path(), &env_of(&[])).unwrap();
    let ds = p.dataset("reviews").unwrap();
    assert_eq!(ds.required, ["asin", "reviewerID", "overall"]);
    assert_eq!(ds.array_lengths.get("helpful"), Some(&2));
    assert_eq!(ds.types.get("asin"), Some(&FieldType::String));
    assert!(!ds.duplicate_keys_allowed, "rejected by default");
    let toml = dir.path().join("shopscribe.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let bad = text
        .replace(
            "array_lengths = { helpful = 2 }",
            "array_lengths = { helpful = 2, overall = 1 }\nduplicate_keys = \"first\"",
        )
        .replace(
            "required = [\"asin\", \"reviewerID\", \"overall\"]",
            "required = [\"asin\", \"asin\"]",
        );
    std::fs::write(&toml, bad).unwrap();
    let e = load_with_env(dir.path(), &env_of(&[]))
        .unwrap_err()
        .to_string();
    for want in [
        "datasets.reviews.required: `asin` is named twice",
        "datasets.reviews.array_lengths.overall: the field is typed float",
        "datasets.reviews.duplicate_keys: unknown value `first`",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
}

#[test]
fn data_checks_and_the_fact_check_are_read_and_validated() {
    use crate::checks::OnFail;
    let dir = project_dir();
    let p = load_with_env(dir.path(), &env_of(&[])).unwrap();
    let job = p.job("domain_summaries").unwrap();
    let names: Vec<&str> = job.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "orders_above_visits",
            "zero_visit_months_with_orders",
            "negative_values",
            "inflated_base",
            "shares_out_of_range"
        ]
    );
    // The example's SQL drops absurd months itself: its checks only flag the domains.
    assert!(job.checks.iter().all(|c| c.on_fail == OnFail::Warn));
    assert!(job.checks[0].sql.contains("d.orders > d.visits"));
    assert!(job.validate.fact_check.enabled);
    assert!(
        job.validate
            .fact_check
            .top_10
            .iter()
            .any(|p| p == "top 10 %")
    );

    let path = dir.path().join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).unwrap()
        + r#"
[[jobs.domain_summaries.checks]]
name = "inline"
sql = "SELECT domain FROM domain_monthly WHERE visits < 0"
on_fail = "explode"

[[jobs.domain_summaries.checks]]
name = "inline"
sql = "sql/checks/nope.sql"

[[jobs.domain_summaries.checks]]
name = "defaulted"
sql = "SELECT domain FROM domain_monthly WHERE orders < 0"
"#;
    let text = text.replace(
        "[jobs.domain_summaries.validate.fact_check]\nenabled = true\n",
        "[jobs.domain_summaries.validate.fact_check]\nenabled = false\nstrong = [\"\"]\n",
    );
    std::fs::write(&path, text).unwrap();
    let err = load_with_env(dir.path(), &env_of(&[])).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.problems.len(), 4, "{msg}");
    assert!(
        msg.contains("jobs.domain_summaries.checks[5].on_fail: unknown value `explode`; use \"exclude_entity\", \"warn\" or \"fail_run\""),
        "{msg}"
    );
    assert!(
        msg.contains("jobs.domain_summaries.checks[6].name: `inline` is declared twice"),
        "{msg}"
    );
    assert!(
        msg.contains("jobs.domain_summaries.checks[6].sql: cannot read")
            && msg.contains("nope.sql"),
        "{msg}"
    );
    assert!(
        msg.contains("jobs.domain_summaries.validate.fact_check.strong: phrases must not be empty"),
        "{msg}"
    );
}

#[test]
fn the_near_duplicate_gate_keys_have_defaults_and_ranges() {
    let dir = project_dir();
    let p = load_with_env(dir.path(), &env_of(&[])).unwrap();
    assert_eq!(p.publish.max_similarity, 0.9);
    assert_eq!(p.publish.max_variations, 2);
    let path = dir.path().join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let with = |extra: &str| text.replace("[publish]\n", &format!("[publish]\n{extra}\n"));
    std::fs::write(&path, with("max_similarity = 0.8\nmax_variations = 0")).unwrap();
    let p = load_with_env(dir.path(), &env_of(&[])).unwrap();
    assert_eq!(
        (p.publish.max_similarity, p.publish.max_variations),
        (0.8, 0)
    );
    std::fs::write(&path, with("max_similarity = 1.5\nmax_variations = 50")).unwrap();
    let msg = load_with_env(dir.path(), &env_of(&[]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("has 2 problems"), "{msg}");
    assert!(
        msg.contains("publish.max_similarity: 1.5") && msg.contains("publish.max_variations: 50"),
        "{msg}"
    );
}

#[test]
fn page_settings_and_related_links_are_read_and_validated() {
    use page::SchemaType;
    let dir = tempfile::tempdir().unwrap();
    crate::demo::write_reviews_project(dir.path(), true).unwrap();
    let p = load_with_env(dir.path(), &env_of(&[])).unwrap();
    assert_eq!(p.publish.related, page::DEFAULT_RELATED);
    assert_eq!(
        p.dataset("products").unwrap().gold,
        Some(Gold::ProductCatalog)
    );
    let job = p.job("product_insights").unwrap();
    assert_eq!(job.page.schema_type, SchemaType::Product);
    assert_eq!(job.page.brand.as_deref(), Some("brand"));
    let rating = job.page.rating.as_ref().unwrap();
    assert_eq!(job.metrics[rating.value_metric].column, "avg_rating");
    assert_eq!(job.metrics[rating.count_metric].column, "review_count");
    assert_eq!((rating.best, rating.worst), (5.0, 1.0));
    assert_eq!(job.metrics[job.page.related_by].column, "avg_rating");
    // The domains example: plain pages, no rating, related by its first metric.
    let domains = load_with_env(project_dir().path(), &env_of(&[])).unwrap();
    let d = domains.job("domain_summaries").unwrap();
    assert_eq!(d.page, page::PageConfig::default());

    let toml = dir.path().join("shopscribe.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let bad = text
        .replace("[publish]\n", "[publish]\nrelated = 51\n")
        .replace("type = \"Product\"", "type = \"Gadget\"")
        .replace("brand = \"brand\"\n", "brand = \"maker\"\n")
        .replace(
            "rating = { value = \"avg_rating\", count = \"review_count\", best = 5, worst = 1 }",
            "rating = { value = \"five_star_share\", count = \"reviews\", best = 1, worst = 5 }",
        )
        .replace(
            "related_by = \"avg_rating\"",
            "related_by = \"stars\"\nrelated = 60",
        );
    std::fs::write(&toml, bad).unwrap();
    let e = load_with_env(dir.path(), &env_of(&[]))
        .unwrap_err()
        .to_string();
    for want in [
        "publish.related: 51 is more than 50 links",
        "jobs.product_insights.page.type: `Gadget` is not one of Thing, Product",
        "jobs.product_insights.page.brand: `maker` is not one of the job's attributes",
        "jobs.product_insights.page.rating: a rating belongs on `type = \"Product\"` pages only",
        "jobs.product_insights.page.rating.count: `reviews` is not one of the job's metric columns",
        "jobs.product_insights.page.rating.value: metric `five_star_share` is not public",
        "jobs.product_insights.page.rating: best (1) must be above worst (5)",
        "jobs.product_insights.page.related_by: `stars` is not one of the job's metric columns",
        "jobs.product_insights.page.related: 60 is more than 50 links",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
}

/// `provider = "anthropic"` takes Anthropic's key variable, base URL and model unless the project
/// names its own; `SHOPSCRIBE_LLM_BASE_URL` still overrides the base URL.
#[test]
fn the_anthropic_provider_has_anthropic_defaults() {
    let dir = project_dir();
    let path = dir.path().join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("model = \"gpt-4o-mini\"\n", "")
        .replace("api_key_env = \"OPENAI_API_KEY\"\n", "")
        .replace("provider = \"auto\"", "provider = \"anthropic\"");
    std::fs::write(&path, text).unwrap();
    let p = load_with_env(dir.path(), &env_of(&[])).unwrap();
    assert_eq!(p.llm.provider, ProviderKind::Anthropic);
    assert_eq!(p.llm.api_key_env, "ANTHROPIC_API_KEY");
    assert_eq!(p.llm.base_url, "https://api.anthropic.com/v1");
    assert_eq!(p.llm.model, "claude-haiku-4-5");
    let env = env_of(&[("SHOPSCRIBE_LLM_BASE_URL", "http://127.0.0.1:9/v1")]);
    let p = load_with_env(dir.path(), &env).unwrap();
    assert_eq!(p.llm.base_url, "http://127.0.0.1:9/v1");
}
