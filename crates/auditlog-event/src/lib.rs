//! The `DataEvent` wire contract: the one shape used on the wire, in storage and in
//! query results, and the rules every event must satisfy before anything keeps it.
//!
//! Events are parsed, not validated after the fact: [`DataEvent`] can only be built
//! through [`DataEvent::parse_json`] / [`DataEvent::from_wire`] (or the builder used by
//! producers), so a value of that type always satisfies the limits of DESIGN §2.
//! This crate does no I/O.

mod derived_id;
mod error;
mod fields;
mod redact;
mod tenant;

pub use derived_id::MessageIds;
pub use error::EventError;
use fields::ChangesExt;
pub use fields::{
    Action, Change, Changes, MAX_ID_CHARS, MAX_TYPE_CHARS, ObjectId, ObjectRef, ObjectType,
};
pub use redact::redact_url;
pub use tenant::{DEFAULT_TENANT, MAX_TENANT_CHARS, parse_tenant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Largest accepted event, measured on its JSON text: 64 000 bytes, so that the
/// event as stored (its JSON as the auditor writes it, plus the `seq` and
/// `receivedAt` the store adds) fits in one leaf of the verifiable log, whose
/// tiles frame each leaf with a two-byte length (at most 65 535 bytes).
pub const MAX_EVENT_BYTES: usize = 64_000;

/// Largest event a producer may send, as the auditor serialises it
/// ([`DataEvent::to_json`]): what a leaf holds besides the store's two fields (at
/// most 60 bytes) and the receipt the auditor adds ([`MAX_RECEIPT_BYTES`]).
pub const MAX_STORED_EVENT_BYTES: usize = 65_535 - 64 - MAX_RECEIPT_BYTES;

/// Room kept in every event for the receipt the auditor adds: `ingestedBy` (at
/// most [`MAX_INGESTED_BY_CHARS`] characters, each at most 6 bytes of JSON) and
/// `via`.
pub const MAX_RECEIPT_BYTES: usize = 1024;

/// Longest `ingestedBy`, in characters, as any label; a longer principal is cut.
pub const MAX_INGESTED_BY_CHARS: usize = MAX_LABEL_CHARS;

/// Below this input size, no event can serialise above
/// [`MAX_STORED_EVENT_BYTES`] (a number grows at most fivefold when rewritten,
/// e.g. `1e15` as `1000000000000000.0`), so its serialised size is not measured.
const SURELY_FITS_BYTES: usize = MAX_STORED_EVENT_BYTES / 5;

/// Now, in milliseconds since the Unix epoch: the unit of [`DataEvent::timestamp`]
/// and of every time the log stores or is asked about. A clock set before 1970
/// reads as 0.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One audited data event: who did what to which object, and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataEvent {
    /// UUIDv7 assigned by the producer; the idempotency key.
    pub id: Uuid,
    pub action: Action,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub actor_type: ObjectType,
    pub actor_id: ObjectId,
    pub target_type: ObjectType,
    pub target_id: ObjectId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// The emitting service, e.g. `api`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Correlation id of the request that caused the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Free metadata such as the client's ip or user agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
    /// The emitting process (one producer per emitter instance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<String>,
    /// Position of this event in its producer's output: 1, 2, 3… without holes, so
    /// that the auditor can tell when one is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer_seq: Option<u64>,
    /// Who delivered the event to the auditor, as the auditor authenticated them
    /// (`services/api`, `users/1`, `amqp/guest`): set by the auditor
    /// ([`DataEvent::received`]), never taken from a producer. Absent in events
    /// stored before the auditor recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingested_by: Option<String>,
    /// How the event reached the auditor: `http`, `amqp`, `embedded`, or
    /// `auditor` for its own records; set with `ingested_by`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The tenant (a customer of the deployment) the event belongs to; absent
    /// in the prototype's format, whose events belong to [`DEFAULT_TENANT`].
    /// See [`DataEvent::tenant`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

/// The loose shape an event arrives in. Every field is optional and untyped here so
/// that validation can name exactly which field is wrong and why.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WireEvent {
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default)]
    pub action: Option<Value>,
    #[serde(default)]
    pub timestamp: Option<Value>,
    #[serde(default)]
    pub actor_type: Option<Value>,
    #[serde(default)]
    pub actor_id: Option<Value>,
    #[serde(default)]
    pub target_type: Option<Value>,
    #[serde(default)]
    pub target_id: Option<Value>,
    #[serde(default)]
    pub changes: Option<Value>,
    #[serde(default)]
    pub event_name: Option<Value>,
    #[serde(default)]
    pub source: Option<Value>,
    #[serde(default)]
    pub request_id: Option<Value>,
    #[serde(default)]
    pub meta: Option<Value>,
    #[serde(default)]
    pub producer_id: Option<Value>,
    #[serde(default)]
    pub producer_seq: Option<Value>,
    /// Only in stored events: refused from producers.
    #[serde(default)]
    pub ingested_by: Option<Value>,
    /// Only in stored events: refused from producers.
    #[serde(default)]
    pub via: Option<Value>,
    #[serde(default)]
    pub tenant_id: Option<Value>,
}

/// Who wrote an event's JSON: a producer (whose word about how the event was
/// delivered is not taken), or the auditor's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Producer,
    Store,
}

/// Longest accepted `eventName`, `source` or `requestId`, in characters.
pub const MAX_LABEL_CHARS: usize = 128;

impl DataEvent {
    /// Builds a new event with a fresh UUIDv7 at `timestamp_ms` (milliseconds since
    /// the Unix epoch), as a producer does; the optional fields are then set
    /// directly. Types and ids are parsed on the way in, so a bad one is refused
    /// here, naming its field, rather than by the auditor later:
    ///
    /// ```
    /// use auditlog_event::{Action, Change, DataEvent, ObjectId, ObjectRef, ObjectType};
    /// use serde_json::json;
    ///
    /// # fn main() -> Result<(), auditlog_event::EventError> {
    /// let actor = ObjectRef::new(ObjectType::parse("actorType", "users")?, 1);
    /// let target = ObjectRef::new(
    ///     ObjectType::parse("targetType", "users")?,
    ///     ObjectId::parse_text("targetId", "42")?,
    /// );
    /// let mut event = DataEvent::new(Action::Changed, actor, target, 1_764_300_000_000);
    /// event.changes = Some(
    ///     [
    ///         ("agreedTos".to_owned(), Change::new(json!(false), json!(true))),
    ///         ("password".to_owned(), Change::masked()),
    ///     ]
    ///     .into(),
    /// );
    /// event.request_id = Some("my-req-123".into());
    ///
    /// // The JSON sent and stored reads back as the same event.
    /// let text = event.to_json();
    /// assert!(text.contains(r#""requestId":"my-req-123""#));
    /// assert_eq!(DataEvent::parse_json(&text, 0)?, event);
    ///
    /// let too_long = ObjectType::parse("targetType", "t".repeat(65));
    /// assert_eq!(too_long.unwrap_err().field(), Some("targetType"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(action: Action, actor: ObjectRef, target: ObjectRef, timestamp_ms: i64) -> Self {
        DataEvent {
            id: Uuid::now_v7(),
            action,
            timestamp: timestamp_ms,
            actor_type: actor.object_type,
            actor_id: actor.id,
            target_type: target.object_type,
            target_id: target.id,
            changes: None,
            event_name: None,
            source: None,
            request_id: None,
            meta: None,
            producer_id: None,
            producer_seq: None,
            ingested_by: None,
            via: None,
            tenant_id: None,
        }
    }

    /// The event as the auditor stores it: delivered by `ingested_by` over
    /// `via`, whatever the event said (it can say nothing: producers' events
    /// with these fields are refused). A longer `ingested_by` than
    /// [`MAX_INGESTED_BY_CHARS`] is cut, so that the receipt fits the room
    /// every event keeps for it.
    pub fn received(mut self, ingested_by: &str, via: &str) -> Self {
        self.ingested_by = Some(ingested_by.chars().take(MAX_INGESTED_BY_CHARS).collect());
        self.via = Some(via.chars().take(16).collect());
        self
    }

    /// Parses an event as the store keeps it (with the auditor's receipt, if
    /// any), for checking stored rows; producers' events go through
    /// [`DataEvent::parse_json`].
    pub fn parse_stored(text: &str) -> Result<Self, EventError> {
        let wire: WireEvent = serde_json::from_str(text).map_err(EventError::from_json)?;
        Self::from_wire_with(wire, 0, Origin::Store, Uuid::nil)
    }

    /// Parses one event from its JSON text, enforcing every rule of the contract.
    /// `now_ms` fills a missing timestamp; a missing id gets a fresh UUIDv7 (the
    /// producer's side: the event is new). Where events are received, use
    /// [`DataEvent::parse_json_in`].
    pub fn parse_json(text: &str, now_ms: i64) -> Result<Self, EventError> {
        Self::parse_json_with(text, now_ms, Uuid::now_v7)
    }

    /// Parses the event at `index` of a received `message` (an AMQP message, an
    /// HTTP request): as [`DataEvent::parse_json`], except that a missing id is
    /// derived from the message and the index ([`MessageIds`]), so that the same
    /// message delivered again yields the same ids and is stored once.
    pub fn parse_json_in(
        text: &str,
        now_ms: i64,
        message: &MessageIds<'_>,
        index: usize,
    ) -> Result<Self, EventError> {
        Self::parse_json_with(text, now_ms, || message.id(index))
    }

    fn parse_json_with(
        text: &str,
        now_ms: i64,
        missing_id: impl FnOnce() -> Uuid,
    ) -> Result<Self, EventError> {
        if text.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge { bytes: text.len() });
        }
        // serde would also read a struct from a JSON array; an event is an object.
        if !text.trim_start().starts_with('{') {
            return Err(EventError::Malformed(
                "an event must be a JSON object".into(),
            ));
        }
        let wire: WireEvent = serde_json::from_str(text).map_err(EventError::from_json)?;
        let event = Self::from_wire_with(wire, now_ms, Origin::Producer, missing_id)?;
        if text.len() > SURELY_FITS_BYTES {
            let stored = event.to_json().len();
            if stored > MAX_STORED_EVENT_BYTES {
                return Err(EventError::TooLarge { bytes: stored });
            }
        }
        Ok(event)
    }

    /// Validates an already-decoded wire event; a missing id gets a fresh UUIDv7.
    pub fn from_wire(wire: WireEvent, now_ms: i64) -> Result<Self, EventError> {
        Self::from_wire_with(wire, now_ms, Origin::Producer, Uuid::now_v7)
    }

    fn from_wire_with(
        wire: WireEvent,
        now_ms: i64,
        origin: Origin,
        missing_id: impl FnOnce() -> Uuid,
    ) -> Result<Self, EventError> {
        if origin == Origin::Producer {
            // How an event reached the auditor is the auditor's to say.
            for (field, value) in [("ingestedBy", &wire.ingested_by), ("via", &wire.via)] {
                if value.is_some() {
                    return Err(EventError::invalid(
                        field,
                        "is recorded by the auditor when it receives the event; leave it out",
                    ));
                }
            }
        }
        let id = match wire.id {
            None | Some(Value::Null) => missing_id(),
            Some(Value::String(s)) => {
                Uuid::parse_str(&s).map_err(|_| EventError::invalid("id", "must be a UUID"))?
            }
            Some(_) => return Err(EventError::invalid("id", "must be a UUID string")),
        };
        let action = match wire.action {
            None | Some(Value::Null) => return Err(EventError::missing("action")),
            Some(Value::String(s)) => Action::parse(&s)?,
            Some(_) => return Err(EventError::invalid("action", "must be a string")),
        };
        let timestamp = match wire.timestamp {
            None | Some(Value::Null) => now_ms,
            Some(Value::Number(n)) => n.as_i64().filter(|t| *t >= 0).ok_or_else(|| {
                EventError::invalid(
                    "timestamp",
                    "must be a non-negative integer of milliseconds",
                )
            })?,
            Some(_) => {
                return Err(EventError::invalid(
                    "timestamp",
                    "must be an integer of milliseconds since the Unix epoch",
                ));
            }
        };
        let actor_type = ObjectType::from_value("actorType", wire.actor_type)?;
        let actor_id = ObjectId::from_value("actorId", wire.actor_id)?;
        let target_type = ObjectType::from_value("targetType", wire.target_type)?;
        let target_id = ObjectId::from_value("targetId", wire.target_id)?;
        let changes = match wire.changes {
            None | Some(Value::Null) => None,
            Some(v) => Some(Changes::from_value(v)?),
        };
        match (action, &changes) {
            (Action::Changed, None) => {
                return Err(EventError::invalid(
                    "changes",
                    "is required for a `changed` event",
                ));
            }
            (Action::Changed, Some(c)) if c.is_empty() => {
                return Err(EventError::invalid(
                    "changes",
                    "must name at least one field for a `changed` event",
                ));
            }
            (Action::Viewed, Some(_)) => {
                return Err(EventError::invalid(
                    "changes",
                    "is not allowed on a `viewed` event",
                ));
            }
            _ => {}
        }
        let producer_id = label("producerId", wire.producer_id)?;
        let producer_seq =
            match wire.producer_seq {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => Some(n.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                    EventError::invalid("producerSeq", "must be a positive integer")
                })?),
                Some(_) => {
                    return Err(EventError::invalid(
                        "producerSeq",
                        "must be a positive integer",
                    ));
                }
            };
        if producer_id.is_some() != producer_seq.is_some() {
            return Err(EventError::invalid(
                if producer_id.is_some() {
                    "producerSeq"
                } else {
                    "producerId"
                },
                "producerId and producerSeq go together",
            ));
        }
        let meta = match wire.meta {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(EventError::invalid("meta", "must be an object")),
        };
        Ok(DataEvent {
            id,
            action,
            timestamp,
            actor_type,
            actor_id,
            target_type,
            target_id,
            changes,
            event_name: label("eventName", wire.event_name)?,
            source: label("source", wire.source)?,
            request_id: label("requestId", wire.request_id)?,
            meta,
            producer_id,
            producer_seq,
            ingested_by: label("ingestedBy", wire.ingested_by)?,
            via: label("via", wire.via)?,
            tenant_id: match wire.tenant_id {
                None | Some(Value::Null) => None,
                Some(value) => Some(tenant::parse("tenantId", value)?),
            },
        })
    }

    /// The tenant the event belongs to: its `tenantId`, or [`DEFAULT_TENANT`]
    /// for an event without one.
    pub fn tenant(&self) -> &str {
        self.tenant_id.as_deref().unwrap_or(DEFAULT_TENANT)
    }

    /// Puts the event in `tenant`: the default tenant is named by leaving
    /// `tenantId` out, as in the prototype's format.
    pub fn set_tenant(&mut self, tenant: &str) {
        self.tenant_id = (tenant != DEFAULT_TENANT).then(|| tenant.to_owned());
    }

    /// The actor as one reference.
    pub fn actor(&self) -> ObjectRef {
        ObjectRef {
            object_type: self.actor_type.clone(),
            id: self.actor_id.clone(),
        }
    }

    /// The target as one reference.
    pub fn target(&self) -> ObjectRef {
        ObjectRef {
            object_type: self.target_type.clone(),
            id: self.target_id.clone(),
        }
    }

    /// The event as compact JSON text, the form stored and sent.
    pub fn to_json(&self) -> String {
        // Serializing plain data (strings, numbers, maps with string keys) cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

fn label(field: &'static str, value: Option<Value>) -> Result<Option<String>, EventError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_LABEL_CHARS => Ok(Some(s)),
        Some(Value::String(_)) => Err(EventError::invalid(field, "must be at most 128 characters")),
        Some(_) => Err(EventError::invalid(field, "must be a string")),
    }
}

#[cfg(test)]
mod tests;
