//! Retention: what the store keeps so that events can be removed when their
//! time is up while the log stays verifiable.
//!
//! - **Policies** (`audit_retention`): how many days a tenant's events are
//!   kept, one row per tenant that has its own; a tenant without one follows
//!   the deployment's default, which is configuration, not data.
//! - **Legal holds** (`audit_legal_holds`): a hold on a whole tenant, or on one
//!   target of it, suspends pruning of the events it covers, whatever the
//!   policy says.
//! - **Pruned leaves** (`audit_pruned`): pruning deletes an expired event's row
//!   (its payload) and keeps its leaf entry in `audit_leaves`, whose hash the
//!   tree, the checkpoints and every other event's proofs are made of; a row of
//!   `audit_pruned` per leaf says that its row is gone on purpose, when, and of
//!   which tenant and time, so that `verify` reports it as pruned rather than
//!   removed, and counts can say how many events retention took.
//!
//! Pruning goes in batches ([`crate::AuditStore::prune_batch`]) through the
//! expired events oldest first, by `(timestamp, id)`. An event is pruned only
//! when it is sealed (its leaf hash is in the tree), its row still hashes to
//! that leaf (a row changed behind the auditor's back is left for `verify` to
//! report, not destroyed), its timestamp is before its tenant's cutoff, no
//! hold covers it, and every log stream (`audit_sinks`) has delivered it: its
//! `seq` is at most the lowest sink cursor, paused sinks included, so a SIEM
//! that was down longer than the retention still gets every event once it is
//! back. A sink that will never deliver again must be deleted for pruning to
//! go past it.

use std::collections::BTreeMap;

use uuid::Uuid;

/// A tenant's own retention policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// The tenant (`default` for the deployment's default tenant).
    pub tenant: String,
    /// Days its events are kept, counted from their timestamp.
    pub days: u32,
    /// When the policy was last set, ms since the Unix epoch.
    pub updated_at: i64,
}

/// A legal hold: while it exists, no event it covers is pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    pub id: Uuid,
    /// The tenant whose events it covers (`default` for the default tenant).
    pub tenant: String,
    /// The one target it covers, as `(type, id)`; `None` covers the whole tenant.
    pub target: Option<(String, String)>,
    /// Why it was placed (a case, a request), as its placer wrote it.
    pub reason: String,
    /// Who placed it (a principal's name).
    pub placed_by: String,
    /// When, ms since the Unix epoch.
    pub placed_at: i64,
}

impl LegalHold {
    /// Whether it covers an event of `tenant` on the target `target_type`/`target_id`.
    pub fn covers(&self, tenant: &str, target_type: &str, target_id: &str) -> bool {
        self.tenant == tenant
            && self
                .target
                .as_ref()
                .is_none_or(|(kind, id)| kind == target_type && id == target_id)
    }
}

/// What a prune removes: events whose timestamp is before their tenant's
/// cutoff (ms since the Unix epoch). Holds apply whatever the rule says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneRule {
    /// Cutoffs of the tenants named.
    pub tenants: BTreeMap<String, i64>,
    /// The cutoff of every other tenant; `None` keeps their events.
    pub others: Option<i64>,
}

impl PruneRule {
    /// Events of every tenant before `before`.
    pub fn everything_before(before: i64) -> Self {
        PruneRule {
            tenants: BTreeMap::new(),
            others: Some(before),
        }
    }

    /// Events of `tenant` only, before `before`.
    pub fn tenant_before(tenant: &str, before: i64) -> Self {
        PruneRule {
            tenants: BTreeMap::from([(tenant.to_owned(), before)]),
            others: None,
        }
    }

    /// The cutoff of `tenant`'s events, if they expire at all.
    pub fn cutoff(&self, tenant: &str) -> Option<i64> {
        self.tenants.get(tenant).copied().or(self.others)
    }

    /// The latest cutoff of any tenant: no event at or after it is pruned.
    pub fn latest_cutoff(&self) -> Option<i64> {
        self.tenants.values().copied().chain(self.others).max()
    }
}

/// Where a prune goes on from: the `(timestamp, id)` of the last event looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneCursor {
    pub timestamp: i64,
    pub id: Uuid,
}

/// What one [`crate::AuditStore::prune_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneBatch {
    /// Events whose rows were deleted, their leaves kept.
    pub pruned: u64,
    /// Expired events kept because a legal hold covers them.
    pub held: u64,
    /// Events whose rows no longer hash to their sealed leaf: kept, for `verify`
    /// to report.
    pub mismatched: u64,
    /// Expired events kept because a log stream has not delivered them yet.
    pub undelivered: u64,
    /// Where the next batch starts; `None` when there is nothing left to look at.
    pub next: Option<PruneCursor>,
}

/// How many events of a tenant retention removed, and the newest of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedCount {
    pub events: u64,
    /// The timestamp of the newest pruned event: events before it may be gone.
    pub newest: Option<i64>,
}

/// One event looked at by a prune, as read with its leaf.
#[derive(Debug, Clone)]
pub(crate) struct PruneCandidate {
    pub seq: i64,
    pub id: Uuid,
    pub timestamp: i64,
    pub received_at: i64,
    pub body: String,
    pub tenant: Option<String>,
    pub target_type: String,
    pub target_id: String,
    pub leaf_index: i64,
    pub leaf_id: Uuid,
    pub leaf_hash: auditlog_tlog::Hash,
}

/// What becomes of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Prune,
    /// Not expired under its tenant's cutoff.
    Keep,
    Held,
    Mismatched,
    /// A log stream has yet to deliver it.
    Undelivered,
}

impl PruneCandidate {
    /// The tenant as events name it (`default` for a NULL column).
    pub fn tenant(&self) -> &str {
        self.tenant
            .as_deref()
            .unwrap_or(auditlog_event::DEFAULT_TENANT)
    }

    /// Whether it is pruned: `delivered` is the `seq` every sink has delivered
    /// up to (the lowest cursor), `None` when there are no sinks.
    pub fn verdict(
        &self,
        rule: &PruneRule,
        holds: &[LegalHold],
        delivered: Option<i64>,
    ) -> Verdict {
        let tenant = self.tenant();
        if rule
            .cutoff(tenant)
            .is_none_or(|cutoff| self.timestamp >= cutoff)
        {
            return Verdict::Keep;
        }
        let leaf = auditlog_tlog::leaf_bytes(&self.body, self.seq, self.received_at);
        if self.leaf_id != self.id || auditlog_tlog::leaf_hash(leaf.as_bytes()) != self.leaf_hash {
            return Verdict::Mismatched;
        }
        if holds
            .iter()
            .any(|hold| hold.covers(tenant, &self.target_type, &self.target_id))
        {
            return Verdict::Held;
        }
        if delivered.is_some_and(|delivered| self.seq > delivered) {
            return Verdict::Undelivered;
        }
        Verdict::Prune
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(tenant: &str, target: Option<(&str, &str)>) -> LegalHold {
        LegalHold {
            id: Uuid::nil(),
            tenant: tenant.into(),
            target: target.map(|(t, id)| (t.into(), id.into())),
            reason: "case 7".into(),
            placed_by: "users/1".into(),
            placed_at: 0,
        }
    }

    #[test]
    fn a_hold_covers_its_tenant_or_its_one_target() {
        assert!(hold("acme", None).covers("acme", "users", "1"));
        assert!(!hold("acme", None).covers("globex", "users", "1"));
        let on_user = hold("acme", Some(("users", "1")));
        assert!(on_user.covers("acme", "users", "1"));
        assert!(!on_user.covers("acme", "users", "2"));
        assert!(!on_user.covers("acme", "notes", "1"));
        assert!(!on_user.covers("globex", "users", "1"));
    }

    #[test]
    fn a_tenant_named_by_the_rule_has_its_own_cutoff_the_others_share_one() {
        let mut rule = PruneRule::everything_before(100);
        rule.tenants.insert("acme".into(), 50);
        assert_eq!(rule.cutoff("acme"), Some(50));
        assert_eq!(rule.cutoff("globex"), Some(100));
        assert_eq!(rule.latest_cutoff(), Some(100));
        let only = PruneRule::tenant_before("acme", 50);
        assert_eq!(only.cutoff("globex"), None);
        assert_eq!(only.latest_cutoff(), Some(50));
        assert_eq!(PruneRule::default().latest_cutoff(), None);
    }

    fn candidate(timestamp: i64, tenant: Option<&str>) -> PruneCandidate {
        let (seq, received_at, body) = (7, 1_000, r#"{"action":"viewed"}"#.to_owned());
        let leaf = auditlog_tlog::leaf_bytes(&body, seq, received_at);
        PruneCandidate {
            seq,
            id: Uuid::from_u128(1),
            timestamp,
            received_at,
            body,
            tenant: tenant.map(Into::into),
            target_type: "users".into(),
            target_id: "1".into(),
            leaf_index: 0,
            leaf_id: Uuid::from_u128(1),
            leaf_hash: auditlog_tlog::leaf_hash(leaf.as_bytes()),
        }
    }

    #[test]
    fn only_an_expired_unheld_event_whose_row_matches_its_leaf_is_pruned() {
        let rule = PruneRule::everything_before(100);
        assert_eq!(
            candidate(99, None).verdict(&rule, &[], None),
            Verdict::Prune
        );
        assert_eq!(
            candidate(100, None).verdict(&rule, &[], None),
            Verdict::Keep
        );
        assert_eq!(
            candidate(99, None).verdict(&rule, &[hold("default", None)], None),
            Verdict::Held
        );
        assert_eq!(
            candidate(99, Some("acme")).verdict(&rule, &[hold("default", None)], None),
            Verdict::Prune
        );
        let mut altered = candidate(99, None);
        altered.body = altered.body.replace("viewed", "deleted");
        assert_eq!(altered.verdict(&rule, &[], None), Verdict::Mismatched);
        let mut moved = candidate(99, None);
        moved.leaf_id = Uuid::from_u128(2);
        assert_eq!(moved.verdict(&rule, &[], None), Verdict::Mismatched);
        let only_acme = PruneRule::tenant_before("acme", 100);
        assert_eq!(
            candidate(99, None).verdict(&only_acme, &[], None),
            Verdict::Keep
        );
        assert_eq!(
            candidate(99, Some("acme")).verdict(&only_acme, &[], None),
            Verdict::Prune
        );
    }

    #[test]
    fn an_event_a_sink_has_not_delivered_is_kept() {
        let rule = PruneRule::everything_before(100);
        let event = candidate(99, None);
        assert_eq!(event.verdict(&rule, &[], Some(6)), Verdict::Undelivered);
        assert_eq!(event.verdict(&rule, &[], Some(7)), Verdict::Prune);
        assert_eq!(
            candidate(100, None).verdict(&rule, &[], Some(0)),
            Verdict::Keep,
            "not expired is not counted as undelivered"
        );
    }
}
