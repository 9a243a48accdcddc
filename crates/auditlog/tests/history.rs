//! Rich queries through the primary API (proxied to the auditor with the caller's
//! token): counts, one event by id, object state and diff, the live stream, and
//! `auditlog export`; and a stop that does not wait for open live streams.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, Running, all_events, binary, created_on_user_1, data_dir, user_doc};
use futures_util::StreamExt;
use serde_json::json;

async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

#[tokio::test]
async fn the_primary_api_answers_counts_single_events_state_diff_and_exports() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let client = Client::new(&system.urls.api).login(1).await;
    let created = client
        .post(
            "/api/users",
            user_doc(json!({"name": "Hist", "email": "hist@happi.com"})),
        )
        .await;
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    settle().await;
    let after_create =
        all_events(&client, &format!("/events/on/users/{id}")).await[0]["attributes"]["timestamp"]
            .as_i64()
            .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    for name in ["Hist 2", "Hist 3"] {
        let patched = client
            .patch(
                &format!("/api/users/{id}"),
                json!({"data": {"type": "users", "attributes": {"name": name}}}),
            )
            .await;
        assert_eq!(patched.status, 200);
    }
    assert_eq!(client.delete(&format!("/api/users/{id}")).await.status, 204);
    settle().await;

    let counted = client
        .get(&format!("/api/data-events?filter[targetType]=users&filter[targetId]={id}&count=true&page[size]=1"))
        .await;
    assert_eq!(counted.status, 200);
    let events = all_events(&client, &format!("/events/on/users/{id}")).await;
    assert_eq!(counted.body["meta"]["total"], events.len());

    let event_id = events[0]["id"].as_str().unwrap();
    let one = client.get(&format!("/api/data-events/{event_id}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["data"]["attributes"]["action"], "deleted");

    let state = client
        .get(&format!("/api/users/{id}/state?at={after_create}"))
        .await;
    assert_eq!(state.status, 200, "{}", state.body);
    assert_eq!(state.body["data"]["attributes"]["fields"]["name"], "Hist");
    let now = client.get(&format!("/api/users/{id}/state")).await;
    assert_eq!(now.body["data"]["attributes"]["exists"], false);
    let diff = client
        .get(&format!("/api/users/{id}/diff?from={after_create}"))
        .await;
    assert_eq!(diff.status, 200, "{}", diff.body);
    assert_eq!(
        diff.body["data"]["attributes"]["changes"]["name"]["prev"],
        "Hist"
    );

    // `auditlog export` streams the same events to a file.
    let out = dir.join("export.csv");
    let status = Command::new(binary())
        .args([
            "export",
            "--api-url",
            &system.urls.api,
            "--as-user",
            "1",
            "--target",
            &format!("users:{id}"),
            "--format",
            "csv",
            "-o",
            out.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let csv = std::fs::read_to_string(&out).unwrap();
    assert!(csv.starts_with("id,timestamp,action,"));
    assert_eq!(csv.lines().count(), events.len() + 1);

    // --since and --until take the forms `auditlog query` takes: here a span back
    // from now and an RFC 3339 time just after the creation (exclusive).
    let until = rfc3339(after_create + 1);
    let exported = Command::new(binary())
        .args([
            "export",
            "--api-url",
            &system.urls.api,
            "--as-user",
            "1",
            "--target",
            &format!("users:{id}"),
            "--since",
            "1h",
            "--until",
            &until,
        ])
        .output()
        .unwrap();
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let timestamps: Vec<i64> = String::from_utf8(exported.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["timestamp"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let up_to_creation = events
        .iter()
        .filter(|e| e["attributes"]["timestamp"].as_i64().unwrap() <= after_create)
        .count();
    assert!(up_to_creation >= 1 && up_to_creation < events.len());
    assert_eq!(timestamps.len(), up_to_creation, "{until}: {timestamps:?}");
    assert!(
        timestamps.iter().all(|t| *t <= after_create),
        "{timestamps:?}"
    );
}

#[tokio::test]
async fn a_seeded_user_has_a_state_before_its_first_change_and_is_recorded_once() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let client = Client::new(&system.urls.api).login(1).await;
    let seeded = created_on_user_1(&client).await;
    let before_change = auditlog_event::now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let patched = client
        .patch(
            "/api/users/1",
            json!({"data": {"type": "users", "attributes": {"name": "Jim Chavo"}}}),
        )
        .await;
    assert_eq!(patched.status, 200);
    settle().await;

    let state = client
        .get(&format!("/api/users/1/state?at={before_change}"))
        .await;
    assert_eq!(state.status, 200, "{}", state.body);
    let then = &state.body["data"]["attributes"];
    assert_eq!(then["exists"], true, "{}", state.body);
    assert_eq!(then["fields"]["name"], "James Chavo");
    assert_eq!(then["fields"]["email"], "jim.chavo@happi.com");
    // What answered it: one `created` by the system, with every field.
    assert_eq!(seeded.len(), 1, "{seeded:?}");
    let seed = &seeded[0]["attributes"];
    assert_eq!(
        (&seed["actorType"], &seed["actorId"]),
        (&json!("system"), &json!("seed"))
    );
    assert_eq!(seed["changes"]["name"]["next"], "James Chavo");

    // A restart neither seeds nor records again.
    assert!(system.terminate().success());
    let system = Running::up(&dir);
    let client = Client::new(&system.urls.api).login(1).await;
    settle().await;
    assert_eq!(created_on_user_1(&client).await.len(), 1);
}

/// Milliseconds since the Unix epoch as RFC 3339 in UTC, as a user would type it.
fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[tokio::test]
async fn the_live_stream_delivers_through_the_primary_api_and_does_not_hold_up_a_stop() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let client = Client::new(&system.urls.api).login(1).await;
    let response = client
        .http
        .get(format!(
            "{}/api/data-events/stream?filter[action]=created",
            system.urls.api
        ))
        .bearer_auth(client.token.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = response.bytes_stream();
    let created = client
        .post(
            "/api/users",
            user_doc(json!({"name": "Live", "email": "live@happi.com"})),
        )
        .await;
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while !(seen.contains("event: data-event") && seen.contains(&format!("\"targetId\":{id}"))) {
        assert!(
            Instant::now() < deadline,
            "no live event within 10 s: {seen}"
        );
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), body.next()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    // Stopping with the stream still open is prompt.
    let stopping = Instant::now();
    assert!(system.terminate().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        stopping.elapsed()
    );
}
