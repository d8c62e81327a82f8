//! Ingestion's tables on either backend. The statements are written once with `?` placeholders
//! (rewritten to `$n` for PostgreSQL); bulk writes use multi-row INSERTs on SQLite, and on
//! PostgreSQL one COPY stream for the staged lines and array parameters (`UNNEST`) for bronze
//! blocks and rejects. The SCD2 merge is set-based SQL in one transaction.

use super::parse::Candidate;
use crate::db::dialect::copy_escape;
use crate::db::status::{FileStatus, MergeAction, decode};
use crate::store::StoreError;
use sqlx::{PgPool, SqlitePool};

pub enum IngestDb {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// The scratch tables of one file: its staged records and its merge plan, created when the file
/// starts and discarded after its merge (or when it fails).
///
/// On PostgreSQL they are unlogged tables (`ingest_staging_<file id>`, `…_plan`), dropped after.
/// On SQLite they live in a database file of their own beside the store (`<store>-ingest-<file
/// id>`), attached to the connection: no WAL and no journal (the rows are written once, not into
/// the WAL and again at checkpoint), and discarded by deleting the file — dropping a large table
/// in the store instead walks and frees every one of its pages (seconds per million rows).
struct Scratch {
    staging: String,
    plan: String,
    /// The statement that indexes the plan by current row id.
    plan_index: String,
}

/// The SQLite schema name a file's scratch database is attached as.
fn scratch_schema(file_id: i64) -> String {
    format!("ingest_scratch_{file_id}")
}

fn scratch(db: &IngestDb, file_id: i64) -> Scratch {
    match db {
        IngestDb::Sqlite(_) => {
            let s = scratch_schema(file_id);
            Scratch {
                staging: format!("{s}.staging"),
                plan: format!("{s}.plan"),
                plan_index: format!("CREATE INDEX {s}.plan_cur ON plan (cur_id)"),
            }
        }
        IngestDb::Pg(_) => {
            let t = format!("ingest_staging_{file_id}");
            Scratch {
                staging: t.clone(),
                plan: format!("{t}_plan"),
                plan_index: format!("CREATE INDEX {t}_plan_cur ON {t}_plan (cur_id)"),
            }
        }
    }
}

/// Where a file's SQLite scratch database lives: beside the store's file (same disk), or in the
/// temp folder for an in-memory store.
fn scratch_path(p: &SqlitePool, file_id: i64) -> std::path::PathBuf {
    let main = p.connect_options().get_filename().to_path_buf();
    match (main.parent(), main.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) if !name.is_empty() && !name.starts_with(':') && dir.is_dir() => {
            dir.join(format!("{name}-ingest-{file_id}"))
        }
        _ => std::env::temp_dir().join(format!(
            "shopscribe-ingest-{}-{file_id}",
            std::process::id()
        )),
    }
}

/// A connection of the SQLite pool with the file's scratch database attached (again, if the
/// pool replaced the connection: the data is in the file, so nothing is lost).
async fn scratch_conn(
    p: &SqlitePool,
    file_id: i64,
) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>, StoreError> {
    let mut conn = p.acquire().await?;
    let schema = scratch_schema(file_id);
    let attached: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pragma_database_list WHERE name = ?")
            .bind(&schema)
            .fetch_one(&mut *conn)
            .await?;
    if attached == 0 {
        let path = scratch_path(p, file_id);
        // The store's connections are opened without "create": an empty file is an empty
        // database (an existing one is kept: it holds this file's staged rows).
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| StoreError::File {
                path: path.clone(),
                source,
            })?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ATTACH DATABASE ? AS {schema}"
        )))
        .bind(path.to_string_lossy().into_owned())
        .execute(&mut *conn)
        .await?;
        // Scratch data: a crash leaves the file 'loading' and it is ingested again. Written
        // once in order and read once: the largest page size, so fewer, larger writes (set
        // before the first table; ignored if the file already has one).
        for pragma in [
            "page_size = 65536",
            "journal_mode = OFF",
            "synchronous = OFF",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {schema}.{pragma}")))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(conn)
}

/// Whether a listed line failed (counts against `max_reject_share`) or was only skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    Rejected,
    /// Not a record, not a failure: a blank or whitespace-only line.
    Skipped,
}

impl RejectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::Rejected => "rejected",
            RejectKind::Skipped => "skipped",
        }
    }
}

/// Text as stored in a `TEXT` column on either backend: PostgreSQL's cannot hold NUL, so a NUL
/// character becomes U+FFFD on both (the same text whichever store holds it).
pub fn storable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}").into()
    } else {
        s.into()
    }
}

/// A rejected (or skipped) line: kept with its reason (and, like every line, in a bronze block).
pub struct Reject {
    pub line_no: i64,
    pub kind: RejectKind,
    pub reason: String,
    /// The line as text: invalid UTF-8 and NUL replaced by U+FFFD; a line over the size limit
    /// cut to its first 4 KB (the whole line is in bronze).
    pub raw: String,
    /// The exact bytes `raw` shows, when `raw` is not them (NUL, invalid UTF-8).
    pub raw_bytes: Option<Vec<u8>>,
}

impl Reject {
    /// The reject of an item as delivered (`item`: its bytes, line end included); `cut`: keep
    /// only its first 4 KB (over the size limit).
    pub fn new(line_no: i64, kind: RejectKind, reason: String, item: &[u8], cut: bool) -> Reject {
        let mut b = item;
        while let Some((b'\n' | b'\r', rest)) = b.split_last() {
            b = rest;
        }
        while let Some((b'\n' | b'\r', rest)) = b.split_first() {
            b = rest;
        }
        if cut {
            b = &b[..b.len().min(super::read::KEEP)];
        }
        let text = String::from_utf8_lossy(b);
        let exact = matches!(text, std::borrow::Cow::Borrowed(_)) && !text.contains('\0');
        Reject {
            line_no,
            kind,
            reason: storable(&reason).into_owned(),
            raw: storable(&text).into_owned(),
            raw_bytes: (!exact).then(|| b.to_vec()),
        }
    }
}

/// A listed line of a dataset (`ingest --rejects`).
#[derive(Debug, Clone, PartialEq)]
pub struct RejectRow {
    pub uri: String,
    pub line_no: i64,
    /// `rejected` or `skipped`.
    pub kind: String,
    pub reason: String,
    /// The line's bytes as delivered, without its line end (the first 4 KB of a line over the
    /// size limit).
    pub raw: Vec<u8>,
}

/// One chunk of a file, ready to write: its bronze blocks, its rejects, its staged records.
pub struct Chunk {
    /// Lines counted (records and blank lines; not a CSV header).
    pub lines: u64,
    /// Of which blank (listed as skipped, not rejected).
    pub skipped: u64,
    pub blocks: Vec<super::bronze::Block>,
    pub rejects: Vec<Reject>,
    pub staged: Vec<Staged>,
}

/// One accepted line, staged for the merge.
pub struct Staged {
    pub line_no: i64,
    pub c: Candidate,
}

/// Bytes of COPY data per PostgreSQL transaction while loading (bounds what a failure mid-file
/// takes back, like the chunk transactions on SQLite).
const PG_COPY_TX_BYTES: usize = 64 << 20;

/// Loads one file's chunks. On PostgreSQL two tasks write them, each over its own connection:
/// bronze blocks and rejects (a few array-bound INSERTs per chunk), and staging (one long COPY:
/// no round trip per chunk); the server works on both while the next chunk is parsed. On SQLite
/// each chunk is one transaction on the writer.
pub struct Loader<'a> {
    db: &'a IngestDb,
    file_id: i64,
    streams: Option<PgStreams>,
}

struct PgStreams {
    bronze: tokio::sync::mpsc::Sender<(Vec<super::bronze::Block>, Vec<Reject>)>,
    staging: tokio::sync::mpsc::Sender<Vec<u8>>,
    tasks: [tokio::task::JoinHandle<Result<(), StoreError>>; 2],
}

/// The settings of an ingest's PostgreSQL transaction (it shares the store's pool, whose
/// sessions have other ones): commits without waiting for the WAL flush — a crash may lose the
/// last fraction of a second of commits, never consistency; a file whose merge or 'done' mark
/// was lost is still 'loading' and is ingested again — and no statement or lock timeout, since
/// a large file's load or merge may rightly take longer than the store's five minutes.
async fn pg_ingest_session(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    sqlx::query(
        "SELECT set_config('synchronous_commit', 'off', true), \
                set_config('statement_timeout', '0', true), set_config('lock_timeout', '0', true)",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One COPY stream: `sql` on a connection of its own, committed every [`PG_COPY_TX_BYTES`].
async fn copy_stream(
    pool: PgPool,
    sql: String,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    let mut next = rx.recv().await;
    while let Some(first) = next.take() {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        pg_ingest_session(&mut tx).await?;
        let mut copy = (*tx).copy_in_raw(&sql).await?;
        let mut bytes = first.len();
        copy.send(first).await?;
        while bytes < PG_COPY_TX_BYTES {
            match rx.recv().await {
                Some(buf) => {
                    bytes += buf.len();
                    copy.send(buf).await?;
                }
                None => break,
            }
        }
        copy.finish().await?;
        tx.commit().await?;
        next = rx.recv().await;
    }
    Ok(())
}

/// Writes bronze blocks and rejects on a connection of its own (PostgreSQL), one transaction per
/// chunk: a few hundred KB of compressed blocks bound as arrays, no COPY text escaping.
async fn bronze_writer(
    pool: PgPool,
    file_id: i64,
    mut rx: tokio::sync::mpsc::Receiver<(Vec<super::bronze::Block>, Vec<Reject>)>,
) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    while let Some((blocks, rejects)) = rx.recv().await {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        pg_ingest_session(&mut tx).await?;
        insert_blocks_pg(&mut tx, file_id, blocks).await?;
        insert_rejects_pg(&mut tx, file_id, rejects).await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn insert_blocks_pg(
    conn: &mut sqlx::PgConnection,
    file_id: i64,
    blocks: Vec<super::bronze::Block>,
) -> Result<(), StoreError> {
    if blocks.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&super::bronze::Block) -> i64| blocks.iter().map(f).collect::<Vec<i64>>();
    let (first, last, lines, bytes) = (
        col(|b| b.first_line),
        col(|b| b.last_line),
        col(|b| b.lines),
        col(|b| b.raw_bytes),
    );
    let data: Vec<Vec<u8>> = blocks.into_iter().map(|b| b.data).collect();
    sqlx::query(
        "INSERT INTO raw_blocks (file_id, first_line, last_line, lines, raw_bytes, codec, data)
         SELECT $1, f, l, n, b, $6, d
         FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $7::BYTEA[]) AS u(f, l, n, b, d)",
    )
    .bind(file_id)
    .bind(first)
    .bind(last)
    .bind(lines)
    .bind(bytes)
    .bind(super::bronze::CODEC)
    .bind(data)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_rejects_pg(
    conn: &mut sqlx::PgConnection,
    file_id: i64,
    rejects: Vec<Reject>,
) -> Result<(), StoreError> {
    if rejects.is_empty() {
        return Ok(());
    }
    let mut lines = Vec::with_capacity(rejects.len());
    let mut kinds = Vec::with_capacity(rejects.len());
    let mut reasons = Vec::with_capacity(rejects.len());
    let mut raws = Vec::with_capacity(rejects.len());
    let mut bytes = Vec::with_capacity(rejects.len());
    for r in rejects {
        lines.push(r.line_no);
        kinds.push(r.kind.as_str());
        reasons.push(r.reason);
        raws.push(r.raw);
        bytes.push(r.raw_bytes);
    }
    sqlx::query(
        "INSERT INTO raw_rejects (file_id, line_no, kind, reason, raw, raw_bytes)
         SELECT $1, * FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BYTEA[])",
    )
    .bind(file_id)
    .bind(lines)
    .bind(kinds)
    .bind(reasons)
    .bind(raws)
    .bind(bytes)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Loader<'_> {
    /// Writes a chunk of bronze lines and their staged records.
    pub async fn write(&mut self, chunk: Chunk) -> Result<(), StoreError> {
        let st = match (self.db, &self.streams) {
            (IngestDb::Sqlite(p), _) => {
                let staging = scratch(self.db, self.file_id).staging;
                return write_chunk_lite(p, &staging, self.file_id, chunk).await;
            }
            (IngestDb::Pg(_), Some(st)) => st,
            (IngestDb::Pg(_), None) => {
                return Err(StoreError::Query(sqlx::Error::Protocol(
                    "a chunk written after the loader finished".into(),
                )));
            }
        };
        let s = copy_staged(&chunk.staged);
        drop(chunk.staged);
        // A closed channel means its task failed: `finish` reports why.
        if st.bronze.send((chunk.blocks, chunk.rejects)).await.is_err()
            || st.staging.send(s).await.is_err()
        {
            return self
                .finish()
                .await
                .and(Err(StoreError::Query(sqlx::Error::WorkerCrashed)));
        }
        Ok(())
    }

    /// Waits until everything written is committed.
    pub async fn finish(&mut self) -> Result<(), StoreError> {
        if let Some(PgStreams {
            bronze,
            staging,
            tasks,
        }) = self.streams.take()
        {
            drop((bronze, staging));
            let mut result = Ok(());
            for t in tasks {
                let r = t
                    .await
                    .unwrap_or(Err(StoreError::Query(sqlx::Error::WorkerCrashed)));
                result = result.and(r);
            }
            return result;
        }
        Ok(())
    }
}

/// Writes a chunk's bronze blocks, rejects and staged records (into `staging`) in one
/// transaction (SQLite; PostgreSQL streams them, see [`Loader`]).
async fn write_chunk_lite(
    p: &SqlitePool,
    staging: &str,
    file_id: i64,
    chunk: Chunk,
) -> Result<(), StoreError> {
    // Multi-row INSERTs (the statement of a full batch is prepared once and cached); the
    // strings are moved into the arguments, not copied.
    const ROWS: usize = 1000;
    let mut conn = scratch_conn(p, file_id).await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    for b in chunk.blocks {
        sqlx::query(
            "INSERT INTO raw_blocks (file_id, first_line, last_line, lines, raw_bytes, codec, data)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(file_id)
        .bind(b.first_line)
        .bind(b.last_line)
        .bind(b.lines)
        .bind(b.raw_bytes)
        .bind(super::bronze::CODEC)
        .bind(b.data)
        .execute(&mut *tx)
        .await?;
    }
    let mut rejects = chunk.rejects.into_iter().peekable();
    while rejects.peek().is_some() {
        let mut qb = sqlx::QueryBuilder::new(
            "INSERT INTO raw_rejects (file_id, line_no, kind, reason, raw, raw_bytes) ",
        );
        qb.push_values(rejects.by_ref().take(ROWS), |mut b, r| {
            b.push_bind(file_id)
                .push_bind(r.line_no)
                .push_bind(r.kind.as_str())
                .push_bind(r.reason)
                .push_bind(r.raw)
                .push_bind(r.raw_bytes);
        });
        qb.build().execute(&mut *tx).await?;
    }
    let mut staged = chunk.staged.into_iter().peekable();
    while staged.peek().is_some() {
        let mut qb = sqlx::QueryBuilder::new(format!(
            "INSERT INTO {staging} (line_no, record_key, row_hash, version_num, version_text, payload) "
        ));
        qb.push_values(staged.by_ref().take(ROWS), |mut b, s| {
            b.push_bind(s.line_no)
                .push_bind(s.c.key)
                .push_bind(s.c.row_hash)
                .push_bind(s.c.version_num)
                .push_bind(s.c.version_text)
                .push_bind(s.c.payload);
        });
        qb.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Whether a delivery's keys arrive in key order, watched while it loads: the share of lines
/// whose key sorts before a key of an earlier chunk (JSON key texts compare byte by byte, as
/// both stores' indexes order them).
#[derive(Debug, Default)]
pub struct KeyOrder {
    max: Option<String>,
    behind: u64,
    seen: u64,
}

impl KeyOrder {
    /// The keys of the next chunk, in file order.
    pub fn observe<'a>(&mut self, keys: impl Iterator<Item = &'a str>) {
        let mut chunk_max: Option<&str> = None;
        for k in keys {
            self.seen += 1;
            if self.max.as_deref().is_some_and(|m| k < m) {
                self.behind += 1;
            }
            if chunk_max.is_none_or(|m| k > m) {
                chunk_max = Some(k);
            }
        }
        if let Some(m) = chunk_max
            && self.max.as_deref().is_none_or(|cur| m > cur)
        {
            self.max = Some(m.to_string());
        }
    }

    /// At most 1 % of the lines behind an earlier chunk: an ordered dump with a few stragglers.
    pub fn in_order(&self) -> bool {
        self.behind * 100 <= self.seen
    }
}

/// What a merge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeCounts {
    /// Duplicates within the delivery, resolved by version then file order.
    pub duplicates: u64,
    pub inserted: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Older versions than the current one (out-of-order deliveries): kept in bronze only.
    pub stale: u64,
    /// Keys absent from a snapshot delivery, marked deleted.
    pub deleted: u64,
}

impl MergeCounts {
    /// The counts a merge's plan gives (rows per [`MergeAction`] code); the rest of the
    /// `staged` rows were duplicates within the delivery.
    fn planned(counts: Vec<(i64, i64)>, staged: u64) -> Result<MergeCounts, StoreError> {
        let mut c = MergeCounts::default();
        let mut winners = 0;
        for (action, n) in counts {
            let n = n as u64;
            winners += n;
            match MergeAction::from_code(action)
                .map_err(|e| StoreError::Query(sqlx::Error::Decode(Box::new(e))))?
            {
                MergeAction::New => c.inserted = n,
                MergeAction::Stale => c.stale = n,
                MergeAction::Unchanged => c.unchanged = n,
                MergeAction::Changed => c.changed = n,
            }
        }
        c.duplicates = staged.saturating_sub(winners);
        Ok(c)
    }
}

/// The statements of one merge, in the order they run (see [`IngestDb::merge`]).
struct MergeSql {
    /// The plan table, then its rows: each key's winner, classified.
    create_plan: String,
    fill_plan: String,
    /// PostgreSQL: statistics of the plan for the statements after it.
    analyze_plan: Option<String>,
    /// Rows of the plan per action.
    counts: String,
    /// Snapshot mode: index the plan, close the current versions absent from the delivery,
    /// and give them a deleted version.
    snapshot: [String; 3],
    /// Closes the current versions of changed keys.
    close: String,
    /// The new current versions of new and changed keys.
    insert: String,
}

/// A file's line counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCounts {
    /// Records and blank lines (not a CSV header).
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Blank lines: listed as skipped, not rejected.
    pub skipped: u64,
}

/// A delivered file as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: i64,
    pub uri: String,
    pub status: FileStatus,
    pub lines: i64,
    pub rejected: i64,
}

/// A row of `SELECT id, uri, status, lines, rejected FROM ingested_files`.
type FileRow = (i64, String, String, i64, i64);

impl TryFrom<FileRow> for FileRecord {
    type Error = sqlx::Error;
    fn try_from((id, uri, status, lines, rejected): FileRow) -> Result<Self, sqlx::Error> {
        Ok(FileRecord {
            id,
            uri,
            status: decode(&status)?,
            lines,
            rejected,
        })
    }
}

/// Staged candidates as COPY text, in the staging table's column order.
fn copy_staged(staged: &[Staged]) -> Vec<u8> {
    use std::fmt::Write;
    let mut buf = String::with_capacity(
        staged
            .iter()
            .map(|s| s.c.payload.len() + s.c.key.len() + 80)
            .sum(),
    );
    for s in staged {
        let _ = write!(buf, "{}\t", s.line_no);
        copy_escape(&s.c.key, &mut buf);
        buf.push('\t');
        buf.push_str(&s.c.row_hash);
        buf.push('\t');
        match s.c.version_num {
            // `{:?}` prints every f64 exactly (shortest round-trip form).
            Some(v) => {
                let _ = write!(buf, "{v:?}");
            }
            None => buf.push_str("\\N"),
        }
        buf.push('\t');
        match &s.c.version_text {
            Some(v) => copy_escape(v, &mut buf),
            None => buf.push_str("\\N"),
        }
        buf.push('\t');
        copy_escape(&s.c.payload, &mut buf);
        buf.push('\n');
    }
    buf.into_bytes()
}

impl IngestDb {
    /// The ingest's side of the store's database: this process's handle on it (opened and
    /// migrated once, see [`crate::db::Db`]); on SQLite its one ingest writer connection.
    pub async fn connect(url: &str) -> Result<IngestDb, StoreError> {
        IngestDb::of(&crate::db::Db::open(url).await?).await
    }

    pub async fn of(db: &crate::db::Db) -> Result<IngestDb, StoreError> {
        Ok(match db.pool() {
            crate::db::Pool::Postgres(p) => IngestDb::Pg(p.clone()),
            crate::db::Pool::Sqlite(_) => IngestDb::Sqlite(db.sqlite_ingest_writer().await?),
        })
    }

    /// Where statements run by default: the pool (SQLite: the ingest's writer).
    fn target(&self) -> crate::db::Target<'_> {
        match self {
            IngestDb::Sqlite(p) => crate::db::Target::SqlitePool(p),
            IngestDb::Pg(p) => crate::db::Target::PgPool(p),
        }
    }

    /// A transaction on the pool (PostgreSQL: with the ingest's session settings).
    async fn begin(&self) -> Result<crate::db::Tx<'static>, StoreError> {
        Ok(match self {
            IngestDb::Sqlite(p) => crate::db::Tx::Sqlite(p.begin().await?),
            IngestDb::Pg(p) => {
                let mut tx = p.begin().await?;
                pg_ingest_session(&mut tx).await?;
                crate::db::Tx::Postgres(tx)
            }
        })
    }

    /// A file of `dataset` already ingested with this checksum, whatever its name.
    pub async fn find_done(
        &self,
        dataset: &str,
        checksum: &str,
    ) -> Result<Option<FileRecord>, StoreError> {
        let sql = "SELECT id, uri, status, lines, rejected FROM ingested_files WHERE dataset = ? AND checksum = ? AND status = ? LIMIT 1";
        let rows = crate::db::sql(sql)
            .bind(dataset)
            .bind(checksum)
            .bind(FileStatus::Done.as_str())
            .fetch_all::<FileRow>(self.target())
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .map(FileRecord::try_from)
            .transpose()?)
    }

    async fn create_staging(&self, file_id: i64) -> Result<(), StoreError> {
        let t = scratch(self, file_id).staging;
        // The line number is the row id on SQLite (rows arrive in line order: appends only).
        // The payload comes last so the merge reads keys, hashes and versions without it.
        match self {
            IngestDb::Sqlite(p) => {
                let mut conn = scratch_conn(p, file_id).await?;
                crate::db::sql(format!(
                        "CREATE TABLE {t} (line_no INTEGER PRIMARY KEY, record_key TEXT NOT NULL, \
                         row_hash TEXT NOT NULL, version_num DOUBLE PRECISION, version_text TEXT, payload TEXT NOT NULL)"
                    )).execute(&mut *conn).await?;
                // Maintained while loading (the writer waits for the parser anyway): the merge
                // plan then reads the staged keys in order instead of sorting them, and the
                // index covers every column the plan reads.
                let s = scratch_schema(file_id);
                crate::db::sql(format!(
                        "CREATE INDEX {s}.staging_key ON staging (record_key, version_num, version_text, line_no, row_hash)"
                    )).execute(&mut *conn).await?;
            }
            IngestDb::Pg(p) => {
                // Unlogged: after a crash the file is still 'loading' and is ingested again.
                crate::db::sql(format!(
                        "CREATE UNLOGGED TABLE {t} (line_no BIGINT NOT NULL, record_key TEXT NOT NULL, \
                         row_hash TEXT NOT NULL, version_num DOUBLE PRECISION, version_text TEXT, payload TEXT NOT NULL)"
                    )).execute(p).await?;
            }
        }
        Ok(())
    }

    /// Discards a file's scratch tables (after its merge, or when the file failed).
    pub async fn drop_staging(&self, file_id: i64) -> Result<(), StoreError> {
        match self {
            IngestDb::Sqlite(p) => {
                let mut conn = p.acquire().await?;
                // Not attached (any more) on this connection: only the file is left to delete.
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DETACH DATABASE {}",
                    scratch_schema(file_id)
                )))
                .execute(&mut *conn)
                .await;
                match std::fs::remove_file(scratch_path(p, file_id)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        tracing::warn!(file_id, error = %e, "cannot delete the ingest scratch file");
                    }
                    _ => {}
                }
            }
            IngestDb::Pg(p) => {
                let s = scratch(self, file_id);
                crate::db::sql(format!("DROP TABLE IF EXISTS {}, {}", s.plan, s.staging))
                    .execute(p)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn begin_file(
        &self,
        dataset: &str,
        uri: &str,
        size: u64,
        checksum: &str,
    ) -> Result<i64, StoreError> {
        let id = self.insert_file_row(dataset, uri, size, checksum).await?;
        self.create_staging(id).await?;
        Ok(id)
    }

    async fn insert_file_row(
        &self,
        dataset: &str,
        uri: &str,
        size: u64,
        checksum: &str,
    ) -> Result<i64, StoreError> {
        let sql = "INSERT INTO ingested_files (dataset, uri, size, checksum, status, started_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id";
        let now = crate::store::now_text();
        Ok(crate::db::sql(sql)
            .bind(dataset)
            .bind(uri)
            .bind(size as i64)
            .bind(checksum)
            .bind(FileStatus::Loading.as_str())
            .bind(&now)
            .scalar(self.target())
            .await?)
    }

    /// A loader for the chunks of `file_id` (see [`Loader`]).
    pub fn loader(&self, file_id: i64) -> Loader<'_> {
        let streams = match self {
            IngestDb::Sqlite(_) => None,
            IngestDb::Pg(p) => {
                let (bronze, brx) = tokio::sync::mpsc::channel(2);
                let (staging, srx) = tokio::sync::mpsc::channel(2);
                let tasks = [
                    tokio::spawn(bronze_writer(p.clone(), file_id, brx)),
                    tokio::spawn(copy_stream(
                        p.clone(),
                        format!(
                            "COPY {} (line_no, record_key, row_hash, version_num, version_text, payload) \
                             FROM STDIN WITH (FORMAT text)",
                            scratch(self, file_id).staging
                        ),
                        srx,
                    )),
                ];
                Some(PgStreams {
                    bronze,
                    staging,
                    tasks,
                })
            }
        };
        Loader {
            db: self,
            file_id,
            streams,
        }
    }

    /// SCD2 merge of one file's `staged` records into `records`, in one transaction.
    ///
    /// One pass plans it: the winner of each key in the delivery (highest version, then the
    /// last line: the last row of the key in (version_num, version_text, line_no) order, NULLs
    /// first, the reverse of "DESC NULLS LAST") is joined once with the key's current version
    /// and classified ([`MergeAction`]) as new, stale (older than the current version; kept in
    /// bronze only), unchanged (same row hash, not deleted: writes nothing) or changed. The
    /// plan is a narrow table; then:
    /// 1. snapshot mode: current keys absent from the delivery get a deleted version;
    /// 2. the current versions of changed keys are closed (by row id);
    /// 3. new and changed keys get a new current version, their payload read from staging.
    ///
    /// `keys_in_order`: whether the delivery's keys arrived (nearly) in key order
    /// ([`KeyOrder`]); it chooses the order of the inserts, not what is inserted.
    pub async fn merge(
        &self,
        dataset: &str,
        file_id: i64,
        snapshot: bool,
        staged: u64,
        keys_in_order: bool,
    ) -> Result<MergeCounts, StoreError> {
        tracing::debug!(keys_in_order, "merge");
        let now = crate::store::now_text();
        let Scratch {
            staging: t,
            plan: pt,
            plan_index,
        } = scratch(self, file_id);
        let sql = self.merge_sql(&t, &pt, plan_index, keys_in_order);
        let timer = std::time::Instant::now();
        let lap = |step: &str| {
            tracing::debug!(step, ms = timer.elapsed().as_millis() as u64, "merge");
        };
        // SQLite: the connection holding the file's scratch database; PostgreSQL: the pool's.
        let mut scratch = match self {
            IngestDb::Sqlite(p) => Some(scratch_conn(p, file_id).await?),
            IngestDb::Pg(_) => None,
        };
        let mut tx = match (self, scratch.as_mut()) {
            (IngestDb::Sqlite(_), Some(conn)) => {
                crate::db::Tx::Sqlite(sqlx::Connection::begin(&mut **conn).await?)
            }
            (IngestDb::Pg(p), _) => {
                let mut tx = p.begin().await?;
                pg_ingest_session(&mut tx).await?;
                // Fresh statistics for the staged rows, or the planner guesses an empty table;
                // room for the sort and the hash join in memory.
                crate::db::sql("SET LOCAL work_mem = '128MB'")
                    .execute(&mut *tx)
                    .await?;
                crate::db::sql(format!("ANALYZE {t}"))
                    .execute(&mut *tx)
                    .await?;
                crate::db::Tx::Postgres(tx)
            }
            (IngestDb::Sqlite(_), None) => {
                unreachable!("a SQLite merge has its scratch connection")
            }
        };
        crate::db::sql(&sql.create_plan)
            .execute(tx.target())
            .await?;
        crate::db::sql(&sql.fill_plan)
            .bind(dataset)
            .execute(tx.target())
            .await?;
        if let Some(a) = &sql.analyze_plan {
            crate::db::sql(a).execute(tx.target()).await?;
        }
        lap("plan");
        let counts: Vec<(i64, i64)> = crate::db::sql(&sql.counts).fetch_all(tx.target()).await?;
        let mut c = MergeCounts::planned(counts, staged)?;
        if snapshot {
            crate::db::sql(&sql.snapshot[0])
                .execute(tx.target())
                .await?;
            c.deleted = crate::db::sql(&sql.snapshot[1])
                .bind(&now)
                .bind(dataset)
                .execute(tx.target())
                .await?;
            crate::db::sql(&sql.snapshot[2])
                .bind(&now)
                .bind(file_id)
                .bind(dataset)
                .bind(&now)
                .execute(tx.target())
                .await?;
            lap("snapshot");
        }
        let closed = crate::db::sql(&sql.close)
            .bind(&now)
            .execute(tx.target())
            .await?;
        debug_assert_eq!(closed, c.changed);
        lap("close");
        crate::db::sql(&sql.insert)
            .bind(dataset)
            .bind(&now)
            .bind(file_id)
            .execute(tx.target())
            .await?;
        lap("insert");
        tx.commit().await?;
        // Back to the pool before the scratch is dropped (SQLite's writer is one connection).
        drop(scratch);
        lap("commit");
        self.drop_staging(file_id).await?;
        lap("drop");
        Ok(c)
    }

    /// The statements of one file's merge (see [`IngestDb::merge`]) on this backend: `t` the
    /// file's staging table, `pt` its plan table.
    fn merge_sql(&self, t: &str, pt: &str, plan_index: String, keys_in_order: bool) -> MergeSql {
        // The order the new versions are inserted in. Keys that arrive in key order: line
        // order, so the insert reads staging sequentially. Otherwise, on SQLite, key order, so
        // the two key indexes of `records` are filled at their end instead of at random pages
        // (in the `sqlite3` shell, 1M versions in random key order: insert 20.8 s in line
        // order, 9.6 s in key order). The plan's row id (`seq`) is that order; the insert
        // follows it. PostgreSQL inserts in line order (sorting the payloads by key spilled).
        let (unlogged, seq, int, insert_order) = match self {
            IngestDb::Pg(_) => ("UNLOGGED", "", "BIGINT", ""),
            IngestDb::Sqlite(_) => ("", "seq INTEGER PRIMARY KEY, ", "INTEGER", "ORDER BY p.seq"),
        };
        let plan_order = match self {
            IngestDb::Sqlite(_) if !keys_in_order => "w.record_key",
            _ => "w.line_no",
        };
        let winners = self.merge_winners(t);
        let [new, stale, unchanged, changed] = [
            MergeAction::New,
            MergeAction::Stale,
            MergeAction::Unchanged,
            MergeAction::Changed,
        ]
        .map(MergeAction::code);
        let create_plan = format!(
            "CREATE {unlogged} TABLE {pt} ({seq}line_no {int} NOT NULL, cur_id {int}, action INTEGER NOT NULL)"
        );
        let fill_plan = format!(
                "INSERT INTO {pt} (line_no, cur_id, action)
                 SELECT w.line_no, r.id,
                    CASE WHEN r.id IS NULL THEN {new}
                         WHEN r.version_num > w.version_num OR r.version_text > w.version_text THEN {stale}
                         WHEN r.deleted = 0 AND r.row_hash = w.row_hash THEN {unchanged}
                         ELSE {changed} END
                 FROM {winners}
                 ORDER BY {plan_order}"
        );
        // PostgreSQL plans the next statements better with the plan's statistics.
        let analyze_plan = matches!(self, IngestDb::Pg(_)).then(|| format!("ANALYZE {pt}"));
        let counts = format!("SELECT CAST(action AS BIGINT), COUNT(*) FROM {pt} GROUP BY action");
        let snapshot = [
            plan_index,
            format!(
                "UPDATE records SET valid_to = ? WHERE dataset = ? AND valid_to IS NULL AND deleted = 0
                 AND NOT EXISTS (SELECT 1 FROM {pt} p WHERE p.cur_id = records.id)"
            ),
            "INSERT INTO records (dataset, record_key, payload, row_hash, version_num, version_text, valid_from, valid_to, deleted, file_id)
             SELECT dataset, record_key, payload, row_hash, version_num, version_text, ?, NULL, 1, ?
             FROM records r WHERE r.dataset = ? AND r.valid_to = ? AND r.deleted = 0
             AND NOT EXISTS (SELECT 1 FROM records o WHERE o.dataset = r.dataset AND o.record_key = r.record_key AND o.valid_to IS NULL)".to_string(),
        ];
        // By row id. On PostgreSQL the ids become one array (an init plan) so the primary key
        // index is used: as a semi-join the planner preferred scanning all of `records`.
        let close = match self {
            IngestDb::Sqlite(_) => format!(
                "UPDATE records SET valid_to = ? WHERE id IN (SELECT cur_id FROM {pt} WHERE action = {changed})"
            ),
            IngestDb::Pg(_) => format!(
                "UPDATE records SET valid_to = ? WHERE id = ANY(ARRAY(SELECT cur_id FROM {pt} WHERE action = {changed}))"
            ),
        };
        let insert = format!(
            "INSERT INTO records (dataset, record_key, payload, row_hash, version_num, version_text, valid_from, valid_to, deleted, file_id, line_no)
             SELECT ?, s.record_key, s.payload, s.row_hash, s.version_num, s.version_text, ?, NULL, 0, ?, s.line_no
             FROM {pt} p JOIN {t} s ON s.line_no = p.line_no WHERE p.action IN ({new}, {changed}) {insert_order}"
        );
        MergeSql {
            create_plan,
            fill_plan,
            analyze_plan,
            counts,
            snapshot,
            close,
            insert,
        }
    }

    /// The winner of each key in the staging table `t`, joined with the key's current version:
    /// a `FROM` clause with `w` (the winning staged row) and `r` (the current version, if any),
    /// binding the dataset.
    fn merge_winners(&self, t: &str) -> String {
        // The winners: the last row of each key in (version_num, version_text, line_no) order,
        // NULLs first. PostgreSQL finds them in one sorted pass (LEAD). SQLite's window
        // functions copy every row through a temporary table (2.7 of the 4.5 CPU-seconds of
        // a 1.1M-line plan), so there each row asks the staging index for its key's last row
        // instead: one index seek, ORDER BY … DESC (NULLs last, the same order reversed).
        match self {
            IngestDb::Pg(_) => format!(
                "(SELECT line_no, record_key, row_hash, version_num, version_text,
                    LEAD(record_key) OVER (ORDER BY record_key, version_num NULLS FIRST,
                                           version_text NULLS FIRST, line_no) AS next_key
                  FROM {t}) w
                 LEFT JOIN records r ON r.dataset = ? AND r.record_key = w.record_key AND r.valid_to IS NULL
                 WHERE w.next_key IS NULL OR w.next_key <> w.record_key"
            ),
            IngestDb::Sqlite(_) => format!(
                "{t} w INDEXED BY staging_key
                 LEFT JOIN records r ON r.dataset = ? AND r.record_key = w.record_key AND r.valid_to IS NULL
                 WHERE w.line_no = (SELECT s2.line_no FROM {t} s2 INDEXED BY staging_key
                                    WHERE s2.record_key = w.record_key
                                    ORDER BY s2.version_num DESC, s2.version_text DESC, s2.line_no DESC
                                    LIMIT 1)"
            ),
        }
    }

    /// Removes what a file that did not finish wrote: its scratch tables, and its bronze blocks
    /// and rejects, so a file ingested again (it is, whole, as a new file) is never listed twice.
    pub async fn discard_partial(&self, file_id: i64) -> Result<(), StoreError> {
        self.drop_staging(file_id).await?;
        for sql in [
            "DELETE FROM raw_rejects WHERE file_id = ?",
            "DELETE FROM raw_blocks WHERE file_id = ?",
        ] {
            crate::db::sql(sql)
                .bind(file_id)
                .execute(self.target())
                .await?;
        }
        Ok(())
    }

    /// Marks the dataset's files still `loading` as failed and removes their scratch tables:
    /// called under the dataset's ingest lock, where no other ingest can be loading them.
    /// Evaluates to their ids.
    pub async fn recover_interrupted(&self, dataset: &str) -> Result<Vec<i64>, StoreError> {
        let sql = "SELECT id FROM ingested_files WHERE dataset = ? AND status = ? ORDER BY id";
        let ids: Vec<(i64,)> = crate::db::sql(sql)
            .bind(dataset)
            .bind(FileStatus::Loading.as_str())
            .fetch_all::<(i64,)>(self.target())
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            self.discard_partial(id).await?;
            let reason =
                "interrupted while loading (the process stopped); ingested again as a new file";
            let counts = FileCounts::default();
            self.finish_file(
                id,
                FileStatus::Failed,
                &counts,
                &MergeCounts::default(),
                Some(reason),
            )
            .await?;
            out.push(id);
        }
        Ok(out)
    }

    pub async fn finish_file(
        &self,
        file_id: i64,
        status: FileStatus,
        counts: &FileCounts,
        m: &MergeCounts,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = crate::store::now_text();
        let sql = "UPDATE ingested_files SET status = ?, lines = ?, accepted = ?, rejected = ?, skipped = ?, inserted = ?, changed = ?,
                   unchanged = ?, stale = ?, deleted = ?, finished_at = ?, error = ? WHERE id = ?";
        let n = |v: u64| v as i64;
        let (lines, accepted, rejected, skipped) = (
            counts.lines,
            counts.accepted,
            counts.rejected,
            counts.skipped,
        );
        let error = error.map(storable);
        let status = status.as_str();
        crate::db::sql(sql)
            .bind(status)
            .bind(n(lines))
            .bind(n(accepted))
            .bind(n(rejected))
            .bind(n(skipped))
            .bind(n(m.inserted))
            .bind(n(m.changed))
            .bind(n(m.unchanged))
            .bind(n(m.stale))
            .bind(n(m.deleted))
            .bind(&now)
            .bind(error)
            .bind(file_id)
            .execute(self.target())
            .await?;
        Ok(())
    }

    /// Rejected and skipped lines of a dataset, newest files first, in line order.
    pub async fn rejects(&self, dataset: &str, limit: i64) -> Result<Vec<RejectRow>, StoreError> {
        // raw_records holds the bronze of files ingested before the block format.
        let sql = "SELECT f.uri, r.line_no, r.kind, r.reason, r.raw, r.raw_bytes FROM (
                       SELECT file_id, line_no, kind, reason, raw, raw_bytes FROM raw_rejects
                       UNION ALL
                       SELECT file_id, line_no, 'rejected', reason, raw, NULL FROM raw_records WHERE status = 'rejected'
                   ) r JOIN ingested_files f ON f.id = r.file_id
                   WHERE f.dataset = ? ORDER BY f.id DESC, r.line_no LIMIT ?";
        type Row = (String, i64, String, Option<String>, String, Option<Vec<u8>>);
        let rows = crate::db::sql(sql)
            .bind(dataset)
            .bind(limit)
            .fetch_all::<Row>(self.target())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(uri, line_no, kind, reason, raw, bytes)| RejectRow {
                uri,
                line_no,
                kind,
                reason: reason.unwrap_or_default(),
                raw: bytes.unwrap_or_else(|| raw.into_bytes()),
            })
            .collect())
    }

    /// The recorded file `id` of `dataset`, if there is one.
    pub async fn file(&self, dataset: &str, id: i64) -> Result<Option<FileRecord>, StoreError> {
        let sql = "SELECT id, uri, status, lines, rejected FROM ingested_files WHERE dataset = ? AND id = ?";
        let rows = crate::db::sql(sql)
            .bind(dataset)
            .bind(id)
            .fetch_all::<FileRow>(self.target())
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .map(FileRecord::try_from)
            .transpose()?)
    }

    /// The files recorded for a dataset, newest first.
    pub async fn files(&self, dataset: &str, limit: i64) -> Result<Vec<FileRecord>, StoreError> {
        let sql = "SELECT id, uri, status, lines, rejected FROM ingested_files WHERE dataset = ?
                   ORDER BY id DESC LIMIT ?";
        let rows = crate::db::sql(sql)
            .bind(dataset)
            .bind(limit)
            .fetch_all::<FileRow>(self.target())
            .await?;
        Ok(rows
            .into_iter()
            .map(FileRecord::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// Every item of an ingested file as delivered, in order, handed to `each` (line number,
    /// bytes with their line end: the items back to back are the delivered bytes), a page of
    /// blocks at a time: memory stays flat whatever the file's size. Items of blocks written
    /// before bronze kept exact bytes ([`super::bronze::LEGACY_CODEC`]), and of files ingested
    /// before the block format (read from `raw_records`), come with a `\n` added.
    pub async fn bronze_lines(
        &self,
        file_id: i64,
        mut each: impl FnMut(i64, &[u8]) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        const PAGE: i64 = 16;
        let io = |e: std::io::Error| StoreError::Query(sqlx::Error::Io(e));
        let mut after = i64::MIN;
        let mut n = 0u64;
        let mut line_buf = Vec::new();
        let mut legacy =
            |line: i64, raw: &[u8], each: &mut dyn FnMut(i64, &[u8]) -> std::io::Result<()>| {
                line_buf.clear();
                line_buf.extend_from_slice(raw);
                line_buf.push(b'\n');
                each(line, &line_buf)
            };
        loop {
            let sql = "SELECT first_line, codec, data FROM raw_blocks WHERE file_id = ? AND first_line > ?
                       ORDER BY first_line LIMIT ?";
            let blocks = crate::db::sql(sql)
                .bind(file_id)
                .bind(after)
                .bind(PAGE)
                .fetch_all::<(i64, String, Vec<u8>)>(self.target())
                .await?;
            for (first, codec, data) in &blocks {
                let block = super::bronze::decode(codec, *first, data).map_err(|e| {
                    StoreError::Query(sqlx::Error::Decode(
                        format!(
                            "bronze block {file_id}/{first}: {}",
                            crate::error::Chain(&e)
                        )
                        .into(),
                    ))
                })?;
                for (line, raw) in block.items() {
                    if block.legacy {
                        legacy(line, raw, &mut each).map_err(io)?;
                    } else {
                        each(line, raw).map_err(io)?;
                    }
                    n += 1;
                }
                after = *first;
            }
            if (blocks.len() as i64) < PAGE {
                break;
            }
        }
        if n > 0 {
            return Ok(n);
        }
        // Before the block format: one row per line.
        loop {
            let sql = "SELECT line_no, raw FROM raw_records WHERE file_id = ? AND line_no > ?
                       ORDER BY line_no LIMIT ?";
            let rows = crate::db::sql(sql)
                .bind(file_id)
                .bind(after)
                .bind(10_000i64)
                .fetch_all::<(i64, String)>(self.target())
                .await?;
            for (line, raw) in &rows {
                legacy(*line, raw.as_bytes(), &mut each).map_err(io)?;
                n += 1;
                after = *line;
            }
            if rows.len() < 10_000 {
                return Ok(n);
            }
        }
    }

    /// The records of a dataset as they were at `as_of` (RFC 3339): (key, payload), by key.
    pub async fn as_of(
        &self,
        dataset: &str,
        as_of: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "SELECT record_key, payload FROM records WHERE dataset = ? AND valid_from <= ?
                   AND (valid_to IS NULL OR valid_to > ?) AND deleted = 0 ORDER BY record_key";
        Ok(crate::db::sql(sql)
            .bind(dataset)
            .bind(as_of)
            .bind(as_of)
            .fetch_all::<(String, String)>(self.target())
            .await?)
    }

    /// Replaces the dataset's rows of `product_summary` in one transaction.
    pub async fn replace_product_summary(
        &self,
        dataset: &str,
        rows: &[super::gold::ProductSummary],
    ) -> Result<(), StoreError> {
        const INSERT: &str = "INSERT INTO product_summary (dataset, asin, review_count, avg_rating, ratings_1, ratings_2, ratings_3,
            ratings_4, ratings_5, helpful_votes, total_votes, helpful_ratio, recent_reviews, recent_avg_rating, earlier_avg_rating,
            rating_trend, first_review, last_review, most_helpful_excerpt, most_recent_excerpt)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let mut tx = self.begin().await?;
        crate::db::sql("DELETE FROM product_summary WHERE dataset = ?")
            .bind(dataset)
            .execute(tx.target())
            .await?;
        for r in rows {
            crate::db::sql(INSERT)
                .bind(dataset)
                .bind(&r.asin)
                .bind(r.review_count)
                .bind(r.avg_rating)
                .bind(r.ratings[0])
                .bind(r.ratings[1])
                .bind(r.ratings[2])
                .bind(r.ratings[3])
                .bind(r.ratings[4])
                .bind(r.helpful_votes)
                .bind(r.total_votes)
                .bind(r.helpful_ratio)
                .bind(r.recent_reviews)
                .bind(r.recent_avg_rating)
                .bind(r.earlier_avg_rating)
                .bind(r.rating_trend)
                .bind(&r.first_review)
                .bind(&r.last_review)
                .bind(&r.most_helpful_excerpt)
                .bind(&r.most_recent_excerpt)
                .execute(tx.target())
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the dataset's rows of `product_catalog` in one transaction.
    pub async fn replace_product_catalog(
        &self,
        dataset: &str,
        rows: &[super::gold::CatalogEntry],
    ) -> Result<(), StoreError> {
        const INSERT: &str = "INSERT INTO product_catalog (dataset, asin, title, brand, category) VALUES (?, ?, ?, ?, ?)";
        let mut tx = self.begin().await?;
        crate::db::sql("DELETE FROM product_catalog WHERE dataset = ?")
            .bind(dataset)
            .execute(tx.target())
            .await?;
        for r in rows {
            crate::db::sql(INSERT)
                .bind(dataset)
                .bind(&r.asin)
                .bind(&r.title)
                .bind(&r.brand)
                .bind(&r.category)
                .execute(tx.target())
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every version of one record: (valid_from, valid_to, deleted, payload).
    pub async fn versions(
        &self,
        dataset: &str,
        key: &str,
    ) -> Result<Vec<(String, Option<String>, bool, String)>, StoreError> {
        let sql = "SELECT valid_from, valid_to, deleted, payload FROM records WHERE dataset = ? AND record_key = ? ORDER BY id";
        let rows = crate::db::sql(sql)
            .bind(dataset)
            .bind(key)
            .fetch_all::<(String, Option<String>, i64, String)>(self.target())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(from, to, deleted, payload)| (from, to, deleted != 0, payload))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_tolerates_a_few_stragglers_not_a_shuffle() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("k{i:05}")).collect();
        let chunks = |keys: &[String]| {
            let mut order = KeyOrder::default();
            for c in keys.chunks(1000) {
                order.observe(c.iter().map(String::as_str));
            }
            order
        };
        assert!(chunks(&keys).in_order());
        // Disorder inside a chunk does not count: only keys behind an earlier chunk.
        let mut local = keys.clone();
        for c in local.chunks_mut(1000) {
            c.reverse();
        }
        assert!(chunks(&local).in_order());
        let mut stragglers = keys.clone();
        for i in (1000..10_000).step_by(1000) {
            stragglers[i] = "k00000".into(); // 9 of 10,000 behind
        }
        assert!(chunks(&stragglers).in_order());
        let shuffled: Vec<String> = (0..10_000)
            .map(|i| keys[i * 7919 % 10_000].clone())
            .collect();
        assert!(!chunks(&shuffled).in_order());
    }

    #[tokio::test]
    async fn the_sqlite_scratch_file_is_gone_after_the_merge() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let db = IngestDb::connect(&url).await.unwrap();
        let id = db.begin_file("d", "file:///x", 1, "sum").await.unwrap();
        let IngestDb::Sqlite(p) = &db else {
            unreachable!()
        };
        let scratch = scratch_path(p, id);
        assert_eq!(scratch, dir.path().join(format!("s.db-ingest-{id}")));
        assert!(scratch.exists());
        let staged = |line_no: i64, key: &str, hash: &str| Staged {
            line_no,
            c: super::super::parse::Candidate {
                key: key.into(),
                payload: format!("{{\"k\":\"{key}\",\"h\":\"{hash}\"}}"),
                row_hash: hash.into(),
                version_num: Some(1.0),
                version_text: None,
            },
        };
        let mut loader = db.loader(id);
        let raws = ["{\"k\":1}\n", "{\"k\":2}\n"];
        loader
            .write(Chunk {
                lines: 2,
                skipped: 0,
                blocks: vec![super::super::bronze::encode(
                    raws.iter()
                        .enumerate()
                        .map(|(i, r)| (i as i64 + 1, r.as_bytes())),
                )],
                rejects: vec![],
                staged: vec![staged(1, "[\"a\"]", "h1"), staged(2, "[\"a\"]", "h2")],
            })
            .await
            .unwrap();
        loader.finish().await.unwrap();
        let mut conn = scratch_conn(p, id).await.unwrap();
        let scratch_page: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "PRAGMA {}.page_size",
            scratch_schema(id)
        )))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(
            scratch_page, 65536,
            "the scratch file has the largest pages"
        );
        drop(conn);
        let m = db.merge("d", id, false, 2, true).await.unwrap();
        assert_eq!((m.inserted, m.duplicates), (1, 1), "{m:?}");
        assert!(!scratch.exists(), "deleted with its data");
        let mut bronze = Vec::new();
        db.bronze_lines(id, |line, raw| {
            bronze.push(format!("{line}:{}", String::from_utf8_lossy(raw)));
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(bronze, ["1:{\"k\":1}\n", "2:{\"k\":2}\n"]);
        let now = db.as_of("d", "9999").await.unwrap();
        assert_eq!(now.len(), 1);
        assert!(
            now[0].1.contains("h2"),
            "equal versions: the last line wins"
        );
    }
}
