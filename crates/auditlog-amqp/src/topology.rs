//! Declaring exchanges and queues so that existing ones are adopted as they are.
//! A passive declare asks whether the object exists without touching it; RabbitMQ
//! closes the channel when it does not, so each probe uses a channel of its own.
//!
//! A queue that does not exist is declared durable, of the configured
//! [`QueueType`]: a quorum queue (replicated on a cluster) by default, with a
//! delivery limit after which the broker dead-letters a message that keeps
//! coming back, to the dead-letter queue. An existing queue, such as the
//! prototype's non-durable classic one, is used as it was declared: RabbitMQ
//! refuses to re-declare a queue with other arguments, and changing a queue's
//! type means moving its messages, which is the operator's call.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Connection, ExchangeKind};

use crate::{AmqpConfig, AmqpError, QueueType};

/// Deliveries of one message a quorum queue allows before it dead-letters it: a
/// message that made its auditors crash or lose their connection this many times
/// is set aside (in the dead-letter queue, where an operator can look at it)
/// rather than taking the next auditor down too. Well above what restarts and
/// broker fail-overs cause.
pub const DELIVERY_LIMIT: i64 = 20;

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

/// Whether the queue `name` exists (a passive declare on a channel of its own).
async fn queue_declared(connection: &Connection, name: &str) -> Result<bool, AmqpError> {
    let probe = channel(connection).await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let exists = probe
        .queue_declare(short(name)?, passive, FieldTable::default())
        .await
        .is_ok();
    // A missing queue has closed the channel already.
    if exists {
        let _ = probe.close(200, "probe done".into()).await;
    }
    Ok(exists)
}

/// Makes sure a queue exists: an existing one is adopted as it was declared, a
/// missing one is declared durable with `arguments`.
pub(crate) async fn queue(
    connection: &Connection,
    name: &str,
    arguments: FieldTable,
) -> Result<(), AmqpError> {
    if queue_declared(connection, name).await? {
        return Ok(());
    }
    let declare = channel(connection).await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    match declare
        .queue_declare(short(name)?, durable, arguments)
        .await
    {
        Ok(_) => {
            let _ = declare.close(200, "declared".into()).await;
            Ok(())
        }
        // Another process declared it in between, perhaps otherwise (RabbitMQ then
        // answers PRECONDITION_FAILED and closes the channel): adopt theirs.
        Err(err) if queue_declared(connection, name).await? => {
            tracing::debug!(%err, queue = name, "the queue was declared meanwhile; adopting it");
            Ok(())
        }
        Err(err) => Err(broker(format!("queue.declare {name}"), err)),
    }
}

/// The arguments a new queue of `kind` is declared with; `dead_letters` names
/// where the broker sends what the queue gives up on (for the auditor's queue;
/// `None` for the dead-letter queue itself).
pub(crate) fn queue_arguments(
    kind: QueueType,
    dead_letters: Option<&str>,
) -> Result<FieldTable, AmqpError> {
    let mut arguments = FieldTable::default();
    if kind == QueueType::Quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        if let Some(dead_letters) = dead_letters {
            arguments.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(DELIVERY_LIMIT),
            );
            // The default exchange routes by queue name.
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(LongString::from("")),
            );
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(LongString::from(short(dead_letters)?.as_str())),
            );
        }
    }
    Ok(arguments)
}

/// A queue name as AMQP carries it: at most 255 bytes.
fn short(name: &str) -> Result<ShortString, AmqpError> {
    ShortString::try_new(name).map_err(|e| AmqpError::Broker {
        what: format!("queue name {name:?}"),
        reason: e.to_string(),
    })
}

/// The auditor's whole topology: exchange, dead-letter queue, queue, binding. The
/// dead-letter queue comes first, so that the broker has somewhere to put what
/// the queue dead-letters from its first message on.
pub(crate) async fn auditor(connection: &Connection, config: &AmqpConfig) -> Result<(), AmqpError> {
    exchange(connection, &config.exchange).await?;
    queue(
        connection,
        &config.dead_letter_queue,
        queue_arguments(config.queue_type, None)?,
    )
    .await?;
    queue(
        connection,
        &config.queue,
        queue_arguments(config.queue_type, Some(&config.dead_letter_queue))?,
    )
    .await?;
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
