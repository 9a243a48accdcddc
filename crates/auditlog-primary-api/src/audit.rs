//! How the data layer records what it does. Each repository call builds the event
//! for the [`Actor`]: the acting principal, and the id of the request it acts in
//! (copied into every event as `requestId`). Reads (`viewed`) go to the emitter, an in-memory
//! enqueue. Mutations (`created`, `changed`, `deleted`) are staged in the outbox
//! table inside the transaction of the change itself, so that the event exists if
//! and only if the change was committed; the [`crate::outbox`] relay publishes them.

use std::sync::Arc;

use auditlog_auth::Principal;
use auditlog_emit::Emitter;
use auditlog_event::{
    Action, Change, Changes, DataEvent, MAX_LABEL_CHARS, ObjectId, ObjectRef, ObjectType, now_ms,
};
use serde_json::Value;
use sqlx::{Database, Encode, Executor, IntoArguments, Transaction, Type};
use tokio::sync::Notify;

use crate::DataError;
use crate::db::Dialect;

const STAGE_EVENT: &str = "INSERT INTO audit_outbox (event) VALUES (?)";

/// The `source` of events this service emits.
pub const SOURCE: &str = "api";
/// The `meta` key of the id the client gave its request.
pub const CLIENT_REQUEST_ID: &str = "clientRequestId";

/// Who acts on the data layer, and in which request: every repository call takes
/// one, and every event it records names the principal as its actor and carries
/// the request id. Plain data, so the data layer knows nothing of HTTP: the routes
/// build it from the token and the request's `X-Request-Id`.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Who acts; the policy decides what they may do.
    pub principal: Principal,
    /// The correlation id of the request, recorded as the events' `requestId`;
    /// `None` outside a request (or when an id longer than an event allows).
    pub request_id: Option<String>,
    /// What the client called the request (its `X-Request-Id`), recorded as the
    /// events' `meta.clientRequestId`: said by the client, so never the
    /// `requestId` itself.
    pub client_request_id: Option<String>,
}

impl Actor {
    /// `principal` acting in the request `request_id`. An id longer than an
    /// event's `requestId` may be is dropped rather than making events invalid.
    pub fn new(principal: Principal, request_id: Option<String>) -> Self {
        Actor {
            principal,
            request_id: request_id.filter(|id| id.chars().count() <= MAX_LABEL_CHARS),
            client_request_id: None,
        }
    }

    /// The same actor in a request the client called `id`.
    pub fn with_client_request_id(mut self, id: Option<String>) -> Self {
        self.client_request_id = id.filter(|id| id.chars().count() <= MAX_LABEL_CHARS);
        self
    }
}

/// `principal` acting outside any request (jobs, tests).
impl From<Principal> for Actor {
    fn from(principal: Principal) -> Self {
        Actor::new(principal, None)
    }
}

/// Records the events of the data layer.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// `None` when auditing is switched off (for measuring what auditing costs).
    emitter: Option<Emitter>,
    /// Wakes the outbox relay when a transaction that staged events committed.
    outbox_ready: Arc<Notify>,
}

impl Recorder {
    pub fn new(emitter: Emitter) -> Self {
        Recorder {
            emitter: Some(emitter),
            outbox_ready: Arc::new(Notify::new()),
        }
    }

    /// A recorder that records nothing: the application without auditing, to
    /// compare against (`--audit=off`).
    pub fn disabled() -> Self {
        Recorder {
            emitter: None,
            outbox_ready: Arc::new(Notify::new()),
        }
    }

    /// What the relay waits on.
    pub(crate) fn outbox_ready(&self) -> Arc<Notify> {
        self.outbox_ready.clone()
    }

    /// Records, through the emitter, that `actor` did `action` (a read) to
    /// `target_type`/`target_id`.
    pub(crate) fn record(
        &self,
        actor: &Actor,
        action: Action,
        target_type: &'static str,
        target_id: i64,
        changes: Option<Changes>,
    ) {
        let Some(emitter) = &self.emitter else {
            return;
        };
        match build(actor, action, target_type, target_id, changes) {
            Some(event) => emitter.emit(event),
            None => tracing::error!(%target_type, "an audit event could not be built"),
        }
    }

    /// Stages a mutation event in the outbox, inside the transaction that makes the
    /// change: it is committed, or rolled back, with it. `event_name` names what
    /// kind of change it is, when that matters to a reader of the log (the
    /// auditor reads `auth.rights_changed` to revoke tokens).
    #[allow(clippy::too_many_arguments)] // each is one part of the event
    pub(crate) async fn stage<DB>(
        &self,
        tx: &mut Transaction<'_, DB>,
        dialect: Dialect,
        actor: &Actor,
        action: Action,
        target: (&'static str, i64),
        changes: Changes,
        event_name: Option<&'static str>,
    ) -> Result<(), DataError>
    where
        DB: Database,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        if self.emitter.is_none() {
            return Ok(());
        }
        let mut event = build(actor, action, target.0, target.1, Some(changes))
            .ok_or_else(|| DataError::Database("an audit event could not be built".into()))?;
        event.event_name = event_name.map(str::to_owned);
        stage_event(tx, dialect, &event).await?;
        Ok(())
    }

    /// Tells the relay that staged events were committed.
    pub(crate) fn staged_committed(&self) {
        self.outbox_ready.notify_one();
    }
}

/// Writes `event` to the outbox in `tx`, for the relay to publish once `tx` commits.
pub(crate) async fn stage_event<DB>(
    tx: &mut Transaction<'_, DB>,
    dialect: Dialect,
    event: &DataEvent,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    sqlx::query(dialect.sql(STAGE_EVENT))
        .bind(event.to_json())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The actor of what the application does by itself, outside any request: the
/// rows it seeds at its first start.
pub(crate) const SYSTEM_ACTOR: (&str, &str) = ("system", "seed");

/// `created` of a row the application seeded itself, by [`SYSTEM_ACTOR`], with
/// every field as `changes`: an object's history starts with what it was created as.
pub(crate) fn seeded_event(
    target_type: &'static str,
    target_id: i64,
    changes: Changes,
    event_name: &str,
) -> Result<DataEvent, auditlog_event::EventError> {
    let actor = ObjectRef::new(
        ObjectType::parse("actorType", SYSTEM_ACTOR.0)?,
        ObjectId::parse_text("actorId", SYSTEM_ACTOR.1)?,
    );
    let mut event = event_by(
        actor,
        Action::Created,
        target_type,
        target_id,
        Some(changes),
    )?;
    event.event_name = Some(event_name.to_owned());
    Ok(event)
}

fn build(
    actor: &Actor,
    action: Action,
    target_type: &'static str,
    target_id: i64,
    changes: Option<Changes>,
) -> Option<DataEvent> {
    let mut event = event_by(
        actor.principal.actor().ok()?,
        action,
        target_type,
        target_id,
        changes,
    )
    .ok()?;
    // The acting user's tenant: what its data layer does belongs to it.
    event.set_tenant(actor.principal.home_tenant());
    event.request_id = actor.request_id.clone();
    if let Some(client) = &actor.client_request_id {
        let mut meta = serde_json::Map::new();
        meta.insert(CLIENT_REQUEST_ID.into(), client.clone().into());
        event.meta = Some(meta);
    }
    Some(event)
}

/// What every event of this service is: `actor` did `action` to
/// `target_type`/`target_id`, now, from [`SOURCE`].
fn event_by(
    actor: ObjectRef,
    action: Action,
    target_type: &'static str,
    target_id: i64,
    changes: Option<Changes>,
) -> Result<DataEvent, auditlog_event::EventError> {
    let target = ObjectRef::new(ObjectType::parse("targetType", target_type)?, target_id);
    let mut event = DataEvent::new(action, actor, target, now_ms());
    event.changes = changes;
    event.source = Some(SOURCE.into());
    Ok(event)
}

/// The changes between two field lists: only fields whose value really differs.
pub(crate) fn diff(before: &[(&'static str, Value)], after: &[(&'static str, Value)]) -> Changes {
    before
        .iter()
        .zip(after)
        .filter(|((_, prev), (_, next))| prev != next)
        .map(|((field, prev), (_, next))| {
            ((*field).to_owned(), Change::new(prev.clone(), next.clone()))
        })
        .collect()
}

/// Every field as created (`prev` null) or deleted (`next` null).
pub(crate) fn all_fields(fields: &[(&'static str, Value)], created: bool) -> Changes {
    fields
        .iter()
        .map(|(field, value)| {
            let change = if created {
                Change::new(Value::Null, value.clone())
            } else {
                Change::new(value.clone(), Value::Null)
            };
            ((*field).to_owned(), change)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_diff_holds_only_the_fields_that_changed() {
        let before = [("name", json!("Ann")), ("agreedTos", json!(false))];
        let after = [("name", json!("Ann")), ("agreedTos", json!(true))];
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes["agreedTos"].prev, json!(false));
        assert_eq!(changes["agreedTos"].next, json!(true));
    }

    fn admin() -> Principal {
        Principal::new("1".into(), auditlog_auth::Role::Admin).unwrap()
    }

    #[test]
    fn an_event_carries_the_request_id_of_its_actor() {
        let actor = Actor::new(admin(), Some("my-req-123".into()));
        let event = build(&actor, Action::Viewed, "users", 2, None).unwrap();
        assert_eq!(event.request_id.as_deref(), Some("my-req-123"));
        let reparsed = DataEvent::parse_json(&event.to_json(), 0).unwrap();
        assert_eq!(reparsed, event);
    }

    #[test]
    fn a_request_id_too_long_for_an_event_is_left_out() {
        let actor = Actor::new(admin(), Some("x".repeat(MAX_LABEL_CHARS + 1)));
        let event = build(&actor, Action::Viewed, "users", 2, None).unwrap();
        assert_eq!(event.request_id, None);
        let outside_a_request = build(&Actor::from(admin()), Action::Viewed, "users", 2, None);
        assert_eq!(outside_a_request.unwrap().request_id, None);
    }

    #[test]
    fn an_unchanged_object_has_an_empty_diff() {
        let fields = [("name", json!("Ann"))];
        assert!(diff(&fields, &fields).is_empty());
    }
}
