//! The SQL of the earlier releases' hash chain ([`crate::legacy`]) that is still
//! run: reading `audit_chain` and the newest signed head in `audit_heads`, so that
//! the auditor can check the old chain once and migrate the store into the Merkle
//! tree. Nothing writes these tables any more. Every backend runs exactly these,
//! through [`super::GenericStore`], which also reads their rows.

use sqlx::{Database, Encode, QueryBuilder, Type};

/// Chain entries above `after_seq`, by `seq`, at most `limit`: all of
/// `audit_chain`'s columns.
pub(crate) fn chain_after_query<DB>(after_seq: i64, limit: u32) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(
        "SELECT seq, position, id, leaf_hash, chain_hash FROM audit_chain WHERE seq > ",
    );
    sql.push_bind(after_seq);
    super::push_order_limit(&mut sql, "seq", i64::from(limit));
    sql
}

/// The newest signed head.
pub(crate) const LATEST_HEAD: &str = "SELECT seq, size, chain_hash, signed_at, key_id, public_key, \
     signature FROM audit_heads ORDER BY seq DESC LIMIT 1";
