//! [`GenericStore`]: the [`crate::AuditStore`] methods that are the same SQL on every
//! backend, written once for any sqlx [`Database`]. A backend hands over one of its
//! pools and its [`Dialect`], and keeps only what is its own (schema and migration,
//! its bulk insert, the lock around `seal`, statements no other backend runs).
//!
//! The bounds of the one `impl` block are what the statements need of a database:
//! executing on a connection, and binding and decoding `&str`, `String`, `i64` and
//! bytes. Each backend's delegation is monomorphised for its database, so a query
//! runs the same statements and decodes the same columns as when every backend
//! spelled it out; what differs is carried by the [`Dialect`]'s function pointers
//! (one call per row for the id, one for a producer id).

use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder, Row,
    Transaction, Type,
};
use uuid::Uuid;

use super::chain::{
    CHAIN_HEAD, CHAIN_PAGE, LATEST_HEAD, chain_after_query, chain_inserts, chain_link,
    chain_link_query, events_after_query, prune_heads_query, save_head_query,
};
use super::queries::{
    LAST_SEQ, ProducerRow, activity_count, into_page, producers_query, progress, total,
};
use super::{Dialect, STORED_IDS_CHUNK, store_error, uuid_from_bytes};
use crate::chain::{extend, hash_from_bytes};
use crate::{
    ActivityCount, ChainEntry, ChainHead, ChainLink, EventPage, EventQuery, ProducerProgress,
    SealOutcome, SignedHead, StoreError, StoredEvent,
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
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'n> &'n str: ColumnIndex<DB::Row>,
    &'static str: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Vec<u8>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
{
    /// [`crate::AuditStore::query`].
    pub(crate) async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let (sql, page_size) = self.dialect.page_query(query);
        let events = self.events(sql, self.pool).await?;
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

    /// [`crate::AuditStore::stored_after`].
    pub(crate) async fn stored_after(
        &self,
        query: &EventQuery,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = self.dialect.after_seq_query(query, after_seq, limit);
        self.events(sql, self.pool).await
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
                        producer_id: (self.dialect.producer_id)(row)?,
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
                found.push((self.dialect.decode_id)(&row)?);
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
    /// sealers' lock in `tx`: reads the head, chains the events after it
    /// [`CHAIN_PAGE`] at a time up to `max`, and commits. Everything it reads above
    /// the head is final because each backend's writers commit in `seq` order.
    pub(crate) async fn seal(
        &self,
        mut tx: Transaction<'_, DB>,
        max: u32,
    ) -> Result<SealOutcome, StoreError> {
        let row = sqlx::query(CHAIN_HEAD)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        let mut head = Self::chain_head_row(row.as_ref())?;
        let mut sealed = 0_u64;
        while sealed < u64::from(max) {
            let want = CHAIN_PAGE.min(max - sealed as u32);
            let sql = events_after_query(self.dialect, head.seq, want);
            let rows = self.events(sql, &mut *tx).await?;
            let (entries, next) = extend(head, &rows);
            for mut insert in chain_inserts::<DB>(&entries) {
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(store_error)?;
            }
            head = next;
            sealed += entries.len() as u64;
            if (rows.len() as u32) < want {
                break;
            }
        }
        tx.commit().await.map_err(store_error)?;
        Ok(SealOutcome { sealed, head })
    }

    /// [`crate::AuditStore::chain_head`].
    pub(crate) async fn chain_head(&self) -> Result<ChainHead, StoreError> {
        let row = sqlx::query(CHAIN_HEAD)
            .fetch_optional(self.pool)
            .await
            .map_err(store_error)?;
        Self::chain_head_row(row.as_ref())
    }

    /// [`crate::AuditStore::chain_after`].
    pub(crate) async fn chain_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        self.chain_entries(chain_after_query(after_seq, limit))
            .await
    }

    /// [`crate::AuditStore::chain_link`].
    pub(crate) async fn chain_link(&self, seq: i64) -> Result<Option<ChainLink>, StoreError> {
        let rows = self.chain_entries(chain_link_query(seq)).await?;
        Ok(chain_link(seq, rows))
    }

    /// [`crate::AuditStore::save_head`], in one transaction on this pool.
    pub(crate) async fn save_head(&self, head: &SignedHead) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        save_head_query::<DB>(head, self.dialect.keep_stored_head)
            .build()
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        prune_heads_query::<DB>(head.head.seq)
            .build()
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    /// [`crate::AuditStore::latest_head`].
    pub(crate) async fn latest_head(&self) -> Result<Option<SignedHead>, StoreError> {
        sqlx::query(LATEST_HEAD)
            .fetch_optional(self.pool)
            .await
            .map_err(store_error)?
            .as_ref()
            .map(Self::signed_head_row)
            .transpose()
    }

    /// The events `sql` selects in the columns of [`Dialect::columns`], run on
    /// `on` (the pool, or the sealer's transaction).
    async fn events<'c>(
        &self,
        mut sql: QueryBuilder<DB>,
        on: impl Executor<'c, Database = DB>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        sql.build()
            .fetch_all(on)
            .await
            .map_err(store_error)?
            .iter()
            .map(|row| self.stored_event(row))
            .collect()
    }

    /// Reads a row of [`Dialect::columns`].
    fn stored_event(&self, row: &DB::Row) -> Result<StoredEvent, StoreError> {
        Ok(StoredEvent {
            id: (self.dialect.decode_id)(row)?,
            seq: row.try_get("seq").map_err(store_error)?,
            timestamp: row.try_get("timestamp").map_err(store_error)?,
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

    /// Reads the row of [`CHAIN_HEAD`], if any.
    fn chain_head_row(row: Option<&DB::Row>) -> Result<ChainHead, StoreError> {
        let Some(row) = row else {
            return Ok(ChainHead::default());
        };
        let chain: Vec<u8> = row.try_get("chain_hash").map_err(store_error)?;
        Ok(ChainHead {
            seq: row.try_get("seq").map_err(store_error)?,
            size: row.try_get("position").map_err(store_error)?,
            chain_hash: hash_from_bytes(&chain)?,
        })
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
