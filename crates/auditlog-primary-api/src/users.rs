//! The user-aware users repository: every operation takes the acting principal
//! (an [`Actor`], which also names the request), checks the policy, does the work
//! and emits the matching event itself, so no handler can forget to audit.
//!
//! Every user belongs to a tenant: only operators see or manage the users of
//! another tenant than their own, and a user of another tenant is answered as
//! not found rather than forbidden, so that its existence is not told.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditlog_auth::rights::{CurrentRights, RIGHTS_CHANGED, RightsCheck, RightsFuture, allows};
use auditlog_auth::{AuthError, Principal, Role};
use auditlog_event::{Action, Change, DEFAULT_TENANT};
use serde_json::{Value, json};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Transaction, Type};

use crate::audit::{Actor, Recorder, all_fields, diff, seeded_event, stage_event};
use crate::db::{Dialect, FetchId, RowsAffected, on_db};
use crate::{AppDb, DataError};

/// The object type of users in events.
pub const USERS: &str = "users";

/// What a user may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRole {
    /// The deployment's staff: an admin of every tenant.
    Operator,
    /// Changes any user of its tenant and assigns roles.
    Admin,
    /// Changes only themselves.
    User,
}

impl UserRole {
    /// Parses `operator`, `admin` or `user`.
    pub fn parse(text: &str) -> Result<Self, DataError> {
        match text {
            "operator" => Ok(UserRole::Operator),
            "admin" => Ok(UserRole::Admin),
            "user" => Ok(UserRole::User),
            other => Err(DataError::Invalid(format!(
                "role must be `operator`, `admin` or `user`, not `{other}`"
            ))),
        }
    }

    /// The policy's role of a user with this role.
    pub fn principal_role(self) -> Role {
        match self {
            UserRole::Operator => Role::Operator,
            UserRole::Admin => Role::Admin,
            UserRole::User => Role::User,
        }
    }

    /// The role as written in the database and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Operator => "operator",
            UserRole::Admin => "admin",
            UserRole::User => "user",
        }
    }
}

/// Reads a role as stored (see [`User`]'s `FromRow`).
impl TryFrom<String> for UserRole {
    type Error = DataError;

    fn try_from(text: String) -> Result<Self, DataError> {
        UserRole::parse(&text)
    }
}

/// A user of the demo application.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub agreed_tos: bool,
    /// Stored as its text, `operator`, `admin` or `user`.
    #[sqlx(try_from = "String")]
    pub role: UserRole,
    /// The tenant the user belongs to.
    pub tenant: String,
}

impl User {
    /// The audited fields, by their wire names.
    fn fields(&self) -> [(&'static str, Value); 5] {
        [
            ("name", json!(self.name)),
            ("email", json!(self.email)),
            ("agreedTos", json!(self.agreed_tos)),
            ("role", json!(self.role.as_str())),
            ("tenant", json!(self.tenant)),
        ]
    }
}

/// Whether `actor` may see `user` at all: operators every user, anyone else
/// the users of their tenant.
fn visible_to(actor: &Actor, user: &User) -> bool {
    actor.principal.is_operator() || actor.principal.tenant == user.tenant
}

/// A tenant named in a request, checked.
fn tenant_of(text: &str) -> Result<String, DataError> {
    auditlog_event::parse_tenant("tenant", text).map_err(|e| DataError::Invalid(e.to_string()))
}

/// The fields of a new user.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub agreed_tos: bool,
    pub role: UserRole,
    /// The new user's tenant; `None` for the creator's own.
    pub tenant: Option<String>,
    /// Write-only: stored as a salted hash, recorded as a masked change.
    pub password: Option<String>,
}

/// The fields a change sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub name: Option<String>,
    pub email: Option<String>,
    pub agreed_tos: Option<bool>,
    pub role: Option<UserRole>,
    /// Another tenant for the user: operators only.
    pub tenant: Option<String>,
    /// Write-only: setting it always counts as a change, recorded masked.
    pub password: Option<String>,
}

/// Checks a name and an email before they reach the database.
pub fn check_fields(name: Option<&str>, email: Option<&str>) -> Result<(), DataError> {
    if let Some(name) = name {
        let len = name.trim().chars().count();
        if len == 0 || len > 200 {
            return Err(DataError::Invalid(
                "name must be 1 to 200 characters".into(),
            ));
        }
    }
    if let Some(email) = email {
        let valid = email.len() <= 254
            && email
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
        if !valid {
            return Err(DataError::Invalid(format!(
                "email `{email}` is not an email address"
            )));
        }
    }
    Ok(())
}

/// The users the application starts with: user 1, the prototype's admin, now
/// the deployment's operator (an admin of every tenant).
fn seeded_users() -> [User; 1] {
    [User {
        id: 1,
        name: "James Chavo".into(),
        email: "jim.chavo@happi.com".into(),
        agreed_tos: true,
        role: UserRole::Operator,
        tenant: DEFAULT_TENANT.into(),
    }]
}

/// Inserts each seeded user that is not there yet and, in the same transaction,
/// stages its `created` event (by the system, every field), so that the log knows
/// what the user was before its first change. A user already there (any start but
/// the first, or a database seeded before these events existed) gets neither.
pub(crate) async fn seed<DB>(
    tx: &mut Transaction<'_, DB>,
    dialect: Dialect,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
    DB::QueryResult: RowsAffected,
    for<'r> User: FromRow<'r, DB::Row>,
{
    for user in seeded_users() {
        let inserted = sqlx::query(dialect.insert_or_ignore(SEED_USER))
            .bind(user.id)
            .bind(user.name.clone())
            .bind(user.email.clone())
            .bind(user.agreed_tos)
            .bind(user.role.as_str().to_owned())
            .bind(user.tenant.clone())
            .execute(&mut **tx)
            .await?
            .rows();
        if inserted == 1 {
            let changes = all_fields(&user.fields(), true);
            let event = seeded_event(USERS, user.id, changes, "user.seeded")
                .map_err(|err| sqlx::Error::Encode(Box::new(err)))?;
            stage_event(tx, dialect, &event).await?;
        }
    }
    // Before tenants, user 1 was the admin of the only tenant there was; it
    // stays the deployment's admin as its operator, recorded as a change of
    // rights by the system.
    // Read first, without a lock: on MySQL two first opens at once would
    // otherwise deadlock on the row each just inserted, for a change that an
    // upgrade makes once.
    let user_1: Option<User> = sqlx::query_as(dialect.sql(SELECT_USER))
        .bind(1_i64)
        .fetch_optional(&mut **tx)
        .await?;
    if !user_1.is_some_and(|user| user.role == UserRole::Admin && user.tenant == DEFAULT_TENANT) {
        return Ok(());
    }
    let promoted = sqlx::query(dialect.sql(PROMOTE_SEEDED_ADMIN))
        .execute(&mut **tx)
        .await?
        .rows();
    if promoted == 1 {
        let changes = [(
            "role".to_owned(),
            Change::new(
                json!(UserRole::Admin.as_str()),
                json!(UserRole::Operator.as_str()),
            ),
        )]
        .into();
        let mut event = seeded_event(USERS, 1, changes, RIGHTS_CHANGED)
            .map_err(|err| sqlx::Error::Encode(Box::new(err)))?;
        event.action = Action::Changed;
        stage_event(tx, dialect, &event).await?;
    }
    Ok(())
}

// The statements, written once with `?` placeholders (see `Dialect::sql`).
/// For [`Dialect::insert_or_ignore`]: a seeded user, with its id.
const SEED_USER: &str =
    "INTO users (id, name, email, agreed_tos, role, tenant) VALUES (?, ?, ?, ?, ?, ?)";
const PROMOTE_SEEDED_ADMIN: &str =
    "UPDATE users SET role = 'operator' WHERE id = 1 AND role = 'admin' AND tenant = 'default'";
const SELECT_USER: &str =
    "SELECT id, name, email, agreed_tos, role, tenant FROM users WHERE id = ?";
const LIST_USERS: &str = "SELECT id, name, email, agreed_tos, role, tenant FROM users ORDER BY id";
const LIST_TENANT_USERS: &str =
    "SELECT id, name, email, agreed_tos, role, tenant FROM users WHERE tenant = ? ORDER BY id";
const INSERT_USER: &str =
    "INSERT INTO users (name, email, agreed_tos, role, tenant) VALUES (?, ?, ?, ?, ?)";
const UPDATE_USER: &str =
    "UPDATE users SET name = ?, email = ?, agreed_tos = ?, role = ?, tenant = ? WHERE id = ?";
const DELETE_USER: &str = "DELETE FROM users WHERE id = ?";
const DELETE_SECRET: &str = "DELETE FROM user_secrets WHERE user_id = ?";
const INSERT_SECRET: &str = "INSERT INTO user_secrets (user_id, password_hash) VALUES (?, ?)";

/// The field whose changes are recorded without their values.
const PASSWORD: &str = "password";

/// The users repository.
///
/// Every change runs in one write transaction that first locks the row it reads
/// (`SELECT … FOR UPDATE`; on SQLite, the database's write lock), so
/// concurrent changes of one user take turns and each diff starts from what the
/// previous one left. Its event is emitted just before the commit, while the row is
/// still locked, so that the events of one user leave in the order its changes were
/// made (emitting after the commit would let the next change's event overtake).
/// The price: should the commit itself then fail, the event describes a change that
/// did not happen; the transactional outbox is what removes both risks.
///
/// It is also the primary API's [`RightsCheck`]: every request's token is checked
/// against the users table (a deleted user's token carries nothing, a demoted
/// admin's no more than a user's), through a cache of at most
/// [`RIGHTS_FRESH_FOR`] that this repository clears for a user it changes.
#[derive(Debug, Clone)]
pub struct Users {
    db: AppDb,
    recorder: Recorder,
    rights: Arc<RightsCache>,
}

/// How long a user's rights read from the database are trusted. Changes made
/// through this process clear them at once; this bounds how long another
/// process's change (several primary APIs on one database) takes to be seen.
pub const RIGHTS_FRESH_FOR: Duration = Duration::from_millis(500);

/// Most users whose rights are remembered; past it the memory starts over.
const RIGHTS_CAPACITY: usize = 10_000;

/// A user's rights as read: role and tenant.
type Rights = (UserRole, String);

/// Users' rights as last read, or `None` when there is no such user.
#[derive(Debug, Default)]
struct RightsCache(Mutex<HashMap<i64, (Instant, Option<Rights>)>>);

impl RightsCache {
    fn get(&self, id: i64) -> Option<Option<Rights>> {
        let cache = self.0.lock().ok()?;
        let (read_at, role) = cache.get(&id)?;
        (read_at.elapsed() < RIGHTS_FRESH_FOR).then(|| role.clone())
    }

    fn put(&self, id: i64, role: Option<Rights>) {
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= RIGHTS_CAPACITY {
                cache.clear();
            }
            cache.insert(id, (Instant::now(), role));
        }
    }

    fn forget(&self, id: i64) {
        if let Ok(mut cache) = self.0.lock() {
            cache.remove(&id);
        }
    }
}

impl Users {
    /// The repository over `db`, emitting through `recorder`.
    pub fn new(db: AppDb, recorder: Recorder) -> Self {
        Users {
            db,
            recorder,
            rights: Arc::default(),
        }
    }

    /// What the users table says now of the user a token names: its rights,
    /// or that it is gone; a token of another tenant than the user's carries
    /// nothing (the user was moved since it was issued).
    async fn current_rights(&self, principal: &Principal) -> Result<CurrentRights, AuthError> {
        // A subject that is no id of this table names no user of this application.
        let Ok(id) = principal.subject.parse::<i64>() else {
            return Ok(CurrentRights::Deleted);
        };
        let rights = match self.rights.get(id) {
            Some(rights) => rights,
            None => {
                let rights = self
                    .find_unaudited(id)
                    .await
                    .map_err(|e| AuthError::Unavailable(e.to_string()))?
                    .map(|user| (user.role, user.tenant));
                self.rights.put(id, rights.clone());
                rights
            }
        };
        Ok(match rights {
            None => CurrentRights::Deleted,
            Some((_, tenant)) if tenant != principal.tenant => {
                return Err(AuthError::Revoked(format!(
                    "user {id} belongs to tenant `{tenant}` now, not `{}`; get a new token",
                    principal.tenant
                )));
            }
            Some((role, _)) => CurrentRights::Role(role.principal_role()),
        })
    }

    /// Every user the actor may see (an operator's every user, anyone else's
    /// own tenant's); each one returned is `viewed`.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<User>, DataError> {
        if !actor.principal.may_read_users() {
            return Err(DataError::Forbidden(
                "a viewer token reads audit events only",
            ));
        }
        let operator = actor.principal.is_operator();
        let tenant = actor.principal.tenant.clone();
        let users: Vec<User> = on_db!(self.db, readers, |pool, dialect| {
            if operator {
                sqlx::query_as(dialect.sql(LIST_USERS))
                    .fetch_all(pool)
                    .await?
            } else {
                sqlx::query_as(dialect.sql(LIST_TENANT_USERS))
                    .bind(tenant.clone())
                    .fetch_all(pool)
                    .await?
            }
        });
        for user in &users {
            self.recorder
                .record(actor, Action::Viewed, USERS, user.id, None);
        }
        Ok(users)
    }

    /// One user, `viewed`.
    pub async fn get(&self, actor: &Actor, id: i64) -> Result<User, DataError> {
        if !actor.principal.may_read_users() {
            return Err(DataError::Forbidden(
                "a viewer token reads audit events only",
            ));
        }
        let user = self
            .find_unaudited(id)
            .await?
            .filter(|user| visible_to(actor, user))
            .ok_or(DataError::NotFound)?;
        self.recorder
            .record(actor, Action::Viewed, USERS, user.id, None);
        Ok(user)
    }

    /// Any user by id, without auditing: for issuing dev tokens, not for answers.
    pub async fn find_unaudited(&self, id: i64) -> Result<Option<User>, DataError> {
        Ok(on_db!(self.db, readers, |pool, dialect| {
            sqlx::query_as(dialect.sql(SELECT_USER))
                .bind(id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Creates a user: `created` with every field, then `viewed`.
    pub async fn create(&self, actor: &Actor, new: NewUser) -> Result<User, DataError> {
        if !actor.principal.may_create_users() {
            return Err(DataError::Forbidden("only admins may create users"));
        }
        if !actor.principal.may_assign(new.role.principal_role()) {
            return Err(DataError::Forbidden("only operators may make operators"));
        }
        let tenant = match &new.tenant {
            Some(tenant) => tenant_of(tenant)?,
            None => actor.principal.tenant.clone(),
        };
        if !actor.principal.may_enter(&tenant) {
            return Err(DataError::Forbidden(
                "admins create users in their own tenant only",
            ));
        }
        check_fields(Some(&new.name), Some(&new.email))?;
        let password_hash = new.password.as_deref().map(hash_password).transpose()?;
        let name = new.name.trim();
        let user = on_db!(self.db, writer, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let id = sqlx::query(dialect.insert(INSERT_USER))
                .bind(name)
                .bind(&new.email)
                .bind(new.agreed_tos)
                .bind(new.role.as_str())
                .bind(&tenant)
                .fetch_id(&mut tx)
                .await?;
            let user = User {
                id,
                name: name.to_owned(),
                email: new.email,
                agreed_tos: new.agreed_tos,
                role: new.role,
                tenant,
            };
            let mut changes = all_fields(&user.fields(), true);
            if let Some(hash) = &password_hash {
                sqlx::query(dialect.sql(INSERT_SECRET))
                    .bind(user.id)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?;
                changes.insert(PASSWORD.into(), Change::masked());
            }
            self.recorder
                .stage(
                    &mut tx,
                    dialect,
                    actor,
                    Action::Created,
                    (USERS, user.id),
                    changes,
                    None,
                )
                .await?;
            tx.commit().await?;
            user
        });
        self.recorder.staged_committed();
        self.recorder
            .record(actor, Action::Viewed, USERS, user.id, None);
        Ok(user)
    }

    /// Changes a user: `changed` with only the fields that really changed (if any),
    /// then `viewed`.
    pub async fn update(
        &self,
        actor: &Actor,
        id: i64,
        patch: UserPatch,
    ) -> Result<User, DataError> {
        if patch.role.is_some() && !actor.principal.may_assign_roles() {
            return Err(DataError::Forbidden("only admins may change roles"));
        }
        if let Some(role) = patch.role
            && !actor.principal.may_assign(role.principal_role())
        {
            return Err(DataError::Forbidden("only operators may make operators"));
        }
        let patch = UserPatch {
            tenant: patch.tenant.as_deref().map(tenant_of).transpose()?,
            ..patch
        };
        if patch.tenant.is_some() && !actor.principal.is_operator() {
            return Err(DataError::Forbidden(
                "only operators may move a user to another tenant",
            ));
        }
        check_fields(patch.name.as_deref(), patch.email.as_deref())?;
        let password_hash = patch.password.as_deref().map(hash_password).transpose()?;
        let after = on_db!(self.db, writer, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let before = lock(&mut tx, dialect, id).await?;
            authorise_change(actor, &before, "you may change only your own user")?;
            let after = patch.applied_to(&before);
            let mut changes = diff(&before.fields(), &after.fields());
            if let Some(hash) = &password_hash {
                sqlx::query(dialect.sql(DELETE_SECRET))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(dialect.sql(INSERT_SECRET))
                    .bind(id)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?;
                changes.insert(PASSWORD.into(), Change::masked());
            }
            if !changes.is_empty() {
                sqlx::query(dialect.sql(UPDATE_USER))
                    .bind(&after.name)
                    .bind(&after.email)
                    .bind(after.agreed_tos)
                    .bind(after.role.as_str())
                    .bind(&after.tenant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                // A change of role or tenant changes what the user's tokens may
                // do: named so that the auditor revokes what the old one allowed.
                let event_name = (changes.contains_key("role") || changes.contains_key("tenant"))
                    .then_some(RIGHTS_CHANGED);
                self.recorder
                    .stage(
                        &mut tx,
                        dialect,
                        actor,
                        Action::Changed,
                        (USERS, id),
                        changes,
                        event_name,
                    )
                    .await?;
            }
            tx.commit().await?;
            after
        });
        self.rights.forget(id);
        self.recorder.staged_committed();
        self.recorder.record(actor, Action::Viewed, USERS, id, None);
        Ok(after)
    }

    /// Deletes a user: `deleted` with its last fields, only if it existed.
    pub async fn delete(&self, actor: &Actor, id: i64) -> Result<(), DataError> {
        on_db!(self.db, writer, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let before = lock(&mut tx, dialect, id).await?;
            authorise_change(actor, &before, "you may delete only your own user")?;
            sqlx::query(dialect.sql(DELETE_USER))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(dialect.sql(DELETE_SECRET))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let changes = all_fields(&before.fields(), false);
            self.recorder
                .stage(
                    &mut tx,
                    dialect,
                    actor,
                    Action::Deleted,
                    (USERS, id),
                    changes,
                    Some(RIGHTS_CHANGED),
                )
                .await?;
            tx.commit().await?;
        });
        self.rights.forget(id);
        self.recorder.staged_committed();
        Ok(())
    }
}

impl RightsCheck for Users {
    fn check<'a>(&'a self, principal: &'a Principal) -> RightsFuture<'a> {
        Box::pin(async move {
            // Services and viewer tokens are not rows of the users table.
            if !principal.is_a_user() {
                return Ok(());
            }
            allows(principal, self.current_rights(principal).await?)
        })
    }
}

/// Whether `actor` may change or delete `user`: a user of another tenant is
/// not found (unless the actor is an operator), one of its own that it may not
/// change is `refusal`.
fn authorise_change(actor: &Actor, user: &User, refusal: &'static str) -> Result<(), DataError> {
    if !visible_to(actor, user) {
        return Err(DataError::NotFound);
    }
    if !actor
        .principal
        .may_modify_user(&user.id.to_string(), &user.tenant)
    {
        return Err(DataError::Forbidden(refusal));
    }
    Ok(())
}

/// The user `id`, read in `tx` and locked until it ends.
async fn lock<DB>(
    tx: &mut Transaction<'_, DB>,
    dialect: Dialect,
    id: i64,
) -> Result<User, DataError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> User: FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    sqlx::query_as(dialect.select_for_update(SELECT_USER))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(DataError::NotFound)
}

/// Rounds of SHA-256 over salt and password: slows guessing. A deployment
/// with real users would use a memory-hard KDF such as Argon2; this is the demo's.
const PASSWORD_ROUNDS: u32 = 10_000;

/// `sha256$<rounds>$<salt hex>$<hash hex>` of a password of 8 to 256 characters.
fn hash_password(password: &str) -> Result<String, DataError> {
    use sha2::{Digest, Sha256};
    let length = password.chars().count();
    if !(8..=256).contains(&length) {
        return Err(DataError::Invalid(
            "password must be 8 to 256 characters".into(),
        ));
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| DataError::Database(format!("no randomness for a salt: {e}")))?;
    let mut digest = Sha256::new()
        .chain_update(salt)
        .chain_update(password.as_bytes())
        .finalize();
    for _ in 1..PASSWORD_ROUNDS {
        digest = Sha256::new()
            .chain_update(digest)
            .chain_update(salt)
            .finalize();
    }
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok(format!(
        "sha256${PASSWORD_ROUNDS}${}${}",
        hex(&salt),
        hex(&digest)
    ))
}

impl UserPatch {
    /// The user `before` becomes with this patch applied.
    fn applied_to(self, before: &User) -> User {
        User {
            id: before.id,
            name: self
                .name
                .map(|n| n.trim().to_owned())
                .unwrap_or_else(|| before.name.clone()),
            email: self.email.unwrap_or_else(|| before.email.clone()),
            agreed_tos: self.agreed_tos.unwrap_or(before.agreed_tos),
            role: self.role.unwrap_or(before.role),
            tenant: self.tenant.unwrap_or_else(|| before.tenant.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_emails_are_checked() {
        assert!(check_fields(Some("Ann"), Some("ann@example.com")).is_ok());
        assert!(check_fields(Some("  "), None).is_err());
        assert!(check_fields(Some(&"x".repeat(201)), None).is_err());
        for bad in ["ann", "@example.com", "ann@localhost", ""] {
            assert!(check_fields(None, Some(bad)).is_err(), "{bad}");
        }
    }
}
