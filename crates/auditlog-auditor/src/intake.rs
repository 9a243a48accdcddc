//! What the auditor checks and records about who delivered each event, whatever
//! carried it (HTTP ingest, the consume loop): the producer's word about itself is
//! not taken.
//!
//! - Every stored event gets the auditor's receipt: `ingestedBy` (the principal
//!   that delivered it, as authenticated: the bearer token's, the broker account,
//!   or the process itself) and `via` (the transport). Producers cannot send
//!   these fields (the event contract refuses them), and they are part of the
//!   stored event, so of its leaf in the verifiable log.
//! - A producer id belongs to the principal that delivered it first
//!   (`AuditStore::bind_producer`): another principal's events numbered under it
//!   are refused, so nobody can fill a gap in someone else's numbering and hide
//!   a lost event.
//! - A sender bound to one tenant (a tenant's service or admin token) delivers
//!   only that tenant's events; its events that name no tenant are given its
//!   own.
//! - The auditor's own source and event names, and the rights events the
//!   auditor revokes tokens by, are refused from those who may not send them
//!   (`auditlog_auth::policy::reserved_for_others`).
//! - What the store would not keep is refused too (`AuditStore::refusal`): with
//!   personal fields declared, an event too large once they are encrypted, or
//!   one that sends a value shaped like the auditor's ciphertext.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use auditlog_auth::policy::reserved_for_others;
use auditlog_event::DataEvent;
use auditlog_store::{AuditStore, StoreError};

/// Producer bindings remembered per process; past it the memory starts over
/// (bindings never change, so forgetting one only costs a lookup).
const BOUND_CAPACITY: usize = 10_000;

/// Who delivered a batch, and how.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Recorded as `ingestedBy`, and what producer ids are bound to.
    pub by: String,
    /// Recorded as `via`: `http`, `amqp`, `embedded`.
    pub via: &'static str,
    /// Whether this sender may deliver rights events (`auth.*`): services over
    /// HTTP, and the transports services publish on.
    pub may_publish_rights: bool,
    /// The one tenant this sender may deliver for, if it is bound to one: its
    /// events of other tenants are refused, and its events naming none are
    /// given this one. `None` for senders of every tenant (operators, services
    /// whose token says so, the transports).
    pub tenant: Option<String>,
}

impl Delivered {
    /// `event` as it belongs to this sender's tenant: an event naming none is
    /// given the sender's (the default tenant's events name none).
    fn stamp_tenant(&self, mut event: DataEvent) -> DataEvent {
        if event.tenant_id.is_none()
            && let Some(own) = &self.tenant
        {
            event.set_tenant(own);
        }
        event
    }
}

/// One refused event: its place in the batch, the event, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub index: usize,
    pub event: DataEvent,
    pub reason: String,
}

/// The auditor's intake checks, with the producer bindings it has seen.
pub struct Intake {
    store: Arc<dyn AuditStore>,
    bound: Mutex<HashMap<String, String>>,
}

impl Intake {
    pub fn new(store: Arc<dyn AuditStore>) -> Self {
        Intake {
            store,
            bound: Mutex::default(),
        }
    }

    /// The events of `events` that `delivered` may deliver, each with the
    /// auditor's receipt, and the others with their place and the reason. When
    /// the store cannot say who holds a producer id, nothing is decided: the
    /// events come back with the error, for the caller to retry or refuse.
    pub async fn vet(
        &self,
        events: Vec<DataEvent>,
        delivered: &Delivered,
    ) -> Result<(Vec<DataEvent>, Vec<Refusal>), (Vec<DataEvent>, StoreError)> {
        let mut reasons = Vec::new();
        // The producer of the previous event: a batch is mostly one producer's.
        let mut last: Option<(&str, String)> = None;
        for (index, event) in events.iter().enumerate() {
            match self.refusal(event, delivered, &mut last).await {
                Ok(Some(reason)) => reasons.push((index, reason)),
                Ok(None) => {}
                Err(err) => return Err((events, err)),
            }
        }
        let mut accepted = Vec::with_capacity(events.len() - reasons.len());
        let mut refused = Vec::with_capacity(reasons.len());
        let mut reasons = reasons.into_iter().peekable();
        for (index, event) in events.into_iter().enumerate() {
            match reasons.next_if(|(at, _)| *at == index) {
                Some((_, reason)) => refused.push(Refusal {
                    index,
                    event,
                    reason,
                }),
                None => accepted.push(
                    delivered
                        .stamp_tenant(event)
                        .received(&delivered.by, delivered.via),
                ),
            }
        }
        Ok((accepted, refused))
    }

    async fn refusal<'e>(
        &self,
        event: &'e DataEvent,
        delivered: &Delivered,
        last: &mut Option<(&'e str, String)>,
    ) -> Result<Option<String>, StoreError> {
        if let Some(own) = &delivered.tenant {
            let tenant = event.tenant_id.as_deref().unwrap_or(own);
            if tenant != own {
                return Ok(Some(format!(
                    "tenantId `{tenant}`: {} delivers events of tenant `{own}` only",
                    delivered.by
                )));
            }
        }
        if let Some(reason) = reserved_for_others(
            event.source.as_deref(),
            event.event_name.as_deref(),
            delivered.may_publish_rights,
        ) {
            return Ok(Some(reason));
        }
        // What the store would not keep once it rewrote the event (personal
        // values encrypted: a value shaped like a ciphertext, or an event grown
        // too large), refused here rather than failing the whole batch.
        if let Some(reason) = self.store.refusal(event) {
            return Ok(Some(reason));
        }
        let Some(producer_id) = event.producer_id.as_deref() else {
            return Ok(None);
        };
        let holder = match last {
            Some((id, holder)) if *id == producer_id => holder.clone(),
            _ => {
                let holder = self.holder(producer_id, &delivered.by).await?;
                *last = Some((producer_id, holder.clone()));
                holder
            }
        };
        Ok((holder != delivered.by).then(|| {
            format!(
                "producerId `{producer_id}` belongs to {holder}, who delivered it first; \
                 {} may not number events under it (use a producer id of your own)",
                delivered.by
            )
        }))
    }

    /// Who holds `producer_id`: `by` if nobody did before.
    async fn holder(&self, producer_id: &str, by: &str) -> Result<String, StoreError> {
        if let Some(holder) = self
            .bound
            .lock()
            .ok()
            .and_then(|b| b.get(producer_id).cloned())
        {
            return Ok(holder);
        }
        let holder = self.store.bind_producer(producer_id, by).await?;
        if let Ok(mut bound) = self.bound.lock() {
            if bound.len() >= BOUND_CAPACITY {
                bound.clear();
            }
            bound.insert(producer_id.to_owned(), holder.clone());
        }
        Ok(holder)
    }
}
