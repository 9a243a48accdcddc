//! Object history for any target type: the object's fields as they were at a time,
//! rebuilt from its `created` / `changed` / `deleted` events (oldest first), and what
//! changed between two times. Readable by whoever may read the events on that
//! target. Values of personal fields come decrypted, or as `{"erased":true}`
//! after an erasure, as in every answer (`personal`); an erasure's own
//! `audit.erased` event is not a deletion of the object.

use auditlog_event::{Action, now_ms};
use auditlog_http::{ApiError, Authenticated, PathParams, json_api};
use auditlog_store::{AuditStore, EventQuery, ObjectKey, Order};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::AuditorState;
use crate::filters::{QueryParams, millis, only_known};
use crate::openapi::{DiffOptions, ObjectPath, StateOptions};
use crate::query::{authorise, object_key};
use crate::reads::{COLLECTION, ReadRequest, record_read};
use auditlog_http::openapi::{BadRequest, Forbidden, NotFound, Unauthorized, Unavailable};

/// An object's state at one time.
#[derive(Debug, Clone, PartialEq, Default)]
struct ObjectState {
    exists: bool,
    fields: Map<String, Value>,
    /// Timestamp of the last event applied.
    last_changed_at: Option<i64>,
    /// Events applied.
    events: u64,
}

/// What of a stored event the replay needs.
#[derive(Deserialize)]
struct Mutation {
    action: String,
    timestamp: i64,
    #[serde(default)]
    changes: Option<Map<String, Value>>,
    #[serde(default, rename = "eventName")]
    event_name: Option<String>,
}

impl ObjectState {
    /// Applies one event, oldest first: `created` starts the fields afresh from the
    /// changes' `next`; `changed` sets each changed field to `next`; `deleted`
    /// leaves nothing (a later `created` revives the object).
    fn apply(&mut self, event: Mutation) {
        // An erasure deletes the subject's key, not the object: its earlier
        // values read as erased, and the object lives on.
        if event.event_name.as_deref() == Some(crate::erasure::ERASED_EVENT_NAME) {
            return;
        }
        let nexts = event.changes.into_iter().flatten().map(|(field, change)| {
            let next = match change {
                Value::Object(mut change) => change.remove("next").unwrap_or(Value::Null),
                _ => Value::Null,
            };
            (field, next)
        });
        match event.action.as_str() {
            "created" => {
                self.exists = true;
                self.fields = nexts.collect();
            }
            "changed" => {
                self.exists = true;
                self.fields.extend(nexts);
            }
            "deleted" => {
                self.exists = false;
                self.fields = Map::new();
            }
            _ => return,
        }
        self.last_changed_at = Some(event.timestamp);
        self.events += 1;
    }
}

/// The object's mutations, any time.
fn mutations_of(target: &ObjectKey) -> EventQuery {
    EventQuery {
        target: Some(target.clone()),
        actions: vec![Action::Created, Action::Changed, Action::Deleted],
        ..EventQuery::default()
    }
}

/// Replays the object's mutations with timestamp ≤ `at`, a page at a time.
async fn state_at(
    store: &dyn AuditStore,
    mutations: &EventQuery,
    at: i64,
) -> Result<ObjectState, ApiError> {
    let mut query = EventQuery {
        until: Some(at.saturating_add(1)),
        order: Order::OldestFirst,
        page_size: EventQuery::MAX_PAGE_SIZE,
        ..mutations.clone()
    };
    let mut state = ObjectState::default();
    loop {
        let page = store.query(&query).await.map_err(ApiError::internal)?;
        for stored in &page.events {
            let event: Mutation = serde_json::from_str(&stored.body).map_err(|e| {
                ApiError::internal(format!("stored event {} is not an event: {e}", stored.id))
            })?;
            state.apply(event);
        }
        match page.next {
            Some(cursor) => query.after = Some(cursor),
            None => return Ok(state),
        }
    }
}

/// The object named by the path and the query of its mutations that the
/// policy lets `principal` read (those of its tenant, unless an operator).
async fn readable_target(
    state: &AuditorState,
    principal: &auditlog_auth::Principal,
    object_type: String,
    id: String,
) -> Result<(ObjectKey, EventQuery), ApiError> {
    let target = object_key("targetType", "targetId", object_type, id)?;
    let mutations = authorise(principal, mutations_of(&target))?;
    let known = state
        .query_store
        .count(&mutations)
        .await
        .map_err(ApiError::internal)?;
    if known == 0 {
        return Err(ApiError::not_found(
            "this object has no created, changed or deleted events",
        ));
    }
    Ok((target, mutations))
}

/// Reads the millisecond parameters a route takes; anything else is refused.
fn times(params: &QueryParams, known: &[&str]) -> Result<Vec<Option<i64>>, ApiError> {
    only_known(params, known)?;
    known
        .iter()
        .map(|key| params.get(*key).map(|value| millis(key, value)).transpose())
        .collect()
}

/// `GET /api/{targetType}/{targetId}/state?at=<ms>`.
#[utoipa::path(
    get,
    path = "/api/{target_type}/{target_id}/state",
    tag = "history",
    operation_id = "objectState",
    summary = "An object's fields as they were at a time",
    description = "Rebuilt from the object's created, changed and deleted events up to \
        `at`. Masked fields read null. 404 when the object has no such events.",
    params(ObjectPath<false>, StateOptions),
    responses(
        (status = 200, description = "The object's state", body = StateDocument,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn state(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    read: ReadRequest,
    PathParams((object_type, id)): PathParams<(String, String)>,
    Query(params): Query<QueryParams>,
) -> Result<Response, ApiError> {
    let at = times(&params, &["at"])?[0].unwrap_or_else(now_ms);
    let (target, mutations) = readable_target(&state, &principal, object_type, id).await?;
    let object = state_at(state.query_store.as_ref(), &mutations, at).await?;
    record_read(&state, &principal, COLLECTION, &read).await?;
    Ok(json_api(
        StatusCode::OK,
        &StateDocument {
            data: HistoryResource {
                kind: "object-states",
                id: format!("{}/{}", target.object_type.as_str(), target.id),
                attributes: StateAttributes {
                    target_type: target.object_type.as_str().to_owned(),
                    target_id: target.id,
                    at,
                    exists: object.exists,
                    fields: object.fields,
                    last_changed_at: object.last_changed_at,
                    events: object.events,
                },
            },
        },
    ))
}

/// An object's state at one time.
#[derive(Serialize, ToSchema)]
pub(crate) struct StateDocument {
    data: HistoryResource<StateAttributes>,
}

/// What changed between two times.
#[derive(Serialize, ToSchema)]
pub(crate) struct DiffDocument {
    data: HistoryResource<DiffAttributes>,
}

/// The resource of a state or diff; its id is `type/id` of the object.
#[derive(Serialize, ToSchema)]
struct HistoryResource<A> {
    /// `object-states` or `object-diffs`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    /// `targetType/targetId`.
    id: String,
    attributes: A,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct StateAttributes {
    target_type: String,
    target_id: String,
    /// The time asked for, in milliseconds since the Unix epoch.
    at: i64,
    /// Whether the object existed then (created and not deleted since).
    exists: bool,
    /// Field → value then; empty when it did not exist.
    #[schema(value_type = Object)]
    fields: Map<String, Value>,
    /// When the last event up to `at` happened.
    last_changed_at: Option<i64>,
    /// How many events were replayed.
    events: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct DiffAttributes {
    target_type: String,
    target_id: String,
    from: i64,
    to: i64,
    existed_at: ExistedAt,
    /// Field → `{prev, next}` for each field whose value differs (null where absent).
    #[schema(value_type = Object)]
    changes: Map<String, Value>,
}

/// Whether the object existed at each end.
#[derive(Serialize, ToSchema)]
struct ExistedAt {
    from: bool,
    to: bool,
}

/// `GET /api/{targetType}/{targetId}/diff?from=<ms>&to=<ms>` (`to` defaults to now).
#[utoipa::path(
    get,
    path = "/api/{target_type}/{target_id}/diff",
    tag = "history",
    operation_id = "objectDiff",
    summary = "What changed in an object between two times",
    description = "The fields whose values differ between the object's state at `from` \
        and at `to`. 404 when the object has no created, changed or deleted events.",
    params(ObjectPath<false>, DiffOptions),
    responses(
        (status = 200, description = "The differences", body = DiffDocument,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn diff(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    read: ReadRequest,
    PathParams((object_type, id)): PathParams<(String, String)>,
    Query(params): Query<QueryParams>,
) -> Result<Response, ApiError> {
    let times = times(&params, &["from", "to"])?;
    let from = times[0].ok_or_else(|| ApiError::bad_request("from (ms) is required"))?;
    let to = times[1].unwrap_or_else(now_ms);
    let (target, mutations) = readable_target(&state, &principal, object_type, id).await?;
    let before = state_at(state.query_store.as_ref(), &mutations, from).await?;
    let after = state_at(state.query_store.as_ref(), &mutations, to).await?;
    record_read(&state, &principal, COLLECTION, &read).await?;
    Ok(json_api(
        StatusCode::OK,
        &DiffDocument {
            data: HistoryResource {
                kind: "object-diffs",
                id: format!("{}/{}", target.object_type.as_str(), target.id),
                attributes: DiffAttributes {
                    target_type: target.object_type.as_str().to_owned(),
                    target_id: target.id,
                    from,
                    to,
                    existed_at: ExistedAt {
                        from: before.exists,
                        to: after.exists,
                    },
                    changes: changes(&before.fields, &after.fields),
                },
            },
        },
    ))
}

/// The fields whose value differs, each as `{prev, next}`; a field absent on one
/// side is null there.
fn changes(before: &Map<String, Value>, after: &Map<String, Value>) -> Map<String, Value> {
    let mut fields: Vec<&String> = before.keys().chain(after.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter_map(|field| {
            let prev = before.get(field).cloned().unwrap_or(Value::Null);
            let next = after.get(field).cloned().unwrap_or(Value::Null);
            (prev != next).then(|| (field.clone(), json!({"prev": prev, "next": next})))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mutation(action: &str, timestamp: i64, changes: Value) -> Mutation {
        Mutation {
            event_name: None,
            action: action.into(),
            timestamp,
            changes: changes.as_object().cloned(),
        }
    }

    #[test]
    fn a_deleted_object_is_revived_by_a_later_creation() {
        let mut state = ObjectState::default();
        state.apply(mutation(
            "created",
            1,
            json!({"name": {"prev": null, "next": "a"}}),
        ));
        state.apply(mutation(
            "changed",
            2,
            json!({"name": {"prev": "a", "next": "b"}}),
        ));
        state.apply(mutation(
            "deleted",
            3,
            json!({"name": {"prev": "b", "next": null}}),
        ));
        assert!(!state.exists && state.fields.is_empty());
        state.apply(mutation(
            "created",
            4,
            json!({"email": {"prev": null, "next": "x"}}),
        ));
        assert!(state.exists);
        assert_eq!(Value::Object(state.fields), json!({"email": "x"}));
        assert_eq!((state.last_changed_at, state.events), (Some(4), 4));
    }

    #[test]
    fn a_diff_lists_only_differing_fields_with_null_for_absent_ones() {
        let before = json!({"a": 1, "b": 2})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let after = json!({"b": 2, "c": 3})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            Value::Object(changes(&before, &after)),
            json!({"a": {"prev": 1, "next": null}, "c": {"prev": null, "next": 3}})
        );
    }
}
