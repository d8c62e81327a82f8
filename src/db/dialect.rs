//! The few real differences between SQLite and PostgreSQL, named once. Everything else (the
//! tables, `ON CONFLICT … DO UPDATE SET … = excluded.…` upserts, `RETURNING`, RFC 3339 text
//! timestamps made by the client, `CAST(… AS DOUBLE PRECISION)`, `CAST(? AS TEXT)` for a
//! parameter that may be NULL) is written the same for both, so a statement is written once.
//!
//! | difference | SQLite | PostgreSQL |
//! |---|---|---|
//! | placeholders | `?` | `$1, $2, …` ([`Backend::placeholders`]) |
//! | the server's clock in Unix ms | `julianday('now')` | `clock_timestamp()` ([`Backend::now_ms_sql`]) |
//! | bulk loads | multi-row `INSERT`s in a transaction | `COPY … FROM STDIN` streams ([`BulkLoad`]) |
//! | scratch tables of an ingest | an attached database file | `UNLOGGED` tables |
//! | the task queue | absent (distributed runs need PostgreSQL) | `tasks`, `workers` |
//! | a list of texts in one parameter (a JSON array) | `json_each(?)` | `json_array_elements_text(…)` ([`Backend::text_list_sql`]) |

use std::borrow::Cow;

/// Which database a store lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How many rows at once go into a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkLoad {
    /// Multi-row `INSERT … VALUES (…), (…)` statements, prepared once per batch size.
    MultiRowInsert,
    /// `COPY … FROM STDIN` in text format, streamed over a connection of its own.
    Copy,
}

impl Backend {
    /// The backend a store URL names (`sqlite://…`, anything else is PostgreSQL).
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// "sqlite" or "postgres", as [`crate::store::Store::backend`] says.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// A statement written with `?` placeholders, as this backend numbers them. A `?` inside a
    /// quoted literal or identifier is left alone.
    pub fn placeholders(self, sql: &str) -> Cow<'_, str> {
        match self {
            Backend::Sqlite => Cow::Borrowed(sql),
            Backend::Postgres => {
                let mut out = String::with_capacity(sql.len() + 16);
                let (mut n, mut quote) = (0, None);
                for c in sql.chars() {
                    match (c, quote) {
                        ('\'' | '"', None) => quote = Some(c),
                        (c, Some(q)) if c == q => quote = None,
                        ('?', None) => {
                            n += 1;
                            out.push('$');
                            out.push_str(&n.to_string());
                            continue;
                        }
                        _ => {}
                    }
                    out.push(c);
                }
                Cow::Owned(out)
            }
        }
    }

    /// The database's own clock as Unix milliseconds (an SQL expression). On PostgreSQL it is
    /// the server's: hosts whose clocks disagree by more than a lease would otherwise both hold
    /// a lock. SQLite's is this host's (the database is a local file).
    pub fn now_ms_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Backend::Postgres => "(extract(epoch FROM clock_timestamp()) * 1000)::bigint",
        }
    }

    /// A table source with one column `value`: the texts of one bound parameter holding a JSON
    /// array of strings. `… IN (SELECT value FROM <this>)` matches a list of any length with
    /// one statement text (one prepared statement), where `IN (?, ?, …)` needs one per length.
    pub fn text_list_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => "json_each(?)",
            Backend::Postgres => "json_array_elements_text(CAST(? AS json))",
        }
    }

    pub fn bulk_load(self) -> BulkLoad {
        match self {
            Backend::Sqlite => BulkLoad::MultiRowInsert,
            Backend::Postgres => BulkLoad::Copy,
        }
    }
}

/// Appends `s` escaped for COPY's text format (backslash, tab, newline, carriage return).
pub fn copy_escape(s: &str, out: &mut String) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'\\' => "\\\\",
            b'\t' => "\\t",
            b'\n' => "\\n",
            b'\r' => "\\r",
            _ => continue,
        };
        // The escaped bytes are ASCII: slicing around them stays on character boundaries.
        out.push_str(&s[start..i]);
        out.push_str(esc);
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_quotes_only() {
        let sql = "SELECT '?' FROM t WHERE a = ? AND \"b?\" = ? OR c IN (?, ?)";
        assert_eq!(Backend::Sqlite.placeholders(sql), sql);
        assert_eq!(
            Backend::Postgres.placeholders(sql),
            "SELECT '?' FROM t WHERE a = $1 AND \"b?\" = $2 OR c IN ($3, $4)"
        );
        assert_eq!(Backend::of_url("sqlite:///x.db"), Backend::Sqlite);
        assert_eq!(Backend::of_url("postgres://h/db"), Backend::Postgres);
    }
}

#[cfg(test)]
mod copy_escape_tests {
    #[test]
    fn copy_text_escapes_exactly_backslash_tab_newline_and_cr() {
        // The reference: character by character.
        let reference = |s: &str| {
            let mut out = String::new();
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            out
        };
        for s in [
            "plain",
            "tab\there, new\nline, cr\r, back\\slash",
            "é\\\t—\n",
            "",
            "\\",
        ] {
            let mut ours = String::new();
            super::copy_escape(s, &mut ours);
            assert_eq!(ours, reference(s), "{s:?}");
        }
        let mut ours = String::from("kept ");
        super::copy_escape("a\tb", &mut ours);
        assert_eq!(ours, "kept a\\tb", "appends");
    }
}
