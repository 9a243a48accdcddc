//! `auditlog bench api` as a person runs it: both configurations are measured
//! against real `auditlog up` processes, the audited one reports when the last
//! event its load caused was stored, and each reports where its CPU time went.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

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
