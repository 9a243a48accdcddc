//! The indexed columns of `audit_events` as derived from an event: the one
//! definition the insert writes and `auditlog verify` checks a stored row against
//! (the leaf is the source of truth; the columns exist for the indexes), including
//! the integer object keys the SQLite store indexes actors and targets by.

use auditlog_event::DataEvent;

use crate::tree::EventRow;

/// Longest producer id the `producer_id` columns hold.
pub(crate) const MAX_PRODUCER_ID_CHARS: usize = 128;

/// The producer columns of an event: both or neither. Parsing already guarantees an
/// id of at most 128 characters with a number of 1 or more, but events built in code
/// skip parsing; a number the columns cannot hold (0, or above `i64::MAX`, the
/// largest BIGINT) or an id longer than the column would otherwise fail the whole
/// batch, or wrap and invent a gap. Such an event is stored (its body keeps what
/// was sent) but not counted as numbered.
pub(crate) fn numbering(event: &DataEvent) -> Option<(&str, i64)> {
    let id = event
        .producer_id
        .as_deref()
        .filter(|id| id.chars().count() <= MAX_PRODUCER_ID_CHARS)?;
    let seq = i64::try_from(event.producer_seq?)
        .ok()
        .filter(|seq| *seq >= 1)?;
    Some((id, seq))
}

/// The `tenant_id` column of an event: its tenant, or NULL for the default
/// tenant ([`auditlog_event::DEFAULT_TENANT`]), which every event of the
/// prototype's format and every row stored before tenants existed belong to, so
/// that those rows need no rewrite and queries of the default tenant read
/// `tenant_id IS NULL`.
pub fn tenant_column(event: &DataEvent) -> Option<&str> {
    event
        .tenant_id
        .as_deref()
        .filter(|tenant| *tenant != auditlog_event::DEFAULT_TENANT)
}

/// The 64-bit key of the object `object_type`/`id_key` (its [`auditlog_event::ObjectId::key`]
/// form): FNV-1a over the type, a NUL and the id. The SQLite store indexes actors
/// and targets by it, an 8-byte integer where the text pair took 20 to 300 bytes in
/// every index entry; two objects may share a key, so every query also compares the
/// type and id columns of the rows the index finds. The value is written to disk:
/// it must never change.
pub fn object_key(object_type: &str, id_key: &str) -> i64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = object_type
        .as_bytes()
        .iter()
        .chain(&[0])
        .chain(id_key.as_bytes());
    let hash = bytes.fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    });
    // The bits as SQLite's signed INTEGER holds them.
    hash as i64
}

/// Where a stored row's columns disagree with its body, as
/// `(column, stored value, value derived from the body)`; `Err` when the body is
/// not an event at all.
pub fn column_mismatches(row: &EventRow) -> Result<Vec<(&'static str, String, String)>, String> {
    let event = DataEvent::parse_stored(&row.body).map_err(|e| e.to_string())?;
    let (producer_id, producer_seq) = numbering(&event).unzip();
    let derived: [(&'static str, String, String); 10] = [
        ("id", row.id.to_string(), event.id.to_string()),
        (
            "action",
            row.action.clone(),
            event.action.as_str().to_owned(),
        ),
        (
            "timestamp",
            row.timestamp.to_string(),
            event.timestamp.to_string(),
        ),
        (
            "actor_type",
            row.actor_type.clone(),
            event.actor_type.as_str().to_owned(),
        ),
        ("actor_id", row.actor_id.clone(), event.actor_id.key()),
        (
            "target_type",
            row.target_type.clone(),
            event.target_type.as_str().to_owned(),
        ),
        ("target_id", row.target_id.clone(), event.target_id.key()),
        (
            "producer_id",
            format!("{:?}", row.producer_id),
            format!("{:?}", producer_id.map(str::to_owned)),
        ),
        (
            "producer_seq",
            format!("{:?}", row.producer_seq),
            format!("{producer_seq:?}"),
        ),
        (
            "tenant_id",
            format!("{:?}", row.tenant_id),
            format!("{:?}", tenant_column(&event).map(str::to_owned)),
        ),
    ];
    let keys = row.object_keys.iter().flat_map(|keys| {
        let stored = |key: Option<i64>| key.map_or_else(|| "NULL".to_owned(), |k| k.to_string());
        [
            (
                "actor_key",
                stored(keys.actor),
                object_key(event.actor_type.as_str(), &event.actor_id.key()).to_string(),
            ),
            (
                "target_key",
                stored(keys.target),
                object_key(event.target_type.as_str(), &event.target_id.key()).to_string(),
            ),
        ]
    });
    Ok(derived
        .into_iter()
        .chain(keys)
        .filter(|(_, stored, from_body)| stored != from_body)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::object_key;

    #[test]
    fn object_keys_are_fnv_1a_of_type_nul_id_and_never_change() {
        // A key of an empty type and id is FNV-1a 64 of one NUL byte.
        assert_eq!(object_key("", "") as u64, 0xaf63_bd4c_8601_b7df);
        assert_eq!(object_key("users", "1"), object_key("users", "1"));
        assert_ne!(object_key("users", "1"), object_key("users", "2"));
        // The separator keeps the type and the id apart.
        assert_ne!(object_key("ab", "c"), object_key("a", "bc"));
        assert_eq!(object_key("users", "1"), 346_714_101_864_484_680);
    }
}
