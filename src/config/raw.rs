//! `shopscribe.toml` as written by the user: serde structs that reject unknown keys. Every field
//! is documented here, where it is declared; `validate.rs` turns these into a checked `Project`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// What the project is.
    pub project: RawProject,
    /// Where shopscribe keeps its own state (runs, generations).
    #[serde(default)]
    pub store: RawStore,
    /// Where the jobs' SQL runs when it is not the store's own database.
    #[serde(default)]
    pub source: RawSource,
    /// Which writer produces the text.
    #[serde(default)]
    pub llm: RawLlm,
    /// Where the site goes.
    #[serde(default)]
    pub publish: RawPublish,
    /// Where to report finished and failed runs.
    #[serde(default)]
    pub notify: RawNotify,
    /// Distributed runs (PostgreSQL store): task leases and claims.
    #[serde(default)]
    pub workers: RawWorkers,
    /// `shopscribe serve`: the HTTP API.
    #[serde(default)]
    pub serve: RawServe,
    /// `shopscribe watch`: what to poll and how often.
    #[serde(default)]
    pub watch: RawWatch,
    /// Raw-data deliveries to ingest, by name: `[datasets.reviews]`.
    #[serde(default)]
    pub datasets: BTreeMap<String, RawDataset>,
    /// The jobs, by name: `[jobs.domain_summaries]`.
    #[serde(default)]
    pub jobs: BTreeMap<String, RawJob>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProject {
    /// Display name, used as the site's title.
    pub name: String,
    /// Currency symbol used for `unit = "currency"` metrics. Default "$".
    pub currency: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `sqlite://PATH` (relative to the project folder) or, later, `postgres://…`.
    /// Default `sqlite://shopscribe.db`. Overridden by `SHOPSCRIBE_STORE_URL`.
    pub url: Option<String>,
    /// Folder (relative to the project) where a run that cannot reach the store writes the
    /// answers it was paid for, so the next run stores them instead of paying again. Default
    /// `.shopscribe/spool`; in a container, put it on a volume that outlives the container.
    pub spool_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// `postgres://…` of the warehouse the jobs' SQL reads (use read-only credentials; sessions
    /// are also opened read-only). Default: the store's database. Overridden by
    /// `SHOPSCRIBE_SOURCE_URL`.
    pub url: Option<String>,
    /// Longest a job's query may run, in seconds. Default 600.
    pub statement_timeout_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLlm {
    /// `offline` (deterministic template writer, no network), `openai` (any OpenAI-compatible
    /// API), or `auto` (openai when the API key variable is set, else offline). Default `auto`.
    /// Overridden by `SHOPSCRIBE_LLM_PROVIDER`.
    pub provider: Option<String>,
    /// Model name sent to the API and part of every input hash. Default `gpt-4o-mini`.
    /// Overridden by `SHOPSCRIBE_LLM_MODEL`.
    pub model: Option<String>,
    /// API root for OpenAI-compatible servers. Default `https://api.openai.com/v1`.
    /// Overridden by `SHOPSCRIBE_LLM_BASE_URL`.
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key (the key itself never goes in the
    /// file). Default `OPENAI_API_KEY`.
    pub api_key_env: Option<String>,
    /// Output token budget per request. Default 1200.
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature. Default 0.4.
    pub temperature: Option<f32>,
    /// Most requests in flight at once. Default 16.
    pub max_in_flight: Option<usize>,
    /// Attempts per entity before it is recorded as failed (includes the repair attempt).
    /// Default 8.
    pub max_attempts: Option<u32>,
    /// Wall-clock budget per entity across all its attempts and waits, in seconds. Default 600.
    pub max_entity_seconds: Option<f64>,
    /// `json_schema` (strict structured output from the job's schema), `json_object`, or `none`
    /// for servers without `response_format`. Output is always validated locally. Default
    /// `json_schema`.
    pub structured_output: Option<String>,
    /// Name of the output-budget field: `max_completion_tokens` (OpenAI) or `max_tokens` (most
    /// other servers). Default: `max_completion_tokens` for api.openai.com, else `max_tokens`.
    pub max_tokens_field: Option<String>,
    /// Requests per minute the client allows itself (set just under your account's limit).
    /// Default 500.
    pub requests_per_minute: Option<f64>,
    /// Tokens per minute (prompt + max output per request, reconciled with real usage).
    /// Default 200000.
    pub tokens_per_minute: Option<f64>,
    /// Seconds to establish a connection. Default 10.
    pub connect_timeout_seconds: Option<f64>,
    /// Seconds for a whole request, response included. Default 120.
    pub request_timeout_seconds: Option<f64>,
    /// Batch API (`provider = "openai-batch"`): retry failed or expired requests `realtime`
    /// (default) or in a follow-up `batch`.
    pub batch_retry: Option<String>,
    /// Batch API: seconds before the first status poll (then 1.5× longer each time). Default 10.
    pub batch_poll_seconds: Option<f64>,
    /// Batch API: longest wait between polls, in seconds. Default 300.
    pub batch_poll_max_seconds: Option<f64>,
    /// Batch API: requests per batch (the API's limit and the default: 50,000).
    pub batch_max_requests: Option<usize>,
    /// Prices per model in USD per million tokens: `[llm.prices."gpt-4o-mini"]`.
    #[serde(default)]
    pub prices: BTreeMap<String, RawPrice>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// USD per 1M prompt tokens.
    pub input: f64,
    /// USD per 1M output tokens.
    pub output: f64,
    /// USD per 1M prompt tokens through the Batch API. Default: half of `input`.
    pub batch_input: Option<f64>,
    /// USD per 1M output tokens through the Batch API. Default: half of `output`.
    pub batch_output: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkers {
    /// Seconds a claimed task stays with its worker without a heartbeat; a dead worker's tasks
    /// return to the queue after this. Heartbeats come every third of it. Default 60.
    pub lease_seconds: Option<f64>,
    /// Tasks claimed at once. Default: `llm.max_in_flight`.
    pub claim_batch: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    /// Address to listen on. Default `127.0.0.1:8080`; `--bind` overrides it.
    pub bind: Option<String>,
    /// Requests per second one API token may make (bursts of twice that). Default 100.
    pub client_requests_per_second: Option<u32>,
    /// On-demand generations (cold entities, `?refresh=true`) one token may cause per minute.
    /// Cached answers do not count. Default 60.
    pub client_generations_per_minute: Option<u32>,
    /// Requests handled at once by the whole server; more get 429 at once. Default 1024.
    pub max_concurrent_requests: Option<usize>,
    /// Longest time a request may take, on-demand generation included. Default 120.
    pub request_timeout_seconds: Option<f64>,
    /// Largest accepted request body. Default 1 MiB.
    pub max_body_bytes: Option<usize>,
    /// Largest accepted request head (request line and headers). Default 16 KiB.
    pub max_header_bytes: Option<usize>,
    /// Longest time a client may take to send a request's line and headers, from its first
    /// byte; slower connections are closed. Default 10.
    pub header_read_timeout_seconds: Option<f64>,
    /// Longest time a connection may sit without a request in progress (before its first
    /// request, between keep-alive requests) or with a response the client does not read;
    /// then it is closed. Default 60.
    pub idle_timeout_seconds: Option<f64>,
    /// Connections one client IP address may hold open at once; more are answered 429 and
    /// closed. Default 256.
    pub max_connections_per_ip: Option<usize>,
    /// How long a job's source rows and features are reused before the source is read again
    /// (a run started through the API refreshes them at once). Default 300.
    pub snapshot_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    /// Seconds between polls. Default 60; `--interval` overrides it.
    pub interval_seconds: Option<f64>,
    /// Datasets whose `from` location is polled for new or changed files. Default: all.
    pub datasets: Option<Vec<String>>,
    /// SQL returning one value that changes when the source data changes (e.g.
    /// `SELECT max(loaded_at) FROM sales`), run on the source database. A new value runs the
    /// jobs. Default none.
    pub data_version_sql: Option<String>,
    /// Jobs run when the data version changes. Default: all.
    pub jobs: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublish {
    /// Folder (relative to the project), `file:///abs/path` or `s3://bucket/prefix`.
    /// Default `site`. Overridden by `SHOPSCRIBE_PUBLISH_URL`.
    pub url: Option<String>,
    /// Public root of the site, used for canonical links and sitemap.xml.
    /// Default `https://example.com`.
    pub base_url: Option<String>,
    /// The largest share (0–1) of a job's published pages one run may remove because their
    /// entities left the source; a run that would remove more, or whose source is empty, fails
    /// and removes nothing (a broken upstream must not delete the site). Default 0.5; 1 accepts
    /// any shrink. `run --allow-shrink` accepts it for one run.
    pub max_shrink_share: Option<f64>,
    /// `FAQPage` structured data on pages with an FAQ. Default false: search engines show FAQ
    /// rich results only for a few authoritative sites since 2023; the FAQ itself is always
    /// on the page.
    pub faq_markup: Option<bool>,
    /// The site check after each publish (`shopscribe check-site`): `warn` (default) reports its
    /// problems in the run summary and log, `error` also fails the run, `off` skips it.
    pub check: Option<String>,
    /// The near-duplicate gate: the highest word-5-shingle Jaccard similarity (0–1, names
    /// masked) a page's text may have to another page of its job. A page generated by a run
    /// over it is regenerated with a variation instruction, then published `noindex` and left
    /// out of the sitemap; `check-site` reports indexable pages over it. Default 0.9 (Screaming
    /// Frog's near-duplicate default); 1 turns the gate off.
    pub max_similarity: Option<f64>,
    /// How many times the gate regenerates a near-duplicate page before publishing it
    /// `noindex` (each one a paid call). Default 2; 0 marks it `noindex` at once.
    pub max_variations: Option<u32>,
    /// Links to related entities on every entity page: this many pages of the same peer group
    /// nearest by rank (`jobs.NAME.page.related_by`), or nearest among all of the job's pages
    /// for an entity without a group. Default 5; 0 leaves the section out; at most 50.
    pub related: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    /// One line on what the job writes: the title of the job's pages and index on the site (default:
    /// the project's name) and its description in the API's job list.
    pub description: Option<String>,
    /// SQL file (relative to the project) returning one row per entity.
    pub sql: String,
    /// Column holding the entity's unique key (also its page's file name).
    pub key: String,
    /// Column holding the display name. Default: the key column.
    pub name: Option<String>,
    /// Column holding the peer group (category). Optional: without it everyone is one group.
    pub group: Option<String>,
    /// Word for the group in prompts and pages. Default "category".
    pub group_label: Option<String>,
    /// Word for one entity ("domain", "product"). Default "entity".
    pub entity_label: Option<String>,
    /// Extra columns passed to the prompt as-is (e.g. `["country"]`). Default none.
    #[serde(default)]
    pub attributes: Vec<String>,
    /// Groups with fewer members are not used for comparison; their members are compared with
    /// everyone. Default 5.
    pub min_group_size: Option<usize>,
    /// minijinja template of the system message (relative to the project).
    pub system_prompt: String,
    /// minijinja template of the user message (relative to the project).
    pub user_prompt: String,
    /// JSON Schema of the output (relative to the project).
    pub schema: String,
    /// The metrics derived into features, in prompt order.
    #[serde(default)]
    pub metrics: Vec<RawMetric>,
    /// Output checks beyond the JSON schema.
    #[serde(default)]
    pub validate: RawValidate,
    /// Datasets this job reads: a delivery to one of them (`watch`, `POST /v1/runs` with an S3
    /// event) runs this job. Default: every dataset of the project.
    pub datasets: Option<Vec<String>>,
    /// Data checks run on the source before features and generation: `[[jobs.NAME.checks]]`.
    #[serde(default)]
    pub checks: Vec<RawCheck>,
    /// What the job's pages say about their entity beyond the text: `[jobs.NAME.page]`.
    #[serde(default)]
    pub page: RawPage,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPage {
    /// The schema.org type of the entity a page is about: `Thing` (default: the page's
    /// `WebPage` is `about` a named thing, nothing more) or `Product` (a `Product` node with
    /// name, description, brand, category, sku = the key, and `aggregateRating` when `rating`
    /// is set).
    #[serde(rename = "type")]
    pub schema_type: Option<String>,
    /// Attribute column (one of `attributes`) holding the product's brand. Default none.
    pub brand: Option<String>,
    /// `Product` pages: an `aggregateRating` from two public metrics. Default none: no rating
    /// is claimed.
    pub rating: Option<RawRating>,
    /// The metric column related pages are ranked by. Default: the job's first metric.
    pub related_by: Option<String>,
    /// Related links on this job's pages. Default `publish.related`.
    pub related: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRating {
    /// Metric column holding the average rating (`ratingValue`); must be `public = true`.
    pub value: String,
    /// Metric column holding how many reviews it averages (`reviewCount`); must be public.
    pub count: String,
    /// The best possible rating. Default 5.
    pub best: Option<f64>,
    /// The worst possible rating. Default 1.
    pub worst: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Names the check in `plan`, the run summary, the logs and the run report (letters, digits,
    /// `_`, `-`; unique within the job).
    pub name: String,
    /// A SQL file (relative to the project, ending in `.sql`) or an inline query, run on the
    /// job's source with `:as_of` bound like the job's SQL, returning the keys of the entities
    /// that FAIL the assertion, in a column named like the job's `key` (or as its only column).
    pub sql: String,
    /// `exclude_entity` (default: the failing entities are left out of the run before features,
    /// and their published pages are removed), `warn` (reported only) or `fail_run` (the run
    /// fails before anything is spent).
    pub on_fail: Option<String>,
    /// What the check asserts, for people. Default none.
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFactCheck {
    /// Reject output whose tier or position words about a metric contradict the metric's tier
    /// in the prompt's context. Default true.
    pub enabled: Option<bool>,
    /// Phrases that place a metric in the top 10 % (positional). Default: English.
    pub top_10: Option<Vec<String>>,
    /// Phrases that place a metric above the median (true of the top 10 % too).
    pub above_median: Option<Vec<String>>,
    /// Phrases that place a metric below the median (true of the bottom 10 % too).
    pub below_median: Option<Vec<String>>,
    /// Phrases that place a metric in the bottom 10 %.
    pub bottom_10: Option<Vec<String>>,
    /// Phrases that call a metric good ("strength", "leader"): allowed only in the better half
    /// (the lower half for a `lower_is_better` metric).
    pub strong: Option<Vec<String>>,
    /// Phrases that call a metric bad ("weakness", "lags"): allowed only in the worse half.
    pub weak: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetric {
    /// Column of the SQL result holding the metric.
    pub column: String,
    /// Words used in prompts ("conversion rate"). Default: the column name with spaces.
    pub label: Option<String>,
    /// `count`, `currency`, `percent` (a fraction shown as %), or `ratio`. Default `count`.
    pub unit: Option<String>,
    /// Pass the exact value (and exact peer quantiles) to the prompt. Default false: the prompt
    /// sees only the bin and the tier.
    #[serde(default)]
    pub public: bool,
    /// Ascending bin edges in stored units (0.01 is 1 % for a percent metric). Default: automatic
    /// log-scale edges (1–5–10 steps), which leave zero and negative values without a bin.
    pub bins: Option<Vec<f64>>,
    /// Text after bin labels ("visits" gives "10K–50K visits"). Default none.
    pub bin_suffix: Option<String>,
    /// True when a smaller value is better (return rate, one-star share): prompts and the offline
    /// writer then read a top tier as a weakness. Default false.
    #[serde(default)]
    pub lower_is_better: bool,
    /// Smallest valid value; anything below is treated as bad data (feature absent).
    pub min: Option<f64>,
    /// Largest valid value; anything above is treated as bad data (feature absent).
    pub max: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValidate {
    /// Output fields that must mention the entity's name. Default none.
    #[serde(default)]
    pub name_in: Vec<String>,
    /// Word-count bounds per string field: `{ summary = [120, 300] }`.
    #[serde(default)]
    pub word_count: BTreeMap<String, [usize; 2]>,
    /// Phrases that must not appear (case-insensitive).
    #[serde(default)]
    pub banned_phrases: Vec<String>,
    /// Reject output that states a number its prompt did not contain. Default true.
    pub privacy_guard: Option<bool>,
    /// The fact check of tier words (on by default): `[jobs.NAME.validate.fact_check]`.
    #[serde(default)]
    pub fact_check: RawFactCheck,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataset {
    /// Where deliveries land: a folder (relative to the project) or `s3://bucket/prefix`.
    /// Files ending .jsonl/.ndjson (JSON lines), .json (one JSON array) or .csv, each optionally
    /// .gz, are read in name order. `shopscribe ingest DATASET --from URI` overrides it.
    pub from: String,
    /// Field(s) identifying a record; several make a composite key.
    pub key: Vec<String>,
    /// Field whose larger value is the newer version (ties: the later line wins). Optional.
    pub version: Option<String>,
    /// `incremental` (default: a key absent from a delivery is unchanged) or `snapshot` (every
    /// delivery is complete: absent keys are marked deleted).
    pub mode: Option<String>,
    /// Expected types of fields: `string`, `int`, `float`, `bool`, `array`, `object`, `any`. A
    /// line whose field has another type is rejected (CSV text is converted first).
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// Longest accepted line in bytes; longer lines are rejected. Default 1 MiB.
    pub max_line_bytes: Option<usize>,
    /// Ingest fails when more than this share of a file's lines is rejected. Default 0.05.
    pub max_reject_share: Option<f64>,
    /// A gold table rebuilt after each ingest: `product_summary` (reviews in the Amazon shape)
    /// or `product_catalog` (product metadata: asin, title, brand, category).
    pub gold: Option<String>,
    /// Fields every record must have, not null: `required = ["asin", "overall"]`. A record
    /// without one (or with `null`; in CSV an empty cell) is rejected. Default none.
    #[serde(default)]
    pub required: Vec<String>,
    /// Arrays of a fixed length: `array_lengths = { helpful = 2 }`. A record whose field is
    /// another length or not an array is rejected (absent or null is left to `required`).
    /// Default none.
    #[serde(default)]
    pub array_lengths: BTreeMap<String, usize>,
    /// A JSON object that names a key twice (or a CSV header naming a column twice):
    /// `reject` (default: which value is meant is ambiguous) or `last` (the last one wins).
    pub duplicate_keys: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// Environment variable holding the Telegram bot token. Default `TELEGRAM_BOT_TOKEN`.
    pub telegram_token_env: Option<String>,
    /// Telegram chat id (a channel like "-1001234567890" or "@channel"). Overridden by
    /// `TELEGRAM_CHAT_ID`. Telegram is used when both token and chat id are set.
    pub telegram_chat_id: Option<String>,
    /// Bot API root. Default `https://api.telegram.org`.
    pub telegram_api: Option<String>,
    /// Webhook URL (JSON body with a Slack-compatible `text` and the run's figures).
    pub webhook_url: Option<String>,
    /// Environment variable holding the webhook URL instead (it may carry a secret).
    pub webhook_url_env: Option<String>,
    /// `always` (default) or `failures`: only failed or partial runs.
    pub on: Option<String>,
}
