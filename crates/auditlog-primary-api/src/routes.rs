//! The HTTP routes of the primary API: JSON:API documents in and out, the
//! prototype's loose inputs accepted, every error a JSON:API `errors` document.

use auditlog_auth::{Principal, Role};
use auditlog_http::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unprocessable,
    UnsupportedMediaType,
};
use auditlog_http::{
    ApiError, Authenticated, JsonBody, PathParams, RequestId, json_api, not_found,
};
use axum::Router;
use axum::extract::{FromRequestParts, OriginalUri, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::audit::Actor;
use crate::notes::{Note, NoteTarget};
use crate::openapi::{NoteDocument, NotesDocument, UserDocument, UsersDocument};
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
        .route(
            "/openapi.json",
            get(crate::openapi::serve_document).with_state(state.document.clone()),
        )
        .route(
            "/readyz",
            get(auditlog_http::health::readyz).with_state(state.readiness.clone()),
        )
        .route(
            "/metrics",
            get(auditlog_http::metrics::scrape).with_state(state.metrics.clone()),
        )
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

/// The [`Actor`] of an authenticated request: the token's principal (401 without
/// one) acting in the request's id, which its events will carry.
struct Acting(Actor);

impl FromRequestParts<ApiState> for Acting {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let Authenticated(principal) = Authenticated::from_request_parts(parts, state).await?;
        let Ok(request_id) = RequestId::from_request_parts(parts, state).await;
        Ok(Acting(Actor::new(
            principal,
            Some(request_id.into_string()),
        )))
    }
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
#[utoipa::path(
    get,
    path = "/tokens/{id}",
    tag = "demo",
    operation_id = "devToken",
    summary = "A 20-minute token acting as this user (the demo's stand-in for a login)",
    description = "No token needed. 404 when the user does not exist or when dev tokens \
        are switched off (`--dev-tokens=false`).",
    security(()),
    params(("id" = i64, Path, minimum = 1, description = "The user's id")),
    responses(
        (status = 201, description = "The token: an EdDSA JWT, as text", body = String,
            content_type = "text/plain; charset=utf-8"),
        (status = 404, response = NotFound),
    )
)]
async fn token(
    State(state): State<ApiState>,
    PathParams(id): PathParams<String>,
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Document<A> {
    data: Resource<A>,
}

/// A resource sent to the API.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Resource<A> {
    /// The collection's type: `users` or `notes` (409 otherwise).
    #[serde(rename = "type")]
    kind: String,
    /// Left out on creation (the server assigns ids); when given on an update, the
    /// id in the URL (409 otherwise).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
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

/// A user's fields as sent: on creation `name` and `email` are required (422
/// otherwise); on an update only the fields that change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct UserAttributes {
    /// 1 to 200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<String>,
    /// An address `local@domain.tld`, at most 254 bytes.
    #[schema(max_length = 254, pattern = "^[^@]+@.*\\.")]
    email: Option<String>,
    /// `true`/`false`, or the prototype's 1/0 (also as text).
    #[schema(value_type = Option<bool>)]
    agreed_tos: Option<Value>,
    /// Only admins may set it.
    #[schema(value_type = Option<crate::openapi::RoleName>)]
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

/// A user as answered.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserResource {
    /// Always `users`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "users")]
    kind: &'static str,
    /// The user's id, as text.
    id: String,
    attributes: UserFields,
    links: SelfLink,
}

/// A user's fields (the password is write-only and never answered).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct UserFields {
    name: String,
    email: String,
    agreed_tos: bool,
    /// `admin` or `user`.
    #[schema(value_type = String, example = "user")]
    role: &'static str,
}

/// The resource's own URL.
#[derive(Debug, Serialize, ToSchema)]
struct SelfLink {
    #[serde(rename = "self")]
    this: String,
}

fn user_resource(user: &User) -> UserResource {
    UserResource {
        kind: "users",
        id: user.id.to_string(),
        attributes: UserFields {
            name: user.name.clone(),
            email: user.email.clone(),
            agreed_tos: user.agreed_tos,
            role: user.role.as_str(),
        },
        links: SelfLink {
            this: format!("/api/users/{}", user.id),
        },
    }
}

#[utoipa::path(
    get,
    path = "/api/users",
    tag = "users",
    operation_id = "listUsers",
    summary = "Every user; each one read is recorded as `viewed`",
    responses(
        (status = 200, description = "The users", body = UsersDocument,
            content_type = "application/vnd.api+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    )
)]
async fn list_users(
    State(state): State<ApiState>,
    Acting(actor): Acting,
) -> Result<Response, ApiError> {
    let users = state.users.list(&actor).await?;
    let data: Vec<UserResource> = users.iter().map(user_resource).collect();
    Ok(json_api(StatusCode::OK, &json!({ "data": data })))
}

#[utoipa::path(
    get,
    path = "/api/users/{id}",
    tag = "users",
    operation_id = "getUser",
    summary = "One user; recorded as `viewed`",
    params(("id" = i64, Path, minimum = 1, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = UserDocument,
            content_type = "application/vnd.api+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
async fn get_user(
    State(state): State<ApiState>,
    Acting(actor): Acting,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let user = state.users.get(&actor, numeric_id(&id)?).await?;
    Ok(json_api(
        StatusCode::OK,
        &json!({ "data": user_resource(&user) }),
    ))
}

#[utoipa::path(
    post,
    path = "/api/users",
    tag = "users",
    operation_id = "createUser",
    summary = "Create a user (admins); recorded as `created` with every field",
    description = "`name` and `email` are required; the id is assigned by the server \
        (403 when the body names one). A password is stored hashed and recorded as a \
        masked change.",
    request_body(description = "A `users` resource without `id`", content(
        (Document<UserAttributes> = "application/vnd.api+json"),
        (Document<UserAttributes> = "application/json"),
    )),
    responses(
        (status = 201, description = "The new user", body = UserDocument,
            content_type = "application/vnd.api+json",
            headers(("Location" = String, description = "The new user's URL"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
    )
)]
async fn create_user(
    State(state): State<ApiState>,
    Acting(actor): Acting,
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
    let user = state.users.create(&actor, new).await?;
    let mut response = json_api(
        StatusCode::CREATED,
        &json!({ "data": user_resource(&user) }),
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/api/users/{}", user.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(
    patch,
    path = "/api/users/{id}",
    tag = "users",
    operation_id = "updateUser",
    summary = "Change a user (admins, or users themselves); recorded as `changed` with \
        the fields that really changed",
    params(("id" = i64, Path, minimum = 1, description = "The user's id")),
    request_body(description = "A `users` resource with the fields to change", content(
        (Document<UserAttributes> = "application/vnd.api+json"),
        (Document<UserAttributes> = "application/json"),
    )),
    responses(
        (status = 200, description = "The user as changed", body = UserDocument,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
    )
)]
async fn update_user(
    State(state): State<ApiState>,
    Acting(actor): Acting,
    PathParams(id): PathParams<String>,
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
    let user = state.users.update(&actor, id, patch).await?;
    Ok(json_api(
        StatusCode::OK,
        &json!({ "data": user_resource(&user) }),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/users/{id}",
    tag = "users",
    operation_id = "deleteUser",
    summary = "Delete a user (admins, or users themselves); recorded as `deleted`",
    params(("id" = i64, Path, minimum = 1, description = "The user's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
async fn delete_user(
    State(state): State<ApiState>,
    Acting(actor): Acting,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    state.users.delete(&actor, numeric_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NoteAttributes {
    /// What the note is about, `type:id`, e.g. `users:5`.
    #[schema(pattern = "^[^:]{1,64}:.{1,128}$")]
    target: String,
    /// 1 to 10 000 characters, not only spaces.
    #[schema(min_length = 1, max_length = 10000, pattern = "\\S")]
    body: String,
}

/// A note as answered.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NoteResource {
    /// Always `notes`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "notes")]
    kind: &'static str,
    /// The note's id, as text.
    id: String,
    attributes: NoteFields,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NoteFields {
    /// What the note is about, `type:id`.
    target: String,
    body: String,
    /// The user who wrote it.
    author_id: i64,
    /// Milliseconds since the Unix epoch.
    created_at: i64,
}

fn note_resource(note: &Note) -> NoteResource {
    NoteResource {
        kind: "notes",
        id: note.id.to_string(),
        attributes: NoteFields {
            target: format!("{}:{}", note.target_type, note.target_id),
            body: note.body.clone(),
            author_id: note.author_id,
            created_at: note.created_at,
        },
    }
}

#[utoipa::path(
    post,
    path = "/api/notes",
    tag = "notes",
    operation_id = "createNote",
    summary = "Write a note about an object; recorded as `created`",
    request_body(description = "A `notes` resource", content(
        (Document<NoteAttributes> = "application/vnd.api+json"),
        (Document<NoteAttributes> = "application/json"),
    )),
    responses(
        (status = 201, description = "The new note", body = NoteDocument,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
    )
)]
async fn create_note(
    State(state): State<ApiState>,
    Acting(actor): Acting,
    JsonBody(document): JsonBody<Document<NoteAttributes>>,
) -> Result<Response, ApiError> {
    let resource = document.data;
    resource.expect_type("notes")?;
    let target = NoteTarget::parse(&resource.attributes.target)?;
    let note = state
        .notes
        .create(&actor, target, resource.attributes.body)
        .await?;
    Ok(json_api(
        StatusCode::CREATED,
        &json!({ "data": note_resource(&note) }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/notes/{id}",
    tag = "notes",
    operation_id = "getNote",
    summary = "One note; recorded as `viewed`",
    params(("id" = i64, Path, minimum = 1, description = "The note's id")),
    responses(
        (status = 200, description = "The note", body = NoteDocument,
            content_type = "application/vnd.api+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
async fn get_note(
    State(state): State<ApiState>,
    Acting(actor): Acting,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let note = state.notes.get(&actor, numeric_id(&id)?).await?;
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

#[utoipa::path(
    get,
    path = "/api/notes",
    tag = "notes",
    operation_id = "notesAbout",
    summary = "The notes about one object; each recorded as `viewed`",
    params(("target" = String, Query, pattern = "^[^:]{1,64}:.{1,128}$",
        description = "The object, `type:id`, e.g. `users:5`")),
    responses(
        (status = 200, description = "The notes", body = NotesDocument,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
    )
)]
async fn notes_about(
    State(state): State<ApiState>,
    Acting(actor): Acting,
    query: Result<Query<NotesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::bad_request("list notes with ?target=type:id, e.g. ?target=users:5")
    })?;
    let target = NoteTarget::parse(&query.target)?;
    let notes = state.notes.about(&actor, &target).await?;
    let data: Vec<NoteResource> = notes.iter().map(note_resource).collect();
    Ok(json_api(StatusCode::OK, &json!({ "data": data })))
}

/// Audit queries go to the auditor with the caller's own token: the auditor applies
/// the same policy, so the proxy cannot widen anyone's view. The answer is streamed
/// through as it arrives, never buffered: exports can be millions of events and the
/// live tail never ends. `Accept` (export format), `Last-Event-ID` (resuming the
/// tail) and `X-Request-Id` (one id across both services' logs) go along with the
/// token.
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
        auditlog_http::request_id::REQUEST_ID_HEADER,
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
