//! What the store keeps for erasure by crypto-shredding: one encryption key per
//! data subject (the object whose personal values an event holds, e.g. the user
//! `users/42` of a tenant), in a table of its own (`audit_subject_keys`), never in
//! an event and so never in a leaf of the log. The store only keeps and deletes
//! the bytes; what they encrypt, and how, is the auditor's.

use auditlog_event::ObjectType;

/// A data subject: an object of one tenant. The same type and id in two tenants
/// are two people (two customers' `users/42`), each with a key of its own, so
/// that one tenant's erasure never touches another's data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataSubject {
    /// The tenant of the events that hold its values.
    pub tenant: String,
    /// The subject's type, e.g. `users`.
    pub object_type: ObjectType,
    /// The text form of its id ([`auditlog_event::ObjectId::key`]).
    pub id: String,
}

/// Length of every subject key, in bytes (a 256-bit key).
pub const SUBJECT_KEY_BYTES: usize = 32;

/// One data subject's key, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectKey {
    /// Whose key it is.
    pub subject: DataSubject,
    /// The key itself, [`SUBJECT_KEY_BYTES`] long.
    pub key: [u8; SUBJECT_KEY_BYTES],
}

// A key must not reach a log line through `{:?}`.
impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKey")
            .field("subject", &self.subject)
            .field("key", &"***")
            .finish()
    }
}
