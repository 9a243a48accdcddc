//! The Merkle tree's SQL (the arithmetic is `auditlog-tlog`'s, what is kept is
//! described in [`crate::tree`]): the statements that read and extend
//! `audit_leaves` and `audit_nodes`, read events as their leaves are made of, and
//! keep `audit_checkpoints` and `audit_migrations`. Every backend runs exactly
//! these, through [`super::GenericStore`], which also reads their rows.

use auditlog_tlog::{Hash, Node, Read};
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::Dialect;
use crate::{LeafEntry, Migration, StoreError, StoredCheckpoint};

/// Events read, and leaves inserted, per statement while sealing: a leaf row
/// binds 4 values, far below every backend's bind limit (SQLite's 32 766 is the
/// lowest), and a page of events stays a few hundred KiB.
pub(crate) const SEAL_PAGE: u32 = 1_000;

/// The span of `seq` one page of sealing reads, where the rows up to a settled
/// `seq` are sealed (PostgreSQL, whose writers insert in parallel): twice a page, so that a page is still
/// nearly full where rolled-back inserts left gaps in `seq`. Without a bound
/// below `settled`, PostgreSQL, before it had gathered statistics on a freshly
/// loaded partition, read and sorted every row above the last leaf to return one
/// page: a backlog of a million events took 0.75 s a page, and sealing ten
/// million did not finish.
pub(crate) const SEAL_WINDOW: i64 = 2 * SEAL_PAGE as i64;

/// The lowest `seq` above `after` and up to `settled` (`next_seq`, NULL if none):
/// where sealing goes on after a window with no rows.
pub(crate) fn next_seq_query<DB>(after: i64, settled: i64) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql =
        QueryBuilder::<DB>::new("SELECT MIN(seq) AS next_seq FROM audit_events WHERE seq > ");
    sql.push_bind(after).push(" AND seq <= ").push_bind(settled);
    sql
}

/// The last leaf: `leaf_index, seq`. The tree's size is its index + 1, because
/// the sealer appends indexes without a gap.
pub(crate) const LAST_LEAF: &str =
    "SELECT leaf_index, seq FROM audit_leaves ORDER BY leaf_index DESC LIMIT 1";

/// The newest checkpoint.
pub(crate) const LATEST_CHECKPOINT: &str =
    "SELECT size, note, signed_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1";

/// The migration record (the table holds at most the one row with `one = 1`).
pub(crate) const MIGRATION: &str = "SELECT migrated_at, chain_size, chain_seq, chain_hash, \
     signed_head, outcome FROM audit_migrations WHERE one = 1";

/// A tree index or size as the `BIGINT` columns hold it. Nothing is stored at or
/// beyond 2^63, so a bound that large reads as `i64::MAX` and still means "to the
/// end".
pub(crate) fn bound(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored index, size or count read back: the sealer never writes a negative
/// one, so one means the table was written by something else.
pub(crate) fn unsigned(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Backend(format!("a stored {what} is negative: {n}")))
}

/// The stored hashes of one [`Read`], with their indexes (`idx, hash`), in index
/// order: leaf hashes for level 0, tile-level nodes above.
pub(crate) fn hashes_query<DB>(read: &Read) -> QueryBuilder<DB>
where
    DB: Database,
    i16: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = if read.level == 0 {
        QueryBuilder::<DB>::new(
            "SELECT leaf_index AS idx, leaf_hash AS hash FROM audit_leaves WHERE leaf_index >= ",
        )
    } else {
        let mut sql = QueryBuilder::<DB>::new("SELECT idx, hash FROM audit_nodes WHERE level = ");
        sql.push_bind(i16::from(read.level)).push(" AND idx >= ");
        sql
    };
    let index = if read.level == 0 { "leaf_index" } else { "idx" };
    sql.push_bind(bound(read.start))
        .push(format!(" AND {index} < "))
        .push_bind(bound(read.end))
        .push(format!(" ORDER BY {index}"));
    sql
}

/// The events above `after_seq` (and up to `settled`, if given), by `seq`, at most
/// `limit`, in the columns a leaf is made of and sealed with (`seq, id,
/// received_at, body`): what sealing reads.
pub(crate) fn to_seal_query<DB>(
    dialect: &Dialect<DB>,
    after_seq: i64,
    settled: Option<i64>,
    limit: u32,
) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT seq, {} AS id, received_at, body FROM audit_events WHERE seq > ",
        (dialect.select_id)("id")
    ));
    sql.push_bind(after_seq);
    if let Some(settled) = settled {
        sql.push(" AND seq <= ").push_bind(settled);
    }
    super::push_order_limit(&mut sql, "seq", i64::from(limit));
    sql
}

/// One multi-row insert of new leaves (at most [`SEAL_PAGE`] of them).
pub(crate) fn leaf_insert<DB>(dialect: &Dialect<DB>, leaves: &[LeafEntry]) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    Vec<u8>: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(
        "INSERT INTO audit_leaves (leaf_index, seq, id, leaf_hash) VALUES ",
    );
    for (n, leaf) in leaves.iter().enumerate() {
        if n > 0 {
            sql.push(", ");
        }
        // Not `push_values`: the id goes through the dialect, which may add a cast.
        sql.push("(")
            .push_bind(bound(leaf.index))
            .push(", ")
            .push_bind(leaf.seq)
            .push(", ");
        (dialect.bind_id)(&mut sql, leaf.id);
        sql.push(", ").push_bind(leaf.hash.to_vec()).push(")");
    }
    sql
}

/// One multi-row insert of completed tile-level nodes (one per 256 leaves, so a
/// page of leaves completes only a few).
pub(crate) fn node_insert<DB>(nodes: &[(Node, Hash)]) -> QueryBuilder<DB>
where
    DB: Database,
    i16: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    Vec<u8>: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new("INSERT INTO audit_nodes (level, idx, hash) ");
    sql.push_values(nodes, |mut row, (node, hash)| {
        row.push_bind(i16::from(node.level))
            .push_bind(bound(node.index))
            .push_bind(hash.to_vec());
    });
    sql
}

/// Every column of `audit_events` as [`super::GenericStore`] reads an
/// [`crate::EventRow`], from the table named `e`.
fn row_columns<DB: Database>(dialect: &Dialect<DB>) -> String {
    format!(
        "e.seq, {} AS id, e.action, e.timestamp, e.actor_type, e.actor_id, e.target_type, \
         e.target_id, e.received_at, e.body, e.producer_id, e.producer_seq, e.tenant_id{}",
        (dialect.select_id)("e.id"),
        if dialect.object_keys {
            ", e.actor_key, e.target_key"
        } else {
            ""
        }
    )
}

/// The columns of `audit_leaves` as [`super::GenericStore`] reads a
/// [`LeafEntry`], from the table named `l`, named apart from an event's.
fn leaf_columns<DB: Database>(dialect: &Dialect<DB>) -> String {
    format!(
        "l.leaf_index, l.seq AS leaf_seq, {} AS leaf_id, l.leaf_hash",
        (dialect.select_id)("l.id")
    )
}

/// Rows of `audit_events` above `after_seq`, by `seq`, at most `limit`, every
/// column.
pub(crate) fn rows_after_query<DB>(
    dialect: &Dialect<DB>,
    after_seq: i64,
    limit: u32,
) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT {} FROM audit_events e WHERE e.seq > ",
        row_columns(dialect)
    ));
    sql.push_bind(after_seq);
    super::push_order_limit(&mut sql, "e.seq", i64::from(limit));
    sql
}

/// The row of the event `id` with its leaf: none when it is not stored or its
/// `seq` has no leaf.
pub(crate) fn leaf_of_query<DB: Database>(dialect: &Dialect<DB>, id: Uuid) -> QueryBuilder<DB> {
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT {}, {} FROM audit_events e JOIN audit_leaves l ON l.seq = e.seq WHERE e.id = ",
        row_columns(dialect),
        leaf_columns(dialect)
    ));
    (dialect.bind_id)(&mut sql, id);
    sql
}

/// The leaves with index in `[start, end)` whose rows exist, with their rows, in
/// index order.
pub(crate) fn leaves_query<DB>(dialect: &Dialect<DB>, start: u64, end: u64) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT {}, {} FROM audit_leaves l JOIN audit_events e ON e.seq = l.seq \
         WHERE l.leaf_index >= ",
        row_columns(dialect),
        leaf_columns(dialect)
    ));
    sql.push_bind(bound(start))
        .push(" AND l.leaf_index < ")
        .push_bind(bound(end))
        .push(" ORDER BY l.leaf_index");
    sql
}

/// Leaf entries from index `from`, at most `limit`, in index order, whatever
/// became of their rows.
pub(crate) fn leaf_entries_query<DB>(
    dialect: &Dialect<DB>,
    from: u64,
    limit: u32,
) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT {} FROM audit_leaves l WHERE l.leaf_index >= ",
        leaf_columns(dialect)
    ));
    sql.push_bind(bound(from));
    super::push_order_limit(&mut sql, "l.leaf_index", i64::from(limit));
    sql
}

/// Inserts a checkpoint unless one of its size is stored.
pub(crate) fn save_checkpoint_query<DB>(
    dialect: &Dialect<DB>,
    checkpoint: &StoredCheckpoint,
) -> Result<QueryBuilder<DB>, StoreError>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    let size = i64::try_from(checkpoint.size).map_err(|_| {
        StoreError::Backend(format!(
            "a checkpoint of size {} is beyond what the store keeps",
            checkpoint.size
        ))
    })?;
    let mut sql =
        QueryBuilder::<DB>::new("INSERT INTO audit_checkpoints (size, note, signed_at) VALUES (");
    sql.separated(", ")
        .push_bind(size)
        .push_bind(checkpoint.note.clone())
        .push_bind(checkpoint.signed_at);
    sql.push(") ").push((dialect.keep_existing)("size"));
    Ok(sql)
}

/// Checkpoints with size above `after_size`, ascending, at most `limit`.
pub(crate) fn checkpoints_after_query<DB>(after_size: u64, limit: u32) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(
        "SELECT size, note, signed_at FROM audit_checkpoints WHERE size > ",
    );
    sql.push_bind(bound(after_size));
    super::push_order_limit(&mut sql, "size", i64::from(limit));
    sql
}

/// Inserts the migration record unless one is stored: the migration happens once,
/// and its first record is the one that counts.
pub(crate) fn save_migration_query<DB>(
    dialect: &Dialect<DB>,
    migration: &Migration,
) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    Option<String>: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(
        "INSERT INTO audit_migrations (one, migrated_at, chain_size, chain_seq, chain_hash, \
         signed_head, outcome) VALUES (1, ",
    );
    sql.separated(", ")
        .push_bind(migration.migrated_at)
        .push_bind(migration.chain_size)
        .push_bind(migration.chain_seq)
        .push_bind(migration.chain_hash.clone())
        .push_bind(migration.signed_head.clone())
        .push_bind(migration.outcome.clone());
    sql.push(") ").push((dialect.keep_existing)("one"));
    sql
}
