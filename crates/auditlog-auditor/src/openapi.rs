//! The auditor's OpenAPI 3.1 document, served raw at `GET /openapi.json`.
//!
//! It is generated from the code: each route's operation comes from the
//! `#[utoipa::path]` annotation on its handler, the bodies from the types the
//! handlers serialize (`ToSchema` derives), and what has no Rust type on this side
//! is spelled out here once: the stored event (it is kept and answered as the JSON
//! it arrived as), the JSON:API `errors` document that `auditlog_http::ApiError`
//! writes, the query filters read by `query::parse_params`, the bearer scheme, and
//! the plain service routes (`/healthz`, …). The tests below walk
//! [`crate::router`] and check that its routes and the document's are the same, so
//! a route added without its description fails the build's tests.
//!
//! The primary API documents the routes it proxies to the auditor with these same
//! operations, so the two documents cannot disagree about them.

use std::borrow::Cow;
use std::sync::LazyLock;

use auditlog_event::{Action, MAX_EVENT_BYTES, MAX_ID_CHARS, MAX_TYPE_CHARS};
use auditlog_http::ApiError;
use auditlog_store::EventQuery;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
    ParameterStyle, PathItem,
};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Ref, RefOr, Required, ResponseBuilder, ResponsesBuilder, SecurityRequirement,
};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToResponse, ToSchema};

use crate::{activity, history, ingest, integrity, producers, query, stream};

/// The JSON:API media type, as `auditlog_http::JSON_API` serves it. The
/// annotations need it as a literal; a test checks the two are the same.
pub const JSON_API: &str = "application/vnd.api+json";

/// The name of the bearer security scheme in the documents.
pub const BEARER: &str = "bearerAuth";

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
        integrity::proof,
        query::by_actor,
        query::on_target,
        query::on_target_prototype,
        history::state,
        history::diff,
        producers::list,
        integrity::head,
    ),
    components(
        schemas(ErrorDocument, ErrorObject, ErrorSource, DataEventSchema, NewDataEventSchema),
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
    modifiers(&BearerScheme, &ServiceRoutes),
    security(("bearerAuth" = [])),
    tags(
        (name = "events", description = "Querying, exporting and tailing the audit log"),
        (name = "ingest", description = "Delivering events over HTTP"),
        (name = "history", description = "An object's state and changes over time"),
        (name = "integrity", description = "The signed hash chain over the log"),
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

// ---------------------------------------------------------------------------
// Security

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
                (auditlog_http::metrics::PROMETHEUS_TEXT, text()),
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

// ---------------------------------------------------------------------------
// JSON:API errors

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

// ---------------------------------------------------------------------------
// The event

fn string_schema(min: usize, max: usize, description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(description))
        .into()
}

fn object_type_schema(description: &str) -> Schema {
    string_schema(1, MAX_TYPE_CHARS, description)
}

fn object_id_schema(description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Integer]))
        .min_length(Some(1))
        .max_length(Some(MAX_ID_CHARS))
        .description(Some(format!(
            "{description}: a string of 1 to {MAX_ID_CHARS} characters or an integer, kept \
             as sent; queries match `1` and `\"1\"` alike"
        )))
        .into()
}

fn action_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(Action::ALL.iter().map(|a| a.as_str())))
        .description(Some("What was done to the target"))
        .into()
}

fn millis_schema(description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(i64::MAX))
        .description(Some(description))
        .into()
}

fn label_schema(description: &str) -> Schema {
    string_schema(0, 128, description)
}

fn change_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "One field's change. A masked change (a secret) has `masked: true` and null \
             `prev` and `next`: the log says the field changed, never its value.",
        ))
        .property(
            "prev",
            ObjectBuilder::new().schema_type(SchemaType::AnyValue),
        )
        .property(
            "next",
            ObjectBuilder::new().schema_type(SchemaType::AnyValue),
        )
        .property("masked", ObjectBuilder::new().schema_type(Type::Boolean))
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .into()
}

/// The fields every event has.
const REQUIRED_FIELDS: [&str; 5] = ["action", "actorType", "actorId", "targetType", "targetId"];

/// The event's fields: as a producer sends them (`input`: a null optional field
/// reads as left out, unknown fields are refused), or as stored and answered.
fn event_object(input: bool) -> ObjectBuilder {
    let id = ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .description(Some(if input {
            "A UUID, the idempotency key: an event whose id is stored already is not \
             stored again. A fresh UUIDv7 when absent."
        } else {
            "The event's UUID (v7 when the producer assigned it)"
        }));
    let changes = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(change_schema()))
        .description(Some(
            "Field name → change. Required (with at least one field) on `changed`; not \
             allowed on `viewed`.",
        ));
    let producer_seq = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .description(Some(
            "Position of the event in its producer's output, 1, 2, 3… without holes; \
             goes with producerId",
        ));
    let meta = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Free metadata, e.g. the client's ip or user agent"));
    let timestamp = millis_schema(if input {
        "Milliseconds since the Unix epoch; the time of arrival when absent"
    } else {
        "Milliseconds since the Unix epoch"
    });
    let fields: [(&str, Schema); 14] = [
        ("id", id.into()),
        ("action", action_schema()),
        ("timestamp", timestamp),
        (
            "actorType",
            object_type_schema("Who did it: its type, e.g. `users`"),
        ),
        ("actorId", object_id_schema("Who did it: its id")),
        (
            "targetType",
            object_type_schema("To what: its type, e.g. `users`"),
        ),
        ("targetId", object_id_schema("To what: its id")),
        ("changes", changes.into()),
        (
            "eventName",
            label_schema("A name for the event, e.g. `user.renamed`"),
        ),
        ("source", label_schema("The emitting service, e.g. `api`")),
        (
            "requestId",
            label_schema("Correlation id of the request that caused the event"),
        ),
        ("meta", meta.into()),
        (
            "producerId",
            label_schema("The emitting process; goes with producerSeq"),
        ),
        ("producerSeq", producer_seq.into()),
    ];
    let mut object = ObjectBuilder::new().schema_type(Type::Object);
    for (name, schema) in fields {
        let required = REQUIRED_FIELDS.contains(&name);
        object = object.property(
            name,
            if input && !required {
                or_null(schema)
            } else {
                schema
            },
        );
        if required || (!input && ["id", "timestamp"].contains(&name)) {
            object = object.required(name);
        }
    }
    if input {
        object
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
            .description(Some(format!(
                "One event to store: at most {MAX_EVENT_BYTES} bytes of JSON; unknown \
                 fields are refused"
            )))
    } else {
        object.description(Some("A stored event, exactly as it was accepted"))
    }
}

/// `schema`, also accepting `null`.
fn or_null(schema: Schema) -> Schema {
    match schema {
        Schema::Object(mut object) => {
            object.schema_type = match object.schema_type {
                SchemaType::Type(only) => SchemaType::from_iter([only, Type::Null]),
                SchemaType::Array(mut types) => {
                    types.push(Type::Null);
                    SchemaType::Array(types)
                }
                SchemaType::AnyValue => SchemaType::AnyValue,
            };
            Schema::Object(object)
        }
        other => other,
    }
}

/// The stored event, the `attributes` of a `data-events` resource.
pub struct DataEventSchema;

impl PartialSchema for DataEventSchema {
    fn schema() -> RefOr<Schema> {
        RefOr::T(event_object(false).into())
    }
}

impl ToSchema for DataEventSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("DataEvent")
    }
}

/// An event as a producer sends it.
pub struct NewDataEventSchema;

impl PartialSchema for NewDataEventSchema {
    fn schema() -> RefOr<Schema> {
        RefOr::T(event_object(true).into())
    }
}

impl ToSchema for NewDataEventSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("NewDataEvent")
    }
}

/// A `data-events` resource to store: `{"type": "data-events", "attributes": {…}}`.
pub(crate) fn new_event_resource() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["data-events"])),
        )
        .property("attributes", NewDataEventSchema::schema())
        .required("type")
        .required("attributes")
        .into()
}

/// The ingest endpoint's JSON:API document: one resource or a list of them.
pub(crate) struct IngestDocumentSchema;

impl PartialSchema for IngestDocumentSchema {
    fn schema() -> RefOr<Schema> {
        let data = OneOfBuilder::new().item(new_event_resource()).item(
            ArrayBuilder::new()
                .items(RefOr::T(new_event_resource()))
                .min_items(Some(1)),
        );
        RefOr::T(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("data", data)
                .required("data")
                .description(Some(
                    "One `data-events` resource or a list of them. Each invalid event is \
                     reported and not stored; the valid ones are.",
                ))
                .into(),
        )
    }
}

impl ToSchema for IngestDocumentSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("IngestDocument")
    }
}

// ---------------------------------------------------------------------------
// Query parameters

fn query_param(name: &str, description: &str, schema: impl Into<Schema>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema.into()))
        .build()
}

/// The filters, order and page of every event query, named exactly as
/// `query::parse_params` reads them.
pub(crate) struct EventFilters;

impl IntoParams for EventFilters {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let actions = ArrayBuilder::new()
            .items(RefOr::T(action_schema()))
            .min_items(Some(1));
        let mut action = query_param(
            "filter[action]",
            "Only these actions, comma-separated (`changed,deleted`)",
            actions,
        );
        action.style = Some(ParameterStyle::Form);
        action.explode = Some(false);
        vec![
            query_param(
                "filter[actorType]",
                "Only events by actors of this type; goes with filter[actorId]",
                object_type_schema("An actor type"),
            ),
            query_param(
                "filter[actorId]",
                "Only events by the actor with this id; goes with filter[actorType]",
                string_schema(1, MAX_ID_CHARS, "An actor id"),
            ),
            query_param(
                "filter[targetType]",
                "Only events on targets of this type; goes with filter[targetId]",
                object_type_schema("A target type"),
            ),
            query_param(
                "filter[targetId]",
                "Only events on the target with this id; goes with filter[targetType]",
                string_schema(1, MAX_ID_CHARS, "A target id"),
            ),
            action,
            query_param(
                "filter[eventName]",
                "Only events with one of these names, comma-separated",
                ObjectBuilder::new().schema_type(Type::String),
            ),
            query_param(
                "filter[since]",
                "Only events at or after this time",
                millis_schema("Milliseconds since the Unix epoch"),
            ),
            query_param(
                "filter[until]",
                "Only events before this time",
                millis_schema("Milliseconds since the Unix epoch"),
            ),
            query_param(
                "sort",
                "`-timestamp` (newest first, the default) or `timestamp` (oldest first)",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["-timestamp", "timestamp"])),
            ),
            query_param(
                "page[size]",
                "Events per page (default 50)",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(EventQuery::MAX_PAGE_SIZE)),
            ),
            query_param(
                "page[after]",
                "The opaque cursor of the next page; take it from `links.next`",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9a-f]{1,16}\\.[0-9a-f]{32}(\\.a)?$")),
            ),
        ]
    }
}

/// `count` and `format`, of the list routes.
pub(crate) struct ListOptions;

impl IntoParams for ListOptions {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            query_param(
                "count",
                "`true` adds `meta.total`, the number of matching events",
                ObjectBuilder::new().schema_type(Type::Boolean),
            ),
            query_param(
                "format",
                "`csv` or `ndjson` streams every matching event as a download instead \
                 of a page (an `Accept` of text/csv or application/x-ndjson does too); \
                 `json` is the page",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["csv", "ndjson", "json"])),
            ),
        ]
    }
}

/// The path of the routes about one object: `{type}/{id}`.
pub(crate) struct ObjectPath<const ACTOR: bool>;

impl<const ACTOR: bool> IntoParams for ObjectPath<ACTOR> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let (role, kind, id) = if ACTOR {
            ("actor", "actor_type", "actor_id")
        } else {
            ("target", "target_type", "target_id")
        };
        let path_param = |name: &str, description: String, schema: Schema| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(description))
                .schema(Some(schema))
                .build()
        };
        vec![
            path_param(
                kind,
                format!("The {role}'s type, e.g. `users`"),
                object_type_schema("An object type"),
            ),
            path_param(
                id,
                format!("The {role}'s id"),
                string_schema(1, MAX_ID_CHARS, "An object id"),
            ),
        ]
    }
}

/// The `{id}` of one stored event.
pub(crate) struct EventIdPath;

impl IntoParams for EventIdPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("The event's id"))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
                ))
                .build(),
        ]
    }
}

/// Milliseconds parameters: `(name, description, required)`.
pub(crate) fn millis_params(params: &[(&str, &str, bool)]) -> Vec<Parameter> {
    params
        .iter()
        .map(|(name, description, required)| {
            let mut param = query_param(
                name,
                description,
                millis_schema("Milliseconds since the Unix epoch"),
            );
            if *required {
                param.required = Required::True;
            }
            param
        })
        .collect()
}

/// `?after=` and `Last-Event-ID` of the live tail.
pub(crate) struct StreamOptions;

impl IntoParams for StreamOptions {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let position = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(0))
        };
        vec![
            query_param(
                "after",
                "Resume after this position (an `id:` line this server sent); without \
                 it the tail starts with the next event stored",
                position(),
            ),
            ParameterBuilder::new()
                .name("Last-Event-ID")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "As `after`, sent by an EventSource when it reconnects; wins over `after`",
                ))
                .schema(Some(position()))
                .build(),
        ]
    }
}

/// `bucket` of the activity histogram.
pub(crate) struct ActivityOptions;

impl IntoParams for ActivityOptions {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![query_param(
            "bucket",
            &format!(
                "Bucket width in milliseconds (default an hour); the range may span at \
                 most {} buckets",
                activity::MAX_BUCKETS
            ),
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(activity::MIN_BUCKET_MS)),
        )]
    }
}

/// `at` of the state route.
pub(crate) struct StateOptions;

impl IntoParams for StateOptions {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        millis_params(&[(
            "at",
            "The time to rebuild the object at (default now)",
            false,
        )])
    }
}

/// `from` and `to` of the diff route.
pub(crate) struct DiffOptions;

impl IntoParams for DiffOptions {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        millis_params(&[
            ("from", "The earlier time", true),
            ("to", "The later time (default now)", false),
        ])
    }
}

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
            let path = &start[..end];
            paths.insert(path.to_owned());
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use serde_json::json;

    use super::testing::assert_router_matches;
    use super::*;

    #[test]
    fn the_media_type_is_the_one_the_edge_serves() {
        assert_eq!(JSON_API, auditlog_http::JSON_API);
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
            let pair = if name.ends_with("Type]") || name.ends_with("Id]") {
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
