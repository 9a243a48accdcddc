//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the same
//! decoding the fuzz targets drive (`fuzz/fuzz_targets/*.rs`), so that every input
//! fuzzing found interesting, and every crash it ever found, stays covered in CI
//! without nightly or cargo-fuzz. Each input must return, not panic; the targets'
//! own properties (an accepted event or query survives its round trip) hold too.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use auditlog_event::{DataEvent, MAX_EVENT_BYTES};
use serde_json::value::RawValue;

const NOW: i64 = 1_700_000_000_000;

/// Replays one input (its bytes and file name) as a fuzz target does.
type Replay = fn(&[u8], &str);

/// `fuzz_targets/event_json.rs`.
fn event_json(data: &[u8], name: &str) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = DataEvent::parse_json(text, NOW);
    if name.starts_with("valid_") {
        assert!(parsed.is_ok(), "{name} is named valid: {:?}", parsed.err());
    }
    let Ok(event) = parsed else {
        return;
    };
    let json = event.to_json();
    if json.len() <= MAX_EVENT_BYTES {
        let again = DataEvent::parse_json(&json, 0)
            .unwrap_or_else(|e| panic!("{name}: an accepted event does not parse back: {e}"));
        assert_eq!(event, again, "{name}: the event changed in its round trip");
    }
}

/// `fuzz_targets/event_batch.rs`: the AMQP consumer's body, then NDJSON lines.
fn event_batch(data: &[u8], _name: &str) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let items: Vec<&RawValue> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).unwrap_or_default()
    } else {
        serde_json::from_str::<&RawValue>(text).map_or_else(|_| Vec::new(), |item| vec![item])
    };
    for item in items {
        let _ = DataEvent::parse_json(item.get(), NOW);
    }
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let _ = DataEvent::parse_json(line, NOW);
    }
}

/// `fuzz_targets/query_params.rs`.
fn query_params(data: &[u8], name: &str) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(query) = auditlog_auditor::parse_query_string(text) else {
        return;
    };
    let params: BTreeMap<String, String> = serde_urlencoded::from_str(text).unwrap();
    let again = serde_urlencoded::to_string(&params).unwrap();
    assert_eq!(
        auditlog_auditor::parse_query_string(&again).as_ref(),
        Ok(&query),
        "{name}: the query reads differently once encoded again: {again}"
    );
}

/// `edge/fuzz_targets/csv_cell.rs`.
fn csv_cell(data: &[u8], name: &str) {
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    auditlog_http::csv::write_cell(&text, &mut out);
    let field = std::str::from_utf8(&out).unwrap();
    assert!(
        auditlog_http::csv::is_safe_encoding_of(&text, field),
        "{name}: {text:?} was written as {field:?}"
    );
}

/// `fuzz_targets/request_id.rs`.
fn request_id(data: &[u8], name: &str) {
    use auditlog_http::request_id::{MAX_REQUEST_ID_CHARS, REQUEST_ID_HEADER};
    let Ok(value) = axum::http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(REQUEST_ID_HEADER, value);
    let sane =
        (1..=MAX_REQUEST_ID_CHARS).contains(&data.len()) && data.iter().all(u8::is_ascii_graphic);
    let kept = auditlog_http::RequestId::from_client(&headers);
    assert_eq!(kept.is_some(), sane, "{name}");
    if let Some(id) = kept {
        assert_eq!(id.as_str().as_bytes(), data, "{name}");
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

/// The corpus of the HTTP edge's targets (`fuzz/edge`).
fn edge_corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/edge/corpus")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_returns() {
    replay_all(
        &corpus_dir(),
        &[
            ("event_json", event_json),
            ("event_batch", event_batch),
            ("query_params", query_params),
        ],
    );
}

#[test]
fn every_edge_corpus_input_keeps_its_property() {
    replay_all(
        &edge_corpus_dir(),
        &[("csv_cell", csv_cell), ("request_id", request_id)],
    );
}

/// Replays every input under `root/<target>` through its target.
fn replay_all(root: &Path, targets: &[(&str, Replay)]) {
    // A corpus directory nobody replays would be dead weight: refuse it.
    for entry in std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("the fuzz corpus {} is missing: {e}", root.display()))
    {
        let name = entry.unwrap().file_name();
        let name = name.to_string_lossy();
        assert!(
            targets.iter().any(|(target, _)| *target == name),
            "fuzz/corpus/{name} belongs to no target this test replays"
        );
    }
    for &(target, replay) in targets {
        let inputs = files(&root.join(target));
        assert!(!inputs.is_empty(), "fuzz/corpus/{target} is empty");
        for path in inputs {
            let data = std::fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            replay(&data, &name);
        }
    }
}
