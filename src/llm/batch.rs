//! The OpenAI Batch API: requests written as JSONL (`custom_id` = input hash + ":" + entity key),
//! uploaded with the Files API, run as batches (at most 50,000 requests / 200 MB each), polled,
//! and their output and error files downloaded. Half the price of real-time calls, answers within
//! the completion window. The run layer (`run.rs`) records every batch before creating it, so a
//! killed process resumes the in-flight batches and never loses a paid result.

use super::openai::{OpenAiConfig, classify};
use super::{ProviderError, Usage};
use serde_json::{Value, json};
use std::time::Duration;

/// The Batch API's limits per batch.
pub use crate::config::BATCH_MAX_REQUESTS as MAX_REQUESTS;
pub const MAX_BYTES: usize = 200 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct BatchInfo {
    pub id: String,
    /// validating | in_progress | finalizing | completed | failed | expired | cancelling | cancelled
    pub status: String,
    pub input_file_id: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
}

impl BatchInfo {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "expired" | "cancelled"
        )
    }
    fn from_json(v: &Value) -> BatchInfo {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        BatchInfo {
            id: s("id").unwrap_or_default(),
            status: s("status").unwrap_or_default(),
            input_file_id: s("input_file_id").unwrap_or_default(),
            output_file_id: s("output_file_id"),
            error_file_id: s("error_file_id"),
        }
    }
}

/// One answer from an output or error file.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchResult {
    Answer {
        content: String,
        usage: Usage,
        finish_reason: String,
    },
    Error(String),
}

pub struct BatchClient {
    client: reqwest::Client,
    base: String,
    api_key: String,
}

impl BatchClient {
    pub fn new(cfg: &OpenAiConfig) -> Result<BatchClient, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            // Uploads and downloads can be large: allow more than one request's timeout.
            .timeout(cfg.request_timeout.max(Duration::from_secs(600)))
            .build()
            .map_err(|e| ProviderError::Fatal(format!("cannot build the HTTP client: {e}")))?;
        Ok(BatchClient {
            client,
            base: cfg.base_url.trim_end_matches('/').to_string(),
            api_key: cfg.api_key.clone(),
        })
    }

    async fn check(
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<String, ProviderError> {
        let resp = resp.map_err(|e| ProviderError::Transient(format!("batch API: {e}")))?;
        let status = resp.status().as_u16();
        let retry = super::limiter::RateLimitHeaders::from_headers(resp.headers()).retry_after;
        let text = resp
            .text()
            .await
            .map_err(|e| ProviderError::Transient(format!("batch API: {e}")))?;
        if status == 200 {
            Ok(text)
        } else {
            Err(classify(status, &text, retry))
        }
    }

    fn json(text: &str) -> Result<Value, ProviderError> {
        serde_json::from_str(text)
            .map_err(|e| ProviderError::Transient(format!("batch API answered non-JSON: {e}")))
    }

    /// Uploads a JSONL file for batch use; returns its file id.
    pub async fn upload(&self, jsonl: Vec<u8>) -> Result<String, ProviderError> {
        let part = reqwest::multipart::Part::bytes(jsonl)
            .file_name("shopscribe-batch.jsonl")
            .mime_str("application/jsonl")
            .map_err(|e| ProviderError::Fatal(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .text("purpose", "batch")
            .part("file", part);
        let sent = self
            .client
            .post(format!("{}/files", self.base))
            .bearer_auth(&self.api_key)
            .multipart(form)
            .send()
            .await;
        let v = Self::json(&Self::check(sent).await?)?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ProviderError::Transient("upload answer has no id".into()))
    }

    pub async fn create(&self, input_file_id: &str) -> Result<BatchInfo, ProviderError> {
        let body = json!({"input_file_id": input_file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
        let sent = self
            .client
            .post(format!("{}/batches", self.base))
            .bearer_auth(&self.api_key)
            .json(&body)
            .send()
            .await;
        Ok(BatchInfo::from_json(&Self::json(
            &Self::check(sent).await?,
        )?))
    }

    pub async fn get(&self, batch_id: &str) -> Result<BatchInfo, ProviderError> {
        let sent = self
            .client
            .get(format!("{}/batches/{batch_id}", self.base))
            .bearer_auth(&self.api_key)
            .send()
            .await;
        Ok(BatchInfo::from_json(&Self::json(
            &Self::check(sent).await?,
        )?))
    }

    /// Recent batches, to adopt one created just before a crash (matched by input file).
    pub async fn list(&self) -> Result<Vec<BatchInfo>, ProviderError> {
        let sent = self
            .client
            .get(format!("{}/batches?limit=100", self.base))
            .bearer_auth(&self.api_key)
            .send()
            .await;
        let v = Self::json(&Self::check(sent).await?)?;
        Ok(v["data"]
            .as_array()
            .map(|a| a.iter().map(BatchInfo::from_json).collect())
            .unwrap_or_default())
    }

    pub async fn content(&self, file_id: &str) -> Result<String, ProviderError> {
        let sent = self
            .client
            .get(format!("{}/files/{file_id}/content", self.base))
            .bearer_auth(&self.api_key)
            .send()
            .await;
        Self::check(sent).await
    }

    /// Polls until the batch is terminal, waiting `first`, then 1.5× longer each time up to `max`.
    pub async fn wait(
        &self,
        batch_id: &str,
        first: Duration,
        max: Duration,
    ) -> Result<BatchInfo, ProviderError> {
        let mut wait = first;
        let mut transient_failures = 0;
        loop {
            match self.get(batch_id).await {
                Ok(info) if info.is_terminal() => return Ok(info),
                Ok(_) => transient_failures = 0,
                Err(e) if e.class() == super::ErrorClass::Retryable && transient_failures < 20 => {
                    transient_failures += 1
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(wait).await;
            wait = wait.mul_f64(1.5).min(max);
        }
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

/// Splits JSONL lines into files within the per-batch limits.
pub fn split(lines: Vec<String>, max_requests: usize, max_bytes: usize) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0;
    for line in lines {
        let len = line.len() + 1;
        let full = out
            .last()
            .is_none_or(|b| b.len() >= max_requests || bytes + len > max_bytes);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += len;
        out.last_mut().expect("pushed above").push(line);
    }
    out
}

/// Parses an output or error file into (custom_id, result).
pub fn parse_results(jsonl: &str) -> Vec<(String, BatchResult)> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let id = v["custom_id"].as_str()?.to_string();
            let resp = &v["response"];
            let result = if !v["error"].is_null() {
                BatchResult::Error(
                    v["error"]["message"]
                        .as_str()
                        .unwrap_or("batch request failed")
                        .to_string(),
                )
            } else if resp["status_code"].as_u64() != Some(200) {
                let body = &resp["body"];
                BatchResult::Error(format!(
                    "HTTP {}: {}",
                    resp["status_code"].as_u64().unwrap_or(0),
                    body["error"]["message"].as_str().unwrap_or("error")
                ))
            } else {
                let body = &resp["body"];
                let choice = &body["choices"][0];
                match choice["message"]["content"].as_str() {
                    Some(c) => BatchResult::Answer {
                        content: c.to_string(),
                        usage: Usage {
                            prompt_tokens: body["usage"]["prompt_tokens"].as_u64().unwrap_or(0)
                                as u32,
                            completion_tokens: body["usage"]["completion_tokens"]
                                .as_u64()
                                .unwrap_or(0) as u32,
                        },
                        finish_reason: choice["finish_reason"]
                            .as_str()
                            .unwrap_or("stop")
                            .to_string(),
                    },
                    None => BatchResult::Error("the answer has no content".into()),
                }
            };
            Some((id, result))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_both_limits() {
        let lines: Vec<String> = (0..10).map(|i| format!("line-{i}")).collect();
        let b = split(lines.clone(), 4, usize::MAX);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let b = split(lines, 100, 15);
        assert!(
            b.iter()
                .all(|x| x.iter().map(|l| l.len() + 1).sum::<usize>() <= 15)
        );
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 10);
    }

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
