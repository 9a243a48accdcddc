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

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use auditlog_event::{DataEvent, MessageIds, now_ms};
use auditlog_transport::{Backoff, Inbox, InboxMessage, Sender};
use futures_util::{FutureExt, StreamExt};
use lapin::Acker;
use lapin::Confirmation;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use serde_json::value::RawValue;

use crate::prefetch::{Prefetch, PrefetchTuner};
use crate::{AmqpConfig, AmqpError, REASON_HEADER, topology};

/// Messages moved to the dead-letter queue, by `reason` ([`RejectKind::label`]).
pub const DEAD_LETTERED: &str = "auditlog_amqp_dead_lettered_total";
/// 1 while the auditor's consumer is connected to RabbitMQ, else 0.
pub const CONSUMER_CONNECTED: &str = "auditlog_amqp_consumer_connected";
/// Messages ready in the auditor's queue (`queue` label), as the broker last said.
pub const QUEUE_MESSAGES: &str = "auditlog_amqp_queue_messages";
/// The prefetch the auditor's consumer subscribed with last.
pub const CONSUMER_PREFETCH: &str = "auditlog_amqp_consumer_prefetch";

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
        CONSUMER_PREFETCH,
        Unit::Count,
        "Unacknowledged messages the broker may push to the auditor's consumer (sized from the messages arriving unless --amqp-prefetch fixes it)"
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
    /// Who published it: the broker account its `user-id` names (RabbitMQ
    /// refuses a `user-id` that is not the publishing connection's user).
    sender: Sender,
    /// Where events the auditor refuses go, with the message's routing key.
    dead_letters: DeadLetters,
    routing_key: String,
    acker: Acker,
    /// The broker's number for the delivery, on its channel.
    delivery_tag: u64,
    /// Which connection of the consumer delivered it (each reconnect is a new one).
    link: u64,
    /// Whether it was taken from the current consumer of its channel, rather than
    /// from one retiring after a change of prefetch.
    in_order: bool,
}

impl AmqpMessage {
    /// Acknowledges messages committed together, taken from the consumer in the
    /// order delivered and committed one batch after another. Then every delivery
    /// of the channel up to the batch's last is done with (committed now, or in an
    /// earlier batch, or dead-lettered), so one `multiple` ack covers the batch:
    /// one frame and one piece of broker work instead of one per message. Messages
    /// taken from a retiring consumer can interleave with the current one's, so
    /// a batch holding any is acknowledged one by one.
    pub async fn ack_batch(mut messages: Vec<AmqpMessage>) {
        let Some(newest_link) = messages.iter().map(|m| m.link).max() else {
            return;
        };
        let in_order = messages.iter().all(|m| m.in_order);
        // Messages of an earlier connection cannot be acknowledged any more: the
        // broker requeued them when it went. Trying costs nothing.
        let (current, earlier): (Vec<_>, Vec<_>) =
            messages.drain(..).partition(|m| m.link == newest_link);
        for message in earlier {
            message.ack().await;
        }
        if !in_order {
            for message in current {
                message.ack().await;
            }
            return;
        }
        let Some(last) = current.into_iter().max_by_key(|m| m.delivery_tag) else {
            return;
        };
        let multiple = BasicAckOptions { multiple: true };
        if let Err(err) = last.acker.ack(multiple).await {
            tracing::warn!(%err, "ack not delivered; the batch will come again");
        }
    }

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
    /// Connections opened so far.
    links_opened: u64,
    connected: ConsumerStatus,
}

struct ConsumerLink {
    /// This connection's number among the consumer's connections (1, 2, …).
    number: u64,
    connection: Connection,
    /// The channel the auditor consumes on, and its consumer.
    channel: Channel,
    consumer: Consumer,
    /// Consumers being cancelled after a change of prefetch, oldest first: each
    /// still hands over the messages the broker pushed to it (they stay
    /// unacknowledged on the channel) until it ends.
    retiring: VecDeque<Consumer>,
    /// Consumers started on this channel, for unique consumer tags.
    subscriptions: u32,
    /// Sizes the prefetch from the messages arriving, unless it is fixed.
    tuner: Option<PrefetchTuner>,
    queue: String,
    dead_letters: DeadLetters,
    /// Dropped with the link, which ends its queue-depth watcher.
    _depth_watch: tokio::sync::oneshot::Sender<()>,
}

/// The channel and queue poison and refused events are published to.
#[derive(Clone)]
struct DeadLetters {
    channel: Channel,
    queue: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// Who published a delivery: the broker account its validated `user-id` names,
/// or just "some publisher the broker let in" without one.
fn sender_of(properties: &BasicProperties) -> Sender {
    let principal = match properties.user_id() {
        Some(user) if !user.as_str().is_empty() => format!("amqp/{}", user.as_str()),
        _ => "amqp".to_owned(),
    };
    Sender {
        principal,
        via: "amqp",
    }
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
        let link = open(&config, 1).await?;
        let connected = ConsumerStatus::default();
        connected.set(true);
        Ok(AmqpConsumer {
            config,
            link: Some(link),
            links_opened: 1,
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
                match open(&self.config, self.links_opened + 1).await {
                    Ok(link) => {
                        self.links_opened += 1;
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
            let in_order = link.retiring.is_empty();
            let next = match link.retiring.front_mut() {
                Some(retiring) => match retiring.next().await {
                    None => {
                        link.retiring.pop_front();
                        continue;
                    }
                    delivered => delivered,
                },
                None => link.consumer.next().await,
            };
            match next {
                Some(Ok(delivery)) => match decode(link, delivery, in_order).await {
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
            let in_order = link.retiring.is_empty();
            let next = match link.retiring.front_mut() {
                Some(retiring) => match retiring.next().now_or_never()? {
                    None => {
                        link.retiring.pop_front();
                        continue;
                    }
                    delivered => delivered,
                },
                None => link.consumer.next().now_or_never()?,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                _ => return None,
            };
            match decode(link, delivery, in_order).await {
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

    fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// Dead-letters each refused event, as JSON, with the reason. One that
    /// cannot be dead-lettered is logged: the message is acknowledged anyway,
    /// since delivering it again would be refused again.
    async fn refuse(&mut self, refused: Vec<(DataEvent, String)>) {
        for (event, reason) in refused {
            let rejected = Rejected::new(event.to_json().as_bytes(), RejectKind::Refused, reason);
            if let Err(err) = dead_letter(&self.dead_letters, &rejected, &self.routing_key).await {
                tracing::error!(%err, id = %event.id, reason = %rejected.reason, "a refused event could not be dead-lettered; it is dropped");
            }
        }
    }

    async fn ack(self) {
        AmqpMessage::ack(self).await;
    }

    async fn ack_all(messages: Vec<Self>) {
        AmqpMessage::ack_batch(messages).await;
    }
}

async fn open(config: &AmqpConfig, number: u64) -> Result<ConsumerLink, AmqpError> {
    let name = format!("auditlog consumer {}", config.queue);
    let connection = topology::connect(&config.url, name).await?;
    topology::auditor(&connection, config).await?;
    let channel = topology::channel(&connection).await?;
    let prefetch = config.prefetch.initial();
    let consumer = subscribe(&channel, &config.queue, prefetch, 0).await?;
    metrics::gauge!(CONSUMER_PREFETCH).set(f64::from(prefetch));
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
        number,
        connection,
        channel,
        consumer,
        retiring: VecDeque::new(),
        subscriptions: 1,
        tuner: (config.prefetch == Prefetch::Auto).then(|| PrefetchTuner::new(prefetch)),
        queue: config.queue.clone(),
        dead_letters: DeadLetters {
            channel: dead_letters,
            queue: config.dead_letter_queue.clone(),
        },
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

/// Starts consuming `queue` on `channel` with `prefetch`, as the `number`th
/// consumer of the channel.
async fn subscribe(
    channel: &Channel,
    queue: &str,
    prefetch: u16,
    number: u32,
) -> Result<Consumer, AmqpError> {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| topology::broker("basic.qos", e))?;
    let tag = match number {
        0 => "auditlog-auditor".to_owned(),
        n => format!("auditlog-auditor-{n}"),
    };
    channel
        .basic_consume(
            queue.into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| topology::broker(format!("basic.consume {queue}"), e))
}

/// A consumer's prefetch applies from its subscription on, so a new one takes
/// effect through a new consumer; the old one is cancelled and hands over what it
/// already holds.
async fn resubscribe(link: &mut ConsumerLink, prefetch: u16) -> Result<(), AmqpError> {
    let consumer = subscribe(&link.channel, &link.queue, prefetch, link.subscriptions).await?;
    link.subscriptions += 1;
    let old = std::mem::replace(&mut link.consumer, consumer);
    link.channel
        .basic_cancel(old.tag().as_str().into(), BasicCancelOptions::default())
        .await
        .map_err(|e| topology::broker("basic.cancel", e))?;
    link.retiring.push_back(old);
    metrics::gauge!(CONSUMER_PREFETCH).set(f64::from(prefetch));
    tracing::debug!(prefetch, "consumer prefetch changed");
    Ok(())
}

/// Splits a message into valid events and dead-letters the rest. `Ok(None)` when
/// nothing valid was left (the message is then already acknowledged).
async fn decode(
    link: &mut ConsumerLink,
    delivery: Delivery,
    in_order: bool,
) -> Result<Option<AmqpMessage>, AmqpError> {
    let now = now_ms();
    let (events, rejected) = parse_body(&delivery.data, now);
    if let Some(prefetch) = link
        .tuner
        .as_mut()
        .and_then(|tuner| tuner.observe(events.len() + rejected.len()))
    {
        resubscribe(link, prefetch).await?;
    }
    for rejected in &rejected {
        dead_letter(&link.dead_letters, rejected, delivery.routing_key.as_str()).await?;
    }
    if events.is_empty() {
        if let Err(err) = delivery.acker.ack(BasicAckOptions::default()).await {
            tracing::warn!(%err, "ack of a dead-lettered message failed; it will come again");
        }
        return Ok(None);
    }
    Ok(Some(AmqpMessage {
        events,
        sender: sender_of(&delivery.properties),
        dead_letters: link.dead_letters.clone(),
        routing_key: delivery.routing_key.as_str().to_owned(),
        acker: delivery.acker,
        delivery_tag: delivery.delivery_tag,
        link: link.number,
        in_order,
    }))
}

/// Why a message, or one event of it, is poison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    NotUtf8,
    NotJson,
    InvalidEvent,
    /// A valid event the auditor would not store from this sender (its
    /// producer id is another's, or it claims the auditor's own names).
    Refused,
}

impl RejectKind {
    /// The `reason` label of [`DEAD_LETTERED`]: a few fixed values, where the
    /// reason text itself would be one series per distinct error.
    pub fn label(self) -> &'static str {
        match self {
            RejectKind::NotUtf8 => "not_utf8",
            RejectKind::NotJson => "not_json",
            RejectKind::InvalidEvent => "invalid_event",
            RejectKind::Refused => "refused",
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
    dead_letters: &DeadLetters,
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
    let confirm = dead_letters
        .channel
        .basic_publish(
            "".into(),
            dead_letters.queue.as_str().into(),
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
