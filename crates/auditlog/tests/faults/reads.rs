//! Audited reads under faults: a read whose `audit.read` event cannot be
//! committed is refused and serves nothing, and a SIGKILL during a burst of reads
//! leaves no answered read without its event. Reads' events are committed many
//! at a time (`auditlog_auditor::group_commit`); these tests hold that grouping
//! to the promise of a commit per read.

use super::*;

use std::collections::HashSet;
use std::sync::Mutex;

use auditlog_auth::{KeyPair, Principal, Role, TokenIssuer};
use auditlog_store::{EventQuery, Order};

/// An admin's token signed with the data directory's key, as `auditlog token`
/// makes one.
fn admin_token(data_dir: &Path) -> String {
    let pair = KeyPair::load(data_dir).unwrap().unwrap();
    TokenIssuer::new(&pair)
        .unwrap()
        .issue(&Principal::new("1".into(), Role::Admin).unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_whose_event_cannot_be_committed_is_refused_with_503_and_serves_nothing() {
    // Arrange: an auditor on its own PostgreSQL database, answering reads.
    let store = auditlog_store::testing::fresh_postgres_url().await;
    let (_tmp, dir) = data_dir();
    let auditor = Running::start(&auditor_args(store.url(), &[]), &dir, 1);
    let mut client = Client::new(&auditor.urls.auditor);
    client.token = Some(admin_token(&dir));
    let path = "/events/on/users/1";
    assert_eq!(client.get(path).await.status, 200, "reads work at first");
    let recorded_before = count(store.url(), "SELECT count(*) FROM audit_events");
    assert_eq!(recorded_before, 1, "the first read was recorded");

    // The database turns read-only, as a demoted primary does: new sessions
    // cannot write, reading works on. The auditor's open sessions are cut, so
    // that its pool reconnects into read-only sessions.
    let database = store.url().rsplit('/').next().unwrap().to_owned();
    let admin_url = std::env::var("AUDITLOG_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    psql(
        &admin_url,
        &format!("ALTER DATABASE \"{database}\" SET default_transaction_read_only = on"),
    );
    psql(
        &admin_url,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{database}'"
        ),
    );

    // Act
    let refused = client.get(path).await;

    // Assert: 503 as a JSON:API error document, and not one event served.
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.content_type, common::JSON_API);
    assert_eq!(
        refused.body["errors"][0]["status"], "503",
        "{}",
        refused.body
    );
    assert!(
        refused.body.get("data").is_none(),
        "nothing is served: {}",
        refused.body
    );
    assert_eq!(
        count(store.url(), "SELECT count(*) FROM audit_events"),
        recorded_before,
        "the refused read left no record"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_sigkill_during_a_read_burst_every_answered_read_has_its_event() {
    const READERS: usize = 16;
    const ANSWERED_BEFORE_KILL: usize = 2_000;
    // Arrange: an auditor on SQLite (the default), read by 16 clients at once.
    let (_tmp, dir) = data_dir();
    let auditor = Running::start(&["auditor", "--auditor-addr", "127.0.0.1:0"], &dir, 1);
    let token = admin_token(&dir);
    let http = reqwest::Client::new();
    let url = format!("{}/events/by/users/1?page[size]=1", auditor.urls.auditor);
    // The request id of every answered read: the answer's `X-Request-Id`, which
    // its `audit.read` event carries as `requestId`.
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let running = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            let (answered, running) = (answered.clone(), running.clone());
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    let Ok(response) = http.get(&url).bearer_auth(&token).send().await else {
                        continue;
                    };
                    let request_id = response
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    // Answered means the whole page arrived with a 200.
                    if response.status().as_u16() == 200
                        && response.bytes().await.is_ok()
                        && let Some(request_id) = request_id
                    {
                        answered.lock().unwrap().push(request_id);
                    }
                }
            })
        })
        .collect();

    // Act: SIGKILL while the 16 readers are mid-burst.
    wait_until(
        Duration::from_secs(120),
        "the readers to be answered a while",
        || answered.lock().unwrap().len() >= ANSWERED_BEFORE_KILL,
    )
    .await;
    auditor.kill();
    running.store(false, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }

    // Assert: each answered read's request id is among the stored `audit.read` events.
    let store_url = format!("sqlite://{}", dir.join("audit.db").display());
    let store = auditlog_store::open(&store_url).await.unwrap();
    let recorded = recorded_request_ids(&*store).await;
    let answered = answered.lock().unwrap().clone();
    let missing: Vec<&String> = answered
        .iter()
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(answered.len() >= ANSWERED_BEFORE_KILL);
    assert!(
        missing.is_empty(),
        "{} of {} answered reads have no audit.read event, e.g. {:?}",
        missing.len(),
        answered.len(),
        missing.first()
    );
}

/// The `requestId` of every `audit.read` event in `store`.
async fn recorded_request_ids(store: &dyn auditlog_store::AuditStore) -> HashSet<String> {
    let mut query = EventQuery {
        event_names: vec!["audit.read".into()],
        page_size: 1_000,
        order: Order::OldestFirst,
        ..EventQuery::default()
    };
    let mut ids = HashSet::new();
    loop {
        let page = store.query(&query).await.unwrap();
        for stored in &page.events {
            let event: serde_json::Value = serde_json::from_str(&stored.body).unwrap();
            if let Some(id) = event["requestId"].as_str() {
                ids.insert(id.to_owned());
            }
        }
        match page.next {
            Some(cursor) => query.after = Some(cursor),
            None => return ids,
        }
    }
}
