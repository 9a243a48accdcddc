//! The embedded transport end to end: emitter → channel → consume loop → store.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;

use auditlog_emit::{Emitter, EmitterConfig};
use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
use auditlog_store::{AuditStore, EventQuery, ObjectKey};

fn users() -> ObjectType {
    ObjectType::parse("actorType", "users").unwrap()
}

#[tokio::test]
async fn every_emitted_event_is_stored_exactly_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store: Arc<dyn AuditStore> = auditlog_store::open(&url).await.unwrap();
    let (transport, receiver) = auditlog_emit::embedded::channel(8);
    let consumer = tokio::spawn(auditlog_auditor::consumer::run(
        receiver,
        store.clone(),
        std::future::pending(),
    ));
    let (emitter, task) = Emitter::start(Arc::new(transport), EmitterConfig::default()).unwrap();

    const EVENTS: i64 = 20_000;
    let mut ids = Vec::new();
    for n in 0..EVENTS {
        let event = DataEvent::new(
            Action::Viewed,
            ObjectRef::new(users(), 1),
            ObjectRef::new(users(), n),
            1_000,
        );
        ids.push(event.id);
        emitter.emit(event);
    }
    let stats = task.shutdown().await;
    assert_eq!((stats.delivered(), stats.dropped()), (EVENTS as u64, 0));
    consumer.await.unwrap();

    let mut stored = Vec::new();
    let mut query = EventQuery {
        actor: Some(ObjectKey {
            object_type: users(),
            id: "1".into(),
        }),
        page_size: EventQuery::MAX_PAGE_SIZE,
        ..EventQuery::default()
    };
    loop {
        let page = store.query(&query).await.unwrap();
        stored.extend(page.events.iter().map(|e| e.id));
        match page.next {
            Some(cursor) => query.after = Some(cursor),
            None => break,
        }
    }
    // Same timestamp everywhere: newest-first is exactly reverse emission order.
    ids.reverse();
    assert_eq!(stored, ids);
}
