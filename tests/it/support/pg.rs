//! A throwaway PostgreSQL database per test on the server named by `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). A missing server is a test failure, never a
//! skip: `.ci/run` starts one.
#![allow(dead_code)]

use sqlx::Connection;

pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestDb {
    pub url: String,
    name: String,
}

impl TestDb {
    /// Wraps a database that something else owns (nothing is dropped).
    pub fn of_url(url: &str) -> TestDb {
        TestDb {
            url: url.to_string(),
            name: String::new(),
        }
    }

    pub async fn new() -> TestDb {
        let admin = admin_url();
        let name = format!("shopscribe_test_{}_{}", std::process::id(), rand_suffix());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is required for this test (DATABASE_URL={admin}): {e}. Start it, e.g. `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`.")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        TestDb {
            url: url.to_string(),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        // Best effort, on a separate runtime: the test's runtime may be shutting down.
        let name = self.name.clone();
        let admin = admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

fn rand_suffix() -> String {
    use rand::RngExt;
    format!("{:08x}", rand::rng().random::<u32>())
}

/// Creates the example's `domain_monthly` table in PostgreSQL and loads `rows`.
pub async fn load_pg(pool: &sqlx::PgPool, rows: &[shopscribe::demo::MonthRow]) {
    sqlx::query(
        "CREATE TABLE domain_monthly (domain TEXT NOT NULL, category TEXT, country TEXT NOT NULL, \
         year INTEGER NOT NULL, month INTEGER NOT NULL, visits INTEGER, orders INTEGER, revenue DOUBLE PRECISION, \
         returning_share DOUBLE PRECISION, mobile_share DOUBLE PRECISION, PRIMARY KEY (domain, year, month))",
    )
    .execute(pool)
    .await
    .unwrap();
    for chunk in rows.chunks(500) {
        let mut qb = sqlx::QueryBuilder::new(
            "INSERT INTO domain_monthly (domain, category, country, year, month, visits, orders, revenue, returning_share, mobile_share) ",
        );
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(&r.domain)
                .push_bind(&r.category)
                .push_bind(&r.country)
                .push_bind(r.year)
                .push_bind(r.month)
                .push_bind(r.visits as i32)
                .push_bind(r.orders as i32)
                .push_bind(r.revenue)
                .push_bind(r.returning_share)
                .push_bind(r.mobile_share);
        });
        qb.build().execute(pool).await.unwrap();
    }
}

/// A private PostgreSQL cluster on its own port, for tests that restart the server (the shared
/// one must not be restarted under other tests). `initdb` refuses root, so it runs as `postgres`.
pub struct PrivateCluster {
    pub url: String,
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
}

fn as_postgres(cmd: &str) -> std::process::Output {
    std::process::Command::new("su")
        .args(["postgres", "-s", "/bin/sh", "-c", cmd])
        .output()
        .expect("su postgres")
}

impl PrivateCluster {
    pub fn start() -> PrivateCluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = tempfile::Builder::new()
            .prefix("shopscribe-pg")
            .tempdir_in("/tmp")
            .unwrap();
        std::process::Command::new("chown")
            .args(["postgres", dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        let port = 20_000 + (std::process::id() % 10_000) as u16 + rand_port_offset();
        let d = dir.path().display().to_string();
        let out = as_postgres(&format!(
            "{}/initdb -D {d}/data -A trust -U postgres >/dev/null",
            bin.display()
        ));
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = PrivateCluster {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            bin,
        };
        c.pg_ctl(&format!(
            "-o '-p {port} -k {d} -c listen_addresses=127.0.0.1' -l {d}/log -w start"
        ));
        c
    }

    fn pg_ctl(&self, args: &str) {
        let out = as_postgres(&format!(
            "{}/pg_ctl -D {}/data {args}",
            self.bin.display(),
            self.dir.path().display()
        ));
        assert!(
            out.status.success(),
            "pg_ctl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (fast: open connections are cut), waits `down`, starts it again.
    pub fn restart(&self, down: std::time::Duration) {
        self.pg_ctl("-m fast -w stop");
        std::thread::sleep(down);
        let port = self
            .url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let d = self.dir.path().display();
        self.pg_ctl(&format!(
            "-o '-p {port} -k {d} -c listen_addresses=127.0.0.1' -l {d}/log -w start"
        ));
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = as_postgres(&format!(
            "{}/pg_ctl -D {}/data -m immediate -w stop",
            self.bin.display(),
            self.dir.path().display()
        ));
    }
}

fn rand_port_offset() -> u16 {
    use rand::RngExt;
    rand::rng().random_range(0..5000)
}
