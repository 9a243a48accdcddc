//! Reading the audit log is itself audited: every successful read on the auditor
//! records one `viewed` event on `data-events` by the caller ([`record_read`]),
//! per request, never per event returned, carrying the request's id
//! ([`ReadRequest`], an extractor every read route takes).

use auditlog_auth::Principal;
// The `source` of the events the auditor records itself (reserved: producers'
// events with it are refused).
use auditlog_auth::policy::AUDITOR_SOURCE;
use auditlog_event::{Action, DataEvent, ObjectId, ObjectRef, ObjectType};
use auditlog_http::request_id::ClientRequestId;
use auditlog_http::{ApiError, RequestId};
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::Uri;
use axum::http::request::Parts;

use crate::AuditorState;

/// The object type of the audit log itself, as the target of `audit.read` events.
pub(crate) const AUDIT_LOG_TYPE: &str = "data-events";
/// The target id of a read of many events; a read of one event names its id.
pub(crate) const COLLECTION: &str = "collection";
/// The `eventName` of a read of the audit log (under the reserved `audit.`).
pub(crate) const READ_EVENT_NAME: &str = "audit.read";
/// Who delivers the auditor's own records, as their `ingestedBy`.
pub(crate) const AUDITOR_PRINCIPAL: &str = "services/auditor";
/// Longest query string kept in an `audit.read` event.
const MAX_RECORDED_QUERY_CHARS: usize = 2048;

/// What the `audit.read` event of a read says about its request: the path and
/// query string as the client sent them (before any nesting stripped a prefix)
/// and the request's id (the `X-Request-Id` of the answer), with the client's own
/// id for it in `meta.clientRequestId`, so that a read can be found by either.
pub(crate) struct ReadRequest {
    pub(crate) uri: Uri,
    pub(crate) request_id: RequestId,
    /// What the client (or the primary API in front) called the request.
    pub(crate) client_request_id: Option<RequestId>,
}

impl<S: Send + Sync> FromRequestParts<S> for ReadRequest {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Ok(OriginalUri(uri)) = OriginalUri::from_request_parts(parts, state).await;
        let Ok(request_id) = RequestId::from_request_parts(parts, state).await;
        let Ok(ClientRequestId(client_request_id)) =
            ClientRequestId::from_request_parts(parts, state).await;
        Ok(ReadRequest {
            uri,
            request_id,
            client_request_id,
        })
    }
}

/// Records that `principal` read the audit log: one `viewed` event on
/// `data-events/<target_id>` with the path and query string in `meta` and the
/// request's id as `requestId`, stored directly (not through a transport, so
/// never lost on the way) in a commit shared with the other reads waiting then
/// ([`crate::group_commit::ReadCommits`]). It runs after the read succeeded and
/// returns once that commit is durable, before the answer is sent: a read that
/// cannot be recorded is not answered (503).
pub(crate) async fn record_read(
    state: &AuditorState,
    principal: &Principal,
    target_id: &str,
    read: &ReadRequest,
) -> Result<(), ApiError> {
    let uri = &read.uri;
    let actor = principal
        .actor()
        .map_err(|e| ApiError::internal(format!("the reader as an actor: {e}")))?;
    let target = ObjectType::parse("targetType", AUDIT_LOG_TYPE)
        .and_then(|log| {
            Ok(ObjectRef::new(
                log,
                ObjectId::parse_text("targetId", target_id)?,
            ))
        })
        .map_err(|e| ApiError::internal(format!("the log as a target: {e}")))?;
    let now = auditlog_event::now_ms();
    let mut event = DataEvent::new(Action::Viewed, actor, target, now);
    // A read belongs to the reader's tenant: its query is the reader's data,
    // and the tenant's admins are the ones to see who of theirs read what.
    event.set_tenant(principal.home_tenant());
    event.event_name = Some(READ_EVENT_NAME.into());
    event.source = Some(AUDITOR_SOURCE.into());
    event.request_id = Some(read.request_id.as_str().to_owned());
    let query: String = uri
        .query()
        .unwrap_or_default()
        .chars()
        .take(MAX_RECORDED_QUERY_CHARS)
        .collect();
    let path: String = uri.path().chars().take(MAX_RECORDED_QUERY_CHARS).collect();
    let mut meta = serde_json::Map::new();
    meta.insert("path".into(), path.into());
    meta.insert("query".into(), query.into());
    if let Some(client) = &read.client_request_id {
        meta.insert("clientRequestId".into(), client.as_str().into());
    }
    event.meta = Some(meta);
    let event = event.received(AUDITOR_PRINCIPAL, "auditor");
    // Committed with the events of the other reads waiting now, and answered
    // only once that commit is durable (see `group_commit`).
    state
        .read_commits
        .commit(event)
        .await
        .map_err(|e| ApiError::unavailable(format!("the read could not be recorded: {e}")))
}

/// The auditor's own record of `action` on `target` by `actor` (the auditor
/// itself when `None`), named `name` (under the reserved `audit.`), in
/// `tenant`: how the auditor records what is done to the log besides reads.
pub(crate) fn own_event(
    action: Action,
    actor: Option<ObjectRef>,
    target: ObjectRef,
    name: &str,
    tenant: &str,
    meta: serde_json::Map<String, serde_json::Value>,
    request_id: Option<&str>,
) -> Result<DataEvent, ApiError> {
    let actor = match actor {
        Some(actor) => actor,
        // `services/auditor`, as the auditor's own deliveries are named.
        None => {
            let (kind, id) = AUDITOR_PRINCIPAL
                .split_once('/')
                .unwrap_or(("services", "auditor"));
            ObjectType::parse("actorType", kind)
                .and_then(|t| Ok(ObjectRef::new(t, ObjectId::parse_text("actorId", id)?)))
                .map_err(|e| ApiError::internal(format!("the auditor as an actor: {e}")))?
        }
    };
    let mut event = DataEvent::new(action, actor, target, auditlog_event::now_ms());
    event.event_name = Some(name.into());
    event.source = Some(AUDITOR_SOURCE.into());
    event.request_id = request_id.map(str::to_owned);
    event.meta = Some(meta);
    event.set_tenant(tenant);
    Ok(event.received(AUDITOR_PRINCIPAL, "auditor"))
}
