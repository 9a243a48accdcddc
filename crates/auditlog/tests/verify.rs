//! `auditlog verify` against real stores: events are stored and sealed through the
//! store API and a head is signed, then rows are edited, deleted and forged directly
//! in the database (as an administrator could), and the real binary must exit
//! non-zero naming exactly those events; on an untouched store it exits 0.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

use auditlog_auth::KeyPair;
use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
use auditlog_store::testing::{self, TestDatabase};
use auditlog_store::{EventQuery, StoredEvent};
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

#[tokio::test]
async fn verify_names_tampered_events_on_sqlite() {
    let db = testing::fresh_sqlite_url();
    // The SQLite store lives in a directory of its own: use it as the data dir, so
    // `--data-dir` alone finds both the store and the key.
    let dir = PathBuf::from(db.url().trim_start_matches("sqlite://"))
        .parent()
        .unwrap()
        .to_owned();
    scenario(db, &dir, false).await;
}

#[tokio::test]
async fn verify_names_tampered_events_on_postgres() {
    let keys = tempfile::tempdir().unwrap();
    scenario(testing::fresh_postgres_url().await, keys.path(), true).await;
}

#[tokio::test]
async fn verify_names_tampered_events_on_mysql() {
    let keys = tempfile::tempdir().unwrap();
    scenario(testing::fresh_mysql_url().await, keys.path(), true).await;
}

async fn scenario(db: TestDatabase, data_dir: &Path, with_url: bool) {
    let store = auditlog_store::open(db.url()).await.unwrap();
    let events: Vec<DataEvent> = (0..10).map(|n| event(n, 1_000 + n)).collect();
    store.insert_batch(&events).await.unwrap();
    let rows = stored(&*store).await;
    assert_eq!(rows.len(), 10);
    // A hole in `seq`, such as a rolled-back PostgreSQL insert leaves, made before
    // sealing: no tampering, and the chain simply skips it.
    let hole = rows[5].clone();
    execute(
        db.url(),
        &format!("DELETE FROM audit_events WHERE seq = {}", hole.seq),
    )
    .await;
    store.seal(1_000).await.unwrap();
    let keys = KeyPair::load_or_generate(data_dir).unwrap();
    let head = store.chain_head().await.unwrap();
    assert_eq!((head.seq, head.size), (rows[9].seq, 9));
    let signed = auditlog_auditor::integrity::sign(&keys, head, 1_700_000_000_000).unwrap();
    store.save_head(&signed).await.unwrap();
    // Stored after the seal: "not yet sealed", which is no error.
    store.insert_batch(&[event(20, 2_000)]).await.unwrap();
    let args = |json: bool| {
        let mut args = vec!["verify".to_owned(), "--data-dir".to_owned()];
        args.push(data_dir.display().to_string());
        if with_url {
            args.extend(["--store-url".to_owned(), db.url().to_owned()]);
        }
        if json {
            args.push("--json".to_owned());
        }
        args
    };

    let untouched = verify(&args(true));
    assert!(untouched.status.success(), "{}", describe(&untouched));
    let report: serde_json::Value = serde_json::from_slice(&untouched.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["rows"], 10);
    assert_eq!(report["sealed"], 9);
    assert_eq!(report["unsealed"], 1);
    assert_eq!(report["head"]["signatureValid"], true);
    assert_eq!(report["head"]["keyPinned"], true);
    assert_eq!(report["head"]["matchesChain"], true);

    // Tamper as a database administrator would.
    let altered = &rows[2];
    let mut changed = events.iter().find(|e| e.id == altered.id).unwrap().clone();
    changed.actor_id = 666.into();
    execute(
        db.url(),
        &format!(
            "UPDATE audit_events SET body = '{}' WHERE seq = {}",
            changed.to_json(),
            altered.seq
        ),
    )
    .await;
    let removed = &rows[7];
    execute(
        db.url(),
        &format!("DELETE FROM audit_events WHERE seq = {}", removed.seq),
    )
    .await;
    let forged = event(99, 1_005);
    execute(db.url(), &forge(db.url(), &forged, hole.seq)).await;

    let tampered = verify(&args(true));
    assert!(!tampered.status.success(), "{}", describe(&tampered));
    let report: serde_json::Value = serde_json::from_slice(&tampered.stdout).unwrap();
    let findings: BTreeSet<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("altered", altered.id),
        ("removed", removed.id),
        ("inserted", forged.id),
    ]
    .into_iter()
    .map(|(kind, id)| (kind.to_owned(), id.to_string()))
    .collect();
    assert_eq!(findings, expected, "{}", describe(&tampered));
    assert_eq!(report["problems"], 3);

    // The text report names exactly the same events, and no other.
    let text = verify(&args(false));
    assert!(!text.status.success());
    let named: BTreeSet<String> = String::from_utf8_lossy(&text.stdout)
        .split_whitespace()
        .filter(|word| Uuid::try_parse(word).is_ok())
        .map(str::to_owned)
        .collect();
    let ids: BTreeSet<String> = [altered.id, removed.id, forged.id]
        .iter()
        .map(Uuid::to_string)
        .collect();
    assert_eq!(named, ids, "{}", describe(&text));
    assert!(String::from_utf8_lossy(&text.stderr).contains("fails verification"));
}

fn event(actor: i64, timestamp: i64) -> DataEvent {
    let users = ObjectType::parse("actorType", "users").unwrap();
    DataEvent::new(
        Action::Viewed,
        ObjectRef::new(users.clone(), actor),
        ObjectRef::new(users, 1),
        timestamp,
    )
}

async fn stored(store: &dyn auditlog_store::AuditStore) -> Vec<StoredEvent> {
    store
        .stored_after(&EventQuery::default(), 0, 1_000)
        .await
        .unwrap()
}

fn verify(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .args(args)
        .env_remove("AUDITLOG_DATA_DIR")
        .env_remove("AUDITLOG_STORE_URL")
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

/// An INSERT of `event` at `seq`, bypassing the auditor. The values are the test's
/// own (a UUID and the event's JSON, which holds no quote), spliced as literals.
fn forge(url: &str, event: &DataEvent, seq: i64) -> String {
    let id = if url.starts_with("postgres") {
        format!("'{}'::uuid", event.id)
    } else {
        format!("X'{}'", event.id.simple())
    };
    format!(
        "INSERT INTO audit_events (seq, id, action, timestamp, actor_type, actor_id, \
         target_type, target_id, received_at, body) \
         VALUES ({seq}, {id}, 'viewed', {}, 'users', '99', 'users', '1', 0, '{}')",
        event.timestamp,
        event.to_json()
    )
}

/// Runs one statement directly on the store's database.
async fn execute(url: &str, sql: &str) {
    let sql = AssertSqlSafe(sql.to_owned());
    if url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).unwrap();
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    } else if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    } else {
        let url = url.replacen("mariadb://", "mysql://", 1);
        let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    }
}
