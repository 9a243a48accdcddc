//! Several auditors on one server store: one sealer at a time (the sealer role),
//! and, on PostgreSQL, whose writers insert in parallel, sealing and tailing only
//! up to the settled `seq`, never past a row that is still being written.

use std::time::{Duration, Instant};

use sqlx::Connection;

use super::*;

pub(crate) async fn one_store_at_a_time_holds_the_sealer_role(fresh: Fresh) {
    let other = auditlog_store::open(fresh.url()).await.unwrap();

    let mut held = fresh.store.sealer_role().await.unwrap().unwrap();
    held.check().await.unwrap();
    assert!(other.sealer_role().await.unwrap().is_none());
    assert!(
        fresh.store.sealer_role().await.unwrap().is_none(),
        "the role is a session's: the same process asking again does not get it twice"
    );

    // The holder goes: its session closes, and the server frees the role.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut taken = loop {
        if let Some(role) = other.sealer_role().await.unwrap() {
            break role;
        }
        assert!(Instant::now() < deadline, "the role was not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    taken.check().await.unwrap();
    assert!(fresh.store.sealer_role().await.unwrap().is_none());
}

/// Starts a transaction on its own connection that inserts one event row and
/// stays open: a writer in flight, holding a `seq` below the ones drawn after it.
async fn writer_in_flight(url: &str) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(
        "BEGIN; INSERT INTO audit_events (id, action, timestamp, actor_type, actor_id, \
         target_type, target_id, received_at, body) VALUES (gen_random_uuid(), 'viewed', 1, \
         'users', '9', 'users', '9', 1, '{}')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

pub(crate) async fn a_write_in_flight_below_the_highest_seq_holds_sealing_and_tails_back(
    fresh: Fresh,
) {
    let mut writer = writer_in_flight(fresh.url()).await;
    let later: Vec<DataEvent> = (0..3)
        .map(|n| event(Action::Viewed, 2, "users", n.into(), n))
        .collect();
    fresh.store.insert_batch(&later).await.unwrap();

    // Three rows committed, but below them a `seq` that may still commit.
    let sealed = fresh.store.seal(100).await.unwrap();
    assert_eq!((sealed.sealed, sealed.size), (0, 0));
    assert_eq!(fresh.store.last_seq().await.unwrap(), 0);
    let tail = fresh
        .store
        .stored_after(&EventQuery::default(), 0, 100)
        .await
        .unwrap();
    assert!(tail.is_empty(), "a tail would skip the row still in flight");

    sqlx::raw_sql("COMMIT").execute(&mut writer).await.unwrap();
    let sealed = fresh.store.seal(100).await.unwrap();
    assert_eq!((sealed.sealed, sealed.size), (4, 4));
    let entries = fresh.store.leaf_entries(0, 10).await.unwrap();
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    let tail = fresh
        .store
        .stored_after(&EventQuery::default(), 0, 100)
        .await
        .unwrap();
    assert_eq!(tail.len(), 4);
    assert_eq!(tail[0].seq, entries[0].seq, "the late commit comes first");
}

pub(crate) async fn an_aborted_write_leaves_a_gap_that_holds_nothing_back(fresh: Fresh) {
    let mut writer = writer_in_flight(fresh.url()).await;
    let later: Vec<DataEvent> = (0..3)
        .map(|n| event(Action::Viewed, 2, "users", n.into(), n))
        .collect();
    fresh.store.insert_batch(&later).await.unwrap();
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut writer)
        .await
        .unwrap();

    let started = Instant::now();
    let sealed = fresh.store.seal(100).await.unwrap();
    assert_eq!((sealed.sealed, sealed.size), (3, 3));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "nothing waits for a gap whose writer is gone"
    );
    assert_eq!(
        fresh.store.last_seq().await.unwrap(),
        fresh.store.leaf_entries(2, 1).await.unwrap()[0].seq
    );
}

/// Sealing on PostgreSQL reads a bounded span of `seq` per page (so that a plan
/// made without statistics cannot read the whole backlog for each page); a gap
/// in `seq` wider than that span, and a first row far above zero, must not stop
/// it.
pub(crate) async fn sealing_goes_on_past_gaps_in_seq_wider_than_its_window(fresh: Fresh) {
    let mut admin = sqlx::PgConnection::connect(fresh.url()).await.unwrap();
    let jump = |by: i64| {
        format!(
            "SELECT setval(pg_get_serial_sequence('audit_events', 'seq'), \
             (SELECT COALESCE(MAX(seq), 0) FROM audit_events) + {by})"
        )
    };
    let batch = |first: i64, n: i64| -> Vec<DataEvent> {
        (first..first + n)
            .map(|k| event(Action::Viewed, 3, "users", k.into(), k))
            .collect()
    };
    // Each gap is wider than the window; the first puts the first row far above zero.
    for (gap, first, n) in [(1_000_000, 0, 3), (25_000, 3, 2_500), (7_000, 2_503, 4)] {
        sqlx::query(sqlx::AssertSqlSafe(jump(gap)))
            .execute(&mut admin)
            .await
            .unwrap();
        fresh.store.insert_batch(&batch(first, n)).await.unwrap();
    }

    let sealed = fresh.store.seal(10_000).await.unwrap();
    assert_eq!((sealed.sealed, sealed.size), (2_507, 2_507));
    let entries = fresh.store.leaf_entries(0, 3_000).await.unwrap();
    assert_eq!(entries.len(), 2_507);
    assert!(entries[0].seq > 1_000_000);
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        fresh.store.last_seq().await.unwrap(),
        entries[2_506].seq,
        "the last row is sealed"
    );
}

/// After a bulk load autovacuum may take many minutes to analyze the new rows;
/// the sealing store does it itself, so that queries are not planned blind.
pub(crate) async fn sealing_a_large_backlog_analyzes_the_tables_it_grew(fresh: Fresh) {
    let mut admin = autovacuum_off(&fresh).await;
    let now = auditlog_event::now_ms();
    for chunk in 0..30 {
        fresh.store.insert_batch(&views(1_000, now)).await.unwrap();
        assert_eq!(
            fresh.store.seal(1_000).await.unwrap().sealed,
            1_000,
            "chunk {chunk}"
        );
    }

    let analyzed = "SELECT relname::text FROM pg_stat_user_tables \
        WHERE schemaname = current_schema() AND last_analyze IS NOT NULL ORDER BY relname";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: Vec<String> = sqlx::query_scalar(analyzed)
            .fetch_all(&mut admin)
            .await
            .unwrap();
        // This month's partition holds every row; the leaves table one per row.
        let partition = done.iter().any(|t| t.starts_with("audit_events_p"));
        if partition && done.iter().any(|t| t == "audit_leaves") {
            break;
        }
        assert!(Instant::now() < deadline, "not analyzed: only {done:?}");
        // The server counts changes a little late; a check is due again after
        // more leaves and a few seconds.
        fresh.store.insert_batch(&views(2_000, now)).await.unwrap();
        fresh.store.seal(2_000).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `count` views by 97 users, dated back from `now` one millisecond apart.
fn views(count: i64, now: i64) -> Vec<DataEvent> {
    (0..count)
        .map(|k| event(Action::Viewed, k % 97, "users", k.into(), now - k))
        .collect()
}

/// A connection to `fresh`'s database, with autovacuum kept off every table it
/// could visit, so that only the store may analyze them.
async fn autovacuum_off(fresh: &Fresh) -> sqlx::PgConnection {
    let mut admin = sqlx::PgConnection::connect(fresh.url()).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(relname) FROM pg_class \
         WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    for table in &tables {
        let off = format!("ALTER TABLE {table} SET (autovacuum_enabled = false)");
        sqlx::raw_sql(sqlx::AssertSqlSafe(off))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    admin
}

/// A database restored or bulk-loaded without statistics may get few new
/// events for a long while: the store's first sealing after it opens analyzes
/// what is stale, without waiting for many new leaves.
pub(crate) async fn the_first_sealing_analyzes_a_bulk_loaded_database(fresh: Fresh) {
    let mut admin = autovacuum_off(&fresh).await;
    let now = auditlog_event::now_ms();
    // The load, behind the sealer's back.
    for _ in 0..30 {
        fresh.store.insert_batch(&views(1_000, now)).await.unwrap();
    }
    // As after a restore, the server has counted the load by the time the
    // auditor starts (it publishes its counts up to a second late).
    let counted = "SELECT COALESCE(SUM(n_mod_since_analyze), 0)::int8 FROM pg_stat_user_tables \
        WHERE schemaname = current_schema() AND relname LIKE 'audit\\_events\\_p%'";
    wait_for_at_least(
        &mut admin,
        counted,
        30_000,
        "the server never counted the load",
    )
    .await;
    // A few leaves, far fewer than a later check waits for.
    assert_eq!(fresh.store.seal(100).await.unwrap().sealed, 100);

    let analyzed = "SELECT COUNT(*) FROM pg_stat_user_tables WHERE schemaname = current_schema() \
        AND relname LIKE 'audit\\_events\\_p%' AND last_analyze IS NOT NULL";
    wait_for_at_least(
        &mut admin,
        analyzed,
        1,
        "this month's partition was not analyzed",
    )
    .await;
}

/// Reads `sql` (one integer) every 200 ms until it is at least `least`; fails
/// saying `what` after 20 s.
async fn wait_for_at_least(
    admin: &mut sqlx::PgConnection,
    sql: &'static str,
    least: i64,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(&mut *admin)
        .await
        .unwrap()
        < least
    {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
