//! An in-process mock of Anthropic's Messages API on 127.0.0.1, for tests: `POST /v1/messages`
//! with `x-api-key` and `anthropic-version` checked, the forced tool's input as the answer,
//! requests / input-token / output-token buckets refilled continuously (burst configurable) with
//! the real `anthropic-ratelimit-*` headers (resets as RFC 3339 times) and `retry-after` on 429,
//! latency, and scripted or random faults (500, 529 overloaded, 429, schema violations, answers
//! cut at `max_tokens`). Every request is recorded so tests can check outcomes and duplicates.
//! Message Batches too (`/v1/messages/batches`: create, get, list, results): a batch ends after
//! `batch_delay`, every Nth request errored or expired as configured.
#![allow(dead_code)]

use super::mock_openai::Bucket;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A fault the server can inject instead of a normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Status500,
    /// 529 `overloaded_error`.
    Overloaded,
    /// 429 `rate_limit_error` with `retry-after` in whole seconds.
    RateLimit {
        retry_after_s: u64,
    },
    /// 200 whose tool input violates the job's schema.
    SchemaViolation,
    /// 200 with `stop_reason = "max_tokens"` and no tool call.
    Truncated,
    Unauthorized,
}

/// Makes the tool call's input (the answer) from the request body.
pub type Responder = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

#[derive(Clone)]
pub struct MockConfig {
    pub api_key: String,
    pub latency: Duration,
    pub requests_per_minute: Option<f64>,
    pub input_tokens_per_minute: Option<f64>,
    pub output_tokens_per_minute: Option<f64>,
    /// How much quota the buckets hold (and start with), in time of their refill.
    pub burst: Duration,
    /// Each request draws at most one of these faults with its probability.
    pub random_faults: Vec<(Fault, f64)>,
    pub seed: u64,
    pub responder: Responder,
    /// Message Batches: how long a batch takes to end.
    pub batch_delay: Duration,
    /// Message Batches: every Nth request of a batch ends `errored` (an `api_error`).
    pub batch_fail_every: Option<usize>,
    /// Message Batches: every Nth request (offset by one, never the first) ends `expired`.
    pub batch_expire_every: Option<usize>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            api_key: "test-anthropic-key".into(),
            latency: Duration::ZERO,
            requests_per_minute: None,
            input_tokens_per_minute: None,
            output_tokens_per_minute: None,
            burst: Duration::from_secs(60),
            random_faults: Vec::new(),
            seed: 1,
            batch_delay: Duration::from_millis(50),
            batch_fail_every: None,
            batch_expire_every: None,
            responder: Arc::new(|body| {
                serde_json::from_str(&super::mock_openai::domain_summary_responder(
                    &openai_shaped(body),
                ))
                .unwrap()
            }),
        }
    }
}

/// The body re-shaped as an OpenAI request (system + user messages), so the OpenAI mock's
/// responders can answer it.
pub fn openai_shaped(body: &Value) -> Value {
    json!({"messages": [
        {"role": "system", "content": body["system"]},
        {"role": "user", "content": body["messages"][0]["content"]},
    ]})
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub status: u16,
    pub fault: Option<Fault>,
    /// First line of the user message (identifies the entity in the example prompts).
    pub input: String,
    pub body: Value,
}

/// A Message Batch as the mock keeps it.
#[derive(Debug, Clone)]
pub struct MockBatch {
    pub id: String,
    /// in_progress | ended
    pub status: String,
    pub custom_ids: Vec<String>,
    /// The `custom_id`s that ended `errored` and `expired`.
    pub errored: Vec<String>,
    pub expired: Vec<String>,
    /// The JSONL results, once ended.
    pub results: Option<String>,
    /// How often its results were read.
    pub downloads: usize,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Every request's `params.model`, to check the model the batch ran.
    pub models: Vec<String>,
}

struct Inner {
    cfg: MockConfig,
    batches: Vec<MockBatch>,
    script: VecDeque<Fault>,
    arrivals: HashMap<String, usize>,
    buckets: Vec<(&'static str, Bucket)>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
pub struct MockServer {
    /// Up to and including `/v1`, as `llm.base_url` takes it.
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl MockServer {
    pub async fn start(cfg: MockConfig) -> MockServer {
        let buckets = [
            ("requests", cfg.requests_per_minute),
            ("input-tokens", cfg.input_tokens_per_minute),
            ("output-tokens", cfg.output_tokens_per_minute),
        ]
        .into_iter()
        .filter_map(|(n, r)| r.map(|r| (n, Bucket::new(r, cfg.burst))))
        .collect();
        let inner = Arc::new(Mutex::new(Inner {
            cfg,
            batches: Vec::new(),
            script: VecDeque::new(),
            arrivals: HashMap::new(),
            buckets,
            seen: Vec::new(),
        }));
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/messages/batches", post(create_batch).get(list_batches))
            .route("/v1/messages/batches/{id}", get(get_batch))
            .route("/v1/messages/batches/{id}/results", get(batch_results))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        MockServer {
            base_url: format!("http://{addr}/v1"),
            inner,
        }
    }

    /// The next requests get these faults, in order, before any random fault.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.inner.lock().unwrap().script.extend(faults);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    pub fn batches(&self) -> Vec<MockBatch> {
        self.inner.lock().unwrap().batches.clone()
    }

    pub fn count(&self, status: u16) -> usize {
        self.seen().iter().filter(|s| s.status == status).count()
    }

    /// Successful (200, no fault) answers per input.
    pub fn successes_per_input(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for s in self
            .seen()
            .iter()
            .filter(|s| s.status == 200 && s.fault.is_none())
        {
            *m.entry(s.input.clone()).or_insert(0) += 1;
        }
        m
    }
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

/// Input tokens as the mock counts them: characters of the system prompt, user message and tool
/// schema over four.
fn input_tokens(body: &Value) -> f64 {
    let chars = body["system"].as_str().map_or(0, str::len)
        + body["messages"][0]["content"].as_str().map_or(0, str::len)
        + body["tools"].to_string().len();
    chars as f64 / 4.0
}

/// What the request costs in each bucket, by the buckets' names.
fn costs(body: &Value) -> [(&'static str, f64); 3] {
    [
        ("requests", 1.0),
        ("input-tokens", input_tokens(body)),
        ("output-tokens", body["max_tokens"].as_f64().unwrap_or(0.0)),
    ]
}

/// Charges the request to every bucket, or says how long until it would fit (nothing charged).
fn admit(g: &mut Inner, body: &Value, now: Instant) -> Result<Vec<(String, String)>, Duration> {
    let costs = costs(body);
    let cost_of = |name: &str| costs.iter().find(|(n, _)| *n == name).map_or(0.0, |c| c.1);
    let mut wait: Option<Duration> = None;
    for (name, b) in g.buckets.iter_mut() {
        b.refill(now);
        let need = cost_of(name).min(b.capacity);
        if b.level < need {
            wait = Some(wait.unwrap_or_default().max(b.reset_in(need)));
        }
    }
    if let Some(w) = wait {
        return Err(w);
    }
    let wall = chrono::Utc::now();
    let mut headers = Vec::new();
    for (name, b) in g.buckets.iter_mut() {
        b.level -= cost_of(name);
        let full_at = wall + chrono::Duration::from_std(b.reset_in(b.capacity)).unwrap();
        let h = |k: &str| format!("anthropic-ratelimit-{name}-{k}");
        headers.push((h("limit"), format!("{:.0}", b.rate * 60.0)));
        headers.push((h("remaining"), format!("{:.0}", b.level.max(0.0).floor())));
        headers.push((
            h("reset"),
            full_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ));
    }
    Ok(headers)
}

fn draw_fault(g: &mut Inner, input: &str) -> Option<Fault> {
    if let Some(f) = g.script.pop_front() {
        return Some(f);
    }
    let nth = g.arrivals.entry(input.to_string()).or_insert(0);
    *nth += 1;
    let r = fault_draw(g.cfg.seed, input, *nth);
    let mut acc = 0.0;
    g.cfg.random_faults.iter().find_map(|(f, p)| {
        acc += p;
        (r < acc).then(|| f.clone())
    })
}

async fn messages(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let now = Instant::now();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let input = body["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let (outcome, latency, answer) = {
        let mut g = inner.lock().unwrap();
        let outcome = if header("x-api-key") != Some(g.cfg.api_key.as_str()) {
            Err(error(401, "authentication_error", "invalid x-api-key"))
        } else if header("anthropic-version").is_none() {
            Err(error(
                400,
                "invalid_request_error",
                "anthropic-version header is required",
            ))
        } else if body["tool_choice"]["name"].as_str().is_none() {
            Err(error(
                400,
                "invalid_request_error",
                "the mock expects a forced tool",
            ))
        } else {
            match admit(&mut g, &body, now) {
                Ok(h) => Ok((h, draw_fault(&mut g, &input))),
                Err(wait) => {
                    let mut r = error(
                        429,
                        "rate_limit_error",
                        "Number of requests has exceeded your rate limit",
                    );
                    r.headers_mut().insert(
                        "retry-after",
                        HeaderValue::from_str(&wait.as_secs_f64().ceil().max(1.0).to_string())
                            .unwrap(),
                    );
                    Err(r)
                }
            }
        };
        let status = match &outcome {
            Err(r) => r.status().as_u16(),
            Ok((_, None | Some(Fault::SchemaViolation | Fault::Truncated))) => 200,
            Ok((_, Some(Fault::Status500))) => 500,
            Ok((_, Some(Fault::Overloaded))) => 529,
            Ok((_, Some(Fault::RateLimit { .. }))) => 429,
            Ok((_, Some(Fault::Unauthorized))) => 401,
        };
        g.seen.push(Seen {
            at: now,
            status,
            fault: outcome.as_ref().ok().and_then(|(_, f)| f.clone()),
            input,
            body: body.clone(),
        });
        (outcome, g.cfg.latency, (g.cfg.responder)(&body))
    };
    let (rl_headers, fault) = match outcome {
        Ok(o) => o,
        Err(r) => return r,
    };
    tokio::time::sleep(latency).await;
    let tool = body["tool_choice"]["name"].clone();
    let message = |content: Value, stop: &str, out: usize| {
        json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": body["model"],
            "content": content, "stop_reason": stop,
            "usage": {"input_tokens": input_tokens(&body) as u64, "output_tokens": out}
        })
    };
    let mut resp = match fault {
        Some(Fault::Status500) => error(500, "api_error", "Internal server error"),
        Some(Fault::Overloaded) => error(529, "overloaded_error", "Overloaded"),
        Some(Fault::RateLimit { retry_after_s }) => {
            let mut r = error(429, "rate_limit_error", "Rate limited");
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after_s));
            r
        }
        Some(Fault::Unauthorized) => error(401, "authentication_error", "invalid x-api-key"),
        Some(Fault::Truncated) => axum::Json(message(
            json!([{"type": "text", "text": "{\"title\": \"cut"}]),
            "max_tokens",
            body["max_tokens"].as_u64().unwrap_or(0) as usize,
        ))
        .into_response(),
        Some(Fault::SchemaViolation) => axum::Json(message(
            json!([{"type": "tool_use", "id": "toolu_1", "name": tool, "input": {"title": 42}}]),
            "tool_use",
            5,
        ))
        .into_response(),
        None => {
            let out = answer.to_string().len() / 4;
            axum::Json(message(
                json!([{"type": "tool_use", "id": "toolu_1", "name": tool, "input": answer}]),
                "tool_use",
                out,
            ))
            .into_response()
        }
    };
    for (k, v) in rl_headers {
        resp.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    resp
}

/// A uniform number in [0, 1) fixed by the seed, the input and its arrival count.
fn fault_draw(seed: u64, input: &str, nth: usize) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (seed, input, nth).hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The error answer for a request without the right key or version headers.
fn rejected(inner: &Mutex<Inner>, headers: &HeaderMap) -> Option<Response> {
    let g = inner.lock().unwrap();
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    if header("x-api-key") != Some(g.cfg.api_key.as_str()) {
        return Some(error(401, "authentication_error", "invalid x-api-key"));
    }
    if header("anthropic-version").is_none() {
        return Some(error(
            400,
            "invalid_request_error",
            "anthropic-version header is required",
        ));
    }
    None
}

fn batch_json(b: &MockBatch, base: &str) -> Value {
    let ended = b.status == "ended";
    let n = |v: &[String]| if ended { v.len() } else { 0 };
    let (errored, expired) = (n(&b.errored), n(&b.expired));
    let total = b.custom_ids.len();
    json!({
        "id": b.id, "type": "message_batch", "processing_status": b.status,
        "request_counts": {
            "processing": if ended { 0 } else { total },
            "succeeded": if ended { total - errored - expired } else { 0 },
            "errored": errored, "canceled": 0, "expired": expired,
        },
        "created_at": b.created_at.to_rfc3339(),
        "ended_at": null,
        "expires_at": (b.created_at + chrono::Duration::hours(24)).to_rfc3339(),
        "results_url": ended.then(|| format!("{base}/v1/messages/batches/{}/results", b.id)),
    })
}

fn base_of(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn create_batch(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(r) = rejected(&inner, &headers) {
        return r;
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(requests) = v["requests"].as_array().cloned() else {
        return error(400, "invalid_request_error", "requests: field required");
    };
    let pattern_ok = |id: &str| {
        (1..=64).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let custom_ids: Vec<String> = requests
        .iter()
        .map(|r| r["custom_id"].as_str().unwrap_or_default().to_string())
        .collect();
    if requests.is_empty() || requests.len() > 100_000 || !custom_ids.iter().all(|c| pattern_ok(c))
    {
        return error(
            400,
            "invalid_request_error",
            "requests: 1-100000 items with custom_id matching ^[a-zA-Z0-9_-]{1,64}$",
        );
    }
    let (id, delay, json) = {
        let mut g = inner.lock().unwrap();
        let id = format!("msgbatch_{:04}", g.batches.len() + 1);
        let b = MockBatch {
            id: id.clone(),
            status: "in_progress".into(),
            custom_ids,
            errored: Vec::new(),
            expired: Vec::new(),
            results: None,
            downloads: 0,
            created_at: chrono::Utc::now(),
            models: requests
                .iter()
                .map(|r| {
                    r["params"]["model"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect(),
        };
        let json = batch_json(&b, &base_of(&headers));
        g.batches.push(b);
        (id, g.cfg.batch_delay, json)
    };
    let task_inner = inner.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        end_batch(&task_inner, &id, &requests);
    });
    axum::Json(json).into_response()
}

/// Answers every request of a batch (or errors or expires it) and ends the batch.
fn end_batch(inner: &Mutex<Inner>, id: &str, requests: &[Value]) {
    let mut g = inner.lock().unwrap();
    let (fail, expire) = (g.cfg.batch_fail_every, g.cfg.batch_expire_every);
    let (mut out, mut errored, mut expired) = (String::new(), Vec::new(), Vec::new());
    for (i, r) in requests.iter().enumerate() {
        let cid = r["custom_id"].as_str().unwrap_or_default().to_string();
        let params = &r["params"];
        let result = if expire.is_some_and(|n| (i + 1) % n == 1 % n) && i > 0 {
            expired.push(cid.clone());
            json!({"type": "expired"})
        } else if fail.is_some_and(|n| (i + 1) % n == 0) {
            errored.push(cid.clone());
            json!({"type": "errored", "error": {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}})
        } else {
            let answer = (g.cfg.responder)(params);
            json!({"type": "succeeded", "message": {
                "id": format!("msg_b{i}"), "type": "message", "role": "assistant", "model": params["model"],
                "content": [{"type": "tool_use", "id": "toolu_1", "name": params["tool_choice"]["name"], "input": answer}],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": input_tokens(params) as u64, "output_tokens": answer.to_string().len() / 4}
            }})
        };
        out.push_str(&json!({"custom_id": cid, "result": result}).to_string());
        out.push('\n');
    }
    if let Some(b) = g.batches.iter_mut().find(|b| b.id == id) {
        b.status = "ended".into();
        b.errored = errored;
        b.expired = expired;
        b.results = Some(out);
    }
}

async fn list_batches(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    if let Some(r) = rejected(&inner, &headers) {
        return r;
    }
    let g = inner.lock().unwrap();
    let base = base_of(&headers);
    let data: Vec<Value> = g
        .batches
        .iter()
        .rev()
        .map(|b| batch_json(b, &base))
        .collect();
    axum::Json(json!({"data": data, "has_more": false})).into_response()
}

async fn get_batch(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = rejected(&inner, &headers) {
        return r;
    }
    let g = inner.lock().unwrap();
    match g.batches.iter().find(|b| b.id == id) {
        Some(b) => axum::Json(batch_json(b, &base_of(&headers))).into_response(),
        None => error(404, "not_found_error", "No such message batch"),
    }
}

async fn batch_results(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = rejected(&inner, &headers) {
        return r;
    }
    let mut g = inner.lock().unwrap();
    match g.batches.iter_mut().find(|b| b.id == id) {
        Some(b) => match &b.results {
            Some(r) => {
                b.downloads += 1;
                r.clone().into_response()
            }
            None => error(
                400,
                "invalid_request_error",
                "the batch is still processing",
            ),
        },
        None => error(404, "not_found_error", "No such message batch"),
    }
}
