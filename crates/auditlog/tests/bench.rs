//! `auditlog bench api` and `bench query --http` as a person runs them. `bench
//! api` measures both configurations against real `auditlog up` processes, the
//! audited one reports when the last event its load caused was stored, and each
//! reports where its CPU time went; `bench query --http` asks every shape of real
//! `auditlog auditor` and `auditlog api` processes and counts the reads recorded.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::process::Command;

use serde_json::Value;

#[test]
fn bench_api_measures_with_and_without_auditing_and_when_every_event_was_stored() {
    let output = Command::new(common::binary())
        .args([
            "bench",
            "api",
            "--duration",
            "1",
            "--connections",
            "4",
            "--json",
        ])
        .env_remove("AUDITLOG_AUDITOR_PRIORITY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let scenario = |name: &str| {
        report["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} scenario in {report}"))
            .clone()
    };
    let (off, embedded) = (scenario("off"), scenario("embedded"));
    for measured in [&off, &embedded] {
        assert!(measured["requests"].as_u64().unwrap() > 0, "{measured}");
        assert_eq!(measured["errors"], 0, "{measured}");
    }
    // Nothing is stored without auditing; with it, every event was, and when.
    assert!(off["all_stored_after_ms"].is_null(), "{off}");
    assert!(
        embedded["all_stored_after_ms"].as_f64().unwrap() >= 0.0,
        "{embedded}"
    );
    assert!(
        report["audited_to_unaudited"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    // Where the CPU went: the API and the load generator worked in both; only the
    // audited run has an auditor storing its events, on threads that yield.
    let cpu = |measured: &Value, part: &str| {
        measured["cpu_us_per_request"][part]
            .as_f64()
            .unwrap_or_else(|| panic!("no CPU time for {part} in {measured}"))
    };
    for measured in [&off, &embedded] {
        assert!(cpu(measured, "api") > 0.0, "{measured}");
        assert!(cpu(measured, "load_generator") > 0.0, "{measured}");
    }
    assert!(
        cpu(&embedded, "auditor") > cpu(&off, "auditor") + 1.0,
        "storing an event per request costs the auditor more than a µs each: {off} {embedded}"
    );
}

/// The prototype's producers' shape, measured: one event per message and no id,
/// through a real RabbitMQ into a spawned `auditlog auditor` at its defaults.
/// Every event is found by the id the auditor derives from its message.
#[test]
fn bench_ingest_measures_single_event_messages_as_the_prototype_sends_them() {
    let amqp_url = std::env::var("AUDITLOG_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let output = Command::new(common::binary())
        .args([
            "bench",
            "ingest",
            "--events",
            "20000",
            "--producers",
            "2",
            "--message-format",
            "single",
            "--amqp-url",
            &amqp_url,
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["message_format"], "single", "{report}");
    assert_eq!(report["transport"], "rabbitmq", "{report}");
    assert_eq!(
        (report["lost"].as_u64(), report["duplicated"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
    assert!(report["stored_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["tree_caught_up"], true, "{report}");
    assert_eq!(report["checkpoint_lag_samples"], 20_000, "{report}");
}

#[test]
fn bench_ingest_refuses_single_event_messages_without_rabbitmq() {
    let output = Command::new(common::binary())
        .args([
            "bench",
            "ingest",
            "--events",
            "10",
            "--message-format",
            "single",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--message-format single needs --amqp-url"),
        "{stderr}"
    );
}

#[test]
fn bench_query_http_asks_every_shape_of_the_auditor_and_the_proxy_and_counts_every_read_recorded() {
    let output = Command::new(common::binary())
        .args([
            "bench",
            "query",
            "--events",
            "2000",
            "--samples",
            "5",
            "--http",
            "--http-clients",
            "1,2",
            "--http-duration",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let http = &report["http"];
    let cells = http["cells"].as_array().unwrap();

    // The store alone and 2 services × 5 shapes × 2 numbers of clients, each
    // with answers.
    assert_eq!(cells.len(), 30, "{http}");
    for via in ["store", "auditor", "proxy"] {
        for clients in [1, 2] {
            let shapes = cells
                .iter()
                .filter(|c| c["via"] == via && c["clients"] == clients)
                .count();
            assert_eq!(shapes, 5, "{via} at {clients} clients: {http}");
        }
    }
    for cell in cells {
        assert!(cell["requests"].as_u64().unwrap() > 0, "{cell}");
        assert_eq!(cell["errors"], 0, "{cell}");
        let cpu = &cell["cpu_us_per_request"];
        assert!(cpu["clients"].as_f64().unwrap() > 0.0, "{cell}");
        if cell["via"] == "store" {
            // The services were not running yet.
            assert_eq!(cpu["auditor"].as_f64().unwrap(), 0.0, "{cell}");
        } else {
            assert!(cpu["auditor"].as_f64().unwrap() > 0.0, "{cell}");
        }
    }
    // The store alone records nothing: only the services' answers have events.
    let answered = http["answered_reads"].as_u64().unwrap();
    assert!(answered > 0);
    assert_eq!(http["recorded_reads"].as_u64().unwrap(), answered, "{http}");
}
