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
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("shop-data")
        .with_endpoint(&moto.url)
        .with_allow_http(true)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1")
        .build()
        .unwrap();
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
