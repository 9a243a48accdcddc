//! The row form of an event and how a batch becomes insert statements:
//! de-duplication by id, the producer columns, chunking under the statements'
//! limits, and the multi-row `VALUES` insert that SQLite and MySQL/MariaDB share
//! (PostgreSQL binds whole columns as arrays instead, in `postgres.rs`).

use std::collections::HashSet;

use auditlog_event::DataEvent;
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

pub(crate) use crate::columns::numbering;

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
    /// The event's tenant, `None` for the default one ([`crate::tenant_column`]).
    pub tenant_id: Option<&'a str>,
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
            + self.tenant_id.map_or(0, str::len)
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
                tenant_id: crate::tenant_column(event),
            }
        })
        .collect()
}

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

/// Binds per row of [`insert_values`] without the object keys: id, action,
/// timestamp, actor type and id, target type and id, received at, body,
/// producer id and number, tenant.
pub(crate) const INSERT_BINDS_PER_ROW: usize = 12;

/// One multi-row `INSERT` of `chunk` into `audit_events`, every value bound and the id
/// as its 16 bytes (SQLite and MySQL/MariaDB store it so), with the object key
/// columns where the table has them ([`super::Dialect::object_keys`]); the caller appends what
/// its backend does on a conflict, if anything. Rows take their `seq` in the
/// chunk's order.
pub(crate) fn insert_values<DB>(
    chunk: &[EventRow<'_>],
    received_at: i64,
    object_keys: bool,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut insert = QueryBuilder::<DB>::new(format!(
        "INSERT INTO audit_events (id, action, timestamp, actor_type, actor_id, \
         target_type, target_id, received_at, body, producer_id, producer_seq, tenant_id{}) ",
        if object_keys {
            ", actor_key, target_key"
        } else {
            ""
        }
    ));
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
            .push_bind(event.producer_seq)
            .push_bind(event.tenant_id);
        if object_keys {
            row.push_bind(crate::object_key(event.actor_type, &event.actor_id))
                .push_bind(crate::object_key(event.target_type, &event.target_id));
        }
    });
    insert
}

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
    fn an_insert_binds_as_many_values_per_row_as_the_statement_limits_count() {
        let batch = [event(1), event(2)];
        let rows = unique_rows(&batch);
        for (keys, extra) in [(false, 0), (true, 2)] {
            let insert = insert_values::<sqlx::MySql>(&rows, 0, keys);
            let placeholders = insert.sql().as_str().matches('?').count();
            assert_eq!(placeholders, 2 * (INSERT_BINDS_PER_ROW + extra));
        }
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
