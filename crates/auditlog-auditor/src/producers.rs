//! `GET /api/producers`: the completeness report. Each producer numbers its events
//! 1, 2, 3… without holes, so for each one the store can say how many numbers it
//! holds, the highest, and which are missing; an operator uses this to prove that
//! nothing was lost between producers and the store, or to name what was. It spans
//! every producer's events, of every tenant, so only operators may read it.

use auditlog_http::{ApiError, Authenticated, json_api};
use auditlog_store::ProducerProgress;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AuditorState;
use auditlog_http::openapi::{Forbidden, Unauthorized, Unavailable};

/// `GET /api/producers`.
#[utoipa::path(
    get,
    path = "/api/producers",
    tag = "integrity",
    operation_id = "producers",
    summary = "The completeness report: per producer, which event numbers are missing",
    description = "Each producer numbers its events 1, 2, 3… without holes; for each \
        one this says how many numbers are stored, the highest, and the missing ranges. \
        Admins only.",
    responses(
        (status = 200, description = "The report", body = Document,
            content_type = "application/vnd.api+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    read: crate::reads::ReadRequest,
) -> Result<Response, ApiError> {
    if !principal.is_operator() {
        return Err(ApiError::forbidden(
            "only operators may read the producers' completeness report: producers deliver \
             for every tenant",
        ));
    }
    let producers = state.store.producers().await.map_err(ApiError::internal)?;
    crate::reads::record_read(&state, &principal, crate::reads::COLLECTION, &read).await?;
    Ok(json_api(StatusCode::OK, &document(&producers)))
}

/// The completeness report.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProducersDocument)]
struct Document<'a> {
    data: Vec<Resource<'a>>,
    meta: Meta,
}

/// One producer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProducerResource)]
struct Resource<'a> {
    /// Always `producers`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "producers")]
    kind: &'static str,
    /// The producer's id, e.g. `api-outbox/0192…`.
    id: &'a str,
    attributes: Attributes<'a>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ProducerAttributes)]
struct Attributes<'a> {
    /// Event numbers stored.
    events: u64,
    /// The highest number stored.
    last_seq: u64,
    /// Numbers below `lastSeq` not stored.
    missing: u64,
    /// Inclusive `[from, to]` pairs, at most [`ProducerProgress::MAX_GAPS`].
    #[schema(value_type = Vec<Vec<u64>>)]
    gaps: &'a [(u64, u64)],
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProducersMeta)]
struct Meta {
    /// How many producers the report covers.
    producers: usize,
    /// Missing numbers over all producers: 0 means the store is complete up to each
    /// producer's highest number.
    missing: u64,
}

/// The store's report as a JSON:API document; the conversion is spelled out here
/// because the store's types are not a wire format.
fn document(producers: &[ProducerProgress]) -> Document<'_> {
    Document {
        data: producers
            .iter()
            .map(|p| Resource {
                kind: "producers",
                id: &p.producer_id,
                attributes: Attributes {
                    events: p.events,
                    last_seq: p.last_seq,
                    missing: p.missing,
                    gaps: &p.gaps,
                },
            })
            .collect(),
        meta: Meta {
            producers: producers.len(),
            // Saturating: a sum past u64::MAX says "everything" as well as any.
            missing: producers
                .iter()
                .fold(0u64, |sum, p| sum.saturating_add(p.missing)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_report_is_a_json_api_document_with_totals() {
        let producers = [
            ProducerProgress {
                producer_id: "api/1".into(),
                events: 6,
                last_seq: 9,
                missing: 3,
                gaps: vec![(4, 4), (7, 8)],
            },
            ProducerProgress {
                producer_id: "relay".into(),
                events: 2,
                last_seq: 2,
                missing: 0,
                gaps: vec![],
            },
        ];

        let body = serde_json::to_value(document(&producers)).unwrap();

        assert_eq!(
            body,
            json!({
                "data": [
                    {"type": "producers", "id": "api/1", "attributes":
                        {"events": 6, "lastSeq": 9, "missing": 3, "gaps": [[4, 4], [7, 8]]}},
                    {"type": "producers", "id": "relay", "attributes":
                        {"events": 2, "lastSeq": 2, "missing": 0, "gaps": []}},
                ],
                "meta": {"producers": 2, "missing": 3},
            })
        );
    }
}
