//! An object's state and diff rebuilt from its events, and the activity histogram.

use super::*;

#[tokio::test]
async fn object_state_and_diff_are_rebuilt_from_the_objects_mutations() {
    let app = App::spawn().await;
    let mut events = vec![with_changes(
        event(Action::Created, 1, ("documents", 7), 1_000),
        &[
            ("title", Value::Null, json!("draft")),
            ("pages", Value::Null, json!(1)),
        ],
    )];
    // The title changes nine times, one second apart.
    for n in 1..=9 {
        events.push(with_changes(
            event(Action::Changed, 1, ("documents", 7), 1_000 + n * 1_000),
            &[(
                "title",
                json!(format!("v{}", n - 1)),
                json!(format!("v{n}")),
            )],
        ));
    }
    events.push(with_changes(
        event(Action::Changed, 2, ("documents", 7), 10_500),
        &[
            ("pages", json!(1), json!(3)),
            ("owner", Value::Null, json!("ann")),
        ],
    ));
    events.push(event(Action::Viewed, 2, ("documents", 7), 10_700));
    events.push(event(Action::Deleted, 1, ("documents", 7), 12_000));
    events.push(with_changes(
        event(Action::Created, 1, ("documents", 7), 20_000),
        &[("title", Value::Null, json!("reborn"))],
    ));
    app.ingest(&events).await;
    let state = |at: i64| {
        let app = &app;
        async move {
            app.json(&format!("/api/documents/7/state?at={at}"), StatusCode::OK)
                .await["data"]
                .clone()
        }
    };

    let before = state(999).await;
    assert_eq!(before["type"], "object-states");
    assert_eq!(before["id"], "documents/7");
    assert_eq!(
        before["attributes"],
        json!({"targetType": "documents", "targetId": "7", "at": 999, "exists": false,
            "fields": {}, "lastChangedAt": null, "events": 0})
    );
    let created = state(1_000).await["attributes"].clone();
    assert_eq!(created["fields"], json!({"title": "draft", "pages": 1}));
    assert_eq!(
        (created["exists"].clone(), created["events"].clone()),
        (json!(true), json!(1))
    );
    let middle = state(5_500).await["attributes"].clone();
    assert_eq!(middle["fields"], json!({"title": "v4", "pages": 1}));
    assert_eq!(middle["lastChangedAt"], 5_000);
    let full = state(11_000).await["attributes"].clone();
    assert_eq!(
        full["fields"],
        json!({"title": "v9", "pages": 3, "owner": "ann"})
    );
    // The `viewed` is not a mutation.
    assert_eq!(full["events"], 11);
    let deleted = state(15_000).await["attributes"].clone();
    assert_eq!(
        (deleted["exists"].clone(), deleted["fields"].clone()),
        (json!(false), json!({}))
    );
    let reborn =
        app.json("/api/documents/7/state", StatusCode::OK).await["data"]["attributes"].clone();
    assert_eq!(reborn["fields"], json!({"title": "reborn"}));
    assert_eq!(reborn["exists"], true);

    let diff = app
        .json("/api/documents/7/diff?from=2500&to=11000", StatusCode::OK)
        .await["data"]
        .clone();
    assert_eq!(diff["type"], "object-diffs");
    assert_eq!(diff["id"], "documents/7");
    assert_eq!(
        diff["attributes"],
        json!({"targetType": "documents", "targetId": "7", "from": 2500, "to": 11000,
        "existedAt": {"from": true, "to": true},
        "changes": {
            "title": {"prev": "v1", "next": "v9"},
            "pages": {"prev": 1, "next": 3},
            "owner": {"prev": null, "next": "ann"},
        }})
    );
    let gone = app
        .json("/api/documents/7/diff?from=11000&to=15000", StatusCode::OK)
        .await["data"]["attributes"]
        .clone();
    assert_eq!(gone["existedAt"], json!({"from": true, "to": false}));
    assert_eq!(
        gone["changes"]["title"],
        json!({"prev": "v9", "next": null})
    );
    let none = app
        .json("/api/documents/7/diff?from=5000&to=5100", StatusCode::OK)
        .await["data"]["attributes"]
        .clone();
    assert_eq!(none["changes"], json!({}));

    app.json("/api/documents/8/state", StatusCode::NOT_FOUND)
        .await;
    app.json("/api/documents/7/diff", StatusCode::BAD_REQUEST)
        .await;
    app.json("/api/documents/7/state?at=soon", StatusCode::BAD_REQUEST)
        .await;
    // The policy of the target's events: a member reads only their own object.
    app.ingest(&[with_changes(
        event(Action::Created, 1, ("users", 4), 1),
        &[("name", Value::Null, json!("Dee"))],
    )])
    .await;
    let own = app
        .get_as(&app.token("4", Role::User), "/api/users/4/state")
        .await;
    assert_eq!(own.status(), StatusCode::OK);
    let other = app
        .get_as(&app.token("4", Role::User), "/api/documents/7/state")
        .await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn activity_is_counted_per_bucket_and_action() {
    let app = App::spawn().await;
    const HOUR: i64 = 3_600_000;
    let base = 1_700_000_000_000 / HOUR * HOUR;
    app.ingest(&[
        event(Action::Viewed, 1, ("users", 2), base + 1),
        event(Action::Viewed, 2, ("users", 2), base + 2),
        with_changes(
            event(Action::Changed, 1, ("users", 2), base + HOUR - 1),
            &[("name", json!("a"), json!("b"))],
        ),
        event(Action::Deleted, 1, ("users", 3), base + 3 * HOUR),
        event(Action::Viewed, 1, ("users", 3), base + 30 * HOUR),
    ])
    .await;
    let since = base;
    let until = base + 24 * HOUR;

    let doc = app
        .json(
            &format!("/api/data-events/activity?filter[since]={since}&filter[until]={until}"),
            StatusCode::OK,
        )
        .await;
    assert_eq!(doc["meta"]["bucket"], HOUR);
    assert_eq!(
        doc["data"],
        json!([
            {"type": "activity", "id": base.to_string(), "attributes":
                {"start": base, "count": 3, "byAction": {"viewed": 2, "changed": 1}}},
            {"type": "activity", "id": (base + 3 * HOUR).to_string(), "attributes":
                {"start": base + 3 * HOUR, "count": 1, "byAction": {"deleted": 1}}},
        ])
    );
    let daily = app
        .json(
            &format!(
                "/api/data-events/activity?bucket={}&filter[since]={since}&filter[until]={}&filter[action]=viewed",
                24 * HOUR,
                base + 48 * HOUR
            ),
            StatusCode::OK,
        )
        .await;
    let counts: Vec<u64> = daily["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["attributes"]["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 3);

    // A member's histogram counts only their events.
    let member = app
        .get_as(
            &app.token("3", Role::User),
            &format!("/api/data-events/activity?filter[since]={since}&filter[until]={until}"),
        )
        .await;
    let member: Value = member.json().await.unwrap();
    assert_eq!(member["data"].as_array().unwrap().len(), 1);
    // With no range: the last 7 days, which hold none of these (a fresh reader,
    // whose own reads of the log are recorded only after each answer).
    let recent = app
        .get_as(&app.token("99", Role::User), "/api/data-events/activity")
        .await;
    let recent: Value = recent.json().await.unwrap();
    assert_eq!(recent["data"], json!([]));

    app.json(
        "/api/data-events/activity?bucket=59999",
        StatusCode::BAD_REQUEST,
    )
    .await;
    app.json(
        &format!("/api/data-events/activity?bucket=60000&filter[since]=0&filter[until]={until}"),
        StatusCode::BAD_REQUEST,
    )
    .await;
}
