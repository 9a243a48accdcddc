//! The user-aware users repository: every operation takes the acting principal,
//! checks the policy, does the work and emits the matching event itself, so no
//! handler can forget to audit.

use auditlog_auth::Principal;
use auditlog_event::Action;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::audit::{Recorder, all_fields, diff};
use crate::{AppDb, DataError};

pub const USERS: &str = "users";

/// What a user may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRole {
    Admin,
    User,
}

impl UserRole {
    pub fn parse(text: &str) -> Result<Self, DataError> {
        match text {
            "admin" => Ok(UserRole::Admin),
            "user" => Ok(UserRole::User),
            other => Err(DataError::Invalid(format!(
                "role must be `admin` or `user`, not `{other}`"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Admin => "admin",
            UserRole::User => "user",
        }
    }
}

/// A user of the demo application.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub agreed_tos: bool,
    pub role: UserRole,
}

impl User {
    /// The audited fields, by their wire names.
    fn fields(&self) -> [(&'static str, Value); 4] {
        [
            ("name", json!(self.name)),
            ("email", json!(self.email)),
            ("agreedTos", json!(self.agreed_tos)),
            ("role", json!(self.role.as_str())),
        ]
    }
}

/// The fields of a new user.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub agreed_tos: bool,
    pub role: UserRole,
}

/// The fields a change sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub name: Option<String>,
    pub email: Option<String>,
    pub agreed_tos: Option<bool>,
    pub role: Option<UserRole>,
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

/// The users repository.
#[derive(Debug, Clone)]
pub struct Users {
    db: AppDb,
    recorder: Recorder,
}

impl Users {
    pub fn new(db: AppDb, recorder: Recorder) -> Self {
        Users { db, recorder }
    }

    /// Every user; each one returned is `viewed`.
    pub async fn list(&self, principal: &Principal) -> Result<Vec<User>, DataError> {
        let rows = sqlx::query("SELECT id, name, email, agreed_tos, role FROM users ORDER BY id")
            .fetch_all(&self.db.readers)
            .await?;
        let users = rows
            .iter()
            .map(user_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        for user in &users {
            self.recorder
                .record(principal, Action::Viewed, USERS, user.id, None);
        }
        Ok(users)
    }

    /// One user, `viewed`.
    pub async fn get(&self, principal: &Principal, id: i64) -> Result<User, DataError> {
        let user = find(&self.db.readers, id)
            .await?
            .ok_or(DataError::NotFound)?;
        self.recorder
            .record(principal, Action::Viewed, USERS, user.id, None);
        Ok(user)
    }

    /// Any user by id, without auditing: for issuing dev tokens, not for answers.
    pub async fn find_unaudited(&self, id: i64) -> Result<Option<User>, DataError> {
        find(&self.db.readers, id).await
    }

    /// Creates a user: `created` with every field, then `viewed`.
    pub async fn create(&self, principal: &Principal, new: NewUser) -> Result<User, DataError> {
        if !principal.may_create_users() {
            return Err(DataError::Forbidden("only admins may create users"));
        }
        check_fields(Some(&new.name), Some(&new.email))?;
        let row = sqlx::query(
            "INSERT INTO users (name, email, agreed_tos, role) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(new.name.trim())
        .bind(&new.email)
        .bind(new.agreed_tos)
        .bind(new.role.as_str())
        .fetch_one(&self.db.writer)
        .await?;
        let user = User {
            id: row.try_get("id")?,
            name: new.name.trim().to_owned(),
            email: new.email,
            agreed_tos: new.agreed_tos,
            role: new.role,
        };
        self.recorder.record(
            principal,
            Action::Created,
            USERS,
            user.id,
            Some(all_fields(&user.fields(), true)),
        );
        self.recorder
            .record(principal, Action::Viewed, USERS, user.id, None);
        Ok(user)
    }

    /// Changes a user: `changed` with only the fields that really changed (if any),
    /// then `viewed`.
    pub async fn update(
        &self,
        principal: &Principal,
        id: i64,
        patch: UserPatch,
    ) -> Result<User, DataError> {
        if !principal.may_modify_user(&id.to_string()) {
            return Err(DataError::Forbidden("you may change only your own user"));
        }
        if patch.role.is_some() && !principal.may_assign_roles() {
            return Err(DataError::Forbidden("only admins may change roles"));
        }
        check_fields(patch.name.as_deref(), patch.email.as_deref())?;
        let mut tx = self.db.writer.begin().await?;
        let before = find(&mut *tx, id).await?.ok_or(DataError::NotFound)?;
        let after = User {
            id,
            name: patch
                .name
                .map(|n| n.trim().to_owned())
                .unwrap_or_else(|| before.name.clone()),
            email: patch.email.unwrap_or_else(|| before.email.clone()),
            agreed_tos: patch.agreed_tos.unwrap_or(before.agreed_tos),
            role: patch.role.unwrap_or(before.role),
        };
        let changes = diff(&before.fields(), &after.fields());
        if !changes.is_empty() {
            sqlx::query(
                "UPDATE users SET name = ?, email = ?, agreed_tos = ?, role = ? WHERE id = ?",
            )
            .bind(&after.name)
            .bind(&after.email)
            .bind(after.agreed_tos)
            .bind(after.role.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if !changes.is_empty() {
            self.recorder
                .record(principal, Action::Changed, USERS, id, Some(changes));
        }
        self.recorder
            .record(principal, Action::Viewed, USERS, id, None);
        Ok(after)
    }

    /// Deletes a user: `deleted` with its last fields, only if it existed.
    pub async fn delete(&self, principal: &Principal, id: i64) -> Result<(), DataError> {
        if !principal.may_modify_user(&id.to_string()) {
            return Err(DataError::Forbidden("you may delete only your own user"));
        }
        let mut tx = self.db.writer.begin().await?;
        let before = find(&mut *tx, id).await?.ok_or(DataError::NotFound)?;
        sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.recorder.record(
            principal,
            Action::Deleted,
            USERS,
            id,
            Some(all_fields(&before.fields(), false)),
        );
        Ok(())
    }
}

async fn find<'e, E>(executor: E, id: i64) -> Result<Option<User>, DataError>
where
    E: sqlx::SqliteExecutor<'e>,
{
    let row = sqlx::query("SELECT id, name, email, agreed_tos, role FROM users WHERE id = ?")
        .bind(id)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

fn user_from_row(row: &SqliteRow) -> Result<User, DataError> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        agreed_tos: row.try_get("agreed_tos")?,
        role: UserRole::parse(row.try_get("role")?)?,
    })
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
