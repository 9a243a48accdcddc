//! What the SQL backends share, so that SQLite, PostgreSQL and MySQL/MariaDB give
//! the same answers: the row form of an event, de-duplication and chunking of a
//! batch, the page query, the producer report, error mapping and the clock.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use auditlog_event::DataEvent;
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};
use uuid::Uuid;

use crate::chain::hash_from_bytes;
use crate::{
    ActivityCount, ChainEntry, ChainHead, ChainLink, Cursor, EventPage, EventQuery, Order,
    ProducerProgress, SignedHead, StoreError, StoredEvent, ZERO_HASH, redact,
};

/// Connections per server-backed pool: enough for concurrent queries next to the
/// (serialised) writer, few enough that several auditors fit a default
/// `max_connections`.
pub(crate) const POOL_SIZE: u32 = 8;

/// How long opening a store or waiting for a pooled connection may take before the
/// database counts as unavailable: a dead server should fail fast and loudly.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The columns of one `audit_events` row, computed once per event so that chunking
/// by size and binding do not serialize the event twice.
pub(crate) struct EventRow<'a> {
    pub id: Uuid,
    pub action: &'static str,
    pub timestamp: i64,
    pub actor_type: &'a str,
    /// The text form queries match on ([`auditlog_event::ObjectId::key`]).
    pub actor_id: String,
    pub target_type: &'a str,
    pub target_id: String,
    /// The JSON text stored and returned byte for byte.
    pub body: String,
    /// The producer that numbered the event; `None` together with `producer_seq`
    /// (see [`numbering`]).
    pub producer_id: Option<&'a str>,
    /// The event's number in its producer's output, 1 or more.
    pub producer_seq: Option<i64>,
}

impl EventRow<'_> {
    /// About how many bytes this row adds to an insert statement: its variable-length
    /// values plus a generous allowance for the fixed-size ones and framing.
    pub fn wire_bytes(&self) -> usize {
        64 + self.actor_type.len()
            + self.actor_id.len()
            + self.producer_id.map_or(0, str::len)
            + self.target_type.len()
            + self.target_id.len()
            + self.body.len()
    }
}

/// The rows to store for a batch, in batch order, each id once: a later event with an
/// id already seen in the same batch is a duplicate exactly like one already stored,
/// and the first occurrence wins. Doing this here keeps every backend's insert simple
/// (PostgreSQL's `ON CONFLICT` and MySQL's unique key would otherwise each treat an
/// in-batch repeat in their own way).
pub(crate) fn unique_rows(events: &[DataEvent]) -> Vec<EventRow<'_>> {
    let mut seen = HashSet::with_capacity(events.len());
    events
        .iter()
        .filter(|event| seen.insert(event.id))
        .map(|event| {
            let (producer_id, producer_seq) = numbering(event).unzip();
            EventRow {
                id: event.id,
                action: event.action.as_str(),
                timestamp: event.timestamp,
                actor_type: event.actor_type.as_str(),
                actor_id: event.actor_id.key(),
                target_type: event.target_type.as_str(),
                target_id: event.target_id.key(),
                body: event.to_json(),
                producer_id,
                producer_seq,
            }
        })
        .collect()
}

/// The producer columns of an event: both or neither. Parsing already guarantees an
/// id of at most 128 characters with a number of 1 or more, but events built in code
/// skip parsing; a number the columns cannot hold (0, or above `i64::MAX`, the
/// largest BIGINT) or an id longer than the column would otherwise fail the whole
/// batch, or wrap and invent a gap. Such an event is stored (its body keeps what
/// was sent) but not counted as numbered.
pub(crate) fn numbering(event: &DataEvent) -> Option<(&str, i64)> {
    let id = event
        .producer_id
        .as_deref()
        .filter(|id| id.chars().count() <= MAX_PRODUCER_ID_CHARS)?;
    let seq = i64::try_from(event.producer_seq?)
        .ok()
        .filter(|seq| *seq >= 1)?;
    Some((id, seq))
}

/// Longest producer id the `producer_id` columns hold.
const MAX_PRODUCER_ID_CHARS: usize = 128;

/// Splits rows into consecutive chunks of at most `max_rows` rows and, unless a single
/// row is larger, at most `max_bytes` bytes ([`EventRow::wire_bytes`]): statements
/// must stay under the bind-parameter limit and the server's packet or message size.
pub(crate) fn chunks<'r, 'a>(
    rows: &'r [EventRow<'a>],
    max_rows: usize,
    max_bytes: usize,
) -> impl Iterator<Item = &'r [EventRow<'a>]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut len = 0;
        for row in rest.iter().take(max_rows.max(1)) {
            // Room for at least one row, whatever its size.
            if len > 0 && bytes + row.wire_bytes() > max_bytes {
                break;
            }
            bytes += row.wire_bytes();
            len += 1;
        }
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        Some(chunk)
    })
}

/// What differs between the backends' SQL for the event queries: how an id column is
/// selected and bound, how the `eventName` is read from the stored JSON, and integer
/// division.
pub(crate) struct Dialect<DB: Database> {
    /// The columns a [`crate::StoredEvent`] is read from: `id, seq, timestamp, body`,
    /// the id in whatever form the backend decodes.
    pub columns: &'static str,
    /// Pushes an event id as the backend stores it (bytes, or a UUID).
    pub bind_id: fn(&mut QueryBuilder<DB>, Uuid),
    /// An expression giving the event's `eventName` (NULL when absent) from `body`.
    pub event_name: &'static str,
    /// The integer division operator (`/`, or MySQL's `DIV`).
    pub div: &'static str,
}

/// Appends ` AND …` for every filter of `query` (not its cursor), each value bound.
fn push_filters<DB>(sql: &mut QueryBuilder<DB>, query: &EventQuery, dialect: &Dialect<DB>)
where
    DB: Database,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    &'static str: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    if let Some(actor) = &query.actor {
        sql.push(" AND actor_type = ")
            .push_bind(actor.object_type.as_str().to_owned())
            .push(" AND actor_id = ")
            .push_bind(actor.id.clone());
    }
    if let Some(target) = &query.target {
        sql.push(" AND target_type = ")
            .push_bind(target.object_type.as_str().to_owned())
            .push(" AND target_id = ")
            .push_bind(target.id.clone());
    }
    if let Some(who) = &query.involving {
        sql.push(" AND ((actor_type = ")
            .push_bind(who.object_type.as_str().to_owned())
            .push(" AND actor_id = ")
            .push_bind(who.id.clone())
            .push(") OR (target_type = ")
            .push_bind(who.object_type.as_str().to_owned())
            .push(" AND target_id = ")
            .push_bind(who.id.clone())
            .push("))");
    }
    if !query.actions.is_empty() {
        sql.push(" AND action IN (");
        let mut list = sql.separated(", ");
        for action in &query.actions {
            list.push_bind(action.as_str());
        }
        sql.push(")");
    }
    if !query.event_names.is_empty() {
        sql.push(format!(" AND {} IN (", dialect.event_name));
        let mut list = sql.separated(", ");
        for name in &query.event_names {
            list.push_bind(name.clone());
        }
        sql.push(")");
    }
    if let Some(since) = query.since {
        sql.push(" AND timestamp >= ").push_bind(since);
    }
    if let Some(until) = query.until {
        sql.push(" AND timestamp < ").push_bind(until);
    }
}

/// The page query every backend runs: the filters of `query` with every value bound
/// as a parameter, in its order, one row more than the page so the caller knows
/// whether a next page exists. Returns the builder and the page size in force.
pub(crate) fn page_query<DB>(dialect: &Dialect<DB>, query: &EventQuery) -> (QueryBuilder<DB>, usize)
where
    DB: Database,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    &'static str: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT {} FROM audit_events WHERE 1 = 1",
        dialect.columns
    ));
    push_filters(&mut sql, query, dialect);
    let (beyond, direction) = match query.order {
        Order::NewestFirst => ("<", "DESC"),
        Order::OldestFirst => (">", "ASC"),
    };
    if let Some(after) = query.after {
        // Keyset pagination: strictly beyond the last row of the previous page in
        // (timestamp, id) order; the id breaks ties between equal timestamps. Events
        // stored meanwhile land before the cursor (newer, newest first) or after the
        // rows already read (oldest first), never among them.
        sql.push(format!(" AND (timestamp {beyond} "))
            .push_bind(after.timestamp)
            .push(" OR (timestamp = ")
            .push_bind(after.timestamp)
            .push(format!(" AND id {beyond} "));
        (dialect.bind_id)(&mut sql, after.id);
        sql.push("))");
    }
    let page_size = query.page_size.clamp(1, EventQuery::MAX_PAGE_SIZE) as usize;
    sql.push(format!(
        " ORDER BY timestamp {direction}, id {direction} LIMIT "
    ))
    .push_bind(page_size as i64 + 1);
    (sql, page_size)
}

/// Turns the up to `page_size + 1` rows of [`page_query`] into a page and its cursor.
pub(crate) fn into_page(mut events: Vec<StoredEvent>, page_size: usize, order: Order) -> EventPage {
    let next = if events.len() > page_size {
        events.truncate(page_size);
        events.last().map(|last| Cursor {
            timestamp: last.timestamp,
            id: last.id,
            order,
        })
    } else {
        None
    };
    EventPage { events, next }
}

/// `SELECT COUNT(*)` over the filters of `query`; one column, `total`.
pub(crate) fn count_query<DB>(dialect: &Dialect<DB>, query: &EventQuery) -> QueryBuilder<DB>
where
    DB: Database,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    &'static str: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new("SELECT COUNT(*) AS total FROM audit_events WHERE 1 = 1");
    push_filters(&mut sql, query, dialect);
    sql
}

/// The event with one id, in the columns of [`Dialect::columns`].
pub(crate) fn get_query<DB: Database>(dialect: &Dialect<DB>, id: Uuid) -> QueryBuilder<DB> {
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT {} FROM audit_events WHERE id = ",
        dialect.columns
    ));
    (dialect.bind_id)(&mut sql, id);
    sql
}

/// Events over the filters of `query` with `seq` above `after_seq`, by `seq`, at
/// most `limit` (clamped to 1..=[`EventQuery::MAX_PAGE_SIZE`]).
pub(crate) fn after_seq_query<DB>(
    dialect: &Dialect<DB>,
    query: &EventQuery,
    after_seq: i64,
    limit: u32,
) -> QueryBuilder<DB>
where
    DB: Database,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    &'static str: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT {} FROM audit_events WHERE seq > ",
        dialect.columns
    ));
    sql.push_bind(after_seq);
    push_filters(&mut sql, query, dialect);
    sql.push(" ORDER BY seq LIMIT ")
        .push_bind(i64::from(limit.clamp(1, EventQuery::MAX_PAGE_SIZE)));
    sql
}

/// The highest `seq`, 0 when empty; one column, `last_seq`.
pub(crate) const LAST_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) AS last_seq FROM audit_events";

/// Counts per `(bucket start, action)` over the filters of `query`: rows
/// `(start, action, count)`, ascending.
pub(crate) fn activity_query<DB>(
    dialect: &Dialect<DB>,
    query: &EventQuery,
    bucket_ms: i64,
) -> QueryBuilder<DB>
where
    DB: Database,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    &'static str: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let bucket_ms = bucket_ms.max(1);
    let mut sql = QueryBuilder::<DB>::new("SELECT (timestamp ");
    sql.push(dialect.div)
        .push(" ")
        .push_bind(bucket_ms)
        .push(") * ")
        .push_bind(bucket_ms)
        .push(" AS start, action, COUNT(*) AS n FROM audit_events WHERE 1 = 1");
    push_filters(&mut sql, query, dialect);
    sql.push(" GROUP BY 1, 2 ORDER BY 1, 2");
    sql
}

/// Reads the rows of [`activity_query`], decoded by the backend.
pub(crate) fn activity_count(
    start: i64,
    action: String,
    n: i64,
) -> Result<ActivityCount, StoreError> {
    Ok(ActivityCount {
        start,
        action,
        count: u64::try_from(n)
            .map_err(|_| StoreError::Backend(format!("a bucket count is negative: {n}")))?,
    })
}

/// A `COUNT(*)` as the store's count.
pub(crate) fn total(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Backend(format!("a count is negative: {n}")))
}

/// The one statement behind [`crate::AuditStore::producers`]: a `GROUP BY` gives
/// each producer's distinct count and highest number; `LAG` over the
/// `(producer_id, producer_seq)` index finds each stored number whose predecessor
/// is not the number before it, and `ROW_NUMBER` keeps the first
/// [`ProducerProgress::MAX_GAPS`] such gaps per producer. The first number of a
/// producer has no predecessor and compares with 0, which makes a missing start
/// (first stored number above 1) a gap like any other. A repeated number is its own
/// predecessor and so no gap. One statement rather than two so that the counts and
/// the gaps come from one snapshot on every backend while events keep arriving.
///
/// Rows are `(producer_id, events, last_seq, gap_from, gap_to)`: a count row has
/// the gap columns NULL, a gap row the count columns; [`progress`] assembles them.
pub(crate) fn producers_query<DB>() -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(
        "SELECT producer_id, COUNT(DISTINCT producer_seq) AS events,
            MAX(producer_seq) AS last_seq, NULL AS gap_from, NULL AS gap_to
        FROM audit_events
        WHERE producer_id IS NOT NULL
        GROUP BY producer_id
        UNION ALL
        SELECT producer_id, NULL, NULL, gap_from, gap_to
        FROM (
            SELECT producer_id, prev_seq + 1 AS gap_from, producer_seq - 1 AS gap_to,
                ROW_NUMBER() OVER (PARTITION BY producer_id ORDER BY producer_seq) AS n
            FROM (
                SELECT producer_id, producer_seq,
                    COALESCE(LAG(producer_seq) OVER (
                        PARTITION BY producer_id ORDER BY producer_seq), 0) AS prev_seq
                FROM audit_events
                WHERE producer_id IS NOT NULL
            ) AS numbered
            WHERE producer_seq > prev_seq + 1
        ) AS gaps
        WHERE n <= ",
    );
    sql.push_bind(ProducerProgress::MAX_GAPS as i64);
    sql
}

/// One row of [`producers_query`], decoded by the backend (whose id column types
/// differ).
pub(crate) struct ProducerRow {
    pub producer_id: String,
    pub events: Option<i64>,
    pub last_seq: Option<i64>,
    pub gap_from: Option<i64>,
    pub gap_to: Option<i64>,
}

/// Assembles the rows of [`producers_query`] into the report, sorted by producer id
/// here rather than in SQL: PostgreSQL would sort by the database's collation, the
/// others byte for byte, and every backend must give the same order.
pub(crate) fn progress(
    rows: impl IntoIterator<Item = ProducerRow>,
) -> Result<Vec<ProducerProgress>, StoreError> {
    let count = |value: i64| {
        u64::try_from(value)
            .map_err(|_| StoreError::Backend(format!("a producer count is negative: {value}")))
    };
    let mut producers = BTreeMap::<String, ProducerProgress>::new();
    for row in rows {
        let entry = producers
            .entry(row.producer_id)
            .or_insert_with_key(|id| ProducerProgress {
                producer_id: id.clone(),
                ..ProducerProgress::default()
            });
        if let (Some(events), Some(last_seq)) = (row.events, row.last_seq) {
            entry.events = count(events)?;
            entry.last_seq = count(last_seq)?;
            // Every stored number is in 1..=last_seq, so what is not stored of that
            // range is exactly the difference.
            entry.missing = entry.last_seq.saturating_sub(entry.events);
        }
        if let (Some(from), Some(to)) = (row.gap_from, row.gap_to) {
            entry.gaps.push((count(from)?, count(to)?));
        }
    }
    Ok(producers
        .into_values()
        .map(|mut producer| {
            producer.gaps.sort_unstable();
            producer
        })
        .collect())
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

/// Rows read per statement while sealing or listing the chain.
pub(crate) const CHAIN_PAGE: u32 = 1_000;

/// Chain entries per insert statement: 5 binds each, far below every bind limit.
pub(crate) const CHAIN_ROWS_PER_STATEMENT: usize = 1_000;

/// The columns a [`ChainEntry`] is read from.
const CHAIN_COLUMNS: &str = "seq, position, id, leaf_hash, chain_hash";

/// The last chain entry: `seq, position, chain_hash`.
pub(crate) const CHAIN_HEAD: &str =
    "SELECT seq, position, chain_hash FROM audit_chain ORDER BY seq DESC LIMIT 1";

/// Every stored event above `after_seq`, by `seq`, at most `limit`: what sealing
/// reads (unfiltered, and not clamped to a query page).
pub(crate) fn events_after_query<DB>(
    dialect: &Dialect<DB>,
    after_seq: i64,
    limit: u32,
) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT {} FROM audit_events WHERE seq > ",
        dialect.columns
    ));
    sql.push_bind(after_seq)
        .push(" ORDER BY seq LIMIT ")
        .push_bind(i64::from(limit.max(1)));
    sql
}

/// Chain entries above `after_seq`, by `seq`, at most `limit`.
pub(crate) fn chain_after_query<DB>(after_seq: i64, limit: u32) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT {CHAIN_COLUMNS} FROM audit_chain WHERE seq > "
    ));
    sql.push_bind(after_seq)
        .push(" ORDER BY seq LIMIT ")
        .push_bind(i64::from(limit.max(1)));
    sql
}

/// The entry of `seq` and the one before it: the rows at or below `seq`, newest
/// first, at most two.
pub(crate) fn chain_link_query<DB>(seq: i64) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT {CHAIN_COLUMNS} FROM audit_chain WHERE seq <= "
    ));
    sql.push_bind(seq).push(" ORDER BY seq DESC LIMIT 2");
    sql
}

/// The answer to [`chain_link_query`]'s rows.
pub(crate) fn chain_link(seq: i64, rows: Vec<ChainEntry>) -> Option<ChainLink> {
    let mut rows = rows.into_iter();
    let entry = rows.next().filter(|entry| entry.seq == seq)?;
    let prev_chain_hash = rows.next().map_or(ZERO_HASH, |prev| prev.chain_hash);
    Some(ChainLink {
        entry,
        prev_chain_hash,
    })
}

/// Inserts for `entries`, [`CHAIN_ROWS_PER_STATEMENT`] per statement.
pub(crate) fn chain_inserts<DB>(entries: &[ChainEntry]) -> impl Iterator<Item = QueryBuilder<DB>>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    Vec<u8>: for<'q> Encode<'q, DB> + Type<DB>,
{
    entries.chunks(CHAIN_ROWS_PER_STATEMENT).map(|chunk| {
        let mut sql = QueryBuilder::<DB>::new(
            "INSERT INTO audit_chain (seq, position, id, leaf_hash, chain_hash) ",
        );
        sql.push_values(chunk, |mut row, entry| {
            row.push_bind(entry.seq)
                .push_bind(entry.position)
                .push_bind(entry.id.as_bytes().to_vec())
                .push_bind(entry.leaf_hash.to_vec())
                .push_bind(entry.chain_hash.to_vec());
        });
        sql
    })
}

/// The newest signed head.
pub(crate) const LATEST_HEAD: &str = "SELECT seq, size, chain_hash, signed_at, key_id, public_key, \
     signature FROM audit_heads ORDER BY seq DESC LIMIT 1";

/// Inserts a signed head unless one with its `seq` is there (`on_conflict`: the
/// backend's spelling of "do nothing").
pub(crate) fn save_head_query<DB>(head: &SignedHead, on_conflict: &str) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    Vec<u8>: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(
        "INSERT INTO audit_heads (seq, size, chain_hash, signed_at, key_id, public_key, signature) \
         VALUES (",
    );
    let mut values = sql.separated(", ");
    values
        .push_bind(head.head.seq)
        .push_bind(head.head.size)
        .push_bind(head.head.chain_hash.to_vec())
        .push_bind(head.signed_at)
        .push_bind(head.key_id.clone())
        .push_bind(head.public_key.clone())
        .push_bind(head.signature.clone());
    sql.push(") ").push(on_conflict);
    sql
}

/// Drops the heads older than `seq`: only the newest is needed.
pub(crate) fn prune_heads_query<DB>(seq: i64) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new("DELETE FROM audit_heads WHERE seq < ");
    sql.push_bind(seq);
    sql
}

/// Reads a row of [`CHAIN_COLUMNS`].
pub(crate) fn chain_entry<R>(row: &R) -> Result<ChainEntry, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: Vec<u8> = row.try_get("id").map_err(store_error)?;
    let leaf: Vec<u8> = row.try_get("leaf_hash").map_err(store_error)?;
    let chain: Vec<u8> = row.try_get("chain_hash").map_err(store_error)?;
    Ok(ChainEntry {
        seq: row.try_get("seq").map_err(store_error)?,
        position: row.try_get("position").map_err(store_error)?,
        id: uuid_from_bytes(&id)?,
        leaf_hash: hash_from_bytes(&leaf)?,
        chain_hash: hash_from_bytes(&chain)?,
    })
}

/// Reads a row of [`CHAIN_HEAD`].
pub(crate) fn chain_head<R>(row: Option<&R>) -> Result<ChainHead, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let Some(row) = row else {
        return Ok(ChainHead::default());
    };
    let chain: Vec<u8> = row.try_get("chain_hash").map_err(store_error)?;
    Ok(ChainHead {
        seq: row.try_get("seq").map_err(store_error)?,
        size: row.try_get("position").map_err(store_error)?,
        chain_hash: hash_from_bytes(&chain)?,
    })
}

/// Reads a row of [`LATEST_HEAD`].
pub(crate) fn signed_head<R>(row: &R) -> Result<SignedHead, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let chain: Vec<u8> = row.try_get("chain_hash").map_err(store_error)?;
    Ok(SignedHead {
        head: ChainHead {
            seq: row.try_get("seq").map_err(store_error)?,
            size: row.try_get("size").map_err(store_error)?,
            chain_hash: hash_from_bytes(&chain)?,
        },
        signed_at: row.try_get("signed_at").map_err(store_error)?,
        key_id: row.try_get("key_id").map_err(store_error)?,
        public_key: row.try_get("public_key").map_err(store_error)?,
        signature: row.try_get("signature").map_err(store_error)?,
    })
}

/// Ids asked about per `stored_ids` statement: far below every backend's bind limit.
pub(crate) const STORED_IDS_CHUNK: usize = 5_000;

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog_event::{Action, ObjectRef, ObjectType};

    fn event(n: i64) -> DataEvent {
        let users = ObjectType::parse("actorType", "users").unwrap_or_else(|e| panic!("{e}"));
        DataEvent::new(
            Action::Viewed,
            ObjectRef::new(users.clone(), n),
            ObjectRef::new(users, n),
            n,
        )
    }

    #[test]
    fn a_repeated_id_in_a_batch_keeps_its_first_occurrence() {
        let first = event(1);
        let mut repeat = event(2);
        repeat.id = first.id;
        let other = event(3);
        let batch = [first.clone(), repeat, other.clone()];

        let rows = unique_rows(&batch);

        let ids: Vec<_> = rows.iter().map(|r| (r.id, r.timestamp)).collect();
        assert_eq!(ids, [(first.id, 1), (other.id, 3)]);
    }

    fn numbered(producer_id: &str, seq: u64) -> DataEvent {
        let mut e = event(1);
        e.producer_id = Some(producer_id.into());
        e.producer_seq = Some(seq);
        e
    }

    #[test]
    fn an_event_is_numbered_only_when_both_columns_can_hold_its_number() {
        assert_eq!(numbering(&numbered("api", 7)), Some(("api", 7)));
        assert_eq!(numbering(&event(1)), None);
        assert_eq!(numbering(&numbered("api", 0)), None);
        assert_eq!(numbering(&numbered("api", u64::MAX)), None);
        assert_eq!(numbering(&numbered(&"é".repeat(129), 1)), None);
        let mut alone = numbered("api", 1);
        alone.producer_id = None;
        assert_eq!(numbering(&alone), None);
    }

    #[test]
    fn progress_rows_are_assembled_per_producer_in_byte_order() {
        let counts = |id: &str, events, last_seq| ProducerRow {
            producer_id: id.into(),
            events: Some(events),
            last_seq: Some(last_seq),
            gap_from: None,
            gap_to: None,
        };
        let gap = |id: &str, from, to| ProducerRow {
            producer_id: id.into(),
            events: None,
            last_seq: None,
            gap_from: Some(from),
            gap_to: Some(to),
        };
        let rows = vec![
            gap("b", 7, 8),
            counts("b", 6, 9),
            counts("a", 4, 4),
            gap("b", 4, 4),
            counts("B", 1, 3),
            gap("B", 1, 2),
        ];

        let report = progress(rows).unwrap();

        let ids: Vec<_> = report.iter().map(|p| p.producer_id.as_str()).collect();
        assert_eq!(ids, ["B", "a", "b"]);
        assert_eq!(
            report[2],
            ProducerProgress {
                producer_id: "b".into(),
                events: 6,
                last_seq: 9,
                missing: 3,
                gaps: vec![(4, 4), (7, 8)],
            }
        );
        assert_eq!((report[1].missing, report[1].gaps.len()), (0, 0));
        assert_eq!((report[0].missing, &report[0].gaps), (2, &vec![(1, 2)]));
    }

    #[test]
    fn chunks_respect_the_row_and_byte_limits_and_keep_order() {
        let batch: Vec<_> = (0..10).map(event).collect();
        let rows = unique_rows(&batch);
        let size = rows[0].wire_bytes();

        let by_rows: Vec<usize> = chunks(&rows, 4, usize::MAX).map(<[_]>::len).collect();
        let by_bytes: Vec<usize> = chunks(&rows, 100, size * 3 + 2).map(<[_]>::len).collect();
        let tiny: Vec<usize> = chunks(&rows, 100, 1).map(<[_]>::len).collect();

        assert_eq!(by_rows, [4, 4, 2]);
        assert_eq!(by_bytes, [3, 3, 3, 1]);
        assert_eq!(tiny, [1; 10]);
        let flat: Vec<_> = chunks(&rows, 3, usize::MAX)
            .flatten()
            .map(|r| r.id)
            .collect();
        assert_eq!(flat, batch.iter().map(|e| e.id).collect::<Vec<_>>());
    }
}
