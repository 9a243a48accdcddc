//! The HTTP edge shared by both APIs: JSON:API documents and errors, CSV cells
//! that spreadsheets cannot run ([`csv`]), the body
//! extractor that turns every malformed request into a clear 4xx, bearer
//! authentication, the hardening layers of [`edge`] (header size, timeout, CORS),
//! the [`request_id`] that ties a request's log lines and events together,
//! Prometheus [`metrics`] and readiness checks ([`health`]), and serving with
//! graceful shutdown. Handlers return `Result<_, ApiError>`; this
//! is the one place errors become status codes.

pub mod csv;
pub mod edge;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod request_id;
pub mod sane_id;
pub mod server;

pub use edge::{AllowedHosts, EdgeConfig, harden};
pub use openapi::{ErrorDocument, ErrorObject, ErrorSource};
pub use request_id::RequestId;
pub use server::{ConnectionLimits, serve};

use auditlog_auth::{AuthError, Principal, TokenVerifier};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The JSON:API media type.
pub const JSON_API: &str = "application/vnd.api+json";
/// Largest request body accepted by either API.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An error answered as a JSON:API `errors` document.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            title,
            detail: detail.into(),
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", detail)
    }
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            detail,
        )
    }
    /// A failure of ours: the cause is logged, the client gets a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            "the server failed to handle this request; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorDocument {
            errors: vec![ErrorObject {
                status: self.status.as_str().to_owned(),
                title: self.title.to_owned(),
                detail: self.detail,
                code: None,
                source: None,
            }],
        };
        json_api(self.status, &body)
    }
}

/// A JSON:API response with the right media type.
pub fn json_api(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => raw_json_api(status, bytes),
        Err(err) => ApiError::internal(err).into_response(),
    }
}

/// A JSON:API response from already-serialized bytes.
pub fn raw_json_api(status: StatusCode, bytes: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(JSON_API))],
        bytes,
    )
        .into_response()
}

/// The path parameters of a route, as axum's `Path`, but a segment that cannot
/// be read (not UTF-8 once percent-decoded) is a JSON:API 400 like every other
/// error, not axum's plain-text one.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(params)| PathParams(params))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// A request body parsed as JSON into `T`. Refuses (with JSON:API errors) a wrong
/// media type (415), an oversized body (413), invalid JSON or the wrong shape (400).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        check_json_media_type(req.headers())?;
        let bytes = read_body(req, MAX_BODY_BYTES).await?;
        // serde_json would say "invalid unicode code point"; say what is wrong.
        if let Err(e) = std::str::from_utf8(&bytes) {
            return Err(ApiError::bad_request(format!(
                "the body is not valid UTF-8 (at byte {})",
                e.valid_up_to()
            )));
        }
        // serde_json's recursion limit (128) refuses deeply nested documents.
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("the body is not a valid document: {e}")))
    }
}

/// How much of an oversized body is read and thrown away so that the client, still
/// sending, receives the 413 instead of a reset connection.
const DRAIN_LIMIT_BYTES: usize = 32 * 1024 * 1024;

/// Reads a whole body of at most `limit` bytes; a larger one is answered with 413.
pub async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let mut chunks = req.into_body().into_data_stream();
    let mut body = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = chunks.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("the body could not be read: {e}")))?;
        seen += chunk.len();
        if seen > DRAIN_LIMIT_BYTES {
            break;
        }
        if seen <= limit {
            body.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload too large",
            format!("the body is larger than {limit} bytes"),
        ));
    }
    Ok(Bytes::from(body))
}

/// The request's media type without parameters, lower-cased.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

fn check_json_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    match media_type(headers).as_deref() {
        Some(JSON_API) | Some("application/json") => Ok(()),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            format!(
                "send the body as {JSON_API} (or application/json), not {}",
                other.unwrap_or("an unnamed type")
            ),
        )),
    }
}

/// The principal of a request carrying a valid `Authorization: Bearer` token whose
/// principal still has the rights it claims (`TokenVerifier::authenticate`);
/// anything else is refused with 401 (503 when the rights could not be checked).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl<S> FromRequestParts<S> for Authenticated
where
    TokenVerifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        TokenVerifier::from_ref(state)
            .authenticate(token)
            .await
            .map(Authenticated)
            .map_err(|e| match e {
                // Not the token's fault: the check is refused, and may work later.
                AuthError::Unavailable(_) => ApiError::unavailable(e.to_string()),
                _ => ApiError::unauthorized(e.to_string()),
            })
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthorized("no token was sent; send `Authorization: Bearer <token>`")
    })?;
    value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))
}

/// The answer for routes that do not exist.
pub async fn not_found() -> ApiError {
    ApiError::not_found("there is no such route")
}

/// The plain routes every service serves beside its own: `GET /healthz` (the
/// process serves HTTP), `GET /readyz` (the service's `readiness` checks) and
/// `GET /metrics` (the process's `metrics`). Merge them into the service's router;
/// `openapi::ServiceRoutes` documents them.
pub fn service_routes<S: Clone + Send + Sync + 'static>(
    readiness: health::Readiness,
    metrics: metrics::Metrics,
) -> Router<S> {
    Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(health::readyz).with_state(readiness),
        )
        .route(
            "/metrics",
            axum::routing::get(metrics::scrape).with_state(metrics),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreadable_path_segment_is_a_json_api_400() {
        use tower::ServiceExt;
        let router: Router = Router::new().route(
            "/things/{id}",
            axum::routing::get(|PathParams(id): PathParams<String>| async move { id }),
        );
        let request = |uri: &str| Request::builder().uri(uri).body(axum::body::Body::empty());

        let bad = router
            .clone()
            .oneshot(request("/things/%FF").unwrap())
            .await
            .unwrap();
        let good = router
            .oneshot(request("/things/a%20b").unwrap())
            .await
            .unwrap();

        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(bad.headers()[header::CONTENT_TYPE], JSON_API);
        let body = axum::body::to_bytes(good.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"a b");
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert!(bearer_token(&headers).is_err());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer_token(&headers).unwrap(), "abc");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(bearer_token(&headers).is_err());
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(bearer_token(&headers).is_err());
    }

    #[test]
    fn media_types_ignore_parameters_and_case() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert_eq!(media_type(&headers).as_deref(), Some("application/json"));
        assert!(check_json_media_type(&headers).is_ok());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(check_json_media_type(&headers).is_err());
    }
}
