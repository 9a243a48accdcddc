//! PostgreSQL backend: a pooled `PgPool`, one `UNNEST` insert per batch, the same
//! queries as every other backend.

use std::str::FromStr;

use async_trait::async_trait;
use auditlog_event::DataEvent;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, Postgres, Row};

use crate::chain::extend;
use crate::sql::{
    CHAIN_HEAD, CHAIN_PAGE, CONNECT_TIMEOUT, Dialect, LAST_SEQ, LATEST_HEAD, POOL_SIZE,
    ProducerRow, STORED_IDS_CHUNK, activity_count, activity_query, after_seq_query,
    chain_after_query, chain_entry, chain_head, chain_inserts, chain_link, chain_link_query,
    chunks, count_query, events_after_query, first_connection, get_query, into_page, page_query,
    producers_query, progress, prune_heads_query, save_head_query, signed_head, store_error, total,
    unique_rows,
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

/// PostgreSQL's spelling of the event queries. The body is read as `json`, not
/// `jsonb`, which would refuse a stored `\u0000`.
const DIALECT: Dialect<Postgres> = Dialect {
    columns: "id::text AS id, seq, timestamp, body",
    bind_id: |sql, id| {
        sql.push_bind(id.to_string()).push("::uuid");
    },
    event_name: "(body::json ->> 'eventName')",
    div: "/",
};

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
                .bind(chunk.iter().map(|r| r.producer_id).collect::<Vec<_>>())
                .bind(chunk.iter().map(|r| r.producer_seq).collect::<Vec<_>>())
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
        let (mut sql, page_size) = page_query(&DIALECT, query);
        let rows = sql
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        let events = rows
            .into_iter()
            .map(stored_event)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(into_page(events, page_size, query.order))
    }

    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError> {
        let row = count_query(&DIALECT, query)
            .build()
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        total(row.try_get("total").map_err(store_error)?)
    }

    async fn get(&self, id: uuid::Uuid) -> Result<Option<StoredEvent>, StoreError> {
        get_query(&DIALECT, id)
            .build()
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .map(stored_event)
            .transpose()
    }

    async fn stored_after(
        &self,
        query: &EventQuery,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        after_seq_query(&DIALECT, query, after_seq, limit)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(stored_event)
            .collect()
    }

    async fn last_seq(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(LAST_SEQ)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        row.try_get("last_seq").map_err(store_error)
    }

    async fn activity(
        &self,
        query: &EventQuery,
        bucket_ms: i64,
    ) -> Result<Vec<ActivityCount>, StoreError> {
        activity_query(&DIALECT, query, bucket_ms)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|row| {
                activity_count(
                    row.try_get("start").map_err(store_error)?,
                    row.try_get("action").map_err(store_error)?,
                    row.try_get("n").map_err(store_error)?,
                )
            })
            .collect()
    }

    async fn producers(&self) -> Result<Vec<ProducerProgress>, StoreError> {
        let rows = producers_query::<Postgres>()
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        progress(
            rows.into_iter()
                .map(producer_row)
                .collect::<Result<Vec<_>, _>>()?,
        )
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
            for row in rows {
                let id: String = row.try_get("id").map_err(store_error)?;
                found.push(
                    uuid::Uuid::parse_str(&id).map_err(|e| {
                        StoreError::Backend(format!("a stored id is not a UUID: {e}"))
                    })?,
                );
            }
        }
        Ok(found)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }
    async fn seal(&self, max: u32) -> Result<SealOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        // Sealers take turns (several auditors may share the store); writers are
        // not blocked, and the writer lock keeps `seq` order commit order, so every
        // row this reads above the head is final.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SEAL_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let row = sqlx::query(CHAIN_HEAD)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let mut head = chain_head(row.as_ref())?;
        let mut sealed = 0_u64;
        while sealed < u64::from(max) {
            let want = CHAIN_PAGE.min(max - sealed as u32);
            let rows = events_after_query(&DIALECT, head.seq, want)
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(store_error)?
                .into_iter()
                .map(stored_event)
                .collect::<Result<Vec<_>, _>>()?;
            let (entries, next) = extend(head, &rows);
            for mut insert in chain_inserts::<Postgres>(&entries) {
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
            }
            head = next;
            sealed += entries.len() as u64;
            if (rows.len() as u32) < want {
                break;
            }
        }
        tx.commit().await.map_err(store_error)?;
        Ok(SealOutcome { sealed, head })
    }

    async fn chain_head(&self) -> Result<ChainHead, StoreError> {
        let row = sqlx::query(CHAIN_HEAD)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        chain_head(row.as_ref())
    }

    async fn chain_after(&self, after_seq: i64, limit: u32) -> Result<Vec<ChainEntry>, StoreError> {
        chain_after_query::<Postgres>(after_seq, limit)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(chain_entry)
            .collect()
    }

    async fn chain_link(&self, seq: i64) -> Result<Option<ChainLink>, StoreError> {
        let rows = chain_link_query::<Postgres>(seq)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(chain_entry)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(chain_link(seq, rows))
    }

    async fn save_head(&self, head: &SignedHead) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        save_head_query::<Postgres>(head, "ON CONFLICT (seq) DO NOTHING")
            .build()
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        prune_heads_query::<Postgres>(head.head.seq)
            .build()
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn latest_head(&self) -> Result<Option<SignedHead>, StoreError> {
        sqlx::query(LATEST_HEAD)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?
            .as_ref()
            .map(signed_head)
            .transpose()
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

fn producer_row(row: PgRow) -> Result<ProducerRow, StoreError> {
    Ok(ProducerRow {
        producer_id: row.try_get("producer_id").map_err(store_error)?,
        events: row.try_get("events").map_err(store_error)?,
        last_seq: row.try_get("last_seq").map_err(store_error)?,
        gap_from: row.try_get("gap_from").map_err(store_error)?,
        gap_to: row.try_get("gap_to").map_err(store_error)?,
    })
}
