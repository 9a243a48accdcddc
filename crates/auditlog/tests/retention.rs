//! Retention through the real binary: a tenant admin places a legal hold and
//! may not make the log keep less; an operator prunes one tenant with `auditlog
//! prune` and sets another's retention, which the background task applies.
//! Pruned events are gone from every answer, counted in `meta.pruned`, and their
//! entry bundle answers 410; the held one stays until its hold is released;
//! the log's checkpoints stay consistent (a witness that saw the log before
//! pruning agrees after), the remaining events' inclusion proofs verify against
//! the checkpoint signed before the prune and against the latest, and
//! `auditlog verify` passes, reporting the pruned leaves. Every change and
//! prune is itself recorded. A log stream that has not delivered expired events
//! keeps them until it is deleted.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use auditlog_tlog::{Checkpoint, Hash, SignedNote, from_base64, leaf_hash, verify_inclusion};
use common::{Client, Running, binary, data_dir, describe, user_doc};
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;

fn at(base: &str, client: &Client) -> Client {
    let mut moved = Client::new(base);
    moved.token = client.token.clone();
    moved
}

fn cli(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("AUDITLOG_TOKEN")
        .output()
        .unwrap()
}

/// `auditlog prune` of tenant acme's events older than a year; what it printed.
fn prune_acme_older_than_a_year(auditor: &str, token: &str) -> String {
    let pruned = cli(&[
        "prune",
        "--tenant",
        "acme",
        "--before",
        "365d",
        "--auditor-url",
        auditor,
        "--token",
        token,
    ]);
    assert!(pruned.status.success(), "{}", describe(&pruned));
    String::from_utf8_lossy(&pruned.stdout).into_owned()
}

/// `count` events on `invoices/<prefix>-<n>` of `tenant`, dated `timestamp`,
/// delivered by the operator; their ids.
async fn deliver(
    operator: &Client,
    tenant: &str,
    prefix: &str,
    count: usize,
    timestamp: i64,
) -> Vec<String> {
    let mut body = String::new();
    let mut ids = Vec::new();
    for n in 0..count {
        let id = uuid::Uuid::now_v7().to_string();
        let event = json!({
            "id": id, "action": "created", "actorType": "services", "actorId": "billing",
            "targetType": "invoices", "targetId": format!("{prefix}-{n}"),
            "timestamp": timestamp + n as i64, "tenantId": tenant,
        });
        body.push_str(&format!("{event}\n"));
        ids.push(id);
    }
    let answer = operator
        .raw(
            "POST",
            "/api/data-events",
            "application/x-ndjson",
            body.into_bytes(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    ids
}

/// Waits until the event `id` is sealed (its inclusion proof answers).
async fn sealed(operator: &Client, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while operator
        .get(&format!("/api/data-events/{id}/inclusion"))
        .await
        .status
        != 200
    {
        assert!(Instant::now() < deadline, "{id} was never sealed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The latest signed checkpoint once it covers the event `id`.
async fn checkpoint_covering(operator: &Client, id: &str) -> Checkpoint {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let proof = operator
            .get(&format!("/api/data-events/{id}/inclusion"))
            .await;
        let index = proof.body["data"]["attributes"]["leafIndex"].as_u64();
        let note = operator.get("/log/checkpoint").await;
        if let (Some(index), Value::String(note)) = (index, note.body) {
            let checkpoint = Checkpoint::parse(&SignedNote::parse(&note).unwrap().text).unwrap();
            if checkpoint.size > index {
                return checkpoint;
            }
        }
        assert!(Instant::now() < deadline, "no checkpoint covers {id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the inclusion proof the auditor gives now for `id` at the size of
/// `checkpoint` leads to its root.
async fn proved_against(operator: &Client, id: &str, checkpoint: &Checkpoint) -> bool {
    let proof = operator
        .get(&format!(
            "/api/data-events/{id}/inclusion?treeSize={}",
            checkpoint.size
        ))
        .await;
    assert_eq!(proof.status, 200, "{id}: {}", proof.body);
    let attributes = &proof.body["data"]["attributes"];
    let leaf = from_base64(attributes["leaf"].as_str().unwrap()).unwrap();
    let path: Vec<Hash> = attributes["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::try_from(from_base64(h.as_str().unwrap()).unwrap()).unwrap())
        .collect();
    verify_inclusion(
        attributes["leafIndex"].as_u64().unwrap(),
        checkpoint.size,
        &leaf_hash(&leaf),
        &path,
        &checkpoint.root,
    )
}

/// The auditor's own records named `name`.
async fn records(operator: &Client, name: &str) -> Vec<Value> {
    common::all_events(
        operator,
        &format!("/api/data-events?filter[eventName]={name}&page[size]=100"),
    )
    .await
}

/// `auditlog verify` as a witness of the log at `url`, keeping its checkpoint in `file`.
fn witness(url: &str, file: &Path, token: &str) -> Output {
    cli(&[
        "verify",
        "--url",
        url,
        "--checkpoint",
        file.to_str().unwrap(),
        "--token",
        token,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_events_are_pruned_with_their_leaves_kept_unless_held() {
    let (_tmp, dir) = data_dir();
    let running = Running::up_with(&dir, &["--prune-interval", "1s"]);
    let urls = running.urls.clone();
    let operator = Client::new(&urls.api).login(1).await;
    let operator_at_auditor = at(&urls.auditor, &operator);
    let now = auditlog_event::now_ms();
    let old = now - 400 * DAY_MS;

    let expired = deliver(&operator_at_auditor, "acme", "old", 10, old).await;
    let held = deliver(&operator_at_auditor, "acme", "held", 1, old).await;
    let recent = deliver(&operator_at_auditor, "acme", "new", 1, now).await;
    let globex = deliver(&operator_at_auditor, "globex", "old", 5, old).await;
    sealed(&operator_at_auditor, &globex[4]).await;
    let signed_before = checkpoint_covering(&operator_at_auditor, &globex[4]).await;
    let checkpoint_file = dir.join("witness.checkpoint");
    let token = operator.token.clone().unwrap();
    let seen = witness(&urls.auditor, &checkpoint_file, &token);
    assert!(seen.status.success(), "{}", describe(&seen));

    // acme's admin: reads its tenant's retention, holds one invoice, and may
    // not make the log keep less.
    let created = operator
        .post(
            "/api/users",
            user_doc(json!({"name": "Ada Acme", "email": "ada@acme.example",
                "role": "admin", "tenant": "acme"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let admin_id: i64 = created.body["data"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let admin = Client::new(&urls.api).login(admin_id).await;
    let hold = admin
        .post(
            "/api/legal-holds",
            json!({"data": {"type": "legal-holds", "attributes": {
                "targetType": "invoices", "targetId": "held-0", "reason": "case 2026-7",
            }}}),
        )
        .await;
    assert_eq!(hold.status, 201, "{}", hold.body);
    assert_eq!(hold.body["data"]["attributes"]["tenantId"], "acme");
    let hold_id = hold.body["data"]["id"].as_str().unwrap().to_owned();
    let mine = admin.get("/api/retention").await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.body["data"][0]["id"], "acme");
    assert_eq!(mine.body["data"][0]["attributes"]["legalHolds"], 1);
    for refused in [
        admin
            .patch(
                "/api/retention/acme",
                json!({"data": {"type": "retention", "id": "acme", "attributes": {"days": 1}}}),
            )
            .await,
        admin.delete(&format!("/api/legal-holds/{hold_id}")).await,
        at(&urls.auditor, &admin)
            .post(
                "/api/prunes",
                json!({"data": {"type": "prunes", "attributes": {"before": now}}}),
            )
            .await,
    ] {
        assert_eq!(refused.status, 403, "{}", refused.body);
    }

    // The operator prunes acme's events older than a year.
    let said = prune_acme_older_than_a_year(&urls.auditor, &token);
    assert!(said.contains("pruned 10 events"), "{said}");
    assert!(said.contains("1 kept under a legal hold"), "{said}");

    for id in &expired {
        let gone = operator_at_auditor
            .get(&format!("/api/data-events/{id}"))
            .await;
        assert_eq!(gone.status, 404, "{id}: {}", gone.body);
    }
    let listed = operator_at_auditor
        .get("/api/data-events?filter[tenantId]=acme&filter[actorType]=services&filter[actorId]=billing&count=true")
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["meta"]["total"], 2, "{}", listed.body);
    assert_eq!(listed.body["meta"]["pruned"]["events"], 10);
    assert_eq!(listed.body["meta"]["pruned"]["newest"], old + 9);
    // The held and the recent event are still there, and their proofs lead to
    // the root of the checkpoint signed before the prune, and to the latest.
    for id in [&held[0], &recent[0]] {
        assert!(
            proved_against(&operator_at_auditor, id, &signed_before).await,
            "{id} against the checkpoint signed before the prune"
        );
    }
    for id in [&held[0], &recent[0]] {
        let proved = cli(&[
            "prove",
            id,
            "--api-url",
            &urls.api,
            "--as-user",
            "1",
            "--json",
        ]);
        assert!(proved.status.success(), "{id}: {}", describe(&proved));
    }
    // The entries of the first tile are not all there any more; their hashes are.
    let checkpoint = operator_at_auditor.get("/log/checkpoint").await;
    let size: u64 = checkpoint
        .body
        .as_str()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let width = size.min(256);
    let entries = operator_at_auditor
        .get(&format!("/log/tile/entries/000.p/{width}"))
        .await;
    assert_eq!(entries.status, 410, "{}", entries.body);
    let hashes = operator_at_auditor
        .get(&format!("/log/tile/0/000.p/{width}"))
        .await;
    assert_eq!(hashes.status, 200);
    // A witness that saw the log before pruning finds it consistent after.
    let after = witness(&urls.auditor, &checkpoint_file, &token);
    assert!(after.status.success(), "{}", describe(&after));

    // globex's retention of 30 days: the background task prunes its old events.
    let set = operator
        .patch(
            "/api/retention/globex",
            json!({"data": {"type": "retention", "id": "globex", "attributes": {"days": 30}}}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["data"]["attributes"]["effectiveDays"], 30);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let retention = operator.get("/api/retention?filter[tenantId]=globex").await;
        if retention.body["data"][0]["attributes"]["prunedEvents"] == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the background task did not prune: {}",
            retention.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &globex {
        let gone = operator_at_auditor
            .get(&format!("/api/data-events/{id}"))
            .await;
        assert_eq!(gone.status, 404);
    }

    // Released, the held event goes with the next prune.
    let released = operator
        .delete(&format!("/api/legal-holds/{hold_id}"))
        .await;
    assert_eq!(released.status, 204, "{}", released.body);
    let again = operator_at_auditor
        .post(
            "/api/prunes",
            json!({"data": {"type": "prunes", "attributes": {
                "before": now - 365 * DAY_MS, "tenantId": "acme"}}}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["data"]["attributes"]["pruned"], 1);
    assert_eq!(again.body["data"]["attributes"]["done"], true);
    let gone = operator_at_auditor
        .get(&format!("/api/data-events/{}", held[0]))
        .await;
    assert_eq!(gone.status, 404);

    // Every change and prune is recorded, by whom and in which tenant.
    let placed = records(&operator_at_auditor, "audit.hold_placed").await;
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_eq!(placed[0]["attributes"]["actorId"], admin_id);
    assert_eq!(placed[0]["attributes"]["tenantId"], "acme");
    assert_eq!(
        records(&operator_at_auditor, "audit.hold_released")
            .await
            .len(),
        1
    );
    let changed = records(&operator_at_auditor, "audit.retention_changed").await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["attributes"]["tenantId"], "globex");
    let prunes = records(&operator_at_auditor, "audit.pruned").await;
    assert!(
        prunes
            .iter()
            .any(|e| e["attributes"]["actorId"] == "auditor"
                && e["attributes"]["meta"]["pruned"] == 5),
        "the background task's prune is recorded: {prunes:?}"
    );
    assert!(
        prunes
            .iter()
            .any(|e| e["attributes"]["actorId"] == 1 && e["attributes"]["tenantId"] == "acme"),
        "the operator's prune is recorded: {prunes:?}"
    );

    // The whole log still verifies, the pruned leaves reported as such.
    running.terminate();
    let verified = cli(&["verify", "--data-dir", dir.to_str().unwrap()]);
    assert!(verified.status.success(), "{}", describe(&verified));
    let report = String::from_utf8_lossy(&verified.stdout);
    assert!(report.contains("16 pruned by retention"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_has_not_delivered_keeps_expired_events_until_it_is_deleted() {
    let (_tmp, dir) = data_dir();
    let running = Running::up(&dir);
    let urls = running.urls.clone();
    let operator = Client::new(&urls.api).login(1).await;
    let operator_at_auditor = at(&urls.auditor, &operator);
    let now = auditlog_event::now_ms();
    let expired = deliver(&operator_at_auditor, "acme", "old", 4, now - 400 * DAY_MS).await;
    sealed(&operator_at_auditor, &expired[3]).await;
    // A SIEM stream, paused (its receiver down for maintenance, say): it has
    // delivered nothing yet.
    let sink = operator_at_auditor
        .post(
            "/api/sinks",
            json!({"data": {"type": "sinks", "id": "siem", "attributes": {
                "kind": "webhook", "url": "http://127.0.0.1:9/hook", "paused": true}}}),
        )
        .await;
    assert_eq!(sink.status, 201, "{}", sink.body);
    let prune = json!({"data": {"type": "prunes", "attributes": {
        "before": now - 365 * DAY_MS, "tenantId": "acme"}}});

    let kept = operator_at_auditor.post("/api/prunes", prune.clone()).await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    let attributes = &kept.body["data"]["attributes"];
    assert_eq!(
        (&attributes["pruned"], &attributes["undelivered"]),
        (&json!(0), &json!(4))
    );
    let token = operator.token.clone().unwrap();
    let said = prune_acme_older_than_a_year(&urls.auditor, &token);
    assert!(said.contains("pruned 0 events"), "{said}");
    assert!(
        said.contains("4 expired events were NOT pruned because a sink"),
        "{said}"
    );
    for id in &expired {
        let stored = operator_at_auditor
            .get(&format!("/api/data-events/{id}"))
            .await;
        assert_eq!(stored.status, 200, "{}", stored.body);
    }

    // Deleted, the sink holds nothing back.
    let deleted = operator_at_auditor.delete("/api/sinks/siem").await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let pruned = operator_at_auditor.post("/api/prunes", prune).await;
    assert_eq!(pruned.status, 200, "{}", pruned.body);
    let attributes = &pruned.body["data"]["attributes"];
    assert_eq!(
        (&attributes["pruned"], &attributes["undelivered"]),
        (&json!(4), &json!(0))
    );
    let recorded = records(&operator_at_auditor, "audit.pruned").await;
    assert!(
        recorded
            .iter()
            .any(|r| r["attributes"]["meta"]["undelivered"] == 4),
        "the prune that kept them says so in its record: {recorded:?}"
    );
}
