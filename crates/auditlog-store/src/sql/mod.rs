//! What the SQL backends share, so that SQLite, PostgreSQL and MySQL/MariaDB give
//! the same answers. This module holds the [`Dialect`] (what a backend spells or
//! decodes its own way), error mapping and opening a server's first connection;
//! the rest is in:
//!
//! - [`rows`]: the row form of an event, de-duplication and chunking of a batch,
//!   the multi-row insert;
//! - [`queries`]: the event queries' SQL (filters, page, count, activity, the
//!   producer report);
//! - [`tree`]: the Merkle tree's SQL (leaves, tile-level nodes, checkpoints, the
//!   migration record);
//! - [`retention`]: the expired events a prune looks at, the record of pruned
//!   leaves, legal holds and policies;
//! - [`legacy`]: the two reads of the earlier releases' hash chain that migrating
//!   a store still needs;
//! - [`generic`]: [`GenericStore`], the [`crate::AuditStore`] methods written once
//!   for any sqlx database, which each backend delegates to.

mod generic;
mod legacy;
mod queries;
mod retention;
mod rows;
mod tree;

use std::time::Duration;

use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};
use uuid::Uuid;

use crate::{StoreError, redact};

pub(crate) use generic::GenericStore;
pub(crate) use queries::LAST_SEQ;
pub(crate) use retention::{candidate_columns, pruned_insert};
pub(crate) use rows::{EventRow, INSERT_BINDS_PER_ROW, chunks, insert_values, unique_rows};

/// Connections per server-backed pool: enough for concurrent queries next to the
/// (serialised) writer, few enough that several auditors fit a default
/// `max_connections`.
pub(crate) const POOL_SIZE: u32 = 8;

/// How long opening a store or waiting for a pooled connection may take before the
/// database counts as unavailable: a dead server should fail fast and loudly.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the database keeps the session holding the sealer role (see
/// [`crate::AuditStore::sealer_role`]) while it says nothing. The holder checks its
/// role every second or so, which keeps the session alive; a holder that stopped
/// (frozen, cut off, its machine gone) loses the session after this long, and with
/// it the lock, so that another auditor takes over. (A killed process loses it at
/// once: its socket closes.)
pub(crate) const SEALER_SESSION_IDLE: Duration = Duration::from_secs(10);

/// Appends ` ORDER BY {order} LIMIT {rows}` with the row count written into the
/// statement rather than bound. SQLite (the bundled 3.51) reads a bound LIMIT's
/// value when it plans, which marks the statement as depending on that
/// parameter, so binding it again, as every execution of a cached statement
/// does, makes SQLite prepare the whole statement anew: measured, a tenth of a
/// reader's time on a first page. The count is a number this crate computed,
/// never text from outside.
pub(crate) fn push_order_limit<DB: Database>(sql: &mut QueryBuilder<DB>, order: &str, rows: i64) {
    sql.push(format!(" ORDER BY {order} LIMIT {rows}"));
}

/// Connection options kept to open the sealer role's session later, shown by
/// `Debug` without their contents (they hold the password).
#[derive(Clone)]
pub(crate) struct RoleOptions<T>(pub T);

/// The sealer role held by a session of its own (a PostgreSQL advisory lock, a
/// MySQL named lock), which the server ends, releasing the lock, when the process
/// dies or the session stays idle for [`SEALER_SESSION_IDLE`]. Checking pings that
/// session, which also keeps it from going idle.
pub(crate) struct SessionSealerRole<C>(pub C);

#[async_trait::async_trait]
impl<C: sqlx::Connection + Sync> crate::SealerRole for SessionSealerRole<C> {
    async fn check(&mut self) -> Result<(), StoreError> {
        self.0.ping().await.map_err(store_error)
    }
}

impl<T> std::fmt::Debug for RoleOptions<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoleOptions(..)")
    }
}

/// Opens the sealer role's own session within [`CONNECT_TIMEOUT`].
pub(crate) async fn role_connection<C>(
    database: &str,
    connecting: impl Future<Output = Result<C, sqlx::Error>>,
) -> Result<C, StoreError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(store_error(err)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no connection to {database} for the sealer role within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Ids asked about per `stored_ids` statement: far below every backend's bind limit.
pub(crate) const STORED_IDS_CHUNK: usize = 5_000;

/// Subjects per insert of the subject-key methods: four binds each, far below
/// every backend's bind limit.
pub(crate) const SUBJECT_KEYS_CHUNK: usize = 1_000;

/// Subjects per read of their keys: the statement names each in one term of an
/// `OR`, and SQLite refuses an expression nested more than 1 000 deep, which a
/// chain of that many terms is.
pub(crate) const SUBJECT_READS_CHUNK: usize = 200;

/// Opens the first connection of a server store, within [`CONNECT_TIMEOUT`]. Done by
/// hand rather than through the pool because a pool retries a refused connection
/// until its timeout and then reports only "pool timed out", where an operator needs
/// the cause (refused, unknown host, bad password, no such database) at once.
pub(crate) async fn first_connection<C>(
    database: &str,
    url: &str,
    connecting: impl Future<Output = Result<C, sqlx::Error>>,
) -> Result<C, StoreError> {
    let cause = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => return Ok(conn),
        Ok(Err(err)) => err.to_string(),
        Err(_) => format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
    };
    Err(StoreError::Unavailable(format!(
        "cannot connect to {database} at {}: {cause}",
        redact(url)
    )))
}

/// What differs between the backends' SQL for the shared statements: how an id
/// column is selected, bound and read back, how a text column comes back, how the
/// `eventName` is read from the stored JSON, integer division, and how an insert
/// skips a row that is already there. Function pointers rather than a trait, so
/// that each backend's differences are one `const` value beside its schema.
pub(crate) struct Dialect<DB: Database> {
    /// The columns a [`crate::StoredEvent`] is read from: `id, seq, timestamp,
    /// received_at, body`,
    /// the id in whatever form [`Dialect::decode_id`] reads.
    pub columns: &'static str,
    /// The expression that selects the id column `column` (qualified as the
    /// statement needs) in the form [`Dialect::decode_id`] reads.
    pub select_id: fn(&str) -> String,
    /// Pushes an event id as the backend stores it (bytes, or a UUID).
    pub bind_id: fn(&mut QueryBuilder<DB>, Uuid),
    /// Reads the id column named `column` of a row back into a UUID.
    pub decode_id: fn(&DB::Row, &str) -> Result<Uuid, StoreError>,
    /// Reads a text column that may be NULL (text, or bytes where the backend
    /// keeps it binary so that it compares byte for byte).
    pub text: fn(&DB::Row, &str) -> Result<Option<String>, StoreError>,
    /// An expression giving the event's `eventName` (NULL when absent) from `body`.
    pub event_name: &'static str,
    /// The integer division operator (`/`, or MySQL's `DIV`).
    pub div: &'static str,
    /// What follows an insert so that a row whose key `column` is already stored
    /// is kept as it is, without an error.
    pub keep_existing: fn(&str) -> String,
    /// Whether `audit_events` has `actor_key` and `target_key` ([`crate::object_key`])
    /// and indexes actors and targets by them: queries for an object then name its
    /// key (for the index) besides its type and id (which settle a shared key).
    pub object_keys: bool,
    /// The tenant column as a query names it where another index is the one to
    /// read (an actor's, a target's or an involved object's, or `seq` order for a
    /// tail): spelled so that the planner cannot take the tenant's index instead.
    pub tenant_off_index: &'static str,
    /// The rows a statement changed, from its result (each backend's type has
    /// the method; sqlx's `Database` does not name it).
    pub rows_affected: fn(&DB::QueryResult) -> u64,
}

/// [`Dialect::select_id`] of a backend that selects an id column as it is stored.
pub(crate) fn select_id_as_stored(column: &str) -> String {
    column.to_owned()
}

/// [`Dialect::keep_existing`] of a backend with `ON CONFLICT DO NOTHING`.
pub(crate) fn on_conflict_do_nothing(_column: &str) -> String {
    "ON CONFLICT DO NOTHING".to_owned()
}

/// [`Dialect::bind_id`] of a backend that stores an id as its 16 bytes.
pub(crate) fn bind_id_bytes<DB>(sql: &mut QueryBuilder<DB>, id: Uuid)
where
    DB: Database,
    Vec<u8>: for<'q> Encode<'q, DB> + Type<DB>,
{
    sql.push_bind(id.as_bytes().to_vec());
}

/// [`Dialect::decode_id`] of a backend that stores an id as its 16 bytes.
pub(crate) fn id_from_bytes<R>(row: &R, column: &str) -> Result<Uuid, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: Vec<u8> = row.try_get(column).map_err(store_error)?;
    uuid_from_bytes(&id)
}

/// [`Dialect::text`] of a backend whose text columns are text.
pub(crate) fn text_column<R>(row: &R, column: &str) -> Result<Option<String>, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(column).map_err(store_error)
}

/// Reads a 16-byte id column back into a UUID.
pub(crate) fn uuid_from_bytes(bytes: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes)
        .map_err(|e| StoreError::Backend(format!("a stored id is not a UUID: {e}")))
}

/// Reads a stored 32-byte hash column.
pub(crate) fn hash_from_bytes(bytes: &[u8]) -> Result<auditlog_tlog::Hash, StoreError> {
    bytes.try_into().map_err(|_| {
        StoreError::Backend(format!("a stored hash has {} bytes, not 32", bytes.len()))
    })
}

/// Maps a driver error to the store's: [`StoreError::Unavailable`] when the database
/// could not be reached or went away (worth retrying later, the data is not at
/// fault), [`StoreError::Backend`] for everything else.
pub(crate) fn store_error(err: sqlx::Error) -> StoreError {
    if is_unavailable(&err) {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Backend(err.to_string())
    }
}

fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else {
                return false;
            };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite reports extended result codes; the primary one is the low
                // byte. BUSY (5) and LOCKED (6) mean another writer held the file past
                // the busy timeout.
                code.parse::<i32>()
                    .is_ok_and(|extended| matches!(extended & 0xff, 5 | 6))
            } else {
                // SQLSTATE class 08 is "connection exception" on PostgreSQL and MySQL
                // (MySQL's "too many connections" and "server shutdown" are in it
                // too); PostgreSQL reports its own shutdown, start-up and connection
                // limit as 57P01-57P03 and 53300.
                code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
            }
        }
        _ => false,
    }
}
