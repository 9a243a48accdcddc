//! The parameters of the auditor's routes other than the event filters (those are
//! [`crate::filters::EventFilters`], described by its own derive): list options,
//! the object and event paths, and the options of the live tail, the activity
//! histogram and the history routes.

use auditlog_event::MAX_ID_CHARS;
use utoipa::IntoParams;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

use super::schemas::{millis_schema, object_type_schema, string_schema};
use crate::activity;

fn query_param(name: &str, description: &str, schema: impl Into<Schema>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema.into()))
        .build()
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
