//! The primary API's own database: users and notes, with user 1 seeded as admin.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        email TEXT NOT NULL UNIQUE,
        agreed_tos INTEGER NOT NULL DEFAULT 0,
        role TEXT NOT NULL DEFAULT 'user'
    )",
    "CREATE TABLE IF NOT EXISTS notes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        author_id INTEGER NOT NULL,
        target_type TEXT NOT NULL,
        target_id TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS notes_on_target ON notes (target_type, target_id, id)",
    "INSERT OR IGNORE INTO users (id, name, email, agreed_tos, role)
        VALUES (1, 'James Chavo', 'jim.chavo@happi.com', 1, 'admin')",
];

/// Connections to the application database: one writer (SQLite has one anyway, and
/// a single writer avoids lock upgrades between read-then-write transactions) and a
/// pool of readers.
#[derive(Debug, Clone)]
pub struct AppDb {
    pub(crate) writer: SqlitePool,
    pub(crate) readers: SqlitePool,
}

/// The application database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("the application database {url} could not be opened: {reason}")]
pub struct OpenError {
    url: String,
    reason: String,
}

impl AppDb {
    /// Opens (creating and seeding if needed) the database a `sqlite://PATH` URL names.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let error = |reason: String| OpenError {
            url: url.to_owned(),
            reason,
        };
        if !url.starts_with("sqlite:") {
            return Err(error("only sqlite:// URLs are supported".into()));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| error(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| error(e.to_string()))?;
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(&writer)
                .await
                .map_err(|e| error(e.to_string()))?;
        }
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| error(e.to_string()))?;
        Ok(AppDb { writer, readers })
    }
}
