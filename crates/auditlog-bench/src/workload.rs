//! The events the ingest benchmark sends, built the same way for the measured run
//! and for the ceiling's data file, so both load the same rows.

use auditlog_event::{Action, Change, Changes, DataEvent, ObjectRef, ObjectType};
use serde_json::json;

/// Event number `n` of a run: actor `users/(n mod 1 000)`, target
/// `documents/(n mod 100 000)`; one in `1 / changed_ratio` is a `changed` with two
/// fields, the rest are `viewed`.
pub(crate) struct Workload {
    users: ObjectType,
    documents: ObjectType,
    changed_every: u64,
}

impl Workload {
    pub(crate) fn new(changed_ratio: f64) -> Self {
        Workload {
            users: ObjectType::parse("actorType", "users").unwrap_or_else(|_| unreachable!()),
            documents: ObjectType::parse("targetType", "documents")
                .unwrap_or_else(|_| unreachable!()),
            changed_every: if changed_ratio > 0.0 {
                (1.0 / changed_ratio).round().max(1.0) as u64
            } else {
                u64::MAX
            },
        }
    }

    pub(crate) fn event(&self, n: u64, timestamp: i64) -> DataEvent {
        let action = if n.is_multiple_of(self.changed_every) {
            Action::Changed
        } else {
            Action::Viewed
        };
        let mut event = DataEvent::new(
            action,
            ObjectRef::new(self.users.clone(), (n % 1_000) as i64),
            ObjectRef::new(self.documents.clone(), (n % 100_000) as i64),
            timestamp,
        );
        if action == Action::Changed {
            let mut changes = Changes::new();
            changes.insert(
                "title".into(),
                Change::new(json!("Quarterly report"), json!("Quarterly report (final)")),
            );
            changes.insert(
                "status".into(),
                Change::new(json!("draft"), json!("published")),
            );
            event.changes = Some(changes);
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changed_ratio_sets_the_mix() {
        let half = Workload::new(0.5);
        let changed = (0..1_000)
            .filter(|n| half.event(*n, 0).action == Action::Changed)
            .count();
        assert_eq!(changed, 500);
        let none = Workload::new(0.0);
        assert!((1..1_000).all(|n| none.event(n, 0).action == Action::Viewed));
    }
}
