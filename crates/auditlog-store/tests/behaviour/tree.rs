//! The Merkle tree: sealing (partial, repeated, concurrent), roots and proofs
//! checked against an independent computation, reading leaves and rows back,
//! checkpoints, the migration record and the earlier releases' chain.

use auditlog_store::{
    ChainEntry, Engine, EventRow, Hash, LeafEntry, Migration, ObjectKeys, Read, SignedHead,
    StoredCheckpoint, object_key,
};
use auditlog_tlog::{EMPTY_ROOT, Plan, leaf_hash, verify_consistency, verify_inclusion};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection};

use super::*;

/// RFC 9162 §2.1.1's `MTH`, straight from the definition and written apart from
/// `auditlog-tlog`'s tiles, so that the store's roots are checked against
/// something that shares no code with them but the leaf hash.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest(b"").into(),
        1 => leaves[0],
        n => {
            let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            let mut hasher = Sha256::new();
            hasher.update([0x01]);
            hasher.update(mth(&leaves[..k]));
            hasher.update(mth(&leaves[k..]));
            hasher.finalize().into()
        }
    }
}

/// Every row of `audit_events`, in `seq` order.
async fn all_rows(store: &dyn AuditStore) -> Vec<EventRow> {
    let mut all: Vec<EventRow> = Vec::new();
    loop {
        let after = all.last().map_or(i64::MIN, |row| row.seq);
        let page = store.rows_after(after, 1000).await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// The leaf hash of each row, from its columns as they are now.
fn leaf_hashes(rows: &[EventRow]) -> Vec<Hash> {
    rows.iter()
        .map(|row| leaf_hash(row.leaf().as_bytes()))
        .collect()
}

/// Asserts that the tree holds exactly `rows` as its leaves, in their order: leaf
/// `i` is row `i`, with the hash of its leaf bytes, and nothing else is sealed.
async fn assert_tree_is(store: &dyn AuditStore, rows: &[EventRow]) {
    let entries = store.leaf_entries(0, 100_000).await.unwrap();
    let expected: Vec<LeafEntry> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| LeafEntry {
            index: i as u64,
            seq: row.seq,
            id: row.id,
            hash: leaf_hash(row.leaf().as_bytes()),
        })
        .collect();
    assert_eq!(entries, expected);
    assert_eq!(store.tree_size().await.unwrap(), rows.len() as u64);
}

/// The root of the tree of `size` leaves as a client computes it from the hashes
/// the store serves.
async fn served_root(store: &dyn AuditStore, size: u64) -> Hash {
    let plan = Plan::root(size);
    let read = store.tree_hashes(&plan.reads()).await.unwrap();
    plan.hashes(&read).unwrap()[0]
}

/// `count` `viewed` events by actor `actor`, with timestamps running backwards so
/// that `seq` order and time order differ.
fn events(actor: i64, count: i64) -> Vec<DataEvent> {
    (0..count)
        .map(|n| event(Action::Viewed, actor, "users", n.into(), 10_000 - n))
        .collect()
}

pub(crate) async fn sealing_is_idempotent_and_continues_where_it_stopped(fresh: Fresh) {
    let empty = fresh.store.seal(100).await.unwrap();
    assert_eq!((empty.sealed, empty.size, empty.root), (0, 0, EMPTY_ROOT));
    assert_eq!(empty.root, mth(&[]));
    assert_eq!(fresh.store.tree_size().await.unwrap(), 0);
    for round in 0..3 {
        fresh.store.insert_batch(&events(round, 5)).await.unwrap();
    }

    // A partial seal, then the rest, then nothing left.
    let first = fresh.store.seal(4).await.unwrap();
    let rest = fresh.store.seal(1000).await.unwrap();
    let again = fresh.store.seal(1000).await.unwrap();

    assert_eq!((first.sealed, rest.sealed, again.sealed), (4, 11, 0));
    assert_eq!((first.size, rest.size, again.size), (4, 15, 15));
    let rows = all_rows(&*fresh.store).await;
    let hashes = leaf_hashes(&rows);
    assert_eq!(first.root, mth(&hashes[..4]));
    assert_eq!(rest.root, mth(&hashes));
    assert_eq!(again.root, rest.root);
    assert_tree_is(&*fresh.store, &rows).await;

    // Events stored later become the next leaves, in seq order.
    fresh.store.insert_batch(&events(9, 2)).await.unwrap();
    let late = fresh.store.seal(1000).await.unwrap();
    let rows = all_rows(&*fresh.store).await;
    assert_eq!((late.sealed, late.size), (2, 17));
    assert_eq!(late.root, mth(&leaf_hashes(&rows)));
    assert_tree_is(&*fresh.store, &rows).await;
}

pub(crate) async fn roots_and_proofs_match_an_independent_computation_across_tiles(fresh: Fresh) {
    // Stored in uneven batches, sealed in uneven steps: the tree's sizes cross the
    // first tile boundary (256) one leaf at a time.
    for (n, size) in [100, 155, 1, 1, 343].into_iter().enumerate() {
        fresh
            .store
            .insert_batch(&events(n as i64, size))
            .await
            .unwrap();
    }
    let rows = all_rows(&*fresh.store).await;
    assert_eq!(rows.len(), 600);
    let hashes = leaf_hashes(&rows);

    let mut roots = vec![EMPTY_ROOT];
    for (step, size) in [
        (1, 1),
        (254, 255),
        (1, 256),
        (1, 257),
        (100, 357),
        (1000, 600),
    ] {
        let outcome = fresh.store.seal(step).await.unwrap();
        assert_eq!(outcome.size, size);
        assert_eq!(outcome.root, mth(&hashes[..size as usize]), "size {size}");
        assert_eq!(served_root(&*fresh.store, size).await, outcome.root);
        roots.push(outcome.root);
    }
    assert_tree_is(&*fresh.store, &rows).await;

    // The stored hashes: every leaf hash, and the two complete tiles' nodes at
    // level 8; each list stops at the first index not stored.
    let reads = [
        Read {
            level: 0,
            start: 0,
            end: 600,
        },
        Read {
            level: 0,
            start: 598,
            end: 700,
        },
        Read {
            level: 8,
            start: 0,
            end: 3,
        },
        Read {
            level: 16,
            start: 0,
            end: 1,
        },
    ];
    let read = fresh.store.tree_hashes(&reads).await.unwrap();
    let (got_reads, got): (Vec<Read>, Vec<Vec<Hash>>) = read.into_iter().unzip();
    assert_eq!(got_reads, reads);
    assert_eq!(got[0], hashes);
    assert_eq!(got[1], hashes[598..]);
    assert_eq!(got[2], [mth(&hashes[..256]), mth(&hashes[256..512])]);
    assert!(got[3].is_empty());

    // Inclusion proofs from the store's hashes verify against the roots, and so
    // does a consistency proof between two of them.
    let root_600 = mth(&hashes);
    for size in [257_u64, 600] {
        let root = mth(&hashes[..size as usize]);
        for index in [0_u64, 1, 255, 256, size - 1] {
            let plan = Plan::inclusion(index, size).unwrap();
            let proof = plan
                .hashes(&fresh.store.tree_hashes(&plan.reads()).await.unwrap())
                .unwrap();
            let leaf = &hashes[index as usize];
            assert!(
                verify_inclusion(index, size, leaf, &proof, &root),
                "leaf {index} in {size}"
            );
        }
    }
    let plan = Plan::consistency(257, 600).unwrap();
    let proof = plan
        .hashes(&fresh.store.tree_hashes(&plan.reads()).await.unwrap())
        .unwrap();
    assert!(verify_consistency(
        257,
        600,
        &mth(&hashes[..257]),
        &root_600,
        &proof
    ));
}

pub(crate) async fn leaves_and_rows_read_back_as_stored(fresh: Fresh) {
    let mut batch = vec![
        event(Action::Changed, 1, "users", ObjectId::Text("a b".into()), 5),
        numbered("api", 7),
        event(Action::Viewed, 2, "notes", 3.into(), 4),
    ];
    batch[0].event_name = Some("user.renamed".into());
    batch.push(numbered("api", 8));
    batch.push(event(Action::Viewed, 3, "notes", 4.into(), 2));
    let before = auditlog_event::now_ms();
    fresh.store.insert_batch(&batch).await.unwrap();
    let after = auditlog_event::now_ms();

    // Every column of every row, in seq (batch) order.
    let rows = all_rows(&*fresh.store).await;
    assert_eq!(rows.len(), batch.len());
    for (row, event) in rows.iter().zip(&batch) {
        let expected = EventRow {
            seq: row.seq,
            id: event.id,
            action: event.action.as_str().to_owned(),
            timestamp: event.timestamp,
            actor_type: event.actor_type.as_str().to_owned(),
            actor_id: event.actor_id.key(),
            target_type: event.target_type.as_str().to_owned(),
            target_id: event.target_id.key(),
            received_at: row.received_at,
            body: event.to_json(),
            producer_id: event.producer_id.clone(),
            producer_seq: event.producer_seq.map(|seq| seq as i64),
            tenant_id: auditlog_store::tenant_column(event).map(str::to_owned),
            // Only the SQLite store keeps (and so reads back) the object keys.
            object_keys: row.object_keys.map(|_| ObjectKeys {
                actor: Some(object_key(event.actor_type.as_str(), &event.actor_id.key())),
                target: Some(object_key(
                    event.target_type.as_str(),
                    &event.target_id.key(),
                )),
            }),
        };
        assert_eq!(*row, expected);
        assert!((before..=after).contains(&row.received_at));
    }
    assert!(rows.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert_eq!(
        fresh.store.rows_after(rows[1].seq, 2).await.unwrap(),
        rows[2..4]
    );
    assert!(
        fresh
            .store
            .rows_after(rows[4].seq, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Three of five sealed: leaves exist for those only.
    fresh.store.seal(3).await.unwrap();
    let entries = fresh.store.leaf_entries(0, 100).await.unwrap();
    assert_eq!(entries.len(), 3);
    for (i, entry) in entries.iter().enumerate() {
        let leaf = fresh.store.leaf_of(rows[i].id).await.unwrap().unwrap();
        assert_eq!(leaf.entry, *entry);
        assert_eq!(leaf.bytes, rows[i].leaf());
        assert_eq!(leaf_hash(leaf.bytes.as_bytes()), entry.hash);
    }
    assert_eq!(fresh.store.leaf_of(rows[3].id).await.unwrap(), None);
    assert_eq!(
        fresh.store.leaf_of(uuid::Uuid::now_v7()).await.unwrap(),
        None
    );
    let leaves = fresh.store.leaves(1, 3).await.unwrap();
    let indexes: Vec<u64> = leaves.iter().map(|leaf| leaf.entry.index).collect();
    assert_eq!(indexes, [1, 2]);
    assert_eq!(leaves[1].bytes, rows[2].leaf());
    assert_eq!(fresh.store.leaves(2, 100).await.unwrap().len(), 1);
    assert!(fresh.store.leaves(3, 3).await.unwrap().is_empty());
    assert_eq!(fresh.store.leaf_entries(1, 1).await.unwrap(), entries[1..2]);
    assert!(fresh.store.leaf_entries(3, 100).await.unwrap().is_empty());
}

pub(crate) async fn concurrent_sealers_produce_one_tree(fresh: Fresh) {
    // Two "auditors" on one database, each writing and sealing with two tasks at
    // the same time.
    let other = auditlog_store::open(fresh.url()).await.unwrap();
    let stores = [fresh.store.clone(), other];
    let mut tasks = Vec::new();
    for (w, store) in stores.iter().enumerate() {
        let writer = store.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..10 {
                let batch: Vec<DataEvent> = (0..20)
                    .map(|n| event(Action::Viewed, w as i64, "users", n.into(), round * 100 + n))
                    .collect();
                writer.insert_batch(&batch).await.unwrap();
            }
        }));
        for _ in 0..2 {
            let sealer = store.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..30 {
                    sealer.seal(7).await.unwrap();
                    tokio::task::yield_now().await;
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let last = stores[1].seal(1000).await.unwrap();

    let rows = all_rows(&*fresh.store).await;
    assert_eq!(rows.len(), 400);
    assert_eq!(last.size, 400);
    assert_eq!(last.root, mth(&leaf_hashes(&rows)));
    assert_tree_is(&*fresh.store, &rows).await;
}

/// Runs `statements` on the store's database directly, as its administrator
/// could.
pub(crate) async fn behind_the_back(url: &str, statements: &[String]) {
    match Engine::of_url(url).unwrap() {
        Engine::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            for statement in statements {
                let sql = AssertSqlSafe(statement.clone());
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
            conn.close().await.unwrap();
        }
        Engine::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            for statement in statements {
                let sql = AssertSqlSafe(statement.clone());
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
            conn.close().await.unwrap();
        }
        Engine::MySql => {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
            for statement in statements {
                let sql = AssertSqlSafe(statement.clone());
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
            conn.close().await.unwrap();
        }
    }
}

/// A literal of `bytes` for a binary column of the database behind `url`.
fn bytes_literal(url: &str, bytes: &[u8]) -> String {
    let hex = auditlog_store::to_hex(bytes);
    match Engine::of_url(url).unwrap() {
        Engine::Postgres => format!("'\\x{hex}'::bytea"),
        Engine::Sqlite | Engine::MySql => format!("X'{hex}'"),
    }
}

/// A literal of `id` for the `audit_events.id` column behind `url`.
fn id_literal(url: &str, id: uuid::Uuid) -> String {
    match Engine::of_url(url).unwrap() {
        Engine::Postgres => format!("'{id}'::uuid"),
        Engine::Sqlite | Engine::MySql => bytes_literal(url, id.as_bytes()),
    }
}

pub(crate) async fn a_row_inserted_below_the_last_sealed_seq_is_never_sealed(fresh: Fresh) {
    fresh.store.insert_batch(&events(1, 5)).await.unwrap();
    let rows = all_rows(&*fresh.store).await;
    // A gap in `seq`, as a rolled-back insert leaves on PostgreSQL and MySQL.
    let gap = rows[2].seq;
    behind_the_back(
        fresh.url(),
        &[format!("DELETE FROM audit_events WHERE seq = {gap}")],
    )
    .await;
    let sealed = fresh.store.seal(1000).await.unwrap();
    assert_eq!((sealed.sealed, sealed.size), (4, 4));

    // An administrator fills the gap with a row of their own.
    let columns = "action, timestamp, actor_type, actor_id, target_type, target_id, \
                   received_at, body";
    let forged = uuid::Uuid::now_v7();
    behind_the_back(
        fresh.url(),
        &[format!(
            "INSERT INTO audit_events (seq, id, {columns}) SELECT {gap}, {}, {columns} \
             FROM audit_events WHERE seq = {}",
            id_literal(fresh.url(), forged),
            rows[4].seq
        )],
    )
    .await;
    let again = fresh.store.seal(1000).await.unwrap();

    assert_eq!((again.sealed, again.size, again.root), (0, 4, sealed.root));
    let now = all_rows(&*fresh.store).await;
    assert_eq!(now.len(), 5);
    assert_eq!((now[2].seq, now[2].id), (gap, forged));
    assert_eq!(fresh.store.leaf_of(forged).await.unwrap(), None);
    let seqs: Vec<i64> = fresh
        .store
        .leaf_entries(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|entry| entry.seq)
        .collect();
    assert_eq!(seqs, [rows[0].seq, rows[1].seq, rows[3].seq, rows[4].seq]);
    // Rows stored afterwards are still sealed after the last leaf.
    fresh.store.insert_batch(&events(2, 1)).await.unwrap();
    assert_eq!(fresh.store.seal(1000).await.unwrap().size, 5);
}

pub(crate) async fn checkpoints_keep_the_first_of_each_size_and_list_by_size(fresh: Fresh) {
    assert_eq!(fresh.store.latest_checkpoint().await.unwrap(), None);
    let checkpoint = |size: u64, text: &str| StoredCheckpoint {
        size,
        note: format!(
            "auditlog.example/log\n{size}\n{text}=\n\n— auditlog.example/log AAAA{text}\n"
        ),
        signed_at: 1_000 + size as i64,
    };

    fresh
        .store
        .save_checkpoint(&checkpoint(3, "first"))
        .await
        .unwrap();
    fresh
        .store
        .save_checkpoint(&checkpoint(3, "second"))
        .await
        .unwrap();
    fresh
        .store
        .save_checkpoint(&checkpoint(7, "x"))
        .await
        .unwrap();
    // A slower signer saving a smaller tree afterwards does not become the latest.
    fresh
        .store
        .save_checkpoint(&checkpoint(5, "y"))
        .await
        .unwrap();

    assert_eq!(
        fresh.store.latest_checkpoint().await.unwrap(),
        Some(checkpoint(7, "x"))
    );
    assert_eq!(
        fresh.store.checkpoints_after(0, 10).await.unwrap(),
        [
            checkpoint(3, "first"),
            checkpoint(5, "y"),
            checkpoint(7, "x")
        ]
    );
    assert_eq!(
        fresh.store.checkpoints_after(3, 1).await.unwrap(),
        [checkpoint(5, "y")]
    );
    assert!(
        fresh
            .store
            .checkpoints_after(7, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn the_migration_record_is_kept_once(fresh: Fresh) {
    assert_eq!(fresh.store.migration().await.unwrap(), None);
    let record = |outcome: &str, signed_head: Option<&str>| Migration {
        migrated_at: 1_700_000_000_000,
        chain_size: 12,
        chain_seq: 14,
        chain_hash: "ab".repeat(32),
        signed_head: signed_head.map(str::to_owned),
        outcome: outcome.to_owned(),
    };

    fresh
        .store
        .save_migration(&record("ok", Some("auditlog-head:v1:14:12:…\nsignature")))
        .await
        .unwrap();
    fresh
        .store
        .save_migration(&record("later", None))
        .await
        .unwrap();

    assert_eq!(
        fresh.store.migration().await.unwrap(),
        Some(record("ok", Some("auditlog-head:v1:14:12:…\nsignature")))
    );
}

pub(crate) async fn the_earlier_chain_is_read_as_stored(fresh: Fresh) {
    assert!(
        fresh
            .store
            .legacy_chain_after(0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(fresh.store.legacy_head().await.unwrap(), None);
    let entry = |seq: i64| ChainEntry {
        seq,
        position: seq - 1,
        id: uuid::Uuid::from_bytes([seq as u8; 16]),
        leaf_hash: [seq as u8; 32],
        chain_hash: [seq as u8 + 100; 32],
    };
    let head = |seq: i64| SignedHead {
        head: auditlog_store::legacy::ChainHead {
            seq,
            size: seq - 1,
            chain_hash: [seq as u8 + 100; 32],
        },
        signed_at: 1_000 + seq,
        key_id: "0123456789abcdef".into(),
        public_key: "ab".repeat(32),
        signature: vec![seq as u8; 64],
    };
    let url = fresh.url();
    let mut statements: Vec<String> = [2, 3, 5]
        .map(entry)
        .iter()
        .map(|e| {
            format!(
                "INSERT INTO audit_chain (seq, position, id, leaf_hash, chain_hash) \
                 VALUES ({}, {}, {}, {}, {})",
                e.seq,
                e.position,
                bytes_literal(url, e.id.as_bytes()),
                bytes_literal(url, &e.leaf_hash),
                bytes_literal(url, &e.chain_hash)
            )
        })
        .collect();
    statements.extend([5, 3].map(head).iter().map(|h| {
        format!(
            "INSERT INTO audit_heads (seq, size, chain_hash, signed_at, key_id, public_key, \
             signature) VALUES ({}, {}, {}, {}, '{}', '{}', {})",
            h.head.seq,
            h.head.size,
            bytes_literal(url, &h.head.chain_hash),
            h.signed_at,
            h.key_id,
            h.public_key,
            bytes_literal(url, &h.signature)
        )
    }));
    behind_the_back(url, &statements).await;

    assert_eq!(
        fresh.store.legacy_chain_after(0, 10).await.unwrap(),
        [2, 3, 5].map(entry)
    );
    assert_eq!(
        fresh.store.legacy_chain_after(2, 1).await.unwrap(),
        [entry(3)]
    );
    assert_eq!(fresh.store.legacy_head().await.unwrap(), Some(head(5)));
}
