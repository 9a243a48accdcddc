//! How the data layer records what it does: each repository call builds the event
//! for the acting principal and hands it to the emitter (an in-memory enqueue).

use std::time::{SystemTime, UNIX_EPOCH};

use auditlog_auth::Principal;
use auditlog_auth::policy::PRINCIPAL_TYPE;
use auditlog_emit::Emitter;
use auditlog_event::{Action, Change, Changes, DataEvent, ObjectId, ObjectRef, ObjectType};
use serde_json::Value;

/// The `source` of events this service emits.
pub const SOURCE: &str = "api";

/// Emits the events of the data layer.
#[derive(Debug, Clone)]
pub struct Recorder {
    emitter: Emitter,
}

impl Recorder {
    pub fn new(emitter: Emitter) -> Self {
        Recorder { emitter }
    }

    /// Records that `principal` did `action` to `target_type`/`target_id`.
    pub(crate) fn record(
        &self,
        principal: &Principal,
        action: Action,
        target_type: &'static str,
        target_id: i64,
        changes: Option<Changes>,
    ) {
        let (Some(actor), Some(target)) =
            (actor_ref(principal), object_ref(target_type, target_id))
        else {
            tracing::error!(%target_type, "an audit event could not be built");
            return;
        };
        let mut event = DataEvent::new(action, actor, target, now_ms());
        event.changes = changes;
        event.source = Some(SOURCE.into());
        self.emitter.emit(event);
    }
}

fn actor_ref(principal: &Principal) -> Option<ObjectRef> {
    let object_type = ObjectType::parse("actorType", PRINCIPAL_TYPE).ok()?;
    let id = match principal.subject.parse::<i64>() {
        Ok(n) => ObjectId::from(n),
        Err(_) => ObjectId::parse_text("actorId", principal.subject.clone()).ok()?,
    };
    Some(ObjectRef::new(object_type, id))
}

fn object_ref(object_type: &'static str, id: i64) -> Option<ObjectRef> {
    Some(ObjectRef::new(
        ObjectType::parse("targetType", object_type).ok()?,
        id,
    ))
}

/// The changes between two field lists: only fields whose value really differs.
pub(crate) fn diff(before: &[(&'static str, Value)], after: &[(&'static str, Value)]) -> Changes {
    before
        .iter()
        .zip(after)
        .filter(|((_, prev), (_, next))| prev != next)
        .map(|((field, prev), (_, next))| {
            (
                (*field).to_owned(),
                Change {
                    prev: prev.clone(),
                    next: next.clone(),
                },
            )
        })
        .collect()
}

/// Every field as created (`prev` null) or deleted (`next` null).
pub(crate) fn all_fields(fields: &[(&'static str, Value)], created: bool) -> Changes {
    fields
        .iter()
        .map(|(field, value)| {
            let change = if created {
                Change {
                    prev: Value::Null,
                    next: value.clone(),
                }
            } else {
                Change {
                    prev: value.clone(),
                    next: Value::Null,
                }
            };
            ((*field).to_owned(), change)
        })
        .collect()
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_diff_holds_only_the_fields_that_changed() {
        let before = [("name", json!("Ann")), ("agreedTos", json!(false))];
        let after = [("name", json!("Ann")), ("agreedTos", json!(true))];
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes["agreedTos"].prev, json!(false));
        assert_eq!(changes["agreedTos"].next, json!(true));
    }

    #[test]
    fn an_unchanged_object_has_an_empty_diff() {
        let fields = [("name", json!("Ann"))];
        assert!(diff(&fields, &fields).is_empty());
    }
}
