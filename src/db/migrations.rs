//! The store's schema: one numbered sequence of migrations for both backends. A version means
//! the same change on SQLite and on PostgreSQL (`migrations/sqlite/0007_gold.sql` and
//! `migrations/postgres/0007_gold.sql`); a change that concerns one backend only (the task queue
//! of distributed runs, the publish lease) has no file on the other, and that version is simply
//! absent there.
//!
//! The list is written here rather than found by `sqlx::migrate!`: that macro was the only use of
//! sqlx's `macros` feature, which made cargo build sqlx, SQLite's C code, rustls and aws-lc a
//! second time for the proc-macro (BENCHMARKS.md, "Build and test time"). The migrations are the
//! same files with the same checksums (SHA-384 of the SQL, computed by [`Migration::new`]), so a
//! store migrated by the macro opens unchanged; a unit test keeps this list and the folders equal.

use sqlx::SqlStr;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::sqlite::SqlitePool;
use std::borrow::Cow;

/// One version of the schema: its file name's description and the SQL of each backend it
/// concerns.
struct Step {
    version: i64,
    /// The file name's description (`gold` for `0007_gold.sql`).
    name: &'static str,
    sqlite: Option<&'static str>,
    postgres: Option<&'static str>,
}

macro_rules! sql_file {
    ($backend:literal, $file:literal) => {
        include_str!(concat!("../../migrations/", $backend, "/", $file))
    };
}

const fn both(version: i64, name: &'static str, sqlite: &'static str, pg: &'static str) -> Step {
    Step {
        version,
        name,
        sqlite: Some(sqlite),
        postgres: Some(pg),
    }
}

const fn postgres_only(version: i64, name: &'static str, pg: &'static str) -> Step {
    Step {
        version,
        name,
        sqlite: None,
        postgres: Some(pg),
    }
}

/// Every version, in order. A new migration: add its file(s) as `NNNN_name.sql` with the next
/// number under `migrations/sqlite/` and/or `migrations/postgres/`, and a line here.
const STEPS: &[Step] = &[
    both(
        1,
        "init",
        sql_file!("sqlite", "0001_init.sql"),
        sql_file!("postgres", "0001_init.sql"),
    ),
    both(
        2,
        "attempt_log",
        sql_file!("sqlite", "0002_attempt_log.sql"),
        sql_file!("postgres", "0002_attempt_log.sql"),
    ),
    both(
        3,
        "batches",
        sql_file!("sqlite", "0003_batches.sql"),
        sql_file!("postgres", "0003_batches.sql"),
    ),
    postgres_only(4, "tasks", sql_file!("postgres", "0004_tasks.sql")),
    both(
        5,
        "ingest",
        sql_file!("sqlite", "0005_ingest.sql"),
        sql_file!("postgres", "0005_ingest.sql"),
    ),
    both(
        7,
        "gold",
        sql_file!("sqlite", "0007_gold.sql"),
        sql_file!("postgres", "0007_gold.sql"),
    ),
    both(
        10,
        "service",
        sql_file!("sqlite", "0010_service.sql"),
        sql_file!("postgres", "0010_service.sql"),
    ),
    both(
        11,
        "bronze_blocks",
        sql_file!("sqlite", "0011_bronze_blocks.sql"),
        sql_file!("postgres", "0011_bronze_blocks.sql"),
    ),
    both(
        12,
        "record_lines",
        sql_file!("sqlite", "0012_record_lines.sql"),
        sql_file!("postgres", "0012_record_lines.sql"),
    ),
    both(
        13,
        "run_leases",
        sql_file!("sqlite", "0013_run_leases.sql"),
        sql_file!("postgres", "0013_run_leases.sql"),
    ),
    both(
        14,
        "ingest_bytes",
        sql_file!("sqlite", "0014_ingest_bytes.sql"),
        sql_file!("postgres", "0014_ingest_bytes.sql"),
    ),
    postgres_only(
        15,
        "publish_lease",
        sql_file!("postgres", "0015_publish_lease.sql"),
    ),
    both(
        17,
        "product_catalog",
        sql_file!("sqlite", "0017_product_catalog.sql"),
        sql_file!("postgres", "0017_product_catalog.sql"),
    ),
];

/// Which backend's files a migrator applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    Sqlite,
    Postgres,
}

/// The migrator of one backend: its versions of [`STEPS`], recorded in `_sqlx_migrations` as
/// `sqlx::migrate!` recorded them (description with spaces, checksum of the SQL, a file that
/// starts with `-- no-transaction` run outside a transaction).
pub fn migrator(schema: Schema) -> Migrator {
    let migrations = STEPS
        .iter()
        .filter_map(|step| {
            let sql = match schema {
                Schema::Sqlite => step.sqlite,
                Schema::Postgres => step.postgres,
            }?;
            Some(Migration::new(
                step.version,
                Cow::Owned(step.name.replace('_', " ")),
                MigrationType::Simple,
                SqlStr::from_static(sql),
                sql.starts_with("-- no-transaction"),
            ))
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// SQLite stores made before the numbering was one (up to commit 58ba20a) recorded `ingest` as
/// version 4 and `gold` as 5, where PostgreSQL had 5 and 7; they are renumbered in place before
/// the migrator compares what is applied with the list (it would otherwise refuse the store:
/// applied version 4 is not in the list). Same SQL, same checksums: nothing is re-applied.
pub async fn renumber_sqlite_store(pool: &SqlitePool) -> Result<(), MigrateError> {
    let has_table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await?;
    if has_table.is_none() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    // Highest first: `version` is the table's primary key.
    for (old, new, description) in [(5, 7, "gold"), (4, 5, "ingest")] {
        sqlx::query(
            "UPDATE _sqlx_migrations SET version = ? WHERE version = ? AND description = ?",
        )
        .bind(new)
        .bind(old)
        .bind(description)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The `NNNN_name.sql` files of one folder.
    fn files(backend: &str) -> BTreeSet<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    fn listed(pick: impl Fn(&Step) -> Option<&'static str>) -> BTreeSet<String> {
        STEPS
            .iter()
            .filter(|s| pick(s).is_some())
            .map(|s| format!("{:04}_{}.sql", s.version, s.name))
            .collect()
    }

    #[test]
    fn the_list_is_the_folders() {
        assert_eq!(listed(|s| s.sqlite), files("sqlite"));
        assert_eq!(listed(|s| s.postgres), files("postgres"));
    }

    #[test]
    fn versions_rise_and_every_step_has_sql() {
        assert!(STEPS.windows(2).all(|w| w[0].version < w[1].version));
        assert!(
            STEPS
                .iter()
                .all(|s| s.sqlite.is_some() || s.postgres.is_some())
        );
    }

    #[test]
    fn one_file_on_both_backends_is_one_change() {
        // A version both backends have carries the same name: the numbering is one sequence.
        let sqlite = migrator(Schema::Sqlite);
        let postgres = migrator(Schema::Postgres);
        for m in sqlite.iter() {
            if let Some(p) = postgres.iter().find(|p| p.version == m.version) {
                assert_eq!(p.description, m.description);
            }
        }
        assert_eq!(sqlite.iter().count(), 11);
        assert_eq!(postgres.iter().count(), 13);
    }
}
