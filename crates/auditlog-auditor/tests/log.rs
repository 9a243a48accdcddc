//! The verifiable log over HTTP: an auditor with its sealer on a fresh SQLite
//! store, checked as an outside client would with `auditlog-tlog`'s verifiers:
//! signed checkpoints and the key, inclusion and consistency proofs, tiles and
//! entry bundles, and who may read each.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use auditlog_auditor::AuditorState;
use auditlog_auditor::log::{LogIdentity, Sealer, SealerStatus, run_sealer};
use auditlog_auth::Role;
use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
use auditlog_store::AuditStore;
use auditlog_tlog::{
    Checkpoint, Hash, SignedNote, TilePath, Verifier, from_base64, leaf_hash, parse_entry_bundle,
    verify_consistency, verify_inclusion,
};
use reqwest::StatusCode;
use serde_json::Value;

struct Log {
    base: String,
    client: reqwest::Client,
    store: Arc<dyn AuditStore>,
    issuer: auditlog_auth::TokenIssuer,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Log {
    async fn spawn() -> Log {
        let dir = tempfile::tempdir().unwrap();
        let keys = auditlog_auth::KeyPair::load_or_generate(dir.path()).unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = auditlog_store::open(&url).await.unwrap();
        let identity = LogIdentity::open(dir.path(), Some("example.com/audit"), None).unwrap();
        let state = AuditorState::new(
            store.clone(),
            auditlog_auth::TokenVerifier::new(&keys).unwrap(),
            tokio::sync::watch::channel(false).1,
        )
        .with_log_key(identity.verifier().to_string());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(run_sealer(
            Sealer::new(store.clone(), identity, SealerStatus::default()),
            Duration::from_millis(20),
            async move {
                let _ = stopped.await;
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, auditlog_auditor::router(state))
                .await
                .unwrap();
        });
        Log {
            base,
            client: reqwest::Client::new(),
            store,
            issuer: auditlog_auth::TokenIssuer::new(&keys).unwrap(),
            _stop: stop,
            _dir: dir,
        }
    }

    fn token(&self, subject: &str, role: Role) -> String {
        self.issuer
            .issue(&auditlog_auth::Principal::new(subject.into(), role).unwrap())
            .unwrap()
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn text(&self, path: &str, token: &str) -> String {
        let response = self.get(path, token).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.text().await.unwrap()
    }

    async fn json(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self.get(path, token).await;
        (response.status(), response.json().await.unwrap())
    }

    /// The latest checkpoint once it covers `size` leaves, checked with the key.
    async fn checkpoint_of(&self, size: u64, key: &Verifier, token: &str) -> Checkpoint {
        for _ in 0..500 {
            let response = self.get("/log/checkpoint", token).await;
            if response.status() == StatusCode::OK {
                let note = SignedNote::parse(&response.text().await.unwrap()).unwrap();
                assert!(note.verified_by(key));
                let checkpoint = Checkpoint::parse(&note.text).unwrap();
                if checkpoint.size >= size {
                    return checkpoint;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no checkpoint of size {size}");
    }
}

fn event(actor: i64, target: i64) -> DataEvent {
    let users = ObjectType::parse("actorType", "users").unwrap();
    DataEvent::new(
        Action::Viewed,
        ObjectRef::new(users.clone(), actor),
        ObjectRef::new(users, target),
        1_000 + target,
    )
}

fn hashes(value: &Value) -> Vec<Hash> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            from_base64(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn checkpoints_proofs_and_tiles_verify_for_an_outside_client() {
    let log = Log::spawn().await;
    let admin = log.token("1", Role::Operator);
    let key = Verifier::parse(&log.text("/log/key", &admin).await).unwrap();
    assert_eq!(key.name, "example.com/audit");

    let first: Vec<_> = (0..300).map(|n| event(n % 3 + 1, n)).collect();
    log.store.insert_batch(&first).await.unwrap();
    let old = log.checkpoint_of(300, &key, &admin).await;
    assert_eq!(old.size, 300);
    let second: Vec<_> = (300..520).map(|n| event(n % 3 + 1, n)).collect();
    log.store.insert_batch(&second).await.unwrap();
    let new = log.checkpoint_of(520, &key, &admin).await;

    // Inclusion, against the latest and an older checkpoint.
    for (n, sent) in first.iter().enumerate().step_by(37) {
        for checkpoint in [&old, &new] {
            let path = format!(
                "/api/data-events/{}/inclusion?treeSize={}",
                sent.id, checkpoint.size
            );
            let (status, proof) = log.json(&path, &admin).await;
            assert_eq!(status, StatusCode::OK, "{proof}");
            assert_eq!(proof["data"]["type"], "inclusion-proofs");
            let attributes = &proof["data"]["attributes"];
            let leaf = from_base64(attributes["leaf"].as_str().unwrap()).unwrap();
            let leaf_json: Value = serde_json::from_slice(&leaf).unwrap();
            assert_eq!(leaf_json["id"], sent.id.to_string());
            assert_eq!(leaf_json["seq"], n as u64 + 1);
            assert!(leaf_json["receivedAt"].is_i64());
            let index = attributes["leafIndex"].as_u64().unwrap();
            assert_eq!(index, n as u64);
            let path_hashes = hashes(&attributes["hashes"]);
            assert!(verify_inclusion(
                index,
                checkpoint.size,
                &leaf_hash(&leaf),
                &path_hashes,
                &checkpoint.root
            ));
        }
    }
    // The latest checkpoint's size by default (the reads above are events too).
    let (_, proof) = log
        .json(
            &format!("/api/data-events/{}/inclusion", second[0].id),
            &admin,
        )
        .await;
    assert!(proof["data"]["attributes"]["treeSize"].as_u64().unwrap() >= 520);

    // Consistency between the two checkpoints.
    let (status, proof) = log
        .json("/api/log/consistency?from=300&to=520", &admin)
        .await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    let consistency = hashes(&proof["data"]["attributes"]["hashes"]);
    assert!(verify_consistency(
        300,
        520,
        &old.root,
        &new.root,
        &consistency
    ));

    // Tiles: the level-0 tiles are the leaf hashes of the entry bundles' leaves;
    // the level-1 tile holds the hash of each full 256-leaf tile.
    let mut leaf_hashes = Vec::new();
    for tile in [
        TilePath::Entries {
            index: 0,
            width: 256,
        },
        TilePath::Entries {
            index: 1,
            width: 256,
        },
        TilePath::Entries { index: 2, width: 8 },
    ] {
        let response = log
            .get(&format!("/log/tile/{}", tile.to_path()), &admin)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{}", tile.to_path());
        let bundle = response.bytes().await.unwrap();
        let leaves = parse_entry_bundle(&bundle).unwrap();
        leaf_hashes.extend(leaves.iter().map(|leaf| leaf_hash(leaf)));
    }
    assert_eq!(leaf_hashes.len(), 520);
    let tile = log.get("/log/tile/0/002.p/8", &admin).await;
    assert_eq!(tile.status(), StatusCode::OK);
    assert_eq!(
        tile.bytes().await.unwrap().to_vec(),
        leaf_hashes[512..].concat()
    );
    let full = log.get("/log/tile/0/001", &admin).await;
    assert_eq!(
        full.headers()["cache-control"],
        "private, max-age=31536000, immutable"
    );
    let upper = log.get("/log/tile/1/000.p/2", &admin).await;
    assert_eq!(upper.status(), StatusCode::OK);
    let upper = upper.bytes().await.unwrap();
    assert_eq!(
        &upper[..32],
        auditlog_tlog::tree::subtree_hash(&leaf_hashes[..256]).as_slice()
    );
    for missing in [
        "/log/tile/0/003",
        "/log/tile/0/002",
        "/log/tile/1/000",
        "/log/tile/9/000",
    ] {
        assert_eq!(
            log.get(missing, &admin).await.status(),
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
}

#[tokio::test]
async fn proofs_answer_json_api_errors_and_follow_the_event_policy() {
    let log = Log::spawn().await;
    let admin = log.token("1", Role::Operator);
    let member = log.token("2", Role::User);
    let service = log.token("ingest", Role::Service);
    let key = Verifier::parse(&log.text("/log/key", &admin).await).unwrap();
    let mine = event(2, 9);
    let theirs = event(3, 4);
    log.store
        .insert_batch(&[mine.clone(), theirs.clone()])
        .await
        .unwrap();
    log.checkpoint_of(2, &key, &admin).await;

    let cases = [
        (
            // Beyond the tree, however many of this test's own reads (each one
            // an event) have been sealed meanwhile.
            format!("/api/data-events/{}/inclusion?treeSize=1000000", mine.id),
            &admin,
            400,
        ),
        (
            format!("/api/data-events/{}/inclusion?treeSize=1", theirs.id),
            &admin,
            400,
        ),
        (
            format!("/api/data-events/{}/inclusion?treeSize=x", mine.id),
            &admin,
            400,
        ),
        (
            format!("/api/data-events/{}/inclusion?size=1", mine.id),
            &admin,
            400,
        ),
        (
            format!("/api/data-events/{}/inclusion", uuid::Uuid::now_v7()),
            &admin,
            404,
        ),
        (
            format!("/api/data-events/{}/inclusion", theirs.id),
            &member,
            404,
        ),
        (
            format!("/api/data-events/{}/inclusion", mine.id),
            &member,
            200,
        ),
        (
            format!("/api/data-events/{}/inclusion", mine.id),
            &service,
            403,
        ),
        ("/api/log/consistency?from=0&to=2".into(), &member, 400),
        ("/api/log/consistency?from=2&to=1".into(), &member, 400),
        (
            "/api/log/consistency?from=1&to=1000000".into(),
            &member,
            400,
        ),
        ("/api/log/consistency?to=2".into(), &member, 400),
        ("/api/log/consistency?from=1".into(), &member, 200),
    ];
    for (path, token, want) in cases {
        let (status, body) = log.json(&path, token).await;
        assert_eq!(status.as_u16(), want, "{path}: {body}");
        if want != 200 {
            assert!(body["errors"][0]["detail"].is_string(), "{path}: {body}");
        }
    }
    // Hashes and checkpoints for anyone signed in; the leaves themselves only for
    // those who read everything.
    assert_eq!(
        log.get("/log/checkpoint", &service).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        log.get("/log/tile/0/000.p/2", &member).await.status(),
        StatusCode::OK
    );
    let bundle = log.get("/log/tile/entries/000.p/2", &member).await;
    assert_eq!(bundle.status(), StatusCode::FORBIDDEN);
    let anonymous = log
        .client
        .get(format!("{}/log/checkpoint", log.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Each inclusion proof served and each bundle is recorded as a read.
    let reads = log
        .store
        .count(&auditlog_store::EventQuery::default())
        .await
        .unwrap();
    assert!(reads > 2, "the reads were recorded: {reads} events");
}

/// Writes the hash chain an earlier release would have written over every row of
/// the SQLite store at `path`, and its head signed with `keys` (the token key).
async fn write_legacy_chain(path: &std::path::Path, keys: &auditlog_auth::KeyPair) {
    use auditlog_store::legacy::{ChainHead, ZERO_HASH, chain_hash, head_message, leaf_hash};
    use sqlx::{Connection, Row};
    let url = format!("sqlite://{}", path.display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let rows = sqlx::query("SELECT seq, id, timestamp, body FROM audit_events ORDER BY seq")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let mut head = ChainHead::default();
    for (n, row) in rows.iter().enumerate() {
        let (seq, id, timestamp, body): (i64, Vec<u8>, i64, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let leaf = leaf_hash(uuid::Uuid::from_slice(&id).unwrap(), seq, timestamp, &body);
        let chain = chain_hash(if n == 0 { &ZERO_HASH } else { &head.chain_hash }, &leaf);
        head = ChainHead {
            seq,
            size: n as i64 + 1,
            chain_hash: chain,
        };
        sqlx::query(
            "INSERT INTO audit_chain (seq, position, id, leaf_hash, chain_hash) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(seq)
        .bind(head.size)
        .bind(id)
        .bind(leaf.to_vec())
        .bind(chain.to_vec())
        .execute(&mut db)
        .await
        .unwrap();
    }
    let signed_at = 1_700_000_000_000;
    let signature = keys
        .sign(head_message(&head, signed_at).as_bytes())
        .unwrap();
    sqlx::query(
        "INSERT INTO audit_heads (seq, size, chain_hash, signed_at, key_id, public_key, signature) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(head.seq)
    .bind(head.size)
    .bind(head.chain_hash.to_vec())
    .bind(signed_at)
    .bind(keys.key_id())
    .bind(keys.public_key_hex().unwrap())
    .bind(signature.to_vec())
    .execute(&mut db)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_store_of_the_old_chain_is_checked_then_sealed_into_the_tree() {
    for tampered in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let keys = auditlog_auth::KeyPair::load_or_generate(dir.path()).unwrap();
        let file = dir.path().join("audit.db");
        let store = auditlog_store::open(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        let events: Vec<_> = (0..5).map(|n| event(1, n)).collect();
        store.insert_batch(&events).await.unwrap();
        write_legacy_chain(&file, &keys).await;
        if tampered {
            let url = format!("sqlite://{}", file.display());
            let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::query("UPDATE audit_events SET body = REPLACE(body, '\"viewed\"', '\"deleted\"') WHERE seq = 3")
                .execute(&mut db)
                .await
                .unwrap();
        }
        let identity = LogIdentity::open(dir.path(), None, None).unwrap();
        let status = SealerStatus::default();
        let mut sealer = Sealer::new(store.clone(), identity, status.clone());

        let outcome = sealer.round().await;

        if tampered {
            let reason = status.halted().unwrap();
            assert!(outcome.is_err());
            assert!(reason.contains("seq 3) was altered"), "{reason}");
            assert_eq!(store.tree_size().await.unwrap(), 0);
            assert!(store.migration().await.unwrap().is_none());
            assert!(store.latest_checkpoint().await.unwrap().is_none());
        } else {
            assert_eq!(outcome.unwrap(), 5);
            let migration = store.migration().await.unwrap().unwrap();
            assert_eq!((migration.chain_size, migration.chain_seq), (5, 5));
            assert_eq!(migration.outcome, "ok");
            assert!(
                migration
                    .signed_head
                    .unwrap()
                    .starts_with("auditlog-head:v1:5:5:")
            );
            assert_eq!(store.latest_checkpoint().await.unwrap().unwrap().size, 5);
        }
    }
}
