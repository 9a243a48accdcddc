//! The integrity chain's SQL (the hashing itself is [`crate::chain`]): the
//! statements that read and extend `audit_chain` and keep the newest signed head in
//! `audit_heads`. Every backend runs exactly these, through [`super::GenericStore`],
//! which also reads their rows.

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::Dialect;
use crate::{ChainEntry, ChainLink, SignedHead, ZERO_HASH};

/// Rows read per statement while sealing or listing the chain.
pub(crate) const CHAIN_PAGE: u32 = 1_000;

/// Chain entries per insert statement: 5 binds each, far below every bind limit.
const CHAIN_ROWS_PER_STATEMENT: usize = 1_000;

/// The columns a [`ChainEntry`] is read from.
const CHAIN_COLUMNS: &str = "seq, position, id, leaf_hash, chain_hash";

/// The last chain entry: `seq, position, chain_hash`.
pub(crate) const CHAIN_HEAD: &str =
    "SELECT seq, position, chain_hash FROM audit_chain ORDER BY seq DESC LIMIT 1";

/// `{select} WHERE seq > after_seq ORDER BY seq LIMIT limit` (at least 1): the rows
/// of a table after a `seq`, in `seq` order, as both the sealer and the chain's
/// listing read them.
fn rows_after<DB>(select: String, after_seq: i64, limit: u32) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(select);
    sql.push(" WHERE seq > ")
        .push_bind(after_seq)
        .push(" ORDER BY seq LIMIT ")
        .push_bind(i64::from(limit.max(1)));
    sql
}

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
    rows_after(
        format!("SELECT {} FROM audit_events", dialect.columns),
        after_seq,
        limit,
    )
}

/// Chain entries above `after_seq`, by `seq`, at most `limit`.
pub(crate) fn chain_after_query<DB>(after_seq: i64, limit: u32) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    rows_after(
        format!("SELECT {CHAIN_COLUMNS} FROM audit_chain"),
        after_seq,
        limit,
    )
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
/// backend's spelling of "do nothing", [`Dialect::keep_stored_head`]).
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
