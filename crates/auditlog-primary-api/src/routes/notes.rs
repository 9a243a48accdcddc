//! The notes' routes: notes about any object, each access recorded by the data
//! layer.

use auditlog_http::openapi::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unprocessable,
    UnsupportedMediaType,
};
use auditlog_http::{ApiError, JsonBody, PathParams, json_api};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::ApiState;
use crate::notes::{Note, NoteTarget};
use crate::openapi::{NoteDocument, NotesDocument};

use super::{Acting, Document, numeric_id};

/// A new note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NoteAttributes {
    /// What the note is about, `type:id`, e.g. `users:5`.
    #[schema(pattern = "^[^:]{1,64}:.{1,128}$")]
    target: String,
    /// 1 to 10 000 characters, not only spaces.
    #[schema(min_length = 1, max_length = 10000, pattern = "\\S")]
    body: String,
}

/// A note as answered.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NoteResource {
    /// Always `notes`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "notes")]
    kind: &'static str,
    /// The note's id, as text.
    id: String,
    attributes: NoteFields,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NoteFields {
    /// What the note is about, `type:id`.
    target: String,
    body: String,
    /// The user who wrote it.
    author_id: i64,
    /// Milliseconds since the Unix epoch.
    created_at: i64,
}

fn note_resource(note: &Note) -> NoteResource {
    NoteResource {
        kind: "notes",
        id: note.id.to_string(),
        attributes: NoteFields {
            target: format!("{}:{}", note.target_type, note.target_id),
            body: note.body.clone(),
            author_id: note.author_id,
            created_at: note.created_at,
        },
    }
}

#[utoipa::path(
    post,
    path = "/api/notes",
    tag = "notes",
    operation_id = "createNote",
    summary = "Write a note about an object; recorded as `created`",
    description = "Admins write notes about any object; members only about themselves \
        (`users:<own id>`), 403 otherwise.",
    request_body(description = "A `notes` resource", content(
        (Document<NoteAttributes> = "application/vnd.api+json"),
        (Document<NoteAttributes> = "application/json"),
    )),
    responses(
        (status = 201, description = "The new note", body = NoteDocument,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
    )
)]
pub(crate) async fn create_note(
    State(state): State<ApiState>,
    Acting(actor): Acting,
    JsonBody(document): JsonBody<Document<NoteAttributes>>,
) -> Result<Response, ApiError> {
    let resource = document.data;
    resource.expect_type("notes")?;
    let target = NoteTarget::parse(&resource.attributes.target)?;
    let note = state
        .notes
        .create(&actor, target, resource.attributes.body)
        .await?;
    Ok(json_api(
        StatusCode::CREATED,
        &json!({ "data": note_resource(&note) }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/notes/{id}",
    tag = "notes",
    operation_id = "getNote",
    summary = "One note; recorded as `viewed`",
    description = "Read by its author, the user it is about and admins; 404 for anyone \
        else, as for a note that does not exist.",
    params(("id" = i64, Path, minimum = 1, description = "The note's id")),
    responses(
        (status = 200, description = "The note", body = NoteDocument,
            content_type = "application/vnd.api+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub(crate) async fn get_note(
    State(state): State<ApiState>,
    Acting(actor): Acting,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let note = state.notes.get(&actor, numeric_id(&id)?).await?;
    Ok(json_api(
        StatusCode::OK,
        &json!({ "data": note_resource(&note) }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NotesQuery {
    target: String,
}

#[utoipa::path(
    get,
    path = "/api/notes",
    tag = "notes",
    operation_id = "notesAbout",
    summary = "The notes about one object; each recorded as `viewed`",
    description = "Only the notes the caller may read: those they wrote, those about \
        themselves, or all for admins.",
    params(("target" = String, Query, pattern = "^[^:]{1,64}:.{1,128}$",
        description = "The object, `type:id`, e.g. `users:5`")),
    responses(
        (status = 200, description = "The notes", body = NotesDocument,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
    )
)]
pub(crate) async fn notes_about(
    State(state): State<ApiState>,
    Acting(actor): Acting,
    query: Result<Query<NotesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::bad_request("list notes with ?target=type:id, e.g. ?target=users:5")
    })?;
    let target = NoteTarget::parse(&query.target)?;
    let notes = state.notes.about(&actor, &target).await?;
    let data: Vec<NoteResource> = notes.iter().map(note_resource).collect();
    Ok(json_api(StatusCode::OK, &json!({ "data": data })))
}
