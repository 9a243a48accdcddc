//! The primary API, the prototype's demo application: dev tokens, users and notes
//! over JSON:API, and the audit query routes proxied to the auditor. Its data layer
//! is user-aware ([`users`], [`notes`]): every repository call takes the acting
//! principal and emits the matching audit event itself.

mod audit;
mod db;
pub mod notes;
pub mod openapi;
pub mod outbox;
mod routes;
pub mod users;

pub use audit::{Actor, Recorder, SOURCE};
pub use db::{AppDb, OpenError};
pub use routes::router;

use auditlog_auth::{TokenIssuer, TokenVerifier};
use auditlog_http::AllowedHosts;
use auditlog_http::health::Readiness;
use auditlog_http::metrics::Metrics;
use axum::extract::FromRef;

/// Errors of the data layer, each mapped once to an HTTP status in `routes`.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No such object.
    #[error("not found")]
    NotFound,
    /// The principal may not do this; says why.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The change collides with another object, e.g. an email already in use.
    #[error("{0}")]
    Conflict(String),
    /// The input breaks a rule; says which.
    #[error("{0}")]
    Invalid(String),
    /// The database failed; logged, never shown to clients in detail.
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for DataError {
    fn from(err: sqlx::Error) -> Self {
        if let Some(db) = err.as_database_error()
            && db.is_unique_violation()
        {
            return DataError::Conflict("that email address is already in use".into());
        }
        DataError::Database(err.to_string())
    }
}

/// What every handler of the primary API needs.
#[derive(Clone)]
pub struct ApiState {
    pub users: users::Users,
    pub notes: notes::Notes,
    pub issuer: TokenIssuer,
    pub verifier: TokenVerifier,
    /// Base URL of the auditor, for the proxied query routes.
    pub auditor_url: String,
    pub http: reqwest::Client,
    /// Whether `GET /tokens/:id` hands out tokens (the demo's stand-in for a
    /// login); off in production, where tokens come from a real issuer.
    pub dev_tokens: bool,
    /// The host names `GET /tokens/:id` answers for (see [`AllowedHosts`]).
    pub dev_token_hosts: AllowedHosts,
    /// The registry `GET /metrics` renders.
    pub metrics: Metrics,
    /// What `GET /readyz` checks: the database; the binary adds the transport.
    pub readiness: Readiness,
    /// What `GET /openapi.json` serves.
    document: openapi::DocumentJson,
}

impl ApiState {
    /// The state of a primary API whose audit query routes are proxied to the
    /// auditor at `auditor_url` and documented with the operations of
    /// `auditor_document`, the auditor's OpenAPI document.
    pub fn new(
        db: AppDb,
        recorder: Recorder,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
        auditor_url: String,
        auditor_document: &utoipa::openapi::OpenApi,
    ) -> Self {
        let database = db.clone();
        let readiness = Readiness::new().with_check(
            "database",
            "check that the primary API's database runs and accepts connections (--app-db-url)",
            move || {
                let database = database.clone();
                async move { database.ping().await.map_err(|e| e.to_string()) }
            },
        );
        let users = users::Users::new(db.clone(), recorder.clone());
        ApiState {
            // Every request's token is checked against the users table, so that
            // a demoted or deleted user's token stops working at once.
            verifier: verifier.with_rights(std::sync::Arc::new(users.clone())),
            users,
            notes: notes::Notes::new(db, recorder),
            issuer,
            auditor_url: auditor_url.trim_end_matches('/').to_owned(),
            // Idle connections are dropped before the auditor's header timeout would
            // close them, so a proxied request never races that close.
            http: reqwest::Client::builder()
                .pool_idle_timeout(auditlog_http::server::CLIENT_POOL_IDLE)
                .build()
                .unwrap_or_default(),
            dev_tokens: true,
            dev_token_hosts: AllowedHosts::default(),
            metrics: Metrics::default(),
            readiness,
            document: openapi::document_json(auditor_document),
        }
    }

    /// The same state serving `metrics` on `GET /metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Switches `GET /tokens/:id` on or off (it answers 404 when off).
    pub fn with_dev_tokens(mut self, on: bool) -> Self {
        self.dev_tokens = on;
        self
    }

    /// Lets `GET /tokens/:id` answer requests for `hosts` only (403 otherwise).
    pub fn with_dev_token_hosts(mut self, hosts: AllowedHosts) -> Self {
        self.dev_token_hosts = hosts;
        self
    }
}

impl FromRef<ApiState> for TokenVerifier {
    fn from_ref(state: &ApiState) -> Self {
        state.verifier.clone()
    }
}

/// What the crate's own tests build a primary API from.
#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use std::path::Path;

    use auditlog_auth::{KeyPair, TokenIssuer, TokenVerifier};

    use crate::{ApiState, AppDb, Recorder};

    /// A primary API on a fresh SQLite database in `dir`, proxying to `auditor_url`
    /// and documenting the proxied routes with `auditor_document`.
    pub(crate) async fn state(
        dir: &Path,
        auditor_url: &str,
        auditor_document: &utoipa::openapi::OpenApi,
    ) -> ApiState {
        let keys = KeyPair::load_or_generate(dir).unwrap();
        let url = format!("sqlite://{}", dir.join("app.db").display());
        ApiState::new(
            AppDb::open(&url).await.unwrap(),
            Recorder::disabled(),
            TokenIssuer::new(&keys).unwrap(),
            TokenVerifier::new(&keys).unwrap(),
            auditor_url.into(),
            auditor_document,
        )
    }

    /// Serves `router` on a free local port; its base URL.
    pub(crate) async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }
}
