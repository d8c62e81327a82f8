//! Ingestion of raw deliveries: every file recorded (URI, size, checksum, counts) and skipped
//! when already ingested unchanged; every line kept in bronze as delivered, rejects with their
//! reason; accepted records merged into silver with full SCD2 history.

pub mod bronze;
pub mod db;
pub mod gold;
pub mod parse;
pub mod read;

use crate::config::{Dataset, Project};
use db::{Chunk, IngestDb, MergeCounts, Reject, Staged};
use std::io::Read;
use std::path::{Path, PathBuf};
use tracing::info;

/// Why an ingest, or one file of it, failed. Each message names the file, folder or dataset
/// once; the cause (an I/O, object store or store error) is the `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// A query of the store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A local file or folder cannot be read (or the temporary download written).
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The delivery location is not one the ingest reads (the problem says why).
    #[error("{from}: {problem}")]
    Location { from: String, problem: &'static str },
    /// A `--from` location that is neither a folder, `file://` nor `s3://` (the message names
    /// it).
    #[error("{0}")]
    Unsupported(String),
    /// The S3 location cannot be reached or listed.
    #[error("cannot list {from}")]
    List {
        from: String,
        source: object_store::Error,
    },
    /// An object of the delivery cannot be downloaded.
    #[error("cannot download {uri}")]
    Download {
        uri: String,
        source: object_store::Error,
    },
    /// The file's name ends in no format the ingest reads.
    #[error("{uri}: unknown file type")]
    UnknownFileType { uri: String },
    /// The reading thread stopped sending: the writer's own error is the one to report.
    #[error("the writer stopped")]
    WriterStopped,
    /// The reading thread panicked or was cancelled.
    #[error("the reader of the file failed")]
    Reader(#[source] tokio::task::JoinError),
    /// The dataset's gold table could not be rebuilt from silver.
    #[error("cannot rebuild {table} of `{dataset}`")]
    Gold {
        table: &'static str,
        dataset: String,
        source: crate::store::StoreError,
    },
    /// The dataset's ingest lock lapsed and another process took it: this ingest stopped.
    #[error(
        "the ingest of `{dataset}` was stopped: its lock was lost to another process (the store was unreachable for longer than the lease); run it again"
    )]
    LockLost { dataset: String },
    /// Too many rejected lines: the file is recorded, the command fails.
    #[error(
        "{path}: {rejected} of {lines} lines rejected ({share:.1} %), above the {limit:.1} % limit; see `shopscribe ingest {dataset} --rejects`"
    )]
    TooManyRejects {
        path: String,
        dataset: String,
        rejected: u64,
        lines: u64,
        share: f64,
        limit: f64,
        /// What the file's ingest did all the same (its good lines are merged).
        report: Box<FileReport>,
    },
    /// An error that does not name its file, while ingesting one: the file named once, the
    /// error as the source.
    #[error("{uri}")]
    InFile {
        uri: String,
        #[source]
        error: Box<IngestError>,
    },
    /// Some files of a delivery failed; the others were ingested (their reports are here).
    #[error("{}", files_failed(dataset, failed, *files))]
    Files {
        dataset: String,
        /// Each failed file's error (naming the file).
        failed: Vec<IngestError>,
        /// The files that were ingested (or skipped as already ingested), those over the reject
        /// threshold included (merged all the same).
        reports: Vec<FileReport>,
        /// Files tried.
        files: usize,
    },
}

/// The failed files, each with its whole cause chain (a list has no single source).
fn files_failed(dataset: &str, failed: &[IngestError], files: usize) -> String {
    if let ([only], 1) = (failed, files) {
        return crate::error::chain_text(only);
    }
    let mut out = format!(
        "{} of {files} files of `{dataset}` failed (the others were ingested):",
        failed.len(),
    );
    for e in failed {
        out.push_str("\n  ");
        out.push_str(&crate::error::chain_text(e));
    }
    out
}

impl IngestError {
    /// The error of a file: errors that do not name the file get its URI in front (the others
    /// name it already).
    fn in_file(self, uri: &str) -> IngestError {
        match self {
            e @ (IngestError::Store(_) | IngestError::WriterStopped | IngestError::Reader(_)) => {
                IngestError::InFile {
                    uri: uri.to_string(),
                    error: Box::new(e),
                }
            }
            e => e,
        }
    }
}

impl From<std::io::Error> for IngestError {
    fn from(source: std::io::Error) -> IngestError {
        IngestError::Io {
            path: PathBuf::new(),
            source,
        }
    }
}

/// The outcome of one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileReport {
    pub uri: String,
    /// The file's id in `ingested_files` (0 when skipped): its bronze is read by this id.
    pub file_id: i64,
    /// Already ingested with the same content (by checksum): nothing was read.
    pub skipped: bool,
    /// Records and blank lines (a CSV header is not counted).
    pub lines: u64,
    pub accepted: u64,
    /// Failed lines: they count against `max_reject_share`.
    pub rejected: u64,
    /// Blank or whitespace-only lines: kept in bronze and listed as skipped, not rejected.
    pub blank: u64,
    pub merge: MergeCounts,
}

impl FileReport {
    fn counts(&self) -> db::FileCounts {
        db::FileCounts {
            lines: self.lines,
            accepted: self.accepted,
            rejected: self.rejected,
            skipped: self.blank,
        }
    }
}

/// Streams a file's bytes through blake3: (size, checksum).
fn checksum(path: &Path) -> Result<(u64, String), IngestError> {
    let io = |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, h.finalize().to_hex().to_string()))
}

/// The data objects under an `s3://bucket/prefix`, in name order: (uri, object path).
#[allow(clippy::type_complexity)]
async fn list_s3(
    from: &str,
) -> Result<
    (
        std::sync::Arc<dyn object_store::ObjectStore>,
        Vec<(String, object_store::ObjectMeta)>,
    ),
    IngestError,
> {
    use futures::TryStreamExt;
    let location = |problem| IngestError::Location {
        from: from.to_string(),
        problem,
    };
    let list = |source| IngestError::List {
        from: from.to_string(),
        source,
    };
    // Split by hand rather than parsed as a URL: object keys are plain text, and characters
    // such as '#', '?' or '%' (S3 allows them) must stay part of the key.
    let rest = from
        .strip_prefix("s3://")
        .ok_or_else(|| location("not an s3:// location"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(location("no bucket name"));
    }
    let store: std::sync::Arc<dyn object_store::ObjectStore> = std::sync::Arc::new(
        object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(list)?,
    );
    let prefix = object_store::path::Path::from(key.trim_matches('/'));
    let mut objects: Vec<object_store::ObjectMeta> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(list)?;
    // A listing holds what is *under* the prefix; `from` may name one object itself.
    if objects.is_empty() && !prefix.as_ref().is_empty() {
        use object_store::ObjectStoreExt;
        match store.head(&prefix).await {
            Ok(meta) => objects.push(meta),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(list(e)),
        }
    }
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    let bucket = bucket.to_string();
    Ok((
        store,
        objects
            .into_iter()
            .filter(|o| o.location.filename().and_then(read::format_of).is_some())
            .map(|o| (format!("s3://{bucket}/{}", o.location), o))
            .collect(),
    ))
}

/// A fingerprint of what lies at a delivery location (names, sizes, modification times or
/// ETags of its data files): it changes when a file is added, replaced or removed. `watch`
/// compares it between polls; reading a listing costs far less than checksumming the files.
pub async fn fingerprint(from: &str) -> Result<(String, usize), IngestError> {
    let mut h = blake3::Hasher::new();
    let n;
    if from.starts_with("s3://") {
        let (_, objects) = list_s3(from).await?;
        n = objects.len();
        for (uri, o) in objects {
            h.update(
                format!(
                    "{uri}\t{}\t{}\t{}\n",
                    o.size,
                    o.e_tag.unwrap_or_default(),
                    o.last_modified.timestamp_millis()
                )
                .as_bytes(),
            );
        }
    } else {
        let files = list_files(from)?;
        n = files.len();
        for f in files {
            let meta = std::fs::metadata(&f).map_err(|source| IngestError::Io {
                path: f.clone(),
                source,
            })?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            h.update(format!("{}\t{}\t{modified}\n", f.display(), meta.len()).as_bytes());
        }
    }
    Ok((h.finalize().to_hex().to_string(), n))
}

/// Downloads an object into a temporary file (streamed: memory stays flat).
async fn download(
    store: &dyn object_store::ObjectStore,
    path: &object_store::path::Path,
    uri: &str,
    dir: &Path,
) -> Result<PathBuf, IngestError> {
    use futures::StreamExt;
    use object_store::ObjectStoreExt;
    use tokio::io::AsyncWriteExt;
    let name = path.filename().unwrap_or("delivery").to_string();
    let local = dir.join(name);
    let err = |source| IngestError::Download {
        uri: uri.to_string(),
        source,
    };
    let io = |source| IngestError::Io {
        path: local.clone(),
        source,
    };
    let mut stream = store.get(path).await.map_err(err)?.into_stream();
    let mut f = tokio::fs::File::create(&local).await.map_err(io)?;
    while let Some(chunk) = stream.next().await {
        f.write_all(&chunk.map_err(err)?).await.map_err(io)?;
    }
    f.flush().await.map_err(io)?;
    Ok(local)
}

/// The data files of a delivery location, in name order.
pub fn list_files(from: &str) -> Result<Vec<PathBuf>, IngestError> {
    let Some(dir) = from.strip_prefix("file://") else {
        return Err(IngestError::Location {
            from: from.to_string(),
            problem: "not a local folder",
        });
    };
    let path = Path::new(dir);
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|source| IngestError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(read::format_of)
                    .is_some()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The lease of a dataset's ingest lock. Longer than a job's: on SQLite the renewal is a write
/// and waits for the ingest's own merge, which holds the store's one writer for as long as a
/// large file takes (renewals could not write for a whole minute). A killed ingest blocks the
/// next one of its dataset for at most this long.
const INGEST_LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Ingests every file at `from` (default: the dataset's location) into the store.
///
/// One ingest of a dataset at a time, across processes: it holds the lease lock
/// `ingest:<dataset>` (another one waits for it). Under the lock, files of the dataset still
/// marked `loading` were interrupted (a crash, a kill): they are marked failed and their scratch
/// tables removed first; their files are ingested again like any file not done.
pub async fn ingest(
    project: &Project,
    dataset: &Dataset,
    from: Option<&str>,
) -> Result<Vec<FileReport>, IngestError> {
    let store = crate::store::open(&project.store_url).await?;
    let lock = format!("ingest:{}", dataset.name);
    let holder = crate::lease::holder_name("ingest");
    // Boxed: the ingest's future is large, and callers nest it in their own (watch's poll).
    let work = Box::pin(ingest_locked(project, store.clone(), dataset, from));
    crate::lease::wait_and_hold(store, &lock, &holder, INGEST_LOCK_TTL, work)
        .await?
        .unwrap_or_else(|| {
            Err(IngestError::LockLost {
                dataset: dataset.name.clone(),
            })
        })
}

/// The state value that says a dataset's gold may be behind its silver: set before any file of
/// an ingest can merge, cleared once the rebuild that follows has finished. A process killed in
/// between leaves it set, and the next ingest (or a run of a job reading the dataset) rebuilds.
fn gold_stale_flag(dataset: &str) -> String {
    format!("gold_stale:{dataset}")
}

/// Rebuilds the dataset's gold if an earlier ingest did not finish doing so (see
/// [`gold_stale_flag`]), under the dataset's ingest lock; true when it rebuilt.
pub async fn rebuild_stale_gold(
    project: &Project,
    store: std::sync::Arc<dyn crate::store::Store>,
    dataset: &Dataset,
) -> Result<bool, IngestError> {
    let Some(table) = dataset.gold else {
        return Ok(false);
    };
    if store
        .state_get(&gold_stale_flag(&dataset.name))
        .await?
        .is_none()
    {
        return Ok(false);
    }
    let lock = format!("ingest:{}", dataset.name);
    let holder = crate::lease::holder_name("gold");
    let work = async {
        // Checked again under the lock: an ingest may have rebuilt it meanwhile.
        if store
            .state_get(&gold_stale_flag(&dataset.name))
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let db = IngestDb::connect(&project.store_url).await?;
        let n = gold::rebuild(&db, &dataset.name, table)
            .await
            .map_err(|source| IngestError::Gold {
                table: table.table(),
                dataset: dataset.name.clone(),
                source,
            })?;
        store.state_delete(&gold_stale_flag(&dataset.name)).await?;
        info!(dataset = %dataset.name, products = n, table = table.table(), "gold rebuilt (an earlier ingest stopped before it)");
        Ok(true)
    };
    crate::lease::wait_and_hold(store.clone(), &lock, &holder, INGEST_LOCK_TTL, work)
        .await?
        .unwrap_or(Ok(false))
}

/// A file to ingest: its URI, its object when it is in an object store (downloaded first),
/// and its local path.
type Source = (String, Option<object_store::path::Path>, PathBuf);

/// The files at `from`: local files in place, or an S3 prefix's objects (with the store to
/// download them from).
async fn list_sources(
    from: &str,
) -> Result<
    (
        Option<std::sync::Arc<dyn object_store::ObjectStore>>,
        Vec<Source>,
    ),
    IngestError,
> {
    let mut sources: Vec<Source> = Vec::new();
    let mut s3 = None;
    if from.starts_with("s3://") {
        let (store, objects) = list_s3(from).await?;
        s3 = Some(store);
        sources.extend(
            objects
                .into_iter()
                .map(|(uri, o)| (uri, Some(o.location), PathBuf::new())),
        );
    } else {
        sources.extend(
            list_files(from)?
                .into_iter()
                .map(|p| (format!("file://{}", p.display()), None, p)),
        );
    }
    Ok((s3, sources))
}

async fn ingest_locked(
    project: &Project,
    store: std::sync::Arc<dyn crate::store::Store>,
    dataset: &Dataset,
    from: Option<&str>,
) -> Result<Vec<FileReport>, IngestError> {
    let db = IngestDb::connect(&project.store_url).await?;
    let flag = gold_stale_flag(&dataset.name);
    let gold_was_stale = dataset.gold.is_some() && store.state_get(&flag).await?.is_some();
    if dataset.gold.is_some() && !gold_was_stale {
        store.state_set(&flag, &crate::store::now_text()).await?;
    }
    for id in db.recover_interrupted(&dataset.name).await? {
        tracing::warn!(dataset = %dataset.name, file_id = id, "a file left loading by an interrupted ingest was marked failed");
    }
    let from = match from {
        Some(f) => {
            crate::config::normalise_location(f, &std::env::current_dir().unwrap_or_default())
                .map_err(IngestError::Unsupported)?
        }
        None => dataset.from.clone(),
    };
    let mut reports = Vec::new();
    // Local files are read in place; S3 objects are downloaded one at a time to a temp folder.
    let tmp = tempfile::tempdir().map_err(|source| IngestError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let (s3, sources) = list_sources(&from).await?;
    // One bad file never stops the others: each failure is recorded and the next file tried;
    // the command fails at the end, naming each failed file and why.
    let mut failed = Vec::new();
    let files = sources.len();
    for (uri, object, mut path) in sources {
        if let (Some(store), Some(object)) = (&s3, &object) {
            match download(store.as_ref(), object, &uri, tmp.path()).await {
                Ok(p) => path = p,
                Err(e) => {
                    // The error itself is reported once, with the others, at the end.
                    tracing::warn!(file = %uri, "cannot download; the next files are ingested all the same");
                    failed.push(e.in_file(&uri));
                    continue;
                }
            }
        }
        let outcome = ingest_file_as(&db, dataset, &path, &uri).await;
        if object.is_some() {
            let _ = std::fs::remove_file(&path);
        }
        match outcome {
            Ok(r) => reports.push(r),
            // A file over the reject threshold is merged all the same.
            Err(e @ IngestError::TooManyRejects { .. }) => {
                if let IngestError::TooManyRejects { report, .. } = &e {
                    reports.push((**report).clone());
                }
                failed.push(e);
            }
            Err(e) => {
                tracing::warn!(file = %uri, "file failed; the next files are ingested all the same");
                failed.push(e);
            }
        }
    }
    let changed = reports.iter().any(|r| !r.skipped) || !failed.is_empty() || gold_was_stale;
    if let Some(table) = dataset.gold.filter(|_| changed) {
        match gold::rebuild(&db, &dataset.name, table).await {
            Ok(n) => {
                info!(dataset = %dataset.name, products = n, table = table.table(), "gold rebuilt");
                store.state_delete(&flag).await?;
            }
            Err(source) => failed.push(IngestError::Gold {
                table: table.table(),
                dataset: dataset.name.clone(),
                source,
            }),
        }
    } else if dataset.gold.is_some() {
        // Nothing merged: gold is as current as it was.
        store.state_delete(&flag).await?;
    }
    if failed.is_empty() {
        Ok(reports)
    } else {
        Err(IngestError::Files {
            dataset: dataset.name.clone(),
            failed,
            reports,
            files,
        })
    }
}

/// Chunk size for bronze and staging writes.
const CHUNK: usize = 5000;

/// Lines per bronze block (~600 KB of review lines before compression).
const BLOCK_LINES: usize = 1000;

/// What became of one delivered item.
enum Verdict {
    Accepted(parse::Candidate),
    Rejected(String),
    /// Not a record and not a failure (a blank line): listed, not counted as rejected.
    Skipped(String),
    /// Kept in bronze only (a CSV header).
    Bronze,
}

/// Parses, checks and hashes a chunk of read items on rayon's pool (in file order), and
/// compresses them into bronze blocks: every item as delivered in a block, rejects (and skipped
/// lines) with their reason, accepted records staged.
fn prepare_chunk(ds: &Dataset, batch: Vec<read::RawItem>, from_csv: bool) -> Chunk {
    use rayon::prelude::*;
    let verdicts: Vec<(i64, Vec<u8>, Verdict)> = batch
        .into_par_iter()
        .map(|item| {
            let verdict = match item.parsed {
                // A JSON line still to parse: straight to a candidate, without a value tree.
                None => match read::json_line_text(&item.raw, item.line_no) {
                    read::LineText::Json(text) => match parse::candidate_from_json_line(ds, text) {
                        Ok(c) => Verdict::Accepted(c),
                        Err(reason) => Verdict::Rejected(reason),
                    },
                    read::LineText::Blank => Verdict::Skipped(read::BLANK.to_string()),
                    read::LineText::Invalid(reason) => Verdict::Rejected(reason),
                },
                Some(_) if item.kind == read::ItemKind::Header => Verdict::Bronze,
                Some(Err(reason)) if item.kind == read::ItemKind::Blank => Verdict::Skipped(reason),
                Some(parsed) => match parsed.and_then(|obj| parse::candidate(ds, obj, from_csv)) {
                    Ok(c) => Verdict::Accepted(c),
                    Err(reason) => Verdict::Rejected(reason),
                },
            };
            (item.line_no as i64, item.raw, verdict)
        })
        .collect();
    let blocks: Vec<bronze::Block> = verdicts
        .par_chunks(BLOCK_LINES)
        .map(|items| bronze::encode(items.iter().map(|(line, raw, _)| (*line, raw.as_slice()))))
        .collect();
    let mut chunk = Chunk {
        lines: 0,
        skipped: 0,
        blocks,
        rejects: Vec::new(),
        staged: Vec::with_capacity(verdicts.len()),
    };
    for (line_no, raw, verdict) in verdicts {
        let (reason, kind) = match verdict {
            Verdict::Accepted(c) => {
                chunk.lines += 1;
                chunk.staged.push(Staged { line_no, c });
                continue;
            }
            Verdict::Bronze => continue,
            Verdict::Rejected(reason) => (reason, db::RejectKind::Rejected),
            Verdict::Skipped(reason) => {
                chunk.skipped += 1;
                (reason, db::RejectKind::Skipped)
            }
        };
        chunk.lines += 1;
        let cut = read::without_line_end(&raw).len() > ds.max_line_bytes;
        chunk
            .rejects
            .push(Reject::new(line_no, kind, reason, &raw, cut));
    }
    chunk
}

/// Whether ingests draw a progress line (set by the `ingest` command; only drawn when stderr is a
/// terminal, so logs, services and tests never see it).
static PROGRESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the progress line of file ingests on or off for this process.
pub fn show_progress(on: bool) {
    PROGRESS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// A file's progress line: a bar over the file's bytes, or (gzip: the size read is not the size
/// delivered) lines and rate only.
fn progress_line(uri: &str, size: u64, gz: bool) -> Option<indicatif::ProgressBar> {
    let wanted = PROGRESS.load(std::sync::atomic::Ordering::Relaxed);
    let bar = if gz {
        crate::progress::terminal_bar(wanted, None, "{spinner} {prefix} {msg} {elapsed}")
    } else {
        crate::progress::terminal_bar(
            wanted,
            Some(size),
            "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg} eta {eta}",
        )
    }?;
    bar.set_prefix(uri.rsplit('/').next().unwrap_or(uri).to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(bar)
}

pub async fn ingest_file(
    db: &IngestDb,
    ds: &Dataset,
    path: &Path,
) -> Result<FileReport, IngestError> {
    ingest_file_as(db, ds, path, &format!("file://{}", path.display())).await
}

/// Records a file that failed before its merge committed as failed, without its partial
/// bronze, rejects or scratch tables: it is ingested again, whole, the next time.
async fn discard_failed(db: &IngestDb, file_id: i64, report: &FileReport, e: &IngestError) {
    if let Err(d) = db.discard_partial(file_id).await {
        tracing::warn!(file_id, error = %d, "cannot remove the failed file's partial bronze");
    }
    let _ = db
        .finish_file(
            file_id,
            crate::db::status::FileStatus::Failed,
            &report.counts(),
            &MergeCounts::default(),
            Some(&crate::error::chain_text(e)),
        )
        .await;
}

/// Ingests the local file `path`, recorded under `uri` (where it was delivered). An error names
/// the file.
pub async fn ingest_file_as(
    db: &IngestDb,
    ds: &Dataset,
    path: &Path,
    uri: &str,
) -> Result<FileReport, IngestError> {
    ingest_one(db, ds, path, uri)
        .await
        .map_err(|e| e.in_file(uri))
}

/// Reads the file on a blocking thread: lines are split there (cheap, serial) and each chunk
/// of them is parsed, checked and hashed on rayon's pool, then sent to the writer over `tx`.
fn spawn_reader(
    ds2: Dataset,
    p2: PathBuf,
    format: read::Format,
    gz: bool,
    tx: tokio::sync::mpsc::Sender<Chunk>,
) -> tokio::task::JoinHandle<Result<(), IngestError>> {
    tokio::task::spawn_blocking(move || -> Result<(), IngestError> {
        let from_csv = format == read::Format::Csv;
        let mut batch: Vec<read::RawItem> = Vec::with_capacity(CHUNK);
        // Time spent waiting for the writer: near zero when parsing is the bottleneck.
        let mut waited = std::time::Duration::ZERO;
        let started = std::time::Instant::now();
        let mut send = |batch: Vec<read::RawItem>| -> Result<(), IngestError> {
            let chunk = prepare_chunk(&ds2, batch, from_csv);
            let t = std::time::Instant::now();
            let sent = tx
                .blocking_send(chunk)
                .map_err(|_| IngestError::WriterStopped);
            waited += t.elapsed();
            sent
        };
        read::read_raw_items(
            &p2,
            format,
            gz,
            ds2.max_line_bytes,
            ds2.duplicate_keys_allowed,
            |item| -> Result<(), IngestError> {
                batch.push(item);
                if batch.len() >= CHUNK {
                    send(std::mem::replace(&mut batch, Vec::with_capacity(CHUNK)))?;
                }
                Ok(())
            },
        )
        .map_err(|e| match e {
            IngestError::Io { source, .. } => IngestError::Io {
                path: p2.clone(),
                source,
            },
            other => other,
        })?;
        if !batch.is_empty() {
            send(batch)?;
        }
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            waiting_for_writer_ms = waited.as_millis() as u64,
            "read and parsed"
        );
        Ok(())
    })
}

/// Writes the chunks the reader sends as they come, counting them into `report` (and on the
/// progress line) and observing their key order. The first write error ends it: the channel
/// closes and the reader stops at its next send.
async fn write_chunks(
    loader: &mut db::Loader<'_>,
    mut rx: tokio::sync::mpsc::Receiver<Chunk>,
    report: &mut FileReport,
    bar: Option<&indicatif::ProgressBar>,
    key_order: &mut db::KeyOrder,
) -> Result<(), crate::store::StoreError> {
    while let Some(chunk) = rx.recv().await {
        if let Some(bar) = bar {
            // Delivered bytes: each item is kept with its line end.
            let bytes: i64 = chunk.blocks.iter().map(|b| b.raw_bytes).sum();
            bar.inc(bytes as u64);
            bar.set_message(format!("{} lines", report.lines + chunk.lines));
        }
        key_order.observe(chunk.staged.iter().map(|s| s.c.key.as_str()));
        report.lines += chunk.lines;
        report.accepted += chunk.staged.len() as u64;
        report.rejected += chunk.rejects.len() as u64 - chunk.skipped;
        report.blank += chunk.skipped;
        loader.write(chunk).await?;
    }
    Ok(())
}

async fn ingest_one(
    db: &IngestDb,
    ds: &Dataset,
    path: &Path,
    uri: &str,
) -> Result<FileReport, IngestError> {
    let uri = uri.to_string();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let (format, gz) =
        read::format_of(name).ok_or_else(|| IngestError::UnknownFileType { uri: uri.clone() })?;
    let (size, sum) = checksum(path)?;
    if let Some(done) = db.find_done(&ds.name, &sum).await? {
        info!(file = %uri, same_as = %done.uri, "already ingested with the same content; skipped");
        return Ok(FileReport {
            uri,
            skipped: true,
            ..Default::default()
        });
    }
    let started = std::time::Instant::now();
    let file_id = db.begin_file(&ds.name, &uri, size, &sum).await?;
    let mut report = FileReport {
        uri: uri.clone(),
        file_id,
        ..Default::default()
    };

    // Reading runs on a blocking thread: lines are split there (cheap, serial) and each chunk is
    // parsed, checked and hashed on rayon's pool, in parallel; chunks come back over a channel
    // and the writer here only writes. The bounded channel keeps memory flat.
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(4);
    let reader = spawn_reader(ds.clone(), path.to_path_buf(), format, gz, tx);
    let mut loader = db.loader(file_id);
    let mut key_order = db::KeyOrder::default();
    let bar = progress_line(&uri, size, gz);
    let mut write_result =
        write_chunks(&mut loader, rx, &mut report, bar.as_ref(), &mut key_order).await;
    write_result = write_result.and(loader.finish().await);
    let read_result = reader.await.map_err(IngestError::Reader)?;
    if let Err(e) = write_result.map_err(IngestError::from).and(read_result) {
        discard_failed(db, file_id, &report, &e).await;
        return Err(e);
    }
    let loaded_ms = started.elapsed().as_millis() as u64;
    if let Some(bar) = &bar {
        bar.set_message(format!(
            "{} lines loaded; merging into history",
            report.lines
        ));
    }
    let merged = db
        .merge(
            &ds.name,
            file_id,
            ds.snapshot,
            report.accepted,
            key_order.in_order(),
        )
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    report.merge = match merged {
        Ok(m) => m,
        Err(e) => {
            let e = IngestError::from(e);
            discard_failed(db, file_id, &report, &e).await;
            return Err(e);
        }
    };
    db.finish_file(
        file_id,
        crate::db::status::FileStatus::Done,
        &report.counts(),
        &report.merge,
        None,
    )
    .await?;
    info!(
        file = %uri, lines = report.lines, rejected = report.rejected, inserted = report.merge.inserted,
        changed = report.merge.changed, unchanged = report.merge.unchanged, loaded_ms,
        ms = started.elapsed().as_millis() as u64,
        "file ingested"
    );
    within_reject_share(ds, uri, report)
}

/// The file's report, or [`IngestError::TooManyRejects`] (with the report: the file is merged
/// all the same) when it rejected more than `max_reject_share` of its records.
fn within_reject_share(
    ds: &Dataset,
    uri: String,
    report: FileReport,
) -> Result<FileReport, IngestError> {
    // Blank lines are not records: the share is of the lines that are.
    let records = report.lines - report.blank;
    let share = if records == 0 {
        0.0
    } else {
        report.rejected as f64 / records as f64
    };
    if share > ds.max_reject_share {
        return Err(IngestError::TooManyRejects {
            path: uri,
            dataset: ds.name.clone(),
            rejected: report.rejected,
            lines: records,
            share: share * 100.0,
            limit: ds.max_reject_share * 100.0,
            report: Box::new(report),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_is_named_once_with_the_os_error_as_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = list_files(&format!("file://{}", missing.display())).unwrap_err();
        let source = std::error::Error::source(&e).expect("the cause is kept");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        let text = crate::error::chain_text(&e);
        assert_eq!(
            text.matches(&*missing.to_string_lossy()).count(),
            1,
            "{text}"
        );
        assert!(text.ends_with(&io.to_string()), "{text}");
    }

    #[test]
    fn an_error_that_names_no_file_gets_the_file_in_front_and_one_that_does_does_not() {
        let uri = "file:///d/a.txt";
        let named = IngestError::UnknownFileType { uri: uri.into() }.in_file(uri);
        assert_eq!(crate::error::chain_text(&named).matches(uri).count(), 1);
        let unnamed = IngestError::WriterStopped.in_file(uri);
        assert_eq!(
            crate::error::chain_text(&unnamed),
            "file:///d/a.txt: the writer stopped"
        );
    }
}
