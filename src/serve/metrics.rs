//! Prometheus metrics of the service (`GET /metrics`): HTTP requests and latencies, LLM calls,
//! tokens, cost and errors, on-demand generations, runs, and the task queue's depth.

use crate::llm::{ChatRequest, ChatResponse, Provider, ProviderError};
use crate::store::AttemptOutcome;
use async_trait::async_trait;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    http_requests: Family<Labels, Counter>,
    http_seconds: Family<Labels, Histogram>,
    llm_calls: Family<Labels, Counter>,
    llm_tokens: Family<Labels, Counter>,
    llm_cost: Counter<f64, AtomicU64>,
    generations: Family<Labels, Counter>,
    runs: Family<Labels, Counter>,
    queue_depth: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("shopscribe");
        let http_requests = Family::<Labels, Counter>::default();
        let http_seconds = Family::<Labels, Histogram>::new_with_constructor(|| {
            // 0.25 ms … ~65 s: cached answers land in the first buckets, generations late.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.00025, 2.0, 19,
            ))
        });
        let llm_calls = Family::<Labels, Counter>::default();
        let llm_tokens = Family::<Labels, Counter>::default();
        let llm_cost = Counter::<f64, AtomicU64>::default();
        let generations = Family::<Labels, Counter>::default();
        let runs = Family::<Labels, Counter>::default();
        let queue_depth = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http_seconds.clone(),
        );
        registry.register(
            "llm_calls",
            "LLM calls made by this process, by outcome (ok or the error kind)",
            llm_calls.clone(),
        );
        registry.register(
            "llm_tokens",
            "LLM tokens used by this process, by kind (prompt, completion)",
            llm_tokens.clone(),
        );
        registry.register(
            "llm_cost_usd",
            "LLM spend of this process in USD, from the configured prices",
            llm_cost.clone(),
        );
        registry.register(
            "ondemand_generations",
            "On-demand generations by the API, by result",
            generations.clone(),
        );
        registry.register(
            "runs",
            "Runs started by this process (API or watch), by job and status",
            runs.clone(),
        );
        registry.register(
            "task_queue_depth",
            "Distributed tasks pending or running (PostgreSQL store)",
            queue_depth.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_seconds,
            llm_calls,
            llm_tokens,
            llm_cost,
            generations,
            runs,
            queue_depth,
        }
    }

    pub fn http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("method", method.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.http_seconds
            .get_or_create(&vec![("route", route.to_string())])
            .observe(seconds);
    }

    pub fn generation(&self, result: &str) {
        self.generations
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
    }

    pub fn run(&self, job: &str, status: &str) {
        self.runs
            .get_or_create(&vec![
                ("job", job.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    pub fn set_queue_depth(&self, n: u64) {
        self.queue_depth.set(n as i64);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// A provider that counts what passes through it into [`Metrics`].
pub struct Metered {
    inner: Arc<dyn Provider>,
    metrics: Arc<Metrics>,
    price: Option<crate::config::Price>,
}

impl Metered {
    pub fn new(
        inner: Arc<dyn Provider>,
        metrics: Arc<Metrics>,
        price: Option<crate::config::Price>,
    ) -> Metered {
        Metered {
            inner,
            metrics,
            price,
        }
    }
}

#[async_trait]
impl Provider for Metered {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn model(&self) -> &str {
        self.inner.model()
    }
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let result = self.inner.complete(request).await;
        let m = &self.metrics;
        let usage = match &result {
            Ok(r) => Some(r.usage),
            Err(ProviderError::Truncated { usage, .. }) => Some(*usage),
            Err(_) => None,
        };
        let outcome = match &result {
            Ok(_) => AttemptOutcome::Ok,
            Err(e) => AttemptOutcome::from(e),
        }
        .as_str();
        m.llm_calls
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
        if let Some(u) = usage {
            m.llm_tokens
                .get_or_create(&vec![("kind", "prompt".to_string())])
                .inc_by(u.prompt_tokens as u64);
            m.llm_tokens
                .get_or_create(&vec![("kind", "completion".to_string())])
                .inc_by(u.completion_tokens as u64);
            if let Some(p) = self.price {
                m.llm_cost.inc_by(p.cost(
                    u.prompt_tokens as u64,
                    u.completion_tokens as u64,
                    false,
                ));
            }
        }
        result
    }
    fn estimate_tokens(&self, text: &str) -> u32 {
        self.inner.estimate_tokens(text)
    }
    fn batch_api(&self) -> Option<&dyn crate::llm::batch::BatchApi> {
        self.inner.batch_api()
    }
    fn request_body(&self, request: &ChatRequest) -> Option<serde_json::Value> {
        self.inner.request_body(request)
    }
    fn set_rate_share(&self, share: f64) {
        self.inner.set_rate_share(share)
    }
    fn rate_limiter(&self) -> Option<(&crate::llm::limiter::Limiter, String)> {
        self.inner.rate_limiter()
    }
}
