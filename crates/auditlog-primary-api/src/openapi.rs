//! The primary API's OpenAPI 3.1 document, served raw at `GET /openapi.json`.
//!
//! Its own routes are described by the `#[utoipa::path]` annotations on the
//! handlers in `routes` and the types they read and answer; the vocabulary both
//! services share (errors, the bearer scheme, the plain service routes) comes from
//! `auditlog_http::openapi`. The audit query routes it proxies to the auditor are
//! described by the auditor's own operations, copied from the auditor's document
//! that the binary hands to [`document`] (this crate does not link the auditor), so
//! the two documents cannot disagree about them. The binary's tests
//! (`crates/auditlog/tests/openapi.rs`) walk [`crate::router`] and check that its
//! routes and the document's are the same, method for method.

use std::sync::Arc;

use auditlog_http::openapi::{BearerScheme, ErrorResponses, ServiceRoutes, json_document};
use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes;
use crate::routes::notes::{self, NoteResource};
use crate::routes::users::{self, UserResource};

/// The auditor's routes that the primary API answers by proxying them, with the
/// caller's token, to the auditor, and the methods proxied (as OpenAPI names
/// them): the audit queries, and the verifiable log's key, checkpoint and
/// proofs, which the website checks in the browser (`get`); erasures, retention
/// and legal holds, which the website changes.
pub const PROXIED: [(&str, &[&str]); 19] = [
    ("/events/by/{actor_type}/{actor_id}", &["get"]),
    ("/events/on/{target_type}/{target_id}", &["get"]),
    ("/api/data-events", &["get"]),
    ("/api/data-events/stream", &["get"]),
    ("/api/data-events/activity", &["get"]),
    ("/api/data-events/{id}", &["get"]),
    ("/api/data-events/{id}/inclusion", &["get"]),
    ("/api/log/consistency", &["get"]),
    ("/log/key", &["get"]),
    ("/log/checkpoint", &["get"]),
    ("/api/{target_type}/{target_id}/data-events", &["get"]),
    ("/api/{target_type}/{target_id}/state", &["get"]),
    ("/api/{target_type}/{target_id}/diff", &["get"]),
    ("/api/sinks", &["get"]),
    ("/api/erasures", &["post"]),
    ("/api/retention", &["get"]),
    ("/api/retention/{tenant}", &["patch"]),
    ("/api/legal-holds", &["get", "post"]),
    ("/api/legal-holds/{id}", &["delete"]),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "auditlog primary API",
        description = "The demo application: users and notes over JSON:API, on a data \
            layer that records who viewed, created, changed or deleted what. The audit \
            queries (`/events/…`, `/api/data-events…`, object state and diff) are \
            answered by the auditor, to which they are proxied with the caller's token: \
            the auditor applies the same policy. So are the verifiable log's key \
            (`/log/key`), signed checkpoint (`/log/checkpoint`) and proofs \
            (`/api/data-events/{id}/inclusion`, `/api/log/consistency`), which a client \
            checks for itself. Every error is a JSON:API `errors` document."
    ),
    paths(
        routes::token,
        users::list_users,
        users::create_user,
        users::get_user,
        users::update_user,
        users::delete_user,
        notes::notes_about,
        notes::create_note,
        notes::get_note,
    ),
    modifiers(&BearerScheme, &ErrorResponses, &ServiceRoutes),
    security(("bearerAuth" = [])),
    tags(
        (name = "users", description = "The demo's users; every access is audited"),
        (name = "notes", description = "Notes about any object; every access is audited"),
        (name = "events", description = "The audit log, proxied to the auditor"),
        (name = "history", description = "An object's state and changes, proxied to the auditor"),
        (name = "integrity", description = "The verifiable log: its key, signed checkpoints and proofs, proxied to the auditor"),
        (name = "demo", description = "The demo's stand-in for a login"),
        (name = "service", description = "Health and this document; no token needed"),
    )
)]
struct PrimaryApi;

/// The primary API's OpenAPI document, with the [`PROXIED`] routes described by
/// the operations of `auditor`, the auditor's document.
pub fn document(auditor: &utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut document = PrimaryApi::openapi();
    ProxiedRoutes(auditor.clone()).modify(&mut document);
    document
}

/// [`document`] as served: JSON, or why it could not be written.
pub(crate) type DocumentJson = Arc<Result<String, String>>;

/// [`document`] as JSON, built once when the service starts.
pub(crate) fn document_json(auditor: &utoipa::openapi::OpenApi) -> DocumentJson {
    Arc::new(document(auditor).to_json().map_err(|e| e.to_string()))
}

/// `GET /openapi.json`: this service's OpenAPI document (described with the
/// other plain routes by [`ServiceRoutes`]).
pub(crate) async fn serve_document(State(document): State<DocumentJson>) -> Response {
    json_document(&document)
}

/// Copies the auditor's operations of the [`PROXIED`] routes (every method the
/// auditor documents for them), and the components they refer to, from the
/// auditor's document it holds.
struct ProxiedRoutes(utoipa::openapi::OpenApi);

impl Modify for ProxiedRoutes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut auditor = self.0.clone();
        let proxied = std::mem::take(&mut auditor.paths.paths)
            .into_iter()
            .filter_map(|(path, mut item)| {
                let (_, methods) = PROXIED.iter().find(|(proxied, _)| *proxied == path)?;
                // Only the methods proxied: the auditor's others (ingest on
                // `/api/data-events`) are its own.
                let keep =
                    |name: &str, operation: &mut Option<utoipa::openapi::path::Operation>| {
                        if !methods.contains(&name) {
                            *operation = None;
                        }
                    };
                keep("get", &mut item.get);
                keep("post", &mut item.post);
                keep("patch", &mut item.patch);
                keep("delete", &mut item.delete);
                keep("put", &mut item.put);
                for operation in [
                    &mut item.get,
                    &mut item.post,
                    &mut item.patch,
                    &mut item.delete,
                ]
                .into_iter()
                .flatten()
                {
                    operation.description = Some(format!(
                        "{} Proxied to the auditor with the caller's token; 503 when the \
                         auditor cannot be reached.",
                        operation.description.take().unwrap_or_default()
                    ));
                }
                Some((path, item))
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
    /// The deployment's staff: an admin of every tenant.
    Operator,
    /// Changes any user of its tenant and assigns roles.
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
    use utoipa::openapi::path::{HttpMethod, PathItem};

    use super::*;

    /// An auditor's document with a `GET` operation for each of the [`PROXIED`] routes.
    fn auditor_documenting_every_proxied_route() -> utoipa::openapi::OpenApi {
        let mut paths = utoipa::openapi::path::PathsBuilder::new();
        for (path, methods) in PROXIED {
            let operation = utoipa::openapi::path::OperationBuilder::new().build();
            for method in methods {
                let method = match *method {
                    "post" => HttpMethod::Post,
                    "patch" => HttpMethod::Patch,
                    "delete" => HttpMethod::Delete,
                    _ => HttpMethod::Get,
                };
                paths = paths.path(path, PathItem::new(method, operation.clone()));
            }
        }
        utoipa::openapi::OpenApiBuilder::new().paths(paths).build()
    }

    #[tokio::test]
    async fn the_router_serves_its_documented_routes_and_every_proxied_one() {
        let dir = tempfile::tempdir().unwrap();
        let auditor = auditor_documenting_every_proxied_route();
        let state = crate::testing::state(dir.path(), "http://127.0.0.1:9", &auditor).await;

        auditlog_http::openapi::testing::assert_router_matches(
            crate::router(state),
            &document(&auditor),
        )
        .await;
    }

    #[test]
    fn the_documented_roles_are_those_the_data_layer_reads() {
        let schema = serde_json::to_value(RoleName::schema()).unwrap();
        let roles = schema["enum"].as_array().unwrap();
        assert_eq!(roles.len(), 3);
        for role in roles {
            let role = role.as_str().unwrap();
            assert_eq!(crate::users::UserRole::parse(role).unwrap().as_str(), role);
        }
    }
}
