//! Named parameters in a job's SQL (`:as_of`), rewritten to the driver's positional form
//! (`$1` for PostgreSQL, `?1` for SQLite) so values are bound, never spliced into the text.
//! String literals, quoted identifiers, comments, dollar-quoted bodies and `::` casts are skipped.

/// Parameters shopscribe can bind.
pub const KNOWN: &[&str] = &["as_of"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `$1`, `$2`, … (PostgreSQL)
    Dollar,
    /// `?1`, `?2`, … (SQLite)
    Question,
}

/// The rewritten SQL and the parameter names in binding order (each name once).
pub fn rewrite(sql: &str, style: Style) -> Result<(String, Vec<String>), String> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    let mut copy_from = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'$' if style == Style::Dollar => {
                // $tag$ … $tag$ (PostgreSQL dollar quoting); `$1` is left alone.
                let start = i;
                let mut j = i + 1;
                while j < b.len()
                    && (b[j].is_ascii_alphanumeric() || b[j] == b'_')
                    && !b[i + 1].is_ascii_digit()
                {
                    j += 1;
                }
                if j < b.len() && b[j] == b'$' {
                    let tag = &sql[start..=j];
                    match sql[j + 1..].find(tag) {
                        Some(end) => i = j + 1 + end + tag.len(),
                        None => i = b.len(),
                    }
                } else {
                    i += 1;
                }
            }
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' if b
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') =>
            {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let name = &sql[i + 1..j];
                if !KNOWN.contains(&name) {
                    return Err(format!(
                        "unknown parameter `:{name}`; shopscribe binds {}",
                        KNOWN
                            .iter()
                            .map(|k| format!(":{k}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                let n = match names.iter().position(|x| x == name) {
                    Some(p) => p + 1,
                    None => {
                        names.push(name.to_string());
                        names.len()
                    }
                };
                out.push_str(&sql[copy_from..i]);
                out.push_str(&match style {
                    Style::Dollar => format!("${n}"),
                    Style::Question => format!("?{n}"),
                });
                i = j;
                copy_from = j;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copy_from.min(sql.len())..]);
    Ok((out, names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_outside_literals_comments_and_casts() {
        let sql = "SELECT ':as_of', x::text, \"a:as_of\" -- :as_of\nFROM t WHERE d <= :as_of AND e > :as_of /* :as_of */";
        let (pg, names) = rewrite(sql, Style::Dollar).unwrap();
        assert_eq!(
            pg,
            "SELECT ':as_of', x::text, \"a:as_of\" -- :as_of\nFROM t WHERE d <= $1 AND e > $1 /* :as_of */"
        );
        assert_eq!(names, vec!["as_of"]);
        let (lite, _) = rewrite("SELECT * FROM t WHERE d <= :as_of", Style::Question).unwrap();
        assert_eq!(lite, "SELECT * FROM t WHERE d <= ?1");
        let (dollar, names) = rewrite("SELECT $x$ :as_of $x$, 1", Style::Dollar).unwrap();
        assert_eq!(dollar, "SELECT $x$ :as_of $x$, 1");
        assert!(names.is_empty());
    }

    #[test]
    fn unknown_parameters_are_errors() {
        let e = rewrite("SELECT :nope", Style::Dollar).unwrap_err();
        assert!(e.contains(":nope") && e.contains(":as_of"), "{e}");
    }
}
