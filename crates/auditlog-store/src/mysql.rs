//! MySQL / MariaDB backend (the prototype's database): a pooled `MySqlPool`, batches
//! inserted with multi-row inserts after a locking look-up of the ids already
//! stored, the same queries as every other backend.
//!
//! Unlike PostgreSQL's, writers here still take turns (one row lock), so that
//! `seq` order is commit order and every committed `seq` is settled. InnoDB has
//! no cheap equivalent of the snapshot and lock views PostgreSQL's readers use to
//! tell a `seq` gap that a running transaction will still fill from one it never
//! will (`information_schema.innodb_trx` does not say which `AUTO_INCREMENT`
//! values a transaction holds). Several auditors on one MySQL store add
//! availability, and share the broker's work, but not the store's write rate.
//!
//! One auditor at a time seals ([`AuditStore::sealer_role`]): it holds a named
//! lock (`GET_LOCK`) on a connection of its own.

use std::borrow::Cow;
use std::collections::HashSet;
use std::str::FromStr;

use async_trait::async_trait;
use auditlog_event::DataEvent;
use sqlx::mysql::{
    MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool, MySqlPoolOptions, MySqlRow,
};
use sqlx::{Connection, MySql, Row};

use crate::retention::{
    LegalHold, PruneBatch, PruneCursor, PruneRule, PrunedCount, RetentionPolicy,
};
use crate::sql::{
    CONNECT_TIMEOUT, Dialect, GenericStore, POOL_SIZE, RoleOptions, SEALER_SESSION_IDLE,
    SessionSealerRole, bind_id_bytes, chunks, first_connection, id_from_bytes, insert_values,
    role_connection, select_id_as_stored, store_error, unique_rows,
};
use crate::{
    ActivityCount, AuditStore, ChainEntry, EventPage, EventQuery, EventRow, Hash, InsertOutcome,
    Leaf, LeafEntry, Migration, ProducerProgress, Read, SealOutcome, SealerRole, SignedHead,
    SinkRecord, StoreError, StoredCheckpoint, StoredEvent, redact,
};
use crate::{DataSubject, SubjectKey};

/// Takes the sealer role's named lock without waiting: 1 when taken, 0 when another
/// session holds it. Named locks are per server, not per database, so the name
/// carries the database's (hashed, to stay within the 64 characters a name may
/// have): auditors of different stores on one server do not compete.
const TAKE_SEALER_ROLE: &str = "SELECT GET_LOCK(CONCAT('auditlog-sealer-', MD5(DATABASE())), 0)";

use crate::sql::INSERT_BINDS_PER_ROW as BINDS_PER_ROW;

/// Rows per INSERT statement: MySQL's prepared statements take at most 65 535
/// parameters.
const ROWS_PER_STATEMENT: usize = 65_535 / BINDS_PER_ROW;
const _: () = assert!(ROWS_PER_STATEMENT * BINDS_PER_ROW <= 65_535);

/// The type and id columns, the producer id among them, are `VARBINARY` (sized for
/// 64 and 128 four-byte characters): comparison is then byte for byte, as in SQLite
/// and PostgreSQL. A `_bin` collation is not enough: `utf8mb4_bin` is a PAD SPACE
/// collation, for which `'a' = 'a '` holds, and the NO PAD binary collations are
/// named differently on MySQL and MariaDB.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_events (
        seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        id BINARY(16) NOT NULL,
        action VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        timestamp BIGINT NOT NULL,
        actor_type VARBINARY(256) NOT NULL,
        actor_id VARBINARY(512) NOT NULL,
        target_type VARBINARY(256) NOT NULL,
        target_id VARBINARY(512) NOT NULL,
        received_at BIGINT NOT NULL,
        body LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        producer_id VARBINARY(512) NULL,
        producer_seq BIGINT NULL,
        tenant_id VARBINARY(64) NULL,
        UNIQUE KEY audit_events_id (id),
        KEY audit_events_actor_time (actor_type, actor_id, timestamp DESC, id DESC),
        KEY audit_events_target_time (target_type, target_id, timestamp DESC, id DESC),
        KEY audit_events_time (timestamp DESC, id DESC),
        KEY audit_events_producer (producer_id, producer_seq)
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
    // Which principal delivered each producer id first: the only one that may
    // deliver its events (see `AuditStore::bind_producer`).
    "CREATE TABLE IF NOT EXISTS audit_producers (
        producer_id VARBINARY(512) NOT NULL PRIMARY KEY,
        principal VARBINARY(1024) NOT NULL,
        bound_at BIGINT NOT NULL
    ) ENGINE = InnoDB",
    // Log streams (see `sinks.rs`): one row per sink, its definition as JSON
    // (the store does not read it), its cursor (the `seq` of the last event it
    // has delivered) and the lease naming the one auditor delivering it now.
    "CREATE TABLE IF NOT EXISTS audit_sinks (
        name VARBINARY(128) NOT NULL PRIMARY KEY,
        definition MEDIUMBLOB NOT NULL,
        cursor_seq BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        lease_holder VARBINARY(255) NULL,
        lease_until BIGINT NOT NULL
    ) ENGINE = InnoDB",
    // One row whose lock serialises writers (see `insert_batch`).
    "CREATE TABLE IF NOT EXISTS audit_events_writer (
        id TINYINT NOT NULL PRIMARY KEY
    ) ENGINE = InnoDB",
    "INSERT INTO audit_events_writer (id) VALUES (1) ON DUPLICATE KEY UPDATE id = id",
    // The log's Merkle tree (see `tree.rs`): one leaf per sealed event, numbered
    // in `seq` order.
    "CREATE TABLE IF NOT EXISTS audit_leaves (
        leaf_index BIGINT NOT NULL PRIMARY KEY,
        seq BIGINT NOT NULL,
        id BINARY(16) NOT NULL,
        leaf_hash BINARY(32) NOT NULL,
        UNIQUE KEY audit_leaves_seq (seq)
    ) ENGINE = InnoDB",
    // Hashes of the complete subtrees at the tile levels 8, 16, ….
    "CREATE TABLE IF NOT EXISTS audit_nodes (
        level SMALLINT NOT NULL,
        idx BIGINT NOT NULL,
        hash BINARY(32) NOT NULL,
        PRIMARY KEY (level, idx)
    ) ENGINE = InnoDB",
    // Signed checkpoints, one per tree size (a note is under 1 KiB; TEXT holds 64).
    "CREATE TABLE IF NOT EXISTS audit_checkpoints (
        size BIGINT NOT NULL PRIMARY KEY,
        note TEXT NOT NULL,
        signed_at BIGINT NOT NULL
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
    // The record of migrating from the earlier releases' chain: at most one row.
    "CREATE TABLE IF NOT EXISTS audit_migrations (
        one TINYINT NOT NULL PRIMARY KEY CHECK (one = 1),
        migrated_at BIGINT NOT NULL,
        chain_size BIGINT NOT NULL,
        chain_seq BIGINT NOT NULL,
        chain_hash TEXT NOT NULL,
        signed_head TEXT NULL,
        outcome TEXT NOT NULL
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
    // The hash chain of earlier releases (see `legacy.rs`), one entry per event
    // they sealed; only read, to migrate such a store into the tree.
    "CREATE TABLE IF NOT EXISTS audit_chain (
        seq BIGINT NOT NULL PRIMARY KEY,
        position BIGINT NOT NULL,
        id BINARY(16) NOT NULL,
        leaf_hash BINARY(32) NOT NULL,
        chain_hash BINARY(32) NOT NULL
    ) ENGINE = InnoDB",
    // The earlier releases' signed chain heads; only read, like `audit_chain`.
    "CREATE TABLE IF NOT EXISTS audit_heads (
        seq BIGINT NOT NULL PRIMARY KEY,
        size BIGINT NOT NULL,
        chain_hash BINARY(32) NOT NULL,
        signed_at BIGINT NOT NULL,
        key_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        public_key VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        signature VARBINARY(128) NOT NULL
    ) ENGINE = InnoDB",
    // One row whose lock serialises sealers (see `seal`); the name is from the
    // chain's time, kept so that a store and its older auditors share one lock.
    "CREATE TABLE IF NOT EXISTS audit_chain_sealer (
        id TINYINT NOT NULL PRIMARY KEY
    ) ENGINE = InnoDB",
    "INSERT INTO audit_chain_sealer (id) VALUES (1) ON DUPLICATE KEY UPDATE id = id",
    // Retention (see `retention.rs`): each tenant's own policy, legal holds,
    // and one row per pruned leaf, whose event's row is gone on purpose.
    "CREATE TABLE IF NOT EXISTS audit_retention (
        tenant_id VARBINARY(64) NOT NULL PRIMARY KEY,
        days BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    ) ENGINE = InnoDB",
    "CREATE TABLE IF NOT EXISTS audit_legal_holds (
        id BINARY(16) NOT NULL PRIMARY KEY,
        tenant_id VARBINARY(64) NOT NULL,
        target_type VARBINARY(256) NULL,
        target_id VARBINARY(512) NULL,
        reason VARBINARY(2048) NOT NULL,
        placed_by VARBINARY(512) NOT NULL,
        placed_at BIGINT NOT NULL
    ) ENGINE = InnoDB",
    "CREATE TABLE IF NOT EXISTS audit_pruned (
        leaf_index BIGINT NOT NULL PRIMARY KEY,
        seq BIGINT NOT NULL,
        tenant_id VARBINARY(64) NOT NULL,
        timestamp BIGINT NOT NULL,
        pruned_at BIGINT NOT NULL,
        KEY audit_pruned_tenant (tenant_id, timestamp)
    ) ENGINE = InnoDB",
    // One encryption key per data subject (see `AuditStore::subject_keys`):
    // what makes the personal values in events readable. Never part of a leaf;
    // deleting a row erases that subject's values (crypto-shredding).
    "CREATE TABLE IF NOT EXISTS audit_subject_keys (
        tenant_id VARBINARY(64) NOT NULL,
        subject_type VARBINARY(256) NOT NULL,
        subject_id VARBINARY(512) NOT NULL,
        subject_key VARBINARY(64) NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, subject_type, subject_id)
    ) ENGINE = InnoDB",
];

/// Columns added after the first release: name, and the `ALTER TABLE` that adds it
/// to a table created before it (see [`migrate`]).
const ADDED_COLUMNS: &[(&str, &str)] = &[
    (
        "producer_id",
        "ALTER TABLE audit_events ADD COLUMN producer_id VARBINARY(512) NULL",
    ),
    (
        "producer_seq",
        "ALTER TABLE audit_events ADD COLUMN producer_seq BIGINT NULL",
    ),
    (
        "tenant_id",
        "ALTER TABLE audit_events ADD COLUMN tenant_id VARBINARY(64) NULL",
    ),
];

/// Indexes on added columns: name, and the `ALTER TABLE` that adds it. The
/// tenant's index serves a tenant's pages with no actor or target (a tenant
/// admin's first look), which would otherwise walk the time index through every
/// other tenant's events. MySQL has no partial index, so the default tenant's
/// rows (NULL) are in it too; being in time order, they append to one end of it.
const ADDED_INDEXES: &[(&str, &str)] = &[
    (
        "audit_events_producer",
        "ALTER TABLE audit_events ADD KEY audit_events_producer (producer_id, producer_seq)",
    ),
    (
        "audit_events_tenant_time",
        "ALTER TABLE audit_events \
         ADD KEY audit_events_tenant_time (tenant_id, timestamp DESC, id DESC)",
    ),
];

/// MySQL's error numbers for a column or an index name that already exists.
const DUPLICATE_COLUMN: u16 = 1060;
const DUPLICATE_KEY_NAME: u16 = 1061;

/// The MySQL / MariaDB audit store.
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    /// Most bytes one INSERT statement may carry: half the server's
    /// `max_allowed_packet`, so a batch of large events is split before the server
    /// would refuse it.
    max_statement_bytes: usize,
    /// To open the sealer role's session, which is not one of the pool's.
    options: RoleOptions<MySqlConnectOptions>,
}

impl MySqlStore {
    /// Connects to the database a `mysql://` or `mariadb://` URL names and creates
    /// the schema if it is missing. The database itself must exist.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = MySqlConnectOptions::from_str(&driver_url(url)).map_err(|e| {
            StoreError::Unavailable(format!("bad MySQL URL `{}`: {e}", redact(url)))
        })?;
        let options = options.charset("utf8mb4");
        let mut conn =
            first_connection("MySQL", url, MySqlConnection::connect_with(&options)).await?;
        // Every statement is idempotent and MySQL serialises DDL on one table through
        // metadata locks, so concurrent opens need no lock of their own.
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(&mut conn)
                .await
                .map_err(store_error)?;
        }
        migrate(&mut conn).await?;
        let max_packet: i64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)")
            .fetch_one(&mut conn)
            .await
            .map_err(store_error)?;
        // Closing is a courtesy to the server; DDL commits by itself in MySQL.
        let _ = conn.close().await;
        // The server has just answered, so the pool may connect on demand.
        let pool = MySqlPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options.clone());
        Ok(MySqlStore {
            pool,
            max_statement_bytes: usize::try_from(max_packet / 2).unwrap_or(0).max(64 * 1024),
            options: RoleOptions(options),
        })
    }
}

/// Adds the columns and indexes of [`ADDED_COLUMNS`] and [`ADDED_INDEXES`] that are
/// missing. `ADD COLUMN IF NOT EXISTS` is MariaDB's alone (MySQL 8 refuses it), so
/// each is looked up in `information_schema` first and added with plain DDL. Two
/// processes opening at once may both find it missing: MySQL serialises their
/// `ALTER TABLE`s through the table's metadata lock, and the second one's "already
/// exists" error means the work is done. Looking up first also keeps a restart from
/// taking the table's metadata lock at all once the schema is current.
async fn migrate(conn: &mut MySqlConnection) -> Result<(), StoreError> {
    let columns = ADDED_COLUMNS.iter().map(|(name, alter)| {
        (
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() \
             AND table_name = 'audit_events' AND column_name = ?",
            *name,
            *alter,
            DUPLICATE_COLUMN,
        )
    });
    let indexes = ADDED_INDEXES.iter().map(|(name, alter)| {
        (
            "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() \
             AND table_name = 'audit_events' AND index_name = ?",
            *name,
            *alter,
            DUPLICATE_KEY_NAME,
        )
    });
    // Columns first: the indexes are on them.
    for (lookup, name, alter, already_there) in columns.chain(indexes) {
        let present: i64 = sqlx::query_scalar(lookup)
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .map_err(store_error)?;
        if present > 0 {
            continue;
        }
        match sqlx::query(alter).execute(&mut *conn).await {
            Ok(_) => {}
            Err(err) if mysql_error_number(&err) == Some(already_there) => {}
            Err(err) => return Err(store_error(err)),
        }
    }
    Ok(())
}

/// MySQL's own error number of a database error (finer than its SQLSTATE).
fn mysql_error_number(err: &sqlx::Error) -> Option<u16> {
    err.as_database_error()?
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(MySqlDatabaseError::number)
}

/// The URL as sqlx expects it: it knows MariaDB only as `mysql://`.
pub(crate) fn driver_url(url: &str) -> Cow<'_, str> {
    match url.strip_prefix("mariadb://") {
        Some(rest) => Cow::Owned(format!("mysql://{rest}")),
        None => Cow::Borrowed(url),
    }
}

/// MySQL's spelling of the shared statements (`/` would divide into a decimal
/// there).
const DIALECT: Dialect<MySql> = Dialect {
    columns: "id, seq, timestamp, received_at, body",
    select_id: select_id_as_stored,
    bind_id: bind_id_bytes,
    decode_id: id_from_bytes,
    text: text_from_bytes,
    event_name: "JSON_UNQUOTE(JSON_EXTRACT(body, '$.eventName'))",
    div: "DIV",
    keep_existing: |column| format!("ON DUPLICATE KEY UPDATE {column} = {column}"),
    object_keys: false,
    tenant_off_index: "tenant_id",
    rows_affected: |done| done.rows_affected(),
};

/// The type and id columns, the producer id among them, are `VARBINARY`, so they
/// come back as bytes; they went in as UTF-8.
fn text_from_bytes(row: &MySqlRow, column: &str) -> Result<Option<String>, StoreError> {
    let bytes: Option<Vec<u8>> = row.try_get(column).map_err(store_error)?;
    bytes
        .map(|bytes| {
            String::from_utf8(bytes)
                .map_err(|e| StoreError::Backend(format!("a stored {column} is not UTF-8: {e}")))
        })
        .transpose()
}

/// The row locks that serialise writers (see `insert_batch`) and sealers (see
/// `seal`), each on a one-row table of its own so that the two do not wait on
/// each other.
const WRITER_LOCK: &str = "SELECT id FROM audit_events_writer WHERE id = 1 FOR UPDATE";
const SEAL_LOCK: &str = "SELECT id FROM audit_chain_sealer WHERE id = 1 FOR UPDATE";

/// Takes one of the row locks ([`WRITER_LOCK`], [`SEAL_LOCK`]) until `tx` ends.
async fn lock_row(tx: &mut MySqlConnection, lock: &'static str) -> Result<(), StoreError> {
    sqlx::query(lock).execute(tx).await.map_err(store_error)?;
    Ok(())
}

impl MySqlStore {
    /// The shared statements on this store's pool.
    fn sql(&self) -> GenericStore<'_, MySql> {
        GenericStore::new(&self.pool, &DIALECT)
    }
}

#[async_trait]
impl AuditStore for MySqlStore {
    /// Why look the ids up first instead of `INSERT ... ON DUPLICATE KEY UPDATE id =
    /// id`: sqlx connects with `CLIENT_FOUND_ROWS`, under which a skipped duplicate
    /// counts as one affected row just like an insert, so `rows_affected` could not
    /// tell new events from redelivered ones. (`INSERT IGNORE` would count right but
    /// also silences every other error, truncation included.) Under the writer lock,
    /// a locking read of the batch's ids finds those already stored; the rest go in
    /// with plain multi-row inserts (chunked under the bind and packet limits), whose
    /// `rows_affected` is exactly the events added.
    async fn insert_batch(&self, events: &[DataEvent]) -> Result<InsertOutcome, StoreError> {
        if events.is_empty() {
            return Ok(InsertOutcome::default());
        }
        let rows = unique_rows(events);
        let received_at = auditlog_event::now_ms();
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        // One writer at a time per database: AUTO_INCREMENT hands out numbers at insert
        // time, so overlapping writers could commit out of `seq` order; holding this
        // row lock until commit makes `seq` order commit order, as with SQLite's single
        // writer. It also means no other writer can store one of our ids between the
        // look-up below and our inserts.
        lock_row(&mut tx, WRITER_LOCK).await?;
        let ids: Vec<uuid::Uuid> = rows.iter().map(|row| row.id).collect();
        // A locking read: it sees what other writers committed up to now, whatever
        // this transaction's snapshot.
        let stored: HashSet<uuid::Uuid> = self
            .sql()
            .ids_in(&mut tx, &ids, " LOCK IN SHARE MODE")
            .await?
            .into_iter()
            .collect();
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|row| !stored.contains(&row.id))
            .collect();
        let mut inserted = 0;
        // One multi-row INSERT hands out `seq` in row order, and each statement after
        // the previous one: `seq` follows the batch's order.
        for chunk in chunks(&rows, ROWS_PER_STATEMENT, self.max_statement_bytes) {
            inserted += insert_values::<MySql>(chunk, received_at, DIALECT.object_keys)
                .build()
                // Only full-size chunks repeat their SQL text; caching the prepared
                // statement for each odd tail size would just fill the cache.
                .persistent(chunk.len() == ROWS_PER_STATEMENT)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?
                .rows_affected();
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
        self.sql().stored_after(query, after_seq, limit, None).await
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
        self.sql().stored_ids(ids).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.sql().ping().await
    }

    async fn seal(&self, max: u32) -> Result<SealOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        // Sealers take turns (several auditors may share the store) on their own
        // row lock, which writers do not take; the writer lock keeps `seq` order
        // commit order, so every row this reads above the last leaf is final. The
        // transaction's snapshot starts at its first plain read, after the lock,
        // so it sees what the previous sealer committed.
        lock_row(&mut tx, SEAL_LOCK).await?;
        self.sql().seal(tx, max, None).await
    }

    async fn sealer_role(&self) -> Result<Option<Box<dyn SealerRole>>, StoreError> {
        let mut conn =
            role_connection("MySQL", MySqlConnection::connect_with(&self.options.0)).await?;
        let idle = format!(
            "SET SESSION wait_timeout = {}",
            SEALER_SESSION_IDLE.as_secs()
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(idle))
            .execute(&mut conn)
            .await
            .map_err(store_error)?;
        // NULL (an error taking it) counts as not taken.
        let taken: Option<i64> = sqlx::query_scalar(TAKE_SEALER_ROLE)
            .fetch_one(&mut conn)
            .await
            .map_err(store_error)?;
        if taken != Some(1) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mariadb_url_is_handed_to_the_driver_as_mysql() {
        assert_eq!(
            driver_url("mariadb://root@db:3306/audit"),
            "mysql://root@db:3306/audit"
        );
        assert_eq!(driver_url("mysql://root@db/audit"), "mysql://root@db/audit");
    }
}
