//! The one authorisation policy. Every principal belongs to a tenant (a
//! customer of the deployment), and sees nothing of another: operators (the
//! deployment's own staff) read every tenant's events; admins read every event
//! of their tenant and change its users; anyone else reads the events they
//! performed or that were done to them, in their tenant, and changes only
//! themselves. Services (other auditlog processes) may ingest, for their tenant
//! or, when their token says [`ANY_TENANT`], for any. Notes are read by their
//! author, the user they are about and admins; members write notes only about
//! themselves. Whether a token still carries its
//! principal's rights (the user may have been demoted or deleted since it was
//! issued) is the [`crate::rights`] module's question, asked before this one.

use auditlog_event::{DEFAULT_TENANT, EventError, ObjectId, ObjectRef, ObjectType};
use serde::{Deserialize, Serialize};

/// The object type people (admins and users) are, as actors in events.
pub const PRINCIPAL_TYPE: &str = "users";

/// The object type services are, as actors in events.
pub const SERVICE_TYPE: &str = "services";

/// The object type viewer tokens are, as actors in the events of their reads.
pub const VIEWER_TYPE: &str = "viewers";

/// The `source` of the events the auditor records itself (its `audit.read`
/// records of reads): reserved, so that no producer can pass its events off as
/// the auditor's.
pub const AUDITOR_SOURCE: &str = "auditor";

/// The `eventName` prefix of the auditor's own events, reserved like its source.
pub const AUDITOR_EVENT_PREFIX: &str = "audit.";

/// Why a producer may not deliver an event with this `source` and `eventName`,
/// if it may not: the auditor's source and event names are the auditor's own,
/// and rights events ([`crate::rights::RIGHTS_CHANGED`]) are for producers that
/// `may_publish_rights` (services, and the transports services publish on).
pub fn reserved_for_others(
    source: Option<&str>,
    event_name: Option<&str>,
    may_publish_rights: bool,
) -> Option<String> {
    if source == Some(AUDITOR_SOURCE) {
        return Some(format!(
            "source `{AUDITOR_SOURCE}` is reserved for the events the auditor records itself"
        ));
    }
    let name = event_name?;
    if name.starts_with(AUDITOR_EVENT_PREFIX) {
        return Some(format!(
            "eventName `{name}`: names starting with `{AUDITOR_EVENT_PREFIX}` are reserved \
             for the events the auditor records itself"
        ));
    }
    if name.starts_with(crate::rights::RIGHTS_EVENT_PREFIX) && !may_publish_rights {
        return Some(format!(
            "eventName `{name}`: names starting with `{}` change who may do what and \
             are accepted from services only",
            crate::rights::RIGHTS_EVENT_PREFIX
        ));
    }
    None
}

/// The tenant of a service token that may deliver events of every tenant
/// (the primary API of a deployment serving many, a shared transport).
pub const ANY_TENANT: &str = "*";

/// What a principal is allowed to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The deployment's own staff: everything an admin may, in every tenant.
    Operator,
    /// Everything in its tenant.
    Admin,
    User,
    /// Another auditlog process, e.g. the primary API delivering events.
    Service,
    /// A short-lived, read-only token an application hands its customer for the
    /// embeddable viewer: the events of one tenant, or of one object in it.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::User => "user",
            Role::Service => "service",
            Role::Viewer => "viewer",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user id (or service name), as in the token's `sub`.
    pub subject: String,
    pub role: Role,
    /// The tenant the principal belongs to (its token's `tenant`;
    /// [`DEFAULT_TENANT`] when the token names none), or [`ANY_TENANT`] for a
    /// service that delivers for every tenant.
    pub tenant: String,
    /// The one object (type, and the text form of its id) a viewer token is
    /// confined to, as actor or target; `None` for the whole tenant, and for
    /// every other role.
    pub object: Option<(String, String)>,
}

/// Which events a principal may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventScope {
    /// Every tenant's events: operators.
    All,
    /// Every event of one tenant: its admins.
    Tenant {
        tenant: String,
    },
    /// Only events of `tenant` whose actor or target is `<object_type>/<id>`.
    Involving {
        tenant: String,
        object_type: String,
        id: String,
    },
    Nothing,
}

impl EventScope {
    /// The one tenant this scope is confined to, if it is confined to one.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            EventScope::All | EventScope::Nothing => None,
            EventScope::Tenant { tenant } | EventScope::Involving { tenant, .. } => Some(tenant),
        }
    }

    /// Whether an event of `tenant` by `actor` on `target` (type and the text
    /// form of the id of each) is within this scope.
    pub fn holds(&self, tenant: &str, actor: (&str, &str), target: (&str, &str)) -> bool {
        match self {
            EventScope::All => true,
            EventScope::Tenant { tenant: own } => own == tenant,
            EventScope::Involving {
                tenant: own,
                object_type,
                id,
            } => {
                own == tenant
                    && [actor, target]
                        .iter()
                        .any(|(t, i)| t == object_type && i == id)
            }
            EventScope::Nothing => false,
        }
    }
}

impl Principal {
    /// A principal of the default tenant whose subject is a usable id (1 to 128
    /// characters).
    pub fn new(subject: String, role: Role) -> Option<Self> {
        (!subject.is_empty() && subject.chars().count() <= 128).then_some(Principal {
            subject,
            role,
            tenant: DEFAULT_TENANT.into(),
            object: None,
        })
    }

    /// The same principal in `tenant` (a tenant id, or [`ANY_TENANT`] for a
    /// service; callers have checked which).
    pub fn in_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// The same principal confined to one object (a viewer token's scope).
    pub fn confined_to(mut self, object_type: impl Into<String>, id: impl Into<String>) -> Self {
        self.object = Some((object_type.into(), id.into()));
        self
    }

    /// Whether this principal is a person of the deployment's user base (not a
    /// service, not a viewer token), whose rights the [`crate::rights`] checks
    /// compare with the user's own.
    pub fn is_a_user(&self) -> bool {
        matches!(self.role, Role::Operator | Role::Admin | Role::User)
    }

    /// An admin of its tenant, or an operator (an admin of every tenant).
    pub fn is_admin(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Operator)
    }

    /// One of the deployment's own staff.
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// Whether this principal may act on the things of `tenant` as far as its
    /// role allows: operators in every tenant, anyone else in their own.
    pub fn may_enter(&self, tenant: &str) -> bool {
        self.bound_tenant().is_none_or(|own| own == tenant)
    }

    /// The one tenant this principal acts in, or `None` for those of every
    /// tenant (operators, services whose token says [`ANY_TENANT`]): the
    /// tenant its deliveries are confined to and its own records are kept in.
    pub fn bound_tenant(&self) -> Option<&str> {
        (!self.is_operator() && self.tenant != ANY_TENANT).then_some(self.tenant.as_str())
    }

    /// The tenant this principal's own records (its reads, what it does in the
    /// demo application) belong to: its own, or the default tenant for one of
    /// every tenant.
    pub fn home_tenant(&self) -> &str {
        self.bound_tenant().unwrap_or(DEFAULT_TENANT)
    }

    /// This principal as the actor of the events it causes: `users/<id>` for
    /// admins and users, `services/<name>` for services. A numeric subject is a
    /// number, as the primary API's user ids are, so that queries by actor find
    /// the events of both services alike.
    pub fn actor(&self) -> Result<ObjectRef, EventError> {
        let object_type = match self.role {
            Role::Operator | Role::Admin | Role::User => PRINCIPAL_TYPE,
            Role::Service => SERVICE_TYPE,
            Role::Viewer => VIEWER_TYPE,
        };
        let id = match self.subject.parse::<i64>() {
            Ok(n) => ObjectId::from(n),
            Err(_) => ObjectId::parse_text("actorId", self.subject.clone())?,
        };
        Ok(ObjectRef::new(
            ObjectType::parse("actorType", object_type)?,
            id,
        ))
    }

    /// How this principal is named where the log records who delivered an
    /// event (`ingestedBy`) and who holds a producer id: `users/<id>` for people,
    /// `services/<name>` for services, as their actor type.
    pub fn name(&self) -> String {
        let object_type = match self.role {
            Role::Operator | Role::Admin | Role::User => PRINCIPAL_TYPE,
            Role::Service => SERVICE_TYPE,
            Role::Viewer => VIEWER_TYPE,
        };
        format!("{object_type}/{}", self.subject)
    }

    /// The events this principal may read.
    pub fn event_scope(&self) -> EventScope {
        match self.role {
            Role::Operator => EventScope::All,
            Role::Admin => EventScope::Tenant {
                tenant: self.tenant.clone(),
            },
            Role::User => EventScope::Involving {
                tenant: self.tenant.clone(),
                object_type: PRINCIPAL_TYPE.into(),
                id: self.subject.clone(),
            },
            Role::Service => EventScope::Nothing,
            Role::Viewer => match &self.object {
                Some((object_type, id)) => EventScope::Involving {
                    tenant: self.tenant.clone(),
                    object_type: object_type.clone(),
                    id: id.clone(),
                },
                None => EventScope::Tenant {
                    tenant: self.tenant.clone(),
                },
            },
        }
    }

    /// Whether this principal may deliver events to the auditor.
    pub fn may_ingest(&self) -> bool {
        matches!(self.role, Role::Operator | Role::Admin | Role::Service)
    }

    /// Whether this principal may deliver events that change users' rights
    /// ([`crate::rights::RIGHTS_CHANGED`]): services only. An admin could
    /// otherwise undo their own demotion at the auditor.
    pub fn may_publish_rights(&self) -> bool {
        self.role == Role::Service
    }

    /// Whether this principal may read the users of its tenant: anyone but a
    /// viewer token, which shows audit events and nothing else.
    pub fn may_read_users(&self) -> bool {
        self.role != Role::Viewer
    }

    /// Whether this principal may create users.
    pub fn may_create_users(&self) -> bool {
        self.is_admin()
    }

    /// Whether this principal may change or delete the user `user_id` of
    /// `user_tenant`: operators any user, admins the users of their tenant,
    /// members themselves.
    pub fn may_modify_user(&self, user_id: &str, user_tenant: &str) -> bool {
        match self.role {
            Role::Operator => true,
            Role::Admin => self.tenant == user_tenant,
            Role::User => self.subject == user_id && self.tenant == user_tenant,
            Role::Service | Role::Viewer => false,
        }
    }

    /// Whether this principal may erase a data subject's personal data from
    /// the log (`POST /api/erasures`): admins, in their tenant ([`Principal::may_enter`]
    /// says which), and operators, in any.
    pub fn may_erase_personal_data(&self) -> bool {
        self.is_admin()
    }

    /// Whether this principal may see retention policies and legal holds and
    /// place a hold (`/api/retention`, `/api/legal-holds`): admins, in their
    /// tenant ([`Principal::may_enter`] says which), and operators, in any.
    /// Placing a hold only ever keeps more.
    pub fn may_place_legal_holds(&self) -> bool {
        self.is_admin()
    }

    /// Whether this principal may make the log keep less: set a tenant's
    /// retention, release a legal hold, prune. Operators only: a tenant's
    /// admin, whose own actions the log records, must not be able to shorten
    /// that record.
    pub fn may_shorten_retention(&self) -> bool {
        self.is_operator()
    }

    /// Whether this principal may change roles.
    pub fn may_assign_roles(&self) -> bool {
        self.is_admin()
    }

    /// Whether this principal may give a user `role`: only operators make
    /// operators, and admins give the roles of their own tenant.
    pub fn may_assign(&self, role: Role) -> bool {
        match role {
            Role::Operator => self.is_operator(),
            _ => self.is_admin(),
        }
    }

    /// Whether this principal may read a note written by the user `author_id`
    /// about `target_type`/`target_id`: admins read every note; a member reads
    /// the notes they wrote and the notes about themselves, never notes by
    /// others about others (a note about a user is as private as the audit
    /// events about them, which members are refused too); services read none.
    pub fn may_read_note(&self, author_id: &str, target_type: &str, target_id: &str) -> bool {
        match self.role {
            Role::Operator | Role::Admin => true,
            Role::User => self.subject == author_id || self.is(target_type, target_id),
            Role::Service | Role::Viewer => false,
        }
    }

    /// Whether this principal may write a note about `target_type`/`target_id`:
    /// admins about any object, members only about themselves (a note is
    /// attributed to its author, and a member writing about others would be
    /// the unsolicited commentary on colleagues that the notes' readers, the
    /// subject and the admins, should not have to trust). The note is then
    /// the author's: nobody else changes it.
    pub fn may_write_note_about(&self, target_type: &str, target_id: &str) -> bool {
        match self.role {
            Role::Operator | Role::Admin => true,
            Role::User => self.is(target_type, target_id),
            Role::Service | Role::Viewer => false,
        }
    }

    /// Whether `object_type`/`id` names this principal as a user.
    fn is(&self, object_type: &str, id: &str) -> bool {
        self.is_a_user() && object_type == PRINCIPAL_TYPE && id == self.subject
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> Principal {
        Principal::new(id.into(), Role::User).unwrap()
    }

    #[test]
    fn an_admin_reads_everyones_events_in_its_tenant_and_an_operator_in_all() {
        let admin = Principal::new("1".into(), Role::Admin)
            .unwrap()
            .in_tenant("acme");
        assert_eq!(
            admin.event_scope(),
            EventScope::Tenant {
                tenant: "acme".into()
            }
        );
        let scope = admin.event_scope();
        assert!(scope.holds("acme", ("users", "7"), ("x", "0")));
        assert!(scope.holds("acme", ("notes", "3"), ("x", "0")));
        assert!(scope.holds("acme", ("users", "7"), ("notes", "3")));
        assert!(!scope.holds("globex", ("users", "7"), ("notes", "3")));

        let operator = Principal::new("1".into(), Role::Operator).unwrap();
        assert_eq!(operator.event_scope(), EventScope::All);
        assert!(
            operator
                .event_scope()
                .holds("globex", ("a", "1"), ("b", "2"))
        );
    }

    #[test]
    fn a_member_reads_its_own_events_only_in_its_own_tenant() {
        let member = user("7").in_tenant("acme");
        let scope = member.event_scope();
        assert!(scope.holds("acme", ("users", "7"), ("notes", "3")));
        assert!(scope.holds("acme", ("services", "api"), ("users", "7")));
        assert!(!scope.holds("globex", ("users", "7"), ("notes", "3")));
        assert!(!scope.holds("acme", ("users", "8"), ("notes", "3")));
    }

    #[test]
    fn services_ingest_for_their_tenant_or_for_any() {
        let acme = Principal::new("api".into(), Role::Service)
            .unwrap()
            .in_tenant("acme");
        assert!(acme.may_ingest() && acme.may_enter("acme"));
        assert!(!acme.may_enter("globex"));
        assert_eq!(acme.bound_tenant(), Some("acme"));
        let any = acme.clone().in_tenant(ANY_TENANT);
        assert!(any.may_ingest() && any.may_enter("globex"));
        assert_eq!(any.bound_tenant(), None);
        assert_eq!(any.home_tenant(), DEFAULT_TENANT);
        assert!(!user("7").may_ingest());
    }

    #[test]
    fn admins_manage_the_users_of_their_tenant_and_only_operators_make_operators() {
        let admin = Principal::new("2".into(), Role::Admin)
            .unwrap()
            .in_tenant("acme");
        assert!(admin.may_modify_user("9", "acme"));
        assert!(!admin.may_modify_user("9", "globex"));
        assert!(admin.may_assign(Role::Admin));
        assert!(!admin.may_assign(Role::Operator));
        let operator = Principal::new("1".into(), Role::Operator).unwrap();
        assert!(operator.may_modify_user("9", "globex"));
        assert!(operator.may_assign(Role::Operator));
    }

    #[test]
    fn only_an_admin_may_erase_personal_data() {
        let admin = Principal::new("1".into(), Role::Admin).unwrap();
        let service = Principal::new("api".into(), Role::Service).unwrap();
        assert!(admin.may_erase_personal_data());
        assert!(!user("7").may_erase_personal_data());
        assert!(!service.may_erase_personal_data());
    }

    #[test]
    fn a_member_reads_only_events_involving_themselves() {
        let scope = user("7").event_scope();
        let about = |object_type, id| scope.holds(DEFAULT_TENANT, (object_type, id), ("x", "0"));
        assert!(about("users", "7"));
        assert!(!about("users", "8"));
        assert!(!about("notes", "7"));
    }

    #[test]
    fn a_member_changes_only_themselves_and_never_roles() {
        let member = user("7");
        assert!(member.may_modify_user("7", DEFAULT_TENANT));
        assert!(!member.may_modify_user("1", DEFAULT_TENANT));
        assert!(!member.may_create_users());
        assert!(!member.may_assign_roles());
    }

    #[test]
    fn a_service_may_ingest_but_read_nothing() {
        let service = Principal::new("api".into(), Role::Service).unwrap();
        assert!(service.may_ingest());
        assert!(!user("7").may_ingest());
        assert_eq!(service.event_scope(), EventScope::Nothing);
        assert!(!service.may_modify_user("api", DEFAULT_TENANT));
    }

    #[test]
    fn the_auditors_names_are_reserved_and_rights_events_are_for_services() {
        assert!(reserved_for_others(Some("auditor"), None, true).is_some());
        assert!(reserved_for_others(None, Some("audit.read"), true).is_some());
        assert!(reserved_for_others(None, Some("auth.rights_changed"), false).is_some());
        assert!(reserved_for_others(None, Some("auth.rights_changed"), true).is_none());
        assert!(reserved_for_others(Some("api"), Some("user.renamed"), false).is_none());
        assert!(reserved_for_others(Some("auditors"), Some("auditing"), false).is_none());
    }

    #[test]
    fn a_note_is_read_by_its_author_its_subject_and_admins_only() {
        let admin = Principal::new("1".into(), Role::Admin).unwrap();
        let service = Principal::new("api".into(), Role::Service).unwrap();
        // Note by user 1 about user 3.
        assert!(admin.may_read_note("1", "users", "3"));
        assert!(user("3").may_read_note("1", "users", "3"));
        assert!(user("1").may_read_note("1", "users", "3"));
        assert!(!user("2").may_read_note("1", "users", "3"));
        assert!(!user("3").may_read_note("1", "notes", "3"));
        assert!(!service.may_read_note("1", "users", "3"));
    }

    #[test]
    fn members_write_notes_only_about_themselves() {
        let admin = Principal::new("1".into(), Role::Admin).unwrap();
        assert!(admin.may_write_note_about("users", "3"));
        assert!(admin.may_write_note_about("orders", "9"));
        assert!(user("3").may_write_note_about("users", "3"));
        assert!(!user("3").may_write_note_about("users", "4"));
        assert!(!user("3").may_write_note_about("orders", "3"));
        let service = Principal::new("3".into(), Role::Service).unwrap();
        assert!(!service.may_write_note_about("users", "3"));
    }

    #[test]
    fn an_empty_or_oversized_subject_is_not_a_principal() {
        assert!(Principal::new(String::new(), Role::User).is_none());
        assert!(Principal::new("x".repeat(129), Role::User).is_none());
    }

    #[test]
    fn people_act_as_users_and_services_as_services() {
        let admin = Principal::new("1".into(), Role::Admin).unwrap();
        let service = Principal::new("api".into(), Role::Service).unwrap();

        let admin = admin.actor().unwrap();
        let service = service.actor().unwrap();

        assert_eq!(
            (admin.object_type.as_str(), admin.id.key()),
            ("users", "1".to_owned())
        );
        assert!(
            matches!(admin.id, auditlog_event::ObjectId::Number(_)),
            "a numeric subject is a number"
        );
        assert_eq!(
            (service.object_type.as_str(), service.id.key()),
            ("services", "api".to_owned())
        );
    }
}
