//! `/api/sinks`: the log streams, managed at run time by admins. Each sink is a
//! JSON:API resource of type `sinks` whose id is its name and whose attributes
//! are its definition (secrets shown as `***`, except in the answer that created
//! it) with its cursor and this auditor's view of its delivery (`status`).
//! `POST /api/sinks/{name}/test` sends one test event, not in the log, and
//! answers what the receiver said.
//!
//! Where the log's events go is itself audited: each creation, change and
//! removal of a sink is recorded as an event by the admin on `sinks/<name>`
//! (`audit.sink_created`, `audit.sink_changed`, `audit.sink_removed`), with the
//! changed members of the definition (secrets masked), before the answer.
//!
//! Tenants: an admin manages the sinks of its tenant (their filter names it),
//! and may not point one at the auditor's files (a files sink, a `caCert` path);
//! operators manage every sink.

use auditlog_auth::policy::AUDITOR_SOURCE;
use auditlog_event::{Action, Change, Changes, DataEvent, ObjectId, ObjectRef, ObjectType};
use auditlog_http::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unavailable,
};
use auditlog_http::{ApiError, Authenticated, JsonBody, PathParams, json_api};
use auditlog_sinks::{SinkDefinition, SinkName, SinkStatus};
use auditlog_store::SinkRecord;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AuditorState;
use crate::document::Document;

/// The resource type of a sink.
const SINKS: &str = "sinks";

/// Only admins manage sinks, each those of its tenant, and operators every
/// sink: a sink reads every event its filter lets through.
fn admins_only(principal: &auditlog_auth::Principal) -> Result<(), ApiError> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("only admins may manage sinks"))
    }
}

/// Whether `principal` may see and manage a sink defined as `definition`:
/// operators every sink, an admin those bound to its tenant.
fn visible_to(principal: &auditlog_auth::Principal, definition: &SinkDefinition) -> bool {
    principal.is_operator() || definition.filter.tenant_id.as_deref() == Some(&principal.tenant)
}

/// Refuses, before anything reads them, the members of a sink's attributes
/// that would make the auditor touch its own files for an admin: reading a
/// `caCert` path first would tell the admin whether the file exists.
fn no_local_paths(
    principal: &auditlog_auth::Principal,
    attributes: &Value,
) -> Result<(), ApiError> {
    if principal.is_operator() {
        return Ok(());
    }
    let files = attributes.get("kind").and_then(Value::as_str) == Some("files");
    let ca_path = attributes
        .get("caCert")
        .and_then(Value::as_str)
        .filter(|ca_cert| auditlog_sinks::tls::names_a_file(ca_cert));
    if files || ca_path.is_some() {
        return Err(ApiError::forbidden(
            "only operators may point a sink at the auditor's files (a files sink, a caCert \
             path); give caCert as PEM text",
        ));
    }
    Ok(())
}

/// `definition` as `principal` may store it: an admin's sink is bound to its
/// tenant (named, or left out and then filled in); an operator's may name any
/// tenant, or none for every tenant's events.
fn bound_to_tenant(
    principal: &auditlog_auth::Principal,
    mut definition: SinkDefinition,
) -> Result<SinkDefinition, ApiError> {
    if let Some(tenant) = &definition.filter.tenant_id {
        auditlog_event::parse_tenant("filter.tenantId", tenant)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if principal.is_operator() {
        return Ok(definition);
    }
    // A tenant's admin must not reach the auditor's file system through a
    // sink: what a sink writes, or reads a certificate from, is the
    // deployment's to choose.
    if let Some(path) = definition.local_path() {
        return Err(ApiError::forbidden(format!(
            "only operators may point a sink at the auditor's files (`{path}`); give caCert \
             as PEM text"
        )));
    }
    match &definition.filter.tenant_id {
        None => definition.filter.tenant_id = Some(principal.tenant.clone()),
        Some(tenant) if *tenant == principal.tenant => {}
        Some(_) => {
            return Err(ApiError::forbidden(format!(
                "you may stream the events of your tenant, `{}`, only",
                principal.tenant
            )));
        }
    }
    Ok(definition)
}

/// The sink called `name` as `principal` may see it, with its definition, or
/// 404 (another tenant's sink is not told apart from none).
async fn find_visible(
    state: &AuditorState,
    principal: &auditlog_auth::Principal,
    name: &str,
) -> Result<(SinkRecord, SinkDefinition), ApiError> {
    let record = find(state, name).await?;
    let definition = definition_of(&record)?;
    if !visible_to(principal, &definition) {
        return Err(ApiError::not_found(format!("there is no sink `{name}`")));
    }
    Ok((record, definition))
}

/// Records that `principal` did `action` to sink `name`, whose definition was
/// `before` and is `after`: the members that differ, secrets masked. Returns
/// once the event is committed; a change that cannot be recorded is answered 503
/// (the sink's row is changed by then: the error says so).
async fn record_change(
    state: &AuditorState,
    principal: &auditlog_auth::Principal,
    name: &str,
    action: Action,
    before: Option<&SinkDefinition>,
    after: Option<&SinkDefinition>,
) -> Result<(), ApiError> {
    // Compared as stored (a changed secret is a change), recorded as shown
    // (a secret only as masked).
    let members = |definition: Option<&SinkDefinition>, hidden: bool| match definition.map(|d| {
        if hidden {
            d.to_json_hidden()
        } else {
            d.to_json()
        }
    }) {
        Some(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (stored_before, stored_after) = (members(before, false), members(after, false));
    let (shown_before, shown_after) = (members(before, true), members(after, true));
    let mut changes = Changes::new();
    for field in stored_before.keys().chain(stored_after.keys()) {
        if stored_before.get(field) == stored_after.get(field) || changes.contains_key(field) {
            continue;
        }
        let (prev, next) = (shown_before.get(field), shown_after.get(field));
        let secret = [prev, next]
            .iter()
            .any(|value| value.and_then(Value::as_str) == Some(auditlog_sinks::definition::HIDDEN));
        let change = if secret {
            Change::masked()
        } else {
            Change::new(
                prev.cloned().unwrap_or(Value::Null),
                next.cloned().unwrap_or(Value::Null),
            )
        };
        changes.insert(field.clone(), change);
    }
    if changes.is_empty() {
        return Ok(());
    }
    let actor = principal
        .actor()
        .map_err(|e| ApiError::internal(format!("the admin as an actor: {e}")))?;
    let target = ObjectType::parse("targetType", SINKS)
        .and_then(|sinks| {
            Ok(ObjectRef::new(
                sinks,
                ObjectId::parse_text("targetId", name)?,
            ))
        })
        .map_err(|e| ApiError::internal(format!("the sink as a target: {e}")))?;
    let mut event = DataEvent::new(action, actor, target, auditlog_event::now_ms());
    event.event_name = Some(
        match action {
            Action::Created => "audit.sink_created",
            Action::Deleted => "audit.sink_removed",
            Action::Changed | Action::Viewed => "audit.sink_changed",
        }
        .into(),
    );
    event.source = Some(AUDITOR_SOURCE.into());
    event.changes = Some(changes);
    // Recorded in the tenant whose events the sink streams.
    event.set_tenant(
        after
            .or(before)
            .and_then(|d| d.filter.tenant_id.as_deref())
            .unwrap_or(auditlog_event::DEFAULT_TENANT),
    );
    let event = event.received(crate::reads::AUDITOR_PRINCIPAL, "auditor");
    state.read_commits.commit(event).await.map_err(|e| {
        ApiError::unavailable(format!(
            "the sink was changed, but the change could not be recorded in the log: {e}"
        ))
    })
}

/// The sink called `name`, or 404.
async fn find(state: &AuditorState, name: &str) -> Result<SinkRecord, ApiError> {
    state
        .store
        .sinks()
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .find(|record| record.name == name)
        .ok_or_else(|| ApiError::not_found(format!("there is no sink `{name}`")))
}

/// The stored definition of `record`, parsed.
fn definition_of(record: &SinkRecord) -> Result<SinkDefinition, ApiError> {
    let json: Value = serde_json::from_str(&record.definition).map_err(ApiError::internal)?;
    SinkDefinition::parse(&json).map_err(ApiError::internal)
}

/// A sink as a JSON:API resource.
fn resource(state: &AuditorState, record: &SinkRecord, attributes: Value) -> Value {
    let status = state
        .sinks
        .as_ref()
        .and_then(|sinks| sinks.status(&record.name))
        .unwrap_or_else(|| SinkStatus {
            cursor: record.cursor,
            ..SinkStatus::default()
        });
    let mut attributes = attributes;
    if let Value::Object(map) = &mut attributes {
        map.insert("cursor".into(), json!(record.cursor));
        map.insert("updatedAt".into(), json!(record.updated_at));
        map.insert("status".into(), json!(status));
    }
    json!({"type": SINKS, "id": record.name, "attributes": attributes})
}

/// `GET /api/sinks`.
#[utoipa::path(
    get,
    path = "/api/sinks",
    tag = "sinks",
    operation_id = "listSinks",
    summary = "The log streams, with their cursors and delivery status",
    description = "Admins (the sinks of their tenant) and operators (every sink). Secrets are shown as `***`. `status` is this auditor's \
        view: `delivering` says whether it holds the sink's lease (with several auditors \
        on one store, one at a time delivers each sink).",
    responses(
        (status = 200, description = "The sinks", body = Object,
            content_type = "application/vnd.api+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    admins_only(&principal)?;
    let records = state.store.sinks().await.map_err(ApiError::internal)?;
    let mut data = Vec::with_capacity(records.len());
    for record in &records {
        let definition = definition_of(record)?;
        if visible_to(&principal, &definition) {
            data.push(resource(&state, record, definition.to_json_hidden()));
        }
    }
    Ok(json_api(StatusCode::OK, &json!({ "data": data })))
}

/// `GET /api/sinks/{name}`.
#[utoipa::path(
    get,
    path = "/api/sinks/{name}",
    tag = "sinks",
    operation_id = "getSink",
    summary = "One log stream",
    params(("name" = String, Path, description = "The sink's name")),
    responses(
        (status = 200, description = "The sink", body = Object,
            content_type = "application/vnd.api+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn get_one(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    PathParams(name): PathParams<String>,
) -> Result<Response, ApiError> {
    admins_only(&principal)?;
    let (record, definition) = find_visible(&state, &principal, &name).await?;
    let shown = definition.to_json_hidden();
    Ok(json_api(
        StatusCode::OK,
        &json!({ "data": resource(&state, &record, shown) }),
    ))
}

/// `POST /api/sinks`.
#[utoipa::path(
    post,
    path = "/api/sinks",
    tag = "sinks",
    operation_id = "createSink",
    summary = "Add a log stream",
    description = "Admins (a sink of their tenant: `filter.tenantId` is theirs, or filled in) and operators (any tenant, or none for every tenant). The body is `{\"data\": {\"type\": \"sinks\", \"id\": NAME, \
        \"attributes\": DEFINITION}}`; the definition has `kind` (`webhook`, `syslog`, \
        `splunk`, `datadog`, `files`) and that kind's fields, and optionally `filter` \
        (`actions`, `targetTypes`, `eventNames`), `batchSize`, `failingAfterSecs` and \
        `paused`; `from: \"now\"` starts after the events stored so far instead of at the \
        log's start. A webhook without `secret` gets a new `whsec_` one, shown in this \
        answer only.",
    request_body(content = Object, content_type = "application/vnd.api+json",
        description = "The new sink"),
    responses(
        (status = 201, description = "The sink, secrets shown", body = Object,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn create(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    JsonBody(document): JsonBody<Document<Value>>,
) -> Result<Response, ApiError> {
    admins_only(&principal)?;
    let (name, mut attributes) = document.into_parts(SINKS, None)?;
    let name = name.ok_or_else(|| ApiError::bad_request("a new sink needs its name as `id`"))?;
    let name = SinkName::parse(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let from = match &mut attributes {
        Value::Object(map) => map.remove("from"),
        _ => None,
    };
    let cursor = match from.as_ref().and_then(Value::as_str) {
        None | Some("start") => 0,
        Some("now") => state.store.last_seq().await.map_err(ApiError::internal)?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`from` is `start` or `now`, not `{other}`"
            )));
        }
    };
    no_local_paths(&principal, &attributes)?;
    let definition =
        SinkDefinition::parse(&attributes).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let definition = bound_to_tenant(&principal, definition)?;
    let stored = definition.to_json();
    let created = state
        .store
        .create_sink(name.as_str(), &stored.to_string(), cursor)
        .await
        .map_err(ApiError::internal)?;
    if !created {
        return Err(ApiError::conflict(format!(
            "a sink `{name}` exists already"
        )));
    }
    record_change(
        &state,
        &principal,
        name.as_str(),
        Action::Created,
        None,
        Some(&definition),
    )
    .await?;
    if let Some(sinks) = &state.sinks {
        sinks.changed();
    }
    let record = find(&state, name.as_str()).await?;
    Ok(json_api(
        StatusCode::CREATED,
        &json!({ "data": resource(&state, &record, stored) }),
    ))
}

/// `PATCH /api/sinks/{name}`.
#[utoipa::path(
    patch,
    path = "/api/sinks/{name}",
    tag = "sinks",
    operation_id = "updateSink",
    summary = "Change a log stream",
    description = "Admins (the sinks of their tenant) and operators. The attributes are a JSON merge patch (RFC 7396) of the \
        definition: members given replace, `null` resets to the default. The kind cannot \
        change; a secret given as `***` stays as it is. The cursor is kept.",
    params(("name" = String, Path, description = "The sink's name")),
    request_body(content = Object, content_type = "application/vnd.api+json",
        description = "The changes"),
    responses(
        (status = 200, description = "The sink", body = Object,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn update(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    PathParams(name): PathParams<String>,
    JsonBody(document): JsonBody<Document<Value>>,
) -> Result<Response, ApiError> {
    admins_only(&principal)?;
    let (_, patch) = document.into_parts(SINKS, Some(&name))?;
    let (_, before) = find_visible(&state, &principal, &name).await?;
    no_local_paths(&principal, &patch)?;
    let patched = before
        .patched(&patch)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let patched = bound_to_tenant(&principal, patched)?;
    let updated = state
        .store
        .update_sink(&name, &patched.to_json().to_string())
        .await
        .map_err(ApiError::internal)?;
    if !updated {
        return Err(ApiError::not_found(format!("there is no sink `{name}`")));
    }
    record_change(
        &state,
        &principal,
        &name,
        Action::Changed,
        Some(&before),
        Some(&patched),
    )
    .await?;
    if let Some(sinks) = &state.sinks {
        sinks.changed();
    }
    let record = find(&state, &name).await?;
    Ok(json_api(
        StatusCode::OK,
        &json!({ "data": resource(&state, &record, patched.to_json_hidden()) }),
    ))
}

/// `DELETE /api/sinks/{name}`.
#[utoipa::path(
    delete,
    path = "/api/sinks/{name}",
    tag = "sinks",
    operation_id = "deleteSink",
    summary = "Remove a log stream and its cursor",
    params(("name" = String, Path, description = "The sink's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn delete(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    PathParams(name): PathParams<String>,
) -> Result<Response, ApiError> {
    admins_only(&principal)?;
    let (_, before) = find_visible(&state, &principal, &name).await?;
    let deleted = state
        .store
        .delete_sink(&name)
        .await
        .map_err(ApiError::internal)?;
    if !deleted {
        return Err(ApiError::not_found(format!("there is no sink `{name}`")));
    }
    record_change(
        &state,
        &principal,
        &name,
        Action::Deleted,
        Some(&before),
        None,
    )
    .await?;
    if let Some(sinks) = &state.sinks {
        sinks.changed();
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/sinks/{name}/test`.
#[utoipa::path(
    post,
    path = "/api/sinks/{name}/test",
    tag = "sinks",
    operation_id = "testSink",
    summary = "Send one test event to a sink's receiver",
    description = "Admins (the sinks of their tenant) and operators. The test event (`eventName: auditlog.sink_test`, `seq` 0) \
        is not in the log and moves no cursor. The answer's `meta` says whether the \
        receiver took it and what it answered.",
    params(("name" = String, Path, description = "The sink's name")),
    responses(
        (status = 200, description = "What the receiver answered", body = Object,
            content_type = "application/vnd.api+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn test(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    PathParams(name): PathParams<String>,
) -> Result<Response, ApiError> {
    admins_only(&principal)?;
    let (record, _) = find_visible(&state, &principal, &name).await?;
    let sinks = state
        .sinks
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this auditor runs no sinks"))?;
    let meta = match sinks.test(&record).await {
        Ok(answer) => json!({"delivered": true, "status": answer.status, "answer": answer.detail}),
        Err(error) => json!({"delivered": false, "error": error.to_string()}),
    };
    Ok(json_api(StatusCode::OK, &json!({ "meta": meta })))
}

/// `readiness` plus the sinks' detail: failing sinks are named, without making
/// the auditor unready (a receiver that is down must not take ingest away).
pub fn sinks_check(
    readiness: auditlog_http::health::Readiness,
    sinks: auditlog_sinks::Sinks,
) -> auditlog_http::health::Readiness {
    readiness.with_detail("sinks", move || {
        let failing = sinks.failing();
        if failing.is_empty() {
            json!("ok")
        } else {
            json!({
                "failing": failing
                    .into_iter()
                    .map(|(name, error)| json!({"sink": name, "lastError": error}))
                    .collect::<Vec<_>>()
            })
        }
    })
}
