//! Gold: `product_summary`, one row per product of a reviews dataset (the Amazon reviews shape:
//! asin, overall, helpful [helpful, total], unixReviewTime, reviewText), and `product_catalog`,
//! one row of metadata per product of a products dataset (asin, title, brand, category), both
//! computed in Rust from the current silver records and rewritten in one transaction after each
//! ingest, so they are the same on SQLite and PostgreSQL.

use super::db::IngestDb;
use crate::config::Gold;
use crate::store::StoreError;
use serde_json::Value;
use std::collections::BTreeMap;

/// Length of the review excerpts kept for prompts (characters).
pub const EXCERPT_CHARS: usize = 300;
/// The "recent" window of the trend, before the newest review of the dataset.
const RECENT_SECONDS: i64 = 90 * 86_400;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductSummary {
    pub asin: String,
    pub review_count: i64,
    pub avg_rating: Option<f64>,
    pub ratings: [i64; 5],
    pub helpful_votes: i64,
    pub total_votes: i64,
    pub helpful_ratio: Option<f64>,
    pub recent_reviews: i64,
    pub recent_avg_rating: Option<f64>,
    pub earlier_avg_rating: Option<f64>,
    /// Recent average minus earlier average; absent when either side has no review.
    pub rating_trend: Option<f64>,
    pub first_review: Option<String>,
    pub last_review: Option<String>,
    pub most_helpful_excerpt: Option<String>,
    pub most_recent_excerpt: Option<String>,
}

fn excerpt(text: &str) -> String {
    let t = super::db::storable(text.trim());
    let t = t.as_ref();
    if t.chars().count() <= EXCERPT_CHARS {
        t.to_string()
    } else {
        let cut: String = t.chars().take(EXCERPT_CHARS).collect();
        format!("{}…", cut.rsplit_once(' ').map_or(cut.as_str(), |(a, _)| a))
    }
}

fn date(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Summaries of every product from current review payloads.
pub fn summarise(payloads: impl IntoIterator<Item = Value>) -> Vec<ProductSummary> {
    let mut by: BTreeMap<String, Acc> = BTreeMap::new();
    let mut newest_overall = i64::MIN;
    for p in payloads {
        // A text column on both stores: a NUL (`\u0000` in the payload) becomes U+FFFD.
        let Some(asin) = p
            .get("asin")
            .and_then(|v| v.as_str().map(|s| super::db::storable(s).into_owned()))
        else {
            continue;
        };
        let a = by.entry(asin.clone()).or_insert_with(|| Acc::new(asin));
        if let Some(t) = a.add(&p) {
            newest_overall = newest_overall.max(t);
        }
    }
    let cutoff = newest_overall.saturating_sub(RECENT_SECONDS);
    by.into_values().map(|a| a.summary(cutoff)).collect()
}

/// One product's reviews so far (see [`summarise`]).
struct Acc {
    s: ProductSummary,
    rating_sum: f64,
    rated: i64,
    times: Vec<(i64, Option<f64>)>,
    best_helpful: (i64, i64, String),
    newest: (i64, String),
    first: Option<i64>,
    last: Option<i64>,
}

impl Acc {
    fn new(asin: String) -> Acc {
        Acc {
            s: ProductSummary {
                asin,
                ..Default::default()
            },
            rating_sum: 0.0,
            rated: 0,
            times: Vec::new(),
            best_helpful: (-1, 0, String::new()),
            newest: (i64::MIN, String::new()),
            first: None,
            last: None,
        }
    }

    /// Counts one review; its time, when it has one.
    fn add(&mut self, p: &Value) -> Option<i64> {
        let a = self;
        a.s.review_count += 1;
        let rating = p
            .get("overall")
            .and_then(Value::as_f64)
            .filter(|r| (1.0..=5.0).contains(r));
        if let Some(r) = rating {
            a.rating_sum += r;
            a.rated += 1;
            a.s.ratings[(r.round() as usize).clamp(1, 5) - 1] += 1;
        }
        let (yes, total) = match p.get("helpful").and_then(Value::as_array) {
            Some(h) if h.len() == 2 => (
                h[0].as_i64().unwrap_or(0).max(0),
                h[1].as_i64().unwrap_or(0).max(0),
            ),
            _ => (0, 0),
        };
        a.s.helpful_votes += yes;
        a.s.total_votes += total;
        let text = p.get("reviewText").and_then(Value::as_str).unwrap_or("");
        if yes > a.best_helpful.0 || (yes == a.best_helpful.0 && total < a.best_helpful.1) {
            a.best_helpful = (yes, total, text.to_string());
        }
        let t = p.get("unixReviewTime").and_then(Value::as_i64)?;
        a.times.push((t, rating));
        a.first = Some(a.first.map_or(t, |f| f.min(t)));
        a.last = Some(a.last.map_or(t, |l| l.max(t)));
        if t > a.newest.0 {
            a.newest = (t, text.to_string());
        }
        Some(t)
    }

    /// The product's summary; reviews from `cutoff` on are the recent ones.
    fn summary(mut self, cutoff: i64) -> ProductSummary {
        let a = &mut self;
        a.s.avg_rating = (a.rated > 0).then(|| a.rating_sum / a.rated as f64);
        a.s.helpful_ratio =
            (a.s.total_votes > 0).then(|| a.s.helpful_votes as f64 / a.s.total_votes as f64);
        let avg = |it: &mut dyn Iterator<Item = f64>| {
            let (s, n) = it.fold((0.0, 0), |(s, n), r| (s + r, n + 1));
            (n > 0).then(|| s / n as f64)
        };
        a.s.recent_reviews = a.times.iter().filter(|(t, _)| *t >= cutoff).count() as i64;
        a.s.recent_avg_rating = avg(&mut a
            .times
            .iter()
            .filter(|(t, _)| *t >= cutoff)
            .filter_map(|x| x.1));
        a.s.earlier_avg_rating = avg(&mut a
            .times
            .iter()
            .filter(|(t, _)| *t < cutoff)
            .filter_map(|x| x.1));
        a.s.rating_trend =
            a.s.recent_avg_rating
                .zip(a.s.earlier_avg_rating)
                .map(|(r, e)| r - e);
        a.s.first_review = a.first.map(date);
        a.s.last_review = a.last.map(date);
        a.s.most_helpful_excerpt =
            (!a.best_helpful.2.trim().is_empty()).then(|| excerpt(&a.best_helpful.2));
        a.s.most_recent_excerpt = (!a.newest.1.trim().is_empty()).then(|| excerpt(&a.newest.1));
        self.s
    }
}

/// One product's metadata: what a page names and groups it by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogEntry {
    pub asin: String,
    pub title: Option<String>,
    pub brand: Option<String>,
    pub category: Option<String>,
}

/// Catalog rows from current product payloads: text fields trimmed, empty ones absent; records
/// without a text `asin` are skipped. In asin order, one row per asin (the first wins).
pub fn catalog(payloads: impl IntoIterator<Item = Value>) -> Vec<CatalogEntry> {
    let mut by: BTreeMap<String, CatalogEntry> = BTreeMap::new();
    for p in payloads {
        let text = |field: &str| {
            p.get(field)
                .and_then(Value::as_str)
                .map(|s| super::db::storable(s.trim()).into_owned())
                .filter(|s| !s.is_empty())
        };
        let Some(asin) = text("asin") else {
            continue;
        };
        by.entry(asin.clone()).or_insert_with(|| CatalogEntry {
            asin,
            title: text("title"),
            brand: text("brand"),
            category: text("category"),
        });
    }
    by.into_values().collect()
}

/// Rebuilds the gold table `table` for `dataset` from its current records; the rows written.
pub async fn rebuild(db: &IngestDb, dataset: &str, table: Gold) -> Result<usize, StoreError> {
    match table {
        Gold::ProductSummary => rebuild_product_summary(db, dataset).await,
        Gold::ProductCatalog => {
            let rows = catalog(current_payloads(db, dataset).await?);
            db.replace_product_catalog(dataset, &rows).await?;
            Ok(rows.len())
        }
    }
}

async fn current_payloads(db: &IngestDb, dataset: &str) -> Result<Vec<Value>, StoreError> {
    let current = db.as_of(dataset, "9999-12-31T00:00:00.000Z").await?;
    Ok(current
        .into_iter()
        .filter_map(|(_, p)| serde_json::from_str(&p).ok())
        .collect())
}

/// Rebuilds `product_summary` for `dataset` from its current records.
pub async fn rebuild_product_summary(db: &IngestDb, dataset: &str) -> Result<usize, StoreError> {
    let rows = summarise(current_payloads(db, dataset).await?);
    db.replace_product_summary(dataset, &rows).await?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn figures_against_hand_computed_values() {
        let day = 86_400;
        let t0 = 1_600_000_000;
        let rows = summarise(vec![
            json!({"asin": "P1", "overall": 5.0, "helpful": [3, 4], "unixReviewTime": t0, "reviewText": "Great kettle"}),
            json!({"asin": "P1", "overall": 1.0, "helpful": [0, 2], "unixReviewTime": t0 + 200 * day, "reviewText": "Broke"}),
            json!({"asin": "P1", "overall": 3.0, "helpful": [1, 1], "unixReviewTime": t0 + 150 * day, "reviewText": "Fine"}),
            json!({"asin": "P2", "overall": 4.0, "unixReviewTime": t0 + 10 * day, "reviewText": "x".repeat(400)}),
        ]);
        assert_eq!(rows.len(), 2);
        let p1 = &rows[0];
        assert_eq!(p1.review_count, 3);
        assert_eq!(p1.avg_rating, Some(3.0));
        assert_eq!(p1.ratings, [1, 0, 1, 0, 1]);
        assert_eq!((p1.helpful_votes, p1.total_votes), (4, 7));
        assert!((p1.helpful_ratio.unwrap() - 4.0 / 7.0).abs() < 1e-12);
        // Newest review overall: t0 + 200 d; recent = the last 90 days: the 200 d and 150 d reviews.
        assert_eq!(p1.recent_reviews, 2);
        assert_eq!(p1.recent_avg_rating, Some(2.0));
        assert_eq!(p1.earlier_avg_rating, Some(5.0));
        assert_eq!(p1.rating_trend, Some(-3.0));
        assert_eq!(p1.first_review.as_deref(), Some("2020-09-13"));
        assert_eq!(p1.most_helpful_excerpt.as_deref(), Some("Great kettle"));
        assert_eq!(p1.most_recent_excerpt.as_deref(), Some("Broke"));
        let p2 = &rows[1];
        assert_eq!((p2.helpful_ratio, p2.rating_trend), (None, None));
        assert!(p2.most_recent_excerpt.as_ref().unwrap().chars().count() <= EXCERPT_CHARS + 1);
    }

    #[test]
    fn catalog_keeps_text_fields_and_skips_records_without_an_asin() {
        let rows = catalog(vec![
            json!({"asin": "B2", "title": "  Kettle K-2 ", "brand": "", "category": "Kitchen"}),
            json!({"asin": "B1", "title": "Lamp", "brand": "Lumio", "category": null}),
            json!({"title": "no asin"}),
            json!({"asin": 17, "title": "numeric asin"}),
        ]);
        assert_eq!(
            rows,
            vec![
                CatalogEntry {
                    asin: "B1".into(),
                    title: Some("Lamp".into()),
                    brand: Some("Lumio".into()),
                    category: None,
                },
                CatalogEntry {
                    asin: "B2".into(),
                    title: Some("Kettle K-2".into()),
                    brand: None,
                    category: Some("Kitchen".into()),
                },
            ]
        );
    }
}
