//! Data checks declared by a job (`[[jobs.NAME.checks]]`, in the spirit of dbt tests): SQL
//! assertions that return the keys of the entities that FAIL them, run on the job's source (with
//! `:as_of` bound like the job's SQL) after the source is read and before features are derived.
//!
//! - `exclude_entity` (default): the failing entities are removed from the population before
//!   features, so their absurd values neither reach a page nor distort their peers' quantiles.
//!   An excluded entity is "not in the source" for the run: its published page is removed, and
//!   the shrink guard (`publish.max_shrink_share`) counts it like any other missing entity.
//! - `warn`: the failing entities are counted and named, nothing else.
//! - `fail_run`: a run (and `plan`) fails before anything is spent, naming the check and keys.
//!
//! Results are counted per check in `plan`, the run summary, the logs and the run report.
//!
//! The declarations ([`Check`], [`OnFail`]) are part of the validated config; the checks run on
//! the source in [`crate::source::apply_checks`]; this module holds their results and keeps them
//! in the store.

pub use crate::config::{Check, OnFail};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How many failing keys a result keeps as examples.
pub const EXAMPLES: usize = 5;

/// The outcome of one check on one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub on_fail: OnFail,
    /// Entities of the source that fail the check.
    pub entities: usize,
    /// The first failing keys (in key order), at most [`EXAMPLES`].
    pub examples: Vec<String>,
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "check `{}` ({})", self.name, self.on_fail.as_str())?;
        if self.entities == 0 {
            return write!(f, ": passed");
        }
        let what = match self.on_fail {
            OnFail::ExcludeEntity => "excluded",
            OnFail::Warn => "flagged",
            OnFail::FailRun => "failing",
        };
        write!(
            f,
            ": {} entit{} {what}, e.g. {}{}",
            self.entities,
            if self.entities == 1 { "y" } else { "ies" },
            self.examples.join(", "),
            if self.entities > self.examples.len() {
                ", …"
            } else {
                ""
            }
        )
    }
}

/// A `fail_run` check that failed: the run stops before anything is spent.
pub fn failed_run_check(results: &[CheckResult]) -> Option<&CheckResult> {
    results
        .iter()
        .find(|r| r.on_fail == OnFail::FailRun && r.entities > 0)
}

/// Every check's result for one read of the source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub results: Vec<CheckResult>,
    /// Entities removed by `exclude_entity` checks (each counted once, whatever number of
    /// checks it fails).
    pub excluded: usize,
}

impl CheckReport {
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }
    /// Checks that found failing entities.
    pub fn failed(&self) -> impl Iterator<Item = &CheckResult> {
        self.results.iter().filter(|r| r.entities > 0)
    }
}

/// The service-state name under which a run's check results are kept (JSON).
pub fn state_name(run_id: i64) -> String {
    format!("run_checks:{run_id}")
}

/// Keeps a run's check results in the store (for the run summary and the run report).
pub async fn record(
    store: &dyn crate::store::Store,
    run_id: i64,
    report: &CheckReport,
) -> Result<(), crate::store::StoreError> {
    if report.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_string(report).expect("check results serialise");
    store.state_set(&state_name(run_id), &json).await
}

/// A run's check results, as [`record`] kept them (none when the job had no checks).
pub async fn recorded(
    store: &dyn crate::store::Store,
    run_id: i64,
) -> Result<CheckReport, crate::store::StoreError> {
    Ok(store
        .state_get(&state_name(run_id))
        .await?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_read_well() {
        let r = CheckResult {
            name: "orders_above_visits".into(),
            description: String::new(),
            on_fail: OnFail::ExcludeEntity,
            entities: 7,
            examples: vec!["a.com".into(), "b.com".into()],
        };
        assert_eq!(
            r.to_string(),
            "check `orders_above_visits` (exclude_entity): 7 entities excluded, e.g. a.com, b.com, …"
        );
        let ok = CheckResult {
            entities: 0,
            examples: vec![],
            ..r.clone()
        };
        assert!(ok.to_string().ends_with("passed"));
        assert_eq!(failed_run_check(&[r.clone(), ok]), None);
        let fail = CheckResult {
            on_fail: OnFail::FailRun,
            ..r
        };
        assert_eq!(failed_run_check(std::slice::from_ref(&fail)), Some(&fail));
        let report = CheckReport {
            results: vec![fail],
            excluded: 0,
        };
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"fail_run\""), "{json}");
        let back: CheckReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        assert_eq!(OnFail::parse("warn"), Some(OnFail::Warn));
        assert_eq!(OnFail::parse("skip"), None);
    }
}
