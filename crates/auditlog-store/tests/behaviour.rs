//! One behavioural suite for every store backend. Each backend contributes a way to
//! open a fresh, private store; every scenario below runs against each of them.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::HashSet;
use std::sync::Arc;

use auditlog_event::{Action, Change, Changes, DataEvent, ObjectId, ObjectRef, ObjectType};
use auditlog_store::testing::{self, TestDatabase};
use auditlog_store::{ActivityCount, AuditStore, EventQuery, ObjectKey, Order, ProducerProgress};
use serde_json::json;

/// A fresh store of one backend, and the private database behind it (removed when
/// this is dropped, after the store).
struct Fresh {
    store: Arc<dyn AuditStore>,
    db: TestDatabase,
}

impl Fresh {
    async fn open(db: TestDatabase) -> Fresh {
        Fresh {
            store: auditlog_store::open(db.url()).await.unwrap(),
            db,
        }
    }

    fn url(&self) -> &str {
        self.db.url()
    }
}

async fn sqlite() -> Fresh {
    Fresh::open(testing::fresh_sqlite_url()).await
}

async fn postgres() -> Fresh {
    Fresh::open(testing::fresh_postgres_url().await).await
}

async fn mysql() -> Fresh {
    Fresh::open(testing::fresh_mysql_url().await).await
}

/// Runs every scenario against every backend: one module per backend, one test per
/// scenario in each, so a failure names both.
macro_rules! for_every_store {
    ($($scenario:ident),* $(,)?) => {
        for_every_store!(@backend sqlite_store, sqlite, $($scenario),*);
        for_every_store!(@backend postgres_store, postgres, $($scenario),*);
        for_every_store!(@backend mysql_store, mysql, $($scenario),*);
    };
    (@backend $module:ident, $fresh:ident, $($scenario:ident),*) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::$fresh().await).await;
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
    ties_follow_creation_order_not_arrival_order,
    stored_ids_names_exactly_the_stored_events,
    involving_matches_actor_or_target,
    events_survive_reopening_the_store,
    duplicate_ids_inside_one_batch_are_stored_once,
    ten_thousand_events_in_one_batch_page_back_in_batch_order,
    matching_is_exact_and_case_sensitive,
    bodies_round_trip_byte_for_byte,
    the_store_answers_a_ping,
    large_events_are_split_under_the_servers_size_limits,
    concurrent_overlapping_batches_store_each_event_once,
    producers_report_what_is_stored_and_what_is_missing,
    a_missing_start_of_a_sequence_is_a_gap,
    only_the_first_hundred_gaps_are_listed_but_all_are_counted,
    a_store_without_numbered_events_reports_no_producers,
    event_names_filter_with_any_of_several,
    oldest_first_pages_cover_every_event_once_in_order,
    newest_first_pages_stay_correct_while_newer_events_arrive,
    oldest_first_pages_stay_correct_while_newer_events_arrive,
    a_cursor_continues_in_the_querys_order,
    count_is_the_number_of_matching_events_whatever_the_page,
    get_finds_one_event_by_id,
    stored_after_gives_later_matching_events_in_commit_order,
    activity_counts_each_action_per_bucket,
    sealing_is_idempotent_and_follows_seq,
    concurrent_sealers_produce_one_chain,
    a_signed_head_is_kept_and_only_the_newest_is_answered,
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
        changes.insert("name".into(), Change::new(json!("a"), json!("b")));
        e.changes = Some(changes);
    }
    e
}

/// A `viewed` event numbered `seq` by `producer`.
fn numbered(producer: &str, seq: u64) -> DataEvent {
    let mut e = event(Action::Viewed, 1, "users", 1.into(), seq as i64);
    e.producer_id = Some(producer.into());
    e.producer_seq = Some(seq);
    e
}

fn progress(
    producer_id: &str,
    events: u64,
    last_seq: u64,
    missing: u64,
    gaps: &[(u64, u64)],
) -> ProducerProgress {
    ProducerProgress {
        producer_id: producer_id.into(),
        events,
        last_seq,
        missing,
        gaps: gaps.to_vec(),
    }
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
    // Newest first; within a timestamp, the later-created first (UUIDv7 order).
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
    let reopened = auditlog_store::open(fresh.url()).await.unwrap();
    let page = reopened.query(&by_actor("1")).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].id, batch[0].id);
}

async fn duplicate_ids_inside_one_batch_are_stored_once(fresh: Fresh) {
    let first = event(Action::Viewed, 1, "users", 1.into(), 10);
    let second = event(Action::Viewed, 1, "users", 2.into(), 20);
    // Same id, different content: the first occurrence is the one kept.
    let mut repeat = event(Action::Viewed, 1, "users", 3.into(), 30);
    repeat.id = first.id;
    let batch = vec![first.clone(), second.clone(), repeat, second.clone()];

    let outcome = fresh.store.insert_batch(&batch).await.unwrap();

    assert_eq!((outcome.inserted, outcome.duplicates), (2, 2));
    let page = fresh.store.query(&by_actor("1")).await.unwrap();
    let ids: Vec<_> = page.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [second.id, first.id]);
    assert_eq!(page.events[1].body, first.to_json());

    // Stored and repeated ids mixed with a new one that is itself repeated.
    let third = event(Action::Viewed, 1, "users", 4.into(), 40);
    let mixed = vec![first.clone(), third.clone(), third.clone(), first];
    let outcome = fresh.store.insert_batch(&mixed).await.unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (1, 3));
    assert_eq!(
        fresh
            .store
            .query(&by_actor("1"))
            .await
            .unwrap()
            .events
            .len(),
        3
    );
}

async fn ten_thousand_events_in_one_batch_page_back_in_batch_order(fresh: Fresh) {
    // Enough rows to need several statements where binds are limited (MySQL: 65 535
    // per statement, 9 per row), with timestamps shared by runs of 7 events.
    const N: i64 = 10_000;
    let batch: Vec<DataEvent> = (0..N)
        .map(|n| {
            let mut e = event(Action::Viewed, 1, "users", n.into(), 1_000_000 + n / 7);
            e.event_name = Some(format!("bulk.{n}"));
            e
        })
        .collect();

    let outcome = fresh.store.insert_batch(&batch).await.unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (N as u64, 0));

    let mut seen = Vec::new();
    let mut query = EventQuery {
        page_size: EventQuery::MAX_PAGE_SIZE,
        ..by_actor("1")
    };
    let mut pages = 0;
    loop {
        let page = fresh.store.query(&query).await.unwrap();
        pages += 1;
        seen.extend(page.events);
        match page.next {
            Some(cursor) => query.after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(pages, 10);
    // Newest first and, within a timestamp, the later in the batch first: the batch
    // took its sequence numbers in batch order.
    let ids: Vec<_> = seen.iter().map(|e| e.id).collect();
    let expected: Vec<_> = batch.iter().rev().map(|e| e.id).collect();
    assert!(ids == expected, "pages are not the batch in reverse order");
    assert!(seen.windows(2).all(|w| w[0].seq > w[1].seq));
    for (stored, sent) in seen.iter().zip(batch.iter().rev()) {
        assert_eq!(stored.body, sent.to_json());
    }
}

async fn matching_is_exact_and_case_sensitive(fresh: Fresh) {
    let mut look_alikes = Vec::new();
    for (actor_type, actor_id) in [
        ("users", "ab"),
        ("Users", "ab"),
        ("users", "AB"),
        ("users", "ab "),
        ("users", "áb"),
        ("users ", "ab"),
    ] {
        let mut e = event(Action::Viewed, 0, "notes", 1.into(), 1);
        e.actor_type = kind(actor_type);
        e.actor_id = ObjectId::Text(actor_id.into());
        look_alikes.push(e);
    }
    fresh.store.insert_batch(&look_alikes).await.unwrap();

    for (n, e) in look_alikes.iter().enumerate() {
        let query = EventQuery {
            actor: Some(key(e.actor_type.as_str(), &e.actor_id.key())),
            ..EventQuery::default()
        };
        let ids: Vec<_> = fresh
            .store
            .query(&query)
            .await
            .unwrap()
            .events
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, [e.id], "look-alike #{n} matched something else");
    }
}

async fn bodies_round_trip_byte_for_byte(fresh: Fresh) {
    let mut e = event(Action::Changed, 1, "users", 1.into(), 1);
    // Characters outside the BMP, escapes, and key order a JSON type would normalise.
    e.meta = Some(
        json!({"z": "last", "a": "ünïcödé 🦀 \"quoted\" \\ \u{1}", "m": {"b": 1, "a": [1.5, null]}})
            .as_object()
            .unwrap()
            .clone(),
    );
    e.event_name = Some("x".repeat(128));
    fresh
        .store
        .insert_batch(std::slice::from_ref(&e))
        .await
        .unwrap();
    let page = fresh.store.query(&by_actor("1")).await.unwrap();
    assert_eq!(page.events[0].body, e.to_json());
}

async fn the_store_answers_a_ping(fresh: Fresh) {
    fresh.store.ping().await.unwrap();
}

async fn large_events_are_split_under_the_servers_size_limits(fresh: Fresh) {
    // 320 events near the 64 KiB limit make ~19 MiB: over MariaDB's default 16 MiB
    // max_allowed_packet, so one statement would be refused.
    let filler = "x".repeat(60 * 1024);
    let batch: Vec<DataEvent> = (0..320)
        .map(|n| {
            let mut e = event(Action::Viewed, 1, "users", n.into(), n);
            e.meta = Some(json!({ "filler": filler }).as_object().unwrap().clone());
            e
        })
        .collect();

    let outcome = fresh.store.insert_batch(&batch).await.unwrap();

    assert_eq!(outcome.inserted, 320);
    let page = fresh
        .store
        .query(&EventQuery {
            page_size: 1000,
            ..by_actor("1")
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 320);
    assert!(page.events.iter().all(|e| e.body.len() > 60 * 1024));
}

async fn concurrent_overlapping_batches_store_each_event_once(fresh: Fresh) {
    // 4 writers, each sending 200 events of which half are shared with the next.
    let all: Vec<DataEvent> = (0..500)
        .map(|n| event(Action::Viewed, 1, "users", n.into(), n))
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = fresh.store.clone();
            let batch = all[w * 100..w * 100 + 200].to_vec();
            tokio::spawn(async move { store.insert_batch(&batch).await.unwrap() })
        })
        .collect();
    let mut inserted = 0;
    for writer in writers {
        let outcome = writer.await.unwrap();
        assert_eq!(outcome.inserted + outcome.duplicates, 200);
        inserted += outcome.inserted;
    }

    assert_eq!(inserted, 500);
    let page = fresh
        .store
        .query(&EventQuery {
            page_size: 1000,
            ..by_actor("1")
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 500);
    let seqs: HashSet<_> = page.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs.len(), 500);
}

async fn ties_follow_creation_order_not_arrival_order(fresh: Fresh) {
    // Two events of one producer in the same millisecond, arriving in reverse (as a
    // `changed` from the outbox can arrive after the `viewed` that followed it).
    let first = event(Action::Changed, 1, "users", 5.into(), 7_000);
    let second = event(Action::Viewed, 1, "users", 5.into(), 7_000);
    fresh
        .store
        .insert_batch(std::slice::from_ref(&second))
        .await
        .unwrap();
    fresh
        .store
        .insert_batch(std::slice::from_ref(&first))
        .await
        .unwrap();
    let page = fresh.store.query(&by_actor("1")).await.unwrap();
    let ids: Vec<_> = page.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [second.id, first.id]);
}

async fn producers_report_what_is_stored_and_what_is_missing(fresh: Fresh) {
    // Two producers whose ids sort differently by bytes than by most collations
    // ("api/B" < "api/a" byte for byte), one with holes and one complete, arriving
    // interleaved and out of order, next to events that carry no number.
    let holes: Vec<DataEvent> = [9, 1, 2, 3, 5, 6]
        .into_iter()
        .map(|seq| numbered("api/a", seq))
        .collect();
    let complete: Vec<DataEvent> = (1..=4).map(|seq| numbered("api/B", seq)).collect();
    let unnumbered = [
        event(Action::Viewed, 2, "users", 1.into(), 1),
        event(Action::Viewed, 3, "users", 1.into(), 2),
    ];
    let first = [&holes[..3], &complete[2..], &unnumbered[..]].concat();
    let second = [&complete[..2], &holes[3..], &complete[..1]].concat();
    fresh.store.insert_batch(&first).await.unwrap();
    fresh.store.insert_batch(&second).await.unwrap();
    // Redelivery: the same events (same id, same number) again.
    let again = fresh
        .store
        .insert_batch(&[&holes[1..4], &complete[3..]].concat())
        .await
        .unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 4));
    // A number sent again under a new id (a relay that re-read its outbox after a
    // crash) is a second event but not a second number.
    fresh
        .store
        .insert_batch(&[numbered("api/B", 2)])
        .await
        .unwrap();

    let report = fresh.store.producers().await.unwrap();

    assert_eq!(
        report,
        [
            progress("api/B", 4, 4, 0, &[]),
            progress("api/a", 6, 9, 3, &[(4, 4), (7, 8)]),
        ]
    );
}

async fn a_missing_start_of_a_sequence_is_a_gap(fresh: Fresh) {
    let batch: Vec<DataEvent> = [3, 4, 6]
        .into_iter()
        .map(|seq| numbered("relay", seq))
        .collect();
    fresh.store.insert_batch(&batch).await.unwrap();

    let report = fresh.store.producers().await.unwrap();

    assert_eq!(report, [progress("relay", 3, 6, 3, &[(1, 2), (5, 5)])]);
}

async fn only_the_first_hundred_gaps_are_listed_but_all_are_counted(fresh: Fresh) {
    // Every even number lost: 1, 3, 5, …, 401 stored, 200 single-number gaps.
    let batch: Vec<DataEvent> = (0..=200).map(|n| numbered("lossy", 2 * n + 1)).collect();
    fresh.store.insert_batch(&batch).await.unwrap();

    let report = fresh.store.producers().await.unwrap();

    assert_eq!(report.len(), 1);
    let lossy = &report[0];
    assert_eq!(
        (lossy.events, lossy.last_seq, lossy.missing),
        (201, 401, 200)
    );
    let expected: Vec<(u64, u64)> = (1..=ProducerProgress::MAX_GAPS as u64)
        .map(|n| (2 * n, 2 * n))
        .collect();
    assert_eq!(lossy.gaps, expected);
}

async fn a_store_without_numbered_events_reports_no_producers(fresh: Fresh) {
    assert_eq!(fresh.store.producers().await.unwrap(), []);
    let batch = vec![event(Action::Viewed, 1, "users", 1.into(), 1)];
    fresh.store.insert_batch(&batch).await.unwrap();
    assert_eq!(fresh.store.producers().await.unwrap(), []);
}

async fn stored_ids_names_exactly_the_stored_events(fresh: Fresh) {
    let stored: Vec<DataEvent> = (0..3)
        .map(|n| event(Action::Viewed, 1, "users", n.into(), n))
        .collect();
    fresh.store.insert_batch(&stored).await.unwrap();
    let absent = event(Action::Viewed, 1, "users", 9.into(), 9);
    let mut asked: Vec<_> = stored.iter().map(|e| e.id).collect();
    asked.push(absent.id);
    let mut found = fresh.store.stored_ids(&asked).await.unwrap();
    found.sort();
    let mut expected: Vec<_> = stored.iter().map(|e| e.id).collect();
    expected.sort();
    assert_eq!(found, expected);
    assert!(fresh.store.stored_ids(&[]).await.unwrap().is_empty());
}

fn named(name: Option<&str>, ts: i64) -> DataEvent {
    let mut e = event(Action::Viewed, 1, "users", 1.into(), ts);
    e.event_name = name.map(Into::into);
    e
}

/// Every page of `query`, followed to the end; `between` runs after each page.
async fn all_pages(
    store: &Arc<dyn AuditStore>,
    mut query: EventQuery,
    mut between: impl AsyncFnMut(usize),
) -> Vec<uuid::Uuid> {
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.query(&query).await.unwrap();
        assert!(page.events.len() <= query.page_size as usize);
        seen.extend(page.events.iter().map(|e| e.id));
        pages += 1;
        between(pages).await;
        match page.next {
            Some(cursor) => query.after = Some(cursor),
            None => return seen,
        }
    }
}

async fn event_names_filter_with_any_of_several(fresh: Fresh) {
    let batch = vec![
        named(Some("user.tos_accepted"), 1),
        named(Some("user.renamed"), 2),
        named(None, 3),
        named(Some("User.renamed"), 4),
        named(Some("user.deleted"), 5),
    ];
    fresh.store.insert_batch(&batch).await.unwrap();
    let query = EventQuery {
        event_names: vec!["user.renamed".into(), "user.tos_accepted".into()],
        ..by_actor("1")
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
    let one = EventQuery {
        event_names: vec!["user.deleted".into()],
        ..EventQuery::default()
    };
    assert_eq!(fresh.store.count(&one).await.unwrap(), 1);
}

async fn oldest_first_pages_cover_every_event_once_in_order(fresh: Fresh) {
    let batch: Vec<DataEvent> = (0..25)
        .map(|n| event(Action::Viewed, 1, "users", n.into(), 1_000 + n / 5))
        .collect();
    fresh.store.insert_batch(&batch).await.unwrap();
    let query = EventQuery {
        page_size: 4,
        order: Order::OldestFirst,
        ..by_actor("1")
    };
    let seen = all_pages(&fresh.store, query, async |_| {}).await;
    let expected: Vec<_> = batch.iter().map(|e| e.id).collect();
    assert_eq!(seen, expected);
}

/// Pages through 30 events 4 at a time while, after every page, two events newer
/// than all others arrive: each of the first 30 is seen exactly once, in order.
async fn pages_under_concurrent_inserts(fresh: Fresh, order: Order) {
    let first: Vec<DataEvent> = (0..30)
        .map(|n| event(Action::Viewed, 1, "users", n.into(), 10_000 + n / 3))
        .collect();
    fresh.store.insert_batch(&first).await.unwrap();
    let store = fresh.store.clone();
    let mut arrived = Vec::new();
    let query = EventQuery {
        page_size: 4,
        order,
        ..by_actor("1")
    };
    let seen = all_pages(&fresh.store, query, async |page| {
        let newer: Vec<DataEvent> = (0..2)
            .map(|n| event(Action::Viewed, 1, "users", n.into(), 20_000 + page as i64))
            .collect();
        store.insert_batch(&newer).await.unwrap();
        arrived.extend(newer.iter().map(|e| e.id));
    })
    .await;

    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an event was seen twice");
    let original: Vec<_> = match order {
        Order::NewestFirst => first.iter().rev().map(|e| e.id).collect(),
        Order::OldestFirst => first.iter().map(|e| e.id).collect(),
    };
    let seen_original: Vec<_> = seen
        .iter()
        .copied()
        .filter(|id| original.contains(id))
        .collect();
    assert_eq!(seen_original, original, "an event was skipped or misplaced");
    match order {
        // Newer events land before the cursor: none of them shows.
        Order::NewestFirst => assert_eq!(seen.len(), 30),
        // Oldest first, the newer ones come after everything read, in order.
        Order::OldestFirst => {
            assert_eq!(&seen[..30], &original[..]);
            assert!(seen[30..].iter().all(|id| arrived.contains(id)));
        }
    }
}

async fn newest_first_pages_stay_correct_while_newer_events_arrive(fresh: Fresh) {
    pages_under_concurrent_inserts(fresh, Order::NewestFirst).await;
}

async fn oldest_first_pages_stay_correct_while_newer_events_arrive(fresh: Fresh) {
    pages_under_concurrent_inserts(fresh, Order::OldestFirst).await;
}

async fn a_cursor_continues_in_the_querys_order(fresh: Fresh) {
    let batch: Vec<DataEvent> = (0..6)
        .map(|n| event(Action::Viewed, 1, "users", n.into(), n))
        .collect();
    fresh.store.insert_batch(&batch).await.unwrap();
    let query = EventQuery {
        page_size: 2,
        order: Order::OldestFirst,
        ..by_actor("1")
    };
    let page = fresh.store.query(&query).await.unwrap();
    let cursor = page.next.unwrap();
    assert_eq!(cursor.order, Order::OldestFirst);
    let next = fresh
        .store
        .query(&EventQuery {
            after: Some(cursor),
            ..query
        })
        .await
        .unwrap();
    let ids: Vec<_> = next.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [batch[2].id, batch[3].id]);
}

async fn count_is_the_number_of_matching_events_whatever_the_page(fresh: Fresh) {
    let batch = vec![
        event(Action::Created, 1, "users", 5.into(), 100),
        event(Action::Viewed, 1, "users", 5.into(), 200),
        event(Action::Changed, 2, "users", 5.into(), 300),
        event(Action::Viewed, 2, "users", 6.into(), 400),
    ];
    fresh.store.insert_batch(&batch).await.unwrap();
    let store = &fresh.store;
    assert_eq!(store.count(&EventQuery::default()).await.unwrap(), 4);
    let small_page = EventQuery {
        page_size: 1,
        ..by_actor("1")
    };
    assert_eq!(store.count(&small_page).await.unwrap(), 2);
    let both = EventQuery {
        target: Some(key("users", "5")),
        actions: vec![Action::Changed, Action::Viewed],
        since: Some(200),
        ..EventQuery::default()
    };
    assert_eq!(store.count(&both).await.unwrap(), 2);
    let none = EventQuery {
        until: Some(100),
        ..EventQuery::default()
    };
    assert_eq!(store.count(&none).await.unwrap(), 0);
}

async fn get_finds_one_event_by_id(fresh: Fresh) {
    let batch: Vec<DataEvent> = (0..3)
        .map(|n| event(Action::Changed, 1, "users", n.into(), n))
        .collect();
    fresh.store.insert_batch(&batch).await.unwrap();
    let found = fresh.store.get(batch[1].id).await.unwrap().unwrap();
    assert_eq!((found.id, found.timestamp), (batch[1].id, 1));
    assert_eq!(found.body, batch[1].to_json());
    assert_eq!(fresh.store.get(uuid::Uuid::now_v7()).await.unwrap(), None);
}

async fn stored_after_gives_later_matching_events_in_commit_order(fresh: Fresh) {
    assert_eq!(fresh.store.last_seq().await.unwrap(), 0);
    let early = vec![
        event(Action::Viewed, 1, "users", 1.into(), 500),
        event(Action::Viewed, 2, "users", 1.into(), 400),
    ];
    fresh.store.insert_batch(&early).await.unwrap();
    let mark = fresh.store.last_seq().await.unwrap();
    assert!(mark > 0);
    // Stored later but with older timestamps: commit order is what counts.
    let late = vec![
        event(Action::Viewed, 1, "users", 2.into(), 100),
        event(Action::Changed, 2, "users", 2.into(), 50),
        event(Action::Viewed, 1, "users", 3.into(), 10),
    ];
    fresh.store.insert_batch(&late).await.unwrap();

    let all = fresh
        .store
        .stored_after(&EventQuery::default(), mark, 100)
        .await
        .unwrap();
    let ids: Vec<_> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids, late.iter().map(|e| e.id).collect::<Vec<_>>());
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let mine = fresh
        .store
        .stored_after(&by_actor("1"), mark, 1)
        .await
        .unwrap();
    assert_eq!(mine.iter().map(|e| e.id).collect::<Vec<_>>(), [late[0].id]);
    let rest = fresh
        .store
        .stored_after(&by_actor("1"), mine[0].seq, 100)
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|e| e.id).collect::<Vec<_>>(), [late[2].id]);
    assert_eq!(fresh.store.last_seq().await.unwrap(), all[2].seq);
}

async fn activity_counts_each_action_per_bucket(fresh: Fresh) {
    const HOUR: i64 = 3_600_000;
    let base = 1_700_000_000_000 / HOUR * HOUR;
    let batch = vec![
        event(Action::Viewed, 1, "users", 1.into(), base + 5),
        event(Action::Viewed, 1, "users", 1.into(), base + HOUR - 1),
        event(Action::Changed, 1, "users", 1.into(), base + 10),
        // An empty hour, then one more.
        event(Action::Deleted, 1, "users", 1.into(), base + 2 * HOUR),
        event(Action::Viewed, 2, "users", 1.into(), base + 2 * HOUR + 7),
    ];
    fresh.store.insert_batch(&batch).await.unwrap();
    let count = |start, action: &str, count| ActivityCount {
        start,
        action: action.into(),
        count,
    };

    let all = fresh
        .store
        .activity(&EventQuery::default(), HOUR)
        .await
        .unwrap();
    assert_eq!(
        all,
        [
            count(base, "changed", 1),
            count(base, "viewed", 2),
            count(base + 2 * HOUR, "deleted", 1),
            count(base + 2 * HOUR, "viewed", 1),
        ]
    );
    let filtered = fresh
        .store
        .activity(
            &EventQuery {
                since: Some(base + 6),
                ..by_actor("1")
            },
            HOUR,
        )
        .await
        .unwrap();
    assert_eq!(
        filtered,
        [
            count(base, "changed", 1),
            count(base, "viewed", 1),
            count(base + 2 * HOUR, "deleted", 1),
        ]
    );
}

/// Every event stored, in `seq` order.
async fn all_by_seq(store: &dyn AuditStore) -> Vec<auditlog_store::StoredEvent> {
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
async fn assert_chain_covers(store: &dyn AuditStore, events: &[auditlog_store::StoredEvent]) {
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

async fn sealing_is_idempotent_and_follows_seq(fresh: Fresh) {
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

async fn concurrent_sealers_produce_one_chain(fresh: Fresh) {
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

async fn a_signed_head_is_kept_and_only_the_newest_is_answered(fresh: Fresh) {
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
