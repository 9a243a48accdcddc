//! PostgreSQL backend: a pooled `PgPool`, one `UNNEST` insert per batch, the same
//! queries as every other backend.

use std::str::FromStr;

use async_trait::async_trait;
use auditlog_event::DataEvent;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, Postgres, Row};

use crate::sql::{
    CONNECT_TIMEOUT, Dialect, EventRow, GenericStore, POOL_SIZE, STORED_IDS_CHUNK, chunks,
    first_connection, producer_id_text, store_error, unique_rows,
};
use crate::{
    ActivityCount, AuditStore, ChainEntry, ChainHead, ChainLink, EventPage, EventQuery,
    InsertOutcome, ProducerProgress, SealOutcome, SignedHead, StoreError, StoredEvent, redact,
};

/// Keys of the transaction-scoped advisory locks this store takes. Advisory locks are
/// per database, so stores in different databases never wait on each other.
const SCHEMA_LOCK: i64 = 0x6175_6469_746c_0001;
const WRITER_LOCK: i64 = 0x6175_6469_746c_0002;
const SEAL_LOCK: i64 = 0x6175_6469_746c_0003;

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
        body TEXT NOT NULL,
        producer_id VARCHAR(128),
        producer_seq BIGINT
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
    // The integrity chain (see `chain.rs`), one entry per sealed event.
    "CREATE TABLE IF NOT EXISTS audit_chain (
        seq BIGINT PRIMARY KEY,
        position BIGINT NOT NULL,
        id BYTEA NOT NULL,
        leaf_hash BYTEA NOT NULL,
        chain_hash BYTEA NOT NULL
    )",
    // Signed chain heads; only the newest is kept.
    "CREATE TABLE IF NOT EXISTS audit_heads (
        seq BIGINT PRIMARY KEY,
        size BIGINT NOT NULL,
        chain_hash BYTEA NOT NULL,
        signed_at BIGINT NOT NULL,
        key_id TEXT NOT NULL,
        public_key TEXT NOT NULL,
        signature BYTEA NOT NULL
    )",
];

/// Columns added after the first release, with their definitions: tables created
/// before them get them at open (see [`migrate`]).
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("producer_id", "producer_id VARCHAR(128)"),
    ("producer_seq", "producer_seq BIGINT"),
];

/// Indexes on added columns, created once the columns exist.
const ADDED_INDEXES: &[&str] = &["CREATE INDEX IF NOT EXISTS audit_events_producer
        ON audit_events (producer_id, producer_seq)"];

/// The whole batch in one statement: each column travels as one array parameter, so
/// the statement text and its eleven binds are the same for any batch size (prepared
/// once per connection, no bind limit). `WITH ORDINALITY ... ORDER BY` makes rows
/// draw their `seq` from the sequence in batch order. Ids go as text and are cast,
/// which keeps the driver free of a UUID type feature; events without a producer
/// number have NULL in the producer arrays. `ON CONFLICT DO NOTHING` makes
/// redelivery harmless, and `rows_affected` counts exactly the rows inserted.
const INSERT: &str = "INSERT INTO audit_events
        (id, action, timestamp, actor_type, actor_id, target_type, target_id, received_at, body,
            producer_id, producer_seq)
    SELECT b.id, b.action, b.timestamp, b.actor_type, b.actor_id, b.target_type, b.target_id,
        $11, b.body, b.producer_id, b.producer_seq
    FROM UNNEST($1::text[]::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::text[], $9::text[], $10::int8[])
        WITH ORDINALITY
        AS b (id, action, timestamp, actor_type, actor_id, target_type, target_id, body,
            producer_id, producer_seq, ord)
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
        advisory_lock(&mut tx, SCHEMA_LOCK).await?;
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        migrate(&mut tx).await?;
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

/// Adds the columns and indexes of [`ADDED_COLUMNS`] and [`ADDED_INDEXES`] that are
/// missing, inside the schema transaction (whose advisory lock already makes
/// concurrent opens take turns). A column is looked up before `ADD COLUMN IF NOT
/// EXISTS` because `ALTER TABLE` takes its ACCESS EXCLUSIVE lock even when the column
/// is there: on a live store that lock would wait for every running query and stall
/// every reader and writer of the other auditors behind it, at each start.
async fn migrate(tx: &mut PgConnection) -> Result<(), StoreError> {
    for (name, definition) in ADDED_COLUMNS {
        let present: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute
                WHERE attrelid = 'audit_events'::regclass AND attname = $1
                    AND NOT attisdropped)",
        )
        .bind(*name)
        .fetch_one(&mut *tx)
        .await
        .map_err(store_error)?;
        if !present {
            // Identifiers cannot be bound; the text is a constant of this module. A
            // nullable column without a default is a catalogue change only, however
            // large the table.
            let alter = format!("ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS {definition}");
            sqlx::raw_sql(AssertSqlSafe(alter))
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
    }
    for statement in ADDED_INDEXES {
        sqlx::query(*statement)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

/// PostgreSQL's spelling of the shared statements. The body is read as `json`, not
/// `jsonb`, which would refuse a stored `\u0000`. Ids travel as text, which keeps
/// the driver free of a UUID type feature.
const DIALECT: Dialect<Postgres> = Dialect {
    columns: "id::text AS id, seq, timestamp, body",
    bind_id: |sql, id| {
        sql.push_bind(id.to_string()).push("::uuid");
    },
    decode_id: id_from_text,
    event_name: "(body::json ->> 'eventName')",
    div: "/",
    producer_id: producer_id_text,
    keep_stored_head: "ON CONFLICT (seq) DO NOTHING",
};

/// Reads an `id::text AS id` column back into a UUID.
fn id_from_text(row: &PgRow) -> Result<uuid::Uuid, StoreError> {
    let id: String = row.try_get("id").map_err(store_error)?;
    uuid::Uuid::parse_str(&id)
        .map_err(|e| StoreError::Backend(format!("a stored id is not a UUID: {e}")))
}

/// Takes the transaction-scoped advisory lock `key` (see [`SCHEMA_LOCK`]), waiting
/// for whoever holds it.
async fn advisory_lock(tx: &mut PgConnection, key: i64) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(tx)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// One column of `chunk`, as [`INSERT`] binds it: an array per column.
fn column<'r, T>(chunk: &'r [EventRow<'_>], value: impl Fn(&'r EventRow<'_>) -> T) -> Vec<T> {
    chunk.iter().map(value).collect()
}

impl PostgresStore {
    /// The shared statements on this store's pool.
    fn sql(&self) -> GenericStore<'_, Postgres> {
        GenericStore::new(&self.pool, &DIALECT)
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn insert_batch(&self, events: &[DataEvent]) -> Result<InsertOutcome, StoreError> {
        if events.is_empty() {
            return Ok(InsertOutcome::default());
        }
        let rows = unique_rows(events);
        let received_at = auditlog_event::now_ms();
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        // One writer at a time per database: a sequence hands out numbers at insert
        // time, so two overlapping writers could commit out of `seq` order. Holding
        // the lock until commit makes `seq` order commit order, as with SQLite's
        // single writer, which is what a later sealing step can rely on.
        advisory_lock(&mut tx, WRITER_LOCK).await?;
        let mut inserted = 0;
        for chunk in chunks(&rows, usize::MAX, MAX_STATEMENT_BYTES) {
            let done = sqlx::query(INSERT)
                .bind(column(chunk, |r| r.id.to_string()))
                .bind(column(chunk, |r| r.action))
                .bind(column(chunk, |r| r.timestamp))
                .bind(column(chunk, |r| r.actor_type))
                .bind(column(chunk, |r| r.actor_id.as_str()))
                .bind(column(chunk, |r| r.target_type))
                .bind(column(chunk, |r| r.target_id.as_str()))
                .bind(column(chunk, |r| r.body.as_str()))
                .bind(column(chunk, |r| r.producer_id))
                .bind(column(chunk, |r| r.producer_seq))
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
        self.sql().query(query).await
    }

    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError> {
        self.sql().count(query).await
    }

    async fn get(&self, id: uuid::Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.sql().get(id).await
    }

    async fn stored_after(
        &self,
        query: &EventQuery,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.sql().stored_after(query, after_seq, limit).await
    }

    async fn last_seq(&self) -> Result<i64, StoreError> {
        self.sql().last_seq().await
    }

    async fn activity(
        &self,
        query: &EventQuery,
        bucket_ms: i64,
    ) -> Result<Vec<ActivityCount>, StoreError> {
        self.sql().activity(query, bucket_ms).await
    }

    async fn producers(&self) -> Result<Vec<ProducerProgress>, StoreError> {
        self.sql().producers().await
    }

    async fn stored_ids(&self, ids: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(STORED_IDS_CHUNK) {
            let texts: Vec<String> = chunk.iter().map(uuid::Uuid::to_string).collect();
            // A join on the unnested list: `id = ANY($1::text[]::uuid[])` casts the
            // whole array again for every row of a sequential scan (20 s for 5 000
            // ids in 20 000 rows); this casts each id once and probes the index.
            let rows = sqlx::query(
                "SELECT e.id::text AS id FROM UNNEST($1::text[]) AS wanted(id) \
                 JOIN audit_events e ON e.id = wanted.id::uuid",
            )
            .bind(texts)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
            for row in &rows {
                found.push(id_from_text(row)?);
            }
        }
        Ok(found)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.sql().ping().await
    }

    async fn seal(&self, max: u32) -> Result<SealOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        // Sealers take turns (several auditors may share the store); writers are
        // not blocked, and the writer lock keeps `seq` order commit order, so every
        // row this reads above the head is final.
        advisory_lock(&mut tx, SEAL_LOCK).await?;
        self.sql().seal(tx, max).await
    }

    async fn chain_head(&self) -> Result<ChainHead, StoreError> {
        self.sql().chain_head().await
    }

    async fn chain_after(&self, after_seq: i64, limit: u32) -> Result<Vec<ChainEntry>, StoreError> {
        self.sql().chain_after(after_seq, limit).await
    }

    async fn chain_link(&self, seq: i64) -> Result<Option<ChainLink>, StoreError> {
        self.sql().chain_link(seq).await
    }

    async fn save_head(&self, head: &SignedHead) -> Result<(), StoreError> {
        self.sql().save_head(head).await
    }

    async fn latest_head(&self) -> Result<Option<SignedHead>, StoreError> {
        self.sql().latest_head().await
    }
}
