//! The OpenAPI documents as the running services serve them: `GET /openapi.json`
//! on the primary API and on the auditor needs no token, is the document built
//! from the code, and describes what the hardened services really do: each
//! documented route answers (never the router's 404 or a 405), a route that needs a
//! token answers 401 with a JSON:API `errors` document without one, and an admin's
//! requests get the documented status and media type. Schemathesis goes further
//! (`tests/schemathesis/run.sh`, run by CI).
#![allow(clippy::unwrap_used)]

use crate::common;

use common::{Client, JSON_API, Running, data_dir};
use serde_json::Value;

/// The document a service serves, checked for what every answer must be.
async fn served_document(base: &str) -> Value {
    let response = reqwest::get(format!("{base}/openapi.json")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{base}/openapi.json");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    response.json().await.unwrap()
}

/// A concrete path for a documented one: each `{param}` becomes `1`.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "1"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `(method, path, operation)` of every operation in `document`.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            all.push((method.to_uppercase(), path.clone(), operation.clone()));
        }
    }
    all
}

/// Sends every documented operation without a token and checks the answer is
/// routed, and a 401 JSON:API error where the operation needs a token.
async fn probe_without_token(base: &str, document: &Value) {
    let http = reqwest::Client::new();
    for (method, path, operation) in operations(document) {
        let url = format!("{base}{}", concrete(&path));
        let request = http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            &url,
        );
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.text().await.unwrap();
        assert!(
            status != 405 && !body.contains("there is no such route"),
            "{method} {path} is documented but not served: {status} {body}"
        );
        let needs_token = operation["security"] != serde_json::json!([{}]);
        if needs_token {
            assert_eq!(status, 401, "{method} {path} without a token: {body}");
            assert_eq!(content_type, JSON_API, "{method} {path}");
            let errors: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(errors["errors"][0]["status"], "401", "{method} {path}");
        } else {
            let documented = operation["responses"]
                .as_object()
                .unwrap()
                .contains_key(&status.to_string());
            assert!(
                documented,
                "{method} {path} answered {status}, which its operation does not list"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_serve_their_documents_and_do_what_they_describe() {
    let (_dir, data) = data_dir();
    let running = Running::up(&data);
    let api = &running.urls.api;
    let auditor = &running.urls.auditor;

    let primary_document = served_document(api).await;
    let auditor_document = served_document(auditor).await;

    // What is served is what the code builds.
    assert_eq!(
        primary_document,
        serde_json::to_value(auditlog_primary_api::openapi::document(
            &auditlog_auditor::openapi::document()
        ))
        .unwrap()
    );
    assert_eq!(
        auditor_document,
        serde_json::to_value(auditlog_auditor::openapi::document()).unwrap()
    );
    for document in [&primary_document, &auditor_document] {
        assert_eq!(document["openapi"], "3.1.0");
        let scheme = &document["components"]["securitySchemes"]["bearerAuth"];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
        assert_eq!(scheme["bearerFormat"], "JWT");
    }
    let list = &auditor_document["paths"]["/api/data-events"];
    let names: Vec<&str> = list["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "filter[actorType]",
        "filter[action]",
        "page[size]",
        "page[after]",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let ingest = &list["post"]["requestBody"]["content"];
    for media_type in [JSON_API, "application/json", "application/x-ndjson"] {
        assert!(ingest[media_type].is_object(), "ingest takes {media_type}");
    }

    probe_without_token(api, &primary_document).await;
    probe_without_token(auditor, &auditor_document).await;

    // An admin's reads are answered with a documented status and media type.
    let admin = Client::new(api).login(1).await;
    for (path, documented) in [
        ("/api/users", "/api/users"),
        ("/api/users/1", "/api/users/{id}"),
        ("/api/data-events", "/api/data-events"),
        ("/events/by/users/1", "/events/by/{actor_type}/{actor_id}"),
    ] {
        let answer = admin.get(path).await;
        let operation = &primary_document["paths"][documented]["get"];
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert!(
            operation["responses"]["200"]["content"][JSON_API].is_object(),
            "{documented}: 200 as {JSON_API} is documented"
        );
        assert_eq!(answer.content_type, JSON_API, "{path}");
    }
}

/// The primary API's state as the binary builds it, on a fresh database.
async fn primary_api_state(dir: &std::path::Path) -> auditlog_primary_api::ApiState {
    let keys = auditlog_auth::KeyPair::load_or_generate(dir).unwrap();
    let url = format!("sqlite://{}", dir.join("app.db").display());
    auditlog_primary_api::ApiState::new(
        auditlog_primary_api::AppDb::open(&url).await.unwrap(),
        auditlog_primary_api::Recorder::disabled(),
        auditlog_auth::TokenIssuer::new(&keys).unwrap(),
        auditlog_auth::TokenVerifier::new(&keys).unwrap(),
        "http://127.0.0.1:9".into(),
        &auditlog_auditor::openapi::document(),
    )
}

#[tokio::test]
async fn every_route_of_the_primary_api_is_documented_with_exactly_its_methods() {
    let dir = tempfile::tempdir().unwrap();
    let state = primary_api_state(dir.path()).await;

    auditlog_http::openapi::testing::assert_router_matches(
        auditlog_primary_api::router(state),
        &auditlog_primary_api::openapi::document(&auditlog_auditor::openapi::document()),
    )
    .await;
}

#[test]
fn the_proxied_routes_are_the_auditors_operations() {
    let auditor_document = auditlog_auditor::openapi::document();
    let primary =
        serde_json::to_value(auditlog_primary_api::openapi::document(&auditor_document)).unwrap();
    let auditor = serde_json::to_value(&auditor_document).unwrap();
    for (path, methods) in auditlog_primary_api::openapi::PROXIED {
        for method in methods {
            let theirs = &auditor["paths"][path][method];
            assert!(theirs.is_object(), "the auditor has no {method} {path}");
            let ours = &primary["paths"][path][method];
            assert_eq!(ours["parameters"], theirs["parameters"], "{method} {path}");
            assert_eq!(ours["responses"], theirs["responses"], "{method} {path}");
        }
    }
}
