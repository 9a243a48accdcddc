//! The HTTP routes of the primary API: JSON:API documents in and out, the
//! prototype's loose inputs accepted, every error a JSON:API `errors` document.
//! The users' routes are in [`users`], the notes' in [`notes`], the audit query
//! and verifiable-log routes proxied to the auditor in [`proxy`]; here are the
//! router, the dev token route and what they share (the acting principal, the
//! request document).

pub(crate) mod notes;
pub(crate) mod proxy;
pub(crate) mod users;

use auditlog_auth::Principal;
use auditlog_http::openapi::{Forbidden, NotFound};
use auditlog_http::request_id::ClientRequestId;
use auditlog_http::{ApiError, Authenticated, PathParams, RequestId, not_found};
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::audit::Actor;
use crate::{ApiState, DataError};

/// The primary API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/tokens/{id}", get(token))
        .route(
            "/api/users",
            get(users::list_users).post(users::create_user),
        )
        .route(
            "/api/users/{id}",
            get(users::get_user)
                .patch(users::update_user)
                .delete(users::delete_user),
        )
        .route(
            "/api/notes",
            get(notes::notes_about).post(notes::create_note),
        )
        .route("/api/notes/{id}", get(notes::get_note))
        .route("/events/by/{actor_type}/{actor_id}", get(proxy::to_auditor))
        .route(
            "/events/on/{target_type}/{target_id}",
            get(proxy::to_auditor),
        )
        .route("/api/data-events", get(proxy::to_auditor))
        .route("/api/sinks", get(proxy::to_auditor))
        .route("/api/erasures", post(proxy::write_to_auditor))
        .route("/api/retention", get(proxy::to_auditor))
        .route("/api/retention/{tenant}", patch(proxy::write_to_auditor))
        .route(
            "/api/legal-holds",
            get(proxy::to_auditor).post(proxy::write_to_auditor),
        )
        .route("/api/legal-holds/{id}", delete(proxy::write_to_auditor))
        // Fixed segments win over `{id}` in the router, whatever the order here.
        .route("/api/data-events/stream", get(proxy::to_auditor))
        .route("/api/data-events/activity", get(proxy::to_auditor))
        .route("/api/data-events/{id}", get(proxy::to_auditor))
        .route("/api/data-events/{id}/inclusion", get(proxy::to_auditor))
        .route("/api/log/consistency", get(proxy::to_auditor))
        // The verifiable log's key and signed checkpoint, as text/plain.
        .route("/log/key", get(proxy::to_auditor))
        .route("/log/checkpoint", get(proxy::to_auditor))
        .route(
            "/api/{target_type}/{target_id}/data-events",
            get(proxy::to_auditor),
        )
        .route(
            "/api/{target_type}/{target_id}/state",
            get(proxy::to_auditor),
        )
        .route(
            "/api/{target_type}/{target_id}/diff",
            get(proxy::to_auditor),
        )
        .route(
            "/openapi.json",
            get(crate::openapi::serve_document).with_state(state.document.clone()),
        )
        .merge(auditlog_http::service_routes(
            state.readiness.clone(),
            state.metrics.clone(),
        ))
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
pub(crate) struct Acting(Actor);

impl FromRequestParts<ApiState> for Acting {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let Authenticated(principal) = Authenticated::from_request_parts(parts, state).await?;
        let Ok(request_id) = RequestId::from_request_parts(parts, state).await;
        let Ok(ClientRequestId(client)) = ClientRequestId::from_request_parts(parts, state).await;
        Ok(Acting(
            Actor::new(principal, Some(request_id.into_string()))
                .with_client_request_id(client.map(RequestId::into_string)),
        ))
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
        are switched off (`--dev-tokens=false`); 403 when the request's `Host` is not one \
        of the allowed names (`localhost`, `127.0.0.1`, the listen address and \
        `--dev-token-hosts`), which keeps a DNS-rebinding page from obtaining a token.",
    security(()),
    params(("id" = i64, Path, minimum = 1, description = "The user's id")),
    responses(
        (status = 201, description = "The token: an EdDSA JWT, as text", body = String,
            content_type = "text/plain; charset=utf-8"),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
async fn token(
    State(state): State<ApiState>,
    headers: axum::http::HeaderMap,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    if !state.dev_tokens {
        return Err(not_found().await);
    }
    if !state.dev_token_hosts.permit(&headers) {
        return Err(state.dev_token_hosts.refusal());
    }
    let id = numeric_id(&id)?;
    let user = state
        .users
        .find_unaudited(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("there is no user {id}")))?;
    let principal = Principal::new(user.id.to_string(), user.role.principal_role())
        .ok_or_else(|| ApiError::internal("a user id is not a valid subject"))?
        .in_tenant(user.tenant);
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
