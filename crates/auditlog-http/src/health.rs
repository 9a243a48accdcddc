//! Readiness: `GET /readyz` runs a service's checks (its store, its transport, the
//! service it proxies to…) at once, each bounded by [`CHECK_TIMEOUT`], and answers
//! 200 with each check's outcome, or 503 with a JSON:API `errors` entry per failed
//! check saying what is not ready and what to do. `/healthz` (the process is alive)
//! stays a plain "ok" in each router: a load balancer should stop sending traffic to
//! a service that is not ready, not restart it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::{ErrorObject, json_api};

/// Longest a check may take before it counts as failed: a probe that hangs is as
/// unready as one that fails, and the answer must come before the prober gives up.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type Probe = Arc<dyn Fn() -> ProbeFuture + Send + Sync>;
type Detail = Arc<dyn Fn() -> Value + Send + Sync>;

/// One named check.
#[derive(Clone)]
struct Check {
    /// Short name, shown as the check's key and the error's `code` (`store`).
    name: &'static str,
    /// What an operator should do when it fails.
    remedy: &'static str,
    probe: Probe,
}

/// The checks of one service. Cloning is cheap; with no checks the service is
/// always ready.
#[derive(Clone)]
pub struct Readiness {
    checks: Vec<Check>,
    /// Named details shown under `meta.details` whatever they say: what an
    /// operator should see that must not make the service unready (a sink whose
    /// receiver is down).
    details: Vec<(&'static str, Detail)>,
    /// See [`CHECK_TIMEOUT`].
    timeout: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            checks: Vec::new(),
            details: Vec::new(),
            timeout: CHECK_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.checks.iter().map(|c| c.name))
            .finish()
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub name: &'static str,
    /// `Err` says why the check failed.
    pub result: Result<(), String>,
}

impl Readiness {
    pub fn new() -> Self {
        Readiness::default()
    }

    /// The same checks, each bounded by `timeout` instead of [`CHECK_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a check called `name`: `probe` says `Err(why)` when the dependency is
    /// not usable; `remedy` tells the operator what to do then.
    pub fn with_check<F, Fut>(mut self, name: &'static str, remedy: &'static str, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push(Check {
            name,
            remedy,
            probe: Arc::new(move || Box::pin(probe())),
        });
        self
    }

    /// Adds a detail called `name`, shown in every answer under `meta.details`
    /// and never failing the service.
    pub fn with_detail<F>(mut self, name: &'static str, detail: F) -> Self
    where
        F: Fn() -> Value + Send + Sync + 'static,
    {
        self.details.push((name, Arc::new(detail)));
        self
    }

    /// The details' current values, by name.
    fn details(&self) -> Map<String, Value> {
        self.details
            .iter()
            .map(|(name, detail)| ((*name).to_owned(), detail()))
            .collect()
    }

    /// Runs every check at once, each bounded by the timeout.
    pub async fn run(&self) -> Vec<Outcome> {
        let timeout = self.timeout;
        let runs = self.checks.iter().map(|check| async move {
            let result = match tokio::time::timeout(timeout, (check.probe)()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} s", timeout.as_secs_f64())),
            };
            Outcome {
                name: check.name,
                result,
            }
        });
        futures_util::future::join_all(runs).await
    }

    /// The `/readyz` answer: 200 when every check passed, else 503 naming each
    /// failed check.
    pub async fn answer(&self) -> Response {
        let outcomes = self.run().await;
        let mut checks = Map::new();
        let mut errors = Vec::new();
        for (outcome, check) in outcomes.iter().zip(&self.checks) {
            match &outcome.result {
                Ok(()) => {
                    checks.insert(outcome.name.into(), json!("ok"));
                }
                Err(why) => {
                    checks.insert(outcome.name.into(), json!(format!("failed: {why}")));
                    errors.push(ErrorObject {
                        status: StatusCode::SERVICE_UNAVAILABLE.as_str().to_owned(),
                        title: "Not ready".to_owned(),
                        detail: format!("{} is not ready: {why}. {}", outcome.name, check.remedy),
                        code: Some(outcome.name.to_owned()),
                        source: None,
                    });
                }
            }
        }
        let mut meta = Map::new();
        meta.insert("checks".into(), Value::Object(checks));
        if !self.details.is_empty() {
            meta.insert("details".into(), Value::Object(self.details()));
        }
        if errors.is_empty() {
            meta.insert("status".into(), json!("ready"));
            json_api(StatusCode::OK, &json!({ "meta": meta }))
        } else {
            meta.insert("status".into(), json!("not ready"));
            let body = json!({ "errors": errors, "meta": meta });
            json_api(StatusCode::SERVICE_UNAVAILABLE, &body)
        }
    }
}

/// `GET /readyz`. Mount it with the service's checks as the route's own state:
/// `.route("/readyz", get(readyz).with_state(readiness))`.
pub async fn readyz(State(readiness): State<Readiness>) -> Response {
    readiness.answer().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;

    async fn body(response: Response) -> (StatusCode, Value) {
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_service_whose_checks_pass_is_ready_and_lists_them() {
        let readiness = Readiness::new()
            .with_check("store", "start it", || async { Ok(()) })
            .with_check("transport", "start it", || async { Ok(()) });
        let (status, body) = body(readiness.answer().await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["meta"]["checks"]["store"], "ok");
        assert_eq!(body["meta"]["checks"]["transport"], "ok");
        assert!(body.get("errors").is_none());
    }

    #[tokio::test]
    async fn a_failed_check_is_a_503_naming_it_and_what_to_do() {
        let readiness = Readiness::new()
            .with_check("store", "check that the database runs", || async {
                Err("connection refused".to_owned())
            })
            .with_check("transport", "start it", || async { Ok(()) });
        let (status, body) = body(readiness.answer().await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["code"], "store");
        let detail = errors[0]["detail"].as_str().unwrap();
        assert!(detail.contains("connection refused"), "{detail}");
        assert!(detail.contains("check that the database runs"), "{detail}");
        assert_eq!(body["meta"]["checks"]["transport"], "ok");
    }

    #[tokio::test]
    async fn details_are_shown_without_making_the_service_unready() {
        let readiness = Readiness::new()
            .with_check("store", "start it", || async { Ok(()) })
            .with_detail("sinks", || json!({"failing": ["siem"]}));
        let (status, body) = body(readiness.answer().await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["meta"]["details"]["sinks"]["failing"][0], "siem");
    }

    #[tokio::test]
    async fn a_check_that_hangs_fails_after_the_timeout() {
        let readiness = Readiness::new()
            .with_timeout(Duration::from_millis(50))
            .with_check("broker", "restart it", || async {
                std::future::pending::<()>().await;
                Ok(())
            });
        let outcomes = readiness.run().await;
        assert_eq!(outcomes[0].name, "broker");
        assert!(
            outcomes[0]
                .result
                .as_ref()
                .unwrap_err()
                .contains("no answer")
        );
    }

    #[tokio::test]
    async fn no_checks_means_ready() {
        let (status, _) = body(Readiness::new().answer().await).await;
        assert_eq!(status, StatusCode::OK);
    }
}
