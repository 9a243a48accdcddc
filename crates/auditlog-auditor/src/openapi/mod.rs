//! The auditor's OpenAPI 3.1 document, served raw at `GET /openapi.json`.
//!
//! It is generated from the code: each route's operation comes from the
//! `#[utoipa::path]` annotation on its handler, the bodies from the types the
//! handlers serialize (`ToSchema` derives), and what has no Rust type on this side
//! is spelled out once: the event schemas in `schemas`, the route parameters in
//! `params` (the event filters are [`crate::filters::EventFilters`], the one
//! struct the query parser reads). What both services share (the JSON:API
//! `errors` document, the error responses, the bearer scheme, the plain service
//! routes `/healthz`, …) is `auditlog_http::openapi`. The tests below walk
//! [`crate::router`] and check that its routes and the document's are the same, so
//! a route added without its description fails the build's tests.
//!
//! The primary API documents the routes it proxies to the auditor with these same
//! operations (the binary hands it this [`document`]), so the two documents cannot
//! disagree about them.

mod params;
mod schemas;

pub(crate) use params::{
    ActivityOptions, DiffOptions, EventIdPath, ListOptions, ObjectPath, StateOptions, StreamOptions,
};
pub(crate) use schemas::{DataEventSchema, IngestDocumentSchema, NewDataEventSchema};
pub(crate) use schemas::{action_schema, millis_schema, object_type_schema, string_schema};

use std::sync::LazyLock;

use auditlog_http::openapi::{BearerScheme, ErrorResponses, ServiceRoutes, json_document};
use axum::response::Response;
use utoipa::OpenApi;

use crate::log::routes as log;
use crate::{
    activity, erasure, history, ingest, producers, query, retention, sinks, stream, viewer_tokens,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "auditlog auditor",
        description = "Stores audit events (HTTP ingest, or a transport) and answers \
            queries about them under the shared authorisation policy: admins read \
            everything; anyone else only the events they performed or that were done \
            to them. Every successful read records one `audit.read` event by the \
            reader, with the request's `X-Request-Id` as its `requestId`. Every error is a JSON:API `errors` document."
    ),
    paths(
        query::list,
        ingest::ingest,
        stream::stream,
        activity::activity,
        query::get_one,
        log::inclusion,
        query::by_actor,
        query::on_target,
        query::on_target_prototype,
        history::state,
        history::diff,
        producers::list,
        erasure::erase,
        sinks::list,
        sinks::create,
        sinks::get_one,
        sinks::update,
        sinks::delete,
        sinks::test,
        retention::list,
        retention::set,
        retention::list_holds,
        retention::place_hold,
        retention::release_hold,
        retention::prune_now,
        viewer_tokens::mint,
        log::consistency,
        log::checkpoint,
        log::key,
        log::tile,
    ),
    components(
        schemas(DataEventSchema, NewDataEventSchema),
    ),
    modifiers(&BearerScheme, &ErrorResponses, &ServiceRoutes),
    security(("bearerAuth" = [])),
    tags(
        (name = "events", description = "Querying, exporting and tailing the audit log"),
        (name = "ingest", description = "Delivering events over HTTP"),
        (name = "history", description = "An object's state and changes over time"),
        (name = "erasure", description = "Erasing a data subject's personal data by deleting its key (crypto-shredding)"),
        (name = "log", description = "The verifiable log: RFC 9162 Merkle tree, C2SP checkpoints, tiles and proofs"),
        (name = "viewer", description = "Short-lived read-only tokens for the embeddable viewer of one tenant's events"),
        (name = "retention", description = "Retention per tenant, legal holds and pruning: expired events' rows removed, their leaves kept in the log"),
        (name = "sinks", description = "Log streams: every event delivered in log order to webhooks, syslog, Splunk, Datadog or files"),
        (name = "service", description = "Health and this document; no token needed"),
    )
)]
struct AuditorApi;

/// The auditor's OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    AuditorApi::openapi()
}

/// `document()` as JSON, built once.
static DOCUMENT_JSON: LazyLock<Result<String, String>> =
    LazyLock::new(|| document().to_json().map_err(|e| e.to_string()));

/// `GET /openapi.json`: this service's OpenAPI document (described with the
/// other plain routes in [`ServiceRoutes`]).
pub(crate) async fn serve_document() -> Response {
    json_document(&DOCUMENT_JSON)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use serde_json::json;

    use auditlog_http::JSON_API;
    use auditlog_http::openapi::BEARER;
    use auditlog_http::openapi::testing::assert_router_matches;

    use super::*;

    #[test]
    fn the_media_type_the_annotations_spell_is_the_one_the_edge_serves() {
        // The annotations need the JSON:API media type as a literal.
        let text = document().to_json().unwrap();
        assert!(text.contains(JSON_API));
        assert_eq!(
            text.matches("vnd.api").count(),
            text.matches(JSON_API).count()
        );
    }

    #[tokio::test]
    async fn every_route_of_the_auditor_is_documented_with_exactly_its_methods() {
        let dir = tempfile::tempdir().unwrap();
        let keys = auditlog_auth::KeyPair::load_or_generate(dir.path()).unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let state = crate::AuditorState::new(
            auditlog_store::open(&url).await.unwrap(),
            auditlog_auth::TokenVerifier::new(&keys).unwrap(),
            tokio::sync::watch::channel(false).1,
        );

        assert_router_matches(crate::router(state), &document()).await;
    }

    #[test]
    fn the_documented_filters_are_exactly_those_the_query_parser_reads() {
        let document = serde_json::to_value(document()).unwrap();
        let params = document["paths"]["/api/data-events"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
        // The parser names every parameter it knows when it meets an unknown one.
        let refusal = crate::parse_query_string("unknown=1").unwrap_err();
        let known: BTreeSet<&str> = refusal
            .split_once("known: ")
            .unwrap()
            .1
            .split(", ")
            .collect();
        assert_eq!(known, names.iter().copied().collect::<BTreeSet<_>>());
        for name in names {
            let value = match name {
                "filter[action]" => "changed,deleted",
                "filter[since]" | "filter[until]" | "page[size]" => "5",
                "sort" => "timestamp",
                "count" => "true",
                "format" => "json",
                "page[after]" => continue, // only a cursor this server gave out
                _ => "users",
            };
            let pair = if name == "filter[tenantId]" {
                String::new()
            } else if name.ends_with("Type]") || name.ends_with("Id]") {
                let partner = match name {
                    "filter[actorType]" => "filter[actorId]",
                    "filter[actorId]" => "filter[actorType]",
                    "filter[targetType]" => "filter[targetId]",
                    _ => "filter[targetType]",
                };
                format!("&{partner}=1")
            } else {
                String::new()
            };
            let query = format!("{name}={value}{pair}");
            assert!(
                crate::parse_query_string(&query).is_ok(),
                "the parser refuses the documented {query}"
            );
        }
    }

    #[test]
    fn every_secured_operation_documents_401_and_json_api_errors() {
        let document = serde_json::to_value(document()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(
            document["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let open = operation["security"] == json!([{}]);
                let responses = operation["responses"].as_object().unwrap();
                assert_eq!(
                    responses.contains_key("401"),
                    !open,
                    "{method} {path}: a 401 exactly when a token is needed"
                );
                for (status, response) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let reference = response["$ref"].as_str().unwrap_or_default();
                        assert!(
                            reference.starts_with("#/components/responses/"),
                            "{method} {path} {status} is not a JSON:API error response"
                        );
                    }
                }
            }
        }
        for (name, response) in document["components"]["responses"].as_object().unwrap() {
            assert!(
                response["content"][JSON_API]["schema"].is_object(),
                "{name} is not served as {JSON_API}"
            );
        }
    }
}
