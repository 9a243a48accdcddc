//! Whether a token still carries its principal's rights. A token says what its
//! user was when it was issued; the user may have been demoted or deleted since
//! (and, with tenants, moved), and a stolen or kept token must not outlive that
//! by more than a second. Each API asks a [`RightsCheck`] after the signature
//! check:
//!
//! - the primary API asks its own database (the users table is the truth about
//!   its users), through a cache it clears on every change it makes;
//! - the auditor asks the log: every change of a user's rights is recorded by the
//!   primary API as an event named [`RIGHTS_CHANGED`] on `users/<id>`, committed
//!   with the change itself (outbox), so it reaches the auditor over the channel
//!   every event takes and is kept, signed and provable like any other.
//!
//! The rule both apply is [`allows`]: a token may carry no more than its user's
//! current role, and a deleted user's token carries nothing. A promoted user keeps
//! their old token's lesser rights until they fetch a new one.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use crate::{AuthError, Principal, Role};

/// The `eventName` of an event that changes a user's rights: a `changed` event
/// whose `changes.role` says the new role, or a `deleted` event. Names starting
/// with `auth.` are reserved to services ([`Principal::may_publish_rights`]), so
/// that nobody else can forge or undo a revocation.
pub const RIGHTS_CHANGED: &str = "auth.rights_changed";

/// The `eventName` prefix reserved to services for rights events.
pub const RIGHTS_EVENT_PREFIX: &str = "auth.";

/// What a deployment knows now of a user's rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentRights {
    /// Nothing beyond the token: a principal this check has no record of (a
    /// service, or an external issuer's subject the log never heard of).
    Unknown,
    /// The user exists with this role.
    Role(Role),
    /// The user was moved to `tenant` (with a new role, if the same change
    /// said one): only tokens of that tenant carry anything.
    Moved { role: Option<Role>, tenant: String },
    /// The user was deleted: none of their tokens carries anything.
    Deleted,
}

/// The boxed future a [`RightsCheck`] answers with.
pub type RightsFuture<'a> = Pin<Box<dyn Future<Output = Result<(), AuthError>> + Send + 'a>>;

/// Says whether a verified token's principal still has the rights it claims.
pub trait RightsCheck: Send + Sync + 'static {
    /// `Ok` when `principal` may act as its token says; [`AuthError::Revoked`]
    /// when its rights were taken away since, [`AuthError::Unavailable`] when the
    /// check could not be made (refused rather than guessed).
    fn check<'a>(&'a self, principal: &'a Principal) -> RightsFuture<'a>;
}

/// The one rule: `principal` may act when its token's role is no more than the
/// user's current one. Services are not users and are not checked here.
pub fn allows(principal: &Principal, current: CurrentRights) -> Result<(), AuthError> {
    if !principal.is_a_user() {
        return Ok(());
    }
    match current {
        CurrentRights::Unknown => Ok(()),
        CurrentRights::Deleted => Err(AuthError::Revoked(format!(
            "user {} no longer exists",
            principal.subject
        ))),
        CurrentRights::Moved { tenant, .. } if tenant != principal.tenant => {
            Err(AuthError::Revoked(format!(
                "user {} belongs to tenant `{tenant}` now, not `{}`; get a new token",
                principal.subject, principal.tenant
            )))
        }
        CurrentRights::Moved { role: None, .. } => Ok(()),
        CurrentRights::Role(role)
        | CurrentRights::Moved {
            role: Some(role), ..
        } if rank(principal.role) <= rank(role) => Ok(()),
        CurrentRights::Role(role)
        | CurrentRights::Moved {
            role: Some(role), ..
        } => Err(AuthError::Revoked(format!(
            "user {} is now {}, not {}; get a new token",
            principal.subject,
            role.as_str(),
            principal.role.as_str()
        ))),
    }
}

/// How much a role may do, for comparing a token's with a user's.
fn rank(role: Role) -> u8 {
    match role {
        Role::Service | Role::Viewer => 0,
        Role::User => 1,
        Role::Admin => 2,
        Role::Operator => 3,
    }
}

/// What a stored [`RIGHTS_CHANGED`] event (its JSON) says the user's rights are
/// now: `deleted` is [`CurrentRights::Deleted`], a `changed` event's
/// `changes.role.next` the new role; anything else says nothing.
pub fn rights_in_event(event: &Value) -> CurrentRights {
    if event.get("eventName").and_then(Value::as_str) != Some(RIGHTS_CHANGED) {
        return CurrentRights::Unknown;
    }
    match event.get("action").and_then(Value::as_str) {
        Some("deleted") => CurrentRights::Deleted,
        Some("changed") => {
            let tenant = event
                .pointer("/changes/tenant/next")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let next = event
                .pointer("/changes/role/next")
                .and_then(Value::as_str)
                .and_then(|role| serde_json::from_value(Value::String(role.into())).ok());
            let names_a_role = event.pointer("/changes/role").is_some();
            match (next, tenant) {
                // A role that is not a person's role takes every right away
                // rather than none.
                (Some(Role::Service | Role::Viewer), _) => CurrentRights::Deleted,
                (None, _) if names_a_role => CurrentRights::Deleted,
                (role, Some(tenant)) => CurrentRights::Moved { role, tenant },
                (Some(role), None) => CurrentRights::Role(role),
                (None, None) => CurrentRights::Deleted,
            }
        }
        _ => CurrentRights::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn principal(subject: &str, role: Role) -> Principal {
        Principal::new(subject.into(), role).unwrap()
    }

    #[test]
    fn a_token_may_carry_no_more_than_the_users_current_role() {
        let admin_token = principal("2", Role::Admin);
        let user_token = principal("2", Role::User);
        assert!(allows(&admin_token, CurrentRights::Role(Role::Admin)).is_ok());
        assert!(allows(&admin_token, CurrentRights::Role(Role::User)).is_err());
        assert!(allows(&user_token, CurrentRights::Role(Role::Admin)).is_ok());
        assert!(allows(&user_token, CurrentRights::Deleted).is_err());
        assert!(allows(&admin_token, CurrentRights::Unknown).is_ok());
    }

    #[test]
    fn services_are_not_checked_against_users() {
        let service = principal("2", Role::Service);
        assert!(allows(&service, CurrentRights::Deleted).is_ok());
    }

    #[test]
    fn a_rights_event_says_the_new_role_or_that_the_user_is_gone() {
        let demoted = json!({"eventName": RIGHTS_CHANGED, "action": "changed",
            "changes": {"role": {"prev": "admin", "next": "user"}}});
        let deleted = json!({"eventName": RIGHTS_CHANGED, "action": "deleted",
            "changes": {"role": {"prev": "user", "next": null}}});
        let odd = json!({"eventName": RIGHTS_CHANGED, "action": "changed",
            "changes": {"role": {"prev": "user", "next": "emperor"}}});
        let other = json!({"eventName": "user.renamed", "action": "deleted"});
        assert_eq!(rights_in_event(&demoted), CurrentRights::Role(Role::User));
        assert_eq!(rights_in_event(&deleted), CurrentRights::Deleted);
        assert_eq!(rights_in_event(&odd), CurrentRights::Deleted);
        assert_eq!(rights_in_event(&other), CurrentRights::Unknown);
    }

    #[test]
    fn a_user_moved_to_another_tenant_keeps_no_token_of_the_old_one() {
        let moved = json!({"eventName": RIGHTS_CHANGED, "action": "changed",
            "changes": {"tenant": {"prev": "default", "next": "acme"}}});
        let rights = rights_in_event(&moved);
        assert_eq!(
            rights,
            CurrentRights::Moved {
                role: None,
                tenant: "acme".into()
            }
        );
        let old = principal("2", Role::Admin);
        let new = principal("2", Role::Admin).in_tenant("acme");
        assert!(allows(&old, rights.clone()).is_err());
        assert!(allows(&new, rights).is_ok());

        let moved_and_demoted = json!({"eventName": RIGHTS_CHANGED, "action": "changed",
            "changes": {"tenant": {"prev": "default", "next": "acme"},
                "role": {"prev": "admin", "next": "user"}}});
        assert!(allows(&new, rights_in_event(&moved_and_demoted)).is_err());
        let operator = json!({"eventName": RIGHTS_CHANGED, "action": "changed",
            "changes": {"role": {"prev": "admin", "next": "operator"}}});
        let operator_token = principal("1", Role::Operator);
        assert!(allows(&operator_token, rights_in_event(&operator)).is_ok());
        assert!(allows(&operator_token, CurrentRights::Role(Role::Admin)).is_err());
    }
}
