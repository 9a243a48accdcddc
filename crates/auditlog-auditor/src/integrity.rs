//! Tamper evidence on the auditor's side: the sealer, which extends the store's
//! integrity chain after commit and signs its head, and the routes that serve the
//! signed head (`GET /api/integrity/head`) and one event's place in the chain
//! (`GET /api/data-events/{id}/proof`). Both routes span the whole log, so only
//! admins may read them.
//!
//! Sealing follows the store's `seq`, not this process's arrivals, so several
//! auditors sharing one store each run a sealer and still produce one chain (the
//! store makes sealers take turns). The head is signed with the data directory's
//! Ed25519 key, the one that signs tokens: whoever can edit the database but not
//! read that key can rewrite rows and even recompute the chain, but cannot sign the
//! result.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use auditlog_auth::KeyPair;
use auditlog_http::{ApiError, Authenticated, PathParams, json_api};
use auditlog_store::{AuditStore, ChainHead, SignedHead, StoreError, head_message, to_hex};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AuditorState;
use crate::openapi::EventIdPath;
use auditlog_http::openapi::{Forbidden, NotFound, Unauthorized};

/// Events sealed per store transaction.
const SEAL_BATCH: u32 = 10_000;

/// Events sealed in the integrity chain (its head's size), as this auditor's
/// sealer last saw it.
pub const CHAIN_EVENTS: &str = "auditlog_integrity_chain_events";
/// Sealing rounds that failed (each is retried at the next tick).
pub const SEAL_FAILURES: &str = "auditlog_integrity_seal_failures_total";

/// Gives the sealer's metrics their `# HELP` text and unit.
pub(crate) fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_gauge!(
        CHAIN_EVENTS,
        Unit::Count,
        "Events sealed in the integrity chain (its signed head's size)"
    );
    describe_counter!(
        SEAL_FAILURES,
        Unit::Count,
        "Sealing rounds that failed (each is retried at the next tick)"
    );
}

/// How often the auditor's services seal newly stored events into the hash chain:
/// a new event is sealed within a fraction of a second.
pub const SEAL_EVERY: Duration = Duration::from_millis(200);

/// Transactions per tick at most, so that catching up on a large unsealed store
/// still signs a head (and notices shutdown) now and then.
const BATCHES_PER_TICK: u32 = 20;

/// Seals what the store committed every `interval` and signs each new head with
/// `keys`, until `shutdown` completes (then seals once more and returns). A failure
/// is logged and retried at the next tick: sealing late loses nothing, since the
/// chain follows `seq`.
///
/// Spawn it next to the consume loop:
/// `tokio::spawn(auditlog_auditor::integrity::run_sealer(store.clone(), keys, Duration::from_millis(200), shutdown))`.
pub async fn run_sealer(
    store: Arc<dyn AuditStore>,
    keys: KeyPair,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut signed = None;
    loop {
        let stopping = tokio::select! {
            () = &mut shutdown => true,
            _ = ticker.tick() => false,
        };
        match seal_and_sign(&*store, &keys, &mut signed).await {
            Ok(head) => metrics::gauge!(CHAIN_EVENTS).set(head.size as f64),
            Err(err) => {
                metrics::counter!(SEAL_FAILURES).increment(1);
                tracing::warn!(%err, "sealing the integrity chain failed; retrying");
            }
        }
        if stopping {
            return;
        }
    }
}

/// One round: seal what is there (up to `BATCHES_PER_TICK` transactions), then
/// sign the head unless it is the one signed last. `signed` remembers that head's
/// `seq` between rounds.
pub async fn seal_and_sign(
    store: &dyn AuditStore,
    keys: &KeyPair,
    signed: &mut Option<i64>,
) -> Result<ChainHead, SealError> {
    let mut head = store.chain_head().await?;
    // Nothing new: spare the store the sealing transaction and its lock.
    let idle = store.last_seq().await? <= head.seq;
    for _ in 0..if idle { 0 } else { BATCHES_PER_TICK } {
        let outcome = store.seal(SEAL_BATCH).await?;
        head = outcome.head;
        if outcome.sealed < u64::from(SEAL_BATCH) {
            break;
        }
    }
    if *signed == Some(head.seq) {
        return Ok(head);
    }
    if signed.is_none()
        && let Some(latest) = store.latest_head().await?
        && latest.head == head
        && latest.key_id == keys.key_id()
    {
        *signed = Some(head.seq);
        return Ok(head);
    }
    store
        .save_head(&sign(keys, head, auditlog_event::now_ms())?)
        .await?;
    *signed = Some(head.seq);
    Ok(head)
}

/// `head` signed at `signed_at` with `keys`.
pub fn sign(keys: &KeyPair, head: ChainHead, signed_at: i64) -> Result<SignedHead, SealError> {
    let message = head_message(&head, signed_at);
    Ok(SignedHead {
        head,
        signed_at,
        key_id: keys.key_id().to_owned(),
        public_key: keys.public_key_hex().map_err(SealError::Key)?,
        signature: keys
            .sign(message.as_bytes())
            .map_err(SealError::Key)?
            .to_vec(),
    })
}

/// Why a sealing round failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot sign the chain head: {0}")]
    Key(auditlog_auth::AuthError),
}

/// `GET /api/integrity/head`: the newest signed chain head.
#[utoipa::path(
    get,
    path = "/api/integrity/head",
    tag = "integrity",
    operation_id = "integrityHead",
    summary = "The newest signed head of the hash chain",
    description = "Keep copies of the heads elsewhere: `auditlog verify` checks a store \
        against its chain and head. Admins only.",
    responses(
        (status = 200, description = "The signed head", body = Document<HeadAttributes>,
            content_type = "application/vnd.api+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub(crate) async fn head(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    if !principal.is_admin() {
        return Err(ApiError::forbidden(
            "only admins may read the integrity chain's head",
        ));
    }
    let signed = state
        .store
        .latest_head()
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no head has been signed yet"))?;
    Ok(json_api(
        StatusCode::OK,
        &Document {
            data: Resource {
                kind: "integrity-heads",
                id: signed.head.seq.to_string(),
                attributes: HeadAttributes::of(&signed),
            },
        },
    ))
}

/// `GET /api/data-events/{id}/proof`: where an event sits in the chain, with the
/// hashes a client needs to recompute its step, and the signed head that covers it.
#[utoipa::path(
    get,
    path = "/api/data-events/{id}/proof",
    tag = "integrity",
    operation_id = "eventProof",
    summary = "One event's place in the hash chain, and the signed head covering it",
    description = "404 when the event is not stored or not sealed yet. Admins only.",
    params(EventIdPath),
    responses(
        (status = 200, description = "The proof", body = Document<ProofAttributes>,
            content_type = "application/vnd.api+json"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub(crate) async fn proof(
    State(state): State<AuditorState>,
    Authenticated(principal): Authenticated,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    if !principal.is_admin() {
        return Err(ApiError::forbidden("only admins may read integrity proofs"));
    }
    let absent = || ApiError::not_found("there is no such event");
    let id = uuid::Uuid::try_parse(&id).map_err(|_| absent())?;
    let event = state
        .store
        .get(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(absent)?;
    let unsealed = || ApiError::not_found("this event is not sealed yet; try again shortly");
    let link = state
        .store
        .chain_link(event.seq)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(unsealed)?;
    let head = state
        .store
        .latest_head()
        .await
        .map_err(ApiError::internal)?
        .filter(|head| head.head.seq >= event.seq)
        .ok_or_else(unsealed)?;
    Ok(json_api(
        StatusCode::OK,
        &Document {
            data: Resource {
                kind: "integrity-proofs",
                id: id.to_string(),
                attributes: ProofAttributes {
                    event_id: id.to_string(),
                    seq: event.seq,
                    position: link.entry.position,
                    timestamp: event.timestamp,
                    leaf_hash: to_hex(&link.entry.leaf_hash),
                    prev_chain_hash: to_hex(&link.prev_chain_hash),
                    chain_hash: to_hex(&link.entry.chain_hash),
                    leaf: LEAF_RULE,
                    chain: CHAIN_RULE,
                    head: HeadAttributes::of(&head),
                },
            },
        },
    ))
}

/// How a client recomputes the hashes of a proof.
const LEAF_RULE: &str =
    "SHA-256(0x00 || id (16 bytes) || seq (int64 BE) || timestamp (int64 BE) || body (UTF-8))";
const CHAIN_RULE: &str = "SHA-256(0x01 || prevChainHash || leafHash)";

/// A signed head or a proof.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = IntegrityDocument)]
struct Document<A> {
    data: Resource<A>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = IntegrityResource)]
struct Resource<A> {
    /// `integrity-heads` (id: the head's seq) or `integrity-proofs` (id: the event's).
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    id: String,
    attributes: A,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct HeadAttributes {
    seq: i64,
    /// Events in the chain up to `seq`.
    size: i64,
    chain_hash: String,
    signed_at: i64,
    /// Hex Ed25519 signature of `auditlog-head:v1:<seq>:<size>:<chainHash>:<signedAt>`.
    signature: String,
    key_id: String,
    /// Hex raw Ed25519 public key.
    public_key: String,
    /// The exact text signed.
    signed_text: String,
}

impl HeadAttributes {
    fn of(signed: &SignedHead) -> Self {
        HeadAttributes {
            seq: signed.head.seq,
            size: signed.head.size,
            chain_hash: to_hex(&signed.head.chain_hash),
            signed_at: signed.signed_at,
            signature: to_hex(&signed.signature),
            key_id: signed.key_id.clone(),
            public_key: signed.public_key.clone(),
            signed_text: head_message(&signed.head, signed.signed_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ProofAttributes {
    event_id: String,
    seq: i64,
    position: i64,
    timestamp: i64,
    leaf_hash: String,
    prev_chain_hash: String,
    chain_hash: String,
    /// How `leafHash` is computed from the stored event.
    leaf: &'static str,
    /// How `chainHash` follows from `prevChainHash` and `leafHash`.
    chain: &'static str,
    head: HeadAttributes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_head_verifies_with_its_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyPair::load_or_generate(dir.path()).unwrap();
        let head = ChainHead {
            seq: 9,
            size: 8,
            chain_hash: [3; 32],
        };

        let signed = sign(&keys, head, 1234).unwrap();

        let public = auditlog_store::from_hex(&signed.public_key).unwrap();
        let message = head_message(&head, 1234);
        assert!(auditlog_auth::keys::verify_signature(
            &public,
            message.as_bytes(),
            &signed.signature
        ));
        assert_eq!(signed.key_id, keys.key_id());
    }

    /// The auditor's router on a free port over a fresh SQLite store, with the
    /// sealer running every 20 ms; and a way to mint tokens.
    async fn serve() -> (
        String,
        Arc<dyn AuditStore>,
        auditlog_auth::TokenIssuer,
        tokio::sync::oneshot::Sender<()>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyPair::load_or_generate(dir.path()).unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = auditlog_store::open(&url).await.unwrap();
        let state = AuditorState::new(
            store.clone(),
            auditlog_auth::TokenVerifier::new(&keys).unwrap(),
            tokio::sync::watch::channel(false).1,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, crate::router(state)).await.unwrap();
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(run_sealer(
            store.clone(),
            keys.clone(),
            Duration::from_millis(20),
            async move {
                let _ = stopped.await;
            },
        ));
        let issuer = auditlog_auth::TokenIssuer::new(&keys).unwrap();
        (base, store, issuer, stop, dir)
    }

    fn token(issuer: &auditlog_auth::TokenIssuer, role: auditlog_auth::Role) -> String {
        issuer
            .issue(&auditlog_auth::Principal::new("1".into(), role).unwrap())
            .unwrap()
    }

    fn hash(text: &serde_json::Value) -> auditlog_store::Hash {
        auditlog_store::from_hex(text.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    }

    #[tokio::test]
    async fn the_sealer_signs_a_head_and_each_event_gets_a_proof_admins_only() {
        let (base, store, issuer, stop, _dir) = serve().await;
        let users = auditlog_event::ObjectType::parse("actorType", "users").unwrap();
        let events: Vec<_> = (0..3)
            .map(|n| {
                auditlog_event::DataEvent::new(
                    auditlog_event::Action::Viewed,
                    auditlog_event::ObjectRef::new(users.clone(), n),
                    auditlog_event::ObjectRef::new(users.clone(), 1),
                    1_000 + n,
                )
            })
            .collect();
        store.insert_batch(&events).await.unwrap();
        let client = reqwest::Client::new();
        let admin = token(&issuer, auditlog_auth::Role::Admin);
        let get = |path: String, token: Option<String>| {
            let mut request = client.get(format!("{base}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        // Wait for the sealer to cover all three.
        let mut head = serde_json::Value::Null;
        for _ in 0..200 {
            let response = get("/api/integrity/head".into(), Some(admin.clone()))
                .await
                .unwrap();
            if response.status() == StatusCode::OK {
                head = response.json().await.unwrap();
                if head["data"]["attributes"]["size"] == 3 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let attributes = &head["data"]["attributes"];
        assert_eq!(head["data"]["type"], "integrity-heads");
        assert_eq!(attributes["size"], 3);
        let public = auditlog_store::from_hex(attributes["publicKey"].as_str().unwrap()).unwrap();
        let signature =
            auditlog_store::from_hex(attributes["signature"].as_str().unwrap()).unwrap();
        let signed_text = format!(
            "auditlog-head:v1:{}:3:{}:{}",
            attributes["seq"],
            attributes["chainHash"].as_str().unwrap(),
            attributes["signedAt"]
        );
        assert_eq!(attributes["signedText"], signed_text);
        assert!(auditlog_auth::keys::verify_signature(
            &public,
            signed_text.as_bytes(),
            &signature
        ));

        let stored = store.get(events[1].id).await.unwrap().unwrap();
        let response = get(
            format!("/api/data-events/{}/proof", events[1].id),
            Some(admin.clone()),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let proof: serde_json::Value = response.json().await.unwrap();
        let proof = &proof["data"]["attributes"];
        let leaf = auditlog_store::leaf_hash(stored.id, stored.seq, stored.timestamp, &stored.body);
        assert_eq!(hash(&proof["leafHash"]), leaf);
        assert_eq!(
            hash(&proof["chainHash"]),
            auditlog_store::chain_hash(&hash(&proof["prevChainHash"]), &leaf)
        );
        assert_eq!(proof["position"], 2);
        assert_eq!(proof["head"]["chainHash"], attributes["chainHash"]);

        let member = token(&issuer, auditlog_auth::Role::User);
        for path in [
            "/api/integrity/head".to_owned(),
            format!("/api/data-events/{}/proof", events[1].id),
        ] {
            let status = get(path.clone(), Some(member.clone()))
                .await
                .unwrap()
                .status();
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
            let status = get(path.clone(), None).await.unwrap().status();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        }
        let unknown = format!("/api/data-events/{}/proof", uuid::Uuid::now_v7());
        let status = get(unknown, Some(admin)).await.unwrap().status();
        assert_eq!(status, StatusCode::NOT_FOUND);
        let _ = stop.send(());
    }
}
