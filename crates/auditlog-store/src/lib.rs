//! Durable storage of audit events behind one trait, [`AuditStore`], and its
//! backends. The store keeps every event once (unique by id), gives each a sequence
//! number in commit order, and answers the actor/target queries newest first with
//! keyset pagination. It also keeps each event's producer number, so that it can say
//! per producer which numbers are missing ([`AuditStore::producers`]). It knows
//! nothing of HTTP or transports.
//!
//! Backends, chosen by [`open`] from the URL's scheme, all with the same behaviour
//! (one suite, `tests/behaviour/`, runs against each):
//!
//! - [`SqliteStore`] — `sqlite://PATH`, the embedded default;
//! - [`PostgresStore`] — `postgres://` or `postgresql://`;
//! - [`MySqlStore`] — `mysql://` or `mariadb://` (tested on MariaDB 10.11).
//!
//! What they share lives in one private module, `sql`, so that they cannot drift
//! apart: the row form, batch de-duplication and chunking, the statements, error
//! mapping, and every method of the trait that is the same SQL on each backend,
//! written once for any sqlx database; a backend module keeps its schema, its bulk
//! insert and its locks. With the `testing` feature, the `testing` module hands tests
//! a fresh private database per backend.

mod chain;
mod mysql;
mod postgres;
mod query;
mod sql;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use chain::{
    ChainEntry, ChainHead, ChainLink, Hash, SealOutcome, SignedHead, ZERO_HASH, chain_hash,
    from_hex, head_message, leaf_hash, to_hex,
};
pub use mysql::MySqlStore;
pub use postgres::PostgresStore;
pub use query::{
    ActivityCount, Cursor, EventPage, EventQuery, ObjectKey, Order, ProducerProgress, StoredEvent,
};
pub use sqlite::SqliteStore;

use std::sync::Arc;

use async_trait::async_trait;
use auditlog_event::DataEvent;

/// Errors of the storage layer. Backend error types never leak past this enum.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL's scheme names no backend.
    #[error("the store URL `{0}` is not supported; use sqlite://PATH, postgres://… or mysql://…")]
    UnsupportedUrl(String),
    /// The database cannot be reached now (down, unreachable, out of connections);
    /// trying again later may work.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error.
    #[error("the store failed: {0}")]
    Backend(String),
}

/// What an insert did: how many events were new. Events already stored (same id) are
/// skipped, which makes redelivery harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsertOutcome {
    /// Events stored by this call.
    pub inserted: u64,
    /// Events skipped because their id was already stored, or repeated earlier in the
    /// same batch.
    pub duplicates: u64,
}

/// Where audit events live.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Stores a batch atomically: when this returns `Ok`, every event of the batch is
    /// committed (or was already there); on `Err`, none of them is.
    async fn insert_batch(&self, events: &[DataEvent]) -> Result<InsertOutcome, StoreError>;

    /// One page of events matching `query`, in its [`Order`] (keyset pagination on
    /// `(timestamp, id)`, so events stored between two pages neither repeat nor
    /// shift the later pages).
    async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError>;

    /// How many events match the filters of `query` (its page, order and cursor
    /// ignored), counted by the database.
    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError>;

    /// The event with this id, if stored.
    async fn get(&self, id: uuid::Uuid) -> Result<Option<StoredEvent>, StoreError>;

    /// Up to `limit` events matching the filters of `query` (its page, order and
    /// cursor ignored) whose `seq` is above `after_seq`, in `seq` (commit) order: what
    /// a live tail has not yet seen.
    async fn stored_after(
        &self,
        query: &EventQuery,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The highest `seq` stored, 0 for an empty store: "now" for a live tail.
    async fn last_seq(&self) -> Result<i64, StoreError>;

    /// Events matching the filters of `query` (its page, order and cursor ignored)
    /// counted per action in buckets of `bucket_ms` milliseconds (aligned to
    /// multiples of it), by the database with one `GROUP BY`; only non-empty
    /// buckets, ascending by start, then action.
    async fn activity(
        &self,
        query: &EventQuery,
        bucket_ms: i64,
    ) -> Result<Vec<ActivityCount>, StoreError>;

    /// How complete each producer's numbered output is, sorted by producer id.
    /// Events without a producer number are not counted. Computed by the database
    /// from its `(producer_id, producer_seq)` index in one statement, so the counts
    /// and the gaps come from one snapshot and agree with each other.
    async fn producers(&self) -> Result<Vec<ProducerProgress>, StoreError>;

    /// Which of `ids` are stored, one entry per stored row (so a duplicate would
    /// show twice). For checking completeness by id.
    async fn stored_ids(&self, ids: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError>;

    /// Whether the store answers at all.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Extends the integrity chain (see [`ChainEntry`]) with up to `max`
    /// stored events after its head, in `seq` order, in one transaction under a lock
    /// that makes concurrent sealers (several auditors) take turns, so the store
    /// holds one chain whoever seals. Idempotent: rows already sealed are never
    /// sealed again, and rows that appear later with a `seq` at or below the head
    /// (inserted behind the auditor's back) are never sealed, so verification
    /// reports them.
    async fn seal(&self, max: u32) -> Result<SealOutcome, StoreError> {
        let _ = max;
        Err(unsupported())
    }

    /// The chain's head (the empty head when nothing is sealed).
    async fn chain_head(&self) -> Result<ChainHead, StoreError> {
        Err(unsupported())
    }

    /// Up to `limit` chain entries with `seq` above `after_seq`, in `seq` order.
    async fn chain_after(&self, after_seq: i64, limit: u32) -> Result<Vec<ChainEntry>, StoreError> {
        let _ = (after_seq, limit);
        Err(unsupported())
    }

    /// The chain entry of `seq` and the chain hash before it, if `seq` is sealed.
    async fn chain_link(&self, seq: i64) -> Result<Option<ChainLink>, StoreError> {
        let _ = seq;
        Err(unsupported())
    }

    /// Keeps a signed head (the newest one is what [`AuditStore::latest_head`]
    /// answers; older ones are dropped). Saving the same head twice is harmless.
    async fn save_head(&self, head: &SignedHead) -> Result<(), StoreError> {
        let _ = head;
        Err(unsupported())
    }

    /// The signed head with the highest `seq`, if any was saved.
    async fn latest_head(&self) -> Result<Option<SignedHead>, StoreError> {
        Err(unsupported())
    }
}

/// What the integrity methods of a store without a chain (a test double) answer.
fn unsupported() -> StoreError {
    StoreError::Backend("this store keeps no integrity chain".into())
}

/// The database engines a store URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `sqlite:PATH` or `sqlite://PATH`: a file, no server.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
    /// A MySQL or MariaDB server.
    MySql,
}

/// Every URL scheme a store accepts, and the engine it names: what [`open`] reads
/// and what the binary's settings check a URL against before anything opens it.
pub const SCHEMES: [(&str, Engine); 5] = [
    ("sqlite", Engine::Sqlite),
    ("postgres", Engine::Postgres),
    ("postgresql", Engine::Postgres),
    ("mysql", Engine::MySql),
    ("mariadb", Engine::MySql),
];

impl Engine {
    /// The engine of `url`'s scheme, if it is one of [`SCHEMES`]; a server's URL
    /// must also name the server (`scheme://…`).
    pub fn of_url(url: &str) -> Option<Engine> {
        let (scheme, rest) = url.split_once(':')?;
        let engine = SCHEMES
            .iter()
            .find(|(name, _)| *name == scheme)
            .map(|(_, engine)| *engine)?;
        (engine == Engine::Sqlite || rest.starts_with("//")).then_some(engine)
    }
}

/// Opens the store a URL names ([`SCHEMES`]), creating or migrating its schema.
pub async fn open(url: &str) -> Result<Arc<dyn AuditStore>, StoreError> {
    match Engine::of_url(url) {
        Some(Engine::Sqlite) => Ok(Arc::new(SqliteStore::open(url).await?)),
        Some(Engine::Postgres) => Ok(Arc::new(PostgresStore::open(url).await?)),
        Some(Engine::MySql) => Ok(Arc::new(MySqlStore::open(url).await?)),
        None => Err(StoreError::UnsupportedUrl(redact(url))),
    }
}

/// A URL fit for logs and errors: any password replaced by `***`.
pub use auditlog_event::redact_url as redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("postgres://bob:secret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(redact("sqlite://data/audit.db"), "sqlite://data/audit.db");
        assert_eq!(
            redact("mysql://root@localhost/x"),
            "mysql://root@localhost/x"
        );
    }

    #[test]
    fn a_url_names_its_engine_by_scheme() {
        assert_eq!(Engine::of_url("sqlite:audit.db"), Some(Engine::Sqlite));
        assert_eq!(Engine::of_url("postgresql://h/db"), Some(Engine::Postgres));
        assert_eq!(Engine::of_url("mariadb://h/db"), Some(Engine::MySql));
        assert_eq!(Engine::of_url("postgres:db"), None, "a server needs //HOST");
        assert_eq!(Engine::of_url("mongodb://h/db"), None);
        assert_eq!(Engine::of_url("audit.db"), None);
    }
}
