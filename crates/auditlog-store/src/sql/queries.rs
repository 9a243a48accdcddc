//! The event queries' SQL, built once for every backend: the filters, the page,
//! the count, one event by id, events after a `seq`, the highest `seq`, activity
//! buckets and the producer report, each with the small piece of Rust that turns
//! its rows into the store's answer. Every value is a bound parameter; what a
//! backend spells differently comes from its [`Dialect`].

use std::collections::BTreeMap;

use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::Dialect;
use crate::{
    ActivityCount, Cursor, EventPage, EventQuery, ObjectKey, Order, ProducerProgress, StoreError,
    StoredEvent,
};

/// The event queries, each written once and spelled for one backend by its dialect.
/// The bounds say which Rust types a statement binds.
impl<DB> Dialect<DB>
where
    DB: Database,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    &'static str: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    /// Appends ` AND …` for every filter of `query` (not its cursor), each value
    /// bound. `in_time_order`: the statement reads in time order, so a tenant's
    /// own index may serve it; in `seq` order (the tails) it must not, or a large
    /// tenant's whole history would be read and sorted for each tail.
    fn push_filters(&self, sql: &mut QueryBuilder<DB>, query: &EventQuery, in_time_order: bool) {
        if let Some(tenant) = &query.tenant {
            // The default tenant's rows hold NULL (see `tenant_column`).
            if tenant == auditlog_event::DEFAULT_TENANT {
                sql.push(" AND tenant_id IS NULL");
            } else {
                let narrower =
                    query.actor.is_some() || query.target.is_some() || query.involving.is_some();
                let column = if narrower || !in_time_order {
                    self.tenant_off_index
                } else {
                    "tenant_id"
                };
                sql.push(format!(" AND {column} = "))
                    .push_bind(tenant.clone());
            }
        }
        if let Some(actor) = &query.actor {
            sql.push(" AND ");
            push_object(sql, "actor", actor, self.object_keys);
        }
        if let Some(target) = &query.target {
            sql.push(" AND ");
            push_object(sql, "target", target, self.object_keys);
        }
        if let Some(who) = &query.involving {
            sql.push(" AND ((");
            push_object(sql, "actor", who, self.object_keys);
            sql.push(") OR (");
            push_object(sql, "target", who, self.object_keys);
            sql.push("))");
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
            sql.push(format!(" AND {} IN (", self.event_name));
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

    /// The page query: the filters of `query` with every value bound as a
    /// parameter, in its order, one row more than the page so the caller knows
    /// whether a next page exists. Returns the builder and the page size in force.
    pub(crate) fn page_query(&self, query: &EventQuery) -> (QueryBuilder<DB>, usize) {
        let mut sql = QueryBuilder::<DB>::new(format!(
            "SELECT {} FROM audit_events WHERE 1 = 1",
            self.columns
        ));
        self.push_filters(&mut sql, query, true);
        let (beyond, direction) = match query.order {
            Order::NewestFirst => ("<", "DESC"),
            Order::OldestFirst => (">", "ASC"),
        };
        if let Some(after) = query.after {
            // Keyset pagination: strictly beyond the last row of the previous page in
            // (timestamp, id) order; the id breaks ties between equal timestamps.
            // Events stored meanwhile land before the cursor (newer, newest first) or
            // after the rows already read (oldest first), never among them.
            // The first bound is implied by the second and is there for the index:
            // it lets the scan start at the cursor's time instead of walking (and,
            // where the index lacks the id, fetching the row of) every newer entry.
            sql.push(format!(" AND timestamp {beyond}= "))
                .push_bind(after.timestamp)
                .push(format!(" AND (timestamp {beyond} "))
                .push_bind(after.timestamp)
                .push(" OR (timestamp = ")
                .push_bind(after.timestamp)
                .push(format!(" AND id {beyond} "));
            (self.bind_id)(&mut sql, after.id);
            sql.push("))");
        }
        let page_size = query.page_size.clamp(1, EventQuery::MAX_PAGE_SIZE) as usize;
        // Qualified, so that `id` is the column and not an output column a dialect
        // selects as `id` (PostgreSQL's `id::text`), whose order no index keeps.
        super::push_order_limit(
            &mut sql,
            &format!("audit_events.timestamp {direction}, audit_events.id {direction}"),
            page_size as i64 + 1,
        );
        (sql, page_size)
    }

    /// `SELECT COUNT(*)` over the filters of `query`; one column, `total`.
    pub(crate) fn count_query(&self, query: &EventQuery) -> QueryBuilder<DB> {
        let mut sql =
            QueryBuilder::<DB>::new("SELECT COUNT(*) AS total FROM audit_events WHERE 1 = 1");
        self.push_filters(&mut sql, query, true);
        sql
    }

    /// The event with one id, in the columns of [`Dialect::columns`].
    pub(crate) fn get_query(&self, id: Uuid) -> QueryBuilder<DB> {
        let mut sql = QueryBuilder::<DB>::new(format!(
            "SELECT {} FROM audit_events WHERE id = ",
            self.columns
        ));
        (self.bind_id)(&mut sql, id);
        sql
    }

    /// Events over the filters of `query` with `seq` above `after_seq` (and at most
    /// `settled`, if given), by `seq`, at most `limit` (clamped to
    /// 1..=[`EventQuery::MAX_PAGE_SIZE`]).
    pub(crate) fn after_seq_query(
        &self,
        query: &EventQuery,
        after_seq: i64,
        limit: u32,
        settled: Option<i64>,
    ) -> QueryBuilder<DB> {
        let mut sql = QueryBuilder::<DB>::new(format!(
            "SELECT {} FROM audit_events WHERE seq > ",
            self.columns
        ));
        sql.push_bind(after_seq);
        if let Some(settled) = settled {
            sql.push(" AND seq <= ").push_bind(settled);
        }
        self.push_filters(&mut sql, query, false);
        super::push_order_limit(
            &mut sql,
            "seq",
            i64::from(limit.clamp(1, EventQuery::MAX_PAGE_SIZE)),
        );
        sql
    }

    /// Counts per `(bucket start, action)` over the filters of `query`: rows
    /// `(start, action, n)`, ascending.
    pub(crate) fn activity_query(&self, query: &EventQuery, bucket_ms: i64) -> QueryBuilder<DB> {
        let bucket_ms = bucket_ms.max(1);
        let mut sql = QueryBuilder::<DB>::new("SELECT (timestamp ");
        sql.push(self.div)
            .push(" ")
            .push_bind(bucket_ms)
            .push(") * ")
            .push_bind(bucket_ms)
            .push(" AS start, action, COUNT(*) AS n FROM audit_events WHERE 1 = 1");
        self.push_filters(&mut sql, query, true);
        sql.push(" GROUP BY 1, 2 ORDER BY 1, 2");
        sql
    }
}

/// `{side}_type = ? AND {side}_id = ?`: the event's actor or target (`side`) is
/// `object`; preceded by `{side}_key = ? AND` where the table has `object_keys`.
fn push_object<DB>(sql: &mut QueryBuilder<DB>, side: &str, object: &ObjectKey, object_keys: bool)
where
    DB: Database,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    if object_keys {
        sql.push(side)
            .push("_key = ")
            .push_bind(crate::object_key(object.object_type.as_str(), &object.id))
            .push(" AND ");
    }
    sql.push(side)
        .push("_type = ")
        .push_bind(object.object_type.as_str().to_owned())
        .push(" AND ")
        .push(side)
        .push("_id = ")
        .push_bind(object.id.clone());
}

/// Turns the up to `page_size + 1` rows of [`Dialect::page_query`] into a page and
/// its cursor.
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

/// The highest `seq`, 0 when empty; one column, `last_seq`.
pub(crate) const LAST_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) AS last_seq FROM audit_events";

/// Reads a row of [`Dialect::activity_query`].
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
