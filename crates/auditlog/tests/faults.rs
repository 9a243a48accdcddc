//! Fault injection with real processes, real RabbitMQ and real PostgreSQL: the
//! auditor killed mid-ingest and between commit and acknowledgement, broker
//! connections cut, the store unavailable, the primary API killed mid-burst and
//! with a spill backlog, the broker gone for a minute under load, and RabbitMQ
//! itself restarted (a node of the test's own). Each test checks exact counts by
//! event id, and is bounded in time.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

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
use common::{Client, PrivateAmqp, Running, close_connections, data_dir, user_doc};
use serde_json::json;

/// Runs one SQL statement with psql and returns its output, trimmed.
fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args([url, "-X", "-q", "-t", "-A", "-c", sql])
        .output()
        .expect("psql runs (install postgresql-client)");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn count(url: &str, sql: &str) -> u64 {
    psql(url, sql).parse().unwrap_or(0)
}

fn stored_ids(store_url: &str) -> Vec<String> {
    psql(store_url, "SELECT id::text FROM audit_events")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until `check` holds, at most `limit`.
async fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// A RabbitMQ node of the test's own: its own node name, ports, database and logs
/// in a temporary directory, no plugins. Restarting it disturbs no other test (they
/// use the machine's broker). Dropping it stops the node and removes its files,
/// also when the test fails.
struct PrivateBroker {
    node: String,
    port: u16,
    home: tempfile::TempDir,
    server: Option<Child>,
}

impl PrivateBroker {
    fn start() -> PrivateBroker {
        let home = tempfile::tempdir().unwrap();
        let node = format!(
            "auditlog-test-{}@localhost",
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        );
        let (port, dist_port) = (free_port(), free_port());
        for (file, text) in [
            // Empty: nothing of the machine's broker configuration (its node name
            // and port) applies to this node.
            ("rabbitmq-env.conf", ""),
            ("rabbitmq.conf", ""),
            ("enabled_plugins", "[]."),
        ] {
            std::fs::write(home.path().join(file), text).unwrap();
        }
        let log = std::fs::File::create(home.path().join("server.out")).unwrap();
        let server = Command::new(rabbitmq_tool("rabbitmq-server"))
            .current_dir(home.path())
            .env("HOME", home.path())
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env(
                "RABBITMQ_CONF_ENV_FILE",
                home.path().join("rabbitmq-env.conf"),
            )
            .env("RABBITMQ_CONFIG_FILE", home.path().join("rabbitmq.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                home.path().join("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", home.path().join("mnesia"))
            .env("RABBITMQ_LOG_BASE", home.path().join("log"))
            .env("ERL_FLAGS", "-kernel inet_dist_use_interface {127,0,0,1}")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("rabbitmq-server starts (install rabbitmq-server)");
        let broker = PrivateBroker {
            node,
            port,
            home,
            server: Some(server),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !broker.ctl(&["await_startup", "--timeout", "5"]) {
            assert!(
                Instant::now() < deadline,
                "the private RabbitMQ node did not start; see {}",
                broker.home.path().join("server.out").display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        broker
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Runs `rabbitmqctl` against this node; whether it succeeded.
    fn ctl(&self, args: &[&str]) -> bool {
        Command::new(rabbitmq_tool("rabbitmqctl"))
            .args(["-q", "-n", &self.node])
            .args(args)
            .env("HOME", self.home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl PrivateBroker {
    /// Messages in `queue`, ready or delivered and not yet acknowledged.
    fn queue_messages(&self, queue: &str) -> u64 {
        let output = Command::new(rabbitmq_tool("rabbitmqctl"))
            .args(["-q", "-n", &self.node, "list_queues", "name", "messages"])
            .env("HOME", self.home.path())
            .output()
            .expect("rabbitmqctl runs");
        messages_of(&String::from_utf8_lossy(&output.stdout), queue).unwrap_or(0)
    }
}

/// Sends `signal` (`STOP`, `CONT`) to a process this test started.
fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "SIG{signal} to {pid}");
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        // `stop` halts the node; its start script then ends too.
        self.ctl(&["stop"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "the private RabbitMQ node {} did not stop; killing it",
            self.node
        );
        let _ = server.kill();
        let _ = server.wait();
    }
}

/// A port free now, below the kernel's range for outgoing connections (so that
/// none takes it before the broker listens) and outside 35672-35682, where
/// `rabbitmqctl` itself listens while it runs.
fn free_port() -> u16 {
    loop {
        let candidate = 20_000 + (uuid::Uuid::now_v7().as_u128() % 12_000) as u16;
        if (35_672..=35_682).contains(&candidate) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            return candidate;
        }
    }
}

/// A RabbitMQ command: Debian's `/usr/sbin` wrappers switch to the `rabbitmq` user,
/// who cannot write the test's directory, so the real scripts are used when there.
fn rabbitmq_tool(name: &str) -> String {
    let debian = format!("/usr/lib/rabbitmq/bin/{name}");
    if Path::new(&debian).exists() {
        debian
    } else {
        name.to_owned()
    }
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
    wait_until(Duration::from_secs(120), "every event to be stored", || {
        count(store.url(), "SELECT count(*) FROM audit_events") >= EVENTS as u64
    })
    .await;
    let stored = stored_ids(store.url());
    assert_eq!(stored.len(), EVENTS, "no event stored twice");
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), emitted);
}

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
    wait_until(Duration::from_secs(60), "every event to be stored", || {
        count(store.url(), "SELECT count(*) FROM audit_events") >= EVENTS as u64
    })
    .await;
    let stored = stored_ids(store.url());
    assert_eq!(stored.len(), EVENTS);
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), emitted);
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

    wait_until(Duration::from_secs(60), "every event to be stored", || {
        count(store.url(), "SELECT count(*) FROM audit_events") >= EVENTS as u64
    })
    .await;
    let stored = stored_ids(store.url());
    assert_eq!(stored.len(), EVENTS);
    assert_eq!(stored.into_iter().collect::<BTreeSet<_>>(), emitted);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_primary_api_mid_burst_keeps_changes_and_events_one_to_one() {
    let store = auditlog_store::testing::fresh_postgres_url().await;
    let app_db = auditlog_store::testing::fresh_postgres_url().await;
    let amqp = PrivateAmqp::new();
    let flags = amqp.flags();
    let (_tmp, dir) = data_dir();
    let auditor = Running::start(&auditor_args(store.url(), &flags), &dir, 1);
    let mut api_args = vec![
        "api",
        "--api-addr",
        "127.0.0.1:0",
        "--app-db-url",
        app_db.url(),
        "--auditor-url",
        &auditor.urls.auditor,
    ];
    api_args.extend(flags.iter().map(String::as_str));
    let api = Running::start(&api_args, &dir, 1);
    let client = Client::new(&api.urls.api).login(1).await;

    let running = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..16)
        .map(|worker| {
            let (client, running) = (client.clone(), running.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while running.load(Ordering::Relaxed) {
                    let email = format!("w{worker}-{n}@burst.example");
                    let body = user_doc(json!({"name": "Burst", "email": email}));
                    let request = client
                        .http
                        .post(format!("{}/api/users", client.base))
                        .bearer_auth(client.token.clone().unwrap())
                        .header("content-type", common::JSON_API)
                        .body(body.to_string());
                    // After the kill requests fail; that is expected.
                    let _ = request.send().await;
                    n += 1;
                }
            })
        })
        .collect();
    wait_until(
        Duration::from_secs(60),
        "a burst of committed users",
        || count(app_db.url(), "SELECT count(*) FROM users") >= 300,
    )
    .await;
    api.kill();
    running.store(false, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    // After the restart the relay publishes what the kill left in the outbox.
    let _api = Running::start(&api_args, &dir, 1);
    wait_until(Duration::from_secs(60), "the outbox to empty", || {
        count(app_db.url(), "SELECT count(*) FROM audit_outbox") == 0
    })
    .await;
    let committed: BTreeSet<String> = psql(app_db.url(), "SELECT id FROM users WHERE id <> 1")
        .lines()
        .map(str::to_owned)
        .collect();
    // The burst's: user 1's own `created`, by the system at the first start, is not.
    let created_sql = "SELECT target_id FROM audit_events \
                       WHERE action = 'created' AND target_type = 'users' AND actor_type = 'users'";
    wait_until(
        Duration::from_secs(60),
        "every created event to be stored",
        || psql(store.url(), created_sql).lines().count() >= committed.len(),
    )
    .await;
    let created: Vec<String> = psql(store.url(), created_sql)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(committed.len() >= 300);
    assert_eq!(
        created.len(),
        committed.len(),
        "one event per committed change"
    );
    assert_eq!(created.into_iter().collect::<BTreeSet<_>>(), committed);
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
    wait_until(Duration::from_secs(120), "every event to arrive", || {
        count(setup.store.url(), viewed_sql) >= views
            && count(setup.store.url(), created_sql) >= creates
    })
    .await;
    assert_eq!(count(setup.store.url(), viewed_sql), views);
    assert_eq!(count(setup.store.url(), created_sql), creates);
}

#[tokio::test(flavor = "multi_thread")]
async fn id_less_messages_redelivered_after_a_crash_between_commit_and_ack_are_stored_once() {
    // Fewer than the consumer's prefetch (64): the broker hands all of them over
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
    assert_eq!(
        queue_messages(&setup.amqp.queue),
        Some(MESSAGES as u64),
        "stored, and not one acknowledged"
    );
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

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_api_killed_with_a_spill_backlog_delivers_what_it_spilled_exactly_once() {
    // Each list of the users records one `viewed` per user listed: many events
    // from few requests.
    const USERS: u64 = 200;
    let setup = Proxied::new().await;
    let (_auditor, api) = setup.start_services();
    let client = Client::new(&api.urls.api).login(1).await;
    for n in 1..USERS {
        let email = format!("u{n}@spill.example");
        let created = client
            .post(
                "/api/users",
                user_doc(json!({"name": "Listed", "email": email})),
            )
            .await;
        assert_eq!(created.status, 201);
    }
    // Before the outage everything arrives: each creation and its `viewed`.
    let viewed_sql = "SELECT count(*) FROM audit_events WHERE action = 'viewed'";
    let created_sql = "SELECT count(*) FROM audit_events WHERE action = 'created'";
    wait_until(
        Duration::from_secs(60),
        "the creations to be stored",
        || {
            count(setup.store.url(), viewed_sql) >= USERS - 1
                && count(setup.store.url(), created_sql) >= USERS
        },
    )
    .await;
    let viewed_before = count(setup.store.url(), viewed_sql);

    // The broker goes away: the API holds its events in memory, past the
    // spill's mark writes them to disk, and holds the newest in memory again.
    setup.proxy.set_down(true);
    let spill = setup.dir.join("spill").join("api");
    let mut acknowledged = 0;
    let mut lists_after_spill = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    while lists_after_spill < 50 {
        assert!(Instant::now() < deadline, "nothing was spilled");
        let listed = client.get("/api/users").await;
        assert_eq!(listed.status, 200, "no request failed");
        acknowledged += listed.body["data"].as_array().unwrap().len() as u64;
        let spilled_bytes = std::fs::metadata(spill.join("spill.ndjson")).map_or(0, |m| m.len());
        if spilled_bytes > 0 {
            lists_after_spill += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.kill();

    let spilled: BTreeSet<String> = spilled_ids(&spill).into_iter().collect();
    let in_memory = acknowledged - spilled.len() as u64;
    eprintln!(
        "at the kill: {acknowledged} `viewed` events acknowledged during the outage, \
         {} of them spilled, {in_memory} only in memory",
        spilled.len()
    );
    assert!(!spilled.is_empty() && in_memory > 0);

    // Restarted with the broker back, the API delivers what was spilled.
    setup.proxy.set_down(false);
    let _api = setup.start_api();
    let expected = viewed_before + spilled.len() as u64;
    wait_until(
        Duration::from_secs(120),
        "the spilled events to arrive",
        || count(setup.store.url(), viewed_sql) >= expected,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored: BTreeSet<String> = stored_ids(setup.store.url()).into_iter().collect();
    let missing = spilled.difference(&stored).count();
    assert_eq!(missing, 0, "every spilled event arrived");
    assert_eq!(
        count(setup.store.url(), viewed_sql),
        expected,
        "each spilled event stored once, and nothing that was only in memory"
    );
    let numbered_once = "SELECT count(DISTINCT (producer_id, producer_seq)) FROM audit_events \
                         WHERE action = 'viewed'";
    assert_eq!(
        count(setup.store.url(), numbered_once),
        expected,
        "no number twice"
    );
    // What the producers' report can see of the loss: the killed producer's holes
    // below the highest number stored (events lost above it leave no hole).
    let holes = count(
        setup.store.url(),
        "SELECT max(producer_seq) - count(*) FROM audit_events WHERE producer_id = \
         (SELECT producer_id FROM audit_events WHERE action = 'viewed' \
          ORDER BY seq DESC LIMIT 1)",
    );
    eprintln!(
        "after the restart: {} spilled events stored once, {in_memory} lost; \
         the killed producer shows {holes} missing in /api/producers",
        spilled.len()
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
    wait_until(Duration::from_secs(120), "every event to arrive", || {
        count(store.url(), viewed_sql) >= views && count(store.url(), created_sql) >= creates
    })
    .await;
    assert_eq!(
        count(store.url(), viewed_sql),
        views,
        "each view stored once"
    );
    assert_eq!(
        count(store.url(), created_sql),
        creates,
        "each creation stored once"
    );
}
