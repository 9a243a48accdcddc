//! The query routes. Every query goes through the authorisation policy first: an
//! admin's query runs as asked; a member's must be about themselves (or is narrowed
//! to events involving them); anything else is 403. A query answers a JSON:API page
//! (with `meta.total` on `count=true`), or every matching event as CSV or NDJSON
//! ([`crate::export`]) on `format=` or `Accept:`.
//!
//! Reading the audit log is itself audited: every successful read on the auditor
//! records one `viewed` event on `data-events` by the caller ([`record_read`]), per
//! request, never per event returned, carrying the request's id ([`ReadRequest`]).

use std::time::Duration;

use auditlog_auth::{EventScope, Principal};
use auditlog_event::{DEFAULT_TENANT, ObjectType};
use auditlog_http::{ApiError, Authenticated, PathParams, raw_json_api};
use auditlog_store::{EventPage, EventQuery, ObjectKey, StoredEvent};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::AuditorState;
use crate::export;
use crate::filters::{EventFilters, QueryParams};
use crate::openapi::{DataEventSchema, EventIdPath, ListOptions, ObjectPath};
use crate::reads::{COLLECTION, ReadRequest, record_read};
use auditlog_http::openapi::{BadRequest, Forbidden, NotFound, Unauthorized, Unavailable};

/// The parameters of the list routes that are not filters.
const LIST_OPTIONS: &[&str] = &["count", "format"];

/// `GET /api/data-events` with filters.
#[utoipa::path(
    get,
    path = "/api/data-events",
    tag = "events",
    operation_id = "listEvents",
    summary = "Events matching the filters, newest first, a page at a time",
    description = "A member's query is narrowed to the events they performed or that \
        were done to them; a query about someone else is 403. Follow `links.next` for \
        the next page. With `format=csv|ndjson` (or such an `Accept`) every matching \
        event is streamed as a download instead.",
    params(EventFilters, ListOptions),
    responses(
        (status = 200, description = "A page of events, or the whole export", content(
            (PageDocument = "application/vnd.api+json"),
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    read: ReadRequest,
    headers: HeaderMap,
    Query(params): Query<QueryParams>,
) -> Result<Response, ApiError> {
    let query = parse_params(&params, LIST_OPTIONS)?;
    run(&state, &principal, query, &read, &params, &headers).await
}

/// `GET /events/by/{actorType}/{actorId}`.
#[utoipa::path(
    get,
    path = "/events/by/{actor_type}/{actor_id}",
    tag = "events",
    operation_id = "eventsByActor",
    summary = "What one actor did, newest first",
    description = "As `GET /api/data-events` with the actor taken from the path.",
    params(ObjectPath<true>, EventFilters, ListOptions),
    responses(
        (status = 200, description = "A page of events, or the whole export", content(
            (PageDocument = "application/vnd.api+json"),
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn by_actor(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    read: ReadRequest,
    headers: HeaderMap,
    PathParams((object_type, id)): PathParams<(String, String)>,
    Query(params): Query<QueryParams>,
) -> Result<Response, ApiError> {
    let mut query = parse_params(&params, LIST_OPTIONS)?;
    query.actor = Some(object_key("actorType", "actorId", object_type, id)?);
    run(&state, &principal, query, &read, &params, &headers).await
}

/// `GET /events/on/{targetType}/{targetId}`.
#[utoipa::path(
    get,
    path = "/events/on/{target_type}/{target_id}",
    tag = "events",
    operation_id = "eventsOnTarget",
    summary = "What was done to one object, newest first",
    description = "As `GET /api/data-events` with the target taken from the path.",
    params(ObjectPath<false>, EventFilters, ListOptions),
    responses(
        (status = 200, description = "A page of events, or the whole export", content(
            (PageDocument = "application/vnd.api+json"),
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn on_target(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    read: ReadRequest,
    headers: HeaderMap,
    PathParams((object_type, id)): PathParams<(String, String)>,
    Query(params): Query<QueryParams>,
) -> Result<Response, ApiError> {
    let mut query = parse_params(&params, LIST_OPTIONS)?;
    query.target = Some(object_key("targetType", "targetId", object_type, id)?);
    run(&state, &principal, query, &read, &params, &headers).await
}

/// The prototype's `GET /api/{targetType}/{targetId}/data-events`: the same as
/// [`on_target`].
#[utoipa::path(
    get,
    path = "/api/{target_type}/{target_id}/data-events",
    tag = "events",
    operation_id = "eventsOnTargetPrototype",
    summary = "What was done to one object (the prototype's path)",
    description = "The same as `GET /events/on/{target_type}/{target_id}`.",
    params(ObjectPath<false>, EventFilters, ListOptions),
    responses(
        (status = 200, description = "A page of events, or the whole export", content(
            (PageDocument = "application/vnd.api+json"),
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn on_target_prototype(
    state: State<AuditorState>,
    principal: Authenticated,
    read: ReadRequest,
    headers: HeaderMap,
    path: PathParams<(String, String)>,
    params: Query<QueryParams>,
) -> Result<Response, ApiError> {
    on_target(state, principal, read, headers, path, params).await
}

async fn run(
    state: &AuditorState,
    principal: &Principal,
    query: EventQuery,
    read: &ReadRequest,
    params: &QueryParams,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let query = authorise(principal, query)?;
    if let Some(format) = export::format(params, headers)? {
        record_read(state, principal, COLLECTION, read).await?;
        return Ok(export::response(state.query_store.clone(), query, format));
    }
    let count = match params.get("count").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::bad_request("count must be true or false")),
    };
    let page = state
        .query_store
        .query(&query)
        .await
        .map_err(ApiError::internal)?;
    let meta = if count {
        let total = state
            .query_store
            .count(&query)
            .await
            .map_err(ApiError::internal)?;
        let pruned = state
            .query_store
            .pruned_count(query.tenant.as_deref())
            .await
            .map_err(ApiError::internal)?;
        Some(Meta {
            total,
            pruned: PrunedMeta {
                events: pruned.events,
                newest: pruned.newest,
            },
        })
    } else {
        None
    };
    let body = page_document(
        &page,
        read.uri.path(),
        params,
        meta,
        state.clock_skew_tolerance,
    )
    .map_err(ApiError::internal)?;
    record_read(state, principal, COLLECTION, read).await?;
    Ok(raw_json_api(StatusCode::OK, body))
}

/// `GET /api/data-events/{id}`: one event, 404 when it is not stored or the caller
/// may not see it (which must not tell the two apart).
#[utoipa::path(
    get,
    path = "/api/data-events/{id}",
    tag = "events",
    operation_id = "getEvent",
    summary = "One event",
    description = "404 both when the event is not stored and when the caller may not \
        see it, so that the answer does not tell the two apart.",
    params(EventIdPath),
    responses(
        (status = 200, description = "The event", body = Single,
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
    read: ReadRequest,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let (id, stored) = visible_event(&state, &principal, &id).await?;
    let body = serde_json::to_vec(&Single {
        data: resource(&stored, state.clock_skew_tolerance)?,
    })
    .map_err(ApiError::internal)?;
    record_read(&state, &principal, &id.to_string(), &read).await?;
    Ok(raw_json_api(StatusCode::OK, body))
}

/// The stored event `id` names, if `principal` may read it: 403 for a principal
/// who reads no events, 404 both when it is not stored and when the principal may
/// not see it (which must not tell the two apart).
pub(crate) async fn visible_event(
    state: &AuditorState,
    principal: &Principal,
    id: &str,
) -> Result<(uuid::Uuid, StoredEvent), ApiError> {
    if matches!(principal.event_scope(), EventScope::Nothing) {
        return Err(ApiError::forbidden("this principal may not read events"));
    }
    let absent = || ApiError::not_found("there is no such event");
    let id = uuid::Uuid::try_parse(id).map_err(|_| absent())?;
    let stored = state
        .query_store
        .get(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(absent)?;
    let parties: Parties = serde_json::from_str(&stored.body)
        .map_err(|e| ApiError::internal(format!("stored event {id}: {e}")))?;
    let visible = principal.event_scope().holds(
        parties.tenant_id.as_deref().unwrap_or(DEFAULT_TENANT),
        (&parties.actor_type, &id_key(&parties.actor_id)),
        (&parties.target_type, &id_key(&parties.target_id)),
    );
    if !visible {
        return Err(absent());
    }
    Ok((id, stored))
}

/// Who an event is about, read from its stored JSON.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Parties {
    #[serde(default)]
    tenant_id: Option<String>,
    actor_type: String,
    actor_id: serde_json::Value,
    target_type: String,
    target_id: serde_json::Value,
}

/// The text form queries match an id on ([`auditlog_event::ObjectId::key`]): a
/// string as it is, a number in its JSON form.
fn id_key(id: &serde_json::Value) -> String {
    match id {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON:API document of one event.
#[derive(Serialize, ToSchema)]
#[schema(as = EventDocument)]
struct Single {
    data: Resource,
}

/// The JSON:API resource object of a stored event: `{"id","type","attributes",
/// "meta"}`. The attributes are the event's leaf in the verifiable log, byte for
/// byte: the stored JSON as it is (the auditor's receipt, `ingestedBy` and `via`,
/// among it) with the store's `seq` and `receivedAt` appended, so that every field
/// answered is one the log's proofs cover. `meta.clockSkewed` says whether the
/// producer's `timestamp` is more than `tolerance` away from the auditor's
/// `receivedAt`: a producer's clock, or its word about when something happened,
/// is not to be trusted blindly.
pub(crate) fn resource(stored: &StoredEvent, tolerance: Duration) -> Result<Resource, ApiError> {
    let leaf = auditlog_tlog::leaf_bytes(&stored.body, stored.seq, stored.received_at);
    let attributes = RawValue::from_string(leaf)
        .map_err(|e| ApiError::internal(format!("stored event {} is not JSON: {e}", stored.id)))?;
    let skew_ms = stored.received_at.abs_diff(stored.timestamp);
    Ok(Resource {
        id: stored.id.to_string(),
        kind: "data-events",
        attributes,
        meta: EventMeta {
            clock_skewed: u128::from(skew_ms) > tolerance.as_millis(),
        },
    })
}

/// The tenant a request of `principal` acts in, as it names it (`tenantId`) or
/// not: a principal bound to a tenant acts in its own only; an operator or a
/// service of every tenant in the one named, or the default tenant.
pub(crate) fn tenant_named(principal: &Principal, asked: Option<&str>) -> Result<String, ApiError> {
    let tenant = match asked {
        Some(tenant) => auditlog_event::parse_tenant("tenantId", tenant)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => principal.home_tenant().to_owned(),
    };
    if !principal.may_enter(&tenant) {
        return Err(ApiError::forbidden(format!(
            "you may act in your tenant, `{}`, only",
            principal.tenant
        )));
    }
    Ok(tenant)
}

/// Applies the policy: the query as asked, narrowed, or refused.
pub(crate) fn authorise(
    principal: &Principal,
    mut query: EventQuery,
) -> Result<EventQuery, ApiError> {
    let scope = principal.event_scope();
    if let Some(own) = scope.tenant() {
        match &query.tenant {
            Some(asked) if asked != own => {
                return Err(ApiError::forbidden(format!(
                    "you may read only the events of your tenant, `{own}`"
                )));
            }
            _ => query.tenant = Some(own.to_owned()),
        }
    }
    match scope {
        EventScope::All | EventScope::Tenant { .. } => Ok(query),
        EventScope::Nothing => Err(ApiError::forbidden("this principal may not read events")),
        EventScope::Involving {
            object_type, id, ..
        } => {
            let is_own = |key: &Option<ObjectKey>| {
                key.as_ref()
                    .is_some_and(|k| k.object_type.as_str() == object_type && k.id == id)
            };
            if is_own(&query.actor) || is_own(&query.target) {
                return Ok(query);
            }
            if query.actor.is_none() && query.target.is_none() {
                let own_type = ObjectType::parse("actorType", object_type)
                    .map_err(|e| ApiError::internal(format!("principal type: {e}")))?;
                query.involving = Some(ObjectKey {
                    object_type: own_type,
                    id,
                });
                return Ok(query);
            }
            Err(ApiError::forbidden(
                "you may read only the events you performed or that were done to you",
            ))
        }
    }
}

pub(crate) fn object_key(
    type_field: &'static str,
    id_field: &'static str,
    object_type: String,
    id: String,
) -> Result<ObjectKey, ApiError> {
    let object_type = ObjectType::parse(type_field, object_type)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    auditlog_event::ObjectId::parse_text(id_field, id.clone())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(ObjectKey { object_type, id })
}

/// Parses the query string of `GET /api/data-events` (without the `?`), decoded as
/// `application/x-www-form-urlencoded` exactly as the route decodes it, into the
/// [`EventQuery`] it would run (before authorisation). An error is the `400` detail
/// the route would answer. Public for the fuzz targets and their corpus replay.
pub fn parse_query_string(query: &str) -> Result<EventQuery, String> {
    let params: QueryParams = serde_urlencoded::from_str(query)
        .map_err(|e| format!("the query string is not form-urlencoded: {e}"))?;
    parse_params(&params, LIST_OPTIONS).map_err(|e| e.detail)
}

/// Reads the JSON:API query parameters into the query they ask for; unknown ones
/// are refused so that a typo is not silently ignored. The keys in `route_keys`
/// belong to the route and are left to it.
pub(crate) fn parse_params(
    params: &QueryParams,
    route_keys: &[&str],
) -> Result<EventQuery, ApiError> {
    EventFilters::from_params(params, route_keys)?.to_query()
}

/// A stored event as a JSON:API resource.
#[derive(Serialize, ToSchema)]
#[schema(as = EventResource)]
pub(crate) struct Resource {
    /// The event's id.
    id: String,
    /// Always `data-events`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "data-events")]
    kind: &'static str,
    #[schema(value_type = DataEventSchema)]
    attributes: Box<RawValue>,
    meta: EventMeta,
}

/// What the auditor says about a stored event, beside the event itself.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventMeta {
    /// Whether the producer's `timestamp` is further from the auditor's
    /// `receivedAt` than the deployment tolerates (`--clock-skew-tolerance`,
    /// 5 minutes by default): a backdated event, or a producer whose clock is off.
    clock_skewed: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PageLinks)]
struct Links {
    /// The next page (with `page[after]`), or null on the last one.
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PageMeta)]
struct Meta {
    /// How many events match, over all pages.
    total: u64,
    /// What retention removed from the tenant the query reads (every tenant,
    /// for an operator's query naming none): those events match no query any
    /// more, whoever they were by or on.
    pruned: PrunedMeta,
}

/// Events pruned by retention.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct PrunedMeta {
    /// How many.
    events: u64,
    /// The timestamp of the newest of them (ms since the Unix epoch), if any:
    /// events before it may be gone.
    #[schema(nullable = true)]
    newest: Option<i64>,
}

/// A page of events.
#[derive(Serialize, ToSchema)]
pub(crate) struct PageDocument {
    data: Vec<Resource>,
    links: Links,
    /// Only with `count=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    meta: Option<Meta>,
}

fn page_document(
    page: &EventPage,
    path: &str,
    params: &QueryParams,
    meta: Option<Meta>,
    tolerance: Duration,
) -> Result<Vec<u8>, String> {
    let data = page
        .events
        .iter()
        .map(|stored| resource(stored, tolerance).map_err(|e| e.detail))
        .collect::<Result<Vec<_>, String>>()?;
    let next = match page.next {
        Some(cursor) => {
            let mut next_params = params.clone();
            next_params.insert("page[after]".into(), cursor.encode());
            let query = serde_urlencoded::to_string(&next_params).map_err(|e| e.to_string())?;
            Some(format!("{path}?{query}"))
        }
        None => None,
    };
    serde_json::to_vec(&PageDocument {
        data,
        links: Links { next },
        meta,
    })
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog_auth::Role;
    use auditlog_event::Action;
    use auditlog_store::{Cursor, Order};

    fn params(pairs: &[(&str, &str)]) -> QueryParams {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse_params_all(params: &QueryParams) -> Result<EventQuery, ApiError> {
        parse_params(params, &[])
    }

    #[test]
    fn event_names_and_sort_are_read_and_a_cursor_of_the_other_order_refused() {
        let q = parse_params_all(&params(&[
            ("filter[eventName]", "user.renamed, user.deleted"),
            ("sort", "timestamp"),
        ]))
        .unwrap();
        assert_eq!(q.event_names, ["user.renamed", "user.deleted"]);
        assert_eq!(q.order, Order::OldestFirst);
        let newest = Cursor {
            timestamp: 5,
            id: uuid::Uuid::now_v7(),
            order: Order::NewestFirst,
        }
        .encode();
        assert!(
            parse_params_all(&params(&[("sort", "timestamp"), ("page[after]", &newest)])).is_err()
        );
        assert!(parse_params_all(&params(&[("page[after]", &newest)])).is_ok());
        assert!(parse_params_all(&params(&[("sort", "name")])).is_err());
    }

    fn member(id: &str) -> Principal {
        Principal::new(id.into(), Role::User).unwrap()
    }

    #[test]
    fn every_filter_is_read() {
        let q = parse_params_all(&params(&[
            ("filter[actorType]", "users"),
            ("filter[actorId]", "1"),
            ("filter[targetType]", "notes"),
            ("filter[targetId]", "9"),
            ("filter[action]", "changed,deleted"),
            ("filter[since]", "10"),
            ("filter[until]", "20"),
            ("page[size]", "5"),
        ]))
        .unwrap();
        assert_eq!(q.actor.unwrap().id, "1");
        assert_eq!(q.target.unwrap().object_type.as_str(), "notes");
        assert_eq!(q.actions, vec![Action::Changed, Action::Deleted]);
        assert_eq!((q.since, q.until, q.page_size), (Some(10), Some(20), 5));
    }

    #[test]
    fn bad_parameters_are_refused_with_a_reason() {
        for bad in [
            params(&[("filter[action]", "exploded")]),
            params(&[("filter[since]", "yesterday")]),
            params(&[("page[size]", "0")]),
            params(&[("page[size]", "1001")]),
            params(&[("page[after]", "'; DROP TABLE x; --")]),
            params(&[("filter[actorType]", "users")]),
            params(&[("filter[colour]", "red")]),
        ] {
            assert!(parse_params(&bad, &[]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_member_asking_about_someone_else_is_refused() {
        let q = EventQuery {
            actor: Some(ObjectKey {
                object_type: ObjectType::parse("actorType", "users").unwrap(),
                id: "2".into(),
            }),
            ..EventQuery::default()
        };
        assert!(authorise(&member("7"), q).is_err());
    }

    #[test]
    fn a_member_asking_about_themselves_runs_as_asked() {
        let q = EventQuery {
            target: Some(ObjectKey {
                object_type: ObjectType::parse("targetType", "users").unwrap(),
                id: "7".into(),
            }),
            ..EventQuery::default()
        };
        assert_eq!(
            authorise(&member("7"), q.clone()).unwrap(),
            EventQuery {
                tenant: Some(auditlog_event::DEFAULT_TENANT.into()),
                ..q
            }
        );
    }

    #[test]
    fn a_members_unfiltered_query_is_narrowed_to_themselves() {
        let q = authorise(&member("7"), EventQuery::default()).unwrap();
        assert_eq!(q.involving.unwrap().id, "7");
    }
}
