//! Writers of text: the [`Provider`] trait and its implementations. A provider turns one chat
//! request into content plus token usage and timing, or a typed error that says whether to retry
//! the request, give up on the row, or stop the whole run.

pub mod anthropic;
pub mod batch;
pub mod limiter;
pub mod offline;
pub mod openai;

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// One request: the rendered messages and what the output must look like.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// Identifies the entity (for logs and for the offline writer's deterministic variation).
    pub entity_key: String,
    pub system: String,
    pub user: String,
    /// JSON Schema the output must satisfy (sent as structured-output format where supported).
    pub schema: Arc<serde_json::Value>,
    pub max_output_tokens: u32,
    pub temperature: f32,
    /// The template context the prompt was rendered from. Network providers ignore it; the
    /// offline writer composes its text from it, and never from anything the prompt lacks.
    pub context: Arc<serde_json::Value>,
    /// 0, or the how-manieth time the near-duplicate gate asks for a differently worded text:
    /// network providers get it as a sentence of the user prompt, the offline writer mixes it
    /// into its choice of phrasing.
    pub variation: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Debug, Clone)]
pub struct ChatResponse {
    pub content: String,
    pub usage: Usage,
    pub latency: Duration,
}

/// What the caller should do about a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try the same request again after a backoff (rate limits, 5xx, timeouts, resets).
    Retryable,
    /// This row cannot succeed (e.g. its prompt exceeds the context window): record, move on.
    FatalForRow,
    /// No row can succeed (bad key, unknown model, no quota): stop the run, leave rows pending.
    FatalForRun,
}

/// Why a request to the writer failed, classed for retries by [`ProviderError::class`]. The
/// texts are the provider's own words (its HTTP error body, kept short and without URLs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// HTTP 429 or an equivalent signal; `retry_after` when the server said how long to wait.
    #[error("rate limited by the provider")]
    RateLimited { retry_after: Option<Duration> },
    /// A temporary failure: 408, 5xx, timeout, connection reset, unparseable body.
    #[error("temporary provider failure: {0}")]
    Transient(String),
    /// The prompt exceeds the model's context window: retried once with the template's
    /// optional parts trimmed (`trim` is true in the context), then fatal for the row.
    #[error("{0}")]
    ContextTooLong(String),
    /// The request itself is unacceptable (content policy, refusal, other 4xx).
    #[error("request rejected: {0}")]
    InvalidRequest(String),
    /// The answer hit the output budget (`finish_reason = "length"`): retried once with a larger
    /// budget.
    #[error("the answer was cut off at the output token limit")]
    Truncated { content: String, usage: Usage },
    /// Authentication, permission, quota or model problems that affect every request.
    #[error("provider unusable: {0}")]
    Fatal(String),
    /// The HTTP client (or a request's multipart body) cannot be built: no request can be sent.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

impl ProviderError {
    /// A short name for attempt logs and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::Transient(_) => "transient",
            ProviderError::InvalidRequest(_) => "invalid_request",
            ProviderError::ContextTooLong(_) => "context_too_long",
            ProviderError::Truncated { .. } => "truncated",
            ProviderError::Fatal(_) | ProviderError::Client(_) => "fatal",
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::RateLimited { .. }
            | ProviderError::Transient(_)
            | ProviderError::Truncated { .. } => ErrorClass::Retryable,
            ProviderError::InvalidRequest(_) | ProviderError::ContextTooLong(_) => {
                ErrorClass::FatalForRow
            }
            ProviderError::Fatal(_) | ProviderError::Client(_) => ErrorClass::FatalForRun,
        }
    }
}

/// A text generator. Implementations must be cheap to share across tasks.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Provider name as stored on runs and on the generations it writes ("offline", "openai",
    /// "openai-batch", "anthropic"). Input hashes carry [`realtime_name`] of it, not the name itself.
    fn name(&self) -> &str;
    /// Model name as stored on generations and hashed into input hashes.
    fn model(&self) -> &str;
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError>;
    /// The batch API, when this provider runs work as batches.
    fn batch_api(&self) -> Option<&dyn batch::BatchApi> {
        None
    }
    /// The HTTP body of a request, for providers that can write it into a batch file.
    fn request_body(&self, _request: &ChatRequest) -> Option<serde_json::Value> {
        None
    }
    /// Takes `share` of the configured rate limits (several workers on one account).
    fn set_rate_share(&self, _share: f64) {}
    /// The provider's rate limiter, and the name under which what it learns is kept between
    /// runs (one per server and model); `None` for writers without limits.
    fn rate_limiter(&self) -> Option<(&limiter::Limiter, String)> {
        None
    }
    /// Token estimate for planning; providers with a real tokenizer override it.
    fn estimate_tokens(&self, text: &str) -> u32 {
        estimate_tokens_heuristic(text)
    }
}

/// About four characters per token for English prose (OpenAI's rule of thumb).
pub fn estimate_tokens_heuristic(text: &str) -> u32 {
    (text.chars().count() as u32).div_ceil(4)
}

/// The name real-time calls of a provider named `name` are recorded under, which is also the
/// provider part of every input hash: "openai-batch" → "openai", "anthropic-batch" →
/// "anthropic", any other name unchanged. The
/// Batch API runs the same model as real-time calls, so its text is that model's text: switching
/// a project between the two regenerates nothing, and the real-time retries of a batch run are
/// recorded (and priced) as what they are.
pub fn realtime_name(name: &str) -> &str {
    match name {
        "openai-batch" => "openai",
        "anthropic-batch" => "anthropic",
        other => other,
    }
}

/// Builds the configured provider. The API key is read from the environment here and only here.
/// `openai-batch` is the OpenAI provider with the Batch API client attached: runs go through
/// batches (`run::batch`), real-time calls remain for retries and on-demand generation.
pub fn from_config(llm: &crate::config::LlmConfig) -> Result<Arc<dyn Provider>, ProviderError> {
    use crate::config::ProviderKind;
    match &llm.provider {
        ProviderKind::Offline => Ok(Arc::new(offline::OfflineWriter::new())),
        kind @ (ProviderKind::OpenAi | ProviderKind::OpenAiBatch) => {
            let api_key = api_key(llm)?;
            let cfg = openai_config(llm, api_key);
            let provider = openai::OpenAiProvider::new(cfg.clone())?;
            Ok(Arc::new(if *kind == ProviderKind::OpenAiBatch {
                provider.with_batch(batch::BatchClient::new(&cfg)?)
            } else {
                provider
            }))
        }
        kind @ (ProviderKind::Anthropic | ProviderKind::AnthropicBatch) => {
            let cfg = anthropic_config(llm, api_key(llm)?);
            let provider = anthropic::AnthropicProvider::new(cfg.clone())?;
            Ok(Arc::new(if *kind == ProviderKind::AnthropicBatch {
                provider.with_batch(batch::anthropic::AnthropicBatchClient::new(&cfg)?)
            } else {
                provider
            }))
        }
    }
}

/// The key from the variable `llm.api_key_env` names; empty or unset stops the run before any
/// request.
fn api_key(llm: &crate::config::LlmConfig) -> Result<String, ProviderError> {
    let api_key = std::env::var(&llm.api_key_env).unwrap_or_default();
    if api_key.trim().is_empty() {
        return Err(ProviderError::Fatal(format!(
            "llm.provider is \"{}\" but ${} is empty; export the key or use provider = \"offline\"",
            llm.provider.as_str(),
            llm.api_key_env
        )));
    }
    Ok(api_key)
}

/// The Anthropic provider's settings from the project config: `tokens_per_minute` is the input
/// tokens budget (Anthropic limits output tokens apart; that budget is learned from its headers).
pub fn anthropic_config(
    llm: &crate::config::LlmConfig,
    api_key: String,
) -> anthropic::AnthropicConfig {
    anthropic::AnthropicConfig {
        base_url: llm.base_url.clone(),
        api_key,
        model: llm.model.clone(),
        connect_timeout: llm.connect_timeout,
        request_timeout: llm.request_timeout,
        limits: limiter_config(llm),
    }
}

fn limiter_config(llm: &crate::config::LlmConfig) -> limiter::LimiterConfig {
    limiter::LimiterConfig {
        requests_per_minute: llm.requests_per_minute,
        tokens_per_minute: llm.tokens_per_minute,
        max_in_flight: llm.max_in_flight,
    }
}

/// The OpenAI provider's settings from the project config.
pub fn openai_config(llm: &crate::config::LlmConfig, api_key: String) -> openai::OpenAiConfig {
    openai::OpenAiConfig {
        base_url: llm.base_url.clone(),
        api_key,
        model: llm.model.clone(),
        structured_output: llm.structured_output,
        max_tokens_field: llm.max_tokens_field.clone(),
        connect_timeout: llm.connect_timeout,
        request_timeout: llm.request_timeout,
        limits: limiter_config(llm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openai-batch` builds the OpenAI provider with its Batch API client, named as such;
    /// `openai` builds it without. Both hash and record real-time calls as `openai`.
    #[test]
    fn openai_batch_has_the_batch_client_and_its_own_name() {
        let dir = tempfile::tempdir().unwrap();
        crate::demo::write_project(dir.path(), true).unwrap();
        for (kind, name, batch) in [
            ("openai-batch", "openai-batch", true),
            ("openai", "openai", false),
        ] {
            let env = |k: &str| (k == "SHOPSCRIBE_LLM_PROVIDER").then(|| kind.to_string());
            let mut project = crate::config::load_with_env(dir.path(), &env).unwrap();
            // Any variable that is set will do as the key: nothing is sent here.
            project.llm.api_key_env = "PATH".into();
            let provider = from_config(&project.llm).unwrap();
            assert_eq!(provider.name(), name);
            assert_eq!(provider.batch_api().is_some(), batch, "{kind}");
            assert_eq!(realtime_name(provider.name()), "openai");
            project.llm.api_key_env = "SHOPSCRIBE_TEST_NO_SUCH_VARIABLE".into();
            let err = from_config(&project.llm).err().unwrap().to_string();
            assert!(err.contains(&format!("\"{kind}\"")), "{err}");
        }
        assert_eq!(realtime_name("offline"), "offline");
    }
}
