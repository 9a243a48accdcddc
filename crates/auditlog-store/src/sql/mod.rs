//! What the SQL backends share, so that SQLite, PostgreSQL and MySQL/MariaDB give
//! the same answers. This module holds the [`Dialect`] (what a backend spells or
//! decodes its own way), error mapping and opening a server's first connection;
//! the rest is in:
//!
//! - [`rows`]: the row form of an event, de-duplication and chunking of a batch,
//!   the multi-row insert;
//! - [`queries`]: the event queries' SQL (filters, page, count, activity, the
//!   producer report);
//! - [`chain`]: the integrity chain's SQL;
//! - [`generic`]: [`GenericStore`], the [`crate::AuditStore`] methods written once
//!   for any sqlx database, which each backend delegates to.

mod chain;
mod generic;
mod queries;
mod rows;

use std::time::Duration;

use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};
use uuid::Uuid;

use crate::{StoreError, redact};

pub(crate) use generic::GenericStore;
pub(crate) use rows::{EventRow, chunks, insert_values, unique_rows};

/// Connections per server-backed pool: enough for concurrent queries next to the
/// (serialised) writer, few enough that several auditors fit a default
/// `max_connections`.
pub(crate) const POOL_SIZE: u32 = 8;

/// How long opening a store or waiting for a pooled connection may take before the
/// database counts as unavailable: a dead server should fail fast and loudly.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Ids asked about per `stored_ids` statement: far below every backend's bind limit.
pub(crate) const STORED_IDS_CHUNK: usize = 5_000;

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
/// column is selected, bound and read back, how the `eventName` is read from the
/// stored JSON, integer division, how a producer id comes back, and how an insert
/// skips a row that is already there. Function pointers rather than a trait, so
/// that each backend's differences are one `const` value beside its schema.
pub(crate) struct Dialect<DB: Database> {
    /// The columns a [`crate::StoredEvent`] is read from: `id, seq, timestamp, body`,
    /// the id in whatever form [`Dialect::decode_id`] reads.
    pub columns: &'static str,
    /// Pushes an event id as the backend stores it (bytes, or a UUID).
    pub bind_id: fn(&mut QueryBuilder<DB>, Uuid),
    /// Reads the `id` column of a row of [`Dialect::columns`] back into a UUID.
    pub decode_id: fn(&DB::Row) -> Result<Uuid, StoreError>,
    /// An expression giving the event's `eventName` (NULL when absent) from `body`.
    pub event_name: &'static str,
    /// The integer division operator (`/`, or MySQL's `DIV`).
    pub div: &'static str,
    /// Reads the `producer_id` column of a producer report row (text, or bytes
    /// where the column is binary).
    pub producer_id: fn(&DB::Row) -> Result<String, StoreError>,
    /// What follows an insert into `audit_heads` so that a head whose `seq` is
    /// already stored is skipped, not an error.
    pub keep_stored_head: &'static str,
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
pub(crate) fn id_from_bytes<R>(row: &R) -> Result<Uuid, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: Vec<u8> = row.try_get("id").map_err(store_error)?;
    uuid_from_bytes(&id)
}

/// [`Dialect::producer_id`] of a backend whose `producer_id` column is text.
pub(crate) fn producer_id_text<R>(row: &R) -> Result<String, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get("producer_id").map_err(store_error)
}

/// Reads a 16-byte id column back into a UUID.
pub(crate) fn uuid_from_bytes(bytes: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes)
        .map_err(|e| StoreError::Backend(format!("a stored id is not a UUID: {e}")))
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
