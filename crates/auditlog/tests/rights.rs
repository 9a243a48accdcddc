//! The attacks of issue 19's findings 1, 4 and 5, each performed against the real
//! binary as the attacker would: a demoted or deleted user's token, a producer
//! lying about itself, a member reading someone else's notes. Each test fails on
//! the code before the fix.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Client, Running, all_events, data_dir, user_doc};
use serde_json::{Value, json};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Creates a user as `admin`; its id.
async fn create_user(admin: &Client, name: &str, role: &str) -> i64 {
    let email = format!("{}@happi.com", name.to_lowercase());
    let created = admin
        .post(
            "/api/users",
            user_doc(json!({"name": name, "email": email, "role": role})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body["data"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The same client talking to another service.
fn at(client: &Client, base: &str) -> Client {
    Client {
        base: base.to_owned(),
        ..client.clone()
    }
}

/// One NDJSON line of an event ingested over HTTP.
async fn ingest(client: &Client, events: &[Value]) -> common::Answer {
    let body: String = events.iter().map(|e| format!("{e}\n")).collect();
    client
        .raw(
            "POST",
            "/api/data-events",
            "application/x-ndjson",
            body.into_bytes(),
        )
        .await
}

/// Finding 1: within a second of a demotion or a deletion, neither API honours
/// the rights the old token carried.
#[tokio::test]
async fn a_demoted_or_deleted_users_token_loses_its_rights_within_a_second() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let (api, auditor) = (system.urls.api.clone(), system.urls.auditor.clone());
    let admin = Client::new(&api).login(1).await;
    let deputy_id = create_user(&admin, "Deputy", "admin").await;
    let member_id = create_user(&admin, "Leaver", "user").await;
    let deputy = Client::new(&api).login(deputy_id).await;
    let leaver = Client::new(&api).login(member_id).await;
    // Before: the deputy has an admin's rights on both APIs.
    assert_eq!(deputy.get("/api/users").await.status, 200);
    assert_eq!(
        at(&deputy, &auditor).get("/events/by/users/1").await.status,
        200
    );
    assert_eq!(leaver.get("/api/users").await.status, 200);

    let demoted = admin
        .patch(
            &format!("/api/users/{deputy_id}"),
            json!({"data": {"type": "users", "attributes": {"role": "user"}}}),
        )
        .await;
    assert_eq!(demoted.status, 200, "{}", demoted.body);
    let deleted = admin.delete(&format!("/api/users/{member_id}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The demoted admin's old token: no admin rights anywhere.
    let made = deputy
        .post(
            "/api/users",
            user_doc(json!({"name": "Sock", "email": "sock@happi.com", "role": "admin"})),
        )
        .await;
    assert!(
        [401, 403].contains(&made.status),
        "the demoted admin created a user: {} {}",
        made.status,
        made.body
    );
    let read = at(&deputy, &auditor).get("/events/by/users/1").await;
    assert!(
        [401, 403].contains(&read.status),
        "the auditor let the demoted admin read someone else's events: {} {}",
        read.status,
        read.body
    );
    let stored = ingest(
        &at(&deputy, &auditor),
        &[
            json!({"action": "viewed", "actorType": "users", "actorId": deputy_id,
                 "targetType": "users", "targetId": 1}),
        ],
    )
    .await;
    assert!(
        [401, 403].contains(&stored.status),
        "the auditor let the demoted admin ingest: {} {}",
        stored.status,
        stored.body
    );
    // A new token carries the new rights, and works at once.
    let renewed = Client::new(&api).login(deputy_id).await;
    assert_eq!(
        at(&renewed, &auditor)
            .get(&format!("/events/by/users/{deputy_id}"))
            .await
            .status,
        200
    );
    assert_eq!(
        at(&renewed, &auditor)
            .get("/events/by/users/1")
            .await
            .status,
        403
    );

    // The deleted user's token: nothing at all.
    for answer in [
        leaver.get("/api/users").await,
        leaver
            .post(
                "/api/notes",
                json!({"data": {"type": "notes",
                    "attributes": {"target": format!("users:{member_id}"), "body": "still here"}}}),
            )
            .await,
        at(&leaver, &auditor)
            .get(&format!("/events/by/users/{member_id}"))
            .await,
    ] {
        assert_eq!(
            answer.status, 401,
            "a deleted user's token still works: {}",
            answer.body
        );
    }
}

/// Finding 4: what a producer says about itself is not taken on trust.
#[tokio::test]
async fn ingest_records_who_delivered_and_refuses_forged_identities() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let (api, auditor) = (system.urls.api.clone(), system.urls.auditor.clone());
    let admin = Client::new(&api).login(1).await;
    create_user(&admin, "Victim", "user").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let direct = at(&admin, &auditor);

    // The primary API's own events say who delivered them and how.
    let created = all_events(&admin, "/events/on/users/2?filter[action]=created").await;
    let a = &created[0]["attributes"];
    assert_eq!(a["ingestedBy"], "services/api", "{a}");
    assert_eq!(a["via"], "embedded", "{a}");
    assert!(a["receivedAt"].as_i64().is_some(), "{a}");

    // A backdated event in the primary API's name, sent by the admin: stored,
    // but as what it is.
    let day_ago = now_ms() - 24 * 3600 * 1000;
    let forged = json!({"action": "changed", "actorType": "users", "actorId": 2,
        "targetType": "users", "targetId": 2, "source": "api", "timestamp": day_ago,
        "changes": {"role": {"prev": "user", "next": "admin"}}});
    let answer = ingest(&direct, std::slice::from_ref(&forged)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let id = answer.body["data"][0]["id"].as_str().unwrap().to_owned();
    let stored = direct.get(&format!("/api/data-events/{id}")).await;
    let a = &stored.body["data"]["attributes"];
    assert_eq!(a["ingestedBy"], "users/1", "{}", stored.body);
    assert_eq!(a["via"], "http", "{}", stored.body);
    let received = a["receivedAt"].as_i64().unwrap();
    assert!(received - day_ago > 23 * 3600 * 1000, "{}", stored.body);
    assert_eq!(
        stored.body["data"]["meta"]["clockSkewed"], true,
        "a day-old timestamp is flagged: {}",
        stored.body
    );
    // ...and the same through the primary API's proxy, in a page.
    let page = admin.get("/events/on/users/2?filter[action]=changed").await;
    assert_eq!(
        page.body["data"][0]["meta"]["clockSkewed"], true,
        "{}",
        page.body
    );

    // The body cannot say who delivered it.
    let mut claims = forged.clone();
    claims["ingestedBy"] = json!("services/api");
    claims["via"] = json!("embedded");
    let refused = ingest(&direct, &[claims]).await;
    assert_eq!(refused.status, 422, "{}", refused.body);

    // The auditor's own source and event names are its own.
    for reserved in [
        json!({"action": "viewed", "actorType": "users", "actorId": 2,
               "targetType": "data-events", "targetId": "collection",
               "source": "auditor"}),
        json!({"action": "viewed", "actorType": "users", "actorId": 2,
               "targetType": "data-events", "targetId": "collection",
               "eventName": "audit.read"}),
    ] {
        let refused = ingest(&direct, std::slice::from_ref(&reserved)).await;
        assert_eq!(refused.status, 422, "{reserved}: {}", refused.body);
    }

    // The outbox's producer id belongs to the primary API: the admin cannot take
    // its next number and hide a lost event.
    let producers = direct.get("/api/producers").await;
    let outbox = producers.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"].as_str().unwrap().contains("outbox"))
        .cloned()
        .unwrap_or_else(|| panic!("no outbox producer: {}", producers.body));
    let producer_id = outbox["id"].as_str().unwrap().to_owned();
    let last = outbox["attributes"]["lastSeq"].as_u64().unwrap();
    let mut taken = forged.clone();
    taken["timestamp"] = json!(now_ms());
    taken["producerId"] = json!(producer_id);
    taken["producerSeq"] = json!(last + 1);
    let refused = ingest(&direct, &[taken]).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let reason = refused.body["errors"][0]["detail"].as_str().unwrap_or("");
    assert!(reason.contains("services/api"), "{}", refused.body);
    let after = direct.get("/api/producers").await;
    let outbox_after = after.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == producer_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        outbox_after["attributes"]["lastSeq"], last,
        "{}",
        after.body
    );
}

/// Finding 5: notes are read by their author, the user they are about and
/// admins, and members write notes only about themselves.
#[tokio::test]
async fn a_member_can_neither_read_nor_write_other_peoples_notes() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let api = system.urls.api.clone();
    let admin = Client::new(&api).login(1).await;
    let subject_id = create_user(&admin, "Subject", "user").await;
    let snoop_id = create_user(&admin, "Snoop", "user").await;
    let subject = Client::new(&api).login(subject_id).await;
    let snoop = Client::new(&api).login(snoop_id).await;
    let note = |target: String, body: &str| json!({"data": {"type": "notes", "attributes": {"target": target, "body": body}}});
    let private = admin
        .post(
            "/api/notes",
            note(format!("users:{subject_id}"), "performance review: private"),
        )
        .await;
    assert_eq!(private.status, 201, "{}", private.body);
    let note_id = private.body["data"]["id"].as_str().unwrap().to_owned();
    let own = admin
        .post("/api/notes", note("users:1".into(), "admin's own"))
        .await;
    assert_eq!(own.status, 201, "{}", own.body);

    // The snoop reads neither the note nor the list of notes about the subject.
    let by_id = snoop.get(&format!("/api/notes/{note_id}")).await;
    assert!(
        [403, 404].contains(&by_id.status),
        "a member read someone else's note: {}",
        by_id.body
    );
    let listed = snoop
        .get(&format!("/api/notes?target=users:{subject_id}"))
        .await;
    let leaked = listed.status == 200
        && listed.body["data"]
            .as_array()
            .is_some_and(|notes| !notes.is_empty());
    assert!(
        !leaked && [200, 403].contains(&listed.status),
        "a member listed notes about someone else: {} {}",
        listed.status,
        listed.body
    );
    let admins = snoop.get("/api/notes?target=users:1").await;
    assert!(
        !(admins.status == 200
            && admins.body["data"]
                .as_array()
                .is_some_and(|n| !n.is_empty())),
        "a member listed notes about the admin: {}",
        admins.body
    );
    // ...nor writes notes about anyone else.
    let written = snoop
        .post("/api/notes", note(format!("users:{subject_id}"), "gossip"))
        .await;
    assert_eq!(written.status, 403, "{}", written.body);

    // The subject and the admin read it; the snoop writes about themselves.
    assert_eq!(
        subject.get(&format!("/api/notes/{note_id}")).await.status,
        200
    );
    let about_self = subject
        .get(&format!("/api/notes?target=users:{subject_id}"))
        .await;
    assert_eq!(about_self.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        admin.get(&format!("/api/notes/{note_id}")).await.status,
        200
    );
    let mine = snoop
        .post(
            "/api/notes",
            note(format!("users:{snoop_id}"), "my own note"),
        )
        .await;
    assert_eq!(mine.status, 201, "{}", mine.body);
}

/// Finding 4 over RabbitMQ: the broker account that published an event is
/// recorded, and an event numbered under a producer id another sender holds is
/// dead-lettered with the reason instead of stored.
#[tokio::test(flavor = "multi_thread")]
async fn over_amqp_a_taken_producer_id_is_dead_lettered_with_the_reason() {
    let amqp = common::PrivateAmqp::new();
    let (_tmp, dir) = data_dir();
    let flags = amqp.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let system = Running::up_with(&dir, &flags);
    let admin = Client::new(&system.urls.api).login(1).await;
    create_user(&admin, "Carol", "user").await;
    let mut created = Vec::new();
    for _ in 0..50 {
        created = all_events(&admin, "/events/on/users/2?filter[action]=created").await;
        if !created.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = &created[0]["attributes"];
    // Our publisher names its broker account; RabbitMQ vouches for it.
    assert_eq!(a["ingestedBy"], "amqp/guest", "{a}");
    assert_eq!(a["via"], "amqp", "{a}");
    let producer_id = a["producerId"].as_str().unwrap().to_owned();

    // A publisher that does not say who it is takes the outbox's next number.
    let mut taken = json!({"action": "deleted", "actorType": "users", "actorId": 1,
        "targetType": "users", "targetId": 2, "source": "api",
        "producerId": producer_id, "producerSeq": 1000});
    let connection = lapin::Connection::connect(&amqp.url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for body in [taken.clone(), {
        taken["source"] = json!("auditor");
        taken["producerId"] = json!("someone-else/1");
        taken
    }] {
        channel
            .basic_publish(
                amqp.exchange.as_str().into(),
                "intruder.data.mutated".into(),
                Default::default(),
                body.to_string().as_bytes(),
                lapin::BasicProperties::default(),
            )
            .await
            .unwrap();
    }
    let mut reasons = Vec::new();
    for _ in 0..100 {
        let got = channel
            .basic_get(
                amqp.dead_letter_queue.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        match got {
            Some(message) => {
                let headers = message
                    .delivery
                    .properties
                    .headers()
                    .clone()
                    .unwrap_or_default();
                let reason = headers
                    .inner()
                    .get("x-auditlog-reason")
                    .and_then(|v| match v {
                        lapin::types::AMQPValue::LongString(text) => {
                            Some(String::from_utf8_lossy(text.as_bytes()).into_owned())
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                reasons.push(reason);
                if reasons.len() == 2 {
                    break;
                }
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let _ = connection.close(200, "done".into()).await;
    assert_eq!(reasons.len(), 2, "dead-lettered: {reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("belongs to amqp/guest")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("reserved")),
        "{reasons:?}"
    );
    let deleted = all_events(&admin, "/events/on/users/2?filter[action]=deleted").await;
    assert!(
        deleted.is_empty(),
        "the intruder's event was stored: {deleted:?}"
    );
}
