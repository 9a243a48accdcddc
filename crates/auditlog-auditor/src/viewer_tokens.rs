//! `POST /api/viewer-tokens`: a short-lived, read-only token for the embeddable
//! viewer, which an application hands its customer (in an iframe of the
//! website's `/viewer` page): the events of one tenant, or of one object of it,
//! and nothing else. Admins mint them for their tenant, services for theirs,
//! operators for any; each one minted is itself recorded in the log (`created`
//! on `viewer-tokens/<id>`, in the token's tenant), since it opens that tenant's
//! events to whoever holds it.

use std::time::Duration;

use auditlog_auth::{Principal, Role, TokenIssuer};
use auditlog_event::{Action, Change, DataEvent, ObjectId, ObjectRef, ObjectType};
use auditlog_http::openapi::{BadRequest, Forbidden, Unauthorized, Unavailable};
use auditlog_http::{ApiError, Authenticated, JsonBody, json_api};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AuditorState;
use crate::reads::AUDITOR_PRINCIPAL;

/// The JSON:API type of a viewer token.
const VIEWER_TOKENS: &str = "viewer-tokens";
/// How long a viewer token lives when the request says nothing.
const DEFAULT_TTL_SECS: u64 = 15 * 60;
/// The longest a viewer token may live: it cannot be revoked.
const MAX_TTL_SECS: u64 = 60 * 60;

/// `POST /api/viewer-tokens`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ViewerTokenRequest)]
pub(crate) struct ViewerTokenRequest {
    data: ViewerTokenRequestData,
}

/// The token asked for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ViewerTokenRequestData {
    /// Always `viewer-tokens`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "viewer-tokens")]
    kind: String,
    #[serde(default)]
    attributes: ViewerScope,
}

/// What the token shows: a tenant's events, or only those of one object in it
/// (as actor or target).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ViewerScope {
    /// The tenant: an admin's or a service's own (the default when left out);
    /// an operator names any (the default tenant when left out).
    #[schema(example = "acme")]
    tenant_id: Option<String>,
    /// The one object's type, e.g. `users`; goes with `objectId`.
    #[schema(example = "users")]
    object_type: Option<String>,
    /// The one object's id; goes with `objectType`.
    #[schema(example = "42")]
    object_id: Option<String>,
    /// How long the token lives, in seconds: 60 to 3600 (default 900).
    #[schema(minimum = 60, maximum = 3600, example = 900)]
    ttl_seconds: Option<u64>,
}

/// The answer: the token, and the viewer's URL path with it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ViewerTokenDocument)]
struct ViewerTokenDocument {
    data: ViewerTokenResource,
}

#[derive(Debug, Serialize, ToSchema)]
struct ViewerTokenResource {
    /// Always `viewer-tokens`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "viewer-tokens")]
    kind: &'static str,
    /// The token's subject, as the reads made with it are recorded
    /// (`viewers/<id>`).
    id: String,
    attributes: ViewerTokenAttributes,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ViewerTokenAttributes {
    /// The bearer token (an EdDSA JWT, role `viewer`).
    token: String,
    tenant_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_id: Option<String>,
    /// When the token stops working, ms since the Unix epoch.
    expires_at: i64,
    /// The website's viewer with this token: put it in an iframe's `src`, with
    /// `&accent=%23RRGGBB` and `&dark=1` to theme it.
    viewer_path: String,
}

/// `POST /api/viewer-tokens`.
#[utoipa::path(
    post,
    path = "/api/viewer-tokens",
    tag = "viewer",
    operation_id = "mintViewerToken",
    summary = "A short-lived, read-only token for the embeddable viewer",
    description = "Admins (for their tenant), services (for theirs; one of every tenant \
        names `tenantId`) and operators (any tenant). The token reads the events of the \
        tenant, or only those of one object (`objectType`/`objectId`, as actor or \
        target), and nothing else: no other route, no other tenant. Minting is recorded \
        as a `created` event on `viewer-tokens/<id>` in the tenant.",
    request_body(content = ViewerTokenRequest, content_type = "application/vnd.api+json"),
    responses(
        (status = 201, description = "The token", body = ViewerTokenDocument,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn mint(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    JsonBody(request): JsonBody<ViewerTokenRequest>,
) -> Result<Response, ApiError> {
    if !(principal.is_admin() || principal.role == Role::Service) {
        return Err(ApiError::forbidden(
            "only admins, services and operators mint viewer tokens",
        ));
    }
    let issuer = state
        .token_issuer
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this auditor holds no signing key"))?;
    if request.data.kind != VIEWER_TOKENS {
        return Err(ApiError::bad_request(format!(
            "the resource type must be `{VIEWER_TOKENS}`, not `{}`",
            request.data.kind
        )));
    }
    let scope = request.data.attributes;
    let tenant = crate::query::tenant_named(&principal, scope.tenant_id.as_deref())?;
    let object = match (scope.object_type, scope.object_id) {
        (None, None) => None,
        (Some(object_type), Some(id)) => {
            ObjectType::parse("objectType", object_type.as_str())
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            ObjectId::parse_text("objectId", id.clone())
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Some((object_type, id))
        }
        _ => {
            return Err(ApiError::bad_request("objectType and objectId go together"));
        }
    };
    let ttl = scope.ttl_seconds.unwrap_or(DEFAULT_TTL_SECS);
    if !(60..=MAX_TTL_SECS).contains(&ttl) {
        return Err(ApiError::bad_request("ttlSeconds must be from 60 to 3600"));
    }
    let id = uuid::Uuid::now_v7().simple().to_string();
    let mut viewer = Principal::new(id.clone(), Role::Viewer)
        .ok_or_else(|| ApiError::internal("a viewer id is not a valid subject"))?
        .in_tenant(tenant.clone());
    if let Some((object_type, object_id)) = &object {
        viewer = viewer.confined_to(object_type.clone(), object_id.clone());
    }
    let token = mint_token(issuer, &viewer, ttl)?;
    let expires_at = auditlog_event::now_ms().saturating_add((ttl * 1000) as i64);
    let event = minted_event(&principal, &viewer, ttl)?;
    state.read_commits.commit(event).await.map_err(|e| {
        ApiError::unavailable(format!(
            "the token could not be recorded in the log, so it is not given out: {e}"
        ))
    })?;
    Ok(json_api(
        StatusCode::CREATED,
        &ViewerTokenDocument {
            data: ViewerTokenResource {
                kind: VIEWER_TOKENS,
                id,
                attributes: ViewerTokenAttributes {
                    viewer_path: format!("/viewer?token={token}"),
                    token,
                    tenant_id: tenant,
                    object_type: object.as_ref().map(|(t, _)| t.clone()),
                    object_id: object.map(|(_, i)| i),
                    expires_at,
                },
            },
        },
    ))
}

fn mint_token(issuer: &TokenIssuer, viewer: &Principal, ttl: u64) -> Result<String, ApiError> {
    issuer
        .issue_for(viewer, Duration::from_secs(ttl))
        .map_err(ApiError::internal)
}

/// The record of `by` minting `viewer`'s token: `created` on
/// `viewer-tokens/<id>`, in the viewer's tenant, saying what it shows.
fn minted_event(by: &Principal, viewer: &Principal, ttl: u64) -> Result<DataEvent, ApiError> {
    let actor = by
        .actor()
        .map_err(|e| ApiError::internal(format!("the minter as an actor: {e}")))?;
    let target = ObjectType::parse("targetType", VIEWER_TOKENS)
        .and_then(|t| {
            Ok(ObjectRef::new(
                t,
                ObjectId::parse_text("targetId", viewer.subject.clone())?,
            ))
        })
        .map_err(|e| ApiError::internal(format!("the token as a target: {e}")))?;
    let mut event = DataEvent::new(Action::Created, actor, target, auditlog_event::now_ms());
    let scope = match &viewer.object {
        Some((object_type, id)) => format!("{object_type}/{id}"),
        None => "tenant".to_owned(),
    };
    event.changes = Some(
        [
            (
                "scope".to_owned(),
                Change::new(serde_json::Value::Null, scope.into()),
            ),
            (
                "ttlSeconds".to_owned(),
                Change::new(serde_json::Value::Null, ttl.into()),
            ),
        ]
        .into(),
    );
    event.event_name = Some("audit.viewer_token_minted".into());
    event.source = Some(auditlog_auth::policy::AUDITOR_SOURCE.into());
    event.set_tenant(&viewer.tenant);
    Ok(event.received(AUDITOR_PRINCIPAL, "auditor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_mints_for_its_tenant_and_an_operator_for_any() {
        let admin = Principal::new("2".into(), Role::Admin)
            .unwrap()
            .in_tenant("acme");
        assert_eq!(crate::query::tenant_named(&admin, None).unwrap(), "acme");
        assert_eq!(
            crate::query::tenant_named(&admin, Some("acme")).unwrap(),
            "acme"
        );
        assert!(crate::query::tenant_named(&admin, Some("globex")).is_err());
        let operator = Principal::new("1".into(), Role::Operator).unwrap();
        assert_eq!(
            crate::query::tenant_named(&operator, Some("globex")).unwrap(),
            "globex"
        );
        assert_eq!(
            crate::query::tenant_named(&operator, None).unwrap(),
            "default"
        );
        assert!(crate::query::tenant_named(&operator, Some("not a tenant")).is_err());
    }

    #[test]
    fn minting_is_recorded_in_the_viewers_tenant_with_its_scope() {
        let admin = Principal::new("2".into(), Role::Admin)
            .unwrap()
            .in_tenant("acme");
        let viewer = Principal::new("v1".into(), Role::Viewer)
            .unwrap()
            .in_tenant("acme")
            .confined_to("users", "42");
        let event = minted_event(&admin, &viewer, 900).unwrap();
        assert_eq!(event.tenant(), "acme");
        assert_eq!(event.target_type.as_str(), "viewer-tokens");
        assert_eq!(event.target_id.key(), "v1");
        let changes = serde_json::to_value(&event.changes).unwrap();
        assert_eq!(changes["scope"]["next"], "users/42");
    }
}
