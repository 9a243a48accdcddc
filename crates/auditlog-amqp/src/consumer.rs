//! Consuming the auditor's queue. Each message is decoded into events (one event
//! object, or an array of them); a message that is not JSON, or events that break
//! the contract, are published to the dead-letter queue with the reason (with
//! publisher confirms) before the original is acknowledged, so nothing poison is
//! requeued forever and nothing is silently dropped. Valid events are handed to the
//! caller, who acknowledges the message only after the store committed them.
//! A lost connection is re-established with backoff; unacknowledged messages are
//! redelivered by the broker and stored once thanks to idempotent inserts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auditlog_event::DataEvent;
use futures_util::{FutureExt, StreamExt};
use lapin::Acker;
use lapin::Confirmation;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use serde_json::value::RawValue;

use crate::{AmqpConfig, AmqpError, REASON_HEADER, topology};

/// The events of one message, to be acknowledged once stored.
#[derive(Debug)]
pub struct AmqpMessage {
    pub events: Vec<DataEvent>,
    acker: Acker,
}

impl AmqpMessage {
    /// Tells the broker the message is done with. If the connection is gone the
    /// broker redelivers it later, which is harmless: inserts are idempotent.
    pub async fn ack(self) {
        if let Err(err) = self.acker.ack(BasicAckOptions::default()).await {
            tracing::warn!(%err, "ack not delivered; the message will come again");
        }
    }
}

/// The auditor's consumer of `data-mutation-audits`.
pub struct AmqpConsumer {
    config: AmqpConfig,
    link: Option<ConsumerLink>,
}

struct ConsumerLink {
    connection: Connection,
    consumer: Consumer,
    dead_letters: Channel,
    dead_letter_queue: String,
}

impl AmqpConsumer {
    /// Connects and declares the topology; fails if the broker cannot be reached,
    /// so that a wrong URL is reported at start.
    pub async fn connect(config: AmqpConfig) -> Result<Self, AmqpError> {
        let link = open(&config).await?;
        Ok(AmqpConsumer {
            config,
            link: Some(link),
        })
    }

    /// The next message with at least one valid event. Reconnects as long as it
    /// takes; poison messages are dead-lettered on the way.
    pub async fn recv(&mut self) -> AmqpMessage {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(link) = self.link.as_mut() else {
                match open(&self.config).await {
                    Ok(link) => {
                        tracing::info!("reconnected to RabbitMQ");
                        self.link = Some(link);
                        backoff = Duration::from_millis(100);
                    }
                    Err(err) => {
                        tracing::warn!(%err, retry_in_ms = backoff.as_millis() as u64, "RabbitMQ unavailable");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
                continue;
            };
            match link.consumer.next().await {
                Some(Ok(delivery)) => match decode(link, delivery).await {
                    Ok(Some(message)) => return message,
                    Ok(None) => {}
                    Err(err) => {
                        tracing::warn!(%err, "dead-lettering failed; reconnecting");
                        self.link = None;
                    }
                },
                Some(Err(err)) => {
                    tracing::warn!(%err, "RabbitMQ consumer failed; reconnecting");
                    self.link = None;
                }
                None => {
                    tracing::warn!("RabbitMQ closed the consumer; reconnecting");
                    self.link = None;
                }
            }
        }
    }

    /// A message that has already arrived, without waiting.
    pub async fn try_recv(&mut self) -> Option<AmqpMessage> {
        loop {
            let link = self.link.as_mut()?;
            let delivery = match link.consumer.next().now_or_never()? {
                Some(Ok(delivery)) => delivery,
                _ => return None,
            };
            match decode(link, delivery).await {
                Ok(Some(message)) => return Some(message),
                Ok(None) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Stops consuming: messages not yet acknowledged go back to the queue.
    pub async fn close(mut self) {
        if let Some(link) = self.link.take() {
            let _ = link.connection.close(200, "auditor stopping".into()).await;
        }
    }
}

async fn open(config: &AmqpConfig) -> Result<ConsumerLink, AmqpError> {
    let name = format!("auditlog consumer {}", config.queue);
    let connection = topology::connect(&config.url, name).await?;
    topology::auditor(&connection, config).await?;
    let channel = topology::channel(&connection).await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| topology::broker("basic.qos", e))?;
    let consumer = channel
        .basic_consume(
            config.queue.as_str().into(),
            "auditlog-auditor".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| topology::broker(format!("basic.consume {}", config.queue), e))?;
    let dead_letters = topology::channel(&connection).await?;
    dead_letters
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| topology::broker("confirm.select", e))?;
    Ok(ConsumerLink {
        connection,
        consumer,
        dead_letters,
        dead_letter_queue: config.dead_letter_queue.clone(),
    })
}

/// Splits a message into valid events and dead-letters the rest. `Ok(None)` when
/// nothing valid was left (the message is then already acknowledged).
async fn decode(link: &ConsumerLink, delivery: Delivery) -> Result<Option<AmqpMessage>, AmqpError> {
    let now = now_ms();
    let (events, rejected) = parse_body(&delivery.data, now);
    for (body, reason) in &rejected {
        dead_letter(link, body, reason, delivery.routing_key.as_str()).await?;
    }
    if events.is_empty() {
        if let Err(err) = delivery.acker.ack(BasicAckOptions::default()).await {
            tracing::warn!(%err, "ack of a dead-lettered message failed; it will come again");
        }
        return Ok(None);
    }
    Ok(Some(AmqpMessage {
        events,
        acker: delivery.acker,
    }))
}

/// Events of a message body, and each rejected part with the reason.
pub(crate) fn parse_body(body: &[u8], now: i64) -> (Vec<DataEvent>, Vec<(Vec<u8>, String)>) {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(_) => {
            return (
                Vec::new(),
                vec![(body.to_vec(), "the message is not UTF-8".into())],
            );
        }
    };
    let items: Vec<&RawValue> = if text.trim_start().starts_with('[') {
        match serde_json::from_str(text) {
            Ok(items) => items,
            Err(e) => {
                return (
                    Vec::new(),
                    vec![(
                        body.to_vec(),
                        format!("the message is not a JSON array of events: {e}"),
                    )],
                );
            }
        }
    } else {
        match serde_json::from_str::<&RawValue>(text) {
            Ok(item) => vec![item],
            Err(e) => {
                return (
                    Vec::new(),
                    vec![(body.to_vec(), format!("the message is not JSON: {e}"))],
                );
            }
        }
    };
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for item in items {
        match DataEvent::parse_json(item.get(), now) {
            Ok(event) => events.push(event),
            Err(err) => rejected.push((item.get().as_bytes().to_vec(), err.to_string())),
        }
    }
    (events, rejected)
}

async fn dead_letter(
    link: &ConsumerLink,
    body: &[u8],
    reason: &str,
    routing_key: &str,
) -> Result<(), AmqpError> {
    tracing::warn!(%reason, "dead-lettering a message");
    let mut headers = FieldTable::default();
    headers.insert(REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
    headers.insert(
        "x-auditlog-routing-key".into(),
        AMQPValue::LongString(routing_key.into()),
    );
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    let confirm = link
        .dead_letters
        .basic_publish(
            "".into(),
            link.dead_letter_queue.as_str().into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .map_err(|e| topology::broker("basic.publish (dead letter)", e))?
        .await
        .map_err(|e| topology::broker("publisher confirm (dead letter)", e))?;
    match confirm {
        Confirmation::Ack(_) => Ok(()),
        _ => Err(AmqpError::Broker {
            what: "dead letter".into(),
            reason: "not confirmed".into(),
        }),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_event_object_is_one_event() {
        let body = br#"{"action":"viewed","actorType":"users","actorId":1,"targetType":"users","targetId":2}"#;
        let (events, rejected) = parse_body(body, 5);
        assert_eq!(events.len(), 1);
        assert!(rejected.is_empty());
        assert_eq!(events[0].timestamp, 5);
    }

    #[test]
    fn an_array_keeps_the_good_events_and_rejects_the_bad_with_reasons() {
        let body = br#"[{"action":"viewed","actorType":"users","actorId":1,"targetType":"users","targetId":2},
                        {"action":"exploded","actorType":"users","actorId":1,"targetType":"users","targetId":2}]"#;
        let (events, rejected) = parse_body(body, 5);
        assert_eq!(events.len(), 1);
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].1.contains("action"), "{}", rejected[0].1);
    }

    #[test]
    fn a_body_that_is_not_json_is_rejected_whole() {
        let (events, rejected) = parse_body(b"hello", 5);
        assert!(events.is_empty());
        assert_eq!(rejected[0].0, b"hello");
        let (_, rejected) = parse_body(&[0xff, 0xfe], 5);
        assert!(rejected[0].1.contains("UTF-8"));
    }
}
