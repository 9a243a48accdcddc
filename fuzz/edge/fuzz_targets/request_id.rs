//! The request-id rule: a client's `X-Request-Id` is kept exactly when there is one
//! and it is 1 to 128 visible ASCII characters, and what is kept is what was sent.
#![no_main]

#[path = "../../../crates/auditlog-http/src/sane_id.rs"]
mod sane_id;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The input is one header value, or several separated by NUL (which a header
    // value cannot hold).
    let values: Vec<&[u8]> = data.split(|b| *b == 0).collect();
    let expected = match values.as_slice() {
        [one] => (1..=sane_id::MAX_CHARS).contains(&one.len())
            && one.iter().all(|b| (b'!'..=b'~').contains(b)),
        _ => false,
    };
    match sane_id::client_id(values.iter().copied()) {
        Some(id) => {
            assert!(expected, "{data:?} was kept");
            assert_eq!(id.as_bytes(), data);
        }
        None => assert!(!expected, "{data:?} was refused"),
    }
});
