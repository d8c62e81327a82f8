//! The AWS deployment's event path (deploy/aws): an EventBridge "Object Created" event submits
//! `shopscribe deliver --bucket B --key K` as an AWS Batch job. S3 notifications are delivered at
//! least once, sometimes twice or late: the same object announced again (same bucket, key and
//! ETag) must cost nothing. Against a real S3-protocol server (moto) and the mock LLM, counting
//! its calls.

use crate::support;

use serde_json::{Value, json};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::mock_openai::{MockConfig, MockServer};

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server is required: pip install 'moto[server]' (.ci/run installs it)");
    let url = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    while reqwest::get(&url).await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "moto_server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Moto { child, url }
}

/// A valid `product_insights` answer that names no metric (so the fact check has nothing to
/// object to).
fn insights(_: &Value) -> String {
    json!({
        "summary": "Customers describe a reliable product that does what it promises.",
        "sentiment": "positive",
        "strengths": ["Reliable", "Easy to use"],
        "weaknesses": [],
        "themes": ["reliability"],
        "recommendation": "A dependable choice for everyday use."
    })
    .to_string()
}

/// `shopscribe deliver ARGS` as the Batch job runs it: S3 credentials and endpoint from the
/// environment, the LLM at the mock.
fn deliver(moto: &Moto, llm: &MockServer, dir: &std::path::Path, args: &[&str]) -> Output {
    let store = format!("sqlite://{}", dir.join("shopscribe.db").display());
    let mut all = vec!["deliver"];
    all.extend_from_slice(args);
    support::cli::with_mock(dir, &store, &llm.base_url, &all)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", &moto.url)
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_object_created_event_twice_ingests_and_pays_once() {
    let moto = moto().await;
    let http = reqwest::Client::new();
    assert!(
        http.put(format!("{}/raw-deliveries", moto.url))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let (day1, _) = shopscribe::demo::review_deliveries(12, 5);
    let r = http
        .put(format!(
            "{}/raw-deliveries/deliveries/reviews/day 1.jsonl",
            moto.url
        ))
        .body(day1)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let etag = r.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_string();

    let dir = tempfile::tempdir().unwrap();
    shopscribe::demo::write_reviews_project(dir.path(), true).unwrap();
    let toml = dir.path().join("shopscribe.toml");
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace(
            "from = \"data/reviews\"",
            "from = \"s3://raw-deliveries/deliveries/reviews\"",
        )
        .replace("url = \"site\"", "url = \"s3://raw-site/site\"");
    std::fs::write(&toml, text).unwrap();
    assert!(
        http.put(format!("{}/raw-site", moto.url))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let llm = MockServer::start(MockConfig {
        responder: Arc::new(insights),
        ..Default::default()
    })
    .await;

    // The event S3 sends to EventBridge for that PUT (keys are not URL-encoded there).
    let event = json!({
        "version": "0", "id": "2d0a3c1e-5d1b-4b55-8b8e-0c7e1f3a9b21",
        "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
        "time": "2026-12-02T01:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:s3:::raw-deliveries"],
        "detail": {"version": "0", "bucket": {"name": "raw-deliveries"},
                   "object": {"key": "deliveries/reviews/day 1.jsonl", "size": 1, "etag": etag,
                              "sequencer": "0062E99A88DC407460"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012",
                   "reason": "PutObject"}
    })
    .to_string();

    // First delivery of the event: the object is ingested and the job's products are written.
    let first = deliver(&moto, &llm, dir.path(), &["--event", &event]);
    let out = support::cli::text(&first);
    assert!(first.status.success(), "{out}");
    assert!(out.contains("deliveries/reviews/day 1.jsonl: "), "{out}");
    assert!(!out.contains("already ingested"), "{out}");
    let calls = llm.seen().len();
    assert!(calls > 0, "the first delivery called the LLM: {out}");
    let generated_first = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("generated"))
        .map(|n| n.trim().parse::<u64>().unwrap())
        .expect("a run summary");
    assert!(generated_first > 0, "{out}");

    // The same event again (S3 delivered the notification twice): nothing is ingested, the run
    // finds every input unchanged, and the LLM is not called.
    let second = deliver(&moto, &llm, dir.path(), &["--event", &event]);
    let out = support::cli::text(&second);
    assert!(second.status.success(), "{out}");
    assert!(
        out.contains("day 1.jsonl: already ingested with the same content; skipped"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.trim() == "generated         0"),
        "{out}"
    );
    assert_eq!(
        llm.seen().len(),
        calls,
        "the duplicate event called the LLM: {out}"
    );

    // And once more in the form the Batch job definition runs it (Ref::bucket, Ref::key).
    let third = deliver(
        &moto,
        &llm,
        dir.path(),
        &[
            "--bucket",
            "raw-deliveries",
            "--key",
            "deliveries/reviews/day 1.jsonl",
        ],
    );
    let out = support::cli::text(&third);
    assert!(third.status.success(), "{out}");
    assert!(
        out.contains("already ingested with the same content; skipped"),
        "{out}"
    );
    assert_eq!(llm.seen().len(), calls, "{out}");

    let store = format!("sqlite://{}", dir.path().join("shopscribe.db").display());
    assert_eq!(
        support::cli::scalar(&store, "SELECT count(*) FROM ingested_files").await,
        1,
        "one file recorded, once"
    );
    assert_eq!(
        support::cli::scalar(
            &store,
            "SELECT count(*) FROM runs WHERE job = 'product_insights'"
        )
        .await,
        3,
        "each delivery ran the job (the later two with nothing to do)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_outside_every_dataset_and_other_events_start_nothing() {
    let moto = moto().await;
    let llm = MockServer::start(MockConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    shopscribe::demo::write_reviews_project(dir.path(), true).unwrap();
    let toml = dir.path().join("shopscribe.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replace(
        "from = \"data/reviews\"",
        "from = \"s3://raw-deliveries/deliveries/reviews\"",
    );
    std::fs::write(&toml, text).unwrap();
    let o = deliver(
        &moto,
        &llm,
        dir.path(),
        &["s3://raw-deliveries/elsewhere/x.jsonl"],
    );
    let out = support::cli::text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("Ignored"), "{out}");
    let deleted = json!({"source": "aws.s3", "detail-type": "Object Deleted",
        "detail": {"bucket": {"name": "raw-deliveries"}, "object": {"key": "deliveries/reviews/a.jsonl"}}})
    .to_string();
    let o = deliver(&moto, &llm, dir.path(), &["--event", &deleted]);
    let out = support::cli::text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("Nothing to ingest"), "{out}");
    let o = deliver(&moto, &llm, dir.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", support::cli::text(&o));
    assert!(llm.seen().is_empty());
}
