//! PostgreSQL's time partitions: each event lands in its month's partition (or
//! the DEFAULT one), an id is stored once across partitions, a partition created
//! later takes its month's rows out of the DEFAULT partition, and a time-bounded
//! query reads only the partitions of its range.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;

use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
use auditlog_store::testing::{self, TestDatabase};
use auditlog_store::{AuditStore, EventQuery, ObjectKey};
use sqlx::{Connection, PgConnection};

const DAY: i64 = 24 * 3_600 * 1_000;

fn event(actor: i64, timestamp: i64) -> DataEvent {
    let users = ObjectType::parse("actorType", "users").unwrap();
    DataEvent::new(
        Action::Viewed,
        ObjectRef::new(users.clone(), actor),
        ObjectRef::new(users, 1),
        timestamp,
    )
}

async fn fresh() -> (TestDatabase, Arc<dyn AuditStore>, PgConnection) {
    let db = testing::fresh_postgres_url().await;
    let store = auditlog_store::open(db.url()).await.unwrap();
    let conn = PgConnection::connect(db.url()).await.unwrap();
    (db, store, conn)
}

/// The partition holding the event `id`.
async fn partition_of(conn: &mut PgConnection, id: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT tableoid::regclass::text FROM audit_events WHERE id = $1::uuid")
        .bind(id.to_string())
        .fetch_one(conn)
        .await
        .unwrap()
}

/// `audit_events_pYYYYMM` of a timestamp, worked out by PostgreSQL.
async fn month_table(conn: &mut PgConnection, timestamp: i64) -> String {
    sqlx::query_scalar(
        "SELECT 'audit_events_p' || to_char(to_timestamp($1 / 1000.0) AT TIME ZONE 'UTC', 'YYYYMM')",
    )
    .bind(timestamp)
    .fetch_one(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn each_event_lands_in_its_months_partition_or_the_default_one() {
    let (_db, store, mut conn) = fresh().await;
    let now = auditlog_event::now_ms();
    let recent = event(1, now);
    let last_year = event(2, now - 365 * DAY);
    let ancient = event(3, 1_000);
    let far_future = event(4, now + 20 * 365 * DAY);

    let outcome = store
        .insert_batch(&[
            recent.clone(),
            last_year.clone(),
            ancient.clone(),
            far_future.clone(),
        ])
        .await
        .unwrap();

    assert_eq!(outcome.inserted, 4);
    for (event, expected) in [
        (&recent, month_table(&mut conn, now).await),
        (&last_year, month_table(&mut conn, now - 365 * DAY).await),
        (&ancient, "audit_events_default".to_owned()),
        (&far_future, "audit_events_default".to_owned()),
    ] {
        assert_eq!(partition_of(&mut conn, event.id).await, expected);
    }
    // Months ahead exist before any event needs them.
    let ahead = month_table(&mut conn, now + 80 * DAY).await;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&ahead)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(exists, "{ahead} was created ahead");
    let page = store
        .query(&EventQuery {
            target: Some(ObjectKey {
                object_type: ObjectType::parse("targetType", "users").unwrap(),
                id: "1".into(),
            }),
            ..EventQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = page.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [far_future.id, recent.id, last_year.id, ancient.id]);
}

#[tokio::test]
async fn the_same_id_with_timestamps_in_different_months_is_stored_once() {
    let (_db, store, mut conn) = fresh().await;
    let now = auditlog_event::now_ms();
    let first = event(1, now);
    let mut same_id_last_month = event(1, now - 40 * DAY);
    same_id_last_month.id = first.id;
    let mut same_id_in_the_default = event(1, 7);
    same_id_in_the_default.id = first.id;

    let stored = store
        .insert_batch(std::slice::from_ref(&first))
        .await
        .unwrap();
    let again = store
        .insert_batch(&[same_id_last_month, same_id_in_the_default])
        .await
        .unwrap();
    // Concurrently, from two stores, the same id in two other months.
    let other = auditlog_store::open(_db.url()).await.unwrap();
    let mut in_one_month = event(1, now - 100 * DAY);
    in_one_month.id = first.id;
    let mut in_another = event(1, now - 200 * DAY);
    in_another.id = first.id;
    let (a, b) = tokio::join!(
        store.insert_batch(std::slice::from_ref(&in_one_month)),
        other.insert_batch(std::slice::from_ref(&in_another)),
    );

    assert_eq!((stored.inserted, stored.duplicates), (1, 0));
    assert_eq!((again.inserted, again.duplicates), (0, 2));
    assert_eq!(a.unwrap().inserted + b.unwrap().inserted, 0);
    let rows: Vec<i64> =
        sqlx::query_scalar("SELECT timestamp FROM audit_events WHERE id = $1::uuid")
            .bind(first.id.to_string())
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows, [now], "the first one stored is the one kept");
    assert_eq!(store.stored_ids(&[first.id]).await.unwrap(), [first.id]);
}

#[tokio::test]
async fn a_new_month_partition_takes_its_rows_out_of_the_default_partition() {
    let (_db, store, mut conn) = fresh().await;
    // Two years ago: within the window, but nobody has needed that month yet. A
    // row written directly (as a writer of another release or a restore might)
    // has no partition to go to but the DEFAULT one.
    let then = auditlog_event::now_ms() - 730 * DAY;
    let early = event(1, then);
    sqlx::query(
        "INSERT INTO audit_events (id, action, timestamp, actor_type, actor_id, target_type, \
         target_id, received_at, body) VALUES ($1::uuid, 'viewed', $2, 'users', '1', 'users', \
         '1', 0, $3)",
    )
    .bind(early.id.to_string())
    .bind(then)
    .bind(early.to_json())
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        partition_of(&mut conn, early.id).await,
        "audit_events_default"
    );
    let seq_before: i64 = sqlx::query_scalar("SELECT seq FROM audit_events")
        .fetch_one(&mut conn)
        .await
        .unwrap();

    // The store's next batch of that month creates its partition first.
    let later = event(2, then + 1);
    store
        .insert_batch(std::slice::from_ref(&later))
        .await
        .unwrap();

    let month = month_table(&mut conn, then).await;
    assert_eq!(partition_of(&mut conn, early.id).await, month);
    assert_eq!(partition_of(&mut conn, later.id).await, month);
    let seq_after: i64 = sqlx::query_scalar("SELECT seq FROM audit_events WHERE id = $1::uuid")
        .bind(early.id.to_string())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(seq_after, seq_before, "a moved row keeps its seq");
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events_default")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(in_default, 0);
}

#[tokio::test]
async fn a_time_bounded_query_reads_only_the_partitions_of_its_range() {
    let (_db, store, mut conn) = fresh().await;
    let now = auditlog_event::now_ms();
    let events: Vec<DataEvent> = (0..6).map(|n| event(1, now - n * 40 * DAY)).collect();
    store.insert_batch(&events).await.unwrap();
    sqlx::query("ANALYZE audit_events")
        .execute(&mut conn)
        .await
        .unwrap();
    // Two seconds around one event: within its month (whose partition exists), so
    // neither another month nor the DEFAULT partition (which stands for months
    // without a partition of their own) can hold a match.
    let since = events[1].timestamp - 1_000;
    let until = events[1].timestamp + 1_000;
    // The page query as `sql/queries.rs` builds it for an actor and a range, with
    // the values the store binds.
    let page = "SELECT id::text AS id, seq, timestamp, received_at, body FROM audit_events \
         WHERE 1 = 1 AND actor_type = $1 AND actor_id = $2 AND timestamp >= $3 \
         AND timestamp < $4 ORDER BY audit_events.timestamp DESC, audit_events.id DESC LIMIT 51";
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "PREPARE page (text, text, int8, int8) AS {page}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();

    // A custom plan prunes while planning; a generic one (as a prepared
    // statement may get after five runs) when it starts.
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let explain = format!(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) \
             EXECUTE page ('users', '1', {since}, {until})"
        );
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        // `… Scan on <table>` (an index scan's line names its index first).
        let words: Vec<&str> = plan.split_whitespace().collect();
        let touched: Vec<&str> = words
            .windows(2)
            .filter(|w| w[0] == "on")
            .map(|w| w[1])
            .filter(|table| {
                *table == "audit_events_default"
                    || table
                        .strip_prefix("audit_events_p")
                        .is_some_and(|d| d.len() == 6 && d.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        let months: std::collections::BTreeSet<String> = [
            month_table(&mut conn, since).await,
            month_table(&mut conn, until - 1).await,
        ]
        .into();
        assert!(
            !touched.is_empty() && touched.iter().all(|t| months.contains(*t)),
            "{mode}: only {months:?} may be read:\n{plan}"
        );
        let page = store
            .query(&EventQuery {
                actor: Some(ObjectKey {
                    object_type: ObjectType::parse("actorType", "users").unwrap(),
                    id: "1".into(),
                }),
                since: Some(since),
                until: Some(until),
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].id, events[1].id);
    }
}

/// Whether the table `name` exists.
async fn exists(conn: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_partition_whose_every_event_expired_is_dropped_and_its_leaves_kept() {
    let (_db, store, mut conn) = fresh().await;
    let now = auditlog_event::now_ms();
    let old: Vec<DataEvent> = (0..3).map(|i| event(i, now - 90 * DAY + i)).collect();
    let recent = event(9, now);
    let mut batch = old.clone();
    batch.push(recent.clone());
    store.insert_batch(&batch).await.unwrap();
    let root = store.seal(1000).await.unwrap().root;
    let table = month_table(&mut conn, now - 90 * DAY).await;
    assert!(exists(&mut conn, &table).await);
    let rule = auditlog_store::PruneRule::everything_before(now - 30 * DAY);

    // A hold on the tenant keeps every row, so the partition stays whole.
    let hold = auditlog_store::LegalHold {
        id: uuid::Uuid::now_v7(),
        tenant: "default".into(),
        target: None,
        reason: "litigation".into(),
        placed_by: "users/1".into(),
        placed_at: now,
    };
    store.place_hold(&hold).await.unwrap();
    assert_eq!(store.prune_partitions(&rule).await.unwrap(), 0);
    assert!(exists(&mut conn, &table).await);

    store.release_hold(hold.id).await.unwrap();
    // So does a sink that has not delivered them.
    assert!(store.create_sink("siem", "{}", 0).await.unwrap());
    assert_eq!(store.prune_partitions(&rule).await.unwrap(), 0);
    assert!(exists(&mut conn, &table).await);

    assert!(store.delete_sink("siem").await.unwrap());
    assert_eq!(store.prune_partitions(&rule).await.unwrap(), 3);

    assert!(!exists(&mut conn, &table).await, "the partition is dropped");
    for gone in &old {
        assert_eq!(store.get(gone.id).await.unwrap(), None);
    }
    assert!(store.get(recent.id).await.unwrap().is_some());
    assert_eq!(store.pruned_count(None).await.unwrap().events, 3);
    assert_eq!(store.pruned_leaves(0, 4).await.unwrap().len(), 3);
    // The tree is untouched, and grows on.
    assert_eq!(store.tree_size().await.unwrap(), 4);
    store.insert_batch(&[event(10, now)]).await.unwrap();
    let grown = store.seal(1000).await.unwrap();
    assert_eq!(grown.size, 5);
    assert_ne!(grown.root, root);
    // An event of that month arriving late gets its partition again.
    let late = event(11, now - 90 * DAY);
    store
        .insert_batch(std::slice::from_ref(&late))
        .await
        .unwrap();
    assert_eq!(partition_of(&mut conn, late.id).await, table);
}
