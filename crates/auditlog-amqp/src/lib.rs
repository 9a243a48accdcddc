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
//! prototype declared them non-durable); only missing ones are created, durable,
//! the queues as quorum queues unless [`QueueType::Classic`] is asked for. Several
//! auditors may consume one queue as competing consumers.

mod consumer;
pub mod prefetch;
mod publisher;
mod single;
mod topology;

pub use consumer::{
    AmqpConsumer, AmqpMessage, CONSUMER_CONNECTED, CONSUMER_PREFETCH, ConsumerStatus,
    DEAD_LETTERED, QUEUE_MESSAGES, RejectKind, describe_metrics,
};
pub use prefetch::Prefetch;
pub use publisher::AmqpPublisher;
pub use single::{CONFIRMS_IN_FLIGHT, SingleEventPublisher, drain};
pub use topology::DELIVERY_LIMIT;

/// The type of queue declared when the auditor's queue (or its dead-letter queue)
/// does not exist yet. An existing queue keeps the type it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Replicated over a cluster's nodes (Raft), durable; the broker dead-letters a
    /// message delivered more than [`DELIVERY_LIMIT`] times. For new deployments.
    #[default]
    Quorum,
    /// A durable classic queue, on one node: what earlier releases declared.
    Classic,
}

impl QueueType {
    /// The name on the command line and in RabbitMQ's `x-queue-type`.
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

impl std::fmt::Display for QueueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for QueueType {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "quorum" => Ok(QueueType::Quorum),
            "classic" => Ok(QueueType::Classic),
            other => Err(format!(
                "`{other}` is not a queue type: use quorum or classic"
            )),
        }
    }
}

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
    pub prefetch: Prefetch,
    /// The type of the queues declared when they do not exist yet.
    pub queue_type: QueueType,
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
            .field("queue_type", &self.queue_type)
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
            prefetch: Prefetch::Auto,
            queue_type: QueueType::Quorum,
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
    fn queue_types_parse_by_name_and_quorum_is_the_default() {
        assert_eq!("quorum".parse(), Ok(QueueType::Quorum));
        assert_eq!("classic".parse(), Ok(QueueType::Classic));
        assert!("stream".parse::<QueueType>().is_err());
        assert_eq!(AmqpConfig::new("amqp://h").queue_type, QueueType::Quorum);
    }

    #[test]
    fn a_new_quorum_queue_dead_letters_after_the_delivery_limit() {
        let arguments =
            topology::queue_arguments(QueueType::Quorum, Some("audits.dead-letter")).unwrap();
        let get = |key: &str| arguments.inner().get(key).cloned();
        assert_eq!(
            get("x-delivery-limit"),
            Some(lapin::types::AMQPValue::LongLongInt(DELIVERY_LIMIT))
        );
        assert_eq!(
            get("x-dead-letter-routing-key"),
            Some(lapin::types::AMQPValue::LongString(
                "audits.dead-letter".into()
            ))
        );
        let classic = topology::queue_arguments(QueueType::Classic, Some("dlq")).unwrap();
        assert!(classic.inner().is_empty(), "a classic queue as before");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let config = AmqpConfig::new("amqp://guest:secret@127.0.0.1:5672/%2f");
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"));
        assert!(shown.contains("guest:***@"));
    }
}
