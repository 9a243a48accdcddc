//! HTTP ingest: `POST /api/data-events` with a JSON:API document of one or many
//! `data-events` resources, or `application/x-ndjson` with one event per line.
//! Valid events are committed before the answer; each invalid one is reported with
//! its position and the field at fault, and never stored. Each stored event
//! records the token's principal as `ingestedBy` and `via: "http"`; an event the
//! principal may not deliver (another's producer id, the auditor's own names) is
//! reported like an invalid one ([`crate::intake`]).

use auditlog_event::{DataEvent, EventError, MessageIds, now_ms};
use auditlog_http::{ApiError, Authenticated, json_api, media_type, read_body};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::AuditorState;
use crate::commit::Via;
use crate::intake::Delivered;
use crate::openapi::IngestDocumentSchema;
use auditlog_http::openapi::{
    BadRequest, Conflict, ErrorDocument, ErrorObject, ErrorSource, Forbidden, PayloadTooLarge,
    Unauthorized, Unavailable, Unprocessable, UnsupportedMediaType,
};

/// One rejected event: where it was in the request and why.
struct Rejection {
    pointer: String,
    /// The field at fault, if one is.
    field: Option<String>,
    detail: String,
}

impl Rejection {
    fn invalid(pointer: String, error: &EventError) -> Self {
        Rejection {
            pointer,
            field: error.field().map(str::to_owned),
            detail: error.to_string(),
        }
    }
}

/// `POST /api/data-events`.
#[utoipa::path(
    post,
    path = "/api/data-events",
    tag = "ingest",
    operation_id = "ingestEvents",
    summary = "Store events",
    description = "For services and admins. The valid events are committed before the \
        answer, idempotently by id; each invalid one is reported with its position and \
        the field at fault, and not stored. When no event is valid the answer is 422. \
        An event without an id gets one derived from the request body and its position, \
        so a retry of the same body is stored once. \
        At most 8 MiB per request and 64 KiB per event. \
        Each stored event records the token's principal as `ingestedBy` and `via: http` \
        (an event that sends either is invalid); an event numbered under a producer id \
        another principal delivered first, with the auditor's own `source` or `audit.*` \
        name, or (from anyone but a service) an `auth.*` name is refused with the reason.",
    request_body(
        description = "A JSON:API document of `data-events` resources, or NDJSON: one \
            event object per line",
        content(
            (IngestDocumentSchema = "application/vnd.api+json"),
            (IngestDocumentSchema = "application/json"),
            (String = "application/x-ndjson"),
        )
    ),
    responses(
        (status = 200, description = "What was stored, and what was rejected and why",
            body = IngestReport, content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn ingest(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    request: Request,
) -> Result<Response, ApiError> {
    if !principal.may_ingest() {
        return Err(ApiError::forbidden(
            "only services, admins and operators may deliver events",
        ));
    }
    let kind = media_type(request.headers());
    let body = read_body(request, crate::MAX_INGEST_BYTES).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the body is not valid UTF-8"))?;
    let now = now_ms();
    let (parsed, mut rejected) = match kind.as_deref() {
        Some("application/x-ndjson") => parse_ndjson(text, now),
        Some(auditlog_http::JSON_API) | Some("application/json") => parse_document(text, now)?,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                format!(
                    "send events as {} or application/x-ndjson, not {}",
                    auditlog_http::JSON_API,
                    other.unwrap_or("an unnamed type")
                ),
            ));
        }
    };
    if parsed.is_empty() && rejected.is_empty() {
        return Err(ApiError::bad_request("the request holds no events"));
    }
    let (pointers, events): (Vec<String>, Vec<DataEvent>) = parsed.into_iter().unzip();
    let delivered = Delivered {
        by: principal.name(),
        via: "http",
        may_publish_rights: principal.may_publish_rights(),
        tenant: principal.bound_tenant().map(str::to_owned),
    };
    let (events, refused) = state
        .intake
        .vet(events, &delivered)
        .await
        .map_err(|(_, e)| ApiError::unavailable(format!("the events were not stored: {e}")))?;
    for refusal in refused {
        rejected.push(Rejection {
            pointer: pointers.get(refusal.index).cloned().unwrap_or_default(),
            field: None,
            detail: refusal.reason,
        });
    }
    if events.is_empty() {
        return Ok(rejection_response(&rejected));
    }
    let outcome = crate::commit::insert_measured(&*state.store, &events, Via::Http)
        .await
        .map_err(|e| ApiError::unavailable(format!("the events were not stored: {e}")))?;
    let report = IngestReport {
        data: events
            .iter()
            .map(|e| StoredRef {
                kind: "data-events",
                id: e.id,
            })
            .collect(),
        meta: IngestMeta {
            accepted: events.len(),
            stored: outcome.inserted,
            duplicates: outcome.duplicates,
            rejected: rejected.iter().map(rejection_error).collect(),
        },
    };
    Ok(json_api(StatusCode::OK, &report))
}

/// The answer to an ingest request with at least one valid event.
#[derive(Serialize, ToSchema)]
pub(crate) struct IngestReport {
    /// The accepted events, in request order.
    data: Vec<StoredRef>,
    meta: IngestMeta,
}

/// An accepted event, by id.
#[derive(Serialize, ToSchema)]
struct StoredRef {
    /// Always `data-events`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "data-events")]
    kind: &'static str,
    id: uuid::Uuid,
}

#[derive(Serialize, ToSchema)]
#[schema(as = IngestMeta)]
struct IngestMeta {
    /// Valid events in the request.
    accepted: usize,
    /// Of those, newly stored.
    stored: u64,
    /// Of those, already stored (by id) or repeated in the request.
    duplicates: u64,
    /// One error per invalid event, naming it and its field.
    rejected: Vec<ErrorObject>,
}

/// An event without an id gets one derived from the request body and its line or
/// position (see [`MessageIds`]): a client that retries the same request after
/// losing the answer gets the same ids back, and its events are stored once.
fn parse_ndjson(text: &str, now: i64) -> (Vec<(String, DataEvent)>, Vec<Rejection>) {
    let message = MessageIds::new(text.as_bytes());
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let pointer = format!("line {}", line_no + 1);
        match DataEvent::parse_json_in(line, now, &message, line_no) {
            Ok(event) => events.push((pointer, event)),
            Err(error) => rejected.push(Rejection::invalid(pointer, &error)),
        }
    }
    (events, rejected)
}

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow)]
    attributes: &'a RawValue,
}

/// Ids of id-less events are derived as in [`parse_ndjson`], by position in `data`.
/// Each valid event comes with its place in the request, for reporting it.
type Parsed = (Vec<(String, DataEvent)>, Vec<Rejection>);

fn parse_document(text: &str, now: i64) -> Result<Parsed, ApiError> {
    let message = MessageIds::new(text.as_bytes());
    let document: Document = serde_json::from_str(text).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be a JSON:API document {{\"data\": …}}: {e}"
        ))
    })?;
    let items: Vec<&RawValue> = if document.data.get().trim_start().starts_with('[') {
        serde_json::from_str(document.data.get())
            .map_err(|e| ApiError::bad_request(format!("`data` is not a list: {e}")))?
    } else {
        vec![document.data]
    };
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let pointer = format!("/data/{index}");
        let resource: Resource = match serde_json::from_str(item.get()) {
            Ok(resource) => resource,
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "{pointer} must be a resource {{\"type\": \"data-events\", \"attributes\": {{…}}}}: {e}"
                )));
            }
        };
        if resource.kind != "data-events" {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "Wrong type",
                format!(
                    "{pointer}/type must be `data-events`, not `{}`",
                    resource.kind
                ),
            ));
        }
        let pointer = format!("{pointer}/attributes");
        match DataEvent::parse_json_in(resource.attributes.get(), now, &message, index) {
            Ok(event) => events.push((pointer, event)),
            Err(error) => rejected.push(Rejection::invalid(pointer, &error)),
        }
    }
    Ok((events, rejected))
}

fn rejection_error(rejection: &Rejection) -> ErrorObject {
    let pointer = match rejection.field.as_deref() {
        Some(field) if rejection.pointer.starts_with('/') => {
            format!("{}/{field}", rejection.pointer)
        }
        _ => rejection.pointer.clone(),
    };
    ErrorObject {
        status: "422".into(),
        title: "Invalid event".into(),
        detail: rejection.detail.clone(),
        code: None,
        source: Some(ErrorSource { pointer }),
    }
}

fn rejection_response(rejected: &[Rejection]) -> Response {
    let errors = rejected.iter().map(rejection_error).collect();
    json_api(StatusCode::UNPROCESSABLE_ENTITY, &ErrorDocument { errors })
}
