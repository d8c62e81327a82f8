//! An in-process mock of an OpenAI-compatible server on 127.0.0.1, for tests and benchmarks:
//! chat completions with the real rate-limit headers, token-bucket limits refilled continuously
//! with a configurable burst (one second by default, as a provider enforcing per second; a minute
//! as OpenAI's buckets), configurable latency, and scripted or random faults.
//! Every request is recorded (arrival time, outcome, the body's user message) so tests can check
//! pauses, windows and duplicates.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::extract::{Multipart, Path};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
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
    Status503,
    /// 429 with `retry-after-ms` (and `retry-after` in whole seconds).
    RateLimit {
        retry_after_ms: u64,
    },
    /// Never answers (the client's timeout must fire).
    Hang,
    /// Sends headers, then drops the connection mid-body.
    Reset,
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 with valid JSON content that violates the job's schema.
    SchemaViolation,
    /// 200 with `finish_reason = "length"` and cut-off content.
    Truncated,
    Unauthorized,
    InsufficientQuota,
    ContextTooLong,
    ModelNotFound,
}

/// Makes the assistant's content from the request body.
pub type Responder = Arc<dyn Fn(&Value) -> String + Send + Sync>;

#[derive(Clone)]
pub struct MockConfig {
    pub api_key: String,
    pub latency: Duration,
    pub requests_per_minute: Option<f64>,
    pub tokens_per_minute: Option<f64>,
    /// How much quota the buckets hold (and start with), in time of their refill.
    pub burst: Duration,
    /// Sends `x-ratelimit-limit-*` beside remaining and reset (servers may omit it).
    pub limit_headers: bool,
    /// Each request draws at most one of these faults with its probability.
    pub random_faults: Vec<(Fault, f64)>,
    pub seed: u64,
    pub responder: Responder,
    /// Batch API: time from creation to completion.
    pub batch_delay: Duration,
    /// Batch API: every Nth request of a batch answers HTTP 500 inside the output file.
    pub batch_fail_every: Option<usize>,
    /// Batch API: every Nth request (offset by one, never the first) expires: the batch ends
    /// `expired`, as the real API's does when its completion window lapses, with the completed
    /// requests in its output file and the expired ones in its error file (`batch_expired`).
    pub batch_expire_every: Option<usize>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            api_key: "test-key".into(),
            latency: Duration::ZERO,
            requests_per_minute: None,
            tokens_per_minute: None,
            burst: Duration::from_secs(1),
            limit_headers: true,
            random_faults: Vec::new(),
            seed: 1,
            responder: Arc::new(domain_summary_responder),
            batch_delay: Duration::from_millis(50),
            batch_fail_every: None,
            batch_expire_every: None,
        }
    }
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

/// A server-side token bucket (requests or tokens): refilled at `rate` per second up to
/// `capacity`; the Anthropic mock enforces its limits with the same one.
pub(super) struct Bucket {
    pub(super) rate: f64,
    pub(super) capacity: f64,
    pub(super) level: f64,
    last: Instant,
}

impl Bucket {
    pub(super) fn new(per_minute: f64, burst: Duration) -> Bucket {
        let rate = per_minute / 60.0;
        let capacity = rate * burst.as_secs_f64();
        Bucket {
            rate,
            capacity,
            level: capacity,
            last: Instant::now(),
        }
    }
    pub(super) fn refill(&mut self, now: Instant) {
        self.level = (self.level + self.rate * now.duration_since(self.last).as_secs_f64())
            .min(self.capacity);
        self.last = now;
    }
    /// How long until the bucket holds `need`.
    pub(super) fn reset_in(&self, need: f64) -> Duration {
        Duration::from_secs_f64(((need - self.level).max(0.0) / self.rate).max(0.001))
    }
}

/// A batch as the mock keeps it.
#[derive(Debug, Clone)]
pub struct MockBatch {
    pub id: String,
    pub input_file_id: String,
    pub status: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub requests: usize,
    /// How often its output file was downloaded.
    pub downloads: usize,
    /// The `custom_id` of every request in its input file, in order.
    pub custom_ids: Vec<String>,
    /// The `custom_id`s that expired (in its error file), once it ended.
    pub expired: Vec<String>,
}

struct Inner {
    cfg: MockConfig,
    files: HashMap<String, String>,
    batches: Vec<MockBatch>,
    /// Requests seen per input (the user message), for the fault draw.
    arrivals: HashMap<String, usize>,
    script: VecDeque<Fault>,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
pub struct MockServer {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl MockServer {
    pub async fn start(cfg: MockConfig) -> MockServer {
        let inner = Arc::new(Mutex::new(Inner {
            arrivals: HashMap::new(),
            requests: cfg.requests_per_minute.map(|r| Bucket::new(r, cfg.burst)),
            tokens: cfg.tokens_per_minute.map(|t| Bucket::new(t, cfg.burst)),
            script: VecDeque::new(),
            seen: Vec::new(),
            files: HashMap::new(),
            batches: Vec::new(),
            cfg,
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/files", post(upload))
            .route("/v1/files/{id}/content", get(file_content))
            .route("/v1/batches", post(create_batch).get(list_batches))
            .route("/v1/batches/{id}", get(get_batch))
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

    /// Forgets the requests seen so far (a benchmark's second run is measured alone).
    pub fn forget_seen(&self) {
        self.inner.lock().unwrap().seen.clear();
    }

    pub fn count(&self, status: u16) -> usize {
        self.inner
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.status == status)
            .count()
    }

    /// Successful (200, no fault) answers per input.
    pub fn successes_per_input(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for s in self
            .inner
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.status == 200 && s.fault.is_none())
        {
            *m.entry(s.input.clone()).or_insert(0) += 1;
        }
        m
    }

    pub fn batches(&self) -> Vec<MockBatch> {
        self.inner.lock().unwrap().batches.clone()
    }

    /// Most requests that arrived within any window of `window`.
    pub fn busiest_window(&self, window: Duration) -> usize {
        let mut at: Vec<Instant> = self
            .inner
            .lock()
            .unwrap()
            .seen
            .iter()
            .map(|s| s.at)
            .collect();
        at.sort();
        let (mut best, mut lo) = (0, 0);
        for hi in 0..at.len() {
            while at[hi].duration_since(at[lo]) >= window {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }
}

fn error(status: StatusCode, message: &str, code: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "type": "error", "code": code}})),
    )
        .into_response()
}

/// Rough token count of a request, as a provider's limiter would see it.
fn request_tokens(body: &Value) -> f64 {
    let chars: usize = body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| x["content"].as_str().map_or(0, str::len))
                .sum()
        })
        .unwrap_or(0);
    let max_out = body["max_tokens"]
        .as_f64()
        .or(body["max_completion_tokens"].as_f64())
        .unwrap_or(0.0);
    chars as f64 / 4.0 + max_out
}

async fn chat(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let now = Instant::now();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let input = body["messages"][1]["content"]
        .as_str()
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let auth_ok;
    let (fault, limited, latency, content, rl_headers);
    {
        let mut g = inner.lock().unwrap();
        let want = format!("Bearer {}", g.cfg.api_key);
        auth_ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str());
        // Rate limits are checked first, as real providers do; a rejected request is not charged.
        let cost = request_tokens(&body);
        let mut retry: Option<Duration> = None;
        let mut hdrs = Vec::new();
        if let Some(b) = g.requests.as_mut() {
            b.refill(now);
            if b.level < 1.0 {
                retry = Some(b.reset_in(1.0));
            }
        }
        if let Some(b) = g.tokens.as_mut() {
            b.refill(now);
            if b.level < cost.min(b.capacity) {
                retry = Some(
                    retry
                        .unwrap_or_default()
                        .max(b.reset_in(cost.min(b.capacity))),
                );
            }
        }
        if retry.is_none() {
            let with_limit = g.cfg.limit_headers;
            let st = &mut *g;
            for (name, bucket, amount) in [
                ("requests", st.requests.as_mut(), 1.0),
                ("tokens", st.tokens.as_mut(), cost),
            ] {
                let Some(b) = bucket else { continue };
                b.level -= amount;
                if with_limit {
                    hdrs.push((
                        format!("x-ratelimit-limit-{name}"),
                        format!("{:.0}", b.rate * 60.0),
                    ));
                }
                hdrs.push((
                    format!("x-ratelimit-remaining-{name}"),
                    format!("{:.0}", b.level.max(0.0).floor()),
                ));
                // OpenAI's reset: the time until the bucket is full again.
                hdrs.push((
                    format!("x-ratelimit-reset-{name}"),
                    format!("{}ms", b.reset_in(b.capacity).as_millis()),
                ));
            }
        }
        limited = retry;
        fault = if !auth_ok || limited.is_some() {
            None
        } else if let Some(f) = g.script.pop_front() {
            Some(f)
        } else {
            // Drawn from (seed, input, how often this input was seen) rather than arrival
            // order, so a test's fault pattern is the same however requests interleave.
            let nth = g.arrivals.entry(input.clone()).or_insert(0);
            *nth += 1;
            let nth = *nth;
            let r = fault_draw(g.cfg.seed, &input, nth);
            let mut acc = 0.0;
            let faults = g.cfg.random_faults.clone();
            faults.into_iter().find_map(|(f, p)| {
                acc += p;
                (r < acc).then_some(f)
            })
        };
        latency = g.cfg.latency;
        content = (g.cfg.responder)(&body);
        rl_headers = hdrs;
        let status = if !auth_ok {
            401
        } else if limited.is_some() {
            429
        } else {
            match &fault {
                None
                | Some(
                    Fault::Malformed
                    | Fault::SchemaViolation
                    | Fault::Truncated
                    | Fault::Reset
                    | Fault::Hang,
                ) => 200,
                Some(Fault::Status500) => 500,
                Some(Fault::Status503) => 503,
                Some(Fault::RateLimit { .. } | Fault::InsufficientQuota) => 429,
                Some(Fault::Unauthorized) => 401,
                Some(Fault::ContextTooLong) => 400,
                Some(Fault::ModelNotFound) => 404,
            }
        };
        g.seen.push(Seen {
            at: now,
            status,
            fault: fault.clone(),
            input,
            body: body.clone(),
        });
    }
    if !auth_ok {
        return error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_api_key",
        );
    }
    if let Some(wait) = limited {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit reached for requests",
            "rate_limit_exceeded",
        );
        r.headers_mut().insert(
            "retry-after-ms",
            HeaderValue::from_str(&wait.as_millis().to_string()).unwrap(),
        );
        r.headers_mut().insert(
            "retry-after",
            HeaderValue::from_str(&wait.as_secs().max(1).to_string()).unwrap(),
        );
        return r;
    }
    let ok_body = |content: &str, finish: &str| {
        json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": (request_tokens(&body) - body["max_tokens"].as_f64().or(body["max_completion_tokens"].as_f64()).unwrap_or(0.0)) as u64,
                "completion_tokens": content.len() as u64 / 4,
                "total_tokens": 0
            }
        })
    };
    let mut resp = match fault {
        Some(Fault::Status500) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error",
            "server_error",
        ),
        Some(Fault::Status503) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "Overloaded", "overloaded")
        }
        Some(Fault::RateLimit { retry_after_ms }) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached",
                "rate_limit_exceeded",
            );
            r.headers_mut().insert(
                "retry-after-ms",
                HeaderValue::from_str(&retry_after_ms.to_string()).unwrap(),
            );
            r.headers_mut().insert(
                "retry-after",
                HeaderValue::from_str(&(retry_after_ms / 1000).max(1).to_string()).unwrap(),
            );
            return r;
        }
        Some(Fault::InsufficientQuota) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "You exceeded your current quota",
                "insufficient_quota",
            );
        }
        Some(Fault::Unauthorized) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "Incorrect API key provided.",
                "invalid_api_key",
            );
        }
        Some(Fault::ContextTooLong) => {
            return error(
                StatusCode::BAD_REQUEST,
                "This model's maximum context length is 128000 tokens.",
                "context_length_exceeded",
            );
        }
        Some(Fault::ModelNotFound) => {
            return error(
                StatusCode::NOT_FOUND,
                "The model `x` does not exist",
                "model_not_found",
            );
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Some(Fault::Reset) => {
            tokio::time::sleep(latency).await;
            let stream = futures::stream::iter(vec![
                Ok::<_, std::io::Error>(bytes_of("{\"id\": \"chatcmpl-mock\", \"choi")),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset",
                )),
            ]);
            return Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap();
        }
        Some(Fault::Malformed) => {
            tokio::time::sleep(latency).await;
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"choices\": [ this is not json",
            )
                .into_response()
        }
        Some(Fault::SchemaViolation) => {
            tokio::time::sleep(latency).await;
            axum::Json(ok_body(
                r#"{"title": 42, "summary": "nothing useful"}"#,
                "stop",
            ))
            .into_response()
        }
        Some(Fault::Truncated) => {
            tokio::time::sleep(latency).await;
            let cut: String = content.chars().take(content.len() / 3).collect();
            axum::Json(ok_body(&cut, "length")).into_response()
        }
        None => {
            tokio::time::sleep(latency).await;
            axum::Json(ok_body(&content, "stop")).into_response()
        }
    };
    for (k, v) in rl_headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    resp
}

fn bytes_of(s: &str) -> axum::body::Bytes {
    axum::body::Bytes::copy_from_slice(s.as_bytes())
}

/// Neutral sentences without figures, tier or position words; [`domain_summary_responder`]
/// writes each entity's summary from its own choice and order of them, so two entities' texts
/// are not near-duplicates (the run's near-duplicate gate would regenerate those).
const SENTENCES: [&str; 20] = [
    "The shop is compared with similar shops over the last twelve months.",
    "It shows a balanced picture across traffic, conversion and order value, with clear strengths and some room to improve.",
    "Shoppers can expect a familiar range and steady service, while analysts will note how its position shifts as new data arrives.",
    "The comparison uses ranges and tiers rather than exact figures, so the page describes relative standing only.",
    "Growth compared with the previous year is part of the picture, as are returning customers and the share of visits from mobile devices.",
    "Taken together, these measures give a fair view of how the shop performs against its peers and where competitors lead.",
    "Every statement on this page rests on the same monthly reports that the other shops of its category deliver.",
    "Seasonal swings are smoothed out because the whole year is considered instead of single weeks.",
    "Readers who follow the category will find the usual signals of demand, loyalty and basket size discussed here.",
    "Nothing on this page is a forecast; it describes what the recent months have already shown.",
    "Visitors arriving from phones and from desktops are both counted, which keeps the view of demand complete.",
    "The shop keeps a steady presence in its market, and the data shows no sudden break in its course.",
    "Changes in the coming months will move this description as soon as the new reports are in.",
    "Its customers return at a rate that can be read against the habits of the whole category.",
    "Order values are described in bands, which protects the details the shop has not made public.",
    "The picture painted here is meant for comparison, not as a verdict on the quality of the business.",
    "Where the figures are thin, the text stays cautious and says less rather than guessing more.",
    "A quiet month does not change the overall reading, since the whole period is weighed together.",
    "Those who shop here see the same catalogue depth that the category is known for.",
    "Marketing, pricing and delivery all play into the results, though the data cannot separate them cleanly.",
];

/// A valid answer for the example `domain_summaries` job: the entity's name from the prompt's
/// first line ("Domain: NAME"), 130+ words without any figure (sentences of [`SENTENCES`]
/// chosen and ordered by a hash of the name), 3 highlights, no FAQ.
pub fn domain_summary_responder(body: &Value) -> String {
    let user = body["messages"][1]["content"].as_str().unwrap_or("");
    let name = user
        .lines()
        .next()
        .and_then(|l| l.split_once(": "))
        .map_or("this shop", |(_, n)| n)
        .trim();
    let mut order: Vec<usize> = (0..SENTENCES.len()).collect();
    let mut h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    for i in (1..order.len()).rev() {
        h ^= h >> 29;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        order.swap(i, (h % (i as u64 + 1)) as usize);
    }
    let mut summary = format!("{name} is one of the shops tracked here.");
    for &i in &order {
        if summary.split_whitespace().count() >= 150 {
            break;
        }
        summary.push(' ');
        summary.push_str(SENTENCES[i]);
    }
    json!({
        "title": format!("{name} overview").chars().take(60).collect::<String>(),
        "meta_description": format!("How {name} compares with similar shops on traffic, conversion and growth.").chars().take(160).collect::<String>(),
        "h1": format!("{name} at a glance"),
        "summary": summary,
        "highlights": ["Balanced performance", "Compared with similar shops", "Ranges instead of exact figures"],
        "faq": []
    })
    .to_string()
}

fn authorized(inner: &Mutex<Inner>, headers: &HeaderMap) -> bool {
    let want = format!("Bearer {}", inner.lock().unwrap().cfg.api_key);
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

fn batch_json(b: &MockBatch) -> Value {
    json!({
        "id": b.id, "object": "batch", "endpoint": "/v1/chat/completions", "status": b.status,
        "input_file_id": b.input_file_id, "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
        "completion_window": "24h", "request_counts": {"total": b.requests}
    })
}

async fn upload(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    if !authorized(&inner, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_api_key",
        );
    }
    let mut content = None;
    let mut purpose = None;
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("file") => content = field.text().await.ok(),
            Some("purpose") => purpose = field.text().await.ok(),
            _ => {}
        }
    }
    let (Some(content), Some("batch")) = (content, purpose.as_deref()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "file and purpose=batch are required",
            "invalid_request",
        );
    };
    let mut g = inner.lock().unwrap();
    let id = format!("file-{}", g.files.len() + 1);
    let bytes = content.len();
    g.files.insert(id.clone(), content);
    axum::Json(json!({"id": id, "object": "file", "purpose": "batch", "bytes": bytes}))
        .into_response()
}

async fn file_content(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&inner, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_api_key",
        );
    }
    let mut g = inner.lock().unwrap();
    for b in g.batches.iter_mut() {
        if b.output_file_id.as_deref() == Some(id.as_str()) {
            b.downloads += 1;
        }
    }
    match g.files.get(&id) {
        Some(c) => c.clone().into_response(),
        None => error(StatusCode::NOT_FOUND, "No such file", "not_found"),
    }
}

async fn list_batches(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    if !authorized(&inner, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_api_key",
        );
    }
    let g = inner.lock().unwrap();
    axum::Json(json!({"object": "list", "data": g.batches.iter().rev().map(batch_json).collect::<Vec<_>>()})).into_response()
}

async fn get_batch(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&inner, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_api_key",
        );
    }
    let g = inner.lock().unwrap();
    match g.batches.iter().find(|b| b.id == id) {
        Some(b) => axum::Json(batch_json(b)).into_response(),
        None => error(StatusCode::NOT_FOUND, "No such batch", "not_found"),
    }
}

async fn create_batch(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !authorized(&inner, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_api_key",
        );
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let file_id = v["input_file_id"].as_str().unwrap_or("").to_string();
    let (id, delay, lines) = {
        let mut g = inner.lock().unwrap();
        let Some(input) = g.files.get(&file_id).cloned() else {
            return error(
                StatusCode::BAD_REQUEST,
                "input file not found",
                "invalid_request",
            );
        };
        let id = format!("batch-{}", g.batches.len() + 1);
        let lines: Vec<Value> = input
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        g.batches.push(MockBatch {
            id: id.clone(),
            input_file_id: file_id,
            status: "validating".into(),
            output_file_id: None,
            error_file_id: None,
            requests: lines.len(),
            downloads: 0,
            custom_ids: lines
                .iter()
                .map(|l| l["custom_id"].as_str().unwrap_or_default().to_string())
                .collect(),
            expired: Vec::new(),
        });
        (id, g.cfg.batch_delay, lines)
    };
    let task_inner = inner.clone();
    let task_id = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay / 2).await;
        set_status(&task_inner, &task_id, "in_progress");
        tokio::time::sleep(delay / 2).await;
        let mut g = task_inner.lock().unwrap();
        let (fail, expire) = (g.cfg.batch_fail_every, g.cfg.batch_expire_every);
        let (mut out, mut err) = (String::new(), String::new());
        let mut expired = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let cid = line["custom_id"].clone();
            let body = &line["body"];
            if expire.is_some_and(|n| (i + 1) % n == 1 % n) && i > 0 {
                err.push_str(&json!({"id": format!("req-{i}"), "custom_id": cid, "response": null,
                    "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}).to_string());
                err.push('\n');
                expired.push(cid.as_str().unwrap_or_default().to_string());
                continue;
            }
            let response = if fail.is_some_and(|n| (i + 1) % n == 0) {
                json!({"status_code": 500, "body": {"error": {"message": "The server had an error"}}})
            } else {
                let content = (g.cfg.responder)(body);
                json!({"status_code": 200, "body": {
                    "id": format!("chatcmpl-{i}"), "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": (request_tokens(body) as u64).saturating_sub(body["max_tokens"].as_u64().or(body["max_completion_tokens"].as_u64()).unwrap_or(0)), "completion_tokens": content.len() as u64 / 4}
                }})
            };
            out.push_str(&json!({"id": format!("req-{i}"), "custom_id": cid, "response": response, "error": null}).to_string());
            out.push('\n');
        }
        let n = g.files.len();
        let out_id = format!("file-{}", n + 1);
        let err_id = format!("file-{}", n + 2);
        g.files.insert(out_id.clone(), out);
        let has_err = !err.is_empty();
        g.files.insert(err_id.clone(), err);
        if let Some(b) = g.batches.iter_mut().find(|b| b.id == task_id) {
            b.status = if expired.is_empty() {
                "completed"
            } else {
                "expired"
            }
            .into();
            b.expired = expired;
            b.output_file_id = Some(out_id);
            b.error_file_id = has_err.then_some(err_id);
        }
    });
    let g = inner.lock().unwrap();
    axum::Json(batch_json(g.batches.iter().find(|b| b.id == id).unwrap())).into_response()
}

fn set_status(inner: &Mutex<Inner>, id: &str, status: &str) {
    if let Some(b) = inner
        .lock()
        .unwrap()
        .batches
        .iter_mut()
        .find(|b| b.id == id)
    {
        b.status = status.into();
    }
}

/// A uniform number in [0, 1) fixed by the seed, the input and its arrival count.
fn fault_draw(seed: u64, input: &str, nth: usize) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (seed, input, nth).hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
