//! Stopping and starting: SIGTERM delivers every emitted event and exits 0, and a
//! restart on the same data directory keeps every user and every event.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

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

/// The nice value and name of each thread of process `pid` (Linux `/proc`).
fn threads(pid: u32) -> Vec<(String, i64)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the `(comm)` part: state is field 3, nice is field 19.
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let nice = after.split_whitespace().nth(16).unwrap().parse().unwrap();
        found.push((name.trim().to_owned(), nice));
    }
    found
}

#[tokio::test]
async fn the_in_process_auditor_runs_at_a_lower_priority_than_the_primary_api() {
    let (_tmp, dir) = data_dir();
    let running = Running::up(&dir);
    // Use the auditor's store from a query, so its reader connections exist too.
    let client = Client::new(&running.urls.api).login(1).await;
    assert_eq!(client.get("/api/users/1").await.status, 200);
    assert_eq!(client.get("/events/on/users/1").await.status, 200);
    let threads = threads(running.pid());
    let auditor: Vec<_> = threads
        .iter()
        .filter(|(name, _)| name.starts_with("auditlog-audito"))
        .collect();
    assert!(!auditor.is_empty(), "no auditor threads in {threads:?}");
    assert!(auditor.iter().all(|(_, nice)| *nice == 10), "{threads:?}");
    let api: Vec<_> = threads
        .iter()
        .filter(|(name, _)| name == "tokio-rt-worker")
        .collect();
    assert!(!api.is_empty(), "no primary API threads in {threads:?}");
    assert!(api.iter().all(|(_, nice)| *nice == 0), "{threads:?}");
    // SQLite's connection threads: the audit store's inherit the auditor's
    // priority, the primary API's database stays at the normal one.
    let sqlite: Vec<i64> = threads
        .iter()
        .filter(|(name, _)| name.starts_with("sqlx-sqlite"))
        .map(|(_, nice)| *nice)
        .collect();
    assert!(sqlite.contains(&10) && sqlite.contains(&0), "{threads:?}");
}
