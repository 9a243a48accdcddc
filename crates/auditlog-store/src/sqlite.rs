//! SQLite backend: the embedded default. One writer connection (SQLite allows one
//! writer at a time anyway) and a small pool of readers over a WAL database.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use auditlog_event::DataEvent;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite};

use crate::chain::extend;
use crate::sql::{
    CHAIN_HEAD, CHAIN_PAGE, Dialect, LAST_SEQ, LATEST_HEAD, ProducerRow, STORED_IDS_CHUNK,
    activity_count, activity_query, after_seq_query, chain_after_query, chain_entry, chain_head,
    chain_inserts, chain_link, chain_link_query, chunks, count_query, events_after_query,
    get_query, into_page, page_query, producers_query, progress, prune_heads_query,
    save_head_query, signed_head, store_error, total, unique_rows, uuid_from_bytes,
};
use crate::{
    ActivityCount, AuditStore, ChainEntry, ChainHead, ChainLink, EventPage, EventQuery,
    InsertOutcome, ProducerProgress, SealOutcome, SignedHead, StoreError, StoredEvent,
};

/// The writer connection's page cache: negative means KiB, here 64 MiB.
const WRITER_CACHE_KIB: i64 = -65_536;

/// Each reader connection's page cache: 16 MiB.
const READER_CACHE_KIB: i64 = -16_384;

/// WAL pages written before a checkpoint (the default is 1 000).
const WAL_CHECKPOINT_PAGES: u32 = 16_384;

/// Rows per INSERT statement: 11 binds each stays far below SQLite's 32 766 limit.
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
        body TEXT NOT NULL,
        producer_id TEXT,
        producer_seq INTEGER
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
        seq INTEGER PRIMARY KEY,
        position INTEGER NOT NULL,
        id BLOB NOT NULL,
        leaf_hash BLOB NOT NULL,
        chain_hash BLOB NOT NULL
    )",
    // Signed chain heads; only the newest is kept.
    "CREATE TABLE IF NOT EXISTS audit_heads (
        seq INTEGER PRIMARY KEY,
        size INTEGER NOT NULL,
        chain_hash BLOB NOT NULL,
        signed_at INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        public_key TEXT NOT NULL,
        signature BLOB NOT NULL
    )",
];

/// Columns added after the first release, with their definitions: tables created
/// before them get them at open (see [`migrate`]).
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("producer_id", "producer_id TEXT"),
    ("producer_seq", "producer_seq INTEGER"),
];

/// Indexes on added columns, created once the columns exist.
const ADDED_INDEXES: &[&str] = &["CREATE INDEX IF NOT EXISTS audit_events_producer
        ON audit_events (producer_id, producer_seq)"];

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
                    .pragma("temp_store", "memory"),
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

/// SQLite's spelling of the event queries.
const DIALECT: Dialect<Sqlite> = Dialect {
    columns: "id, seq, timestamp, body",
    bind_id: |sql, id| {
        sql.push_bind(id.as_bytes().to_vec());
    },
    event_name: "json_extract(body, '$.eventName')",
    div: "/",
};

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
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO audit_events (id, action, timestamp, actor_type, actor_id, \
                 target_type, target_id, received_at, body, producer_id, producer_seq) ",
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
                    .push_bind(event.body.as_str())
                    .push_bind(event.producer_id)
                    .push_bind(event.producer_seq);
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
        let (mut sql, page_size) = page_query(&DIALECT, query);
        let rows = sql
            .build()
            .fetch_all(&self.readers)
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
            .fetch_one(&self.readers)
            .await
            .map_err(store_error)?;
        total(row.try_get("total").map_err(store_error)?)
    }

    async fn get(&self, id: uuid::Uuid) -> Result<Option<StoredEvent>, StoreError> {
        get_query(&DIALECT, id)
            .build()
            .fetch_optional(&self.readers)
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
            .fetch_all(&self.readers)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(stored_event)
            .collect()
    }

    async fn last_seq(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(LAST_SEQ)
            .fetch_one(&self.readers)
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
            .fetch_all(&self.readers)
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
        let rows = producers_query::<Sqlite>()
            .build()
            .fetch_all(&self.readers)
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
            let mut sql = QueryBuilder::<Sqlite>::new("SELECT id FROM audit_events WHERE id IN (");
            let mut list = sql.separated(", ");
            for id in chunk {
                list.push_bind(id.as_bytes().to_vec());
            }
            sql.push(")");
            for row in sql
                .build()
                .fetch_all(&self.readers)
                .await
                .map_err(store_error)?
            {
                let id: Vec<u8> = row.try_get("id").map_err(store_error)?;
                found.push(uuid_from_bytes(&id)?);
            }
        }
        Ok(found)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// The single writer connection, and `BEGIN IMMEDIATE` across processes, make
    /// sealers take turns with each other and with inserts.
    async fn seal(&self, max: u32) -> Result<SealOutcome, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
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
            for mut insert in chain_inserts::<Sqlite>(&entries) {
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
            .fetch_optional(&self.readers)
            .await
            .map_err(store_error)?;
        chain_head(row.as_ref())
    }

    async fn chain_after(&self, after_seq: i64, limit: u32) -> Result<Vec<ChainEntry>, StoreError> {
        chain_after_query::<Sqlite>(after_seq, limit)
            .build()
            .fetch_all(&self.readers)
            .await
            .map_err(store_error)?
            .iter()
            .map(chain_entry)
            .collect()
    }

    async fn chain_link(&self, seq: i64) -> Result<Option<ChainLink>, StoreError> {
        let rows = chain_link_query::<Sqlite>(seq)
            .build()
            .fetch_all(&self.readers)
            .await
            .map_err(store_error)?
            .iter()
            .map(chain_entry)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(chain_link(seq, rows))
    }

    async fn save_head(&self, head: &SignedHead) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(store_error)?;
        save_head_query::<Sqlite>(head, "ON CONFLICT (seq) DO NOTHING")
            .build()
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        prune_heads_query::<Sqlite>(head.head.seq)
            .build()
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn latest_head(&self) -> Result<Option<SignedHead>, StoreError> {
        sqlx::query(LATEST_HEAD)
            .fetch_optional(&self.readers)
            .await
            .map_err(store_error)?
            .as_ref()
            .map(signed_head)
            .transpose()
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

fn producer_row(row: SqliteRow) -> Result<ProducerRow, StoreError> {
    Ok(ProducerRow {
        producer_id: row.try_get("producer_id").map_err(store_error)?,
        events: row.try_get("events").map_err(store_error)?,
        last_seq: row.try_get("last_seq").map_err(store_error)?,
        gap_from: row.try_get("gap_from").map_err(store_error)?,
        gap_to: row.try_get("gap_to").map_err(store_error)?,
    })
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

    #[test]
    fn libsqlite3_sys_default_build_shares_both_locks() {
        let defaults = ["ENABLE_MEMORY_MANAGEMENT", "THREADSAFE=1"].map(String::from);
        assert_eq!(process_wide_locks(&defaults).len(), 2);
        let ours = ["DEFAULT_MEMSTATUS=0", "THREADSAFE=1"].map(String::from);
        assert!(process_wide_locks(&ours).is_empty());
    }
}
