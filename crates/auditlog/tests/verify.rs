//! `auditlog verify` against real stores: events are stored, sealed into the tree
//! and signed by the real sealer, one checkpoint per event; then columns, rows and
//! the tree are changed directly in the database (as an administrator could), and
//! the real binary must exit non-zero naming exactly the events concerned; on an
//! untouched store it exits 0.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;
use std::sync::Arc;

use auditlog_auditor::log::{LogIdentity, Sealer, SealerStatus};
use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
use auditlog_store::testing::{self, TestDatabase};
use auditlog_store::{AuditStore, EventQuery, StoredEvent};
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

#[tokio::test]
async fn verify_names_tampered_events_on_sqlite() {
    let db = testing::fresh_sqlite_url();
    // The SQLite store lives in a directory of its own: use it as the data dir, so
    // `--data-dir` alone finds the store, the log keys and the journal.
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

#[tokio::test]
async fn verify_names_a_truncated_end_on_sqlite() {
    let db = testing::fresh_sqlite_url();
    let keys = tempfile::tempdir().unwrap();
    truncated(db, keys.path()).await;
}

#[tokio::test]
async fn verify_names_a_truncated_end_on_postgres() {
    let keys = tempfile::tempdir().unwrap();
    truncated(testing::fresh_postgres_url().await, keys.path()).await;
}

#[tokio::test]
async fn verify_names_a_truncated_end_on_mysql() {
    let keys = tempfile::tempdir().unwrap();
    truncated(testing::fresh_mysql_url().await, keys.path()).await;
}

/// Stores `count` events one at a time, each sealed and signed by the real sealer
/// before the next, except those at `holes` (deleted before sealing, as a
/// rolled-back insert leaves a hole in `seq`). Returns the rows sealed, by seq.
async fn sealed_one_by_one(
    store: &Arc<dyn AuditStore>,
    data_dir: &Path,
    count: i64,
    holes: &[i64],
    url: &str,
) -> Vec<StoredEvent> {
    let identity = LogIdentity::open(data_dir, Some("test.example/log"), None).unwrap();
    let mut sealer = Sealer::new(store.clone(), identity, SealerStatus::default());
    for n in 0..count {
        store.insert_batch(&[event(n, 1_000 + n)]).await.unwrap();
        if holes.contains(&n) {
            let seq = store.last_seq().await.unwrap();
            execute(url, &format!("DELETE FROM audit_events WHERE seq = {seq}")).await;
        } else {
            sealer.round().await.unwrap();
        }
    }
    stored(&**store).await
}

async fn scenario(db: TestDatabase, data_dir: &Path, with_url: bool) {
    let store = auditlog_store::open(db.url()).await.unwrap();
    let rows = sealed_one_by_one(&store, data_dir, 16, &[5, 11], db.url()).await;
    assert_eq!(rows.len(), 14);
    // The holes' seqs: below the last sealed one, and never sealed.
    let holes: Vec<i64> = (1..=16)
        .filter(|seq| rows.iter().all(|r| r.seq != *seq))
        .collect();
    assert_eq!(holes.len(), 2);
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
    assert_eq!(report["rows"], 15);
    assert_eq!(report["sealed"], 14);
    assert_eq!(report["unsealed"], 1);
    assert_eq!(report["checkpoints"].as_array().unwrap().len(), 14);
    assert!(report["checkpoints"].as_array().unwrap().iter().all(|c| {
        c["signatureValid"] == true && c["matchesRows"] == true && c["keptIn"] == "store+journal"
    }));

    // Tamper as a database administrator would: one change per event.
    let url = db.url();
    let id = |n: usize| rows[n].id;
    let seq = |n: usize| rows[n].seq;
    let tampers = [
        // The body (and with it the action it holds).
        format!(
            "UPDATE audit_events SET body = REPLACE(body, '\"viewed\"', '\"deleted\"') WHERE seq = {}",
            seq(0)
        ),
        // Each indexed column a query filters on.
        format!(
            "UPDATE audit_events SET actor_id = '99' WHERE seq = {}",
            seq(1)
        ),
        format!(
            "UPDATE audit_events SET target_id = '77' WHERE seq = {}",
            seq(2)
        ),
        format!(
            "UPDATE audit_events SET action = 'deleted' WHERE seq = {}",
            seq(3)
        ),
        format!(
            "UPDATE audit_events SET timestamp = timestamp + 1 WHERE seq = {}",
            seq(4)
        ),
        format!(
            "UPDATE audit_events SET producer_seq = 5 WHERE seq = {}",
            seq(5)
        ),
        format!(
            "UPDATE audit_events SET received_at = received_at + 1 WHERE seq = {}",
            seq(6)
        ),
        // The sequence: moved into a hole below the last sealed seq.
        format!(
            "UPDATE audit_events SET seq = {} WHERE seq = {}",
            holes[0],
            seq(7)
        ),
        // A row removed.
        format!("DELETE FROM audit_events WHERE seq = {}", seq(8)),
        // Two rows swapped (by way of a free seq).
        format!(
            "UPDATE audit_events SET seq = 1000000 WHERE seq = {}",
            seq(9)
        ),
        format!(
            "UPDATE audit_events SET seq = {} WHERE seq = {}",
            seq(9),
            seq(10)
        ),
        format!(
            "UPDATE audit_events SET seq = {} WHERE seq = 1000000",
            seq(10)
        ),
    ];
    for sql in &tampers {
        execute(url, sql).await;
    }
    // The object keys SQLite finds an actor's and a target's events by: a changed
    // key hides the event from that object's history as surely as a changed id.
    let keyed = url.starts_with("sqlite:");
    if keyed {
        for sql in [
            format!(
                "UPDATE audit_events SET actor_key = actor_key + 1 WHERE seq = {}",
                seq(11)
            ),
            format!(
                "UPDATE audit_events SET target_key = NULL WHERE seq = {}",
                seq(12)
            ),
        ] {
            execute(url, &sql).await;
        }
    }
    // A forged row in the other hole.
    let forged = event(99, 1_005);
    execute(url, &forge(url, &forged, holes[1])).await;

    let tampered = verify(&args(true));
    assert!(!tampered.status.success(), "{}", describe(&tampered));
    let report: serde_json::Value = serde_json::from_slice(&tampered.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let named: BTreeSet<String> = findings
        .iter()
        .filter_map(|f| f["id"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = (0..=if keyed { 12 } else { 10 })
        .map(id)
        .chain([forged.id])
        .map(|id| id.to_string())
        .collect();
    assert_eq!(named, expected, "{}", describe(&tampered));
    let kind_of = |id: Uuid, kind: &str| {
        findings
            .iter()
            .any(|f| f["id"] == id.to_string() && f["kind"] == kind)
    };
    for n in 0..=6 {
        assert!(
            kind_of(id(n), "altered"),
            "event {n}: {}",
            describe(&tampered)
        );
    }
    let detail_of = |n: usize, text: &str| {
        findings
            .iter()
            .any(|f| f["id"] == id(n).to_string() && f["detail"].as_str().unwrap().contains(text))
    };
    assert!(
        detail_of(1, "column actor_id is 99"),
        "{}",
        describe(&tampered)
    );
    assert!(detail_of(2, "column target_id is 77"));
    assert!(detail_of(3, "column action is deleted"));
    assert!(detail_of(4, "column timestamp"));
    assert!(detail_of(5, "column producer_seq"));
    if keyed {
        assert!(detail_of(11, "column actor_key is"));
        assert!(detail_of(12, "column target_key is NULL"));
    }
    assert!(kind_of(id(7), "removed") && kind_of(id(7), "inserted"));
    assert!(kind_of(id(8), "removed"));
    assert!(kind_of(id(9), "reordered") && kind_of(id(10), "reordered"));
    assert!(kind_of(forged.id, "inserted"));

    // The text report names exactly the same events, and no other.
    let text = verify(&args(false));
    assert!(!text.status.success());
    let in_text: BTreeSet<String> = String::from_utf8_lossy(&text.stdout)
        .split_whitespace()
        .filter(|word| Uuid::try_parse(word).is_ok())
        .map(str::to_owned)
        .collect();
    assert_eq!(in_text, expected, "{}", describe(&text));
    assert!(String::from_utf8_lossy(&text.stderr).contains("fails verification"));
}

/// The end of the log cut off and the tree left consistent (the leaves, the rows
/// and the store's checkpoints beyond the cut deleted): the store alone looks
/// whole, but the journal beside the key remembers the larger checkpoints.
async fn truncated(db: TestDatabase, data_dir: &Path) {
    let store = auditlog_store::open(db.url()).await.unwrap();
    let rows = sealed_one_by_one(&store, data_dir, 10, &[], db.url()).await;
    let cut = rows[7].seq;
    for sql in [
        format!("DELETE FROM audit_events WHERE seq >= {cut}"),
        format!("DELETE FROM audit_leaves WHERE seq >= {cut}"),
        "DELETE FROM audit_checkpoints WHERE size > 7".to_owned(),
    ] {
        execute(db.url(), &sql).await;
    }
    let args = vec![
        "verify".to_owned(),
        "--data-dir".to_owned(),
        data_dir.display().to_string(),
        "--store-url".to_owned(),
        db.url().to_owned(),
        "--json".to_owned(),
    ];
    let output = verify(&args);
    assert!(!output.status.success(), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["sealed"], 7);
    let removed = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["detail"]
                .as_str()
                .unwrap()
                .contains("the end of the log was removed")
        })
        .count();
    assert_eq!(removed, 3, "{}", describe(&output));
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

async fn stored(store: &dyn AuditStore) -> Vec<StoredEvent> {
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

/// `audit_events` exactly as the release before partitioning created it on
/// PostgreSQL (a plain table, unique by id, the sequence a `BIGSERIAL`'s), for
/// [`an_unpartitioned_postgres_store_is_partitioned_in_place_and_still_verifies`].
const UNPARTITIONED_POSTGRES: &str = "
    CREATE TABLE audit_events (
        seq BIGSERIAL PRIMARY KEY,
        id UUID NOT NULL UNIQUE,
        action VARCHAR(16) NOT NULL,
        timestamp BIGINT NOT NULL,
        actor_type VARCHAR(64) NOT NULL,
        actor_id VARCHAR(128) NOT NULL,
        target_type VARCHAR(64) NOT NULL,
        target_id VARCHAR(128) NOT NULL,
        received_at BIGINT NOT NULL,
        body TEXT NOT NULL,
        producer_id VARCHAR(128),
        producer_seq BIGINT
    );
    CREATE INDEX audit_events_actor_time
        ON audit_events (actor_type, actor_id, timestamp DESC, id DESC);
    CREATE INDEX audit_events_target_time
        ON audit_events (target_type, target_id, timestamp DESC, id DESC);
    CREATE INDEX audit_events_time ON audit_events (timestamp DESC, id DESC);
    CREATE INDEX audit_events_producer ON audit_events (producer_id, producer_seq);";

/// A store sealed and signed under the unpartitioned schema (rebuilt as that
/// release had it: its rows moved into the old table, the new table and the id
/// table dropped), spanning several months, one event in 1970 and one with a
/// hole in `seq` below it. Opening it with this release converts it in place:
/// `auditlog verify` then passes with the same rows, leaves and checkpoints, the
/// rows sit in their months' partitions, and new events continue the sequence
/// and the tree.
#[tokio::test]
async fn an_unpartitioned_postgres_store_is_partitioned_in_place_and_still_verifies() {
    let db = testing::fresh_postgres_url().await;
    let dir = tempfile::tempdir().unwrap();
    let url = db.url().to_owned();
    let month = 31 * 24 * 3_600 * 1_000_i64;
    let now = auditlog_event::now_ms();
    {
        let store = auditlog_store::open(&url).await.unwrap();
        let identity = LogIdentity::open(dir.path(), Some("test.example/log"), None).unwrap();
        let mut sealer = Sealer::new(store.clone(), identity, SealerStatus::default());
        for n in 0..12 {
            let timestamp = if n == 0 { 5 } else { now - (n % 4) * month };
            store.insert_batch(&[event(n, timestamp)]).await.unwrap();
            if n == 6 {
                // A rolled-back insert's hole, below sealed rows.
                let seq = store.last_seq().await.unwrap();
                execute(&url, &format!("DELETE FROM audit_events WHERE seq = {seq}")).await;
            } else {
                sealer.round().await.unwrap();
            }
        }
    }
    execute(
        &url,
        &format!(
            "CREATE TABLE saved AS SELECT * FROM audit_events;
            CREATE TABLE saved_seq AS SELECT last_value FROM audit_events_seq_seq;
            DROP TABLE audit_events;
            DROP TABLE audit_event_ids;
            {UNPARTITIONED_POSTGRES}
            INSERT INTO audit_events SELECT seq, id, action, timestamp, actor_type, actor_id,
                target_type, target_id, received_at, body, producer_id, producer_seq FROM saved;
            SELECT setval('audit_events_seq_seq', (SELECT last_value FROM saved_seq));
            DROP TABLE saved;
            DROP TABLE saved_seq;"
        ),
    )
    .await;
    let args = vec![
        "verify".to_owned(),
        "--data-dir".to_owned(),
        dir.path().display().to_string(),
        "--store-url".to_owned(),
        url.clone(),
        "--json".to_owned(),
    ];

    // `verify` opens the store, which converts it.
    let output = verify(&args);

    assert!(output.status.success(), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (report["rows"].as_u64(), report["sealed"].as_u64()),
        (Some(11), Some(11))
    );
    assert_eq!(report["checkpoints"].as_array().unwrap().len(), 11);
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let kind: String = sqlx::query_scalar(
        "SELECT relkind::text FROM pg_class WHERE oid = 'audit_events'::regclass",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(kind, "p", "audit_events is partitioned now");
    let placed: Vec<(String, i64)> = sqlx::query_as(
        "SELECT tableoid::regclass::text, count(*) FROM audit_events GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        placed[0],
        ("audit_events_default".to_owned(), 1),
        "the 1970 event"
    );
    assert!(
        placed.len() >= 4,
        "the months each have a partition: {placed:?}"
    );
    let ids: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_event_ids")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(ids, 11, "every stored id is claimed");

    // The store goes on: the same id again (in another month) is a duplicate; a
    // new event follows the last seq and is sealed onto the same tree.
    let store = auditlog_store::open(&url).await.unwrap();
    let before = stored(&*store).await;
    // Stored in an earlier month; now again dated in another.
    let mut again = event(3, now + 1);
    again.id = before[3].id;
    assert_eq!(store.insert_batch(&[again]).await.unwrap().inserted, 0);
    store.insert_batch(&[event(50, now)]).await.unwrap();
    let after = stored(&*store).await;
    assert!(after.last().unwrap().seq > before.last().unwrap().seq);
    let identity = LogIdentity::open(dir.path(), Some("test.example/log"), None).unwrap();
    let mut sealer = Sealer::new(store.clone(), identity, SealerStatus::default());
    assert_eq!(sealer.round().await.unwrap(), 12);
    let output = verify(&args);
    assert!(output.status.success(), "{}", describe(&output));
}
