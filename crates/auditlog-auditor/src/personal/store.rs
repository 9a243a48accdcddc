//! [`ShreddingStore`]: the audit store as the auditor uses it when personal
//! fields are declared. Every event is written with its personal values
//! encrypted (so the plaintext never reaches the store's files), and every
//! event read back comes with them decrypted, or shown erased once the
//! subject's key is gone — for every answer alike, since queries, one event,
//! exports, the live stream, state and diff all read through it. What the log's
//! integrity rests on (leaves, rows for `verify`, tiles, proofs) is passed
//! through untouched: it is the ciphertext that the leaves hold.
//!
//! Keys are not cached: each batch written asks the store for its subjects'
//! keys and each page read for the keys it needs, so that an erasure by any
//! auditor sharing the store takes effect on the next answer of every one.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use auditlog_event::{DataEvent, MAX_STORED_EVENT_BYTES};
use auditlog_store::{
    ActivityCount, AuditStore, ChainEntry, DataSubject, EventPage, EventQuery, EventRow, Hash,
    InsertOutcome, Leaf, LeafEntry, LegalHold, Migration, ProducerProgress, PruneBatch,
    PruneCursor, PruneRule, PrunedCount, Read, RetentionPolicy, SealOutcome, SealerRole,
    SignedHead, SinkRecord, StoreError, StoredCheckpoint, StoredEvent, SubjectKey,
};

use super::{KeyRing, PersonalFields, StoredBody, forged_encryption, new_key};

/// The store, encrypting personal values on the way in and decrypting them on
/// the way out (see the module).
pub struct ShreddingStore {
    inner: Arc<dyn AuditStore>,
    fields: PersonalFields,
}

impl ShreddingStore {
    /// `inner` with the values of `fields` encrypted.
    pub fn new(inner: Arc<dyn AuditStore>, fields: PersonalFields) -> Self {
        ShreddingStore { inner, fields }
    }

    /// The events with their personal values encrypted, creating the keys of
    /// subjects that have none yet; `None` when no event holds one (the batch
    /// is then stored as it is, not copied).
    async fn encrypt(&self, events: &[DataEvent]) -> Result<Option<Vec<DataEvent>>, StoreError> {
        // A batch holds up to tens of thousands of events: subjects are
        // gathered in a set, each once.
        let subjects: HashSet<DataSubject> = events
            .iter()
            .flat_map(|event| self.fields.subjects_of(event))
            .collect();
        let candidates = subjects
            .into_iter()
            .map(|subject| {
                let key = new_key().map_err(|e| StoreError::Backend(e.to_string()))?;
                Ok(SubjectKey { subject, key })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if candidates.is_empty() {
            return Ok(None);
        }
        let keys = KeyRing::new(self.inner.ensure_subject_keys(&candidates).await?);
        events
            .iter()
            .map(|event| {
                self.fields.encrypt(event.clone(), &keys).map_err(|e| {
                    // A key erased between its creation and this batch: the
                    // batch is tried again and gets a new one.
                    StoreError::Unavailable(format!("encrypting event {}: {e}", event.id))
                })
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// The events with their encrypted values decrypted (or shown erased).
    async fn decrypt(&self, events: Vec<StoredEvent>) -> Result<Vec<StoredEvent>, StoreError> {
        let mut parsed: Vec<(StoredEvent, Option<StoredBody>)> = events
            .into_iter()
            .map(|e| {
                let body = StoredBody::parse(&e.body);
                (e, body)
            })
            .collect();
        let subjects: Vec<DataSubject> = parsed
            .iter()
            .flat_map(|(_, b)| b.iter().flat_map(StoredBody::subjects))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if subjects.is_empty() {
            return Ok(parsed.into_iter().map(|(e, _)| e).collect());
        }
        let keys = KeyRing::new(self.inner.subject_keys(&subjects).await?);
        for (event, body) in &mut parsed {
            if let Some(body) = body.take() {
                event.body = body.decrypt(&keys);
            }
        }
        Ok(parsed.into_iter().map(|(e, _)| e).collect())
    }
}

#[async_trait]
impl AuditStore for ShreddingStore {
    async fn insert_batch(&self, events: &[DataEvent]) -> Result<InsertOutcome, StoreError> {
        match self.encrypt(events).await? {
            Some(encrypted) => self.inner.insert_batch(&encrypted).await,
            None => self.inner.insert_batch(events).await,
        }
    }

    fn refusal(&self, event: &DataEvent) -> Option<String> {
        if let Some(reason) = forged_encryption(event) {
            return Some(reason);
        }
        // An event without personal values fits: the contract checked its size.
        let len = self.fields.encrypted_len(event)?;
        (len > MAX_STORED_EVENT_BYTES).then(|| {
            format!(
                "the event is {len} bytes once its personal fields are encrypted, more than \
                 the {MAX_STORED_EVENT_BYTES} an event may be"
            )
        })
    }

    async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let page = self.inner.query(query).await?;
        Ok(EventPage {
            events: self.decrypt(page.events).await?,
            next: page.next,
        })
    }

    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError> {
        self.inner.count(query).await
    }

    async fn get(&self, id: uuid::Uuid) -> Result<Option<StoredEvent>, StoreError> {
        match self.inner.get(id).await? {
            Some(event) => Ok(self.decrypt(vec![event]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn stored_after(
        &self,
        query: &EventQuery,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let events = self.inner.stored_after(query, after_seq, limit).await?;
        self.decrypt(events).await
    }

    async fn last_seq(&self) -> Result<i64, StoreError> {
        self.inner.last_seq().await
    }

    async fn activity(
        &self,
        query: &EventQuery,
        bucket_ms: i64,
    ) -> Result<Vec<ActivityCount>, StoreError> {
        self.inner.activity(query, bucket_ms).await
    }

    async fn producers(&self) -> Result<Vec<ProducerProgress>, StoreError> {
        self.inner.producers().await
    }

    async fn bind_producer(
        &self,
        producer_id: &str,
        principal: &str,
    ) -> Result<String, StoreError> {
        self.inner.bind_producer(producer_id, principal).await
    }

    async fn stored_ids(&self, ids: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError> {
        self.inner.stored_ids(ids).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn ensure_subject_keys(
        &self,
        candidates: &[SubjectKey],
    ) -> Result<Vec<SubjectKey>, StoreError> {
        self.inner.ensure_subject_keys(candidates).await
    }

    async fn subject_keys(&self, subjects: &[DataSubject]) -> Result<Vec<SubjectKey>, StoreError> {
        self.inner.subject_keys(subjects).await
    }

    async fn erase_subject_key(&self, subject: &DataSubject) -> Result<bool, StoreError> {
        self.inner.erase_subject_key(subject).await
    }

    async fn retention_policies(&self) -> Result<Vec<RetentionPolicy>, StoreError> {
        self.inner.retention_policies().await
    }

    async fn set_retention(&self, tenant: &str, days: Option<u32>) -> Result<(), StoreError> {
        self.inner.set_retention(tenant, days).await
    }

    async fn legal_holds(&self) -> Result<Vec<LegalHold>, StoreError> {
        self.inner.legal_holds().await
    }

    async fn place_hold(&self, hold: &LegalHold) -> Result<(), StoreError> {
        self.inner.place_hold(hold).await
    }

    async fn release_hold(&self, id: uuid::Uuid) -> Result<Option<LegalHold>, StoreError> {
        self.inner.release_hold(id).await
    }

    async fn prune_batch(
        &self,
        rule: &PruneRule,
        after: Option<PruneCursor>,
        limit: u32,
    ) -> Result<PruneBatch, StoreError> {
        self.inner.prune_batch(rule, after, limit).await
    }

    async fn prune_partitions(&self, rule: &PruneRule) -> Result<u64, StoreError> {
        self.inner.prune_partitions(rule).await
    }

    async fn pruned_count(&self, tenant: Option<&str>) -> Result<PrunedCount, StoreError> {
        self.inner.pruned_count(tenant).await
    }

    async fn pruned_leaves(&self, start: u64, end: u64) -> Result<Vec<u64>, StoreError> {
        self.inner.pruned_leaves(start, end).await
    }

    async fn sinks(&self) -> Result<Vec<SinkRecord>, StoreError> {
        self.inner.sinks().await
    }

    async fn create_sink(
        &self,
        name: &str,
        definition: &str,
        cursor: i64,
    ) -> Result<bool, StoreError> {
        self.inner.create_sink(name, definition, cursor).await
    }

    async fn update_sink(&self, name: &str, definition: &str) -> Result<bool, StoreError> {
        self.inner.update_sink(name, definition).await
    }

    async fn delete_sink(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_sink(name).await
    }

    async fn lease_sink(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        self.inner.lease_sink(name, holder, now_ms, lease_ms).await
    }

    async fn release_sink(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.inner.release_sink(name, holder).await
    }

    async fn advance_sink(
        &self,
        name: &str,
        holder: &str,
        cursor: i64,
    ) -> Result<bool, StoreError> {
        self.inner.advance_sink(name, holder, cursor).await
    }

    async fn seal(&self, max: u32) -> Result<SealOutcome, StoreError> {
        self.inner.seal(max).await
    }

    async fn sealer_role(&self) -> Result<Option<Box<dyn SealerRole>>, StoreError> {
        self.inner.sealer_role().await
    }

    async fn tree_size(&self) -> Result<u64, StoreError> {
        self.inner.tree_size().await
    }

    async fn tree_hashes(&self, reads: &[Read]) -> Result<Vec<(Read, Vec<Hash>)>, StoreError> {
        self.inner.tree_hashes(reads).await
    }

    async fn leaf_of(&self, id: uuid::Uuid) -> Result<Option<Leaf>, StoreError> {
        self.inner.leaf_of(id).await
    }

    async fn leaves(&self, start: u64, end: u64) -> Result<Vec<Leaf>, StoreError> {
        self.inner.leaves(start, end).await
    }

    async fn leaf_entries(&self, from: u64, limit: u32) -> Result<Vec<LeafEntry>, StoreError> {
        self.inner.leaf_entries(from, limit).await
    }

    async fn rows_after(&self, after_seq: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        self.inner.rows_after(after_seq, limit).await
    }

    async fn save_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        self.inner.save_checkpoint(checkpoint).await
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.inner.latest_checkpoint().await
    }

    async fn checkpoints_after(
        &self,
        after_size: u64,
        limit: u32,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.inner.checkpoints_after(after_size, limit).await
    }

    async fn legacy_chain_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        self.inner.legacy_chain_after(after_seq, limit).await
    }

    async fn legacy_head(&self) -> Result<Option<SignedHead>, StoreError> {
        self.inner.legacy_head().await
    }

    async fn save_migration(&self, migration: &Migration) -> Result<(), StoreError> {
        self.inner.save_migration(migration).await
    }

    async fn migration(&self) -> Result<Option<Migration>, StoreError> {
        self.inner.migration().await
    }
}

#[cfg(test)]
mod tests {
    use auditlog_event::{Action, Change, ObjectRef, ObjectType};
    use serde_json::json;

    use super::*;
    use crate::personal::DEFAULT_PERSONAL_FIELDS;

    /// A SQLite store in `dir`, and the same store seen through the wrapper.
    async fn stores(dir: &std::path::Path) -> (Arc<dyn AuditStore>, ShreddingStore) {
        let raw = auditlog_store::open(&format!("sqlite://{}", dir.join("audit.db").display()))
            .await
            .unwrap();
        let fields = PersonalFields::parse(DEFAULT_PERSONAL_FIELDS).unwrap();
        (raw.clone(), ShreddingStore::new(raw, fields))
    }

    fn created(id: i64, name: &str) -> DataEvent {
        let users = ObjectType::parse("targetType", "users").unwrap();
        let mut event = DataEvent::new(
            Action::Created,
            ObjectRef::new(users.clone(), 1),
            ObjectRef::new(users, id),
            1_000,
        );
        event.changes = Some([("name".to_owned(), Change::new(json!(null), json!(name)))].into());
        event
    }

    #[tokio::test]
    async fn the_leaf_keeps_the_ciphertext_while_readers_get_the_value_until_the_key_is_erased() {
        let dir = tempfile::tempdir().unwrap();
        let (raw, store) = stores(dir.path()).await;
        let (ada, bob) = (created(42, "Ada Lovelace"), created(43, "Bob Byte"));
        store
            .insert_batch(&[ada.clone(), bob.clone()])
            .await
            .unwrap();
        store.seal(10).await.unwrap();
        let leaf_before = store.leaf_of(ada.id).await.unwrap().unwrap();

        let read = store.get(ada.id).await.unwrap().unwrap();
        let stored = raw.get(ada.id).await.unwrap().unwrap();
        assert!(
            read.body.contains(r#""next":"Ada Lovelace""#),
            "{}",
            read.body
        );
        assert!(!stored.body.contains("Ada Lovelace"), "{}", stored.body);
        assert!(!leaf_before.bytes.contains("Ada Lovelace"));
        assert!(leaf_before.bytes.contains(r#"{"$enc":"v1:"#));

        let users = ObjectType::parse("targetType", "users").unwrap();
        let subject = DataSubject {
            tenant: auditlog_event::DEFAULT_TENANT.into(),
            object_type: users,
            id: "42".into(),
        };
        assert!(store.erase_subject_key(&subject).await.unwrap());

        let page = store.query(&EventQuery::default()).await.unwrap();
        let bodies: Vec<&str> = page.events.iter().map(|e| e.body.as_str()).collect();
        assert_eq!(bodies.len(), 2);
        let erased = bodies
            .iter()
            .find(|b| b.contains("\"targetId\":42"))
            .unwrap();
        assert!(erased.contains(r#""next":{"erased":true}"#), "{erased}");
        assert!(!erased.contains("Ada Lovelace"));
        assert!(
            bodies.iter().any(|b| b.contains("Bob Byte")),
            "another subject stays readable"
        );
        let tail = store
            .stored_after(&EventQuery::default(), 0, 10)
            .await
            .unwrap();
        assert!(tail.iter().all(|e| !e.body.contains("Ada Lovelace")));
        assert_eq!(
            store.leaf_of(ada.id).await.unwrap().unwrap(),
            leaf_before,
            "the leaf, and so every proof, is unchanged"
        );
    }

    #[tokio::test]
    async fn intake_is_told_what_would_not_fit_once_encrypted_or_forges_a_ciphertext() {
        let dir = tempfile::tempdir().unwrap();
        let (_, store) = stores(dir.path()).await;
        let huge = created(42, &"x".repeat(MAX_STORED_EVENT_BYTES - 1_000));
        let mut forged = created(42, "Ada");
        forged.changes = Some(
            [(
                "title".to_owned(),
                Change::new(json!(null), json!({"$enc": "v1:AAAA"})),
            )]
            .into(),
        );

        assert!(store.refusal(&created(42, "Ada")).is_none());
        assert!(
            store
                .refusal(&huge)
                .unwrap()
                .contains("once its personal fields are encrypted")
        );
        assert!(store.refusal(&forged).unwrap().contains("$enc"));
    }
}
