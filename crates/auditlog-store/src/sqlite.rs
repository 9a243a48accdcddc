//! SQLite backend: the embedded default. One writer connection (SQLite allows one
//! writer at a time anyway) and a small pool of readers over a WAL database.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use auditlog_event::DataEvent;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::{AuditStore, Cursor, EventPage, EventQuery, InsertOutcome, StoreError, StoredEvent};

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
    "CREATE INDEX IF NOT EXISTS audit_events_by_actor
        ON audit_events (actor_type, actor_id, timestamp DESC, seq DESC)",
    "CREATE INDEX IF NOT EXISTS audit_events_on_target
        ON audit_events (target_type, target_id, timestamp DESC, seq DESC)",
    "CREATE INDEX IF NOT EXISTS audit_events_by_time
        ON audit_events (timestamp DESC, seq DESC)",
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
                .map_err(backend)?;
        }
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(unavailable)?;
        Ok(SqliteStore { writer, readers })
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn insert_batch(&self, events: &[DataEvent]) -> Result<InsertOutcome, StoreError> {
        if events.is_empty() {
            return Ok(InsertOutcome::default());
        }
        let received_at = now_ms();
        let mut tx = self.writer.begin().await.map_err(unavailable)?;
        let mut inserted = 0;
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO audit_events (id, action, timestamp, actor_type, actor_id, \
                 target_type, target_id, received_at, body) ",
            );
            insert.push_values(chunk, |mut row, event| {
                row.push_bind(event.id.as_bytes().to_vec())
                    .push_bind(event.action.as_str())
                    .push_bind(event.timestamp)
                    .push_bind(event.actor_type.as_str().to_owned())
                    .push_bind(event.actor_id.key())
                    .push_bind(event.target_type.as_str().to_owned())
                    .push_bind(event.target_id.key())
                    .push_bind(received_at)
                    .push_bind(event.to_json());
            });
            insert.push(" ON CONFLICT (id) DO NOTHING");
            let done = insert.build().execute(&mut *tx).await.map_err(backend)?;
            inserted += done.rows_affected();
        }
        tx.commit().await.map_err(backend)?;
        Ok(InsertOutcome {
            inserted,
            duplicates: events.len() as u64 - inserted,
        })
    }

    async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let mut sql = QueryBuilder::<Sqlite>::new(
            "SELECT id, seq, timestamp, body FROM audit_events WHERE 1 = 1",
        );
        if let Some(actor) = &query.actor {
            sql.push(" AND actor_type = ")
                .push_bind(actor.object_type.as_str().to_owned())
                .push(" AND actor_id = ")
                .push_bind(actor.id.clone());
        }
        if let Some(target) = &query.target {
            sql.push(" AND target_type = ")
                .push_bind(target.object_type.as_str().to_owned())
                .push(" AND target_id = ")
                .push_bind(target.id.clone());
        }
        if let Some(who) = &query.involving {
            sql.push(" AND ((actor_type = ")
                .push_bind(who.object_type.as_str().to_owned())
                .push(" AND actor_id = ")
                .push_bind(who.id.clone())
                .push(") OR (target_type = ")
                .push_bind(who.object_type.as_str().to_owned())
                .push(" AND target_id = ")
                .push_bind(who.id.clone())
                .push("))");
        }
        if !query.actions.is_empty() {
            sql.push(" AND action IN (");
            let mut list = sql.separated(", ");
            for action in &query.actions {
                list.push_bind(action.as_str());
            }
            sql.push(")");
        }
        if let Some(since) = query.since {
            sql.push(" AND timestamp >= ").push_bind(since);
        }
        if let Some(until) = query.until {
            sql.push(" AND timestamp < ").push_bind(until);
        }
        if let Some(after) = query.after {
            sql.push(" AND (timestamp < ")
                .push_bind(after.timestamp)
                .push(" OR (timestamp = ")
                .push_bind(after.timestamp)
                .push(" AND seq < ")
                .push_bind(after.seq)
                .push("))");
        }
        let page_size = query.page_size.clamp(1, EventQuery::MAX_PAGE_SIZE) as usize;
        sql.push(" ORDER BY timestamp DESC, seq DESC LIMIT ")
            .push_bind(page_size as i64 + 1);
        let rows = sql
            .build()
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?;
        let mut events = rows
            .into_iter()
            .map(stored_event)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if events.len() > page_size {
            events.truncate(page_size);
            events.last().map(|last| Cursor {
                timestamp: last.timestamp,
                seq: last.seq,
            })
        } else {
            None
        };
        Ok(EventPage { events, next })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

fn stored_event(row: SqliteRow) -> Result<StoredEvent, StoreError> {
    let id: Vec<u8> = row.try_get("id").map_err(backend)?;
    Ok(StoredEvent {
        id: uuid::Uuid::from_slice(&id)
            .map_err(|e| StoreError::Backend(format!("a stored id is not a UUID: {e}")))?,
        seq: row.try_get("seq").map_err(backend)?,
        timestamp: row.try_get("timestamp").map_err(backend)?,
        body: row.try_get("body").map_err(backend)?,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn backend(err: sqlx::Error) -> StoreError {
    StoreError::Backend(err.to_string())
}
