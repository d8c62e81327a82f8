//! Anthropic's Message Batches: up to 100,000 requests or 256 MB a batch, sent in the create
//! call itself (`POST /messages/batches` with `{"requests": [{"custom_id", "params"}]}`, the
//! params being the Messages API body), polled until `processing_status` is `ended`, and read
//! back as JSONL from its `results_url`, one line per request: succeeded (a Message), errored,
//! canceled or expired (the last three are retried by the run).

use super::{BatchApi, BatchInfo, BatchPhase, BatchResult, checked_text, parse_json};
use crate::llm::ProviderError;
use crate::llm::anthropic::{API_VERSION, AnthropicConfig, classify, parse_message};
use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;

/// Message Batches' limits per batch.
pub use crate::config::ANTHROPIC_BATCH_MAX_REQUESTS as MAX_REQUESTS;
pub const MAX_BYTES: usize = 256 * 1024 * 1024;
/// The prefix of the token recorded for a batch before it is created (see [`BatchApi::stage`]).
const STAGED_PREFIX: &str = "msgbatch-pending-";
/// How far before its recorded time a batch created by a killed process may claim to have been
/// created (clock skew between this machine and the API).
const CLOCK_SKEW_MS: i64 = 120_000;

pub struct AnthropicBatchClient {
    client: reqwest::Client,
    base: String,
    api_key: String,
}

impl AnthropicBatchClient {
    pub fn new(cfg: &AnthropicConfig) -> Result<AnthropicBatchClient, ProviderError> {
        Ok(AnthropicBatchClient {
            client: super::http_client(cfg.connect_timeout, cfg.request_timeout)?,
            base: format!("{}/messages/batches", cfg.base_url.trim_end_matches('/')),
            api_key: cfg.api_key.clone(),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<String, ProviderError> {
        let req = req
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", API_VERSION);
        checked_text(req.send().await, classify).await
    }

    /// The most recent batches of the workspace (one page).
    async fn list(&self) -> Result<Vec<BatchInfo>, ProviderError> {
        let url = format!("{}?limit=100", self.base);
        let v = parse_json(&self.send(self.client.get(url)).await?)?;
        Ok(v["data"]
            .as_array()
            .map(|a| a.iter().map(info_from_json).collect())
            .unwrap_or_default())
    }
}

/// A Message Batch object as [`BatchInfo`]: `ended` is completed (requests that errored or
/// expired are reported one by one in the results), `canceling` still running.
fn info_from_json(v: &Value) -> BatchInfo {
    let status = v["processing_status"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let phase = match status.as_str() {
        "ended" => BatchPhase::Completed,
        _ => BatchPhase::Running,
    };
    let counts = &v["request_counts"];
    let requests = ["processing", "succeeded", "errored", "canceled", "expired"]
        .iter()
        .map(|k| counts[*k].as_u64().unwrap_or(0))
        .sum();
    BatchInfo {
        id: v["id"].as_str().unwrap_or_default().to_string(),
        status,
        phase,
        input_file_id: String::new(),
        result_files: v["results_url"]
            .as_str()
            .map(str::to_string)
            .into_iter()
            .collect(),
        requests,
        created_ms: v["created_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp_millis()),
    }
}

/// The recorded time (Unix ms) in a staged token.
fn staged_ms(staged: &str) -> Option<i64> {
    staged
        .strip_prefix(STAGED_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// `custom_id` of one request: Message Batches allow 1–64 of `[a-zA-Z0-9_-]`, so the input
/// hash and entity key are hashed into 64 hex digits (the store maps it back to the entity).
pub fn custom_id(input_hash: &str, key: &str) -> String {
    blake3::hash(format!("{input_hash}:{key}").as_bytes())
        .to_hex()
        .to_string()
}

/// Parses the results JSONL into (custom_id, result).
pub fn parse_results(jsonl: &str) -> Vec<(String, BatchResult)> {
    super::results_by_custom_id(jsonl, |v| {
        let r = &v["result"];
        match r["type"].as_str().unwrap_or_default() {
            "succeeded" => match parse_message(&r["message"], Duration::ZERO) {
                Ok(m) => BatchResult::Answer {
                    content: m.content,
                    usage: m.usage,
                    truncated: false,
                },
                Err(ProviderError::Truncated { content, usage }) => BatchResult::Answer {
                    content,
                    usage,
                    truncated: true,
                },
                Err(e) => BatchResult::Error(e.to_string()),
            },
            "errored" => BatchResult::Error(format!(
                "{}: {}",
                r["error"]["error"]["type"].as_str().unwrap_or("error"),
                r["error"]["error"]["message"]
                    .as_str()
                    .unwrap_or("the request failed")
            )),
            "expired" => {
                BatchResult::Error("expired: the batch ended before this request ran".into())
            }
            "canceled" => BatchResult::Error("canceled before this request ran".into()),
            other => BatchResult::Error(format!("unknown result type `{other}`")),
        }
    })
}

#[async_trait]
impl BatchApi for AnthropicBatchClient {
    fn limits(&self) -> (usize, usize) {
        (MAX_REQUESTS, MAX_BYTES)
    }
    fn custom_id(&self, input_hash: &str, key: &str) -> String {
        custom_id(input_hash, key)
    }
    fn request_line(&self, custom_id: &str, body: &Value) -> String {
        serde_json::json!({"custom_id": custom_id, "params": body}).to_string()
    }
    async fn stage(&self, lines: &[String]) -> Result<String, ProviderError> {
        // Nothing to upload; the token carries the time (see `find_created`) and a digest.
        let digest = blake3::hash(lines.join("\n").as_bytes()).to_hex();
        let now = chrono::Utc::now().timestamp_millis();
        Ok(format!("{STAGED_PREFIX}{now}-{}", &digest[..16]))
    }
    async fn create(&self, _staged: &str, lines: &[String]) -> Result<BatchInfo, ProviderError> {
        // The lines are JSON already: join them instead of parsing and re-serialising 256 MB.
        let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 16);
        body.push_str("{\"requests\":[");
        body.push_str(&lines.join(","));
        body.push_str("]}");
        let req = self
            .client
            .post(&self.base)
            .header("content-type", "application/json")
            .body(body);
        Ok(info_from_json(&parse_json(&self.send(req).await?)?))
    }
    /// Message Batches carry no metadata to match on, so a batch created before the kill is the
    /// one created after the recorded time (less clock skew) with the same number of requests.
    /// Adopting a stranger's batch of that size costs nothing: none of its `custom_id`s match,
    /// and the entities are retried.
    async fn find_created(
        &self,
        staged: &str,
        requests: u64,
    ) -> Result<Option<BatchInfo>, ProviderError> {
        let Some(since) = staged_ms(staged) else {
            return Ok(None);
        };
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|b| b.requests == requests && b.created_ms >= since - CLOCK_SKEW_MS)
            .min_by_key(|b| b.created_ms))
    }
    async fn create_from_staged(&self, _staged: &str) -> Result<Option<BatchInfo>, ProviderError> {
        Ok(None)
    }
    async fn get(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let url = format!("{}/{batch_id}", self.base);
        Ok(info_from_json(&parse_json(
            &self.send(self.client.get(url)).await?,
        )?))
    }
    async fn results(&self, info: &BatchInfo) -> Result<Vec<(String, BatchResult)>, ProviderError> {
        let url = info
            .result_files
            .first()
            .cloned()
            .unwrap_or_else(|| format!("{}/{}/results", self.base, info.id));
        Ok(parse_results(&self.send(self.client.get(url)).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_parse_every_kind() {
        let out = r#"{"custom_id":"a","result":{"type":"succeeded","message":{"content":[{"type":"tool_use","name":"write_output","input":{"x":1}}],"stop_reason":"tool_use","usage":{"input_tokens":5,"output_tokens":2}}}}
{"custom_id":"b","result":{"type":"errored","error":{"type":"error","error":{"type":"api_error","message":"boom"}}}}
{"custom_id":"c","result":{"type":"expired"}}
{"custom_id":"d","result":{"type":"canceled"}}
{"custom_id":"e","result":{"type":"succeeded","message":{"content":[{"type":"text","text":"{\"x"}],"stop_reason":"max_tokens","usage":{"input_tokens":5,"output_tokens":9}}}}"#;
        let r = parse_results(out);
        assert_eq!(r.len(), 5);
        assert!(
            matches!(&r[0].1, BatchResult::Answer { content, usage, truncated: false }
                if content == r#"{"x":1}"# && usage.prompt_tokens == 5)
        );
        assert_eq!(r[1].1, BatchResult::Error("api_error: boom".into()));
        assert!(matches!(&r[2].1, BatchResult::Error(m) if m.starts_with("expired")));
        assert!(matches!(&r[3].1, BatchResult::Error(m) if m.starts_with("canceled")));
        assert!(
            matches!(&r[4].1, BatchResult::Answer { truncated: true, usage, .. } if usage.completion_tokens == 9)
        );
    }

    #[test]
    fn custom_ids_fit_the_apis_pattern() {
        let id = custom_id("0123456789abcdef", "shop:example.com/ü");
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(id, custom_id("0123456789abcdef", "shop:example.com/u"));
    }

    #[test]
    fn the_staged_token_keeps_its_time() {
        assert_eq!(
            staged_ms("msgbatch-pending-1700000000123-abcd"),
            Some(1_700_000_000_123)
        );
        assert_eq!(staged_ms("file-1"), None);
    }

    #[test]
    fn a_batch_object_reads() {
        let v = serde_json::json!({"id": "msgbatch_1", "processing_status": "ended",
            "request_counts": {"processing": 0, "succeeded": 7, "errored": 1, "canceled": 0, "expired": 2},
            "created_at": "2024-09-24T18:37:24.100435Z", "results_url": "http://x/v1/messages/batches/msgbatch_1/results"});
        let b = info_from_json(&v);
        assert_eq!(b.phase, BatchPhase::Completed);
        assert_eq!(b.requests, 10);
        assert_eq!(b.result_files.len(), 1);
        assert!(b.created_ms > 1_727_000_000_000);
    }
}
