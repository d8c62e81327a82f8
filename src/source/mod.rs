//! The job's source: its SQL, run against the store's own database or the user's PostgreSQL
//! (`[source] url`, read-only), streamed row by row into entities (key, name, group,
//! attributes, metric columns) so memory holds entities, never a result set. The job's data
//! checks run on the same source right after (`checks.rs`).

mod checks;
mod params;
mod pg;

pub use checks::apply_checks;
pub use params::{Style, rewrite};
pub use pg::CellError;

use crate::config::{Job, Project};
use crate::features::{FeatureInput, NO_GROUP};
use futures::TryStreamExt;
use sqlx::{Column, Row, TypeInfo, ValueRef};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Why the job's source (or a data check, or a data version query) could not be read. Each
/// message names the SQL file (or the database) once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The database rejected the SQL, in its own words (PostgreSQL's position turned into "at
    /// line L, column C" of the file), or the SQL does not fit what shopscribe binds and reads.
    #[error("the query in {file} failed: {message}")]
    Query { file: PathBuf, message: String },
    /// The rows could not be read (the connection dropped mid-stream, a value did not decode).
    #[error("cannot read the rows of {file}")]
    Read { file: PathBuf, source: sqlx::Error },
    /// A value of the result cannot be read (its type, its bytes).
    #[error("cannot read a value of {file}")]
    Cell { file: PathBuf, source: CellError },
    /// The source database cannot be reached.
    #[error("cannot connect to the source database {url}")]
    Connect { url: String, source: sqlx::Error },
    /// The rows do not fit the job's declaration (missing column, duplicate or null key).
    #[error("the rows from {file} do not fit job `{job}`: {message}")]
    Shape {
        file: PathBuf,
        job: String,
        message: String,
    },
}

/// One value of a result set.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

impl Cell {
    /// The cell as a metric value: NaN for NULL and for text that is not a number, which is
    /// then reported as `Some(text)`; empty text is a missing value, not a wrong one.
    fn as_f64(&self) -> (f64, Option<&str>) {
        match self {
            Cell::Int(i) => (*i as f64, None),
            Cell::Float(f) => (*f, None),
            Cell::Text(t) if t.trim().is_empty() => (f64::NAN, None),
            Cell::Text(t) => match t.trim().parse() {
                Ok(v) => (v, None),
                Err(_) => (f64::NAN, Some(t)),
            },
            Cell::Null => (f64::NAN, None),
        }
    }
    fn as_text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Int(i) => Some(i.to_string()),
            Cell::Float(f) => Some(f.to_string()),
            Cell::Text(t) => Some(t.clone()),
        }
    }
    fn to_json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(i) => (*i).into(),
            Cell::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Cell::Text(t) => t.clone().into(),
        }
    }
}

/// The job's rows as entities: identity columns plus the columnar metric input of the features.
#[derive(Debug, Clone, Default)]
pub struct Entities {
    pub keys: Vec<String>,
    /// The display name when it differs from the key (most jobs name entities by their key).
    names: Vec<Option<String>>,
    /// Declared attribute columns: names, then one column of cells per attribute.
    attribute_names: Vec<String>,
    attributes: Vec<Vec<Cell>>,
    /// Group ids, group names and metric columns: the features' input.
    pub input: FeatureInput,
    /// Per metric column (in the job's order): rows whose value was text that is not a number.
    non_numeric: Vec<NonNumeric>,
    /// The job's data checks on these rows (`exclude_entity` failures are already removed).
    pub checks: crate::checks::CheckReport,
}

/// Values of a metric column that are not numbers: they count as "not available", and `plan`
/// and `run` say how many there were.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NonNumeric {
    pub column: String,
    /// Entities whose value in the column is not a number.
    pub entities: usize,
    /// The first such value, for the message.
    pub example: String,
}

impl fmt::Display for NonNumeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "metric column `{}`: {} entit{} a value that is not a number (e.g. {:?}), counted as not available",
            self.column,
            self.entities,
            if self.entities == 1 {
                "y has"
            } else {
                "ies have"
            },
            self.example
        )
    }
}

impl Entities {
    /// No entities, with the job's metric and attribute columns in place.
    pub fn empty(job: &Job) -> Entities {
        Entities {
            non_numeric: job
                .metrics
                .iter()
                .map(|m| NonNumeric {
                    column: m.column.clone(),
                    ..Default::default()
                })
                .collect(),
            attribute_names: job.attributes.clone(),
            attributes: vec![Vec::new(); job.attributes.len()],
            input: FeatureInput {
                metrics: vec![Vec::new(); job.metrics.len()],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// Keeps the entities whose `keep` is true (one flag per entity), in order. Groups stay
    /// numbered as they were; a group left without members just has none.
    pub fn retain(&mut self, keep: &[bool]) {
        fn filter<T: Clone>(v: &mut Vec<T>, keep: &[bool]) {
            let mut i = 0;
            v.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        assert_eq!(keep.len(), self.len(), "one flag per entity");
        filter(&mut self.keys, keep);
        filter(&mut self.names, keep);
        for col in &mut self.attributes {
            filter(col, keep);
        }
        filter(&mut self.input.group_ids, keep);
        for col in &mut self.input.metrics {
            filter(col, keep);
        }
    }
    /// Metric columns that held text that is not a number, with how many entities had it.
    pub fn non_numeric(&self) -> impl Iterator<Item = &NonNumeric> {
        self.non_numeric.iter().filter(|n| n.entities > 0)
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    pub fn name(&self, i: usize) -> &str {
        self.names[i].as_deref().unwrap_or(&self.keys[i])
    }
    pub fn group(&self, i: usize) -> Option<&str> {
        match self.input.group_ids[i] {
            NO_GROUP => None,
            g => Some(&self.input.group_names[g as usize]),
        }
    }
    /// The text of attribute `name` of entity `i` (numbers as text); `None` when the attribute
    /// is not declared or its cell is NULL or blank.
    pub fn attribute_text(&self, i: usize, name: &str) -> Option<String> {
        let col = self.attribute_names.iter().position(|n| n == name)?;
        self.attributes[col][i]
            .as_text()
            .filter(|t| !t.trim().is_empty())
    }
    /// The declared attributes of entity `i`, as JSON.
    pub fn attributes(&self, i: usize) -> serde_json::Map<String, serde_json::Value> {
        self.attribute_names
            .iter()
            .zip(&self.attributes)
            .map(|(n, col)| (n.clone(), col[i].to_json()))
            .collect()
    }
}

/// Builds entities one row at a time.
pub struct EntityBuilder<'a> {
    job: &'a Job,
    key_i: usize,
    name_i: usize,
    group_i: Option<usize>,
    attr_i: Vec<(String, usize)>,
    metric_i: Vec<usize>,
    entities: Entities,
    group_ids: HashMap<String, u32>,
    /// Key hash → first row with it: duplicate detection without a second copy of every key.
    seen: HashMap<u64, u32>,
    rows: usize,
}

impl<'a> EntityBuilder<'a> {
    /// Checks that every declared column is in the result.
    pub fn new(job: &'a Job, columns: &[String]) -> Result<EntityBuilder<'a>, SourceError> {
        let index: HashMap<&str, usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let mut missing: Vec<String> = Vec::new();
        let mut col = |name: &str| -> usize {
            index.get(name).copied().unwrap_or_else(|| {
                // One column can serve several roles (the key is also the default name column):
                // name it once.
                if !missing.iter().any(|m| m == name) {
                    missing.push(name.to_string());
                }
                usize::MAX
            })
        };
        let key_i = col(&job.key_column);
        let name_i = col(&job.name_column);
        let group_i = job.group_column.as_deref().map(&mut col);
        let attr_i: Vec<(String, usize)> =
            job.attributes.iter().map(|a| (a.clone(), col(a))).collect();
        let metric_i: Vec<usize> = job.metrics.iter().map(|m| col(&m.column)).collect();
        if !missing.is_empty() {
            return Err(shape(
                job,
                format!(
                    "column(s) {} not in the result; it has: {}",
                    missing.join(", "),
                    columns.join(", ")
                ),
            ));
        }
        Ok(EntityBuilder {
            job,
            key_i,
            name_i,
            group_i,
            attr_i,
            metric_i,
            entities: Entities::empty(job),
            group_ids: HashMap::new(),
            seen: HashMap::new(),
            rows: 0,
        })
    }

    pub fn push(&mut self, row: &[Cell]) -> Result<(), SourceError> {
        self.rows += 1;
        let job = self.job;
        let key = row[self.key_i]
            .as_text()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| {
                shape(
                    job,
                    format!(
                        "row {} has an empty key in column `{}`",
                        self.rows, job.key_column
                    ),
                )
            })?;
        let h = key_hash(&key);
        let e = &mut self.entities;
        match self.seen.get(&h) {
            // Equal hashes are compared by key: a collision is not mistaken for a duplicate.
            Some(&first) if e.keys[first as usize] == key => {
                return Err(shape(
                    job,
                    format!(
                        "key `{key}` appears in rows {} and {}; the key column `{}` must be unique",
                        first + 1,
                        self.rows,
                        job.key_column
                    ),
                ));
            }
            Some(_) => {}
            None => {
                self.seen.insert(h, e.keys.len() as u32);
            }
        }
        let name = row[self.name_i].as_text().filter(|n| *n != key);
        let group = self
            .group_i
            .and_then(|g| row[g].as_text())
            .filter(|g| !g.trim().is_empty());
        let gid = match &group {
            Some(g) => match self.group_ids.get(g) {
                Some(&id) => id,
                None => {
                    let id = e.input.group_names.len() as u32;
                    e.input.group_names.push(g.clone());
                    self.group_ids.insert(g.clone(), id);
                    id
                }
            },
            None => NO_GROUP,
        };
        e.input.group_ids.push(gid);
        for (m, &i) in self.metric_i.iter().enumerate() {
            let (v, bad) = row[i].as_f64();
            if let Some(text) = bad {
                let n = &mut e.non_numeric[m];
                if n.entities == 0 {
                    n.example = text.chars().take(40).collect();
                }
                n.entities += 1;
            }
            e.input.metrics[m].push(v);
        }
        for (col, (_, i)) in e.attributes.iter_mut().zip(&self.attr_i) {
            col.push(row[*i].clone());
        }
        e.keys.push(key);
        e.names.push(name);
        Ok(())
    }

    /// The entities; a warning is logged per metric column that held text that is not a number.
    pub fn finish(self) -> Entities {
        for n in self.entities.non_numeric() {
            tracing::warn!(
                job = %self.job.name,
                column = %n.column,
                entities = n.entities,
                example = %n.example,
                "{n}"
            );
        }
        self.entities
    }
}

fn key_hash(key: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key)
}

fn shape(job: &Job, message: String) -> SourceError {
    SourceError::Shape {
        file: job.sql_file.clone(),
        job: job.name.clone(),
        message,
    }
}

/// Source settings of a project.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub url: String,
    pub statement_timeout: std::time::Duration,
}

impl SourceSettings {
    pub fn of(project: &Project) -> SourceSettings {
        SourceSettings {
            url: project
                .source
                .url
                .clone()
                .unwrap_or_else(|| project.store_url.clone()),
            statement_timeout: project.source.statement_timeout,
        }
    }
}

fn connect_error(url: &str, source: sqlx::Error) -> SourceError {
    SourceError::Connect {
        url: crate::db::redact_url(url),
        source,
    }
}

/// A read-only session with the source, shared by the queries of one step. Opening one is not
/// free: a PostgreSQL connection over TLS took ~90 ms on the 2-core machine, five times a data
/// check's query, so a job's data checks run on one session instead of one connection each.
pub enum Session {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Session {
    /// Connects to the source; `application` names the PostgreSQL session (`pg_stat_activity`).
    pub async fn open(
        settings: &SourceSettings,
        application: &str,
    ) -> Result<Session, SourceError> {
        if settings.url.starts_with("sqlite://") {
            Ok(Session::Sqlite(connect_sqlite(&settings.url).await?))
        } else {
            Ok(Session::Postgres(connect_pg(settings, application).await?))
        }
    }
}

/// A read-only connection to a SQLite source.
async fn connect_sqlite(url: &str) -> Result<sqlx::SqliteConnection, SourceError> {
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| connect_error(url, e))?
        .read_only(true);
    sqlx::ConnectOptions::connect(&opts)
        .await
        .map_err(|e| connect_error(url, e))
}

/// A read-only PostgreSQL session with the source's statement timeout.
async fn connect_pg(
    settings: &SourceSettings,
    application: &str,
) -> Result<sqlx::PgConnection, SourceError> {
    let url = &settings.url;
    let timeout = format!("{}ms", settings.statement_timeout.as_millis());
    let opts = sqlx::postgres::PgConnectOptions::from_str(url)
        .map_err(|e| connect_error(url, e))?
        .application_name(application)
        .options([
            ("statement_timeout", timeout.as_str()),
            ("default_transaction_read_only", "on"),
        ]);
    sqlx::ConnectOptions::connect(&opts)
        .await
        .map_err(|e| connect_error(url, e))
}

/// Runs a one-value query (a "data version": `SELECT max(loaded_at) FROM sales`) on the source
/// and returns its first column of its first row as text ("" for no row or NULL).
pub async fn data_version(settings: &SourceSettings, sql: &str) -> Result<String, SourceError> {
    let url = &settings.url;
    let file = PathBuf::from("watch.data_version_sql");
    let query_err = |e: sqlx::Error| query_error(&file, sql, e);
    let cell_err = |e: CellError| SourceError::Cell {
        file: file.clone(),
        source: e,
    };
    let cell = if url.starts_with("sqlite://") {
        let mut conn = connect_sqlite(url).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_optional(&mut conn)
            .await
            .map_err(query_err)?;
        row.map(|r| sqlite_cell(&r, 0))
            .transpose()
            .map_err(|e| cell_err(e.into()))?
    } else {
        let mut conn = connect_pg(settings, "shopscribe-watch").await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_optional(&mut conn)
            .await
            .map_err(query_err)?;
        row.map(|r| pg::cell(&r, 0)).transpose().map_err(cell_err)?
    };
    Ok(match cell {
        None | Some(Cell::Null) => String::new(),
        Some(Cell::Int(i)) => i.to_string(),
        Some(Cell::Float(f)) => f.to_string(),
        Some(Cell::Text(t)) => t,
    })
}

/// Runs a data check's SQL on `session` (with `:as_of` bound to `as_of`) and returns the values
/// of its `key_column` column (or, without one, of its only column): the keys of failing entities.
pub async fn fetch_keys(
    session: &mut Session,
    sql: &str,
    file: &std::path::Path,
    key_column: &str,
    as_of: &str,
) -> Result<Vec<String>, SourceError> {
    let query_err = |message: String| SourceError::Query {
        file: file.to_path_buf(),
        message,
    };
    let cell_err = |e: CellError| SourceError::Cell {
        file: file.to_path_buf(),
        source: e,
    };
    let style = match session {
        Session::Sqlite(_) => Style::Question,
        Session::Postgres(_) => Style::Dollar,
    };
    let (sql, names) = rewrite(sql, style).map_err(query_err)?;
    let mut out = Vec::new();
    let mut column: Option<usize> = None;
    let pick = |cols: Vec<String>| -> Result<usize, SourceError> {
        match cols.iter().position(|c| c == key_column) {
            Some(i) => Ok(i),
            None if cols.len() == 1 => Ok(0),
            None => Err(query_err(format!(
                "a check returns the keys of the failing entities in a column named `{key_column}` (the job's key); it returned: {}",
                cols.join(", ")
            ))),
        }
    };
    match session {
        Session::Sqlite(conn) => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for _ in &names {
                q = q.bind(as_of);
            }
            let mut rows = q.fetch(&mut *conn);
            while let Some(r) = rows
                .try_next()
                .await
                .map_err(|e| query_error(file, &sql, e))?
            {
                let i = match column {
                    Some(i) => i,
                    None => *column.insert(pick(column_names(r.columns()))?),
                };
                let cell = sqlite_cell(&r, i).map_err(|e| cell_err(e.into()))?;
                out.extend(cell.as_text());
            }
        }
        Session::Postgres(conn) => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for _ in &names {
                q = q.bind(as_of);
            }
            let mut rows = q.fetch(&mut *conn);
            while let Some(r) = rows
                .try_next()
                .await
                .map_err(|e| query_error(file, &sql, e))?
            {
                let i = match column {
                    Some(i) => i,
                    None => *column.insert(pick(column_names(r.columns()))?),
                };
                out.extend(pg::cell(&r, i).map_err(cell_err)?.as_text());
            }
        }
    }
    Ok(out)
}

/// Runs the job's SQL (with `:as_of` bound to `as_of`) and streams its rows into entities.
pub async fn fetch_entities(
    settings: &SourceSettings,
    job: &Job,
    as_of: &str,
) -> Result<Entities, SourceError> {
    let url = &settings.url;
    if url.starts_with("sqlite://") {
        let (sql, names) = rewrite(&job.sql, Style::Question).map_err(|m| SourceError::Query {
            file: job.sql_file.clone(),
            message: m,
        })?;
        let mut conn = connect_sqlite(url).await?;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
        for _ in &names {
            q = q.bind(as_of);
        }
        let rows = q.fetch(&mut conn);
        collect(job, &sql, rows, |r, i| {
            sqlite_cell(r, i).map_err(CellError::from)
        })
        .await
    } else {
        let (sql, names) = rewrite(&job.sql, Style::Dollar).map_err(|m| SourceError::Query {
            file: job.sql_file.clone(),
            message: m,
        })?;
        let mut conn = connect_pg(settings, "shopscribe-source").await?;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
        for _ in &names {
            q = q.bind(as_of);
        }
        let rows = q.fetch(&mut conn);
        collect(job, &sql, rows, pg::cell).await
    }
}

/// Streams a query's rows into entities: the builder is made from the first row's columns, and
/// a query without rows gives no entities.
async fn collect<R: Row>(
    job: &Job,
    sql: &str,
    mut rows: impl futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    cell: impl Fn(&R, usize) -> Result<Cell, CellError>,
) -> Result<Entities, SourceError> {
    let mut builder: Option<EntityBuilder> = None;
    while let Some(r) = rows
        .try_next()
        .await
        .map_err(|e| query_error(&job.sql_file, sql, e))?
    {
        let b = match &mut builder {
            Some(b) => b,
            None => builder.insert(EntityBuilder::new(job, &column_names(r.columns()))?),
        };
        let cells = (0..r.columns().len())
            .map(|i| cell(&r, i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SourceError::Cell {
                file: job.sql_file.clone(),
                source: e,
            })?;
        b.push(&cells)?;
    }
    Ok(builder
        .map(EntityBuilder::finish)
        .unwrap_or_else(|| Entities::empty(job)))
}

fn column_names<C: Column>(cols: &[C]) -> Vec<String> {
    cols.iter().map(|c| c.name().to_string()).collect()
}

fn sqlite_cell(r: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Cell, sqlx::Error> {
    let raw = r.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    Ok(match raw.type_info().name() {
        "INTEGER" | "BOOLEAN" => Cell::Int(r.try_get_unchecked(i)?),
        "REAL" | "NUMERIC" => Cell::Float(r.try_get_unchecked(i)?),
        _ => Cell::Text(r.try_get_unchecked(i)?),
    })
}

/// A failed query of `file`: the database's own message, with PostgreSQL's position turned
/// into a line and column of the SQL; any other failure (I/O, decoding) kept as the source.
fn query_error(file: &std::path::Path, sql: &str, e: sqlx::Error) -> SourceError {
    let sqlx::Error::Database(d) = e else {
        return SourceError::Read {
            file: file.to_path_buf(),
            source: e,
        };
    };
    let mut msg = d.message().to_string();
    if let Some(pg) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(sqlx::postgres::PgErrorPosition::Original(pos)) = pg.position() {
            let before: String = sql.chars().take(pos.saturating_sub(1)).collect();
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let text = sql.lines().nth(line - 1).unwrap_or("").trim();
            msg = format!("{msg} (at line {line}, column {col}: `{text}`)");
        }
        if let Some(hint) = pg.hint() {
            msg = format!("{msg}; hint: {hint}");
        }
    }
    SourceError::Query {
        file: file.to_path_buf(),
        message: msg,
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_failed_connection_keeps_the_database_error_as_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/no/such/source.db", dir.path().display());
        let e = super::connect_sqlite(&url).await.unwrap_err();
        assert!(matches!(e, super::SourceError::Connect { .. }), "{e:?}");
        let source = std::error::Error::source(&e).expect("the cause is kept");
        assert!(source.downcast_ref::<sqlx::Error>().is_some(), "{source:?}");
        assert_eq!(
            e.to_string(),
            format!("cannot connect to the source database {url}")
        );
    }
}
