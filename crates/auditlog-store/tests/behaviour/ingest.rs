//! Storing: batches, redeliveries and duplicates, sizes, concurrency, and the
//! producers' completeness report.

use super::*;

pub(crate) async fn a_batch_is_stored_and_read_back_exactly(fresh: Fresh) {
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

pub(crate) async fn redelivered_events_are_stored_once(fresh: Fresh) {
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

pub(crate) async fn events_survive_reopening_the_store(fresh: Fresh) {
    let batch = vec![event(Action::Viewed, 1, "users", 1.into(), 1)];
    fresh.store.insert_batch(&batch).await.unwrap();
    let reopened = auditlog_store::open(fresh.url()).await.unwrap();
    let page = reopened.query(&by_actor("1")).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].id, batch[0].id);
}

pub(crate) async fn duplicate_ids_inside_one_batch_are_stored_once(fresh: Fresh) {
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

pub(crate) async fn ten_thousand_events_in_one_batch_page_back_in_batch_order(fresh: Fresh) {
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

pub(crate) async fn bodies_round_trip_byte_for_byte(fresh: Fresh) {
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

pub(crate) async fn the_store_answers_a_ping(fresh: Fresh) {
    fresh.store.ping().await.unwrap();
}

pub(crate) async fn large_events_are_split_under_the_servers_size_limits(fresh: Fresh) {
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

pub(crate) async fn concurrent_overlapping_batches_store_each_event_once(fresh: Fresh) {
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

pub(crate) async fn producers_report_what_is_stored_and_what_is_missing(fresh: Fresh) {
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

pub(crate) async fn a_missing_start_of_a_sequence_is_a_gap(fresh: Fresh) {
    let batch: Vec<DataEvent> = [3, 4, 6]
        .into_iter()
        .map(|seq| numbered("relay", seq))
        .collect();
    fresh.store.insert_batch(&batch).await.unwrap();

    let report = fresh.store.producers().await.unwrap();

    assert_eq!(report, [progress("relay", 3, 6, 3, &[(1, 2), (5, 5)])]);
}

pub(crate) async fn only_the_first_hundred_gaps_are_listed_but_all_are_counted(fresh: Fresh) {
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

pub(crate) async fn a_store_without_numbered_events_reports_no_producers(fresh: Fresh) {
    assert_eq!(fresh.store.producers().await.unwrap(), []);
    let batch = vec![event(Action::Viewed, 1, "users", 1.into(), 1)];
    fresh.store.insert_batch(&batch).await.unwrap();
    assert_eq!(fresh.store.producers().await.unwrap(), []);
}

pub(crate) async fn stored_ids_names_exactly_the_stored_events(fresh: Fresh) {
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

pub(crate) async fn a_producer_id_stays_bound_to_its_first_principal(fresh: Fresh) {
    let first = fresh
        .store
        .bind_producer("api-outbox/1", "services/api")
        .await
        .unwrap();
    let again = fresh
        .store
        .bind_producer("api-outbox/1", "services/api")
        .await
        .unwrap();
    let other = fresh
        .store
        .bind_producer("api-outbox/1", "users/1")
        .await
        .unwrap();
    let own = fresh.store.bind_producer("cli/7", "users/1").await.unwrap();

    assert_eq!(first, "services/api");
    assert_eq!(again, "services/api");
    assert_eq!(other, "services/api", "the first principal keeps it");
    assert_eq!(own, "users/1");
}

pub(crate) async fn stored_events_carry_their_receipt_time(fresh: Fresh) {
    let before = auditlog_event::now_ms();
    let e = event(Action::Viewed, 1, "users", 1.into(), 5);
    fresh
        .store
        .insert_batch(std::slice::from_ref(&e))
        .await
        .unwrap();

    let stored = fresh.store.get(e.id).await.unwrap().unwrap();
    let page = fresh.store.query(&by_actor("1")).await.unwrap();

    assert!(stored.received_at >= before, "{}", stored.received_at);
    assert_eq!(stored.timestamp, 5);
    assert_eq!(page.events[0].received_at, stored.received_at);
}
