//! A message body as the AMQP consumer and HTTP NDJSON ingest read it: a JSON array
//! of events (each kept raw, then parsed alone), one event, or one event per line.
#![no_main]

use auditlog_event::DataEvent;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = 1_700_000_000_000;
    // The AMQP consumer: an array of raw items, or one item.
    let items: Vec<&RawValue> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).unwrap_or_default()
    } else {
        serde_json::from_str::<&RawValue>(text).map_or_else(|_| Vec::new(), |item| vec![item])
    };
    for item in items {
        let _ = DataEvent::parse_json(item.get(), now);
    }
    // HTTP ingest of application/x-ndjson: one event per non-blank line.
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let _ = DataEvent::parse_json(line, now);
    }
});
