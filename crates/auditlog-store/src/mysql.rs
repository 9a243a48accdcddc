//! MySQL / MariaDB backend (the prototype's database): a pooled `MySqlPool`, batches
//! staged with multi-row inserts into a per-connection temporary table, the same
//! queries as every other backend.

use std::borrow::Cow;
use std::collections::HashSet;
use std::str::FromStr;

use async_trait::async_trait;
use auditlog_event::DataEvent;
use sqlx::mysql::{
    MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool, MySqlPoolOptions, MySqlRow,
};
use sqlx::{Connection, MySql, QueryBuilder, Row};

use crate::chain::extend;
use crate::sql::{
    CHAIN_HEAD, CHAIN_PAGE, CONNECT_TIMEOUT, Dialect, LAST_SEQ, LATEST_HEAD, POOL_SIZE,
    ProducerRow, STORED_IDS_CHUNK, activity_count, activity_query, after_seq_query,
    chain_after_query, chain_entry, chain_head, chain_inserts, chain_link, chain_link_query,
    chunks, count_query, events_after_query, first_connection, get_query, into_page, page_query,
    producers_query, progress, prune_heads_query, save_head_query, signed_head, store_error, total,
    unique_rows, uuid_from_bytes,
};
use crate::{
    ActivityCount, AuditStore, ChainEntry, ChainHead, ChainLink, EventPage, EventQuery,
    InsertOutcome, ProducerProgress, SealOutcome, SignedHead, StoreError, StoredEvent, redact,
};

/// Binds per staged row: ord, id, action, timestamp, actor type and id, target type
/// and id, body, producer id and number.
const BINDS_PER_ROW: usize = 11;

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
        UNIQUE KEY audit_events_id (id),
        KEY audit_events_actor_time (actor_type, actor_id, timestamp DESC, id DESC),
        KEY audit_events_target_time (target_type, target_id, timestamp DESC, id DESC),
        KEY audit_events_time (timestamp DESC, id DESC),
        KEY audit_events_producer (producer_id, producer_seq)
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
    // One row whose lock serialises writers (see `insert_batch`).
    "CREATE TABLE IF NOT EXISTS audit_events_writer (
        id TINYINT NOT NULL PRIMARY KEY
    ) ENGINE = InnoDB",
    "INSERT INTO audit_events_writer (id) VALUES (1) ON DUPLICATE KEY UPDATE id = id",
    // The integrity chain (see `chain.rs`), one entry per sealed event.
    "CREATE TABLE IF NOT EXISTS audit_chain (
        seq BIGINT NOT NULL PRIMARY KEY,
        position BIGINT NOT NULL,
        id BINARY(16) NOT NULL,
        leaf_hash BINARY(32) NOT NULL,
        chain_hash BINARY(32) NOT NULL
    ) ENGINE = InnoDB",
    // Signed chain heads; only the newest is kept.
    "CREATE TABLE IF NOT EXISTS audit_heads (
        seq BIGINT NOT NULL PRIMARY KEY,
        size BIGINT NOT NULL,
        chain_hash BINARY(32) NOT NULL,
        signed_at BIGINT NOT NULL,
        key_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        public_key VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        signature VARBINARY(128) NOT NULL
    ) ENGINE = InnoDB",
    // One row whose lock serialises sealers (see `seal`).
    "CREATE TABLE IF NOT EXISTS audit_chain_sealer (
        id TINYINT NOT NULL PRIMARY KEY
    ) ENGINE = InnoDB",
    "INSERT INTO audit_chain_sealer (id) VALUES (1) ON DUPLICATE KEY UPDATE id = id",
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
];

/// Indexes on added columns: name, and the `ALTER TABLE` that adds it.
const ADDED_INDEXES: &[(&str, &str)] = &[(
    "audit_events_producer",
    "ALTER TABLE audit_events ADD KEY audit_events_producer (producer_id, producer_seq)",
)];

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
            .connect_lazy_with(options);
        Ok(MySqlStore {
            pool,
            max_statement_bytes: usize::try_from(max_packet / 2).unwrap_or(0).max(64 * 1024),
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

/// MySQL's spelling of the event queries (`/` would divide into a decimal there).
const DIALECT: Dialect<MySql> = Dialect {
    columns: "id, seq, timestamp, body",
    bind_id: |sql, id| {
        sql.push_bind(id.as_bytes().to_vec());
    },
    event_name: "JSON_UNQUOTE(JSON_EXTRACT(body, '$.eventName'))",
    div: "DIV",
};

#[async_trait]
impl AuditStore for MySqlStore {
    /// Why stage instead of `INSERT ... ON DUPLICATE KEY UPDATE id = id` straight
    /// into the table: sqlx connects with `CLIENT_FOUND_ROWS`, under which a skipped
    /// duplicate counts as one affected row just like an insert, so `rows_affected`
    /// could not tell new events from redelivered ones. (`INSERT IGNORE` would count
    /// right but also silences every other error, truncation included.) Staging makes
    /// the count exact: the batch goes into a temporary table with multi-row inserts
    /// (the fast path, chunked under the bind and packet limits), already-stored ids
    /// are deleted from it, and one `INSERT ... SELECT` moves the rest, its
    /// `rows_affected` being exactly the events added.
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
        sqlx::query("SELECT id FROM audit_events_writer WHERE id = 1 FOR UPDATE")
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let ids: Vec<uuid::Uuid> = rows.iter().map(|row| row.id).collect();
        // A locking read: it sees what other writers committed up to now, whatever
        // this transaction's snapshot.
        let stored: HashSet<uuid::Uuid> = ids_stored(&mut tx, &ids, " LOCK IN SHARE MODE")
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
            let mut insert = QueryBuilder::<MySql>::new(
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
            inserted += insert
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
        let rows = producers_query::<MySql>()
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
        let mut conn = self.pool.acquire().await.map_err(store_error)?;
        ids_stored(&mut conn, ids, "").await
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
        // Sealers take turns (several auditors may share the store) on their own
        // row lock, which writers do not take; the writer lock keeps `seq` order
        // commit order, so every row this reads above the head is final.
        sqlx::query("SELECT id FROM audit_chain_sealer WHERE id = 1 FOR UPDATE")
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
            for mut insert in chain_inserts::<MySql>(&entries) {
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
        chain_after_query::<MySql>(after_seq, limit)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(chain_entry)
            .collect()
    }

    async fn chain_link(&self, seq: i64) -> Result<Option<ChainLink>, StoreError> {
        let rows = chain_link_query::<MySql>(seq)
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
        save_head_query::<MySql>(head, "ON DUPLICATE KEY UPDATE seq = seq")
            .build()
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        prune_heads_query::<MySql>(head.head.seq)
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

fn stored_event(row: MySqlRow) -> Result<StoredEvent, StoreError> {
    let id: Vec<u8> = row.try_get("id").map_err(store_error)?;
    Ok(StoredEvent {
        id: uuid_from_bytes(&id)?,
        seq: row.try_get("seq").map_err(store_error)?,
        timestamp: row.try_get("timestamp").map_err(store_error)?,
        body: row.try_get("body").map_err(store_error)?,
    })
}

/// The producer id is `VARBINARY`, so it comes back as bytes; it went in as UTF-8.
fn producer_row(row: MySqlRow) -> Result<ProducerRow, StoreError> {
    let producer_id: Vec<u8> = row.try_get("producer_id").map_err(store_error)?;
    Ok(ProducerRow {
        producer_id: String::from_utf8(producer_id)
            .map_err(|e| StoreError::Backend(format!("a stored producer id is not UTF-8: {e}")))?,
        events: row.try_get("events").map_err(store_error)?,
        last_seq: row.try_get("last_seq").map_err(store_error)?,
        gap_from: row.try_get("gap_from").map_err(store_error)?,
        gap_to: row.try_get("gap_to").map_err(store_error)?,
    })
}

/// The ids among `ids` that are stored, read with `suffix` after the query (a
/// locking clause, or nothing).
async fn ids_stored(
    conn: &mut MySqlConnection,
    ids: &[uuid::Uuid],
    suffix: &str,
) -> Result<Vec<uuid::Uuid>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(STORED_IDS_CHUNK) {
        let mut sql = QueryBuilder::<MySql>::new("SELECT id FROM audit_events WHERE id IN (");
        let mut list = sql.separated(", ");
        for id in chunk {
            list.push_bind(id.as_bytes().to_vec());
        }
        sql.push(")");
        sql.push(suffix);
        for row in sql
            .build()
            .fetch_all(&mut *conn)
            .await
            .map_err(store_error)?
        {
            let id: Vec<u8> = row.try_get("id").map_err(store_error)?;
            found.push(uuid_from_bytes(&id)?);
        }
    }
    Ok(found)
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
