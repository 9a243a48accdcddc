//! Delivering one batch to a sink's receiver: [`Destination`] holds what a kind
//! keeps between batches (an HTTP client, a syslog connection, the open file)
//! and [`Destination::deliver`] sends a batch once, answering what the receiver
//! said. Retrying is the caller's ([`crate::runner`]): a batch that fails here
//! is sent again, whole.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::definition::{SinkDefinition, SinkKind, webhook_key};
use crate::files::RotatedFiles;
use crate::format::{
    Outgoing, datadog_body, splunk_body, syslog_frame, webhook_body, webhook_signature,
};

/// How long one delivery may take before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Most of a refusing receiver's answer kept in the error.
const ANSWER_CHARS: usize = 300;

/// Why a batch was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver answered, but not with success.
    #[error("the receiver answered {status}: {answer}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        answer: String,
    },
    /// The receiver could not be reached, or the connection failed.
    #[error("the receiver could not be reached: {0}")]
    Unreachable(String),
    /// Writing locally failed (a files sink).
    #[error("writing failed: {0}")]
    Write(String),
    /// The batch could not be put in the sink's format.
    #[error("the batch could not be encoded: {0}")]
    Encode(String),
}

/// What the receiver said to a delivered batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status, for the HTTP kinds.
    pub status: Option<u16>,
    /// What was done or answered, for a person.
    pub detail: String,
}

/// A sink's receiver, ready to take batches.
pub struct Destination {
    definition: SinkDefinition,
    http: reqwest::Client,
    /// The open syslog connection, if any: kept between batches, dropped on error.
    syslog: Option<TcpStream>,
    /// The files sink's writer.
    files: Option<RotatedFiles>,
}

impl Destination {
    /// A destination for `definition`, sending HTTP through `http`.
    pub fn new(definition: SinkDefinition, http: reqwest::Client) -> Destination {
        let files = match &definition.kind {
            SinkKind::Files(files) => Some(RotatedFiles::new(files)),
            _ => None,
        };
        Destination {
            definition,
            http,
            syslog: None,
            files,
        }
    }

    /// The same destination writing a files sink's events to `test-…` files.
    pub fn for_tests(mut self) -> Destination {
        self.files = self.files.map(RotatedFiles::for_tests);
        self
    }

    /// Sends `events` (in log order) once.
    pub async fn deliver(&mut self, events: &[Outgoing]) -> Result<Answer, DeliveryError> {
        match tokio::time::timeout(DELIVERY_TIMEOUT, self.deliver_untimed(events)).await {
            Ok(answer) => answer,
            Err(_) => {
                // A half-written syslog frame must not be followed by the next one.
                self.syslog = None;
                Err(DeliveryError::Unreachable(format!(
                    "no answer within {} s",
                    DELIVERY_TIMEOUT.as_secs()
                )))
            }
        }
    }

    async fn deliver_untimed(&mut self, events: &[Outgoing]) -> Result<Answer, DeliveryError> {
        let encode = |e: serde_json::Error| DeliveryError::Encode(e.to_string());
        match &self.definition.kind {
            SinkKind::Webhook(webhook) => {
                let key = webhook_key(&webhook.secret)
                    .map_err(|e| DeliveryError::Encode(e.to_string()))?;
                let (content_type, body) = webhook_body(webhook.format, events);
                // One id per batch, the same on every retry of it (the batch is
                // kept whole between attempts), so that a receiver can drop a
                // repeated message.
                let id = match (events.first(), events.last()) {
                    (Some(first), Some(last)) => format!("msg_{}_{}", first.seq, last.seq),
                    _ => "msg_empty".to_owned(),
                };
                let timestamp = auditlog_event::now_ms() / 1000;
                let signature = webhook_signature(&key, &id, timestamp, &body)
                    .map_err(|e| DeliveryError::Encode(e.to_string()))?;
                let request = self
                    .http
                    .post(&webhook.url)
                    .header("content-type", content_type)
                    .header("webhook-id", id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", signature)
                    .body(body);
                send(request).await
            }
            SinkKind::Splunk(splunk) => {
                let body = splunk_body(splunk, events).map_err(encode)?;
                let url = format!(
                    "{}/services/collector/event",
                    splunk.url.trim_end_matches('/')
                );
                let request = self
                    .http
                    .post(url)
                    .header("authorization", format!("Splunk {}", splunk.token))
                    .header("content-type", "application/json")
                    .body(body);
                send(request).await
            }
            SinkKind::Datadog(datadog) => {
                let body = datadog_body(datadog, events).map_err(encode)?;
                let request = self
                    .http
                    .post(&datadog.url)
                    .header("dd-api-key", &datadog.api_key)
                    .header("content-type", "application/json")
                    .body(body);
                send(request).await
            }
            SinkKind::Syslog(syslog) => {
                let mut frames = Vec::new();
                for event in events {
                    frames.extend(syslog_frame(syslog, event, &action_of(&event.json)));
                }
                let address = syslog.address.clone();
                let result = self.write_syslog(&address, &frames).await;
                if result.is_err() {
                    self.syslog = None;
                }
                result?;
                Ok(Answer {
                    status: None,
                    detail: format!("{} messages written to {address}", events.len()),
                })
            }
            SinkKind::Files(_) => {
                let files = self
                    .files
                    .as_mut()
                    .ok_or_else(|| DeliveryError::Write("no files writer".into()))?;
                let path = files
                    .append(events)
                    .await
                    .map_err(|e| DeliveryError::Write(e.to_string()))?;
                Ok(Answer {
                    status: None,
                    detail: format!("{} events written to {}", events.len(), path.display()),
                })
            }
        }
    }

    /// Writes `frames` on the kept connection, connecting first if there is none.
    /// TCP syslog has no acknowledgement: written and flushed is all a sender
    /// can know.
    async fn write_syslog(&mut self, address: &str, frames: &[u8]) -> Result<(), DeliveryError> {
        let unreachable = |e: std::io::Error| DeliveryError::Unreachable(format!("{address}: {e}"));
        if self.syslog.is_none() {
            let stream = TcpStream::connect(address).await.map_err(unreachable)?;
            stream.set_nodelay(true).map_err(unreachable)?;
            self.syslog = Some(stream);
        }
        if let Some(stream) = self.syslog.as_mut() {
            stream.write_all(frames).await.map_err(unreachable)?;
            stream.flush().await.map_err(unreachable)?;
        }
        Ok(())
    }

    /// Closes what is open (the files sink's current file is closed and kept).
    pub async fn close(&mut self) {
        self.syslog = None;
        if let Some(files) = self.files.as_mut()
            && let Err(error) = files.close().await
        {
            tracing::warn!(%error, "closing the sink's current file failed");
        }
    }
}

/// Sends an HTTP request: a 2xx answer is delivered, anything else is not.
async fn send(request: reqwest::RequestBuilder) -> Result<Answer, DeliveryError> {
    let response = request
        .send()
        .await
        .map_err(|e| DeliveryError::Unreachable(error_chain(&e)))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let answer: String = text.chars().take(ANSWER_CHARS).collect();
    if (200..300).contains(&status) {
        Ok(Answer {
            status: Some(status),
            detail: answer,
        })
    } else {
        Err(DeliveryError::Refused { status, answer })
    }
}

/// An error with its causes, which reqwest keeps apart ("error sending request"
/// alone says nothing).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The `action` of an event's JSON, for the syslog MSGID; empty if it has none.
fn action_of(json: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Action {
        action: String,
    }
    serde_json::from_str::<Action>(json)
        .map(|a| a.action)
        .unwrap_or_default()
}
