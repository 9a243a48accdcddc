//! The auditor service: takes events from a transport's inbox ([`consumer`]) or
//! over HTTP (`ingest`), commits them to the [`AuditStore`] ([`commit`]), and
//! answers the JSON:API query routes (`query`, with exports in `export`), the live
//! tail (`stream`), object history (`history`), the activity histogram
//! (`activity`) and the admins' completeness report per producer (`producers`)
//! under the shared authorisation policy, so calling it directly gives no more than
//! going through the primary API.

mod activity;
pub mod commit;
pub mod consumer;
mod export;
pub mod filters;
mod history;
mod ingest;
pub mod integrity;
pub mod openapi;
mod producers;
mod query;
mod reads;
mod stream;

pub use filters::{EventFilters, QueryParams};
pub use query::parse_query_string;

/// Gives the auditor's metrics (store commits, integrity sealing) their `# HELP`
/// text and unit in the recorder that is installed now: call it right after
/// installing one.
pub fn describe_metrics() {
    commit::describe_metrics();
    integrity::describe_metrics();
}

use std::sync::Arc;

use auditlog_auth::TokenVerifier;
use auditlog_http::health::Readiness;
use auditlog_http::metrics::Metrics;
use auditlog_http::not_found;
use auditlog_store::AuditStore;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;

/// Largest ingest body: a batch of events is bigger than an API request.
pub const MAX_INGEST_BYTES: usize = 8 * 1024 * 1024;

/// What every auditor handler needs.
#[derive(Clone)]
pub struct AuditorState {
    pub store: Arc<dyn AuditStore>,
    pub verifier: TokenVerifier,
    /// Becomes `true` when the service is stopping: open live tails end then, so
    /// that graceful shutdown does not wait for them.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The registry `GET /metrics` renders.
    pub metrics: Metrics,
    /// What `GET /readyz` checks: the store; the binary adds the consumer when one
    /// runs.
    pub readiness: Readiness,
}

impl AuditorState {
    /// State for a service that stops when `stopping` turns `true`.
    pub fn new(
        store: Arc<dyn AuditStore>,
        verifier: TokenVerifier,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let readiness = store_check(Readiness::new(), store.clone());
        AuditorState {
            store,
            verifier,
            stopping,
            metrics: Metrics::default(),
            readiness,
        }
    }

    /// The same state serving `metrics` on `GET /metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }
}

/// `readiness` plus a check that `store` answers.
fn store_check(readiness: Readiness, store: Arc<dyn AuditStore>) -> Readiness {
    readiness.with_check(
        "store",
        "check that the audit store's database runs and accepts connections (--store-url)",
        move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| e.to_string()) }
        },
    )
}

impl FromRef<AuditorState> for TokenVerifier {
    fn from_ref(state: &AuditorState) -> Self {
        state.verifier.clone()
    }
}

/// The auditor's HTTP routes.
pub fn router(state: AuditorState) -> Router {
    Router::new()
        .route("/api/data-events", get(query::list).post(ingest::ingest))
        // Fixed segments win over `{id}` in the router, whatever the order here.
        .route("/api/data-events/stream", get(stream::stream))
        .route("/api/data-events/activity", get(activity::activity))
        .route("/api/data-events/{id}", get(query::get_one))
        .route("/api/data-events/{id}/proof", get(integrity::proof))
        .route("/events/by/{actor_type}/{actor_id}", get(query::by_actor))
        .route(
            "/events/on/{target_type}/{target_id}",
            get(query::on_target),
        )
        .route(
            "/api/{target_type}/{target_id}/data-events",
            get(query::on_target_prototype),
        )
        .route("/api/{target_type}/{target_id}/state", get(history::state))
        .route("/api/{target_type}/{target_id}/diff", get(history::diff))
        .route("/api/producers", get(producers::list))
        .route("/api/integrity/head", get(integrity::head))
        .route("/openapi.json", get(openapi::serve_document))
        .merge(auditlog_http::service_routes(
            state.readiness.clone(),
            state.metrics.clone(),
        ))
        .fallback(not_found)
        .with_state(state)
}
