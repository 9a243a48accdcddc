//! Prometheus metrics: installing the process's one recorder ([`install`]), the
//! layer that counts and times every request of a service ([`track`]), and the
//! `GET /metrics` handler ([`scrape`]) that renders the registry as Prometheus text.
//!
//! The recorder is global to the process (the `metrics` facade is), so `auditlog up`
//! serves the same registry on each of its three services; HTTP metrics carry a
//! `service` label (`api`, `auditor`, `web`) to tell them apart. Other crates
//! record through the `metrics` macros and know nothing of Prometheus.
//!
//! `/metrics` asks for no token: scrapers rarely carry short-lived bearer tokens,
//! and what it shows is counts and timings by route template, never an event, a
//! user id or a raw path. It still tells traffic volumes, so keep it off the public
//! edge (a reverse proxy that does not forward `/metrics`).

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::ApiError;

/// Requests answered, by `service`, `route`, `method` and `status`.
pub const HTTP_REQUESTS: &str = "auditlog_http_requests_total";
/// Time until the answer's head was ready, by the same labels. Streamed answers
/// (exports, the live tail) are timed to their first byte, not their end.
pub const HTTP_DURATION: &str = "auditlog_http_request_duration_seconds";

/// The Prometheus text exposition format's media type.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `route` label of requests that matched no route: their raw paths would let
/// any client create series without bound.
const UNMATCHED_ROUTE: &str = "unmatched";

/// How often histogram samples are folded into their buckets when nobody scrapes;
/// without it they pile up in memory.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Upper bounds of the buckets of every `*_seconds` histogram: request and commit
/// times from a millisecond up, and consumer lag up to ten minutes.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 600.0,
];
/// Upper bounds of the buckets of batch-size histograms (events per batch).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1_000.0, 5_000.0, 10_000.0, 20_000.0,
];

/// The process's metrics registry, as the `/metrics` handler renders it. Cloning is
/// cheap. [`Metrics::default`] is a registry that was never installed: `/metrics`
/// then answers 404 (a router built without metrics, as in unit tests).
#[derive(Clone, Default)]
pub struct Metrics {
    handle: Option<PrometheusHandle>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("installed", &self.handle.is_some())
            .finish()
    }
}

/// The recorder could not be installed (another one already is).
#[derive(Debug, thiserror::Error)]
#[error("the metrics recorder could not be installed: {0}")]
pub struct MetricsError(#[from] BuildError);

/// Installs the Prometheus recorder as the process's global one, with real
/// histogram buckets for `*_seconds` and `*_batch_size` metrics. Call it once, at
/// start, before anything records; then run [`Metrics::upkeep`] in the background.
pub fn install() -> Result<Metrics, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(Metrics {
        handle: Some(handle),
    })
}

/// Gives the HTTP metrics their `# HELP` text and unit. Descriptions go to the
/// recorder installed at the time, so this runs inside [`install`]; other crates'
/// `describe_metrics` are called by whoever installs the recorder, right after.
fn describe() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        metrics::Unit::Count,
        "Requests answered, by service, route template, method and status, including the edge's own refusals"
    );
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time until the answer starts, by service, route template, method and status; streamed answers are timed to their first byte"
    );
    metrics::describe_gauge!(
        crate::server::OPEN_CONNECTIONS,
        metrics::Unit::Count,
        "Open client connections, by service"
    );
    metrics::describe_counter!(
        crate::server::REFUSED_CONNECTIONS,
        metrics::Unit::Count,
        "Connections answered 503 because the service had its maximum open, by service"
    );
}

impl Metrics {
    /// The registry in the Prometheus text format; `None` when none was installed.
    pub fn render(&self) -> Option<String> {
        self.handle.as_ref().map(PrometheusHandle::render)
    }

    /// Folds histogram samples into buckets every [`UPKEEP_EVERY`], forever: spawn
    /// it next to the services (it does nothing when no registry was installed).
    pub async fn upkeep(self) {
        let Some(handle) = self.handle else { return };
        let mut ticker = tokio::time::interval(UPKEEP_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            handle.run_upkeep();
        }
    }
}

/// `GET /metrics`: the registry as Prometheus text. Mount it with the registry as
/// the route's own state: `.route("/metrics", get(scrape).with_state(metrics))`.
pub async fn scrape(State(metrics): State<Metrics>) -> Response {
    match metrics.render() {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(PROMETHEUS_TEXT),
            )],
            text,
        )
            .into_response(),
        None => ApiError::not_found("metrics are not enabled in this process").into_response(),
    }
}

/// `router` with every request counted and timed under `service`. Apply it last
/// (outermost), so that answers of the hardening layers (431, 408) count too.
pub fn track(router: Router, service: &'static str) -> Router {
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        record(request, next, service)
    }))
}

async fn record(request: Request, next: Next, service: &'static str) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |m| m.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    let labels = [
        ("service", service.to_owned()),
        ("route", route),
        ("method", method.to_owned()),
        ("status", response.status().as_str().to_owned()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(elapsed);
    response
}

/// The method as a label; any other than the standard ones is `OTHER`, since
/// clients may invent methods without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use metrics_exporter_prometheus::PrometheusRecorder;
    use tower::ServiceExt;

    fn app() -> Router {
        let router = Router::new()
            .route("/api/users/{id}", get(|| async { "user" }))
            .fallback(crate::not_found);
        track(router, "api")
    }

    async fn call(router: Router, method: Method, path: &str) -> StatusCode {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        router.oneshot(request).await.unwrap().status()
    }

    /// Runs `body` with a private recorder (not the global one, which a test must
    /// not claim) and returns what it rendered.
    async fn rendered_after<F: std::future::Future<Output = ()>>(body: F) -> String {
        let recorder: PrometheusRecorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        // The guard makes the recorder local to this thread; the current-thread
        // runtime of `#[tokio::test]` runs the request on it.
        let _guard = metrics::set_default_local_recorder(&recorder);
        body.await;
        handle.render()
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_method_and_status() {
        let text = rendered_after(async {
            assert_eq!(
                call(app(), Method::GET, "/api/users/1").await,
                StatusCode::OK
            );
            assert_eq!(
                call(app(), Method::GET, "/api/users/2").await,
                StatusCode::OK
            );
            assert_eq!(
                call(app(), Method::GET, "/no/such/path/42").await,
                StatusCode::NOT_FOUND
            );
        })
        .await;
        assert!(
            text.contains(
                r#"auditlog_http_requests_total{service="api",route="/api/users/{id}",method="GET",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"auditlog_http_requests_total{service="api",route="unmatched",method="GET",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains("/api/users/1"), "raw paths leak: {text}");
        assert!(!text.contains("/no/such/path"), "raw paths leak: {text}");
        assert!(
            text.contains(
                r#"auditlog_http_request_duration_seconds_count{service="api",route="/api/users/{id}",method="GET",status="200"} 2"#
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn invented_methods_share_one_label() {
        let text = rendered_after(async {
            let method = Method::from_bytes(b"BREW").unwrap();
            call(app(), method, "/api/users/1").await;
        })
        .await;
        assert!(text.contains(r#"method="OTHER""#), "{text}");
        assert!(!text.contains("BREW"), "{text}");
    }

    #[tokio::test]
    async fn without_an_installed_registry_metrics_is_a_404() {
        let response = scrape(State(Metrics::default())).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
