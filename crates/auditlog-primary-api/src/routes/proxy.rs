//! The audit query routes and the verifiable log's routes (key, checkpoint,
//! inclusion and consistency proofs), answered by the auditor.

use auditlog_http::{ApiError, Authenticated, RequestId, read_body};
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::ApiState;

/// Audit queries go to the auditor with the caller's own token: the auditor applies
/// the same policy, so the proxy cannot widen anyone's view. The answer is streamed
/// through as it arrives, never buffered: exports can be millions of events and the
/// live tail never ends. `Accept` (export format), `Last-Event-ID` (resuming the
/// tail) go along with the token, and this service's own request id as
/// `X-Request-Id` (which the auditor keeps as the client's, joining both logs). The auditor's `Content-Type` comes back as it is (the log's key and
/// checkpoint are `text/plain`, whose bytes a client verifies); JSON:API only when
/// it sent none.
pub(super) async fn to_auditor(
    State(state): State<ApiState>,
    Authenticated(_): Authenticated,
    request_id: RequestId,
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
    ] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value.clone());
        }
    }
    if let Some(value) = request_id.header_value() {
        request = request.header(auditlog_http::request_id::REQUEST_ID_HEADER, value);
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

/// Largest body passed on to the auditor: its write routes take one small
/// document (an erasure, a retention, a legal hold).
const MAX_FORWARDED_BODY_BYTES: usize = 16 * 1024;

/// The auditor's write routes the website calls (an erasure, a tenant's
/// retention, legal holds): the method, the body and its type go along with the
/// caller's token, and the auditor decides, as it does for reads. The answer
/// is small and comes back whole.
pub(super) async fn write_to_auditor(
    State(state): State<ApiState>,
    Authenticated(_): Authenticated,
    request_id: RequestId,
    request: Request,
) -> Result<Response, ApiError> {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let headers = request.headers().clone();
    let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
        .map_err(ApiError::internal)?;
    let body = read_body(request, MAX_FORWARDED_BODY_BYTES).await?;
    let mut forwarded = state
        .http
        .request(method, format!("{}{path_and_query}", state.auditor_url))
        .body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(value) = headers.get(&name) {
            forwarded = forwarded.header(name, value.clone());
        }
    }
    if let Some(value) = request_id.header_value() {
        forwarded = forwarded.header(auditlog_http::request_id::REQUEST_ID_HEADER, value);
    }
    let answer = forwarded
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("the auditor is unreachable: {e}")))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).map_err(ApiError::internal)?;
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE.as_str())
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        .unwrap_or_else(|| HeaderValue::from_static(auditlog_http::JSON_API));
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| ApiError::unavailable(format!("the auditor's answer broke off: {e}")))?;
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(bytes))
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use auditlog_auth::{Principal, Role};
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;

    use super::*;
    use crate::testing;

    /// A stand-in auditor: the log's key as text/plain, and an inclusion route that
    /// answers, without a content type, the query and the token it was sent.
    fn fake_auditor() -> Router {
        Router::new()
            .route(
                "/log/key",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        "log.example+01020304+AQ==\n",
                    )
                }),
            )
            .route(
                "/api/data-events/{id}/inclusion",
                get(
                    |OriginalUri(uri): OriginalUri, headers: HeaderMap| async move {
                        let token = headers
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("none")
                            .to_owned();
                        Response::new(Body::from(format!("{uri} {token}")))
                    },
                ),
            )
    }

    #[tokio::test]
    async fn the_logs_text_answers_keep_their_content_type_and_proofs_their_query() {
        // Arrange: a primary API in front of the stand-in auditor, and an admin's token.
        let dir = tempfile::tempdir().unwrap();
        let auditor = testing::serve(fake_auditor()).await;
        let state = testing::state(dir.path(), &auditor, &Default::default()).await;
        let principal = Principal::new("1".into(), Role::Admin).unwrap();
        let bearer = format!("Bearer {}", state.issuer.issue(&principal).unwrap());
        let api = testing::serve(crate::router(state)).await;
        let http = reqwest::Client::new();

        // Act
        let key = http
            .get(format!("{api}/log/key"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        let proof = http
            .get(format!("{api}/api/data-events/abc/inclusion?treeSize=7"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        let anonymous = http
            .get(format!("{api}/log/checkpoint"))
            .send()
            .await
            .unwrap();

        // Assert
        assert_eq!(key.status().as_u16(), 200);
        assert_eq!(
            key.headers()["content-type"].to_str().unwrap(),
            "text/plain; charset=utf-8"
        );
        assert_eq!(key.text().await.unwrap(), "log.example+01020304+AQ==\n");
        assert_eq!(proof.status().as_u16(), 200);
        assert_eq!(
            proof.headers()["content-type"].to_str().unwrap(),
            auditlog_http::JSON_API
        );
        assert_eq!(
            proof.text().await.unwrap(),
            format!("/api/data-events/abc/inclusion?treeSize=7 {bearer}")
        );
        assert_eq!(anonymous.status().as_u16(), 401, "a token is needed");
    }
}
