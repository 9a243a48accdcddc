//! Erasure by crypto-shredding, through the real binary: a user's name and email
//! go through `created` and `changed` events via the primary API; every answer
//! shows them decrypted while the store's files hold only ciphertext; `auditlog
//! erase` deletes the user's key and records the erasure; from then on every
//! answer (queries, one event, exports, the live stream, state and diff) shows
//! the values as erased, another user's stay readable, the plaintext is in none
//! of the store's files (SQLite: the main file, WAL and shared memory; PostgreSQL
//! and MariaDB: a `pg_dump`/`mysqldump` of the audit database), and `auditlog
//! verify` still passes. Run on each of the three stores.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use auditlog_store::testing::{self, TestDatabase};
use common::{Client, Running, all_events, binary, data_dir, describe, user_doc};
use futures_util::StreamExt;
use serde_json::{Value, json};

const NAME: &str = "Zelda Erasable-Quux";
const RENAMED: &str = "Zelda Renamed-Quux";
const EMAIL: &str = "zelda.erasable@example.test";
const OTHER_NAME: &str = "Otto Keepname-Quux";
const OTHER_EMAIL: &str = "otto.keep@example.test";

const ERASED: &str = r#"{"erased":true}"#;

/// The personal values of the erased user, as they must appear nowhere after.
const PLAINTEXTS: [&str; 3] = [NAME, RENAMED, EMAIL];

/// Waits until `path` lists at least `count` events other than reads.
async fn wait_for(client: &Client, path: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events: Vec<Value> = all_events(client, path)
            .await
            .into_iter()
            .filter(|e| e["attributes"]["targetType"] != "data-events")
            .collect();
        if events.len() >= count {
            return events;
        }
        assert!(Instant::now() < deadline, "{path}: only {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the audit store holds, as bytes: on SQLite every file (main file, WAL,
/// shared memory), on a server a dump of the database.
fn audit_store_bytes(dir: &Path, store: &Store) -> Vec<(String, Vec<u8>)> {
    let dump = |program: &str, args: &[&str]| {
        let output = Command::new(program).args(args).output().unwrap();
        assert!(output.status.success(), "{program}: {}", describe(&output));
        vec![(program.to_owned(), output.stdout)]
    };
    match store {
        Store::Sqlite => ["audit.db", "audit.db-wal", "audit.db-shm"]
            .iter()
            .filter_map(|name| {
                std::fs::read(dir.join(name))
                    .ok()
                    .map(|b| (name.to_string(), b))
            })
            .collect(),
        Store::Server(db) if db.url().starts_with("postgres") => dump("pg_dump", &[db.url()]),
        Store::Server(db) => {
            let name = db.url().rsplit('/').next().unwrap();
            dump("mysqldump", &["-h", "127.0.0.1", "-u", "root", name])
        }
    }
}

fn assert_no_plaintext_in_store(dir: &Path, store: &Store, when: &str) {
    let files = audit_store_bytes(dir, store);
    assert!(
        files.iter().all(|(_, bytes)| bytes.len() > 1000),
        "{when}: nothing read"
    );
    for (name, bytes) in files {
        for plain in PLAINTEXTS {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
                "{when}: {name} holds `{plain}`"
            );
        }
    }
}

/// The events of the live stream on `users/<id>` from the start of the log
/// (`after=0`), once `count` of them arrived.
async fn streamed(client: &Client, id: &str, count: usize) -> String {
    let response = client
        .http
        .get(format!(
            "{}/api/data-events/stream?after=0&filter[targetType]=users&filter[targetId]={id}",
            client.base
        ))
        .bearer_auth(client.token.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.matches("event: data-event").count() < count {
        assert!(Instant::now() < deadline, "the stream sent only: {seen}");
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), body.next()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    seen
}

fn export(api: &str, id: &str, format: &str) -> String {
    let output = Command::new(binary())
        .args([
            "export",
            "--api-url",
            api,
            "--as-user",
            "1",
            "--target",
            &format!("users:{id}"),
            "--format",
            format,
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8(output.stdout).unwrap()
}

fn assert_none_of(text: &str, plaintexts: &[&str], what: &str) {
    for plain in plaintexts {
        assert!(!text.contains(plain), "{what} shows `{plain}`: {text}");
    }
}

/// Where the audit store is.
enum Store {
    /// `audit.db` in the data directory, the default.
    Sqlite,
    /// A private PostgreSQL or MariaDB database.
    Server(TestDatabase),
}

impl Store {
    fn url(&self, dir: &Path) -> String {
        match self {
            Store::Sqlite => format!("sqlite://{}", dir.join("audit.db").display()),
            Store::Server(db) => db.url().to_owned(),
        }
    }
}

#[tokio::test]
async fn on_sqlite_an_erased_users_personal_data_is_gone_and_the_log_verifies() {
    scenario(Store::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_an_erased_users_personal_data_is_gone_and_the_log_verifies() {
    scenario(Store::Server(testing::fresh_postgres_url().await)).await;
}

#[tokio::test]
async fn on_mariadb_an_erased_users_personal_data_is_gone_and_the_log_verifies() {
    scenario(Store::Server(testing::fresh_mysql_url().await)).await;
}

async fn scenario(store: Store) {
    let (_tmp, dir) = data_dir();
    let url = store.url(&dir);
    let system = Running::up_with(&dir, &["--store-url", &url]);
    let admin = Client::new(&system.urls.api).login(1).await;
    let (id, _) = admin.new_member(NAME, EMAIL).await;
    let (other, member) = admin.new_member(OTHER_NAME, OTHER_EMAIL).await;
    let renamed = admin
        .patch(
            &format!("/api/users/{id}"),
            user_doc(json!({"name": RENAMED})),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let (id, other) = (id.to_string(), other.to_string());
    let on_user = format!("/events/on/users/{id}");
    let mutations = format!("{on_user}?filter[action]=created,changed");
    wait_for(&admin, &mutations, 2).await;
    wait_for(
        &admin,
        &format!("/events/on/users/{other}?filter[action]=created"),
        1,
    )
    .await;

    // Before: readers get the values decrypted, everywhere.
    let events = wait_for(&admin, &mutations, 2).await;
    let text = serde_json::to_string(&events).unwrap();
    for plain in PLAINTEXTS {
        assert!(text.contains(plain), "the query shows `{plain}`: {text}");
    }
    let one = admin
        .get(&format!(
            "/api/data-events/{}",
            events[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        one.body["data"]["attributes"]["changes"]["name"]["next"],
        RENAMED
    );
    let state = admin.get(&format!("/api/users/{id}/state")).await;
    assert_eq!(
        state.body["data"]["attributes"]["fields"]["name"], RENAMED,
        "{}",
        state.body
    );
    assert_eq!(state.body["data"]["attributes"]["fields"]["email"], EMAIL);
    assert!(export(&system.urls.api, &id, "csv").contains(EMAIL));
    assert!(streamed(&admin, &id, 2).await.contains(NAME));
    // ... while the store's files hold only ciphertext.
    assert_no_plaintext_in_store(&dir, &store, "before the erasure");

    // Only admins may erase: a member is refused with a JSON:API error.
    let auditor = |client: &Client| Client {
        base: system.urls.auditor.clone(),
        ..client.clone()
    };
    let erasure = json!({"data": {"type": "erasures", "attributes": {
        "subjectType": "users", "subjectId": id}}});
    let refused = auditor(&member)
        .post("/api/erasures", erasure.clone())
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.body["errors"][0]["status"], "403",
        "{}",
        refused.body
    );

    // `auditlog erase` over HTTP to the auditor.
    let erased = Command::new(binary())
        .args([
            "erase",
            "--subject",
            &format!("users:{id}"),
            "--as-user",
            "1",
            "--api-url",
            &system.urls.api,
            "--auditor-url",
            &system.urls.auditor,
        ])
        .output()
        .unwrap();
    assert!(erased.status.success(), "{}", describe(&erased));
    assert!(
        String::from_utf8_lossy(&erased.stdout).contains("its key is deleted"),
        "{}",
        describe(&erased)
    );
    // Idempotent: again over HTTP, recorded too, with nothing left to delete.
    let again = auditor(&admin).post("/api/erasures", erasure.clone()).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body["data"]["attributes"]["keyExisted"], false);

    // After: every answer shows the values as erased.
    let events = wait_for(&admin, &mutations, 2).await;
    let text = serde_json::to_string(&events).unwrap();
    assert_none_of(&text, &PLAINTEXTS, "the query");
    let created = events
        .iter()
        .find(|e| e["attributes"]["action"] == "created")
        .unwrap();
    assert_eq!(
        created["attributes"]["changes"]["name"]["next"].to_string(),
        ERASED
    );
    assert_eq!(
        created["attributes"]["changes"]["email"]["next"].to_string(),
        ERASED
    );
    let one = admin
        .get(&format!(
            "/api/data-events/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        one.body["data"]["attributes"]["changes"]["name"]["next"].to_string(),
        ERASED
    );
    let state = admin.get(&format!("/api/users/{id}/state")).await;
    let fields = &state.body["data"]["attributes"];
    assert_eq!(
        fields["exists"], true,
        "an erasure is no deletion: {}",
        state.body
    );
    assert_eq!(
        fields["fields"]["name"].to_string(),
        ERASED,
        "{}",
        state.body
    );
    let diff = admin.get(&format!("/api/users/{id}/diff?from=0")).await;
    assert_eq!(diff.status, 200, "{}", diff.body);
    assert_none_of(&diff.body.to_string(), &PLAINTEXTS, "the diff");
    for format in ["csv", "ndjson"] {
        let exported = export(&system.urls.api, &id, format);
        assert_none_of(&exported, &PLAINTEXTS, format);
        assert!(exported.contains("erased"), "{format}: {exported}");
    }
    let stream = streamed(&admin, &id, 3).await;
    assert_none_of(&stream, &PLAINTEXTS, "the stream");
    assert!(stream.contains(ERASED), "{stream}");

    // Another user's data is untouched.
    let others = wait_for(
        &admin,
        &format!("/events/on/users/{other}?filter[action]=created"),
        1,
    )
    .await;
    assert_eq!(
        others[0]["attributes"]["changes"]["email"]["next"],
        OTHER_EMAIL
    );

    // The erasures are recorded: who erased whom, once per request.
    let records = wait_for(
        &admin,
        &format!("{on_user}?filter[eventName]=audit.erased"),
        2,
    )
    .await;
    assert_eq!(records.len(), 2, "{records:?}");
    let first = &records[1]["attributes"];
    assert_eq!(
        (&first["actorType"], &first["actorId"]),
        (&json!("users"), &json!(1))
    );
    assert_eq!(first["action"], "deleted");
    assert_eq!(first["meta"]["keyExisted"], true);
    assert_eq!(records[0]["attributes"]["meta"]["keyExisted"], false);

    // The files hold neither the plaintext nor anything that opens the
    // ciphertext, and the log, whose leaves hold the ciphertext, still verifies.
    assert!(system.terminate().success());
    assert_no_plaintext_in_store(&dir, &store, "after the erasure");
    let raw_store = auditlog_store::open(&url).await.unwrap();
    let subject = auditlog_store::DataSubject {
        tenant: auditlog_event::DEFAULT_TENANT.into(),
        object_type: auditlog_event::ObjectType::parse("t", "users").unwrap(),
        id: id.clone(),
    };
    assert!(raw_store.subject_keys(&[subject]).await.unwrap().is_empty());
    let raw = raw_store
        .get(created["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(raw.body.contains(r#"{"$enc":"v1:"#), "{}", raw.body);
    drop(raw_store);
    let verified = Command::new(binary())
        .args([
            "verify",
            "--data-dir",
            dir.to_str().unwrap(),
            "--store-url",
            &url,
        ])
        .env_remove("AUDITLOG_STORE_URL")
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", describe(&verified));
}
