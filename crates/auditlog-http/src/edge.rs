//! Layers every service puts in front of its routes against hostile clients: a
//! limit on the total size of request headers (431), a time limit on producing an
//! answer (408), CORS that lets only the website's origin call from a browser,
//! and the headers that keep a browser from framing or sniffing an answer
//! ([`SECURITY_HEADERS`]); and the host check of local-only routes
//! ([`AllowedHosts`]).
//! Body limits live in [`crate::read_body`] (413), where the body is read.
//! [`harden`] also puts every request under its [`crate::request_id`].

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::ApiError;

/// Largest total size of a request's header names and values. A bearer token is
/// well under 1 KiB; 16 KiB leaves room for cookies and proxies' additions.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long a request may take until its answer starts. Streamed answers (exports,
/// the live tail) start at once and may then run as long as they need.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The website's origins allowed by default.
pub const DEFAULT_WEB_ORIGINS: [&str; 2] = ["http://127.0.0.1:3002", "http://localhost:3002"];

/// How a service's edge is hardened.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Origins a browser may call from (the website's); any other gets no CORS
    /// headers, so the browser refuses to hand it the answer.
    pub allowed_origins: Vec<HeaderValue>,
    /// See [`REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// See [`MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// What each connection is held to; see [`crate::server`].
    pub connections: crate::ConnectionLimits,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            allowed_origins: DEFAULT_WEB_ORIGINS
                .iter()
                .map(|o| HeaderValue::from_static(o))
                .collect(),
            request_timeout: REQUEST_TIMEOUT,
            max_header_bytes: MAX_HEADER_BYTES,
            connections: crate::ConnectionLimits::default(),
        }
    }
}

impl EdgeConfig {
    /// The default limits with these allowed origins (e.g. `https://audit.example.com`).
    pub fn with_origins<S: AsRef<str>>(origins: &[S]) -> Result<Self, String> {
        let allowed_origins = origins
            .iter()
            .map(|o| {
                let o = o.as_ref().trim().trim_end_matches('/');
                if !(o.starts_with("http://") || o.starts_with("https://")) {
                    return Err(format!(
                        "`{o}` is not an origin such as http://127.0.0.1:3002"
                    ));
                }
                HeaderValue::from_str(o).map_err(|_| format!("`{o}` is not a valid origin"))
            })
            .collect::<Result<_, _>>()?;
        Ok(EdgeConfig {
            allowed_origins,
            ..EdgeConfig::default()
        })
    }
}

/// The host names a local-only route answers for (the demo's token handout). A
/// page on another site can make a browser send requests to 127.0.0.1 under its
/// own name (DNS rebinding: `attacker.example` resolves to 127.0.0.1), and the
/// browser then lets that page read the answers; checking `Host` is what tells
/// such a request from one typed into the address bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// `localhost`, `127.0.0.1` and `::1`, and the addresses `listening` on (except
    /// unspecified ones such as 0.0.0.0), and the names in `extra`.
    pub fn local<S: AsRef<str>>(listening: &[std::net::SocketAddr], extra: &[S]) -> Self {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
        for addr in listening.iter().filter(|a| !a.ip().is_unspecified()) {
            hosts.push(match addr {
                std::net::SocketAddr::V4(a) => a.ip().to_string(),
                std::net::SocketAddr::V6(a) => format!("[{}]", a.ip()),
            });
        }
        hosts.extend(
            extra
                .iter()
                .map(|h| h.as_ref().trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty()),
        );
        hosts.sort();
        hosts.dedup();
        AllowedHosts(hosts)
    }

    /// Whether the request's `Host` (without its port) is one of these names. A
    /// request without exactly one `Host` is not.
    pub fn permit(&self, headers: &axum::http::HeaderMap) -> bool {
        let mut values = headers.get_all(header::HOST).iter();
        let (Some(host), None) = (values.next(), values.next()) else {
            return false;
        };
        let Ok(host) = host.to_str() else {
            return false;
        };
        let host = host.trim().to_ascii_lowercase();
        // `[::1]:3001` keeps its brackets; `name:3001` loses its port.
        let name = match host.rfind(':') {
            Some(colon) if !host[colon..].contains(']') => &host[..colon],
            _ => host.as_str(),
        };
        self.0.iter().any(|allowed| allowed == name)
    }

    /// The names, for an error message.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// The 403 of a request for another host name, saying how to allow it.
    pub fn refusal(&self) -> ApiError {
        ApiError::forbidden(format!(
            "demo tokens are handed out only to requests for {}; add this host name with --dev-token-hosts",
            self.0.join(", ")
        ))
    }
}

impl Default for AllowedHosts {
    fn default() -> Self {
        AllowedHosts::local::<&str>(&[], &[])
    }
}

/// `router` behind the header limit, the timeout and CORS, every request with its
/// [`crate::RequestId`].
pub fn harden(router: Router, config: &EdgeConfig) -> Router {
    let max_header_bytes = config.max_header_bytes;
    let timeout = config.request_timeout;
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(config.allowed_origins.clone()))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::LOCATION,
            header::CONTENT_DISPOSITION,
            crate::request_id::REQUEST_ID_HEADER,
        ])
        .max_age(Duration::from_secs(600));
    router
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            time_limit(request, next, timeout)
        }))
        .layer(middleware::from_fn(security_headers))
        .layer(cors)
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            header_limit(request, next, max_header_bytes)
        }))
        // Outermost, so that every answer (a 431 or 408 too) carries an id and is logged.
        .layer(middleware::from_fn(crate::request_id::assign))
}

/// The headers that tell a browser how little an answer may do, where the answer
/// has not set its own: not to be framed by any page (clickjacking), not to
/// guess a content type other than the one sent, not to leak the URL (which may
/// hold filters) to another site, and, for the APIs' JSON, no content policy at
/// all. The website sets its own `Content-Security-Policy` for its pages.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
];

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // An answer whose own policy lets some sites frame it (the embeddable
    // viewer) is framed by that policy alone: `X-Frame-Options` cannot name
    // those sites, and its `DENY` would contradict the policy in older browsers.
    let framed_by_its_policy = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|policy| {
            policy.contains("frame-ancestors") && !policy.contains("frame-ancestors 'none'")
        });
    for (name, value) in SECURITY_HEADERS {
        if name == "x-frame-options" && framed_by_its_policy {
            continue;
        }
        if !headers.contains_key(name) {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
    }
    response
}

/// 431 when the request's headers together exceed `limit` bytes. hyper refuses
/// what does not fit its read buffer (~400 KiB) by itself; this is the tighter,
/// answered-in-JSON:API limit.
async fn header_limit(request: Request, next: Next, limit: usize) -> Response {
    let bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.as_bytes().len() + 4)
        .sum();
    if bytes > limit {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request header fields too large",
            format!("the request's headers take {bytes} bytes; at most {limit} are accepted"),
        )
        .into_response();
    }
    next.run(request).await
}

/// 408 when the answer has not started within `limit`. Only the start is timed: a
/// streamed body (export, live tail) runs on once its headers are sent.
async fn time_limit(request: Request, next: Next, limit: Duration) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "Request timeout",
            format!(
                "the request was not answered within {} s; try a narrower query",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    fn app(timeout: Duration) -> Router {
        let router = Router::new()
            .route("/fast", get(|| async { "ok" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "late"
                }),
            )
            .route(
                "/stream",
                get(|| async {
                    let chunks = futures_util::stream::unfold(0u8, |n| async move {
                        if n == 3 {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((Ok::<_, std::convert::Infallible>(vec![b'a' + n]), n + 1))
                    });
                    Body::from_stream(chunks)
                }),
            )
            .route(
                "/echo",
                post(
                    |crate::JsonBody(v): crate::JsonBody<serde_json::Value>| async move {
                        v.to_string()
                    },
                ),
            );
        harden(
            router,
            &EdgeConfig {
                request_timeout: timeout,
                ..EdgeConfig::default()
            },
        )
    }

    async fn send(router: Router, request: Request) -> (StatusCode, Response) {
        let response = router.oneshot(request).await.unwrap();
        (response.status(), response)
    }

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn get_request(path: &str) -> Request {
        Request::builder().uri(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn only_an_answer_whose_own_policy_lets_sites_frame_it_goes_without_x_frame_options() {
        let framed = |policy: &'static str| {
            get(move || async move {
                (
                    [(
                        header::CONTENT_SECURITY_POLICY,
                        HeaderValue::from_static(policy),
                    )],
                    "page",
                )
            })
        };
        let router = harden(
            Router::new()
                .route("/plain", get(|| async { "ok" }))
                .route(
                    "/embeddable",
                    framed("default-src 'self'; frame-ancestors *"),
                )
                .route(
                    "/closed",
                    framed("default-src 'self'; frame-ancestors 'none'"),
                ),
            &EdgeConfig::default(),
        );
        let frame_options = |response: &Response| {
            response
                .headers()
                .get("x-frame-options")
                .map(|v| v.to_str().unwrap().to_owned())
        };

        let (_, plain) = send(router.clone(), get_request("/plain")).await;
        let (_, embeddable) = send(router.clone(), get_request("/embeddable")).await;
        let (_, closed) = send(router, get_request("/closed")).await;

        assert_eq!(frame_options(&plain).as_deref(), Some("DENY"));
        assert_eq!(frame_options(&embeddable), None);
        assert_eq!(frame_options(&closed).as_deref(), Some("DENY"));
    }

    #[tokio::test]
    async fn oversized_headers_are_refused_with_431() {
        let request = Request::builder()
            .uri("/fast")
            .header("x-junk", "j".repeat(MAX_HEADER_BYTES))
            .body(Body::empty())
            .unwrap();
        let (status, response) = send(app(REQUEST_TIMEOUT), request).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(body_text(response).await.contains("\"errors\""));
        let (status, _) = send(app(REQUEST_TIMEOUT), get_request("/fast")).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_slow_answer_times_out_but_a_long_stream_does_not() {
        let timeout = Duration::from_millis(100);
        let (status, response) = send(app(timeout), get_request("/slow")).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert!(body_text(response).await.contains("\"errors\""));
        let (status, response) = send(app(timeout), get_request("/stream")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body_text(response).await, "abc");
    }

    #[tokio::test]
    async fn cors_allows_only_the_websites_origin() {
        for (origin, allowed) in [
            ("http://127.0.0.1:3002", true),
            ("http://localhost:3002", true),
            ("https://evil.example.com", false),
        ] {
            let request = Request::builder()
                .method(Method::OPTIONS)
                .uri("/fast")
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
                .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
                .body(Body::empty())
                .unwrap();
            let (_, response) = send(app(REQUEST_TIMEOUT), request).await;
            let granted = response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(granted.as_deref() == Some(origin), allowed, "{origin}");
        }
    }

    fn json_post(body: Vec<u8>) -> Request {
        Request::builder()
            .method(Method::POST)
            .uri("/echo")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn deeply_nested_json_is_a_400_not_a_crash() {
        let depth = 10_000;
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let (status, response) = send(app(REQUEST_TIMEOUT), json_post(body.into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body_text(response).await.contains("recursion limit"));
    }

    #[tokio::test]
    async fn a_body_that_is_not_utf8_is_a_400_saying_so() {
        let (status, response) = send(
            app(REQUEST_TIMEOUT),
            json_post(b"{\"a\":\"\xff\xfe\"}".to_vec()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body_text(response).await.contains("not valid UTF-8"));
    }

    #[tokio::test]
    async fn every_answer_a_refusal_too_carries_the_request_id() {
        let oversized = Request::builder()
            .uri("/fast")
            .header("x-request-id", "refused-1")
            .header("x-junk", "j".repeat(MAX_HEADER_BYTES))
            .body(Body::empty())
            .unwrap();
        let (status, response) = send(app(REQUEST_TIMEOUT), oversized).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(response.headers().contains_key("x-request-id"));
        let (status, response) = send(app(REQUEST_TIMEOUT), get_request("/fast")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(response.headers().contains_key("x-request-id"));
    }

    #[tokio::test]
    async fn an_oversized_request_id_counts_against_the_header_limit() {
        let oversized = Request::builder()
            .uri("/fast")
            .header("x-request-id", "r".repeat(MAX_HEADER_BYTES + 1))
            .body(Body::empty())
            .unwrap();
        let (status, _) = send(app(REQUEST_TIMEOUT), oversized).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn only_the_allowed_host_names_are_permitted() {
        let hosts = AllowedHosts::local(&["10.0.0.7:3001".parse().unwrap()], &["Audit.Example"]);
        let with_host = |host: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            hosts.permit(&headers)
        };
        for good in [
            "localhost:3002",
            "127.0.0.1",
            "[::1]:3001",
            "10.0.0.7:3001",
            "audit.example",
        ] {
            assert!(with_host(good), "{good}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:3002",
            "127.0.0.1.evil",
            "[::2]:1",
            "",
        ] {
            assert!(!with_host(bad), "{bad}");
        }
        assert!(!hosts.permit(&axum::http::HeaderMap::new()));
    }

    #[test]
    fn origins_must_be_http_urls() {
        assert!(EdgeConfig::with_origins(&["https://audit.example.com/"]).is_ok());
        assert!(EdgeConfig::with_origins(&["audit.example.com"]).is_err());
    }
}
