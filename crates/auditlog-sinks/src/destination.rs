//! Delivering one batch to a sink's receiver: [`Destination`] holds what a kind
//! keeps between batches (an HTTP client, a syslog connection, the open file)
//! and [`Destination::deliver`] sends a batch once, answering what the receiver
//! said. Retrying is the caller's ([`crate::runner`]): a batch that fails here
//! is sent again, whole.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::definition::{SinkDefinition, SinkKind, SyslogSink, webhook_key};
use crate::files::RotatedFiles;
use crate::format::{
    Outgoing, datadog_body, splunk_body, syslog_frame, webhook_body, webhook_signature,
};
use crate::tls::HttpClient;

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
    /// The sink's TLS settings cannot be used (e.g. its CA file went away).
    #[error("TLS cannot be set up: {0}")]
    Tls(String),
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

/// A syslog connection, plain TCP or TLS.
trait SyslogStream: AsyncWrite + Unpin + Send {}

impl<T: AsyncWrite + Unpin + Send> SyslogStream for T {}

/// A sink's receiver, ready to take batches.
pub struct Destination {
    definition: SinkDefinition,
    /// The HTTP client: the shared one, or, for a receiver behind a private CA,
    /// one trusting that CA, made at the first delivery (so that a CA file
    /// fixed after a failure is read again on the next attempt).
    http: Option<HttpClient>,
    /// The open syslog connection, if any: kept between batches, dropped on error.
    syslog: Option<Box<dyn SyslogStream>>,
    /// The files sink's writer.
    files: Option<RotatedFiles>,
}

impl Destination {
    /// A destination for `definition`, sending HTTP through `http`.
    pub fn new(definition: SinkDefinition, http: HttpClient) -> Destination {
        let files = match &definition.kind {
            SinkKind::Files(files) => Some(RotatedFiles::new(files)),
            _ => None,
        };
        let own_trust = match &definition.kind {
            SinkKind::Webhook(w) => w.ca_cert.is_some(),
            SinkKind::Splunk(s) => s.ca_cert.is_some(),
            SinkKind::Datadog(d) => d.ca_cert.is_some(),
            SinkKind::Syslog(_) | SinkKind::Files(_) => false,
        };
        Destination {
            definition,
            http: (!own_trust).then_some(http),
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

    /// The HTTP client for this sink's receiver, made now if it has its own.
    fn http(&mut self) -> Result<HttpClient, DeliveryError> {
        if let Some(http) = &self.http {
            return Ok(http.clone());
        }
        let ca_cert = match &self.definition.kind {
            SinkKind::Webhook(w) => w.ca_cert.as_deref(),
            SinkKind::Splunk(s) => s.ca_cert.as_deref(),
            SinkKind::Datadog(d) => d.ca_cert.as_deref(),
            SinkKind::Syslog(_) | SinkKind::Files(_) => None,
        };
        let http = HttpClient::new(ca_cert).map_err(|e| DeliveryError::Tls(e.to_string()))?;
        self.http = Some(http.clone());
        Ok(http)
    }

    async fn deliver_untimed(&mut self, events: &[Outgoing]) -> Result<Answer, DeliveryError> {
        let encode = |e: serde_json::Error| DeliveryError::Encode(e.to_string());
        let speaks_http = matches!(
            self.definition.kind,
            SinkKind::Webhook(_) | SinkKind::Splunk(_) | SinkKind::Datadog(_)
        );
        let http = if speaks_http {
            Some(self.http()?)
        } else {
            None
        };
        let http = http.ok_or_else(|| DeliveryError::Encode("no HTTP client".into()));
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
                let timestamp = timestamp.to_string();
                let headers = [
                    ("content-type", content_type),
                    ("webhook-id", id.as_str()),
                    ("webhook-timestamp", timestamp.as_str()),
                    ("webhook-signature", signature.as_str()),
                ];
                send(&http?, &webhook.url, &headers, body).await
            }
            SinkKind::Splunk(splunk) => {
                let body = splunk_body(splunk, events).map_err(encode)?;
                let url = format!(
                    "{}/services/collector/event",
                    splunk.url.trim_end_matches('/')
                );
                let authorization = format!("Splunk {}", splunk.token);
                let headers = [
                    ("authorization", authorization.as_str()),
                    ("content-type", "application/json"),
                ];
                send(&http?, &url, &headers, body).await
            }
            SinkKind::Datadog(datadog) => {
                let body = datadog_body(datadog, events).map_err(encode)?;
                let headers = [
                    ("dd-api-key", datadog.api_key.as_str()),
                    ("content-type", "application/json"),
                ];
                send(&http?, &datadog.url, &headers, body).await
            }
            SinkKind::Syslog(syslog) => {
                let mut frames = Vec::new();
                for event in events {
                    frames.extend(syslog_frame(syslog, event, &action_of(&event.json)));
                }
                let syslog = syslog.clone();
                let address = syslog.address.clone();
                let result = self.write_syslog(&syslog, &frames).await;
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
    async fn write_syslog(
        &mut self,
        syslog: &SyslogSink,
        frames: &[u8],
    ) -> Result<(), DeliveryError> {
        let address = syslog.address.as_str();
        let unreachable = |e: std::io::Error| DeliveryError::Unreachable(format!("{address}: {e}"));
        if self.syslog.is_none() {
            let stream = TcpStream::connect(address).await.map_err(unreachable)?;
            stream.set_nodelay(true).map_err(unreachable)?;
            self.syslog = Some(if syslog.tls {
                Box::new(tls_handshake(syslog, stream).await?)
            } else {
                Box::new(stream)
            });
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

/// A TLS session (RFC 5425) over `stream` with `syslog`'s receiver, its
/// certificate verified for the host of its address.
async fn tls_handshake(
    syslog: &SyslogSink,
    stream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, DeliveryError> {
    let config = crate::tls::client_config(syslog.ca_cert.as_deref())
        .map_err(|e| DeliveryError::Tls(e.to_string()))?;
    let host = syslog
        .address
        .rsplit_once(':')
        .map_or(syslog.address.as_str(), |(host, _)| host);
    // An IPv6 address is written in brackets before its port.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| DeliveryError::Tls(format!("`{host}` is not a server name: {e}")))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, stream)
        .await
        .map_err(|e| {
            DeliveryError::Unreachable(format!(
                "{}: TLS handshake failed: {}",
                syslog.address,
                error_chain(&e)
            ))
        })
}

/// POSTs a batch: a 2xx answer is delivered, anything else is not.
async fn send(
    http: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Answer, DeliveryError> {
    let (status, answer) = http
        .post(url, headers, body, ANSWER_CHARS)
        .await
        .map_err(|e| DeliveryError::Unreachable(e.to_string()))?;
    if (200..300).contains(&status) {
        Ok(Answer {
            status: Some(status),
            detail: answer,
        })
    } else {
        Err(DeliveryError::Refused { status, answer })
    }
}

/// An error with its causes, which hyper and rustls keep apart ("client error
/// (Connect)" alone says nothing).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
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
