//! The prototype's flow over HTTP only, against `auditlog up`: the audit trail of
//! every step is queryable, newest first, within a second of the last request.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::time::{Duration, Instant};

use common::{Client, Running, actions, all_events, data_dir, user_doc};
use serde_json::json;

/// Walks the flow against a running system whose primary API is at `api`.
pub async fn walk_the_prototype_flow(api: &str) {
    let client = Client::new(api).login(1).await;

    let me = client.get("/api/users/1").await;
    assert_eq!(me.status, 200);
    assert_eq!(
        me.body["data"]["attributes"]["email"],
        "jim.chavo@happi.com"
    );
    assert_eq!(me.content_type, common::JSON_API);

    let renamed = client
        .patch(
            "/api/users/1",
            json!({"data": {"type": "users", "id": "1", "attributes": {"name": "Jim Chavo"}}}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);

    let email = format!("new-{}@happi.com", uuid_like());
    let created = client
        .post(
            "/api/users",
            user_doc(json!({"name": "New Person", "email": email, "agreedTos": 0})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["data"]["attributes"]["agreedTos"], false);
    let new_id = created.body["data"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();

    let agreed = client
        .patch(
            &format!("/api/users/{new_id}"),
            json!({"data": {"type": "users", "id": new_id, "attributes": {"agreedTos": 1}}}),
        )
        .await;
    assert_eq!(agreed.status, 200, "{}", agreed.body);
    assert_eq!(agreed.body["data"]["attributes"]["agreedTos"], true);

    let deleted = client.delete(&format!("/api/users/{new_id}")).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        client.get(&format!("/api/users/{new_id}")).await.status,
        404
    );
    let last_request = Instant::now();

    let by_me = [
        ("deleted", new_id.as_str()),
        ("viewed", new_id.as_str()),
        ("changed", new_id.as_str()),
        ("viewed", new_id.as_str()),
        ("created", new_id.as_str()),
        ("viewed", "1"),
        ("changed", "1"),
        ("viewed", "1"),
    ]
    .map(|(a, t)| (a.to_owned(), t.to_owned()));
    let (by_actor, on_target) = loop {
        let by_actor = all_events(&client, "/events/by/users/1").await;
        let on_target = all_events(&client, &format!("/events/on/users/{new_id}")).await;
        if actions(&by_actor).starts_with(&by_me) && on_target.len() >= 5 {
            break (by_actor, on_target);
        }
        assert!(
            last_request.elapsed() < Duration::from_secs(1),
            "events were not queryable within 1 s; by actor: {:?}",
            actions(&by_actor)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(actions(&by_actor)[..by_me.len()], by_me);

    let on: Vec<String> = actions(&on_target).into_iter().map(|(a, _)| a).collect();
    assert_eq!(on, ["deleted", "viewed", "changed", "viewed", "created"]);
    let changed = &on_target[2]["attributes"];
    assert_eq!(
        changed["changes"],
        json!({"agreedTos": {"prev": false, "next": true}})
    );
    assert_eq!(changed["actorType"], "users");
    assert_eq!(changed["actorId"], 1);
    let created_event = &on_target[4]["attributes"];
    assert_eq!(
        created_event["changes"]["email"],
        json!({"prev": null, "next": email})
    );
    let deleted_event = &on_target[0]["attributes"];
    assert_eq!(
        deleted_event["changes"]["name"],
        json!({"prev": "New Person", "next": null})
    );

    // The rename of user 1 carried only the name, as {prev, next}.
    let on_me = all_events(&client, "/events/on/users/1?filter[action]=changed").await;
    assert_eq!(
        on_me[0]["attributes"]["changes"],
        json!({"name": {"prev": "James Chavo", "next": "Jim Chavo"}})
    );
}

/// A suffix that makes an email unique to this run.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}")
}

#[tokio::test]
async fn the_prototype_flow_is_audited_end_to_end() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    walk_the_prototype_flow(&system.urls.api).await;
}

#[tokio::test]
async fn the_three_services_work_as_separate_processes() {
    let (_tmp, dir) = data_dir();
    let auditor = Running::start(&["auditor", "--auditor-addr", "127.0.0.1:0"], &dir, 1);
    let api = Running::start(
        &[
            "api",
            "--api-addr",
            "127.0.0.1:0",
            "--auditor-url",
            &auditor.urls.auditor,
        ],
        &dir,
        1,
    );
    let web = Running::start(
        &[
            "web",
            "--web-addr",
            "127.0.0.1:0",
            "--api-url",
            &api.urls.api,
        ],
        &dir,
        1,
    );
    walk_the_prototype_flow(&api.urls.api).await;
    // The website proxies the same API.
    let through_web = Client::new(&web.urls.web).login(1).await;
    assert_eq!(through_web.get("/api/users/1").await.status, 200);
    let page = reqwest::get(&web.urls.web).await.unwrap();
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<title>auditlog</title>")
    );
}

/// The three services as separate processes over RabbitMQ, the auditor storing
/// into `store_url` and the primary API keeping its data in `app_db_url`.
async fn walk_over_rabbitmq(store_url: &str, app_db_url: &str) {
    let (_tmp, dir) = data_dir();
    let amqp = common::PrivateAmqp::new();
    let flags = amqp.flags();
    let mut auditor_args = vec![
        "auditor",
        "--auditor-addr",
        "127.0.0.1:0",
        "--store-url",
        store_url,
    ];
    auditor_args.extend(flags.iter().map(String::as_str));
    let auditor = Running::start(&auditor_args, &dir, 1);
    let mut api_args = vec![
        "api",
        "--api-addr",
        "127.0.0.1:0",
        "--auditor-url",
        &auditor.urls.auditor,
        "--app-db-url",
        app_db_url,
    ];
    api_args.extend(flags.iter().map(String::as_str));
    let api = Running::start(&api_args, &dir, 1);
    let web = Running::start(
        &[
            "web",
            "--web-addr",
            "127.0.0.1:0",
            "--api-url",
            &api.urls.api,
        ],
        &dir,
        1,
    );
    walk_the_prototype_flow(&api.urls.api).await;
    let through_web = Client::new(&web.urls.web).login(1).await;
    assert_eq!(through_web.get("/events/by/users/1").await.status, 200);
    assert!(api.terminate().success());
    assert!(auditor.terminate().success());
}

#[tokio::test]
async fn separate_processes_over_rabbitmq_on_postgresql() {
    let audit_db = auditlog_store::testing::fresh_postgres_url().await;
    let app_db = auditlog_store::testing::fresh_postgres_url().await;
    walk_over_rabbitmq(audit_db.url(), app_db.url()).await;
}

#[tokio::test]
async fn separate_processes_over_rabbitmq_on_mariadb() {
    let audit_db = auditlog_store::testing::fresh_mysql_url().await;
    let app_db = auditlog_store::testing::fresh_mysql_url().await;
    walk_over_rabbitmq(audit_db.url(), app_db.url()).await;
}
