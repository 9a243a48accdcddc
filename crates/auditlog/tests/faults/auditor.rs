//! The auditor killed mid-ingest and between commit and acknowledgement, and its
//! store unavailable.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn an_auditor_killed_mid_ingest_stores_every_event_exactly_once_after_restart() {
    const EVENTS: usize = 100_000;
    let store = auditlog_store::testing::fresh_postgres_url().await;
    let amqp = PrivateAmqp::new();
    let flags = amqp.flags();
    let (_tmp, dir) = data_dir();
    let auditor = Running::start(&auditor_args(store.url(), &flags), &dir, 1);

    let emitted = publish(&amqp, EVENTS, None).await;
    wait_until(
        Duration::from_secs(60),
        "the auditor to store part of it",
        || count(store.url(), "SELECT count(*) FROM audit_events") >= 5_000,
    )
    .await;
    let before_kill = count(store.url(), "SELECT count(*) FROM audit_events");
    auditor.kill();
    assert!(
        (before_kill as usize) < EVENTS,
        "the auditor was killed mid-ingest ({before_kill} of {EVENTS} stored)"
    );

    let _auditor = Running::start(&auditor_args(store.url(), &flags), &dir, 1);
    assert_each_stored_once(store.url(), &emitted, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_down_for_ten_seconds_delays_ingest_and_loses_nothing() {
    const EVENTS: usize = 20_000;
    let store = auditlog_store::testing::fresh_postgres_url().await;
    let amqp = PrivateAmqp::new();
    let flags = amqp.flags();
    let (_tmp, dir) = data_dir();
    let _auditor = Running::start(&auditor_args(store.url(), &flags), &dir, 1);
    let database = store.url().rsplit('/').next().unwrap().to_owned();
    let admin_url = std::env::var("AUDITLOG_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());

    // The store goes away: no new connections, existing ones cut.
    psql(
        &admin_url,
        &format!("ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS false"),
    );
    psql(
        &admin_url,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{database}'"
        ),
    );
    let emitted = publish(&amqp, EVENTS, None).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Nothing was acknowledged while the store was down: it all waits in the queue
    // (or unacknowledged at the auditor).
    let messages = queue_messages(&amqp.queue).unwrap_or(0);
    assert!(messages > 0, "messages stayed unacknowledged: {messages}");
    psql(
        &admin_url,
        &format!("ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS true"),
    );

    assert_each_stored_once(store.url(), &emitted, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn id_less_messages_redelivered_after_a_crash_between_commit_and_ack_are_stored_once() {
    // Fewer than the consumer's starting prefetch (64): the broker hands all of them over
    // while none is acknowledged.
    const MESSAGES: usize = 50;
    let setup = Proxied::new().await;
    let proxied_flags = setup.through_proxy.flags();
    let auditor = Running::start(
        &auditor_args(setup.store.url(), &proxied_flags),
        &setup.dir,
        1,
    );
    // From now on the broker hears nothing from this auditor: it receives, commits,
    // and its acknowledgements are lost, as if it died right after each commit.
    setup.proxy.set_deaf(true);

    let bodies: Vec<String> = (0..MESSAGES)
        .map(|n| {
            json!({"action": "viewed", "actorType": "users", "actorId": 1,
                   "targetType": "reports", "targetId": format!("r{n}")})
            .to_string()
        })
        .collect();
    publish_prototype_messages(&setup.amqp, &bodies).await;
    wait_until(
        Duration::from_secs(60),
        "every message to be stored",
        || count(setup.store.url(), "SELECT count(*) FROM audit_events") >= MESSAGES as u64,
    )
    .await;
    // Stored, and not one acknowledged. A quorum queue's counts reach
    // `rabbitmqctl` through its statistics, a few seconds late.
    wait_until(
        Duration::from_secs(20),
        "the broker to count every message as unacknowledged",
        || queue_messages(&setup.amqp.queue) == Some(MESSAGES as u64),
    )
    .await;
    auditor.kill();

    // The broker saw the connection close and hands the messages out again.
    let flags = setup.amqp.flags();
    let restarted = Running::start(&auditor_args(setup.store.url(), &flags), &setup.dir, 1);
    wait_until(
        Duration::from_secs(60),
        "the redelivered messages to be acknowledged",
        || queue_messages(&setup.amqp.queue) == Some(0),
    )
    .await;
    assert_eq!(
        count(setup.store.url(), "SELECT count(*) FROM audit_events"),
        MESSAGES as u64,
        "each event stored once"
    );
    let redelivered = metric(
        &restarted.urls.auditor,
        r#"auditlog_auditor_events_duplicate_total{via="transport"}"#,
    )
    .await;
    assert_eq!(redelivered, MESSAGES as f64, "every message came again");
}
