//! RabbitMQ in the prototype's wire format. Producers publish batches of events as a
//! JSON array to the topic exchange `api-stream` with routing key
//! `<source>.data.mutated` ([`AmqpPublisher`], persistent messages, publisher
//! confirms); the auditor consumes the queue `data-mutation-audits` bound with
//! `*.data.mutated` ([`AmqpConsumer`]), acknowledging a message only once its events
//! are stored, and moving poison messages to a dead-letter queue with the reason.
//! They are the two halves of the transport contract of `auditlog-transport`: the
//! publisher a `Transport`, the consumer an `Inbox`; this crate knows neither the
//! producer SDK nor the auditor.
//!
//! Exchanges and queues that already exist are used as they were declared (the
//! prototype declared them non-durable); only missing ones are created, durable.

mod consumer;
mod publisher;
mod topology;

pub use consumer::{
    AmqpConsumer, AmqpMessage, CONSUMER_CONNECTED, ConsumerStatus, DEAD_LETTERED, QUEUE_MESSAGES,
    RejectKind, describe_metrics,
};
pub use publisher::AmqpPublisher;

/// Names and tuning of the RabbitMQ topology.
#[derive(Clone)]
pub struct AmqpConfig {
    /// `amqp://user:pass@host:port/vhost`.
    pub url: String,
    /// Topic exchange events are published to.
    pub exchange: String,
    /// The auditor's queue.
    pub queue: String,
    /// Binding of the queue to the exchange.
    pub binding_key: String,
    /// Where poison messages go, with the reason in the `x-auditlog-reason` header.
    pub dead_letter_queue: String,
    /// Unacknowledged messages the broker may push to one consumer.
    pub prefetch: u16,
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact(&self.url))
            .field("exchange", &self.exchange)
            .field("queue", &self.queue)
            .field("binding_key", &self.binding_key)
            .field("dead_letter_queue", &self.dead_letter_queue)
            .field("prefetch", &self.prefetch)
            .finish()
    }
}

impl AmqpConfig {
    /// The prototype's names on the broker at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        AmqpConfig {
            url: url.into(),
            exchange: "api-stream".into(),
            queue: "data-mutation-audits".into(),
            binding_key: "*.data.mutated".into(),
            dead_letter_queue: "data-mutation-audits.dead-letter".into(),
            prefetch: 64,
        }
    }

    /// The routing key a producer called `source` publishes with.
    pub fn routing_key(source: &str) -> String {
        format!("{source}.data.mutated")
    }
}

/// Errors talking to RabbitMQ.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("cannot reach RabbitMQ at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("RabbitMQ refused `{what}`: {reason}")]
    Broker { what: String, reason: String },
}

/// Whether `queue` exists on the broker at `url` (a passive declare, which leaves
/// the queue as it is).
pub async fn queue_exists(url: &str, queue: &str) -> bool {
    queue_consumers(url, queue).await.is_some()
}

/// How many consumers `queue` has on the broker at `url`; `None` when it does not
/// exist or the broker cannot be reached (a passive declare, which leaves the
/// queue as it is).
pub async fn queue_consumers(url: &str, queue: &str) -> Option<u32> {
    let connection = topology::connect(url, "auditlog probe".into()).await.ok()?;
    let consumers = match topology::channel(&connection).await {
        Ok(channel) => {
            let declared = channel
                .queue_declare(
                    queue.into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await
                .ok()
                .map(|queue| queue.consumer_count());
            // Closed before the connection: a channel still open when it is
            // dropped closes itself in the background, and if the connection is
            // closing by then lapin logs a spurious `Connection error ... invalid
            // channel state`. (A missing queue has closed the channel already.)
            if declared.is_some() {
                let _ = channel.close(200, "probe done".into()).await;
            }
            declared
        }
        Err(_) => None,
    };
    let _ = connection.close(200, "probe done".into()).await;
    consumers
}

/// Deletes `config`'s exchange, queue and dead-letter queue, messages included:
/// for runs that made a topology of their own (benchmarks) and leave a shared
/// broker as they found it.
pub async fn delete_topology(config: &AmqpConfig) -> Result<(), AmqpError> {
    let connection = topology::connect(&config.url, "auditlog cleanup".into()).await?;
    let channel = topology::channel(&connection).await?;
    for queue in [&config.queue, &config.dead_letter_queue] {
        channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await
            .map_err(|e| topology::broker(format!("queue.delete {queue}"), e))?;
    }
    channel
        .exchange_delete(config.exchange.as_str().into(), Default::default())
        .await
        .map_err(|e| topology::broker(format!("exchange.delete {}", config.exchange), e))?;
    let _ = connection.close(200, "cleaned up".into()).await;
    Ok(())
}

/// Header naming why a message was dead-lettered.
pub const REASON_HEADER: &str = "x-auditlog-reason";

/// The URL with its password hidden, for logs and errors.
pub use auditlog_event::redact_url as redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_prototypes_names() {
        let config = AmqpConfig::new("amqp://127.0.0.1:5672");
        assert_eq!(config.exchange, "api-stream");
        assert_eq!(config.queue, "data-mutation-audits");
        assert_eq!(config.binding_key, "*.data.mutated");
        assert_eq!(AmqpConfig::routing_key("api"), "api.data.mutated");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let config = AmqpConfig::new("amqp://guest:secret@127.0.0.1:5672/%2f");
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"));
        assert!(shown.contains("guest:***@"));
    }
}
