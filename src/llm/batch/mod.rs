//! Batch APIs: half-price asynchronous calls, answered within a day. [`BatchApi`] is what a run
//! needs of one (stage the requests, create the batch, find a batch a killed process created,
//! poll, read the results by `custom_id`); [`openai`] implements it on the Files and Batches
//! endpoints, [`anthropic`] on Message Batches. The run layer (`run::batch`) records every batch
//! before creating it, so a killed process resumes the in-flight batches and never loses a paid
//! result.

pub mod anthropic;
pub mod openai;

pub use openai::BatchClient;

use super::{ErrorClass, ProviderError, Usage};
use async_trait::async_trait;
use std::time::Duration;

/// A batch as the provider describes it, in terms common to both APIs.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchInfo {
    pub id: String,
    /// The provider's own word for the batch's state (logged, and stored as the error of a batch
    /// that did not complete).
    pub status: String,
    pub phase: BatchPhase,
    /// What the batch was created from: the uploaded file (OpenAI), empty where the requests
    /// travel in the create call (Anthropic).
    pub input_file_id: String,
    /// Where its results are read (OpenAI: the output and error files; Anthropic: the results
    /// URL). Empty until it has ended.
    pub result_files: Vec<String>,
    /// Requests in the batch, as the provider counts them.
    pub requests: u64,
    /// When the provider created it (Unix ms; 0 when not said).
    pub created_ms: i64,
}

/// Where a batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchPhase {
    /// Queued or processing.
    Running,
    /// Ended with every request answered or errored one by one: collect it.
    Completed,
    /// Ended as a whole without completing (failed, expired, cancelled): collect what it holds;
    /// the rest is retried.
    Ended,
}

impl BatchInfo {
    pub fn is_terminal(&self) -> bool {
        self.phase != BatchPhase::Running
    }
}

/// One answer from a batch's results.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchResult {
    Answer {
        content: String,
        usage: Usage,
        /// The answer hit the output budget.
        truncated: bool,
    },
    /// The request failed inside the batch, or expired or was cancelled before it ran; the
    /// run retries it.
    Error(String),
}

/// What a run needs of a provider's batch API.
#[async_trait]
pub trait BatchApi: Send + Sync {
    /// The API's limits per batch: requests, bytes.
    fn limits(&self) -> (usize, usize);
    /// The `custom_id` of one request, unique per entity and input hash.
    fn custom_id(&self, input_hash: &str, key: &str) -> String;
    /// One request as a line of the batch (`body` is the provider's real-time request body).
    fn request_line(&self, custom_id: &str, body: &serde_json::Value) -> String;
    /// Puts the requests where the batch will be created from and returns the reference the
    /// store records before the batch is created (OpenAI: the uploaded file's id; Anthropic,
    /// whose requests travel in the create call: a local token holding the time, so that a
    /// batch created just before a kill can be found again).
    async fn stage(&self, lines: &[String]) -> Result<String, ProviderError>;
    /// Creates the batch from what [`BatchApi::stage`] returned and the same lines.
    async fn create(&self, staged: &str, lines: &[String]) -> Result<BatchInfo, ProviderError>;
    /// The batch an earlier process created from `staged` (with `requests` requests) but was
    /// killed before recording, if the provider shows one.
    async fn find_created(
        &self,
        staged: &str,
        requests: u64,
    ) -> Result<Option<BatchInfo>, ProviderError>;
    /// Creates the batch again from `staged` alone, where the API keeps the staged input
    /// (OpenAI's uploaded file); `None` where the requests are gone with the killed process
    /// (Anthropic): the run then plans those entities afresh.
    async fn create_from_staged(&self, staged: &str) -> Result<Option<BatchInfo>, ProviderError>;
    async fn get(&self, batch_id: &str) -> Result<BatchInfo, ProviderError>;
    /// Every result of an ended batch, by `custom_id`.
    async fn results(&self, info: &BatchInfo) -> Result<Vec<(String, BatchResult)>, ProviderError>;

    /// Polls until the batch is terminal, waiting `first`, then 1.5× longer each time up to `max`.
    async fn wait(
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
                Err(e) if e.class() == ErrorClass::Retryable && transient_failures < 20 => {
                    transient_failures += 1
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(wait).await;
            wait = wait.mul_f64(1.5).min(max);
        }
    }
}

/// Every line of a results file that names its `custom_id`, with the result `read` makes of it
/// (blank and unparseable lines are skipped).
fn results_by_custom_id(
    jsonl: &str,
    read: impl Fn(&serde_json::Value) -> BatchResult,
) -> Vec<(String, BatchResult)> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["custom_id"].as_str()?.to_string(), read(&v))))
        .collect()
}

/// Splits request lines into batches within the per-batch limits.
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

/// The HTTP client of a batch API: uploads and downloads can be large, so it allows more than
/// one real-time request's timeout.
fn http_client(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout.max(Duration::from_secs(600)))
        .build()
        .map_err(ProviderError::Client)
}

/// The body of a batch API answer, or its error classified by `classify`.
async fn checked_text(
    resp: Result<reqwest::Response, reqwest::Error>,
    classify: fn(u16, &str, Option<Duration>) -> ProviderError,
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

fn parse_json(text: &str) -> Result<serde_json::Value, ProviderError> {
    serde_json::from_str(text)
        .map_err(|e| ProviderError::Transient(format!("batch API answered non-JSON: {e}")))
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
}
