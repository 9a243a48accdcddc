//! RabbitMQ specifics: the prototype's producer works unchanged against existing
//! non-durable topology, and poison messages go to the dead-letter queue with the
//! reason while the consumer keeps going.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog_amqp::{AmqpConfig, AmqpConsumer, REASON_HEADER};
use auditlog_store::{AuditStore, EventQuery, ObjectKey};
use common::{delete_topology, private_config};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use tokio::sync::watch;

async fn connect(config: &AmqpConfig) -> (Connection, Channel) {
    let connection = Connection::connect(&config.url, lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ must be running (start it with `rabbitmq-server -detached`)");
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// Publishes raw bytes as the prototype's producer did: no confirms, not persistent.
async fn publish_raw(channel: &Channel, config: &AmqpConfig, routing_key: &str, body: &[u8]) {
    channel
        .basic_publish(
            config.exchange.as_str().into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Starts a consume loop into a fresh SQLite store.
async fn auditor(
    config: &AmqpConfig,
) -> (
    Arc<dyn AuditStore>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = auditlog_store::open(&url).await.unwrap();
    let inbox = AmqpConsumer::connect(config.clone()).await.unwrap();
    let (stop, mut stopped) = watch::channel(false);
    let consumer = tokio::spawn(auditlog_auditor::consumer::run(
        inbox,
        store.clone(),
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    (store, stop, consumer, dir)
}

async fn events_on(
    store: &dyn AuditStore,
    target_type: &str,
    id: &str,
    count: usize,
) -> Vec<String> {
    let query = EventQuery {
        target: Some(ObjectKey {
            object_type: auditlog_event::ObjectType::parse("targetType", target_type).unwrap(),
            id: id.into(),
        }),
        ..EventQuery::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = store.query(&query).await.unwrap();
        if page.events.len() >= count || Instant::now() > deadline {
            return page.events.into_iter().map(|e| e.body).collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_prototypes_producer_works_unchanged_on_its_non_durable_topology() {
    let config = private_config();
    let (connection, channel) = connect(&config).await;
    // The prototype declared the exchange and the queue non-durable.
    channel
        .exchange_declare(
            config.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_declare(
            config.queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            config.queue.as_str().into(),
            config.exchange.as_str().into(),
            "*.data.mutated".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (store, stop, consumer, _dir) = auditor(&config).await;

    // One event object, no id, no timestamp, as the prototype sent it.
    let event = br#"{"action":"changed","actorType":"users","actorId":1,"targetType":"users","targetId":7,"changes":{"agreedTos":{"prev":0,"next":1}}}"#;
    publish_raw(&channel, &config, "api.data.mutated", event).await;

    let stored = events_on(&*store, "users", "7", 1).await;
    assert_eq!(stored.len(), 1, "the prototype's event was stored");
    let stored: serde_json::Value = serde_json::from_str(&stored[0]).unwrap();
    assert_eq!(stored["changes"]["agreedTos"]["next"], 1);
    assert_eq!(stored["actorId"], 1);
    assert!(stored["id"].as_str().is_some_and(|id| id.len() == 36));

    let _ = stop.send(true);
    consumer.await.unwrap();
    let _ = connection.close(200, "done".into()).await;
    delete_topology(&config).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_are_dead_lettered_with_a_reason_and_the_consumer_goes_on() {
    let config = private_config();
    let (store, stop, consumer, _dir) = auditor(&config).await;
    let (connection, channel) = connect(&config).await;

    let valid = r#"{"action":"viewed","actorType":"users","actorId":1,"targetType":"reports","targetId":"q3"}"#;
    let unknown_action = r#"{"action":"exploded","actorType":"users","actorId":1,"targetType":"reports","targetId":"q3"}"#;
    publish_raw(&channel, &config, "api.data.mutated", b"this is not json").await;
    publish_raw(
        &channel,
        &config,
        "api.data.mutated",
        unknown_action.as_bytes(),
    )
    .await;
    publish_raw(
        &channel,
        &config,
        "api.data.mutated",
        format!("[{valid},{unknown_action}]").as_bytes(),
    )
    .await;
    publish_raw(&channel, &config, "api.data.mutated", valid.as_bytes()).await;

    // The two valid events are stored: the consumer kept going.
    let stored = events_on(&*store, "reports", "q3", 2).await;
    assert_eq!(stored.len(), 2);

    // Three dead letters, each with a reason.
    let mut dead = channel
        .basic_consume(
            config.dead_letter_queue.as_str().into(),
            "test-dead-letters".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), dead.next())
            .await
            .expect("a dead letter arrives")
            .unwrap()
            .unwrap();
        let headers = delivery.properties.headers().clone().unwrap();
        let reason = match headers.inner().get(REASON_HEADER) {
            Some(AMQPValue::LongString(reason)) => reason.to_string(),
            other => panic!("no reason header: {other:?}"),
        };
        reasons.push((String::from_utf8_lossy(&delivery.data).to_string(), reason));
    }
    assert!(
        reasons[0].0 == "this is not json" && reasons[0].1.contains("not JSON"),
        "{reasons:?}"
    );
    for (body, reason) in &reasons[1..] {
        assert!(body.contains("exploded"), "{body}");
        assert!(reason.contains("action"), "{reason}");
    }
    // Nothing is left in the auditor's queue: poison is not requeued forever.
    let queue = channel
        .queue_declare(
            config.queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(queue.message_count(), 0);

    let _ = stop.send(true);
    consumer.await.unwrap();
    let _ = connection.close(200, "done".into()).await;
    delete_topology(&config).await;
}

fn viewed_by_the_api(target_id: i64) -> auditlog_event::DataEvent {
    let users = || auditlog_event::ObjectType::parse("targetType", "users").unwrap();
    auditlog_event::DataEvent::new(
        auditlog_event::Action::Viewed,
        auditlog_event::ObjectRef::new(users(), 1),
        auditlog_event::ObjectRef::new(users(), target_id),
        1_764_300_000_000 + target_id,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn events_published_before_any_auditor_ever_ran_wait_in_the_queue_for_it() {
    use auditlog_emit::Transport;
    let config = private_config();
    // No auditor has declared anything yet: the API is deployed first.
    let publisher = auditlog_amqp::AmqpPublisher::new(config.clone(), "api");
    let batch: Vec<_> = (1..=5).map(viewed_by_the_api).collect();
    publisher.publish(&batch).await.unwrap();

    let (store, stop, consumer, _dir) = auditor(&config).await;
    let mut stored = 0;
    for id in 1..=5 {
        stored += events_on(&*store, "users", &id.to_string(), 1).await.len();
    }
    assert_eq!(
        stored, 5,
        "every event published before the auditor is stored"
    );
    let _ = stop.send(true);
    consumer.await.unwrap();
    delete_topology(&config).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_rabbitmq_cannot_route_counts_as_not_delivered() {
    use auditlog_emit::Transport;
    let config = private_config();
    let publisher = auditlog_amqp::AmqpPublisher::new(config.clone(), "api");
    publisher.connect().await.unwrap();
    // Someone removes the binding behind the publisher's back.
    let (connection, channel) = connect(&config).await;
    channel
        .queue_unbind(
            config.queue.as_str().into(),
            config.exchange.as_str().into(),
            config.binding_key.as_str().into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let outcome = publisher.publish(&[viewed_by_the_api(7)]).await;
    let err = outcome.expect_err("an unroutable batch must not count as delivered");
    assert!(err.to_string().contains("could not route"), "{err}");
    let _ = connection.close(200, "done".into()).await;
    delete_topology(&config).await;
}

/// Single-event messages raise the consumer's prefetch (a new subscription) and a
/// message of thousands lowers it again (another one), while batches are
/// acknowledged with one `multiple` ack each: every event is stored once and no
/// message is left unacknowledged or in the queue.
#[tokio::test(flavor = "multi_thread")]
async fn changing_message_sizes_resize_the_prefetch_and_lose_nothing() {
    const SINGLES: usize = 700;
    const BIG: usize = 3_000;
    // A classic queue: this checks the consumer's own bookkeeping (every message
    // acknowledged). On a quorum queue, under CPU load, messages whose `multiple`
    // ack went out just before the channel closed were sometimes (1 run in 8)
    // counted as ready again after the close: the broker would redeliver them, and
    // the store keeps each event once by id, but the count below would not be 0.
    let config = AmqpConfig {
        queue_type: auditlog_amqp::QueueType::Classic,
        ..private_config()
    };
    let (store, stop, consumer, _dir) = auditor(&config).await;
    let (connection, channel) = connect(&config).await;
    let key = "shop.data.mutated";
    let single = |n: usize| {
        serde_json::json!({"action": "viewed", "actorType": "users", "actorId": 1,
                           "targetType": "carts", "targetId": format!("c{n}")})
        .to_string()
    };
    for n in 0..SINGLES {
        publish_raw(&channel, &config, key, single(n).as_bytes()).await;
    }
    let big: Vec<serde_json::Value> = (0..BIG)
        .map(|n| {
            serde_json::json!({"action": "viewed", "actorType": "users", "actorId": 2,
                               "targetType": "carts", "targetId": format!("b{n}")})
        })
        .collect();
    for _ in 0..2 {
        // Twice the same bytes: the second is a redelivery in all but name and
        // gets the same derived ids.
        publish_raw(
            &channel,
            &config,
            key,
            serde_json::to_string(&big).unwrap().as_bytes(),
        )
        .await;
    }
    for n in SINGLES..2 * SINGLES {
        publish_raw(&channel, &config, key, single(n).as_bytes()).await;
    }

    let expected = (2 * SINGLES + BIG) as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stored = 0;
    while Instant::now() < deadline {
        stored = store.count(&EventQuery::default()).await.unwrap();
        let waiting = channel
            .queue_declare(
                config.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count();
        if stored == expected && waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored, expected);
    // Stopping the consumer closes its channel: anything it had not acknowledged
    // would go back to the queue.
    stop.send(true).unwrap();
    consumer.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requeued = channel
        .queue_declare(
            config.queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    assert_eq!(
        requeued, 0,
        "messages left unacknowledged went back to the queue"
    );
    let _ = connection.close(200, "done".into()).await;
    delete_topology(&config).await;
}
