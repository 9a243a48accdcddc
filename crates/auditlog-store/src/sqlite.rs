//! SQLite backend: the embedded default. One writer connection (SQLite allows one
//! writer at a time anyway) and a small pool of readers over a WAL database.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use auditlog_event::DataEvent;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Sqlite};

use crate::retention::{
    LegalHold, PruneBatch, PruneCursor, PruneRule, PrunedCount, RetentionPolicy,
};
use crate::sql::{
    Dialect, GenericStore, LAST_SEQ, bind_id_bytes, chunks, id_from_bytes, insert_values,
    on_conflict_do_nothing, select_id_as_stored, store_error, text_column, unique_rows,
};
use crate::{
    ActivityCount, AuditStore, ChainEntry, EventPage, EventQuery, EventRow, Hash, InsertOutcome,
    Leaf, LeafEntry, Migration, ProducerProgress, Read, SealOutcome, SignedHead, SinkRecord,
    StoreError, StoredCheckpoint, StoredEvent, object_key,
};
use crate::{DataSubject, SubjectKey};

/// The writer connection's page cache: negative means KiB, here 64 MiB.
const WRITER_CACHE_KIB: i64 = -65_536;

/// Each reader connection's page cache: 16 MiB.
const READER_CACHE_KIB: i64 = -16_384;

/// WAL pages written before a checkpoint (the default is 1 000).
const WAL_CHECKPOINT_PAGES: u32 = 16_384;

/// Rows per INSERT statement: their binds (with the two object keys) stay far
/// below SQLite's 32 766 limit.
const ROWS_PER_STATEMENT: usize = 500;
const _: () = assert!(ROWS_PER_STATEMENT * (crate::sql::INSERT_BINDS_PER_ROW + 2) <= 32_766);

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
        body TEXT NOT NULL,
        producer_id TEXT,
        producer_seq INTEGER,
        actor_key INTEGER,
        target_key INTEGER,
        tenant_id TEXT
    )",
    // Indexes of earlier builds ordered ties by seq; the id order replaced them.
    "DROP INDEX IF EXISTS audit_events_by_actor",
    "DROP INDEX IF EXISTS audit_events_on_target",
    "DROP INDEX IF EXISTS audit_events_by_time",
    "CREATE INDEX IF NOT EXISTS audit_events_time
        ON audit_events (timestamp DESC, id DESC)",
    // The log's Merkle tree (see `tree.rs`): one leaf per sealed event, numbered
    // in `seq` order; the leaf index is the rowid, so appending is appending.
    "CREATE TABLE IF NOT EXISTS audit_leaves (
        leaf_index INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        id BLOB NOT NULL,
        leaf_hash BLOB NOT NULL
    )",
    // Hashes of the complete subtrees at the tile levels 8, 16, ….
    "CREATE TABLE IF NOT EXISTS audit_nodes (
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID",
    // Signed checkpoints, one per tree size.
    "CREATE TABLE IF NOT EXISTS audit_checkpoints (
        size INTEGER PRIMARY KEY,
        note TEXT NOT NULL,
        signed_at INTEGER NOT NULL
    )",
    // The record of migrating from the earlier releases' chain: at most one row.
    "CREATE TABLE IF NOT EXISTS audit_migrations (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        migrated_at INTEGER NOT NULL,
        chain_size INTEGER NOT NULL,
        chain_seq INTEGER NOT NULL,
        chain_hash TEXT NOT NULL,
        signed_head TEXT,
        outcome TEXT NOT NULL
    )",
    // Which principal delivered each producer id first: the only one that may
    // deliver its events (see `AuditStore::bind_producer`).
    "CREATE TABLE IF NOT EXISTS audit_producers (
        producer_id TEXT PRIMARY KEY,
        principal TEXT NOT NULL,
        bound_at INTEGER NOT NULL
    )",
    // Log streams (see `sinks.rs`): one row per sink, its definition as JSON
    // (the store does not read it), its cursor (the `seq` of the last event it
    // has delivered) and the lease naming the one auditor delivering it now.
    "CREATE TABLE IF NOT EXISTS audit_sinks (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        cursor_seq INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        lease_holder TEXT,
        lease_until INTEGER NOT NULL
    )",
    // The hash chain of earlier releases (see `legacy.rs`), one entry per event
    // they sealed; only read, to migrate such a store into the tree.
    "CREATE TABLE IF NOT EXISTS audit_chain (
        seq INTEGER PRIMARY KEY,
        position INTEGER NOT NULL,
        id BLOB NOT NULL,
        leaf_hash BLOB NOT NULL,
        chain_hash BLOB NOT NULL
    )",
    // The earlier releases' signed chain heads; only read, like `audit_chain`.
    "CREATE TABLE IF NOT EXISTS audit_heads (
        seq INTEGER PRIMARY KEY,
        size INTEGER NOT NULL,
        chain_hash BLOB NOT NULL,
        signed_at INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        public_key TEXT NOT NULL,
        signature BLOB NOT NULL
    )",
    // Retention (see `retention.rs`): each tenant's own policy, legal holds,
    // and one row per pruned leaf, whose event's row is gone on purpose.
    "CREATE TABLE IF NOT EXISTS audit_retention (
        tenant_id TEXT PRIMARY KEY,
        days INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS audit_legal_holds (
        id BLOB PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        target_type TEXT,
        target_id TEXT,
        reason TEXT NOT NULL,
        placed_by TEXT NOT NULL,
        placed_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS audit_pruned (
        leaf_index INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL,
        tenant_id TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        pruned_at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS audit_pruned_tenant ON audit_pruned (tenant_id, timestamp)",
    // One encryption key per data subject (see `AuditStore::subject_keys`):
    // what makes the personal values in events readable. Never part of a leaf;
    // deleting a row erases that subject's values (crypto-shredding).
    "CREATE TABLE IF NOT EXISTS audit_subject_keys (
        tenant_id TEXT NOT NULL,
        subject_type TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        subject_key BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, subject_type, subject_id)
    )",
];

/// Columns added after the first release, with their definitions: tables created
/// before them get them at open (see [`migrate`]).
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("producer_id", "producer_id TEXT"),
    ("producer_seq", "producer_seq INTEGER"),
    ("actor_key", "actor_key INTEGER"),
    ("target_key", "target_key INTEGER"),
    ("tenant_id", "tenant_id TEXT"),
];

/// The indexes by actor and by target: an object's events newest first, found by
/// its 8-byte [`crate::object_key`] and the time (the row's type and id columns
/// settle a shared key). They replaced indexes on `(type, id, timestamp, id)`,
/// whose entries were two to four times as wide: on the ingest path every new row
/// lands on its own actor's and target's index page, and a commit writes each page
/// it touched to the WAL, so narrower entries mean fewer pages per commit.
const OBJECT_KEY_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS audit_events_actor_key ON audit_events (actor_key, timestamp)",
    "CREATE INDEX IF NOT EXISTS audit_events_target_key ON audit_events (target_key, timestamp)",
    "DROP INDEX IF EXISTS audit_events_actor_time",
    "DROP INDEX IF EXISTS audit_events_target_time",
];

/// Rows given their object keys per transaction when an older store is migrated.
const BACKFILL_ROWS: i64 = 20_000;

/// Indexes on added columns, created once the columns exist. A tenant's events
/// newest first, for a tenant's pages with no actor or target (a tenant admin's
/// first look): without it a small tenant's first page walks the time index
/// through every other tenant's events. Only rows of a named tenant are in it,
/// so the default tenant's ingest does not pay for it.
const ADDED_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS audit_events_producer
        ON audit_events (producer_id, producer_seq)",
    "CREATE INDEX IF NOT EXISTS audit_events_tenant_time
        ON audit_events (tenant_id, timestamp DESC, id DESC) WHERE tenant_id IS NOT NULL",
];

/// The SQLite audit store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database a `sqlite://PATH` URL names.
    ///
    /// Turning a new file to WAL needs it to itself, and there SQLite answers BUSY
    /// at once instead of waiting out the busy timeout; so when several processes
    /// open one file together, the ones that lost retry until it is ready.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Self::open_once(url).await {
                Err(StoreError::Unavailable(reason))
                    if reason.contains("database is locked")
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                result => return result,
            }
        }
    }

    async fn open_once(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An acknowledged event must survive power loss, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // The writer keeps the hot index pages in its own cache between
            // batches (the default 2 MiB is a fraction of one batch's pages).
            // A larger WAL before checkpointing means a hot page is copied back once
            // for many batches instead of once for each.
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", WRITER_CACHE_KIB.to_string())
                    .pragma("wal_autocheckpoint", WAL_CHECKPOINT_PAGES.to_string())
                    // A multi-row INSERT inside a transaction keeps a statement
                    // journal (to undo just that statement); in a temporary file
                    // it cost a fifth of the writer's time in pwrite calls.
                    .pragma("temp_store", "memory")
                    // Deleted rows (erased subject keys) are overwritten with
                    // zeros, not left in free space; the store deletes nothing else.
                    .pragma("secure_delete", "on"),
            )
            .await
            .map_err(unavailable)?;
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(&writer)
                .await
                .map_err(store_error)?;
        }
        migrate(&writer).await?;
        warn_of_process_wide_locks(&writer).await;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            // Each connection has a page cache of its own (see `.cargo/config.toml`);
            // SQLite's default of 2 MiB leaves a query on a large store reading the
            // upper index pages back from the OS for every page of results.
            .connect_with(
                options
                    .read_only(true)
                    .pragma("cache_size", READER_CACHE_KIB.to_string()),
            )
            .await
            .map_err(unavailable)?;
        Ok(SqliteStore { writer, readers })
    }
}

/// Tries of a truncating checkpoint, and the wait between them, while readers
/// still use older WAL frames.
const SCRUB_TRIES: u32 = 50;
const SCRUB_WAIT: Duration = Duration::from_millis(20);

/// Copies the WAL into the database file and truncates it to nothing, so that
/// the frames holding a deleted key's page from before the delete are gone. A
/// reader on an older snapshot keeps the checkpoint from completing: it is
/// tried again until it completes, and reported as unavailable if it never does
/// (erasing again then finishes the work).
async fn scrub_wal(writer: &SqlitePool) -> Result<(), StoreError> {
    for _ in 0..SCRUB_TRIES {
        // (busy, frames in the WAL, frames checkpointed); busy = 0 when done.
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(writer)
            .await
            .map_err(store_error)?;
        if busy == 0 {
            return Ok(());
        }
        tokio::time::sleep(SCRUB_WAIT).await;
    }
    Err(StoreError::Unavailable(
        "the key is deleted, but readers kept the WAL from being truncated; erase again".into(),
    ))
}

/// Adds the columns and indexes of [`ADDED_COLUMNS`] and [`ADDED_INDEXES`] that are
/// missing. SQLite has no `ADD COLUMN IF NOT EXISTS`, so each column is looked up in
/// `pragma_table_info` first; `BEGIN IMMEDIATE` takes the write lock before that
/// look-up, so a second process opening the same file at the same moment waits
/// (within the busy timeout) and then finds the columns in place instead of failing
/// on a duplicate column.
async fn migrate(writer: &SqlitePool) -> Result<(), StoreError> {
    let mut tx = writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(store_error)?;
    for (name, definition) in ADDED_COLUMNS {
        let present: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pragma_table_info('audit_events') WHERE name = ?",
        )
        .bind(*name)
        .fetch_one(&mut *tx)
        .await
        .map_err(store_error)?;
        if present == 0 {
            // Identifiers cannot be bound; the text is a constant of this module.
            let alter = format!("ALTER TABLE audit_events ADD COLUMN {definition}");
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
    tx.commit().await.map_err(store_error)?;
    index_by_object_keys(writer).await
}

/// Gives the rows of a store made before the object keys their keys, then indexes
/// by them in place of the text indexes. The key index is created last, so its
/// presence says the keys are complete; a migration cut short resumes at the next
/// open. Rows are done in `seq` ranges, each range one transaction, so a large store
/// shows progress and a concurrent writer waits for one range, not for all.
async fn index_by_object_keys(writer: &SqlitePool) -> Result<(), StoreError> {
    let indexed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master \
         WHERE type = 'index' AND name = 'audit_events_actor_key'",
    )
    .fetch_one(writer)
    .await
    .map_err(store_error)?;
    if indexed > 0 {
        return Ok(());
    }
    let last: i64 = sqlx::query_scalar(LAST_SEQ)
        .fetch_one(writer)
        .await
        .map_err(store_error)?;
    let mut after = 0;
    while after < last {
        let mut tx = writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
            "SELECT seq, actor_type, actor_id, target_type, target_id FROM audit_events \
             WHERE seq > ? AND seq <= ? AND (actor_key IS NULL OR target_key IS NULL)",
        )
        .bind(after)
        .bind(after + BACKFILL_ROWS)
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
        for (seq, actor_type, actor_id, target_type, target_id) in rows {
            sqlx::query("UPDATE audit_events SET actor_key = ?, target_key = ? WHERE seq = ?")
                .bind(object_key(&actor_type, &actor_id))
                .bind(object_key(&target_type, &target_id))
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        after += BACKFILL_ROWS;
        tracing::info!(
            done = after.min(last),
            of = last,
            "migrating the SQLite store: actor and target keys"
        );
    }
    let mut tx = writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(store_error)?;
    for statement in OBJECT_KEY_INDEXES {
        sqlx::query(*statement)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
    }
    tx.commit().await.map_err(store_error)
}

/// What the connections of one process would share, and so wait on each other for,
/// under the SQLite build whose `PRAGMA compile_options` these are.
fn process_wide_locks(compile_options: &[String]) -> Vec<&'static str> {
    let has = |option: &str| compile_options.iter().any(|o| o == option);
    let mut shared = Vec::new();
    if has("ENABLE_MEMORY_MANAGEMENT") {
        shared.push("one page cache behind one mutex (ENABLE_MEMORY_MANAGEMENT)");
    }
    if !has("DEFAULT_MEMSTATUS=0") {
        shared.push("a mutex on every allocation, for statistics (DEFAULT_MEMSTATUS)");
    }
    shared
}

/// Warns, once per process, when SQLite was built with locks shared by all its
/// connections: a build made outside this repository misses the flags its
/// `.cargo/config.toml` gives the bundled SQLite. The store works either way; the
/// primary API and the query API then wait on the audit store's writer.
async fn warn_of_process_wide_locks(writer: &SqlitePool) {
    static CHECKED: AtomicBool = AtomicBool::new(false);
    if CHECKED.swap(true, Ordering::Relaxed) {
        return;
    }
    let options: Vec<String> = match sqlx::query_scalar("PRAGMA compile_options")
        .fetch_all(writer)
        .await
    {
        Ok(options) => options,
        Err(err) => {
            tracing::debug!(%err, "could not read SQLite's compile options");
            return;
        }
    };
    let shared = process_wide_locks(&options);
    if !shared.is_empty() {
        tracing::warn!(
            shared = %shared.join("; "),
            "this SQLite makes every connection of the process share locks, so the API \
             waits on the audit store's writer; build auditlog from its repository, whose \
             .cargo/config.toml sets LIBSQLITE3_FLAGS"
        );
    }
}

/// Failing to open the file at all (missing directory, permissions) leaves the store
/// unusable, whatever the error's kind.
fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// SQLite's spelling of the shared statements.
const DIALECT: Dialect<Sqlite> = Dialect {
    columns: "id, seq, timestamp, received_at, body",
    select_id: select_id_as_stored,
    bind_id: bind_id_bytes,
    decode_id: id_from_bytes,
    text: text_column,
    event_name: "json_extract(body, '$.eventName')",
    div: "/",
    keep_existing: on_conflict_do_nothing,
    object_keys: true,
    // Unary plus keeps the term from using an index: without statistics SQLite
    // would as soon read a whole tenant's events by the tenant index as one
    // actor's by the actor's, or as a tail's rows by `seq`.
    tenant_off_index: "+tenant_id",
    rows_affected: |done| done.rows_affected(),
};

impl SqliteStore {
    /// The shared statements on the readers' pool: every read goes there, so that
    /// it never waits for the writer connection.
    fn read(&self) -> GenericStore<'_, Sqlite> {
        GenericStore::new(&self.readers, &DIALECT)
    }

    /// The shared statements on the writer connection.
    fn write(&self) -> GenericStore<'_, Sqlite> {
        GenericStore::new(&self.writer, &DIALECT)
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn insert_batch(&self, events: &[DataEvent]) -> Result<InsertOutcome, StoreError> {
        if events.is_empty() {
            return Ok(InsertOutcome::default());
        }
        let rows = unique_rows(events);
        let received_at = auditlog_event::now_ms();
        let mut tx = self.writer.begin().await.map_err(store_error)?;
        let mut inserted = 0;
        // Bodies are bound, not spliced into the SQL text, so only the row count
        // limits a statement.
        for chunk in chunks(&rows, ROWS_PER_STATEMENT, usize::MAX) {
            let mut insert = insert_values::<Sqlite>(chunk, received_at, DIALECT.object_keys);
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
        self.read().query(query).await
    }

    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError> {
        self.read().count(query).await
    }

    async fn get(&self, id: uuid::Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.read().get(id).await
    }

    async fn stored_after(
        &self,
        query: &EventQuery,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read()
            .stored_after(query, after_seq, limit, None)
            .await
    }

    async fn last_seq(&self) -> Result<i64, StoreError> {
        self.read().last_seq().await
    }

    async fn activity(
        &self,
        query: &EventQuery,
        bucket_ms: i64,
    ) -> Result<Vec<ActivityCount>, StoreError> {
        self.read().activity(query, bucket_ms).await
    }

    async fn producers(&self) -> Result<Vec<ProducerProgress>, StoreError> {
        self.read().producers().await
    }

    async fn stored_ids(&self, ids: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError> {
        self.read().stored_ids(ids).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read().ping().await
    }

    /// The single writer connection, and `BEGIN IMMEDIATE` across processes, make
    /// sealers take turns with each other and with inserts.
    async fn seal(&self, max: u32) -> Result<SealOutcome, StoreError> {
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)?;
        self.write().seal(tx, max, None).await
    }

    async fn tree_size(&self) -> Result<u64, StoreError> {
        self.read().tree_size().await
    }

    async fn tree_hashes(&self, reads: &[Read]) -> Result<Vec<(Read, Vec<Hash>)>, StoreError> {
        self.read().tree_hashes(reads).await
    }

    async fn leaf_of(&self, id: uuid::Uuid) -> Result<Option<Leaf>, StoreError> {
        self.read().leaf_of(id).await
    }

    async fn leaves(&self, start: u64, end: u64) -> Result<Vec<Leaf>, StoreError> {
        self.read().leaves(start, end).await
    }

    async fn leaf_entries(&self, from: u64, limit: u32) -> Result<Vec<LeafEntry>, StoreError> {
        self.read().leaf_entries(from, limit).await
    }

    async fn rows_after(&self, after_seq: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        self.read().rows_after(after_seq, limit).await
    }

    async fn sinks(&self) -> Result<Vec<SinkRecord>, StoreError> {
        self.write().sinks().await
    }

    async fn create_sink(
        &self,
        name: &str,
        definition: &str,
        cursor: i64,
    ) -> Result<bool, StoreError> {
        self.write().create_sink(name, definition, cursor).await
    }

    async fn update_sink(&self, name: &str, definition: &str) -> Result<bool, StoreError> {
        self.write().update_sink(name, definition).await
    }

    async fn delete_sink(&self, name: &str) -> Result<bool, StoreError> {
        self.write().delete_sink(name).await
    }

    async fn lease_sink(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write()
            .lease_sink(name, holder, now_ms, lease_ms)
            .await
    }

    async fn release_sink(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.write().release_sink(name, holder).await
    }

    async fn advance_sink(
        &self,
        name: &str,
        holder: &str,
        cursor: i64,
    ) -> Result<bool, StoreError> {
        self.write().advance_sink(name, holder, cursor).await
    }

    async fn bind_producer(
        &self,
        producer_id: &str,
        principal: &str,
    ) -> Result<String, StoreError> {
        self.write().bind_producer(producer_id, principal).await
    }

    async fn ensure_subject_keys(
        &self,
        candidates: &[SubjectKey],
    ) -> Result<Vec<SubjectKey>, StoreError> {
        self.write().ensure_subject_keys(candidates).await
    }

    async fn subject_keys(&self, subjects: &[DataSubject]) -> Result<Vec<SubjectKey>, StoreError> {
        self.read().subject_keys(subjects).await
    }

    /// The writer connection runs with `secure_delete`, so the deleted row's
    /// bytes are overwritten with zeros in the page; the page's older copies in
    /// the WAL are then removed by a checkpoint that truncates it.
    async fn erase_subject_key(&self, subject: &DataSubject) -> Result<bool, StoreError> {
        let existed = self.write().erase_subject_key(subject).await?;
        scrub_wal(&self.writer).await?;
        Ok(existed)
    }

    async fn retention_policies(&self) -> Result<Vec<RetentionPolicy>, StoreError> {
        self.read().retention_policies().await
    }

    async fn set_retention(&self, tenant: &str, days: Option<u32>) -> Result<(), StoreError> {
        self.write().set_retention(tenant, days).await
    }

    async fn legal_holds(&self) -> Result<Vec<LegalHold>, StoreError> {
        self.read().legal_holds().await
    }

    async fn place_hold(&self, hold: &LegalHold) -> Result<(), StoreError> {
        self.write().place_hold(hold).await
    }

    async fn release_hold(&self, id: uuid::Uuid) -> Result<Option<LegalHold>, StoreError> {
        self.write().release_hold(id).await
    }

    async fn prune_batch(
        &self,
        rule: &PruneRule,
        after: Option<PruneCursor>,
        limit: u32,
    ) -> Result<PruneBatch, StoreError> {
        let batch = self.write().prune_batch(rule, after, limit).await?;
        if batch.pruned > 0 {
            // The writer deletes with `secure_delete`; the WAL's older frames
            // still hold the rows until it is truncated.
            scrub_wal(&self.writer).await?;
        }
        Ok(batch)
    }

    async fn pruned_count(&self, tenant: Option<&str>) -> Result<PrunedCount, StoreError> {
        self.read().pruned_count(tenant).await
    }

    async fn pruned_leaves(&self, start: u64, end: u64) -> Result<Vec<u64>, StoreError> {
        self.read().pruned_leaves(start, end).await
    }

    async fn save_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        self.write().save_checkpoint(checkpoint).await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read().latest_checkpoint().await
    }

    async fn checkpoints_after(
        &self,
        after_size: u64,
        limit: u32,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.read().checkpoints_after(after_size, limit).await
    }

    async fn legacy_chain_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        self.read().legacy_chain_after(after_seq, limit).await
    }

    async fn legacy_head(&self) -> Result<Option<SignedHead>, StoreError> {
        self.read().legacy_head().await
    }

    async fn save_migration(&self, migration: &Migration) -> Result<(), StoreError> {
        self.write().save_migration(migration).await
    }

    async fn migration(&self) -> Result<Option<Migration>, StoreError> {
        self.read().migration().await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bundled_sqlite_gives_each_connection_its_own_locks() {
        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(
            process_wide_locks(&options),
            Vec::<&str>::new(),
            "{options:?}"
        );
    }

    /// `EXPLAIN QUERY PLAN` of the store's own page query for `side` (`actor`,
    /// `target`, or anything else for neither) within `tenant` if given, after
    /// `cursor` if given, its parameters bound in the order the query builder
    /// pushed them.
    async fn plan_of_page(
        store: &SqliteStore,
        side: &str,
        tenant: Option<&str>,
        cursor: Option<i64>,
    ) -> String {
        let object = user_seven();
        let mut query = EventQuery {
            tenant: tenant.map(str::to_owned),
            ..EventQuery::default()
        };
        match side {
            "actor" => query.actor = Some(object.clone()),
            "target" => query.target = Some(object.clone()),
            _ => {}
        }
        let cursor_id = uuid::Uuid::now_v7();
        query.after = cursor.map(|timestamp| crate::Cursor {
            timestamp,
            id: cursor_id,
            order: crate::Order::NewestFirst,
        });
        let (page, _) = DIALECT.page_query(&query);
        let explain = format!("EXPLAIN QUERY PLAN {}", page.sql().as_str());
        let mut statement = sqlx::query_as(AssertSqlSafe(explain));
        if let Some(tenant) = tenant {
            statement = statement.bind(tenant);
        }
        if query.actor.is_some() || query.target.is_some() {
            statement = statement
                .bind(object_key("users", "7"))
                .bind("users")
                .bind("7");
        }
        if let Some(timestamp) = cursor {
            statement = statement
                .bind(timestamp)
                .bind(timestamp)
                .bind(timestamp)
                .bind(cursor_id.as_bytes().to_vec());
        }
        let rows: Vec<(i64, i64, i64, String)> = statement.fetch_all(&store.readers).await.unwrap();
        plan_text(rows)
    }

    /// The object the plan tests ask for: `users/7`.
    fn user_seven() -> crate::ObjectKey {
        crate::ObjectKey {
            object_type: auditlog_event::ObjectType::parse("actorType", "users").unwrap(),
            id: "7".into(),
        }
    }

    /// The details of `EXPLAIN QUERY PLAN` rows, joined by `; `.
    fn plan_text(rows: Vec<(i64, i64, i64, String)>) -> String {
        rows.into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[tokio::test]
    async fn pages_are_read_from_the_index_of_their_object_or_tenant() {
        let db = crate::testing::fresh_sqlite_url();
        let store = SqliteStore::open(db.url()).await.unwrap();

        let by_actor = plan_of_page(&store, "actor", None, None).await;
        let by_target = plan_of_page(&store, "target", None, None).await;
        let deeper_by_actor = plan_of_page(&store, "actor", None, Some(1_700_000_000_000)).await;
        let deeper_by_target = plan_of_page(&store, "target", None, Some(1_700_000_000_000)).await;
        let by_tenant = plan_of_page(&store, "neither", Some("acme"), None).await;
        let deeper_by_tenant =
            plan_of_page(&store, "neither", Some("acme"), Some(1_700_000_000_000)).await;
        let by_actor_in_tenant = plan_of_page(&store, "actor", Some("acme"), None).await;
        let by_target_in_tenant = plan_of_page(&store, "target", Some("acme"), None).await;

        assert!(
            by_actor.contains("USING INDEX audit_events_actor_key (actor_key=?)"),
            "{by_actor}"
        );
        assert!(
            by_target.contains("USING INDEX audit_events_target_key (target_key=?)"),
            "{by_target}"
        );
        // A later page starts at the cursor's time in the index, not at the
        // object's newest event (the index has no id to skip the newer ones by).
        assert!(
            deeper_by_actor.contains("(actor_key=? AND timestamp<?)"),
            "{deeper_by_actor}"
        );
        assert!(
            deeper_by_target.contains("(target_key=? AND timestamp<?)"),
            "{deeper_by_target}"
        );
        // Newest first straight from the index: only ties of one millisecond are
        // sorted, not the object's whole history.
        for plan in [&by_actor, &by_target, &deeper_by_actor, &deeper_by_target] {
            assert!(plan.contains("FOR LAST TERM OF ORDER BY"), "{plan}");
            assert!(!plan.contains("FOR ORDER BY"), "{plan}");
        }
        // A tenant's own pages come from its index, in order, not from a walk
        // through every tenant's events by time; within a tenant an actor's or a
        // target's pages still come from the object's index.
        assert!(
            by_tenant.contains("INDEX audit_events_tenant_time (tenant_id=?)"),
            "{by_tenant}"
        );
        assert!(
            deeper_by_tenant
                .contains("INDEX audit_events_tenant_time (tenant_id=? AND timestamp<?)"),
            "{deeper_by_tenant}"
        );
        for plan in [&by_tenant, &deeper_by_tenant] {
            assert!(!plan.contains("ORDER BY"), "no sort: {plan}");
        }
        assert!(
            by_actor_in_tenant.contains("USING INDEX audit_events_actor_key (actor_key=?)"),
            "{by_actor_in_tenant}"
        );
        assert!(
            by_target_in_tenant.contains("USING INDEX audit_events_target_key (target_key=?)"),
            "{by_target_in_tenant}"
        );
    }

    #[tokio::test]
    async fn a_tenants_tail_reads_by_seq_not_through_the_tenant_index() {
        let db = crate::testing::fresh_sqlite_url();
        let store = SqliteStore::open(db.url()).await.unwrap();
        let query = EventQuery {
            tenant: Some("acme".into()),
            ..EventQuery::default()
        };
        let tail = DIALECT.after_seq_query(&query, 5, 100, None);
        let explain = format!("EXPLAIN QUERY PLAN {}", tail.sql().as_str());
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(AssertSqlSafe(explain))
            .bind(5_i64)
            .bind("acme")
            .fetch_all(&store.readers)
            .await
            .unwrap();
        let plan = plan_text(rows);

        // Read forward from the tail's place, not the tenant's whole history
        // gathered from its index and sorted.
        assert!(plan.contains("INTEGER PRIMARY KEY (rowid>?)"), "{plan}");
        assert!(!plan.contains("audit_events_tenant_time"), "{plan}");
        assert!(!plan.contains("ORDER BY"), "{plan}");
    }

    /// A bound LIMIT makes SQLite prepare the statement again at every execution
    /// (see `sql::push_order_limit`), so the statements a reader repeats most
    /// carry their row count in the text.
    #[test]
    fn repeated_reads_write_their_limit_into_the_statement() {
        let query = EventQuery {
            actor: Some(user_seven()),
            page_size: 50,
            ..EventQuery::default()
        };
        let (page, _) = DIALECT.page_query(&query);
        assert!(
            page.sql().as_str().ends_with(" LIMIT 51"),
            "{}",
            page.sql().as_str()
        );
        let tail = DIALECT.after_seq_query(&query, 5, 100, None);
        assert!(
            tail.sql().as_str().ends_with(" ORDER BY seq LIMIT 100"),
            "{}",
            tail.sql().as_str()
        );
    }

    #[test]
    fn libsqlite3_sys_default_build_shares_both_locks() {
        let defaults = ["ENABLE_MEMORY_MANAGEMENT", "THREADSAFE=1"].map(String::from);
        assert_eq!(process_wide_locks(&defaults).len(), 2);
        let ours = ["DEFAULT_MEMSTATUS=0", "THREADSAFE=1"].map(String::from);
        assert!(process_wide_locks(&ours).is_empty());
    }
}
