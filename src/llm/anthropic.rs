//! The Anthropic provider: the Messages API (`POST {base_url}/messages`) with the system prompt,
//! `max_tokens`, and the JSON output requested through one forced tool whose `input_schema` is
//! the job's schema (the answer is the tool call's input, validated locally as always). Paced by
//! the shared [`Limiter`] from the `anthropic-ratelimit-*` headers (requests, input tokens and
//! output tokens), `retry-after` honoured, overloaded (529) retried like any 5xx.

use super::limiter::{Limiter, LimiterConfig, RateLimitHeaders};
use super::{ChatRequest, ChatResponse, Provider, ProviderError, Usage};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The API version every request names (the Messages API's stable version).
pub const API_VERSION: &str = "2023-06-01";
/// The one tool the model is made to call; its input is the answer.
pub const OUTPUT_TOOL: &str = "write_output";
/// Claude's tokenizer counts more tokens than cl100k for the same English text; the local
/// estimate scales cl100k by this so budgets are not undercounted (real usage reconciles).
const TOKENIZER_MARGIN: f64 = 1.2;

#[derive(Clone)]
pub struct AnthropicConfig {
    /// Up to and including `/v1`, e.g. `https://api.anthropic.com/v1`.
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub limits: LimiterConfig,
}

impl std::fmt::Debug for AnthropicConfig {
    // The key never reaches a log line, not even through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"***")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

pub struct AnthropicProvider {
    cfg: AnthropicConfig,
    client: reqwest::Client,
    limiter: Arc<Limiter>,
    url: String,
    /// Message Batches, for `provider = "anthropic-batch"`.
    batch: Option<super::batch::anthropic::AnthropicBatchClient>,
}

impl AnthropicProvider {
    pub fn new(cfg: AnthropicConfig) -> Result<AnthropicProvider, ProviderError> {
        let client =
            super::openai::http_client(cfg.connect_timeout, cfg.request_timeout, &cfg.limits)?;
        let url = format!("{}/messages", cfg.base_url.trim_end_matches('/'));
        let limiter = Arc::new(Limiter::new(cfg.limits));
        Ok(AnthropicProvider {
            cfg,
            client,
            limiter,
            url,
            batch: None,
        })
    }

    /// Runs go through Message Batches; real-time calls remain for retries and serve.
    pub fn with_batch(
        mut self,
        batch: super::batch::anthropic::AnthropicBatchClient,
    ) -> AnthropicProvider {
        self.batch = Some(batch);
        self
    }

    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// The Messages API body of a request (also the `params` of a Message Batches request).
    pub fn body(&self, req: &ChatRequest) -> Value {
        json!({
            "model": self.cfg.model,
            "max_tokens": req.max_output_tokens,
            "system": req.system,
            "messages": [{"role": "user", "content": req.user}],
            // The Messages API accepts 0–1 (OpenAI's scale goes to 2).
            "temperature": req.temperature.clamp(0.0, 1.0),
            "tools": [{
                "name": OUTPUT_TOOL,
                "description": "Write the answer. Its input is the whole answer, as the schema describes.",
                "input_schema": tool_schema(&req.schema),
            }],
            "tool_choice": {"type": "tool", "name": OUTPUT_TOOL},
        })
    }

    fn prompt_tokens(&self, req: &ChatRequest) -> u32 {
        // The tool definition is part of the prompt too.
        let schema = req.schema.to_string();
        self.estimate_tokens(&req.system)
            + self.estimate_tokens(&req.user)
            + self.estimate_tokens(&schema)
            + 16
    }
}

/// The job's schema as a tool's `input_schema`: the meta-schema reference is dropped (the API
/// wants a plain object schema); the local validator still enforces the full schema.
pub fn tool_schema(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Value::Object(o) = &mut s {
        o.remove("$schema");
    }
    s
}

/// Tokens of a text as Claude's tokenizer is likely to count them (see [`TOKENIZER_MARGIN`]).
pub fn estimate_claude_tokens(text: &str) -> u32 {
    let cl100k = super::openai::count_tokens("claude", text) as f64;
    (cl100k * TOKENIZER_MARGIN).ceil() as u32
}

/// Maps an HTTP error status and the API's error body (`{"type": "error", "error": {"type",
/// "message"}}`) to what the run should do.
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> ProviderError {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let kind = v["error"]["type"].as_str().unwrap_or_default();
    let message = v["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.chars().take(300).collect());
    let lower = message.to_lowercase();
    match (status, kind) {
        (401, _) | (_, "authentication_error") => ProviderError::Fatal(format!(
            "the API key was rejected (HTTP {status}): {message}; check the key's variable"
        )),
        (403, _) | (_, "permission_error") => ProviderError::Fatal(format!(
            "the API key may not use this (HTTP {status}): {message}"
        )),
        (404, _) | (_, "not_found_error") => ProviderError::Fatal(format!(
            "not found (HTTP 404): {message}; check llm.model and llm.base_url"
        )),
        (400, _) if lower.contains("credit balance") => ProviderError::Fatal(format!(
            "the account has no credit left (HTTP 400): {message}"
        )),
        (400, _) if lower.contains("prompt is too long") || lower.contains("too many tokens") => {
            ProviderError::ContextTooLong(format!(
                "the prompt is too long for the model: {message}"
            ))
        }
        (429, _) | (_, "rate_limit_error") => ProviderError::RateLimited { retry_after },
        // 529: the API is overloaded for everyone, not this account: retry with backoff.
        (529, _) | (_, "overloaded_error") => {
            ProviderError::Transient(format!("the API is overloaded (HTTP {status}): {message}"))
        }
        (408 | 409 | 425, _) => ProviderError::Transient(format!("HTTP {status}: {message}")),
        (s, _) if s >= 500 => ProviderError::Transient(format!("HTTP {status}: {message}")),
        _ => ProviderError::InvalidRequest(format!("HTTP {status}: {message}")),
    }
}

/// A successful Messages API answer: the forced tool call's input as the content, or the text
/// when the model answered in text after all (the validator then judges it).
pub fn parse_message(v: &Value, latency: Duration) -> Result<ChatResponse, ProviderError> {
    let usage = Usage {
        prompt_tokens: v["usage"]["input_tokens"].as_u64().unwrap_or(0) as u32,
        completion_tokens: v["usage"]["output_tokens"].as_u64().unwrap_or(0) as u32,
    };
    let blocks = v["content"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let tool_input = blocks
        .iter()
        .find(|b| b["type"] == "tool_use" && b["name"] == OUTPUT_TOOL)
        .map(|b| b["input"].to_string());
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    let content = tool_input.unwrap_or(text);
    match v["stop_reason"].as_str() {
        Some("max_tokens") => Err(ProviderError::Truncated { content, usage }),
        Some("refusal") => Err(ProviderError::InvalidRequest(
            "the model declined to answer".into(),
        )),
        _ if content.trim().is_empty() => Err(ProviderError::Transient(
            "the answer has neither a tool call nor text".into(),
        )),
        _ => Ok(ChatResponse {
            content,
            usage,
            latency,
        }),
    }
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        if self.batch.is_some() {
            "anthropic-batch"
        } else {
            "anthropic"
        }
    }
    fn batch_api(&self) -> Option<&dyn super::batch::BatchApi> {
        self.batch
            .as_ref()
            .map(|b| b as &dyn super::batch::BatchApi)
    }
    fn model(&self) -> &str {
        &self.cfg.model
    }
    fn estimate_tokens(&self, text: &str) -> u32 {
        estimate_claude_tokens(text)
    }
    fn set_rate_share(&self, share: f64) {
        self.limiter.set_share(share);
    }
    fn rate_limiter(&self) -> Option<(&Limiter, String)> {
        let key = super::limiter::store_key(&self.cfg.base_url, &self.cfg.model);
        Some((&self.limiter, key))
    }
    fn request_body(&self, request: &ChatRequest) -> Option<Value> {
        Some(self.body(request))
    }

    async fn complete(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let prompt = self.prompt_tokens(req);
        let output = req.max_output_tokens;
        let permit = self.limiter.acquire_split(prompt, output).await;
        let start = Instant::now();
        let sent = self
            .client
            .post(&self.url)
            .header("x-api-key", &self.cfg.api_key)
            .header("anthropic-version", API_VERSION)
            .json(&self.body(req))
            .send()
            .await;
        let refund = |limiter: &Limiter| {
            limiter.reconcile(prompt, 0);
            limiter.reconcile_output(output, 0);
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                refund(&self.limiter);
                return Err(super::openai::transport_error(&e));
            }
        };
        let status = resp.status().as_u16();
        let headers = RateLimitHeaders::from_anthropic_headers(resp.headers());
        self.limiter.observe(&headers, &permit);
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => {
                refund(&self.limiter);
                return Err(super::openai::transport_error(&e));
            }
        };
        drop(permit);
        if status != 200 {
            refund(&self.limiter);
            let err = classify(status, &text, headers.retry_after);
            if let ProviderError::RateLimited { retry_after } = &err {
                self.limiter.rate_limited(*retry_after);
            }
            return Err(err);
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ProviderError::Transient(format!("the response body is not JSON: {e}")))?;
        let answer = parse_message(&v, start.elapsed());
        let usage = match &answer {
            Ok(r) => r.usage,
            Err(ProviderError::Truncated { usage, .. }) => *usage,
            Err(_) => Usage::default(),
        };
        self.limiter.reconcile(prompt, usage.prompt_tokens);
        self.limiter
            .reconcile_output(output, usage.completion_tokens);
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ErrorClass::*;

    #[test]
    fn classification() {
        let c = |s, b: &str| classify(s, b, None).class();
        let err = |t: &str, m: &str| {
            format!(r#"{{"type":"error","error":{{"type":"{t}","message":"{m}"}}}}"#)
        };
        assert_eq!(
            c(401, &err("authentication_error", "invalid x-api-key")),
            FatalForRun
        );
        assert_eq!(c(403, &err("permission_error", "no")), FatalForRun);
        assert_eq!(c(404, &err("not_found_error", "model: x")), FatalForRun);
        assert_eq!(
            c(
                400,
                &err("invalid_request_error", "Your credit balance is too low")
            ),
            FatalForRun
        );
        assert_eq!(
            c(
                400,
                &err(
                    "invalid_request_error",
                    "prompt is too long: 210000 tokens > 200000 maximum"
                )
            ),
            FatalForRow
        );
        assert_eq!(
            c(400, &err("invalid_request_error", "bad field")),
            FatalForRow
        );
        assert_eq!(c(429, &err("rate_limit_error", "slow down")), Retryable);
        assert_eq!(c(529, &err("overloaded_error", "Overloaded")), Retryable);
        assert_eq!(c(500, &err("api_error", "oops")), Retryable);
        assert!(matches!(
            classify(429, "", Some(Duration::from_secs(3))),
            ProviderError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3)
        ));
    }

    #[test]
    fn the_answer_is_the_tool_calls_input() {
        let v = json!({
            "content": [
                {"type": "text", "text": "Here you are."},
                {"type": "tool_use", "id": "t1", "name": OUTPUT_TOOL, "input": {"summary": "x"}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 120, "output_tokens": 30}
        });
        let r = parse_message(&v, Duration::ZERO).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&r.content).unwrap(),
            json!({"summary": "x"})
        );
        assert_eq!(
            r.usage,
            Usage {
                prompt_tokens: 120,
                completion_tokens: 30
            }
        );
        let cut = json!({"content": [{"type": "text", "text": "{\"summ"}], "stop_reason": "max_tokens",
            "usage": {"input_tokens": 1, "output_tokens": 9}});
        assert!(matches!(
            parse_message(&cut, Duration::ZERO),
            Err(ProviderError::Truncated { usage, .. }) if usage.completion_tokens == 9
        ));
        let refused = json!({"content": [], "stop_reason": "refusal", "usage": {}});
        assert_eq!(
            parse_message(&refused, Duration::ZERO).unwrap_err().class(),
            FatalForRow
        );
    }

    #[test]
    fn the_body_forces_the_output_tool_with_the_jobs_schema() {
        let p = AnthropicProvider::new(AnthropicConfig {
            base_url: "http://x/v1".into(),
            api_key: "sk-ant-secret".into(),
            model: "claude-haiku-4-5".into(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            limits: LimiterConfig {
                requests_per_minute: 60.0,
                tokens_per_minute: 1e6,
                max_in_flight: 1,
            },
        })
        .unwrap();
        let schema = json!({"$schema": "x", "type": "object", "properties": {"summary": {"type": "string", "maxLength": 9}}});
        let req = ChatRequest {
            entity_key: "k".into(),
            system: "sys".into(),
            user: "usr".into(),
            schema: Arc::new(schema),
            max_output_tokens: 321,
            temperature: 1.5,
            context: Arc::new(Value::Null),
            variation: 0,
        };
        let b = p.body(&req);
        assert_eq!(b["system"], "sys");
        assert_eq!(b["max_tokens"], 321);
        assert_eq!(b["temperature"], 1.0);
        assert_eq!(b["messages"][0], json!({"role": "user", "content": "usr"}));
        assert_eq!(
            b["tool_choice"],
            json!({"type": "tool", "name": OUTPUT_TOOL})
        );
        assert_eq!(
            b["tools"][0]["input_schema"],
            json!({"type": "object", "properties": {"summary": {"type": "string", "maxLength": 9}}})
        );
        assert!(!format!("{:?}", p.cfg).contains("secret"));
    }

    #[test]
    fn anthropic_headers_are_read() {
        let mut h = reqwest::header::HeaderMap::new();
        let in_two_seconds = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
        h.insert("anthropic-ratelimit-requests-limit", "50".parse().unwrap());
        h.insert(
            "anthropic-ratelimit-requests-remaining",
            "49".parse().unwrap(),
        );
        h.insert(
            "anthropic-ratelimit-requests-reset",
            in_two_seconds.parse().unwrap(),
        );
        h.insert(
            "anthropic-ratelimit-input-tokens-remaining",
            "39000".parse().unwrap(),
        );
        h.insert(
            "anthropic-ratelimit-output-tokens-limit",
            "8000".parse().unwrap(),
        );
        h.insert("retry-after", "7".parse().unwrap());
        let r = RateLimitHeaders::from_anthropic_headers(&h);
        assert_eq!(r.requests.limit_per_minute, Some(50.0));
        assert_eq!(r.requests.remaining, Some(49.0));
        let reset = r.requests.reset.unwrap().as_secs_f64();
        assert!((1.5..=2.0).contains(&reset), "{reset}");
        assert_eq!(r.tokens.remaining, Some(39000.0));
        assert_eq!(r.output_tokens.limit_per_minute, Some(8000.0));
        assert_eq!(r.retry_after, Some(Duration::from_secs(7)));
    }
}
