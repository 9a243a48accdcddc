//! The primary API killed mid-burst and while it holds a spill backlog.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_primary_api_mid_burst_keeps_changes_and_events_one_to_one() {
    let store = auditlog_store::testing::fresh_postgres_url().await;
    let app_db = auditlog_store::testing::fresh_postgres_url().await;
    let amqp = PrivateAmqp::new();
    let flags = amqp.flags();
    let (_tmp, dir) = data_dir();
    let auditor = Running::start(&auditor_args(store.url(), &flags), &dir, 1);
    let mut api_args = vec![
        "api",
        "--api-addr",
        "127.0.0.1:0",
        "--app-db-url",
        app_db.url(),
        "--auditor-url",
        &auditor.urls.auditor,
    ];
    api_args.extend(flags.iter().map(String::as_str));
    let api = Running::start(&api_args, &dir, 1);
    let client = Client::new(&api.urls.api).login(1).await;

    let running = Arc::new(AtomicBool::new(true));
    let workers: Vec<_> = (0..16)
        .map(|worker| {
            let (client, running) = (client.clone(), running.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while running.load(Ordering::Relaxed) {
                    let email = format!("w{worker}-{n}@burst.example");
                    let body = user_doc(json!({"name": "Burst", "email": email}));
                    let request = client
                        .http
                        .post(format!("{}/api/users", client.base))
                        .bearer_auth(client.token.clone().unwrap())
                        .header("content-type", common::JSON_API)
                        .body(body.to_string());
                    // After the kill requests fail; that is expected.
                    let _ = request.send().await;
                    n += 1;
                }
            })
        })
        .collect();
    wait_until(
        Duration::from_secs(60),
        "a burst of committed users",
        || count(app_db.url(), "SELECT count(*) FROM users") >= 300,
    )
    .await;
    api.kill();
    running.store(false, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    // After the restart the relay publishes what the kill left in the outbox.
    let _api = Running::start(&api_args, &dir, 1);
    wait_until(Duration::from_secs(60), "the outbox to empty", || {
        count(app_db.url(), "SELECT count(*) FROM audit_outbox") == 0
    })
    .await;
    let committed: BTreeSet<String> = psql(app_db.url(), "SELECT id FROM users WHERE id <> 1")
        .lines()
        .map(str::to_owned)
        .collect();
    // The burst's: user 1's own `created`, by the system at the first start, is not.
    let created_sql = "SELECT target_id FROM audit_events \
                       WHERE action = 'created' AND target_type = 'users' AND actor_type = 'users'";
    wait_until(
        Duration::from_secs(60),
        "every created event to be stored",
        || psql(store.url(), created_sql).lines().count() >= committed.len(),
    )
    .await;
    let created: Vec<String> = psql(store.url(), created_sql)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(committed.len() >= 300);
    assert_eq!(
        created.len(),
        committed.len(),
        "one event per committed change"
    );
    assert_eq!(created.into_iter().collect::<BTreeSet<_>>(), committed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_api_killed_with_a_spill_backlog_delivers_what_it_spilled_exactly_once() {
    // Each list of the users records one `viewed` per user listed: many events
    // from few requests.
    const USERS: u64 = 200;
    let setup = Proxied::new().await;
    let (_auditor, api) = setup.start_services();
    let client = Client::new(&api.urls.api).login(1).await;
    for n in 1..USERS {
        let email = format!("u{n}@spill.example");
        let created = client
            .post(
                "/api/users",
                user_doc(json!({"name": "Listed", "email": email})),
            )
            .await;
        assert_eq!(created.status, 201);
    }
    // Before the outage everything arrives: each creation and its `viewed`.
    let viewed_sql = "SELECT count(*) FROM audit_events WHERE action = 'viewed'";
    let created_sql = "SELECT count(*) FROM audit_events WHERE action = 'created'";
    wait_until(
        Duration::from_secs(60),
        "the creations to be stored",
        || {
            count(setup.store.url(), viewed_sql) >= USERS - 1
                && count(setup.store.url(), created_sql) >= USERS
        },
    )
    .await;
    let viewed_before = count(setup.store.url(), viewed_sql);

    // The broker goes away: the API holds its events in memory, past the
    // spill's mark writes them to disk, and holds the newest in memory again.
    setup.proxy.set_down(true);
    let spill = setup.dir.join("spill").join("api");
    let mut acknowledged = 0;
    let mut lists_after_spill = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    while lists_after_spill < 50 {
        assert!(Instant::now() < deadline, "nothing was spilled");
        let listed = client.get("/api/users").await;
        assert_eq!(listed.status, 200, "no request failed");
        acknowledged += listed.body["data"].as_array().unwrap().len() as u64;
        let spilled_bytes = std::fs::metadata(spill.join("spill.ndjson")).map_or(0, |m| m.len());
        if spilled_bytes > 0 {
            lists_after_spill += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.kill();

    let spilled: BTreeSet<String> = spilled_ids(&spill).into_iter().collect();
    let in_memory = acknowledged - spilled.len() as u64;
    eprintln!(
        "at the kill: {acknowledged} `viewed` events acknowledged during the outage, \
         {} of them spilled, {in_memory} only in memory",
        spilled.len()
    );
    assert!(!spilled.is_empty() && in_memory > 0);

    // Restarted with the broker back, the API delivers what was spilled.
    setup.proxy.set_down(false);
    let _api = setup.start_api();
    let expected = viewed_before + spilled.len() as u64;
    wait_until(
        Duration::from_secs(120),
        "the spilled events to arrive",
        || count(setup.store.url(), viewed_sql) >= expected,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored: BTreeSet<String> = stored_ids(setup.store.url()).into_iter().collect();
    let missing = spilled.difference(&stored).count();
    assert_eq!(missing, 0, "every spilled event arrived");
    assert_eq!(
        count(setup.store.url(), viewed_sql),
        expected,
        "each spilled event stored once, and nothing that was only in memory"
    );
    let numbered_once = "SELECT count(DISTINCT (producer_id, producer_seq)) FROM audit_events \
                         WHERE action = 'viewed'";
    assert_eq!(
        count(setup.store.url(), numbered_once),
        expected,
        "no number twice"
    );
    // What the producers' report can see of the loss: the killed producer's holes
    // below the highest number stored (events lost above it leave no hole).
    let holes = count(
        setup.store.url(),
        "SELECT max(producer_seq) - count(*) FROM audit_events WHERE producer_id = \
         (SELECT producer_id FROM audit_events WHERE action = 'viewed' \
          ORDER BY seq DESC LIMIT 1)",
    );
    eprintln!(
        "after the restart: {} spilled events stored once, {in_memory} lost; \
         the killed producer shows {holes} missing in /api/producers",
        spilled.len()
    );
}
