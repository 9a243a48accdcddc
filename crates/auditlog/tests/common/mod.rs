//! Starting the real `auditlog` binary for whole-flow tests: each test gets its own
//! data directory and free ports, and the process is stopped when the test ends.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const JSON_API: &str = "application/vnd.api+json";

/// A running `auditlog` process and the URLs it printed.
pub struct Running {
    child: Option<Child>,
    pub urls: Urls,
}

#[derive(Debug, Clone, Default)]
pub struct Urls {
    pub api: String,
    pub auditor: String,
    pub web: String,
}

/// The binary under test: this build's, or the one `AUDITLOG_TEST_BINARY` names
/// (to check that an attack test fails against an older build).
/// `auditlog up` with each service on a free port.
pub const UP_ON_FREE_PORTS: [&str; 7] = [
    "up",
    "--api-addr",
    "127.0.0.1:0",
    "--auditor-addr",
    "127.0.0.1:0",
    "--web-addr",
    "127.0.0.1:0",
];

pub fn binary() -> String {
    std::env::var("AUDITLOG_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_auditlog").to_owned())
}

impl Running {
    /// `auditlog up` on free ports with `data_dir`.
    pub fn up(data_dir: &Path) -> Running {
        Running::up_with(data_dir, &[])
    }

    /// `auditlog up` on free ports with `data_dir` and the flags `extra`.
    pub fn up_with(data_dir: &Path, extra: &[&str]) -> Running {
        let mut args = UP_ON_FREE_PORTS.to_vec();
        args.extend_from_slice(extra);
        Running::start(&args, data_dir, 3)
    }

    /// Any subcommand; waits until it printed `expected_urls` URL lines.
    pub fn start(args: &[&str], data_dir: &Path, expected_urls: usize) -> Running {
        let mut command = Command::new(binary());
        command.args(args);
        Running::spawn(command, data_dir, expected_urls)
    }

    /// Any subcommand, started by `sh` after the shell commands `prelude` (e.g.
    /// `ulimit -Sn 256` or `umask 022`), which set what the process inherits.
    pub fn start_after(
        prelude: &str,
        args: &[&str],
        data_dir: &Path,
        expected_urls: usize,
    ) -> Running {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{prelude} && exec \"$0\" \"$@\""))
            .arg(binary())
            .args(args);
        Running::spawn(command, data_dir, expected_urls)
    }

    fn spawn(mut command: Command, data_dir: &Path, expected_urls: usize) -> Running {
        let mut child = command
            .env("AUDITLOG_DATA_DIR", data_dir)
            .env("AUDITLOG_LOG", "warn,lapin::channel=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the auditlog binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut urls = Urls::default();
        let mut found = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while found < expected_urls {
            let line = receiver
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("auditlog printed its URLs in time");
            let url = line.split_whitespace().find(|w| w.starts_with("http://"));
            let Some(url) = url.map(str::to_owned) else {
                continue;
            };
            if line.contains("website") {
                urls.web = url;
            } else if line.contains("primary API") {
                urls.api = url;
            } else if line.contains("auditor") {
                urls.auditor = url;
            } else {
                continue;
            }
            found += 1;
        }
        Running {
            child: Some(child),
            urls,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL: the process dies on the spot, as in a crash.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL delivered");
            let _ = child.wait();
        }
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kib| kib.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("still running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait works") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "auditlog did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `request` exactly as written on a new connection to `addr` (`host:port`)
/// and reads the answer until the server closes (within 10 s).
pub async fn send_raw(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the service accepts");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut answer = Vec::new();
    // A read error (a reset after the answer) keeps what was read.
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server answers and closes within 10 s");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Runs one SQL statement with psql and returns its output, trimmed.
pub fn psql(url: &str, sql: &str) -> String {
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

/// A finished command's exit code and output, for an assertion's message.
pub fn describe(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A fresh data directory that is removed at the end of the test.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("data");
    (dir, path)
}

/// A small HTTP client speaking JSON:API with a bearer token.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            // Pooled connections are dropped before the services' header timeout
            // closes them, so a test's request never races that close.
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(4))
                .build()
                .unwrap(),
            base: base.to_owned(),
            token: None,
        }
    }

    /// Logs in as `user_id` through the dev token endpoint.
    pub async fn login(mut self, user_id: i64) -> Client {
        let response = self
            .http
            .get(format!("{}/tokens/{user_id}", self.base))
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status().as_u16(), 201);
        self.token = Some(response.text().await.expect("token body"));
        self
    }

    /// Creates a user (as this client, an admin) and logs in as it.
    pub async fn new_member(&self, name: &str, email: &str) -> (i64, Client) {
        let created = self
            .post(
                "/api/users",
                user_doc(json!({"name": name, "email": email})),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let id: i64 = created.body["data"]["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("a user id");
        (id, Client::new(&self.base).login(id).await)
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.http
                .post(self.url(path))
                .header("content-type", JSON_API)
                .body(body.to_string()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.http
                .patch(self.url(path))
                .header("content-type", JSON_API)
                .body(body.to_string()),
        )
        .await
    }

    /// Sends a raw body with a chosen content type.
    pub async fn raw(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        self.send(
            self.http
                .request(method, self.url(path))
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, mut request: reqwest::RequestBuilder) -> Answer {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            content_type,
            body,
        }
    }
}

/// A JSON:API document for a user.
pub fn user_doc(attributes: Value) -> Value {
    json!({"data": {"type": "users", "attributes": attributes}})
}

/// Every event of a query, following `links.next`.
pub async fn all_events(client: &Client, path: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut next = Some(path.to_owned());
    while let Some(path) = next {
        let answer = client.get(&path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        events.extend(answer.body["data"].as_array().cloned().unwrap_or_default());
        next = answer.body["links"]["next"].as_str().map(str::to_owned);
    }
    events
}

/// The `created` events on users/1, once at least one is stored (the outbox relay
/// publishes them just after the start).
pub async fn created_on_user_1(client: &Client) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let created = all_events(
            client,
            "/api/data-events?filter[targetType]=users&filter[targetId]=1&filter[action]=created",
        )
        .await;
        if !created.is_empty() || Instant::now() > deadline {
            return created;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(action, targetId as text)` of each event, in the order given, leaving out the
/// `audit.read` events that record reads of the audit log itself.
pub fn actions(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["attributes"]["targetType"] != "data-events")
        .map(|e| {
            let a = &e["attributes"];
            let target = match &a["targetId"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (a["action"].as_str().unwrap_or_default().to_owned(), target)
        })
        .collect()
}

/// RabbitMQ names private to one test, as command-line flags. The exchange and
/// queues are deleted when the `PrivateAmqp` made by [`PrivateAmqp::new`] is
/// dropped, also when the test fails. Declare it before the services that use it:
/// they are then stopped first, and cannot declare the names again after the
/// deletion (a consumer whose queue vanishes reconnects and re-declares it).
pub struct PrivateAmqp {
    pub url: String,
    pub exchange: String,
    pub queue: String,
    pub dead_letter_queue: String,
    /// Only the original deletes the names; copies made by [`PrivateAmqp::via`] do not.
    owner: bool,
}

impl PrivateAmqp {
    pub fn new() -> PrivateAmqp {
        let url = std::env::var("AUDITLOG_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        PrivateAmqp::named(url, true)
    }

    /// Names on a broker that is the test's own (a private node): nothing to
    /// delete afterwards, the names go with the broker.
    pub fn on_own_broker(url: String) -> PrivateAmqp {
        PrivateAmqp::named(url, false)
    }

    fn named(url: String, owner: bool) -> PrivateAmqp {
        let tag = uuid::Uuid::now_v7().simple().to_string();
        PrivateAmqp {
            url,
            exchange: format!("api-stream-test-{tag}"),
            queue: format!("data-mutation-audits-test-{tag}"),
            dead_letter_queue: format!("data-mutation-audits-test-{tag}.dead-letter"),
            owner,
        }
    }

    /// The same names on another broker address (e.g. through a proxy).
    pub fn via(&self, url: String) -> PrivateAmqp {
        PrivateAmqp {
            url,
            exchange: self.exchange.clone(),
            queue: self.queue.clone(),
            dead_letter_queue: self.dead_letter_queue.clone(),
            owner: false,
        }
    }

    /// The library's configuration for these names.
    pub fn config(&self) -> auditlog_amqp::AmqpConfig {
        auditlog_amqp::AmqpConfig {
            exchange: self.exchange.clone(),
            queue: self.queue.clone(),
            dead_letter_queue: self.dead_letter_queue.clone(),
            ..auditlog_amqp::AmqpConfig::new(self.url.clone())
        }
    }

    /// `--amqp-*` flags selecting this broker and these names.
    pub fn flags(&self) -> Vec<String> {
        [
            ("--amqp-url", &self.url),
            ("--amqp-exchange", &self.exchange),
            ("--amqp-queue", &self.queue),
            ("--amqp-dead-letter-queue", &self.dead_letter_queue),
        ]
        .iter()
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .collect()
    }
}

impl Drop for PrivateAmqp {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        let config = self.config();
        // Drop cannot await, and may run inside a test's runtime: a runtime of its own
        // on a thread of its own.
        let deleted = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())
                .and_then(|runtime| {
                    runtime
                        .block_on(auditlog_amqp::delete_topology(&config))
                        .map_err(|err| err.to_string())
                })
        })
        .join();
        if let Ok(Err(err)) = deleted {
            eprintln!(
                "could not delete the RabbitMQ names of {}: {err}",
                self.queue
            );
        }
    }
}

/// Closes every broker connection whose name mentions `tag` (the consumer's
/// connection is named after its queue), as a broker restart or a network cut
/// would, without touching other tests' connections. Returns how many it closed.
pub fn close_connections(tag: &str) -> usize {
    let output = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    let listing = String::from_utf8_lossy(&output.stdout);
    let mut closed = 0;
    for line in listing.lines().filter(|line| line.contains(tag)) {
        let Some(pid) = line.split_whitespace().next() else {
            continue;
        };
        let status = Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "fault injection"])
            .status()
            .expect("rabbitmqctl runs");
        if status.success() {
            closed += 1;
        }
    }
    closed
}

/// Runs `install` while holding the machine-wide test install lock (an flock on
/// a file in /tmp), so that test processes running at once (nextest runs each
/// test in its own) never run apt-get or pip side by side; within a process a
/// mutex does the same.
pub fn with_install_lock<T>(install: impl FnOnce() -> T) -> T {
    static IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _in_process = IN_PROCESS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let lock_path = std::env::temp_dir().join("auditlog-tests-install.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("cannot open the lock {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    // Unlocked when `lock` is closed, at the end of this function.
    install()
}

/// Makes sure the Debian packages `packages` are installed, `file` being one
/// they install: when it is missing, `apt-get update` (once per process) and
/// `apt-get install -y`, under [`with_install_lock`]. A fresh machine thus
/// passes the tests that need a system program; a failure says what to run.
pub fn debian_packages(file: &str, packages: &[&str]) {
    static UPDATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if Path::new(file).exists() {
        return;
    }
    with_install_lock(|| {
        // Another process may have installed them while this one waited.
        if Path::new(file).exists() {
            return;
        }
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
        };
        if !UPDATED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let updated = apt(&["update", "-qq"]);
            assert!(
                updated.as_ref().is_ok_and(|o| o.status.success()),
                "this test needs {file} (Debian packages {packages:?}); `apt-get update` \
                 failed: {}",
                updated.as_ref().map_or_else(|e| e.to_string(), describe)
            );
        }
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend_from_slice(packages);
        let installed = apt(&args);
        assert!(
            installed.as_ref().is_ok_and(|o| o.status.success()) && Path::new(file).exists(),
            "this test needs {file}: `apt-get install -y {}` failed (run it as root, or \
             install them by hand): {}",
            packages.join(" "),
            installed.as_ref().map_or_else(|e| e.to_string(), describe)
        );
    });
}
