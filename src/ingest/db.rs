//! Ingestion's tables on either backend. The statements are written once with `?` placeholders
//! (rewritten to `$n` for PostgreSQL); bulk writes use multi-row INSERTs on SQLite and array
//! parameters (`UNNEST`) on PostgreSQL. The SCD2 merge is set-based SQL in one transaction.

use super::parse::Candidate;
use crate::store::StoreError;
use sqlx::{PgPool, SqlitePool};

pub enum IngestDb {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// The staging table of one file: created when the file starts, indexed before its merge,
/// dropped after it (dropping is far cheaper than deleting its rows).
fn staging_table(file_id: i64) -> String {
    format!("ingest_staging_{file_id}")
}

/// `?` → `$1, $2, …` (the statements here contain no `?` inside literals).
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs one statement on SQLite; evaluates to the rows affected.
macro_rules! q_lite {
    ($conn:expr, $sql:expr $(, $b:expr)* $(,)?) => {
        sqlx::query(sqlx::AssertSqlSafe(String::from($sql)))$(.bind($b))*.execute($conn).await?.rows_affected()
    };
}

/// The same statement on PostgreSQL (placeholders rewritten).
macro_rules! q_pg {
    ($conn:expr, $sql:expr $(, $b:expr)* $(,)?) => {
        sqlx::query(sqlx::AssertSqlSafe(pg_sql(&String::from($sql))))$(.bind($b))*.execute($conn).await?.rows_affected()
    };
}

/// Fetches all rows of a query as `$t` (a tuple) on whichever backend; each arm is checked
/// against its own pool type.
macro_rules! fetch_all {
    ($db:expr, $t:ty, $sql:expr $(, $b:expr)* $(,)?) => {
        match $db {
            IngestDb::Sqlite(p) => sqlx::query_as::<_, $t>(sqlx::AssertSqlSafe(String::from($sql)))$(.bind($b))*.fetch_all(p).await?,
            IngestDb::Pg(p) => sqlx::query_as::<_, $t>(sqlx::AssertSqlSafe(pg_sql($sql)))$(.bind($b))*.fetch_all(p).await?,
        }
    };
}

/// One bronze line.
pub struct RawRow {
    pub line_no: i64,
    pub raw: String,
    pub reason: Option<String>,
}

/// One accepted line, staged for the merge.
pub struct Staged {
    pub line_no: i64,
    pub c: Candidate,
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

/// A delivered file as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: i64,
    pub uri: String,
    pub status: String,
    pub lines: i64,
    pub rejected: i64,
}

impl IngestDb {
    /// Opens the store's database (migrated by `store::open`).
    pub async fn connect(url: &str) -> Result<IngestDb, StoreError> {
        let _ = crate::store::open(url).await?;
        let err = |source| StoreError::Open {
            url: crate::config::redact_url(url),
            source,
        };
        if url.starts_with("sqlite://") {
            use std::str::FromStr;
            let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .map_err(err)?
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(std::time::Duration::from_secs(30));
            Ok(IngestDb::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts)
                    .await
                    .map_err(err)?,
            ))
        } else {
            Ok(IngestDb::Pg(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(url)
                    .await
                    .map_err(err)?,
            ))
        }
    }

    /// A file of `dataset` already ingested with this checksum, whatever its name.
    pub async fn find_done(
        &self,
        dataset: &str,
        checksum: &str,
    ) -> Result<Option<FileRecord>, StoreError> {
        let sql = "SELECT id, uri, status, lines, rejected FROM ingested_files WHERE dataset = ? AND checksum = ? AND status = 'done' LIMIT 1";
        let rows = fetch_all!(
            self,
            (i64, String, String, i64, i64),
            sql,
            dataset,
            checksum
        );
        Ok(rows
            .into_iter()
            .next()
            .map(|(id, uri, status, lines, rejected)| FileRecord {
                id,
                uri,
                status,
                lines,
                rejected,
            }))
    }

    async fn create_staging(&self, file_id: i64) -> Result<(), StoreError> {
        let t = staging_table(file_id);
        match self {
            IngestDb::Sqlite(p) => {
                q_lite!(
                    p,
                    &format!(
                        "CREATE TABLE {t} (file_id INTEGER NOT NULL, line_no INTEGER NOT NULL, \
                    record_key TEXT NOT NULL, payload TEXT NOT NULL, row_hash TEXT NOT NULL, version_num DOUBLE PRECISION, version_text TEXT)"
                    )
                );
            }
            IngestDb::Pg(p) => {
                // Unlogged: after a crash the file is still 'loading' and is ingested again.
                q_pg!(
                    p,
                    &format!(
                        "CREATE UNLOGGED TABLE {t} (file_id BIGINT NOT NULL, line_no BIGINT NOT NULL, \
                    record_key TEXT NOT NULL, payload TEXT NOT NULL, row_hash TEXT NOT NULL, version_num DOUBLE PRECISION, version_text TEXT)"
                    )
                );
            }
        }
        Ok(())
    }

    /// Drops a file's staging table (after its merge, or when the file failed).
    pub async fn drop_staging(&self, file_id: i64) -> Result<(), StoreError> {
        let sql = format!("DROP TABLE IF EXISTS {}", staging_table(file_id));
        match self {
            IngestDb::Sqlite(p) => q_lite!(p, &sql),
            IngestDb::Pg(p) => q_pg!(p, &sql),
        };
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
        let sql = "INSERT INTO ingested_files (dataset, uri, size, checksum, status, started_at) VALUES (?, ?, ?, ?, 'loading', ?) RETURNING id";
        let now = crate::store::now_text();
        Ok(match self {
            IngestDb::Sqlite(p) => {
                sqlx::query_scalar(sql)
                    .bind(dataset)
                    .bind(uri)
                    .bind(size as i64)
                    .bind(checksum)
                    .bind(&now)
                    .fetch_one(p)
                    .await?
            }
            IngestDb::Pg(p) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(pg_sql(sql)))
                    .bind(dataset)
                    .bind(uri)
                    .bind(size as i64)
                    .bind(checksum)
                    .bind(&now)
                    .fetch_one(p)
                    .await?
            }
        })
    }

    /// Writes a chunk of bronze lines and staged records in one transaction.
    pub async fn write_chunk(
        &self,
        file_id: i64,
        raws: &[RawRow],
        staged: &[Staged],
    ) -> Result<(), StoreError> {
        match self {
            IngestDb::Sqlite(p) => {
                let mut tx = p.begin().await?;
                for chunk in raws.chunks(2000) {
                    let mut qb = sqlx::QueryBuilder::new(
                        "INSERT INTO raw_records (file_id, line_no, raw, status, reason) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(file_id)
                            .push_bind(r.line_no)
                            .push_bind(&r.raw)
                            .push_bind(if r.reason.is_some() { "rejected" } else { "ok" })
                            .push_bind(&r.reason);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                for chunk in staged.chunks(2000) {
                    let mut qb = sqlx::QueryBuilder::new(format!(
                        "INSERT INTO {} (file_id, line_no, record_key, payload, row_hash, version_num, version_text) ",
                        staging_table(file_id)
                    ));
                    qb.push_values(chunk, |mut b, s| {
                        b.push_bind(file_id)
                            .push_bind(s.line_no)
                            .push_bind(&s.c.key)
                            .push_bind(&s.c.payload)
                            .push_bind(&s.c.row_hash)
                            .push_bind(s.c.version_num)
                            .push_bind(&s.c.version_text);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            IngestDb::Pg(p) => {
                // COPY in text format: the fastest way into PostgreSQL.
                use crate::queue::copy_escape;
                let mut tx = p.begin().await?;
                let mut buf = String::with_capacity(raws.iter().map(|r| r.raw.len() + 32).sum());
                for r in raws {
                    buf.push_str(&format!("{file_id}\t{}\t", r.line_no));
                    copy_escape(&r.raw, &mut buf);
                    match &r.reason {
                        Some(reason) => {
                            buf.push_str("\trejected\t");
                            copy_escape(reason, &mut buf);
                        }
                        None => buf.push_str("\tok\t\\N"),
                    }
                    buf.push('\n');
                }
                let mut copy = (*tx)
                    .copy_in_raw("COPY raw_records (file_id, line_no, raw, status, reason) FROM STDIN WITH (FORMAT text)")
                    .await?;
                copy.send(buf.into_bytes()).await?;
                copy.finish().await?;
                let mut buf =
                    String::with_capacity(staged.iter().map(|s| s.c.payload.len() + 96).sum());
                for s in staged {
                    buf.push_str(&format!("{file_id}\t{}\t", s.line_no));
                    copy_escape(&s.c.key, &mut buf);
                    buf.push('\t');
                    copy_escape(&s.c.payload, &mut buf);
                    buf.push('\t');
                    buf.push_str(&s.c.row_hash);
                    buf.push('\t');
                    match s.c.version_num {
                        Some(v) => buf.push_str(&v.to_string()),
                        None => buf.push_str("\\N"),
                    }
                    buf.push('\t');
                    match &s.c.version_text {
                        Some(v) => copy_escape(v, &mut buf),
                        None => buf.push_str("\\N"),
                    }
                    buf.push('\n');
                }
                let mut copy = (*tx)
                    .copy_in_raw(&format!(
                        "COPY {} (file_id, line_no, record_key, payload, row_hash, version_num, version_text) \
                         FROM STDIN WITH (FORMAT text)",
                        staging_table(file_id)
                    ))
                    .await?;
                copy.send(buf.into_bytes()).await?;
                copy.finish().await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// SCD2 merge of one file's staged records into `records`, in one transaction:
    /// 1. duplicates within the delivery: keep the highest version, then the last line;
    /// 2. snapshot mode: current keys absent from the delivery get a deleted version;
    /// 3. versions older than the current one are stale, identical payloads unchanged;
    /// 4. the rest close their current version (if any) and open a new one.
    pub async fn merge(
        &self,
        dataset: &str,
        file_id: i64,
        snapshot: bool,
    ) -> Result<MergeCounts, StoreError> {
        let now = crate::store::now_text();
        let mut c = MergeCounts::default();
        // The statements below name `ingest_staging`; it stands for this file's staging table.
        let t = staging_table(file_id);
        let index = format!("CREATE INDEX {t}_key ON {t} (record_key)");
        macro_rules! run {
            ($tx:ident, $q:ident) => {{
                c.duplicates = $q!(&mut *$tx,
                    &"DELETE FROM ingest_staging WHERE file_id = ? AND line_no IN (SELECT line_no FROM (
                        SELECT line_no, ROW_NUMBER() OVER (PARTITION BY record_key
                            ORDER BY version_num DESC NULLS LAST, version_text DESC NULLS LAST, line_no DESC) AS rn
                        FROM ingest_staging WHERE file_id = ?) ranked WHERE rn > 1)".replace("ingest_staging", &t),
                    file_id, file_id);
                if snapshot {
                    c.deleted = $q!(&mut *$tx,
                        &"UPDATE records SET valid_to = ? WHERE dataset = ? AND valid_to IS NULL AND deleted = 0
                         AND NOT EXISTS (SELECT 1 FROM ingest_staging s WHERE s.file_id = ? AND s.record_key = records.record_key)".replace("ingest_staging", &t),
                        &now, dataset, file_id);
                    $q!(&mut *$tx,
                        "INSERT INTO records (dataset, record_key, payload, row_hash, version_num, version_text, valid_from, valid_to, deleted, file_id)
                         SELECT dataset, record_key, payload, row_hash, version_num, version_text, ?, NULL, 1, ?
                         FROM records r WHERE r.dataset = ? AND r.valid_to = ? AND r.deleted = 0
                         AND NOT EXISTS (SELECT 1 FROM records o WHERE o.dataset = r.dataset AND o.record_key = r.record_key AND o.valid_to IS NULL)",
                        &now, file_id, dataset, &now);
                }
                c.stale = $q!(&mut *$tx,
                    &"DELETE FROM ingest_staging WHERE file_id = ? AND EXISTS (SELECT 1 FROM records r
                        WHERE r.dataset = ? AND r.record_key = ingest_staging.record_key AND r.valid_to IS NULL
                        AND ((r.version_num > ingest_staging.version_num) OR (r.version_text > ingest_staging.version_text)))".replace("ingest_staging", &t),
                    file_id, dataset);
                c.unchanged = $q!(&mut *$tx,
                    &"DELETE FROM ingest_staging WHERE file_id = ? AND EXISTS (SELECT 1 FROM records r
                        WHERE r.dataset = ? AND r.record_key = ingest_staging.record_key AND r.valid_to IS NULL
                        AND r.deleted = 0 AND r.row_hash = ingest_staging.row_hash)".replace("ingest_staging", &t),
                    file_id, dataset);
                c.changed = $q!(&mut *$tx,
                    &"UPDATE records SET valid_to = ? WHERE dataset = ? AND valid_to IS NULL
                     AND record_key IN (SELECT record_key FROM ingest_staging WHERE file_id = ?)".replace("ingest_staging", &t),
                    &now, dataset, file_id);
                c.inserted = $q!(&mut *$tx,
                    &"INSERT INTO records (dataset, record_key, payload, row_hash, version_num, version_text, valid_from, valid_to, deleted, file_id)
                     SELECT ?, record_key, payload, row_hash, version_num, version_text, ?, NULL, 0, file_id
                     FROM ingest_staging WHERE file_id = ?".replace("ingest_staging", &t),
                    dataset, &now, file_id);
            }};
        }
        match self {
            IngestDb::Sqlite(p) => {
                q_lite!(p, &index);
                let mut tx = p.begin().await?;
                run!(tx, q_lite);
                tx.commit().await?;
            }
            IngestDb::Pg(p) => {
                // Fresh statistics for the staged rows, or the planner guesses an empty table.
                q_pg!(p, &index);
                q_pg!(p, &format!("ANALYZE {t}"));
                let mut tx = p.begin().await?;
                run!(tx, q_pg);
                tx.commit().await?;
            }
        }
        self.drop_staging(file_id).await?;
        // `changed` counted closed versions of keys whose new version is inserted now.
        c.inserted -= c.changed.min(c.inserted);
        Ok(c)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn finish_file(
        &self,
        file_id: i64,
        status: &str,
        lines: u64,
        accepted: u64,
        rejected: u64,
        m: &MergeCounts,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = crate::store::now_text();
        let sql = "UPDATE ingested_files SET status = ?, lines = ?, accepted = ?, rejected = ?, inserted = ?, changed = ?,
                   unchanged = ?, stale = ?, deleted = ?, finished_at = ?, error = ? WHERE id = ?";
        let n = |v: u64| v as i64;
        match self {
            IngestDb::Sqlite(p) => q_lite!(
                p,
                sql,
                status,
                n(lines),
                n(accepted),
                n(rejected),
                n(m.inserted),
                n(m.changed),
                n(m.unchanged),
                n(m.stale),
                n(m.deleted),
                &now,
                error,
                file_id
            ),
            IngestDb::Pg(p) => q_pg!(
                p,
                sql,
                status,
                n(lines),
                n(accepted),
                n(rejected),
                n(m.inserted),
                n(m.changed),
                n(m.unchanged),
                n(m.stale),
                n(m.deleted),
                &now,
                error,
                file_id
            ),
        };
        Ok(())
    }

    /// Rejected lines of a dataset, newest files first: (uri, line, reason, raw).
    pub async fn rejects(
        &self,
        dataset: &str,
        limit: i64,
    ) -> Result<Vec<(String, i64, String, String)>, StoreError> {
        let sql = "SELECT f.uri, r.line_no, r.reason, r.raw FROM raw_records r JOIN ingested_files f ON f.id = r.file_id
                   WHERE f.dataset = ? AND r.status = 'rejected' ORDER BY f.id DESC, r.line_no LIMIT ?";
        let rows = fetch_all!(
            self,
            (String, i64, Option<String>, String),
            sql,
            dataset,
            limit
        );
        Ok(rows
            .into_iter()
            .map(|(uri, line, reason, raw)| (uri, line, reason.unwrap_or_default(), raw))
            .collect())
    }

    /// The records of a dataset as they were at `as_of` (RFC 3339): (key, payload), by key.
    pub async fn as_of(
        &self,
        dataset: &str,
        as_of: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "SELECT record_key, payload FROM records WHERE dataset = ? AND valid_from <= ?
                   AND (valid_to IS NULL OR valid_to > ?) AND deleted = 0 ORDER BY record_key";
        Ok(fetch_all!(
            self,
            (String, String),
            sql,
            dataset,
            as_of,
            as_of
        ))
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
        macro_rules! fill {
            ($tx:ident, $q:ident) => {{
                $q!(
                    &mut *$tx,
                    "DELETE FROM product_summary WHERE dataset = ?",
                    dataset
                );
                for r in rows {
                    $q!(
                        &mut *$tx,
                        INSERT,
                        dataset,
                        &r.asin,
                        r.review_count,
                        r.avg_rating,
                        r.ratings[0],
                        r.ratings[1],
                        r.ratings[2],
                        r.ratings[3],
                        r.ratings[4],
                        r.helpful_votes,
                        r.total_votes,
                        r.helpful_ratio,
                        r.recent_reviews,
                        r.recent_avg_rating,
                        r.earlier_avg_rating,
                        r.rating_trend,
                        &r.first_review,
                        &r.last_review,
                        &r.most_helpful_excerpt,
                        &r.most_recent_excerpt
                    );
                }
            }};
        }
        match self {
            IngestDb::Sqlite(p) => {
                let mut tx = p.begin().await?;
                fill!(tx, q_lite);
                tx.commit().await?;
            }
            IngestDb::Pg(p) => {
                let mut tx = p.begin().await?;
                fill!(tx, q_pg);
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Every version of one record: (valid_from, valid_to, deleted, payload).
    pub async fn versions(
        &self,
        dataset: &str,
        key: &str,
    ) -> Result<Vec<(String, Option<String>, bool, String)>, StoreError> {
        let sql = "SELECT valid_from, valid_to, deleted, payload FROM records WHERE dataset = ? AND record_key = ? ORDER BY id";
        let rows = fetch_all!(
            self,
            (String, Option<String>, i64, String),
            sql,
            dataset,
            key
        );
        Ok(rows
            .into_iter()
            .map(|(from, to, deleted, payload)| (from, to, deleted != 0, payload))
            .collect())
    }
}
