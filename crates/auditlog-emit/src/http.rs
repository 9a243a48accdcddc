//! The HTTP transport: batches are POSTed as NDJSON to an auditor's ingest endpoint
//! (`POST /api/data-events`), which answers only after its store committed them.

use std::sync::Arc;

use async_trait::async_trait;
use auditlog_event::DataEvent;

use crate::{Transport, TransportError};

/// Supplies the bearer token sent with each batch.
pub type TokenSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Publishes batches to an auditor over HTTP.
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    endpoint: String,
    /// The auditor's `/healthz`, for [`Transport::probe`].
    health: String,
    token: TokenSource,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport to the auditor at `auditor_url` (e.g. `http://127.0.0.1:3001`).
    pub fn new(auditor_url: &str, token: TokenSource) -> Self {
        let base = auditor_url.trim_end_matches('/');
        HttpTransport {
            // An idle pooled connection is dropped (4 s) before the auditor's header
            // timeout (10 s by default) closes it, so a batch never races that close.
            client: reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_secs(4))
                .build()
                .unwrap_or_default(),
            endpoint: format!("{base}/api/data-events"),
            health: format!("{base}/healthz"),
            token,
        }
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn publish(&self, batch: &[DataEvent]) -> Result<(), TransportError> {
        let mut body = String::with_capacity(batch.len() * 256);
        for event in batch {
            body.push_str(&event.to_json());
            body.push('\n');
        }
        let mut request = self
            .client
            .post(&self.endpoint)
            .header("content-type", "application/x-ndjson")
            .body(body);
        if let Some(token) = (self.token)() {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| TransportError::Unavailable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let detail = response.text().await.unwrap_or_default();
        if status.as_u16() == 422 {
            // Every event was invalid: retrying cannot help, and the events are
            // produced by our own code, so this is a bug worth shouting about.
            tracing::error!(%detail, events = batch.len(), "the auditor rejected every event of a batch");
            return Ok(());
        }
        Err(TransportError::Unavailable(format!(
            "auditor answered {status}: {detail}"
        )))
    }

    /// The auditor's `/healthz` answers 2xx.
    async fn probe(&self) -> Result<(), TransportError> {
        let response =
            self.client.get(&self.health).send().await.map_err(|e| {
                TransportError::Unavailable(format!("the auditor is unreachable: {e}"))
            })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(TransportError::Unavailable(format!(
                "the auditor's /healthz answered {}",
                response.status()
            )))
        }
    }
}
