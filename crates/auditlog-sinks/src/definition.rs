//! What a sink is: its name, its kind with where and how it delivers, which
//! events it takes, and how it batches and when it counts as failing. Parsed
//! from JSON (the API's body, the store's row) and checked once, so that a
//! running sink never meets a definition it cannot use.

use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::SinkError;

/// Longest sink name.
pub const MAX_NAME_CHARS: usize = 64;

/// Largest batch a sink may ask for (Datadog's intake takes at most 1 000 logs
/// per request).
pub const MAX_BATCH: u32 = 1_000;

/// What secrets look like in answers: a definition read back never shows them.
pub const HIDDEN: &str = "***";

/// A sink's name: 1 to [`MAX_NAME_CHARS`] of `a-z`, `0-9`, `-`, `_`, so that it
/// is safe in a URL path, a metric label and a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SinkName(String);

impl SinkName {
    /// The name, if `text` is one.
    pub fn parse(text: &str) -> Result<SinkName, SinkError> {
        let fits = !text.is_empty()
            && text.chars().count() <= MAX_NAME_CHARS
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if fits {
            Ok(SinkName(text.to_owned()))
        } else {
            Err(SinkError::Invalid(format!(
                "a sink name is 1 to {MAX_NAME_CHARS} of a-z, 0-9, - and _, not `{text}`"
            )))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SinkName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sink's definition, as given to `POST /api/sinks` and kept in the store.
/// Unknown members are refused by the kind's own struct (serde cannot refuse
/// them here, beside a flattened member).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkDefinition {
    /// Where and how events go.
    #[serde(flatten)]
    pub kind: SinkKind,
    /// Which events go; an empty filter takes every event.
    #[serde(default)]
    pub filter: SinkFilter,
    /// Events per delivery, at most [`MAX_BATCH`].
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// How long deliveries may keep failing before the sink is marked failing
    /// (seconds). It keeps retrying and keeps its place either way.
    #[serde(default = "default_failing_after")]
    pub failing_after_secs: u64,
    /// Whether delivery is paused (the cursor stays where it is).
    #[serde(default)]
    pub paused: bool,
}

fn default_batch_size() -> u32 {
    500
}

fn default_failing_after() -> u64 {
    300
}

/// Which events a sink takes: each list, when not empty, must contain the event's
/// value; the lists combine with "and".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkFilter {
    /// `viewed`, `created`, `changed`, `deleted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// Target types, e.g. `users`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_types: Vec<String>,
    /// Event names, e.g. `user.tos_accepted`; an event without a name never
    /// matches a non-empty list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_names: Vec<String>,
    /// The one tenant whose events the sink takes (events naming none are the
    /// default tenant's); `None` takes every tenant's, which only operators set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

/// The fields of an event a filter looks at.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filtered<'a> {
    #[serde(borrow)]
    action: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    target_type: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    event_name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    tenant_id: Option<std::borrow::Cow<'a, str>>,
}

impl SinkFilter {
    /// Whether the event whose stored JSON is `body` passes. A body that is not
    /// an event (the store never holds one) does not.
    pub fn matches(&self, body: &str) -> bool {
        if self.actions.is_empty()
            && self.target_types.is_empty()
            && self.event_names.is_empty()
            && self.tenant_id.is_none()
        {
            return true;
        }
        let Ok(event) = serde_json::from_str::<Filtered<'_>>(body) else {
            return false;
        };
        let listed =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        let tenant = event
            .tenant_id
            .as_deref()
            .unwrap_or(auditlog_event::DEFAULT_TENANT);
        self.tenant_id.as_deref().is_none_or(|own| own == tenant)
            && listed(&self.actions, &event.action)
            && listed(&self.target_types, &event.target_type)
            && (self.event_names.is_empty()
                || event
                    .event_name
                    .as_deref()
                    .is_some_and(|name| self.event_names.iter().any(|v| v == name)))
    }
}

/// Where a sink delivers, and in what form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SinkKind {
    /// HTTP POST of batches signed per Standard Webhooks.
    Webhook(WebhookSink),
    /// RFC 5424 messages over TCP, octet-counted (RFC 6587).
    Syslog(SyslogSink),
    /// Splunk's HTTP Event Collector.
    Splunk(SplunkSink),
    /// Datadog's logs intake.
    Datadog(DatadogSink),
    /// NDJSON files in a directory, rotated by size and time.
    Files(FilesSink),
}

impl SinkKind {
    /// The kind's name, as in the JSON (`webhook`, `syslog`, …).
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::Webhook(_) => "webhook",
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Splunk(_) => "splunk",
            SinkKind::Datadog(_) => "datadog",
            SinkKind::Files(_) => "files",
        }
    }
}

/// A webhook receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSink {
    /// The receiver's `http://` or `https://` URL.
    pub url: String,
    /// The signing secret, `whsec_<base64>`; made up when the sink is created
    /// without one (and shown once, in the answer to that request).
    #[serde(default)]
    pub secret: String,
    /// The body of each request.
    #[serde(default)]
    pub format: WebhookFormat,
    /// The CA certificate to trust for an `https://` receiver with a private
    /// CA, instead of the system's roots: PEM text, or the path of a PEM file on
    /// the auditor's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

/// The body of a webhook request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// A JSON:API document, `{"data":[{"type":"data-events","id":…,"attributes":…}]}`.
    #[default]
    Jsonapi,
    /// One event's JSON per line.
    Ndjson,
}

/// A syslog receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyslogSink {
    /// `HOST:PORT` of a TCP listener taking octet-counted frames.
    pub address: String,
    /// The facility, 0–23 (default 13, "log audit").
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// The severity, 0–7 (default 6, informational).
    #[serde(default = "default_severity")]
    pub severity: u8,
    /// APP-NAME of each message.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// HOSTNAME of each message; `-` (none) by default.
    #[serde(default = "default_nil")]
    pub hostname: String,
    /// Whether to speak TLS (RFC 5425) to the receiver, verifying its
    /// certificate for the address's host.
    #[serde(default)]
    pub tls: bool,
    /// With `tls`, the CA certificate to trust instead of the system's roots:
    /// PEM text, or the path of a PEM file on the auditor's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

fn default_facility() -> u8 {
    13
}

fn default_severity() -> u8 {
    6
}

fn default_app_name() -> String {
    "auditlog".to_owned()
}

fn default_nil() -> String {
    "-".to_owned()
}

/// A Splunk HTTP Event Collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SplunkSink {
    /// The collector's base URL (`https://splunk:8088`); events go to
    /// `/services/collector/event` under it.
    pub url: String,
    /// The HEC token.
    pub token: String,
    /// `source` of each event.
    #[serde(default = "default_app_name")]
    pub source: String,
    /// `sourcetype` of each event.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// `index` of each event, if not the token's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The CA certificate to trust for an `https://` receiver with a private
    /// CA, instead of the system's roots: PEM text, or the path of a PEM file on
    /// the auditor's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

fn default_sourcetype() -> String {
    "_json".to_owned()
}

/// Datadog's logs intake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatadogSink {
    /// The intake URL, e.g. a local agent or proxy's `http://…/api/v2/logs`.
    pub url: String,
    /// The API key, sent as `DD-API-KEY`.
    pub api_key: String,
    /// `service` of each log.
    #[serde(default = "default_app_name")]
    pub service: String,
    /// `ddsource` of each log.
    #[serde(default = "default_app_name")]
    pub source: String,
    /// `ddtags` of each log, e.g. `env:prod,team:security`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    /// The CA certificate to trust for an `https://` receiver with a private
    /// CA, instead of the system's roots: PEM text, or the path of a PEM file on
    /// the auditor's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

/// NDJSON files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilesSink {
    /// The directory the files are written in (made if missing).
    pub directory: String,
    /// A file is closed once it holds this many bytes (at least one batch each).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// A file is closed once it is this old (seconds), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
}

fn default_max_bytes() -> u64 {
    64 * 1024 * 1024
}

impl SinkDefinition {
    /// What the sink reads or writes on the auditor's own machine, if anything:
    /// a files sink's directory, or a `caCert` given as a file path. Only the
    /// deployment's operators may point a sink there.
    pub fn local_path(&self) -> Option<&str> {
        let ca_cert = match &self.kind {
            SinkKind::Files(files) => return Some(files.directory.as_str()),
            SinkKind::Webhook(w) => w.ca_cert.as_deref(),
            SinkKind::Syslog(s) => s.ca_cert.as_deref(),
            SinkKind::Splunk(s) => s.ca_cert.as_deref(),
            SinkKind::Datadog(d) => d.ca_cert.as_deref(),
        };
        ca_cert.filter(|ca_cert| crate::tls::names_a_file(ca_cert))
    }

    /// The definition `json` describes, checked; a webhook without a secret gets a
    /// new one.
    pub fn parse(json: &Value) -> Result<SinkDefinition, SinkError> {
        let mut definition: SinkDefinition = serde_json::from_value(json.clone())
            .map_err(|e| SinkError::Invalid(format!("not a sink definition: {e}")))?;
        if let SinkKind::Webhook(webhook) = &mut definition.kind
            && webhook.secret.is_empty()
        {
            webhook.secret = new_webhook_secret()?;
        }
        definition.check()?;
        Ok(definition)
    }

    /// Checks what serde cannot: ranges, URLs, the secret's form.
    fn check(&self) -> Result<(), SinkError> {
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return Err(SinkError::Invalid(format!(
                "batchSize must be 1 to {MAX_BATCH}, not {}",
                self.batch_size
            )));
        }
        if self.failing_after_secs == 0 {
            return Err(SinkError::Invalid(
                "failingAfterSecs must be at least 1".into(),
            ));
        }
        for action in &self.filter.actions {
            if auditlog_event::Action::parse(action).is_err() {
                return Err(SinkError::Invalid(format!(
                    "filter.actions: `{action}` is not viewed, created, changed or deleted"
                )));
            }
        }
        match &self.kind {
            SinkKind::Webhook(webhook) => {
                check_http_url(&webhook.url, webhook.ca_cert.as_deref())?;
                webhook_key(&webhook.secret)?;
            }
            SinkKind::Syslog(syslog) => {
                if syslog.facility > 23 || syslog.severity > 7 {
                    return Err(SinkError::Invalid(
                        "syslog facility is 0 to 23 and severity 0 to 7".into(),
                    ));
                }
                if syslog
                    .address
                    .rsplit_once(':')
                    .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
                {
                    return Err(SinkError::Invalid(format!(
                        "syslog address must be HOST:PORT, not `{}`",
                        syslog.address
                    )));
                }
                match (&syslog.ca_cert, syslog.tls) {
                    (Some(ca_cert), true) => {
                        crate::tls::ca_certificates(ca_cert)?;
                    }
                    (Some(_), false) => {
                        return Err(SinkError::Invalid(
                            "caCert: a CA certificate is for a syslog sink with `tls: true`".into(),
                        ));
                    }
                    (None, _) => {}
                }
                for (field, value) in [
                    ("appName", &syslog.app_name),
                    ("hostname", &syslog.hostname),
                ] {
                    // RFC 5424: PRINTUSASCII, no spaces, bounded length.
                    if value.is_empty()
                        || value.len() > 48
                        || !value.bytes().all(|b| (33..=126).contains(&b))
                    {
                        return Err(SinkError::Invalid(format!(
                            "syslog {field} must be 1 to 48 printable ASCII characters without spaces"
                        )));
                    }
                }
            }
            SinkKind::Splunk(splunk) => {
                check_http_url(&splunk.url, splunk.ca_cert.as_deref())?;
                if splunk.token.is_empty() {
                    return Err(SinkError::Invalid(
                        "a Splunk sink needs its HEC token".into(),
                    ));
                }
            }
            SinkKind::Datadog(datadog) => {
                check_http_url(&datadog.url, datadog.ca_cert.as_deref())?;
                if datadog.api_key.is_empty() {
                    return Err(SinkError::Invalid(
                        "a Datadog sink needs its API key".into(),
                    ));
                }
            }
            SinkKind::Files(files) => {
                if files.directory.is_empty() {
                    return Err(SinkError::Invalid(
                        "a files sink needs its directory".into(),
                    ));
                }
                if files.max_bytes == 0 || files.max_age_secs == Some(0) {
                    return Err(SinkError::Invalid(
                        "maxBytes and maxAgeSecs must be positive".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The definition as JSON, secrets included: what the store keeps.
    pub fn to_json(&self) -> Value {
        // A struct of strings, numbers and lists always serialises.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The definition as JSON with its secrets replaced by [`HIDDEN`]: what
    /// answers show.
    pub fn to_json_hidden(&self) -> Value {
        let mut shown = self.clone();
        match &mut shown.kind {
            SinkKind::Webhook(webhook) => webhook.secret = HIDDEN.to_owned(),
            SinkKind::Splunk(splunk) => splunk.token = HIDDEN.to_owned(),
            SinkKind::Datadog(datadog) => datadog.api_key = HIDDEN.to_owned(),
            SinkKind::Syslog(_) | SinkKind::Files(_) => {}
        }
        shown.to_json()
    }

    /// This definition changed by `patch`, a JSON merge patch (RFC 7396): members
    /// replace, `null` removes (back to the default), objects merge. The kind
    /// cannot change; a secret given as [`HIDDEN`] is kept as it was.
    pub fn patched(&self, patch: &Value) -> Result<SinkDefinition, SinkError> {
        if patch
            .get("kind")
            .is_some_and(|kind| kind.as_str() != Some(self.kind.name()))
        {
            return Err(SinkError::Invalid(
                "a sink's kind cannot change: remove it and add a new one".into(),
            ));
        }
        let mut json = self.to_json();
        merge_patch(&mut json, patch);
        for secret in ["secret", "token", "apiKey"] {
            if json.get(secret).and_then(Value::as_str) == Some(HIDDEN)
                && let Some(old) = self.to_json().get(secret)
            {
                json[secret] = old.clone();
            }
        }
        SinkDefinition::parse(&json)
    }

    /// [`SinkDefinition::failing_after_secs`] as a duration.
    pub fn failing_after(&self) -> Duration {
        Duration::from_secs(self.failing_after_secs)
    }
}

/// RFC 7396 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// An `http://` or `https://` URL; a CA certificate only with `https://`, and
/// one that holds a certificate.
fn check_http_url(url: &str, ca_cert: Option<&str>) -> Result<(), SinkError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| SinkError::Invalid(format!("url: `{url}` is not a URL: {e}")))?;
    match (parsed.scheme(), ca_cert) {
        ("https", Some(ca_cert)) => crate::tls::ca_certificates(ca_cert).map(drop),
        ("http", Some(_)) => Err(SinkError::Invalid(format!(
            "caCert: `{url}` is plain http; a CA certificate is for an https receiver"
        ))),
        ("http" | "https", None) => Ok(()),
        (other, _) => Err(SinkError::Invalid(format!(
            "url: `{url}`: the scheme must be http or https, not {other}"
        ))),
    }
}

/// The prefix of a Standard Webhooks secret.
const WHSEC: &str = "whsec_";

/// The HMAC key a `whsec_<base64>` secret names.
pub fn webhook_key(secret: &str) -> Result<Vec<u8>, SinkError> {
    let encoded = secret.strip_prefix(WHSEC).ok_or_else(|| {
        SinkError::Invalid("a webhook secret is `whsec_` followed by base64".into())
    })?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| SinkError::Invalid(format!("the webhook secret's base64 is bad: {e}")))?;
    if key.len() < 24 || key.len() > 64 {
        return Err(SinkError::Invalid(
            "a webhook secret holds 24 to 64 bytes".into(),
        ));
    }
    Ok(key)
}

/// A new random secret, 32 bytes, as `whsec_<base64>`.
pub fn new_webhook_secret() -> Result<String, SinkError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| SinkError::Invalid(format!("no randomness for a secret: {e}")))?;
    Ok(format!(
        "{WHSEC}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use serde_json::json;

    #[test]
    fn a_webhook_without_a_secret_gets_a_whsec_one() {
        let definition =
            SinkDefinition::parse(&json!({"kind": "webhook", "url": "http://127.0.0.1:9/h"}))
                .unwrap();

        let SinkKind::Webhook(webhook) = &definition.kind else {
            panic!("not a webhook: {definition:?}");
        };
        assert!(webhook.secret.starts_with("whsec_"));
        assert_eq!(webhook_key(&webhook.secret).unwrap().len(), 32);
        assert_eq!(definition.batch_size, 500);
    }

    #[test]
    fn secrets_are_hidden_in_answers_and_kept_by_a_patch_that_shows_them_hidden() {
        let definition = SinkDefinition::parse(
            &json!({"kind": "splunk", "url": "http://h:8088", "token": "abc"}),
        )
        .unwrap();

        let shown = definition.to_json_hidden();
        let patched = definition
            .patched(&json!({"token": HIDDEN, "sourcetype": "audit"}))
            .unwrap();

        assert_eq!(shown["token"], HIDDEN);
        let SinkKind::Splunk(splunk) = &patched.kind else {
            panic!("not splunk");
        };
        assert_eq!(splunk.token, "abc");
        assert_eq!(splunk.sourcetype, "audit");
    }

    #[test]
    fn a_patch_cannot_change_the_kind() {
        let definition =
            SinkDefinition::parse(&json!({"kind": "files", "directory": "/tmp/x"})).unwrap();

        let error = definition
            .patched(&json!({"kind": "syslog", "address": "h:514"}))
            .unwrap_err();

        assert!(error.to_string().contains("kind"), "{error}");
    }

    #[test]
    fn bad_definitions_are_refused_with_the_reason() {
        for (json, says) in [
            (json!({"kind": "webhook", "url": "ftp://x"}), "scheme"),
            (
                json!({"kind": "webhook", "url": "http://x", "caCert": "/etc/hostname"}),
                "plain http",
            ),
            (
                json!({"kind": "splunk", "url": "https://x", "token": "t", "caCert": "/nonexistent"}),
                "cannot read",
            ),
            (
                json!({"kind": "syslog", "address": "h:1", "caCert": "/etc/hostname"}),
                "tls: true",
            ),
            (
                json!({"kind": "webhook", "url": "http://x", "secret": "abc"}),
                "whsec_",
            ),
            (json!({"kind": "syslog", "address": "nohost"}), "HOST:PORT"),
            (
                json!({"kind": "syslog", "address": "h:1", "facility": 24}),
                "facility",
            ),
            (
                json!({"kind": "files", "directory": "/x", "batchSize": 0}),
                "batchSize",
            ),
            (
                json!({"kind": "files", "directory": "/x", "filter": {"actions": ["ate"]}}),
                "ate",
            ),
            (json!({"kind": "carrier-pigeon"}), "not a sink definition"),
            (
                json!({"kind": "files", "directory": "/x", "maxBytez": 1}),
                "maxBytez",
            ),
        ] {
            let error = SinkDefinition::parse(&json).unwrap_err().to_string();
            assert!(error.contains(says), "{json}: {error}");
        }
    }

    #[test]
    fn a_filter_matches_only_listed_values_and_an_empty_one_everything() {
        let event =
            r#"{"action":"changed","targetType":"users","targetId":1,"eventName":"user.renamed"}"#;
        let unnamed = r#"{"action":"changed","targetType":"users","targetId":1}"#;
        let by_action = SinkFilter {
            actions: vec!["changed".into()],
            ..SinkFilter::default()
        };
        let by_type = SinkFilter {
            target_types: vec!["notes".into()],
            ..SinkFilter::default()
        };
        let by_name = SinkFilter {
            event_names: vec!["user.renamed".into()],
            ..SinkFilter::default()
        };

        assert!(SinkFilter::default().matches(event));
        assert!(by_action.matches(event));
        assert!(!by_type.matches(event));
        assert!(by_name.matches(event));
        assert!(!by_name.matches(unnamed));
    }

    #[test]
    fn a_tenants_sink_takes_only_that_tenants_events() {
        let acme = r#"{"action":"viewed","targetType":"users","tenantId":"acme"}"#;
        let default = r#"{"action":"viewed","targetType":"users"}"#;
        let for_tenant = |tenant: &str| SinkFilter {
            tenant_id: Some(tenant.into()),
            ..SinkFilter::default()
        };
        assert!(for_tenant("acme").matches(acme));
        assert!(!for_tenant("acme").matches(default));
        assert!(for_tenant(auditlog_event::DEFAULT_TENANT).matches(default));
        assert!(!for_tenant(auditlog_event::DEFAULT_TENANT).matches(acme));
        assert!(
            SinkFilter::default().matches(acme),
            "an operator's sink takes all"
        );
    }

    #[test]
    fn names_are_short_lowercase_words() {
        assert!(SinkName::parse("siem-1_a").is_ok());
        for bad in ["", "Upper", "a b", "../x", &"x".repeat(65)] {
            assert!(SinkName::parse(bad).is_err(), "{bad}");
        }
    }
}
