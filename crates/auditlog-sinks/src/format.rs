//! The bytes each kind of sink sends, as pure functions of a batch: the webhook
//! bodies and their Standard Webhooks signature, Splunk HEC's event objects,
//! Datadog's log array, and RFC 5424 syslog messages in RFC 6587 octet-counted
//! frames. No I/O here, so that every format is tested on its own.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::definition::{DatadogSink, SplunkSink, SyslogSink, WebhookFormat};
use auditlog_store::StoredEvent;

/// One event on its way out: the stored event's JSON with its `seq` and
/// `receivedAt` (exactly the `attributes` the query API answers), and what the
/// formats need beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The event's id, by which a receiver de-duplicates.
    pub id: uuid::Uuid,
    /// Its position in the log.
    pub seq: i64,
    /// The event's own timestamp, ms since the Unix epoch.
    pub timestamp: i64,
    /// When the auditor stored it, ms since the Unix epoch.
    pub received_at: i64,
    /// The event as JSON, one line.
    pub json: String,
}

impl Outgoing {
    /// The event `stored` as it goes out.
    pub fn from_stored(stored: &StoredEvent) -> Outgoing {
        Outgoing {
            id: stored.id,
            seq: stored.seq,
            timestamp: stored.timestamp,
            received_at: stored.received_at,
            json: auditlog_tlog::leaf_bytes(&stored.body, stored.seq, stored.received_at),
        }
    }
}

/// A webhook request's body and its `Content-Type`.
pub fn webhook_body(format: WebhookFormat, events: &[Outgoing]) -> (&'static str, Vec<u8>) {
    match format {
        WebhookFormat::Ndjson => ("application/x-ndjson", ndjson(events)),
        WebhookFormat::Jsonapi => {
            let mut body = Vec::with_capacity(events.iter().map(|e| e.json.len() + 80).sum());
            body.extend_from_slice(b"{\"data\":[");
            for (i, event) in events.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(b"{\"type\":\"data-events\",\"id\":\"");
                body.extend_from_slice(event.id.to_string().as_bytes());
                body.extend_from_slice(b"\",\"attributes\":");
                body.extend_from_slice(event.json.as_bytes());
                body.push(b'}');
            }
            body.extend_from_slice(b"]}");
            ("application/vnd.api+json", body)
        }
    }
}

/// One event's JSON per line.
pub fn ndjson(events: &[Outgoing]) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.json.len() + 1).sum());
    for event in events {
        body.extend_from_slice(event.json.as_bytes());
        body.push(b'\n');
    }
    body
}

/// The `webhook-signature` header of Standard Webhooks: `v1,` and the base64
/// HMAC-SHA256, under `key`, of `{id}.{timestamp}.{body}`. (HMAC takes a key of
/// any length; the error is the `hmac` crate's type for one it would refuse.)
pub fn webhook_signature(
    key: &[u8],
    id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> Result<String, hmac::digest::InvalidLength> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// One HEC event object.
#[derive(Serialize)]
struct HecEvent<'a> {
    /// Seconds since the Unix epoch, with milliseconds.
    time: f64,
    source: &'a str,
    sourcetype: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<&'a str>,
    event: &'a RawValue,
}

/// A Splunk HEC body: one event object per event, one after the other (HEC's
/// batch form), each with the event's own time.
pub fn splunk_body(sink: &SplunkSink, events: &[Outgoing]) -> Result<Vec<u8>, serde_json::Error> {
    let mut body = Vec::new();
    for event in events {
        let raw = RawValue::from_string(event.json.clone())?;
        serde_json::to_writer(
            &mut body,
            &HecEvent {
                time: event.timestamp as f64 / 1000.0,
                source: &sink.source,
                sourcetype: &sink.sourcetype,
                index: sink.index.as_deref(),
                event: &raw,
            },
        )?;
        body.push(b'\n');
    }
    Ok(body)
}

/// One Datadog log.
#[derive(Serialize)]
struct DatadogLog<'a> {
    ddsource: &'a str,
    service: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ddtags: Option<&'a str>,
    /// The event's JSON text: Datadog parses a JSON message into attributes.
    message: &'a str,
}

/// A Datadog logs intake body: a JSON array of logs.
pub fn datadog_body(sink: &DatadogSink, events: &[Outgoing]) -> Result<Vec<u8>, serde_json::Error> {
    let logs: Vec<DatadogLog<'_>> = events
        .iter()
        .map(|event| DatadogLog {
            ddsource: &sink.source,
            service: &sink.service,
            ddtags: sink.tags.as_deref(),
            message: &event.json,
        })
        .collect();
    serde_json::to_vec(&logs)
}

/// One RFC 5424 message in an RFC 6587 octet-counted frame:
/// `LEN SP <PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - MSG`, the event's
/// action as MSGID and its JSON as MSG.
pub fn syslog_frame(sink: &SyslogSink, event: &Outgoing, action: &str) -> Vec<u8> {
    let priority = u16::from(sink.facility) * 8 + u16::from(sink.severity);
    let message = format!(
        "<{priority}>1 {} {} {} - {} - {}",
        rfc3339_ms(event.timestamp),
        sink.hostname,
        sink.app_name,
        if action.is_empty() { "-" } else { action },
        event.json
    );
    let mut frame = format!("{} ", message.len()).into_bytes();
    frame.extend_from_slice(message.as_bytes());
    frame
}

/// `ms` since the Unix epoch as an RFC 3339 UTC time with milliseconds; the
/// epoch itself for a time out of range (an event's time is checked at intake).
fn rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use serde_json::{Value, json};

    fn event(seq: i64) -> Outgoing {
        Outgoing {
            id: uuid::Uuid::from_u128(seq as u128),
            seq,
            timestamp: 1_700_000_000_123,
            received_at: 1_700_000_000_200,
            json: format!(r#"{{"action":"viewed","seq":{seq}}}"#),
        }
    }

    #[test]
    fn the_signature_is_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (spec/standard-webhooks.md).
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let body = br#"{"test": 2432232314}"#;

        let signature =
            webhook_signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();

        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_json_api_body_lists_each_event_as_a_resource() {
        let (content_type, body) = webhook_body(WebhookFormat::Jsonapi, &[event(1), event(2)]);

        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(content_type, "application/vnd.api+json");
        assert_eq!(body["data"][1]["type"], "data-events");
        assert_eq!(body["data"][1]["id"], uuid::Uuid::from_u128(2).to_string());
        assert_eq!(body["data"][1]["attributes"]["seq"], 2);
    }

    #[test]
    fn a_splunk_body_has_one_event_object_per_event_with_its_time() {
        let sink = SplunkSink {
            url: "http://h".into(),
            token: "t".into(),
            source: "auditlog".into(),
            sourcetype: "_json".into(),
            index: Some("audit".into()),
            ca_cert: None,
        };

        let body = splunk_body(&sink, &[event(1), event(2)]).unwrap();

        let objects: Vec<Value> = serde_json::Deserializer::from_slice(&body)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(objects.len(), 2);
        assert_eq!(
            objects[0],
            json!({"time": 1_700_000_000.123, "source": "auditlog", "sourcetype": "_json",
                   "index": "audit", "event": {"action": "viewed", "seq": 1}})
        );
    }

    #[test]
    fn a_syslog_frame_counts_its_octets_and_carries_the_json() {
        let sink = SyslogSink {
            address: "h:1".into(),
            facility: 13,
            severity: 6,
            app_name: "auditlog".into(),
            hostname: "-".into(),
            tls: false,
            ca_cert: None,
        };

        let frame = String::from_utf8(syslog_frame(&sink, &event(7), "viewed")).unwrap();

        let (length, message) = frame.split_once(' ').unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), message.len());
        assert_eq!(
            message,
            r#"<110>1 2023-11-14T22:13:20.123Z - auditlog - viewed - {"action":"viewed","seq":7}"#
        );
    }
}
