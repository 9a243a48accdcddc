//! Retention's SQL (what is kept is described in [`crate::retention`]): the
//! expired events a prune looks at with their leaves, the record of pruned
//! leaves, legal holds and policies. Every backend runs these through
//! [`super::GenericStore`].

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::Dialect;
use super::tree::bound;
use crate::retention::{PruneCandidate, PruneCursor};

/// Events looked at, and rows deleted, per prune batch at most: the delete binds
/// one `seq` each and the record of pruned leaves five values each, far below
/// every backend's bind limit.
pub(crate) const PRUNE_BATCH_MAX: u32 = 1_000;

/// The `seq` every log stream has delivered up to (`delivered`): the lowest
/// sink cursor, NULL when there are no sinks.
pub(crate) const DELIVERED_BY_EVERY_SINK: &str =
    "SELECT MIN(cursor_seq) AS delivered FROM audit_sinks";

/// Every column of `audit_legal_holds` as [`super::GenericStore`] reads a hold.
pub(crate) fn hold_columns<DB: Database>(dialect: &Dialect<DB>) -> String {
    format!(
        "{} AS id, tenant_id, target_type, target_id, reason, placed_by, placed_at",
        (dialect.select_id)("id")
    )
}

/// The columns [`super::GenericStore`] reads a [`PruneCandidate`] from: the
/// event `e` joined with its leaf `l`.
pub(crate) fn candidate_columns<DB: Database>(dialect: &Dialect<DB>) -> String {
    format!(
        "e.seq, {} AS id, e.timestamp, e.received_at, e.body, e.tenant_id, e.target_type, \
         e.target_id, l.leaf_index, {} AS leaf_id, l.leaf_hash",
        (dialect.select_id)("e.id"),
        (dialect.select_id)("l.id"),
    )
}

/// Up to `limit` sealed events with a timestamp before `before`, after `after`
/// in `(timestamp, id)` order, each with its leaf: a prune's candidates, oldest
/// first (the time index serves the order).
pub(crate) fn candidates_query<DB>(
    dialect: &Dialect<DB>,
    before: i64,
    after: Option<PruneCursor>,
    limit: u32,
) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT {} FROM audit_events e JOIN audit_leaves l ON l.seq = e.seq \
         WHERE e.timestamp < ",
        candidate_columns(dialect)
    ));
    sql.push_bind(before);
    if let Some(after) = after {
        sql.push(" AND (e.timestamp > ")
            .push_bind(after.timestamp)
            .push(" OR (e.timestamp = ")
            .push_bind(after.timestamp)
            .push(" AND e.id > ");
        (dialect.bind_id)(&mut sql, after.id);
        sql.push("))");
    }
    super::push_order_limit(&mut sql, "e.timestamp, e.id", i64::from(limit));
    sql
}

/// The record of `pruned` leaves, pruned at `now`.
pub(crate) fn pruned_insert<DB>(
    dialect: &Dialect<DB>,
    pruned: &[&PruneCandidate],
    now: i64,
) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(
        "INSERT INTO audit_pruned (leaf_index, seq, tenant_id, timestamp, pruned_at) ",
    );
    sql.push_values(pruned, |mut row, candidate| {
        row.push_bind(candidate.leaf_index)
            .push_bind(candidate.seq)
            .push_bind(candidate.tenant().to_owned())
            .push_bind(candidate.timestamp)
            .push_bind(now);
    });
    sql.push(" ").push((dialect.keep_existing)("leaf_index"));
    sql
}

/// Deletes the rows of `seqs` from `audit_events`.
pub(crate) fn rows_delete<DB>(seqs: &[i64]) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new("DELETE FROM audit_events WHERE seq IN (");
    let mut list = sql.separated(", ");
    for seq in seqs {
        list.push_bind(*seq);
    }
    sql.push(")");
    sql
}

/// How many leaves were pruned (`events`) and the newest pruned timestamp
/// (`newest`), of one tenant or of all.
pub(crate) fn pruned_count_query<DB>(tenant: Option<&str>) -> QueryBuilder<DB>
where
    DB: Database,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(
        "SELECT COUNT(*) AS events, MAX(timestamp) AS newest FROM audit_pruned",
    );
    if let Some(tenant) = tenant {
        sql.push(" WHERE tenant_id = ").push_bind(tenant.to_owned());
    }
    sql
}

/// The pruned leaf indexes in `[start, end)`, ascending.
pub(crate) fn pruned_leaves_query<DB>(start: u64, end: u64) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql =
        QueryBuilder::<DB>::new("SELECT leaf_index FROM audit_pruned WHERE leaf_index >= ");
    sql.push_bind(bound(start))
        .push(" AND leaf_index < ")
        .push_bind(bound(end))
        .push(" ORDER BY leaf_index");
    sql
}
