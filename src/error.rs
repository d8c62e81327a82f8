//! How errors are told: every layer has its own `#[non_exhaustive]` error enum whose message
//! names what failed (a file, a job, a key, a query) once and keeps the cause as its `source`.
//! [`Chain`] writes such an error with its causes, each said once; it is what the command line
//! prints, what the store records for a failed file or run and what logs carry.

use std::error::Error;
use std::fmt;

/// An error and its causes in one line, `message: cause: cause of the cause`; a cause whose
/// text the line already holds (an error that prints its source in its own text) is skipped.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&chain_text(self.0))
    }
}

/// [`Chain`] as a `String`.
pub fn chain_text(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}")]
    struct Read {
        path: String,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("loading the dataset failed: {source}")]
    struct Said {
        source: Read,
    }

    #[test]
    fn each_cause_is_said_once() {
        let read = Read {
            path: "/x/y.jsonl".into(),
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(chain_text(&read), "cannot read /x/y.jsonl: disk on fire");
        // A message that already holds its source's text gets it once.
        let said = Said { source: read };
        assert_eq!(
            Chain(&said).to_string(),
            "loading the dataset failed: cannot read /x/y.jsonl: disk on fire"
        );
    }
}
