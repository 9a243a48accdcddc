//! The audit query routes, answered by the auditor.

use auditlog_http::{ApiError, Authenticated};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::ApiState;

/// Audit queries go to the auditor with the caller's own token: the auditor applies
/// the same policy, so the proxy cannot widen anyone's view. The answer is streamed
/// through as it arrives, never buffered: exports can be millions of events and the
/// live tail never ends. `Accept` (export format), `Last-Event-ID` (resuming the
/// tail) and `X-Request-Id` (one id across both services' logs) go along with the
/// token.
pub(super) async fn to_auditor(
    State(state): State<ApiState>,
    Authenticated(_): Authenticated,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = state
        .http
        .get(format!("{}{path_and_query}", state.auditor_url));
    for name in [
        header::AUTHORIZATION,
        header::ACCEPT,
        header::HeaderName::from_static("last-event-id"),
        auditlog_http::request_id::REQUEST_ID_HEADER,
    ] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value.clone());
        }
    }
    let answer = request
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("the auditor is unreachable: {e}")))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).map_err(ApiError::internal)?;
    let mut response = Response::builder().status(status);
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_DISPOSITION,
        header::CACHE_CONTROL,
    ] {
        if let Some(value) = answer
            .headers()
            .get(name.as_str())
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            response = response.header(name, value);
        }
    }
    if !answer.headers().contains_key(header::CONTENT_TYPE.as_str()) {
        response = response.header(
            header::CONTENT_TYPE,
            HeaderValue::from_static(auditlog_http::JSON_API),
        );
    }
    response
        .body(axum::body::Body::from_stream(answer.bytes_stream()))
        .map_err(ApiError::internal)
}
