//! OpenAI's Batch API: requests written as JSONL (`custom_id` = input hash + ":" + entity key),
//! uploaded with the Files API, run as batches (at most 50,000 requests / 200 MB each), polled,
//! and their output and error files downloaded.

use super::{BatchApi, BatchInfo, BatchPhase, BatchResult, checked_text, parse_json};
use crate::llm::openai::{OpenAiConfig, classify};
use crate::llm::{ProviderError, Usage};
use async_trait::async_trait;
use serde_json::{Value, json};

/// The Batch API's limits per batch.
pub use crate::config::BATCH_MAX_REQUESTS as MAX_REQUESTS;
pub const MAX_BYTES: usize = 200 * 1024 * 1024;

fn info_from_json(v: &Value) -> BatchInfo {
    let s = |k: &str| v[k].as_str().map(str::to_string);
    let status = s("status").unwrap_or_default();
    let phase = match status.as_str() {
        "completed" => BatchPhase::Completed,
        "failed" | "expired" | "cancelled" => BatchPhase::Ended,
        _ => BatchPhase::Running,
    };
    BatchInfo {
        id: s("id").unwrap_or_default(),
        status,
        phase,
        input_file_id: s("input_file_id").unwrap_or_default(),
        result_files: [s("output_file_id"), s("error_file_id")]
            .into_iter()
            .flatten()
            .collect(),
        requests: v["request_counts"]["total"].as_u64().unwrap_or(0),
        created_ms: v["created_at"].as_i64().map_or(0, |s| s * 1000),
    }
}

pub struct BatchClient {
    client: reqwest::Client,
    base: String,
    api_key: String,
}

impl BatchClient {
    pub fn new(cfg: &OpenAiConfig) -> Result<BatchClient, ProviderError> {
        Ok(BatchClient {
            client: super::http_client(cfg.connect_timeout, cfg.request_timeout)?,
            base: cfg.base_url.trim_end_matches('/').to_string(),
            api_key: cfg.api_key.clone(),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<String, ProviderError> {
        checked_text(req.bearer_auth(&self.api_key).send().await, classify).await
    }

    /// Uploads a JSONL file for batch use; returns its file id.
    pub async fn upload(&self, jsonl: Vec<u8>) -> Result<String, ProviderError> {
        let part = reqwest::multipart::Part::bytes(jsonl)
            .file_name("shopscribe-batch.jsonl")
            .mime_str("application/jsonl")
            .map_err(ProviderError::Client)?;
        let form = reqwest::multipart::Form::new()
            .text("purpose", "batch")
            .part("file", part);
        let url = format!("{}/files", self.base);
        let v = parse_json(&self.send(self.client.post(url).multipart(form)).await?)?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ProviderError::Transient("upload answer has no id".into()))
    }

    async fn create_batch(&self, input_file_id: &str) -> Result<BatchInfo, ProviderError> {
        let body = json!({"input_file_id": input_file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
        let url = format!("{}/batches", self.base);
        Ok(info_from_json(&parse_json(
            &self.send(self.client.post(url).json(&body)).await?,
        )?))
    }

    /// Recent batches, to adopt one created just before a crash (matched by input file).
    pub async fn list(&self) -> Result<Vec<BatchInfo>, ProviderError> {
        let url = format!("{}/batches?limit=100", self.base);
        let v = parse_json(&self.send(self.client.get(url)).await?)?;
        Ok(v["data"]
            .as_array()
            .map(|a| a.iter().map(info_from_json).collect())
            .unwrap_or_default())
    }

    pub async fn content(&self, file_id: &str) -> Result<String, ProviderError> {
        let url = format!("{}/files/{file_id}/content", self.base);
        self.send(self.client.get(url)).await
    }
}

#[async_trait]
impl BatchApi for BatchClient {
    fn limits(&self) -> (usize, usize) {
        (MAX_REQUESTS, MAX_BYTES)
    }
    fn custom_id(&self, input_hash: &str, key: &str) -> String {
        custom_id(input_hash, key)
    }
    fn request_line(&self, custom_id: &str, body: &Value) -> String {
        request_line(custom_id, body)
    }
    async fn stage(&self, lines: &[String]) -> Result<String, ProviderError> {
        let mut bytes = lines.join("\n").into_bytes();
        bytes.push(b'\n');
        self.upload(bytes).await
    }
    async fn create(&self, staged: &str, _lines: &[String]) -> Result<BatchInfo, ProviderError> {
        self.create_batch(staged).await
    }
    async fn find_created(
        &self,
        staged: &str,
        _requests: u64,
    ) -> Result<Option<BatchInfo>, ProviderError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .find(|b| b.input_file_id == staged))
    }
    async fn create_from_staged(&self, staged: &str) -> Result<Option<BatchInfo>, ProviderError> {
        self.create_batch(staged).await.map(Some)
    }
    async fn get(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let url = format!("{}/batches/{batch_id}", self.base);
        Ok(info_from_json(&parse_json(
            &self.send(self.client.get(url)).await?,
        )?))
    }
    async fn results(&self, info: &BatchInfo) -> Result<Vec<(String, BatchResult)>, ProviderError> {
        let mut out = Vec::new();
        for file in &info.result_files {
            out.extend(parse_results(&self.content(file).await?));
        }
        Ok(out)
    }
}

/// `custom_id` of one request: the input hash (fixed length) then the entity key.
pub fn custom_id(input_hash: &str, key: &str) -> String {
    format!("{input_hash}:{key}")
}

/// One JSONL line of a batch input file.
pub fn request_line(custom_id: &str, body: &Value) -> String {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})
        .to_string()
}

/// Parses an output or error file into (custom_id, result).
pub fn parse_results(jsonl: &str) -> Vec<(String, BatchResult)> {
    super::results_by_custom_id(jsonl, |v| {
        let resp = &v["response"];
        let body = &resp["body"];
        if !v["error"].is_null() {
            return BatchResult::Error(
                v["error"]["message"]
                    .as_str()
                    .unwrap_or("batch request failed")
                    .to_string(),
            );
        }
        if resp["status_code"].as_u64() != Some(200) {
            return BatchResult::Error(format!(
                "HTTP {}: {}",
                resp["status_code"].as_u64().unwrap_or(0),
                body["error"]["message"].as_str().unwrap_or("error")
            ));
        }
        let choice = &body["choices"][0];
        let tokens =
            |k: &str| u32::try_from(body["usage"][k].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
        match choice["message"]["content"].as_str() {
            Some(c) => BatchResult::Answer {
                content: c.to_string(),
                usage: Usage {
                    prompt_tokens: tokens("prompt_tokens"),
                    completion_tokens: tokens("completion_tokens"),
                },
                truncated: choice["finish_reason"] == "length",
            },
            None => BatchResult::Error("the answer has no content".into()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_parse_answers_and_errors() {
        let out = r#"{"custom_id":"h:a","response":{"status_code":200,"body":{"choices":[{"message":{"content":"{}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2}}},"error":null}
{"custom_id":"h:b","response":{"status_code":500,"body":{"error":{"message":"boom"}}},"error":null}
{"custom_id":"h:c","response":null,"error":{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}"#;
        let r = parse_results(out);
        assert_eq!(r.len(), 3);
        assert!(matches!(&r[0].1, BatchResult::Answer { usage, .. } if usage.prompt_tokens == 5));
        assert_eq!(r[1].1, BatchResult::Error("HTTP 500: boom".into()));
        assert!(matches!(&r[2].1, BatchResult::Error(m) if m.contains("expired")));
        assert_eq!(custom_id("abc", "x:y"), "abc:x:y");
    }
}
