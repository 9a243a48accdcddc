//! Stopping and starting: SIGTERM delivers every emitted event and exits 0, and a
//! restart on the same data directory keeps every user and every event.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use common::{Client, Running, all_events, data_dir, user_doc};
use serde_json::json;

#[tokio::test]
async fn sigterm_delivers_every_emitted_event_and_a_restart_keeps_everything() {
    let (_tmp, dir) = data_dir();
    let first = Running::up(&dir);
    let client = Client::new(&first.urls.api).login(1).await;
    let created = client
        .post(
            "/api/users",
            user_doc(json!({"name": "Kept", "email": "kept@happi.com", "agreedTos": true})),
        )
        .await;
    assert_eq!(created.status, 201);
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    const VIEWS: usize = 300;
    let path = format!("/api/users/{id}");
    for _ in 0..VIEWS {
        assert_eq!(client.get(&path).await.status, 200);
    }
    // Stop at once: the events of those requests may still be queued.
    let status = first.terminate();
    assert!(status.success(), "auditlog exited with {status}");

    let second = Running::up(&dir);
    let client = Client::new(&second.urls.api).login(1).await;
    let viewed = all_events(
        &client,
        &format!("/events/on/users/{id}?filter[action]=viewed&page[size]=1000"),
    )
    .await;
    // One `viewed` from the POST and one per GET, every one stored exactly once.
    assert_eq!(viewed.len(), VIEWS + 1);
    let mut ids: Vec<&str> = viewed.iter().filter_map(|e| e["id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), VIEWS + 1);
    let created_events = all_events(
        &client,
        &format!("/events/on/users/{id}?filter[action]=created"),
    )
    .await;
    assert_eq!(created_events.len(), 1);
    let user = client.get(&format!("/api/users/{id}")).await;
    assert_eq!(user.body["data"]["attributes"]["name"], "Kept");
    let second_status = second.terminate();
    assert!(second_status.success());
}

#[tokio::test]
async fn a_service_whose_standard_output_was_closed_keeps_serving() {
    let (_tmp, dir) = data_dir();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(common::binary())
        .args(["up", "--api-addr", &format!("127.0.0.1:{port}")])
        .args(["--auditor-addr", "127.0.0.1:0", "--web-addr", "127.0.0.1:0"])
        .env("AUDITLOG_DATA_DIR", &dir)
        .env("AUDITLOG_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Whoever started it stops reading before it says where it listens.
    drop(child.stdout.take());
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let health = loop {
        match reqwest::get(format!("{base}/healthz")).await {
            Ok(answer) => break answer.status().as_u16(),
            Err(_) if std::time::Instant::now() < deadline => {
                assert!(child.try_wait().unwrap().is_none(), "it exited");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(err) => panic!("never answered: {err}"),
        }
    };
    assert_eq!(health, 200);
    // It prints its addresses once it listens: give it time to have tried.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(child.try_wait().unwrap().is_none(), "it is still running");
    let client = Client::new(&base).login(1).await;
    assert_eq!(client.get("/api/users/1").await.status, 200);
    let _ = child.kill();
    let _ = child.wait();
}

/// How one thread of a process is scheduled (Linux `/proc`).
#[derive(Debug)]
struct Thread {
    name: String,
    nice: i64,
    /// 0 is `SCHED_OTHER`, 5 is `SCHED_IDLE`.
    policy: i64,
    /// The CPUs it may run on, as the kernel writes them (`0-1`, `1`, …).
    cpus: String,
}

const SCHED_OTHER: i64 = 0;
const SCHED_IDLE: i64 = 5;

fn threads(pid: u32) -> Vec<Thread> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        // Fields after the `(comm)` part: state is field 3, nice field 19, policy 41.
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let field = |n: usize| {
            after
                .split_whitespace()
                .nth(n - 3)
                .unwrap()
                .parse()
                .unwrap()
        };
        let cpus = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or_default();
        found.push(Thread {
            name: name.trim().to_owned(),
            nice: field(19),
            policy: field(41),
            cpus: cpus.trim().to_owned(),
        });
    }
    found
}

/// `auditlog up` with `extra` flags, once its auditor's store has served a query
/// (so that its reader connections exist too): its threads.
async fn threads_of_up(extra: &[&str]) -> Vec<Thread> {
    let (_tmp, dir) = data_dir();
    let running = Running::up_with(&dir, extra);
    let client = Client::new(&running.urls.api).login(1).await;
    assert_eq!(client.get("/api/users/1").await.status, 200);
    assert_eq!(client.get("/events/on/users/1").await.status, 200);
    threads(running.pid())
}

fn named<'a>(threads: &'a [Thread], prefix: &str) -> Vec<&'a Thread> {
    let found: Vec<_> = threads
        .iter()
        .filter(|t| t.name.starts_with(prefix))
        .collect();
    assert!(!found.is_empty(), "no {prefix} threads in {threads:?}");
    found
}

#[tokio::test]
async fn the_in_process_auditor_runs_on_idle_time_by_default() {
    let threads = threads_of_up(&[]).await;
    let auditor = named(&threads, "auditlog-audito");
    assert!(
        auditor.iter().all(|t| t.policy == SCHED_IDLE),
        "{threads:?}"
    );
    let api = named(&threads, "tokio-rt-worker");
    assert!(
        api.iter().all(|t| t.policy == SCHED_OTHER && t.nice == 0),
        "{threads:?}"
    );
    // SQLite's connection threads: the audit store's inherit the auditor's
    // policy, the primary API's database keeps the normal one.
    let sqlite: Vec<i64> = named(&threads, "sqlx-sqlite")
        .iter()
        .map(|t| t.policy)
        .collect();
    assert!(
        sqlite.contains(&SCHED_IDLE) && sqlite.contains(&SCHED_OTHER),
        "{threads:?}"
    );
}

#[tokio::test]
async fn the_in_process_auditor_takes_the_nice_value_and_cpus_it_is_given() {
    let threads = threads_of_up(&["--auditor-priority", "10", "--auditor-cpus", "0"]).await;
    let auditor = named(&threads, "auditlog-audito");
    assert!(
        auditor
            .iter()
            .all(|t| t.policy == SCHED_OTHER && t.nice == 10 && t.cpus == "0"),
        "{threads:?}"
    );
    let api = named(&threads, "tokio-rt-worker");
    assert!(api.iter().all(|t| t.nice == 0), "{threads:?}");
    let sqlite: Vec<i64> = named(&threads, "sqlx-sqlite")
        .iter()
        .map(|t| t.nice)
        .collect();
    assert!(sqlite.contains(&10) && sqlite.contains(&0), "{threads:?}");
}

#[test]
fn cpus_the_machine_does_not_have_are_refused_at_start_naming_those_it_has() {
    let (_tmp, dir) = data_dir();
    // Free ports, should the check ever let it start.
    let output = std::process::Command::new(common::binary())
        .args(["up", "--auditor-cpus", "1000"])
        .env("AUDITLOG_DATA_DIR", &dir)
        .env("AUDITLOG_API_ADDR", "127.0.0.1:0")
        .env("AUDITLOG_AUDITOR_ADDR", "127.0.0.1:0")
        .env("AUDITLOG_WEB_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--auditor-cpus 1000") && stderr.contains("this machine's CPUs are 0"),
        "{stderr}"
    );
}
