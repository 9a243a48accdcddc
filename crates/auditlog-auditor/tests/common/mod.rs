//! Helpers shared by the auditor's transport tests.

#![allow(dead_code)]

use auditlog_amqp::AmqpConfig;

/// The broker the tests use (the machine's RabbitMQ by default).
pub fn amqp_url() -> String {
    std::env::var("AUDITLOG_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Topology names no other run uses.
pub fn private_config() -> AmqpConfig {
    let tag = uuid::Uuid::now_v7().simple().to_string();
    AmqpConfig {
        exchange: format!("api-stream-test-{tag}"),
        queue: format!("data-mutation-audits-test-{tag}"),
        dead_letter_queue: format!("data-mutation-audits-test-{tag}.dead-letter"),
        ..AmqpConfig::new(amqp_url())
    }
}

/// Deletes a test run's exchange and queues.
pub async fn delete_topology(config: &AmqpConfig) {
    let Ok(connection) =
        lapin::Connection::connect(&config.url, lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for queue in [&config.queue, &config.dead_letter_queue] {
            let _ = channel
                .queue_delete(queue.as_str().into(), Default::default())
                .await;
        }
        let _ = channel
            .exchange_delete(config.exchange.as_str().into(), Default::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
}
