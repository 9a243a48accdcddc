//! What can be asked of a store, and the shape of its answer.

use auditlog_event::{Action, ObjectType};

/// An object named in a query: its type and the text form of its id (the number 1
/// and the string "1" name the same object).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// The object's type, e.g. `users`.
    pub object_type: ObjectType,
    /// The text form of the object's id ([`auditlog_event::ObjectId::key`]).
    pub id: String,
}

/// The order of a query's results, by `(timestamp, id)`. Ids are UUIDv7, ordered by
/// creation within a producer, so events of one producer in the same millisecond
/// keep the order they happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// `(timestamp DESC, id DESC)`: newest first, the default.
    #[default]
    NewestFirst,
    /// `(timestamp ASC, id ASC)`: oldest first.
    OldestFirst,
}

/// A position in one of the [`Order`]s: the last event of the previous page, and the
/// order it was a position in (a cursor of one order means nothing in the other, so
/// it carries it, and callers refuse a mismatch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub timestamp: i64,
    pub id: uuid::Uuid,
    pub order: Order,
}

impl Cursor {
    /// The opaque form handed to clients: `<timestamp hex>.<id>` newest first (the
    /// form of earlier releases, so their cursors keep working), with `.a` appended
    /// oldest first.
    pub fn encode(&self) -> String {
        match self.order {
            Order::NewestFirst => format!("{:x}.{}", self.timestamp, self.id.simple()),
            Order::OldestFirst => format!("{:x}.{}.a", self.timestamp, self.id.simple()),
        }
    }

    /// Reads back what [`Cursor::encode`] produced; `None` for anything else.
    pub fn decode(text: &str) -> Option<Cursor> {
        let (position, order) = match text.strip_suffix(".a") {
            Some(position) => (position, Order::OldestFirst),
            None => (text, Order::NewestFirst),
        };
        let (t, id) = position.split_once('.')?;
        let timestamp = i64::from_str_radix(t, 16).ok()?;
        if timestamp < 0 || id.len() != 32 {
            return None;
        }
        let id = uuid::Uuid::try_parse(id).ok()?;
        Some(Cursor {
            timestamp,
            id,
            order,
        })
    }
}

/// Filters and page of an event query. Every filter present must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events of this tenant; `None` for every tenant (an operator's view).
    pub tenant: Option<String>,
    pub actor: Option<ObjectKey>,
    pub target: Option<ObjectKey>,
    /// Events where this object is the actor or the target (a member's own view).
    pub involving: Option<ObjectKey>,
    /// Any of these actions; empty means all.
    pub actions: Vec<Action>,
    /// Any of these event names (`eventName`, matched exactly); empty means all.
    pub event_names: Vec<String>,
    /// Inclusive lower bound on the event timestamp, ms.
    pub since: Option<i64>,
    /// Exclusive upper bound on the event timestamp, ms.
    pub until: Option<i64>,
    /// Events per page, clamped to 1..=[`EventQuery::MAX_PAGE_SIZE`].
    pub page_size: u32,
    /// The order of the results.
    pub order: Order,
    /// Continue after this position (from [`EventPage::next`]); `None` for the
    /// first page. Its position is read in [`EventQuery::order`], whatever order
    /// it names: callers check that the two agree.
    pub after: Option<Cursor>,
}

impl EventQuery {
    /// The page size when none is asked for.
    pub const DEFAULT_PAGE_SIZE: u32 = 50;
    /// The largest page a query returns.
    pub const MAX_PAGE_SIZE: u32 = 1000;
}

impl Default for EventQuery {
    fn default() -> Self {
        EventQuery {
            tenant: None,
            actor: None,
            target: None,
            involving: None,
            actions: Vec::new(),
            event_names: Vec::new(),
            since: None,
            until: None,
            page_size: Self::DEFAULT_PAGE_SIZE,
            order: Order::NewestFirst,
            after: None,
        }
    }
}

/// One stored event as the store returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event's id.
    pub id: uuid::Uuid,
    /// Position in the log, assigned by the store as the event is inserted (commit
    /// order where writers take turns; on PostgreSQL, whose writers insert in
    /// parallel, readers by `seq` stop at the settled `seq`).
    pub seq: i64,
    /// The event's timestamp, ms (the producer's word).
    pub timestamp: i64,
    /// When the auditor committed it, ms (the auditor's clock): part of the
    /// event's leaf, like `seq`.
    pub received_at: i64,
    /// The event's JSON text exactly as stored.
    pub body: String,
}

/// A page of results and where the next one starts, if more remain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventPage {
    /// At most the page size, newest first.
    pub events: Vec<StoredEvent>,
    /// Where the next page starts; `None` when this is the last.
    pub next: Option<Cursor>,
}

/// How many events of one action fall in one time bucket (see
/// [`crate::AuditStore::activity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityCount {
    /// The bucket's first millisecond: a multiple of the bucket width.
    pub start: i64,
    /// The action, as stored (`viewed`, `created`, …).
    pub action: String,
    /// Events of that action in the bucket, at least 1.
    pub count: u64,
}

/// How complete one producer's numbered output is in the store. Producers number
/// their events 1, 2, 3… without holes, so every number up to the highest one seen
/// that is not stored is an event lost (or still on its way).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerProgress {
    /// The producer's id, as sent in `producerId`.
    pub producer_id: String,
    /// Distinct sequence numbers stored: a number stored twice (under two event ids)
    /// counts once.
    pub events: u64,
    /// The highest sequence number stored.
    pub last_seq: u64,
    /// How many numbers in `1..=last_seq` are not stored. Exact even when
    /// [`ProducerProgress::gaps`] is cut short.
    pub missing: u64,
    /// The missing numbers as inclusive ranges `(from, to)`, ascending; only the first
    /// [`ProducerProgress::MAX_GAPS`] ranges are listed, so that a producer that lost
    /// every other event cannot make the report as large as the log.
    pub gaps: Vec<(u64, u64)>,
}

impl ProducerProgress {
    /// The most gap ranges listed per producer.
    pub const MAX_GAPS: usize = 100;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_through_its_opaque_form_in_either_order() {
        for order in [Order::NewestFirst, Order::OldestFirst] {
            let cursor = Cursor {
                timestamp: 1_700_000_000_123,
                id: uuid::Uuid::now_v7(),
                order,
            };
            assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }
    }

    #[test]
    fn garbage_is_not_a_cursor() {
        for bad in [
            "",
            "abc",
            "1.",
            ".1",
            "zz.0190b0a000007000800000000000000",
            "1.2.3",
            "1.0190b0a0000070008000000000000001.b",
            "1.0190b0a0000070008000000000000001.a.a",
            "-1.0190b0a0000070008000000000000001",
            "1.0190b0a0-0000-7000-8000-000000000001",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
