//! `GET /api/data-events/activity`: how many matching events fell in each time
//! bucket, per action, counted by the store with one `GROUP BY`, for the website's
//! chart. Only non-empty buckets, ascending.

use std::collections::BTreeMap;

use auditlog_http::{ApiError, Authenticated, json_api};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AuditorState;
use crate::filters::{EventFilters, QueryParams, millis};
use crate::openapi::ActivityOptions;
use crate::query::{authorise, parse_params};
use crate::reads::{COLLECTION, ReadRequest, record_read};
use auditlog_http::openapi::{BadRequest, Forbidden, Unauthorized, Unavailable};

/// The bucket width when none is asked for: an hour.
const DEFAULT_BUCKET_MS: i64 = 3_600_000;
/// The narrowest bucket: a minute.
pub(crate) const MIN_BUCKET_MS: i64 = 60_000;
/// The most buckets one answer may span.
pub(crate) const MAX_BUCKETS: i64 = 1_000;
/// The range when neither `filter[since]` nor `filter[until]` is given: 7 days.
const DEFAULT_RANGE_MS: i64 = 7 * 24 * 3_600_000;

/// `GET /api/data-events/activity?bucket=<ms>&…filters…`.
#[utoipa::path(
    get,
    path = "/api/data-events/activity",
    tag = "events",
    operation_id = "eventActivity",
    summary = "How many matching events fell in each time bucket, per action",
    description = "Only non-empty buckets, oldest first. Without filter[since] and \
        filter[until] the range is the last 7 days.",
    params(EventFilters, ActivityOptions),
    responses(
        (status = 200, description = "The buckets", body = ActivityDocument,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn activity(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    read: ReadRequest,
    Query(params): Query<QueryParams>,
) -> Result<Response, ApiError> {
    let mut query = parse_params(&params, &["bucket"])?;
    let bucket = match params.get("bucket") {
        Some(value) => millis("bucket", value)?,
        None => DEFAULT_BUCKET_MS,
    };
    if bucket < MIN_BUCKET_MS {
        return Err(ApiError::bad_request(format!(
            "bucket must be at least {MIN_BUCKET_MS} ms"
        )));
    }
    let now = auditlog_event::now_ms();
    let (since, until) = match (query.since, query.until) {
        (Some(since), Some(until)) => (since, until),
        (Some(since), None) => (since, now.max(since)),
        (None, Some(until)) => (until.saturating_sub(DEFAULT_RANGE_MS).max(0), until),
        (None, None) => (now - DEFAULT_RANGE_MS, now),
    };
    if until < since {
        return Err(ApiError::bad_request(
            "filter[until] must not be before filter[since]",
        ));
    }
    let buckets = (until / bucket) - (since / bucket) + 1;
    if buckets > MAX_BUCKETS {
        return Err(ApiError::bad_request(format!(
            "{buckets} buckets of {bucket} ms between since and until; at most {MAX_BUCKETS}: \
             widen the bucket or narrow the range"
        )));
    }
    query.since = Some(since);
    query.until = Some(until);
    let query = authorise(&principal, query)?;
    let counts = state
        .query_store
        .activity(&query, bucket)
        .await
        .map_err(ApiError::internal)?;
    record_read(&state, &principal, COLLECTION, &read).await?;

    let mut by_start: BTreeMap<i64, (u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for count in counts {
        let entry = by_start.entry(count.start).or_default();
        entry.0 += count.count;
        *entry.1.entry(count.action).or_default() += count.count;
    }
    let data = by_start
        .into_iter()
        .map(|(start, (count, by_action))| Bucket {
            kind: "activity",
            id: start.to_string(),
            attributes: BucketAttributes {
                start,
                count,
                by_action,
            },
        })
        .collect();
    Ok(json_api(
        StatusCode::OK,
        &ActivityDocument {
            data,
            meta: ActivityMeta {
                bucket,
                since,
                until,
            },
        },
    ))
}

/// The activity histogram.
#[derive(Serialize, ToSchema)]
pub(crate) struct ActivityDocument {
    data: Vec<Bucket>,
    meta: ActivityMeta,
}

/// One non-empty bucket.
#[derive(Serialize, ToSchema)]
struct Bucket {
    /// Always `activity`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "activity")]
    kind: &'static str,
    /// The bucket's start, as text.
    id: String,
    attributes: BucketAttributes,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct BucketAttributes {
    /// The bucket's first millisecond: a multiple of the bucket width.
    start: i64,
    /// Events in the bucket.
    count: u64,
    /// Events in the bucket per action.
    by_action: BTreeMap<String, u64>,
}

/// The range and width the buckets cover.
#[derive(Serialize, ToSchema)]
struct ActivityMeta {
    /// Bucket width, in milliseconds.
    bucket: i64,
    since: i64,
    until: i64,
}
