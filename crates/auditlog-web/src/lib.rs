//! The website: a single page (users table, each user's history and activity)
//! whose assets are compiled into the binary, served next to a same-origin proxy
//! to the primary API so that the browser needs no CORS and no second address.

use auditlog_http::health::Readiness;
use auditlog_http::metrics::Metrics;
use auditlog_http::request_id::REQUEST_ID_HEADER;
use auditlog_http::{AllowedHosts, ApiError, MAX_BODY_BYTES, RequestId, read_body};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");
const VIEWER_HTML: &str = include_str!("../assets/viewer.html");
const VIEWER_JS: &str = include_str!("../assets/viewer.js");
const VIEWER_CSS: &str = include_str!("../assets/viewer.css");

/// Request headers passed through to the primary API. `X-Request-Id` is not among
/// them: the website sends its own id for the request (which the primary API
/// keeps as the client's), so its log lines and the API's can be joined.
const FORWARDED_REQUEST_HEADERS: [header::HeaderName; 3] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];
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
    /// The host names `/tokens/…` is passed on for (see [`AllowedHosts`]).
    token_hosts: AllowedHosts,
}

impl WebState {
    /// A website proxying to the primary API at `api_url`.
    pub fn new(api_url: &str) -> Self {
        let api_url = api_url.trim_end_matches('/').to_owned();
        // Idle connections are dropped before the primary API's header timeout
        // would close them, so a request never races that close.
        let http = reqwest::Client::builder()
            .pool_idle_timeout(auditlog_http::server::CLIENT_POOL_IDLE)
            .build()
            .unwrap_or_default();
        let readiness = api_check(http.clone(), format!("{api_url}/healthz"));
        WebState {
            api_url,
            http,
            metrics: Metrics::default(),
            readiness,
            token_hosts: AllowedHosts::default(),
        }
    }

    /// The same website passing `/tokens/…` on only for requests to `hosts`.
    pub fn with_token_hosts(mut self, hosts: AllowedHosts) -> Self {
        self.token_hosts = hosts;
        self
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

/// The website's routes: the three assets, and everything API-shaped proxied
/// (`/tokens/…`, `/api/…`, `/events/…`, `/log/…`). Any other path is a 404:
/// nothing is read from the file system.
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
        // The embeddable viewer: its page may be framed by any site (the token
        // in its URL is what it shows; nothing on it acts).
        .route("/viewer", get(viewer_page))
        .route(
            "/viewer.js",
            get(|| asset(VIEWER_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/viewer.css",
            get(|| asset(VIEWER_CSS, "text/css; charset=utf-8")),
        )
        .merge(auditlog_http::service_routes(
            state.readiness.clone(),
            state.metrics.clone(),
        ))
        .route("/tokens/{*rest}", any(token_proxy))
        .route("/api/{*rest}", any(proxy))
        .route("/events/{*rest}", any(proxy))
        // The verifiable log's key and checkpoint, which the page checks itself.
        .route("/log/{*rest}", any(proxy))
        .fallback(auditlog_http::not_found)
        .layer(axum::middleware::from_fn(page_policy))
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

/// The page's security policy: scripts, styles and connections from this origin
/// only (no inline script, no `eval`), images from here or `data:` (the empty
/// icon), never framed. The embeddable viewer sets its own
/// ([`VIEWER_SECURITY_POLICY`]).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The viewer's policy: the page's, except that any site may frame it, which is
/// what it is for. A viewer token is read-only and short-lived, and the page
/// has nothing to click that changes anything, so framing it cannot trick its
/// reader into an action.
pub const VIEWER_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors *";

/// Sets [`CONTENT_SECURITY_POLICY`] on every answer of the website (proxied ones
/// too: they are read by the page, never shown as pages) that has not set its
/// own (the viewer).
async fn page_policy(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if !response
        .headers()
        .contains_key(header::CONTENT_SECURITY_POLICY)
    {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    response
}

/// `GET /viewer`: the embeddable viewer's page, frameable by any site (its
/// `frame-ancestors *`, which the edge then leaves without `X-Frame-Options`).
async fn viewer_page() -> Response {
    let mut response = asset(VIEWER_HTML, "text/html; charset=utf-8").await;
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(VIEWER_SECURITY_POLICY),
    );
    response
}

/// `/tokens/…` (the demo's login) for requests to an allowed host name only: a
/// rebinding page on another site must not obtain a token through the browser.
async fn token_proxy(
    State(state): State<WebState>,
    request: Request,
) -> Result<Response, ApiError> {
    if !state.token_hosts.permit(request.headers()) {
        return Err(state.token_hosts.refusal());
    }
    proxy(State(state), request).await
}

async fn proxy(State(state): State<WebState>, request: Request) -> Result<Response, ApiError> {
    let method = request.method().clone();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let headers = request.headers().clone();
    let request_id = request.extensions().get::<RequestId>().cloned();
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
    if let Some(value) = request_id.as_ref().and_then(RequestId::header_value) {
        outgoing = outgoing.header(REQUEST_ID_HEADER, value);
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

    /// Serves `app` on a free local port; its address.
    async fn serve(app: Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn the_logs_checkpoint_reaches_the_page_as_the_api_sent_it() {
        // Arrange: a stand-in primary API that wants the token and answers text/plain.
        let note = "log.example\n7\nAAAA\n\n\u{2014} log.example AQID\n";
        let api = serve(Router::new().route(
            "/log/checkpoint",
            get(move |headers: axum::http::HeaderMap| async move {
                if headers.get(header::AUTHORIZATION).is_none() {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
            }),
        ))
        .await;
        let web = serve(router(WebState::new(&format!("http://{api}")))).await;

        // Act
        let answer = reqwest::Client::new()
            .get(format!("http://{web}/log/checkpoint"))
            .header("authorization", "Bearer t")
            .send()
            .await
            .unwrap();

        // Assert
        assert_eq!(answer.status().as_u16(), 200);
        assert_eq!(
            answer.headers()["content-type"].to_str().unwrap(),
            "text/plain; charset=utf-8"
        );
        assert_eq!(answer.text().await.unwrap(), note);
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
