//! The query routes. Every query goes through the authorisation policy first: an
//! admin's query runs as asked; a member's must be about themselves (or is narrowed
//! to events involving them); anything else is 403.

use std::collections::BTreeMap;

use auditlog_auth::{EventScope, Principal};
use auditlog_event::{Action, ObjectType};
use auditlog_http::{ApiError, Authenticated, raw_json_api};
use auditlog_store::{Cursor, EventPage, EventQuery, ObjectKey};
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::AuditorState;

type Params = BTreeMap<String, String>;

/// `GET /api/data-events` with filters.
pub(crate) async fn list(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    OriginalUri(uri): OriginalUri,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let query = parse_params(&params)?;
    run(&state, &principal, query, uri.path(), &params).await
}

/// `GET /events/by/{actorType}/{actorId}`.
pub(crate) async fn by_actor(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    OriginalUri(uri): OriginalUri,
    Path((object_type, id)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let mut query = parse_params(&params)?;
    query.actor = Some(object_key("actorType", "actorId", object_type, id)?);
    run(&state, &principal, query, uri.path(), &params).await
}

/// `GET /events/on/{targetType}/{targetId}` and the prototype's
/// `GET /api/{targetType}/{targetId}/data-events`.
pub(crate) async fn on_target(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    OriginalUri(uri): OriginalUri,
    Path((object_type, id)): Path<(String, String)>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let mut query = parse_params(&params)?;
    query.target = Some(object_key("targetType", "targetId", object_type, id)?);
    run(&state, &principal, query, uri.path(), &params).await
}

async fn run(
    state: &AuditorState,
    principal: &Principal,
    query: EventQuery,
    path: &str,
    params: &Params,
) -> Result<Response, ApiError> {
    let query = authorise(principal, query)?;
    let page = state
        .store
        .query(&query)
        .await
        .map_err(ApiError::internal)?;
    let body = page_document(&page, path, params).map_err(ApiError::internal)?;
    Ok(raw_json_api(StatusCode::OK, body))
}

/// Applies the policy: the query as asked, narrowed, or refused.
fn authorise(principal: &Principal, mut query: EventQuery) -> Result<EventQuery, ApiError> {
    match principal.event_scope() {
        EventScope::All => Ok(query),
        EventScope::Nothing => Err(ApiError::forbidden("this principal may not read events")),
        EventScope::Involving { object_type, id } => {
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

fn object_key(
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

/// Reads the JSON:API query parameters; unknown ones are refused so that a typo is
/// not silently ignored.
fn parse_params(params: &Params) -> Result<EventQuery, ApiError> {
    let mut query = EventQuery::default();
    let mut actor_type = None;
    let mut actor_id = None;
    let mut target_type = None;
    let mut target_id = None;
    for (key, value) in params {
        match key.as_str() {
            "filter[actorType]" => actor_type = Some(value.clone()),
            "filter[actorId]" => actor_id = Some(value.clone()),
            "filter[targetType]" => target_type = Some(value.clone()),
            "filter[targetId]" => target_id = Some(value.clone()),
            "filter[action]" => {
                query.actions = value
                    .split(',')
                    .map(|a| Action::parse(a.trim()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| ApiError::bad_request(format!("filter[action]: {e}")))?;
            }
            "filter[since]" => query.since = Some(millis(key, value)?),
            "filter[until]" => query.until = Some(millis(key, value)?),
            "page[size]" => {
                query.page_size = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=EventQuery::MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "page[size] must be a whole number from 1 to {}",
                            EventQuery::MAX_PAGE_SIZE
                        ))
                    })?;
            }
            "page[after]" => {
                query.after = Some(Cursor::decode(value).ok_or_else(|| {
                    ApiError::bad_request(
                        "page[after] is not a cursor this server gave out; use links.next",
                    )
                })?);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`; known: filter[actorType], filter[actorId], filter[targetType], filter[targetId], filter[action], filter[since], filter[until], page[size], page[after]"
                )));
            }
        }
    }
    query.actor = pair("actor", actor_type, actor_id)?;
    query.target = pair("target", target_type, target_id)?;
    Ok(query)
}

fn pair(
    which: &str,
    object_type: Option<String>,
    id: Option<String>,
) -> Result<Option<ObjectKey>, ApiError> {
    let (type_field, id_field) = if which == "actor" {
        ("actorType", "actorId")
    } else {
        ("targetType", "targetId")
    };
    match (object_type, id) {
        (None, None) => Ok(None),
        (Some(t), Some(i)) => object_key(type_field, id_field, t, i).map(Some),
        _ => Err(ApiError::bad_request(format!(
            "filter[{type_field}] and filter[{id_field}] go together"
        ))),
    }
}

fn millis(key: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!("{key} must be milliseconds since the Unix epoch"))
        })
}

#[derive(Serialize)]
struct Resource<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    attributes: &'a RawValue,
}

#[derive(Serialize)]
struct Links {
    next: Option<String>,
}

#[derive(Serialize)]
struct PageDocument<'a> {
    data: Vec<Resource<'a>>,
    links: Links,
}

fn page_document(page: &EventPage, path: &str, params: &Params) -> Result<Vec<u8>, String> {
    let data = page
        .events
        .iter()
        .map(|stored| {
            let attributes: &RawValue = serde_json::from_str(&stored.body)
                .map_err(|e| format!("stored event {} is not JSON: {e}", stored.id))?;
            Ok(Resource {
                id: stored.id.to_string(),
                kind: "data-events",
                attributes,
            })
        })
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
    })
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog_auth::Role;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn member(id: &str) -> Principal {
        Principal::new(id.into(), Role::User).unwrap()
    }

    #[test]
    fn every_filter_is_read() {
        let q = parse_params(&params(&[
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
            assert!(parse_params(&bad).is_err(), "{bad:?}");
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
        assert_eq!(authorise(&member("7"), q.clone()).unwrap(), q);
    }

    #[test]
    fn a_members_unfiltered_query_is_narrowed_to_themselves() {
        let q = authorise(&member("7"), EventQuery::default()).unwrap();
        assert_eq!(q.involving.unwrap().id, "7");
    }
}
