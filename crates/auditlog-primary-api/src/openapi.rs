//! The primary API's OpenAPI 3.1 document, served raw at `GET /openapi.json`.
//!
//! Its own routes are described by the `#[utoipa::path]` annotations on the
//! handlers in `routes` and the types they read and answer. The audit
//! query routes it proxies to the auditor are described by the auditor's own
//! operations ([`auditlog_auditor::openapi::document`]), copied here, so the two
//! documents cannot disagree about them. The tests walk [`crate::router`] and check
//! that its routes and the document's are the same, method for method.

use std::sync::LazyLock;

use auditlog_auditor::openapi::{
    BadRequest, BearerScheme, Conflict, ErrorDocument, Forbidden, NotFound, PayloadTooLarge,
    ServiceRoutes, Unauthorized, Unavailable, Unprocessable, UnsupportedMediaType, json_document,
};
use axum::response::Response;
use serde::Serialize;
use utoipa::openapi::path::{HttpMethod, PathItem};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes::{self, NoteResource, UserResource};

/// The auditor's routes that the primary API answers by proxying them (`GET` only),
/// with the caller's token, to the auditor.
pub const PROXIED: [&str; 9] = [
    "/events/by/{actor_type}/{actor_id}",
    "/events/on/{target_type}/{target_id}",
    "/api/data-events",
    "/api/data-events/stream",
    "/api/data-events/activity",
    "/api/data-events/{id}",
    "/api/{target_type}/{target_id}/data-events",
    "/api/{target_type}/{target_id}/state",
    "/api/{target_type}/{target_id}/diff",
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "auditlog primary API",
        description = "The demo application: users and notes over JSON:API, on a data \
            layer that records who viewed, created, changed or deleted what. The audit \
            queries (`/events/…`, `/api/data-events…`, object state and diff) are \
            answered by the auditor, to which they are proxied with the caller's token: \
            the auditor applies the same policy. Every error is a JSON:API `errors` \
            document."
    ),
    paths(
        routes::token,
        routes::list_users,
        routes::create_user,
        routes::get_user,
        routes::update_user,
        routes::delete_user,
        routes::notes_about,
        routes::create_note,
        routes::get_note,
    ),
    components(
        schemas(ErrorDocument),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unprocessable,
            Unavailable
        )
    ),
    modifiers(&BearerScheme, &ProxiedRoutes, &ServiceRoutes),
    security(("bearerAuth" = [])),
    tags(
        (name = "users", description = "The demo's users; every access is audited"),
        (name = "notes", description = "Notes about any object; every access is audited"),
        (name = "events", description = "The audit log, proxied to the auditor"),
        (name = "history", description = "An object's state and changes, proxied to the auditor"),
        (name = "demo", description = "The demo's stand-in for a login"),
        (name = "service", description = "Health and this document; no token needed"),
    )
)]
struct PrimaryApi;

/// The primary API's OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    PrimaryApi::openapi()
}

static DOCUMENT_JSON: LazyLock<Result<String, String>> =
    LazyLock::new(|| document().to_json().map_err(|e| e.to_string()));

/// `GET /openapi.json`: this service's OpenAPI document (described with the
/// other plain routes by the auditor's [`ServiceRoutes`]).
pub(crate) async fn serve_document() -> Response {
    json_document(&DOCUMENT_JSON)
}

/// Copies the auditor's `GET` operations of the [`PROXIED`] routes, and the
/// components they refer to.
struct ProxiedRoutes;

impl Modify for ProxiedRoutes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut auditor = auditlog_auditor::openapi::document();
        let proxied = std::mem::take(&mut auditor.paths.paths)
            .into_iter()
            .filter(|(path, _)| PROXIED.contains(&path.as_str()))
            .filter_map(|(path, item)| {
                let mut operation = item.get?;
                operation.description = Some(format!(
                    "{} Proxied to the auditor with the caller's token; 503 when the \
                     auditor cannot be reached.",
                    operation.description.unwrap_or_default()
                ));
                Some((path, PathItem::new(HttpMethod::Get, operation)))
            })
            .collect();
        auditor.paths.paths = proxied;
        auditor.tags = None;
        openapi.merge(auditor);
    }
}

/// A user's role, as [`crate::users::UserRole::parse`] reads it.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // only its schema is used
pub(crate) enum RoleName {
    /// Changes any user and assigns roles.
    Admin,
    /// Changes only themselves.
    User,
}

/// One user.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserDocument {
    data: UserResource,
}

/// Users.
#[derive(Serialize, ToSchema)]
pub(crate) struct UsersDocument {
    data: Vec<UserResource>,
}

/// One note.
#[derive(Serialize, ToSchema)]
pub(crate) struct NoteDocument {
    data: NoteResource,
}

/// Notes.
#[derive(Serialize, ToSchema)]
pub(crate) struct NotesDocument {
    data: Vec<NoteResource>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use utoipa::PartialSchema;

    use super::*;

    #[tokio::test]
    async fn every_route_of_the_primary_api_is_documented_with_exactly_its_methods() {
        let dir = tempfile::tempdir().unwrap();
        let keys = auditlog_auth::KeyPair::load_or_generate(dir.path()).unwrap();
        let url = format!("sqlite://{}", dir.path().join("app.db").display());
        let state = crate::ApiState::new(
            crate::AppDb::open(&url).await.unwrap(),
            crate::Recorder::disabled(),
            auditlog_auth::TokenIssuer::new(&keys).unwrap(),
            auditlog_auth::TokenVerifier::new(&keys).unwrap(),
            "http://127.0.0.1:9".into(),
        );

        auditlog_auditor::openapi::testing::assert_router_matches(
            crate::router(state),
            &document(),
        )
        .await;
    }

    #[test]
    fn the_documented_roles_are_those_the_data_layer_reads() {
        let schema = serde_json::to_value(RoleName::schema()).unwrap();
        let roles = schema["enum"].as_array().unwrap();
        assert_eq!(roles.len(), 2);
        for role in roles {
            let role = role.as_str().unwrap();
            assert_eq!(crate::users::UserRole::parse(role).unwrap().as_str(), role);
        }
    }

    #[test]
    fn the_proxied_routes_are_the_auditors_operations() {
        let primary = serde_json::to_value(document()).unwrap();
        let auditor = serde_json::to_value(auditlog_auditor::openapi::document()).unwrap();
        for path in PROXIED {
            let ours = &primary["paths"][path]["get"];
            let theirs = &auditor["paths"][path]["get"];
            assert_eq!(ours["parameters"], theirs["parameters"], "{path}");
            assert_eq!(ours["responses"], theirs["responses"], "{path}");
        }
    }
}
