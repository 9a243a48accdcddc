//! What the store keeps for erasure by crypto-shredding: one encryption key per
//! data subject (the object whose personal values an event holds, e.g. the user
//! `users/42`), in a table of its own (`audit_subject_keys`), never in an event
//! and so never in a leaf of the log. The store only keeps and deletes the bytes;
//! what they encrypt, and how, is the auditor's.

use crate::ObjectKey;

/// Length of every subject key, in bytes (a 256-bit key).
pub const SUBJECT_KEY_BYTES: usize = 32;

/// One data subject's key, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectKey {
    /// Whose key it is: the subject's type and the text form of its id.
    pub subject: ObjectKey,
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
