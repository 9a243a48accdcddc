//! The JSON:API request document the auditor's write routes take:
//! `{"data": {"type": T, "id"?: …, "attributes": …}}`, nothing else, with the
//! checks every such route makes of its type and id.

use auditlog_http::ApiError;
use serde::Deserialize;

/// A request's document, its attributes of type `A`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Document<A> {
    data: Data<A>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Data<A> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    attributes: A,
}

impl<A> Document<A> {
    /// The id given (if any) and the attributes, once the type is `kind` and
    /// the id, if given, the path's `id`.
    pub(crate) fn into_parts(
        self,
        kind: &str,
        id: Option<&str>,
    ) -> Result<(Option<String>, A), ApiError> {
        if self.data.kind != kind {
            return Err(ApiError::bad_request(format!(
                "the resource type must be `{kind}`, not `{}`",
                self.data.kind
            )));
        }
        if let (Some(expected), Some(given)) = (id, self.data.id.as_deref())
            && expected != given
        {
            return Err(ApiError::bad_request(format!(
                "the body's id `{given}` is not the path's `{expected}`"
            )));
        }
        Ok((self.data.id, self.data.attributes))
    }

    /// The attributes, checked as by [`Document::into_parts`].
    pub(crate) fn attributes(self, kind: &str, id: Option<&str>) -> Result<A, ApiError> {
        Ok(self.into_parts(kind, id)?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(text: &str) -> Document<serde_json::Value> {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_type_and_the_id_must_be_the_routes() {
        let given = r#"{"data": {"type": "sinks", "id": "siem", "attributes": {"a": 1}}}"#;
        let (id, attributes) = document(given).into_parts("sinks", Some("siem")).unwrap();
        assert_eq!(
            (id.as_deref(), attributes["a"].as_i64()),
            (Some("siem"), Some(1))
        );
        assert!(document(given).into_parts("prunes", None).is_err());
        assert!(document(given).into_parts("sinks", Some("other")).is_err());
        let without_id = r#"{"data": {"type": "sinks", "attributes": {}}}"#;
        assert!(
            document(without_id)
                .attributes("sinks", Some("siem"))
                .is_ok()
        );
        let extra = r#"{"data": {"type": "sinks", "attributes": {}}, "meta": {}}"#;
        assert!(serde_json::from_str::<Document<serde_json::Value>>(extra).is_err());
    }
}
