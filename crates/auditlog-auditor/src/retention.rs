//! Retention at the auditor: per-tenant policies, legal holds and pruning
//! (what the store keeps is described in [`auditlog_store::retention`]).
//!
//! - `GET /api/retention`, `PATCH /api/retention/{tenant}`: each tenant's
//!   retention in days (its own, or the deployment's default, `--retention-days`),
//!   with how many of its events were pruned.
//! - `GET/POST /api/legal-holds`, `DELETE /api/legal-holds/{id}`: holds on a
//!   tenant or one target of it, under which nothing is pruned.
//! - `POST /api/prunes`: prune now, before a given time, one tenant or all,
//!   for at most a few seconds per call (the answer's `next` goes on).
//! - [`run`]: the background task applying the policies every
//!   `--prune-interval`.
//!
//! Who may: admins read their tenant's retention and holds and place holds on
//! it (keeping more is always allowed); only operators make the log keep less
//! (set a retention, release a hold, prune), since a tenant's admin must not be
//! able to shorten the record of its own actions.
//!
//! Every change and every prune is itself recorded, as the auditor records
//! its own events, in the tenant it concerns: `audit.retention_changed`,
//! `audit.hold_placed`, `audit.hold_released` and `audit.pruned`.

use std::time::Duration;

use auditlog_auth::Principal;
use auditlog_event::{Action, Change, Changes, DataEvent, ObjectId, ObjectRef, ObjectType};
use auditlog_http::openapi::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use auditlog_http::{ApiError, Authenticated, JsonBody, PathParams, RequestId, json_api};
use auditlog_store::{
    AuditStore, LegalHold, PruneBatch, PruneCursor, PruneRule, RetentionPolicy, StoreError,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AuditorState;
use crate::document::Document;
use crate::reads::own_event;

/// How often the background task prunes, unless configured (`--prune-interval`).
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// How soon after the auditor starts the background task first prunes.
const FIRST_PRUNE_AFTER: Duration = Duration::from_secs(30);

/// The longest retention a policy may set: a hundred years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Events looked at per prune batch (one transaction each).
const PRUNE_BATCH: u32 = 1_000;

/// How long one `POST /api/prunes` prunes before it answers with `next`.
const PRUNE_CALL_BUDGET: Duration = Duration::from_secs(10);

/// Longest reason of a legal hold, in characters.
const MAX_REASON_CHARS: usize = 500;

const MS_PER_DAY: i64 = 86_400_000;

/// The resource types.
const RETENTION: &str = "retention";
const LEGAL_HOLDS: &str = "legal-holds";
const PRUNES: &str = "prunes";

/// The one query parameter of `GET /api/retention`.
const TENANT_FILTER: &str = "filter[tenantId]";

/// The target type of the auditor's records about a tenant (its retention, a
/// prune of it).
const TENANTS: &str = "tenants";
/// The target id of a prune of every tenant.
const ALL_TENANTS: &str = "*";

/// What retention the deployment applies: the configuration of [`run`] and of
/// the answers of `/api/retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// The retention of every tenant without its own policy; `None` keeps
    /// their events for ever.
    pub default_days: Option<u32>,
    /// How often the background task prunes.
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            default_days: None,
            interval: DEFAULT_PRUNE_INTERVAL,
        }
    }
}

/// The cutoff of a retention of `days` at `now_ms`: events before it expired.
fn cutoff(now_ms: i64, days: u32) -> i64 {
    now_ms.saturating_sub(i64::from(days).saturating_mul(MS_PER_DAY))
}

/// The rule the policies give at `now_ms`: each tenant with its own policy by
/// it, the others by the default.
pub fn rule_at(policies: &[RetentionPolicy], default_days: Option<u32>, now_ms: i64) -> PruneRule {
    PruneRule {
        tenants: policies
            .iter()
            .map(|policy| (policy.tenant.clone(), cutoff(now_ms, policy.days)))
            .collect(),
        others: default_days.map(|days| cutoff(now_ms, days)),
    }
}

/// What a prune did, summed over its batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneTotals {
    pub pruned: u64,
    pub held: u64,
    pub mismatched: u64,
    /// Kept because a log stream has not delivered them yet.
    pub undelivered: u64,
    /// Where to go on from, when the time allowed ran out first.
    pub next: Option<PruneCursor>,
}

impl PruneTotals {
    fn add(&mut self, batch: &PruneBatch) {
        self.pruned += batch.pruned;
        self.held += batch.held;
        self.mismatched += batch.mismatched;
        self.undelivered += batch.undelivered;
        self.next = batch.next;
    }
}

/// Prunes under `rule` from `after` (whole partitions first, when starting
/// from the beginning), batch by batch, until nothing is left or `budget` has
/// passed.
pub async fn prune(
    store: &dyn AuditStore,
    rule: &PruneRule,
    after: Option<PruneCursor>,
    budget: Option<Duration>,
) -> Result<PruneTotals, StoreError> {
    let started = std::time::Instant::now();
    let mut totals = PruneTotals::default();
    if after.is_none() {
        totals.pruned += store.prune_partitions(rule).await?;
    }
    let mut cursor = after;
    loop {
        let batch = store.prune_batch(rule, cursor, PRUNE_BATCH).await?;
        totals.add(&batch);
        metrics::counter!("auditlog_pruned_events_total").increment(batch.pruned);
        cursor = batch.next;
        if cursor.is_none() || budget.is_some_and(|budget| started.elapsed() >= budget) {
            return Ok(totals);
        }
    }
}

/// Gives the retention metrics their `# HELP` text.
pub(crate) fn describe_metrics() {
    metrics::describe_counter!(
        "auditlog_pruned_events_total",
        "Events whose rows retention pruned (their leaves stay in the tree)"
    );
}

/// The background task: shortly after start and then every `config.interval`,
/// prunes what the policies and the default say has expired, and records each
/// prune that removed anything as an `audit.pruned` event of the auditor. Ends
/// when `stopping` turns true.
pub async fn run(
    store: std::sync::Arc<dyn AuditStore>,
    config: RetentionConfig,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    // Soon after start, then every interval: an auditor restarted more often
    // than the interval would otherwise never prune.
    let mut wait = config.interval.min(FIRST_PRUNE_AFTER);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        wait = config.interval;
        let now = auditlog_event::now_ms();
        let policies = match store.retention_policies().await {
            Ok(policies) => policies,
            Err(err) => {
                tracing::warn!(%err, "retention: the policies could not be read; trying later");
                continue;
            }
        };
        let rule = rule_at(&policies, config.default_days, now);
        if rule.latest_cutoff().is_none() {
            continue;
        }
        match prune(&*store, &rule, None, None).await {
            Ok(totals) => {
                if totals.pruned > 0 || totals.mismatched > 0 {
                    tracing::info!(
                        pruned = totals.pruned,
                        held = totals.held,
                        mismatched = totals.mismatched,
                        undelivered = totals.undelivered,
                        "retention: pruned expired events"
                    );
                }
                if totals.undelivered > 0 {
                    tracing::warn!(
                        undelivered = totals.undelivered,
                        "retention: expired events are kept until every sink has delivered \
                         them; see `auditlog sinks list` for the one behind, and delete a \
                         sink that will not deliver again"
                    );
                }
                if totals.pruned > 0 {
                    let recorded = match pruned_event(None, None, &rule, &totals, None) {
                        Ok(event) => store
                            .insert_batch(&[event])
                            .await
                            .map_err(|e| e.to_string()),
                        Err(err) => Err(err.detail),
                    };
                    if let Err(err) = recorded {
                        tracing::warn!(%err, "retention: the prune could not be recorded");
                    }
                }
            }
            Err(err) => tracing::warn!(%err, "retention: pruning failed; trying later"),
        }
    }
}

/// An object reference the auditor makes of its own constants and of values
/// checked before (a tenant id, a UUID): valid by construction, but checked
/// all the same.
fn object(object_type: &str, id: &str) -> Result<ObjectRef, ApiError> {
    ObjectType::parse("targetType", object_type)
        .and_then(|t| Ok(ObjectRef::new(t, ObjectId::parse_text("targetId", id)?)))
        .map_err(|e| ApiError::internal(format!("`{object_type}/{id}` as an object: {e}")))
}

/// The record of a prune under `rule` of `tenant` (every tenant with `None`).
fn pruned_event(
    actor: Option<ObjectRef>,
    tenant: Option<&str>,
    rule: &PruneRule,
    totals: &PruneTotals,
    request_id: Option<&str>,
) -> Result<DataEvent, ApiError> {
    let mut meta = serde_json::Map::new();
    meta.insert("pruned".into(), totals.pruned.into());
    meta.insert("held".into(), totals.held.into());
    meta.insert("mismatched".into(), totals.mismatched.into());
    meta.insert("undelivered".into(), totals.undelivered.into());
    meta.insert(
        "cutoffs".into(),
        json!({"tenants": rule.tenants, "others": rule.others}),
    );
    own_event(
        Action::Deleted,
        actor,
        object(TENANTS, tenant.unwrap_or(ALL_TENANTS))?,
        "audit.pruned",
        tenant.unwrap_or(auditlog_event::DEFAULT_TENANT),
        meta,
        request_id,
    )
}

/// `principal` as the actor of the auditor's record of what it did.
fn actor_of(principal: &Principal) -> Result<ObjectRef, ApiError> {
    principal
        .actor()
        .map_err(|e| ApiError::internal(format!("{} as an actor: {e}", principal.name())))
}

/// Records `event`, answering 503 when it cannot be (`what` was done by then).
async fn record(state: &AuditorState, event: DataEvent, what: &str) -> Result<(), ApiError> {
    state.read_commits.commit(event).await.map_err(|e| {
        ApiError::unavailable(format!(
            "{what}, but it could not be recorded in the log: {e}"
        ))
    })
}

/// A store error as an answer: 503 when the database is unavailable.
fn store_failed(err: StoreError) -> ApiError {
    match err {
        StoreError::Unavailable(reason) => ApiError::unavailable(reason),
        other => ApiError::internal(other),
    }
}

fn admins_only(principal: &Principal) -> Result<(), ApiError> {
    if principal.may_place_legal_holds() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only admins and operators may see retention and legal holds",
        ))
    }
}

fn operators_only(principal: &Principal, what: &str) -> Result<(), ApiError> {
    if principal.may_shorten_retention() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "only operators may {what}: a tenant's admin cannot make the log keep less"
        )))
    }
}

/// One tenant's retention as a resource.
async fn retention_resource(
    state: &AuditorState,
    tenant: &str,
    policies: &[RetentionPolicy],
    holds: &[LegalHold],
) -> Result<Value, ApiError> {
    let own = policies.iter().find(|policy| policy.tenant == tenant);
    let pruned = state
        .store
        .pruned_count(Some(tenant))
        .await
        .map_err(store_failed)?;
    Ok(json!({
        "type": RETENTION,
        "id": tenant,
        "attributes": {
            "days": own.map(|policy| policy.days),
            "effectiveDays": own.map(|policy| policy.days).or(state.retention.default_days),
            "updatedAt": own.map(|policy| policy.updated_at),
            "legalHolds": holds.iter().filter(|hold| hold.tenant == tenant).count(),
            "prunedEvents": pruned.events,
            "newestPruned": pruned.newest,
        }
    }))
}

/// `GET /api/retention`.
#[utoipa::path(
    get,
    path = "/api/retention",
    tag = "retention",
    operation_id = "listRetention",
    summary = "Each tenant's retention, legal holds and pruned events",
    description = "Admins (their tenant) and operators (the default tenant, every tenant \
        with a policy or a hold of its own, or the one of `filter[tenantId]`). `days` is \
        the tenant's own policy (null: it follows `meta.defaultDays`), `effectiveDays` what \
        applies (null: kept for ever); `prunedEvents` counts its events whose rows \
        retention removed (their leaves stay in the log), the newest of them dated \
        `newestPruned`.",
    params(("filter[tenantId]" = Option<String>, Query, description = "One tenant only")),
    responses(
        (status = 200, description = "The tenants' retention", body = Object,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    axum::extract::Query(params): axum::extract::Query<crate::QueryParams>,
) -> Result<Response, ApiError> {
    admins_only(&principal)?;
    if let Some(unknown) = params.keys().find(|key| *key != TENANT_FILTER) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter `{unknown}`; this route takes `{TENANT_FILTER}` only"
        )));
    }
    let policies = state
        .store
        .retention_policies()
        .await
        .map_err(store_failed)?;
    let holds = state.store.legal_holds().await.map_err(store_failed)?;
    let tenants: Vec<String> = match (params.get(TENANT_FILTER), principal.bound_tenant()) {
        (Some(asked), _) => vec![crate::query::tenant_named(&principal, Some(asked))?],
        (None, Some(own)) => vec![own.to_owned()],
        (None, None) => {
            let mut all: std::collections::BTreeSet<String> = policies
                .iter()
                .map(|policy| policy.tenant.clone())
                .collect();
            all.extend(holds.iter().map(|hold| hold.tenant.clone()));
            all.insert(auditlog_event::DEFAULT_TENANT.to_owned());
            all.into_iter().collect()
        }
    };
    let mut data = Vec::with_capacity(tenants.len());
    for tenant in &tenants {
        data.push(retention_resource(&state, tenant, &policies, &holds).await?);
    }
    Ok(json_api(
        StatusCode::OK,
        &json!({
            "data": data,
            "meta": {
                "defaultDays": state.retention.default_days,
                "pruneIntervalSecs": state.retention.interval.as_secs(),
            }
        }),
    ))
}

/// `PATCH /api/retention/{tenant}`'s attributes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionChange {
    /// Days to keep the tenant's events; `null` to follow the default again.
    days: Option<u32>,
}

/// `PATCH /api/retention/{tenant}`.
#[utoipa::path(
    patch,
    path = "/api/retention/{tenant}",
    tag = "retention",
    operation_id = "setRetention",
    summary = "Set a tenant's retention",
    description = "Operators only. The body is `{\"data\": {\"type\": \"retention\", \"id\": TENANT, \
        \"attributes\": {\"days\": N}}}` with N from 1 to 36500, or `null` for the \
        deployment's default. The next prune (the background task, or `POST /api/prunes`) \
        applies it. Recorded as `audit.retention_changed` in the tenant.",
    params(("tenant" = String, Path, description = "The tenant")),
    request_body(content = Object, content_type = "application/vnd.api+json"),
    responses(
        (status = 200, description = "The tenant's retention", body = Object,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn set(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    request_id: RequestId,
    PathParams(tenant): PathParams<String>,
    JsonBody(document): JsonBody<Document<RetentionChange>>,
) -> Result<Response, ApiError> {
    operators_only(&principal, "change a tenant's retention")?;
    let tenant = crate::query::tenant_named(&principal, Some(&tenant))?;
    let change = document.attributes(RETENTION, Some(&tenant))?;
    if let Some(days) = change.days
        && !(1..=MAX_RETENTION_DAYS).contains(&days)
    {
        return Err(ApiError::bad_request(format!(
            "days must be from 1 to {MAX_RETENTION_DAYS}, or null for the default"
        )));
    }
    let before = state
        .store
        .retention_policies()
        .await
        .map_err(store_failed)?
        .into_iter()
        .find(|policy| policy.tenant == tenant)
        .map(|policy| policy.days);
    state
        .store
        .set_retention(&tenant, change.days)
        .await
        .map_err(store_failed)?;
    let actor = actor_of(&principal)?;
    let mut event = own_event(
        Action::Changed,
        Some(actor),
        object(TENANTS, &tenant)?,
        "audit.retention_changed",
        &tenant,
        serde_json::Map::new(),
        Some(request_id.as_str()),
    )?;
    // `null`: the tenant follows the deployment's default.
    let mut changes = Changes::new();
    changes.insert(
        "retentionDays".into(),
        Change::new(json!(before), json!(change.days)),
    );
    event.changes = Some(changes);
    record(&state, event, "the retention is set").await?;
    let policies = state
        .store
        .retention_policies()
        .await
        .map_err(store_failed)?;
    let holds = state.store.legal_holds().await.map_err(store_failed)?;
    let resource = retention_resource(&state, &tenant, &policies, &holds).await?;
    Ok(json_api(StatusCode::OK, &json!({ "data": resource })))
}

/// A legal hold as a resource.
fn hold_resource(hold: &LegalHold) -> Value {
    let (target_type, target_id) = hold.target.clone().unzip();
    json!({
        "type": LEGAL_HOLDS,
        "id": hold.id.to_string(),
        "attributes": {
            "tenantId": hold.tenant,
            "targetType": target_type,
            "targetId": target_id,
            "reason": hold.reason,
            "placedBy": hold.placed_by,
            "placedAt": hold.placed_at,
        }
    })
}

/// `GET /api/legal-holds`.
#[utoipa::path(
    get,
    path = "/api/legal-holds",
    tag = "retention",
    operation_id = "listLegalHolds",
    summary = "The legal holds",
    description = "Admins (their tenant's) and operators (every one). While a hold exists, \
        no event it covers (the tenant's, or its one target's) is pruned.",
    responses(
        (status = 200, description = "The holds", body = Object,
            content_type = "application/vnd.api+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list_holds(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    admins_only(&principal)?;
    let holds = state.store.legal_holds().await.map_err(store_failed)?;
    let data: Vec<Value> = holds
        .iter()
        .filter(|hold| principal.may_enter(&hold.tenant))
        .map(hold_resource)
        .collect();
    Ok(json_api(StatusCode::OK, &json!({ "data": data })))
}

/// `POST /api/legal-holds`' attributes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HoldRequest {
    /// The tenant; an admin's own when left out (an operator's: the default).
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    target_type: Option<String>,
    #[serde(default)]
    target_id: Option<Value>,
    reason: String,
}

/// `POST /api/legal-holds`.
#[utoipa::path(
    post,
    path = "/api/legal-holds",
    tag = "retention",
    operation_id = "placeLegalHold",
    summary = "Place a legal hold on a tenant or one target",
    description = "Admins (on their tenant) and operators. The body is `{\"data\": {\"type\": \
        \"legal-holds\", \"attributes\": {\"reason\": …, \"tenantId\"?: …, \"targetType\"?: …, \
        \"targetId\"?: …}}}`: with a target, only the events on it are held; without, the \
        whole tenant's. Recorded as `audit.hold_placed`.",
    request_body(content = Object, content_type = "application/vnd.api+json"),
    responses(
        (status = 201, description = "The hold", body = Object,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn place_hold(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    request_id: RequestId,
    JsonBody(document): JsonBody<Document<HoldRequest>>,
) -> Result<Response, ApiError> {
    admins_only(&principal)?;
    let asked = document.attributes(LEGAL_HOLDS, None)?;
    let tenant = crate::query::tenant_named(&principal, asked.tenant_id.as_deref())?;
    let reason = asked.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::bad_request(format!(
            "reason must say why, in 1 to {MAX_REASON_CHARS} characters"
        )));
    }
    let target = match (asked.target_type, asked.target_id) {
        (None, None) => None,
        (Some(kind), Some(id)) => {
            let kind = ObjectType::parse("targetType", kind)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            // An id as events carry it: text, or an integer (`42` and `"42"`
            // name the same target).
            let id = match id {
                Value::String(text) => ObjectId::parse_text("targetId", text)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
                    .key(),
                Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                _ => {
                    return Err(ApiError::bad_request(
                        "targetId must be a string or an integer",
                    ));
                }
            };
            Some((kind.as_str().to_owned(), id))
        }
        _ => {
            return Err(ApiError::bad_request(
                "targetType and targetId go together: both for one target, neither for the \
                 whole tenant",
            ));
        }
    };
    let hold = LegalHold {
        id: Uuid::now_v7(),
        tenant: tenant.clone(),
        target,
        reason: reason.to_owned(),
        placed_by: principal.name(),
        placed_at: auditlog_event::now_ms(),
    };
    state.store.place_hold(&hold).await.map_err(store_failed)?;
    let actor = actor_of(&principal)?;
    let event = own_event(
        Action::Created,
        Some(actor),
        object(LEGAL_HOLDS, &hold.id.to_string())?,
        "audit.hold_placed",
        &tenant,
        hold_meta(&hold),
        Some(request_id.as_str()),
    )?;
    record(&state, event, "the hold is placed").await?;
    Ok(json_api(
        StatusCode::CREATED,
        &json!({ "data": hold_resource(&hold) }),
    ))
}

/// What the record of a hold says of it.
fn hold_meta(hold: &LegalHold) -> serde_json::Map<String, Value> {
    match hold_resource(hold).get("attributes") {
        Some(Value::Object(attributes)) => attributes.clone(),
        _ => serde_json::Map::new(),
    }
}

/// `DELETE /api/legal-holds/{id}`.
#[utoipa::path(
    delete,
    path = "/api/legal-holds/{id}",
    tag = "retention",
    operation_id = "releaseLegalHold",
    summary = "Release a legal hold",
    description = "Operators only. The events it held are pruned by the next prune if their \
        retention has passed. Recorded as `audit.hold_released`.",
    params(("id" = String, Path, description = "The hold's id")),
    responses(
        (status = 204, description = "Released"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn release_hold(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    request_id: RequestId,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    admins_only(&principal)?;
    let absent = || ApiError::not_found(format!("there is no legal hold `{id}`"));
    let hold_id = Uuid::parse_str(&id).map_err(|_| absent())?;
    let holds = state.store.legal_holds().await.map_err(store_failed)?;
    // Another tenant's hold is not told apart from none.
    let hold = holds
        .iter()
        .find(|hold| hold.id == hold_id && principal.may_enter(&hold.tenant))
        .ok_or_else(absent)?;
    operators_only(&principal, "release a legal hold")?;
    let Some(released) = state
        .store
        .release_hold(hold.id)
        .await
        .map_err(store_failed)?
    else {
        return Err(absent());
    };
    let actor = actor_of(&principal)?;
    let event = own_event(
        Action::Deleted,
        Some(actor),
        object(LEGAL_HOLDS, &released.id.to_string())?,
        "audit.hold_released",
        &released.tenant,
        hold_meta(&released),
        Some(request_id.as_str()),
    )?;
    record(&state, event, "the hold is released").await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/prunes`' attributes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PruneRequest {
    /// Prune events with a timestamp before this, ms since the Unix epoch.
    before: i64,
    /// Only this tenant's; every tenant's when left out.
    #[serde(default)]
    tenant_id: Option<String>,
    /// The previous answer's `next`, to go on where it stopped.
    #[serde(default)]
    after: Option<String>,
}

/// A prune cursor as the API shows it: `TIMESTAMP.UUID`.
fn cursor_text(cursor: PruneCursor) -> String {
    format!("{}.{}", cursor.timestamp, cursor.id)
}

fn parse_cursor(text: &str) -> Option<PruneCursor> {
    let (timestamp, id) = text.split_once('.')?;
    Some(PruneCursor {
        timestamp: timestamp.parse().ok()?,
        id: Uuid::parse_str(id).ok()?,
    })
}

/// `POST /api/prunes`.
#[utoipa::path(
    post,
    path = "/api/prunes",
    tag = "retention",
    operation_id = "prune",
    summary = "Prune events before a time now",
    description = "Operators only. The body is `{\"data\": {\"type\": \"prunes\", \"attributes\": \
        {\"before\": MS, \"tenantId\"?: …, \"after\"?: NEXT}}}`. Removes the rows of the \
        sealed events (of the tenant, or of every tenant) dated before `before` that no \
        legal hold covers and every sink has delivered (`held` and `undelivered` count the \
        ones kept); their leaves stay in the log, so checkpoints and the proofs of \
        every other event still verify, and `auditlog verify` reports them as pruned. Works \
        for about ten seconds per call: while `done` is false, call again with `after` set \
        to the answer's `next`. Each call is recorded as `audit.pruned`.",
    request_body(content = Object, content_type = "application/vnd.api+json"),
    responses(
        (status = 200, description = "What this call pruned", body = Object,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn prune_now(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    request_id: RequestId,
    JsonBody(document): JsonBody<Document<PruneRequest>>,
) -> Result<Response, ApiError> {
    operators_only(&principal, "prune")?;
    let asked = document.attributes(PRUNES, None)?;
    let now = auditlog_event::now_ms();
    if asked.before > now {
        return Err(ApiError::bad_request(
            "before must not be in the future: only events already dated can expire",
        ));
    }
    let tenant = match &asked.tenant_id {
        Some(tenant) => Some(crate::query::tenant_named(&principal, Some(tenant))?),
        None => None,
    };
    let after = match &asked.after {
        Some(text) => Some(parse_cursor(text).ok_or_else(|| {
            ApiError::bad_request("after must be the `next` of an earlier answer")
        })?),
        None => None,
    };
    let rule = match &tenant {
        Some(tenant) => PruneRule::tenant_before(tenant, asked.before),
        None => PruneRule::everything_before(asked.before),
    };
    let totals = prune(&*state.store, &rule, after, Some(PRUNE_CALL_BUDGET))
        .await
        .map_err(store_failed)?;
    let actor = actor_of(&principal)?;
    let event = pruned_event(
        Some(actor),
        tenant.as_deref(),
        &rule,
        &totals,
        Some(request_id.as_str()),
    )?;
    let id = event.id;
    record(&state, event, "events were pruned").await?;
    tracing::info!(
        pruned = totals.pruned,
        held = totals.held,
        tenant = tenant.as_deref().unwrap_or(ALL_TENANTS),
        by = %principal.name(),
        "pruned events"
    );
    Ok(json_api(
        StatusCode::OK,
        &json!({"data": {
            "type": PRUNES,
            "id": id.to_string(),
            "attributes": {
                "before": asked.before,
                "tenantId": tenant,
                "pruned": totals.pruned,
                "held": totals.held,
                "mismatched": totals.mismatched,
                "undelivered": totals.undelivered,
                "done": totals.next.is_none(),
                "next": totals.next.map(cursor_text),
            }
        }}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tenant_with_a_policy_has_its_cutoff_and_the_rest_the_defaults() {
        let now = 100 * MS_PER_DAY;
        let policies = [RetentionPolicy {
            tenant: "acme".into(),
            days: 30,
            updated_at: 0,
        }];
        let rule = rule_at(&policies, Some(90), now);
        assert_eq!(rule.cutoff("acme"), Some(70 * MS_PER_DAY));
        assert_eq!(rule.cutoff("globex"), Some(10 * MS_PER_DAY));
        let without_default = rule_at(&policies, None, now);
        assert_eq!(without_default.cutoff("globex"), None);
        assert_eq!(rule_at(&[], None, now).latest_cutoff(), None);
    }

    #[test]
    fn a_prune_cursor_reads_back_as_shown() {
        let cursor = PruneCursor {
            timestamp: 1_700_000_000_000,
            id: Uuid::from_u128(42),
        };
        assert_eq!(parse_cursor(&cursor_text(cursor)), Some(cursor));
        assert_eq!(parse_cursor("nonsense"), None);
        assert_eq!(parse_cursor("12.not-a-uuid"), None);
    }
}
