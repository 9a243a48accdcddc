//! Scenarios of the log streams' rows: definitions, cursors and the delivery
//! lease that lets one auditor at a time deliver a sink.

use super::*;

pub async fn sinks_are_created_once_updated_and_deleted(fresh: Fresh) {
    let store = &fresh.store;

    let created = store
        .create_sink("siem", r#"{"kind":"webhook"}"#, 7)
        .await
        .unwrap();
    let again = store
        .create_sink("siem", r#"{"kind":"other"}"#, 0)
        .await
        .unwrap();
    let updated = store
        .update_sink("siem", r#"{"kind":"files"}"#)
        .await
        .unwrap();
    let missing_update = store.update_sink("nope", "{}").await.unwrap();

    assert!(created);
    assert!(!again, "a second sink of the same name is refused");
    assert!(updated);
    assert!(!missing_update);
    let sinks = store.sinks().await.unwrap();
    assert_eq!(sinks.len(), 1);
    assert_eq!(sinks[0].name, "siem");
    assert_eq!(sinks[0].definition, r#"{"kind":"files"}"#);
    assert_eq!(sinks[0].cursor, 7, "an update keeps the cursor");
    assert!(store.delete_sink("siem").await.unwrap());
    assert!(!store.delete_sink("siem").await.unwrap());
    assert!(store.sinks().await.unwrap().is_empty());
}

pub async fn one_holder_at_a_time_leases_a_sink_and_only_it_moves_the_cursor(fresh: Fresh) {
    let store = &fresh.store;
    store.create_sink("siem", "{}", 0).await.unwrap();

    let first = store
        .lease_sink("siem", "auditor-a", 1_000, 10_000)
        .await
        .unwrap();
    let second_while_held = store
        .lease_sink("siem", "auditor-b", 2_000, 10_000)
        .await
        .unwrap();
    let renewed = store
        .lease_sink("siem", "auditor-a", 3_000, 10_000)
        .await
        .unwrap();
    let advanced = store.advance_sink("siem", "auditor-a", 40).await.unwrap();
    let advanced_by_other = store.advance_sink("siem", "auditor-b", 50).await.unwrap();
    let moved_back = store.advance_sink("siem", "auditor-a", 10).await.unwrap();

    assert!(first);
    assert!(!second_while_held);
    assert!(renewed);
    assert!(advanced);
    assert!(!advanced_by_other, "only the holder moves the cursor");
    assert!(moved_back, "the holder still holds it");
    assert_eq!(
        store.sinks().await.unwrap()[0].cursor,
        40,
        "a cursor never moves back"
    );

    // The lease ran out (renewed at 3 000 for 10 000): another holder takes it.
    let taken_after_expiry = store
        .lease_sink("siem", "auditor-b", 13_001, 10_000)
        .await
        .unwrap();
    let old_holder_advances = store.advance_sink("siem", "auditor-a", 60).await.unwrap();
    assert!(taken_after_expiry);
    assert!(
        !old_holder_advances,
        "the expired holder no longer moves the cursor"
    );

    store.release_sink("siem", "auditor-b").await.unwrap();
    let taken_after_release = store
        .lease_sink("siem", "auditor-a", 14_000, 10_000)
        .await
        .unwrap();
    assert!(taken_after_release, "a released lease is free at once");
    assert!(
        !store
            .lease_sink("gone", "auditor-a", 14_000, 10_000)
            .await
            .unwrap()
    );
}
