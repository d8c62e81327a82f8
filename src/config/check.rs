//! A job's data checks as declared (`[[jobs.NAME.checks]]`) and validated; what they do and how
//! they run is in [`crate::checks`].

use super::raw::RawCheck;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a failing check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFail {
    /// Remove the failing entities from the run (before features).
    ExcludeEntity,
    /// Report the failing entities only.
    Warn,
    /// Fail the run before anything is spent.
    FailRun,
}

impl OnFail {
    pub fn parse(s: &str) -> Option<OnFail> {
        match s {
            "exclude_entity" => Some(OnFail::ExcludeEntity),
            "warn" => Some(OnFail::Warn),
            "fail_run" => Some(OnFail::FailRun),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            OnFail::ExcludeEntity => "exclude_entity",
            OnFail::Warn => "warn",
            OnFail::FailRun => "fail_run",
        }
    }
}

/// A declared check (validated config).
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub description: String,
    /// The SQL file, or `jobs.NAME.checks[i].sql` for an inline query (named in errors).
    pub sql_file: PathBuf,
    pub sql: String,
    pub on_fail: OnFail,
}

/// `[[jobs.NAME.checks]]`: unique names, a readable SQL file (a value ending in `.sql`) or an
/// inline query, and a known `on_fail`.
pub(super) fn validate_checks(
    job: &str,
    raw: Vec<RawCheck>,
    dir: &Path,
    problems: &mut Vec<String>,
) -> Vec<Check> {
    let mut out: Vec<Check> = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        let at = format!("jobs.{job}.checks[{i}]");
        let before = problems.len();
        if c.name.is_empty()
            || !c
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            problems.push(format!(
                "{at}.name: `{}`: check names use letters, digits, `_` and `-` only",
                c.name
            ));
        }
        if out.iter().any(|o| o.name == c.name) {
            problems.push(format!(
                "{at}.name: `{}` is declared twice in job `{job}`",
                c.name
            ));
        }
        let on_fail = match c.on_fail.as_deref() {
            None => OnFail::ExcludeEntity,
            Some(s) => OnFail::parse(s).unwrap_or_else(|| {
                problems.push(format!(
                    "{at}.on_fail: unknown value `{s}`; use \"exclude_entity\", \"warn\" or \"fail_run\""
                ));
                OnFail::Warn
            }),
        };
        let trimmed = c.sql.trim();
        let (sql_file, sql) = if trimmed.to_ascii_lowercase().ends_with(".sql")
            && !trimmed.contains(char::is_whitespace)
        {
            let path = dir.join(trimmed);
            match std::fs::read_to_string(&path) {
                Ok(t) => (path, t),
                Err(e) => {
                    problems.push(format!("{at}.sql: cannot read {}: {e}", path.display()));
                    (path, String::new())
                }
            }
        } else {
            (PathBuf::from(format!("{at}.sql")), c.sql.clone())
        };
        if problems.len() == before && sql.trim().is_empty() {
            problems.push(format!("{at}.sql: the query is empty"));
        }
        out.push(Check {
            name: c.name,
            description: c.description.unwrap_or_default(),
            sql_file,
            sql,
            on_fail,
        });
    }
    out
}
