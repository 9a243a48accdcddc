//! Helpers shared by the auditor's tests: RabbitMQ names private to one run, and an
//! auditor served over real HTTP.

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
    if let Err(err) = auditlog_amqp::delete_topology(config).await {
        eprintln!(
            "could not delete the RabbitMQ names of {}: {err}",
            config.queue
        );
    }
}

/// An auditor serving its router on a free port, with an SQLite store and fresh
/// signing keys in a temporary directory, and what a client needs to talk to it.
pub struct App {
    pub base: String,
    pub client: reqwest::Client,
    pub issuer: auditlog_auth::TokenIssuer,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl App {
    pub async fn spawn() -> App {
        let dir = tempfile::tempdir().unwrap();
        let keys = auditlog_auth::KeyPair::load_or_generate(dir.path()).unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let state = auditlog_auditor::AuditorState::new(
            auditlog_store::open(&url).await.unwrap(),
            auditlog_auth::TokenVerifier::new(&keys).unwrap(),
            tokio::sync::watch::channel(false).1,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, auditlog_auditor::router(state))
                .await
                .unwrap();
        });
        App {
            base,
            client: reqwest::Client::new(),
            issuer: auditlog_auth::TokenIssuer::new(&keys).unwrap(),
            server,
            _dir: dir,
        }
    }

    /// A token for `subject` with `role`.
    pub fn token(&self, subject: &str, role: auditlog_auth::Role) -> String {
        self.issuer
            .issue(&auditlog_auth::Principal::new(subject.into(), role).unwrap())
            .unwrap()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}
