//! One behavioural suite for every transport: the embedded channel and RabbitMQ.
//! Each run uses its own exchange and queue names on the broker, so runs never see
//! each other's messages; they are deleted at the end.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auditlog_amqp::{AmqpConfig, AmqpConsumer, AmqpPublisher};
use auditlog_emit::{Emitter, EmitterConfig, Transport};
use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
use auditlog_store::{
    ActivityCount, AuditStore, EventPage, EventQuery, InsertOutcome, ObjectKey, ProducerProgress,
    StoreError, StoredEvent,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod common;
use common::{delete_topology, private_config};

/// A real SQLite store whose first `failures` inserts fail, as a store that is
/// briefly unavailable does.
struct FlakyStore {
    inner: Arc<dyn AuditStore>,
    failures: AtomicUsize,
}

#[async_trait]
impl AuditStore for FlakyStore {
    async fn insert_batch(&self, events: &[DataEvent]) -> Result<InsertOutcome, StoreError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Unavailable("injected outage".into()));
        }
        self.inner.insert_batch(events).await
    }
    async fn query(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        self.inner.query(query).await
    }
    async fn producers(&self) -> Result<Vec<ProducerProgress>, StoreError> {
        self.inner.producers().await
    }
    async fn stored_ids(&self, ids: &[uuid::Uuid]) -> Result<Vec<uuid::Uuid>, StoreError> {
        self.inner.stored_ids(ids).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn count(&self, query: &EventQuery) -> Result<u64, StoreError> {
        self.inner.count(query).await
    }
    async fn get(&self, id: uuid::Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.inner.get(id).await
    }
    async fn stored_after(
        &self,
        query: &EventQuery,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.stored_after(query, after_seq, limit).await
    }
    async fn last_seq(&self) -> Result<i64, StoreError> {
        self.inner.last_seq().await
    }
    async fn activity(
        &self,
        query: &EventQuery,
        bucket_ms: i64,
    ) -> Result<Vec<ActivityCount>, StoreError> {
        self.inner.activity(query, bucket_ms).await
    }
}

enum Kind {
    Embedded,
    RabbitMq,
}

/// A transport with a consume loop feeding a fresh store.
struct Harness {
    transport: Option<Arc<dyn Transport>>,
    consumer: JoinHandle<()>,
    stop: watch::Sender<bool>,
    store: Arc<dyn AuditStore>,
    amqp: Option<AmqpConfig>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(kind: Kind, store_failures: usize) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store: Arc<dyn AuditStore> = Arc::new(FlakyStore {
            inner: auditlog_store::open(&url).await.unwrap(),
            failures: AtomicUsize::new(store_failures),
        });
        let (stop, stopped) = watch::channel(false);
        let wait = async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        };
        let (transport, consumer, amqp): (Arc<dyn Transport>, _, _) = match kind {
            Kind::Embedded => {
                let (transport, receiver) = auditlog_emit::embedded::channel(8);
                let consumer = tokio::spawn(auditlog_auditor::consumer::run(
                    receiver,
                    store.clone(),
                    wait,
                ));
                (Arc::new(transport), consumer, None)
            }
            Kind::RabbitMq => {
                let config = private_config();
                let inbox = AmqpConsumer::connect(config.clone()).await.unwrap_or_else(|e| {
                    panic!("RabbitMQ must be running for this test (start it with `rabbitmq-server -detached`): {e}")
                });
                let consumer =
                    tokio::spawn(auditlog_auditor::consumer::run(inbox, store.clone(), wait));
                let publisher = AmqpPublisher::new(config.clone(), "test");
                publisher.connect().await.unwrap();
                (Arc::new(publisher), consumer, Some(config))
            }
        };
        Harness {
            transport: Some(transport),
            consumer,
            stop,
            store,
            amqp,
            _dir: dir,
        }
    }

    /// Waits until the store holds `count` events of actor users/1, then stops.
    async fn finish(mut self, count: usize) -> Vec<uuid::Uuid> {
        self.transport = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        let stored = loop {
            let stored = all_ids(&*self.store).await;
            if stored.len() >= count || Instant::now() > deadline {
                break stored;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let _ = self.stop.send(true);
        self.consumer.await.unwrap();
        if let Some(config) = &self.amqp {
            delete_topology(config).await;
        }
        stored
    }
}

fn users() -> ObjectType {
    ObjectType::parse("actorType", "users").unwrap()
}

async fn all_ids(store: &dyn AuditStore) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    let mut query = EventQuery {
        actor: Some(ObjectKey {
            object_type: users(),
            id: "1".into(),
        }),
        page_size: EventQuery::MAX_PAGE_SIZE,
        ..EventQuery::default()
    };
    loop {
        let page = store.query(&query).await.unwrap();
        ids.extend(page.events.iter().map(|e| e.id));
        match page.next {
            Some(cursor) => query.after = Some(cursor),
            None => return ids,
        }
    }
}

/// Emits `count` events through the harness's transport; returns their ids in
/// newest-first order (they share one timestamp, so that is reverse emission order).
async fn emit(harness: &Harness, count: i64) -> Vec<uuid::Uuid> {
    let transport = harness.transport.clone().unwrap();
    let (emitter, task) = Emitter::start(transport, EmitterConfig::default()).unwrap();
    let mut ids = Vec::new();
    for n in 0..count {
        let event = DataEvent::new(
            Action::Viewed,
            ObjectRef::new(users(), 1),
            ObjectRef::new(users(), n),
            1_000,
        );
        ids.push(event.id);
        emitter.emit(event);
    }
    let stats = task.shutdown().await;
    assert_eq!(stats.dropped(), 0);
    assert_eq!(stats.delivered(), count as u64);
    ids.reverse();
    ids
}

macro_rules! for_every_transport {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test(flavor = "multi_thread")] async fn $scenario() { super::$scenario(super::Kind::Embedded).await; } )*
        }
        mod rabbitmq {
            $( #[tokio::test(flavor = "multi_thread")] async fn $scenario() { super::$scenario(super::Kind::RabbitMq).await; } )*
        }
    };
}

for_every_transport!(
    every_event_is_stored_exactly_once_in_order,
    a_failing_store_delays_but_loses_nothing,
);

async fn every_event_is_stored_exactly_once_in_order(kind: Kind) {
    let harness = Harness::start(kind, 0).await;
    let ids = emit(&harness, 20_000).await;
    let stored = harness.finish(ids.len()).await;
    assert_eq!(stored, ids);
}

async fn a_failing_store_delays_but_loses_nothing(kind: Kind) {
    let harness = Harness::start(kind, 3).await;
    let ids = emit(&harness, 2_000).await;
    let stored = harness.finish(ids.len()).await;
    assert_eq!(stored, ids);
}
