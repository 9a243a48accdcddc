//! Log streams against real receivers: each test runs `auditlog up` on free
//! ports, stores events through the auditor's HTTP ingest, adds a sink over
//! `/api/sinks` and checks what the receiver got.
//!
//! - webhook: a receiver that verifies every request with the Standard Webhooks
//!   Python package (installed into a venv under `target/` if missing), down
//!   (500) for a while in the middle;
//! - syslog: a real rsyslog (Debian's package, installed by the test when
//!   missing) on a free port, octet-counted TCP, plain and over TLS with a
//!   certificate made by the test (the openssl command);
//! - HTTPS: a webhook receiver behind a test CA, trusted through `caCert`, and
//!   refused without it;
//! - Splunk HEC and Datadog: local receivers checking the documented shape, and
//!   the `auditlog sinks` commands;
//! - files: rotation, and closed files never rewritten;
//! - fault: the auditor SIGKILLed while a sink is behind;
//! - two auditors on one PostgreSQL store: one at a time delivers a sink, and the
//!   survivor takes it over when the holder dies (after the 45 s lease);
//! - ignored measurements: throughput per kind, lag under a steady load.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use common::{Client, Running, data_dir};
use serde_json::{Value, json};

/// Events stored per ingest request.
const INGEST_CHUNK: usize = 2_000;

/// `n` new `viewed` events with their ids.
fn new_events(n: usize) -> Vec<(uuid::Uuid, Value)> {
    let now = auditlog_event::now_ms();
    (0..n)
        .map(|i| {
            let id = uuid::Uuid::now_v7();
            let event = json!({
                "id": id,
                "action": "viewed",
                "timestamp": now,
                "actorType": "users",
                "actorId": 1,
                "targetType": "notes",
                "targetId": format!("note-{i}"),
                "eventName": "note.viewed",
            });
            (id, event)
        })
        .collect()
}

/// Stores `events` through the auditor's HTTP ingest, as NDJSON.
async fn ingest(admin: &Client, events: &[(uuid::Uuid, Value)]) {
    for chunk in events.chunks(INGEST_CHUNK) {
        let mut body = Vec::new();
        for (_, event) in chunk {
            body.extend_from_slice(event.to_string().as_bytes());
            body.push(b'\n');
        }
        let answer = admin
            .raw("POST", "/api/data-events", "application/x-ndjson", body)
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

/// The auditor of `running`, as the admin (user 1).
async fn admin_of(running: &Running) -> Client {
    let token = Client::new(&running.urls.api).login(1).await.token;
    Client {
        token,
        ..Client::new(&running.urls.auditor)
    }
}

/// Adds sink `name` with `definition`.
async fn add_sink(admin: &Client, name: &str, definition: Value) -> Value {
    let answer = admin
        .post(
            "/api/sinks",
            json!({"data": {"type": "sinks", "id": name, "attributes": definition}}),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.body
}

/// Waits until `done` says so, or fails after `limit` naming `what`.
async fn wait_until(limit: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether every event of `expected` is among the `arrived` ids.
fn all_arrived(
    expected: &[(uuid::Uuid, Value)],
    arrived: impl IntoIterator<Item = String>,
) -> bool {
    let arrived: HashSet<String> = arrived.into_iter().collect();
    expected
        .iter()
        .all(|(id, _)| arrived.contains(&id.to_string()))
}

/// Checks that `received` (event id and seq, in arrival order) holds every id
/// of `expected`, and that, each event counted at its first arrival, seqs only
/// grow (log order; a batch delivered again comes after the first time).
/// Answers how many arrivals were repeats.
fn check_complete_and_in_order(
    received: &[(String, i64)],
    expected: &[(uuid::Uuid, Value)],
) -> usize {
    let mut seen = HashSet::new();
    let mut last_seq = 0;
    for (id, seq) in received {
        if seen.insert(id.clone()) {
            assert!(
                *seq > last_seq,
                "event {id} (seq {seq}) arrived after seq {last_seq}: not in log order"
            );
            last_seq = *seq;
        }
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|(id, _)| !seen.contains(&id.to_string()))
        .collect();
    assert!(missing.is_empty(), "{} events never arrived", missing.len());
    received.len() - seen.len()
}

// ---------------------------------------------------------------------------
// Webhook, verified by the Standard Webhooks Python package.

/// The receiver: verifies each request with `standardwebhooks`, refuses (400)
/// what does not verify, answers 500 while the file `fail` exists, and appends
/// `seq id` per delivered event to `received`.
const WEBHOOK_RECEIVER: &str = r#"
import os, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from standardwebhooks.webhooks import Webhook

secret, port_file, received_path, fail_flag = sys.argv[1:5]
hook = Webhook(secret)
lock = threading.Lock()
received = open(received_path, "a")

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            document = hook.verify(body, headers)
        except Exception as error:
            self.send_response(400)
            self.end_headers()
            self.wfile.write(("refused: %s" % error).encode())
            return
        if os.path.exists(fail_flag):
            self.send_response(500)
            self.end_headers()
            return
        with lock:
            for resource in document["data"]:
                received.write("%d %s\n" % (resource["attributes"]["seq"], resource["id"]))
            received.flush()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
"#;

/// A Python with `standardwebhooks`: a venv under the target directory, made
/// (and the package installed from PyPI) on first use.
fn standard_webhooks_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("standardwebhooks-venv");
    let python = venv.join("bin/python");
    let importable = |python: &Path| {
        Command::new(python)
            .args(["-c", "import standardwebhooks"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable(&python) {
        return python;
    }
    common::with_install_lock(|| make_standard_webhooks_venv(&venv, &python, importable));
    python
}

/// Makes the venv `venv` and installs `standardwebhooks` in it with pip,
/// unless another test process did while this one waited for the lock.
fn make_standard_webhooks_venv(venv: &Path, python: &Path, importable: impl Fn(&Path) -> bool) {
    if importable(python) {
        return;
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status();
    assert!(
        made.is_ok_and(|s| s.success()),
        "could not make a Python venv at {} (is python3 with venv installed?)",
        venv.display()
    );
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "standardwebhooks"])
        .status();
    assert!(
        installed.is_ok_and(|s| s.success()) && importable(python),
        "could not install the Python package standardwebhooks into {}: \
         the webhook test verifies signatures with it (pip needs to reach PyPI once)",
        venv.display()
    );
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `path` until it exists, then its text.
fn read_when_written(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} was never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `seq id` lines as (id, seq).
fn received_lines(path: &Path) -> Vec<(String, i64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (seq, id) = line.split_once(' ')?;
            Some((id.to_owned(), seq.parse().ok()?))
        })
        .collect()
}

/// Events in the webhook test (the issue's number).
const WEBHOOK_EVENTS: usize = 50_000;

/// How long the webhook receiver stays down in the middle (the issue's figure).
const OUTAGE: Duration = Duration::from_secs(60);

/// How soon after the receiver is back the sink must deliver again: its
/// backoff is capped at 10 s (less up to half of it, jitter), so a longer
/// outage only repeats the same retries.
const RECOVERY: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_webhook_receiver_verifying_every_request_gets_every_event_in_order_despite_an_outage() {
    let python = standard_webhooks_python();
    let (dir, data) = data_dir();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYqr";
    let (port_file, received, fail_flag) = (
        dir.path().join("port"),
        dir.path().join("received"),
        dir.path().join("fail"),
    );
    let script = dir.path().join("receiver.py");
    std::fs::write(&script, WEBHOOK_RECEIVER).unwrap();
    let _receiver = Killed(
        Command::new(&python)
            .arg(&script)
            .args([secret, port_file.to_str().unwrap()])
            .args([received.to_str().unwrap(), fail_flag.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let receiver_url = format!("http://127.0.0.1:{}/hook", read_when_written(&port_file));
    let running = Running::up(&data);
    let admin = admin_of(&running).await;
    let events = new_events(WEBHOOK_EVENTS);
    ingest(&admin, &events).await;

    // The receiver refuses what its library cannot verify.
    let http = reqwest::Client::new();
    let unsigned = http
        .post(&receiver_url)
        .body(r#"{"data":[]}"#)
        .send()
        .await
        .unwrap();
    let key = auditlog_sinks::definition::webhook_key(secret).unwrap();
    let now = auditlog_event::now_ms() / 1000;
    let signature =
        auditlog_sinks::format::webhook_signature(&key, "msg_1", now, br#"{"data":[]}"#).unwrap();
    let altered = http
        .post(&receiver_url)
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .body(r#"{"data":[{}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 400);
    assert_eq!(altered.status().as_u16(), 400);

    let started = Instant::now();
    add_sink(
        &admin,
        "siem",
        json!({"kind": "webhook", "url": receiver_url, "secret": secret,
               "batchSize": 500, "failingAfterSecs": 1}),
    )
    .await;
    wait_until(
        Duration::from_secs(60),
        "a quarter of the events",
        async || received_lines(&received).len() >= WEBHOOK_EVENTS / 4,
    )
    .await;

    // The receiver goes down: deliveries fail, the sink is marked failing, and
    // keeps its place.
    std::fs::write(&fail_flag, b"").unwrap();
    let down_since = Instant::now();
    let stalled_at = received_lines(&received).len();
    wait_until(
        Duration::from_secs(30),
        "the sink to be marked failing",
        async || {
            let sink = admin.get("/api/sinks/siem").await.body;
            sink["data"]["attributes"]["status"]["failing"] == json!(true)
        },
    )
    .await;
    let ready = admin.get("/readyz").await;
    assert_eq!(
        ready.status, 200,
        "a failing sink does not make the auditor unready"
    );
    assert_eq!(
        ready.body["meta"]["details"]["sinks"]["failing"][0]["sink"], "siem",
        "{}",
        ready.body
    );
    let sink = admin.get("/api/sinks/siem").await.body;
    let status = &sink["data"]["attributes"]["status"];
    assert!(status["failedAttempts"].as_u64().unwrap() >= 1, "{status}");
    assert!(
        status["lastError"].as_str().unwrap().contains("500"),
        "{status}"
    );
    assert!(status["lagEvents"].as_i64().unwrap() > 0, "{status}");
    assert_eq!(sink["data"]["attributes"]["secret"], "***");
    tokio::time::sleep(OUTAGE.saturating_sub(down_since.elapsed())).await;
    assert!(
        received_lines(&received).len() <= stalled_at + 500,
        "nothing is delivered while the receiver fails"
    );

    // It comes back: delivery resumes within the capped backoff, and everything
    // arrives.
    std::fs::remove_file(&fail_flag).unwrap();
    let back_at = Instant::now();
    let before = received_lines(&received).len();
    wait_until(
        RECOVERY,
        "delivery to resume after the outage",
        async || received_lines(&received).len() > before,
    )
    .await;
    let resumed_after = back_at.elapsed();
    wait_until(Duration::from_secs(120), "every event", async || {
        all_arrived(
            &events,
            received_lines(&received).into_iter().map(|(id, _)| id),
        )
    })
    .await;
    let elapsed = started.elapsed();
    let repeats = check_complete_and_in_order(&received_lines(&received), &events);
    eprintln!(
        "webhook: {WEBHOOK_EVENTS} events in {:.1} s including the {} s outage, {repeats} \
         repeated; delivering again {:.1} s after the receiver was back",
        elapsed.as_secs_f64(),
        OUTAGE.as_secs(),
        resumed_after.as_secs_f64()
    );
    let metrics = reqwest::get(format!("{}/metrics", running.urls.auditor))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("auditlog_sink_delivered_events_total{sink=\"siem\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("auditlog_sink_lag_events{sink=\"siem\"}"));
    wait_until(Duration::from_secs(10), "the sink to recover", async || {
        let sink = admin.get("/api/sinks/siem").await.body;
        sink["data"]["attributes"]["status"]["failing"] == json!(false)
    })
    .await;
}

// ---------------------------------------------------------------------------
// Local HTTP receivers (Splunk HEC, Datadog, the fault test's webhook).

/// What a local receiver got: each request's path, headers and body.
#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<(String, HeaderMap, Bytes)>>,
    /// While set, every request is answered 500.
    failing: AtomicBool,
    /// How long each answer takes.
    delay: Duration,
}

impl Recorder {
    /// The ids of the events received at `path` (every path when `None`), from
    /// JSON:API webhook documents or Splunk HEC event objects, in arrival order.
    fn ids_at(&self, path: Option<&str>) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| path.is_none_or(|path| p == path))
            .flat_map(|(_, _, body)| {
                serde_json::Deserializer::from_slice(body)
                    .into_iter::<Value>()
                    .map_while(Result::ok)
                    .flat_map(|value| match value["data"].as_array() {
                        Some(data) => data.iter().map(|r| r["id"].clone()).collect(),
                        None => vec![value["event"]["id"].clone()],
                    })
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The events of the JSON:API webhook requests received, as (id, seq), in
    /// arrival order.
    fn webhook_arrivals(&self) -> Vec<(String, i64)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, _, body)| webhook_events(body))
            .collect()
    }
}

/// A receiver on a free port, answering `ok` with 200.
async fn local_receiver(delay: Duration) -> (String, Arc<Recorder>) {
    let (app, recorder) = recording_app(delay);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, recorder)
}

/// A receiver as [`local_receiver`], over HTTPS with `certificates`' server
/// certificate: its `https://localhost:PORT` URL.
async fn local_https_receiver(certificates: &TestCertificates) -> (String, Arc<Recorder>) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(&certificates.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&certificates.key).unwrap();
    // ring, as the sinks use (deprecated only for lacking post-quantum exchange).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}", tcp.local_addr().unwrap().port());
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    let (app, recorder) = recording_app(Duration::ZERO);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, recorder)
}

/// A TCP listener whose connections speak TLS, for `axum::serve`. A failed
/// handshake (a client that does not trust the certificate) is dropped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, address)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(stream) = self.acceptor.accept(stream).await {
                return (stream, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// The app of a local receiver that records what it gets, answering after
/// `delay`.
fn recording_app(delay: Duration) -> (axum::Router, Arc<Recorder>) {
    let recorder = Arc::new(Recorder {
        delay,
        ..Recorder::default()
    });
    async fn take(
        State(recorder): State<Arc<Recorder>>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, &'static str) {
        tokio::time::sleep(recorder.delay).await;
        if recorder.failing.load(Ordering::SeqCst) {
            return (StatusCode::INTERNAL_SERVER_ERROR, "down");
        }
        recorder
            .requests
            .lock()
            .unwrap()
            .push((uri.path().to_owned(), headers, body));
        (StatusCode::OK, r#"{"text":"Success","code":0}"#)
    }
    let app = axum::Router::new()
        .fallback(take)
        .with_state(recorder.clone());
    (app, recorder)
}

#[tokio::test]
async fn an_https_receiver_behind_a_private_ca_gets_every_event_and_an_untrusted_one_is_refused() {
    let (dir, data) = data_dir();
    let certificates = test_certificates(dir.path());
    let (url, receiver) = local_https_receiver(&certificates).await;
    let running = Running::up(&data);
    let admin = admin_of(&running).await;
    let events = new_events(2_000);
    ingest(&admin, &events).await;

    // Trusted through the test CA, given as a file for one sink and as PEM
    // text for the other.
    add_sink(
        &admin,
        "hook-tls",
        json!({"kind": "webhook", "url": format!("{url}/hook"),
               "caCert": certificates.ca.to_str().unwrap()}),
    )
    .await;
    add_sink(
        &admin,
        "hec-tls",
        json!({"kind": "splunk", "url": url, "token": "hec-token",
               "caCert": std::fs::read_to_string(&certificates.ca).unwrap()}),
    )
    .await;
    // The system's roots do not know the test CA.
    add_sink(
        &admin,
        "untrusting",
        json!({"kind": "datadog", "url": format!("{url}/api/v2/logs"), "apiKey": "k",
               "failingAfterSecs": 1}),
    )
    .await;

    let arrived = |path: &str| receiver.ids_at(Some(path));
    wait_until(
        Duration::from_secs(60),
        "every event over HTTPS",
        async || {
            all_arrived(&events, arrived("/hook"))
                && all_arrived(&events, arrived("/services/collector/event"))
        },
    )
    .await;

    wait_until(
        Duration::from_secs(30),
        "the untrusting sink to fail",
        async || {
            let sink = admin.get("/api/sinks/untrusting").await.body;
            sink["data"]["attributes"]["status"]["failing"] == json!(true)
        },
    )
    .await;
    let sink = admin.get("/api/sinks/untrusting").await.body;
    let last_error = sink["data"]["attributes"]["status"]["lastError"]
        .as_str()
        .unwrap()
        .to_owned();
    eprintln!("untrusted receiver: {last_error}");
    assert!(
        last_error.contains("certificate") && last_error.contains("UnknownIssuer"),
        "the last error says the certificate is not trusted: {last_error}"
    );
    assert!(arrived("/api/v2/logs").is_empty());
}

/// Runs `auditlog sinks ARGS…` against `running` as the admin; answers stdout.
/// Asynchronously: the receivers answering it run on this test's runtime.
async fn sinks_command(running: &Running, admin: &Client, args: &[&str]) -> String {
    let output = tokio::process::Command::new(common::binary())
        .arg("sinks")
        .args(args)
        .args(["--auditor-url", &running.urls.auditor])
        .args(["--token", admin.token.as_deref().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "auditlog sinks {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn splunk_hec_and_datadog_receivers_get_their_documented_shapes() {
    let (_dir, data) = data_dir();
    let (splunk_url, splunk) = local_receiver(Duration::ZERO).await;
    let (datadog_url, datadog) = local_receiver(Duration::ZERO).await;
    let running = Running::up(&data);
    let admin = admin_of(&running).await;
    let events = new_events(1_000);
    ingest(&admin, &events).await;

    add_sink(
        &admin,
        "hec",
        json!({"kind": "splunk", "url": splunk_url, "token": "hec-token",
               "sourcetype": "auditlog:event", "index": "audit",
               "filter": {"targetTypes": ["notes"]}}),
    )
    .await;
    add_sink(
        &admin,
        "dd",
        json!({"kind": "datadog", "url": format!("{datadog_url}/api/v2/logs"),
               "apiKey": "dd-key", "service": "auditlog", "tags": "env:test"}),
    )
    .await;
    let ids_of = |recorder: &Recorder, parse: fn(&Bytes) -> Vec<Value>| {
        recorder
            .requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, _, body)| parse(body))
            .filter_map(|event| event["id"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let hec_events = |body: &Bytes| -> Vec<Value> {
        serde_json::Deserializer::from_slice(body)
            .into_iter::<Value>()
            .map(|object| object.unwrap()["event"].clone())
            .collect()
    };
    let dd_events = |body: &Bytes| -> Vec<Value> {
        serde_json::from_slice::<Vec<Value>>(body)
            .unwrap()
            .iter()
            .map(|log| serde_json::from_str(log["message"].as_str().unwrap()).unwrap())
            .collect()
    };
    wait_until(
        Duration::from_secs(60),
        "both receivers to get every event",
        async || {
            all_arrived(&events, ids_of(&splunk, hec_events))
                && all_arrived(&events, ids_of(&datadog, dd_events))
        },
    )
    .await;

    for (path, headers, body) in splunk.requests.lock().unwrap().iter() {
        assert_eq!(path, "/services/collector/event");
        assert_eq!(headers["authorization"], "Splunk hec-token");
        for object in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
            let object = object.unwrap();
            assert!(object["time"].as_f64().unwrap() > 1.0e9, "{object}");
            assert_eq!(object["source"], "auditlog");
            assert_eq!(object["sourcetype"], "auditlog:event");
            assert_eq!(object["index"], "audit");
            assert_eq!(object["event"]["targetType"], "notes", "the filter holds");
            assert!(object["event"]["seq"].as_i64().is_some());
        }
    }
    for (path, headers, body) in datadog.requests.lock().unwrap().iter() {
        assert_eq!(path, "/api/v2/logs");
        assert_eq!(headers["dd-api-key"], "dd-key");
        assert_eq!(headers["content-type"], "application/json");
        for log in serde_json::from_slice::<Vec<Value>>(body).unwrap() {
            assert_eq!(log["ddsource"], "auditlog");
            assert_eq!(log["service"], "auditlog");
            assert_eq!(log["ddtags"], "env:test");
            let event: Value = serde_json::from_str(log["message"].as_str().unwrap()).unwrap();
            assert!(
                event["id"].is_string() && event["action"].is_string(),
                "{event}"
            );
        }
    }

    // The commands: list shows both, test sends one event and reports the answer.
    let listed = sinks_command(&running, &admin, &["list"]).await;
    assert!(
        listed.contains("hec") && listed.contains("splunk"),
        "{listed}"
    );
    assert!(
        listed.contains("dd") && listed.contains("datadog"),
        "{listed}"
    );
    let before = splunk.requests.lock().unwrap().len();
    let tested = sinks_command(&running, &admin, &["test", "hec"]).await;
    assert!(
        tested.contains("delivered") && tested.contains("200"),
        "{tested}"
    );
    let test_event = hec_events(&splunk.requests.lock().unwrap()[before].2);
    assert_eq!(test_event[0]["eventName"], "auditlog.sink_test");
    let patched = admin
        .patch(
            "/api/sinks/hec",
            json!({"data": {"type": "sinks", "id": "hec",
                            "attributes": {"sourcetype": "audit:v2", "token": "hec-token-2"}}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["data"]["attributes"]["sourcetype"], "audit:v2");
    assert_eq!(patched.body["data"]["attributes"]["token"], "***");
    let to_syslog = admin
        .patch(
            "/api/sinks/hec",
            json!({"data": {"type": "sinks", "attributes": {"kind": "syslog"}}}),
        )
        .await;
    assert_eq!(
        to_syslog.status, 400,
        "a kind cannot change: {}",
        to_syslog.body
    );
    sinks_command(&running, &admin, &["remove", "dd"]).await;
    let listed = sinks_command(&running, &admin, &["list"]).await;
    assert!(!listed.contains("datadog"), "{listed}");

    // Each change to the sinks is in the log, by the admin, secrets masked.
    let recorded = admin
        .get("/api/data-events?filter%5BeventName%5D=audit.sink_created,audit.sink_changed,audit.sink_removed&page%5Bsize%5D=50")
        .await;
    assert_eq!(recorded.status, 200, "{}", recorded.body);
    let recorded: Vec<&Value> = recorded.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|resource| &resource["attributes"])
        .collect();
    let find = |name: &str, sink: &str| {
        recorded
            .iter()
            .find(|e| e["eventName"] == name && e["targetId"] == sink)
            .unwrap_or_else(|| panic!("no {name} for {sink}: {recorded:?}"))
    };
    let hec_created = find("audit.sink_created", "hec");
    assert_eq!(hec_created["actorType"], "users");
    assert_eq!(hec_created["changes"]["kind"]["next"], "splunk");
    assert_eq!(hec_created["changes"]["token"]["masked"], true);
    assert!(
        !hec_created.to_string().contains("hec-token"),
        "{hec_created}"
    );
    let hec_changed = find("audit.sink_changed", "hec");
    assert_eq!(
        hec_changed["changes"]["sourcetype"]["prev"],
        "auditlog:event"
    );
    assert_eq!(hec_changed["changes"]["sourcetype"]["next"], "audit:v2");
    assert_eq!(
        hec_changed["changes"]["token"]["masked"], true,
        "{hec_changed}"
    );
    assert!(
        !hec_changed.to_string().contains("hec-token"),
        "{hec_changed}"
    );
    find("audit.sink_created", "dd");
    assert_eq!(find("audit.sink_removed", "dd")["action"], "deleted");
}

// ---------------------------------------------------------------------------
// Files.

/// Every file of the sink's directory: name → content.
fn files_in(directory: &Path) -> HashMap<String, Vec<u8>> {
    std::fs::read_dir(directory)
        .map(|entries| {
            entries
                .map(|entry| {
                    let path = entry.unwrap().path();
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    (name, std::fs::read(&path).unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The events in the files (closed ones by name, then the open one), as (id, seq).
fn events_in_files(files: &HashMap<String, Vec<u8>>) -> Vec<(String, i64)> {
    let mut names: Vec<&String> = files.keys().collect();
    names.sort_by_key(|name| (name.ends_with(".part"), (*name).clone()));
    names
        .into_iter()
        .flat_map(|name| {
            let text = String::from_utf8(files[name].clone()).unwrap();
            text.lines()
                .map(|line| {
                    let event: Value = serde_json::from_str(line).unwrap();
                    (
                        event["id"].as_str().unwrap().to_owned(),
                        event["seq"].as_i64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn a_files_sink_rotates_and_never_rewrites_a_closed_file() {
    let (dir, data) = data_dir();
    let directory = dir.path().join("stream");
    let running = Running::up(&data);
    let admin = admin_of(&running).await;
    let first = new_events(2_000);
    ingest(&admin, &first).await;

    add_sink(
        &admin,
        "files",
        json!({"kind": "files", "directory": directory, "maxBytes": 100_000, "batchSize": 200}),
    )
    .await;
    wait_until(
        Duration::from_secs(60),
        "the first events in files",
        async || {
            all_arrived(
                &first,
                events_in_files(&files_in(&directory))
                    .into_iter()
                    .map(|(id, _)| id),
            )
        },
    )
    .await;
    let closed_before: HashMap<String, Vec<u8>> = files_in(&directory)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".ndjson"))
        .collect();
    assert!(
        closed_before.len() >= 3,
        "rotated by size: {:?}",
        closed_before.keys()
    );

    let second = new_events(2_000);
    ingest(&admin, &second).await;
    wait_until(
        Duration::from_secs(60),
        "the second events in files",
        async || {
            all_arrived(
                &second,
                events_in_files(&files_in(&directory))
                    .into_iter()
                    .map(|(id, _)| id),
            )
        },
    )
    .await;

    let after = files_in(&directory);
    for (name, content) in &closed_before {
        assert_eq!(
            after.get(name),
            Some(content),
            "{name} was changed after it was closed"
        );
    }
    for (name, content) in &after {
        assert!(name.starts_with("events-"), "{name}");
        assert!(
            content.len() as u64 <= 100_000 + 200 * 1_000,
            "{name} is too large"
        );
        assert!(content.ends_with(b"\n"), "{name} ends with a whole line");
    }
    let all: Vec<(uuid::Uuid, Value)> = first.into_iter().chain(second).collect();
    check_complete_and_in_order(&events_in_files(&after), &all);
}

// ---------------------------------------------------------------------------
// Sinks in the config file.

/// `auditlog up` on free ports with `data` and the config file `config`, the
/// environment variable `HEC_TOKEN` set for the file's `tokenEnv`.
fn up_with_config(data: &Path, config: &Path) -> Running {
    let mut args = common::UP_ON_FREE_PORTS.to_vec();
    args.extend(["--config", config.to_str().unwrap()]);
    Running::start_after("export HEC_TOKEN=hec-from-env", &args, data, 3)
}

#[tokio::test]
async fn sinks_in_the_config_file_are_made_or_updated_at_start_and_a_bad_one_stops_it() {
    let (dir, data) = data_dir();
    let (url, receiver) = local_receiver(Duration::ZERO).await;
    let config = dir.path().join("auditlog.toml");
    let file = |batch_size: u32| {
        format!(
            "[[sinks]]\nname = \"hec-file\"\nkind = \"splunk\"\nurl = \"{url}\"\n\
             tokenEnv = \"HEC_TOKEN\"\nbatchSize = {batch_size}\n\
             [sinks.filter]\ntargetTypes = [\"notes\"]\n"
        )
    };
    std::fs::write(&config, file(100)).unwrap();
    let running = up_with_config(&data, &config);
    let admin = admin_of(&running).await;
    let events = new_events(500);
    ingest(&admin, &events).await;

    // The file's sink delivers, with the token from the environment.
    wait_until(
        Duration::from_secs(30),
        "the file's sink to deliver",
        async || all_arrived(&events, receiver.ids_at(None)),
    )
    .await;
    let headers = receiver.requests.lock().unwrap()[0].1.clone();
    assert_eq!(headers["authorization"], "Splunk hec-from-env");
    let sink = admin.get("/api/sinks/hec-file").await.body;
    assert_eq!(sink["data"]["attributes"]["token"], "***", "{sink}");
    add_sink(
        &admin,
        "by-api",
        json!({"kind": "files", "directory": dir.path().join("out").to_str().unwrap()}),
    )
    .await;
    running.terminate();

    // A changed file updates its sink by name, keeping the cursor, and leaves
    // the API's sink alone.
    std::fs::write(&config, file(10)).unwrap();
    let running = up_with_config(&data, &config);
    let admin = admin_of(&running).await;
    let sink = admin.get("/api/sinks/hec-file").await.body;
    assert_eq!(sink["data"]["attributes"]["batchSize"], 10, "{sink}");
    assert!(
        sink["data"]["attributes"]["cursor"].as_i64().unwrap() > 0,
        "{sink}"
    );
    assert_eq!(admin.get("/api/sinks/by-api").await.status, 200);
    running.terminate();

    // A bad sink stops the start, saying where and what.
    std::fs::write(
        &config,
        format!(
            "{}\n[[sinks]]\nname = \"bad\"\nkind = \"webhook\"\nurl = \"ftp://x\"\n\
             secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYqr\"\n",
            file(10)
        ),
    )
    .unwrap();
    let output = Command::new(common::binary())
        .args(common::UP_ON_FREE_PORTS)
        .args(["--config", config.to_str().unwrap()])
        .env("AUDITLOG_DATA_DIR", &data)
        .env("HEC_TOKEN", "hec-from-env")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", common::describe(&output));
    assert!(
        stderr.contains(&format!(
            "{}:10: the sink `bad` cannot be used: url:",
            config.display()
        )),
        "{stderr}"
    );
    // And so does a secret whose variable is not set.
    std::fs::write(&config, file(10)).unwrap();
    let output = Command::new(common::binary())
        .args(common::UP_ON_FREE_PORTS)
        .args(["--config", config.to_str().unwrap()])
        .env("AUDITLOG_DATA_DIR", &data)
        .env_remove("HEC_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", common::describe(&output));
    assert!(
        stderr.contains("the sink `hec-file` cannot be used: tokenEnv: the environment variable `HEC_TOKEN` is not set"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// Syslog, into a real rsyslog.

/// A free TCP port on 127.0.0.1 (free when this returns).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's rsyslogd with its OpenSSL stream driver, installed if missing.
fn rsyslogd() -> PathBuf {
    common::debian_packages("/usr/sbin/rsyslogd", &["rsyslog"]);
    let driver = format!(
        "/usr/lib/{}-linux-gnu/rsyslog/lmnsd_ossl.so",
        std::env::consts::ARCH
    );
    common::debian_packages(&driver, &["rsyslog-openssl"]);
    PathBuf::from("/usr/sbin/rsyslogd")
}

/// A test CA and a server certificate it signed for `localhost` and
/// 127.0.0.1: PEM files made by the openssl command.
struct TestCertificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Makes a [`TestCertificates`] in `dir` (P-256 keys, valid for a day).
fn test_certificates(dir: &Path) -> TestCertificates {
    common::debian_packages("/usr/bin/openssl", &["openssl"]);
    const MAKE: &str = "set -e
key='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
openssl req -x509 -days 1 -subj '/CN=auditlog test CA' $key -keyout ca.key -out ca.pem
openssl req -subj /CN=localhost $key -keyout server.key -out server.csr
echo 'subjectAltName=DNS:localhost,IP:127.0.0.1' > server.ext
echo 'basicConstraints=CA:FALSE' >> server.ext
echo 'keyUsage=digitalSignature' >> server.ext
echo 'extendedKeyUsage=serverAuth' >> server.ext
openssl x509 -req -days 1 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \\
  -extfile server.ext -out server.pem
";
    let output = Command::new("sh")
        .args(["-c", MAKE])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl: {}",
        common::describe(&output)
    );
    TestCertificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// rsyslog on a free port with octet-counted TCP input (over TLS with `tls`'s
/// server certificate, if given), writing what it receives to a file with the
/// action options `options` (e.g. a template): the port, the file, and the
/// process.
async fn start_rsyslog(
    dir: &Path,
    options: &str,
    tls: Option<&TestCertificates>,
) -> (u16, PathBuf, Killed) {
    let rsyslogd = rsyslogd();
    let port = free_port();
    let out = dir.join("syslog.out");
    let work = dir.join("rsyslog-work");
    std::fs::create_dir_all(&work).unwrap();
    let (tls_files, driver) = match tls {
        Some(tls) => (
            format!(
                r#" defaultNetstreamDriverCAFile="{}" defaultNetstreamDriverCertFile="{}" defaultNetstreamDriverKeyFile="{}""#,
                tls.ca.display(),
                tls.cert.display(),
                tls.key.display()
            ),
            r#" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon""#,
        ),
        None => (String::new(), ""),
    };
    let config = dir.join("rsyslog.conf");
    std::fs::write(
        &config,
        format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k"{tls_files})
module(load="imtcp"{driver})
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="audit") {{
    action(type="omfile" file="{out}" {options})
}}
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="audit")
"#,
            work = work.display(),
            out = out.display(),
        ),
    )
    .unwrap();
    let rsyslog = Killed(
        Command::new(&rsyslogd)
            .args(["-n", "-f"])
            .arg(&config)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(Duration::from_secs(20), "rsyslog to listen", async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    (port, out, rsyslog)
}

#[tokio::test]
async fn rsyslog_receives_every_event_as_an_rfc5424_message_with_the_event_json() {
    rsyslog_receives_every_event(false).await;
}

#[tokio::test]
async fn rsyslog_over_tls_with_a_private_ca_receives_every_event_with_the_event_json() {
    rsyslog_receives_every_event(true).await;
}

/// 3 000 events through a syslog sink into a real rsyslog (over TLS, its
/// certificate signed by a test CA the sink trusts, if `tls`): every one
/// arrives, in log order, each line an RFC 5424 message whose MSG is the
/// event's JSON.
async fn rsyslog_receives_every_event(tls: bool) {
    let (dir, data) = data_dir();
    let certificates = tls.then(|| test_certificates(dir.path()));
    let (port, out, _rsyslog) =
        start_rsyslog(dir.path(), r#"template="raw""#, certificates.as_ref()).await;
    let running = Running::up(&data);
    let admin = admin_of(&running).await;
    let events = new_events(3_000);
    ingest(&admin, &events).await;

    let mut definition = json!({"kind": "syslog", "address": format!("127.0.0.1:{port}"),
           "facility": 13, "severity": 5, "hostname": "auditor-1",
           "filter": {"eventNames": ["note.viewed"]}});
    if let Some(certificates) = &certificates {
        definition["tls"] = json!(true);
        definition["caCert"] = json!(certificates.ca.to_str().unwrap());
    }
    add_sink(&admin, "rsyslog", definition).await;
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    wait_until(
        Duration::from_secs(60),
        "rsyslog to write every event",
        async || lines().len() >= events.len(),
    )
    .await;

    let by_id: HashMap<String, &Value> = events.iter().map(|(id, e)| (id.to_string(), e)).collect();
    let mut received = Vec::new();
    for line in lines() {
        // <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD SP MSG
        let mut fields = line.splitn(7, ' ');
        let mut next = || {
            fields
                .next()
                .unwrap_or_else(|| panic!("too few fields: {line}"))
        };
        let (head, timestamp, hostname, app, procid, msgid) =
            (next(), next(), next(), next(), next(), next());
        let rest = next();
        assert_eq!(
            head, "<109>1",
            "facility 13 × 8 + severity 5, version 1: {line}"
        );
        time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{timestamp} is not RFC 3339: {e}"));
        assert_eq!(
            (hostname, app, procid, msgid),
            ("auditor-1", "auditlog", "-", "viewed")
        );
        let message = rest
            .strip_prefix("- ")
            .unwrap_or_else(|| panic!("no SD: {line}"));
        let event: Value = serde_json::from_str(message)
            .unwrap_or_else(|e| panic!("MSG is not the event JSON ({e}): {message}"));
        let id = event["id"].as_str().unwrap().to_owned();
        let sent = by_id[&id];
        for field in [
            "id",
            "action",
            "timestamp",
            "actorType",
            "actorId",
            "targetType",
            "targetId",
            "eventName",
        ] {
            assert_eq!(event[field], sent[field], "{field} intact");
        }
        received.push((id, event["seq"].as_i64().unwrap()));
    }
    check_complete_and_in_order(&received, &events);
}

// ---------------------------------------------------------------------------
// Faults.

/// The ids and seqs of a JSON:API webhook body.
fn webhook_events(body: &Bytes) -> Vec<(String, i64)> {
    let document: Value = serde_json::from_slice(body).unwrap();
    document["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["attributes"]["seq"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_sink_behind_when_the_auditor_is_killed_resumes_from_its_cursor_skipping_nothing() {
    let (_dir, data) = data_dir();
    // A slow receiver keeps the sink behind.
    let (url, receiver) = local_receiver(Duration::from_millis(100)).await;
    let running = Running::up(&data);
    let admin = admin_of(&running).await;
    let events = new_events(5_000);
    ingest(&admin, &events).await;
    add_sink(
        &admin,
        "slow",
        json!({"kind": "webhook", "url": format!("{url}/hook"), "batchSize": 50}),
    )
    .await;
    let arrived = || receiver.webhook_arrivals();
    wait_until(Duration::from_secs(60), "some deliveries", async || {
        arrived().len() >= 1_000
    })
    .await;

    running.kill();
    let at_kill = arrived().len();
    assert!(
        at_kill < events.len(),
        "the sink was behind when the auditor died"
    );

    let running = Running::up(&data);
    let admin = admin_of(&running).await;
    wait_until(
        Duration::from_secs(120),
        "every event after the restart",
        async || all_arrived(&events, arrived().into_iter().map(|(id, _)| id)),
    )
    .await;
    let repeats = check_complete_and_in_order(&arrived(), &events);
    eprintln!(
        "fault: {at_kill} delivered before SIGKILL, {repeats} delivered twice after the restart"
    );
    assert!(
        repeats <= 50,
        "at most the batch in flight is delivered again"
    );
    let sink = admin.get("/api/sinks/slow").await.body;
    assert_eq!(
        sink["data"]["attributes"]["status"]["delivering"], true,
        "{sink}"
    );
}

// ---------------------------------------------------------------------------
// Throughput (a measurement, not a check): run with
// `cargo nextest run --workspace -E 'test(/^sinks::/)' --run-ignored only --no-capture throughput`.

/// How many events a receiver's request body holds.
type EventsIn = fn(&Bytes) -> usize;

/// Events each kind delivers in the measurement.
const MEASURED_EVENTS: usize = 20_000;

#[tokio::test]
#[ignore = "a measurement: prints events/s per sink kind"]
async fn throughput_per_sink_kind() {
    let (dir, data) = data_dir();
    let running = Running::up(&data);
    let admin = admin_of(&running).await;
    let events = new_events(MEASURED_EVENTS);
    ingest(&admin, &events).await;
    let only_these = json!({"eventNames": ["note.viewed"]});

    let (url, receiver) = local_receiver(Duration::ZERO).await;
    let count = |recorder: &Recorder, parse: fn(&Bytes) -> usize| -> usize {
        recorder
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, b)| parse(b))
            .sum()
    };
    let kinds: [(&str, Value, EventsIn); 4] = [
        (
            "webhook",
            json!({"kind": "webhook", "url": format!("{url}/hook")}),
            |b| webhook_events(b).len(),
        ),
        (
            "webhook-ndjson",
            json!({"kind": "webhook", "url": format!("{url}/hook"), "format": "ndjson"}),
            |b| b.iter().filter(|c| **c == b'\n').count(),
        ),
        (
            "splunk",
            json!({"kind": "splunk", "url": url, "token": "t"}),
            |b| b.iter().filter(|c| **c == b'\n').count(),
        ),
        (
            "datadog",
            json!({"kind": "datadog", "url": format!("{url}/logs"), "apiKey": "k"}),
            |b| serde_json::from_slice::<Vec<Value>>(b).unwrap().len(),
        ),
    ];
    for (name, mut definition, parse) in kinds {
        receiver.requests.lock().unwrap().clear();
        definition["filter"] = only_these.clone();
        let started = Instant::now();
        add_sink(&admin, name, definition).await;
        wait_until(Duration::from_secs(300), name, async || {
            count(&receiver, parse) >= MEASURED_EVENTS
        })
        .await;
        report(name, started.elapsed());
        admin.delete(&format!("/api/sinks/{name}")).await;
    }

    let directory = dir.path().join("files");
    let started = Instant::now();
    add_sink(
        &admin,
        "files",
        json!({"kind": "files", "directory": directory, "filter": only_these}),
    )
    .await;
    wait_until(Duration::from_secs(300), "files", async || {
        files_in(&directory)
            .values()
            .map(|c| c.iter().filter(|b| **b == b'\n').count())
            .sum::<usize>()
            >= MEASURED_EVENTS
    })
    .await;
    report("files", started.elapsed());

    if Path::new("/usr/sbin/rsyslogd").exists() {
        let (port, out, _rsyslog) = start_rsyslog(dir.path(), "", None).await;
        let started = Instant::now();
        add_sink(
            &admin,
            "syslog",
            json!({"kind": "syslog", "address": format!("127.0.0.1:{port}"), "filter": only_these}),
        )
        .await;
        wait_until(Duration::from_secs(300), "syslog", async || {
            std::fs::read(&out)
                .map(|c| c.iter().filter(|b| **b == b'\n').count())
                .unwrap_or(0)
                >= MEASURED_EVENTS
        })
        .await;
        report("syslog", started.elapsed());
    }
}

/// Prints one kind's rate.
fn report(kind: &str, elapsed: Duration) {
    println!(
        "throughput {kind}: {MEASURED_EVENTS} events in {:.2} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        MEASURED_EVENTS as f64 / elapsed.as_secs_f64()
    );
}

/// The steady load of the lag measurement, events per second.
const STEADY_RATE: usize = 5_000;

/// How long the steady load lasts.
const STEADY_FOR: Duration = Duration::from_secs(20);

#[tokio::test]
#[ignore = "a measurement: prints a webhook sink's lag under a steady 5 000 events/s"]
async fn lag_under_a_steady_load() {
    let (_dir, data) = data_dir();
    let (url, receiver) = local_receiver(Duration::ZERO).await;
    let running = Running::up(&data);
    let admin = admin_of(&running).await;
    add_sink(
        &admin,
        "steady",
        json!({"kind": "webhook", "url": format!("{url}/hook")}),
    )
    .await;
    // 500 events every 100 ms, each tick's ingest awaited: the load is at most
    // 5 000 events/s, less if ingest falls behind (said below).
    let tick = Duration::from_millis(100);
    let per_tick = STEADY_RATE / 10;
    let started = Instant::now();
    let mut sent = 0;
    let mut lags = Vec::new();
    let mut next = Instant::now();
    while started.elapsed() < STEADY_FOR {
        ingest(&admin, &new_events(per_tick)).await;
        sent += per_tick;
        if sent % STEADY_RATE == 0 {
            let sink = admin.get("/api/sinks/steady").await.body;
            let status = &sink["data"]["attributes"]["status"];
            lags.push(status["lagSeconds"].as_f64().unwrap_or(f64::NAN));
        }
        next += tick;
        tokio::time::sleep_until(next.into()).await;
    }
    let offered = sent as f64 / started.elapsed().as_secs_f64();
    let delivered_by_end = receiver.webhook_arrivals().len();
    lags.sort_by(f64::total_cmp);
    println!(
        "steady load: {sent} events offered at {offered:.0} events/s for {:.0} s; \
         lag samples (s, one per second, sorted): {lags:?}; delivered by the end: {delivered_by_end}",
        STEADY_FOR.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// Several auditors on one store.

/// `auditlog auditor` on a free port on the store `store_url`.
fn auditor_on(store_url: &str, data_dir: &Path) -> Running {
    Running::start(
        &[
            "auditor",
            "--auditor-addr",
            "127.0.0.1:0",
            "--store-url",
            store_url,
        ],
        data_dir,
        1,
    )
}

/// An admin's token signed with `data_dir`'s key, as `auditlog token` makes one.
fn admin_token(data_dir: &Path) -> String {
    use auditlog_auth::{KeyPair, Principal, Role, TokenIssuer};
    let pair = KeyPair::load(data_dir).unwrap().unwrap();
    TokenIssuer::new(&pair)
        .unwrap()
        .issue(&Principal::new("1".into(), Role::Admin).unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_auditors_on_one_postgres_store_deliver_a_sink_one_at_a_time_and_the_survivor_takes_it_over()
 {
    let store = auditlog_store::testing::fresh_postgres_url().await;
    let (_tmp_a, dir_a) = data_dir();
    let (_tmp_b, dir_b) = data_dir();
    let first = auditor_on(store.url(), &dir_a);
    // The second auditor verifies the first one's tokens: the same signing key.
    std::fs::create_dir_all(&dir_b).unwrap();
    std::fs::copy(dir_a.join("jwt-ed25519.pem"), dir_b.join("jwt-ed25519.pem")).unwrap();
    let second = auditor_on(store.url(), &dir_b);
    let token = Some(admin_token(&dir_a));
    let client_a = Client {
        token: token.clone(),
        ..Client::new(&first.urls.auditor)
    };
    let client_b = Client {
        token,
        ..Client::new(&second.urls.auditor)
    };
    let (url, receiver) = local_receiver(Duration::from_millis(200)).await;
    let events = new_events(3_000);
    ingest(&client_a, &events).await;
    add_sink(
        &client_a,
        "shared",
        json!({"kind": "webhook", "url": format!("{url}/hook"), "batchSize": 50}),
    )
    .await;
    let arrived = || receiver.webhook_arrivals();
    wait_until(Duration::from_secs(30), "some deliveries", async || {
        arrived().len() >= 500
    })
    .await;
    // Both have looked at the sink by now (every 2 s); one delivers it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let delivering = async |client: &Client| {
        let sink = client.get("/api/sinks/shared").await.body;
        sink["data"]["attributes"]["status"]["delivering"] == json!(true)
    };
    let (a_delivers, b_delivers) = (delivering(&client_a).await, delivering(&client_b).await);
    assert!(
        a_delivers != b_delivers,
        "exactly one auditor delivers: {a_delivers} {b_delivers}"
    );

    // The holder dies; the other takes the sink over once the lease runs out.
    let (survivor, killed) = if a_delivers {
        (&client_b, first)
    } else {
        (&client_a, second)
    };
    killed.kill();
    let at_kill = arrived().len();
    assert!(
        at_kill < events.len(),
        "the sink was behind when its auditor died"
    );
    wait_until(
        Duration::from_secs(90),
        "every event via the survivor",
        async || all_arrived(&events, arrived().into_iter().map(|(id, _)| id)),
    )
    .await;
    let repeats = check_complete_and_in_order(&arrived(), &events);
    assert!(
        repeats <= 50,
        "at most the batch in flight is delivered twice"
    );
    assert!(delivering(survivor).await, "the survivor delivers it now");
    eprintln!("two auditors: {at_kill} delivered before the holder died, {repeats} repeated");
}
