//! The users' routes: list, read, create, change and delete, each through the
//! user-aware data layer, which records what was done.

use auditlog_http::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unprocessable,
    UnsupportedMediaType,
};
use auditlog_http::{ApiError, JsonBody, PathParams, json_api};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::ApiState;
use crate::openapi::{UserDocument, UsersDocument};
use crate::users::{NewUser, User, UserPatch, UserRole};

use super::{Acting, Document, numeric_id};

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
    /// Only admins may set it, and only operators to `operator`.
    #[schema(value_type = Option<crate::openapi::RoleName>)]
    role: Option<String>,
    /// The user's tenant: on creation the creator's own when left out (an
    /// admin creates users only there); changed by operators only.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    tenant: Option<String>,
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
    /// `operator`, `admin` or `user`.
    #[schema(value_type = String, example = "user")]
    role: &'static str,
    /// The tenant the user belongs to.
    #[schema(example = "default")]
    tenant: String,
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
            tenant: user.tenant.clone(),
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
pub(crate) async fn list_users(
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
pub(crate) async fn get_user(
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
pub(crate) async fn create_user(
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
        tenant: attributes.tenant,
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
pub(crate) async fn update_user(
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
        tenant: attributes.tenant,
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
pub(crate) async fn delete_user(
    State(state): State<ApiState>,
    Acting(actor): Acting,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    state.users.delete(&actor, numeric_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
