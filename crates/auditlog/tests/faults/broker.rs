//! RabbitMQ failing under load: its connections cut, gone for a minute, and
//! itself restarted.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn cutting_the_brokers_connections_during_load_loses_and_duplicates_nothing() {
    const EVENTS: usize = 40_000;
    let store = auditlog_store::testing::fresh_postgres_url().await;
    let amqp = PrivateAmqp::new();
    let flags = amqp.flags();
    let (_tmp, dir) = data_dir();
    let _auditor = Running::start(&auditor_args(store.url(), &flags), &dir, 1);

    let producer = {
        let amqp = amqp.via(amqp.url.clone());
        tokio::spawn(async move { publish(&amqp, EVENTS, Some(Duration::from_millis(25))).await })
    };
    let mut cuts = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cuts += close_connections(&amqp.queue);
    }
    assert!(cuts >= 2, "connections were cut ({cuts})");
    let emitted = producer.await.unwrap();
    assert_each_stored_once(store.url(), &emitted, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_gone_for_a_minute_under_load_fails_no_request_and_loses_no_event() {
    let setup = Proxied::new().await;
    let (_auditor, api) = setup.start_services();
    let client = Client::new(&api.urls.api).login(1).await;

    let load = Load::start(&client, "outage.example");

    tokio::time::sleep(Duration::from_secs(3)).await;
    setup.proxy.set_down(true);
    let baseline_rss = api.rss_kib();
    let mut peak_rss = baseline_rss;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak_rss = peak_rss.max(api.rss_kib());
    }
    setup.proxy.set_down(false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (views, creates, failures) = load.stop().await;

    assert_eq!(failures, 0, "no request failed");
    assert!(
        peak_rss < 256 * 1024,
        "memory stayed bounded: peak {peak_rss} KiB (at the outage's start {baseline_rss} KiB)"
    );
    assert!(
        views > 1_000,
        "the API was under load during the outage ({views} views)"
    );
    let viewed_sql = "SELECT count(*) FROM audit_events \
                      WHERE action = 'viewed' AND target_type = 'users' AND target_id = '1'";
    // The load's: user 1's own `created`, by the system at the first start, is not.
    let created_sql =
        "SELECT count(*) FROM audit_events WHERE action = 'created' AND actor_type = 'users'";
    let arrived = eventually(Duration::from_secs(120), || {
        count(setup.store.url(), viewed_sql) >= views
            && count(setup.store.url(), created_sql) >= creates
    })
    .await;
    assert_eq!(
        count(setup.store.url(), viewed_sql),
        views,
        "each view stored once (all arrived within 120 s: {arrived})"
    );
    assert_eq!(
        count(setup.store.url(), created_sql),
        creates,
        "each creation stored once (all arrived within 120 s: {arrived})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restarting_rabbitmq_under_load_fails_no_request_and_stores_every_event_once() {
    let broker = PrivateBroker::start();
    let store = auditlog_store::testing::fresh_postgres_url().await;
    let amqp = PrivateAmqp::on_own_broker(broker.url());
    let (_tmp, dir) = data_dir();
    let flags = amqp.flags();
    let auditor = Running::start(&auditor_args(store.url(), &flags), &dir, 1);
    let api = Running::start(&api_args(&flags), &dir, 1);
    let client = Client::new(&api.urls.api).login(1).await;
    let load = Load::start(&client, "restart.example");

    tokio::time::sleep(Duration::from_secs(3)).await;
    // The auditor falls behind, so that messages wait in the queue when the broker
    // goes: they must come back with it.
    signal(auditor.pid(), "STOP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = broker.queue_messages(&amqp.queue);
    // RabbitMQ itself goes down (its connections closed, its port shut) and comes
    // back with what it had written to disk. The auditor carries on meanwhile and
    // finds it gone.
    assert!(broker.ctl(&["stop_app"]), "stop_app");
    signal(auditor.pid(), "CONT");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(broker.ctl(&["start_app"]), "start_app");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (views, creates, failures) = load.stop().await;

    assert_eq!(failures, 0, "no request failed");
    assert!(views > 100, "the API was under load ({views} views)");
    assert!(
        waiting > 0,
        "messages were waiting in the queue when RabbitMQ stopped"
    );
    eprintln!(
        "{waiting} messages waited when RabbitMQ stopped; {views} views, {creates} creations"
    );
    let viewed_sql = "SELECT count(*) FROM audit_events \
                      WHERE action = 'viewed' AND target_type = 'users' AND target_id = '1'";
    let created_sql =
        "SELECT count(*) FROM audit_events WHERE action = 'created' AND actor_type = 'users'";
    let arrived = eventually(Duration::from_secs(120), || {
        count(store.url(), viewed_sql) >= views && count(store.url(), created_sql) >= creates
    })
    .await;
    assert_eq!(
        count(store.url(), viewed_sql),
        views,
        "each view stored once (all arrived within 120 s: {arrived})"
    );
    assert_eq!(
        count(store.url(), created_sql),
        creates,
        "each creation stored once (all arrived within 120 s: {arrived})"
    );
}
