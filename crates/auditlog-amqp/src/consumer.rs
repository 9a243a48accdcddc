//! Consuming the auditor's queue. Each message is decoded into events (one event
//! object, or an array of them); a message that is not JSON, or events that break
//! the contract, are published to the dead-letter queue with the reason (with
//! publisher confirms) before the original is acknowledged, so nothing poison is
//! requeued forever and nothing is silently dropped. Valid events are handed to the
//! caller, who acknowledges the message only after the store committed them.
//! A lost connection is re-established with backoff; unacknowledged messages are
//! redelivered by the broker and stored once thanks to idempotent inserts.
//!
//! Metrics: dead-lettered messages by reason kind, whether the consumer is
//! connected, and the queue's depth (a passive declare every
//! [`QUEUE_DEPTH_EVERY`] on a channel of the consumer's own connection).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use auditlog_event::{DataEvent, MessageIds, now_ms};
use auditlog_transport::{Backoff, Inbox, InboxMessage};
use futures_util::{FutureExt, StreamExt};
use lapin::Acker;
use lapin::Confirmation;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use serde_json::value::RawValue;

use crate::{AmqpConfig, AmqpError, REASON_HEADER, topology};

/// Messages moved to the dead-letter queue, by `reason` ([`RejectKind::label`]).
pub const DEAD_LETTERED: &str = "auditlog_amqp_dead_lettered_total";
/// 1 while the auditor's consumer is connected to RabbitMQ, else 0.
pub const CONSUMER_CONNECTED: &str = "auditlog_amqp_consumer_connected";
/// Messages ready in the auditor's queue (`queue` label), as the broker last said.
pub const QUEUE_MESSAGES: &str = "auditlog_amqp_queue_messages";

/// Gives the consumer's metrics their `# HELP` text and unit in the recorder that
/// is installed now: call it right after installing one.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        DEAD_LETTERED,
        Unit::Count,
        "Messages (or events of a message) moved to the dead-letter queue, by reason"
    );
    describe_gauge!(
        CONSUMER_CONNECTED,
        "1 while the auditor's consumer is connected to RabbitMQ, else 0"
    );
    describe_gauge!(
        QUEUE_MESSAGES,
        Unit::Count,
        "Messages ready in the auditor's queue, as the broker last said"
    );
}

/// How often the consumer asks the broker for its queue's depth.
pub const QUEUE_DEPTH_EVERY: Duration = Duration::from_secs(5);

/// First pause before reconnecting to the broker, then doubling to
/// [`Backoff::MAX`]. Each attempt opens a connection and declares the topology, so
/// the consumer starts one step above the default 50 ms.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);

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
    connected: ConsumerStatus,
}

struct ConsumerLink {
    connection: Connection,
    consumer: Consumer,
    dead_letters: Channel,
    dead_letter_queue: String,
    /// Dropped with the link, which ends its queue-depth watcher.
    _depth_watch: tokio::sync::oneshot::Sender<()>,
}

/// Whether a consumer is connected to RabbitMQ right now, readable from other
/// tasks (the readiness check) while the consume loop owns the consumer.
#[derive(Debug, Clone, Default)]
pub struct ConsumerStatus(Arc<AtomicBool>);

impl ConsumerStatus {
    pub fn is_connected(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, connected: bool) {
        self.0.store(connected, Ordering::Relaxed);
        metrics::gauge!(CONSUMER_CONNECTED).set(if connected { 1.0 } else { 0.0 });
    }
}

impl AmqpConsumer {
    /// Connects and declares the topology; fails if the broker cannot be reached,
    /// so that a wrong URL is reported at start.
    pub async fn connect(config: AmqpConfig) -> Result<Self, AmqpError> {
        let link = open(&config).await?;
        let connected = ConsumerStatus::default();
        connected.set(true);
        Ok(AmqpConsumer {
            config,
            link: Some(link),
            connected,
        })
    }

    /// A handle telling whether this consumer is connected.
    pub fn status(&self) -> ConsumerStatus {
        self.connected.clone()
    }

    /// The next message with at least one valid event. Reconnects as long as it
    /// takes; poison messages are dead-lettered on the way.
    pub async fn recv(&mut self) -> AmqpMessage {
        let mut backoff = Backoff::new(RECONNECT_FIRST, Backoff::MAX);
        loop {
            let Some(link) = self.link.as_mut() else {
                match open(&self.config).await {
                    Ok(link) => {
                        tracing::info!("reconnected to RabbitMQ");
                        self.link = Some(link);
                        self.connected.set(true);
                        backoff.reset();
                    }
                    Err(err) => {
                        tracing::warn!(%err, retry_in_ms = backoff.pause().as_millis() as u64, "RabbitMQ unavailable");
                        tokio::time::sleep(backoff.next_pause()).await;
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
                        self.disconnected();
                    }
                },
                Some(Err(err)) => {
                    tracing::warn!(%err, "RabbitMQ consumer failed; reconnecting");
                    self.disconnected();
                }
                None => {
                    tracing::warn!("RabbitMQ closed the consumer; reconnecting");
                    self.disconnected();
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
        self.connected.set(false);
    }

    fn disconnected(&mut self) {
        self.link = None;
        self.connected.set(false);
    }
}

#[async_trait]
impl Inbox for AmqpConsumer {
    type Message = AmqpMessage;

    async fn recv(&mut self) -> Option<AmqpMessage> {
        Some(AmqpConsumer::recv(self).await)
    }

    async fn try_recv(&mut self) -> Option<AmqpMessage> {
        AmqpConsumer::try_recv(self).await
    }

    async fn close(self) {
        AmqpConsumer::close(self).await;
    }
}

#[async_trait]
impl InboxMessage for AmqpMessage {
    fn take_events(&mut self) -> Vec<DataEvent> {
        std::mem::take(&mut self.events)
    }

    async fn ack(self) {
        AmqpMessage::ack(self).await;
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
    let (depth_watch, stop_watching) = tokio::sync::oneshot::channel();
    tokio::spawn(watch_depth(
        topology::channel(&connection).await?,
        config.queue.clone(),
        stop_watching,
    ));
    Ok(ConsumerLink {
        connection,
        consumer,
        dead_letters,
        dead_letter_queue: config.dead_letter_queue.clone(),
        _depth_watch: depth_watch,
    })
}

/// Publishes the depth of `queue` every [`QUEUE_DEPTH_EVERY`] until the link is
/// dropped (`stop` closes) or the channel fails. A passive declare only reads.
async fn watch_depth(
    channel: Channel,
    queue: String,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let depth = metrics::gauge!(QUEUE_MESSAGES, "queue" => queue.clone());
    let mut ticker = tokio::time::interval(QUEUE_DEPTH_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
        {
            Ok(declared) => depth.set(f64::from(declared.message_count())),
            Err(err) => {
                tracing::debug!(%err, "queue depth unavailable until the consumer reconnects");
                break;
            }
        }
    }
    let _ = channel.close(200, "depth watch done".into()).await;
}

/// Splits a message into valid events and dead-letters the rest. `Ok(None)` when
/// nothing valid was left (the message is then already acknowledged).
async fn decode(link: &ConsumerLink, delivery: Delivery) -> Result<Option<AmqpMessage>, AmqpError> {
    let now = now_ms();
    let (events, rejected) = parse_body(&delivery.data, now);
    for rejected in &rejected {
        dead_letter(link, rejected, delivery.routing_key.as_str()).await?;
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

/// Why a message, or one event of it, is poison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    NotUtf8,
    NotJson,
    InvalidEvent,
}

impl RejectKind {
    /// The `reason` label of [`DEAD_LETTERED`]: a few fixed values, where the
    /// reason text itself would be one series per distinct error.
    pub fn label(self) -> &'static str {
        match self {
            RejectKind::NotUtf8 => "not_utf8",
            RejectKind::NotJson => "not_json",
            RejectKind::InvalidEvent => "invalid_event",
        }
    }
}

/// A rejected part of a message, dead-lettered as it came.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub(crate) body: Vec<u8>,
    pub(crate) reason: String,
    pub(crate) kind: RejectKind,
}

impl Rejected {
    fn new(body: &[u8], kind: RejectKind, reason: String) -> Self {
        Rejected {
            body: body.to_vec(),
            reason,
            kind,
        }
    }
}

/// Events of a message body, and each rejected part with the reason.
pub(crate) fn parse_body(body: &[u8], now: i64) -> (Vec<DataEvent>, Vec<Rejected>) {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(_) => {
            return (
                Vec::new(),
                vec![Rejected::new(
                    body,
                    RejectKind::NotUtf8,
                    "the message is not UTF-8".into(),
                )],
            );
        }
    };
    let items: Vec<&RawValue> = if text.trim_start().starts_with('[') {
        match serde_json::from_str(text) {
            Ok(items) => items,
            Err(e) => {
                return (
                    Vec::new(),
                    vec![Rejected::new(
                        body,
                        RejectKind::NotJson,
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
                    vec![Rejected::new(
                        body,
                        RejectKind::NotJson,
                        format!("the message is not JSON: {e}"),
                    )],
                );
            }
        }
    };
    // An event without an id gets one derived from this message's bytes and its
    // position, so that a redelivery (the auditor died between commit and ack)
    // yields the same id and is stored once.
    let message = MessageIds::new(body);
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match DataEvent::parse_json_in(item.get(), now, &message, index) {
            Ok(event) => events.push(event),
            Err(err) => rejected.push(Rejected::new(
                item.get().as_bytes(),
                RejectKind::InvalidEvent,
                err.to_string(),
            )),
        }
    }
    (events, rejected)
}

async fn dead_letter(
    link: &ConsumerLink,
    rejected: &Rejected,
    routing_key: &str,
) -> Result<(), AmqpError> {
    let reason = rejected.reason.as_str();
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
            &rejected.body,
            properties,
        )
        .await
        .map_err(|e| topology::broker("basic.publish (dead letter)", e))?
        .await
        .map_err(|e| topology::broker("publisher confirm (dead letter)", e))?;
    match confirm {
        Confirmation::Ack(_) => {
            metrics::counter!(DEAD_LETTERED, "reason" => rejected.kind.label()).increment(1);
            Ok(())
        }
        _ => Err(AmqpError::Broker {
            what: "dead letter".into(),
            reason: "not confirmed".into(),
        }),
    }
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
        assert!(
            rejected[0].reason.contains("action"),
            "{}",
            rejected[0].reason
        );
        assert_eq!(rejected[0].kind, RejectKind::InvalidEvent);
    }

    #[test]
    fn a_redelivered_message_without_ids_gives_its_events_the_same_ids() {
        let body = br#"[{"action":"viewed","actorType":"users","actorId":1,"targetType":"users","targetId":2},
                        {"action":"viewed","actorType":"users","actorId":1,"targetType":"users","targetId":2}]"#;
        let (first, _) = parse_body(body, 5);
        let (again, _) = parse_body(body, 9);
        let ids = |events: &[DataEvent]| events.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(&first), ids(&again));
        assert_ne!(
            first[0].id, first[1].id,
            "two events of one message stay two"
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_rejected_whole() {
        let (events, rejected) = parse_body(b"hello", 5);
        assert!(events.is_empty());
        assert_eq!(rejected[0].body, b"hello");
        assert_eq!(rejected[0].kind.label(), "not_json");
        let (_, rejected) = parse_body(&[0xff, 0xfe], 5);
        assert!(rejected[0].reason.contains("UTF-8"));
        assert_eq!(rejected[0].kind.label(), "not_utf8");
    }
}
