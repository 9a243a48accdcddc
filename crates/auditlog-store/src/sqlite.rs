//! SQLite backend: the embedded default. One writer connection (SQLite allows one
//! writer at a time anyway) and a small pool of readers over a WAL database.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use auditlog_event::DataEvent;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::sql::{
    chunks, into_page, now_ms, page_query, store_error, unique_rows, uuid_from_bytes,
};
use crate::{AuditStore, EventPage, EventQuery, InsertOutcome, StoreError, StoredEvent};

/// Rows per INSERT statement: 9 binds each stays far below SQLite's 32 766 limit.
const ROWS_PER_STATEMENT: usize = 500;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id BLOB NOT NULL UNIQUE,
        action TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        actor_type TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        target_type TEXT NOT NULL,
        target_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        body TEXT NOT NULL
    )",
    // Indexes of earlier builds ordered ties by seq; the id order replaced them.
    "DROP INDEX IF EXISTS audit_events_by_actor",
    "DROP INDEX IF EXISTS audit_events_on_target",
    "DROP INDEX IF EXISTS audit_events_by_time",
    "CREATE INDEX IF NOT EXISTS audit_events_actor_time
        ON audit_events (actor_type, actor_id, timestamp DESC, id DESC)",
    "CREATE INDEX IF NOT EXISTS audit_events_target_time
        ON audit_events (target_type, target_id, timestamp DESC, id DESC)",
    "CREATE INDEX IF NOT EXISTS audit_events_time
        ON audit_events (timestamp DESC, id DESC)",
];

/// The SQLite audit store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database a `sqlite://PATH` URL names.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An acknowledged event must survive power loss, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(&writer)
                .await
                .map_err(store_error)?;
        }
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(unavailable)?;
        Ok(SqliteStore { writer, readers })
    }
}

/// Failing to open the file at all (missing directory, permissions) leaves the store
/// unusable, whatever the error's kind.
fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn insert_batch(&self, events: &[DataEvent]) -> Result<InsertOutcome, StoreError> {
        if events.is_empty() {
            return Ok(InsertOutcome::default());
        }
        let rows = unique_rows(events);
        let received_at = now_ms();
        let mut tx = self.writer.begin().await.map_err(store_error)?;
        let mut inserted = 0;
        // Bodies are bound, not spliced into the SQL text, so only the row count
        // limits a statement.
        for chunk in chunks(&rows, ROWS_PER_STATEMENT, usize::MAX) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO audit_events (id, action, timestamp, actor_type, actor_id, \
                 target_type, target_id, received_at, body) ",
            );
            insert.push_values(chunk, |mut row, event| {
                row.push_bind(event.id.as_bytes().as_slice())
                    .push_bind(event.action)
                    .push_bind(event.timestamp)
                    .push_bind(event.actor_type)
                    .push_bind(event.actor_id.as_str())
                    .push_bind(event.target_type)
                    .push_bind(event.target_id.as_str())
                    .push_bind(received_at)
                    .push_bind(event.body.as_str());
            });
            insert.push(" ON CONFLICT (id) DO NOTHING");
            let done = insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            inserted += done.rows_affected();
        }
        tx.commit().await.map_err(store_error)?;
        Ok(InsertOutcome {
            inserted,
            duplicates: events.len() as u64 - inserted,
        })
    }

    async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let (mut sql, page_size) =
            page_query::<Sqlite>("id, seq, timestamp, body", query, |sql, id| {
                sql.push_bind(id.as_bytes().to_vec());
            });
        let rows = sql
            .build()
            .fetch_all(&self.readers)
            .await
            .map_err(store_error)?;
        let events = rows
            .into_iter()
            .map(stored_event)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(into_page(events, page_size))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

fn stored_event(row: SqliteRow) -> Result<StoredEvent, StoreError> {
    let id: Vec<u8> = row.try_get("id").map_err(store_error)?;
    Ok(StoredEvent {
        id: uuid_from_bytes(&id)?,
        seq: row.try_get("seq").map_err(store_error)?,
        timestamp: row.try_get("timestamp").map_err(store_error)?,
        body: row.try_get("body").map_err(store_error)?,
    })
}
