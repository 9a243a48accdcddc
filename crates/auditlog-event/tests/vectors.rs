//! The shared validation vectors (`sdks/vectors/events.json`): every case gets the
//! verdict and the field at fault it records. The Node and Python SDKs run the same
//! file, so the three implementations of the contract cannot drift apart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use auditlog_event::DataEvent;
use serde_json::Value;

/// Replaces every `{"$repeat": [text, n]}` with `text` repeated `n` times.
fn expand(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(args)) = map.get("$repeat")
                && map.len() == 1
            {
                let text = args[0].as_str().expect("$repeat text");
                let times = args[1].as_u64().expect("$repeat count") as usize;
                return Value::String(text.repeat(times));
            }
            Value::Object(map.into_iter().map(|(k, v)| (k, expand(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(expand).collect()),
        other => other,
    }
}

#[test]
fn every_shared_vector_gets_its_recorded_verdict_and_field() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../sdks/vectors/events.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() > 50, "the vectors file looks truncated");
    let mut failures = Vec::new();
    for case in vectors {
        let name = case["name"].as_str().unwrap();
        let text = serde_json::to_string(&expand(case["event"].clone())).unwrap();
        let outcome = DataEvent::parse_json(&text, 1_700_000_000_000);
        let expected_valid = case["valid"].as_bool().unwrap();
        let expected_field = case["field"].as_str();
        match (&outcome, expected_valid) {
            (Ok(_), true) => {}
            (Err(err), false) if err.field() == expected_field => {}
            _ => failures.push(format!(
                "{name}: expected valid={expected_valid} field={expected_field:?}, got {outcome:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
