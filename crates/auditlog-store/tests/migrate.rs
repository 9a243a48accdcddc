//! Opening a store whose `audit_events` table was created by a release before the
//! producer columns: every backend adds them (and their index) at open, keeps the
//! events already stored, and copes with two processes opening it at the same moment.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::str::FromStr;

use auditlog_event::{Action, DataEvent, ObjectRef, ObjectType};
use auditlog_store::testing::{self, TestDatabase};
use auditlog_store::{EventQuery, ObjectKey, ProducerProgress};
use sqlx::Connection;

/// The id of the event stored under the old schema.
const OLD_ID: &str = "01900000-0000-7000-8000-000000000001";

/// The table as the release before producer numbers created it, with one event.
const SQLITE_BEFORE: &str = "
    CREATE TABLE audit_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id BLOB NOT NULL UNIQUE,
        action TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        actor_type TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        target_type TEXT NOT NULL,
        target_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    INSERT INTO audit_events
        (id, action, timestamp, actor_type, actor_id, target_type, target_id, received_at, body)
    VALUES (X'01900000000070008000000000000001', 'viewed', 1, 'users', '1', 'users', '1', 1,
        '{}');";

/// As [`SQLITE_BEFORE`], for PostgreSQL.
const POSTGRES_BEFORE: &str = "
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
        body TEXT NOT NULL
    );
    INSERT INTO audit_events
        (id, action, timestamp, actor_type, actor_id, target_type, target_id, received_at, body)
    VALUES ('01900000-0000-7000-8000-000000000001', 'viewed', 1, 'users', '1', 'users', '1', 1,
        '{}');";

/// As [`SQLITE_BEFORE`], for MySQL / MariaDB (one statement per entry: the text
/// protocol runs them one by one).
const MYSQL_BEFORE: &[&str] = &[
    "CREATE TABLE audit_events (
        seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        id BINARY(16) NOT NULL,
        action VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
        timestamp BIGINT NOT NULL,
        actor_type VARBINARY(256) NOT NULL,
        actor_id VARBINARY(512) NOT NULL,
        target_type VARBINARY(256) NOT NULL,
        target_id VARBINARY(512) NOT NULL,
        received_at BIGINT NOT NULL,
        body LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        UNIQUE KEY audit_events_id (id),
        KEY audit_events_actor_time (actor_type, actor_id, timestamp DESC, id DESC),
        KEY audit_events_target_time (target_type, target_id, timestamp DESC, id DESC),
        KEY audit_events_time (timestamp DESC, id DESC)
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
    "INSERT INTO audit_events
        (id, action, timestamp, actor_type, actor_id, target_type, target_id, received_at, body)
    VALUES (UNHEX('01900000000070008000000000000001'), 'viewed', 1, 'users', '1', 'users', '1',
        1, '{}')",
];

/// A connection to the SQLite file of `db`, created and given `script` (an earlier
/// release's schema and rows).
async fn sqlite_made_by(db: &TestDatabase, script: &'static str) -> sqlx::SqliteConnection {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(db.url())
        .unwrap()
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::raw_sql(script).execute(&mut conn).await.unwrap();
    conn
}

#[tokio::test]
async fn an_old_sqlite_table_gains_the_producer_columns_at_open() {
    let db = testing::fresh_sqlite_url();
    let conn = sqlite_made_by(&db, SQLITE_BEFORE).await;
    conn.close().await.unwrap();

    old_store_is_migrated_by_concurrent_opens(&db).await;
}

#[tokio::test]
async fn an_old_postgres_table_gains_the_producer_columns_at_open() {
    let db = testing::fresh_postgres_url().await;
    let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
    sqlx::raw_sql(POSTGRES_BEFORE)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    old_store_is_migrated_by_concurrent_opens(&db).await;
}

#[tokio::test]
async fn an_old_mysql_table_gains_the_producer_columns_at_open() {
    let db = testing::fresh_mysql_url().await;
    let url = db.url().replacen("mariadb://", "mysql://", 1);
    let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
    for statement in MYSQL_BEFORE {
        sqlx::raw_sql(*statement).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();

    old_store_is_migrated_by_concurrent_opens(&db).await;
}

/// The SQLite table and text indexes of the releases before the object keys, with
/// 45 000 events (more than one migration step) over 100 targets.
const SQLITE_BEFORE_OBJECT_KEYS: &str = "
    CREATE TABLE audit_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id BLOB NOT NULL UNIQUE,
        action TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        actor_type TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        target_type TEXT NOT NULL,
        target_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        body TEXT NOT NULL,
        producer_id TEXT,
        producer_seq INTEGER
    );
    CREATE INDEX audit_events_actor_time
        ON audit_events (actor_type, actor_id, timestamp DESC, id DESC);
    CREATE INDEX audit_events_target_time
        ON audit_events (target_type, target_id, timestamp DESC, id DESC);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 45000)
    INSERT INTO audit_events
        (id, action, timestamp, actor_type, actor_id, target_type, target_id, received_at, body)
    SELECT randomblob(16), 'viewed', i, 'users', CAST(i % 7 AS TEXT), 'documents',
        CAST(i % 100 AS TEXT), i, '{}'
    FROM n;";

#[tokio::test]
async fn an_sqlite_store_of_text_indexes_is_indexed_by_object_keys_at_open() {
    let db = testing::fresh_sqlite_url();
    let mut conn = sqlite_made_by(&db, SQLITE_BEFORE_OBJECT_KEYS).await;

    let store = auditlog_store::open(db.url()).await.unwrap();

    let documents = ObjectType::parse("targetType", "documents").unwrap();
    let on_42 = EventQuery {
        target: Some(ObjectKey {
            object_type: documents,
            id: "42".into(),
        }),
        ..EventQuery::default()
    };
    assert_eq!(store.count(&on_42).await.unwrap(), 450);
    let page = store.query(&on_42).await.unwrap();
    assert_eq!(page.events[0].timestamp, 44_942);
    let users = ObjectType::parse("actorType", "users").unwrap();
    let by_3 = EventQuery {
        actor: Some(ObjectKey {
            object_type: users,
            id: "3".into(),
        }),
        ..EventQuery::default()
    };
    assert_eq!(store.count(&by_3).await.unwrap(), 6_429);
    let unkeyed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE actor_key IS NULL OR target_key IS NULL",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(unkeyed, 0);
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events' \
         AND name LIKE 'audit_events_%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "audit_events_actor_key",
            "audit_events_producer",
            "audit_events_target_key",
            "audit_events_tenant_time",
            "audit_events_time"
        ]
    );
}

/// Two opens race on the old table; both must succeed, the old event must still be
/// there, and numbered events must be stored and reported. A third open, on the
/// migrated table, must change nothing.
async fn old_store_is_migrated_by_concurrent_opens(db: &TestDatabase) {
    let (first, second) = tokio::join!(
        auditlog_store::open(db.url()),
        auditlog_store::open(db.url())
    );
    let (first, second) = (first.unwrap(), second.unwrap());

    let users = ObjectType::parse("actorType", "users").unwrap();
    let batch: Vec<DataEvent> = [1, 2, 4]
        .into_iter()
        .map(|seq| {
            let mut e = DataEvent::new(
                Action::Viewed,
                ObjectRef::new(users.clone(), 1),
                ObjectRef::new(users.clone(), 1),
                1 + seq as i64,
            );
            e.producer_id = Some("api".into());
            e.producer_seq = Some(seq);
            e
        })
        .collect();
    first.insert_batch(&batch).await.unwrap();
    let again = auditlog_store::open(db.url()).await.unwrap();

    for store in [&first, &second, &again] {
        assert_eq!(
            store.producers().await.unwrap(),
            [ProducerProgress {
                producer_id: "api".into(),
                events: 3,
                last_seq: 4,
                missing: 1,
                gaps: vec![(3, 3)],
            }]
        );
        let all = store
            .query(&EventQuery {
                actor: Some(ObjectKey {
                    object_type: users.clone(),
                    id: "1".into(),
                }),
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(all.events.len(), 4);
        assert_eq!(all.events[3].id.to_string(), OLD_ID);
    }
}
