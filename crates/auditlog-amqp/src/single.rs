//! Publishing as the prototype's producers did: one event per message, the
//! message body given as it is (no id, no producer numbering added). Used to
//! measure and test the auditor with the shape most existing producers send.
//! Publishes persistent messages with publisher confirms, keeping up to
//! [`CONFIRMS_IN_FLIGHT`] unconfirmed so that the broker, not a round trip per
//! message, sets the pace. [`drain`] is the other half of the broker's own
//! ceiling for this shape: consuming and acknowledging with no work in between.

use std::collections::VecDeque;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};

use crate::{AmqpConfig, AmqpError, topology};

/// Messages published and not yet confirmed, at most.
pub const CONFIRMS_IN_FLIGHT: usize = 1_024;

/// One connection publishing single-event messages for the producer `source`.
pub struct SingleEventPublisher {
    connection: Connection,
    channel: Channel,
    exchange: String,
    routing_key: String,
    unconfirmed: VecDeque<PublisherConfirm>,
}

impl SingleEventPublisher {
    /// Connects and declares the auditor's topology (adopting what exists).
    pub async fn connect(config: &AmqpConfig, source: &str) -> Result<Self, AmqpError> {
        let name = format!("auditlog single-event publisher {}", config.queue);
        let connection = topology::connect(&config.url, name).await?;
        topology::auditor(&connection, config).await?;
        let channel = topology::channel(&connection).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| topology::broker("confirm.select", e))?;
        Ok(SingleEventPublisher {
            connection,
            channel,
            exchange: config.exchange.clone(),
            routing_key: AmqpConfig::routing_key(source),
            unconfirmed: VecDeque::with_capacity(CONFIRMS_IN_FLIGHT),
        })
    }

    /// Publishes `body` as one message; waits only when [`CONFIRMS_IN_FLIGHT`]
    /// messages are unconfirmed, for the oldest of them.
    pub async fn publish(&mut self, body: &[u8]) -> Result<(), AmqpError> {
        if self.unconfirmed.len() >= CONFIRMS_IN_FLIGHT
            && let Some(oldest) = self.unconfirmed.pop_front()
        {
            confirmed(oldest).await?;
        }
        let confirm = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await
            .map_err(|e| topology::broker("basic.publish", e))?;
        self.unconfirmed.push_back(confirm);
        Ok(())
    }

    /// Waits until the broker confirmed every message published, then closes.
    pub async fn finish(mut self) -> Result<(), AmqpError> {
        while let Some(confirm) = self.unconfirmed.pop_front() {
            confirmed(confirm).await?;
        }
        let _ = self.channel.close(200, "published".into()).await;
        let _ = self.connection.close(200, "published".into()).await;
        Ok(())
    }
}

/// The broker took the message into a queue; anything else is an error.
async fn confirmed(confirm: PublisherConfirm) -> Result<(), AmqpError> {
    match confirm
        .await
        .map_err(|e| topology::broker("basic.publish", e))?
    {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) => Err(AmqpError::Broker {
            what: "basic.publish".into(),
            reason: format!("the message was not routed: {}", returned.reply_text),
        }),
        Confirmation::Nack(_) => Err(AmqpError::Broker {
            what: "basic.publish".into(),
            reason: "the broker did not accept the message (nack)".into(),
        }),
        Confirmation::NotRequested => Err(AmqpError::Broker {
            what: "basic.publish".into(),
            reason: "publisher confirms are off".into(),
        }),
    }
}

/// Messages acknowledged at once by [`drain`].
const DRAIN_ACK_EVERY: u64 = 1_000;

/// Consumes `count` messages from `config`'s queue and acknowledges them (one
/// `multiple` ack per thousand), doing nothing else with them: what the
/// broker can deliver when its consumer costs nothing.
pub async fn drain(config: &AmqpConfig, count: u64) -> Result<(), AmqpError> {
    let connection = topology::connect(&config.url, "auditlog drain".into()).await?;
    topology::auditor(&connection, config).await?;
    let channel = topology::channel(&connection).await?;
    channel
        .basic_qos(crate::prefetch::MAX, BasicQosOptions::default())
        .await
        .map_err(|e| topology::broker("basic.qos", e))?;
    let mut consumer = channel
        .basic_consume(
            config.queue.as_str().into(),
            "auditlog-drain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| topology::broker(format!("basic.consume {}", config.queue), e))?;
    let mut received = 0;
    while received < count {
        let delivery = match consumer.next().await {
            Some(Ok(delivery)) => delivery,
            Some(Err(err)) => return Err(topology::broker("basic.consume", err)),
            None => {
                return Err(AmqpError::Broker {
                    what: "basic.consume".into(),
                    reason: format!("the consumer ended after {received} of {count} messages"),
                });
            }
        };
        received += 1;
        if received % DRAIN_ACK_EVERY == 0 || received == count {
            delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await
                .map_err(|e| topology::broker("basic.ack", e))?;
        }
    }
    let _ = channel.close(200, "drained".into()).await;
    let _ = connection.close(200, "drained".into()).await;
    Ok(())
}
