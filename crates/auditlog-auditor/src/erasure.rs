//! `POST /api/erasures`: erases a data subject's personal data from the log by
//! deleting its key (crypto-shredding, see [`crate::personal`]). The events
//! stay, with who did what to whom; their personal values read as erased from
//! then on, and every leaf still verifies, since it holds the ciphertext.
//!
//! Each erasure is itself recorded, as the auditor records its own events: a
//! `deleted` event named `audit.erased` whose actor is who erased and whose
//! target is the subject, with `meta.keyExisted`. Erasing is idempotent, and
//! erasing a subject that never had a key is recorded all the same (the request
//! is what the log owes an account of).

use auditlog_event::{Action, DataEvent, ObjectId, ObjectRef, ObjectType};
use auditlog_http::{ApiError, Authenticated, RequestId, json_api, read_body};
use auditlog_store::DataSubject;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AuditorState;
use crate::commit::{Via, insert_measured};
use crate::reads::own_event;
use auditlog_http::openapi::{BadRequest, Forbidden, Unauthorized, Unavailable};

/// The `eventName` of an erasure's record (under the reserved `audit.`).
pub(crate) const ERASED_EVENT_NAME: &str = "audit.erased";
/// The JSON:API type of an erasure.
const ERASURES: &str = "erasures";
/// Largest request body: one small document.
const MAX_BODY_BYTES: usize = 4096;

/// `POST /api/erasures`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ErasureRequest)]
pub(crate) struct ErasureRequest {
    data: ErasureRequestData,
}

/// The erasure asked for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErasureRequestData {
    /// Always `erasures`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "erasures")]
    kind: String,
    attributes: ErasureSubject,
}

/// Whose personal data to erase: the data subject, as the target type and id
/// its events name it by (`users`, `42`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ErasureSubject {
    /// The subject's type, e.g. `users`.
    #[schema(example = "users")]
    subject_type: String,
    /// The subject's id as text, e.g. `42` (the number 42 and the text "42"
    /// name the same subject).
    #[schema(example = "42")]
    subject_id: String,
    /// The subject's tenant: the same type and id in two tenants are two
    /// subjects. An admin erases in its own tenant (the default when left
    /// out); an operator in the one named here, or the default tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "acme")]
    tenant_id: Option<String>,
}

/// The answer: the erasure, as recorded.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ErasureDocument)]
struct ErasureDocument {
    data: ErasureResource,
}

/// One erasure; its id is the id of the `audit.erased` event recording it.
#[derive(Debug, Serialize, ToSchema)]
struct ErasureResource {
    /// Always `erasures`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "erasures")]
    kind: &'static str,
    id: String,
    attributes: ErasureAttributes,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ErasureAttributes {
    subject_type: String,
    subject_id: String,
    /// The subject's tenant.
    tenant_id: String,
    /// Whether the subject had a key until now: `false` when it was erased
    /// before or never had personal values recorded.
    key_existed: bool,
    /// When the erasure was recorded, ms since the Unix epoch.
    erased_at: i64,
}

/// `POST /api/erasures`.
#[utoipa::path(
    post,
    path = "/api/erasures",
    tag = "erasure",
    operation_id = "eraseSubject",
    summary = "Erase a data subject's personal data (crypto-shredding)",
    description = "Admins of the subject's tenant and operators. Deletes the key of \
        the data subject (`subjectType`/`subjectId` in `tenantId`) under which the auditor encrypted its personal \
        values (the declared fields of `changes` of events on it, and declared `meta` \
        fields of events it acted in). From then on every answer shows those values as \
        `{\"erased\":true}`; the events, and the proofs of the log, are unchanged. The \
        erasure is recorded as a `deleted` event named `audit.erased` on the subject. \
        Idempotent: erasing again, or a subject without a key, is recorded too, with \
        `keyExisted: false`.",
    request_body(content = ErasureRequest, content_type = "application/vnd.api+json"),
    responses(
        (status = 201, description = "The subject's key is deleted and the erasure recorded",
            body = ErasureDocument, content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn erase(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    request_id: RequestId,
    request: Request,
) -> Result<Response, ApiError> {
    if !principal.may_erase_personal_data() {
        return Err(ApiError::forbidden(
            "only admins and operators may erase a data subject's personal data",
        ));
    }
    let body = read_body(request, MAX_BODY_BYTES).await?;
    let asked: ErasureRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {{\"data\":{{\"type\":\"erasures\",\"attributes\":\
             {{\"subjectType\":…,\"subjectId\":…}}}}}}: {e}"
        ))
    })?;
    if asked.data.kind != ERASURES {
        return Err(ApiError::bad_request(format!(
            "the resource type must be `{ERASURES}`, not `{}`",
            asked.data.kind
        )));
    }
    let subject = asked.data.attributes;
    let tenant = crate::query::tenant_named(&principal, subject.tenant_id.as_deref())?;
    let target = ObjectType::parse("subjectType", subject.subject_type.clone())
        .and_then(|t| {
            Ok(ObjectRef::new(
                t,
                ObjectId::parse_text("subjectId", subject.subject_id.clone())?,
            ))
        })
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let actor = principal
        .actor()
        .map_err(|e| ApiError::internal(format!("the eraser as an actor: {e}")))?;
    let key_existed = state
        .store
        .erase_subject_key(&DataSubject {
            tenant: tenant.clone(),
            object_type: target.object_type.clone(),
            id: target.id.key(),
        })
        .await
        .map_err(|e| ApiError::unavailable(format!("the key could not be erased: {e}")))?;
    let mut event = erased_event(actor, target, key_existed, request_id.as_str())?;
    // Recorded in the subject's tenant, whose admins answer for its erasures.
    event.set_tenant(&tenant);
    insert_measured(&*state.store, std::slice::from_ref(&event), Via::Auditor)
        .await
        .map_err(|e| {
            ApiError::unavailable(format!(
                "the key is erased, but the erasure could not be recorded (send it again): {e}"
            ))
        })?;
    tracing::info!(
        subject_type = %subject.subject_type,
        subject_id = %subject.subject_id,
        tenant = %tenant,
        key_existed,
        by = %principal.name(),
        "erased a data subject's personal data"
    );
    Ok(json_api(
        StatusCode::CREATED,
        &ErasureDocument {
            data: ErasureResource {
                kind: ERASURES,
                id: event.id.to_string(),
                attributes: ErasureAttributes {
                    subject_type: subject.subject_type,
                    subject_id: subject.subject_id,
                    tenant_id: tenant,
                    key_existed,
                    erased_at: event.timestamp,
                },
            },
        },
    ))
}

/// The record of an erasure of `subject` by `actor`.
fn erased_event(
    actor: ObjectRef,
    subject: ObjectRef,
    key_existed: bool,
    request_id: &str,
) -> Result<DataEvent, ApiError> {
    let mut meta = serde_json::Map::new();
    meta.insert("keyExisted".into(), key_existed.into());
    own_event(
        Action::Deleted,
        Some(actor),
        subject,
        ERASED_EVENT_NAME,
        auditlog_event::DEFAULT_TENANT,
        meta,
        Some(request_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erasure_is_recorded_as_the_auditors_own_deletion_on_the_subject() {
        let actor = ObjectRef::new(ObjectType::parse("actorType", "users").unwrap(), 1);
        let subject = ObjectRef::new(ObjectType::parse("targetType", "users").unwrap(), 42);

        let event = erased_event(actor, subject, true, "req-1").unwrap();

        assert_eq!(event.action, Action::Deleted);
        assert_eq!(event.event_name.as_deref(), Some("audit.erased"));
        assert_eq!(event.target_id.key(), "42");
        assert_eq!(event.actor_id.key(), "1");
        assert_eq!(
            event.source.as_deref(),
            Some(auditlog_auth::policy::AUDITOR_SOURCE)
        );
        assert_eq!(event.via.as_deref(), Some("auditor"));
        assert_eq!(
            event.meta.and_then(|m| m.get("keyExisted").cloned()),
            Some(serde_json::Value::Bool(true))
        );
    }
}
