//! Why an event was refused, naming the field at fault.

use std::borrow::Cow;

/// A reason an event breaks the contract. `Display` reads as one sentence a
/// producer can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("`{field}` is required")]
    Missing { field: &'static str },
    #[error("`{field}` {reason}")]
    Invalid {
        field: Cow<'static, str>,
        reason: Cow<'static, str>,
    },
    #[error("the event is {bytes} bytes; at most {max} are accepted", max = crate::MAX_EVENT_BYTES)]
    TooLarge { bytes: usize },
    #[error("the event is not a JSON object of the data-event shape: {0}")]
    Malformed(String),
}

impl EventError {
    pub(crate) fn missing(field: &'static str) -> Self {
        EventError::Missing { field }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        EventError::Invalid {
            field: Cow::Borrowed(field),
            reason: reason.into(),
        }
    }

    /// Maps a decoding error, naming the field when serde names one (unknown fields).
    pub(crate) fn from_json(err: serde_json::Error) -> Self {
        let text = err.to_string();
        if let Some(rest) = text.strip_prefix("unknown field `")
            && let Some(end) = rest.find('`')
        {
            return EventError::Invalid {
                field: Cow::Owned(rest[..end].to_owned()),
                reason: Cow::Borrowed("is not a data-event field"),
            };
        }
        EventError::Malformed(text)
    }

    /// The wire name of the offending field, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            EventError::Missing { field } => Some(field),
            EventError::Invalid { field, .. } => Some(field),
            EventError::TooLarge { .. } | EventError::Malformed(_) => None,
        }
    }
}
