//! Durable storage of audit events behind one trait, [`AuditStore`], and its
//! backends. The store keeps every event once (unique by id), gives each a sequence
//! number in commit order, and answers the actor/target queries newest first with
//! keyset pagination. It knows nothing of HTTP or transports.

mod query;
mod sqlite;

pub use query::{Cursor, EventPage, EventQuery, ObjectKey, StoredEvent};
pub use sqlite::SqliteStore;

use std::sync::Arc;

use async_trait::async_trait;
use auditlog_event::DataEvent;

/// Errors of the storage layer. Backend error types never leak past this enum.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store URL `{0}` is not supported; use sqlite://PATH")]
    UnsupportedUrl(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store failed: {0}")]
    Backend(String),
}

/// What an insert did: how many events were new. Events already stored (same id) are
/// skipped, which makes redelivery harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsertOutcome {
    pub inserted: u64,
    pub duplicates: u64,
}

/// Where audit events live.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Stores a batch atomically: when this returns `Ok`, every event of the batch is
    /// committed (or was already there); on `Err`, none of them is.
    async fn insert_batch(&self, events: &[DataEvent]) -> Result<InsertOutcome, StoreError>;

    /// One page of events matching `query`, newest first.
    async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError>;

    /// Whether the store answers at all.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the store a URL names, creating or migrating its schema.
pub async fn open(url: &str) -> Result<Arc<dyn AuditStore>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(redact(url)))
    }
}

/// A URL fit for logs and errors: any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

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
}
