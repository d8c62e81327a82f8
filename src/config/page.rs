//! `[jobs.NAME.page]` validated: the schema.org type of a job's entities, where their brand and
//! aggregate rating come from, and how related pages are ranked (see `raw::RawPage`).

use super::JobMetric;
use super::raw::{RawPage, RawRating};

/// Most related links a page may carry: beyond that a section is a link farm, not navigation.
pub const MAX_RELATED: usize = 50;

/// Related links per page when neither the job nor `publish.related` says otherwise.
pub const DEFAULT_RELATED: usize = 5;

/// The schema.org type of the entity a page is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaType {
    /// A named thing: the page claims nothing about it beyond its name (domains).
    #[default]
    Thing,
    /// A product: name, description, brand, category, sku, and optionally a rating.
    Product,
}

impl SchemaType {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Thing => "Thing",
            SchemaType::Product => "Product",
        }
    }
}

/// An `aggregateRating` from two public metrics of the job (indexes into `Job::metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct RatingConfig {
    pub value_metric: usize,
    pub count_metric: usize,
    pub best: f64,
    pub worst: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PageConfig {
    pub schema_type: SchemaType,
    /// Attribute column holding the brand.
    pub brand: Option<String>,
    pub rating: Option<RatingConfig>,
    /// Metric (index into `Job::metrics`) related pages are ranked by.
    pub related_by: usize,
    /// Related links per page; `None`: `publish.related`.
    pub related: Option<usize>,
}

/// Validates `[jobs.NAME.page]` against the job's metrics and attributes; problems are pushed
/// with their key (`at` is `jobs.NAME`).
pub fn validate_page(
    at: &str,
    raw: RawPage,
    metrics: &[JobMetric],
    attributes: &[String],
    problems: &mut Vec<String>,
) -> PageConfig {
    let schema_type = match raw.schema_type.as_deref().unwrap_or("Thing") {
        "Thing" => SchemaType::Thing,
        "Product" => SchemaType::Product,
        other => {
            problems.push(format!(
                "{at}.page.type: `{other}` is not one of Thing, Product"
            ));
            SchemaType::Thing
        }
    };
    if let Some(b) = &raw.brand
        && !attributes.contains(b)
    {
        problems.push(format!(
            "{at}.page.brand: `{b}` is not one of the job's attributes ({})",
            attributes.join(", ")
        ));
    }
    let rating = raw
        .rating
        .and_then(|r| validate_rating(at, r, schema_type, metrics, problems));
    let related_by = raw
        .related_by
        .and_then(|c| metric_index(at, "related_by", &c, metrics, problems))
        .unwrap_or(0);
    if let Some(n) = raw.related
        && n > MAX_RELATED
    {
        problems.push(format!(
            "{at}.page.related: {n} is more than {MAX_RELATED} links"
        ));
    }
    PageConfig {
        schema_type,
        brand: raw.brand,
        rating,
        related_by,
        related: raw.related,
    }
}

/// The index of metric `column` among the job's metrics, or a problem at `{at}.page.{key}`.
fn metric_index(
    at: &str,
    key: &str,
    column: &str,
    metrics: &[JobMetric],
    problems: &mut Vec<String>,
) -> Option<usize> {
    let i = metrics.iter().position(|m| m.column == column);
    if i.is_none() {
        problems.push(format!(
            "{at}.page.{key}: `{column}` is not one of the job's metric columns"
        ));
    }
    i
}

/// `page.rating`: on `Product` pages only, from two declared public metrics, best above worst.
fn validate_rating(
    at: &str,
    r: RawRating,
    schema_type: SchemaType,
    metrics: &[JobMetric],
    problems: &mut Vec<String>,
) -> Option<RatingConfig> {
    if schema_type != SchemaType::Product {
        problems.push(format!(
            "{at}.page.rating: a rating belongs on `type = \"Product\"` pages only (a page rating its own subject is a self-serving review)"
        ));
    }
    let value = metric_index(at, "rating.value", &r.value, metrics, problems);
    let count = metric_index(at, "rating.count", &r.count, metrics, problems);
    // The rating states exact figures on the page: only metrics the project made public.
    for (key, i) in [("value", value), ("count", count)] {
        if let Some(i) = i
            && !metrics[i].spec.public
        {
            problems.push(format!(
                "{at}.page.rating.{key}: metric `{}` is not public (exact values stay private unless `public = true`)",
                metrics[i].column
            ));
        }
    }
    let (best, worst) = (r.best.unwrap_or(5.0), r.worst.unwrap_or(1.0));
    if !(best.is_finite() && worst.is_finite() && best > worst) {
        problems.push(format!(
            "{at}.page.rating: best ({best}) must be above worst ({worst})"
        ));
    }
    Some(RatingConfig {
        value_metric: value?,
        count_metric: count?,
        best,
        worst,
    })
}
