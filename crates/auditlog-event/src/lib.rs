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

pub use derived_id::MessageIds;
pub use error::EventError;
use fields::ChangesExt;
pub use fields::{
    Action, Change, Changes, MAX_ID_CHARS, MAX_TYPE_CHARS, ObjectId, ObjectRef, ObjectType,
};
pub use redact::redact_url;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Largest accepted event, measured on its JSON text.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

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
        }
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
        Self::from_wire_with(wire, now_ms, missing_id)
    }

    /// Validates an already-decoded wire event; a missing id gets a fresh UUIDv7.
    pub fn from_wire(wire: WireEvent, now_ms: i64) -> Result<Self, EventError> {
        Self::from_wire_with(wire, now_ms, Uuid::now_v7)
    }

    fn from_wire_with(
        wire: WireEvent,
        now_ms: i64,
        missing_id: impl FnOnce() -> Uuid,
    ) -> Result<Self, EventError> {
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
        })
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
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    fn parse(v: Value) -> Result<DataEvent, EventError> {
        DataEvent::parse_json(&v.to_string(), NOW)
    }

    fn seed_event() -> Value {
        json!({
            "action": "changed",
            "actorType": "users", "actorId": 1,
            "targetType": "users", "targetId": "42",
            "changes": {"agreedTos": {"prev": 0, "next": 1}},
            "timestamp": 1_600_000_000_000i64
        })
    }

    fn field_of(err: EventError) -> String {
        err.field().unwrap_or("<none>").to_owned()
    }

    #[test]
    fn a_seed_event_without_id_gets_a_uuid_v7() {
        let event = parse(seed_event()).unwrap();
        assert_eq!(event.id.get_version_num(), 7);
    }

    #[test]
    fn a_received_event_without_id_gets_the_same_id_from_the_same_message() {
        let text = seed_event().to_string();
        let message = MessageIds::new(text.as_bytes());
        let first = DataEvent::parse_json_in(&text, NOW, &message, 0).unwrap();
        let redelivered = MessageIds::new(text.as_bytes());
        let again = DataEvent::parse_json_in(&text, NOW + 5, &redelivered, 0).unwrap();
        assert_eq!(first.id, again.id);
        assert_eq!(first.id.get_version_num(), 8);
    }

    #[test]
    fn a_received_event_with_an_id_keeps_it() {
        let mut v = seed_event();
        v["id"] = json!("0190b0a0-0000-7000-8000-000000000001");
        let text = v.to_string();
        let event =
            DataEvent::parse_json_in(&text, NOW, &MessageIds::new(text.as_bytes()), 0).unwrap();
        assert_eq!(event.id.to_string(), "0190b0a0-0000-7000-8000-000000000001");
    }

    #[test]
    fn ids_round_trip_as_the_string_or_number_they_were_sent_as() {
        let event = parse(seed_event()).unwrap();
        let back: Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(back["actorId"], json!(1));
        assert_eq!(back["targetId"], json!("42"));
        assert_eq!(back["changes"]["agreedTos"], json!({"prev": 0, "next": 1}));
        assert_eq!(back["timestamp"], json!(1_600_000_000_000i64));
    }

    #[test]
    fn a_serialized_event_parses_back_to_the_same_event() {
        let mut v = seed_event();
        v["id"] = json!("0190b0a0-0000-7000-8000-000000000001");
        v["eventName"] = json!("user.tos_accepted");
        v["source"] = json!("api");
        v["requestId"] = json!("req-1");
        v["meta"] = json!({"ip": "127.0.0.1"});
        let event = parse(v).unwrap();
        let again = DataEvent::parse_json(&event.to_json(), 0).unwrap();
        assert_eq!(event, again);
    }

    #[test]
    fn a_missing_timestamp_is_filled_with_now() {
        let mut v = seed_event();
        v.as_object_mut().unwrap().remove("timestamp");
        assert_eq!(parse(v).unwrap().timestamp, NOW);
    }

    #[test]
    fn an_unknown_action_is_rejected_naming_action() {
        let mut v = seed_event();
        v["action"] = json!("exploded");
        assert_eq!(field_of(parse(v).unwrap_err()), "action");
    }

    #[test]
    fn a_missing_action_is_rejected() {
        let mut v = seed_event();
        v.as_object_mut().unwrap().remove("action");
        assert_eq!(field_of(parse(v).unwrap_err()), "action");
    }

    #[test]
    fn a_missing_actor_is_rejected_naming_the_field() {
        for field in ["actorType", "actorId", "targetType", "targetId"] {
            let mut v = seed_event();
            v.as_object_mut().unwrap().remove(field);
            assert_eq!(field_of(parse(v).unwrap_err()), field);
        }
    }

    #[test]
    fn a_type_longer_than_64_chars_is_rejected() {
        let mut v = seed_event();
        v["targetType"] = json!("t".repeat(65));
        assert_eq!(field_of(parse(v).unwrap_err()), "targetType");
        let mut ok = seed_event();
        ok["targetType"] = json!("t".repeat(64));
        assert!(parse(ok).is_ok());
    }

    #[test]
    fn an_empty_type_is_rejected() {
        let mut v = seed_event();
        v["actorType"] = json!("");
        assert_eq!(field_of(parse(v).unwrap_err()), "actorType");
    }

    #[test]
    fn an_id_longer_than_128_chars_is_rejected() {
        let mut v = seed_event();
        v["actorId"] = json!("x".repeat(129));
        assert_eq!(field_of(parse(v).unwrap_err()), "actorId");
        let mut ok = seed_event();
        ok["actorId"] = json!("x".repeat(128));
        assert!(parse(ok).is_ok());
    }

    #[test]
    fn an_object_id_of_the_wrong_type_is_rejected() {
        for bad in [
            json!(true),
            json!(1.5),
            json!({"a": 1}),
            json!([1]),
            json!(""),
        ] {
            let mut v = seed_event();
            v["targetId"] = bad;
            assert_eq!(field_of(parse(v).unwrap_err()), "targetId");
        }
    }

    #[test]
    fn a_changed_event_needs_changes() {
        let mut v = seed_event();
        v.as_object_mut().unwrap().remove("changes");
        assert_eq!(field_of(parse(v).unwrap_err()), "changes");
        let mut empty = seed_event();
        empty["changes"] = json!({});
        assert_eq!(field_of(parse(empty).unwrap_err()), "changes");
    }

    #[test]
    fn a_viewed_event_cannot_carry_changes() {
        let mut v = seed_event();
        v["action"] = json!("viewed");
        assert_eq!(field_of(parse(v).unwrap_err()), "changes");
    }

    #[test]
    fn created_and_deleted_may_carry_changes_or_not() {
        for action in ["created", "deleted"] {
            let mut with = seed_event();
            with["action"] = json!(action);
            assert!(parse(with).is_ok());
            let mut without = seed_event();
            without["action"] = json!(action);
            without.as_object_mut().unwrap().remove("changes");
            assert!(parse(without).is_ok());
        }
    }

    #[test]
    fn a_change_must_have_prev_and_next_only() {
        for bad in [
            json!({"name": {"prev": "a"}}),
            json!({"name": {"prev": "a", "next": "b", "other": 1}}),
            json!({"name": "b"}),
            json!(["name"]),
        ] {
            let mut v = seed_event();
            v["changes"] = bad;
            assert_eq!(field_of(parse(v).unwrap_err()), "changes");
        }
    }

    #[test]
    fn a_masked_change_carries_no_values() {
        let mut v = seed_event();
        v["changes"] = json!({"password": {"masked": true}});
        let event = parse(v).unwrap();
        let back: Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(
            back["changes"]["password"],
            json!({"prev": null, "next": null, "masked": true})
        );
        let mut leaking = seed_event();
        leaking["changes"] = json!({"password": {"masked": true, "next": "hunter2"}});
        assert_eq!(field_of(parse(leaking).unwrap_err()), "changes");
        let mut odd = seed_event();
        odd["changes"] = json!({"password": {"masked": "yes"}});
        assert_eq!(field_of(parse(odd).unwrap_err()), "changes");
    }

    #[test]
    fn a_non_uuid_id_is_rejected() {
        let mut v = seed_event();
        v["id"] = json!("not-a-uuid");
        assert_eq!(field_of(parse(v).unwrap_err()), "id");
    }

    #[test]
    fn a_bad_timestamp_is_rejected() {
        for bad in [json!("yesterday"), json!(-1), json!(1.5)] {
            let mut v = seed_event();
            v["timestamp"] = bad;
            assert_eq!(field_of(parse(v).unwrap_err()), "timestamp");
        }
    }

    #[test]
    fn an_unknown_field_is_rejected_by_name() {
        let mut v = seed_event();
        v["colour"] = json!("red");
        let err = parse(v).unwrap_err();
        assert_eq!(field_of(err), "colour");
    }

    #[test]
    fn an_event_over_64_kib_is_rejected() {
        let mut v = seed_event();
        v["meta"] = json!({"blob": "x".repeat(MAX_EVENT_BYTES)});
        assert!(matches!(parse(v).unwrap_err(), EventError::TooLarge { .. }));
    }

    #[test]
    fn labels_are_limited_and_typed() {
        let mut long = seed_event();
        long["eventName"] = json!("e".repeat(129));
        assert_eq!(field_of(parse(long).unwrap_err()), "eventName");
        let mut typed = seed_event();
        typed["source"] = json!(7);
        assert_eq!(field_of(parse(typed).unwrap_err()), "source");
        let mut meta = seed_event();
        meta["meta"] = json!("ip");
        assert_eq!(field_of(parse(meta).unwrap_err()), "meta");
    }

    #[test]
    fn producer_id_and_sequence_round_trip_and_go_together() {
        let mut v = seed_event();
        v["producerId"] = json!("api/0190");
        v["producerSeq"] = json!(42);
        let event = parse(v.clone()).unwrap();
        assert_eq!(event.producer_seq, Some(42));
        let back: Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(back["producerId"], "api/0190");
        assert_eq!(back["producerSeq"], 42);

        let mut alone = seed_event();
        alone["producerSeq"] = json!(1);
        assert_eq!(field_of(parse(alone).unwrap_err()), "producerId");
        for bad in [json!(0), json!(-1), json!("1")] {
            let mut v = v.clone();
            v["producerSeq"] = bad;
            assert_eq!(field_of(parse(v).unwrap_err()), "producerSeq");
        }
    }

    #[test]
    fn text_that_is_not_json_is_rejected() {
        let err = DataEvent::parse_json("{not json", NOW).unwrap_err();
        assert!(matches!(err, EventError::Malformed(_)));
        let err = DataEvent::parse_json("[1,2]", NOW).unwrap_err();
        assert!(matches!(err, EventError::Malformed(_)));
    }
}
