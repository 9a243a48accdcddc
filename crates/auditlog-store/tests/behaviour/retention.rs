//! Retention: pruning deletes the rows of sealed, expired events and keeps their
//! leaves (the tree, its root and the other events' rows are untouched), in
//! batches; a legal hold, a row that no longer matches its leaf, an unsealed
//! row and a row a log stream has not delivered stay; policies and holds are
//! kept as set.

use auditlog_store::{LegalHold, PruneBatch, PruneCursor, PruneRule};

use super::*;

/// Prunes under `rule` in batches of `limit` until done, summing the batches.
async fn prune_all(store: &dyn AuditStore, rule: &PruneRule, limit: u32) -> PruneBatch {
    let mut total = PruneBatch::default();
    let mut after: Option<PruneCursor> = None;
    loop {
        let batch = store.prune_batch(rule, after, limit).await.unwrap();
        total.pruned += batch.pruned;
        total.held += batch.held;
        total.mismatched += batch.mismatched;
        total.undelivered += batch.undelivered;
        after = batch.next;
        if after.is_none() {
            return total;
        }
    }
}

fn in_tenant(mut event: DataEvent, tenant: &str) -> DataEvent {
    event.set_tenant(tenant);
    event
}

fn hold(tenant: &str, target: Option<(&str, &str)>) -> LegalHold {
    LegalHold {
        id: uuid::Uuid::now_v7(),
        tenant: tenant.into(),
        target: target.map(|(t, id)| (t.into(), id.into())),
        reason: "case 2026-7".into(),
        placed_by: "users/1".into(),
        placed_at: 5,
    }
}

/// Every auditor on a shared store runs the pruner: two pruning at once each
/// count only the rows they deleted, so the records of their prunes add up.
pub(crate) async fn concurrent_prunes_count_each_row_once(fresh: Fresh) {
    let expired: Vec<DataEvent> = (0..600)
        .map(|i| event(Action::Viewed, 1, "users", i.into(), 1_000 + i))
        .collect();
    fresh.store.insert_batch(&expired).await.unwrap();
    assert_eq!(fresh.store.seal(1000).await.unwrap().size, 600);
    let other = auditlog_store::open(fresh.url()).await.unwrap();
    let rule = PruneRule::everything_before(5_000);

    let (one, two) = tokio::join!(
        prune_all(&*fresh.store, &rule, 100),
        prune_all(&*other, &rule, 100)
    );

    assert_eq!(one.pruned + two.pruned, 600, "{one:?} {two:?}");
    assert_eq!(fresh.store.pruned_count(None).await.unwrap().events, 600);
}

pub(crate) async fn pruning_waits_for_every_sink_to_deliver(fresh: Fresh) {
    let store = &*fresh.store;
    let expired: Vec<DataEvent> = (0..6)
        .map(|i| event(Action::Viewed, 1, "users", i.into(), 1_000 + i))
        .collect();
    store.insert_batch(&expired).await.unwrap();
    assert_eq!(store.seal(1000).await.unwrap().size, 6);
    let seq = |i: usize| {
        let id = expired[i].id;
        async move { store.get(id).await.unwrap().unwrap().seq }
    };
    // One sink from the log's beginning (paused or down, it has delivered
    // nothing), one that has delivered the first three events.
    assert!(store.create_sink("siem", "{}", 0).await.unwrap());
    assert!(
        store
            .create_sink("archive", "{}", seq(2).await)
            .await
            .unwrap()
    );
    let rule = PruneRule::everything_before(5_000);

    let outcome = prune_all(store, &rule, 4).await;
    assert_eq!((outcome.pruned, outcome.undelivered), (0, 6));

    // The first sink catches up with the whole log: the second one is behind now.
    assert!(
        store
            .lease_sink("siem", "auditor-a", 1, 60_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .advance_sink("siem", "auditor-a", seq(5).await)
            .await
            .unwrap()
    );
    let outcome = prune_all(store, &rule, 4).await;
    assert_eq!((outcome.pruned, outcome.undelivered), (3, 3));
    for (i, event) in expired.iter().enumerate() {
        let stored = store.get(event.id).await.unwrap();
        assert_eq!(stored.is_some(), i > 2, "event {i}");
    }

    // A sink deleted holds nothing back.
    assert!(store.delete_sink("archive").await.unwrap());
    let outcome = prune_all(store, &rule, 4).await;
    assert_eq!((outcome.pruned, outcome.undelivered), (3, 0));
    assert_eq!(store.pruned_count(None).await.unwrap().events, 6);
}

pub(crate) async fn pruning_removes_expired_rows_and_keeps_their_leaves(fresh: Fresh) {
    let store = &*fresh.store;
    let expired: Vec<DataEvent> = (0..5)
        .map(|i| event(Action::Viewed, 1, "users", i.into(), 1_000 + i))
        .collect();
    let held = event(Action::Deleted, 1, "invoices", 9.into(), 1_001);
    let acme = in_tenant(event(Action::Viewed, 1, "users", 7.into(), 1_000), "acme");
    let recent = event(Action::Viewed, 1, "users", 1.into(), 10_000);
    let mut batch = expired.clone();
    batch.extend([held.clone(), acme.clone(), recent.clone()]);
    store.insert_batch(&batch).await.unwrap();
    let sealed = store.seal(1000).await.unwrap();
    assert_eq!(sealed.size, 8);
    // Stored after sealing: expired, but not in the tree yet.
    let unsealed = event(Action::Viewed, 1, "users", 8.into(), 1_000);
    store
        .insert_batch(std::slice::from_ref(&unsealed))
        .await
        .unwrap();
    // The newest expired row is changed behind the auditor's back.
    let tampered = &expired[4];
    let seq = store.get(tampered.id).await.unwrap().unwrap().seq;
    behind_the_back(
        fresh.url(),
        &[format!(
            "UPDATE audit_events SET received_at = received_at + 1 WHERE seq = {seq}"
        )],
    )
    .await;
    store
        .place_hold(&hold("default", Some(("invoices", "9"))))
        .await
        .unwrap();

    // Small batches, so that the cursor carries the walk from one to the next.
    let rule = PruneRule::tenant_before("default", 5_000);
    let outcome = prune_all(store, &rule, 2).await;

    assert_eq!(
        (outcome.pruned, outcome.held, outcome.mismatched),
        (4, 1, 1)
    );
    for gone in &expired[..4] {
        assert_eq!(store.get(gone.id).await.unwrap(), None, "pruned");
    }
    for kept in [tampered, &held, &acme, &recent, &unsealed] {
        assert!(store.get(kept.id).await.unwrap().is_some(), "kept");
    }
    // The tree is as sealed: every leaf, its hash and the root.
    assert_eq!(store.tree_size().await.unwrap(), 8);
    let entries = store.leaf_entries(0, 100).await.unwrap();
    assert_eq!(entries.len(), 8);
    let pruned_leaves = store.pruned_leaves(0, 8).await.unwrap();
    let expected: Vec<u64> = entries
        .iter()
        .filter(|entry| expired[..4].iter().any(|e| e.id == entry.id))
        .map(|entry| entry.index)
        .collect();
    assert_eq!(pruned_leaves, expected);
    let level0 = store
        .tree_hashes(&[auditlog_store::Read {
            level: 0,
            start: 0,
            end: 8,
        }])
        .await
        .unwrap();
    assert_eq!(level0[0].1.len(), 8, "every leaf hash stays");
    let counted = store.pruned_count(Some("default")).await.unwrap();
    assert_eq!((counted.events, counted.newest), (4, Some(1_003)));
    assert_eq!(store.pruned_count(Some("acme")).await.unwrap().events, 0);
    assert_eq!(store.pruned_count(None).await.unwrap().events, 4);
    // Queries see only what is left.
    assert_eq!(store.count(&by_actor("1")).await.unwrap(), 5);

    // Again: nothing more (idempotent).
    assert_eq!(prune_all(store, &rule, 1000).await.pruned, 0);

    // Sealing goes on after pruned leaves, and every tenant's expired events go
    // once the rule says so; the hold still holds.
    assert_eq!(store.seal(1000).await.unwrap().size, 9);
    let outcome = prune_all(store, &PruneRule::everything_before(5_000), 1000).await;
    assert_eq!((outcome.pruned, outcome.held), (2, 1));
    assert_eq!(store.get(acme.id).await.unwrap(), None);
    assert_eq!(store.get(unsealed.id).await.unwrap(), None);
    assert_eq!(store.pruned_count(Some("acme")).await.unwrap().events, 1);
    assert!(store.get(held.id).await.unwrap().is_some());
    assert!(store.get(recent.id).await.unwrap().is_some());
}

pub(crate) async fn retention_policies_and_legal_holds_are_kept_as_set(fresh: Fresh) {
    let store = &*fresh.store;
    assert!(store.retention_policies().await.unwrap().is_empty());
    store.set_retention("acme", Some(30)).await.unwrap();
    store.set_retention("globex", Some(7)).await.unwrap();
    store.set_retention("acme", Some(60)).await.unwrap();
    store.set_retention("globex", None).await.unwrap();
    let policies = store.retention_policies().await.unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(
        (policies[0].tenant.as_str(), policies[0].days),
        ("acme", 60)
    );

    let whole = hold("acme", None);
    let one = hold("globex", Some(("users", "42")));
    store.place_hold(&whole).await.unwrap();
    store.place_hold(&one).await.unwrap();
    let mut holds = store.legal_holds().await.unwrap();
    holds.sort_by_key(|h| h.tenant.clone());
    assert_eq!(holds, vec![whole.clone(), one.clone()]);
    assert_eq!(
        store.release_hold(whole.id).await.unwrap(),
        Some(whole.clone())
    );
    assert_eq!(store.release_hold(whole.id).await.unwrap(), None);
    assert_eq!(store.legal_holds().await.unwrap(), vec![one]);
}
