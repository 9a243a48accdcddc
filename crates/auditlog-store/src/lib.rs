//! Durable storage of audit events behind one trait, [`AuditStore`], and its
//! backends. The store keeps every event once (unique by id), gives each a sequence
//! number (`seq`), and answers the actor/target queries newest first with
//! keyset pagination. It also keeps each event's producer number, so that it can say
//! per producer which numbers are missing ([`AuditStore::producers`]). It knows
//! nothing of HTTP or transports.
//!
//! Several auditors may write one server store at once. On PostgreSQL they insert
//! in parallel, so `seq` order is not commit order: a row may commit after one
//! with a higher `seq`. Readers that go by `seq` ([`AuditStore::seal`],
//! [`AuditStore::stored_after`], [`AuditStore::last_seq`]) therefore only go up to
//! the *settled* `seq`, below which no row can appear any more (see `postgres.rs`).
//! MySQL/MariaDB and SQLite writers take turns, so there every committed `seq` is
//! settled. One auditor at a time holds the sealer role ([`AuditStore::sealer_role`]).
//!
//! For integrity, [`AuditStore::seal`] appends stored events, in `seq` order, to
//! the log's RFC 9162 Merkle tree ([`tree`]; the arithmetic is `auditlog-tlog`'s):
//! the store keeps one leaf entry per sealed event, the hashes of complete subtrees
//! at the tile levels 8, 16, …, and the signed checkpoints, and serves the stored
//! hashes that roots and proofs are computed from. The hash chain of earlier
//! releases ([`legacy`]) is only read, so that a store they wrote can be checked
//! and migrated.
//!
//! Retention ([`retention`]) prunes expired events' rows while their leaves stay
//! in the tree, unless a legal hold covers them.
//!
//! The store also keeps the log streams' definitions, cursors and delivery
//! leases ([`SinkRecord`], [`AuditStore::sinks`]): configuration that does change,
//! beside events that never do.
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

mod columns;
pub mod legacy;
mod mysql;
mod postgres;
mod query;
pub mod retention;
mod sinks;
mod sql;
mod sqlite;
pub mod subject_keys;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tree;

pub use auditlog_tlog::{Hash, Read};
pub use columns::{column_mismatches, object_key, tenant_column};
pub use legacy::{ChainEntry, SignedHead, from_hex, to_hex};
pub use mysql::MySqlStore;
pub use postgres::PostgresStore;
pub use query::{
    ActivityCount, Cursor, EventPage, EventQuery, ObjectKey, Order, ProducerProgress, StoredEvent,
};
pub use retention::{LegalHold, PruneBatch, PruneCursor, PruneRule, PrunedCount, RetentionPolicy};
pub use sinks::SinkRecord;
pub use sqlite::SqliteStore;
pub use subject_keys::{DataSubject, SUBJECT_KEY_BYTES, SubjectKey};
pub use tree::{EventRow, Leaf, LeafEntry, Migration, ObjectKeys, SealOutcome, StoredCheckpoint};

use std::sync::Arc;

use async_trait::async_trait;
use auditlog_event::DataEvent;

/// Errors of the storage layer. Backend error types never leak past this enum.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL's scheme names no backend.
    #[error("the store URL `{0}` is not supported; use sqlite://PATH, postgres://… or mysql://…")]
    UnsupportedUrl(String),
    /// A read-only store ([`open_read_only`]) was asked of an engine that has none.
    #[error("a read-only store URL must be postgres://… or postgresql://…, not `{0}`")]
    ReadOnlyUnsupported(String),
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
    /// cursor ignored) whose `seq` is above `after_seq` and settled (no event with a
    /// lower `seq` can still appear), in `seq` order: what a live tail has not yet
    /// seen.
    async fn stored_after(
        &self,
        query: &EventQuery,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The highest settled `seq` (every event at or below it that will ever be
    /// stored is stored), 0 for an empty store: "now" for a live tail.
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

    /// Binds `producer_id` to `principal` (who delivers its events, e.g.
    /// `services/api`) unless it is bound already, and answers the principal it
    /// is bound to: `principal` when this call bound it or it was bound to it
    /// before, another one when another principal used the id first. Bindings
    /// are never changed or removed, so a producer's numbering cannot be taken
    /// over. A store without bindings (a test double) binds nothing.
    async fn bind_producer(
        &self,
        producer_id: &str,
        principal: &str,
    ) -> Result<String, StoreError> {
        let _ = producer_id;
        Ok(principal.to_owned())
    }

    /// Which of `ids` are stored, one entry per stored row (so a duplicate would
    /// show twice). For checking completeness by id.
    async fn stored_ids(&self, ids: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError>;

    /// Whether the store answers at all.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Why this store will not keep `event`, if it will not: a store that
    /// rewrites events before it writes them (the auditor's, which encrypts
    /// personal values) refuses what would no longer fit a leaf once rewritten.
    /// Asked by the auditor's intake before an event is accepted, so that such
    /// an event is refused to its producer rather than failing its whole batch.
    fn refusal(&self, event: &DataEvent) -> Option<String> {
        let _ = event;
        None
    }

    /// The keys of the data subjects `candidates` name, creating each missing
    /// one from its candidate (insert if absent, so that auditors sharing the
    /// store agree on one key per subject), as stored after this call: one entry
    /// per subject, in no particular order. A subject whose key another process
    /// erased between the insert and the read is missing from the answer.
    async fn ensure_subject_keys(
        &self,
        candidates: &[SubjectKey],
    ) -> Result<Vec<SubjectKey>, StoreError> {
        let _ = candidates;
        Err(no_subject_keys())
    }

    /// The stored keys of `subjects` (those without one, never given one or
    /// erased, are missing from the answer), in no particular order.
    async fn subject_keys(&self, subjects: &[DataSubject]) -> Result<Vec<SubjectKey>, StoreError> {
        let _ = subjects;
        Err(no_subject_keys())
    }

    /// Deletes `subject`'s key, making its encrypted values unreadable for
    /// ever (crypto-shredding); `true` if there was one. Idempotent. On SQLite
    /// the deleted bytes are overwritten (`secure_delete`) and the WAL is
    /// checkpointed and truncated before this returns, so the key is in neither
    /// file afterwards.
    async fn erase_subject_key(&self, subject: &DataSubject) -> Result<bool, StoreError> {
        let _ = subject;
        Err(no_subject_keys())
    }

    /// Appends up to `max` stored events after the tree's last leaf and up to the
    /// settled `seq` to the log's Merkle tree (see [`tree`]), in `seq` order, in one
    /// transaction under a lock that makes concurrent sealers take turns (normally
    /// only the holder of [`AuditStore::sealer_role`] seals): each event gets
    /// the next leaf index, its leaf hash (of [`auditlog_tlog::leaf_bytes`] of its
    /// row) is stored with it, and so is the hash of every tile-level node
    /// (levels 8, 16, …) the new leaves complete. Idempotent: a row is sealed once,
    /// and rows that appear later with a `seq` at or below the last leaf's (inserted
    /// behind the auditor's back) are never sealed, so verification reports them.
    async fn seal(&self, max: u32) -> Result<SealOutcome, StoreError> {
        let _ = max;
        Err(unsupported())
    }

    /// Every tenant's own retention policy, by tenant (see [`retention`]). A
    /// store without retention (a test double) has none.
    async fn retention_policies(&self) -> Result<Vec<RetentionPolicy>, StoreError> {
        Ok(Vec::new())
    }

    /// Sets `tenant`'s own retention to `days`, or removes it (`None`: the
    /// tenant follows the deployment's default again).
    async fn set_retention(&self, tenant: &str, days: Option<u32>) -> Result<(), StoreError> {
        let _ = (tenant, days);
        Err(no_retention())
    }

    /// Every legal hold, oldest first. A store without retention has none.
    async fn legal_holds(&self) -> Result<Vec<LegalHold>, StoreError> {
        Ok(Vec::new())
    }

    /// Keeps a new legal hold.
    async fn place_hold(&self, hold: &LegalHold) -> Result<(), StoreError> {
        let _ = hold;
        Err(no_retention())
    }

    /// Removes the hold `id`, answering it as it was; `None` when there is none.
    async fn release_hold(&self, id: uuid::Uuid) -> Result<Option<LegalHold>, StoreError> {
        let _ = id;
        Err(no_retention())
    }

    /// Prunes one batch: looks at up to `limit` sealed events older than the
    /// rule's latest cutoff, after `after` in `(timestamp, id)` order, and
    /// deletes the rows of those that are expired under their tenant's cutoff,
    /// covered by no legal hold and still hash to their leaf, keeping their
    /// leaves and recording them as pruned, in one transaction. Call again with
    /// [`PruneBatch::next`] until it is `None`.
    async fn prune_batch(
        &self,
        rule: &PruneRule,
        after: Option<PruneCursor>,
        limit: u32,
    ) -> Result<PruneBatch, StoreError> {
        let _ = (rule, after, limit);
        Err(no_retention())
    }

    /// Prunes whole time partitions, where the store has them (PostgreSQL): a
    /// partition whose every event is prunable under `rule` (as
    /// [`AuditStore::prune_batch`] judges) is dropped, its leaves recorded as
    /// pruned first, which is far cheaper than deleting its rows. Answers how
    /// many events went that way; what is left is for `prune_batch`.
    async fn prune_partitions(&self, rule: &PruneRule) -> Result<u64, StoreError> {
        let _ = rule;
        Ok(0)
    }

    /// How many events of `tenant` (of every tenant with `None`) were pruned.
    async fn pruned_count(&self, tenant: Option<&str>) -> Result<PrunedCount, StoreError> {
        let _ = tenant;
        Ok(PrunedCount::default())
    }

    /// The pruned leaf indexes in `[start, end)`, ascending: leaves whose rows
    /// are gone on purpose.
    async fn pruned_leaves(&self, start: u64, end: u64) -> Result<Vec<u64>, StoreError> {
        let _ = (start, end);
        Ok(Vec::new())
    }

    /// Every sink, by name. A store without sinks (a test double) has none.
    async fn sinks(&self) -> Result<Vec<SinkRecord>, StoreError> {
        Ok(Vec::new())
    }

    /// Adds a sink whose cursor starts at `cursor`; `Ok(false)` when the name is
    /// taken (nothing changed then).
    async fn create_sink(
        &self,
        name: &str,
        definition: &str,
        cursor: i64,
    ) -> Result<bool, StoreError> {
        let _ = (name, definition, cursor);
        Err(no_sinks())
    }

    /// Replaces a sink's definition, keeping its cursor and lease; `Ok(false)`
    /// when there is no such sink.
    async fn update_sink(&self, name: &str, definition: &str) -> Result<bool, StoreError> {
        let _ = (name, definition);
        Err(no_sinks())
    }

    /// Removes a sink with its cursor; `Ok(false)` when there was no such sink.
    async fn delete_sink(&self, name: &str) -> Result<bool, StoreError> {
        let _ = name;
        Err(no_sinks())
    }

    /// Takes or renews the delivery lease of sink `name` for `holder` until
    /// `now_ms + lease_ms`: granted when the lease is free, expired or already
    /// `holder`'s. `Ok(true)` while `holder` holds it; `Ok(false)` when another
    /// holder does or the sink is gone.
    async fn lease_sink(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let _ = (name, holder, now_ms, lease_ms);
        Err(no_sinks())
    }

    /// Gives up `holder`'s lease on sink `name` (if it holds it), so that another
    /// auditor may take it at once.
    async fn release_sink(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let _ = (name, holder);
        Err(no_sinks())
    }

    /// Moves sink `name`'s cursor forward to `cursor` if `holder` holds its lease;
    /// a cursor never moves back. `Ok(false)` when `holder` does not hold the lease
    /// (it must stop delivering) or the sink is gone.
    async fn advance_sink(
        &self,
        name: &str,
        holder: &str,
        cursor: i64,
    ) -> Result<bool, StoreError> {
        let _ = (name, holder, cursor);
        Err(no_sinks())
    }

    /// Tries to become the one sealer of this store among the auditors that share
    /// it: `Ok(Some(role))` while this process holds the role, `Ok(None)` while
    /// another does. The role lasts as long as the returned [`SealerRole`] lives
    /// and its database session does; a process that dies loses it with its
    /// session, and another takes it at its next try. A store only one process
    /// uses (SQLite, test doubles) always grants it.
    async fn sealer_role(&self) -> Result<Option<Box<dyn SealerRole>>, StoreError> {
        Ok(Some(Box::new(SoleSealer)))
    }

    /// Leaves in the tree (0 when nothing is sealed).
    async fn tree_size(&self) -> Result<u64, StoreError> {
        Err(unsupported())
    }

    /// The stored hashes each [`Read`] names (level 0: leaf hashes by leaf index;
    /// 8, 16, …: tile-level node hashes), in index order, each list stopping at the
    /// first hash that is not stored.
    async fn tree_hashes(&self, reads: &[Read]) -> Result<Vec<(Read, Vec<Hash>)>, StoreError> {
        let _ = reads;
        Err(unsupported())
    }

    /// The sealed leaf of the event with this id, rebuilt from its row; `None` when
    /// the event is not stored or not sealed yet.
    async fn leaf_of(&self, id: uuid::Uuid) -> Result<Option<Leaf>, StoreError> {
        let _ = id;
        Err(unsupported())
    }

    /// The leaves with index in `[start, end)`, in index order, each rebuilt from
    /// its row (a leaf whose row is gone is left out).
    async fn leaves(&self, start: u64, end: u64) -> Result<Vec<Leaf>, StoreError> {
        let _ = (start, end);
        Err(unsupported())
    }

    /// Up to `limit` leaf entries (index, seq, id, stored hash) with index at or
    /// above `from`, in index order, whether or not their rows still exist: what
    /// `verify` walks to find removed rows.
    async fn leaf_entries(&self, from: u64, limit: u32) -> Result<Vec<LeafEntry>, StoreError> {
        let _ = (from, limit);
        Err(unsupported())
    }

    /// Up to `limit` rows of `audit_events` with `seq` above `after_seq`, in `seq`
    /// order, with every column as stored: what `verify` recomputes leaves and
    /// columns from.
    async fn rows_after(&self, after_seq: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        let _ = (after_seq, limit);
        Err(unsupported())
    }

    /// Keeps a signed checkpoint (saving the same size twice keeps the first).
    async fn save_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        let _ = checkpoint;
        Err(unsupported())
    }

    /// The checkpoint with the largest size, if any.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        Err(unsupported())
    }

    /// Up to `limit` checkpoints with size above `after_size`, ascending by size.
    async fn checkpoints_after(
        &self,
        after_size: u64,
        limit: u32,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let _ = (after_size, limit);
        Err(unsupported())
    }

    /// The hash chain of earlier releases ([`legacy`]), for the one-time migration
    /// into the tree: up to `limit` chain entries with `seq` above `after_seq`.
    async fn legacy_chain_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        let _ = (after_seq, limit);
        Err(unsupported())
    }

    /// The newest signed head of the earlier releases' chain, if any.
    async fn legacy_head(&self) -> Result<Option<SignedHead>, StoreError> {
        Err(unsupported())
    }

    /// Records that the earlier chain was checked and moved into the tree (once:
    /// saving again keeps the first record).
    async fn save_migration(&self, migration: &Migration) -> Result<(), StoreError> {
        let _ = migration;
        Err(unsupported())
    }

    /// The record of that migration, if it happened.
    async fn migration(&self) -> Result<Option<Migration>, StoreError> {
        Err(unsupported())
    }
}

/// The sealer role, held (see [`AuditStore::sealer_role`]). Dropping it gives the
/// role up.
#[async_trait]
pub trait SealerRole: Send + Sync {
    /// Whether the role is still held: asks the database over the session that
    /// holds it, which also keeps that session from timing out as idle. An error
    /// means the role may be lost (the session is gone, and with it the lock):
    /// drop it and try for the role again.
    async fn check(&mut self) -> Result<(), StoreError>;
}

/// The role on a store no other process shares: always held.
struct SoleSealer;

#[async_trait]
impl SealerRole for SoleSealer {
    async fn check(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What the integrity methods of a store without a tree (a test double) answer.
fn unsupported() -> StoreError {
    StoreError::Backend("this store keeps no Merkle tree".into())
}

/// What the subject-key methods of a store without keys (a test double) answer.
fn no_subject_keys() -> StoreError {
    StoreError::Backend("this store keeps no subject keys".into())
}

/// What the retention methods of a store without retention (a test double) answer.
fn no_retention() -> StoreError {
    StoreError::Backend("this store keeps no retention policies or holds".into())
}

/// What the sink methods of a store without sinks (a test double) answer.
fn no_sinks() -> StoreError {
    StoreError::Backend("this store keeps no sinks".into())
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

/// Opens an existing store for reading only, changing nothing in its schema: what
/// serves the auditor's query routes from a read-only role or a streaming replica
/// (`--query-store-url`). Only PostgreSQL is supported; its every transaction is
/// read-only, so a write through this store fails.
pub async fn open_read_only(url: &str) -> Result<Arc<dyn AuditStore>, StoreError> {
    match Engine::of_url(url) {
        Some(Engine::Postgres) => Ok(Arc::new(PostgresStore::open_read_only(url).await?)),
        Some(_) => Err(StoreError::ReadOnlyUnsupported(redact(url))),
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
