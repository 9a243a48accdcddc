//! The user-aware notes repository: free-text notes attached to any object
//! (`users:5`), each read `viewed` and each new one `created`. Who may read and
//! write which note is `auditlog-auth`'s policy (`Principal::may_read_note`,
//! `Principal::may_write_note_about`), checked here, where the note's author and
//! target are known, so that no route can forget it. A note belongs to its
//! author's tenant, and nobody of another tenant reads it (operators aside).

use auditlog_event::{Action, MAX_ID_CHARS, MAX_TYPE_CHARS};
use serde_json::{Value, json};

use auditlog_event::now_ms;

use crate::audit::{Actor, Recorder, all_fields};
use crate::db::{FetchId, on_db};
use crate::{AppDb, DataError};

/// The object type of notes in events.
pub const NOTES: &str = "notes";

/// A note about an object.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Note {
    pub id: i64,
    /// The user who wrote it.
    pub author_id: i64,
    pub target_type: String,
    pub target_id: String,
    pub body: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The author's tenant when it was written.
    pub tenant: String,
}

/// The object a note is about, from `type:id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteTarget {
    pub object_type: String,
    pub id: String,
}

impl NoteTarget {
    /// Parses `type:id`, e.g. `users:5`.
    pub fn parse(text: &str) -> Result<Self, DataError> {
        let (object_type, id) = text.split_once(':').ok_or_else(|| {
            DataError::Invalid(format!(
                "target `{text}` must be written type:id, e.g. users:5"
            ))
        })?;
        let type_ok = (1..=MAX_TYPE_CHARS).contains(&object_type.chars().count());
        let id_ok = (1..=MAX_ID_CHARS).contains(&id.chars().count());
        if !type_ok || !id_ok {
            return Err(DataError::Invalid(
                "target type must be 1 to 64 characters and id 1 to 128".into(),
            ));
        }
        Ok(NoteTarget {
            object_type: object_type.to_owned(),
            id: id.to_owned(),
        })
    }
}

/// Longest note body.
const MAX_NOTE_CHARS: usize = 10_000;

// The statements, written once with `?` placeholders (see `Dialect::sql`).
const INSERT_NOTE: &str =
    "INSERT INTO notes (author_id, target_type, target_id, body, created_at, tenant)
     VALUES (?, ?, ?, ?, ?, ?)";
const SELECT_NOTE: &str = "SELECT id, author_id, target_type, target_id, body, created_at, tenant
     FROM notes WHERE id = ?";
const NOTES_ABOUT: &str = "SELECT id, author_id, target_type, target_id, body, created_at, tenant
     FROM notes WHERE target_type = ? AND target_id = ? ORDER BY id LIMIT 1000";

/// The notes repository.
#[derive(Debug, Clone)]
pub struct Notes {
    db: AppDb,
    recorder: Recorder,
}

impl Notes {
    /// The repository over `db`, emitting through `recorder`.
    pub fn new(db: AppDb, recorder: Recorder) -> Self {
        Notes { db, recorder }
    }

    /// Writes a note by `actor`: `created`, then `viewed`.
    pub async fn create(
        &self,
        actor: &Actor,
        target: NoteTarget,
        body: String,
    ) -> Result<Note, DataError> {
        let author_id: i64 = actor
            .principal
            .subject
            .parse()
            .map_err(|_| DataError::Forbidden("only users may write notes"))?;
        if !actor
            .principal
            .may_write_note_about(&target.object_type, &target.id)
        {
            return Err(DataError::Forbidden(
                "members may write notes only about themselves",
            ));
        }
        let len = body.trim().chars().count();
        if len == 0 || len > MAX_NOTE_CHARS {
            return Err(DataError::Invalid(
                "body must be 1 to 10000 characters".into(),
            ));
        }
        let created_at = now_ms();
        let note = on_db!(self.db, writer, |pool, dialect| {
            // The note and its `created` event commit together.
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let id = sqlx::query(dialect.insert(INSERT_NOTE))
                .bind(author_id)
                .bind(&target.object_type)
                .bind(&target.id)
                .bind(&body)
                .bind(created_at)
                .bind(&actor.principal.tenant)
                .fetch_id(&mut tx)
                .await?;
            let note = Note {
                id,
                author_id,
                target_type: target.object_type,
                target_id: target.id,
                body,
                created_at,
                tenant: actor.principal.tenant.clone(),
            };
            let changes = all_fields(&fields(&note), true);
            self.recorder
                .stage(
                    &mut tx,
                    dialect,
                    actor,
                    Action::Created,
                    (NOTES, note.id),
                    changes,
                    None,
                )
                .await?;
            tx.commit().await?;
            note
        });
        self.recorder.staged_committed();
        self.recorder
            .record(actor, Action::Viewed, NOTES, note.id, None);
        Ok(note)
    }

    /// One note, `viewed`. A note the actor may not read is "not found", as one
    /// that does not exist: the answer must not tell the two apart.
    pub async fn get(&self, actor: &Actor, id: i64) -> Result<Note, DataError> {
        let note: Note = on_db!(self.db, readers, |pool, dialect| {
            sqlx::query_as(dialect.sql(SELECT_NOTE))
                .bind(id)
                .fetch_optional(pool)
                .await?
                .ok_or(DataError::NotFound)?
        });
        if !may_read(actor, &note) {
            return Err(DataError::NotFound);
        }
        self.recorder
            .record(actor, Action::Viewed, NOTES, note.id, None);
        Ok(note)
    }

    /// The notes about one object the actor may read, oldest first; each
    /// `viewed`. Notes the actor may not read are left out, not refused: a
    /// member listing notes about someone else sees the ones they wrote.
    pub async fn about(&self, actor: &Actor, target: &NoteTarget) -> Result<Vec<Note>, DataError> {
        let mut notes: Vec<Note> = on_db!(self.db, readers, |pool, dialect| {
            sqlx::query_as(dialect.sql(NOTES_ABOUT))
                .bind(&target.object_type)
                .bind(&target.id)
                .fetch_all(pool)
                .await?
        });
        notes.retain(|note| may_read(actor, note));
        for note in &notes {
            self.recorder
                .record(actor, Action::Viewed, NOTES, note.id, None);
        }
        Ok(notes)
    }
}

/// The policy's answer for one stored note.
fn may_read(actor: &Actor, note: &Note) -> bool {
    actor.principal.may_enter(&note.tenant)
        && actor.principal.may_read_note(
            &note.author_id.to_string(),
            &note.target_type,
            &note.target_id,
        )
}

fn fields(note: &Note) -> [(&'static str, Value); 3] {
    [
        (
            "target",
            json!(format!("{}:{}", note.target_type, note.target_id)),
        ),
        ("body", json!(note.body)),
        ("authorId", json!(note.author_id)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_type_colon_id() {
        let t = NoteTarget::parse("users:5").unwrap();
        assert_eq!((t.object_type.as_str(), t.id.as_str()), ("users", "5"));
        for bad in ["users", ":5", "users:", &format!("{}:1", "t".repeat(65))] {
            assert!(NoteTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
