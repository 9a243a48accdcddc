//! The query routes driven over real HTTP: the auditor's router on a free port with
//! an SQLite store (every backend's SQL is covered by the store's behaviour suite),
//! events delivered through the ingest route, then read back as admins and members
//! would: filters, sort, pagination, counts, one event by id, CSV and NDJSON
//! exports, the live tail (SSE) and its resumption, object state and diff, and the
//! activity histogram.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "../common/mod.rs"]
mod common;
mod history;
mod ingest;

use std::collections::HashSet;
use std::time::Duration;

use auditlog_auth::Role;
use auditlog_event::{Action, Change, Changes, DataEvent, ObjectId, ObjectRef, ObjectType};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_TYPE};
use serde_json::{Value, json};

use common::App;

const JSON_API: &str = "application/vnd.api+json";

impl App {
    fn admin(&self) -> String {
        self.token("1", Role::Admin)
    }

    async fn ingest(&self, events: &[DataEvent]) {
        let body: String = events.iter().map(|e| e.to_json() + "\n").collect();
        let response = self
            .client
            .post(format!("{}/api/data-events", self.base))
            .bearer_auth(self.admin())
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let meta = response.json::<Value>().await.unwrap()["meta"].clone();
        assert_eq!(meta["stored"].as_u64(), Some(events.len() as u64), "{meta}");
    }

    async fn get_as(&self, token: &str, path_and_query: &str) -> reqwest::Response {
        let url = if path_and_query.starts_with("http") {
            path_and_query.to_owned()
        } else {
            format!("{}{path_and_query}", self.base)
        };
        self.client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// A JSON document answered with `status` as an admin.
    async fn json(&self, path_and_query: &str, status: StatusCode) -> Value {
        let response = self.get_as(&self.admin(), path_and_query).await;
        assert_eq!(response.status(), status, "{path_and_query}");
        assert_eq!(response.headers()[CONTENT_TYPE], JSON_API);
        response.json().await.unwrap()
    }

    /// The ids of the events of a page, as an admin.
    async fn ids(&self, path_and_query: &str) -> Vec<String> {
        ids_of(&self.json(path_and_query, StatusCode::OK).await)
    }
}

fn ids_of(document: &Value) -> Vec<String> {
    document["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn kind(name: &str) -> ObjectType {
    ObjectType::parse("actorType", name).unwrap()
}

fn event(action: Action, actor: i64, target: (&str, i64), ts: i64) -> DataEvent {
    DataEvent::new(
        action,
        ObjectRef::new(kind("users"), actor),
        ObjectRef::new(kind(target.0), target.1),
        ts,
    )
}

fn with_changes(mut e: DataEvent, fields: &[(&str, Value, Value)]) -> DataEvent {
    let mut changes = Changes::new();
    for (field, prev, next) in fields {
        changes.insert((*field).into(), Change::new(prev.clone(), next.clone()));
    }
    e.changes = Some(changes);
    e
}

fn id(e: &DataEvent) -> String {
    e.id.to_string()
}

/// A small world: users 1 (admin) and 2 acting on users and notes.
fn world() -> Vec<DataEvent> {
    let mut named = event(Action::Changed, 1, ("users", 2), 300);
    named = with_changes(named, &[("name", json!("a"), json!("b"))]);
    named.event_name = Some("user.renamed".into());
    let mut tos = event(Action::Changed, 2, ("users", 2), 400);
    tos = with_changes(tos, &[("agreedTos", json!(false), json!(true))]);
    tos.event_name = Some("user.tos_accepted".into());
    vec![
        event(Action::Created, 1, ("users", 2), 100),
        event(Action::Viewed, 1, ("users", 2), 200),
        named,
        tos,
        event(Action::Viewed, 2, ("notes", 9), 500),
        event(Action::Deleted, 1, ("notes", 9), 600),
    ]
}

#[tokio::test]
async fn every_filter_narrows_the_results_alone_and_together() {
    let app = App::spawn().await;
    let w = world();
    app.ingest(&w).await;
    let all = "/api/data-events";

    assert_eq!(app.ids(all).await.len(), 6);
    assert_eq!(
        app.ids(&format!("{all}?filter[actorType]=users&filter[actorId]=2"))
            .await,
        [id(&w[4]), id(&w[3])]
    );
    assert_eq!(
        app.ids(&format!(
            "{all}?filter[targetType]=notes&filter[targetId]=9"
        ))
        .await,
        [id(&w[5]), id(&w[4])]
    );
    assert_eq!(
        app.ids(&format!(
            "{all}?filter[actorType]=users&filter[actorId]=1&filter[targetType]=users&filter[targetId]=2"
        ))
        .await,
        [id(&w[2]), id(&w[1]), id(&w[0])]
    );
    assert_eq!(
        app.ids(&format!("{all}?filter[action]=created,deleted"))
            .await,
        [id(&w[5]), id(&w[0])]
    );
    assert_eq!(
        app.ids(&format!(
            "{all}?filter[eventName]=user.renamed,user.tos_accepted"
        ))
        .await,
        [id(&w[3]), id(&w[2])]
    );
    assert_eq!(
        app.ids(&format!("{all}?filter[since]=200&filter[until]=400"))
            .await,
        [id(&w[2]), id(&w[1])]
    );
    assert_eq!(
        app.ids(&format!(
            "{all}?filter[eventName]=user.renamed&filter[actorType]=users&filter[actorId]=2"
        ))
        .await,
        Vec::<String>::new()
    );
    // The other routes take the same filters.
    assert_eq!(
        app.ids("/events/on/users/2?filter[eventName]=user.tos_accepted")
            .await,
        [id(&w[3])]
    );
    assert_eq!(
        app.ids("/events/by/users/1?filter[targetType]=notes&filter[targetId]=9")
            .await,
        [id(&w[5])]
    );
    assert_eq!(
        app.ids("/api/notes/9/data-events?sort=timestamp").await,
        [id(&w[4]), id(&w[5])]
    );
}

#[tokio::test]
async fn sort_count_and_pagination_in_both_directions_survive_new_events() {
    let batch: Vec<DataEvent> = (0..12)
        .map(|n| event(Action::Viewed, 1, ("users", n), 1_000 + n / 3))
        .collect();

    for (sort, expected) in [
        ("-timestamp", batch.iter().rev().map(id).collect::<Vec<_>>()),
        ("timestamp", batch.iter().map(id).collect::<Vec<_>>()),
    ] {
        let app = App::spawn().await;
        app.ingest(&batch).await;
        let mut seen = Vec::new();
        let mut next = format!("/api/data-events?sort={sort}&page[size]=5&count=true");
        let mut round = 0;
        loop {
            let page = app.json(&next, StatusCode::OK).await;
            // The total counts what matches when the page is read, including the
            // `audit.read` event each earlier page read recorded.
            assert_eq!(page["meta"]["total"].as_u64(), Some(12 + 3 * round));
            seen.extend(ids_of(&page));
            round += 1;
            // Newer events arrive between pages.
            let newer: Vec<DataEvent> = (0..2)
                .map(|n| event(Action::Viewed, 1, ("users", 100 + n), 5_000))
                .collect();
            app.ingest(&newer).await;
            match page["links"]["next"].as_str() {
                Some(link) => next = link.to_owned(),
                None => break,
            }
        }
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{sort}: an event twice");
        let originals: Vec<_> = seen
            .iter()
            .filter(|i| expected.contains(i))
            .cloned()
            .collect();
        assert_eq!(originals, expected, "{sort}");
        if sort == "-timestamp" {
            assert_eq!(seen.len(), 12);
        }
    }

    // A cursor handed out for one order is refused with the other.
    let app = App::spawn().await;
    app.ingest(&batch).await;
    let page = app
        .json(
            "/api/data-events?sort=timestamp&page[size]=2",
            StatusCode::OK,
        )
        .await;
    let link = page["links"]["next"].as_str().unwrap();
    let cursor = link.split("page%5Bafter%5D=").nth(1).unwrap();
    let cursor = cursor.split('&').next().unwrap();
    let refused = app
        .json(
            &format!("/api/data-events?sort=-timestamp&page[after]={cursor}"),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(refused["errors"][0]["status"], "400");
    app.json("/api/data-events?sort=name", StatusCode::BAD_REQUEST)
        .await;
    // Without count=true there is no meta.
    let plain = app.json("/api/data-events", StatusCode::OK).await;
    assert!(plain.get("meta").is_none());
}

#[tokio::test]
async fn one_event_by_id_is_visible_only_to_those_who_may_read_it() {
    let app = App::spawn().await;
    let w = world();
    app.ingest(&w).await;

    let doc = app
        .json(&format!("/api/data-events/{}", id(&w[2])), StatusCode::OK)
        .await;
    assert_eq!(doc["data"]["id"], id(&w[2]));
    assert_eq!(doc["data"]["type"], "data-events");
    assert_eq!(
        without_store_fields(&doc["data"]["attributes"]),
        as_stored(&w[2])
    );

    let absent = uuid::Uuid::now_v7();
    app.json(&format!("/api/data-events/{absent}"), StatusCode::NOT_FOUND)
        .await;
    app.json("/api/data-events/not-a-uuid", StatusCode::NOT_FOUND)
        .await;

    // User 2 sees events done to them or by them, and nothing else exists for them.
    let member = app.token("2", Role::User);
    let own = app
        .get_as(&member, &format!("/api/data-events/{}", id(&w[0])))
        .await;
    assert_eq!(own.status(), StatusCode::OK);
    let by_them = app
        .get_as(&member, &format!("/api/data-events/{}", id(&w[4])))
        .await;
    assert_eq!(by_them.status(), StatusCode::OK);
    let hidden = app
        .get_as(&member, &format!("/api/data-events/{}", id(&w[5])))
        .await;
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    let stranger = app.token("3", Role::User);
    let hidden = app
        .get_as(&stranger, &format!("/api/data-events/{}", id(&w[0])))
        .await;
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    let service = app.token("svc", Role::Service);
    let refused = app
        .get_as(&service, &format!("/api/data-events/{}", id(&w[0])))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let anonymous = app
        .client
        .get(format!("{}/api/data-events/{}", app.base, id(&w[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn exports_stream_every_matching_event_as_csv_or_ndjson() {
    let app = App::spawn().await;
    // More than two store pages, with awkward values in one of them.
    let mut batch: Vec<DataEvent> = (0..2_345)
        .map(|n| event(Action::Viewed, 1, ("users", n % 7), 10_000 + n))
        .collect();
    let mut awkward = event(Action::Changed, 1, ("users", 3), 9_000);
    awkward = with_changes(
        awkward,
        &[("name", json!("Doe, \"Jim\""), json!("line\nbreak"))],
    );
    awkward.event_name = Some("user.renamed,again".into());
    awkward.source = Some("api".into());
    awkward.request_id = Some("req\n1".into());
    awkward.target_id = ObjectId::Text("3".into());
    batch.push(awkward.clone());
    app.ingest(&batch).await;

    // NDJSON: every event, exactly as stored, newest first; page[size] ignored.
    let response = app
        .get_as(&app.admin(), "/api/data-events?format=ndjson&page[size]=5")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/x-ndjson");
    assert_eq!(
        response.headers()[CONTENT_DISPOSITION],
        "attachment; filename=\"data-events.ndjson\""
    );
    let text = response.text().await.unwrap();
    // The export itself is recorded as an `audit.read` before it starts.
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.contains(r#""targetType":"data-events""#))
        .collect();
    assert_eq!(lines.len(), batch.len());
    let mut expected: Vec<&DataEvent> = batch.iter().collect();
    expected.sort_by_key(|e| std::cmp::Reverse((e.timestamp, e.id)));
    for (line, e) in lines.iter().zip(&expected) {
        assert_eq!(*line, (*e).clone().received("users/1", "http").to_json());
    }

    // CSV through the Accept header, filtered, oldest first.
    let response = app
        .client
        .get(format!(
            "{}/api/data-events?filter[targetType]=users&filter[targetId]=3&sort=timestamp",
            app.base
        ))
        .bearer_auth(app.admin())
        .header(ACCEPT, "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        response.headers()[CONTENT_DISPOSITION],
        "attachment; filename=\"data-events.csv\""
    );
    let csv = response.text().await.unwrap();
    let (header, rows) = csv.split_once("\r\n").unwrap();
    assert_eq!(
        header,
        "id,timestamp,action,actorType,actorId,targetType,targetId,eventName,changes,source,requestId,receivedAt,ingestedBy,via"
    );
    let matching = batch.iter().filter(|e| e.target_id.key() == "3").count();
    // The awkward event comes first (oldest); its request id holds a line break.
    // After the producer's fields come the auditor's: receipt time, who
    // delivered it and how.
    let expected_first = format!(
        "{},9000,changed,users,1,users,3,\"user.renamed,again\",\"{{\"\"name\"\":{{\"\"prev\"\":\"\"Doe, \\\"\"Jim\\\"\"\"\",\"\"next\"\":\"\"line\\nbreak\"\"}}}}\",api,\"req\n1\",",
        awkward.id
    );
    assert!(
        rows.starts_with(&expected_first),
        "first row: {:?}",
        &rows[..rows.len().min(300)]
    );
    assert_eq!(rows.matches("\r\n").count(), matching);
    let (receipt, rest) = rows[expected_first.len()..].split_once("\r\n").unwrap();
    let received_at: i64 = receipt.split(',').next().unwrap().parse().unwrap();
    assert!(received_at > 1_700_000_000_000, "{receipt}");
    let second = rest.split("\r\n").next().unwrap();
    let first_plain = batch.iter().find(|e| e.target_id.key() == "3").unwrap();
    assert!(
        second.starts_with(&format!(
            "{},{},viewed,users,1,users,3,,,,,",
            first_plain.id, first_plain.timestamp
        )),
        "{second}"
    );

    // Members export only what they may read.
    let member = app.token("3", Role::User);
    let mine = app
        .get_as(&member, "/api/data-events?format=ndjson")
        .await
        .text()
        .await
        .unwrap();
    let mine_without_reads = mine
        .lines()
        .filter(|line| !line.contains(r#""targetType":"data-events""#));
    assert_eq!(mine_without_reads.count(), matching);
    app.json("/api/data-events?format=xml", StatusCode::BAD_REQUEST)
        .await;
}

/// An SSE message: its id and its data.
#[derive(Debug)]
struct Message {
    id: String,
    event: String,
    data: Value,
}

/// Reads SSE messages off a streaming response.
struct Tail {
    response: reqwest::Response,
    buffer: String,
}

impl Tail {
    async fn open(app: &App, query: &str, last_event_id: Option<&str>) -> Tail {
        let mut request = app
            .client
            .get(format!("{}/api/data-events/stream{query}", app.base))
            .bearer_auth(app.admin());
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
        Tail {
            response,
            buffer: String::new(),
        }
    }

    /// The next `data-event` message, within `wait`; `None` if none came.
    async fn next(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = Message {
                    id: String::new(),
                    event: String::new(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        message.id = v.into();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        message.event = v.into();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        message.data = serde_json::from_str(v).unwrap();
                    }
                }
                if message.event == "data-event" {
                    return Some(message);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test]
async fn the_live_tail_pushes_new_matching_events_and_resumes_after_the_last_one_seen() {
    let app = App::spawn().await;
    // Stored before the tail opens: not sent (a new tail starts at "now").
    app.ingest(&[event(Action::Viewed, 1, ("users", 2), 1)])
        .await;
    let mut tail = Tail::open(&app, "?filter[targetType]=users&filter[targetId]=2", None).await;
    // Give the tail its starting point before events arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let other = event(Action::Viewed, 1, ("users", 5), 2);
    let first = event(Action::Changed, 1, ("users", 2), 3);
    let first = with_changes(first, &[("name", json!("a"), json!("b"))]);
    app.ingest(&[other, first.clone()]).await;
    let message = tail.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(message.data["id"], id(&first));
    assert_eq!(message.data["type"], "data-events");
    assert_eq!(
        without_store_fields(&message.data["attributes"]),
        as_stored(&first)
    );
    assert!(tail.next(Duration::from_millis(600)).await.is_none());
    let last_seen = message.id.clone();
    drop(tail);

    // Stored while disconnected: both sent on resumption, then live ones, none twice.
    let missed = [
        event(Action::Viewed, 2, ("users", 2), 4),
        event(Action::Viewed, 3, ("users", 2), 5),
    ];
    app.ingest(&missed).await;
    let mut tail = Tail::open(
        &app,
        "?filter[targetType]=users&filter[targetId]=2",
        Some(&last_seen),
    )
    .await;
    let a = tail.next(Duration::from_secs(5)).await.unwrap();
    let b = tail.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        [a.data["id"].clone(), b.data["id"].clone()],
        [json!(id(&missed[0])), json!(id(&missed[1]))]
    );
    let live = event(Action::Deleted, 1, ("users", 2), 6);
    app.ingest(std::slice::from_ref(&live)).await;
    let c = tail.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(c.data["id"], id(&live));
    assert!(tail.next(Duration::from_millis(600)).await.is_none());

    // `?after=` does the same as the header.
    let mut tail = Tail::open(
        &app,
        &format!("?after={last_seen}&filter[action]=viewed"),
        None,
    )
    .await;
    let d = tail.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(d.data["id"], id(&missed[0]));
}

/// An event ingested by the admin as the auditor stores it: with its receipt.
fn as_stored(event: &DataEvent) -> Value {
    serde_json::from_str(&event.clone().received("users/1", "http").to_json()).unwrap()
}

/// An answered event's attributes without the store's `seq` and `receivedAt`
/// (which must be there: they are part of the event's leaf).
fn without_store_fields(attributes: &Value) -> Value {
    let mut attributes = attributes.clone();
    let fields = attributes.as_object_mut().unwrap();
    assert!(fields.remove("seq").is_some_and(|seq| seq.is_i64()));
    assert!(fields.remove("receivedAt").is_some_and(|at| at.is_i64()));
    attributes
}
