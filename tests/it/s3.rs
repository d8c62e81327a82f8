//! S3 end to end against a real S3-protocol server (moto, started here): ingest deliveries from
//! `s3://`, publish the site to `s3://` with the right content types, and skip unchanged pages.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

impl Moto {
    /// A client for one of the server's buckets, as the tests read it.
    fn bucket(&self, name: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(name)
            .with_endpoint(&self.url)
            .with_allow_http(true)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_region("us-east-1")
            .build()
            .unwrap()
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
        .expect("moto_server is required for the S3 tests: pip install 'moto[server]' (.ci/run installs it)");
    let url = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    loop {
        if reqwest::get(&url).await.is_ok() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "moto_server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Moto { child, url }
}

fn shopscribe(moto: &Moto, dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shopscribe"))
        .args(args)
        .arg("--project")
        .arg(dir)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", &moto.url)
        .env("AWS_ALLOW_HTTP", "true")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn ingest_from_and_publish_to_s3() {
    let moto = moto().await;
    let http = reqwest::Client::new();
    assert!(
        http.put(format!("{}/shop-data", moto.url))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let (day1, day2) = shopscribe::demo::review_deliveries(20, 8);
    for (name, body) in [("day1.jsonl", day1), ("day2.jsonl", day2)] {
        let r = http
            .put(format!("{}/shop-data/deliveries/{name}", moto.url))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let dir = tempfile::tempdir().unwrap();
    shopscribe::demo::write_reviews_project(dir.path(), true).unwrap();
    let toml = dir.path().join("shopscribe.toml");
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace(
            "from = \"data/reviews\"",
            "from = \"s3://shop-data/deliveries\"",
        )
        .replace("url = \"site\"", "url = \"s3://shop-data/site\"");
    std::fs::write(&toml, text).unwrap();

    let (ok, out) = shopscribe(&moto, dir.path(), &["ingest", "reviews"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("s3://shop-data/deliveries/day1.jsonl: ") && out.contains("3 rejected"),
        "{out}"
    );
    assert!(
        out.contains("s3://shop-data/deliveries/day2.jsonl: "),
        "{out}"
    );
    let (ok, out) = shopscribe(&moto, dir.path(), &["ingest", "reviews"]);
    let skipped = out
        .lines()
        .filter(|l| l.starts_with("s3://") && l.contains("already ingested"))
        .count();
    assert!(ok && skipped == 2, "{out}");

    let (ok, out) = shopscribe(&moto, dir.path(), &["run", "product_insights"]);
    assert!(ok, "{out}");
    use object_store::ObjectStoreExt;
    let s3 = moto.bucket("shop-data");
    for (path, ctype) in [
        ("site/product_insights/index.html", "text/html"),
        ("site/product_insights/manifest.json", "application/json"),
        ("site/sitemap.xml", "application/xml"),
    ] {
        let r = s3
            .get(&object_store::path::Path::from(path))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let got = r
            .attributes
            .get(&object_store::Attribute::ContentType)
            .map(|v| v.to_string())
            .unwrap_or_default();
        assert!(got.starts_with(ctype), "{path}: content-type {got}");
    }
    let (ok, out) = shopscribe(&moto, dir.path(), &["run", "product_insights"]);
    assert!(
        ok && out.contains("0 files written"),
        "an unchanged site is not uploaded again: {out}"
    );
}

/// Makes a bucket on moto and puts objects into it.
async fn put_objects(moto: &Moto, bucket: &str, objects: &[(&str, String)]) {
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}/{bucket}", moto.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    for (key, body) in objects {
        let r = http
            .put(format!("{}/{bucket}/{key}", moto.url))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{key}");
    }
}

/// The reviews example reading `s3://BUCKET/incoming` and publishing to `s3://BUCKET/site`.
fn s3_reviews_project(dir: &std::path::Path, bucket: &str) {
    shopscribe::demo::write_reviews_project(dir, true).unwrap();
    let toml = dir.join("shopscribe.toml");
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace(
            "from = \"data/reviews\"",
            &format!("from = \"s3://{bucket}/incoming\""),
        )
        .replace("url = \"site\"", &format!("url = \"s3://{bucket}/site\""));
    std::fs::write(&toml, text).unwrap();
}

#[tokio::test]
async fn an_s3_event_posted_to_the_api_ingests_the_object_and_runs_the_job() {
    let moto = moto().await;
    let (day1, _) = shopscribe::demo::review_deliveries(10, 6);
    put_objects(&moto, "events", &[("incoming/2026/day 1.jsonl", day1)]).await;
    let dir = tempfile::tempdir().unwrap();
    s3_reviews_project(dir.path(), "events");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let token = "ci-writer-token-0123456789";
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_shopscribe"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--project"])
            .arg(dir.path())
            .env("SHOPSCRIBE_API_TOKENS", format!("ci:write:{token}"))
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT", &moto.url)
            .env("AWS_ALLOW_HTTP", "true")
            .env_remove("OPENAI_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let t = Instant::now();
    while http.get(format!("{api}/readyz")).send().await.is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What S3 sends for a PUT (keys form-encoded: the space is a '+').
    let event = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "events"}, "object": {"key": "incoming/2026/day+1.jsonl"}}}]});
    let r = http
        .post(format!("{api}/v1/runs"))
        .bearer_auth(token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["jobs"],
        serde_json::json!(["product_insights"]),
        "{body}"
    );
    assert_eq!(
        body["ingest"][0]["object"],
        "s3://events/incoming/2026/day 1.jsonl"
    );
    // The run appears and succeeds; the site lands in the bucket.
    let t = Instant::now();
    let run = loop {
        let runs = product_runs(&http, &api, token).await;
        if let Some(r) = runs.first()
            && r["status"] != "running"
        {
            break r.clone();
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no run: {runs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["figures"]["entities"], 10, "{run}");
    use object_store::ObjectStoreExt;
    let bucket = moto.bucket("events");
    bucket
        .head(&object_store::path::Path::from(
            "site/product_insights/index.html",
        ))
        .await
        .expect("the site was published to the bucket");
    // An EventBridge event for the same object: already ingested, the run generates nothing.
    let eb = serde_json::json!({"source": "aws.s3", "detail-type": "Object Created",
        "detail": {"bucket": {"name": "events"}, "object": {"key": "incoming/2026/day 1.jsonl"}}});
    let r = http
        .post(format!("{api}/v1/runs"))
        .bearer_auth(token)
        .json(&eb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let t = Instant::now();
    loop {
        let runs = product_runs(&http, &api, token).await;
        if runs.len() == 2 && runs[0]["status"] != "running" {
            assert_eq!(runs[0]["figures"]["generated"], 0, "{runs:?}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{runs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGTERM: a graceful stop.
    sigterm(server.0.id());
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// `GET /v1/runs?job=product_insights`, newest first.
async fn product_runs(http: &reqwest::Client, api: &str, token: &str) -> Vec<serde_json::Value> {
    let body: serde_json::Value = http
        .get(format!("{api}/v1/runs?job=product_insights"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["runs"].as_array().unwrap().clone()
}

/// A child process killed if the test fails before stopping it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn watch_polls_an_s3_prefix_and_reacts_to_a_new_object_once() {
    let moto = moto().await;
    let (day1, day2) = shopscribe::demo::review_deliveries(8, 9);
    put_objects(&moto, "watched", &[("incoming/day1.jsonl", day1)]).await;
    let dir = tempfile::tempdir().unwrap();
    s3_reviews_project(dir.path(), "watched");
    let (ok, out) = shopscribe(&moto, dir.path(), &["watch", "--once"]);
    assert!(
        ok && out.contains("ingested: reviews") && out.contains("product_insights #"),
        "{out}"
    );
    let (ok, out) = shopscribe(&moto, dir.path(), &["watch", "--once"]);
    assert!(
        ok && out.contains("ingested: nothing") && out.contains("runs: ;"),
        "{out}"
    );
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}/watched/incoming/day2.jsonl", moto.url))
        .body(day2)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (ok, out) = shopscribe(&moto, dir.path(), &["watch", "--once"]);
    assert!(
        ok && out.contains("ingested: reviews") && out.contains("product_insights #"),
        "{out}"
    );
    let (ok, out) = shopscribe(&moto, dir.path(), &["watch", "--once"]);
    assert!(ok && out.contains("runs: ;"), "{out}");
}
