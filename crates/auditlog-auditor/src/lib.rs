//! The auditor service: takes events from a transport's inbox ([`consumer`]) or
//! over HTTP (`ingest`), commits them to the [`AuditStore`] ([`commit`]), and
//! answers the JSON:API query routes (`query`, with exports in `export`), the live
//! tail (`stream`), object history (`history`), the activity histogram
//! (`activity`), the operators' completeness report per producer (`producers`)
//! log streams (`sinks`: `/api/sinks`, delivered by `auditlog-sinks`) and
//! retention (`retention`: policies, legal holds, pruning)
//! under the shared authorisation policy, encrypts personal values per data
//! subject and erases them by deleting the subject's key ([`personal`],
//! `erasure`), and it keeps the log verifiable
//! ([`log`]: the Merkle tree's sealer, signed checkpoints, tiles and proofs), so calling it directly gives no more than
//! going through the primary API.

mod activity;
pub mod commit;
pub mod consumer;
mod document;
mod erasure;
mod export;
pub mod filters;
pub mod group_commit;
mod history;
mod ingest;
pub mod intake;
pub mod log;
pub mod openapi;
pub mod personal;
mod producers;
mod query;
mod reads;
pub mod retention;
pub mod rights;
pub mod sinks;
mod stream;
mod viewer_tokens;

pub use filters::{EventFilters, QueryParams};
pub use query::parse_query_string;

/// Gives the auditor's metrics (store commits, integrity sealing) their `# HELP`
/// text and unit in the recorder that is installed now: call it right after
/// installing one.
pub fn describe_metrics() {
    commit::describe_metrics();
    log::sealer::describe_metrics();
    auditlog_sinks::describe_metrics();
    retention::describe_metrics();
}

use std::sync::Arc;

use auditlog_auth::TokenVerifier;
use auditlog_http::health::Readiness;
use auditlog_http::metrics::Metrics;
use auditlog_http::not_found;
use auditlog_store::AuditStore;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{delete, get, patch, post};

/// How far an event's timestamp may be from its receipt before it is flagged,
/// unless configured (`--clock-skew-tolerance`).
pub const DEFAULT_CLOCK_SKEW_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

/// Largest ingest body: a batch of events is bigger than an API request.
pub const MAX_INGEST_BYTES: usize = 8 * 1024 * 1024;

/// What every auditor handler needs.
#[derive(Clone)]
pub struct AuditorState {
    /// The store: ingest, the sealer's work, the log's proofs and tiles, live
    /// tails (which read up to the settled `seq`, known only on the primary),
    /// rights checks and the record of reads all use it.
    pub store: Arc<dyn AuditStore>,
    /// Where the query routes read events (lists, one event, exports, activity,
    /// object history): [`AuditorState::store`] unless `--query-store-url` names
    /// a read-only one, such as a streaming replica, so that reads do not compete
    /// with ingest.
    pub query_store: Arc<dyn AuditStore>,
    pub verifier: TokenVerifier,
    /// Becomes `true` when the service is stopping: open live tails end then, so
    /// that graceful shutdown does not wait for them.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The registry `GET /metrics` renders.
    pub metrics: Metrics,
    /// What `GET /readyz` checks: the store; the binary adds the consumer and the
    /// sealer when they run.
    pub readiness: Readiness,
    /// The note verifier key `GET /log/key` serves: the sealer's, when one runs.
    pub log_key: Option<String>,
    /// What HTTP ingest checks each event against, and the receipt it records.
    pub intake: Arc<intake::Intake>,
    /// The writer that commits the `audit.read` events of many reads at once;
    /// each read is answered once the commit holding its event is durable.
    pub read_commits: group_commit::ReadCommits,
    /// How far an event's own timestamp may be from the auditor's receipt
    /// before answers flag it (`meta.clockSkewed`): producers' clocks are
    /// trusted only this far.
    pub clock_skew_tolerance: std::time::Duration,
    /// The log streams this auditor delivers (`/api/sinks` shows their status
    /// and sends test events through it); `None` where none run (tests).
    pub sinks: Option<auditlog_sinks::Sinks>,
    /// Signs the viewer tokens `POST /api/viewer-tokens` mints (the data
    /// directory's token key); `None` where the auditor holds no key (tests).
    pub token_issuer: Option<auditlog_auth::TokenIssuer>,
    /// The deployment's retention (the default for tenants without a policy
    /// of their own, the prune interval), as `/api/retention` shows it.
    pub retention: retention::RetentionConfig,
}

impl AuditorState {
    /// State for a service that stops when `stopping` turns `true`.
    pub fn new(
        store: Arc<dyn AuditStore>,
        verifier: TokenVerifier,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let readiness = store_check(Readiness::new(), store.clone());
        // Every request's token is checked against the rights events in the log,
        // so that a demoted or deleted user's token stops working here too.
        let rights = Arc::new(rights::StoreRights::new(store.clone()));
        let store_for_intake = store.clone();
        let read_commits = group_commit::ReadCommits::new(store.clone());
        AuditorState {
            query_store: store.clone(),
            store,
            verifier: verifier.with_rights(rights),
            stopping,
            metrics: Metrics::default(),
            readiness,
            log_key: None,
            intake: Arc::new(intake::Intake::new(store_for_intake)),
            read_commits,
            clock_skew_tolerance: DEFAULT_CLOCK_SKEW_TOLERANCE,
            sinks: None,
            token_issuer: None,
            retention: retention::RetentionConfig::default(),
        }
    }

    /// The same state showing `config` as the deployment's retention.
    pub fn with_retention(mut self, config: retention::RetentionConfig) -> Self {
        self.retention = config;
        self
    }

    /// The same state minting viewer tokens with `issuer`.
    pub fn with_token_issuer(mut self, issuer: auditlog_auth::TokenIssuer) -> Self {
        self.token_issuer = Some(issuer);
        self
    }

    /// The same state flagging events whose timestamp is more than `tolerance`
    /// away from their receipt.
    pub fn with_clock_skew_tolerance(mut self, tolerance: std::time::Duration) -> Self {
        self.clock_skew_tolerance = tolerance;
        self
    }

    /// The same state reading the query routes' events from `store` (a read-only
    /// store, see [`AuditorState::query_store`]); `/readyz` checks it too.
    pub fn with_query_store(mut self, store: Arc<dyn AuditStore>) -> Self {
        self.readiness = self.readiness.with_check(
            "query store",
            "check that the database of --query-store-url runs and accepts connections",
            {
                let store = store.clone();
                move || {
                    let store = store.clone();
                    async move { store.ping().await.map_err(|e| e.to_string()) }
                }
            },
        );
        self.query_store = store;
        self
    }

    /// The same state serving `key` (a note verifier key) on `GET /log/key`.
    pub fn with_log_key(mut self, key: String) -> Self {
        self.log_key = Some(key);
        self
    }

    /// The same state delivering `sinks`, whose failures `/readyz` details.
    pub fn with_sinks(mut self, sinks: auditlog_sinks::Sinks) -> Self {
        self.readiness = sinks::sinks_check(self.readiness, sinks.clone());
        self.sinks = Some(sinks);
        self
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
        .route(
            "/api/data-events/{id}/inclusion",
            get(log::routes::inclusion),
        )
        .route("/api/log/consistency", get(log::routes::consistency))
        .route("/log/checkpoint", get(log::routes::checkpoint))
        .route("/log/key", get(log::routes::key))
        .route("/log/tile/{*path}", get(log::routes::tile))
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
        .route("/api/erasures", post(erasure::erase))
        .route("/api/viewer-tokens", post(viewer_tokens::mint))
        .route("/api/sinks", get(sinks::list).post(sinks::create))
        .route(
            "/api/sinks/{name}",
            get(sinks::get_one)
                .patch(sinks::update)
                .delete(sinks::delete),
        )
        .route("/api/sinks/{name}/test", post(sinks::test))
        .route("/api/retention", get(retention::list))
        .route("/api/retention/{tenant}", patch(retention::set))
        .route(
            "/api/legal-holds",
            get(retention::list_holds).post(retention::place_hold),
        )
        .route("/api/legal-holds/{id}", delete(retention::release_hold))
        .route("/api/prunes", post(retention::prune_now))
        .route("/openapi.json", get(openapi::serve_document))
        .merge(auditlog_http::service_routes(
            state.readiness.clone(),
            state.metrics.clone(),
        ))
        .fallback(not_found)
        .with_state(state)
}
