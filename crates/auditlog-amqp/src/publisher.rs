//! Publishing batches with publisher confirms. A batch is one persistent message
//! holding a JSON array of events. On any failure the connection is dropped and
//! the error returned: the emitter keeps the batch and retries with backoff, and the
//! next attempt reconnects, so an unconfirmed batch is never forgotten.
//! The publisher declares the auditor's queue and binding as well as the exchange
//! (adopting what exists), and publishes `mandatory`: a batch published before any
//! auditor ever started waits in the queue instead of being discarded by an
//! exchange with nothing bound, and a batch RabbitMQ could not route counts as not
//! delivered.
//! [`Transport::probe`] (readiness) says whether the link is up or can be opened.

use async_trait::async_trait;
use auditlog_event::DataEvent;
use auditlog_transport::{Transport, TransportError};
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;

use crate::{AmqpConfig, AmqpError, topology};

/// A [`Transport`] to RabbitMQ.
pub struct AmqpPublisher {
    config: AmqpConfig,
    routing_key: String,
    link: Mutex<Option<Link>>,
}

struct Link {
    _connection: Connection,
    channel: Channel,
}

impl AmqpPublisher {
    /// A publisher for the producer called `source` (routing key
    /// `<source>.data.mutated`). Connects lazily, on the first publish.
    pub fn new(config: AmqpConfig, source: &str) -> Self {
        AmqpPublisher {
            routing_key: AmqpConfig::routing_key(source),
            config,
            link: Mutex::new(None),
        }
    }

    /// Connects now, so that a wrong URL is reported at start rather than in logs.
    pub async fn connect(&self) -> Result<(), AmqpError> {
        let mut link = self.link.lock().await;
        if link.is_none() {
            *link = Some(self.open().await?);
        }
        Ok(())
    }

    async fn open(&self) -> Result<Link, AmqpError> {
        let name = format!("auditlog publisher {}", self.config.queue);
        let connection = topology::connect(&self.config.url, name).await?;
        topology::auditor(&connection, &self.config).await?;
        let channel = topology::channel(&connection).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| topology::broker("confirm.select", e))?;
        Ok(Link {
            _connection: connection,
            channel,
        })
    }
}

#[async_trait]
impl Transport for AmqpPublisher {
    async fn publish(&self, batch: &[DataEvent]) -> Result<(), TransportError> {
        let body = serde_json::to_vec(batch)
            .map_err(|e| TransportError::Refused(format!("batch not serializable: {e}")))?;
        let mut guard = self.link.lock().await;
        if guard.is_none() {
            *guard = Some(
                self.open()
                    .await
                    .map_err(|e| TransportError::Unavailable(e.to_string()))?,
            );
        }
        let Some(link) = guard.as_ref() else {
            return Err(TransportError::Unavailable("no connection".into()));
        };
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        // RabbitMQ checks a message's user-id against the connection's user, so
        // the auditor can record which broker account published it.
        if let Some(user) = url_user(&self.config.url) {
            properties = properties.with_user_id(user.into());
        }
        let outcome = async {
            let confirm = link
                .channel
                .basic_publish(
                    self.config.exchange.as_str().into(),
                    self.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &body,
                    properties,
                )
                .await?;
            confirm.await
        }
        .await;
        match outcome {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(returned))) => Err(TransportError::Unavailable(format!(
                "RabbitMQ could not route the batch to any queue ({}); is the queue {} bound to {} with {}?",
                returned.reply_text,
                self.config.queue,
                self.config.exchange,
                self.config.binding_key
            ))),
            Ok(Confirmation::Nack(_)) => Err(TransportError::Unavailable(
                "RabbitMQ did not accept the batch (nack)".into(),
            )),
            Ok(Confirmation::NotRequested) => Err(TransportError::Unavailable(
                "publisher confirms are off".into(),
            )),
            Err(err) => {
                // The channel or connection is broken: start over next time.
                *guard = None;
                Err(TransportError::Unavailable(err.to_string()))
            }
        }
    }

    /// Connected, or able to connect now. Waits for a publish in flight, which
    /// holds the link; the readiness check bounds the wait.
    async fn probe(&self) -> Result<(), TransportError> {
        let mut guard = self.link.lock().await;
        if let Some(link) = guard.as_ref()
            && link.channel.status().connected()
        {
            return Ok(());
        }
        *guard = Some(
            self.open()
                .await
                .map_err(|e| TransportError::Unavailable(e.to_string()))?,
        );
        Ok(())
    }
}

/// The user an `amqp://user:pass@host/…` URL connects as: `guest` when it names
/// none (the client's default). `None` when it is percent-encoded: the user-id
/// sent must be exactly the broker's name for it, or the broker closes the
/// channel, and a wrong guess would stop every publish.
fn url_user(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let user = match authority.rsplit_once('@') {
        Some((credentials, _)) => credentials.split(':').next().unwrap_or_default(),
        None => "guest",
    };
    (!user.is_empty() && !user.contains('%')).then(|| user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_read_from_the_url_or_is_the_default() {
        assert_eq!(
            url_user("amqp://bob:secret@host:5672/%2f").as_deref(),
            Some("bob")
        );
        assert_eq!(url_user("amqp://host:5672").as_deref(), Some("guest"));
        assert_eq!(url_user("amqp://b%40b:x@host"), None);
    }
}
