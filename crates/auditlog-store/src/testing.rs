//! Fresh, private databases for tests, in this crate and in others (feature
//! `testing`, meant for `[dev-dependencies]` only).
//!
//! Each call makes a new database named `auditlog_test_<random>` on the server named
//! by an environment variable (or the local default) and hands back a guard whose
//! [`TestDatabase::url`] points at it; dropping the guard drops the database. Tests
//! running at the same time, in threads or in separate processes as under
//! `cargo nextest`, therefore never see each other's events.
//!
//! An unreachable server is a test failure with instructions, never a skip: a green
//! run must mean every backend was exercised.
//!
//! ```no_run
//! # async fn example() {
//! let db = auditlog_store::testing::fresh_postgres_url().await;
//! let store = auditlog_store::open(db.url()).await.unwrap();
//! // ... the database is dropped with `db`.
//! # }
//! ```

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection, Executor};

use crate::mysql::driver_url;
use crate::redact;
use crate::sql::first_connection;

/// Environment variable naming the PostgreSQL server tests use: a URL whose user may
/// create databases; its database part is only used to connect.
pub const POSTGRES_URL_VAR: &str = "AUDITLOG_TEST_POSTGRES_URL";

/// Environment variable naming the MySQL / MariaDB server tests use, as for
/// [`POSTGRES_URL_VAR`].
pub const MYSQL_URL_VAR: &str = "AUDITLOG_TEST_MYSQL_URL";

/// The PostgreSQL server used when [`POSTGRES_URL_VAR`] is unset (trust auth).
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Tried when [`DEFAULT_POSTGRES_URL`] is refused, for clusters without a
/// `postgres` role.
const FALLBACK_POSTGRES_URL: &str = "postgres://root@127.0.0.1:5432/test";

/// The MySQL / MariaDB server used when [`MYSQL_URL_VAR`] is unset.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

const START_POSTGRES: &str =
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";
const START_MYSQL: &str =
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd";

/// A database made for one test. Its URL opens a store with [`crate::open`];
/// dropping the guard removes the database and everything in it.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Directory(PathBuf),
    Postgres { admin_url: String, name: String },
    MySql { admin_url: String, name: String },
}

impl TestDatabase {
    /// The store URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let result = match &self.cleanup {
            Cleanup::Directory(dir) => std::fs::remove_dir_all(dir).map_err(|e| e.to_string()),
            Cleanup::Postgres { admin_url, name } => {
                // FORCE (PostgreSQL 13+) ends the connections a store's pool may
                // still hold open, which would otherwise make the drop fail.
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                block_on_own_runtime(postgres_admin(admin_url.clone(), sql))
            }
            Cleanup::MySql { admin_url, name } => {
                let sql = format!("DROP DATABASE IF EXISTS {name}");
                block_on_own_runtime(mysql_admin(admin_url.clone(), sql))
            }
        };
        if let Err(err) = result {
            // A leftover test database is untidy, not a failure of the test.
            eprintln!(
                "warning: could not remove test database {}: {err}",
                redact(&self.url)
            );
        }
    }
}

/// A fresh SQLite store in a new temporary directory.
///
/// # Panics
/// When the directory cannot be created.
pub fn fresh_sqlite_url() -> TestDatabase {
    let dir = std::env::temp_dir().join(unique_name());
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create test directory {}: {e}", dir.display()));
    TestDatabase {
        url: format!("sqlite://{}", dir.join("audit.db").display()),
        cleanup: Cleanup::Directory(dir),
    }
}

/// A fresh PostgreSQL database on the server [`POSTGRES_URL_VAR`] names (default
/// [`DEFAULT_POSTGRES_URL`]).
///
/// # Panics
/// When the server cannot be reached or refuses to create the database; the message
/// says how to start the local server.
pub async fn fresh_postgres_url() -> TestDatabase {
    let candidates = match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) => vec![url],
        Err(_) => vec![
            DEFAULT_POSTGRES_URL.to_owned(),
            FALLBACK_POSTGRES_URL.to_owned(),
        ],
    };
    let name = unique_name();
    let mut failures = Vec::new();
    for admin_url in candidates {
        match postgres_admin(admin_url.clone(), format!("CREATE DATABASE {name}")).await {
            Ok(()) => {
                return TestDatabase {
                    url: with_database(&admin_url, &name),
                    cleanup: Cleanup::Postgres { admin_url, name },
                };
            }
            Err(err) => failures.push(err),
        }
    }
    panic!(
        "PostgreSQL is needed by this test and could not be used.\n  {}\n\
         Start the local server with `{START_POSTGRES}`, \
         or set {POSTGRES_URL_VAR} to a server where the user may create databases.",
        failures.join("\n  ")
    );
}

/// A fresh MySQL / MariaDB database on the server [`MYSQL_URL_VAR`] names (default
/// [`DEFAULT_MYSQL_URL`]). The URL keeps the variable's scheme (`mysql://` or
/// `mariadb://`).
///
/// # Panics
/// When the server cannot be reached or refuses to create the database; the message
/// says how to start the local server.
pub async fn fresh_mysql_url() -> TestDatabase {
    let admin_url = std::env::var(MYSQL_URL_VAR).unwrap_or_else(|_| DEFAULT_MYSQL_URL.to_owned());
    let name = unique_name();
    let create = format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin");
    if let Err(err) = mysql_admin(admin_url.clone(), create).await {
        panic!(
            "MySQL/MariaDB is needed by this test and could not be used.\n  {err}\n\
             Start the local server with `{START_MYSQL}`, \
             or set {MYSQL_URL_VAR} to a server where the user may create databases."
        );
    }
    TestDatabase {
        url: with_database(&admin_url, &name),
        cleanup: Cleanup::MySql { admin_url, name },
    }
}

/// `auditlog_test_` and 32 hex digits: unique across processes (a UUIDv7 carries 74
/// random bits) and a valid unquoted identifier on every server.
fn unique_name() -> String {
    format!("auditlog_test_{}", uuid::Uuid::now_v7().simple())
}

/// Runs one administrative statement on its own connection. `sql` is built only
/// from constant text and [`unique_name`], never from input, hence `AssertSqlSafe`
/// (identifiers cannot be bound as parameters).
async fn postgres_admin(admin_url: String, sql: String) -> Result<(), String> {
    let options = PgConnectOptions::from_str(&admin_url).map_err(|e| e.to_string())?;
    let conn = first_connection(
        "PostgreSQL",
        &admin_url,
        PgConnection::connect_with(&options),
    )
    .await
    .map_err(|e| e.to_string())?;
    run_admin(conn, &admin_url, sql).await
}

/// As [`postgres_admin`], for MySQL / MariaDB.
async fn mysql_admin(admin_url: String, sql: String) -> Result<(), String> {
    let options =
        MySqlConnectOptions::from_str(&driver_url(&admin_url)).map_err(|e| e.to_string())?;
    let conn = first_connection("MySQL", &admin_url, MySqlConnection::connect_with(&options))
        .await
        .map_err(|e| e.to_string())?;
    run_admin(conn, &admin_url, sql).await
}

/// Runs `sql` on `conn` and closes it, naming the server in the error.
async fn run_admin<C>(mut conn: C, admin_url: &str, sql: String) -> Result<(), String>
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
{
    let result = sqlx::raw_sql(AssertSqlSafe(sql.clone()))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    result
        .map(drop)
        .map_err(|e| format!("{} refused `{sql}`: {e}", redact(admin_url)))
}

/// Runs cleanup to completion from `Drop`, which cannot await and may run inside a
/// test's runtime (where blocking on that same runtime would panic): a short-lived
/// thread with its own runtime does the work.
fn block_on_own_runtime(
    work: impl Future<Output = Result<(), String>> + Send + 'static,
) -> Result<(), String> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(work)
    })
    .join()
    .map_err(|_| "the cleanup thread panicked".to_owned())?
}

/// `url` with its database path replaced by `name`, keeping any query string.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    let authority = location.split_once('/').map_or(location, |(a, _)| a);
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_part_of_a_url_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/test?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("mysql://root@h", "x"), "mysql://root@h/x");
        assert_eq!(
            with_database("mariadb://root@h/", "x"),
            "mariadb://root@h/x"
        );
    }

    #[test]
    fn names_are_unique_and_plain_identifiers() {
        let (a, b) = (unique_name(), unique_name());
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        assert!(a.len() <= 63);
    }
}
