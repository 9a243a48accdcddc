//! One event's leaf: the canonical UTF-8 JSON of the stored event, every field any
//! answer serves or any filter reads. It is the event's stored JSON (the producer's
//! fields as the auditor serialised them: id, action, actor, target, timestamp,
//! changes, eventName, source, requestId, meta, producerId, producerSeq) with the two
//! fields the store adds appended: `seq`, the event's place in commit order, and
//! `receivedAt`, when the auditor committed it (ms). Every indexed column of a row
//! is derived from these bytes, so a column that disagrees with its leaf is found.

/// The largest leaf: tlog-tiles entry bundles prefix each entry with two bytes.
pub const MAX_LEAF_BYTES: usize = 65_535;

/// The leaf of a stored event: `body` (a JSON object) with `"seq"` and
/// `"receivedAt"` appended as its last members.
pub fn leaf_bytes(body: &str, seq: i64, received_at: i64) -> String {
    let body = body.trim_end();
    let open = body.strip_suffix('}').unwrap_or(body);
    let separator = if open.trim_end().ends_with('{') {
        ""
    } else {
        ","
    };
    format!("{open}{separator}\"seq\":{seq},\"receivedAt\":{received_at}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_fields_are_appended_to_the_event() {
        assert_eq!(
            leaf_bytes(r#"{"id":"x","action":"viewed"}"#, 7, 1_700),
            r#"{"id":"x","action":"viewed","seq":7,"receivedAt":1700}"#
        );
        assert_eq!(leaf_bytes("{}", 1, 2), r#"{"seq":1,"receivedAt":2}"#);
    }
}
