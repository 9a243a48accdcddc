//! Tenants: the customers one deployment keeps separate logs for. A tenant is
//! named by a short id that goes into URLs, tokens and query filters unescaped,
//! so it is restricted to letters, digits, `.`, `_` and `-`.

use serde_json::Value;

use crate::EventError;

/// The tenant of every event that names none (the prototype's format) and of
/// every principal whose token names none.
pub const DEFAULT_TENANT: &str = "default";

/// Longest tenant id, in characters.
pub const MAX_TENANT_CHARS: usize = 64;

/// Reads a tenant id from its text, naming `field` when it is not one.
pub fn parse_tenant(field: &'static str, text: &str) -> Result<String, EventError> {
    if text.is_empty() || text.len() > MAX_TENANT_CHARS {
        return Err(EventError::invalid(field, "must be 1 to 64 characters"));
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(EventError::invalid(
            field,
            "may hold only letters, digits, `.`, `_` and `-`",
        ));
    }
    Ok(text.to_owned())
}

pub(crate) fn parse(field: &'static str, value: Value) -> Result<String, EventError> {
    match value {
        Value::String(text) => parse_tenant(field, &text),
        _ => Err(EventError::invalid(field, "must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_id_is_short_and_plain() {
        assert_eq!(
            parse_tenant("tenantId", "acme-1.eu_west").unwrap(),
            "acme-1.eu_west"
        );
        for bad in ["", "a b", "a/b", "ünï", &"t".repeat(65)] {
            let err = parse_tenant("tenantId", bad).unwrap_err();
            assert_eq!(err.field(), Some("tenantId"), "{bad:?}");
        }
    }

    #[test]
    fn an_event_without_a_tenant_belongs_to_the_default_one() {
        let plain = crate::DataEvent::parse_json(
            r#"{"action":"viewed","actorType":"users","actorId":1,"targetType":"users","targetId":2}"#,
            1,
        )
        .unwrap();
        assert_eq!(plain.tenant(), DEFAULT_TENANT);
        let acme = crate::DataEvent::parse_json(
            r#"{"action":"viewed","actorType":"users","actorId":1,"targetType":"users","targetId":2,"tenantId":"acme"}"#,
            1,
        )
        .unwrap();
        assert_eq!(acme.tenant(), "acme");
        let mut moved = plain.clone();
        moved.set_tenant("acme");
        assert_eq!(moved.tenant_id.as_deref(), Some("acme"));
        moved.set_tenant(DEFAULT_TENANT);
        assert_eq!(
            moved.tenant_id, None,
            "the default tenant is named by leaving it out"
        );
        assert!(acme.to_json().contains(r#""tenantId":"acme""#));
        let bad = crate::DataEvent::parse_json(
            r#"{"action":"viewed","actorType":"users","actorId":1,"targetType":"users","targetId":2,"tenantId":7}"#,
            1,
        );
        assert_eq!(bad.unwrap_err().field(), Some("tenantId"));
    }
}
