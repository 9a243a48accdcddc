//! `auditlog emit` and `auditlog query` as a script uses them, against the real
//! binary: events emitted over HTTP and over RabbitMQ are stored and found again,
//! invalid ones are refused naming the field before anything is sent, queries
//! follow pages up to `--limit`, and every subcommand's `--help` shows examples.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use auditlog_auth::{KeyPair, Principal, Role, TokenIssuer};
use common::{Running, data_dir};
use serde_json::{Value, json};

/// Settings a developer's shell might hold; each test says what it means instead.
const AMBIENT: [&str; 8] = [
    "AUDITLOG_CONFIG",
    "AUDITLOG_TOKEN",
    "AUDITLOG_DATA_DIR",
    "AUDITLOG_API_URL",
    "AUDITLOG_AUDITOR_URL",
    "AUDITLOG_AMQP_URL",
    "AUDITLOG_AMQP_EXCHANGE",
    "AUDITLOG_AMQP_QUEUE",
];

/// Runs `auditlog ARGS`, feeding `stdin`, and waits for it.
fn auditlog_with_input(args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(common::binary());
    command
        .args(args)
        .env("AUDITLOG_LOG", "warn,lapin=off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in AMBIENT {
        command.env_remove(name);
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn auditlog(args: &[&str]) -> Output {
    auditlog_with_input(args, "")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success and returns standard output.
fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// jemalloc serves the whole process, C code included: its unprefixed build reads
/// `MALLOC_CONF` (glibc's allocator ignores it) and, asked to, prints its
/// statistics at exit.
#[cfg(target_os = "linux")]
#[test]
fn the_binary_allocates_with_jemalloc_c_code_included() {
    let output = Command::new(common::binary())
        .arg("--version")
        .env("MALLOC_CONF", "stats_print:true")
        .output()
        .unwrap();
    succeeded(&output);
    assert!(
        stderr(&output).contains("jemalloc statistics"),
        "no jemalloc statistics at exit: {}",
        stderr(&output)
    );
}

#[test]
fn the_primary_api_command_answers_to_its_full_name_too() {
    let short = succeeded(&auditlog(&["api", "--help"]));
    let full = succeeded(&auditlog(&["primary-api", "--help"]));

    for help in [short, full] {
        assert!(help.contains("Run the primary API alone"), "{help}");
        assert!(help.contains("--api-addr"), "{help}");
    }
}

/// The NDJSON lines of an output as events.
fn events(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A token signed with the data directory's key, as the services' own tokens are.
fn token(data_dir: &Path, subject: &str, role: Role) -> String {
    let pair = KeyPair::load(data_dir).unwrap().unwrap();
    TokenIssuer::new(&pair)
        .unwrap()
        .issue(&Principal::new(subject.into(), role).unwrap())
        .unwrap()
}

#[tokio::test]
async fn an_event_emitted_over_http_is_found_by_query_as_table_and_json() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let dir_text = dir.to_str().unwrap();

    let emitted = auditlog(&[
        "emit",
        "--auditor-url",
        &system.urls.auditor,
        "--data-dir",
        dir_text,
        "--action",
        "changed",
        "--actor",
        "users:1",
        "--target",
        "users:2",
        "--change",
        "email=a@x,b@x",
        "--event-name",
        "user.email.changed",
        "--meta",
        "ip=10.0.0.1",
    ]);
    let id = succeeded(&emitted).trim().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    let reader = ["--api-url", &system.urls.api, "--as-user", "1"];
    let query = |format: Option<&str>| {
        let mut args = vec!["query", "--target", "users:2"];
        args.extend(reader);
        if let Some(format) = format {
            args.extend(["--format", format]);
        }
        succeeded(&auditlog(&args))
    };

    let found = events(&query(Some("json")));
    assert_eq!(found.len(), 1, "{found:?}");
    let event = &found[0];
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["action"], "changed");
    assert_eq!(event["actorType"], "users");
    assert_eq!(event["actorId"], 1);
    assert_eq!(event["targetId"], 2);
    assert_eq!(
        event["changes"],
        json!({"email": {"prev": "a@x", "next": "b@x"}})
    );
    assert_eq!(event["eventName"], "user.email.changed");
    assert_eq!(event["meta"], json!({"ip": "10.0.0.1"}));
    assert_eq!(event["source"], "cli");

    // In a pipe the default is NDJSON.
    assert_eq!(events(&query(None)), found);

    let table = query(Some("table"));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["TIME", "ACTION", "ACTOR", "TARGET", "CHANGES"]);
    let cells: Vec<&str> = lines[1].splitn(5, "  ").map(str::trim).collect();
    assert!(cells[0].ends_with('Z') && cells[0].contains('T'), "{table}");
    assert!(lines[1].contains("changed"), "{table}");
    assert!(lines[1].contains("users:1"), "{table}");
    assert!(lines[1].contains("users:2"), "{table}");
    assert!(lines[1].ends_with("email: a@x → b@x"), "{table}");
    let changes_column = lines[0].find("CHANGES").unwrap();
    assert_eq!(
        lines[1].get(changes_column..),
        Some("email: a@x → b@x"),
        "the summary sits under its header\n{table}"
    );
}

#[tokio::test]
async fn an_event_given_as_json_on_stdin_is_stored_once_under_its_own_id() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let admin = token(&dir, "1", Role::Admin);
    let id = "0190b0a0-0000-7000-8000-00000000c11a";
    let event = json!({
        "id": id, "action": "deleted", "actorType": "users", "actorId": 1,
        "targetType": "notes", "targetId": "7",
        "changes": {"text": {"prev": "hello", "next": null}},
    })
    .to_string();
    let emit = [
        "emit",
        "--auditor-url",
        &system.urls.auditor,
        "--token",
        &admin,
        "--json",
        "-",
    ];
    assert_eq!(succeeded(&auditlog_with_input(&emit, &event)).trim(), id);
    // A retry of the same event is harmless: it is kept once.
    let again = auditlog_with_input(&emit, &event);
    assert_eq!(succeeded(&again).trim(), id);
    assert!(
        stderr(&again).contains("already stored"),
        "{}",
        stderr(&again)
    );

    let found = events(&succeeded(&auditlog(&[
        "query",
        "--api-url",
        &system.urls.auditor,
        "--token",
        &admin,
        "--target",
        "notes:7",
    ])));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], id);
    assert_eq!(found[0]["changes"]["text"]["prev"], "hello");
}

#[tokio::test]
async fn emitting_needs_a_service_or_admin_token() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let member = token(&dir, "2", Role::User);
    let refused = auditlog(&[
        "emit",
        "--auditor-url",
        &system.urls.auditor,
        "--token",
        &member,
        "--action",
        "viewed",
        "--actor",
        "users:2",
        "--target",
        "users:2",
    ]);
    assert!(!refused.status.success());
    assert!(stdout(&refused).is_empty());
    assert!(
        stderr(&refused).contains("403") && stderr(&refused).contains("service or admin token"),
        "{}",
        stderr(&refused)
    );

    // Without --token and without a key in --data-dir there is nothing to sign with.
    let empty = tempfile::tempdir().unwrap();
    let keyless = auditlog(&[
        "emit",
        "--auditor-url",
        &system.urls.auditor,
        "--data-dir",
        empty.path().to_str().unwrap(),
        "--action",
        "viewed",
        "--actor",
        "users:2",
        "--target",
        "users:2",
    ]);
    assert!(!keyless.status.success());
    assert!(
        stderr(&keyless).contains("no token: give --token"),
        "{}",
        stderr(&keyless)
    );
    assert!(
        !KeyPair::path_in(empty.path()).exists(),
        "no key was created"
    );
}

/// `GET {base}{path}` with `token`: the status and the JSON body.
async fn get_with(base: &str, path: &str, token: &str) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_minted_token_reads_as_its_role_where_demo_tokens_are_off() {
    let (_tmp, dir) = data_dir();
    let system = Running::up_with(&dir, &["--dev-tokens=false"]);
    let demo = reqwest::get(format!("{}/tokens/1", system.urls.api))
        .await
        .unwrap();
    assert_eq!(demo.status().as_u16(), 404, "demo tokens are off");
    let dir_text = dir.to_str().unwrap();

    let admin = succeeded(&auditlog(&[
        "token",
        "--data-dir",
        dir_text,
        "--subject",
        "1",
        "--role",
        "operator",
    ]));
    let member = succeeded(&auditlog(&[
        "token",
        "--data-dir",
        dir_text,
        "--subject",
        "2",
        "--role",
        "member",
        "--ttl",
        "2h",
    ]));

    // Standard output is the token and nothing else.
    let admin = admin.strip_suffix('\n').unwrap();
    assert_eq!(admin.split('.').count(), 3, "{admin}");
    assert!(!admin.contains(char::is_whitespace), "{admin}");
    let (status, body) = get_with(&system.urls.auditor, "/api/producers", admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"].is_array(), "{body}");
    let (status, body) = get_with(&system.urls.auditor, "/api/producers", member.trim()).await;
    assert_eq!(status, 403, "{body}");
    // The admin's read of /api/producers was recorded as theirs.
    let listed = succeeded(&auditlog(&[
        "query",
        "--api-url",
        &system.urls.api,
        "--token",
        admin,
        "--event-name",
        "audit.read",
        "--format",
        "json",
    ]));
    let reads = events(&listed);
    assert!(
        reads
            .iter()
            .any(|e| e["actorId"] == 1 && e["meta"]["path"] == "/api/producers"),
        "{listed}"
    );
}

#[test]
fn minting_a_token_without_a_key_fails_naming_the_directory_and_creates_nothing() {
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("not-started-yet");
    let output = auditlog(&[
        "token",
        "--data-dir",
        missing.to_str().unwrap(),
        "--subject",
        "1",
        "--role",
        "admin",
    ]);

    assert!(!output.status.success());
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains(missing.to_str().unwrap()) && message.contains("first start"),
        "{message}"
    );
    assert!(!missing.exists(), "the directory was created");
    let keyless = auditlog(&[
        "token",
        "--data-dir",
        empty.path().to_str().unwrap(),
        "--subject",
        "1",
        "--role",
        "admin",
    ]);
    assert!(!keyless.status.success());
    assert_eq!(
        std::fs::read_dir(empty.path()).unwrap().count(),
        0,
        "an existing directory without a key is left empty"
    );
}

#[test]
fn an_invalid_event_is_refused_naming_the_field_before_anything_is_sent() {
    // Nothing listens there: a refusal must come from the local check.
    let nowhere = "http://127.0.0.1:9";
    let long_name = "n".repeat(129);
    let base = ["emit", "--auditor-url", nowhere, "--token", "unused"];
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec![
                "--action", "exploded", "--actor", "users:1", "--target", "users:2",
            ],
            "`action`",
            "--action",
        ),
        (
            vec![
                "--action", "changed", "--actor", "users:1", "--target", "users:2",
            ],
            "`changes`",
            "--change",
        ),
        (
            vec![
                "--action", "viewed", "--actor", "users:1", "--target", "users:",
            ],
            "`targetId`",
            "--target",
        ),
        (
            vec![
                "--action",
                "viewed",
                "--actor",
                "users:1",
                "--target",
                "users:2",
                "--event-name",
                &long_name,
            ],
            "`eventName`",
            "--event-name",
        ),
        (
            vec![
                "--action", "viewed", "--actor", "users", "--target", "users:2",
            ],
            "--actor takes TYPE:ID",
            "--actor",
        ),
        (
            vec![
                "--json",
                r#"{"action":"viewed","actorType":"users","actorId":1,"targetType":"users"}"#,
            ],
            "`targetId`",
            "",
        ),
    ];
    for (flags, field, flag) in cases {
        let mut args = base.to_vec();
        args.extend(&flags);
        let output = auditlog(&args);
        let message = stderr(&output);
        assert!(!output.status.success(), "{flags:?} was accepted");
        assert!(stdout(&output).is_empty(), "{flags:?}");
        assert!(message.contains(field), "{flags:?}: {message}");
        assert!(message.contains(flag), "{flags:?}: {message}");
        assert!(
            !message.contains("while sending"),
            "{flags:?} was sent: {message}"
        );
    }

    let mut from_stdin = base.to_vec();
    from_stdin.extend(["--json", "-"]);
    let output = auditlog_with_input(
        &from_stdin,
        r#"{"action":"viewed","actorType":"u","actorId":1,"targetType":"t","targetId":1,"colour":"red"}"#,
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("`colour`"), "{}", stderr(&output));

    // The flags that describe an event are required unless --json gives it whole.
    let missing = auditlog(&["emit", "--auditor-url", nowhere, "--action", "viewed"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("--actor"), "{}", stderr(&missing));
}

#[tokio::test]
async fn an_event_published_over_rabbitmq_is_stored_by_the_auditor() {
    let (_tmp, dir) = data_dir();
    let amqp = common::PrivateAmqp::new();
    let flags = amqp.flags();
    let mut auditor_args = vec!["auditor", "--auditor-addr", "127.0.0.1:0"];
    auditor_args.extend(flags.iter().map(String::as_str));
    let auditor = Running::start(&auditor_args, &dir, 1);

    let emit = vec![
        "emit",
        "--action",
        "created",
        "--actor",
        "users:1",
        "--target",
        "users:7",
        "--change",
        "email=ann@example.com",
        "--amqp-url",
        &amqp.url,
        "--amqp-exchange",
        &amqp.exchange,
    ];
    let mut to_the_auditor = emit.clone();
    to_the_auditor.extend(["--amqp-queue", &amqp.queue]);
    let published = auditlog(&to_the_auditor);
    let id = succeeded(&published).trim().to_owned();
    assert!(
        stderr(&published).contains(&amqp.queue),
        "{}",
        stderr(&published)
    );

    let admin = token(&dir, "1", Role::Admin);
    let query = [
        "query",
        "--api-url",
        &auditor.urls.auditor,
        "--token",
        &admin,
        "--target",
        "users:7",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let found = events(&succeeded(&auditlog(&query)));
        if !found.is_empty() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the published event was not stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], id.as_str());
    assert_eq!(
        found[0]["changes"],
        json!({"email": {"prev": null, "next": "ann@example.com"}})
    );

    // With no queue behind the exchange the broker would drop the event: refused.
    let mut unheard = emit.clone();
    let orphan = format!("{}-nobody", amqp.queue);
    unheard.extend(["--amqp-queue", &orphan]);
    let refused = auditlog(&unheard);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("Nothing was published"),
        "{}",
        stderr(&refused)
    );

    assert!(auditor.terminate().success());
}

#[tokio::test]
async fn query_follows_pages_up_to_the_limit_and_filters_by_time() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let admin = token(&dir, "1", Role::Admin);
    const FIRST: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z
    let batch: String = (0..7)
        .map(|i| {
            format!(
                "{}\n",
                json!({"action": "viewed", "actorType": "users", "actorId": 1,
                       "targetType": "reports", "targetId": "paged", "timestamp": FIRST + i * 1000})
            )
        })
        .collect();
    let stored = reqwest::Client::new()
        .post(format!("{}/api/data-events", system.urls.auditor))
        .bearer_auth(&admin)
        .header("content-type", "application/x-ndjson")
        .body(batch)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status().as_u16(), 200);

    let query = |extra: &[&str]| {
        let mut args = vec![
            "query",
            "--api-url",
            &system.urls.api,
            "--token",
            &admin,
            "--target",
            "reports:paged",
            "--format",
            "json",
        ];
        args.extend(extra);
        auditlog(&args)
    };
    let offsets = |output: &Output| -> Vec<i64> {
        events(&succeeded(output))
            .iter()
            .map(|e| (e["timestamp"].as_i64().unwrap() - FIRST) / 1000)
            .collect()
    };

    // Pages of 2: the first five need three pages.
    let limited = query(&["--limit", "5", "--page-size", "2"]);
    assert_eq!(offsets(&limited), [6, 5, 4, 3, 2]);
    assert!(
        stderr(&limited).contains("raise --limit"),
        "{}",
        stderr(&limited)
    );
    let everything = query(&["--limit", "100", "--page-size", "2"]);
    assert_eq!(offsets(&everything), [6, 5, 4, 3, 2, 1, 0]);
    assert!(!stderr(&everything).contains("raise --limit"));

    let since = query(&["--since", "2023-11-14T22:13:23Z", "--oldest-first"]);
    assert_eq!(offsets(&since), [3, 4, 5, 6]);
    let until = query(&["--until", "1700000002000"]);
    assert_eq!(offsets(&until), [1, 0]);
    let unreadable = query(&["--since", "last tuesday"]);
    assert!(!unreadable.status.success());
    assert!(
        stderr(&unreadable).contains("RFC 3339"),
        "{}",
        stderr(&unreadable)
    );
}

/// The subcommands listed under `Commands:` in a help text.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_subcommands_help_shows_examples() {
    let top = succeeded(&auditlog(&["--help"]));
    let mut pending: Vec<Vec<String>> = subcommands(&top).into_iter().map(|c| vec![c]).collect();
    assert!(pending.len() >= 8, "{top}");
    let mut checked = 0;
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = succeeded(&auditlog(&args));
        assert!(
            help.contains("Example"),
            "`auditlog {}` has no example\n{help}",
            path.join(" ")
        );
        for child in subcommands(&help) {
            let mut deeper = path.clone();
            deeper.push(child);
            pending.push(deeper);
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} subcommands were checked");
}
