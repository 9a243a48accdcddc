//! Export: every event of a query as CSV or NDJSON, streamed. The store is read by
//! keyset pagination in pages of [`EventQuery::MAX_PAGE_SIZE`] and each page is
//! written as one body chunk only when the client has taken the previous one, so an
//! export of millions of events holds one page in memory at a time.

use std::sync::Arc;

use auditlog_http::ApiError;
use auditlog_store::{AuditStore, EventQuery, StoredEvent};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::filters::QueryParams;

/// The CSV columns, in order.
/// `timestamp` is the producer's word; `receivedAt` (the auditor's clock),
/// `ingestedBy` and `via` are what the auditor vouches for.
pub(crate) const CSV_HEADER: &str = "id,timestamp,action,actorType,actorId,targetType,targetId,eventName,changes,source,requestId,receivedAt,ingestedBy,via\r\n";

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// RFC 4180 CSV, one row per event under [`CSV_HEADER`], every cell defused
    /// against spreadsheet formulas ([`auditlog_http::csv`]).
    Csv,
    /// One stored event JSON per line, exactly as stored.
    Ndjson,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    fn disposition(self) -> &'static str {
        match self {
            Format::Csv => "attachment; filename=\"data-events.csv\"",
            Format::Ndjson => "attachment; filename=\"data-events.ndjson\"",
        }
    }
}

/// The export asked for: `format=csv|ndjson` (`format=json` is the ordinary page),
/// else an `Accept` naming `text/csv` or `application/x-ndjson`; `None` for a page.
pub(crate) fn format(
    params: &QueryParams,
    headers: &HeaderMap,
) -> Result<Option<Format>, ApiError> {
    match params.get("format").map(String::as_str) {
        Some("csv") => return Ok(Some(Format::Csv)),
        Some("ndjson") => return Ok(Some(Format::Ndjson)),
        Some("json") => return Ok(None),
        Some(_) => {
            return Err(ApiError::bad_request("format must be csv, ndjson or json"));
        }
        None => {}
    }
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|item| {
            item.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    for media_type in accept {
        match media_type.as_str() {
            "text/csv" => return Ok(Some(Format::Csv)),
            "application/x-ndjson" => return Ok(Some(Format::Ndjson)),
            _ => {}
        }
    }
    Ok(None)
}

/// What the export's stream still has to do.
struct Export {
    store: Arc<dyn AuditStore>,
    query: EventQuery,
    format: Format,
    /// The CSV header, not yet sent.
    header: Option<Bytes>,
}

/// Streams every event of `query` (already authorised), ignoring its page and
/// cursor, in its order.
pub(crate) fn response(
    store: Arc<dyn AuditStore>,
    mut query: EventQuery,
    format: Format,
) -> Response {
    query.page_size = EventQuery::MAX_PAGE_SIZE;
    query.after = None;
    let header = (format == Format::Csv).then(|| Bytes::from_static(CSV_HEADER.as_bytes()));
    let start = Export {
        store,
        query,
        format,
        header,
    };
    let chunks = futures_util::stream::unfold(Some(start), |state| async move {
        let mut export = state?;
        if let Some(header) = export.header.take() {
            return Some((Ok(header), Some(export)));
        }
        let page = match export.store.query(&export.query).await {
            Ok(page) => page,
            Err(err) => {
                // The status is sent already: breaking the body off is how the
                // client learns that the export is incomplete.
                tracing::error!(%err, "an export broke off");
                return Some((Err(std::io::Error::other(err.to_string())), None));
            }
        };
        let chunk = match render(&page.events, export.format) {
            Ok(chunk) => chunk,
            Err(err) => {
                tracing::error!(%err, "an export broke off");
                return Some((Err(std::io::Error::other(err)), None));
            }
        };
        let rest = page.next.map(|cursor| {
            export.query.after = Some(cursor);
            export
        });
        Some((Ok(Bytes::from(chunk)), rest))
    });
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static(format.disposition()),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// One page of events in `format`.
fn render(events: &[StoredEvent], format: Format) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(events.iter().map(|e| e.body.len() + 2).sum());
    for event in events {
        match format {
            Format::Ndjson => {
                out.extend_from_slice(event.body.as_bytes());
                out.push(b'\n');
            }
            Format::Csv => csv_row(event, &mut out)?,
        }
    }
    Ok(out)
}

/// The fields of a stored event that make a CSV row. Ids are strings or numbers;
/// `changes` is kept as its JSON text.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CsvEvent<'a> {
    #[serde(default)]
    timestamp: Value,
    #[serde(default)]
    action: Value,
    #[serde(default)]
    actor_type: Value,
    #[serde(default)]
    actor_id: Value,
    #[serde(default)]
    target_type: Value,
    #[serde(default)]
    target_id: Value,
    #[serde(default)]
    event_name: Value,
    #[serde(borrow, default)]
    changes: Option<&'a RawValue>,
    #[serde(default)]
    source: Value,
    #[serde(default)]
    request_id: Value,
    #[serde(default)]
    ingested_by: Value,
    #[serde(default)]
    via: Value,
}

fn csv_row(event: &StoredEvent, out: &mut Vec<u8>) -> Result<(), String> {
    let fields: CsvEvent<'_> = serde_json::from_str(&event.body)
        .map_err(|e| format!("stored event {} is not an event: {e}", event.id))?;
    let text = |value: &Value| match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let cells = [
        event.id.to_string(),
        text(&fields.timestamp),
        text(&fields.action),
        text(&fields.actor_type),
        text(&fields.actor_id),
        text(&fields.target_type),
        text(&fields.target_id),
        text(&fields.event_name),
        fields
            .changes
            .map(|c| c.get().to_owned())
            .unwrap_or_default(),
        text(&fields.source),
        text(&fields.request_id),
        event.received_at.to_string(),
        text(&fields.ingested_by),
        text(&fields.via),
    ];
    auditlog_http::csv::write_row(cells.iter().map(String::as_str), out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_comes_from_the_parameter_before_the_accept_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/x-ndjson;q=0.9, */*"),
        );
        let none = QueryParams::new();
        let csv: QueryParams = [("format".to_owned(), "csv".to_owned())].into();
        let bad: QueryParams = [("format".to_owned(), "xml".to_owned())].into();
        assert_eq!(format(&none, &headers).ok().flatten(), Some(Format::Ndjson));
        assert_eq!(format(&csv, &headers).ok().flatten(), Some(Format::Csv));
        assert!(format(&bad, &headers).is_err());
        assert_eq!(format(&none, &HeaderMap::new()).ok().flatten(), None);
    }
}
