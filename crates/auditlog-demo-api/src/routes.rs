//! The HTTP routes of the primary API: JSON:API documents in and out, the
//! prototype's loose inputs accepted, every error a JSON:API `errors` document.

use auditlog_auth::{Principal, Role};
use auditlog_http::{ApiError, Authenticated, JsonBody, json_api, not_found};
use axum::Router;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::notes::{Note, NoteTarget};
use crate::users::{NewUser, User, UserPatch, UserRole};
use crate::{ApiState, DataError};

/// The primary API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/tokens/{id}", get(token))
        .route("/api/users", get(list_users).post(create_user))
        .route(
            "/api/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/api/notes", get(notes_about).post(create_note))
        .route("/api/notes/{id}", get(get_note))
        .route("/events/by/{actor_type}/{actor_id}", get(proxy_to_auditor))
        .route(
            "/events/on/{target_type}/{target_id}",
            get(proxy_to_auditor),
        )
        .route("/api/data-events", get(proxy_to_auditor))
        // Fixed segments win over `{id}` in the router, whatever the order here.
        .route("/api/data-events/stream", get(proxy_to_auditor))
        .route("/api/data-events/activity", get(proxy_to_auditor))
        .route("/api/data-events/{id}", get(proxy_to_auditor))
        .route(
            "/api/{target_type}/{target_id}/data-events",
            get(proxy_to_auditor),
        )
        .route(
            "/api/{target_type}/{target_id}/state",
            get(proxy_to_auditor),
        )
        .route("/api/{target_type}/{target_id}/diff", get(proxy_to_auditor))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The answer for a route that exists but not with this method.
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "this route does not take this method",
    )
}

impl From<DataError> for ApiError {
    fn from(err: DataError) -> Self {
        match err {
            DataError::NotFound => ApiError::not_found("there is no such object"),
            DataError::Forbidden(why) => ApiError::forbidden(why),
            DataError::Conflict(why) => ApiError::conflict(why),
            DataError::Invalid(why) => ApiError::unprocessable(why),
            DataError::Database(cause) => ApiError::internal(cause),
        }
    }
}

/// `GET /tokens/:id`: a signed token acting as that user (the demo's stand-in for
/// a real login), as text/plain with status 201; 404 when dev tokens are off.
async fn token(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state.dev_tokens {
        return Err(not_found().await);
    }
    let id = numeric_id(&id)?;
    let user = state
        .users
        .find_unaudited(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("there is no user {id}")))?;
    let role = match user.role {
        UserRole::Admin => Role::Admin,
        UserRole::User => Role::User,
    };
    let principal = Principal::new(user.id.to_string(), role)
        .ok_or_else(|| ApiError::internal("a user id is not a valid subject"))?;
    let token = state.issuer.issue(&principal).map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        token,
    )
        .into_response())
}

fn numeric_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found(format!("`{text}` is not an id of this collection")))
}

/// A JSON:API document with one resource.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document<A> {
    data: Resource<A>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resource<A> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<Value>,
    attributes: A,
}

impl<A> Resource<A> {
    fn expect_type(&self, expected: &str) -> Result<(), ApiError> {
        if self.kind == expected {
            Ok(())
        } else {
            Err(ApiError::conflict(format!(
                "this endpoint takes resources of type `{expected}`, not `{}`",
                self.kind
            )))
        }
    }

    /// When the body names an id, it must be the one in the URL.
    fn expect_id(&self, id: i64) -> Result<(), ApiError> {
        let matches = match &self.id {
            None => true,
            Some(Value::String(s)) => s == &id.to_string(),
            Some(Value::Number(n)) => n.as_i64() == Some(id),
            Some(_) => false,
        };
        if matches {
            Ok(())
        } else {
            Err(ApiError::conflict(
                "the id in the body is not the id in the URL",
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UserAttributes {
    name: Option<String>,
    email: Option<String>,
    agreed_tos: Option<Value>,
    role: Option<String>,
    /// Write-only; never returned.
    password: Option<String>,
}

/// The prototype sent `agreedTos` as 0/1; booleans are accepted too.
fn loose_bool(field: &str, value: &Value) -> Result<bool, ApiError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(false),
        Value::Number(n) if n.as_i64() == Some(1) => Ok(true),
        Value::String(s) if s == "0" || s == "false" => Ok(false),
        Value::String(s) if s == "1" || s == "true" => Ok(true),
        _ => Err(ApiError::unprocessable(format!(
            "{field} must be true or false (or 1 or 0)"
        ))),
    }
}

fn user_resource(user: &User) -> Value {
    json!({
        "type": "users",
        "id": user.id.to_string(),
        "attributes": {
            "name": user.name,
            "email": user.email,
            "agreedTos": user.agreed_tos,
            "role": user.role.as_str(),
        },
        "links": {"self": format!("/api/users/{}", user.id)},
    })
}

async fn list_users(
    State(state): State<ApiState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    let users = state.users.list(&principal).await?;
    let data: Vec<Value> = users.iter().map(user_resource).collect();
    Ok(json_api(StatusCode::OK, &json!({ "data": data })))
}

async fn get_user(
    State(state): State<ApiState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = state.users.get(&principal, numeric_id(&id)?).await?;
    Ok(json_api(
        StatusCode::OK,
        &json!({ "data": user_resource(&user) }),
    ))
}

async fn create_user(
    State(state): State<ApiState>,
    Authenticated(principal): Authenticated,
    JsonBody(document): JsonBody<Document<UserAttributes>>,
) -> Result<Response, ApiError> {
    let resource = document.data;
    resource.expect_type("users")?;
    if resource.id.is_some() {
        return Err(ApiError::forbidden(
            "ids are assigned by the server; leave `id` out",
        ));
    }
    let attributes = resource.attributes;
    let new = NewUser {
        name: attributes
            .name
            .ok_or_else(|| ApiError::unprocessable("name is required"))?,
        email: attributes
            .email
            .ok_or_else(|| ApiError::unprocessable("email is required"))?,
        agreed_tos: match &attributes.agreed_tos {
            Some(v) => loose_bool("agreedTos", v)?,
            None => false,
        },
        role: match attributes.role.as_deref() {
            Some(role) => UserRole::parse(role)?,
            None => UserRole::User,
        },
        password: attributes.password,
    };
    let user = state.users.create(&principal, new).await?;
    let mut response = json_api(
        StatusCode::CREATED,
        &json!({ "data": user_resource(&user) }),
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/api/users/{}", user.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn update_user(
    State(state): State<ApiState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    JsonBody(document): JsonBody<Document<UserAttributes>>,
) -> Result<Response, ApiError> {
    let id = numeric_id(&id)?;
    let resource = document.data;
    resource.expect_type("users")?;
    resource.expect_id(id)?;
    let attributes = resource.attributes;
    let patch = UserPatch {
        name: attributes.name,
        email: attributes.email,
        agreed_tos: attributes
            .agreed_tos
            .as_ref()
            .map(|v| loose_bool("agreedTos", v))
            .transpose()?,
        role: attributes
            .role
            .as_deref()
            .map(UserRole::parse)
            .transpose()?,
        password: attributes.password,
    };
    let user = state.users.update(&principal, id, patch).await?;
    Ok(json_api(
        StatusCode::OK,
        &json!({ "data": user_resource(&user) }),
    ))
}

async fn delete_user(
    State(state): State<ApiState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.users.delete(&principal, numeric_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NoteAttributes {
    target: String,
    body: String,
}

fn note_resource(note: &Note) -> Value {
    json!({
        "type": "notes",
        "id": note.id.to_string(),
        "attributes": {
            "target": format!("{}:{}", note.target_type, note.target_id),
            "body": note.body,
            "authorId": note.author_id,
            "createdAt": note.created_at,
        },
    })
}

async fn create_note(
    State(state): State<ApiState>,
    Authenticated(principal): Authenticated,
    JsonBody(document): JsonBody<Document<NoteAttributes>>,
) -> Result<Response, ApiError> {
    let resource = document.data;
    resource.expect_type("notes")?;
    let target = NoteTarget::parse(&resource.attributes.target)?;
    let note = state
        .notes
        .create(&principal, target, resource.attributes.body)
        .await?;
    Ok(json_api(
        StatusCode::CREATED,
        &json!({ "data": note_resource(&note) }),
    ))
}

async fn get_note(
    State(state): State<ApiState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let note = state.notes.get(&principal, numeric_id(&id)?).await?;
    Ok(json_api(
        StatusCode::OK,
        &json!({ "data": note_resource(&note) }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotesQuery {
    target: String,
}

async fn notes_about(
    State(state): State<ApiState>,
    Authenticated(principal): Authenticated,
    query: Result<Query<NotesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::bad_request("list notes with ?target=type:id, e.g. ?target=users:5")
    })?;
    let target = NoteTarget::parse(&query.target)?;
    let notes = state.notes.about(&principal, &target).await?;
    let data: Vec<Value> = notes.iter().map(note_resource).collect();
    Ok(json_api(StatusCode::OK, &json!({ "data": data })))
}

/// Audit queries go to the auditor with the caller's own token: the auditor applies
/// the same policy, so the proxy cannot widen anyone's view. The answer is streamed
/// through as it arrives, never buffered: exports can be millions of events and the
/// live tail never ends. `Accept` (export format) and `Last-Event-ID` (resuming the
/// tail) go along with the token.
async fn proxy_to_auditor(
    State(state): State<ApiState>,
    Authenticated(_): Authenticated,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = state
        .http
        .get(format!("{}{path_and_query}", state.auditor_url));
    for name in [
        header::AUTHORIZATION,
        header::ACCEPT,
        header::HeaderName::from_static("last-event-id"),
    ] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value.clone());
        }
    }
    let answer = request
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("the auditor is unreachable: {e}")))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).map_err(ApiError::internal)?;
    let mut response = Response::builder().status(status);
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_DISPOSITION,
        header::CACHE_CONTROL,
    ] {
        if let Some(value) = answer
            .headers()
            .get(name.as_str())
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            response = response.header(name, value);
        }
    }
    if !answer.headers().contains_key(header::CONTENT_TYPE.as_str()) {
        response = response.header(
            header::CONTENT_TYPE,
            HeaderValue::from_static(auditlog_http::JSON_API),
        );
    }
    response
        .body(axum::body::Body::from_stream(answer.bytes_stream()))
        .map_err(ApiError::internal)
}
