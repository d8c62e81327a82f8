//! The fact check on LLM output, against the mock OpenAI server: an answer that calls a
//! bottom-10 % metric a strength is rejected as invalid, the repair prompt names the metric, its
//! tier and the phrase, and the repaired answer is stored; nothing contradicting a tier is kept.

use crate::support;

use serde_json::Value;
use shopscribe::llm::openai::OpenAiProvider;
use shopscribe::llm::{Provider, openai_config};
use shopscribe::run::{RunOptions, run_job};
use shopscribe::store::Store;
use std::sync::Arc;
use support::mock_openai::{MockConfig, MockServer, domain_summary_responder};

/// The first metric the prompt places in the bottom 10 % ("- revenue: bottom 10 % (range: …)").
fn bottom_metric(user: &str) -> Option<String> {
    user.lines().find_map(|l| {
        let (label, rest) = l.strip_prefix("- ")?.split_once(": ")?;
        rest.starts_with("bottom 10 %").then(|| label.to_string())
    })
}

/// Calls the entity's bottom-10 % metric its greatest strength, unless asked to repair.
fn contradicting_responder(body: &Value) -> String {
    let user = body["messages"][1]["content"].as_str().unwrap_or("");
    let good = domain_summary_responder(body);
    if user.contains("Your previous answer was rejected") {
        return good;
    }
    let Some(label) = bottom_metric(user) else {
        return good;
    };
    let mut v: Value = serde_json::from_str(&good).unwrap();
    let summary = v["summary"].as_str().unwrap().to_string();
    v["summary"] = format!("Its {label} is its greatest strength. {summary}").into();
    v.to_string()
}

#[tokio::test]
async fn an_answer_calling_a_bottom_10_metric_a_strength_is_repaired() {
    let server = MockServer::start(MockConfig {
        responder: Arc::new(contradicting_responder),
        ..Default::default()
    })
    .await;
    let (_dir, mut project, sqlite) = support::domains_project(&server.base_url, 30, 11).await;
    project.llm.max_in_flight = 1;
    let store: Arc<dyn Store> = sqlite.into_store();
    let provider: Arc<dyn Provider> =
        Arc::new(OpenAiProvider::new(openai_config(&project.llm, "test-key".to_string())).unwrap());
    let summary = run_job(
        &project,
        "domain_summaries",
        store.clone(),
        provider,
        &RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.figures.failed, 0, "{summary:?}");

    let seen = server.seen();
    let repairs: Vec<&str> = seen
        .iter()
        .filter_map(|s| s.body["messages"][1]["content"].as_str())
        .filter(|u| u.contains("Your previous answer was rejected"))
        .collect();
    assert!(!repairs.is_empty(), "some domain has a bottom-10 % metric");
    for r in &repairs {
        assert!(r.contains("the fact check: \"strength\" about "), "{r}");
        assert!(r.contains("contradicts its tier (bottom 10 %)"), "{r}");
    }
    let mut invalid_then_ok = 0;
    for key in store
        .entity_states("domain_summaries")
        .await
        .unwrap()
        .keys()
    {
        for (g, _) in store.generations_of("domain_summaries", key).await.unwrap() {
            if g.attempt_log == ["invalid", "ok"] {
                invalid_then_ok += 1;
            }
            let out = g.output.unwrap_or_default();
            assert!(!out.contains("greatest strength"), "{key}: {out}");
        }
    }
    assert_eq!(invalid_then_ok, repairs.len());
}
