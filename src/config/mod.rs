//! Configuration: `shopscribe.toml` + environment overrides → a validated [`Project`]. Every
//! problem is collected and reported at once, each with the file and the key it concerns.

mod check;
mod fact_check;
pub mod page;
mod raw;
pub mod template;

use crate::features::{BinSpec, MetricSpec, Unit};
pub use check::{Check, OnFail};
pub use fact_check::FactCheckConfig;
use raw::{RawConfig, RawJob, RawMetric, RawServe, RawWatch};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name looked for in a project folder.
pub const CONFIG_FILE: &str = "shopscribe.toml";

/// Every problem found in a project's configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{} has {} problem{}:",
            self.file.display(),
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Which writer produces the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    Offline,
    OpenAi,
    /// OpenAI's Batch API: half price, answers within 24 h.
    OpenAiBatch,
    /// Anthropic's Messages API.
    Anthropic,
    /// Anthropic's Message Batches: half price, answers within 24 h.
    AnthropicBatch,
}

impl ProviderKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderKind::Offline => "offline",
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiBatch => "openai-batch",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::AnthropicBatch => "anthropic-batch",
        }
    }

    /// Anthropic's providers take their key, base URL and model defaults from Anthropic.
    pub fn is_anthropic(&self) -> bool {
        matches!(self, ProviderKind::Anthropic | ProviderKind::AnthropicBatch)
    }

    /// The most requests one batch of this provider's batch API may hold.
    pub fn batch_max_requests(&self) -> usize {
        match self {
            ProviderKind::AnthropicBatch => ANTHROPIC_BATCH_MAX_REQUESTS,
            _ => BATCH_MAX_REQUESTS,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub provider: ProviderKind,
    /// True when `provider = "auto"` chose offline because the key variable was unset.
    pub fell_back_to_offline: bool,
    pub model: String,
    pub base_url: String,
    pub api_key_env: String,
    pub max_output_tokens: u32,
    pub temperature: f32,
    pub max_in_flight: usize,
    pub max_attempts: u32,
    pub max_entity_time: std::time::Duration,
    pub structured_output: StructuredOutput,
    pub max_tokens_field: String,
    pub requests_per_minute: f64,
    pub tokens_per_minute: f64,
    pub connect_timeout: std::time::Duration,
    pub request_timeout: std::time::Duration,
    pub prices: BTreeMap<String, Price>,
    /// Batch API: how failed or expired requests are retried.
    pub batch_retry: BatchRetry,
    /// Batch API: first poll interval (then 1.5× up to `batch_poll_max`).
    pub batch_poll_first: std::time::Duration,
    pub batch_poll_max: std::time::Duration,
    /// Batch API: requests per batch file (the API allows 50,000).
    pub batch_max_requests: usize,
}

/// How the output format is requested from an OpenAI-compatible server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructuredOutput {
    /// `response_format: {type: json_schema, strict: true}` from the job's schema.
    JsonSchema,
    /// `response_format: {type: json_object}` for servers without schema support.
    JsonObject,
    /// No `response_format`; the prompt alone asks for JSON.
    None,
}

/// The OpenAI Batch API's limit of requests per batch (`llm.batch_max_requests` is checked
/// against it; the batch client splits work by `batch_max_requests`).
pub const BATCH_MAX_REQUESTS: usize = 50_000;
/// The same limit of Anthropic's Message Batches.
pub const ANTHROPIC_BATCH_MAX_REQUESTS: usize = 100_000;

/// Where a batch's failed or expired requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchRetry {
    /// Real-time calls, right after the batch.
    Realtime,
    /// A follow-up batch (at most two).
    Batch,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub batch_input: f64,
    pub batch_output: f64,
}

impl Price {
    pub fn cost(&self, tokens_in: u64, tokens_out: u64, batch: bool) -> f64 {
        let (i, o) = if batch {
            (self.batch_input, self.batch_output)
        } else {
            (self.input, self.output)
        };
        (tokens_in as f64 * i + tokens_out as f64 * o) / 1e6
    }
}

/// Money as every output shows it (plan, run summary, report, notifications): US dollars with
/// four decimals, `$1.2464`.
pub fn format_usd(usd: f64) -> String {
    // No "-$0.0000" for a zero that went through arithmetic.
    let usd = if usd == 0.0 { 0.0 } else { usd };
    format!("${usd:.4}")
}

impl LlmConfig {
    /// The price of the configured model, if the project declares one.
    pub fn price(&self) -> Option<Price> {
        self.prices.get(&self.model).copied()
    }
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The warehouse URL; `None` means the store's database.
    pub url: Option<String>,
    pub statement_timeout: std::time::Duration,
}

/// A declared dataset (see `raw::RawDataset` for every field's meaning).
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// Normalised location: `file:///abs/dir` or `s3://bucket/prefix`.
    pub from: String,
    pub key: Vec<String>,
    pub version: Option<String>,
    pub snapshot: bool,
    pub types: BTreeMap<String, FieldType>,
    pub max_line_bytes: usize,
    pub max_reject_share: f64,
    /// The gold table rebuilt from this dataset after each ingest, if any.
    pub gold: Option<Gold>,
    /// Fields every record must have, not null.
    pub required: Vec<String>,
    /// Array fields of a fixed length (when present and not null).
    pub array_lengths: BTreeMap<String, usize>,
    /// A JSON object (or CSV header) naming a key twice is accepted, the last one winning,
    /// instead of rejected.
    pub duplicate_keys_allowed: bool,
}

/// A gold table shopscribe builds from a dataset's current records (`crate::ingest::gold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gold {
    /// `product_summary`: one row of review figures per product (the Amazon reviews shape).
    ProductSummary,
    /// `product_catalog`: one row of metadata per product (asin, title, brand, category).
    ProductCatalog,
}

impl Gold {
    pub fn table(self) -> &'static str {
        match self {
            Gold::ProductSummary => "product_summary",
            Gold::ProductCatalog => "product_catalog",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Int,
    Float,
    Bool,
    Array,
    Object,
    Any,
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub telegram_token_env: String,
    pub telegram_chat_id: Option<String>,
    pub telegram_api: String,
    pub webhook_url: Option<String>,
    pub webhook_url_env: Option<String>,
    pub only_failures: bool,
}

/// `shopscribe serve` settings (see `RawServe` for each field's meaning and default).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bind: String,
    pub client_requests_per_second: u32,
    pub client_generations_per_minute: u32,
    pub max_concurrent_requests: usize,
    pub request_timeout: std::time::Duration,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub snapshot_ttl: std::time::Duration,
    pub header_read_timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    pub max_connections_per_ip: usize,
}

/// `shopscribe watch` settings (see `RawWatch`).
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub interval: std::time::Duration,
    pub datasets: Vec<String>,
    pub data_version_sql: Option<String>,
    pub jobs: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct WorkersConfig {
    pub lease: std::time::Duration,
    pub claim_batch: usize,
}

#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Normalised destination: `file:///abs/dir` or `s3://bucket/prefix`.
    pub url: String,
    pub base_url: String,
    /// The largest share of a job's published pages a run may remove (see `RawPublish`).
    pub max_shrink_share: f64,
    /// `FAQPage` structured data (see `RawPublish`).
    pub faq_markup: bool,
    /// The site check after each publish.
    pub check: SiteCheck,
    /// The near-duplicate gate's threshold (see `RawPublish`).
    pub max_similarity: f64,
    /// Regenerations of a near-duplicate page before it is published `noindex`.
    pub max_variations: u32,
    /// Related links per entity page (`publish.related`; a job's `page.related` overrides it).
    pub related: usize,
}

/// `publish.max_similarity` unless set: Screaming Frog's near-duplicate default.
pub const DEFAULT_MAX_SIMILARITY: f64 = 0.9;
/// `publish.max_variations` unless set.
pub const DEFAULT_MAX_VARIATIONS: u32 = 2;

/// What a run does with the site check after publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteCheck {
    Off,
    /// Problems are reported (summary, log, report), the run's outcome is unchanged.
    Warn,
    /// Problems also fail the run.
    Error,
}

/// A metric of a job: where it comes from and how it becomes features.
#[derive(Debug, Clone)]
pub struct JobMetric {
    pub column: String,
    pub spec: MetricSpec,
    pub lower_is_better: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ValidateConfig {
    pub name_in: Vec<String>,
    pub word_count: BTreeMap<String, (usize, usize)>,
    pub banned_phrases: Vec<String>,
    pub privacy_guard: bool,
    /// Tier words must agree with the metrics' tiers (`crate::validate::fact_check`).
    pub fact_check: FactCheckConfig,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub description: String,
    pub sql_file: PathBuf,
    pub sql: String,
    pub key_column: String,
    pub name_column: String,
    pub group_column: Option<String>,
    pub group_label: String,
    pub entity_label: String,
    pub attributes: Vec<String>,
    pub min_group_size: usize,
    /// The template files, named in template errors.
    pub system_prompt_file: PathBuf,
    pub user_prompt_file: PathBuf,
    pub system_template: String,
    pub user_template: String,
    pub schema: serde_json::Value,
    /// The schema file's text, hashed into every input hash.
    pub schema_text: String,
    pub metrics: Vec<JobMetric>,
    pub validate: ValidateConfig,
    /// Datasets whose deliveries run this job.
    pub datasets: Vec<String>,
    /// Data checks run on the source before features (`crate::checks`).
    pub checks: Vec<Check>,
    /// What its pages say about their entities beyond the text (`[jobs.NAME.page]`).
    pub page: page::PageConfig,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    pub name: String,
    pub currency: String,
    /// Normalised store URL (`sqlite:///abs/path.db`).
    pub store_url: String,
    /// Where paid answers that could not be stored wait for the next run (absolute).
    pub spool_dir: PathBuf,
    pub source: SourceConfig,
    pub llm: LlmConfig,
    pub publish: PublishConfig,
    pub workers: WorkersConfig,
    pub serve: ServeConfig,
    pub watch: WatchConfig,
    pub notify: NotifyConfig,
    pub datasets: BTreeMap<String, Dataset>,
    pub jobs: BTreeMap<String, Job>,
}

/// A job or dataset the project does not define; the message lists those it does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NotFound {
    /// No job of that name.
    #[error("no job named `{name}` in this project; jobs: {}", known.join(", "))]
    Job { name: String, known: Vec<String> },
    /// No dataset of that name.
    #[error(
        "no dataset named `{name}` in this project; datasets: {}",
        if known.is_empty() { "none".to_string() } else { known.join(", ") }
    )]
    Dataset { name: String, known: Vec<String> },
}

impl Project {
    pub fn dataset(&self, name: &str) -> Result<&Dataset, NotFound> {
        self.datasets.get(name).ok_or_else(|| NotFound::Dataset {
            name: name.to_string(),
            known: self.datasets.keys().cloned().collect(),
        })
    }

    /// The jobs that read `dataset` (`jobs.NAME.datasets`): a delivery to it runs them.
    pub fn jobs_reading<'a>(&'a self, dataset: &'a str) -> impl Iterator<Item = &'a Job> + 'a {
        self.jobs
            .values()
            .filter(move |j| j.datasets.iter().any(|d| d == dataset))
    }

    pub fn job(&self, name: &str) -> Result<&Job, NotFound> {
        self.jobs.get(name).ok_or_else(|| NotFound::Job {
            name: name.to_string(),
            known: self.jobs.keys().cloned().collect(),
        })
    }
}

/// Reads the environment through a function so tests can inject one.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Settings a caller puts in place of the file's, as if the file said so: validated and
/// resolved like the file's values, and still overridden by the environment (`SHOPSCRIBE_*`).
/// For a program that loads a project it wrote itself (the demo's two examples share a site).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `publish.url` (a folder relative to the project, `file://…` or `s3://…`).
    pub publish_url: Option<String>,
}

impl Overrides {
    fn apply(&self, raw: &mut RawConfig) {
        if let Some(url) = &self.publish_url {
            raw.publish.url = Some(url.clone());
        }
    }
}

/// Loads `DIR/shopscribe.toml` with overrides from the process environment.
pub fn load(dir: &Path) -> Result<Project, ConfigError> {
    load_with_overrides(dir, &Overrides::default())
}

/// As [`load`], with some of the file's settings replaced by `overrides`.
pub fn load_with_overrides(dir: &Path, overrides: &Overrides) -> Result<Project, ConfigError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    load_from(dir, &env, overrides)
}

pub fn load_with_env(dir: &Path, env: EnvLookup) -> Result<Project, ConfigError> {
    load_from(dir, env, &Overrides::default())
}

fn load_from(dir: &Path, env: EnvLookup, overrides: &Overrides) -> Result<Project, ConfigError> {
    let file = dir.join(CONFIG_FILE);
    let fail = |p: String| ConfigError {
        file: file.clone(),
        problems: vec![p],
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        fail(format!(
            "cannot read it: {e} (run `shopscribe init {}` to create a project there)",
            dir.display()
        ))
    })?;
    let (raw, mut problems) = parse_raw(&text);
    let Some(mut raw) = raw else {
        return Err(ConfigError { file, problems });
    };
    overrides.apply(&mut raw);
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    match validate(raw, &dir, env) {
        Ok(project) if problems.is_empty() => Ok(project),
        Ok(_) => Err(ConfigError { file, problems }),
        Err(more) => {
            problems.extend(more);
            Err(ConfigError { file, problems })
        }
    }
}

/// Most unknown keys listed before giving up on a file.
const MAX_UNKNOWN_KEYS: usize = 100;

/// Deserialises the file into the raw structs. Their `deny_unknown_fields` stops at the first
/// unknown key, so each one met is recorded with its path and line, removed from the parsed
/// document, and deserialisation tried again: every unknown key is listed at once (with serde's
/// "expected …" list of the known ones). Returns the raw config when the rest of the file fits
/// (so validation can add its own problems), and the problems found.
fn parse_raw(text: &str) -> (Option<RawConfig>, Vec<String>) {
    use serde::Deserialize;
    let mut doc = match toml::de::DeTable::parse(text) {
        Ok(d) => d,
        Err(mut e) => {
            e.set_input(Some(text));
            return (None, vec![e.to_string()]);
        }
    };
    // (line, problem) of each unknown key, listed in file order.
    let mut unknown: Vec<(usize, String)> = Vec::new();
    let in_order = |mut unknown: Vec<(usize, String)>| {
        unknown.sort_by_key(|(line, _)| *line);
        unknown.into_iter().map(|(_, p)| p).collect::<Vec<_>>()
    };
    loop {
        let mut e = match RawConfig::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(raw) => return (Some(raw), in_order(unknown)),
            Err(e) => e,
        };
        if e.message().starts_with("unknown field")
            && unknown.len() < MAX_UNKNOWN_KEYS
            && let Some(span) = e.span()
            && let Some(path) = remove_key(doc.get_mut(), &span, "")
        {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            unknown.push((line, format!("{path}: {} (line {line})", e.message())));
            continue;
        }
        e.set_input(Some(text));
        let mut problems = in_order(unknown);
        problems.push(e.to_string());
        return (None, problems);
    }
}

/// Removes the key whose span is `span` from a parsed document; returns its dotted path
/// (`jobs.x.metrics[2].colum`).
fn remove_key(
    table: &mut toml::de::DeTable<'_>,
    span: &std::ops::Range<usize>,
    at: &str,
) -> Option<String> {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    if let Some(key) = table.keys().find(|k| k.span() == *span).cloned() {
        table.remove(&key);
        return Some(join(key.get_ref()));
    }
    fn in_value(
        v: &mut toml::de::DeValue<'_>,
        span: &std::ops::Range<usize>,
        at: &str,
    ) -> Option<String> {
        match v {
            toml::de::DeValue::Table(t) => remove_key(t, span, at),
            toml::de::DeValue::Array(a) => a
                .iter_mut()
                .enumerate()
                .find_map(|(i, x)| in_value(x.get_mut(), span, &format!("{at}[{i}]"))),
            _ => None,
        }
    }
    table
        .iter_mut()
        .find_map(|(k, v)| in_value(v.get_mut(), span, &join(k.get_ref())))
}

fn validate(raw: RawConfig, dir: &Path, env: EnvLookup) -> Result<Project, Vec<String>> {
    let mut problems = Vec::new();
    let currency = raw.project.currency.unwrap_or_else(|| "$".into());
    if raw.project.name.trim().is_empty() {
        problems.push("project.name: must not be empty".into());
    }

    let spool_dir = dir.join(
        raw.store
            .spool_dir
            .as_deref()
            .unwrap_or(".shopscribe/spool"),
    );
    let store_url = env("SHOPSCRIBE_STORE_URL")
        .or(raw.store.url)
        .unwrap_or_else(|| "sqlite://shopscribe.db".into());
    let store_url = match normalise_store_url(&store_url, dir) {
        Ok(u) => u,
        Err(e) => {
            problems.push(format!("store.url: {e}"));
            String::new()
        }
    };

    let llm = validate_llm(raw.llm, env, &mut problems);
    let source = validate_source(raw.source, dir, env, &mut problems);
    let publish = validate_publish(raw.publish, dir, env, &mut problems);

    let workers = validate_workers(raw.workers, &llm, &mut problems);
    let notify = validate_notify(raw.notify, env, &mut problems);
    let mut datasets = BTreeMap::new();
    for (name, d) in raw.datasets {
        let dataset = validate_dataset(name, d, dir, &mut problems);
        datasets.insert(dataset.name.clone(), dataset);
    }
    if raw.jobs.is_empty() {
        problems.push("jobs: the project declares no job (add a [jobs.NAME] table)".into());
    }
    let mut jobs = BTreeMap::new();
    for (name, job) in raw.jobs {
        if let Some(job) = validate_job(&name, job, dir, &currency, &mut problems) {
            jobs.insert(name, job);
        }
    }

    // Jobs read every dataset unless they name theirs.
    for job in jobs.values_mut() {
        if job.datasets.is_empty() {
            job.datasets = datasets.keys().cloned().collect();
        } else {
            for d in &job.datasets {
                if !datasets.contains_key(d) {
                    problems.push(format!(
                        "jobs.{}.datasets: no dataset named `{d}` (declare [datasets.{d}])",
                        job.name
                    ));
                }
            }
        }
    }
    let serve = validate_serve(raw.serve, &mut problems);
    let watch = validate_watch(raw.watch, &datasets, &jobs, &mut problems);

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Project {
        dir: dir.to_path_buf(),
        name: raw.project.name,
        currency,
        store_url,
        spool_dir,
        source,
        llm,
        publish,
        workers,
        serve,
        watch,
        notify,
        datasets,
        jobs,
    })
}

/// `[source]`: the job SQL's database (default: the store's) and its statement timeout.
fn validate_source(
    raw: raw::RawSource,
    dir: &Path,
    env: EnvLookup,
    problems: &mut Vec<String>,
) -> SourceConfig {
    let source_url = env("SHOPSCRIBE_SOURCE_URL").or(raw.url);
    if let Some(u) = &source_url
        && !(u.starts_with("postgres://")
            || u.starts_with("postgresql://")
            || u.starts_with("sqlite://"))
    {
        problems.push(format!(
            "source.url: `{}` is neither postgres://… nor sqlite://PATH",
            crate::db::redact_url(u)
        ));
    }
    let source_url = source_url.map(|u| normalise_store_url(&u, dir).unwrap_or(u));
    let timeout = raw.statement_timeout_seconds.unwrap_or(600.0);
    if !(timeout.is_finite() && timeout > 0.0) {
        problems.push("source.statement_timeout_seconds: must be a positive number".into());
    }
    SourceConfig {
        url: source_url,
        statement_timeout: std::time::Duration::from_secs_f64(timeout.max(0.001)),
    }
}

/// `[publish]`: where the site goes, its public root, its checks and bounds.
fn validate_publish(
    raw: raw::RawPublish,
    dir: &Path,
    env: EnvLookup,
    problems: &mut Vec<String>,
) -> PublishConfig {
    let publish_url = env("SHOPSCRIBE_PUBLISH_URL")
        .or(raw.url)
        .unwrap_or_else(|| "site".into());
    let publish_url = match normalise_location(&publish_url, dir) {
        Ok(u) => u,
        Err(e) => {
            problems.push(format!("publish.url: {e}"));
            String::new()
        }
    };
    let base_url = raw.base_url.unwrap_or_else(|| "https://example.com".into());
    if url::Url::parse(&base_url).is_err() {
        problems.push(format!(
            "publish.base_url: `{base_url}` is not an absolute URL"
        ));
    }
    let check = match raw.check.as_deref().unwrap_or("warn") {
        "off" => SiteCheck::Off,
        "warn" => SiteCheck::Warn,
        "error" => SiteCheck::Error,
        other => {
            problems.push(format!(
                "publish.check: `{other}` is not one of off, warn, error"
            ));
            SiteCheck::Warn
        }
    };
    let max_shrink_share = raw.max_shrink_share.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&max_shrink_share) {
        problems.push(format!(
            "publish.max_shrink_share: {max_shrink_share} is not a share between 0 and 1"
        ));
    }
    let max_similarity = raw.max_similarity.unwrap_or(DEFAULT_MAX_SIMILARITY);
    if !(max_similarity > 0.0 && max_similarity <= 1.0) {
        problems.push(format!(
            "publish.max_similarity: {max_similarity} is not a similarity above 0 and at most 1"
        ));
    }
    let max_variations = raw.max_variations.unwrap_or(DEFAULT_MAX_VARIATIONS);
    if max_variations > 10 {
        problems.push(format!(
            "publish.max_variations: {max_variations} regenerations per page is more than 10 (each one is paid)"
        ));
    }
    let related = raw.related.unwrap_or(page::DEFAULT_RELATED);
    if related > page::MAX_RELATED {
        problems.push(format!(
            "publish.related: {related} is more than {} links",
            page::MAX_RELATED
        ));
    }
    PublishConfig {
        url: publish_url,
        base_url: base_url.trim_end_matches('/').into(),
        max_shrink_share,
        faq_markup: raw.faq_markup.unwrap_or(false),
        check,
        max_similarity,
        max_variations,
        related,
    }
}

/// `[workers]`: the task lease and claim size of distributed runs.
fn validate_workers(
    raw: raw::RawWorkers,
    llm: &LlmConfig,
    problems: &mut Vec<String>,
) -> WorkersConfig {
    let lease = raw.lease_seconds.unwrap_or(60.0);
    if !(lease.is_finite() && lease >= 1.0) {
        problems.push("workers.lease_seconds: must be at least 1".into());
    }
    WorkersConfig {
        lease: std::time::Duration::from_secs_f64(lease.max(1.0)),
        claim_batch: raw.claim_batch.unwrap_or(llm.max_in_flight).max(1),
    }
}

/// `[notify]`: Telegram and webhook settings, and which runs are told.
fn validate_notify(
    raw: raw::RawNotify,
    env: EnvLookup,
    problems: &mut Vec<String>,
) -> NotifyConfig {
    let only_failures = match raw.on.as_deref().unwrap_or("always") {
        "always" => false,
        "failures" => true,
        other => {
            problems.push(format!(
                "notify.on: unknown value `{other}`; use \"always\" or \"failures\""
            ));
            false
        }
    };
    if let Some(u) = &raw.webhook_url
        && url::Url::parse(u).is_err()
    {
        problems.push(format!("notify.webhook_url: `{u}` is not an absolute URL"));
    }
    NotifyConfig {
        telegram_token_env: raw
            .telegram_token_env
            .unwrap_or_else(|| "TELEGRAM_BOT_TOKEN".into()),
        telegram_chat_id: env("TELEGRAM_CHAT_ID").or(raw.telegram_chat_id),
        telegram_api: raw
            .telegram_api
            .unwrap_or_else(|| "https://api.telegram.org".into()),
        webhook_url: raw.webhook_url,
        webhook_url_env: raw.webhook_url_env,
        only_failures,
    }
}

/// `[datasets.NAME.types]`: each field's declared type.
fn field_types(
    at: &str,
    raw: BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, FieldType> {
    let mut types = BTreeMap::new();
    for (field, t) in raw {
        let ft = match t.as_str() {
            "string" => FieldType::String,
            "int" => FieldType::Int,
            "float" => FieldType::Float,
            "bool" => FieldType::Bool,
            "array" => FieldType::Array,
            "object" => FieldType::Object,
            "any" => FieldType::Any,
            other => {
                problems.push(format!(
                    "{at}.types.{field}: unknown type `{other}`; use string, int, float, bool, array, object or any"
                ));
                FieldType::Any
            }
        };
        types.insert(field, ft);
    }
    types
}

/// `[datasets.NAME]`: where its deliveries arrive, its key and versions, the types and
/// bounds of its records, and its gold table.
fn validate_dataset(
    name: String,
    d: raw::RawDataset,
    dir: &Path,
    problems: &mut Vec<String>,
) -> Dataset {
    let at = format!("datasets.{name}");
    let from = normalise_location(&d.from, dir).unwrap_or_else(|e| {
        problems.push(format!("{at}.from: {e}"));
        String::new()
    });
    if d.key.is_empty() {
        problems.push(format!("{at}.key: name at least one key field"));
    }
    let snapshot = match d.mode.as_deref().unwrap_or("incremental") {
        "incremental" => false,
        "snapshot" => true,
        other => {
            problems.push(format!(
                "{at}.mode: unknown mode `{other}`; use \"incremental\" or \"snapshot\""
            ));
            false
        }
    };
    let types = field_types(&at, d.types, problems);
    let gold = match d.gold.as_deref() {
        None => None,
        Some("product_summary") => Some(Gold::ProductSummary),
        Some("product_catalog") => Some(Gold::ProductCatalog),
        Some(other) => {
            problems.push(format!(
                "{at}.gold: unknown gold table `{other}`; shopscribe builds \"product_summary\" and \"product_catalog\""
            ));
            None
        }
    };
    let mut seen_required = std::collections::BTreeSet::new();
    for f in &d.required {
        if f.is_empty() {
            problems.push(format!("{at}.required: an empty field name"));
        } else if !seen_required.insert(f.as_str()) {
            problems.push(format!("{at}.required: `{f}` is named twice"));
        }
    }
    for f in d.array_lengths.keys() {
        if let Some(t) = types.get(f)
            && !matches!(t, FieldType::Array | FieldType::Any)
        {
            problems.push(format!(
                "{at}.array_lengths.{f}: the field is typed {} in {at}.types, not array",
                format!("{t:?}").to_lowercase()
            ));
        }
    }
    let duplicate_keys_allowed = match d.duplicate_keys.as_deref().unwrap_or("reject") {
        "reject" => false,
        "last" => true,
        other => {
            problems.push(format!(
                "{at}.duplicate_keys: unknown value `{other}`; use \"reject\" (a record naming a key twice is rejected) or \"last\" (the last one wins)"
            ));
            false
        }
    };
    let share = d.max_reject_share.unwrap_or(0.05);
    if !(0.0..=1.0).contains(&share) {
        problems.push(format!("{at}.max_reject_share: must be between 0 and 1"));
    }
    Dataset {
        name,
        from,
        key: d.key,
        version: d.version,
        snapshot,
        types,
        max_line_bytes: d.max_line_bytes.unwrap_or(1 << 20).max(16),
        max_reject_share: share,
        gold,
        required: d.required,
        array_lengths: d.array_lengths,
        duplicate_keys_allowed,
    }
}

fn seconds(at: &str, v: Option<f64>, default: f64, problems: &mut Vec<String>) -> Duration {
    let v = v.unwrap_or(default);
    if !(v.is_finite() && v > 0.0) {
        problems.push(format!("{at}: must be a positive number of seconds"));
        return Duration::from_secs_f64(default);
    }
    Duration::from_secs_f64(v)
}

fn validate_serve(raw: RawServe, problems: &mut Vec<String>) -> ServeConfig {
    let bind = raw.bind.unwrap_or_else(|| "127.0.0.1:8080".into());
    if bind.parse::<std::net::SocketAddr>().is_err() {
        problems.push(format!(
            "serve.bind: `{bind}` is not an address like 127.0.0.1:8080"
        ));
    }
    let positive = |at: &str, v: Option<u32>, d: u32, problems: &mut Vec<String>| match v {
        Some(0) => {
            problems.push(format!("{at}: must be at least 1"));
            d
        }
        Some(v) => v,
        None => d,
    };
    ServeConfig {
        bind,
        client_requests_per_second: positive(
            "serve.client_requests_per_second",
            raw.client_requests_per_second,
            100,
            problems,
        ),
        client_generations_per_minute: positive(
            "serve.client_generations_per_minute",
            raw.client_generations_per_minute,
            60,
            problems,
        ),
        max_concurrent_requests: raw.max_concurrent_requests.unwrap_or(1024).max(1),
        request_timeout: seconds(
            "serve.request_timeout_seconds",
            raw.request_timeout_seconds,
            120.0,
            problems,
        ),
        max_body_bytes: raw.max_body_bytes.unwrap_or(1 << 20).max(1024),
        max_header_bytes: raw.max_header_bytes.unwrap_or(16 << 10).max(1024),
        snapshot_ttl: seconds(
            "serve.snapshot_seconds",
            raw.snapshot_seconds,
            300.0,
            problems,
        ),
        header_read_timeout: seconds(
            "serve.header_read_timeout_seconds",
            raw.header_read_timeout_seconds,
            10.0,
            problems,
        ),
        idle_timeout: seconds(
            "serve.idle_timeout_seconds",
            raw.idle_timeout_seconds,
            60.0,
            problems,
        ),
        max_connections_per_ip: match raw.max_connections_per_ip {
            Some(0) => {
                problems.push("serve.max_connections_per_ip: must be at least 1".into());
                256
            }
            Some(n) => n,
            None => 256,
        },
    }
}

fn validate_watch(
    raw: RawWatch,
    datasets: &BTreeMap<String, Dataset>,
    jobs: &BTreeMap<String, Job>,
    problems: &mut Vec<String>,
) -> WatchConfig {
    let interval = seconds(
        "watch.interval_seconds",
        raw.interval_seconds,
        60.0,
        problems,
    );
    let watched = raw
        .datasets
        .unwrap_or_else(|| datasets.keys().cloned().collect());
    for d in &watched {
        if !datasets.contains_key(d) {
            problems.push(format!("watch.datasets: no dataset named `{d}`"));
        }
    }
    let run = raw.jobs.unwrap_or_else(|| jobs.keys().cloned().collect());
    for j in &run {
        if !jobs.contains_key(j) {
            problems.push(format!("watch.jobs: no job named `{j}`"));
        }
    }
    WatchConfig {
        interval,
        datasets: watched,
        data_version_sql: raw.data_version_sql.filter(|s| !s.trim().is_empty()),
        jobs: run,
    }
}

fn validate_llm(raw: raw::RawLlm, env: EnvLookup, problems: &mut Vec<String>) -> LlmConfig {
    let provider_name = env("SHOPSCRIBE_LLM_PROVIDER")
        .or(raw.provider)
        .unwrap_or_else(|| "auto".into());
    let anthropic = provider_name.starts_with("anthropic");
    let api_key_env = raw.api_key_env.unwrap_or_else(|| {
        if anthropic {
            "ANTHROPIC_API_KEY".into()
        } else {
            "OPENAI_API_KEY".into()
        }
    });
    let key_present = env(&api_key_env).is_some();
    let (provider, fell_back_to_offline) = provider_kind(&provider_name, key_present, problems);
    let max_in_flight = raw.max_in_flight.unwrap_or(16);
    if max_in_flight == 0 {
        problems.push("llm.max_in_flight: must be at least 1".into());
    }
    let max_attempts = raw.max_attempts.unwrap_or(8);
    if max_attempts == 0 {
        problems.push("llm.max_attempts: must be at least 1".into());
    }
    let temperature = raw.temperature.unwrap_or(0.4);
    if !(0.0..=2.0).contains(&temperature) {
        problems.push(format!("llm.temperature: {temperature} is outside 0–2"));
    }
    let structured_output = structured_output(raw.structured_output.as_deref(), problems);
    let (base_url, max_tokens_field) =
        llm_endpoint(raw.base_url, raw.max_tokens_field, env, anthropic, problems);
    let mut positive = |key: &str, v: Option<f64>, default: f64| -> f64 {
        let v = v.unwrap_or(default);
        if !(v.is_finite() && v > 0.0) {
            problems.push(format!("llm.{key}: must be a positive number, got {v}"));
            return default;
        }
        v
    };
    let requests_per_minute = positive("requests_per_minute", raw.requests_per_minute, 500.0);
    let tokens_per_minute = positive("tokens_per_minute", raw.tokens_per_minute, 200_000.0);
    let connect = positive("connect_timeout_seconds", raw.connect_timeout_seconds, 10.0);
    let request = positive(
        "request_timeout_seconds",
        raw.request_timeout_seconds,
        120.0,
    );
    let entity = positive("max_entity_seconds", raw.max_entity_seconds, 600.0);
    let prices = prices(raw.prices, problems);
    let batch_retry = batch_retry(raw.batch_retry.as_deref(), problems);
    let batch_max_requests = batch_max_requests(
        raw.batch_max_requests,
        provider.batch_max_requests(),
        problems,
    );
    LlmConfig {
        batch_retry,
        batch_poll_first: std::time::Duration::from_secs_f64(
            raw.batch_poll_seconds.unwrap_or(10.0).max(0.01),
        ),
        batch_poll_max: std::time::Duration::from_secs_f64(
            raw.batch_poll_max_seconds.unwrap_or(300.0).max(0.01),
        ),
        batch_max_requests,
        structured_output,
        max_tokens_field,
        requests_per_minute,
        tokens_per_minute,
        connect_timeout: std::time::Duration::from_secs_f64(connect),
        request_timeout: std::time::Duration::from_secs_f64(request),
        max_entity_time: std::time::Duration::from_secs_f64(entity),
        prices,
        provider,
        fell_back_to_offline,
        model: env("SHOPSCRIBE_LLM_MODEL")
            .or(raw.model)
            .unwrap_or_else(|| {
                if anthropic {
                    "claude-haiku-4-5".into()
                } else {
                    "gpt-4o-mini".into()
                }
            }),
        base_url,
        api_key_env,
        max_output_tokens: raw.max_output_tokens.unwrap_or(1200),
        temperature,
        max_in_flight,
        max_attempts,
    }
}

/// `llm.base_url` (default: the provider's API) and the name its requests give the output
/// token limit (`llm.max_tokens_field`; OpenAI's own API wants `max_completion_tokens`).
fn llm_endpoint(
    base_url: Option<String>,
    max_tokens_field: Option<String>,
    env: EnvLookup,
    anthropic: bool,
    problems: &mut Vec<String>,
) -> (String, String) {
    let base_url = env("SHOPSCRIBE_LLM_BASE_URL")
        .or(base_url)
        .unwrap_or_else(|| {
            if anthropic {
                "https://api.anthropic.com/v1".into()
            } else {
                "https://api.openai.com/v1".into()
            }
        });
    if url::Url::parse(&base_url).is_err() {
        problems.push(format!("llm.base_url: `{base_url}` is not an absolute URL"));
    }
    let max_tokens_field = max_tokens_field.unwrap_or_else(|| {
        if base_url.contains("api.openai.com") {
            "max_completion_tokens".into()
        } else {
            "max_tokens".into()
        }
    });
    (base_url, max_tokens_field)
}

/// `llm.provider` → the kind, and whether `auto` fell back to offline for want of a key.
fn provider_kind(
    name: &str,
    key_present: bool,
    problems: &mut Vec<String>,
) -> (ProviderKind, bool) {
    match name {
        "offline" => (ProviderKind::Offline, false),
        "openai" => (ProviderKind::OpenAi, false),
        "openai-batch" => (ProviderKind::OpenAiBatch, false),
        "anthropic" => (ProviderKind::Anthropic, false),
        "anthropic-batch" => (ProviderKind::AnthropicBatch, false),
        "auto" if key_present => (ProviderKind::OpenAi, false),
        "auto" => (ProviderKind::Offline, true),
        other => {
            problems.push(format!(
                "llm.provider: unknown provider `{other}`; use \"offline\", \"openai\", \"openai-batch\", \"anthropic\", \"anthropic-batch\" or \"auto\""
            ));
            (ProviderKind::Offline, false)
        }
    }
}

fn structured_output(v: Option<&str>, problems: &mut Vec<String>) -> StructuredOutput {
    match v.unwrap_or("json_schema") {
        "json_schema" => StructuredOutput::JsonSchema,
        "json_object" => StructuredOutput::JsonObject,
        "none" => StructuredOutput::None,
        other => {
            problems.push(format!(
                "llm.structured_output: unknown value `{other}`; use \"json_schema\", \"json_object\" or \"none\""
            ));
            StructuredOutput::None
        }
    }
}

/// `[llm.prices."MODEL"]`, the Batch API's prices defaulting to half the real-time ones.
fn prices(
    raw: BTreeMap<String, raw::RawPrice>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Price> {
    let mut prices = BTreeMap::new();
    for (model, p) in raw {
        if p.input < 0.0 || p.output < 0.0 {
            problems.push(format!("llm.prices.\"{model}\": prices cannot be negative"));
        }
        prices.insert(
            model,
            Price {
                input: p.input,
                output: p.output,
                batch_input: p.batch_input.unwrap_or(p.input / 2.0),
                batch_output: p.batch_output.unwrap_or(p.output / 2.0),
            },
        );
    }
    prices
}

fn batch_retry(v: Option<&str>, problems: &mut Vec<String>) -> BatchRetry {
    match v.unwrap_or("realtime") {
        "realtime" => BatchRetry::Realtime,
        "batch" => BatchRetry::Batch,
        other => {
            problems.push(format!(
                "llm.batch_retry: unknown value `{other}`; use \"realtime\" or \"batch\""
            ));
            BatchRetry::Realtime
        }
    }
}

/// `llm.batch_max_requests`: 1 to the API's `limit` (which is also the default).
fn batch_max_requests(v: Option<usize>, limit: usize, problems: &mut Vec<String>) -> usize {
    let n = v.unwrap_or(limit);
    if n == 0 || n > limit {
        problems.push(format!("llm.batch_max_requests: must be 1–{limit}"));
    }
    n.clamp(1, limit)
}

fn validate_job(
    name: &str,
    raw: RawJob,
    dir: &Path,
    currency: &str,
    problems: &mut Vec<String>,
) -> Option<Job> {
    let before = problems.len();
    let at = |key: &str| format!("jobs.{name}.{key}");
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        problems.push(format!(
            "jobs.{name}: job names use letters, digits, `_` and `-` only"
        ));
    }
    let mut read = |key: &str, rel: &str| -> String {
        let path = dir.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{}: cannot read {}: {e}", at(key), path.display()));
                String::new()
            }
        }
    };
    let sql = read("sql", &raw.sql);
    let system_template = read("system_prompt", &raw.system_prompt);
    let user_template = read("user_prompt", &raw.user_prompt);
    let schema_text = read("schema", &raw.schema);
    let schema = parse_schema(&at("schema"), &raw.schema, &schema_text, problems);
    check_templates(
        name,
        dir,
        [
            ("system_prompt", &raw.system_prompt, &system_template),
            ("user_prompt", &raw.user_prompt, &user_template),
        ],
        problems,
    );
    let metrics = validate_metrics(name, raw.metrics, currency, problems);
    let privacy_guard = raw.validate.privacy_guard.unwrap_or(true);
    let fact_check = validate_fact_check(name, raw.validate.fact_check, problems);
    let checks = check::validate_checks(name, raw.checks, dir, problems);
    let page = page::validate_page(
        &format!("jobs.{name}"),
        raw.page,
        &metrics,
        &raw.attributes,
        problems,
    );
    let mut word_count = BTreeMap::new();
    for (field, [lo, hi]) in raw.validate.word_count {
        if lo > hi {
            problems.push(format!(
                "{}: [{lo}, {hi}] has min above max",
                at(&format!("validate.word_count.{field}"))
            ));
        }
        word_count.insert(field, (lo, hi));
    }
    if problems.len() > before {
        return None;
    }
    Some(Job {
        name: name.to_string(),
        description: raw.description.unwrap_or_default(),
        sql_file: dir.join(&raw.sql),
        sql,
        name_column: raw.name.unwrap_or_else(|| raw.key.clone()),
        key_column: raw.key,
        group_column: raw.group,
        group_label: raw.group_label.unwrap_or_else(|| "category".into()),
        entity_label: raw.entity_label.unwrap_or_else(|| "entity".into()),
        attributes: raw.attributes,
        min_group_size: raw.min_group_size.unwrap_or(5).max(1),
        system_prompt_file: dir.join(&raw.system_prompt),
        user_prompt_file: dir.join(&raw.user_prompt),
        system_template,
        user_template,
        schema,
        schema_text,
        metrics,
        validate: ValidateConfig {
            name_in: raw.validate.name_in,
            word_count,
            banned_phrases: raw.validate.banned_phrases,
            privacy_guard,
            fact_check,
        },
        checks,
        page,
        // Checked against the project's datasets by the caller (they are known there).
        datasets: raw.datasets.unwrap_or_default(),
    })
}

/// A job's JSON Schema (`jobs.NAME.schema`, the file `rel`): JSON, and a valid schema; `Null`
/// when its file could not be read.
fn parse_schema(
    at: &str,
    rel: &str,
    schema_text: &str,
    problems: &mut Vec<String>,
) -> serde_json::Value {
    if schema_text.is_empty() {
        return serde_json::Value::Null;
    }
    match serde_json::from_str::<serde_json::Value>(schema_text) {
        Ok(v) => {
            if let Err(e) = jsonschema::validator_for(&v) {
                problems.push(format!("{at}: {rel} is not a valid JSON Schema: {e}"));
            }
            v
        }
        Err(e) => {
            problems.push(format!("{at}: {rel} is not JSON: {e}"));
            serde_json::Value::Null
        }
    }
}

/// The job's prompt templates (key, file, text) parse as Jinja.
fn check_templates(
    name: &str,
    dir: &Path,
    templates: [(&str, &str, &str); 2],
    problems: &mut Vec<String>,
) {
    for (key, rel, text) in templates {
        let file = dir.join(rel);
        if !text.is_empty()
            && let Err(e) = minijinja::Environment::new()
                .template_from_named_str(&template::template_name(&file), text)
        {
            problems.push(format!(
                "jobs.{name}.{key}: {} does not parse{}: {}",
                file.display(),
                e.line().map(|l| format!(" (line {l})")).unwrap_or_default(),
                template::jinja_message(&e)
            ));
        }
    }
}

/// `[[jobs.NAME.metrics]]`: at least one, each valid, no column twice.
fn validate_metrics(
    name: &str,
    raw: Vec<RawMetric>,
    currency: &str,
    problems: &mut Vec<String>,
) -> Vec<JobMetric> {
    let at = format!("jobs.{name}.metrics");
    if raw.is_empty() {
        problems.push(format!(
            "{at}: declare at least one [[jobs.{name}.metrics]]"
        ));
    }
    let mut metrics = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        if let Some(metric) = validate_metric(&format!("{at}[{i}]"), m, currency, problems) {
            if metrics
                .iter()
                .any(|x: &JobMetric| x.column == metric.column)
            {
                problems.push(format!(
                    "{at}[{i}].column: `{}` is declared twice",
                    metric.column
                ));
            }
            metrics.push(metric);
        }
    }
    metrics
}

/// `[jobs.NAME.validate.fact_check]`: the phrase lists (defaults where not given), none empty.
fn validate_fact_check(
    name: &str,
    f: raw::RawFactCheck,
    problems: &mut Vec<String>,
) -> FactCheckConfig {
    let d = FactCheckConfig::default();
    let mut list = |key: &str, v: Option<Vec<String>>, default: Vec<String>| {
        let v = v.unwrap_or(default);
        if v.iter().any(|p| p.trim().is_empty()) {
            problems.push(format!(
                "jobs.{name}.validate.fact_check.{key}: phrases must not be empty"
            ));
        }
        v
    };
    FactCheckConfig {
        enabled: f.enabled.unwrap_or(true),
        top_10: list("top_10", f.top_10, d.top_10),
        above_median: list("above_median", f.above_median, d.above_median),
        below_median: list("below_median", f.below_median, d.below_median),
        bottom_10: list("bottom_10", f.bottom_10, d.bottom_10),
        strong: list("strong", f.strong, d.strong),
        weak: list("weak", f.weak, d.weak),
    }
}

fn validate_metric(
    at: &str,
    m: RawMetric,
    currency: &str,
    problems: &mut Vec<String>,
) -> Option<JobMetric> {
    let unit = match m.unit.as_deref().unwrap_or("count") {
        "count" => Unit::Count,
        "currency" => Unit::Currency(currency.to_string()),
        "percent" => Unit::Percent,
        "ratio" => Unit::Ratio,
        other => {
            problems.push(format!(
                "{at}.unit: unknown unit `{other}`; use \"count\", \"currency\", \"percent\" or \"ratio\""
            ));
            return None;
        }
    };
    let bins = match m.bins {
        None => BinSpec::Auto,
        Some(edges) => {
            if edges.is_empty()
                || edges.windows(2).any(|w| w[0] >= w[1])
                || edges.iter().any(|e| !e.is_finite())
            {
                problems.push(format!(
                    "{at}.bins: edges must be finite and strictly ascending"
                ));
                return None;
            }
            BinSpec::Edges(edges)
        }
    };
    if let (Some(lo), Some(hi)) = (m.min, m.max)
        && lo > hi
    {
        problems.push(format!("{at}: min {lo} is above max {hi}"));
        return None;
    }
    let label = m.label.unwrap_or_else(|| m.column.replace('_', " "));
    Some(JobMetric {
        spec: MetricSpec {
            name: m.column.clone(),
            label,
            unit,
            public: m.public,
            bins,
            valid_min: m.min,
            valid_max: m.max,
            bin_suffix: m.bin_suffix.unwrap_or_default(),
        },
        column: m.column,
        lower_is_better: m.lower_is_better,
    })
}

/// `sqlite://rel.db` → `sqlite:///abs/dir/rel.db`; postgres URLs pass through.
fn normalise_store_url(url: &str, dir: &Path) -> Result<String, String> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path == ":memory:" {
            return Err("an in-memory SQLite store would lose every run; give a file path".into());
        }
        let abs = if Path::new(path).is_absolute() {
            PathBuf::from(path)
        } else {
            dir.join(path)
        };
        Ok(format!("sqlite://{}", abs.display()))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(url.to_string())
    } else {
        Err(format!(
            "`{}` is neither sqlite://PATH nor postgres://…",
            crate::db::redact_url(url)
        ))
    }
}

/// A folder path, `file://` URL or `s3://bucket/prefix` → `file:///abs` or `s3://…`.
pub fn normalise_location(loc: &str, dir: &Path) -> Result<String, String> {
    if let Some(rest) = loc.strip_prefix("s3://") {
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("`{loc}` has no bucket"));
        }
        return Ok(loc.trim_end_matches('/').to_string());
    }
    let path = loc.strip_prefix("file://").unwrap_or(loc);
    if path.contains("://") {
        return Err(format!(
            "`{loc}`: only folders, file:// and s3:// are supported"
        ));
    }
    let abs = if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        dir.join(path)
    };
    Ok(format!("file://{}", abs.display()))
}

#[cfg(test)]
mod tests;
