//! `GET /api/data-events/stream`: a live tail as Server-Sent Events. Each stored
//! event matching the filters (narrowed by the policy like any query) is sent as
//! `event: data-event`, `id: <seq>`, `data: <JSON:API resource object>`.
//!
//! The position is the store's commit-order `seq`, so a client that reconnects with
//! `Last-Event-ID` (or `?after=`) first gets every matching event committed after
//! the last one it saw, then live ones, none twice. The tail polls the store
//! ([`AuditStore::stored_after`](auditlog_store::AuditStore::stored_after)) every
//! [`POLL_EVERY`]: simple, and it sees events stored by any auditor sharing the
//! store, on every backend.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use auditlog_http::{ApiError, Authenticated};
use auditlog_store::{AuditStore, EventQuery, StoredEvent};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::time::Instant;

use crate::AuditorState;
use crate::filters::{EventFilters, QueryParams};
use crate::openapi::StreamOptions;
use crate::query::{authorise, parse_params, resource};
use crate::reads::{COLLECTION, ReadRequest, record_read};
use auditlog_http::openapi::{BadRequest, Forbidden, Unauthorized, Unavailable};

/// How often the store is asked for new events.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// How often an idle stream sends a comment, so that proxies keep it open.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);

/// Events read from the store per poll.
const BATCH: u32 = 500;

/// How long one connection lasts before the server ends it. The client reconnects
/// with `Last-Event-ID` and misses nothing; this only retires forgotten streams
/// (shutdown ends them at once through `AuditorState::stopping`).
const MAX_CONNECTION: Duration = Duration::from_secs(600);

/// What the client should wait before reconnecting after the stream ends.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// The state of one client's tail.
struct Tail {
    store: Arc<dyn AuditStore>,
    query: EventQuery,
    /// The last position read from the store.
    after: i64,
    /// Read, not yet sent.
    pending: VecDeque<StoredEvent>,
    /// When the connection must end (see [`MAX_CONNECTION`]).
    ends: Instant,
    /// Whether the reconnection delay was sent.
    greeted: bool,
    /// Turns `true` when the service stops.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// Beyond this, an event's timestamp is flagged as far from its receipt.
    tolerance: Duration,
}

/// `GET /api/data-events/stream`.
#[utoipa::path(
    get,
    path = "/api/data-events/stream",
    tag = "events",
    operation_id = "streamEvents",
    summary = "A live tail of matching events, as Server-Sent Events",
    description = "Each event stored after the start (or after `Last-Event-ID`) that \
        matches the filters is sent as `event: data-event`, `id: <position>`, \
        `data: <the JSON:API resource object>`. The server ends a connection after 10 \
        minutes; reconnecting with `Last-Event-ID` misses nothing.",
    params(EventFilters, StreamOptions),
    responses(
        (status = 200, description = "The event stream; it does not end by itself",
            body = String, content_type = "text/event-stream"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn stream(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    read: ReadRequest,
    headers: HeaderMap,
    Query(params): Query<QueryParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let query = authorise(&principal, parse_params(&params, &["after"])?)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .or(params.get("after").map(String::as_str));
    let after = match resume {
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|seq| *seq >= 0)
            .ok_or_else(|| {
                ApiError::bad_request("Last-Event-ID (or after) is not a position this server sent")
            })?,
        None => state.store.last_seq().await.map_err(ApiError::internal)?,
    };
    record_read(&state, &principal, COLLECTION, &read).await?;
    let tail = Tail {
        store: state.store.clone(),
        query,
        after,
        pending: VecDeque::new(),
        ends: Instant::now() + MAX_CONNECTION,
        greeted: false,
        stopping: state.stopping.clone(),
        tolerance: state.clock_skew_tolerance,
    };
    let events = futures_util::stream::unfold(tail, |mut tail| async move {
        if !tail.greeted {
            tail.greeted = true;
            let hello = Event::default().retry(RECONNECT_AFTER).comment("tail");
            return Some((Ok(hello), tail));
        }
        loop {
            if let Some(stored) = tail.pending.pop_front() {
                return Some((Ok(sse_event(&stored, tail.tolerance)), tail));
            }
            if Instant::now() >= tail.ends || *tail.stopping.borrow() {
                return None;
            }
            match tail
                .store
                .stored_after(&tail.query, tail.after, BATCH)
                .await
            {
                Ok(found) if !found.is_empty() => {
                    tail.after = found.last().map_or(tail.after, |last| last.seq);
                    tail.pending.extend(found);
                }
                Ok(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL_EVERY) => {}
                        _ = stopped(&mut tail.stopping) => {}
                    }
                }
                Err(err) => {
                    // The store may come back; the client stays connected meanwhile.
                    tracing::warn!(%err, "a live tail could not read the store");
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE_EVERY)))
}

/// Completes when the service stops (never, if nobody can tell it to).
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    if stopping.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One stored event as an SSE message.
fn sse_event(stored: &StoredEvent, tolerance: Duration) -> Event {
    let event = Event::default()
        .event("data-event")
        .id(stored.seq.to_string());
    let data = resource(stored, tolerance)
        .map_err(|e| e.detail)
        .and_then(|resource| serde_json::to_string(&resource).map_err(|e| e.to_string()));
    match data {
        Ok(data) => event.data(data),
        Err(err) => {
            tracing::error!(%err, id = %stored.id, "a stored event could not be sent");
            event.comment("an event could not be read")
        }
    }
}
