//! The log's HTTP routes:
//!
//! - `GET /log/checkpoint` (text): the latest signed checkpoint, a C2SP
//!   `tlog-checkpoint` signed note;
//! - `GET /log/key` (text): the note verifier key that signs them;
//! - `GET /log/tile/…`: the tree as C2SP `tlog-tiles` — hash tiles, and entry
//!   bundles of the leaves themselves;
//! - `GET /api/data-events/{id}/inclusion`: an event's leaf and its RFC 9162 audit
//!   path;
//! - `GET /api/log/consistency`: an RFC 9162 consistency proof between two sizes.
//!
//! Checkpoints, hash tiles and consistency proofs reveal only hashes: any
//! authenticated principal may read them. An inclusion proof serves the event's
//! leaf, so it needs the right to read that event, and is recorded as a read;
//! entry bundles need the right to read every event.

use auditlog_auth::EventScope;
use auditlog_http::openapi::{BadRequest, Forbidden, NotFound, Unauthorized, Unavailable};
use auditlog_http::{ApiError, Authenticated, PathParams, json_api};
use auditlog_tlog::{Plan, TILE_HEIGHT, TILE_WIDTH, TilePath, base64, entry_bundle};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::plan_hashes;
use crate::AuditorState;
use crate::filters::{QueryParams, only_known};
use crate::openapi::EventIdPath;
use crate::query::visible_event;
use crate::reads::{ReadRequest, record_read};

/// A text answer that must not be cached (it changes as the log grows).
fn text(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `GET /log/checkpoint`.
#[utoipa::path(
    get,
    path = "/log/checkpoint",
    tag = "log",
    operation_id = "logCheckpoint",
    summary = "The latest signed checkpoint",
    description = "A C2SP `tlog-checkpoint` (origin, tree size, base64 root hash) signed as a \
        C2SP `signed-note` with Ed25519. Every checkpoint is kept; keep copies elsewhere \
        (`auditlog verify --url … --checkpoint FILE`) to catch a log rewritten behind your \
        back. 404 until the first is signed.",
    responses(
        (status = 200, description = "The signed note", body = String, content_type = "text/plain"),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    )
)]
pub(crate) async fn checkpoint(
    State(state): State<AuditorState>,
    Authenticated(_): Authenticated,
) -> Result<Response, ApiError> {
    let latest = state
        .store
        .latest_checkpoint()
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no checkpoint has been signed yet"))?;
    Ok(text(latest.note))
}

/// `GET /log/key`.
#[utoipa::path(
    get,
    path = "/log/key",
    tag = "log",
    operation_id = "logKey",
    summary = "The key that signs checkpoints",
    description = "A C2SP note verifier key, `<name>+<hex key hash>+<base64(0x01 || Ed25519 \
        public key)>`; the name is the log's origin. Pin it: a client that trusts whatever \
        key the server sends checks nothing.",
    responses(
        (status = 200, description = "The verifier key", body = String, content_type = "text/plain"),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    )
)]
pub(crate) async fn key(
    State(state): State<AuditorState>,
    Authenticated(_): Authenticated,
) -> Result<Response, ApiError> {
    let key = state
        .log_key
        .clone()
        .ok_or_else(|| ApiError::not_found("this auditor signs no checkpoints"))?;
    Ok(text(format!("{key}\n")))
}

/// `GET /log/tile/{path}`.
#[utoipa::path(
    get,
    path = "/log/tile/{path}",
    tag = "log",
    operation_id = "logTile",
    summary = "A tile of the tree (C2SP tlog-tiles)",
    description = "`<L>/<N>[.p/<W>]`: the hashes (32 bytes each) of the nodes at level 8L \
        numbered 256N onwards; `entries/<N>[.p/<W>]`: the leaves 256N onwards, each after its \
        length as two big-endian bytes. Full tiles never change. Entry bundles only for those \
        who may read every event (and recorded as a read). 404 for a tile not in the tree; \
        410 for an entry bundle some of whose events retention pruned (their hashes stay in \
        the hash tiles).",
    params(("path" = String, Path, description = "The tile's path after `/log/tile/`")),
    responses(
        (status = 200, description = "The tile", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 410, response = auditlog_http::openapi::Gone),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn tile(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    read: ReadRequest,
    PathParams(path): PathParams<String>,
) -> Result<Response, ApiError> {
    let absent = || ApiError::not_found("there is no such tile in the tree");
    let tile = TilePath::parse(&path).ok_or_else(absent)?;
    let body = match tile {
        TilePath::Hashes {
            level,
            index,
            width,
        } => {
            let span = auditlog_tlog::Read {
                level: level * TILE_HEIGHT,
                start: index * TILE_WIDTH,
                end: index * TILE_WIDTH + width,
            };
            let read = state
                .store
                .tree_hashes(&[span])
                .await
                .map_err(ApiError::internal)?;
            let hashes = read.into_iter().next().map(|(_, h)| h).unwrap_or_default();
            if hashes.len() as u64 != width {
                return Err(absent());
            }
            hashes.concat()
        }
        TilePath::Entries { index, width } => {
            if !matches!(principal.event_scope(), EventScope::All) {
                return Err(ApiError::forbidden(
                    "entry bundles hold every event: only those who may read all events get them",
                ));
            }
            let start = index * TILE_WIDTH;
            let leaves = state
                .store
                .leaves(start, start + width)
                .await
                .map_err(ApiError::internal)?;
            let contiguous = leaves
                .iter()
                .enumerate()
                .all(|(n, leaf)| leaf.entry.index == start + n as u64);
            if leaves.len() as u64 != width || !contiguous {
                let pruned = state
                    .store
                    .pruned_leaves(start, start + width)
                    .await
                    .map_err(ApiError::internal)?;
                if !pruned.is_empty() {
                    return Err(ApiError::new(
                        StatusCode::GONE,
                        "Gone",
                        format!(
                            "{} of these entries were pruned by retention: their leaf hashes \
                             stay in the hash tiles, their contents are gone",
                            pruned.len()
                        ),
                    ));
                }
                return Err(absent());
            }
            let bundle = entry_bundle(leaves.iter().map(|leaf| leaf.bytes.as_bytes()));
            record_read(&state, &principal, &format!("tile-entries-{index}"), &read).await?;
            bundle
        }
    };
    let cache = if matches!(tile, TilePath::Hashes { width, .. } | TilePath::Entries { width, .. } if width == TILE_WIDTH)
    {
        "private, max-age=31536000, immutable"
    } else {
        "no-store"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response())
}

/// Reads a tree size parameter; `None` when absent.
fn size_param(params: &QueryParams, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|value| {
            value.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("`{name}` must be a tree size (a whole number)"))
            })
        })
        .transpose()
}

/// The size a proof is asked for: `asked`, or the latest checkpoint's; it must be
/// within the sealed tree.
async fn tree_size(state: &AuditorState, asked: Option<u64>, name: &str) -> Result<u64, ApiError> {
    let size = match asked {
        Some(size) => size,
        None => state
            .store
            .latest_checkpoint()
            .await
            .map_err(ApiError::internal)?
            .map(|c| c.size)
            .ok_or_else(|| ApiError::not_found("no checkpoint has been signed yet"))?,
    };
    let sealed = state.store.tree_size().await.map_err(ApiError::internal)?;
    if size > sealed {
        return Err(ApiError::bad_request(format!(
            "`{name}` {size} is beyond the tree, which has {sealed} leaves"
        )));
    }
    Ok(size)
}

/// `GET /api/data-events/{id}/inclusion?treeSize=N`.
#[utoipa::path(
    get,
    path = "/api/data-events/{id}/inclusion",
    tag = "log",
    operation_id = "eventInclusion",
    summary = "An event's leaf and its inclusion proof",
    description = "The exact leaf bytes (the event's JSON with `seq` and `receivedAt`) and the \
        RFC 9162 §2.1.3 audit path to the root of the tree of `treeSize` leaves (by default the \
        latest checkpoint's). Check it: `SHA-256(0x00 || leaf)`, then the path, against a \
        checkpoint you verified. Same access as the event itself; recorded as a read. 404 when \
        the event is not stored, not visible, or not sealed yet; 400 for a size beyond the tree \
        or one that does not hold the event yet.",
    params(EventIdPath, ("treeSize" = Option<u64>, Query, description = "The tree size to prove against")),
    responses(
        (status = 200, description = "The proof", body = ProofDocument<InclusionAttributes>,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn inclusion(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    read: ReadRequest,
    PathParams(id): PathParams<String>,
    Query(params): Query<QueryParams>,
) -> Result<Response, ApiError> {
    only_known(&params, &["treeSize"])?;
    let asked = size_param(&params, "treeSize")?;
    let (id, _) = visible_event(&state, &principal, &id).await?;
    let leaf = state
        .store
        .leaf_of(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("this event is not sealed yet; try again shortly"))?;
    let size = tree_size(&state, asked, "treeSize").await?;
    let index = leaf.entry.index;
    if index >= size {
        return Err(ApiError::bad_request(format!(
            "the event is leaf {index}, not in the tree of {size} leaves; ask for a later treeSize"
        )));
    }
    let plan = Plan::inclusion(index, size).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let hashes = plan_hashes(&*state.store, &plan)
        .await
        .map_err(ApiError::internal)?;
    record_read(&state, &principal, &id.to_string(), &read).await?;
    Ok(json_api(
        StatusCode::OK,
        &ProofDocument {
            data: ProofResource {
                kind: "inclusion-proofs",
                id: id.to_string(),
                attributes: InclusionAttributes {
                    leaf_index: index,
                    tree_size: size,
                    leaf: base64(leaf.bytes.as_bytes()),
                    hashes: hashes.iter().map(|h| base64(h)).collect(),
                },
            },
        },
    ))
}

/// `GET /api/log/consistency?from=M&to=N`.
#[utoipa::path(
    get,
    path = "/api/log/consistency",
    tag = "log",
    operation_id = "logConsistency",
    summary = "A consistency proof between two tree sizes",
    description = "The RFC 9162 §2.1.4 proof that the tree of `from` leaves is a prefix of the \
        tree of `to` leaves (by default the latest checkpoint's): check it against two \
        checkpoints you verified. 400 for `from` of 0, `from` above `to`, or a size beyond the \
        tree.",
    params(
        ("from" = u64, Query, description = "The older tree size, at least 1"),
        ("to" = Option<u64>, Query, description = "The newer tree size"),
    ),
    responses(
        (status = 200, description = "The proof", body = ProofDocument<ConsistencyAttributes>,
            content_type = "application/vnd.api+json"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
    )
)]
pub(crate) async fn consistency(
    State(state): State<AuditorState>,
    Authenticated(_): Authenticated,
    Query(params): Query<QueryParams>,
) -> Result<Response, ApiError> {
    only_known(&params, &["from", "to"])?;
    let from = size_param(&params, "from")?
        .ok_or_else(|| ApiError::bad_request("`from` (the older tree size) is required"))?;
    let to = tree_size(&state, size_param(&params, "to")?, "to").await?;
    let plan = Plan::consistency(from, to).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let hashes = plan_hashes(&*state.store, &plan)
        .await
        .map_err(ApiError::internal)?;
    Ok(json_api(
        StatusCode::OK,
        &ProofDocument {
            data: ProofResource {
                kind: "consistency-proofs",
                id: format!("{from}-{to}"),
                attributes: ConsistencyAttributes {
                    from,
                    to,
                    hashes: hashes.iter().map(|h| base64(h)).collect(),
                },
            },
        },
    ))
}

/// A proof, as a JSON:API document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProofDocument<A> {
    data: ProofResource<A>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProofResource<A> {
    /// `inclusion-proofs` (id: the event's) or `consistency-proofs` (id: `<from>-<to>`).
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    id: String,
    attributes: A,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InclusionAttributes {
    /// The event's 0-based position in the tree.
    leaf_index: u64,
    tree_size: u64,
    /// Base64 of the exact leaf bytes.
    leaf: String,
    /// The audit path, leaf to root, base64 SHA-256 hashes.
    hashes: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConsistencyAttributes {
    from: u64,
    to: u64,
    /// Base64 SHA-256 hashes, in RFC 9162 order.
    hashes: Vec<String>,
}
