//! Reading: queries by actor, target and filters, pages and cursors in both
//! orders, counts, one event, commit order and activity.

use super::*;

pub(crate) async fn actor_queries_are_newest_first_and_match_numeric_and_text_ids(fresh: Fresh) {
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

pub(crate) async fn target_queries_see_only_that_target(fresh: Fresh) {
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

pub(crate) async fn filters_by_action_and_time_combine(fresh: Fresh) {
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

pub(crate) async fn pages_cover_every_event_once_in_order_even_with_equal_timestamps(fresh: Fresh) {
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

pub(crate) async fn involving_matches_actor_or_target(fresh: Fresh) {
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

pub(crate) async fn matching_is_exact_and_case_sensitive(fresh: Fresh) {
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

pub(crate) async fn ties_follow_creation_order_not_arrival_order(fresh: Fresh) {
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

pub(crate) fn named(name: Option<&str>, ts: i64) -> DataEvent {
    let mut e = event(Action::Viewed, 1, "users", 1.into(), ts);
    e.event_name = name.map(Into::into);
    e
}

/// Every page of `query`, followed to the end; `between` runs after each page.
pub(crate) async fn all_pages(
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

pub(crate) async fn event_names_filter_with_any_of_several(fresh: Fresh) {
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

pub(crate) async fn oldest_first_pages_cover_every_event_once_in_order(fresh: Fresh) {
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
pub(crate) async fn pages_under_concurrent_inserts(fresh: Fresh, order: Order) {
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

pub(crate) async fn newest_first_pages_stay_correct_while_newer_events_arrive(fresh: Fresh) {
    pages_under_concurrent_inserts(fresh, Order::NewestFirst).await;
}

pub(crate) async fn oldest_first_pages_stay_correct_while_newer_events_arrive(fresh: Fresh) {
    pages_under_concurrent_inserts(fresh, Order::OldestFirst).await;
}

pub(crate) async fn a_cursor_continues_in_the_querys_order(fresh: Fresh) {
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

pub(crate) async fn count_is_the_number_of_matching_events_whatever_the_page(fresh: Fresh) {
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

pub(crate) async fn get_finds_one_event_by_id(fresh: Fresh) {
    let batch: Vec<DataEvent> = (0..3)
        .map(|n| event(Action::Changed, 1, "users", n.into(), n))
        .collect();
    fresh.store.insert_batch(&batch).await.unwrap();
    let found = fresh.store.get(batch[1].id).await.unwrap().unwrap();
    assert_eq!((found.id, found.timestamp), (batch[1].id, 1));
    assert_eq!(found.body, batch[1].to_json());
    assert_eq!(fresh.store.get(uuid::Uuid::now_v7()).await.unwrap(), None);
}

pub(crate) async fn stored_after_gives_later_matching_events_in_commit_order(fresh: Fresh) {
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

pub(crate) async fn activity_counts_each_action_per_bucket(fresh: Fresh) {
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
