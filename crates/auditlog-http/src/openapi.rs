//! The OpenAPI vocabulary both APIs share: the JSON:API error document (the one
//! definition of what every failure is answered with, which [`crate::ApiError`]
//! serialises), the reusable error responses the operations refer to, the bearer
//! security scheme, the plain service routes every service serves (`/healthz`,
//! `/readyz`, `/metrics`, `/openapi.json`), serving a prepared document, and
//! (`testing`, with the feature `testing`) the check that a router and its document list
//! the same routes.
//!
//! Each service builds its own document from its handlers' `#[utoipa::path]`
//! annotations and adds these parts with `components(...)` and `modifiers(...)`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Ref, RefOr, ResponseBuilder, ResponsesBuilder, SecurityRequirement,
};
use utoipa::{Modify, PartialSchema, ToResponse, ToSchema};

use crate::{ApiError, JSON_API};

/// The name of the bearer security scheme in the documents.
pub const BEARER: &str = "bearerAuth";

/// A prepared OpenAPI document as an `application/json` answer.
pub fn json_document(document: &Result<String, String>) -> Response {
    match document {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            text.clone(),
        )
            .into_response(),
        Err(err) => ApiError::internal(format!("the OpenAPI document: {err}")).into_response(),
    }
}

/// Adds the bearer scheme: EdDSA JWTs, from `GET /tokens/{id}` on the primary API
/// in the demo or from the configured issuer.
pub struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An EdDSA (Ed25519) JWT with `sub`, `role` (admin, user or service), \
                         `iss` and `aud`; other algorithms are refused. The demo's primary \
                         API hands one out at `GET /tokens/{id}`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the JSON:API error document's schemas and the reusable error responses
/// ([`BadRequest`] … [`Unavailable`]) that operations refer to as
/// `#/components/responses/<Name>`.
pub struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut schemas = vec![(ErrorDocument::name().into_owned(), ErrorDocument::schema())];
        ErrorDocument::schemas(&mut schemas);
        for (name, schema) in schemas {
            components.schemas.entry(name).or_insert(schema);
        }
        for (name, response) in [
            BadRequest::response(),
            Unauthorized::response(),
            Forbidden::response(),
            NotFound::response(),
            Conflict::response(),
            Gone::response(),
            PayloadTooLarge::response(),
            UnsupportedMediaType::response(),
            Unprocessable::response(),
            Unavailable::response(),
        ] {
            components.responses.insert(name.to_owned(), response);
        }
    }
}

// ---------------------------------------------------------------------------
// Plain service routes

/// Adds the routes that are not JSON:API handlers ([`service_routes`]): their
/// handlers are plain functions or closures, so they are described by hand. Both
/// services serve them.
pub struct ServiceRoutes;

impl Modify for ServiceRoutes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in service_routes() {
            openapi.paths.paths.insert(path.to_owned(), item);
        }
    }
}

/// The plain routes both services serve (this document, health, readiness,
/// metrics), each with its path.
pub fn service_routes() -> Vec<(&'static str, PathItem)> {
    let text = || ObjectBuilder::new().schema_type(Type::String).into();
    let checks = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some("Each check's outcome: `ok` or `failed: <why>`"));
    let readiness = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "meta",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("status", ObjectBuilder::new().schema_type(Type::String))
                .property("checks", checks)
                .required("status")
                .required("checks"),
        )
        .required("meta")
        .into();
    vec![
        (
            "/openapi.json",
            service_get(
                "openapi",
                "The OpenAPI 3.1 document of this service",
                (
                    "application/json",
                    ObjectBuilder::new().schema_type(Type::Object).into(),
                ),
                &[],
            ),
        ),
        (
            "/healthz",
            service_get(
                "healthz",
                "Liveness: answers `ok` while the process serves HTTP",
                ("text/plain; charset=utf-8", text()),
                &[],
            ),
        ),
        (
            "/readyz",
            service_get(
                "readyz",
                "Readiness: 200 when every dependency this service needs answers, 503 \
                 naming each that does not",
                (JSON_API, readiness),
                &[("503", "Unavailable")],
            ),
        ),
        (
            "/metrics",
            service_get(
                "metrics",
                "Prometheus metrics of this process (text exposition format)",
                (crate::metrics::PROMETHEUS_TEXT, text()),
                &[("404", "NotFound")],
            ),
        ),
    ]
}

/// A `GET` that needs no token, answering 200 with `ok` (media type and schema)
/// or one of `errors` (status and the name of a reusable response).
pub fn service_get(
    operation_id: &str,
    summary: &str,
    ok: (&str, Schema),
    errors: &[(&str, &str)],
) -> PathItem {
    let mut responses = ResponsesBuilder::new().response(
        "200",
        ResponseBuilder::new()
            .description(summary)
            .content(ok.0, ContentBuilder::new().schema(Some(ok.1)).build()),
    );
    for (status, response) in errors {
        responses = responses.response(
            *status,
            RefOr::Ref(Ref::new(format!("#/components/responses/{response}"))),
        );
    }
    let operation = OperationBuilder::new()
        .tag("service")
        .operation_id(Some(operation_id))
        .summary(Some(summary))
        .security(SecurityRequirement::default())
        .responses(responses.build())
        .build();
    PathItem::new(HttpMethod::Get, operation)
}

/// A JSON:API error document: what every failure is answered with.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"errors": [{"status": "404", "title": "Not found",
    "detail": "there is no such event"}]}))]
pub struct ErrorDocument {
    #[schema(min_items = 1)]
    pub errors: Vec<ErrorObject>,
}

/// One error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// The HTTP status, as text (`"400"`).
    pub status: String,
    /// The kind of failure, the same for every error of this status.
    pub title: String,
    /// What was wrong with this request, in a sentence.
    pub detail: String,
    /// Which check failed, where the failure has a name (`/readyz` names the
    /// dependency that is not ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub code: Option<String>,
    /// Where in the request the fault is (ingest names the event and its field).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub source: Option<ErrorSource>,
}

/// Where an error is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorSource {
    /// A JSON pointer into the request document (`/data/0/attributes/actorId`) or,
    /// for NDJSON, `line N`.
    pub pointer: String,
}

/// 400.
#[derive(ToResponse)]
#[response(
    description = "Bad request: a parameter or the body is malformed (the detail says which)",
    content_type = "application/vnd.api+json"
)]
pub struct BadRequest(pub ErrorDocument);

/// 401.
#[derive(ToResponse)]
#[response(
    description = "No valid bearer token: missing, malformed, expired, or not EdDSA",
    content_type = "application/vnd.api+json"
)]
pub struct Unauthorized(pub ErrorDocument);

/// 403.
#[derive(ToResponse)]
#[response(
    description = "The token is valid but its principal may not do this",
    content_type = "application/vnd.api+json"
)]
pub struct Forbidden(pub ErrorDocument);

/// 404.
#[derive(ToResponse)]
#[response(
    description = "There is no such object, or the caller may not know of it",
    content_type = "application/vnd.api+json"
)]
pub struct NotFound(pub ErrorDocument);

/// 409.
#[derive(ToResponse)]
#[response(
    description = "Conflict: the resource `type` or `id` does not fit this endpoint, or \
        the change collides with existing data",
    content_type = "application/vnd.api+json"
)]
pub struct Conflict(pub ErrorDocument);

/// 410.
#[derive(ToResponse)]
#[response(
    description = "Gone: what was asked for existed, and was removed on purpose (events \
        pruned by retention)",
    content_type = "application/vnd.api+json"
)]
pub struct Gone(pub ErrorDocument);

/// 413.
#[derive(ToResponse)]
#[response(
    description = "The body is larger than this endpoint accepts",
    content_type = "application/vnd.api+json"
)]
pub struct PayloadTooLarge(pub ErrorDocument);

/// 415.
#[derive(ToResponse)]
#[response(
    description = "The body's Content-Type is not one this endpoint reads",
    content_type = "application/vnd.api+json"
)]
pub struct UnsupportedMediaType(pub ErrorDocument);

/// 422.
#[derive(ToResponse)]
#[response(
    description = "The document is well formed but breaks a rule (each error names the \
        field at fault)",
    content_type = "application/vnd.api+json"
)]
pub struct Unprocessable(pub ErrorDocument);

/// 503.
#[derive(ToResponse)]
#[response(
    description = "A service this answer needs is unavailable (the store, or the \
        auditor behind the primary API); try again",
    content_type = "application/vnd.api+json"
)]
pub struct Unavailable(pub ErrorDocument);

/// An operation's id, for tests and for the primary API's copy of the proxied routes.
pub fn operation<'a>(
    document: &'a utoipa::openapi::OpenApi,
    path: &str,
    method: HttpMethod,
) -> Option<&'a Operation> {
    document.paths.get_path_operation(path, method)
}

/// Checks that a router and its document describe the same routes: for this
/// crate's tests and the primary API's (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use std::collections::{BTreeMap, BTreeSet};

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    /// The routes of a router, read from its `Debug` form (axum has no other way to
    /// list them); fails rather than finding none if that form changes.
    pub fn router_paths(router: &axum::Router) -> BTreeSet<String> {
        let text = format!("{router:?}");
        // The fallback router lists its own catch-all paths after the routes.
        let routes = text.split("fallback_router").next().unwrap_or_default();
        let mut paths = BTreeSet::new();
        let mut rest = routes;
        while let Some(at) = rest.find("RouteId(") {
            rest = &rest[at + "RouteId(".len()..];
            let Some(quote) = rest.find("): \"") else {
                continue;
            };
            if !rest[..quote].chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            let start = &rest[quote + 4..];
            let Some(end) = start.find('"') else { break };
            // A catch-all `{*rest}` is one path parameter to OpenAPI: `{rest}`.
            let path = start[..end].replace("{*", "{");
            paths.insert(path);
        }
        assert!(
            !paths.is_empty(),
            "no route found in the router's Debug form; has axum changed it?"
        );
        paths
    }

    /// The methods the document gives each path.
    pub fn documented(document: &utoipa::openapi::OpenApi) -> BTreeMap<String, BTreeSet<String>> {
        let value = serde_json::to_value(document).unwrap();
        value["paths"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(path, item)| {
                let methods = item
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|key| ["get", "post", "put", "patch", "delete"].contains(&key.as_str()))
                    .map(|key| key.to_uppercase())
                    .collect();
                (path.clone(), methods)
            })
            .collect()
    }

    /// Asserts that `router` serves exactly the paths and methods of `document`:
    /// each documented method is routed (any answer but 405 and the fallback's
    /// 404), each other method is 405. Requests carry no token, so nothing runs
    /// past authentication.
    pub async fn assert_router_matches(router: axum::Router, document: &utoipa::openapi::OpenApi) {
        let documented = documented(document);
        let routed = router_paths(&router);
        let documented_paths: BTreeSet<String> = documented.keys().cloned().collect();
        assert_eq!(
            routed, documented_paths,
            "the router's routes (left) and the OpenAPI document's paths (right) differ"
        );
        for (path, methods) in &documented {
            let concrete = fill_path(path);
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                let request = Request::builder()
                    .method(Method::from_bytes(method.as_bytes()).unwrap())
                    .uri(&concrete)
                    .body(Body::empty())
                    .unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let fallback = status == StatusCode::NOT_FOUND
                    && String::from_utf8_lossy(&body).contains("there is no such route");
                if methods.contains(method) {
                    assert!(
                        status != StatusCode::METHOD_NOT_ALLOWED && !fallback,
                        "{method} {path} is documented but not routed ({status})"
                    );
                } else {
                    assert_eq!(
                        status,
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{method} {path} is routed but not documented"
                    );
                }
            }
        }
    }

    /// A path with each `{param}` replaced by a value every route accepts as a
    /// segment.
    fn fill_path(path: &str) -> String {
        let mut out = String::new();
        let mut rest = path;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
            out.push('1');
            rest = &rest[close..];
        }
        out.push_str(rest);
        out
    }
}
