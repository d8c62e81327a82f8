//! Paid answers that could not be stored: kept in memory while the run retries, then written to
//! a spool file when the run must end without them, and stored by the next run of the job
//! before it plans — so an answer the provider was paid for is never paid for again.
//!
//! One file per stopped run: `JOB-RUN-MILLIS.jsonl` in `store.spool_dir`, one generation per
//! line, written to a temporary name and renamed (a torn file is never read as a whole one).

use crate::store::{NewGeneration, Store, StoreError};
use std::path::{Path, PathBuf};

/// Why spooled answers could not be written, read or stored; the spool file is named once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The spool folder or a file in it cannot be written or read.
    #[error("cannot write or read the spool {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A spool file is not what this module writes.
    #[error("the spool file {}, line {line}, is not a spooled answer", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    /// Storing the spooled answers failed (the store is still unreachable).
    #[error("cannot store the spooled answers of {}", path.display())]
    Store { path: PathBuf, source: StoreError },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `answers` of `job` to a new spool file; returns its path.
pub fn write(
    dir: &Path,
    job: &str,
    run_id: i64,
    answers: &[NewGeneration],
) -> Result<PathBuf, SpoolError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = format!("{job}-{run_id}-{}.jsonl", crate::store::now_ms());
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut text = String::new();
    for a in answers {
        text.push_str(&serde_json::to_string(a).expect("generations serialise"));
        text.push('\n');
    }
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// The spool files of `job`, oldest first.
fn files_of(dir: &Path, job: &str) -> Result<Vec<PathBuf>, SpoolError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let prefix = format!("{job}-");
    let mut files: Vec<(i64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(&prefix)?.strip_suffix(".jsonl")?;
            // RUN-MILLIS: both numbers, so job `a` never takes the files of job `a-b`.
            let (run, millis) = rest.split_once('-')?;
            run.parse::<i64>().ok()?;
            Some((millis.parse().ok()?, e.path()))
        })
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// Stores every spooled answer of `job` (each file in one batch; answers already in the store
/// are not stored twice) and removes the files stored; returns how many answers were stored.
pub async fn replay(dir: &Path, job: &str, store: &dyn Store) -> Result<usize, SpoolError> {
    let mut stored = 0;
    for path in files_of(dir, job)? {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut answers = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            answers.push(
                serde_json::from_str::<NewGeneration>(line).map_err(|source| {
                    SpoolError::Parse {
                        path: path.clone(),
                        line: i + 1,
                        source,
                    }
                })?,
            );
        }
        let fresh = not_yet_stored(store, job, answers)
            .await
            .map_err(|source| SpoolError::Store {
                path: path.clone(),
                source,
            })?;
        crate::store::with_reconnect("storing spooled answers", || {
            store.record_generations(&fresh)
        })
        .await
        .map_err(|source| SpoolError::Store {
            path: path.clone(),
            source,
        })?;
        std::fs::remove_file(&path).map_err(io(&path))?;
        tracing::info!(job, answers = fresh.len(), file = %path.display(), "stored the answers a stopped run had spooled");
        stored += fresh.len();
    }
    Ok(stored)
}

/// The answers whose (entity, input hash, output) the store does not hold yet: a spool file
/// replayed twice (a crash between storing and removing it) stores nothing twice.
async fn not_yet_stored(
    store: &dyn Store,
    job: &str,
    answers: Vec<NewGeneration>,
) -> Result<Vec<NewGeneration>, StoreError> {
    let mut fresh = Vec::with_capacity(answers.len());
    for a in answers {
        let history = store.generations_of(job, &a.entity_key).await?;
        let known = history.iter().any(|(g, _)| {
            g.input_hash == a.input_hash && g.output == a.output && g.run_id == a.run_id
        });
        if !known {
            fresh.push(a);
        }
    }
    Ok(fresh)
}
