//! `GET /api/producers` driven over real HTTP: the auditor's router served on a free
//! port with an SQLite store and fresh signing keys in a temporary directory, events
//! delivered through the ingest route as a producer would, the report read back as
//! an admin, and refused to everyone else.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::App;

use auditlog_auth::Role;
use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};

/// The JSON:API media type, spelled out so that the test checks the wire rather than
/// the server's own constant.
const JSON_API: &str = "application/vnd.api+json";

impl App {
    /// Delivers events as NDJSON, one per line, as an admin; returns the `meta` of
    /// the answer.
    async fn ingest(&self, events: &[DataEvent]) -> Value {
        let body: String = events.iter().map(|e| e.to_json() + "\n").collect();
        let response = self
            .client
            .post(format!("{}/api/data-events", self.base))
            .bearer_auth(self.token("1", Role::Admin))
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()["meta"].clone()
    }

    /// `GET /api/producers` with the given token (or none).
    async fn producers(&self, token: Option<String>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}/api/producers", self.base));
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        request.send().await.unwrap()
    }

    /// The report as an operator reads it.
    async fn report(&self) -> Value {
        let response = self.producers(Some(self.token("1", Role::Operator))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], JSON_API);
        response.json().await.unwrap()
    }
}

/// A `viewed` event numbered `seq` by `producer`.
fn numbered(producer: &str, seq: u64) -> DataEvent {
    let mut e = unnumbered();
    e.producer_id = Some(producer.into());
    e.producer_seq = Some(seq);
    e
}

fn unnumbered() -> DataEvent {
    let users = ObjectType::parse("actorType", "users").unwrap();
    DataEvent::new(
        Action::Viewed,
        ObjectRef::new(users.clone(), 1),
        ObjectRef::new(users, 2),
        1_700_000_000_000,
    )
}

#[tokio::test]
async fn an_admin_sees_each_producers_count_and_holes_and_a_late_event_closes_its_hole() {
    let app = App::spawn().await;
    let api: Vec<DataEvent> = (1..=5).map(|seq| numbered("api/0190a", seq)).collect();
    let relay: Vec<DataEvent> = (1..=3).map(|seq| numbered("relay/app", seq)).collect();
    // Number 3 of `api/0190a` is held back; an unnumbered event rides along.
    let first = [&api[..2], &api[3..], &relay[..], &[unnumbered()]].concat();
    let meta = app.ingest(&first).await;
    assert_eq!(
        (meta["stored"].as_u64(), meta["duplicates"].as_u64()),
        (Some(8), Some(0))
    );
    // Redelivery of events already stored changes nothing.
    let meta = app
        .ingest(&[api[1].clone(), api[3].clone(), relay[0].clone()])
        .await;
    assert_eq!(
        (meta["stored"].as_u64(), meta["duplicates"].as_u64()),
        (Some(0), Some(3))
    );

    let report = app.report().await;

    assert_eq!(
        report,
        json!({
            "data": [
                {"type": "producers", "id": "api/0190a", "attributes":
                    {"events": 4, "lastSeq": 5, "missing": 1, "gaps": [[3, 3]]}},
                {"type": "producers", "id": "relay/app", "attributes":
                    {"events": 3, "lastSeq": 3, "missing": 0, "gaps": []}},
            ],
            "meta": {"producers": 2, "missing": 1},
        })
    );

    app.ingest(&api[2..3]).await;
    let report = app.report().await;
    assert_eq!(report["meta"], json!({"producers": 2, "missing": 0}));
    assert_eq!(
        report["data"][0]["attributes"],
        json!({"events": 5, "lastSeq": 5, "missing": 0, "gaps": []})
    );
}

#[tokio::test]
async fn members_and_services_are_forbidden_the_report_and_anonymous_callers_must_authenticate() {
    let app = App::spawn().await;
    app.ingest(&[numbered("api/0190a", 1)]).await;

    for role in [Role::User, Role::Service] {
        let response = app.producers(Some(app.token("1", role))).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{role:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["status"], "403");
    }
    let anonymous = app.producers(None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
