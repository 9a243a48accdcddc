//! Metrics and readiness of the real binary: `/metrics` is scraped before and after
//! each action and every metric it should move is checked to have moved; `/readyz`
//! is checked to follow the store, the transport and the broker as they go away
//! and come back.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, PrivateAmqp, Running, close_connections, data_dir, psql, user_doc};
use serde_json::{Value, json};

/// One scrape of a service's `/metrics`.
struct Scrape {
    text: String,
}

impl Scrape {
    async fn of(base: &str) -> Scrape {
        let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        Scrape {
            text: response.text().await.unwrap(),
        }
    }

    /// The sum of the samples called `name` whose labels include `labels` (0 when
    /// there is none).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (series_name, series_labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                let matches = series_name == name
                    && labels
                        .iter()
                        .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
                matches.then(|| value.parse::<f64>().ok()).flatten()
            })
            .sum()
    }

    /// The text of the `# HELP name …` line, which must appear at most once.
    fn help(&self, name: &str) -> Option<String> {
        let prefix = format!("# HELP {name} ");
        let lines: Vec<&str> = self
            .text
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .collect();
        assert!(
            lines.len() <= 1,
            "{name} is described {} times",
            lines.len()
        );
        lines.first().map(|help| (*help).to_owned())
    }
}

/// Scrapes `base` until `metric` (with `labels`) reaches at least `at_least`;
/// returns that scrape.
async fn scrape_until(base: &str, metric: &str, labels: &[(&str, &str)], at_least: f64) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let scrape = Scrape::of(base).await;
        let value = scrape.value(metric, labels);
        if value >= at_least {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "{metric}{labels:?} stayed at {value}, below {at_least}:\n{}",
            scrape.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET /readyz`: the status and the body.
async fn readyz(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Asks `/readyz` until it answers `status`, and returns the body.
async fn readyz_until(base: &str, status: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (got, body) = readyz(base).await;
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {got}, not {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `code`s of a 503's errors: the checks that failed.
fn failed_checks(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn up_counts_requests_events_commits_and_sealing_on_every_service() {
    let (_tmp, dir) = data_dir();
    let up = Running::up(&dir);
    let urls = up.urls.clone();
    let client = Client::new(&urls.api).login(1).await;
    let users_route = [
        ("service", "api"),
        ("route", "/api/users/{id}"),
        ("method", "GET"),
        ("status", "200"),
    ];
    // Let start-up's own events (none yet, but the sealer ticks) settle.
    let before = Scrape::of(&urls.api).await;

    assert_eq!(client.get("/api/users/1").await.status, 200);

    let after = scrape_until(
        &urls.api,
        "auditlog_emitter_events_delivered_total",
        &[],
        before.value("auditlog_emitter_events_delivered_total", &[]) + 1.0,
    )
    .await;
    assert_eq!(
        after.value("auditlog_http_requests_total", &users_route)
            - before.value("auditlog_http_requests_total", &users_route),
        1.0,
        "one GET of a user, counted under its route template"
    );
    assert!(
        after.value("auditlog_http_request_duration_seconds_count", &users_route)
            > before.value("auditlog_http_request_duration_seconds_count", &users_route)
    );
    assert!(
        !after.text.contains("route=\"/api/users/1\""),
        "raw paths must not become labels"
    );
    assert!(
        after.value("auditlog_emitter_events_emitted_total", &[])
            >= before.value("auditlog_emitter_events_emitted_total", &[]) + 1.0
    );
    assert!(after.value("auditlog_emitter_batch_size_count", &[]) >= 1.0);

    // The embedded transport's consumer committed it: stored, timed, lag measured.
    let stored = [("via", "transport")];
    let after = scrape_until(
        &urls.auditor,
        "auditlog_auditor_events_stored_total",
        &stored,
        before.value("auditlog_auditor_events_stored_total", &stored) + 1.0,
    )
    .await;
    assert!(
        after.value(
            "auditlog_auditor_store_commit_duration_seconds_count",
            &stored
        ) > before.value(
            "auditlog_auditor_store_commit_duration_seconds_count",
            &stored
        )
    );
    assert!(
        after.value(
            "auditlog_auditor_store_commit_duration_seconds_bucket",
            &[("via", "transport"), ("le", "+Inf")]
        ) >= 1.0,
        "commit latency is a real histogram with buckets"
    );
    assert!(after.value("auditlog_auditor_event_lag_seconds_count", &stored) >= 1.0);
    assert!(after.value("auditlog_auditor_commit_batch_size_count", &stored) >= 1.0);

    // The sealer puts what was stored in the tree, and signs a checkpoint of it.
    let stored_now = after.value("auditlog_auditor_events_stored_total", &[]);
    scrape_until(&urls.auditor, "auditlog_log_tree_size", &[], stored_now).await;
    scrape_until(
        &urls.auditor,
        "auditlog_log_checkpoint_size",
        &[],
        stored_now,
    )
    .await;

    // One registry, three services told apart by label.
    let index = reqwest::get(format!("{}/", urls.web)).await.unwrap();
    assert_eq!(index.status().as_u16(), 200);
    let web = Scrape::of(&urls.web).await;
    assert!(
        web.value(
            "auditlog_http_requests_total",
            &[("service", "web"), ("route", "/"), ("status", "200")]
        ) >= 1.0,
        "{}",
        web.text
    );
    assert!(
        web.value(
            "auditlog_http_requests_total",
            &[("service", "auditor"), ("route", "/metrics")]
        ) >= 1.0
    );

    for (service, base) in [
        ("api", &urls.api),
        ("auditor", &urls.auditor),
        ("web", &urls.web),
    ] {
        let (status, body) = readyz(base).await;
        assert_eq!(status, 200, "{service}: {body}");
        assert_eq!(body["meta"]["status"], "ready", "{service}: {body}");
    }
    // Every metric is described, whichever crate records it.
    let described = Scrape::of(&urls.auditor).await;
    for (metric, says) in [
        ("auditlog_http_requests_total", "Requests answered"),
        (
            "auditlog_http_request_duration_seconds",
            "Time until the answer",
        ),
        ("auditlog_emitter_events_delivered_total", "confirmed"),
        ("auditlog_emitter_spill_backlog_bytes", "spill file"),
        ("auditlog_auditor_events_stored_total", "newly committed"),
        ("auditlog_auditor_event_lag_seconds", "behind"),
        ("auditlog_log_tree_size", "Merkle tree"),
        ("auditlog_log_checkpoint_size", "signed"),
        ("auditlog_log_sealer_halted", "stopped signing"),
        ("auditlog_log_sealer_role", "holds the sealer role"),
    ] {
        let help = described
            .help(metric)
            .unwrap_or_else(|| panic!("no # HELP for {metric}:\n{}", described.text));
        assert!(help.contains(says), "{metric}: {help}");
    }

    let (_, api_ready) = readyz(&urls.api).await;
    assert_eq!(api_ready["meta"]["checks"]["database"], "ok");
    assert_eq!(api_ready["meta"]["checks"]["transport"], "ok");
    let (_, auditor_ready) = readyz(&urls.auditor).await;
    assert_eq!(auditor_ready["meta"]["checks"]["store"], "ok");
    let (_, web_ready) = readyz(&urls.web).await;
    assert_eq!(web_ready["meta"]["checks"]["api"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_is_counted_as_dead_lettered_by_reason() {
    let amqp = PrivateAmqp::new();
    let (_tmp, dir) = data_dir();
    let mut args = vec!["auditor", "--auditor-addr", "127.0.0.1:0"];
    let flags = amqp.flags();
    args.extend(flags.iter().map(String::as_str));
    let auditor = Running::start(&args, &dir, 1);
    let base = auditor.urls.auditor.clone();
    let (status, ready) = readyz(&base).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["meta"]["checks"]["consumer"], "ok");
    let before = Scrape::of(&base).await;
    assert_eq!(before.value("auditlog_amqp_consumer_connected", &[]), 1.0);
    // Sized from the messages arriving: it starts where large messages are safe.
    assert_eq!(before.value("auditlog_amqp_consumer_prefetch", &[]), 64.0);
    let not_json = [("reason", "not_json")];

    publish_raw(&amqp, b"this is not an event").await;

    scrape_until(
        &base,
        "auditlog_amqp_dead_lettered_total",
        &not_json,
        before.value("auditlog_amqp_dead_lettered_total", &not_json) + 1.0,
    )
    .await;
    // The consumer's own queue's depth, from the broker.
    let depth = format!("auditlog_amqp_queue_messages{{queue=\"{}\"}}", amqp.queue);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let scrape = Scrape::of(&base).await;
        if scrape.text.lines().any(|l| l.starts_with(&depth)) {
            break;
        }
        assert!(Instant::now() < deadline, "no {depth}:\n{}", scrape.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let described = Scrape::of(&base).await;
    for metric in [
        "auditlog_amqp_dead_lettered_total",
        "auditlog_amqp_consumer_connected",
        "auditlog_amqp_consumer_prefetch",
        "auditlog_amqp_queue_messages",
    ] {
        assert!(
            described.help(metric).is_some(),
            "no # HELP for {metric}:\n{}",
            described.text
        );
    }
    drop(auditor);
}

/// Runs `rabbitmqctl -q ARGS` and asserts that it succeeded.
fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A RabbitMQ user of one test's own, whose rights on the default vhost the test
/// takes away (so that the broker refuses a reconnection for as long as it likes)
/// and gives back, without touching the user other tests connect as. Deleted when
/// dropped.
struct BrokerUser {
    name: String,
    password: String,
}

impl BrokerUser {
    fn new() -> BrokerUser {
        let tag = uuid::Uuid::now_v7().simple().to_string();
        let user = BrokerUser {
            name: format!("auditlog-test-{tag}"),
            password: uuid::Uuid::now_v7().simple().to_string(),
        };
        rabbitmqctl(&["add_user", &user.name, &user.password]);
        user.grant();
        user
    }

    /// `amqp`'s names, connecting as this user to the same broker and vhost.
    fn names(&self, amqp: &PrivateAmqp) -> PrivateAmqp {
        let (_, host_and_vhost) = amqp.url.rsplit_once('@').unwrap();
        amqp.via(format!(
            "amqp://{}:{}@{host_and_vhost}",
            self.name, self.password
        ))
    }

    fn grant(&self) {
        rabbitmqctl(&["set_permissions", "-p", "/", &self.name, ".*", ".*", ".*"]);
    }

    fn revoke(&self) {
        rabbitmqctl(&["clear_permissions", "-p", "/", &self.name]);
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_user", &self.name])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_auditor_is_not_ready_while_rabbitmq_has_dropped_its_consumer() {
    let amqp = PrivateAmqp::new();
    let user = BrokerUser::new();
    let (_tmp, dir) = data_dir();
    let mut args = vec!["auditor", "--auditor-addr", "127.0.0.1:0"];
    let flags = user.names(&amqp).flags();
    args.extend(flags.iter().map(String::as_str));
    let auditor = Running::start(&args, &dir, 1);
    let base = auditor.urls.auditor.clone();
    let (status, ready) = readyz(&base).await;
    assert_eq!(
        (status, &ready["meta"]["checks"]["consumer"]),
        (200, &json!("ok"))
    );

    // The broker drops the consumer's connection and, until its rights come back,
    // refuses the reconnection: without that the consumer is back within
    // milliseconds, too fast to observe.
    user.revoke();
    assert_eq!(
        close_connections(&amqp.queue),
        1,
        "the consumer's connection"
    );

    let not_ready = readyz_until(&base, 503).await;
    assert_eq!(failed_checks(&not_ready), ["consumer"], "{not_ready}");
    let detail = not_ready["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("RabbitMQ"), "{detail}");
    assert_eq!(not_ready["meta"]["checks"]["store"], "ok", "{not_ready}");
    let scrape = Scrape::of(&base).await;
    assert_eq!(scrape.value("auditlog_amqp_consumer_connected", &[]), 0.0);

    user.grant();
    let ready = readyz_until(&base, 200).await;
    assert_eq!(ready["meta"]["checks"]["consumer"], "ok", "{ready}");
    assert_eq!(
        Scrape::of(&base)
            .await
            .value("auditlog_amqp_consumer_connected", &[]),
        1.0
    );

    // Reconnected means consuming again: an event published now is stored.
    let event = json!({"action": "viewed", "actorType": "users", "actorId": 1,
        "targetType": "users", "targetId": "2", "timestamp": 1_764_324_000_000_i64});
    publish_raw(&amqp, event.to_string().as_bytes()).await;
    let stored = [("via", "transport")];
    scrape_until(
        &base,
        "auditlog_auditor_events_stored_total",
        &stored,
        scrape.value("auditlog_auditor_events_stored_total", &stored) + 1.0,
    )
    .await;
    drop(auditor);
}

/// Publishes `body` as it is to the test's own exchange, as a producer would.
async fn publish_raw(amqp: &PrivateAmqp, body: &[u8]) {
    let connection = lapin::Connection::connect(&amqp.url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_publish(
            amqp.exchange.as_str().into(),
            "observability.data.mutated".into(),
            Default::default(),
            body,
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
}

/// A port on which nothing listens.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_auditor_down_the_api_is_not_ready_and_its_events_spill() {
    const USERS: usize = 200;
    // The emitter holds up to half its queue (32 768 events) in memory before it
    // writes to the spill file: list enough users often enough to pass that.
    const LISTS: usize = 32_768 / USERS + 10;
    let (_tmp, dir) = data_dir();
    let auditor_url = format!("http://127.0.0.1:{}", dead_port());
    let api = Running::start(
        &[
            "api",
            "--api-addr",
            "127.0.0.1:0",
            "--auditor-url",
            &auditor_url,
        ],
        &dir,
        1,
    );
    let base = api.urls.api.clone();

    let body = readyz_until(&base, 503).await;
    assert_eq!(failed_checks(&body), ["transport"], "{body}");
    assert_eq!(body["meta"]["checks"]["database"], "ok");
    let detail = body["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("--auditor-url"), "{detail}");

    let client = Client::new(&base).login(1).await;
    let before = Scrape::of(&base).await;
    for n in 0..USERS {
        let created = client
            .post(
                "/api/users",
                user_doc(json!({"name": format!("User {n}"), "email": format!("u{n}@example.com"), "agreedTos": 0})),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
    }
    for _ in 0..LISTS {
        assert_eq!(client.get("/api/users").await.status, 200);
    }

    let after = scrape_until(
        &base,
        "auditlog_emitter_events_spilled_total",
        &[],
        before.value("auditlog_emitter_events_spilled_total", &[]) + 1.0,
    )
    .await;
    assert!(
        after.value("auditlog_emitter_delivery_failures_total", &[])
            > before.value("auditlog_emitter_delivery_failures_total", &[])
    );
    assert!(after.value("auditlog_emitter_events_pending", &[]) > 0.0);
    assert_eq!(
        after.value("auditlog_emitter_events_delivered_total", &[]),
        0.0
    );
    assert_eq!(
        after.value("auditlog_emitter_events_dropped_total", &[]),
        0.0
    );
    assert!(
        after.value(
            "auditlog_http_requests_total",
            &[
                ("service", "api"),
                ("route", "/api/users"),
                ("status", "201")
            ]
        ) >= USERS as f64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_website_is_not_ready_while_the_primary_api_does_not_answer() {
    let (_tmp, dir) = data_dir();
    let api_url = format!("http://127.0.0.1:{}", dead_port());
    let web = Running::start(
        &["web", "--web-addr", "127.0.0.1:0", "--api-url", &api_url],
        &dir,
        1,
    );
    let body = readyz_until(&web.urls.web, 503).await;
    assert_eq!(failed_checks(&body), ["api"], "{body}");
    let detail = body["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("--api-url"), "{detail}");
    let scrape = Scrape::of(&web.urls.web).await;
    assert_eq!(
        scrape.value(
            "auditlog_http_requests_total",
            &[("service", "web"), ("route", "/readyz"), ("status", "503")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_auditor_is_ready_only_while_its_store_answers() {
    let store = auditlog_store::testing::fresh_postgres_url().await;
    let (_tmp, dir) = data_dir();
    let auditor = Running::start(
        &[
            "auditor",
            "--auditor-addr",
            "127.0.0.1:0",
            "--store-url",
            store.url(),
        ],
        &dir,
        1,
    );
    let base = auditor.urls.auditor.clone();
    let (status, body) = readyz(&base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["checks"]["store"], "ok");

    let database = store.url().rsplit('/').next().unwrap().to_owned();
    let admin_url = std::env::var("AUDITLOG_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
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

    let body = readyz_until(&base, 503).await;
    assert_eq!(failed_checks(&body), ["store"], "{body}");
    let detail = body["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("--store-url"), "{detail}");
    assert_eq!(body["errors"][0]["status"], "503");

    psql(
        &admin_url,
        &format!("ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS true"),
    );
    let body = readyz_until(&base, 200).await;
    assert_eq!(body["meta"]["checks"]["store"], "ok");
    drop(auditor);
}
