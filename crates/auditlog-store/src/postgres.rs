//! PostgreSQL backend: a pooled `PgPool`, one `UNNEST` insert per batch, the same
//! queries as every other backend.

use std::str::FromStr;

use async_trait::async_trait;
use auditlog_event::DataEvent;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row};

use crate::sql::{
    CONNECT_TIMEOUT, POOL_SIZE, chunks, first_connection, into_page, now_ms, page_query,
    store_error, unique_rows,
};
use crate::{AuditStore, EventPage, EventQuery, InsertOutcome, StoreError, StoredEvent, redact};

/// Keys of the transaction-scoped advisory locks this store takes. Advisory locks are
/// per database, so stores in different databases never wait on each other.
const SCHEMA_LOCK: i64 = 0x6175_6469_746c_0001;
const WRITER_LOCK: i64 = 0x6175_6469_746c_0002;

/// Upper bound on the bytes one insert statement carries. PostgreSQL accepts up to
/// 1 GiB per message; staying far below keeps client and server memory in check
/// while any realistic batch still goes in one statement.
const MAX_STATEMENT_BYTES: usize = 64 * 1024 * 1024;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_events (
        seq BIGSERIAL PRIMARY KEY,
        id UUID NOT NULL UNIQUE,
        action VARCHAR(16) NOT NULL,
        timestamp BIGINT NOT NULL,
        actor_type VARCHAR(64) NOT NULL,
        actor_id VARCHAR(128) NOT NULL,
        target_type VARCHAR(64) NOT NULL,
        target_id VARCHAR(128) NOT NULL,
        received_at BIGINT NOT NULL,
        -- TEXT, not JSONB: the event must come back byte for byte as it was stored.
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

/// The whole batch in one statement: each column travels as one array parameter, so
/// the statement text and its nine binds are the same for any batch size (prepared
/// once per connection, no bind limit). `WITH ORDINALITY ... ORDER BY` makes rows
/// draw their `seq` from the sequence in batch order. Ids go as text and are cast,
/// which keeps the driver free of a UUID type feature. `ON CONFLICT DO NOTHING` makes
/// redelivery harmless, and `rows_affected` counts exactly the rows inserted.
const INSERT: &str = "INSERT INTO audit_events
        (id, action, timestamp, actor_type, actor_id, target_type, target_id, received_at, body)
    SELECT b.id, b.action, b.timestamp, b.actor_type, b.actor_id, b.target_type, b.target_id,
        $9, b.body
    FROM UNNEST($1::text[]::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::text[])
        WITH ORDINALITY
        AS b (id, action, timestamp, actor_type, actor_id, target_type, target_id, body, ord)
    ORDER BY b.ord
    ON CONFLICT (id) DO NOTHING";

/// The PostgreSQL audit store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database a `postgres://` or `postgresql://` URL names and
    /// creates the schema if it is missing. The database itself must exist.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Unavailable(format!("bad PostgreSQL URL `{}`: {e}", redact(url)))
        })?;
        let mut conn =
            first_connection("PostgreSQL", url, PgConnection::connect_with(&options)).await?;
        // Two processes opening a new database at once would race in
        // `CREATE TABLE IF NOT EXISTS` (it is not atomic in PostgreSQL); the lock
        // makes the second one wait and then find everything in place.
        let mut tx = conn.begin().await.map_err(store_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        // Closing is a courtesy to the server; the schema is committed either way.
        let _ = conn.close().await;
        // The server has just answered, so the pool may connect on demand.
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        Ok(PostgresStore { pool })
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn insert_batch(&self, events: &[DataEvent]) -> Result<InsertOutcome, StoreError> {
        if events.is_empty() {
            return Ok(InsertOutcome::default());
        }
        let rows = unique_rows(events);
        let received_at = now_ms();
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        // One writer at a time per database: a sequence hands out numbers at insert
        // time, so two overlapping writers could commit out of `seq` order. Holding
        // the lock until commit makes `seq` order commit order, as with SQLite's
        // single writer, which is what a later sealing step can rely on.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITER_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let mut inserted = 0;
        for chunk in chunks(&rows, usize::MAX, MAX_STATEMENT_BYTES) {
            let done = sqlx::query(INSERT)
                .bind(chunk.iter().map(|r| r.id.to_string()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.action).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.timestamp).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.actor_type).collect::<Vec<_>>())
                .bind(
                    chunk
                        .iter()
                        .map(|r| r.actor_id.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(chunk.iter().map(|r| r.target_type).collect::<Vec<_>>())
                .bind(
                    chunk
                        .iter()
                        .map(|r| r.target_id.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(chunk.iter().map(|r| r.body.as_str()).collect::<Vec<_>>())
                .bind(received_at)
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
            page_query::<Postgres>("id::text AS id, seq, timestamp, body", query, |sql, id| {
                sql.push_bind(id.to_string()).push("::uuid");
            });
        let rows = sql
            .build()
            .fetch_all(&self.pool)
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
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

fn stored_event(row: PgRow) -> Result<StoredEvent, StoreError> {
    let id: String = row.try_get("id").map_err(store_error)?;
    Ok(StoredEvent {
        id: uuid::Uuid::parse_str(&id)
            .map_err(|e| StoreError::Backend(format!("a stored id is not a UUID: {e}")))?,
        seq: row.try_get("seq").map_err(store_error)?,
        timestamp: row.try_get("timestamp").map_err(store_error)?,
        body: row.try_get("body").map_err(store_error)?,
    })
}
