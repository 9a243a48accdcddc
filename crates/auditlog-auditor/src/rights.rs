//! The auditor's [`RightsCheck`]: whether a token's user still has the rights the
//! token claims, as the log says. The primary API records every change of a
//! user's rights (a demotion, a deletion) as an `auth.rights_changed` event on
//! `users/<id>`, staged in the same transaction as the change; the auditor looks
//! up the newest one about the token's user (one indexed query by target) and
//! applies `auditlog_auth::rights::allows`. What it read is trusted for
//! [`RIGHTS_FRESH_FOR`], so a revocation takes effect within that much after it
//! is stored, on every auditor sharing the store.
//!
//! Only events the auditor itself vetted on the way in count: they carry
//! `ingestedBy`, and `auth.*` names are accepted from services only (see
//! `ingest` and `consumer`). A rights event stored before that vetting existed
//! could have been planted by anyone who could ingest, to undo a later
//! revocation; it is ignored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditlog_auth::rights::{CurrentRights, RIGHTS_CHANGED, RightsCheck, RightsFuture, allows};
use auditlog_auth::{AuthError, Principal};
use auditlog_event::ObjectType;
use auditlog_store::{AuditStore, EventQuery, ObjectKey, Order};

/// How long what the log said of a user's rights is trusted.
pub const RIGHTS_FRESH_FOR: Duration = Duration::from_millis(500);

/// Most users whose rights are remembered; past it the memory starts over.
const CAPACITY: usize = 10_000;

/// Rights events read per lookup: the newest vetted one is almost always first.
const LOOKUP_PAGE: u32 = 20;

/// Checks tokens against the rights events in the store.
pub struct StoreRights {
    store: Arc<dyn AuditStore>,
    known: Mutex<HashMap<String, (Instant, CurrentRights)>>,
}

impl StoreRights {
    pub fn new(store: Arc<dyn AuditStore>) -> Self {
        StoreRights {
            store,
            known: Mutex::default(),
        }
    }

    fn remembered(&self, subject: &str) -> Option<CurrentRights> {
        let known = self.known.lock().ok()?;
        let (read_at, rights) = known.get(subject)?;
        (read_at.elapsed() < RIGHTS_FRESH_FOR).then(|| rights.clone())
    }

    fn remember(&self, subject: &str, rights: CurrentRights) {
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= CAPACITY {
                known.clear();
            }
            known.insert(subject.to_owned(), (Instant::now(), rights));
        }
    }

    /// What the newest vetted rights event about `users/<subject>` says.
    async fn read(&self, subject: &str) -> Result<CurrentRights, AuthError> {
        let users = ObjectType::parse("targetType", auditlog_auth::policy::PRINCIPAL_TYPE)
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let query = EventQuery {
            target: Some(ObjectKey {
                object_type: users,
                id: subject.to_owned(),
            }),
            event_names: vec![RIGHTS_CHANGED.to_owned()],
            page_size: LOOKUP_PAGE,
            order: Order::NewestFirst,
            ..EventQuery::default()
        };
        let page = self
            .store
            .query(&query)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        for stored in &page.events {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&stored.body) else {
                continue;
            };
            if event.get("ingestedBy").is_none() {
                continue;
            }
            return Ok(auditlog_auth::rights::rights_in_event(&event));
        }
        Ok(CurrentRights::Unknown)
    }
}

impl RightsCheck for StoreRights {
    fn check<'a>(&'a self, principal: &'a Principal) -> RightsFuture<'a> {
        Box::pin(async move {
            // Services and viewer tokens are not users: nothing of theirs is
            // in the log's rights events.
            if !principal.is_a_user() {
                return Ok(());
            }
            let rights = match self.remembered(&principal.subject) {
                Some(rights) => rights,
                None => {
                    let rights = self.read(&principal.subject).await?;
                    self.remember(&principal.subject, rights.clone());
                    rights
                }
            };
            allows(principal, rights)
        })
    }
}
