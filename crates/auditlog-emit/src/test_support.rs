//! What the emitter's unit tests share: transports that misbehave on purpose, and
//! numbered events.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};

use crate::{Transport, TransportError};

/// A transport that fails its first `failures` calls, then records batches.
#[derive(Default)]
pub(crate) struct Flaky {
    pub(crate) failures: AtomicUsize,
    pub(crate) received: Mutex<Vec<DataEvent>>,
}

#[async_trait]
impl Transport for Flaky {
    async fn publish(&self, batch: &[DataEvent]) -> Result<(), TransportError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(TransportError::Unavailable("down".into()));
        }
        self.received.lock().unwrap().extend_from_slice(batch);
        Ok(())
    }
}

/// A `viewed` event with timestamp `n`, so that tests can check order.
pub(crate) fn event(n: i64) -> DataEvent {
    let users = ObjectType::parse("actorType", "users").unwrap();
    DataEvent::new(
        Action::Viewed,
        ObjectRef::new(users.clone(), 1),
        ObjectRef::new(users, n),
        n,
    )
}
