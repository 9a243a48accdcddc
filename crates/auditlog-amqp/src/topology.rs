//! Declaring exchanges and queues so that existing ones are adopted as they are.
//! A passive declare asks whether the object exists without touching it; RabbitMQ
//! closes the channel when it does not, so each probe uses a channel of its own.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};

use crate::{AmqpConfig, AmqpError};

/// Makes sure the exchange exists (adopting an existing one).
pub(crate) async fn exchange(connection: &Connection, name: &str) -> Result<(), AmqpError> {
    let probe = channel(connection).await?;
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    if probe
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            passive,
            FieldTable::default(),
        )
        .await
        .is_ok()
    {
        let _ = probe.close(200, "probe done".into()).await;
        return Ok(());
    }
    let declare = channel(connection).await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    declare
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(|e| broker(format!("exchange.declare {name}"), e))?;
    let _ = declare.close(200, "declared".into()).await;
    Ok(())
}

/// Makes sure a queue exists (adopting an existing one).
pub(crate) async fn queue(connection: &Connection, name: &str) -> Result<(), AmqpError> {
    let probe = channel(connection).await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    if probe
        .queue_declare(name.into(), passive, FieldTable::default())
        .await
        .is_ok()
    {
        let _ = probe.close(200, "probe done".into()).await;
        return Ok(());
    }
    let declare = channel(connection).await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    declare
        .queue_declare(name.into(), durable, FieldTable::default())
        .await
        .map_err(|e| broker(format!("queue.declare {name}"), e))?;
    let _ = declare.close(200, "declared".into()).await;
    Ok(())
}

/// The auditor's whole topology: exchange, queue, binding, dead-letter queue.
pub(crate) async fn auditor(connection: &Connection, config: &AmqpConfig) -> Result<(), AmqpError> {
    exchange(connection, &config.exchange).await?;
    queue(connection, &config.queue).await?;
    queue(connection, &config.dead_letter_queue).await?;
    let bind = channel(connection).await?;
    bind.queue_bind(
        config.queue.as_str().into(),
        config.exchange.as_str().into(),
        config.binding_key.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| broker(format!("queue.bind {}", config.queue), e))?;
    let _ = bind.close(200, "bound".into()).await;
    Ok(())
}

/// Connects, naming the connection after its role and queue (`auditlog consumer
/// data-mutation-audits`), so that an operator can tell connections apart in
/// `rabbitmqctl list_connections client_properties` and close exactly one.
pub(crate) async fn connect(url: &str, name: String) -> Result<Connection, AmqpError> {
    let properties = lapin::ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, properties)
        .await
        .map_err(|e| AmqpError::Connect {
            url: crate::redact(url),
            reason: e.to_string(),
        })
}

pub(crate) async fn channel(connection: &Connection) -> Result<lapin::Channel, AmqpError> {
    connection
        .create_channel()
        .await
        .map_err(|e| broker("channel.open", e))
}

pub(crate) fn broker(what: impl Into<String>, err: lapin::Error) -> AmqpError {
    AmqpError::Broker {
        what: what.into(),
        reason: err.to_string(),
    }
}
