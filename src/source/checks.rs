//! A job's data checks ([`crate::checks`]) run on the rows just read from its source: each
//! check's SQL gives the keys of the entities that fail it, and `exclude_entity` failures are
//! removed before features are derived.

use super::{Entities, SourceError, SourceSettings};
use crate::checks::{Check, CheckReport, CheckResult, EXAMPLES, OnFail};
use std::collections::HashSet;

/// Runs the job's checks on `entities` (the job's rows just read) and removes the entities an
/// `exclude_entity` check fails; keys a check returns that are not in the source are ignored.
pub async fn apply_checks(
    settings: &SourceSettings,
    checks: &[Check],
    key_column: &str,
    entities: &mut Entities,
    as_of: &str,
) -> Result<CheckReport, SourceError> {
    let mut results = Vec::with_capacity(checks.len());
    let mut exclude = vec![false; entities.len()];
    let index: std::collections::HashMap<&str, usize> = entities
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut session = None;
    for check in checks {
        let session = match &mut session {
            Some(s) => s,
            None => session.insert(super::Session::open(settings, "shopscribe-checks").await?),
        };
        let keys =
            super::fetch_keys(session, &check.sql, &check.sql_file, key_column, as_of).await?;
        let mut hit: Vec<usize> = keys
            .iter()
            .filter_map(|k| index.get(k.as_str()).copied())
            .collect::<HashSet<usize>>()
            .into_iter()
            .collect();
        hit.sort_by(|a, b| entities.keys[*a].cmp(&entities.keys[*b]));
        if check.on_fail == OnFail::ExcludeEntity {
            for &i in &hit {
                exclude[i] = true;
            }
        }
        let result = CheckResult {
            name: check.name.clone(),
            description: check.description.clone(),
            on_fail: check.on_fail,
            entities: hit.len(),
            examples: hit
                .iter()
                .take(EXAMPLES)
                .map(|&i| entities.keys[i].clone())
                .collect(),
        };
        if result.entities > 0 {
            tracing::warn!(check = %check.name, on_fail = check.on_fail.as_str(), entities = result.entities, examples = %result.examples.join(", "), "data check failed");
        } else {
            tracing::info!(check = %check.name, "data check passed");
        }
        results.push(result);
    }
    drop(index);
    let excluded = exclude.iter().filter(|&&x| x).count();
    if excluded > 0 {
        let keep: Vec<bool> = exclude.iter().map(|x| !x).collect();
        entities.retain(&keep);
        tracing::warn!(
            excluded,
            left = entities.len(),
            "entities excluded by data checks: not generated, not published"
        );
    }
    Ok(CheckReport { results, excluded })
}
