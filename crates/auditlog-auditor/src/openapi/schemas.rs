//! The schemas that have no Rust type on this side: the stored event (kept and
//! answered as the JSON it arrived as), the event a producer sends, the ingest
//! document, and the small schemas the query parameters are built from.

use std::borrow::Cow;

use auditlog_event::{Action, MAX_EVENT_BYTES, MAX_ID_CHARS, MAX_TYPE_CHARS};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::{PartialSchema, ToSchema};

pub(crate) fn string_schema(min: usize, max: usize, description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(description))
        .into()
}

pub(crate) fn object_type_schema(description: &str) -> Schema {
    string_schema(1, MAX_TYPE_CHARS, description)
}

pub(crate) fn object_id_schema(description: &str) -> Schema {
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

pub(crate) fn action_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(Action::ALL.iter().map(|a| a.as_str())))
        .description(Some("What was done to the target"))
        .into()
}

pub(crate) fn millis_schema(description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(i64::MAX))
        .description(Some(description))
        .into()
}

pub(crate) fn label_schema(description: &str) -> Schema {
    string_schema(0, 128, description)
}

fn change_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "One field's change. A masked change (a secret) has `masked: true` and null \
             `prev` and `next`: the log says the field changed, never its value. \
             Values of personal fields (declared per target type, e.g. `users.email`) \
             are stored encrypted under the target's key and answered decrypted; once \
             the target's personal data is erased (`POST /api/erasures`) they read as \
             `{\"erased\":true}` (and as `{\"undecryptable\":true}` if a stored \
             ciphertext was altered). The same holds for personal `meta` fields (e.g. \
             `meta.ip`), under the actor's key.",
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
        .description(Some(if input {
            "Free metadata, e.g. the client's ip or user agent. Personal fields (e.g. \
             `ip`) are stored encrypted under the actor's key; a value shaped like \
             `{\"$enc\":…}` is refused."
        } else {
            "Free metadata, e.g. the client's ip or user agent. Personal fields (e.g. \
             `ip`) are stored encrypted under the actor's key and answered decrypted, \
             or as `{\"erased\":true}` once the actor's personal data is erased."
        }));
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
    if !input {
        // What the auditor adds when it stores an event: its receipt, and the
        // store's place and time, all part of the event's leaf.
        for (name, schema) in [
            (
                "ingestedBy",
                label_schema(
                    "Who delivered the event, as the auditor authenticated them: \
                     `services/api`, `users/1`, `amqp/<broker user>`; absent in events \
                     stored before it was recorded",
                ),
            ),
            (
                "via",
                label_schema("How it reached the auditor: `http`, `amqp`, `embedded`, `auditor`"),
            ),
            (
                "seq",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .description(Some("The event's place in the store's commit order"))
                    .into(),
            ),
            (
                "receivedAt",
                millis_schema("When the auditor stored it, by the auditor's clock"),
            ),
        ] {
            object = object.property(name, schema);
        }
        object = object.required("seq").required("receivedAt");
    }
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
