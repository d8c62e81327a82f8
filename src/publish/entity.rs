//! What a page's structured data says about its entity (`[jobs.NAME.page]`): a plain `Thing`
//! named like the page, or a `Product` with brand, category, sku and an `aggregateRating` taken
//! from the job's public metrics. No rating is ever made up: without valid figures, or on a
//! `Thing` page (a domain rating itself would be a self-serving review), there is none.

use crate::config::Job;
use crate::config::page::SchemaType;
use crate::source::Entities;
use serde_json::{Value, json};

/// The facts of one entity its page states beyond the text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityFacts {
    pub schema_type: SchemaType,
    pub brand: Option<String>,
    pub rating: Option<Rating>,
}

/// An aggregate rating from real figures: the average and how many reviews it averages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating {
    /// Rounded to two decimals, as the prompt shows a public ratio.
    pub value: f64,
    pub count: u64,
    pub best: f64,
    pub worst: f64,
}

impl EntityFacts {
    /// The facts of entity `i` of the job's source, as its `page` config asks for them.
    pub fn of(job: &Job, entities: &Entities, i: usize) -> EntityFacts {
        let page = &job.page;
        let rating = page.rating.as_ref().and_then(|r| {
            let value = metric_value(job, entities, r.value_metric, i)?;
            let count = metric_value(job, entities, r.count_metric, i)?;
            let whole = count >= 1.0 && count.fract() == 0.0 && count < u64::MAX as f64;
            ((r.worst..=r.best).contains(&value) && whole).then(|| Rating {
                value: (value * 100.0).round() / 100.0,
                count: count as u64,
                best: r.best,
                worst: r.worst,
            })
        });
        EntityFacts {
            schema_type: page.schema_type,
            brand: page
                .brand
                .as_deref()
                .and_then(|b| entities.attribute_text(i, b)),
            rating: rating.filter(|_| page.schema_type == SchemaType::Product),
        }
    }

    /// What the facts add to a page's content hash (a changed rating is a changed page).
    pub fn to_json(&self) -> Value {
        json!({
            "type": self.schema_type.as_str(),
            "brand": self.brand,
            "rating": self.rating.map(|r| json!([r.value, r.count])),
        })
    }

    /// The visible line stating the facts ("Brand: Arden · Average rating 4.25 of 5 from 12
    /// reviews"): structured data must describe what the page shows.
    pub fn visible(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(b) = &self.brand {
            parts.push(format!("Brand: {b}"));
        }
        if let Some(r) = &self.rating {
            parts.push(format!(
                "Average rating {} of {} from {} review{}",
                r.value,
                r.best,
                r.count,
                if r.count == 1 { "" } else { "s" }
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" · "))
    }
}

/// A valid value of metric `m` for entity `i`: finite and within the metric's `min`/`max`.
fn metric_value(job: &Job, entities: &Entities, m: usize, i: usize) -> Option<f64> {
    let v = *entities.input.metrics.get(m)?.get(i)?;
    let spec = &job.metrics[m].spec;
    (v.is_finite()
        && spec.valid_min.is_none_or(|lo| v >= lo)
        && spec.valid_max.is_none_or(|hi| v <= hi))
    .then_some(v)
}

/// The value entity `i` is ranked by for related pages (NaN: none valid).
pub fn related_value(job: &Job, entities: &Entities, i: usize) -> f64 {
    metric_value(job, entities, job.page.related_by, i).unwrap_or(f64::NAN)
}

/// The node the page's `WebPage` is `about`: `url` is the page's canonical URL, `description`
/// its meta description; members without a value are left out by the caller's `without_nulls`.
pub fn about_node(
    facts: &EntityFacts,
    name: &str,
    key: &str,
    group: Option<&str>,
    url: &str,
    description: Option<&str>,
) -> Value {
    match facts.schema_type {
        SchemaType::Thing => json!({"@type": "Thing", "name": name}),
        SchemaType::Product => json!({
            "@type": "Product",
            "@id": format!("{url}#product"),
            "name": name,
            "description": description,
            "url": url,
            "sku": key,
            "category": group,
            "brand": facts.brand.as_ref().map(|b| json!({"@type": "Brand", "name": b})),
            "aggregateRating": facts.rating.map(|r| json!({
                "@type": "AggregateRating",
                "ratingValue": r.value,
                "reviewCount": r.count,
                "bestRating": r.best,
                "worstRating": r.worst,
            })),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_node_carries_its_facts_and_a_thing_only_its_name() {
        let facts = EntityFacts {
            schema_type: SchemaType::Product,
            brand: Some("Arden".into()),
            rating: Some(Rating {
                value: 4.25,
                count: 12,
                best: 5.0,
                worst: 1.0,
            }),
        };
        let n = about_node(
            &facts,
            "Kettle",
            "B01",
            Some("Kitchen"),
            "https://x/p.html",
            None,
        );
        assert_eq!(n["@type"], "Product");
        assert_eq!(n["brand"], json!({"@type": "Brand", "name": "Arden"}));
        assert_eq!(n["aggregateRating"]["ratingValue"], 4.25);
        assert_eq!(n["aggregateRating"]["reviewCount"], 12);
        assert_eq!(n["sku"], "B01");
        assert_eq!(
            facts.visible().as_deref(),
            Some("Brand: Arden · Average rating 4.25 of 5 from 12 reviews")
        );
        let thing = about_node(
            &EntityFacts::default(),
            "shop.com",
            "shop.com",
            Some("Toys"),
            "u",
            None,
        );
        assert_eq!(thing, json!({"@type": "Thing", "name": "shop.com"}));
        assert_eq!(EntityFacts::default().visible(), None);
    }
}
