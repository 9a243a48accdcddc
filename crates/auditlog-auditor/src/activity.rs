//! `GET /api/data-events/activity`: how many matching events fell in each time
//! bucket, per action, counted by the store with one `GROUP BY`, for the website's
//! chart. Only non-empty buckets, ascending.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use auditlog_http::{ApiError, Authenticated, json_api};
use axum::extract::{OriginalUri, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::AuditorState;
use crate::query::{COLLECTION, Params, authorise, millis, parse_params, record_read};

/// The bucket width when none is asked for: an hour.
const DEFAULT_BUCKET_MS: i64 = 3_600_000;
/// The narrowest bucket: a minute.
const MIN_BUCKET_MS: i64 = 60_000;
/// The most buckets one answer may span.
const MAX_BUCKETS: i64 = 1_000;
/// The range when neither `filter[since]` nor `filter[until]` is given: 7 days.
const DEFAULT_RANGE_MS: i64 = 7 * 24 * 3_600_000;

/// `GET /api/data-events/activity?bucket=<ms>&…filters…`.
pub(crate) async fn activity(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    OriginalUri(uri): OriginalUri,
    Query(params): Query<Params>,
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
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
        .store
        .activity(&query, bucket)
        .await
        .map_err(ApiError::internal)?;
    record_read(&state, &principal, COLLECTION, &uri).await?;

    let mut by_start: BTreeMap<i64, (u64, BTreeMap<String, u64>)> = BTreeMap::new();
    for count in counts {
        let entry = by_start.entry(count.start).or_default();
        entry.0 += count.count;
        *entry.1.entry(count.action).or_default() += count.count;
    }
    let data: Vec<Value> = by_start
        .into_iter()
        .map(|(start, (count, by_action))| {
            json!({
                "type": "activity",
                "id": start.to_string(),
                "attributes": {"start": start, "count": count, "byAction": by_action},
            })
        })
        .collect();
    Ok(json_api(
        StatusCode::OK,
        &json!({
            "data": data,
            "meta": {"bucket": bucket, "since": since, "until": until},
        }),
    ))
}
