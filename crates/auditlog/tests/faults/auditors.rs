//! Several auditors on one queue and one store: three `auditlog auditor`
//! processes as competing consumers of one quorum queue, inserting into one
//! PostgreSQL or MariaDB database while producers publish, one of them SIGKILLed
//! mid-run (the one holding the sealer role) and started again.

use auditlog_store::testing::TestDatabase;
use auditlog_store::{AuditStore, EventQuery};

use super::*;

const EVENTS_PER_PRODUCER: u64 = 50_000;
const PRODUCERS: u64 = 4;
const EVENTS: u64 = EVENTS_PER_PRODUCER * PRODUCERS;
const AUDITORS: usize = 3;

#[tokio::test(flavor = "multi_thread")]
async fn three_auditors_on_one_quorum_queue_into_postgres_store_every_event_once_through_a_kill() {
    three_auditors(auditlog_store::testing::fresh_postgres_url().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_auditors_on_one_quorum_queue_into_mariadb_store_every_event_once_through_a_kill() {
    three_auditors(auditlog_store::testing::fresh_mysql_url().await).await;
}

async fn three_auditors(db: TestDatabase) {
    let amqp = PrivateAmqp::new();
    let mut flags = amqp.flags();
    flags.extend(["--amqp-queue-type".to_owned(), "quorum".to_owned()]);
    // One data directory for all three: they sign the log with the same key, as
    // the auditors of one deployment must (each would have its copy of the key).
    let (_tmp, dir) = data_dir();
    let args = auditor_args(db.url(), &flags);
    // One after the other: the first creates the keys the others then read.
    let mut auditors: Vec<Option<Running>> = Vec::new();
    for _ in 0..AUDITORS {
        auditors.push(Some(Running::start(&args, &dir, 1)));
    }
    let store = auditlog_store::open(db.url()).await.unwrap();
    let holder = wait_for_one_sealer(&auditors, Duration::from_secs(15)).await;

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let config = amqp.config();
            tokio::spawn(async move { publish_numbered(config, p, EVENTS_PER_PRODUCER).await })
        })
        .collect();
    wait_for_stored(&*store, 10_000, Duration::from_secs(120)).await;
    let before_kill = stored(&*store).await;
    // SIGKILL: its session with the database closes with the process, and with it
    // the sealer role.
    auditors[holder].take().unwrap().kill();
    assert!(
        before_kill < EVENTS,
        "the sealer was killed mid-run ({before_kill} of {EVENTS} stored)"
    );
    let successor = wait_for_one_sealer(&auditors, Duration::from_secs(15)).await;
    assert_ne!(successor, holder, "the role moved to a live auditor");
    auditors[holder] = Some(Running::start(&args, &dir, 1));

    let mut emitted = Vec::new();
    for producer in producers {
        emitted.extend(producer.await.unwrap());
    }
    assert_eq!(emitted.len() as u64, EVENTS);
    wait_for_stored(&*store, EVENTS, Duration::from_secs(300)).await;
    // Exactly once: every id is stored, each in one row, and nothing else is.
    let rows = {
        let mut rows = 0;
        for chunk in emitted.chunks(5_000) {
            rows += store.stored_ids(chunk).await.unwrap().len() as u64;
        }
        rows
    };
    assert_eq!(rows, EVENTS, "every event stored, none twice");
    assert_eq!(stored(&*store).await, EVENTS, "nothing else stored");
    let progress = store.producers().await.unwrap();
    assert_eq!(progress.len() as u64, PRODUCERS);
    for producer in &progress {
        assert_eq!(
            (producer.events, producer.last_seq, producer.missing),
            (EVENTS_PER_PRODUCER, EVENTS_PER_PRODUCER, 0),
            "{producer:?}"
        );
    }

    // The log: all of it sealed, by one sealer, and it verifies.
    let deadline = Instant::now() + Duration::from_secs(120);
    while store.tree_size().await.unwrap() < EVENTS {
        assert!(Instant::now() < deadline, "the log was not sealed in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_one_sealer(&auditors, Duration::from_secs(5)).await;
    for auditor in auditors.iter_mut() {
        auditor.take().unwrap().terminate();
    }
    let verified = Command::new(common::binary())
        .args(["verify", "--store-url", db.url()])
        .arg("--data-dir")
        .arg(&dir)
        .env_remove("AUDITLOG_STORE_URL")
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "auditlog verify failed:\n{}\n{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
}

/// Events committed to the store.
async fn stored(store: &dyn AuditStore) -> u64 {
    store.count(&EventQuery::default()).await.unwrap()
}

async fn wait_for_stored(store: &dyn AuditStore, at_least: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while stored(store).await < at_least {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {at_least} events to be stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until exactly one of the running auditors says (`auditlog_log_sealer_role`
/// at 1) that it holds the sealer role, and returns its index.
async fn wait_for_one_sealer(auditors: &[Option<Running>], limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let mut holders = Vec::new();
        for (n, auditor) in auditors.iter().enumerate() {
            if let Some(auditor) = auditor
                && metric(&auditor.urls.auditor, "auditlog_log_sealer_role").await == 1.0
            {
                holders.push(n);
            }
        }
        match holders[..] {
            [one] => return one,
            _ => assert!(
                Instant::now() < deadline,
                "no single sealer: {holders:?} hold the role"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes `count` events numbered by their own producer (so that gaps would
/// show in the store's producer report), all confirmed; returns their ids.
async fn publish_numbered(
    config: auditlog_amqp::AmqpConfig,
    producer: u64,
    count: u64,
) -> Vec<uuid::Uuid> {
    let publisher = AmqpPublisher::new(config, "faults");
    let emitter_config = EmitterConfig {
        queue_capacity: 65_536,
        shutdown_grace: Duration::from_secs(120),
        producer_id: Some(format!("faults/{producer}")),
        ..EmitterConfig::default()
    };
    let (emitter, task) = Emitter::start(Arc::new(publisher), emitter_config).unwrap();
    let users = ObjectType::parse("actorType", "users").unwrap();
    let mut ids = Vec::with_capacity(count as usize);
    for n in 0..count {
        let event = DataEvent::new(
            Action::Viewed,
            ObjectRef::new(users.clone(), producer as i64),
            ObjectRef::new(users.clone(), n as i64),
            1_700_000_000_000 + n as i64,
        );
        ids.push(event.id);
        emitter.emit(event);
        // A bounded queue: give the batching task room rather than drop.
        if n % 10_000 == 9_999 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let stats = task.shutdown().await;
    assert_eq!(stats.dropped(), 0);
    assert_eq!(stats.delivered(), count);
    ids
}
