//! Sinks named in the config file (`[[sinks]]`), applied when an auditor
//! starts: each is checked by the same code as a definition sent to
//! `POST /api/sinks`, then created if no sink has its name, or given the file's
//! definition (keeping its cursor) if it differs. Sinks the file does not name,
//! such as those made through the API, are left as they are.
//!
//! A secret need not be written in the file: `secretEnv`, `tokenEnv` and
//! `apiKeyEnv` name the environment variable holding the webhook secret, the
//! Splunk token or the Datadog API key.

use auditlog_store::AuditStore;
use serde_json::Value;

use crate::SinkError;
use crate::definition::{SinkDefinition, SinkName};

/// The secret members a definition may take from the environment, each with
/// the member naming its variable.
const FROM_ENVIRONMENT: [(&str, &str); 3] = [
    ("secret", "secretEnv"),
    ("token", "tokenEnv"),
    ("apiKey", "apiKeyEnv"),
];

/// A sink from the config file, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfiguredSink {
    /// Its name.
    pub name: SinkName,
    /// Its definition, secrets read from the environment.
    pub definition: SinkDefinition,
    /// Whether a new sink starts after the events stored so far (`from = "now"`)
    /// rather than at the log's start.
    pub from_now: bool,
}

/// What applying one configured sink did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// No sink had its name: it was made.
    Created,
    /// A sink had its name and another definition: it has the file's now.
    Updated,
    /// The stored sink was already as the file says.
    Unchanged,
}

impl ConfiguredSink {
    /// The sink `table` describes (the file's `[[sinks]]` table as JSON: `name`,
    /// optionally `from`, and a definition as `POST /api/sinks` takes it), with
    /// the secrets it names read through `env`.
    pub fn parse(
        table: &Value,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ConfiguredSink, SinkError> {
        let mut definition = match table {
            Value::Object(map) => map.clone(),
            _ => return Err(SinkError::Invalid("a sink is a table".into())),
        };
        let name = match definition.remove("name") {
            Some(Value::String(name)) => SinkName::parse(&name)?,
            Some(_) => return Err(SinkError::Invalid("name: must be a string".into())),
            None => return Err(SinkError::Invalid("name: every sink needs one".into())),
        };
        let from_now = match definition.remove("from") {
            None => false,
            Some(Value::String(from)) if from == "start" => false,
            Some(Value::String(from)) if from == "now" => true,
            Some(other) => {
                return Err(SinkError::Invalid(format!(
                    "from: `start` or `now`, not {other}"
                )));
            }
        };
        for (member, variable_member) in FROM_ENVIRONMENT {
            let Some(variable) = definition.remove(variable_member) else {
                continue;
            };
            let Value::String(variable) = variable else {
                return Err(SinkError::Invalid(format!(
                    "{variable_member}: must be the name of an environment variable"
                )));
            };
            if definition.contains_key(member) {
                return Err(SinkError::Invalid(format!(
                    "{variable_member}: give `{member}` or `{variable_member}`, not both"
                )));
            }
            let value = env(&variable)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| {
                    SinkError::Invalid(format!(
                        "{variable_member}: the environment variable `{variable}` is not set"
                    ))
                })?;
            definition.insert(member.to_owned(), Value::String(value));
        }
        let definition = Value::Object(definition);
        // The API makes a secret up for a webhook given none; from a file that
        // would be a new secret at every start, which no receiver could follow.
        if definition.get("kind").and_then(Value::as_str) == Some("webhook")
            && definition.get("secret").is_none()
        {
            return Err(SinkError::Invalid(
                "secret: a webhook sink in the config file needs `secret` or `secretEnv`".into(),
            ));
        }
        Ok(ConfiguredSink {
            name,
            definition: SinkDefinition::parse(&definition)?,
            from_now,
        })
    }

    /// Creates this sink in `store`, or gives the stored one of its name this
    /// definition (its cursor kept) if it differs.
    pub async fn apply(&self, store: &dyn AuditStore) -> Result<Applied, SinkError> {
        let failed = |e: auditlog_store::StoreError| SinkError::Store(e.to_string());
        let stored = store
            .sinks()
            .await
            .map_err(failed)?
            .into_iter()
            .find(|record| record.name == self.name.as_str());
        let text = self.definition.to_json().to_string();
        match stored {
            None => {
                let cursor = if self.from_now {
                    store.last_seq().await.map_err(failed)?
                } else {
                    0
                };
                // Another auditor starting with the same file may have made it
                // just now: then it is there, as the file says.
                store
                    .create_sink(self.name.as_str(), &text, cursor)
                    .await
                    .map_err(failed)?;
                Ok(Applied::Created)
            }
            Some(record) => {
                let same = serde_json::from_str::<Value>(&record.definition)
                    .ok()
                    .and_then(|json| SinkDefinition::parse(&json).ok())
                    .is_some_and(|stored| stored == self.definition);
                if same {
                    return Ok(Applied::Unchanged);
                }
                store
                    .update_sink(self.name.as_str(), &text)
                    .await
                    .map_err(failed)?;
                Ok(Applied::Updated)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        (name == "HEC_TOKEN").then(|| "from-env".to_owned())
    }

    #[test]
    fn a_secret_comes_from_the_environment_variable_it_names() {
        let sink = ConfiguredSink::parse(
            &json!({"name": "hec", "kind": "splunk", "url": "http://h:8088",
                    "tokenEnv": "HEC_TOKEN", "from": "now"}),
            env,
        )
        .unwrap();

        assert_eq!(sink.name.as_str(), "hec");
        assert!(sink.from_now);
        assert_eq!(sink.definition.to_json()["token"], "from-env");
    }

    #[test]
    fn bad_configured_sinks_are_refused_naming_the_field() {
        for (table, says) in [
            (json!({"kind": "files", "directory": "/x"}), "name:"),
            (
                json!({"name": "Bad Name", "kind": "files", "directory": "/x"}),
                "a sink name",
            ),
            (
                json!({"name": "a", "kind": "splunk", "url": "http://h", "tokenEnv": "UNSET"}),
                "tokenEnv: the environment variable `UNSET` is not set",
            ),
            (
                json!({"name": "a", "kind": "splunk", "url": "http://h", "token": "t",
                       "tokenEnv": "HEC_TOKEN"}),
                "not both",
            ),
            (
                json!({"name": "a", "kind": "webhook", "url": "http://h"}),
                "secret:",
            ),
            (
                json!({"name": "a", "kind": "webhook", "url": "ftp://h",
                       "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYqr"}),
                "url:",
            ),
            (
                json!({"name": "a", "kind": "files", "directory": "/x", "from": "later"}),
                "from:",
            ),
        ] {
            let error = ConfiguredSink::parse(&table, env).unwrap_err().to_string();
            assert!(error.contains(says), "{table}: {error}");
        }
    }
}
