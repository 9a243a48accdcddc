//! The request id against `auditlog up`: every service gives every request its
//! own id, which comes back in the answer and is carried as `requestId` by every
//! event the request caused; the client's `X-Request-Id`, when sane, is kept
//! beside it (`meta.clientRequestId`, and the log lines), which is also how the
//! hops through the website, the primary API and the auditor are joined.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, Running, all_events, binary, data_dir, user_doc};
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

const REQUEST_ID: &str = "x-request-id";

/// What came back: the status, the `X-Request-Id` echoed and the body.
struct Echo {
    status: u16,
    request_id: String,
    body: Value,
}

/// Sends `method path` with the client's token, an optional JSON:API body and an
/// optional `X-Request-Id` (raw bytes, so that invalid ones can be sent too).
async fn call(
    client: &Client,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    request_id: Option<&[u8]>,
) -> Echo {
    let mut request = client
        .http
        .request(method, format!("{}{path}", client.base))
        .bearer_auth(client.token.as_deref().unwrap());
    if let Some(body) = body {
        request = request
            .header("content-type", common::JSON_API)
            .body(body.to_string());
    }
    if let Some(id) = request_id {
        request = request.header(REQUEST_ID, HeaderValue::from_bytes(id).unwrap());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get(REQUEST_ID)
        .expect("every answer carries X-Request-Id")
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Echo {
        status,
        request_id,
        body,
    }
}

fn assert_generated(id: &str, instead_of: &str) {
    let uuid = uuid::Uuid::parse_str(id)
        .unwrap_or_else(|_| panic!("`{id}` (sent `{instead_of}`) is not a generated id"));
    assert_eq!(uuid.get_version_num(), 7, "{id}");
}

/// The `(action, requestId, meta.clientRequestId)` of the events on
/// `users/<id>`, oldest first, once there are `expected` of them.
async fn events_on_user(
    auditor: &Client,
    id: &str,
    expected: usize,
) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = all_events(auditor, &format!("/events/on/users/{id}?sort=timestamp")).await;
        if events.len() >= expected {
            return events
                .iter()
                .map(|e| {
                    let a = &e["attributes"];
                    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                    (
                        text(&a["action"]),
                        text(&a["requestId"]),
                        text(&a["meta"]["clientRequestId"]),
                    )
                })
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} events arrived: {events:?}",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_request_gets_the_servers_own_id_and_the_clients_is_kept_beside_it() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let api = Client::new(&system.urls.api).login(1).await;
    let auditor = Client {
        base: system.urls.auditor.clone(),
        ..api.clone()
    };
    let doc = user_doc(json!({"name": "Rita", "email": "rita@example.com", "agreedTos": 0}));

    // The client's id is never the request's: the server answers with its own,
    // and the events carry the server's as `requestId`, the client's beside it.
    let created = call(
        &api,
        reqwest::Method::POST,
        "/api/users",
        Some(doc),
        Some(b"my-req-123"),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_generated(&created.request_id, "my-req-123");
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    let user_path = format!("/api/users/{id}");
    let read = call(
        &api,
        reqwest::Method::GET,
        &user_path,
        None,
        Some(b"my-req-123"),
    )
    .await;
    assert_eq!(read.status, 200);
    assert_generated(&read.request_id, "my-req-123");
    assert_ne!(
        read.request_id, created.request_id,
        "each request its own id"
    );

    // No id: one is generated, and the PATCH's `changed` and `viewed` carry it.
    let patch = json!({"data": {"type": "users", "id": id, "attributes": {"agreedTos": 1}}});
    let changed = call(&api, reqwest::Method::PATCH, &user_path, Some(patch), None).await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_generated(&changed.request_id, "nothing");

    // Ids that are not sane are not kept at all.
    let too_long = "x".repeat(129);
    let mut replaced = Vec::new();
    for insane in [too_long.as_bytes(), b"two words", b"caf\xe9"] {
        let shown = String::from_utf8_lossy(insane).into_owned();
        let echo = call(&api, reqwest::Method::GET, &user_path, None, Some(insane)).await;
        assert_eq!(echo.status, 200, "{shown}");
        assert_generated(&echo.request_id, &shown);
        replaced.push(echo.request_id);
    }
    let distinct: std::collections::HashSet<&String> = replaced.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "each request gets its own id: {replaced:?}"
    );

    let events = events_on_user(&auditor, &id, 8).await;
    let with = |action: &str, request_id: &str, client: &str| {
        events
            .iter()
            .filter(|(a, r, c)| a == action && r == request_id && c == client)
            .count()
    };
    assert_eq!(
        with("created", &created.request_id, "my-req-123"),
        1,
        "{events:?}"
    );
    assert_eq!(
        with("viewed", &created.request_id, "my-req-123"),
        1,
        "{events:?}"
    );
    assert_eq!(
        with("viewed", &read.request_id, "my-req-123"),
        1,
        "{events:?}"
    );
    assert_eq!(with("changed", &changed.request_id, ""), 1, "{events:?}");
    assert_eq!(with("viewed", &changed.request_id, ""), 1, "{events:?}");
    for generated in &replaced {
        assert_eq!(with("viewed", generated, ""), 1, "{generated}: {events:?}");
    }
    assert_eq!(events.len(), 8, "{events:?}");
}

#[tokio::test]
async fn a_read_of_the_audit_log_is_recorded_with_its_own_id_and_the_readers() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let api = Client::new(&system.urls.api).login(1).await;
    let auditor = Client {
        base: system.urls.auditor.clone(),
        ..api.clone()
    };

    // One read on the auditor itself, one through the primary API's proxy, and
    // one of a single event, each with its own id.
    let direct = call(
        &auditor,
        reqwest::Method::GET,
        "/api/data-events?filter[action]=changed",
        None,
        Some(b"q-1"),
    )
    .await;
    assert_eq!(direct.status, 200);
    let proxied = call(
        &api,
        reqwest::Method::GET,
        "/events/by/users/1",
        None,
        Some(b"q-2"),
    )
    .await;
    assert_eq!(proxied.status, 200);
    let any_event = proxied.body["data"][0]["id"].as_str().unwrap().to_owned();
    let single = call(
        &auditor,
        reqwest::Method::GET,
        &format!("/api/data-events/{any_event}"),
        None,
        Some(b"q-3"),
    )
    .await;
    assert_eq!(single.status, 200);

    let reads = all_events(&auditor, "/api/data-events?filter[eventName]=audit.read").await;
    let read_by = |client_id: &str| -> Vec<&Value> {
        reads
            .iter()
            .map(|e| &e["attributes"])
            .filter(|a| a["meta"]["clientRequestId"] == client_id)
            .collect()
    };
    let q1 = read_by("q-1");
    assert_eq!(q1.len(), 1, "{reads:?}");
    assert_eq!(q1[0]["requestId"], direct.request_id.as_str());
    assert_eq!(q1[0]["action"], "viewed");
    assert_eq!(q1[0]["targetType"], "data-events");
    assert_eq!(q1[0]["meta"]["path"], "/api/data-events");
    assert_eq!(q1[0]["meta"]["query"], "filter[action]=changed");
    // Through the proxy, the auditor's client is the primary API, which sends
    // its own id for the request on.
    let q2 = read_by(&proxied.request_id);
    assert_eq!(q2.len(), 1, "{reads:?}");
    assert_eq!(q2[0]["meta"]["path"], "/events/by/users/1");
    assert_ne!(q2[0]["requestId"], proxied.request_id.as_str());
    let q3 = read_by("q-3");
    assert_eq!(q3.len(), 1, "{reads:?}");
    assert_eq!(q3[0]["targetId"], any_event.as_str());
    assert_eq!(q3[0]["requestId"], single.request_id.as_str());
    for read in &reads {
        let id = read["attributes"]["requestId"].as_str().unwrap_or_default();
        assert_generated(id, "an audit.read's own id");
    }
}

/// `auditlog up` with JSON logs at `info`, its standard error collected line by
/// line; killed when dropped.
struct JsonLogged {
    child: Child,
    api: String,
    web: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl JsonLogged {
    fn up(data_dir: &std::path::Path) -> JsonLogged {
        let mut child = Command::new(binary())
            .args(["up", "--api-addr", "127.0.0.1:0"])
            .args(["--auditor-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0"])
            .env("AUDITLOG_DATA_DIR", data_dir)
            .env(
                "AUDITLOG_LOG",
                "info,auditlog_http=debug,sqlx=warn,lapin::channel=off",
            )
            .env("AUDITLOG_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        // Standard output is read to its end, so that the process never writes
        // into a closed pipe.
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let (mut api, mut web) = (String::new(), String::new());
        while let Ok(line) = receiver.recv_timeout(Duration::from_secs(30)) {
            let url = line.split_whitespace().find(|w| w.starts_with("http://"));
            match url {
                Some(url) if line.contains("primary API") => api = url.to_owned(),
                Some(url) if line.contains("website") => web = url.to_owned(),
                _ => {}
            }
            if !api.is_empty() && !web.is_empty() {
                break;
            }
        }
        assert!(
            !api.is_empty() && !web.is_empty(),
            "auditlog up printed its URLs"
        );
        JsonLogged {
            child,
            api,
            web,
            stderr,
        }
    }

    /// The access lines (`answered`) logged for requests whose client called them
    /// `client_id`, waiting up to 10 s for the first.
    async fn answered_for(&self, client_id: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<Value> = self
                .json_lines()
                .into_iter()
                .filter(|l| {
                    l["message"] == "answered" && l["span"]["client_request_id"] == client_id
                })
                .collect();
            if !found.is_empty() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every line so far, each of which must be one JSON object.
    fn json_lines(&self) -> Vec<Value> {
        let lines = self.stderr.lock().unwrap().clone();
        lines
            .iter()
            .map(|line| {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
                assert!(value.is_object(), "{line}");
                value
            })
            .collect()
    }
}

impl Drop for JsonLogged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn json_log_lines_join_every_service_a_request_passes() {
    let (_tmp, dir) = data_dir();
    let system = JsonLogged::up(&dir);
    let api = Client::new(&system.api).login(1).await;
    let web = Client {
        base: system.web.clone(),
        ..api.clone()
    };

    // The website proxies to the primary API, which proxies audit queries to the
    // auditor: each hop logs its own id and the id the hop before it sent.
    let through_web = call(
        &web,
        reqwest::Method::GET,
        "/api/users/1",
        None,
        Some(b"log-req-web"),
    )
    .await;
    assert_eq!(through_web.status, 200);
    let proxied_query = call(
        &api,
        reqwest::Method::GET,
        "/events/on/users/1",
        None,
        Some(b"log-req-query"),
    )
    .await;
    assert_eq!(proxied_query.status, 200);

    let (web_id, web_line, api_line) = hops(&system, "log-req-web").await;
    assert_eq!(
        web_id, through_web.request_id,
        "the answer carries the website's id"
    );
    let (api_id, query_line, auditor_line) = hops(&system, "log-req-query").await;
    assert_eq!(api_id, proxied_query.request_id);
    for line in [&web_line, &api_line, &query_line, &auditor_line] {
        assert_eq!(line["level"], "DEBUG", "{line}");
        assert_eq!(line["method"], "GET", "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert!(line["latency_ms"].as_f64().is_some(), "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
    }
    assert_eq!(web_line["path"], "/api/users/1");
    assert_eq!(api_line["path"], "/api/users/1");
    assert_eq!(query_line["path"], "/events/on/users/1");
    assert_eq!(auditor_line["path"], "/events/on/users/1");
    // Every line, not only the access lines, is JSON.
    assert!(system.json_lines().len() > 4);
}

/// The first hop's id and access line for the request its client called
/// `client_id`, and the access line of the next hop, which got that id as its
/// client's.
async fn hops(system: &JsonLogged, client_id: &str) -> (String, Value, Value) {
    let first = system.answered_for(client_id).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let own = first[0]["span"]["request_id"].as_str().unwrap().to_owned();
    let next = system.answered_for(&own).await;
    assert_eq!(
        next.len(),
        1,
        "the next hop logs {own} as its client's: {next:?}"
    );
    (own, first[0].clone(), next[0].clone())
}

#[test]
fn an_unknown_log_format_stops_the_start_with_an_error_naming_the_variable() {
    let (_tmp, dir) = data_dir();
    let mut child = Command::new(binary())
        .args(["up", "--api-addr", "127.0.0.1:0"])
        .args(["--auditor-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0"])
        .env("AUDITLOG_DATA_DIR", &dir)
        .env("AUDITLOG_LOG_FORMAT", "xml")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("auditlog started despite AUDITLOG_LOG_FORMAT=xml");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    for expected in ["AUDITLOG_LOG_FORMAT", "`xml`", "`human`", "`json`"] {
        assert!(stderr.contains(expected), "{expected} in: {stderr}");
    }
}
