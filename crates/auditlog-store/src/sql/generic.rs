//! [`GenericStore`]: the [`crate::AuditStore`] methods that are the same SQL on every
//! backend, written once for any sqlx [`Database`]. A backend hands over one of its
//! pools and its [`Dialect`], and keeps only what is its own (schema and migration,
//! its bulk insert, the lock `seal` runs under, statements no other backend runs).
//!
//! The bounds of the one `impl` block are what the statements need of a database:
//! executing on a connection, and binding and decoding `&str`, `String`, `i16`,
//! `i64` and bytes. Each backend's delegation is monomorphised for its database, so
//! a query runs the same statements and decodes the same columns as when every
//! backend spelled it out; what differs is carried by the [`Dialect`]'s function
//! pointers (one call per id column of a row, one per text column a backend may
//! keep binary).

use auditlog_tlog::{Frontier, Hash, Read, leaf_bytes, leaf_hash};
use sqlx::database::HasStatementCache;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder, Row,
    Transaction, Type,
};
use uuid::Uuid;

use super::legacy::{LATEST_HEAD, chain_after_query};
use super::queries::{
    LAST_SEQ, ProducerRow, activity_count, into_page, producers_query, progress, total,
};
use super::retention::{
    DELIVERED_BY_EVERY_SINK, PRUNE_BATCH_MAX, candidates_query, hold_columns, pruned_count_query,
    pruned_insert, pruned_leaves_query, rows_delete,
};
use super::tree::{
    LAST_LEAF, LATEST_CHECKPOINT, MIGRATION, SEAL_PAGE, SEAL_WINDOW, checkpoints_after_query,
    hashes_query, leaf_entries_query, leaf_insert, leaf_of_query, leaves_query, next_seq_query,
    node_insert, rows_after_query, save_checkpoint_query, save_migration_query, to_seal_query,
    unsigned,
};
use super::{
    Dialect, STORED_IDS_CHUNK, SUBJECT_KEYS_CHUNK, SUBJECT_READS_CHUNK, hash_from_bytes,
    store_error, uuid_from_bytes,
};
use crate::legacy::ChainHead;
use crate::retention::{
    LegalHold, PruneBatch, PruneCandidate, PruneCursor, PruneRule, PrunedCount, RetentionPolicy,
    Verdict,
};
use crate::subject_keys::{DataSubject, SUBJECT_KEY_BYTES, SubjectKey};
use crate::{
    ActivityCount, ChainEntry, EventPage, EventQuery, EventRow, Leaf, LeafEntry, Migration,
    ObjectKeys, ProducerProgress, SealOutcome, SignedHead, SinkRecord, StoreError,
    StoredCheckpoint, StoredEvent,
};

/// One SQL backend as the shared code sees it: a pool to run on and the backend's
/// spelling. Cheap to make; a backend makes one per call.
pub(crate) struct GenericStore<'a, DB: Database> {
    pool: &'a Pool<DB>,
    dialect: &'a Dialect<DB>,
}

impl<'a, DB: Database> GenericStore<'a, DB> {
    pub(crate) fn new(pool: &'a Pool<DB>, dialect: &'a Dialect<DB>) -> Self {
        GenericStore { pool, dialect }
    }
}

impl<DB> GenericStore<'_, DB>
where
    DB: Database + HasStatementCache,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'n> &'n str: ColumnIndex<DB::Row>,
    &'static str: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<String>: for<'q> Encode<'q, DB> + Type<DB>,
    i16: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Vec<u8>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
{
    /// [`crate::AuditStore::query`].
    pub(crate) async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let (sql, page_size) = self.dialect.page_query(query);
        let events = self.events(sql).await?;
        Ok(into_page(events, page_size, query.order))
    }

    /// [`crate::AuditStore::count`].
    pub(crate) async fn count(&self, query: &EventQuery) -> Result<u64, StoreError> {
        let row = self
            .dialect
            .count_query(query)
            .build()
            .fetch_one(self.pool)
            .await
            .map_err(store_error)?;
        total(row.try_get("total").map_err(store_error)?)
    }

    /// [`crate::AuditStore::get`].
    pub(crate) async fn get(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.dialect
            .get_query(id)
            .build()
            .fetch_optional(self.pool)
            .await
            .map_err(store_error)?
            .map(|row| self.stored_event(&row))
            .transpose()
    }

    /// [`crate::AuditStore::stored_after`], up to `settled` (the settled `seq`; `None`
    /// where every committed row is settled).
    pub(crate) async fn stored_after(
        &self,
        query: &EventQuery,
        after_seq: i64,
        limit: u32,
        settled: Option<i64>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = self
            .dialect
            .after_seq_query(query, after_seq, limit, settled);
        self.events(sql).await
    }

    /// [`crate::AuditStore::last_seq`].
    pub(crate) async fn last_seq(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(LAST_SEQ)
            .fetch_one(self.pool)
            .await
            .map_err(store_error)?;
        row.try_get("last_seq").map_err(store_error)
    }

    /// [`crate::AuditStore::activity`].
    pub(crate) async fn activity(
        &self,
        query: &EventQuery,
        bucket_ms: i64,
    ) -> Result<Vec<ActivityCount>, StoreError> {
        self.dialect
            .activity_query(query, bucket_ms)
            .build()
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(|row| {
                activity_count(
                    row.try_get("start").map_err(store_error)?,
                    row.try_get("action").map_err(store_error)?,
                    row.try_get("n").map_err(store_error)?,
                )
            })
            .collect()
    }

    /// [`crate::AuditStore::producers`].
    pub(crate) async fn producers(&self) -> Result<Vec<ProducerProgress>, StoreError> {
        let rows = producers_query::<DB>()
            .build()
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?;
        progress(
            rows.iter()
                .map(|row| {
                    Ok(ProducerRow {
                        producer_id: self.text(row, "producer_id")?,
                        events: row.try_get("events").map_err(store_error)?,
                        last_seq: row.try_get("last_seq").map_err(store_error)?,
                        gap_from: row.try_get("gap_from").map_err(store_error)?,
                        gap_to: row.try_get("gap_to").map_err(store_error)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?,
        )
    }

    /// [`crate::AuditStore::stored_ids`] for a backend whose `id` column is selected
    /// as it is stored (so [`Dialect::decode_id`] reads it), on one connection.
    pub(crate) async fn stored_ids(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(store_error)?;
        self.ids_in(&mut conn, ids, "").await
    }

    /// The ids among `ids` that are stored, by `IN` lists of [`STORED_IDS_CHUNK`],
    /// read on `conn` with `suffix` after each statement (a locking clause, or
    /// nothing).
    pub(crate) async fn ids_in(
        &self,
        conn: &mut DB::Connection,
        ids: &[Uuid],
        suffix: &str,
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(STORED_IDS_CHUNK) {
            let mut sql = QueryBuilder::<DB>::new("SELECT id FROM audit_events WHERE id IN (");
            for (n, id) in chunk.iter().enumerate() {
                if n > 0 {
                    sql.push(", ");
                }
                (self.dialect.bind_id)(&mut sql, *id);
            }
            sql.push(")").push(suffix);
            for row in sql
                .build()
                .fetch_all(&mut *conn)
                .await
                .map_err(store_error)?
            {
                found.push((self.dialect.decode_id)(&row, "id")?);
            }
        }
        Ok(found)
    }

    /// [`crate::AuditStore::ping`].
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// What every backend's [`crate::AuditStore::seal`] does once it holds its
    /// sealers' lock in `tx`: reads the last leaf and the tree's right edge (the
    /// incomplete tile of each stored level), appends the events after that leaf's
    /// `seq` [`SEAL_PAGE`] at a time up to `max` and up to `settled`, storing each
    /// page's leaves and the tile-level nodes they complete with one insert each,
    /// and commits. Everything it reads above the last leaf is final: up to
    /// `settled`, the `seq` below which no row can appear any more (the backend
    /// worked it out before `tx` began), or, with `None`, because the backend's
    /// writers commit in `seq` order.
    pub(crate) async fn seal(
        &self,
        mut tx: Transaction<'_, DB>,
        max: u32,
        settled: Option<i64>,
    ) -> Result<SealOutcome, StoreError> {
        let last = sqlx::query(LAST_LEAF)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let (size, mut after_seq) = match last {
            Some(row) => {
                let index = row.try_get("leaf_index").map_err(store_error)?;
                let seq = row.try_get("seq").map_err(store_error)?;
                (unsigned(index, "leaf index")? + 1, seq)
            }
            // Nothing sealed yet: every row comes after, whatever its `seq`.
            None => (0, i64::MIN),
        };
        let edge = self.hashes_on(&mut tx, &Frontier::reads(size)).await?;
        let mut frontier = Frontier::restore(size, &edge).map_err(|e| {
            StoreError::Backend(format!(
                "the stored tree of {size} leaves is incomplete: {e}"
            ))
        })?;
        let mut sealed = 0_u32;
        let mut leaves = Vec::with_capacity(SEAL_PAGE as usize);
        let mut completed = Vec::new();
        while sealed < max {
            let want = SEAL_PAGE.min(max - sealed);
            let upto = settled.map(|settled| settled.min(after_seq.saturating_add(SEAL_WINDOW)));
            // Where the window stops short of `settled`, an empty or short page is
            // a gap in `seq` (or the start, before any leaf), not the end.
            let short_of_settled = match (upto, settled) {
                (Some(upto), Some(settled)) if upto < settled => Some((upto, settled)),
                _ => None,
            };
            let rows = to_seal_query(self.dialect, after_seq, upto, want)
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(store_error)?;
            leaves.clear();
            for row in &rows {
                let seq: i64 = row.try_get("seq").map_err(store_error)?;
                let received_at: i64 = row.try_get("received_at").map_err(store_error)?;
                let body: String = row.try_get("body").map_err(store_error)?;
                let hash = leaf_hash(leaf_bytes(&body, seq, received_at).as_bytes());
                leaves.push(LeafEntry {
                    index: frontier.size(),
                    seq,
                    id: (self.dialect.decode_id)(row, "id")?,
                    hash,
                });
                frontier.append(hash, &mut completed);
            }
            let Some(last) = leaves.last() else {
                let Some((upto, settled)) = short_of_settled else {
                    break;
                };
                let next: Option<i64> = next_seq_query::<DB>(upto, settled)
                    .build()
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(store_error)?
                    .try_get("next_seq")
                    .map_err(store_error)?;
                let Some(next) = next else {
                    break;
                };
                after_seq = next - 1;
                continue;
            };
            after_seq = last.seq;
            leaf_insert(self.dialect, &leaves)
                .build()
                // Only full pages repeat their SQL text; caching the prepared
                // statement of each odd tail size would just fill the cache.
                .persistent(leaves.len() == SEAL_PAGE as usize)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            if !completed.is_empty() {
                node_insert::<DB>(&completed)
                    .build()
                    .persistent(false)
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
                completed.clear();
            }
            sealed += leaves.len() as u32;
            if (leaves.len() as u32) < want && short_of_settled.is_none() {
                break;
            }
        }
        tx.commit().await.map_err(store_error)?;
        Ok(SealOutcome {
            sealed: u64::from(sealed),
            size: frontier.size(),
            root: frontier.root(),
        })
    }

    /// [`crate::AuditStore::tree_size`].
    pub(crate) async fn tree_size(&self) -> Result<u64, StoreError> {
        let Some(row) = sqlx::query(LAST_LEAF)
            .fetch_optional(self.pool)
            .await
            .map_err(store_error)?
        else {
            return Ok(0);
        };
        Ok(unsigned(
            row.try_get("leaf_index").map_err(store_error)?,
            "leaf index",
        )? + 1)
    }

    /// [`crate::AuditStore::tree_hashes`], on one connection.
    pub(crate) async fn tree_hashes(
        &self,
        reads: &[Read],
    ) -> Result<Vec<(Read, Vec<Hash>)>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(store_error)?;
        self.hashes_on(&mut conn, reads).await
    }

    /// The stored hashes of each of `reads`, one statement per read, read on
    /// `conn` (a pooled connection, or the sealer's transaction); each list stops
    /// at the first index that is not stored.
    async fn hashes_on(
        &self,
        conn: &mut DB::Connection,
        reads: &[Read],
    ) -> Result<Vec<(Read, Vec<Hash>)>, StoreError> {
        let mut out = Vec::with_capacity(reads.len());
        for read in reads {
            let mut hashes = Vec::new();
            if read.start < read.end {
                let rows = hashes_query::<DB>(read)
                    .build()
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(store_error)?;
                for (want, row) in (read.start..).zip(&rows) {
                    let index = unsigned(row.try_get("idx").map_err(store_error)?, "tree index")?;
                    if index != want {
                        break;
                    }
                    let hash: Vec<u8> = row.try_get("hash").map_err(store_error)?;
                    hashes.push(hash_from_bytes(&hash)?);
                }
            }
            out.push((*read, hashes));
        }
        Ok(out)
    }

    /// [`crate::AuditStore::leaf_of`].
    pub(crate) async fn leaf_of(&self, id: Uuid) -> Result<Option<Leaf>, StoreError> {
        leaf_of_query(self.dialect, id)
            .build()
            .fetch_optional(self.pool)
            .await
            .map_err(store_error)?
            .map(|row| self.leaf(&row))
            .transpose()
    }

    /// [`crate::AuditStore::leaves`].
    pub(crate) async fn leaves(&self, start: u64, end: u64) -> Result<Vec<Leaf>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        leaves_query(self.dialect, start, end)
            .build()
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(|row| self.leaf(row))
            .collect()
    }

    /// [`crate::AuditStore::leaf_entries`].
    pub(crate) async fn leaf_entries(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<LeafEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        leaf_entries_query(self.dialect, from, limit)
            .build()
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(|row| self.leaf_entry(row))
            .collect()
    }

    /// [`crate::AuditStore::rows_after`].
    pub(crate) async fn rows_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        rows_after_query(self.dialect, after_seq, limit)
            .build()
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(|row| self.event_row(row))
            .collect()
    }

    /// [`crate::AuditStore::bind_producer`]: insert-if-absent, then read back
    /// whoever holds it (this call's principal, or the one that was first).
    pub(crate) async fn bind_producer(
        &self,
        producer_id: &str,
        principal: &str,
    ) -> Result<String, StoreError> {
        let mut insert = QueryBuilder::<DB>::new(
            "INSERT INTO audit_producers (producer_id, principal, bound_at) VALUES (",
        );
        insert
            .separated(", ")
            .push_bind(producer_id.to_owned())
            .push_bind(principal.to_owned())
            .push_bind(auditlog_event::now_ms());
        insert
            .push(") ")
            .push((self.dialect.keep_existing)("producer_id"));
        insert
            .build()
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        let mut select =
            QueryBuilder::<DB>::new("SELECT principal FROM audit_producers WHERE producer_id = ");
        select.push_bind(producer_id.to_owned());
        let row = select
            .build()
            .fetch_one(self.pool)
            .await
            .map_err(store_error)?;
        (self.dialect.text)(&row, "principal")?
            .ok_or_else(|| StoreError::Backend("a producer's principal is NULL".into()))
    }

    /// [`crate::AuditStore::ensure_subject_keys`]: insert-if-absent, then read
    /// back the keys that are stored (the candidates' or those of whoever was
    /// first).
    pub(crate) async fn ensure_subject_keys(
        &self,
        candidates: &[SubjectKey],
    ) -> Result<Vec<SubjectKey>, StoreError> {
        let now = auditlog_event::now_ms();
        for chunk in candidates.chunks(SUBJECT_KEYS_CHUNK) {
            let mut insert = QueryBuilder::<DB>::new(
                "INSERT INTO audit_subject_keys \
                 (tenant_id, subject_type, subject_id, subject_key, created_at) ",
            );
            insert.push_values(chunk, |mut row, candidate| {
                row.push_bind(candidate.subject.tenant.clone())
                    .push_bind(candidate.subject.object_type.as_str().to_owned())
                    .push_bind(candidate.subject.id.clone())
                    .push_bind(candidate.key.to_vec())
                    .push_bind(now);
            });
            insert
                .push(" ")
                .push((self.dialect.keep_existing)("subject_type"));
            insert
                .build()
                .execute(self.pool)
                .await
                .map_err(store_error)?;
        }
        let subjects: Vec<DataSubject> = candidates.iter().map(|c| c.subject.clone()).collect();
        self.subject_keys(&subjects).await
    }

    /// [`crate::AuditStore::subject_keys`].
    pub(crate) async fn subject_keys(
        &self,
        subjects: &[DataSubject],
    ) -> Result<Vec<SubjectKey>, StoreError> {
        let mut keys = Vec::with_capacity(subjects.len());
        for chunk in subjects.chunks(SUBJECT_READS_CHUNK) {
            let mut select = QueryBuilder::<DB>::new(
                "SELECT tenant_id, subject_type, subject_id, subject_key \
                 FROM audit_subject_keys WHERE ",
            );
            for (i, subject) in chunk.iter().enumerate() {
                if i > 0 {
                    select.push(" OR ");
                }
                select
                    .push("(tenant_id = ")
                    .push_bind(subject.tenant.clone())
                    .push(" AND subject_type = ")
                    .push_bind(subject.object_type.as_str().to_owned())
                    .push(" AND subject_id = ")
                    .push_bind(subject.id.clone())
                    .push(")");
            }
            let rows = select
                .build()
                .fetch_all(self.pool)
                .await
                .map_err(store_error)?;
            for row in rows {
                keys.push(self.subject_key_of(&row)?);
            }
        }
        Ok(keys)
    }

    fn subject_key_of(&self, row: &DB::Row) -> Result<SubjectKey, StoreError> {
        let text = |column: &str| {
            (self.dialect.text)(row, column)?
                .ok_or_else(|| StoreError::Backend(format!("a subject key's {column} is NULL")))
        };
        let object_type =
            auditlog_event::ObjectType::parse("subjectType", text("subject_type")?)
                .map_err(|e| StoreError::Backend(format!("a stored subject type: {e}")))?;
        let bytes: Vec<u8> = row.try_get("subject_key").map_err(store_error)?;
        let key = bytes.try_into().map_err(|bytes: Vec<u8>| {
            StoreError::Backend(format!(
                "a stored subject key has {} bytes, not {SUBJECT_KEY_BYTES}",
                bytes.len()
            ))
        })?;
        Ok(SubjectKey {
            subject: DataSubject {
                tenant: text("tenant_id")?,
                object_type,
                id: text("subject_id")?,
            },
            key,
        })
    }

    /// [`crate::AuditStore::erase_subject_key`]: the delete only (SQLite then
    /// scrubs its WAL, see `sqlite.rs`).
    pub(crate) async fn erase_subject_key(
        &self,
        subject: &DataSubject,
    ) -> Result<bool, StoreError> {
        // sqlx has no backend-independent affected-row count: ask first (a key
        // erased by someone else in between was there all the same).
        let existed = !self
            .subject_keys(std::slice::from_ref(subject))
            .await?
            .is_empty();
        let mut delete =
            QueryBuilder::<DB>::new("DELETE FROM audit_subject_keys WHERE tenant_id = ");
        delete
            .push_bind(subject.tenant.clone())
            .push(" AND subject_type = ")
            .push_bind(subject.object_type.as_str().to_owned())
            .push(" AND subject_id = ")
            .push_bind(subject.id.clone());
        delete
            .build()
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        Ok(existed)
    }

    /// [`crate::AuditStore::retention_policies`].
    pub(crate) async fn retention_policies(&self) -> Result<Vec<RetentionPolicy>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, days, updated_at FROM audit_retention ORDER BY tenant_id",
        )
        .fetch_all(self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let days: i64 = row.try_get("days").map_err(store_error)?;
                Ok(RetentionPolicy {
                    tenant: self.text(row, "tenant_id")?,
                    days: u32::try_from(days).map_err(|_| {
                        StoreError::Backend(format!("a stored retention of {days} days"))
                    })?,
                    updated_at: row.try_get("updated_at").map_err(store_error)?,
                })
            })
            .collect()
    }

    /// [`crate::AuditStore::set_retention`]: delete, then insert, in one
    /// transaction (an upsert every backend spells alike).
    pub(crate) async fn set_retention(
        &self,
        tenant: &str,
        days: Option<u32>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let mut delete = QueryBuilder::<DB>::new("DELETE FROM audit_retention WHERE tenant_id = ");
        delete.push_bind(tenant.to_owned());
        delete
            .build()
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        if let Some(days) = days {
            let mut insert = QueryBuilder::<DB>::new(
                "INSERT INTO audit_retention (tenant_id, days, updated_at) VALUES (",
            );
            insert
                .separated(", ")
                .push_bind(tenant.to_owned())
                .push_bind(i64::from(days))
                .push_bind(auditlog_event::now_ms());
            insert.push(")");
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)
    }

    /// [`crate::AuditStore::legal_holds`].
    pub(crate) async fn legal_holds(&self) -> Result<Vec<LegalHold>, StoreError> {
        let mut select = QueryBuilder::<DB>::new(format!(
            "SELECT {} FROM audit_legal_holds ORDER BY placed_at, tenant_id",
            hold_columns(self.dialect)
        ));
        select
            .build()
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(|row| {
                let target_type = (self.dialect.text)(row, "target_type")?;
                let target_id = (self.dialect.text)(row, "target_id")?;
                Ok(LegalHold {
                    id: (self.dialect.decode_id)(row, "id")?,
                    tenant: self.text(row, "tenant_id")?,
                    target: target_type.zip(target_id),
                    reason: self.text(row, "reason")?,
                    placed_by: self.text(row, "placed_by")?,
                    placed_at: row.try_get("placed_at").map_err(store_error)?,
                })
            })
            .collect()
    }

    /// [`crate::AuditStore::place_hold`].
    pub(crate) async fn place_hold(&self, hold: &LegalHold) -> Result<(), StoreError> {
        let mut insert = QueryBuilder::<DB>::new(
            "INSERT INTO audit_legal_holds \
             (id, tenant_id, target_type, target_id, reason, placed_by, placed_at) VALUES (",
        );
        (self.dialect.bind_id)(&mut insert, hold.id);
        let (target_type, target_id) = hold.target.clone().unzip();
        insert
            .push(", ")
            .separated(", ")
            .push_bind(hold.tenant.clone())
            .push_bind(target_type)
            .push_bind(target_id)
            .push_bind(hold.reason.clone())
            .push_bind(hold.placed_by.clone())
            .push_bind(hold.placed_at);
        insert.push(")");
        insert
            .build()
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// [`crate::AuditStore::release_hold`]: read, then delete.
    pub(crate) async fn release_hold(&self, id: Uuid) -> Result<Option<LegalHold>, StoreError> {
        let Some(hold) = self
            .legal_holds()
            .await?
            .into_iter()
            .find(|hold| hold.id == id)
        else {
            return Ok(None);
        };
        let mut delete = QueryBuilder::<DB>::new("DELETE FROM audit_legal_holds WHERE id = ");
        (self.dialect.bind_id)(&mut delete, id);
        delete
            .build()
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        Ok(Some(hold))
    }

    /// [`crate::AuditStore::prune_batch`]: reads the candidates, judges each
    /// ([`PruneCandidate::verdict`], with the holds as they are now), and in one
    /// transaction records the pruned leaves and deletes their rows.
    pub(crate) async fn prune_batch(
        &self,
        rule: &PruneRule,
        after: Option<PruneCursor>,
        limit: u32,
    ) -> Result<PruneBatch, StoreError> {
        let Some(before) = rule.latest_cutoff() else {
            return Ok(PruneBatch::default());
        };
        let limit = limit.clamp(1, PRUNE_BATCH_MAX);
        let holds = self.legal_holds().await?;
        let delivered = self.delivered_by_every_sink().await?;
        let candidates = candidates_query(self.dialect, before, after, limit)
            .build()
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(|row| self.prune_candidate(row))
            .collect::<Result<Vec<_>, _>>()?;
        let mut batch = PruneBatch {
            next: (candidates.len() == limit as usize)
                .then(|| candidates.last())
                .flatten()
                .map(|last| PruneCursor {
                    timestamp: last.timestamp,
                    id: last.id,
                }),
            ..PruneBatch::default()
        };
        let mut pruned = Vec::new();
        for candidate in &candidates {
            match candidate.verdict(rule, &holds, delivered) {
                Verdict::Prune => pruned.push(candidate),
                Verdict::Held => batch.held += 1,
                Verdict::Mismatched => batch.mismatched += 1,
                Verdict::Undelivered => batch.undelivered += 1,
                Verdict::Keep => {}
            }
        }
        if pruned.is_empty() {
            return Ok(batch);
        }
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        pruned_insert(self.dialect, &pruned, auditlog_event::now_ms())
            .build()
            .persistent(false)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        let seqs: Vec<i64> = pruned.iter().map(|candidate| candidate.seq).collect();
        // Counted as deleted, not as judged: several auditors prune the same
        // store, and rows another one deleted meanwhile are not this batch's.
        let deleted = rows_delete::<DB>(&seqs)
            .build()
            .persistent(false)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        batch.pruned = (self.dialect.rows_affected)(&deleted);
        Ok(batch)
    }

    /// The `seq` every log stream has delivered up to; `None` without sinks.
    pub(crate) async fn delivered_by_every_sink(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query(DELIVERED_BY_EVERY_SINK)
            .fetch_one(self.pool)
            .await
            .map_err(store_error)?
            .try_get("delivered")
            .map_err(store_error)
    }

    /// Reads a row of [`candidates_query`].
    pub(crate) fn prune_candidate(&self, row: &DB::Row) -> Result<PruneCandidate, StoreError> {
        let hash: Vec<u8> = row.try_get("leaf_hash").map_err(store_error)?;
        Ok(PruneCandidate {
            seq: row.try_get("seq").map_err(store_error)?,
            id: (self.dialect.decode_id)(row, "id")?,
            timestamp: row.try_get("timestamp").map_err(store_error)?,
            received_at: row.try_get("received_at").map_err(store_error)?,
            body: row.try_get("body").map_err(store_error)?,
            tenant: (self.dialect.text)(row, "tenant_id")?,
            target_type: self.text(row, "target_type")?,
            target_id: self.text(row, "target_id")?,
            leaf_index: row.try_get("leaf_index").map_err(store_error)?,
            leaf_id: (self.dialect.decode_id)(row, "leaf_id")?,
            leaf_hash: hash_from_bytes(&hash)?,
        })
    }

    /// [`crate::AuditStore::pruned_count`].
    pub(crate) async fn pruned_count(
        &self,
        tenant: Option<&str>,
    ) -> Result<PrunedCount, StoreError> {
        let row = pruned_count_query::<DB>(tenant)
            .build()
            .fetch_one(self.pool)
            .await
            .map_err(store_error)?;
        let events: i64 = row.try_get("events").map_err(store_error)?;
        Ok(PrunedCount {
            events: unsigned(events, "count")?,
            newest: row.try_get("newest").map_err(store_error)?,
        })
    }

    /// [`crate::AuditStore::pruned_leaves`].
    pub(crate) async fn pruned_leaves(&self, start: u64, end: u64) -> Result<Vec<u64>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        pruned_leaves_query::<DB>(start, end)
            .build()
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(|row| {
                unsigned(
                    row.try_get("leaf_index").map_err(store_error)?,
                    "leaf index",
                )
            })
            .collect()
    }

    /// [`crate::AuditStore::sinks`].
    pub(crate) async fn sinks(&self) -> Result<Vec<SinkRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, definition, cursor_seq, updated_at, lease_holder, lease_until \
             FROM audit_sinks ORDER BY name",
        )
        .fetch_all(self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let text = |column: &str| -> Result<String, StoreError> {
                    (self.dialect.text)(row, column)?
                        .ok_or_else(|| StoreError::Backend(format!("a sink's {column} is NULL")))
                };
                Ok(SinkRecord {
                    name: text("name")?,
                    definition: text("definition")?,
                    cursor: row.try_get("cursor_seq").map_err(store_error)?,
                    updated_at: row.try_get("updated_at").map_err(store_error)?,
                    lease_holder: (self.dialect.text)(row, "lease_holder")?,
                    lease_until: row.try_get("lease_until").map_err(store_error)?,
                })
            })
            .collect()
    }

    /// One sink's lease holder and cursor, if the sink exists.
    async fn sink_state(&self, name: &str) -> Result<Option<(Option<String>, i64)>, StoreError> {
        let mut select = QueryBuilder::<DB>::new(
            "SELECT lease_holder, cursor_seq FROM audit_sinks WHERE name = ",
        );
        select.push_bind(name.to_owned());
        let Some(row) = select
            .build()
            .fetch_optional(self.pool)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let holder = (self.dialect.text)(&row, "lease_holder")?;
        let cursor: i64 = row.try_get("cursor_seq").map_err(store_error)?;
        Ok(Some((holder, cursor)))
    }

    /// [`crate::AuditStore::create_sink`]: insert-if-absent after a look-up (the
    /// generic driver API has no row count; two creations of one name racing each
    /// other may both be told `true`, and the first one's definition is kept).
    pub(crate) async fn create_sink(
        &self,
        name: &str,
        definition: &str,
        cursor: i64,
    ) -> Result<bool, StoreError> {
        if self.sink_state(name).await?.is_some() {
            return Ok(false);
        }
        let now = auditlog_event::now_ms();
        let mut insert = QueryBuilder::<DB>::new(
            "INSERT INTO audit_sinks \
             (name, definition, cursor_seq, updated_at, lease_holder, lease_until) VALUES (",
        );
        insert
            .separated(", ")
            .push_bind(name.to_owned())
            .push_bind(definition.to_owned())
            .push_bind(cursor)
            .push_bind(now)
            .push_bind(None::<String>)
            .push_bind(0_i64);
        insert.push(") ").push((self.dialect.keep_existing)("name"));
        insert
            .build()
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        Ok(true)
    }

    /// [`crate::AuditStore::update_sink`].
    pub(crate) async fn update_sink(
        &self,
        name: &str,
        definition: &str,
    ) -> Result<bool, StoreError> {
        let mut update = QueryBuilder::<DB>::new("UPDATE audit_sinks SET definition = ");
        update
            .push_bind(definition.to_owned())
            .push(", updated_at = ")
            .push_bind(auditlog_event::now_ms())
            .push(" WHERE name = ")
            .push_bind(name.to_owned());
        update
            .build()
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        Ok(self.sink_state(name).await?.is_some())
    }

    /// [`crate::AuditStore::delete_sink`].
    pub(crate) async fn delete_sink(&self, name: &str) -> Result<bool, StoreError> {
        if self.sink_state(name).await?.is_none() {
            return Ok(false);
        }
        let mut delete = QueryBuilder::<DB>::new("DELETE FROM audit_sinks WHERE name = ");
        delete.push_bind(name.to_owned());
        delete
            .build()
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        Ok(true)
    }

    /// [`crate::AuditStore::lease_sink`]: one conditional update, then a read of
    /// who holds it (MySQL counts only rows whose values changed, so the update's
    /// row count cannot say).
    pub(crate) async fn lease_sink(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut update = QueryBuilder::<DB>::new("UPDATE audit_sinks SET lease_holder = ");
        update
            .push_bind(holder.to_owned())
            .push(", lease_until = ")
            .push_bind(now_ms.saturating_add(lease_ms))
            .push(" WHERE name = ")
            .push_bind(name.to_owned())
            .push(" AND (lease_holder IS NULL OR lease_holder = ")
            .push_bind(holder.to_owned())
            .push(" OR lease_until < ")
            .push_bind(now_ms)
            .push(")");
        update
            .build()
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        Ok(matches!(self.sink_state(name).await?, Some((Some(h), _)) if h == holder))
    }

    /// [`crate::AuditStore::release_sink`].
    pub(crate) async fn release_sink(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut update =
            QueryBuilder::<DB>::new("UPDATE audit_sinks SET lease_holder = NULL, lease_until = 0");
        update
            .push(" WHERE name = ")
            .push_bind(name.to_owned())
            .push(" AND lease_holder = ")
            .push_bind(holder.to_owned());
        update
            .build()
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// [`crate::AuditStore::advance_sink`].
    pub(crate) async fn advance_sink(
        &self,
        name: &str,
        holder: &str,
        cursor: i64,
    ) -> Result<bool, StoreError> {
        let mut update = QueryBuilder::<DB>::new("UPDATE audit_sinks SET cursor_seq = ");
        update
            .push_bind(cursor)
            .push(" WHERE name = ")
            .push_bind(name.to_owned())
            .push(" AND lease_holder = ")
            .push_bind(holder.to_owned())
            .push(" AND cursor_seq < ")
            .push_bind(cursor);
        update
            .build()
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        Ok(matches!(self.sink_state(name).await?, Some((Some(h), _)) if h == holder))
    }

    /// [`crate::AuditStore::save_checkpoint`].
    pub(crate) async fn save_checkpoint(
        &self,
        checkpoint: &StoredCheckpoint,
    ) -> Result<(), StoreError> {
        save_checkpoint_query(self.dialect, checkpoint)?
            .build()
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// [`crate::AuditStore::latest_checkpoint`].
    pub(crate) async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        sqlx::query(LATEST_CHECKPOINT)
            .fetch_optional(self.pool)
            .await
            .map_err(store_error)?
            .as_ref()
            .map(Self::checkpoint)
            .transpose()
    }

    /// [`crate::AuditStore::checkpoints_after`].
    pub(crate) async fn checkpoints_after(
        &self,
        after_size: u64,
        limit: u32,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        checkpoints_after_query::<DB>(after_size, limit)
            .build()
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(Self::checkpoint)
            .collect()
    }

    /// [`crate::AuditStore::save_migration`].
    pub(crate) async fn save_migration(&self, migration: &Migration) -> Result<(), StoreError> {
        save_migration_query(self.dialect, migration)
            .build()
            .execute(self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// [`crate::AuditStore::migration`].
    pub(crate) async fn migration(&self) -> Result<Option<Migration>, StoreError> {
        let Some(row) = sqlx::query(MIGRATION)
            .fetch_optional(self.pool)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        Ok(Some(Migration {
            migrated_at: row.try_get("migrated_at").map_err(store_error)?,
            chain_size: row.try_get("chain_size").map_err(store_error)?,
            chain_seq: row.try_get("chain_seq").map_err(store_error)?,
            chain_hash: row.try_get("chain_hash").map_err(store_error)?,
            signed_head: row.try_get("signed_head").map_err(store_error)?,
            outcome: row.try_get("outcome").map_err(store_error)?,
        }))
    }

    /// [`crate::AuditStore::legacy_chain_after`].
    pub(crate) async fn legacy_chain_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.chain_entries(chain_after_query(after_seq, limit))
            .await
    }

    /// [`crate::AuditStore::legacy_head`].
    pub(crate) async fn legacy_head(&self) -> Result<Option<SignedHead>, StoreError> {
        sqlx::query(LATEST_HEAD)
            .fetch_optional(self.pool)
            .await
            .map_err(store_error)?
            .as_ref()
            .map(Self::signed_head_row)
            .transpose()
    }

    /// A text column that must not be NULL, through [`Dialect::text`].
    fn text(&self, row: &DB::Row, column: &str) -> Result<String, StoreError> {
        (self.dialect.text)(row, column)?
            .ok_or_else(|| StoreError::Backend(format!("a stored {column} is NULL")))
    }

    /// The object key columns, on a backend that has them (see
    /// [`Dialect::object_keys`]).
    fn object_keys(&self, row: &DB::Row) -> Result<Option<ObjectKeys>, StoreError> {
        if !self.dialect.object_keys {
            return Ok(None);
        }
        Ok(Some(ObjectKeys {
            actor: row.try_get("actor_key").map_err(store_error)?,
            target: row.try_get("target_key").map_err(store_error)?,
        }))
    }

    /// Reads an `audit_events` row selected in the tree statements' event columns.
    fn event_row(&self, row: &DB::Row) -> Result<EventRow, StoreError> {
        Ok(EventRow {
            seq: row.try_get("seq").map_err(store_error)?,
            id: (self.dialect.decode_id)(row, "id")?,
            action: row.try_get("action").map_err(store_error)?,
            timestamp: row.try_get("timestamp").map_err(store_error)?,
            actor_type: self.text(row, "actor_type")?,
            actor_id: self.text(row, "actor_id")?,
            target_type: self.text(row, "target_type")?,
            target_id: self.text(row, "target_id")?,
            received_at: row.try_get("received_at").map_err(store_error)?,
            body: row.try_get("body").map_err(store_error)?,
            producer_id: (self.dialect.text)(row, "producer_id")?,
            producer_seq: row.try_get("producer_seq").map_err(store_error)?,
            tenant_id: (self.dialect.text)(row, "tenant_id")?,
            object_keys: self.object_keys(row)?,
        })
    }

    /// Reads the leaf columns of a tree statement's row.
    fn leaf_entry(&self, row: &DB::Row) -> Result<LeafEntry, StoreError> {
        let hash: Vec<u8> = row.try_get("leaf_hash").map_err(store_error)?;
        Ok(LeafEntry {
            index: unsigned(
                row.try_get("leaf_index").map_err(store_error)?,
                "leaf index",
            )?,
            seq: row.try_get("leaf_seq").map_err(store_error)?,
            id: (self.dialect.decode_id)(row, "leaf_id")?,
            hash: hash_from_bytes(&hash)?,
        })
    }

    /// Reads a leaf joined with its event's row, its bytes rebuilt from the row as
    /// it is now.
    fn leaf(&self, row: &DB::Row) -> Result<Leaf, StoreError> {
        Ok(Leaf {
            entry: self.leaf_entry(row)?,
            bytes: self.event_row(row)?.leaf(),
        })
    }

    /// Reads a row of `audit_checkpoints`.
    fn checkpoint(row: &DB::Row) -> Result<StoredCheckpoint, StoreError> {
        Ok(StoredCheckpoint {
            size: unsigned(row.try_get("size").map_err(store_error)?, "checkpoint size")?,
            note: row.try_get("note").map_err(store_error)?,
            signed_at: row.try_get("signed_at").map_err(store_error)?,
        })
    }

    /// The events `sql` selects in the columns of [`Dialect::columns`].
    async fn events(&self, mut sql: QueryBuilder<DB>) -> Result<Vec<StoredEvent>, StoreError> {
        sql.build()
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(|row| self.stored_event(row))
            .collect()
    }

    /// Reads a row of [`Dialect::columns`].
    fn stored_event(&self, row: &DB::Row) -> Result<StoredEvent, StoreError> {
        Ok(StoredEvent {
            id: (self.dialect.decode_id)(row, "id")?,
            seq: row.try_get("seq").map_err(store_error)?,
            timestamp: row.try_get("timestamp").map_err(store_error)?,
            received_at: row.try_get("received_at").map_err(store_error)?,
            body: row.try_get("body").map_err(store_error)?,
        })
    }

    /// The chain entries `sql` selects (all of `audit_chain`'s columns).
    async fn chain_entries(
        &self,
        mut sql: QueryBuilder<DB>,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        sql.build()
            .fetch_all(self.pool)
            .await
            .map_err(store_error)?
            .iter()
            .map(|row| {
                let id: Vec<u8> = row.try_get("id").map_err(store_error)?;
                let leaf: Vec<u8> = row.try_get("leaf_hash").map_err(store_error)?;
                let chain: Vec<u8> = row.try_get("chain_hash").map_err(store_error)?;
                Ok(ChainEntry {
                    seq: row.try_get("seq").map_err(store_error)?,
                    position: row.try_get("position").map_err(store_error)?,
                    id: uuid_from_bytes(&id)?,
                    leaf_hash: hash_from_bytes(&leaf)?,
                    chain_hash: hash_from_bytes(&chain)?,
                })
            })
            .collect()
    }

    /// Reads a row of [`LATEST_HEAD`].
    fn signed_head_row(row: &DB::Row) -> Result<SignedHead, StoreError> {
        let chain: Vec<u8> = row.try_get("chain_hash").map_err(store_error)?;
        Ok(SignedHead {
            head: ChainHead {
                seq: row.try_get("seq").map_err(store_error)?,
                size: row.try_get("size").map_err(store_error)?,
                chain_hash: hash_from_bytes(&chain)?,
            },
            signed_at: row.try_get("signed_at").map_err(store_error)?,
            key_id: row.try_get("key_id").map_err(store_error)?,
            public_key: row.try_get("public_key").map_err(store_error)?,
            signature: row.try_get("signature").map_err(store_error)?,
        })
    }
}
