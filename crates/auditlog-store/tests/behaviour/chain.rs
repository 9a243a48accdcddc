//! The integrity chain: sealing, concurrent sealers and signed heads.

use super::*;

/// Every event stored, in `seq` order.
pub(crate) async fn all_by_seq(store: &dyn AuditStore) -> Vec<auditlog_store::StoredEvent> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .stored_after(&EventQuery::default(), after, 1000)
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return all;
        };
        after = last.seq;
        all.extend(page);
    }
}

/// Asserts that the chain covers exactly `events`, in their order, each entry
/// hashing its row and following the one before.
pub(crate) async fn assert_chain_covers(
    store: &dyn AuditStore,
    events: &[auditlog_store::StoredEvent],
) {
    let chain = store.chain_after(0, 100_000).await.unwrap();
    assert_eq!(chain.len(), events.len());
    let mut prev = auditlog_store::ZERO_HASH;
    for (n, (entry, event)) in chain.iter().zip(events).enumerate() {
        assert_eq!((entry.seq, entry.id), (event.seq, event.id));
        assert_eq!(entry.position, n as i64 + 1);
        let leaf = auditlog_store::leaf_hash(event.id, event.seq, event.timestamp, &event.body);
        assert_eq!(entry.leaf_hash, leaf);
        assert_eq!(entry.chain_hash, auditlog_store::chain_hash(&prev, &leaf));
        prev = entry.chain_hash;
    }
}

pub(crate) async fn sealing_is_idempotent_and_follows_seq(fresh: Fresh) {
    let empty = fresh.store.seal(100).await.unwrap();
    assert_eq!(
        (empty.sealed, empty.head),
        (0, auditlog_store::ChainHead::default())
    );
    for round in 0..3 {
        let batch: Vec<DataEvent> = (0..5)
            .map(|n| event(Action::Viewed, 1, "users", n.into(), 100 - round * 10 - n))
            .collect();
        fresh.store.insert_batch(&batch).await.unwrap();
    }

    // A partial seal, then the rest: the chain continues where it stopped.
    let first = fresh.store.seal(4).await.unwrap();
    let rest = fresh.store.seal(1000).await.unwrap();
    let again = fresh.store.seal(1000).await.unwrap();

    assert_eq!((first.sealed, rest.sealed, again.sealed), (4, 11, 0));
    let events = all_by_seq(&*fresh.store).await;
    assert_eq!(rest.head.seq, events[14].seq);
    assert_eq!(rest.head.size, 15);
    assert_eq!(again.head, rest.head);
    assert_eq!(fresh.store.chain_head().await.unwrap(), rest.head);
    assert_chain_covers(&*fresh.store, &events).await;
    // The link of one event: its entry and the chain hash before it.
    let chain = fresh.store.chain_after(0, 100).await.unwrap();
    let link = fresh
        .store
        .chain_link(events[6].seq)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link.entry, chain[6]);
    assert_eq!(link.prev_chain_hash, chain[5].chain_hash);
    let first_link = fresh
        .store
        .chain_link(events[0].seq)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first_link.prev_chain_hash, auditlog_store::ZERO_HASH);
    assert_eq!(
        fresh.store.chain_link(events[14].seq + 1).await.unwrap(),
        None
    );
    // Events stored later are sealed after the head, in seq order.
    let late = vec![event(Action::Viewed, 2, "users", 1.into(), 1)];
    fresh.store.insert_batch(&late).await.unwrap();
    assert_eq!(fresh.store.seal(1000).await.unwrap().sealed, 1);
    assert_chain_covers(&*fresh.store, &all_by_seq(&*fresh.store).await).await;
}

pub(crate) async fn concurrent_sealers_produce_one_chain(fresh: Fresh) {
    // Two "auditors" on one store, each writing and sealing at the same time.
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
    while stores[1].seal(1000).await.unwrap().sealed > 0 {}

    let events = all_by_seq(&*fresh.store).await;
    assert_eq!(events.len(), 400);
    assert_chain_covers(&*fresh.store, &events).await;
}

pub(crate) async fn a_signed_head_is_kept_and_only_the_newest_is_answered(fresh: Fresh) {
    assert_eq!(fresh.store.latest_head().await.unwrap(), None);
    let signed = |seq: i64| auditlog_store::SignedHead {
        head: auditlog_store::ChainHead {
            seq,
            size: seq,
            chain_hash: [seq as u8; 32],
        },
        signed_at: 1_000 + seq,
        key_id: "0123456789abcdef".into(),
        public_key: "ab".repeat(32),
        signature: vec![seq as u8; 64],
    };

    fresh.store.save_head(&signed(3)).await.unwrap();
    fresh.store.save_head(&signed(3)).await.unwrap();
    fresh.store.save_head(&signed(7)).await.unwrap();
    // A slower sealer saving an older head afterwards does not win.
    fresh.store.save_head(&signed(5)).await.unwrap();

    assert_eq!(fresh.store.latest_head().await.unwrap(), Some(signed(7)));
}
