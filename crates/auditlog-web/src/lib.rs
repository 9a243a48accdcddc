//! The website: a single page (users table, each user's history and activity)
//! whose assets are compiled into the binary, served next to a same-origin proxy
//! to the primary API so that the browser needs no CORS and no second address.

use auditlog_http::health::Readiness;
use auditlog_http::metrics::Metrics;
use auditlog_http::{ApiError, MAX_BODY_BYTES, read_body};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// Request headers passed through to the primary API.
const FORWARDED_REQUEST_HEADERS: [header::HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::HeaderName::from_static("x-request-id"),
];
/// Response headers passed back to the browser.
const FORWARDED_RESPONSE_HEADERS: [header::HeaderName; 2] =
    [header::CONTENT_TYPE, header::LOCATION];

/// Where the website sends API calls.
#[derive(Clone)]
pub struct WebState {
    api_url: String,
    http: reqwest::Client,
    metrics: Metrics,
    /// `GET /readyz`: the primary API answers.
    readiness: Readiness,
}

impl WebState {
    /// A website proxying to the primary API at `api_url`.
    pub fn new(api_url: &str) -> Self {
        let api_url = api_url.trim_end_matches('/').to_owned();
        let http = reqwest::Client::new();
        let readiness = api_check(http.clone(), format!("{api_url}/healthz"));
        WebState {
            api_url,
            http,
            metrics: Metrics::default(),
            readiness,
        }
    }

    /// The same website serving `metrics` on `GET /metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }
}

/// The website is ready when the primary API's `/healthz` answers 2xx.
fn api_check(http: reqwest::Client, health_url: String) -> Readiness {
    Readiness::new().with_check(
        "api",
        "start the primary API, or point the website at it (--api-url)",
        move || {
            let (http, url) = (http.clone(), health_url.clone());
            async move {
                let answer = http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("the primary API is unreachable: {e}"))?;
                if answer.status().is_success() {
                    Ok(())
                } else {
                    Err(format!(
                        "the primary API's /healthz answered {}",
                        answer.status()
                    ))
                }
            }
        },
    )
}

/// The website's routes: the three assets, and everything API-shaped proxied.
/// Any other path is a 404: nothing is read from the file system.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(|| asset(INDEX_HTML, "text/html; charset=utf-8")))
        .route(
            "/index.html",
            get(|| asset(INDEX_HTML, "text/html; charset=utf-8")),
        )
        .route(
            "/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/style.css",
            get(|| asset(STYLE_CSS, "text/css; charset=utf-8")),
        )
        .merge(auditlog_http::service_routes(
            state.readiness.clone(),
            state.metrics.clone(),
        ))
        .route("/tokens/{*rest}", any(proxy))
        .route("/api/{*rest}", any(proxy))
        .route("/events/{*rest}", any(proxy))
        .fallback(auditlog_http::not_found)
        .with_state(state)
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn proxy(State(state): State<WebState>, request: Request) -> Result<Response, ApiError> {
    let method = request.method().clone();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let headers = request.headers().clone();
    let body = read_body(request, MAX_BODY_BYTES).await?;
    let method = Method::from_bytes(method.as_str().as_bytes())
        .map_err(|_| ApiError::bad_request("unsupported method"))?;
    let mut outgoing = state
        .http
        .request(method, format!("{}{path_and_query}", state.api_url));
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = headers.get(&name) {
            outgoing = outgoing.header(name, value.clone());
        }
    }
    if !body.is_empty() {
        outgoing = outgoing.body(body);
    }
    let answer = outgoing
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("the primary API is unreachable: {e}")))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).map_err(ApiError::internal)?;
    let mut response_headers = Vec::new();
    for name in FORWARDED_RESPONSE_HEADERS {
        if let Some(value) = answer.headers().get(&name) {
            response_headers.push((name, value.clone()));
        }
    }
    // Streamed, not buffered: exports can be millions of events and the live view
    // is a stream that never ends.
    let body = Body::from_stream(answer.bytes_stream());
    let mut response = (status, body).into_response();
    for (name, value) in response_headers {
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends `path` exactly as written (no client normalises it) and returns the
    /// raw answer.
    async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn paths_climbing_out_of_the_site_are_404_and_read_no_file() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The API address is never reached by these paths.
        let app = router(WebState::new("http://127.0.0.1:9"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        for path in [
            "/../../etc/passwd",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/..%2f..%2fetc/passwd",
            "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "/app.js/../../../etc/passwd",
            "/..\\..\\etc\\passwd",
            "/etc/passwd",
            "/Cargo.toml",
            "/src/lib.rs",
        ] {
            let answer = raw_get(addr, path).await;
            let status = answer.split_whitespace().nth(1).unwrap_or_default();
            assert!(
                status == "404" || status == "400",
                "{path}: {}",
                answer.lines().next().unwrap_or_default()
            );
            assert!(!answer.contains("root:"), "{path} leaked a file");
            assert!(!answer.contains("[package]"), "{path} leaked a file");
        }
        let index = raw_get(addr, "/").await;
        assert!(index.starts_with("HTTP/1.1 200"));
    }
}
