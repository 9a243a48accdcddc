//! The request id that ties together everything one request causes: its log lines
//! in every service it passes through, and the events it makes the data layer
//! record (`requestId`). Every service generates its own id for every request
//! ([`RequestId`], a UUIDv7): a client's `X-Request-Id` can say anything, so it
//! is never what the server records as its own. A sane client id is kept beside
//! it as [`ClientRequestId`] (logged, and recorded as `meta.clientRequestId` by
//! the events the request causes), so a client can still find its request, and
//! a proxy hop (website → primary API → auditor) is followed by the id the
//! previous service sent. [`assign`] puts both in the request's extensions and
//! leaves its headers exactly as received, so the header limit of
//! [`crate::edge`] judges what the client sent; it returns the server's id in the
//! answer, logs the request's lines inside a span that carries both ids, and logs
//! one access line (`debug`, or `info` for 401/403 and `warn` for 5xx).

use std::convert::Infallible;
use std::fmt;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header a request id travels in, in requests and answers.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id kept from a client: what an event's `requestId` may hold, so
/// that every kept id can be recorded as it is.
pub const MAX_REQUEST_ID_CHARS: usize = crate::sane_id::MAX_CHARS;
const _: () = assert!(MAX_REQUEST_ID_CHARS == auditlog_event::MAX_LABEL_CHARS);

/// A correlation id: 1 to [`MAX_REQUEST_ID_CHARS`] visible ASCII characters (no
/// spaces or control characters), so that it is safe in a header, a log line and
/// an event. As an extractor, the id this service gave the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// `text` as a request id, or `None` when it is empty, too long or holds
    /// anything but visible ASCII.
    pub fn parse(text: &str) -> Option<Self> {
        crate::sane_id::is_sane(text.as_bytes()).then(|| RequestId(text.to_owned()))
    }

    /// A fresh id: a UUIDv7, so generated ids sort by time.
    pub fn generate() -> Self {
        RequestId(uuid::Uuid::now_v7().to_string())
    }

    /// The client's `X-Request-Id`, when there is exactly one and it is sane.
    pub fn from_client(headers: &HeaderMap) -> Option<Self> {
        let values = headers.get_all(REQUEST_ID_HEADER).iter();
        crate::sane_id::client_id(values.map(HeaderValue::as_bytes))
            .map(|id| RequestId(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as owned text, e.g. for an event's `requestId`.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The id as a header value, e.g. for a proxy to send on as `X-Request-Id`.
    pub fn header_value(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.0).ok()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id [`assign`] gave the request. A router that is not behind [`assign`] (a
/// unit test's) gets a fresh one.
impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate))
    }
}

/// The id the client sent in `X-Request-Id`, when it was sane: what the client
/// (or the service in front) calls this request. It can be spoofed, so it is
/// recorded as what the client said, never as the request's id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientRequestId(pub Option<RequestId>);

impl<S: Send + Sync> FromRequestParts<S> for ClientRequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientRequestId>()
            .cloned()
            .unwrap_or_else(|| ClientRequestId(RequestId::from_client(&parts.headers))))
    }
}

/// Middleware: gives the request its ids (see the module documentation) and logs
/// one access line (method, path, status, latency) when the answer starts.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId::generate();
    let client = ClientRequestId(RequestId::from_client(request.headers()));
    let header = id.header_value();
    request.extensions_mut().insert(id.clone());
    request.extensions_mut().insert(client.clone());
    let method = request.method().clone();
    // The path only: query strings can be long and are not needed to find a request.
    let path = request.uri().path().to_owned();
    let span = match &client.0 {
        Some(client) => {
            tracing::info_span!("request", request_id = %id, client_request_id = %client)
        }
        None => tracing::info_span!("request", request_id = %id),
    };
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Every request of a busy API at `info` would be thousands of lines a second,
    // most of them saying nothing the audit log itself does not: failures and
    // refused credentials are worth a line by default, the rest on demand
    // (`AUDITLOG_LOG=info,auditlog_http=debug`).
    span.in_scope(|| match status {
        500.. => tracing::warn!(%method, %path, status, latency_ms, "answered"),
        401 | 403 => tracing::info!(%method, %path, status, latency_ms, "answered"),
        _ => tracing::debug!(%method, %path, status, latency_ms, "answered"),
    });
    if let Some(value) = header {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[test]
    fn a_visible_ascii_id_of_up_to_128_chars_is_kept() {
        assert_eq!(
            RequestId::parse("my-req-123").unwrap().as_str(),
            "my-req-123"
        );
        let longest = "a".repeat(MAX_REQUEST_ID_CHARS);
        assert_eq!(RequestId::parse(&longest).unwrap().as_str(), longest);
    }

    #[test]
    fn an_empty_long_or_garbled_id_is_refused() {
        let too_long = "a".repeat(MAX_REQUEST_ID_CHARS + 1);
        for bad in ["", "has space", "tab\there", "é-accent", "nul\0", &too_long] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_generated_id_is_a_uuid_v7_and_a_valid_id() {
        let id = RequestId::generate();
        let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert!(RequestId::parse(id.as_str()).is_some());
    }

    /// A router answering with what its handler saw.
    fn app() -> Router {
        Router::new()
            .route(
                "/",
                get(
                    |id: RequestId, client: ClientRequestId, headers: HeaderMap| async move {
                        let forwarded = headers
                            .get(REQUEST_ID_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let client = client.0.map(RequestId::into_string).unwrap_or_default();
                        format!("{id} {client} {forwarded}")
                    },
                ),
            )
            .layer(axum::middleware::from_fn(assign))
    }

    /// The id echoed in the answer and the body `"<own id> <client id> <header>"`.
    async fn call(request_id: Option<&str>) -> (String, String) {
        let mut request = Request::builder().uri("/");
        if let Some(id) = request_id {
            request = request.header(REQUEST_ID_HEADER, id);
        }
        let response = app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let echoed = response.headers()[REQUEST_ID_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (echoed, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_server_uses_its_own_id_and_keeps_the_clients_beside_it() {
        let (echoed, seen) = call(Some("my-req-123")).await;
        assert_eq!(uuid::Uuid::parse_str(&echoed).unwrap().get_version_num(), 7);
        assert_eq!(seen, format!("{echoed} my-req-123 my-req-123"));
    }

    #[tokio::test]
    async fn an_insane_client_id_is_not_kept_and_the_header_is_left_as_sent() {
        let too_long = "x".repeat(MAX_REQUEST_ID_CHARS + 1);
        for sent in [None, Some(too_long.as_str()), Some("two words")] {
            let (echoed, seen) = call(sent).await;
            assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{sent:?}: {echoed}");
            assert_eq!(
                seen,
                format!("{echoed}  {}", sent.unwrap_or_default()),
                "{sent:?}"
            );
        }
    }
}
