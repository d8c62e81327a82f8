//! The HTTP API against the mock LLM: every route with and without auth and scope, malformed,
//! huge and wrong-type bodies, unknown jobs and keys, single flight (200 concurrent cold
//! requests → one LLM call), limits, run requests and their queue, OpenAPI ↔ routes, and a
//! graceful shutdown that finishes the generation in flight.

use crate::support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shopscribe::config::Project;
use shopscribe::llm::openai::OpenAiProvider;
use shopscribe::llm::{Provider, openai_config};
use shopscribe::serve::auth::Auth;
use shopscribe::serve::{AppState, openapi};
use shopscribe::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::mock_openai::{MockConfig, MockServer};

const READ: &str = "reader-token-0123456789";
const WRITE: &str = "writer-token-0123456789";

struct Api {
    url: String,
    http: reqwest::Client,
    state: Arc<AppState>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), shopscribe::serve::ServeError>>>,
}

async fn start(server: &MockServer, domains: usize, tune: impl FnOnce(&mut Project)) -> Api {
    let (dir, project, sqlite) = support::domains_project(&server.base_url, domains, 5).await;
    serve_project(dir, project, sqlite.into_store(), tune).await
}

/// The example project with its store and its entities' source on PostgreSQL `db`.
async fn start_pg(server: &MockServer, db: &support::pg::TestDb, domains: usize) -> Api {
    let (dir, project) = support::example_project(&server.base_url, Some(&db.url));
    let pg = shopscribe::store::postgres::PostgresStore::open(&db.url)
        .await
        .unwrap();
    support::pg::load_pg(pg.pool(), &shopscribe::demo::sample_rows(domains, 5)).await;
    serve_project(dir, project, pg.into_store(), |_| {}).await
}

async fn serve_project(
    dir: tempfile::TempDir,
    mut project: Project,
    store: Arc<dyn Store>,
    tune: impl FnOnce(&mut Project),
) -> Api {
    project.llm.request_timeout = Duration::from_secs(5);
    project.serve.client_requests_per_second = 100_000;
    tune(&mut project);
    let provider: Arc<dyn Provider> =
        Arc::new(OpenAiProvider::new(openai_config(&project.llm, "test-key".into())).unwrap());
    let auth = Auth::parse(&format!("reader:read:{READ},writer:write:{WRITE}")).unwrap();
    let state = AppState::new(Arc::new(project), store.clone(), provider, auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(shopscribe::serve::serve_with(
        state.clone(),
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    Api {
        url,
        http: reqwest::Client::new(),
        state,
        store,
        _dir: dir,
        stop: Some(tx),
        server: Some(server),
    }
}

impl Api {
    fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.url));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }
    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let r = self
            .req(reqwest::Method::GET, path, token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let r = self
            .req(reqwest::Method::POST, path, token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    async fn a_key(&self) -> String {
        let entities = shopscribe::run::load_entities(
            &self.state.project,
            self.state.project.job("domain_summaries").unwrap(),
        )
        .await
        .unwrap();
        entities.keys[0].clone()
    }
    async fn wait_run(&self, id: i64) -> Value {
        let t = Instant::now();
        loop {
            let (s, run) = self.get(&format!("/v1/runs/{id}"), Some(READ)).await;
            assert_eq!(s, StatusCode::OK, "{run}");
            if run["status"] != "running" {
                return run;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "run {id} never ended"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    /// Requests a run of `domain_summaries` (202) and waits for its end: the finished run.
    async fn run_to_end(&self) -> Value {
        let (s, body) = self
            .post("/v1/runs", Some(WRITE), r#"{"job": "domain_summaries"}"#)
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{body}");
        self.wait_run(body["runs"][0]["run_id"].as_i64().unwrap())
            .await
    }
    /// Stops the server; returns the project folder, which must outlive any later store use.
    async fn shutdown(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap().unwrap();
        self._dir
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// A documented path with its parameters filled in.
fn concrete(path: &str, key: &str, run: i64) -> String {
    path.replace("{job}", "domain_summaries")
        .replace("{key}", key)
        .replace("{id}", &run.to_string())
}

#[tokio::test]
async fn every_route_with_and_without_auth_and_scope() {
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 30, |_| {}).await;
    let key = api.a_key().await;
    let run = api.run_to_end().await["id"].as_i64().unwrap();

    for (method, path, scope, _) in openapi::ROUTES {
        let url = concrete(path, &key, run);
        let m: reqwest::Method = method.to_uppercase().parse().unwrap();
        let body = if *method == "post" {
            r#"{"job": "domain_summaries"}"#
        } else {
            ""
        };
        let send = |token: Option<&'static str>| {
            let r = api.req(m.clone(), &url, token).body(body);
            async move { r.send().await.unwrap() }
        };
        let anonymous = send(None).await;
        let read = send(Some(READ)).await;
        let write = send(Some(WRITE)).await;
        let bad = send(Some("not-a-known-token-at-all")).await;
        match *scope {
            "" => {
                assert_eq!(
                    anonymous.status(),
                    StatusCode::OK,
                    "{method} {path} is open"
                );
            }
            "read" => {
                assert_eq!(
                    anonymous.status(),
                    StatusCode::UNAUTHORIZED,
                    "{method} {path}"
                );
                assert!(anonymous.headers().contains_key("www-authenticate"));
                assert_eq!(bad.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
                assert!(
                    read.status().is_success(),
                    "{method} {path}: {}",
                    read.status()
                );
                assert!(
                    write.status().is_success(),
                    "{method} {path}: write includes read"
                );
            }
            "write" => {
                assert_eq!(
                    anonymous.status(),
                    StatusCode::UNAUTHORIZED,
                    "{method} {path}"
                );
                assert_eq!(bad.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
                assert_eq!(read.status(), StatusCode::FORBIDDEN, "{method} {path}");
                let v: Value = read.json().await.unwrap();
                assert_eq!(code(&v), "forbidden");
                assert!(
                    write.status().is_success(),
                    "{method} {path}: {}",
                    write.status()
                );
            }
            other => panic!("unknown scope {other}"),
        }
    }
    // `?refresh=true` spends money: the read scope may not force it.
    let path = format!("/v1/jobs/domain_summaries/entities/{key}?refresh=true");
    assert_eq!(api.get(&path, Some(READ)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(api.get(&path, Some(WRITE)).await.0, StatusCode::OK);
    api.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 10, |_| {}).await;
    let key = api.a_key().await;
    let (s, doc) = api.get("/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut routes: Vec<(String, String)> = openapi::ROUTES
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes);
    // Every documented operation reaches a handler (not the router's 404 / 405).
    for (method, path) in &documented {
        let m: reqwest::Method = method.to_uppercase().parse().unwrap();
        let r = api
            .req(m, &concrete(path, &key, 1), Some(WRITE))
            .body(r#"{"job": "domain_summaries"}"#)
            .send()
            .await
            .unwrap();
        assert_ne!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_ne!(code(&v), "no_route", "{method} {path}: {status}");
    }
    // And what is not documented is not routed.
    let (s, v) = api.get("/v1/secret", Some(WRITE)).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "no_route"));
    let r = api
        .req(reqwest::Method::DELETE, "/v1/runs", Some(WRITE))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(code(&v), "method_not_allowed");
    api.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 10, |p| p.serve.max_body_bytes = 64 * 1024).await;
    let key = api.a_key().await;
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            "{\"job\": ".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "an array",
            "[1, 2]".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "a number as job",
            r#"{"job": 5}"#.into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "an unknown shape",
            r#"{"hello": "world"}"#.into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "an unknown job",
            r#"{"job": "nope"}"#.into(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "a huge body",
            format!(r#"{{"job": "{}"}}"#, "x".repeat(200 * 1024)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (what, body, status, c) in cases {
        let (s, v) = api.post("/v1/runs", Some(WRITE), body).await;
        assert_eq!((s, code(&v)), (status, c), "{what}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    for (path, status, c) in [
        (
            "/v1/jobs/nope/entities/x".to_string(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/v1/jobs/domain_summaries/entities/no-such-shop.example".into(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            format!("/v1/jobs/domain_summaries/entities/{key}?refresh=maybe"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            format!("/v1/jobs/domain_summaries/entities/{key}?colour=red"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/v1/runs/abc".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        ("/v1/runs/987654".into(), StatusCode::NOT_FOUND, "not_found"),
        (
            "/v1/runs?limit=0".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        let (s, v) = api.get(&path, Some(READ)).await;
        assert_eq!((s, code(&v)), (status, c), "{path}: {v}");
    }
    // Oversized headers.
    let r = api
        .req(reqwest::Method::GET, "/healthz", None)
        .header("x-padding", "y".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(mock.seen().is_empty(), "no error reached the LLM");
    api.shutdown().await;
}

#[tokio::test]
async fn two_hundred_concurrent_cold_requests_make_one_llm_call() {
    let mock = MockServer::start(MockConfig {
        latency: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let api = start(&mock, 20, |_| {}).await;
    let key = api.a_key().await;
    let path = format!("/v1/jobs/domain_summaries/entities/{key}");
    let requests = (0..200).map(|_| {
        let r = api.req(reqwest::Method::GET, &path, Some(READ));
        async move {
            let r = r.send().await.unwrap();
            let source = r.headers()["x-shopscribe-source"]
                .to_str()
                .unwrap()
                .to_string();
            (r.status(), source, r.json::<Value>().await.unwrap())
        }
    });
    let answers = futures::future::join_all(requests).await;
    assert_eq!(mock.seen().len(), 1, "exactly one LLM call");
    let version = &answers[0].2["version"];
    for (status, source, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(&body["version"], version);
        assert_eq!(body["key"], key.as_str());
        assert!(body["output"]["summary"].is_string());
        assert!(source == "generated" || source == "cache", "{source}");
    }
    // Stored: the history shows one generation, and the next request is a cache hit.
    let history = api
        .store
        .generations_of("domain_summaries", &key)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    let r = api
        .req(reqwest::Method::GET, &path, Some(READ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-shopscribe-source"], "cache");
    assert_eq!(mock.seen().len(), 1);
    let (_, metrics) = api.get("/metrics", Some(READ)).await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("shopscribe_llm_calls_total{outcome=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("shopscribe_ondemand_generations_total{result=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("shopscribe_http_request_duration_seconds_bucket"),
        "{text}"
    );
    api.shutdown().await;
}

#[tokio::test]
async fn changed_inputs_are_regenerated_and_unchanged_ones_served_from_the_store() {
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 20, |_| {}).await;
    let key = api.a_key().await;
    // A batch run writes every text; the API then serves them without calling the LLM.
    let run = api.run_to_end().await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["figures"]["generated"], 20);
    let calls = mock.seen().len();
    let path = format!("/v1/jobs/domain_summaries/entities/{key}");
    let r = api
        .req(reqwest::Method::GET, &path, Some(READ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-shopscribe-source"], "store");
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["run_id"], run["id"]);
    assert_eq!(mock.seen().len(), calls);

    // The entity's data changes: the next request sees new inputs and generates anew.
    let sqlite = shopscribe::store::sqlite::SqliteStore::open(&api.state.project.store_url)
        .await
        .unwrap();
    sqlx::query("UPDATE domain_monthly SET visits = visits * 3 + 1000 WHERE domain = ?")
        .bind(&key)
        .execute(sqlite.pool())
        .await
        .unwrap();
    api.state.entities.invalidate("domain_summaries");
    let r = api
        .req(reqwest::Method::GET, &path, Some(READ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-shopscribe-source"], "generated");
    let second: Value = r.json().await.unwrap();
    assert_ne!(second["input_hash"], first["input_hash"]);
    assert!(second["version"].as_i64() > first["version"].as_i64());
    assert_eq!(mock.seen().len(), calls + 1);
    api.shutdown().await;
}

#[tokio::test]
async fn client_and_generation_limits_answer_429_with_retry_after() {
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 10, |p| {
        p.serve.client_requests_per_second = 2;
        p.serve.client_generations_per_minute = 1;
    })
    .await;
    let entities = shopscribe::run::load_entities(
        &api.state.project,
        api.state.project.job("domain_summaries").unwrap(),
    )
    .await
    .unwrap();
    let (a, b) = (&entities.keys[0], &entities.keys[1]);
    // One cold generation per minute per token: the second key is refused, the first served.
    let (s, _) = api
        .get(
            &format!("/v1/jobs/domain_summaries/entities/{a}"),
            Some(READ),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = api
        .req(
            reqwest::Method::GET,
            &format!("/v1/jobs/domain_summaries/entities/{b}"),
            Some(READ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(code(&v), "generation_rate_limited");
    // Requests per second (burst 4): a quick series runs into 429s; other tokens do not.
    let mut limited = 0;
    for _ in 0..6 {
        let (s, v) = api.get("/v1/jobs", Some(READ)).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(code(&v), "rate_limited");
            limited += 1;
        }
    }
    assert!(limited >= 2, "{limited}");
    assert_eq!(api.get("/v1/jobs", Some(WRITE)).await.0, StatusCode::OK);
    assert_eq!(mock.seen().len(), 1);
    api.shutdown().await;
}

#[tokio::test]
async fn a_second_run_request_is_queued_behind_the_first() {
    let mock = MockServer::start(MockConfig {
        latency: Duration::from_millis(150),
        ..Default::default()
    })
    .await;
    let api = start(&mock, 40, |p| p.llm.max_in_flight = 4).await;
    let job = r#"{"job": "domain_summaries"}"#;
    let (s, first) = api.post("/v1/runs", Some(WRITE), job).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(first["runs"][0]["status"], "running", "{first}");
    let id = first["runs"][0]["run_id"].as_i64().unwrap();
    let (_, second) = api.post("/v1/runs", Some(WRITE), job).await;
    assert_eq!(second["runs"][0]["status"], "queued", "{second}");
    assert_eq!(second["runs"][0]["behind"], id);
    let (_, third) = api.post("/v1/runs", Some(WRITE), job).await;
    assert_eq!(third["runs"][0]["status"], "queued");
    assert_eq!(api.wait_run(id).await["status"], "succeeded");
    // The queued requests became exactly one follow-up run, which found nothing left to do.
    let t = Instant::now();
    let follow_up = loop {
        let (_, runs) = api.get("/v1/runs?job=domain_summaries", Some(READ)).await;
        let runs = runs["runs"].as_array().unwrap().clone();
        if let Some(r) = runs.iter().find(|r| r["id"].as_i64() > Some(id)) {
            break r["id"].as_i64().unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no follow-up run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let run = api.wait_run(follow_up).await;
    assert_eq!(run["figures"]["generated"], 0, "{run}");
    assert_eq!(run["figures"]["skipped"], 40);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, runs) = api.get("/v1/runs?job=domain_summaries", Some(READ)).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "{runs}");
    // Another process holding the job's lock keeps this server's request queued.
    assert!(
        api.store
            .try_lock_job("domain_summaries", "someone-else", Duration::from_secs(60))
            .await
            .unwrap()
    );
    let (_, held) = api.post("/v1/runs", Some(WRITE), job).await;
    assert_eq!(held["runs"][0]["status"], "queued", "{held}");
    api.store
        .unlock_job("domain_summaries", "someone-else")
        .await
        .unwrap();
    let store = api.store.clone();
    let _dir = api.shutdown().await;
    // Shutdown waited for the queued run, which started once the lock was free.
    let runs = store.runs(Some("domain_summaries"), 10).await.unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[0].status, shopscribe::store::RunStatus::Succeeded);
}

#[tokio::test]
async fn s3_and_eventbridge_events_outside_every_dataset_are_ignored() {
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 5, |_| {}).await;
    let s3 = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "elsewhere"}, "object": {"key": "x/day1.jsonl"}}}]});
    let (s, v) = api.post("/v1/runs", Some(WRITE), s3.to_string()).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("ignored")),
        "{v}"
    );
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "raw"});
    let (s, v) = api
        .post("/v1/runs", Some(WRITE), test_event.to_string())
        .await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ignored")));
    api.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_the_generation_in_flight() {
    let mock = MockServer::start(MockConfig {
        latency: Duration::from_millis(800),
        ..Default::default()
    })
    .await;
    let api = start(&mock, 10, |_| {}).await;
    let key = api.a_key().await;
    let path = format!("/v1/jobs/domain_summaries/entities/{key}");
    let request = api.req(reqwest::Method::GET, &path, Some(READ)).send();
    let pending = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let store = api.store.clone();
    let _dir = api.shutdown().await;
    let r = pending.await.unwrap().unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the request in flight was answered"
    );
    let history = store
        .generations_of("domain_summaries", &key)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    // The service run was closed with its figures.
    let runs = store.runs(Some("domain_summaries"), 5).await.unwrap();
    assert_eq!(runs[0].status, shopscribe::store::RunStatus::Succeeded);
    assert_eq!(runs[0].figures.generated, 1);
}

#[tokio::test]
async fn a_slow_generation_times_out_the_request_but_still_lands() {
    let mock = MockServer::start(MockConfig {
        latency: Duration::from_millis(900),
        ..Default::default()
    })
    .await;
    let api = start(&mock, 10, |p| {
        p.serve.request_timeout = Duration::from_millis(300);
    })
    .await;
    let key = api.a_key().await;
    let path = format!("/v1/jobs/domain_summaries/entities/{key}");
    let (s, v) = api.get(&path, Some(READ)).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
        "{v}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = api
        .req(reqwest::Method::GET, &path, Some(READ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(r.headers()["x-shopscribe-source"], "generated");
    assert_eq!(
        mock.seen().len(),
        1,
        "the abandoned request's generation was kept"
    );
    api.shutdown().await;
}

#[tokio::test]
async fn the_global_concurrency_cap_sheds_load_with_429() {
    let mock = MockServer::start(MockConfig {
        latency: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let api = start(&mock, 10, |p| p.serve.max_concurrent_requests = 1).await;
    let key = api.a_key().await;
    let path = format!("/v1/jobs/domain_summaries/entities/{key}");
    let slow = tokio::spawn(api.req(reqwest::Method::GET, &path, Some(READ)).send());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (s, v) = api.get("/v1/jobs", Some(READ)).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::TOO_MANY_REQUESTS, "busy"),
        "{v}"
    );
    // Probes are not shed: a busy server is alive and ready.
    assert_eq!(api.get("/healthz", None).await.0, StatusCode::OK);
    assert_eq!(api.get("/readyz", None).await.0, StatusCode::OK);
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(api.get("/v1/jobs", Some(READ)).await.0, StatusCode::OK);
    // Made-up methods are counted as "other", not as a label each.
    let m = reqwest::Method::from_bytes(b"FROBNICATE").unwrap();
    let _ = api.req(m, "/healthz", None).send().await.unwrap();
    let (_, metrics) = api.get("/metrics", Some(READ)).await;
    let text = metrics.as_str().unwrap();
    assert!(
        !text.contains("FROBNICATE") && text.contains("method=\"other\""),
        "{text}"
    );
    api.shutdown().await;
}

/// The service on PostgreSQL (store and source): a run request writes every text, reads are
/// served from the store, changed inputs regenerate, and concurrent cold requests for one
/// entity make one LLM call.
#[tokio::test]
async fn the_api_on_postgres_runs_serves_and_regenerates() {
    let mock = MockServer::start(MockConfig {
        latency: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let db = support::pg::TestDb::new().await;
    let api = start_pg(&mock, &db, 12).await;
    assert!(api.state.project.store_url.starts_with("postgres"));
    let run = api.run_to_end().await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["figures"]["generated"], 12);
    let calls = mock.seen().len();

    let key = api.a_key().await;
    let path = format!("/v1/jobs/domain_summaries/entities/{key}");
    let r = api
        .req(reqwest::Method::GET, &path, Some(READ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-shopscribe-source"], "store");
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["run_id"], run["id"]);
    assert_eq!(mock.seen().len(), calls, "served without the LLM");
    let (s, v) = api
        .get(
            "/v1/jobs/domain_summaries/entities/no-such-shop.example",
            Some(READ),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"), "{v}");

    // The entity's data changes: 20 concurrent requests see new inputs; one generates.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE domain_monthly SET visits = visits * 3 + 1000 WHERE domain = $1")
        .bind(&key)
        .execute(&pool)
        .await
        .unwrap();
    api.state.entities.invalidate("domain_summaries");
    let answers = futures::future::join_all((0..20).map(|_| async {
        let r = api
            .req(reqwest::Method::GET, &path, Some(READ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()
    }))
    .await;
    assert_eq!(mock.seen().len(), calls + 1, "one LLM call for 20 requests");
    for a in &answers {
        assert_eq!(a["input_hash"], answers[0]["input_hash"]);
        assert_ne!(a["input_hash"], first["input_hash"]);
        assert!(a["version"].as_i64() > first["version"].as_i64());
    }
    api.shutdown().await;
}

// --- Connections (issue 13, item 11): raw TCP clients against the real accept loop. ---

/// Reads until the server closes the connection (or `limit` passes: then panics); the bytes and
/// how long it took.
async fn read_until_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> (String, Duration) {
    use tokio::io::AsyncReadExt;
    let t = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
            Err(_) => panic!(
                "the connection was still open after {limit:?}; read so far: {}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

async fn connect(api: &Api) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(api.url.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// The JSON body of a raw HTTP/1.1 answer, with its head (lower-cased).
fn split_answer(raw: &str) -> (String, Value) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    (
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    )
}

#[tokio::test]
async fn a_slow_headers_connection_is_closed_after_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 5, |p| {
        p.serve.header_read_timeout = Duration::from_millis(600);
        p.serve.idle_timeout = Duration::from_secs(30);
    })
    .await;
    // Half a request, then silence: closed once the head is 0.6 s late (it used to stay open
    // for minutes).
    let mut s = connect(&api).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (answer, took) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(answer.is_empty(), "{answer}");
    assert!(took >= Duration::from_millis(500), "{took:?}");
    // A header byte every 100 ms does not keep it open either: the limit is for the whole head.
    let mut s = connect(&api).await;
    let t = Instant::now();
    let mut closed = false;
    for b in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
    }
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed || answer.is_empty(), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    // A normal request on a fresh connection is served.
    assert_eq!(api.get("/healthz", None).await.0, StatusCode::OK);
    api.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed_but_slow_requests_are_not() {
    use tokio::io::AsyncWriteExt;
    let mock = MockServer::start(MockConfig {
        latency: Duration::from_millis(900),
        ..Default::default()
    })
    .await;
    let api = start(&mock, 5, |p| {
        p.serve.idle_timeout = Duration::from_millis(400);
        p.serve.header_read_timeout = Duration::from_secs(5);
    })
    .await;
    // Connected, nothing sent: closed after the idle timeout.
    let mut s = connect(&api).await;
    let (answer, took) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(answer.is_empty(), "{answer}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // Kept alive after a request: closed once idle for as long.
    let mut s = connect(&api).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, took) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // A request that takes longer than the idle timeout (a 0.9 s generation) is answered.
    let key = api.a_key().await;
    let mut s = connect(&api).await;
    let request = format!(
        "GET /v1/jobs/domain_summaries/entities/{key} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READ}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let (answer, took) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took >= Duration::from_millis(800), "{took:?}");
    api.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_per_ip_cap_get_a_json_429_and_are_closed() {
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 5, |p| p.serve.max_connections_per_ip = 2).await;
    let first = connect(&api).await;
    let _second = connect(&api).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = connect(&api).await;
    let (answer, _) = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    let (head, body) = split_answer(&answer);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert_eq!(code(&body), "too_many_connections", "{body}");
    // A connection closed frees its place.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    api.shutdown().await;
}

// --- Errors of the HTTP layer, headers, auth before 405 (issue 13, item 12). ---

#[tokio::test]
async fn errors_of_the_http_layer_are_json_like_every_other() {
    use tokio::io::AsyncWriteExt;
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 5, |p| p.serve.max_header_bytes = 4096).await;
    let too_many_headers: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("not HTTP", "GARBAGE\r\n\r\n".into(), 400, "bad_request"),
        (
            "a header with a space in its name",
            "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n".into(),
            400,
            "bad_request",
        ),
        (
            "headers over serve.max_header_bytes",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
                "y".repeat(8000)
            ),
            431,
            "headers_too_large",
        ),
        (
            "more than 100 headers",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{too_many_headers}\r\n"),
            431,
            "headers_too_large",
        ),
        (
            "a huge URI",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(70_000)),
            431,
            "headers_too_large",
        ),
    ];
    for (what, request, status, c) in cases {
        let mut s = connect(&api).await;
        let _ = s.write_all(request.as_bytes()).await;
        let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {answer}"
        );
        let (head, body) = split_answer(&answer);
        assert!(
            head.contains("content-type: application/json"),
            "{what}: {head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{what}");
        assert!(head.contains("x-request-id: "), "{what}");
        assert_eq!(code(&body), c, "{what}: {body}");
        assert!(body["error"]["message"].is_string(), "{what}: {body}");
    }
    // The server is still fine.
    assert_eq!(api.get("/healthz", None).await.0, StatusCode::OK);
    api.shutdown().await;
}

#[tokio::test]
async fn every_response_has_nosniff_and_a_request_id() {
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 5, |_| {}).await;
    for (method, path, token) in [
        (reqwest::Method::GET, "/healthz", None),
        (reqwest::Method::GET, "/v1/jobs", Some(READ)),
        (reqwest::Method::GET, "/v1/jobs", None),
        (reqwest::Method::GET, "/nowhere", None),
        (reqwest::Method::DELETE, "/healthz", None),
        (reqwest::Method::GET, "/metrics", Some(READ)),
    ] {
        let r = api.req(method.clone(), path, token).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{method} {path}");
        let id = h["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 32, "{method} {path}: {id}");
        if !r.status().is_success() {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["request_id"], id.as_str(), "{method} {path}");
        }
    }
    // A sane id from the client is kept (for tracing across services); anything else replaced.
    let r = api
        .req(reqwest::Method::GET, "/v1/jobs", None)
        .header("x-request-id", "edge-7f3a.1:2_b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "edge-7f3a.1:2_b");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["request_id"], "edge-7f3a.1:2_b");
    for bad in ["has spaces", "<script>", &"x".repeat(200)] {
        let r = api
            .req(reqwest::Method::GET, "/healthz", None)
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert_eq!(id.len(), 32);
    }
    api.shutdown().await;
}

#[tokio::test]
async fn authentication_comes_before_method_not_allowed() {
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 5, |_| {}).await;
    for (method, path) in [
        (reqwest::Method::DELETE, "/v1/runs"),
        (reqwest::Method::PUT, "/metrics"),
        (reqwest::Method::POST, "/v1/jobs"),
        (reqwest::Method::PATCH, "/v1/runs/1"),
    ] {
        let r = api.req(method.clone(), path, None).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(
            !r.headers().contains_key("allow"),
            "{method} {path}: an anonymous client does not learn the methods"
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(code(&v), "unauthorized");
        let r = api
            .req(method.clone(), path, Some(READ))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(r.headers().contains_key("allow"), "{method} {path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(code(&v), "method_not_allowed");
    }
    // Open routes answer 405 to anybody.
    let r = api
        .req(reqwest::Method::POST, "/healthz", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    api.shutdown().await;
}

// --- Internal errors (issue 13, item 13). ---

#[tokio::test]
async fn a_missing_source_table_tells_clients_a_code_and_a_request_id_only() {
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 5, |_| {}).await;
    let key = api.a_key().await;
    let sqlite = shopscribe::store::sqlite::SqliteStore::open(&api.state.project.store_url)
        .await
        .unwrap();
    sqlx::query("DROP TABLE domain_monthly")
        .execute(sqlite.pool())
        .await
        .unwrap();
    let leaks = |text: &str| {
        let t = text.to_lowercase();
        [
            ".sql",
            "domain_monthly",
            "no such table",
            "select",
            "line ",
            "sqlite",
            "/tmp",
        ]
        .into_iter()
        .filter(|w| t.contains(w))
        .collect::<Vec<_>>()
    };
    let r = api
        .req(
            reqwest::Method::GET,
            &format!("/v1/jobs/domain_summaries/entities/{key}"),
            Some(READ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let text = r.text().await.unwrap();
    assert!(leaks(&text).is_empty(), "{:?} in {text}", leaks(&text));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(code(&v), "source_unavailable");
    assert_eq!(v["error"]["request_id"], id.as_str());
    // A run fails on it too; its recorded error is for write tokens only.
    let (s, body) = api
        .post("/v1/runs", Some(WRITE), r#"{"job": "domain_summaries"}"#)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let run_id = body["runs"][0]["run_id"].as_i64().unwrap();
    let run = api.wait_run(run_id).await;
    assert_eq!(run["status"], "failed", "{run}");
    let (_, as_writer) = api.get(&format!("/v1/runs/{run_id}"), Some(WRITE)).await;
    assert!(
        as_writer["error"]
            .as_str()
            .unwrap()
            .contains("domain_monthly"),
        "{as_writer}"
    );
    for path in [format!("/v1/runs/{run_id}"), "/v1/runs".to_string()] {
        let r = api
            .req(reqwest::Method::GET, &path, Some(READ))
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        assert!(
            leaks(&text).is_empty(),
            "{path}: {:?} in {text}",
            leaks(&text)
        );
        assert!(text.contains("the run failed"), "{path}: {text}");
    }
    api.shutdown().await;
}

#[tokio::test]
async fn a_slowly_sent_body_is_cut_off_by_the_request_timeout() {
    use tokio::io::AsyncWriteExt;
    let mock = MockServer::start(MockConfig::default()).await;
    let api = start(&mock, 5, |p| {
        p.serve.request_timeout = Duration::from_millis(500);
        p.serve.idle_timeout = Duration::from_secs(30);
    })
    .await;
    // The head is complete (the header timer is done); the body never comes.
    let mut s = connect(&api).await;
    let head = format!(
        "POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"jo"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (answer, took) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert_eq!(code(&split_answer(&answer).1), "timeout", "{answer}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    api.shutdown().await;
}
