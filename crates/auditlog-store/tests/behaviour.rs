//! One behavioural suite for every store backend. Each backend contributes a way to
//! open a fresh, private store; every scenario below runs against each of them.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::HashSet;
use std::sync::Arc;

use auditlog_event::{Action, Change, Changes, DataEvent, ObjectId, ObjectRef, ObjectType};
use auditlog_store::{AuditStore, EventQuery, ObjectKey};
use serde_json::json;

/// A fresh store of one backend, and whatever keeps it alive.
struct Fresh {
    store: Arc<dyn AuditStore>,
    url: String,
    _guard: tempfile::TempDir,
}

async fn sqlite() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    Fresh {
        store: auditlog_store::open(&url).await.unwrap(),
        url,
        _guard: dir,
    }
}

/// Runs a scenario against every backend.
macro_rules! for_every_store {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite_store {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::sqlite().await).await;
                }
            )*
        }
    };
}

for_every_store!(
    a_batch_is_stored_and_read_back_exactly,
    redelivered_events_are_stored_once,
    actor_queries_are_newest_first_and_match_numeric_and_text_ids,
    target_queries_see_only_that_target,
    filters_by_action_and_time_combine,
    pages_cover_every_event_once_in_order_even_with_equal_timestamps,
    involving_matches_actor_or_target,
    events_survive_reopening_the_store,
);

fn kind(name: &str) -> ObjectType {
    ObjectType::parse("actorType", name).unwrap()
}

fn event(action: Action, actor: i64, target_type: &str, target: ObjectId, ts: i64) -> DataEvent {
    let mut e = DataEvent::new(
        action,
        ObjectRef::new(kind("users"), actor),
        ObjectRef::new(kind(target_type), target),
        ts,
    );
    if action == Action::Changed {
        let mut changes = Changes::new();
        changes.insert(
            "name".into(),
            Change {
                prev: json!("a"),
                next: json!("b"),
            },
        );
        e.changes = Some(changes);
    }
    e
}

fn key(object_type: &str, id: &str) -> ObjectKey {
    ObjectKey {
        object_type: kind(object_type),
        id: id.into(),
    }
}

fn by_actor(id: &str) -> EventQuery {
    EventQuery {
        actor: Some(key("users", id)),
        ..EventQuery::default()
    }
}

async fn a_batch_is_stored_and_read_back_exactly(fresh: Fresh) {
    let mut e = event(
        Action::Changed,
        1,
        "users",
        ObjectId::Text("42".into()),
        1_000,
    );
    e.event_name = Some("user.renamed".into());
    e.meta = Some(json!({"ip": "127.0.0.1"}).as_object().unwrap().clone());
    let outcome = fresh
        .store
        .insert_batch(std::slice::from_ref(&e))
        .await
        .unwrap();
    assert_eq!(outcome.inserted, 1);
    let page = fresh.store.query(&by_actor("1")).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].id, e.id);
    let back = DataEvent::parse_json(&page.events[0].body, 0).unwrap();
    assert_eq!(back, e);
    assert!(page.next.is_none());
}

async fn redelivered_events_are_stored_once(fresh: Fresh) {
    let batch: Vec<DataEvent> = (0..10)
        .map(|n| event(Action::Viewed, 1, "users", n.into(), n))
        .collect();
    assert_eq!(fresh.store.insert_batch(&batch).await.unwrap().inserted, 10);
    let again = fresh.store.insert_batch(&batch).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 10));
    let mut mixed = batch[..5].to_vec();
    mixed.push(event(Action::Viewed, 1, "users", 99.into(), 99));
    let outcome = fresh.store.insert_batch(&mixed).await.unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (1, 5));
    let query = EventQuery {
        page_size: 1000,
        ..by_actor("1")
    };
    assert_eq!(fresh.store.query(&query).await.unwrap().events.len(), 11);
}

async fn actor_queries_are_newest_first_and_match_numeric_and_text_ids(fresh: Fresh) {
    let mut text_actor = event(Action::Viewed, 0, "users", 5.into(), 3_000);
    text_actor.actor_id = ObjectId::Text("7".into());
    let batch = vec![
        event(Action::Viewed, 7, "users", 1.into(), 1_000),
        event(Action::Viewed, 7, "users", 2.into(), 2_000),
        text_actor.clone(),
        event(Action::Viewed, 8, "users", 3.into(), 4_000),
    ];
    fresh.store.insert_batch(&batch).await.unwrap();
    let page = fresh.store.query(&by_actor("7")).await.unwrap();
    let times: Vec<i64> = page.events.iter().map(|e| e.timestamp).collect();
    assert_eq!(times, [3_000, 2_000, 1_000]);
    // The text id "7" round-trips as text.
    let newest = DataEvent::parse_json(&page.events[0].body, 0).unwrap();
    assert_eq!(newest.actor_id, ObjectId::Text("7".into()));
}

async fn target_queries_see_only_that_target(fresh: Fresh) {
    let batch = vec![
        event(Action::Viewed, 1, "users", 5.into(), 1),
        event(Action::Viewed, 1, "notes", 5.into(), 2),
        event(Action::Viewed, 2, "users", 5.into(), 3),
        event(Action::Viewed, 1, "users", 6.into(), 4),
    ];
    fresh.store.insert_batch(&batch).await.unwrap();
    let query = EventQuery {
        target: Some(key("users", "5")),
        ..EventQuery::default()
    };
    let page = fresh.store.query(&query).await.unwrap();
    let ids: Vec<_> = page.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [batch[2].id, batch[0].id]);
    let both = EventQuery {
        actor: Some(key("users", "2")),
        ..query
    };
    assert_eq!(fresh.store.query(&both).await.unwrap().events.len(), 1);
}

async fn filters_by_action_and_time_combine(fresh: Fresh) {
    let batch = vec![
        event(Action::Created, 1, "users", 5.into(), 100),
        event(Action::Viewed, 1, "users", 5.into(), 200),
        event(Action::Changed, 1, "users", 5.into(), 300),
        event(Action::Deleted, 1, "users", 5.into(), 400),
    ];
    fresh.store.insert_batch(&batch).await.unwrap();
    let mutations = EventQuery {
        actions: vec![Action::Created, Action::Changed, Action::Deleted],
        ..by_actor("1")
    };
    assert_eq!(fresh.store.query(&mutations).await.unwrap().events.len(), 3);
    let window = EventQuery {
        since: Some(200),
        until: Some(400),
        ..mutations
    };
    let page = fresh.store.query(&window).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].id, batch[2].id);
}

async fn pages_cover_every_event_once_in_order_even_with_equal_timestamps(fresh: Fresh) {
    // 25 events over 5 distinct timestamps: ties must be broken consistently.
    let batch: Vec<DataEvent> = (0..25)
        .map(|n| event(Action::Viewed, 1, "users", n.into(), 1_000 + n / 5))
        .collect();
    fresh.store.insert_batch(&batch).await.unwrap();
    let mut seen = Vec::new();
    let mut query = EventQuery {
        page_size: 4,
        ..by_actor("1")
    };
    loop {
        let page = fresh.store.query(&query).await.unwrap();
        assert!(page.events.len() <= 4);
        seen.extend(page.events.iter().map(|e| e.id));
        match page.next {
            Some(cursor) => query.after = Some(cursor),
            None => break,
        }
    }
    // Newest first; within a timestamp, the later-stored first.
    let expected: Vec<_> = batch.iter().rev().map(|e| e.id).collect();
    assert_eq!(seen, expected);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
}

async fn involving_matches_actor_or_target(fresh: Fresh) {
    let batch = vec![
        event(Action::Viewed, 7, "users", 1.into(), 1),
        event(Action::Viewed, 1, "users", 7.into(), 2),
        event(Action::Viewed, 1, "users", 2.into(), 3),
        event(Action::Viewed, 1, "notes", 7.into(), 4),
    ];
    fresh.store.insert_batch(&batch).await.unwrap();
    let query = EventQuery {
        involving: Some(key("users", "7")),
        ..EventQuery::default()
    };
    let ids: Vec<_> = fresh
        .store
        .query(&query)
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, [batch[1].id, batch[0].id]);
}

async fn events_survive_reopening_the_store(fresh: Fresh) {
    let batch = vec![event(Action::Viewed, 1, "users", 1.into(), 1)];
    fresh.store.insert_batch(&batch).await.unwrap();
    let reopened = auditlog_store::open(&fresh.url).await.unwrap();
    let page = reopened.query(&by_actor("1")).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].id, batch[0].id);
}
