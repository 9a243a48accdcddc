//! `auditlog prove` against a running `auditlog up`: the proof of a real event is
//! printed and verifies; against a key that is not the log's, it fails.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{Client, Running, binary, data_dir};

fn prove(api: &str, id: &str, extra: &[&str]) -> Output {
    Command::new(binary())
        .args(["prove", id, "--api-url", api, "--as-user", "1", "--json"])
        .args(extra)
        .env_remove("AUDITLOG_TOKEN")
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

#[tokio::test]
async fn prove_prints_and_checks_an_events_inclusion() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let admin = Client::new(&system.urls.api).login(1).await;
    // The seeded user's `created` event, once the outbox relay has delivered it.
    let created = common::created_on_user_1(&admin).await;
    let created = created
        .first()
        .expect("the seeded user's `created` event is stored within 10 s")["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut output = prove(&system.urls.api, &created, &[]);
    for _ in 0..100 {
        if output.status.success() {
            break;
        }
        // Not sealed yet: the sealer runs every 200 ms.
        tokio::time::sleep(Duration::from_millis(100)).await;
        output = prove(&system.urls.api, &created, &[]);
    }
    assert!(output.status.success(), "{}", describe(&output));
    let proof: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(proof["verified"], true);
    assert_eq!(proof["leaf"]["id"], created);
    assert_eq!(proof["leaf"]["action"], "created");
    assert!(proof["leaf"]["seq"].is_i64() && proof["leaf"]["receivedAt"].is_i64());

    // A key of another log: the checkpoint's signature is not its.
    let other = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let origin = proof["origin"].as_str().unwrap();
    let foreign = auditlog_tlog::Verifier::new(origin, other.verifying_key().to_bytes()).unwrap();
    let refused = prove(
        &system.urls.api,
        &created,
        &["--log-key", &foreign.to_string()],
    );
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not signed by"),
        "{}",
        describe(&refused)
    );
}
