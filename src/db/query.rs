//! One statement for both backends: its text is written once with `?` placeholders, its
//! arguments are bound once, and it runs on a pool, a transaction or a connection of either
//! backend ([`Target`]). Rows decode through `sqlx::FromRow` on both ([`Rowed`]).

use super::dialect::Backend;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, FromRow, PgConnection, PgPool, SqliteConnection, SqlitePool};
use std::borrow::Cow;

/// A value bound to a placeholder: the types the store's columns hold.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Float(f64),
    OptFloat(Option<f64>),
    Text(Cow<'a, str>),
    OptText(Option<Cow<'a, str>>),
    Bytes(Cow<'a, [u8]>),
    OptBytes(Option<Cow<'a, [u8]>>),
    /// A PostgreSQL array (`= ANY(?)`); SQLite has no arrays, and binding one there is an error.
    Ints(Cow<'a, [i64]>),
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr;)+) => {
        $(impl<'a> From<$t> for Arg<'a> {
            fn from($v: $t) -> Arg<'a> {
                $e
            }
        })+
    };
}

arg_from! {
    i64 => |v| Arg::Int(v);
    Option<i64> => |v| Arg::OptInt(v);
    f64 => |v| Arg::Float(v);
    Option<f64> => |v| Arg::OptFloat(v);
    &'a str => |v| Arg::Text(Cow::Borrowed(v));
    &'a String => |v| Arg::Text(Cow::Borrowed(v.as_str()));
    String => |v| Arg::Text(Cow::Owned(v));
    Cow<'a, str> => |v| Arg::Text(v);
    Option<&'a str> => |v| Arg::OptText(v.map(Cow::Borrowed));
    Option<&'a String> => |v| Arg::OptText(v.map(|s| Cow::Borrowed(s.as_str())));
    &'a Option<String> => |v| Arg::OptText(v.as_deref().map(Cow::Borrowed));
    Option<String> => |v| Arg::OptText(v.map(Cow::Owned));
    Option<Cow<'a, str>> => |v| Arg::OptText(v);
    &'a [u8] => |v| Arg::Bytes(Cow::Borrowed(v));
    Vec<u8> => |v| Arg::Bytes(Cow::Owned(v));
    Option<Vec<u8>> => |v| Arg::OptBytes(v.map(Cow::Owned));
    &'a [i64] => |v| Arg::Ints(Cow::Borrowed(v));
}

/// Where a statement runs: a pool, or one connection (a transaction's, or one holding
/// attached scratch databases).
pub enum Target<'c> {
    SqlitePool(&'c SqlitePool),
    PgPool(&'c PgPool),
    SqliteConn(&'c mut SqliteConnection),
    PgConn(&'c mut PgConnection),
}

impl<'c> From<&'c SqlitePool> for Target<'c> {
    fn from(p: &'c SqlitePool) -> Self {
        Target::SqlitePool(p)
    }
}
impl<'c> From<&'c PgPool> for Target<'c> {
    fn from(p: &'c PgPool) -> Self {
        Target::PgPool(p)
    }
}
impl<'c> From<&'c mut SqliteConnection> for Target<'c> {
    fn from(c: &'c mut SqliteConnection) -> Self {
        Target::SqliteConn(c)
    }
}
impl<'c> From<&'c mut PgConnection> for Target<'c> {
    fn from(c: &'c mut PgConnection) -> Self {
        Target::PgConn(c)
    }
}

impl Target<'_> {
    pub fn backend(&self) -> Backend {
        match self {
            Target::SqlitePool(_) | Target::SqliteConn(_) => Backend::Sqlite,
            Target::PgPool(_) | Target::PgConn(_) => Backend::Postgres,
        }
    }
}

/// A row type both backends decode (tuples, and the store's records).
pub trait Rowed:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}
impl<T> Rowed for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// A statement and its arguments.
#[must_use = "a statement does nothing until it is run"]
pub struct Sql<'a> {
    text: Cow<'a, str>,
    args: Vec<Arg<'a>>,
}

/// A statement with `?` placeholders: `sql("… WHERE id = ?").bind(id).execute(&db)`.
pub fn sql<'a>(text: impl Into<Cow<'a, str>>) -> Sql<'a> {
    Sql {
        text: text.into(),
        args: Vec::new(),
    }
}

macro_rules! arguments {
    ($fn:ident, $args:ty, $ints:expr) => {
        fn $fn(args: Vec<Arg<'_>>) -> Result<$args, sqlx::Error> {
            let mut out = <$args>::default();
            for a in args {
                match a {
                    Arg::Int(v) => out.add(v),
                    Arg::OptInt(v) => out.add(v),
                    Arg::Float(v) => out.add(v),
                    Arg::OptFloat(v) => out.add(v),
                    Arg::Text(v) => out.add(v.as_ref()),
                    Arg::OptText(v) => out.add(v.as_deref()),
                    Arg::Bytes(v) => out.add(v.as_ref()),
                    Arg::OptBytes(v) => out.add(v.as_deref()),
                    Arg::Ints(v) => $ints(&mut out, v),
                }
                .map_err(sqlx::Error::Encode)?;
            }
            Ok(out)
        }
    };
}
arguments!(
    sqlite_arguments,
    SqliteArguments,
    |_: &mut SqliteArguments, _: Cow<'_, [i64]>| -> Result<(), sqlx::error::BoxDynError> {
        Err("an array argument (`= ANY(?)`) binds on PostgreSQL only".into())
    }
);
arguments!(
    pg_arguments,
    PgArguments,
    |out: &mut PgArguments, v: Cow<'_, [i64]>| out.add(v.as_ref())
);

/// Runs `$call` (`execute`, `fetch_all`, …) of the statement built by `sqlx::$ctor`
/// (`query_with`, `query_as_with`) on whichever backend `$target` is, mapping each backend's
/// result with `$map`.
macro_rules! run_on {
    ($sql:expr, $target:expr, $ctor:ident, $call:ident, $map:expr) => {{
        let Sql { text, args } = $sql;
        let target: Target<'_> = $target;
        let text = sqlx::AssertSqlSafe(target.backend().placeholders(&text).into_owned());
        match target {
            Target::SqlitePool(p) => sqlx::$ctor(text, sqlite_arguments(args)?)
                .$call(p)
                .await
                .map($map),
            Target::SqliteConn(c) => sqlx::$ctor(text, sqlite_arguments(args)?)
                .$call(&mut *c)
                .await
                .map($map),
            Target::PgPool(p) => sqlx::$ctor(text, pg_arguments(args)?)
                .$call(p)
                .await
                .map($map),
            Target::PgConn(c) => sqlx::$ctor(text, pg_arguments(args)?)
                .$call(&mut *c)
                .await
                .map($map),
        }
    }};
}

impl<'a> Sql<'a> {
    pub fn bind(mut self, value: impl Into<Arg<'a>>) -> Sql<'a> {
        self.args.push(value.into());
        self
    }

    /// Runs it; evaluates to the rows affected.
    pub async fn execute<'c>(self, on: impl Into<Target<'c>>) -> Result<u64, sqlx::Error> {
        run_on!(self, on.into(), query_with, execute, |r| r.rows_affected())
    }

    pub async fn fetch_all<'c, T: Rowed>(
        self,
        on: impl Into<Target<'c>>,
    ) -> Result<Vec<T>, sqlx::Error> {
        run_on!(self, on.into(), query_as_with, fetch_all, |rows| rows)
    }

    pub async fn fetch_optional<'c, T: Rowed>(
        self,
        on: impl Into<Target<'c>>,
    ) -> Result<Option<T>, sqlx::Error> {
        run_on!(self, on.into(), query_as_with, fetch_optional, |row| row)
    }

    pub async fn fetch_one<'c, T: Rowed>(
        self,
        on: impl Into<Target<'c>>,
    ) -> Result<T, sqlx::Error> {
        run_on!(self, on.into(), query_as_with, fetch_one, |row| row)
    }

    /// The first column of the one row it returns.
    pub async fn scalar<'c, T>(self, on: impl Into<Target<'c>>) -> Result<T, sqlx::Error>
    where
        (T,): Rowed,
    {
        Ok(self.fetch_one::<(T,)>(on).await?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An array binds on PostgreSQL only (`= ANY(?)`, the queue's): on SQLite it is an error
    /// naming why, not a statement run with a wrong argument.
    #[tokio::test]
    async fn an_array_argument_is_refused_on_sqlite() {
        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        let seqs: &[i64] = &[1, 2];
        let err = sql("SELECT 1 WHERE 1 = ?")
            .bind(seqs)
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("PostgreSQL only"), "{err}");
        // Scalars still bind as before.
        let one: i64 = sql("SELECT ?").bind(1i64).scalar(&pool).await.unwrap();
        assert_eq!(one, 1);
    }
}
