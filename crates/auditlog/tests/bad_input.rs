//! Bad input gets a 4xx with JSON:API `errors` and changes nothing.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use common::{Answer, Client, JSON_API, Running, all_events, data_dir, user_doc};
use serde_json::{Value, json};

fn assert_refused(answer: &Answer, status: u16, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    assert_eq!(answer.content_type, JSON_API, "{what}");
    let errors = answer.body["errors"].as_array().expect("an errors array");
    assert!(!errors.is_empty(), "{what}");
    assert_eq!(errors[0]["status"], status.to_string(), "{what}");
    assert!(
        errors[0]["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}"
    );
}

/// What an admin sees of the system: the users and every mutation event.
async fn snapshot(client: &Client) -> (Value, usize) {
    let users = client.get("/api/users").await.body["data"].clone();
    let mutations = all_events(
        client,
        "/api/data-events?filter[action]=created,changed,deleted&page[size]=1000",
    )
    .await;
    (users, mutations.len())
}

#[tokio::test]
async fn bad_requests_to_the_primary_api_are_refused_and_change_nothing() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let client = Client::new(&system.urls.api).login(1).await;
    let taken = client
        .post(
            "/api/users",
            user_doc(json!({"name": "Taken", "email": "taken@happi.com"})),
        )
        .await;
    assert_eq!(taken.status, 201);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = snapshot(&client).await;

    let cases: Vec<(&str, &str, Vec<u8>, u16)> =
        vec![
        ("not JSON", "/api/users", b"{this is not json".to_vec(), 400),
        (
            "not JSON:API",
            "/api/users",
            json!({"name": "x", "email": "x@happi.com"}).to_string().into(),
            400,
        ),
        (
            "wrong type",
            "/api/users",
            json!({"data": {"type": "notes", "attributes": {"name": "x", "email": "x@happi.com"}}})
                .to_string()
                .into(),
            409,
        ),
        (
            "unknown field",
            "/api/users",
            user_doc(json!({"name": "x", "email": "x@happi.com", "shoeSize": 44}))
                .to_string()
                .into(),
            400,
        ),
        (
            "duplicate email",
            "/api/users",
            user_doc(json!({"name": "Again", "email": "taken@happi.com"}))
                .to_string()
                .into(),
            409,
        ),
        (
            "invalid email",
            "/api/users",
            user_doc(json!({"name": "x", "email": "nope"})).to_string().into(),
            422,
        ),
        (
            "bad agreedTos",
            "/api/users",
            user_doc(json!({"name": "x", "email": "x@happi.com", "agreedTos": "maybe"}))
                .to_string()
                .into(),
            422,
        ),
        (
            "huge body",
            "/api/users",
            user_doc(json!({"name": "x".repeat(2 * 1024 * 1024), "email": "x@happi.com"}))
                .to_string()
                .into(),
            413,
        ),
    ];
    for (what, path, body, status) in cases {
        let answer = client.raw("POST", path, JSON_API, body).await;
        assert_refused(&answer, status, what);
    }
    let text_plain = client
        .raw("POST", "/api/users", "text/plain", b"hello".to_vec())
        .await;
    assert_refused(&text_plain, 415, "wrong media type");
    let wrong_id = client
        .patch(
            "/api/users/1",
            json!({"data": {"type": "users", "id": "2", "attributes": {"name": "x"}}}),
        )
        .await;
    assert_refused(&wrong_id, 409, "id mismatch");
    assert_refused(&client.get("/api/users/999999").await, 404, "missing user");
    assert_refused(
        &client.delete("/api/users/999999").await,
        404,
        "deleting a missing user",
    );
    assert_refused(&client.get("/api/nothing-here").await, 404, "unknown route");

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(snapshot(&client).await, before);
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let anonymous = Client::new(&system.urls.api);
    assert_refused(&anonymous.get("/api/users").await, 401, "no token");
    for garbage in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."] {
        let mut forged = anonymous.clone();
        forged.token = Some(garbage.into());
        assert_refused(&forged.get("/api/users").await, 401, garbage);
        assert_refused(&forged.get("/events/by/users/1").await, 401, garbage);
    }
    let direct = Client::new(&system.urls.auditor);
    assert_refused(
        &direct.get("/events/by/users/1").await,
        401,
        "auditor without token",
    );
    // A token signed by another deployment's key is refused.
    let (_other_tmp, other_dir) = data_dir();
    let other = Running::up(&other_dir);
    let foreign = Client::new(&other.urls.api).login(1).await;
    let mut forged = anonymous.clone();
    forged.token = foreign.token.clone();
    assert_refused(&forged.get("/api/users").await, 401, "foreign key");
    assert_eq!(anonymous.get("/tokens/424242").await.status, 404);
}

#[tokio::test]
async fn members_change_only_themselves_and_read_only_their_events() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let admin = Client::new(&system.urls.api).login(1).await;
    let (member_id, member) = admin.new_member("Member", "member@happi.com").await;

    let renamed = member
        .patch(
            "/api/users/1",
            json!({"data": {"type": "users", "attributes": {"name": "Hacked"}}}),
        )
        .await;
    assert_refused(&renamed, 403, "member renames admin");
    let promoted = member
        .patch(
            &format!("/api/users/{member_id}"),
            json!({"data": {"type": "users", "attributes": {"role": "admin"}}}),
        )
        .await;
    assert_refused(&promoted, 403, "member promotes self");
    let own = member
        .patch(
            &format!("/api/users/{member_id}"),
            json!({"data": {"type": "users", "attributes": {"name": "Me"}}}),
        )
        .await;
    assert_eq!(own.status, 200);

    for path in [
        "/events/by/users/1",
        "/events/on/users/1",
        "/api/users/1/data-events",
    ] {
        assert_refused(&member.get(path).await, 403, path);
        let mut direct = Client::new(&system.urls.auditor);
        direct.token = member.token.clone();
        assert_refused(&direct.get(path).await, 403, path);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mine = all_events(&member, &format!("/events/on/users/{member_id}")).await;
    assert!(!mine.is_empty());
    // An unfiltered listing is narrowed to events involving the member.
    let listing = all_events(&member, "/api/data-events").await;
    assert!(!listing.is_empty());
    for event in listing {
        let a = &event["attributes"];
        let involved = a["actorId"] == json!(member_id) || a["targetId"] == json!(member_id);
        assert!(involved, "a member saw {a}");
    }
}

#[tokio::test]
async fn invalid_events_are_rejected_by_the_auditor_with_the_field_named() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let admin = Client::new(&system.urls.api).login(1).await;
    let mut auditor = Client::new(&system.urls.auditor);
    auditor.token = admin.token.clone();
    let valid = json!({"action": "viewed", "actorType": "users", "actorId": 1,
                       "targetType": "reports", "targetId": "r-1"});
    let unknown_action = json!({"action": "exploded", "actorType": "users", "actorId": 1,
                                "targetType": "reports", "targetId": "r-1"});
    let missing_actor = json!({"action": "viewed", "targetType": "reports", "targetId": "r-1"});

    for (event, field) in [(&unknown_action, "action"), (&missing_actor, "actorType")] {
        let answer = auditor
            .post(
                "/api/data-events",
                json!({"data": {"type": "data-events", "attributes": event}}),
            )
            .await;
        assert_refused(&answer, 422, field);
        assert_eq!(
            answer.body["errors"][0]["source"]["pointer"],
            format!("/data/0/attributes/{field}")
        );
    }
    // A mixed batch stores the valid event and reports the others.
    let mixed = auditor
        .post(
            "/api/data-events",
            json!({"data": [
                {"type": "data-events", "attributes": valid},
                {"type": "data-events", "attributes": unknown_action},
                {"type": "data-events", "attributes": missing_actor},
            ]}),
        )
        .await;
    assert_eq!(mixed.status, 200, "{}", mixed.body);
    assert_eq!(mixed.body["meta"]["accepted"], 1);
    assert_eq!(mixed.body["meta"]["rejected"].as_array().unwrap().len(), 2);
    // NDJSON bulk: one bad line does not stop the good ones.
    let ndjson = format!("{valid}\nnot json\n{valid}\n");
    let bulk = auditor
        .raw(
            "POST",
            "/api/data-events",
            "application/x-ndjson",
            ndjson.into(),
        )
        .await;
    assert_eq!(bulk.status, 200, "{}", bulk.body);
    assert_eq!(bulk.body["meta"]["accepted"], 2);
    assert_eq!(
        bulk.body["meta"]["rejected"][0]["source"]["pointer"],
        "line 2"
    );

    let stored = all_events(&auditor, "/events/on/reports/r-1").await;
    assert_eq!(stored.len(), 3, "exactly the valid events were stored");

    // Members may not deliver events.
    let member_created = admin
        .post(
            "/api/users",
            user_doc(json!({"name": "M", "email": "m@happi.com"})),
        )
        .await;
    let member_id: i64 = member_created.body["data"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let member = Client::new(&system.urls.api).login(member_id).await;
    let mut as_member = Client::new(&system.urls.auditor);
    as_member.token = member.token;
    let refused = as_member
        .post(
            "/api/data-events",
            json!({"data": {"type": "data-events", "attributes": valid}}),
        )
        .await;
    assert_refused(&refused, 403, "member ingest");
}

#[tokio::test]
async fn bad_query_parameters_are_refused() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let admin = Client::new(&system.urls.api).login(1).await;
    for query in [
        "filter[action]=exploded",
        "page[size]=0",
        "page[size]=5000",
        "page[after]=nonsense",
        "filter[since]=yesterday",
        "filter[actorType]=users",
        "filter[actorId]=1%27%20OR%201%3D1",
        "sort=sideways",
    ] {
        let answer = admin.get(&format!("/api/data-events?{query}")).await;
        assert_refused(&answer, 400, query);
    }
}
