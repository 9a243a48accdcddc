//! Fault injection with real processes, real RabbitMQ and real PostgreSQL: the
//! auditor killed mid-ingest and between commit and acknowledgement, broker
//! connections cut, the store unavailable, the primary API killed mid-burst and
//! with a spill backlog, the broker gone for a minute under load, and RabbitMQ
//! itself restarted (a node of the test's own), and three auditors sharing one
//! queue and one store while their sealer is killed; audited reads refused when
//! their record cannot be committed, and killed mid-burst. Each test checks exact
//! counts by event id, and is bounded in time.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auditlog_amqp::AmqpPublisher;
use auditlog_bench::proxy::TcpProxy;
use auditlog_emit::{Emitter, EmitterConfig};
use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
use common::{Client, PrivateAmqp, Running, close_connections, data_dir, psql, user_doc};
use serde_json::json;

mod auditor;
mod auditors;
mod broker;
mod primary_api;
mod private_broker;
mod reads;

use private_broker::{PrivateBroker, signal};

fn count(url: &str, sql: &str) -> u64 {
    psql(url, sql).parse().unwrap_or(0)
}

fn stored_ids(store_url: &str) -> Vec<String> {
    psql(store_url, "SELECT id::text FROM audit_events")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits up to `limit` until the store holds as many events as were `emitted`,
/// then checks it holds exactly those, each once.
async fn assert_each_stored_once(store_url: &str, emitted: &BTreeSet<String>, limit: Duration) {
    let arrived = eventually(limit, || {
        count(store_url, "SELECT count(*) FROM audit_events") >= emitted.len() as u64
    })
    .await;
    let stored = stored_ids(store_url);
    assert_eq!(
        stored.len(),
        emitted.len(),
        "each event stored once (as many arrived within {limit:?}: {arrived})"
    );
    assert_eq!(&stored.into_iter().collect::<BTreeSet<_>>(), emitted);
}

/// Waits until `check` holds, at most `limit`.
async fn wait_until(limit: Duration, what: &str, check: impl FnMut() -> bool) {
    assert!(
        eventually(limit, check).await,
        "timed out waiting for {what}"
    );
}

/// Waits up to `limit` for `check` to hold and says whether it did, for a caller
/// whose own assertions then show what was there (how many events arrived) where
/// a bare timeout would not tell a slow store from a lost event.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Messages in `queue` of the shared broker, ready or delivered and not yet
/// acknowledged, as the broker counts them; `None` when it has no such queue.
fn queue_messages(queue: &str) -> Option<u64> {
    let output = Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "messages"])
        .output()
        .expect("rabbitmqctl runs");
    messages_of(&String::from_utf8_lossy(&output.stdout), queue)
}

/// The count of `queue` in `rabbitmqctl list_queues name messages` output.
fn messages_of(listing: &str, queue: &str) -> Option<u64> {
    listing
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(queue)).then(|| words.next()?.parse().ok())
        })
        .flatten()
}

/// The value of one series (`name{labels}` as Prometheus prints it) in a
/// service's `/metrics`; 0 when it is not there.
async fn metric(base: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Publishes each body as one persistent message, as the prototype's producer did
/// (one event per message, no `id`), and waits for the broker's confirms.
async fn publish_prototype_messages(amqp: &PrivateAmqp, bodies: &[String]) {
    let connection = lapin::Connection::connect(&amqp.url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    for body in bodies {
        let confirmation = channel
            .basic_publish(
                amqp.exchange.as_str().into(),
                "api.data.mutated".into(),
                Default::default(),
                body.as_bytes(),
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirmation.is_ack(), "the broker took the message");
    }
    let _ = connection.close(200, "published".into()).await;
}

/// The ids of the events waiting in the spill directory `dir`: each complete
/// line of its file from the cursor on (a line torn by a crash is not an event).
fn spilled_ids(dir: &Path) -> Vec<String> {
    let data = std::fs::read(dir.join("spill.ndjson")).unwrap_or_default();
    let cursor = std::fs::read_to_string(dir.join("spill.cursor"))
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(data.len());
    data[cursor..]
        .split(|byte| *byte == b'\n')
        .filter_map(|line| {
            let event: serde_json::Value = serde_json::from_slice(line).ok()?;
            event["id"].as_str().map(str::to_owned)
        })
        .collect()
}

/// A steady load on the primary API from 4 clients: 9 requests in 10 read user 1
/// (one `viewed` of users/1 each), 1 in 10 creates a user with an email at
/// `domain` (one `created`). Each request is counted when answered as it should
/// be, else as a failure.
struct Load {
    running: Arc<AtomicBool>,
    views: Arc<AtomicU64>,
    creates: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &Client, domain: &str) -> Load {
        let running = Arc::new(AtomicBool::new(true));
        let views = Arc::new(AtomicU64::new(0));
        let creates = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let workers = (0..4)
            .map(|worker| {
                let (client, running, domain) =
                    (client.clone(), running.clone(), domain.to_owned());
                let (views, creates, failures) = (views.clone(), creates.clone(), failures.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while running.load(Ordering::Relaxed) {
                        let ok = if n.is_multiple_of(10) {
                            let email = format!("w{worker}-{n}@{domain}");
                            let created = client
                                .post(
                                    "/api/users",
                                    user_doc(json!({"name": "Load", "email": email})),
                                )
                                .await;
                            let ok = created.status == 201;
                            if ok {
                                creates.fetch_add(1, Ordering::Relaxed);
                            }
                            ok
                        } else {
                            let ok = client.get("/api/users/1").await.status == 200;
                            if ok {
                                views.fetch_add(1, Ordering::Relaxed);
                            }
                            ok
                        };
                        if !ok {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        Load {
            running,
            views,
            creates,
            failures,
            workers,
        }
    }

    /// Stops the load; returns the views and creations answered, and the failures.
    async fn stop(self) -> (u64, u64, u64) {
        self.running.store(false, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        (
            self.views.load(Ordering::Relaxed),
            self.creates.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

/// What the tests that put a proxy between a service and RabbitMQ start from: a
/// fresh store, RabbitMQ names of their own, the proxy to the broker and the same
/// names through it, and a data directory. Declared before the services, so that
/// it outlives them.
struct Proxied {
    store: auditlog_store::testing::TestDatabase,
    amqp: PrivateAmqp,
    proxy: TcpProxy,
    through_proxy: PrivateAmqp,
    dir: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl Proxied {
    async fn new() -> Proxied {
        let store = auditlog_store::testing::fresh_postgres_url().await;
        let amqp = PrivateAmqp::new();
        let proxy = TcpProxy::start("127.0.0.1:5672").await.unwrap();
        let through_proxy = amqp.via(format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port()));
        let (_tmp, dir) = data_dir();
        Proxied {
            store,
            amqp,
            proxy,
            through_proxy,
            dir,
            _tmp,
        }
    }
}

impl Proxied {
    /// The auditor, on the broker directly, and the primary API, through the proxy.
    fn start_services(&self) -> (Running, Running) {
        let auditor_flags = self.amqp.flags();
        let auditor = Running::start(
            &auditor_args(self.store.url(), &auditor_flags),
            &self.dir,
            1,
        );
        (auditor, self.start_api())
    }

    /// The primary API, through the proxy.
    fn start_api(&self) -> Running {
        Running::start(&api_args(&self.through_proxy.flags()), &self.dir, 1)
    }
}

/// `auditlog api` on a free port with the `--amqp-*` `flags`.
fn api_args(flags: &[String]) -> Vec<&str> {
    let mut args = vec!["api", "--api-addr", "127.0.0.1:0"];
    args.extend(flags.iter().map(String::as_str));
    args
}

fn auditor_args<'a>(store_url: &'a str, flags: &'a [String]) -> Vec<&'a str> {
    let mut args = vec![
        "auditor",
        "--auditor-addr",
        "127.0.0.1:0",
        "--store-url",
        store_url,
    ];
    args.extend(flags.iter().map(String::as_str));
    args
}

/// Publishes `count` events to RabbitMQ as a producer would, all confirmed, and
/// returns their ids.
async fn publish(amqp: &PrivateAmqp, count: usize, pace: Option<Duration>) -> BTreeSet<String> {
    let publisher = AmqpPublisher::new(amqp.config(), "faults");
    let config = EmitterConfig {
        queue_capacity: 200_000,
        shutdown_grace: Duration::from_secs(60),
        ..EmitterConfig::default()
    };
    let (emitter, task) = Emitter::start(Arc::new(publisher), config).unwrap();
    let users = ObjectType::parse("actorType", "users").unwrap();
    let mut ids = BTreeSet::new();
    for n in 0..count {
        let event = DataEvent::new(
            Action::Viewed,
            ObjectRef::new(users.clone(), 1),
            ObjectRef::new(users.clone(), n as i64),
            1_700_000_000_000 + n as i64,
        );
        ids.insert(event.id.to_string());
        emitter.emit(event);
        if let Some(pace) = pace
            && n % 1_000 == 999
        {
            tokio::time::sleep(pace).await;
        }
    }
    let stats = task.shutdown().await;
    assert_eq!(stats.dropped(), 0);
    assert_eq!(stats.delivered(), count as u64);
    ids
}
