//! The typed parts of an event: action, object types and ids, field changes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use crate::EventError;

/// Longest accepted object type (`users`, `notes`, …).
pub const MAX_TYPE_CHARS: usize = 64;
/// Longest accepted object id.
pub const MAX_ID_CHARS: usize = 128;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Viewed,
    Created,
    Changed,
    Deleted,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Viewed,
        Action::Created,
        Action::Changed,
        Action::Deleted,
    ];

    /// Parses the wire name of an action.
    pub fn parse(text: &str) -> Result<Self, EventError> {
        match text {
            "viewed" => Ok(Action::Viewed),
            "created" => Ok(Action::Created),
            "changed" => Ok(Action::Changed),
            "deleted" => Ok(Action::Deleted),
            _ => Err(EventError::invalid(
                "action",
                format!("`{text}` is not one of viewed, created, changed, deleted"),
            )),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Viewed => "viewed",
            Action::Created => "created",
            Action::Changed => "changed",
            Action::Deleted => "deleted",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of an actor or target, e.g. `users`: 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ObjectType(String);

impl ObjectType {
    /// Parses an object type for the given wire field.
    pub fn parse(field: &'static str, text: impl Into<String>) -> Result<Self, EventError> {
        let text = text.into();
        let chars = text.chars().count();
        if chars == 0 {
            return Err(EventError::invalid(field, "must not be empty"));
        }
        if chars > MAX_TYPE_CHARS {
            return Err(EventError::invalid(field, "must be at most 64 characters"));
        }
        Ok(ObjectType(text))
    }

    pub(crate) fn from_value(
        field: &'static str,
        value: Option<Value>,
    ) -> Result<Self, EventError> {
        match value {
            None | Some(Value::Null) => Err(EventError::missing(field)),
            Some(Value::String(s)) => ObjectType::parse(field, s),
            Some(_) => Err(EventError::invalid(field, "must be a string")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of an actor or target, kept as the string or integer it was sent as so that
/// it round-trips exactly. Queries match on its text form ([`ObjectId::key`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum ObjectId {
    Text(String),
    Number(Number),
}

impl ObjectId {
    /// Parses an id for the given wire field: a non-empty string of at most 128
    /// characters, or an integer.
    pub fn parse_text(field: &'static str, text: impl Into<String>) -> Result<Self, EventError> {
        let text = text.into();
        let chars = text.chars().count();
        if chars == 0 {
            return Err(EventError::invalid(field, "must not be empty"));
        }
        if chars > MAX_ID_CHARS {
            return Err(EventError::invalid(field, "must be at most 128 characters"));
        }
        Ok(ObjectId::Text(text))
    }

    pub(crate) fn from_value(
        field: &'static str,
        value: Option<Value>,
    ) -> Result<Self, EventError> {
        match value {
            None | Some(Value::Null) => Err(EventError::missing(field)),
            Some(Value::String(s)) => ObjectId::parse_text(field, s),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(ObjectId::Number(n)),
            Some(_) => Err(EventError::invalid(field, "must be a string or an integer")),
        }
    }

    /// The text form used for matching in queries: `1` and `"1"` are the same object.
    pub fn key(&self) -> String {
        match self {
            ObjectId::Text(s) => s.clone(),
            ObjectId::Number(n) => n.to_string(),
        }
    }
}

impl From<i64> for ObjectId {
    fn from(n: i64) -> Self {
        ObjectId::Number(n.into())
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectId::Text(s) => f.write_str(s),
            ObjectId::Number(n) => write!(f, "{n}"),
        }
    }
}

/// An actor or a target: type and id together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub object_type: ObjectType,
    pub id: ObjectId,
}

impl ObjectRef {
    /// A reference to an object of an already-parsed type.
    pub fn new(object_type: ObjectType, id: impl Into<ObjectId>) -> Self {
        ObjectRef {
            object_type,
            id: id.into(),
        }
    }
}

/// One field's change: its value before and after — or, for a sensitive field
/// such as a password hash, only the fact that it changed (`masked`, with both
/// values null), so the log never holds the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub prev: Value,
    pub next: Value,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub masked: bool,
}

impl Change {
    /// A change from `prev` to `next`.
    pub fn new(prev: Value, next: Value) -> Self {
        Change {
            prev,
            next,
            masked: false,
        }
    }

    /// A change whose values are not recorded.
    pub fn masked() -> Self {
        Change {
            prev: Value::Null,
            next: Value::Null,
            masked: true,
        }
    }
}

/// Field name → change. Ordered so that stored JSON is deterministic.
pub type Changes = BTreeMap<String, Change>;

pub(crate) trait ChangesExt: Sized {
    fn from_value(value: Value) -> Result<Self, EventError>;
}

impl ChangesExt for Changes {
    fn from_value(value: Value) -> Result<Self, EventError> {
        let Value::Object(map) = value else {
            return Err(EventError::invalid(
                "changes",
                "must be an object of field → {prev, next}",
            ));
        };
        let mut changes = Changes::new();
        for (field, change) in map {
            let Value::Object(mut parts) = change else {
                return Err(EventError::invalid(
                    "changes",
                    format!("`{field}` must be an object {{prev, next}}"),
                ));
            };
            let masked = match parts.remove("masked") {
                None | Some(Value::Bool(false)) => false,
                Some(Value::Bool(true)) => true,
                Some(_) => {
                    return Err(EventError::invalid(
                        "changes",
                        format!("`{field}`.masked must be true or false"),
                    ));
                }
            };
            let (prev, next) = (parts.remove("prev"), parts.remove("next"));
            if !parts.is_empty() {
                return Err(EventError::invalid(
                    "changes",
                    format!("`{field}` may have only `prev`, `next` and `masked`"),
                ));
            }
            let change = if masked {
                // A masked change carries no values: refuse one that tries to.
                if [&prev, &next]
                    .iter()
                    .any(|v| v.as_ref().is_some_and(|v| !v.is_null()))
                {
                    return Err(EventError::invalid(
                        "changes",
                        format!("`{field}` is masked, so `prev` and `next` must be null"),
                    ));
                }
                Change::masked()
            } else {
                let (Some(prev), Some(next)) = (prev, next) else {
                    return Err(EventError::invalid(
                        "changes",
                        format!("`{field}` must have both `prev` and `next`"),
                    ));
                };
                Change::new(prev, next)
            };
            changes.insert(field, change);
        }
        Ok(changes)
    }
}
