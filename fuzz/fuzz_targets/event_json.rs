//! One event's JSON text through `DataEvent::parse_json`, as every transport does.
//! An accepted event must also survive its own round trip: what it serialises to
//! parses back to the same event (that is what the store keeps and serves).
#![no_main]

use auditlog_event::{DataEvent, MAX_EVENT_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Every transport rejects invalid UTF-8 before decoding.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(event) = DataEvent::parse_json(text, 1_700_000_000_000) else {
        return;
    };
    let json = event.to_json();
    // Numbers in `meta` may serialise longer than they were sent (`1e9`), so an
    // event near the limit may not fit again; that is not a decoding bug.
    if json.len() <= MAX_EVENT_BYTES {
        let again = DataEvent::parse_json(&json, 0)
            .unwrap_or_else(|e| panic!("an accepted event does not parse back: {e}\n{json}"));
        assert_eq!(event, again, "the event changed in its round trip");
    }
});
