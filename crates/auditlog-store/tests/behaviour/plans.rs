//! The indexes the server stores' planners choose for a tenant's pages, on
//! analyzed tables where one tenant is large and another small (SQLite's plans
//! are tested beside its store, where the statements can be read).

use sqlx::{Connection, Row};

use super::*;

/// The statements as `sql/queries.rs` builds them, with MySQL's placeholders.
const TENANT_PAGE: &str = "SELECT id, seq, timestamp, received_at, body FROM audit_events \
    WHERE 1 = 1 AND tenant_id = ? \
    ORDER BY audit_events.timestamp DESC, audit_events.id DESC LIMIT 51";
const ACTOR_IN_TENANT_PAGE: &str = "SELECT id, seq, timestamp, received_at, body \
    FROM audit_events WHERE 1 = 1 AND tenant_id = ? AND actor_type = ? AND actor_id = ? \
    ORDER BY audit_events.timestamp DESC, audit_events.id DESC LIMIT 51";
const TENANT_TAIL: &str = "SELECT id, seq, timestamp, received_at, body FROM audit_events \
    WHERE seq > ? AND tenant_id = ? ORDER BY seq LIMIT 100";

/// 6 000 events: tenant `big` holds all but three, which are tenant `acme`'s;
/// actor 7 has three events in `big`.
async fn one_large_and_one_small_tenant(fresh: &Fresh) {
    let now = auditlog_event::now_ms();
    for chunk in 0..6 {
        let batch: Vec<DataEvent> = (0..1_000_i64)
            .map(|k| {
                let n = chunk * 1_000 + k;
                let actor = if n % 2_000 == 1 { 7 } else { 100 + n % 900 };
                let mut e = event(Action::Viewed, actor, "documents", n.into(), now - n);
                e.tenant_id = Some(if n % 2_000 == 2 { "acme" } else { "big" }.into());
                e
            })
            .collect();
        fresh.store.insert_batch(&batch).await.unwrap();
    }
}

/// MySQL / MariaDB (the prototype's database) read a small tenant's first page
/// from the tenant's index, an actor's page within a large tenant from the
/// actor's, and a tenant's tail forward by `seq`.
pub(crate) async fn a_small_tenants_page_reads_the_tenant_index_on_mysql(fresh: Fresh) {
    one_large_and_one_small_tenant(&fresh).await;
    let url = fresh.url().replacen("mariadb://", "mysql://", 1);
    let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("ANALYZE TABLE audit_events")
        .execute(&mut conn)
        .await
        .unwrap();
    let tenant = mysql_index(&mut conn, explain(TENANT_PAGE).bind("acme")).await;
    assert_eq!(tenant.as_deref(), Some("audit_events_tenant_time"));
    let actor = explain(ACTOR_IN_TENANT_PAGE)
        .bind("big")
        .bind("users")
        .bind("7");
    let actor = mysql_index(&mut conn, actor).await;
    assert_eq!(actor.as_deref(), Some("audit_events_actor_time"));
    let tail = explain(TENANT_TAIL).bind(5_990_i64).bind("big");
    let tail = mysql_index(&mut conn, tail).await;
    assert_eq!(tail.as_deref(), Some("PRIMARY"));

    // And the store's own answer is the small tenant's three events.
    let page = fresh
        .store
        .query(&EventQuery {
            tenant: Some("acme".into()),
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 3);
}

/// MySQL's `EXPLAIN` of `sql`, to bind its parameters to.
fn explain(sql: &str) -> sqlx::query::Query<'static, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
}

/// The index MySQL's plan `explain` reads (its first row's `key`).
async fn mysql_index(
    conn: &mut sqlx::MySqlConnection,
    explain: sqlx::query::Query<'_, sqlx::MySql, sqlx::mysql::MySqlArguments>,
) -> Option<String> {
    let rows = explain.fetch_all(conn).await.unwrap();
    rows.first().and_then(|row| row.try_get("key").unwrap())
}

/// PostgreSQL reads a small tenant's first page from the tenant's (partial)
/// index in each partition, and an actor's page within a large tenant from the
/// actor's.
pub(crate) async fn a_small_tenants_page_reads_the_tenant_index_on_postgres(fresh: Fresh) {
    one_large_and_one_small_tenant(&fresh).await;
    let mut conn = sqlx::PgConnection::connect(fresh.url()).await.unwrap();
    sqlx::raw_sql("ANALYZE audit_events")
        .execute(&mut conn)
        .await
        .unwrap();
    // The indexes of a partition are named after their columns; read which
    // columns the index each plan uses is on.
    async fn index_columns(conn: &mut sqlx::PgConnection, sql: &str, binds: &[&str]) -> String {
        let numbered = sql
            .split('?')
            .enumerate()
            .map(|(n, part)| {
                if n == 0 {
                    part.to_owned()
                } else {
                    format!("${n}{part}")
                }
            })
            .collect::<String>()
            .replace("SELECT id,", "SELECT id::text AS id,");
        let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (COSTS OFF) {numbered}"
        )));
        for bind in binds {
            query = query.bind(*bind);
        }
        let plan = query.fetch_all(&mut *conn).await.unwrap().join("\n");
        let used: Vec<&str> = plan
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "using")
            .map(|w| w[1])
            .collect();
        assert!(!used.is_empty(), "no index used:\n{plan}");
        let mut definitions = Vec::new();
        for index in used {
            let definition: String = sqlx::query_scalar("SELECT pg_get_indexdef(to_regclass($1))")
                .bind(index)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            definitions.push(definition);
        }
        definitions.join("\n")
    }
    let tenant = index_columns(&mut conn, TENANT_PAGE, &["acme"]).await;
    assert!(
        tenant.contains("(tenant_id, \"timestamp\" DESC, id DESC)"),
        "{tenant}"
    );
    let actor = index_columns(&mut conn, ACTOR_IN_TENANT_PAGE, &["big", "users", "7"]).await;
    assert!(actor.contains("(actor_type, actor_id"), "{actor}");
}
