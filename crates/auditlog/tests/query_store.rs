//! `auditlog auditor --query-store-url`: the query routes read events through a
//! second, read-only store (here the same PostgreSQL database through a role
//! that may only `SELECT`), while ingest, sealing and the record of reads keep
//! writing to the main store. Taking the role's `SELECT` away breaks queries and
//! nothing else, which shows where each goes.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use auditlog_auth::{KeyPair, Principal, Role, TokenIssuer};
use auditlog_store::testing;
use common::{Running, data_dir};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// A token signed with the data directory's key.
fn token(data_dir: &Path, subject: &str, role: Role) -> String {
    let pair = KeyPair::load(data_dir).unwrap().unwrap();
    TokenIssuer::new(&pair)
        .unwrap()
        .issue(&Principal::new(subject.into(), role).unwrap())
        .unwrap()
}

/// Runs statements as the test database's owner.
async fn admin(url: &str, sql: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn count(url: &str, sql: &'static str) -> i64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

/// `url` with its user replaced by `user` (no password: the test server trusts
/// local connections).
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

/// Posts `events` as NDJSON with `token`; the answer's status.
async fn ingest(base: &str, token: &str, events: &[Value]) -> u16 {
    let body: String = events.iter().map(|e| format!("{e}\n")).collect();
    reqwest::Client::new()
        .post(format!("{base}/api/data-events"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `GET path` with `token`: status and body.
async fn get(base: &str, token: &str, path: &str) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let body = answer.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn viewed(actor: u32, target: u32) -> Value {
    json!({"action": "viewed", "actorType": "users", "actorId": actor,
           "targetType": "documents", "targetId": target})
}

#[tokio::test]
async fn query_routes_read_the_query_store_and_everything_else_the_main_one() {
    let db = testing::fresh_postgres_url().await;
    // The main store's schema first: a read-only store never creates one.
    drop(auditlog_store::open(db.url()).await.unwrap());
    let reader = format!("auditlog_test_reader_{}", uuid::Uuid::now_v7().simple());
    let database = db.url().rsplit('/').next().unwrap().to_owned();
    admin(
        db.url(),
        &format!(
            "CREATE ROLE {reader} LOGIN;
            GRANT CONNECT ON DATABASE {database} TO {reader};
            GRANT USAGE ON SCHEMA public TO {reader};
            GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader};"
        ),
    )
    .await;
    let (_tmp, dir) = data_dir();
    let query_url = as_user(db.url(), &reader);
    let auditor = Running::start(
        &[
            "auditor",
            "--auditor-addr",
            "127.0.0.1:0",
            "--store-url",
            db.url(),
            "--query-store-url",
            &query_url,
        ],
        &dir,
        1,
    );
    let base = auditor.urls.auditor.clone();
    let service = token(&dir, "billing", Role::Service);
    let operator = token(&dir, "1", Role::Admin);

    // Ingest writes to the main store (the reader could not).
    let events: Vec<Value> = (0..20).map(|n| viewed(7, n)).collect();
    assert_eq!(ingest(&base, &service, &events).await, 200);
    // Queries read through the reader's role.
    let (status, page) = get(&base, &operator, "/events/by/users/7").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 20);
    let (status, _) = get(
        &base,
        &operator,
        "/api/data-events?filter%5BactorType%5D=users&filter%5BactorId%5D=7",
    )
    .await;
    assert_eq!(status, 200);
    let (status, ready) = get(&base, &operator, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["meta"]["checks"]["query store"], "ok", "{ready}");
    // The reads were recorded, and everything was sealed, in the main store.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reads = count(
            db.url(),
            "SELECT count(*) FROM audit_events WHERE body LIKE '%\"audit.read\"%'",
        )
        .await;
        let stored = count(db.url(), "SELECT count(*) FROM audit_events").await;
        let sealed = count(db.url(), "SELECT count(*) FROM audit_leaves").await;
        if reads >= 2 && sealed == stored {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{reads} reads recorded, {sealed} of {stored} sealed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sessions = count(
        db.url(),
        "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'auditlog_test_reader_%' \
         AND datname = current_database()",
    )
    .await;
    assert!(sessions > 0, "the query store holds sessions as the reader");

    // Without SELECT for the reader, queries fail; ingest and tails do not.
    admin(
        db.url(),
        &format!("REVOKE SELECT ON audit_events FROM {reader}"),
    )
    .await;
    let (status, body) = get(&base, &operator, "/events/by/users/7").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(ingest(&base, &service, &[viewed(8, 1)]).await, 200);
    let (status, _) = get(&base, &operator, "/log/checkpoint").await;
    assert_eq!(status, 200);
    admin(
        db.url(),
        &format!("GRANT SELECT ON audit_events TO {reader}"),
    )
    .await;
    let (status, page) = get(&base, &operator, "/events/by/users/8").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 1);

    drop(auditor);
    admin(
        db.url(),
        &format!("DROP OWNED BY {reader}; DROP ROLE {reader};"),
    )
    .await;
}

#[test]
fn a_query_store_that_is_not_postgres_is_refused_at_start() {
    let (_tmp, dir) = data_dir();
    let output = std::process::Command::new(common::binary())
        .args([
            "auditor",
            "--auditor-addr",
            "127.0.0.1:0",
            "--query-store-url",
            "mysql://root@127.0.0.1/test",
        ])
        .env("AUDITLOG_DATA_DIR", &dir)
        .env_remove("AUDITLOG_STORE_URL")
        .env_remove("AUDITLOG_QUERY_STORE_URL")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("read-only store URL must be postgres"),
        "{stderr}"
    );
}
