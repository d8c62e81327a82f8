//! The OpenAI-compatible provider: chat completions against any `base_url` (OpenAI, Ollama,
//! vLLM, llama.cpp server, OpenRouter…), paced by the shared [`Limiter`], with every HTTP outcome
//! classified into retryable, fatal-for-the-row or fatal-for-the-run.

use super::limiter::{Limiter, LimiterConfig, RateLimitHeaders};
use super::{ChatRequest, ChatResponse, Provider, ProviderError, Usage};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How the output format is requested from the server (a setting, so it is declared in config).
pub use crate::config::StructuredOutput;

#[derive(Clone)]
pub struct OpenAiConfig {
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub structured_output: StructuredOutput,
    /// `max_completion_tokens` (OpenAI's current name) or `max_tokens` (older servers).
    pub max_tokens_field: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub limits: LimiterConfig,
}

impl std::fmt::Debug for OpenAiConfig {
    // The key never reaches a log line, not even through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"***")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

pub struct OpenAiProvider {
    cfg: OpenAiConfig,
    batch: Option<super::batch::BatchClient>,
    client: reqwest::Client,
    limiter: Arc<Limiter>,
    url: String,
}

impl OpenAiProvider {
    pub fn new(cfg: OpenAiConfig) -> Result<OpenAiProvider, ProviderError> {
        let client = http_client(cfg.connect_timeout, cfg.request_timeout, &cfg.limits)?;
        let url = format!("{}/chat/completions", cfg.base_url.trim_end_matches('/'));
        let limiter = Arc::new(Limiter::new(cfg.limits));
        Ok(OpenAiProvider {
            cfg,
            batch: None,
            client,
            limiter,
            url,
        })
    }

    /// Runs work through the Batch API (real-time calls remain for follow-up retries).
    pub fn with_batch(mut self, batch: super::batch::BatchClient) -> OpenAiProvider {
        self.batch = Some(batch);
        self
    }

    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    pub fn body(&self, req: &ChatRequest) -> Value {
        let mut body = json!({
            "model": self.cfg.model,
            "messages": [
                {"role": "system", "content": req.system},
                {"role": "user", "content": req.user},
            ],
            "temperature": req.temperature,
        });
        body[self.cfg.max_tokens_field.as_str()] = json!(req.max_output_tokens);
        match self.cfg.structured_output {
            StructuredOutput::JsonSchema => {
                body["response_format"] = json!({
                    "type": "json_schema",
                    "json_schema": {"name": "output", "strict": true, "schema": strict_schema(&req.schema)},
                })
            }
            StructuredOutput::JsonObject => {
                body["response_format"] = json!({"type": "json_object"})
            }
            StructuredOutput::None => {}
        }
        body
    }
}

/// The schema as sent in strict mode: keywords that strict structured outputs reject (length and
/// count bounds, formats, patterns, `$schema`) are dropped; the local validator still enforces
/// the full schema on every answer.
pub fn strict_schema(schema: &Value) -> Value {
    const DROP: &[&str] = &[
        "$schema",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "pattern",
        "format",
        "minimum",
        "maximum",
    ];
    match schema {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !DROP.contains(&k.as_str()))
                .map(|(k, v)| {
                    // Inside `properties` the keys are field names, not keywords.
                    let v = if k == "properties" {
                        match v {
                            Value::Object(p) => Value::Object(
                                p.iter()
                                    .map(|(pk, pv)| (pk.clone(), strict_schema(pv)))
                                    .collect(),
                            ),
                            other => other.clone(),
                        }
                    } else {
                        strict_schema(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strict_schema).collect()),
        other => other.clone(),
    }
}

/// Tokens of a text with the model's tokenizer: o200k_base for the GPT-4o / 4.1 / 5 and o-series
/// families, cl100k_base otherwise (an approximation for non-OpenAI models).
pub fn count_tokens(model: &str, text: &str) -> u32 {
    static O200K: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    static CL100K: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    let m = model.to_ascii_lowercase();
    let o200k = ["gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o"]
        .iter()
        .any(|p| m.starts_with(p));
    let bpe = if o200k {
        O200K.get_or_init(|| tiktoken_rs::o200k_base().ok())
    } else {
        CL100K.get_or_init(|| tiktoken_rs::cl100k_base().ok())
    };
    match bpe {
        Some(b) => b.encode_ordinary(text).len() as u32,
        None => super::estimate_tokens_heuristic(text),
    }
}

fn error_fields(body: &str) -> (String, String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let e = &v["error"];
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    let message = if e["message"].is_string() {
        s("message")
    } else {
        body.chars().take(300).collect()
    };
    (message, s("code"), s("param"))
}

/// Maps an HTTP error status and body to what the run should do.
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> ProviderError {
    let (message, code, param) = error_fields(body);
    let lower = message.to_lowercase();
    match status {
        401 | 403 => ProviderError::Fatal(format!(
            "the API key was rejected (HTTP {status}): {message}; check the key's variable and its permissions"
        )),
        404 => ProviderError::Fatal(format!(
            "not found (HTTP 404): {message}; check llm.model and llm.base_url"
        )),
        429 if code == "insufficient_quota" || lower.contains("quota") => ProviderError::Fatal(
            format!("the account has no quota left (HTTP 429): {message}"),
        ),
        429 => ProviderError::RateLimited { retry_after },
        400 if code == "context_length_exceeded"
            || lower.contains("context length")
            || lower.contains("too many tokens") =>
        {
            ProviderError::ContextTooLong(format!(
                "the prompt is too long for the model: {message}"
            ))
        }
        400 if param.contains("response_format")
            || code == "model_not_found"
            || lower.contains("response_format") =>
        {
            ProviderError::Fatal(format!(
                "the server rejects the request format (HTTP 400): {message}; try llm.structured_output = \"json_object\" or \"none\""
            ))
        }
        408 | 409 | 425 => ProviderError::Transient(format!("HTTP {status}: {message}")),
        s if s >= 500 => ProviderError::Transient(format!("HTTP {status}: {message}")),
        _ => ProviderError::InvalidRequest(format!("HTTP {status}: {message}")),
    }
}

/// The HTTP client of a provider: its timeouts, and an idle pool as large as its in-flight cap
/// (so a full wave of requests reuses connections).
pub(crate) fn http_client(
    connect_timeout: Duration,
    request_timeout: Duration,
    limits: &LimiterConfig,
) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .pool_max_idle_per_host(limits.max_in_flight.max(8))
        .build()
        .map_err(ProviderError::Client)
}

pub(crate) fn transport_error(e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Transient("the request timed out".into())
    } else if e.is_connect() {
        ProviderError::Transient(format!("cannot connect: {}", without_url(e)))
    } else {
        ProviderError::Transient(format!("transport error: {}", without_url(e)))
    }
}

/// reqwest errors print the URL; ours never carries secrets, but keep messages short.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "");
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        if self.batch.is_some() {
            "openai-batch"
        } else {
            "openai"
        }
    }
    fn model(&self) -> &str {
        &self.cfg.model
    }
    fn estimate_tokens(&self, text: &str) -> u32 {
        count_tokens(&self.cfg.model, text)
    }
    fn set_rate_share(&self, share: f64) {
        self.limiter.set_share(share);
    }
    fn rate_limiter(&self) -> Option<(&Limiter, String)> {
        let key = super::limiter::store_key(&self.cfg.base_url, &self.cfg.model);
        Some((&self.limiter, key))
    }
    fn batch_api(&self) -> Option<&dyn super::batch::BatchApi> {
        self.batch
            .as_ref()
            .map(|b| b as &dyn super::batch::BatchApi)
    }
    fn request_body(&self, request: &ChatRequest) -> Option<Value> {
        Some(self.body(request))
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        // Per-message overhead of the chat format is a few tokens; count it generously.
        let prompt = count_tokens(&self.cfg.model, &req.system)
            + count_tokens(&self.cfg.model, &req.user)
            + 12;
        let estimated = prompt + req.max_output_tokens;
        let permit = self.limiter.acquire(estimated).await;
        let start = Instant::now();
        let sent = self
            .client
            .post(&self.url)
            .bearer_auth(&self.cfg.api_key)
            .json(&self.body(req))
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                // Nothing was consumed that we know of: give the token estimate back.
                self.limiter.reconcile(estimated, 0);
                return Err(transport_error(&e));
            }
        };
        let status = resp.status().as_u16();
        let headers = RateLimitHeaders::from_headers(resp.headers());
        self.limiter.observe(&headers, &permit);
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => {
                self.limiter.reconcile(estimated, 0);
                return Err(transport_error(&e));
            }
        };
        drop(permit);
        if status != 200 {
            self.limiter.reconcile(estimated, 0);
            let err = classify(status, &text, headers.retry_after);
            if let ProviderError::RateLimited { retry_after } = &err {
                self.limiter.rate_limited(*retry_after);
            }
            return Err(err);
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ProviderError::Transient(format!("the response body is not JSON: {e}")))?;
        let usage = Usage {
            prompt_tokens: v["usage"]["prompt_tokens"]
                .as_u64()
                .unwrap_or(prompt as u64) as u32,
            completion_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0) as u32,
        };
        self.limiter
            .reconcile(estimated, usage.prompt_tokens + usage.completion_tokens);
        let choice = &v["choices"][0];
        let content = choice["message"]["content"].as_str();
        match (choice["finish_reason"].as_str(), content) {
            (_, None) if choice["message"]["refusal"].is_string() => {
                Err(ProviderError::InvalidRequest(format!(
                    "the model refused: {}",
                    choice["message"]["refusal"].as_str().unwrap_or_default()
                )))
            }
            (Some("length"), c) => Err(ProviderError::Truncated {
                content: c.unwrap_or_default().to_string(),
                usage,
            }),
            (Some("content_filter"), _) => Err(ProviderError::InvalidRequest(
                "the provider's content filter stopped the answer".into(),
            )),
            (_, Some(c)) => Ok(ChatResponse {
                content: c.to_string(),
                usage,
                latency: start.elapsed(),
            }),
            (_, None) => Err(ProviderError::Transient(
                "the response has no message content".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        use super::super::ErrorClass::*;
        let c = |s, b: &str| classify(s, b, None).class();
        assert_eq!(
            c(
                401,
                r#"{"error":{"message":"Incorrect API key","code":"invalid_api_key"}}"#
            ),
            FatalForRun
        );
        assert_eq!(c(403, ""), FatalForRun);
        assert_eq!(
            c(
                404,
                r#"{"error":{"message":"The model `x` does not exist","code":"model_not_found"}}"#
            ),
            FatalForRun
        );
        assert_eq!(
            c(
                429,
                r#"{"error":{"message":"You exceeded your current quota","code":"insufficient_quota"}}"#
            ),
            FatalForRun
        );
        assert_eq!(
            c(429, r#"{"error":{"message":"Rate limit reached"}}"#),
            Retryable
        );
        assert_eq!(
            c(
                400,
                r#"{"error":{"message":"maximum context length is 128000 tokens","code":"context_length_exceeded"}}"#
            ),
            FatalForRow
        );
        assert_eq!(
            c(
                400,
                r#"{"error":{"message":"Invalid schema for response_format 'output'","param":"response_format"}}"#
            ),
            FatalForRun
        );
        assert_eq!(c(408, ""), Retryable);
        assert_eq!(c(500, "oops"), Retryable);
        assert_eq!(c(503, ""), Retryable);
        assert_eq!(c(422, "{}"), FatalForRow);
    }

    #[test]
    fn strict_schema_drops_unsupported_keywords_but_keeps_fields() {
        let s = json!({"$schema": "x", "type": "object", "properties": {
            "title": {"type": "string", "maxLength": 60},
            "format": {"type": "string"},
            "items": {"type": "array", "minItems": 3, "items": {"type": "string", "minLength": 5}}
        }});
        let out = strict_schema(&s);
        assert_eq!(
            out,
            json!({"type": "object", "properties": {
                "title": {"type": "string"},
                "format": {"type": "string"},
                "items": {"type": "array", "items": {"type": "string"}}
            }})
        );
    }

    #[test]
    fn tokens_are_counted_with_the_model_tokenizer() {
        let n = count_tokens(
            "gpt-4o-mini",
            "Hello world, this is a test of the tokenizer.",
        );
        assert!((8..=14).contains(&n), "{n}");
        assert!(count_tokens("llama3", "Hello world") >= 2);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let cfg = OpenAiConfig {
            base_url: "http://x".into(),
            api_key: "sk-secret-123".into(),
            model: "m".into(),
            structured_output: StructuredOutput::None,
            max_tokens_field: "max_tokens".into(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            limits: LimiterConfig {
                requests_per_minute: 1.0,
                tokens_per_minute: 1.0,
                max_in_flight: 1,
            },
        };
        assert!(!format!("{cfg:?}").contains("sk-secret"));
    }
}
