//! An attacker with write access to the database but not to the data directory's
//! key, against a running `auditlog up`: the log rewritten with its whole tree and
//! stored checkpoints recomputed (everything but the signatures), or its end cut off
//! consistently. The sealer must not sign over either (`/readyz` says so), `auditlog
//! verify --data-dir` must name the rewritten event, and a witness holding an
//! earlier checkpoint (`auditlog verify --url … --checkpoint`) must catch both.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::str::FromStr;
use std::time::Duration;

use auditlog_tlog::{Checkpoint, Frontier, SignedNote, leaf_bytes, leaf_hash};
use common::{Client, Running, binary, data_dir};
use sqlx::{Connection, Row, SqliteConnection};

/// The latest checkpoint's size, as the primary API serves it.
async fn checkpoint_size(admin: &Client) -> u64 {
    let answer = admin.get("/log/checkpoint").await;
    if answer.status != 200 {
        return 0;
    }
    let note = SignedNote::parse(answer.body.as_str().unwrap()).unwrap();
    Checkpoint::parse(&note.text).unwrap().size
}

/// The latest checkpoint's size once it is at least `at_least` and has stayed the
/// same for 400 ms (start-up's own events, such as the seeded user's, sealed).
async fn settled(admin: &Client, at_least: u64) -> u64 {
    let mut last = 0;
    for _ in 0..200 {
        let size = checkpoint_size(admin).await;
        if size >= at_least && size == last {
            return size;
        }
        last = size;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    panic!("the log did not settle at {at_least} leaves or more");
}

/// Views user `id` (one `viewed` event) and waits until a checkpoint covers it;
/// returns that checkpoint's size.
async fn view_and_seal(admin: &Client, id: i64) -> u64 {
    let before = settled(admin, 1).await;
    assert_eq!(admin.get(&format!("/api/users/{id}")).await.status, 200);
    settled(admin, before + 1).await
}

async fn database(dir: &Path) -> SqliteConnection {
    let url = format!("sqlite://{}", dir.join("audit.db").display());
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url).unwrap();
    SqliteConnection::connect_with(&options).await.unwrap()
}

fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("AUDITLOG_DATA_DIR")
        .env_remove("AUDITLOG_STORE_URL")
        .env_remove("AUDITLOG_TOKEN")
        .output()
        .unwrap()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn witness(api: &str, file: &Path) -> Output {
    run(&[
        "verify",
        "--url",
        api,
        "--as-user",
        "1",
        "--checkpoint",
        file.to_str().unwrap(),
    ])
}

fn journal_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("log-checkpoints"))
        .unwrap()
        .lines()
        .count()
}

#[tokio::test]
async fn a_rewritten_log_is_never_signed_and_is_named() {
    let (tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let admin = Client::new(&system.urls.api).login(1).await;
    let saved = tmp.path().join("witness-checkpoint");
    // Each view alone in its checkpoint, so that a rewrite can be pinned to it.
    view_and_seal(&admin, 1).await;
    let before_target = checkpoint_size(&admin).await;
    let after_target = view_and_seal(&admin, 1).await;
    assert_eq!(
        after_target,
        before_target + 1,
        "the view was not alone in its checkpoint"
    );
    view_and_seal(&admin, 1).await;
    let first = witness(&system.urls.api, &saved);
    assert!(first.status.success(), "{}", describe(&first));

    // The attack: the event at leaf `before_target` is moved to another actor, and
    // its leaf hash and every stored checkpoint's root are recomputed to match.
    let mut db = database(&dir).await;
    let row = sqlx::query(
        "SELECT e.seq, e.id, e.body, e.received_at FROM audit_leaves l \
         JOIN audit_events e ON e.seq = l.seq WHERE l.leaf_index = ?",
    )
    .bind(before_target as i64)
    .fetch_one(&mut db)
    .await
    .unwrap();
    let (seq, id, body, received_at): (i64, Vec<u8>, String, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let target = uuid::Uuid::from_slice(&id).unwrap();
    assert!(body.contains("\"actorId\":1"), "{body}");
    let forged = body.replace("\"actorId\":1", "\"actorId\":2");
    // Every column that finds the event by its actor, the index's key among them.
    sqlx::query("UPDATE audit_events SET body = ?, actor_id = '2', actor_key = ? WHERE seq = ?")
        .bind(&forged)
        .bind(auditlog_store::object_key("users", "2"))
        .bind(seq)
        .execute(&mut db)
        .await
        .unwrap();
    let forged_leaf = leaf_hash(leaf_bytes(&forged, seq, received_at).as_bytes());
    sqlx::query("UPDATE audit_leaves SET leaf_hash = ? WHERE leaf_index = ?")
        .bind(forged_leaf.to_vec())
        .bind(before_target as i64)
        .execute(&mut db)
        .await
        .unwrap();
    let leaves: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT leaf_hash FROM audit_leaves ORDER BY leaf_index")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let notes: Vec<(i64, String)> = sqlx::query_as("SELECT size, note FROM audit_checkpoints")
        .fetch_all(&mut db)
        .await
        .unwrap();
    for (size, note) in notes {
        let mut frontier = Frontier::default();
        for leaf in &leaves[..size as usize] {
            frontier.append(leaf.as_slice().try_into().unwrap(), &mut Vec::new());
        }
        let signed = SignedNote::parse(&note).unwrap();
        let mut checkpoint = Checkpoint::parse(&signed.text).unwrap();
        checkpoint.root = frontier.root();
        let signatures = &note[signed.text.len()..];
        let rewritten = format!("{}{signatures}", checkpoint.body());
        sqlx::query("UPDATE audit_checkpoints SET note = ? WHERE size = ?")
            .bind(rewritten)
            .bind(size)
            .execute(&mut db)
            .await
            .unwrap();
    }
    let journaled = journal_lines(&dir);
    let signed_size = checkpoint_size(&admin).await;

    // More events arrive: the sealer seals them but signs nothing over the forgery.
    assert_eq!(admin.get("/api/users/1").await.status, 200);
    let mut ready = (0, serde_json::Value::Null);
    for _ in 0..100 {
        let response = reqwest::get(format!("{}/readyz", system.urls.auditor))
            .await
            .unwrap();
        ready = (response.status().as_u16(), response.json().await.unwrap());
        if ready.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready.0, 503, "{}", ready.1);
    assert!(ready.1.to_string().contains("sealer"), "{}", ready.1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        journal_lines(&dir),
        journaled,
        "a checkpoint was signed over the forgery"
    );
    assert_eq!(checkpoint_size(&admin).await, signed_size);

    // `verify` names the rewritten event: the journal's checkpoints beside the key
    // are the copy the attacker could not touch.
    let output = run(&["verify", "--data-dir", dir.to_str().unwrap(), "--json"]);
    assert!(!output.status.success(), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let named: std::collections::BTreeSet<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert_eq!(
        named,
        [target.to_string().as_str()].into(),
        "{}",
        describe(&output)
    );

    // The witness refuses what is served now.
    let later = witness(&system.urls.api, &saved);
    assert!(!later.status.success(), "{}", describe(&later));
    assert!(
        String::from_utf8_lossy(&later.stderr).contains("signature"),
        "{}",
        describe(&later)
    );
}

#[tokio::test]
async fn a_log_cut_short_consistently_is_caught_by_a_witness() {
    let (tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let admin = Client::new(&system.urls.api).login(1).await;
    let saved = tmp.path().join("witness-checkpoint");
    let kept = view_and_seal(&admin, 1).await;
    view_and_seal(&admin, 1).await;
    view_and_seal(&admin, 1).await;
    let first = witness(&system.urls.api, &saved);
    assert!(first.status.success(), "{}", describe(&first));

    // Everything after `kept` leaves removed: rows, leaves and the checkpoints that
    // covered them. What remains is a consistent, validly signed shorter log.
    let mut db = database(&dir).await;
    let cut: i64 = sqlx::query_scalar("SELECT seq FROM audit_leaves WHERE leaf_index = ?")
        .bind(kept as i64)
        .fetch_one(&mut db)
        .await
        .unwrap();
    for sql in [
        "DELETE FROM audit_events WHERE seq >= ?",
        "DELETE FROM audit_leaves WHERE seq >= ?",
    ] {
        sqlx::query(sql).bind(cut).execute(&mut db).await.unwrap();
    }
    sqlx::query("DELETE FROM audit_checkpoints WHERE size > ?")
        .bind(kept as i64)
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(checkpoint_size(&admin).await, kept);

    let later = witness(&system.urls.api, &saved);
    assert!(!later.status.success(), "{}", describe(&later));
    assert!(
        String::from_utf8_lossy(&later.stderr).contains("the log shrank"),
        "{}",
        describe(&later)
    );
}
