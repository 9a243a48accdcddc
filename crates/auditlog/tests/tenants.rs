//! Tenants kept apart. Two tenants, each with an admin, a member and a service;
//! every route of both APIs, as their OpenAPI documents list them (so that a
//! route added later is called too, or the test names it as unknown), is called
//! by every principal of one tenant against the other tenant's objects and
//! events, and no answer holds or counts the other tenant's data. The live
//! stream is checked over a live emission: a tenant's admin sees its own new
//! event and never the other's.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Client, Running, data_dir, user_doc};
use serde_json::{Value, json};

/// One tenant's principals and the data that only it may see. Every string that
/// would betray the tenant (names, a note, ids of its own objects) carries its
/// `marker`.
struct Tenant {
    name: &'static str,
    marker: String,
    /// Its admin at the primary API and at the auditor (the same token).
    admin: (Client, Client),
    admin_id: i64,
    member: (Client, Client),
    member_id: i64,
    /// Its service, at the auditor only (services read nothing).
    service: Client,
    /// A viewer token its admin minted for its member, at the primary API and
    /// at the auditor.
    viewer: (Client, Client),
    note_id: String,
    /// A log stream its admin made (bound to the tenant).
    sink: String,
    /// The id of a legal hold its admin placed on its member (the reason
    /// carries the marker).
    hold: String,
    /// Every stored event of the tenant, by id.
    event_ids: BTreeSet<String>,
}

impl Tenant {
    /// The strings no principal of another tenant may ever read.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![self.marker.clone()];
        secrets.extend(self.event_ids.iter().cloned());
        secrets
    }

    /// The tenant's own object, named without its marker: the other tenant
    /// asks about it by name, and its own records of those reads (`audit.read`,
    /// with the query) are its own data.
    fn invoice(&self) -> String {
        format!("inv-{}-{}", self.name, std::process::id())
    }

    fn service_name(&self) -> String {
        format!("svc-{}-{}", self.name, std::process::id())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_of_either_api_answers_or_counts_another_tenants_data() {
    let Deployment {
        _tmp,
        running,
        urls,
        operator,
        operator_at_auditor,
        tenants: [acme, globex],
    } = deployment(["acme", "globex"]).await;

    // A service or an admin delivers for its own tenant only.
    for (sender, other) in [(&acme.service, &globex), (&acme.admin.1, &globex)] {
        let refused = ingest(sender, other.name, "intruder", "inv-crossing").await;
        assert_eq!(refused.status, 422, "{}", refused.body);
    }

    // An admin cannot reach the auditor's files through a sink of its own
    // tenant: no files sink, no CA certificate read from a path.
    for attributes in [
        json!({"kind": "files", "directory": "/tmp"}),
        json!({"kind": "webhook", "url": "https://127.0.0.1:9/x", "caCert": "/etc/hostname"}),
    ] {
        let refused = acme
            .admin
            .1
            .post(
                "/api/sinks",
                json!({"data": {"type": "sinks", "id": "local", "attributes": attributes}}),
            )
            .await;
        assert_eq!(refused.status, 403, "{}", refused.body);
    }

    // The principals work: each reads its own tenant's data (so that the
    // refusals below are the policy's, not a broken token's).
    for t in [&acme, &globex] {
        let own = t
            .admin
            .1
            .get(&format!("/events/on/invoices/{}", t.invoice()))
            .await;
        assert_eq!(own.status, 200, "{}", own.body);
        assert_eq!(own.body["data"].as_array().map(Vec::len), Some(1));
        let users = t.admin.0.get("/api/users").await;
        assert!(
            users
                .body
                .to_string()
                .contains(&format!("Member {}", t.marker))
        );
        let me = t.member.0.get(&format!("/api/users/{}", t.member_id)).await;
        assert_eq!(me.status, 200, "{}", me.body);
        let mine = t
            .member
            .1
            .get(&format!("/events/on/users/{}", t.member_id))
            .await;
        assert_eq!(mine.status, 200, "{}", mine.body);
        assert!(!mine.body["data"].as_array().unwrap().is_empty());
    }

    let documents = [
        (
            urls.api.clone(),
            Client::new(&urls.api).get("/openapi.json").await.body,
        ),
        (
            urls.auditor.clone(),
            Client::new(&urls.auditor).get("/openapi.json").await.body,
        ),
    ];
    let mut calls = 0;
    for (me, other) in [(&acme, &globex), (&globex, &acme)] {
        let principals = [
            ("admin", &me.admin.0, &me.admin.1),
            ("member", &me.member.0, &me.member.1),
            ("service", &me.service, &me.service),
            ("viewer", &me.viewer.0, &me.viewer.1),
        ];
        for (role, at_api, at_auditor) in principals {
            for (base, document) in &documents {
                let client = if *base == urls.api {
                    at_api
                } else {
                    at_auditor
                };
                for (method, path) in operations(document) {
                    for request in requests(&method, &path, other) {
                        let answer = call(client, &method, &request).await;
                        calls += 1;
                        let who = format!("{} {role} {method} {base}{}", me.name, request.path);
                        assert_keeps_out(&who, &answer, other);
                        if request.names_the_other_tenant && (200..300).contains(&answer.status) {
                            assert_counts_nothing(&who, &answer.body);
                        }
                        if method != "GET" {
                            assert!(
                                !(200..300).contains(&answer.status) || request.harmless_write,
                                "{who} changed the other tenant's data: {} {}",
                                answer.status,
                                answer.body
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(calls > 100, "only {calls} calls: were the documents read?");

    // Nothing the matrix sent changed the other tenant: its users are as they
    // were, and no event of one tenant was delivered by the other's principals.
    for t in [&acme, &globex] {
        for id in [t.admin_id, t.member_id] {
            let user = operator.get(&format!("/api/users/{id}")).await;
            assert_eq!(user.status, 200, "{}", user.body);
            assert_eq!(user.body["data"]["attributes"]["tenant"], t.name);
            assert!(user.body.to_string().contains(&t.marker));
        }
    }
    // Nor any hold: each tenant's is still there.
    let holds = operator.get("/api/legal-holds").await;
    for t in [&acme, &globex] {
        assert!(holds.body.to_string().contains(&t.hold), "{}", holds.body);
    }
    // Nor any erasure: each member's name still reads in its tenant's log.
    for t in [&acme, &globex] {
        let created = common::all_events(
            &operator_at_auditor,
            &format!(
                "/api/data-events?filter[tenantId]={}&filter[targetType]=users\
                 &filter[targetId]={}&filter[action]=created",
                t.name, t.member_id
            ),
        )
        .await;
        assert_eq!(
            created[0]["attributes"]["changes"]["name"]["next"],
            format!("Member {}", t.marker),
            "{created:?}"
        );
    }
    for (t, other) in [(&acme, &globex), (&globex, &acme)] {
        let events = common::all_events(
            &operator_at_auditor,
            &format!(
                "/api/data-events?filter[tenantId]={}&page[size]=1000",
                t.name
            ),
        )
        .await;
        for event in &events {
            let by = event["attributes"]["ingestedBy"]
                .as_str()
                .unwrap_or_default();
            assert!(
                !by.contains(&other.service_name()),
                "{} event delivered by {}: {event}",
                t.name,
                other.name
            );
        }
    }
    running.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_shows_a_tenant_its_own_new_events_only() {
    let Deployment {
        _tmp,
        running,
        urls,
        operator,
        tenants: [acme, globex],
        ..
    } = deployment(["acme", "globex"]).await;

    let url = format!("{}/api/data-events/stream", urls.auditor);
    let mut acme_stream = open_stream(&acme.admin.1, &url).await;
    let mut operator_stream = open_stream(&at(&urls.auditor, &operator), &url).await;
    // Let both streams reach the tail before the emission.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let globex_live = format!("live-{}", globex.marker);
    let acme_live = format!("live-{}", acme.marker);
    assert_eq!(
        ingest(
            &globex.service,
            globex.name,
            &globex.service_name(),
            &globex_live
        )
        .await
        .status,
        200
    );
    assert_eq!(
        ingest(&acme.service, acme.name, &acme.service_name(), &acme_live)
            .await
            .status,
        200
    );

    let acme_saw = read_until(&mut acme_stream, &acme_live).await;
    assert!(
        acme_saw.contains(&acme_live),
        "acme's admin never saw its event"
    );
    assert!(
        !acme_saw.contains(&globex.marker),
        "acme's admin saw globex's event: {acme_saw}"
    );
    let operator_saw = read_until(&mut operator_stream, &acme_live).await;
    let operator_saw = if operator_saw.contains(&globex_live) {
        operator_saw
    } else {
        operator_saw + &read_until(&mut operator_stream, &globex_live).await
    };
    assert!(
        operator_saw.contains(&globex_live) && operator_saw.contains(&acme_live),
        "an operator sees every tenant's events: {operator_saw}"
    );
    running.terminate();
}

/// `auditlog up` on a data directory of its own, its operator (user 1) at both
/// APIs, and a tenant made by [`tenant`] for each name, its events stored.
struct Deployment<const N: usize> {
    _tmp: tempfile::TempDir,
    running: Running,
    urls: common::Urls,
    operator: Client,
    operator_at_auditor: Client,
    tenants: [Tenant; N],
}

async fn deployment<const N: usize>(names: [&'static str; N]) -> Deployment<N> {
    let (tmp, dir) = data_dir();
    let running = Running::up(&dir);
    let urls = running.urls.clone();
    let operator = Client::new(&urls.api).login(1).await;
    let operator_at_auditor = at(&urls.auditor, &operator);
    let mut tenants = Vec::with_capacity(N);
    for name in names {
        let mut made = tenant(name, &operator, &urls, &dir).await;
        made.event_ids = stored_ids(&operator_at_auditor, name, &made.invoice()).await;
        tenants.push(made);
    }
    Deployment {
        _tmp: tmp,
        running,
        urls,
        operator,
        operator_at_auditor,
        tenants: tenants.try_into().ok().unwrap(),
    }
}

/// Makes a tenant through the operator: its admin and member (created by the
/// admin, so in its tenant), a note by the admin about the member, its service
/// (a token minted with the deployment's key) and an event it delivers.
async fn tenant(
    name: &'static str,
    operator: &Client,
    urls: &common::Urls,
    dir: &std::path::Path,
) -> Tenant {
    let marker = format!("{name}{}", std::process::id());
    let created = operator
        .post(
            "/api/users",
            user_doc(json!({
                "name": format!("Admin {marker}"),
                "email": format!("admin@{marker}.example"),
                "role": "admin",
                "tenant": name,
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let admin_id = id_of(&created.body);
    let admin = Client::new(&urls.api).login(admin_id).await;
    let created = admin
        .post(
            "/api/users",
            user_doc(json!({
                "name": format!("Member {marker}"),
                "email": format!("member@{marker}.example"),
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["data"]["attributes"]["tenant"], name);
    let member_id = id_of(&created.body);
    let member = Client::new(&urls.api).login(member_id).await;
    let note = admin
        .post(
            "/api/notes",
            json!({"data": {"type": "notes", "attributes": {
                "target": format!("users:{member_id}"),
                "body": format!("A note on {marker}"),
            }}}),
        )
        .await;
    assert_eq!(note.status, 201, "{}", note.body);
    let token = mint_service_token(dir, &format!("svc-{name}-{}", std::process::id()), name);
    let mut service = Client::new(&urls.auditor);
    service.token = Some(token);
    let viewer_token = mint_viewer_token(&at(&urls.auditor, &admin), "users", member_id).await;
    let mut viewer = Client::new(&urls.api);
    viewer.token = Some(viewer_token);
    let tenant = Tenant {
        name,
        admin: (admin.clone(), at(&urls.auditor, &admin)),
        admin_id,
        member: (member.clone(), at(&urls.auditor, &member)),
        member_id,
        service,
        viewer: (viewer.clone(), at(&urls.auditor, &viewer)),
        note_id: note.body["data"]["id"].as_str().unwrap().to_owned(),
        // Named without the marker: `/metrics`, the deployment's own monitoring,
        // labels sinks by name; the other tenant's sink is found out by its URL.
        sink: format!("sink-{name}-{}", std::process::id()),
        hold: String::new(),
        marker,
        event_ids: BTreeSet::new(),
    };
    let delivered = ingest(
        &tenant.service,
        "",
        &tenant.service_name(),
        &tenant.invoice(),
    )
    .await;
    assert_eq!(delivered.status, 200, "{}", delivered.body);
    let sink = tenant
        .admin
        .1
        .post(
            "/api/sinks",
            json!({"data": {"type": "sinks", "id": tenant.sink, "attributes": {
                "kind": "webhook",
                "url": format!("http://127.0.0.1:9/{}", tenant.marker),
                "from": "now",
            }}}),
        )
        .await;
    assert_eq!(sink.status, 201, "{}", sink.body);
    assert_eq!(sink.body["data"]["attributes"]["filter"]["tenantId"], name);
    let hold = tenant
        .admin
        .1
        .post(
            "/api/legal-holds",
            json!({"data": {"type": "legal-holds", "attributes": {
                "targetType": "users", "targetId": member_id,
                "reason": format!("a case of {}", tenant.marker),
            }}}),
        )
        .await;
    assert_eq!(hold.status, 201, "{}", hold.body);
    let mut tenant = tenant;
    tenant.hold = hold.body["data"]["id"].as_str().unwrap().to_owned();
    tenant
}

/// The ids of every event of `tenant`, once its service's event on `invoice`
/// and the users' events are stored.
async fn stored_ids(operator: &Client, tenant: &str, invoice: &str) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = common::all_events(
            operator,
            &format!("/api/data-events?filter[tenantId]={tenant}&page[size]=1000"),
        )
        .await;
        let has = |f: &dyn Fn(&Value) -> bool| events.iter().any(|e| f(&e["attributes"]));
        let complete = has(&|a| a["targetId"] == invoice)
            && has(&|a| a["targetType"] == "notes" && a["action"] == "created")
            && has(&|a| a["targetType"] == "users" && a["action"] == "created");
        if complete {
            for event in &events {
                assert_eq!(event["attributes"]["tenantId"], tenant, "{event}");
            }
            return events
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{tenant}'s events were not stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One event by `services/<actor>` on `invoices/<target_id>` delivered by
/// `sender` as NDJSON, naming `tenant` unless it is empty.
async fn ingest(sender: &Client, tenant: &str, actor: &str, target_id: &str) -> common::Answer {
    let mut event = json!({
        "action": "created",
        "actorType": "services",
        "actorId": actor,
        "targetType": "invoices",
        "targetId": target_id,
        "changes": {"total": {"prev": null, "next": 12}},
    });
    if !tenant.is_empty() {
        event["tenantId"] = json!(tenant);
    }
    sender
        .raw(
            "POST",
            "/api/data-events",
            "application/x-ndjson",
            format!("{event}\n").into_bytes(),
        )
        .await
}

/// Every `(METHOD, path template)` a document lists.
fn operations(document: &Value) -> Vec<(String, String)> {
    let paths = document["paths"].as_object().expect("an OpenAPI document");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "patch", "put", "delete"] {
            if item.get(method).is_some() {
                operations.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

/// A request the matrix sends.
struct Request {
    path: String,
    body: Option<Value>,
    /// Whether it asks about objects of the other tenant only, so that any
    /// count it answers must be zero.
    names_the_other_tenant: bool,
    /// A write that may succeed because it changes only the caller's own
    /// tenant (a note of one's own about anything).
    harmless_write: bool,
}

/// The requests that aim one operation at `other`'s objects and events. An
/// operation this test does not know is a failure: a new route must be added
/// here, and so is never left unchecked.
fn requests(method: &str, template: &str, other: &Tenant) -> Vec<Request> {
    let event_id = other.event_ids.iter().next().cloned().unwrap_or_default();
    let invoice = other.invoice();
    let member = other.member_id.to_string();
    let aimed = |path: String| Request {
        path,
        body: None,
        names_the_other_tenant: true,
        harmless_write: false,
    };
    let plain = |path: &str| Request {
        path: path.to_owned(),
        body: None,
        names_the_other_tenant: false,
        harmless_write: false,
    };
    let filters = [
        format!("filter[tenantId]={}", other.name),
        format!("filter[targetType]=invoices&filter[targetId]={invoice}"),
        format!(
            "filter[actorType]=services&filter[actorId]={}",
            other.service_name()
        ),
    ];
    let by_filters = |path: &str, extra: &str| -> Vec<Request> {
        filters
            .iter()
            .map(|f| aimed(format!("{path}?{f}{extra}")))
            .chain([plain(path)])
            .collect()
    };
    let objects = [
        ("invoices".to_owned(), invoice.clone()),
        ("users".to_owned(), member.clone()),
        ("services".to_owned(), other.service_name()),
    ];
    let on_objects = |shape: &dyn Fn(&str, &str) -> String| -> Vec<Request> {
        objects.iter().map(|(t, id)| aimed(shape(t, id))).collect()
    };
    match (method, template) {
        // Dev tokens hand out any user's token by design: the demo's stand-in
        // for a login, refused to other hosts than the listen address and off
        // in production (`--dev-tokens=false`). Not a tenant boundary.
        ("GET", "/tokens/{id}") => Vec::new(),
        ("GET", "/healthz" | "/readyz" | "/metrics" | "/openapi.json") => vec![plain(template)],
        ("GET", "/log/key" | "/log/checkpoint") => vec![plain(template)],
        ("GET", "/log/tile/{path}" | "/log/tile/{*path}") => vec![
            aimed("/log/tile/entries/000.p/1".to_owned()),
            aimed("/log/tile/entries/000".to_owned()),
            plain("/log/tile/0/000.p/1"),
        ],
        ("GET", "/api/log/consistency") => vec![plain("/api/log/consistency?from=1&to=2")],
        ("GET", "/api/data-events") => {
            let mut all = by_filters(template, "&count=true");
            all.extend(by_filters(template, "&format=ndjson"));
            all
        }
        ("GET", "/api/data-events/stream") => by_filters(template, ""),
        ("GET", "/api/data-events/activity") => by_filters(template, ""),
        ("GET", "/api/data-events/{id}") => vec![aimed(format!("/api/data-events/{event_id}"))],
        ("GET", "/api/data-events/{id}/inclusion") => {
            vec![aimed(format!("/api/data-events/{event_id}/inclusion"))]
        }
        ("GET", "/events/by/{actor_type}/{actor_id}") => {
            on_objects(&|t, id| format!("/events/by/{t}/{id}?count=true"))
        }
        ("GET", "/events/on/{target_type}/{target_id}") => {
            on_objects(&|t, id| format!("/events/on/{t}/{id}?count=true"))
        }
        ("GET", "/api/{target_type}/{target_id}/data-events") => {
            on_objects(&|t, id| format!("/api/{t}/{id}/data-events"))
        }
        ("GET", "/api/{target_type}/{target_id}/state") => {
            on_objects(&|t, id| format!("/api/{t}/{id}/state"))
        }
        ("GET", "/api/{target_type}/{target_id}/diff") => {
            on_objects(&|t, id| format!("/api/{t}/{id}/diff?from=0&to=4102444800000"))
        }
        ("GET", "/api/producers") => vec![plain(template)],
        ("POST", "/api/data-events") => vec![Request {
            path: template.to_owned(),
            body: Some(json!({
                "action": "deleted", "actorType": "services", "actorId": "intruder",
                "targetType": "invoices", "targetId": invoice, "tenantId": other.name,
            })),
            names_the_other_tenant: true,
            harmless_write: false,
        }],
        ("GET", "/api/users") => vec![plain(template)],
        ("POST", "/api/users") => vec![Request {
            path: template.to_owned(),
            body: Some(user_doc(json!({
                "name": "Intruder",
                "email": format!("intruder{}@example.com", other.marker),
                "tenant": other.name,
            }))),
            names_the_other_tenant: true,
            harmless_write: false,
        }],
        ("GET", "/api/users/{id}") => vec![aimed(format!("/api/users/{member}"))],
        ("PATCH", "/api/users/{id}") => vec![Request {
            path: format!("/api/users/{member}"),
            body: Some(json!({"data": {"type": "users", "id": member,
                "attributes": {"name": "Renamed by an intruder"}}})),
            names_the_other_tenant: true,
            harmless_write: false,
        }],
        ("DELETE", "/api/users/{id}") => vec![aimed(format!("/api/users/{member}"))],
        ("GET", "/api/notes") => vec![aimed(format!("/api/notes?target=users:{member}"))],
        ("POST", "/api/notes") => vec![Request {
            path: template.to_owned(),
            body: Some(json!({"data": {"type": "notes", "attributes": {
                "target": format!("users:{member}"), "body": "my own note",
            }}})),
            names_the_other_tenant: false,
            harmless_write: true,
        }],
        // Naming the other tenant is refused (naming none would erase the
        // caller's own tenant's `users/<id>`, another subject).
        ("POST", "/api/erasures") => vec![Request {
            path: template.to_owned(),
            body: Some(json!({"data": {"type": "erasures", "attributes": {
                "subjectType": "users", "subjectId": member, "tenantId": other.name,
            }}})),
            names_the_other_tenant: true,
            harmless_write: false,
        }],
        ("GET", "/api/sinks") => vec![plain(template)],
        ("POST", "/api/sinks") => vec![Request {
            path: template.to_owned(),
            body: Some(
                json!({"data": {"type": "sinks", "id": "intruder", "attributes": {
                    "kind": "webhook", "url": "http://127.0.0.1:9/intruder",
                    "filter": {"tenantId": other.name},
                }}}),
            ),
            names_the_other_tenant: true,
            harmless_write: false,
        }],
        ("GET" | "DELETE", "/api/sinks/{name}") => {
            vec![aimed(format!("/api/sinks/{}", other.sink))]
        }
        ("PATCH", "/api/sinks/{name}") => vec![Request {
            path: format!("/api/sinks/{}", other.sink),
            body: Some(json!({"data": {"type": "sinks", "id": other.sink,
                "attributes": {"paused": true}}})),
            names_the_other_tenant: true,
            harmless_write: false,
        }],
        ("POST", "/api/sinks/{name}/test") => vec![Request {
            path: format!("/api/sinks/{}/test", other.sink),
            body: Some(json!({})),
            names_the_other_tenant: true,
            harmless_write: false,
        }],
        ("POST", "/api/viewer-tokens") => vec![Request {
            path: template.to_owned(),
            body: Some(json!({"data": {"type": "viewer-tokens", "attributes": {
                "tenantId": other.name,
            }}})),
            names_the_other_tenant: true,
            harmless_write: false,
        }],
        ("GET", "/api/notes/{id}") => vec![aimed(format!("/api/notes/{}", other.note_id))],
        ("GET", "/api/retention") => vec![
            plain(template),
            aimed(format!("/api/retention?filter[tenantId]={}", other.name)),
        ],
        ("PATCH", "/api/retention/{tenant}") => vec![Request {
            path: format!("/api/retention/{}", other.name),
            body: Some(json!({"data": {"type": "retention", "id": other.name,
                "attributes": {"days": 1}}})),
            names_the_other_tenant: true,
            harmless_write: false,
        }],
        ("GET", "/api/legal-holds") => vec![plain(template)],
        ("POST", "/api/legal-holds") => vec![Request {
            path: template.to_owned(),
            body: Some(json!({"data": {"type": "legal-holds", "attributes": {
                "tenantId": other.name, "reason": "an intruder's hold",
            }}})),
            names_the_other_tenant: true,
            harmless_write: false,
        }],
        ("DELETE", "/api/legal-holds/{id}") => {
            vec![aimed(format!("/api/legal-holds/{}", other.hold))]
        }
        ("POST", "/api/prunes") => vec![Request {
            path: template.to_owned(),
            body: Some(json!({"data": {"type": "prunes", "attributes": {
                "before": auditlog_event::now_ms(), "tenantId": other.name,
            }}})),
            names_the_other_tenant: true,
            harmless_write: false,
        }],
        (method, path) => panic!(
            "{method} {path} is a route this test does not know: say in `requests` how to \
             aim it at another tenant's data"
        ),
    }
}

/// Sends one request; a stream's answer is what arrived within a second.
async fn call(client: &Client, method: &str, request: &Request) -> common::Answer {
    let url = format!("{}{}", client.base, request.path);
    if request.path.starts_with("/api/data-events/stream") {
        let mut response = client
            .http
            .get(&url)
            .bearer_auth(client.token.clone().unwrap_or_default())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        return common::Answer {
            status,
            content_type: String::new(),
            body: Value::String(text),
        };
    }
    match (method, &request.body) {
        ("GET", _) => client.get(&request.path).await,
        ("DELETE", _) => client.delete(&request.path).await,
        ("POST", Some(body)) if request.path == "/api/data-events" => {
            client
                .raw(
                    "POST",
                    &request.path,
                    "application/x-ndjson",
                    format!("{body}\n").into_bytes(),
                )
                .await
        }
        ("POST", Some(body)) => client.post(&request.path, body.clone()).await,
        ("PATCH", Some(body)) => client.patch(&request.path, body.clone()).await,
        (method, _) => panic!("{method} {} without a body", request.path),
    }
}

/// No answer holds a string only `other` may read.
fn assert_keeps_out(who: &str, answer: &common::Answer, other: &Tenant) {
    let text = match &answer.body {
        Value::String(text) => text.clone(),
        body => body.to_string(),
    };
    for secret in other.secrets() {
        assert!(
            !text.contains(&secret),
            "{who} answered {} with {}'s `{secret}`: {text}",
            answer.status,
            other.name
        );
    }
}

/// An answer about the other tenant's objects counts none of them.
fn assert_counts_nothing(who: &str, body: &Value) {
    if let Some(total) = body["meta"]["total"].as_u64() {
        assert_eq!(total, 0, "{who} counted the other tenant's events: {body}");
    }
    if let Some(data) = body["data"].as_array() {
        let counted: u64 = data
            .iter()
            .filter_map(|d| d["attributes"]["count"].as_u64())
            .sum();
        assert_eq!(
            counted, 0,
            "{who} counted the other tenant's events: {body}"
        );
    }
}

fn id_of(document: &Value) -> i64 {
    document["data"]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("a resource id")
}

/// The same principal at another base URL.
fn at(base: &str, client: &Client) -> Client {
    let mut other = Client::new(base);
    other.token = client.token.clone();
    other
}

/// A viewer token `admin` (a client at the auditor) mints for one object.
async fn mint_viewer_token(admin: &Client, object_type: &str, object_id: i64) -> String {
    let minted = admin
        .post(
            "/api/viewer-tokens",
            json!({"data": {"type": "viewer-tokens", "attributes": {
                "objectType": object_type, "objectId": object_id.to_string(),
            }}}),
        )
        .await;
    assert_eq!(minted.status, 201, "{}", minted.body);
    minted.body["data"]["attributes"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn mint_service_token(dir: &std::path::Path, subject: &str, tenant: &str) -> String {
    let output = std::process::Command::new(common::binary())
        .args([
            "token",
            "--subject",
            subject,
            "--role",
            "service",
            "--tenant",
            tenant,
        ])
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("auditlog token runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

async fn open_stream(client: &Client, url: &str) -> reqwest::Response {
    let response = client
        .http
        .get(url)
        .bearer_auth(client.token.clone().unwrap_or_default())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response
}

/// What a stream sends until `needle` appears, or for at most 15 s.
async fn read_until(stream: &mut reqwest::Response, needle: &str) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !text.contains(needle) {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_erases_personal_data_in_its_own_tenant_only() {
    let Deployment {
        _tmp,
        running,
        operator_at_auditor,
        tenants: [acme, globex],
        ..
    } = deployment(["acme", "globex"]).await;
    let erase = |subject_id: i64, tenant: Option<&str>| {
        json!({"data": {"type": "erasures", "attributes": {
            "subjectType": "users", "subjectId": subject_id.to_string(), "tenantId": tenant,
        }}})
    };

    let refused = acme
        .admin
        .1
        .post("/api/erasures", erase(globex.member_id, Some(globex.name)))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let erased = acme
        .admin
        .1
        .post("/api/erasures", erase(acme.member_id, None))
        .await;
    assert_eq!(erased.status, 201, "{}", erased.body);
    assert_eq!(erased.body["data"]["attributes"]["tenantId"], "acme");
    assert_eq!(erased.body["data"]["attributes"]["keyExisted"], true);

    let name_of = |t: &Tenant| {
        format!(
            "/api/data-events?filter[tenantId]={}&filter[targetType]=users&filter[targetId]={}\
             &filter[action]=created",
            t.name, t.member_id
        )
    };
    let acme_created = common::all_events(&operator_at_auditor, &name_of(&acme)).await;
    assert_eq!(
        acme_created[0]["attributes"]["changes"]["name"]["next"],
        json!({"erased": true})
    );
    let globex_created = common::all_events(&operator_at_auditor, &name_of(&globex)).await;
    assert_eq!(
        globex_created[0]["attributes"]["changes"]["name"]["next"],
        format!("Member {}", globex.marker)
    );
    // The erasure is recorded in acme's log, for acme's admins to see.
    let records = common::all_events(
        &acme.admin.1,
        "/api/data-events?filter[eventName]=audit.erased",
    )
    .await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["attributes"]["tenantId"], "acme");
    running.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_token_reads_its_objects_events_and_nothing_else() {
    let Deployment {
        _tmp,
        running,
        operator_at_auditor,
        tenants: [acme],
        ..
    } = deployment(["acme"]).await;
    let (viewer, viewer_at_auditor) = (&acme.viewer.0, &acme.viewer.1);

    // Its object's events, through the primary API as the embedded page reads them.
    let on_member =
        common::all_events(viewer, &format!("/events/on/users/{}", acme.member_id)).await;
    assert!(!on_member.is_empty());
    let everything = common::all_events(viewer, "/api/data-events").await;
    for event in &everything {
        let a = &event["attributes"];
        let involved = [("actorType", "actorId"), ("targetType", "targetId")]
            .iter()
            .any(|(t, i)| a[*t] == "users" && a[*i] == json!(acme.member_id));
        assert!(
            involved,
            "a viewer of users/{} read {event}",
            acme.member_id
        );
        assert_eq!(a["tenantId"], "acme");
    }
    // Another object of its own tenant, the users, notes, any write: refused.
    for path in [
        format!("/events/on/users/{}", acme.admin_id),
        format!("/events/on/invoices/{}", acme.invoice()),
        "/api/users".to_owned(),
        format!("/api/users/{}", acme.member_id),
        format!("/api/notes/{}", acme.note_id),
    ] {
        let answer = viewer.get(&path).await;
        assert!(
            [403, 404].contains(&answer.status),
            "a viewer read {path}: {} {}",
            answer.status,
            answer.body
        );
    }
    for (path, body) in [
        (
            "/api/viewer-tokens",
            json!({"data": {"type": "viewer-tokens"}}),
        ),
        (
            "/api/erasures",
            json!({"data": {"type": "erasures", "attributes": {
                "subjectType": "users", "subjectId": acme.member_id.to_string()}}}),
        ),
        (
            "/api/sinks",
            json!({"data": {"type": "sinks", "id": "v", "attributes": {
                "kind": "webhook", "url": "http://127.0.0.1:9/"}}}),
        ),
    ] {
        let answer = viewer_at_auditor.post(path, body).await;
        assert_eq!(
            answer.status, 403,
            "a viewer posted to {path}: {}",
            answer.body
        );
    }
    let ingest_refused = ingest(viewer_at_auditor, "", "viewer", "inv-viewer").await;
    assert_eq!(ingest_refused.status, 403, "{}", ingest_refused.body);
    // Minting was recorded in acme, and so were the viewer's reads, as `viewers/<id>`.
    let minted = common::all_events(
        &operator_at_auditor,
        "/api/data-events?filter[tenantId]=acme&filter[eventName]=audit.viewer_token_minted",
    )
    .await;
    assert_eq!(minted.len(), 1, "{minted:?}");
    assert_eq!(
        minted[0]["attributes"]["changes"]["scope"]["next"],
        format!("users/{}", acme.member_id)
    );
    let reads = common::all_events(
        &operator_at_auditor,
        &format!(
            "/api/data-events?filter[tenantId]=acme&filter[actorType]=viewers&filter[actorId]={}",
            minted[0]["attributes"]["targetId"].as_str().unwrap()
        ),
    )
    .await;
    assert!(!reads.is_empty(), "the viewer's reads are recorded");
    running.terminate();
}
