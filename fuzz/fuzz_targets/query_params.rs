//! A query string of `GET /api/data-events`, decoded and read as the route does.
//! An accepted query must read the same once its parameters are encoded again, as
//! they are in `links.next`.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(query) = auditlog_auditor::parse_query_string(text) else {
        return;
    };
    let params: BTreeMap<String, String> =
        serde_urlencoded::from_str(text).expect("an accepted query string decodes");
    let again = serde_urlencoded::to_string(&params).expect("string pairs encode");
    assert_eq!(
        auditlog_auditor::parse_query_string(&again).as_ref(),
        Ok(&query),
        "the query reads differently once encoded again: {again}"
    );
});
