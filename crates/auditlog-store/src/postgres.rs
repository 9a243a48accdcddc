//! PostgreSQL backend: a pooled `PgPool`, one `UNNEST` insert per batch, the same
//! queries as every other backend, on an `audit_events` table partitioned by month
//! of the event's `timestamp` (`partitions.rs`: which months, when they are
//! created, the DEFAULT partition), with each id claimed in `audit_event_ids` so
//! that it is stored once across partitions. A store of an earlier release, whose
//! table is not partitioned, is converted in place when it is opened.
//!
//! Writers do not take turns: several auditors insert into one database in
//! parallel, each drawing `seq` values from the table's sequence as it inserts.
//! So a row can commit after another with a higher `seq`, and a reader that goes
//! by `seq` (the sealer, a live tail) must not read past a `seq` that a later
//! commit could still fill in. It reads up to the *settled* `seq` instead
//! ([`PostgresStore::settled_seq`]): the highest `seq` `M` it sees, once every
//! writer that was inserting when it saw `M` has ended. That is enough because a
//! sequence hands its numbers out in increasing order (with the default `CACHE
//! 1`): a row whose number is at most `M` drew it before `M`'s row committed, so
//! its transaction was already inserting, and holding its lock on the table, when
//! `M` was seen. A transaction that aborted has ended too: its numbers stay gaps
//! for good, and nothing waits for them.
//!
//! One auditor at a time seals ([`AuditStore::sealer_role`]): it holds a
//! session-level advisory lock on a connection of its own.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auditlog_event::DataEvent;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, Postgres, Row};

mod partitions;
mod statistics;

use partitions::{Month, Partitions};
use statistics::Statistics;

use crate::retention::{
    LegalHold, PruneBatch, PruneCursor, PruneRule, PrunedCount, RetentionPolicy,
};
use crate::sql::{
    CONNECT_TIMEOUT, Dialect, GenericStore, POOL_SIZE, RoleOptions, SEALER_SESSION_IDLE,
    STORED_IDS_CHUNK, SessionSealerRole, chunks, first_connection, on_conflict_do_nothing,
    role_connection, store_error, text_column, unique_rows,
};
use crate::{
    ActivityCount, AuditStore, ChainEntry, EventPage, EventQuery, EventRow, Hash, InsertOutcome,
    Leaf, LeafEntry, Migration, ProducerProgress, Read, SealOutcome, SealerRole, SignedHead,
    SinkRecord, StoreError, StoredCheckpoint, StoredEvent, redact,
};
use crate::{DataSubject, SubjectKey};

/// Keys of the advisory locks this store takes. Advisory locks are per database, so
/// stores in different databases never wait on each other. The schema and seal
/// locks are transaction-scoped; the sealer role's is held by a session.
/// (`…0002` was the writers' lock of earlier releases, when writers took turns.)
const SCHEMA_LOCK: i64 = 0x6175_6469_746c_0001;
const SEAL_LOCK: i64 = 0x6175_6469_746c_0003;
const SEALER_ROLE_LOCK: i64 = 0x6175_6469_746c_0004;

/// The highest `seq` this snapshot sees, and the writers inserting into
/// `audit_events` right now (their virtual transaction ids; every transaction has
/// one from its start, and holds the lock on it until it ends). `pg_locks` is
/// read while the statement runs, so after its snapshot was taken: a writer that
/// drew a number at or below `max_seq` and had not committed by then still holds
/// its `RowExclusiveLock` on the table (taken before it drew anything) and is
/// listed. Our own session is not a writer.
const HORIZON: &str = "SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit_events) AS max_seq,
    ARRAY(SELECT DISTINCT l.virtualtransaction FROM pg_locks l
        WHERE l.locktype = 'relation' AND l.mode = 'RowExclusiveLock' AND l.granted
            AND l.relation = 'audit_events'::regclass AND l.pid <> pg_backend_pid()
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    ) AS writers";

/// How many of the listed transactions (virtual ids) are still running.
const STILL_RUNNING: &str = "SELECT COUNT(*) FROM pg_locks
    WHERE locktype = 'virtualxid' AND virtualxid = ANY($1::text[])";

/// How long [`PostgresStore::settled_seq`] waits for the writers it saw to end. A
/// commit takes milliseconds; a writer that takes longer (a stalled auditor) only
/// holds back what is read above the last settled `seq`, until it ends or its
/// session is cut.
const SETTLE_PATIENCE: Duration = Duration::from_secs(2);

/// Pause between two looks at whether those writers have ended.
const SETTLE_POLL: Duration = Duration::from_millis(3);

/// Tries of an insert that PostgreSQL aborted as a deadlock victim. Parallel
/// writers can deadlock only on the unique index, when two batches carry the same
/// ids in different orders (a redelivery racing the first delivery); the other
/// batch then commits, and the retry finds those ids stored.
const DEADLOCK_TRIES: u32 = 3;

/// PostgreSQL's SQLSTATE for `deadlock_detected`.
const DEADLOCK: &str = "40P01";

/// Upper bound on the bytes one insert statement carries. PostgreSQL accepts up to
/// 1 GiB per message; staying far below keeps client and server memory in check
/// while any realistic batch still goes in one statement.
const MAX_STATEMENT_BYTES: usize = 64 * 1024 * 1024;

/// The tables other than `audit_events` (which [`create_events_table`] makes, or
/// [`partition_in_place`] converts), created when missing.
const SCHEMA: &[&str] = &[
    // One row per stored event id: the idempotency key. A unique constraint on a
    // partitioned table must include the partition key, so `audit_events` itself
    // cannot refuse the same id with another timestamp; this table does, for
    // every partition at once (see `INSERT`).
    "CREATE TABLE IF NOT EXISTS audit_event_ids (
        id UUID PRIMARY KEY
    )",
    // Which principal delivered each producer id first: the only one that may
    // deliver its events (see `AuditStore::bind_producer`).
    "CREATE TABLE IF NOT EXISTS audit_producers (
        producer_id VARCHAR(128) PRIMARY KEY,
        principal TEXT NOT NULL,
        bound_at BIGINT NOT NULL
    )",
    // Log streams (see `sinks.rs`): one row per sink, its definition as JSON
    // (the store does not read it), its cursor (the `seq` of the last event it
    // has delivered) and the lease naming the one auditor delivering it now.
    "CREATE TABLE IF NOT EXISTS audit_sinks (
        name VARCHAR(128) PRIMARY KEY,
        definition TEXT NOT NULL,
        cursor_seq BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        lease_holder TEXT,
        lease_until BIGINT NOT NULL
    )",
    // The log's Merkle tree (see `tree.rs`): one leaf per sealed event, numbered
    // in `seq` order.
    "CREATE TABLE IF NOT EXISTS audit_leaves (
        leaf_index BIGINT PRIMARY KEY,
        seq BIGINT NOT NULL UNIQUE,
        id UUID NOT NULL,
        leaf_hash BYTEA NOT NULL
    )",
    // Hashes of the complete subtrees at the tile levels 8, 16, ….
    "CREATE TABLE IF NOT EXISTS audit_nodes (
        level SMALLINT NOT NULL,
        idx BIGINT NOT NULL,
        hash BYTEA NOT NULL,
        PRIMARY KEY (level, idx)
    )",
    // Signed checkpoints, one per tree size.
    "CREATE TABLE IF NOT EXISTS audit_checkpoints (
        size BIGINT PRIMARY KEY,
        note TEXT NOT NULL,
        signed_at BIGINT NOT NULL
    )",
    // The record of migrating from the earlier releases' chain: at most one row.
    "CREATE TABLE IF NOT EXISTS audit_migrations (
        one SMALLINT PRIMARY KEY CHECK (one = 1),
        migrated_at BIGINT NOT NULL,
        chain_size BIGINT NOT NULL,
        chain_seq BIGINT NOT NULL,
        chain_hash TEXT NOT NULL,
        signed_head TEXT,
        outcome TEXT NOT NULL
    )",
    // The hash chain of earlier releases (see `legacy.rs`), one entry per event
    // they sealed; only read, to migrate such a store into the tree.
    "CREATE TABLE IF NOT EXISTS audit_chain (
        seq BIGINT PRIMARY KEY,
        position BIGINT NOT NULL,
        id BYTEA NOT NULL,
        leaf_hash BYTEA NOT NULL,
        chain_hash BYTEA NOT NULL
    )",
    // The earlier releases' signed chain heads; only read, like `audit_chain`.
    "CREATE TABLE IF NOT EXISTS audit_heads (
        seq BIGINT PRIMARY KEY,
        size BIGINT NOT NULL,
        chain_hash BYTEA NOT NULL,
        signed_at BIGINT NOT NULL,
        key_id TEXT NOT NULL,
        public_key TEXT NOT NULL,
        signature BYTEA NOT NULL
    )",
    // Retention (see `retention.rs`): each tenant's own policy, legal holds,
    // and one row per pruned leaf, whose event's row is gone on purpose.
    "CREATE TABLE IF NOT EXISTS audit_retention (
        tenant_id VARCHAR(64) PRIMARY KEY,
        days BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS audit_legal_holds (
        id UUID PRIMARY KEY,
        tenant_id VARCHAR(64) NOT NULL,
        target_type VARCHAR(64),
        target_id VARCHAR(128),
        reason TEXT NOT NULL,
        placed_by VARCHAR(256) NOT NULL,
        placed_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS audit_pruned (
        leaf_index BIGINT PRIMARY KEY,
        seq BIGINT NOT NULL,
        tenant_id VARCHAR(64) NOT NULL,
        timestamp BIGINT NOT NULL,
        pruned_at BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS audit_pruned_tenant ON audit_pruned (tenant_id, timestamp)",
    // One encryption key per data subject (see `AuditStore::subject_keys`):
    // what makes the personal values in events readable. Never part of a leaf;
    // deleting a row erases that subject's values (crypto-shredding).
    "CREATE TABLE IF NOT EXISTS audit_subject_keys (
        tenant_id VARCHAR(64) NOT NULL,
        subject_type VARCHAR(64) NOT NULL,
        subject_id VARCHAR(128) NOT NULL,
        subject_key BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, subject_type, subject_id)
    )",
];

/// The events table, partitioned by the event's `timestamp` (see `partitions.rs`
/// for why that key and which months get a partition), with its DEFAULT
/// partition. `seq` draws from a sequence of its own name rather than a
/// `BIGSERIAL`, so that a table converted from an earlier release keeps drawing
/// from the sequence it had. No primary key or index yet: [`EVENT_INDEXES`] adds
/// them, after a conversion has copied the rows (building an index once is
/// faster than keeping it up to date row by row).
const EVENTS_TABLE: &[&str] = &[
    "CREATE SEQUENCE IF NOT EXISTS audit_events_seq_seq",
    "CREATE TABLE audit_events (
        seq BIGINT NOT NULL DEFAULT nextval('audit_events_seq_seq'),
        id UUID NOT NULL,
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
        producer_seq BIGINT,
        tenant_id VARCHAR(64)
    ) PARTITION BY RANGE (timestamp)",
    "ALTER SEQUENCE audit_events_seq_seq OWNED BY audit_events.seq",
    "CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT",
];

/// The indexes of the partitioned `audit_events`, by name (each partition gets
/// its own copy). Each is created only when its name is missing: `CREATE INDEX IF
/// NOT EXISTS` would take its SHARE lock on the table, stalling every writer,
/// at each start. The primary key includes the partition key, as PostgreSQL
/// requires; `seq` alone is unique by its sequence, and `id` by
/// `audit_event_ids`. The plain index on `id` serves lookups by id (one probe per
/// partition).
const EVENT_INDEXES: &[(&str, &str)] = &[
    (
        "audit_events_pkey",
        "ALTER TABLE audit_events ADD CONSTRAINT audit_events_pkey PRIMARY KEY (seq, timestamp)",
    ),
    (
        "audit_events_id",
        "CREATE INDEX audit_events_id ON audit_events (id)",
    ),
    (
        "audit_events_actor_time",
        "CREATE INDEX audit_events_actor_time
            ON audit_events (actor_type, actor_id, timestamp DESC, id DESC)",
    ),
    (
        "audit_events_target_time",
        "CREATE INDEX audit_events_target_time
            ON audit_events (target_type, target_id, timestamp DESC, id DESC)",
    ),
    (
        "audit_events_time",
        "CREATE INDEX audit_events_time ON audit_events (timestamp DESC, id DESC)",
    ),
    (
        "audit_events_producer",
        "CREATE INDEX audit_events_producer ON audit_events (producer_id, producer_seq)",
    ),
    (
        "audit_events_tenant_time",
        "CREATE INDEX audit_events_tenant_time
            ON audit_events (tenant_id, timestamp DESC, id DESC) WHERE tenant_id IS NOT NULL",
    ),
];

/// Columns added after the first release to the unpartitioned table, with their
/// definitions: a table created before them gets them (see [`migrate`]) before it
/// is converted.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("producer_id", "producer_id VARCHAR(128)"),
    ("producer_seq", "producer_seq BIGINT"),
    ("tenant_id", "tenant_id VARCHAR(64)"),
];

/// Every column of `audit_events`, in table order: what a conversion copies.
const EVENT_COLUMNS: &str = "seq, id, action, timestamp, actor_type, actor_id, target_type, \
     target_id, received_at, body, producer_id, producer_seq, tenant_id";

/// Clears the renamed unpartitioned table of what would clash with the new one:
/// its constraints and indexes (their names are the new table's), and its claim
/// on the `seq` sequence, which the new table goes on drawing from (renamed to
/// the name the new table expects, should an old release have named it
/// otherwise).
const DISOWN_OLD_TABLE: &str = "DO $$
DECLARE
    r record;
    seq_name text := pg_get_serial_sequence('audit_events_unpartitioned', 'seq');
BEGIN
    FOR r IN SELECT conname FROM pg_constraint
        WHERE conrelid = 'audit_events_unpartitioned'::regclass AND contype IN ('p', 'u', 'x')
    LOOP
        EXECUTE format('ALTER TABLE audit_events_unpartitioned DROP CONSTRAINT %I', r.conname);
    END LOOP;
    FOR r IN SELECT n.nspname, c.relname FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE i.indrelid = 'audit_events_unpartitioned'::regclass
    LOOP
        EXECUTE format('DROP INDEX %I.%I', r.nspname, r.relname);
    END LOOP;
    IF seq_name IS NOT NULL THEN
        EXECUTE format('ALTER SEQUENCE %s OWNED BY NONE', seq_name);
        IF to_regclass('audit_events_seq_seq') IS NULL THEN
            EXECUTE format('ALTER SEQUENCE %s RENAME TO audit_events_seq_seq', seq_name);
        END IF;
    END IF;
END $$";

/// The whole batch in one statement: each column travels as one array parameter, so
/// the statement text and its eleven binds are the same for any batch size (prepared
/// once per connection, no bind limit). Each id is first claimed in
/// `audit_event_ids`; only the rows whose claim was new (`RETURNING`) go into
/// `audit_events`, so an id is stored once whatever its timestamp (its
/// partition), redelivery is harmless, and `rows_affected` counts exactly the
/// events stored. A concurrent writer claiming the same id waits for the first
/// one's commit and then skips it. `WITH ORDINALITY ... ORDER BY` makes rows draw
/// their `seq` from the sequence in batch order. Ids go as text and are cast,
/// which keeps the driver free of a UUID type feature; events without a producer
/// number have NULL in the producer arrays.
const INSERT: &str = "WITH b AS (
        SELECT * FROM UNNEST($1::text[]::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[],
                $6::text[], $7::text[], $8::text[], $9::text[], $10::int8[], $12::text[])
            WITH ORDINALITY
            AS b (id, action, timestamp, actor_type, actor_id, target_type, target_id, body,
                producer_id, producer_seq, tenant_id, ord)
    ), claimed AS (
        INSERT INTO audit_event_ids (id) SELECT id FROM b ORDER BY ord
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    )
    INSERT INTO audit_events
        (id, action, timestamp, actor_type, actor_id, target_type, target_id, received_at, body,
            producer_id, producer_seq, tenant_id)
    SELECT b.id, b.action, b.timestamp, b.actor_type, b.actor_id, b.target_type, b.target_id,
        $11, b.body, b.producer_id, b.producer_seq, b.tenant_id
    FROM b JOIN claimed ON claimed.id = b.id
    ORDER BY b.ord";

/// The PostgreSQL audit store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// To open the sealer role's session, which is not one of the pool's.
    options: RoleOptions<PgConnectOptions>,
    /// The highest settled `seq` this process has worked out. Settled stays
    /// settled (later writers draw higher numbers), so this is a safe bound to
    /// fall back on while a writer keeps a newer one from settling.
    settled: Arc<AtomicI64>,
    /// The months known to have their partition (see `partitions.rs`).
    partitions: Arc<Partitions>,
    /// When the sealer last looked for tables to analyze (see `statistics.rs`).
    statistics: Arc<Statistics>,
}

impl PostgresStore {
    /// Connects to the database a `postgres://` or `postgresql://` URL names and
    /// creates the schema if it is missing, or converts an unpartitioned
    /// `audit_events` of an earlier release into the partitioned table. The
    /// database itself must exist.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = connect_options(url)?;
        let mut conn =
            first_connection("PostgreSQL", url, PgConnection::connect_with(&options)).await?;
        let partitions = Arc::new(Partitions::default());
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
        // `r`: the plain table of earlier releases; `p`: already partitioned.
        let kind: Option<String> = sqlx::query_scalar(
            "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass('audit_events')",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(store_error)?;
        match kind.as_deref() {
            None => create_events_table(&mut tx).await?,
            Some("r") => {
                migrate(&mut tx).await?;
                partition_in_place(&mut tx, &partitions).await?;
            }
            // A partitioned table of an earlier release may miss later columns.
            Some("p") => migrate(&mut tx).await?,
            Some(other) => {
                return Err(StoreError::Backend(format!(
                    "audit_events is not a table (relkind `{other}`)"
                )));
            }
        }
        create_missing_indexes(&mut tx).await?;
        tx.commit().await.map_err(store_error)?;
        // Closing is a courtesy to the server; the schema is committed either way.
        let _ = conn.close().await;
        // The server has just answered, so the pool may connect on demand.
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options.clone());
        let store = PostgresStore {
            pool,
            options: RoleOptions(options),
            settled: Arc::new(AtomicI64::new(0)),
            partitions,
            statistics: Arc::default(),
        };
        // The current month and those ahead; on a live store this waits for
        // locks briefly at most, and a failure only sends events to the DEFAULT
        // partition until the insert path's next try.
        store
            .create_partitions(std::iter::empty(), auditlog_event::now_ms())
            .await;
        Ok(store)
    }

    /// Connects to an existing store for reading only, changing nothing in its
    /// schema: for a read-only role or a streaming replica, which serve the
    /// auditor's query routes (`--query-store-url`). Every transaction on it is
    /// read-only (`default_transaction_read_only`), so a write through it fails
    /// even where the role could write.
    pub async fn open_read_only(url: &str) -> Result<Self, StoreError> {
        let options = connect_options(url)?.options([("default_transaction_read_only", "on")]);
        let mut conn =
            first_connection("PostgreSQL", url, PgConnection::connect_with(&options)).await?;
        let present: bool = sqlx::query_scalar("SELECT to_regclass('audit_events') IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .map_err(store_error)?;
        let _ = conn.close().await;
        if !present {
            return Err(StoreError::Backend(format!(
                "there is no audit store at {}: open it with the main store URL first",
                redact(url)
            )));
        }
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options.clone());
        Ok(PostgresStore {
            pool,
            options: RoleOptions(options),
            settled: Arc::new(AtomicI64::new(0)),
            partitions: Arc::new(Partitions::default()),
            statistics: Arc::default(),
        })
    }

    /// Creates the partitions that events with these timestamps need at `now_ms`
    /// and that this process does not know of (see `partitions.rs`), in a
    /// transaction of their own. A failure is logged, not returned: the events
    /// then go to the DEFAULT partition, and a later try moves them.
    async fn create_partitions(&self, timestamps: impl Iterator<Item = i64>, now_ms: i64) {
        let missing = self.partitions.missing(timestamps, now_ms);
        if missing.is_empty() {
            return;
        }
        let result = async {
            let mut tx = self.pool.begin().await.map_err(store_error)?;
            self.partitions.create(&mut tx, &missing).await?;
            tx.commit().await.map_err(store_error)
        }
        .await;
        if let Err(err) = result {
            self.partitions.failed(now_ms);
            tracing::warn!(
                error = %err,
                "could not create the audit store's monthly partitions; events of those \
                 months go to the DEFAULT partition meanwhile, and are moved at the next try"
            );
        }
    }

    /// The settled `seq`: every row at or below it that will ever commit has
    /// committed (see the module's documentation). Waits up to
    /// [`SETTLE_PATIENCE`] for the writers in flight; if one is still going, answers
    /// the last settled `seq` this process knew instead.
    async fn settled_seq(&self) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(store_error)?;
        let row = sqlx::query(HORIZON)
            .fetch_one(&mut *conn)
            .await
            .map_err(store_error)?;
        let max_seq: i64 = row.try_get("max_seq").map_err(store_error)?;
        let writers: Vec<String> = row.try_get("writers").map_err(store_error)?;
        if !writers.is_empty() {
            let deadline = Instant::now() + SETTLE_PATIENCE;
            loop {
                let running: i64 = sqlx::query_scalar(STILL_RUNNING)
                    .bind(&writers)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(store_error)?;
                if running == 0 {
                    break;
                }
                if Instant::now() >= deadline {
                    return Ok(self.settled.load(Ordering::Relaxed));
                }
                tokio::time::sleep(SETTLE_POLL).await;
            }
        }
        Ok(self
            .settled
            .fetch_max(max_seq, Ordering::Relaxed)
            .max(max_seq))
    }

    /// One try of [`AuditStore::insert_batch`]: the rows inserted, or the driver's
    /// error (so that a deadlock can be told apart).
    async fn insert_once(
        &self,
        rows: &[crate::sql::EventRow<'_>],
        received_at: i64,
    ) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for chunk in chunks(rows, usize::MAX, MAX_STATEMENT_BYTES) {
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
                .bind(column(chunk, |r| r.tenant_id))
                .execute(&mut *tx)
                .await?;
            inserted += done.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }
}

/// The connection options of a `postgres://` or `postgresql://` URL, with custom
/// plans for every prepared statement. After five runs PostgreSQL may switch a
/// prepared statement to a generic plan, which cannot know which partitions a
/// time range selects: it reads them all and sorts, where the custom plan reads
/// one partition's index in order and stops at the page's end (for a hot actor's
/// day on the 10 000 000-event benchmark store: 37 ms against 0.07 ms). Planning
/// each query costs a fraction of a millisecond.
fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Unavailable(format!("bad PostgreSQL URL `{}`: {e}", redact(url))))?
        .options([("plan_cache_mode", "force_custom_plan")]))
}

/// Whether PostgreSQL aborted the transaction to break a deadlock.
fn is_deadlock(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == DEADLOCK)
}

/// Adds the columns of [`ADDED_COLUMNS`] that an unpartitioned table of an
/// earlier release lacks, inside the schema transaction, before
/// [`partition_in_place`] copies its rows.
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
    Ok(())
}

/// Creates the partitioned `audit_events` and its DEFAULT partition (its indexes
/// come from [`create_missing_indexes`]).
async fn create_events_table(tx: &mut PgConnection) -> Result<(), StoreError> {
    for statement in EVENTS_TABLE {
        sqlx::query(*statement)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

/// Converts the unpartitioned `audit_events` of an earlier release into the
/// partitioned table, inside the schema transaction, so that a failure (or a
/// crash) leaves the old table as it was. Every row is copied with all its
/// columns, `seq` included, so the Merkle tree's leaves (made of `seq`,
/// `received_at` and `body`, kept in `audit_leaves` by `seq`) and the checkpoints
/// stay valid; the sequence goes on from where it was. Each month of the stored
/// events within the window gets its partition before the copy, so the rows land
/// where queries will look for them; the indexes are built after it, in one pass
/// per partition, and the new partitions analyzed: until autovacuum gets to them,
/// a partition without statistics makes the planner guess, and it guesses
/// parallel scans for lookups by id. The rename takes an ACCESS EXCLUSIVE lock:
/// other auditors wait for the conversion, which takes as long as copying the
/// table once.
async fn partition_in_place(
    tx: &mut PgConnection,
    partitions: &Partitions,
) -> Result<(), StoreError> {
    sqlx::raw_sql("ALTER TABLE audit_events RENAME TO audit_events_unpartitioned")
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    sqlx::raw_sql(DISOWN_OLD_TABLE)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    create_events_table(&mut *tx).await?;
    let (oldest, newest): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT MIN(timestamp), MAX(timestamp) FROM audit_events_unpartitioned")
            .fetch_one(&mut *tx)
            .await
            .map_err(store_error)?;
    if let (Some(oldest), Some(newest)) = (oldest, newest) {
        let (first, last) = partitions::window(auditlog_event::now_ms());
        let from = Month::of_ms(oldest).max(first);
        let to = Month::of_ms(newest).min(last);
        let mut months = Vec::new();
        let mut month = from;
        while month <= to {
            months.push(month);
            month = month.plus(1);
        }
        partitions.create(&mut *tx, &months).await?;
    }
    let copy = format!(
        "INSERT INTO audit_events ({EVENT_COLUMNS})
            SELECT {EVENT_COLUMNS} FROM audit_events_unpartitioned;
        INSERT INTO audit_event_ids (id) SELECT id FROM audit_events_unpartitioned
            ON CONFLICT (id) DO NOTHING;
        DROP TABLE audit_events_unpartitioned;
        SELECT setval('audit_events_seq_seq', m) FROM (SELECT MAX(seq) AS m FROM audit_events) x
            WHERE m > (SELECT last_value FROM audit_events_seq_seq);
        ANALYZE audit_events, audit_event_ids"
    );
    sqlx::raw_sql(AssertSqlSafe(copy))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Creates each index of [`EVENT_INDEXES`] whose name is missing (all of them on
/// a new or just converted table, none at a later start).
async fn create_missing_indexes(tx: &mut PgConnection) -> Result<(), StoreError> {
    for (name, statement) in EVENT_INDEXES {
        let present: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(*name)
            .fetch_one(&mut *tx)
            .await
            .map_err(store_error)?;
        if !present {
            sqlx::query(*statement)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
    }
    Ok(())
}

/// PostgreSQL's spelling of the shared statements. The body is read as `json`, not
/// `jsonb`, which would refuse a stored `\u0000`. Ids travel as text, which keeps
/// the driver free of a UUID type feature.
const DIALECT: Dialect<Postgres> = Dialect {
    columns: "id::text AS id, seq, timestamp, received_at, body",
    select_id: |column| format!("{column}::text"),
    bind_id: |sql, id| {
        sql.push_bind(id.to_string()).push("::uuid");
    },
    decode_id: id_from_text,
    text: text_column,
    event_name: "(body::json ->> 'eventName')",
    div: "/",
    keep_existing: on_conflict_do_nothing,
    object_keys: false,
    tenant_off_index: "tenant_id",
    rows_affected: |done| done.rows_affected(),
};

/// Reads an id selected as text (`id::text`) back into a UUID.
fn id_from_text(row: &PgRow, column: &str) -> Result<uuid::Uuid, StoreError> {
    let id: String = row.try_get(column).map_err(store_error)?;
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
fn column<'r, T>(
    chunk: &'r [crate::sql::EventRow<'_>],
    value: impl Fn(&'r crate::sql::EventRow<'_>) -> T,
) -> Vec<T> {
    chunk.iter().map(value).collect()
}

impl PostgresStore {
    /// The shared statements on this store's pool.
    fn sql(&self) -> GenericStore<'_, Postgres> {
        GenericStore::new(&self.pool, &DIALECT)
    }

    /// Analyzes, in a task of its own, the tables autovacuum has left without
    /// fresh statistics (see `statistics.rs`).
    fn analyze_stale_tables(&self) {
        let pool = self.pool.clone();
        let checks = Arc::clone(&self.statistics);
        tokio::spawn(async move {
            match statistics::analyze_stale(&pool).await {
                Ok(tables) if tables.is_empty() => {}
                Ok(tables) => tracing::info!(
                    tables = %tables.join(", "),
                    "analyzed tables that autovacuum had not, so that queries are planned \
                     from their statistics"
                ),
                Err(err) => {
                    tracing::warn!(%err, "could not analyze the store's tables; trying again later")
                }
            }
            checks.done();
        });
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
        // Usually nothing to do: the months this batch needs are known to have
        // their partitions.
        self.create_partitions(rows.iter().map(|r| r.timestamp), received_at)
            .await;
        // No lock: writers insert in parallel, and readers by `seq` go only up to
        // the settled `seq` (see the module's documentation).
        let mut tries = 1;
        let inserted = loop {
            match self.insert_once(&rows, received_at).await {
                Ok(inserted) => break inserted,
                Err(err) if is_deadlock(&err) && tries < DEADLOCK_TRIES => tries += 1,
                Err(err) => return Err(store_error(err)),
            }
        };
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
        let settled = self.settled_seq().await?;
        self.sql()
            .stored_after(query, after_seq, limit, Some(settled))
            .await
    }

    async fn last_seq(&self) -> Result<i64, StoreError> {
        self.settled_seq().await
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
                found.push(id_from_text(row, "id")?);
            }
        }
        Ok(found)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.sql().ping().await
    }

    async fn seal(&self, max: u32) -> Result<SealOutcome, StoreError> {
        // Worked out before the transaction begins, so that its statements see
        // every row up to it.
        let settled = self.settled_seq().await?;
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        // Normally only the holder of the sealer role seals; should two processes
        // both think they hold it (one cut off, not yet told), they take turns
        // here, and the second one starts from the first one's last leaf.
        advisory_lock(&mut tx, SEAL_LOCK).await?;
        let outcome = self.sql().seal(tx, max, Some(settled)).await?;
        if self.statistics.sealed(outcome.sealed) {
            self.analyze_stale_tables();
        }
        Ok(outcome)
    }

    async fn sealer_role(&self) -> Result<Option<Box<dyn SealerRole>>, StoreError> {
        let mut conn =
            role_connection("PostgreSQL", PgConnection::connect_with(&self.options.0)).await?;
        // PostgreSQL 14 and later end a session idle this long; older servers lack
        // the setting, and then only a dead process's closed socket frees the role.
        let idle = format!(
            "SET idle_session_timeout = {}",
            SEALER_SESSION_IDLE.as_millis()
        );
        let _ = sqlx::raw_sql(AssertSqlSafe(idle)).execute(&mut conn).await;
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(SEALER_ROLE_LOCK)
            .fetch_one(&mut conn)
            .await
            .map_err(store_error)?;
        if !held {
            let _ = conn.close().await;
            return Ok(None);
        }
        Ok(Some(Box::new(SessionSealerRole(conn))))
    }

    async fn tree_size(&self) -> Result<u64, StoreError> {
        self.sql().tree_size().await
    }

    async fn tree_hashes(&self, reads: &[Read]) -> Result<Vec<(Read, Vec<Hash>)>, StoreError> {
        self.sql().tree_hashes(reads).await
    }

    async fn leaf_of(&self, id: uuid::Uuid) -> Result<Option<Leaf>, StoreError> {
        self.sql().leaf_of(id).await
    }

    async fn leaves(&self, start: u64, end: u64) -> Result<Vec<Leaf>, StoreError> {
        self.sql().leaves(start, end).await
    }

    async fn leaf_entries(&self, from: u64, limit: u32) -> Result<Vec<LeafEntry>, StoreError> {
        self.sql().leaf_entries(from, limit).await
    }

    async fn rows_after(&self, after_seq: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        self.sql().rows_after(after_seq, limit).await
    }

    async fn sinks(&self) -> Result<Vec<SinkRecord>, StoreError> {
        self.sql().sinks().await
    }

    async fn create_sink(
        &self,
        name: &str,
        definition: &str,
        cursor: i64,
    ) -> Result<bool, StoreError> {
        self.sql().create_sink(name, definition, cursor).await
    }

    async fn update_sink(&self, name: &str, definition: &str) -> Result<bool, StoreError> {
        self.sql().update_sink(name, definition).await
    }

    async fn delete_sink(&self, name: &str) -> Result<bool, StoreError> {
        self.sql().delete_sink(name).await
    }

    async fn lease_sink(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        self.sql().lease_sink(name, holder, now_ms, lease_ms).await
    }

    async fn release_sink(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.sql().release_sink(name, holder).await
    }

    async fn advance_sink(
        &self,
        name: &str,
        holder: &str,
        cursor: i64,
    ) -> Result<bool, StoreError> {
        self.sql().advance_sink(name, holder, cursor).await
    }

    async fn bind_producer(
        &self,
        producer_id: &str,
        principal: &str,
    ) -> Result<String, StoreError> {
        self.sql().bind_producer(producer_id, principal).await
    }

    async fn ensure_subject_keys(
        &self,
        candidates: &[SubjectKey],
    ) -> Result<Vec<SubjectKey>, StoreError> {
        self.sql().ensure_subject_keys(candidates).await
    }

    async fn subject_keys(&self, subjects: &[DataSubject]) -> Result<Vec<SubjectKey>, StoreError> {
        self.sql().subject_keys(subjects).await
    }

    /// The row is deleted; the server's own copies (dead row versions until
    /// vacuum or purge, its write-ahead log, backups) are the operator's to age out.
    async fn erase_subject_key(&self, subject: &DataSubject) -> Result<bool, StoreError> {
        self.sql().erase_subject_key(subject).await
    }

    async fn retention_policies(&self) -> Result<Vec<RetentionPolicy>, StoreError> {
        self.sql().retention_policies().await
    }

    async fn set_retention(&self, tenant: &str, days: Option<u32>) -> Result<(), StoreError> {
        self.sql().set_retention(tenant, days).await
    }

    async fn legal_holds(&self) -> Result<Vec<LegalHold>, StoreError> {
        self.sql().legal_holds().await
    }

    async fn place_hold(&self, hold: &LegalHold) -> Result<(), StoreError> {
        self.sql().place_hold(hold).await
    }

    async fn release_hold(&self, id: uuid::Uuid) -> Result<Option<LegalHold>, StoreError> {
        self.sql().release_hold(id).await
    }

    async fn prune_batch(
        &self,
        rule: &PruneRule,
        after: Option<PruneCursor>,
        limit: u32,
    ) -> Result<PruneBatch, StoreError> {
        self.sql().prune_batch(rule, after, limit).await
    }

    async fn prune_partitions(&self, rule: &PruneRule) -> Result<u64, StoreError> {
        let Some(latest) = rule.latest_cutoff() else {
            return Ok(0);
        };
        let months = {
            let mut conn = self.pool.acquire().await.map_err(store_error)?;
            partitions::ended_before(&mut conn, latest).await?
        };
        let holds = self.sql().legal_holds().await?;
        let delivered = self.sql().delivered_by_every_sink().await?;
        let mut pruned = 0;
        for month in months {
            let mut tx = self.pool.begin().await.map_err(store_error)?;
            match partitions::drop_if_prunable(
                &mut tx,
                &self.sql(),
                &DIALECT,
                month,
                rule,
                &holds,
                delivered,
            )
            .await
            {
                Ok(Some(events)) => {
                    tx.commit().await.map_err(store_error)?;
                    self.partitions.forget(month);
                    tracing::info!(partition = %month.table(), events, "dropped an expired partition");
                    pruned += events;
                }
                // A row that must stay: its rows are pruned one by one instead.
                Ok(None) => {}
                // A lock not granted in time (busy readers) is not a failure of
                // pruning: the rows go one by one instead.
                Err(StoreError::Backend(reason)) if reason.contains("lock timeout") => {
                    tracing::warn!(partition = %month.table(), %reason, "an expired partition stays for now");
                }
                Err(other) => return Err(other),
            }
        }
        Ok(pruned)
    }

    async fn pruned_count(&self, tenant: Option<&str>) -> Result<PrunedCount, StoreError> {
        self.sql().pruned_count(tenant).await
    }

    async fn pruned_leaves(&self, start: u64, end: u64) -> Result<Vec<u64>, StoreError> {
        self.sql().pruned_leaves(start, end).await
    }

    async fn save_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        self.sql().save_checkpoint(checkpoint).await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.sql().latest_checkpoint().await
    }

    async fn checkpoints_after(
        &self,
        after_size: u64,
        limit: u32,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.sql().checkpoints_after(after_size, limit).await
    }

    async fn legacy_chain_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        self.sql().legacy_chain_after(after_seq, limit).await
    }

    async fn legacy_head(&self) -> Result<Option<SignedHead>, StoreError> {
        self.sql().legacy_head().await
    }

    async fn save_migration(&self, migration: &Migration) -> Result<(), StoreError> {
        self.sql().save_migration(migration).await
    }

    async fn migration(&self) -> Result<Option<Migration>, StoreError> {
        self.sql().migration().await
    }
}
