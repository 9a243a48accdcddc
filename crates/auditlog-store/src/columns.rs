//! The indexed columns of `audit_events` as derived from an event: the one
//! definition the insert writes and `auditlog verify` checks a stored row against
//! (the leaf is the source of truth; the columns exist for the indexes).

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

/// Where a stored row's columns disagree with its body, as
/// `(column, stored value, value derived from the body)`; `Err` when the body is
/// not an event at all.
pub fn column_mismatches(row: &EventRow) -> Result<Vec<(&'static str, String, String)>, String> {
    let event = DataEvent::parse_stored(&row.body).map_err(|e| e.to_string())?;
    let (producer_id, producer_seq) = numbering(&event).unzip();
    let derived: [(&'static str, String, String); 9] = [
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
    ];
    Ok(derived
        .into_iter()
        .filter(|(_, stored, from_body)| stored != from_body)
        .collect())
}
