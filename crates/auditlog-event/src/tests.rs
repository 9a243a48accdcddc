//! The tests of the event's parsing and limits (`lib.rs`).

use super::*;
use serde_json::json;

const NOW: i64 = 1_700_000_000_000;

fn parse(v: Value) -> Result<DataEvent, EventError> {
    DataEvent::parse_json(&v.to_string(), NOW)
}

fn seed_event() -> Value {
    json!({
        "action": "changed",
        "actorType": "users", "actorId": 1,
        "targetType": "users", "targetId": "42",
        "changes": {"agreedTos": {"prev": 0, "next": 1}},
        "timestamp": 1_600_000_000_000i64
    })
}

fn field_of(err: EventError) -> String {
    err.field().unwrap_or("<none>").to_owned()
}

#[test]
fn a_seed_event_without_id_gets_a_uuid_v7() {
    let event = parse(seed_event()).unwrap();
    assert_eq!(event.id.get_version_num(), 7);
}

#[test]
fn a_received_event_without_id_gets_the_same_id_from_the_same_message() {
    let text = seed_event().to_string();
    let message = MessageIds::new(text.as_bytes());
    let first = DataEvent::parse_json_in(&text, NOW, &message, 0).unwrap();
    let redelivered = MessageIds::new(text.as_bytes());
    let again = DataEvent::parse_json_in(&text, NOW + 5, &redelivered, 0).unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(first.id.get_version_num(), 8);
}

#[test]
fn a_received_event_with_an_id_keeps_it() {
    let mut v = seed_event();
    v["id"] = json!("0190b0a0-0000-7000-8000-000000000001");
    let text = v.to_string();
    let event = DataEvent::parse_json_in(&text, NOW, &MessageIds::new(text.as_bytes()), 0).unwrap();
    assert_eq!(event.id.to_string(), "0190b0a0-0000-7000-8000-000000000001");
}

#[test]
fn ids_round_trip_as_the_string_or_number_they_were_sent_as() {
    let event = parse(seed_event()).unwrap();
    let back: Value = serde_json::from_str(&event.to_json()).unwrap();
    assert_eq!(back["actorId"], json!(1));
    assert_eq!(back["targetId"], json!("42"));
    assert_eq!(back["changes"]["agreedTos"], json!({"prev": 0, "next": 1}));
    assert_eq!(back["timestamp"], json!(1_600_000_000_000i64));
}

#[test]
fn a_serialized_event_parses_back_to_the_same_event() {
    let mut v = seed_event();
    v["id"] = json!("0190b0a0-0000-7000-8000-000000000001");
    v["eventName"] = json!("user.tos_accepted");
    v["source"] = json!("api");
    v["requestId"] = json!("req-1");
    v["meta"] = json!({"ip": "127.0.0.1"});
    let event = parse(v).unwrap();
    let again = DataEvent::parse_json(&event.to_json(), 0).unwrap();
    assert_eq!(event, again);
}

#[test]
fn a_missing_timestamp_is_filled_with_now() {
    let mut v = seed_event();
    v.as_object_mut().unwrap().remove("timestamp");
    assert_eq!(parse(v).unwrap().timestamp, NOW);
}

#[test]
fn an_unknown_action_is_rejected_naming_action() {
    let mut v = seed_event();
    v["action"] = json!("exploded");
    assert_eq!(field_of(parse(v).unwrap_err()), "action");
}

#[test]
fn a_missing_action_is_rejected() {
    let mut v = seed_event();
    v.as_object_mut().unwrap().remove("action");
    assert_eq!(field_of(parse(v).unwrap_err()), "action");
}

#[test]
fn a_missing_actor_is_rejected_naming_the_field() {
    for field in ["actorType", "actorId", "targetType", "targetId"] {
        let mut v = seed_event();
        v.as_object_mut().unwrap().remove(field);
        assert_eq!(field_of(parse(v).unwrap_err()), field);
    }
}

#[test]
fn a_type_longer_than_64_chars_is_rejected() {
    let mut v = seed_event();
    v["targetType"] = json!("t".repeat(65));
    assert_eq!(field_of(parse(v).unwrap_err()), "targetType");
    let mut ok = seed_event();
    ok["targetType"] = json!("t".repeat(64));
    assert!(parse(ok).is_ok());
}

#[test]
fn an_empty_type_is_rejected() {
    let mut v = seed_event();
    v["actorType"] = json!("");
    assert_eq!(field_of(parse(v).unwrap_err()), "actorType");
}

#[test]
fn an_id_longer_than_128_chars_is_rejected() {
    let mut v = seed_event();
    v["actorId"] = json!("x".repeat(129));
    assert_eq!(field_of(parse(v).unwrap_err()), "actorId");
    let mut ok = seed_event();
    ok["actorId"] = json!("x".repeat(128));
    assert!(parse(ok).is_ok());
}

#[test]
fn an_object_id_of_the_wrong_type_is_rejected() {
    for bad in [
        json!(true),
        json!(1.5),
        json!({"a": 1}),
        json!([1]),
        json!(""),
    ] {
        let mut v = seed_event();
        v["targetId"] = bad;
        assert_eq!(field_of(parse(v).unwrap_err()), "targetId");
    }
}

#[test]
fn a_changed_event_needs_changes() {
    let mut v = seed_event();
    v.as_object_mut().unwrap().remove("changes");
    assert_eq!(field_of(parse(v).unwrap_err()), "changes");
    let mut empty = seed_event();
    empty["changes"] = json!({});
    assert_eq!(field_of(parse(empty).unwrap_err()), "changes");
}

#[test]
fn a_viewed_event_cannot_carry_changes() {
    let mut v = seed_event();
    v["action"] = json!("viewed");
    assert_eq!(field_of(parse(v).unwrap_err()), "changes");
}

#[test]
fn created_and_deleted_may_carry_changes_or_not() {
    for action in ["created", "deleted"] {
        let mut with = seed_event();
        with["action"] = json!(action);
        assert!(parse(with).is_ok());
        let mut without = seed_event();
        without["action"] = json!(action);
        without.as_object_mut().unwrap().remove("changes");
        assert!(parse(without).is_ok());
    }
}

#[test]
fn a_change_must_have_prev_and_next_only() {
    for bad in [
        json!({"name": {"prev": "a"}}),
        json!({"name": {"prev": "a", "next": "b", "other": 1}}),
        json!({"name": "b"}),
        json!(["name"]),
    ] {
        let mut v = seed_event();
        v["changes"] = bad;
        assert_eq!(field_of(parse(v).unwrap_err()), "changes");
    }
}

#[test]
fn a_masked_change_carries_no_values() {
    let mut v = seed_event();
    v["changes"] = json!({"password": {"masked": true}});
    let event = parse(v).unwrap();
    let back: Value = serde_json::from_str(&event.to_json()).unwrap();
    assert_eq!(
        back["changes"]["password"],
        json!({"prev": null, "next": null, "masked": true})
    );
    let mut leaking = seed_event();
    leaking["changes"] = json!({"password": {"masked": true, "next": "hunter2"}});
    assert_eq!(field_of(parse(leaking).unwrap_err()), "changes");
    let mut odd = seed_event();
    odd["changes"] = json!({"password": {"masked": "yes"}});
    assert_eq!(field_of(parse(odd).unwrap_err()), "changes");
}

#[test]
fn a_non_uuid_id_is_rejected() {
    let mut v = seed_event();
    v["id"] = json!("not-a-uuid");
    assert_eq!(field_of(parse(v).unwrap_err()), "id");
}

#[test]
fn a_bad_timestamp_is_rejected() {
    for bad in [json!("yesterday"), json!(-1), json!(1.5)] {
        let mut v = seed_event();
        v["timestamp"] = bad;
        assert_eq!(field_of(parse(v).unwrap_err()), "timestamp");
    }
}

#[test]
fn an_unknown_field_is_rejected_by_name() {
    let mut v = seed_event();
    v["colour"] = json!("red");
    let err = parse(v).unwrap_err();
    assert_eq!(field_of(err), "colour");
}

#[test]
fn an_event_that_grows_past_a_leaf_when_stored_is_rejected() {
    // `1e15` is stored as `1000000000000000.0`: the input fits, the leaf would not.
    let numbers = vec!["1e15"; 12_000].join(",");
    let text =
        seed_event()
            .to_string()
            .replacen('{', &format!("{{\"meta\":{{\"n\":[{numbers}]}},"), 1);
    assert!(text.len() < MAX_EVENT_BYTES);
    let err = DataEvent::parse_json(&text, 0).unwrap_err();
    assert!(matches!(err, EventError::TooLarge { bytes } if bytes > MAX_STORED_EVENT_BYTES));
}

#[test]
fn an_event_over_the_size_limit_is_rejected() {
    let mut v = seed_event();
    v["meta"] = json!({"blob": "x".repeat(MAX_EVENT_BYTES)});
    assert!(matches!(parse(v).unwrap_err(), EventError::TooLarge { .. }));
}

#[test]
fn labels_are_limited_and_typed() {
    let mut long = seed_event();
    long["eventName"] = json!("e".repeat(129));
    assert_eq!(field_of(parse(long).unwrap_err()), "eventName");
    let mut typed = seed_event();
    typed["source"] = json!(7);
    assert_eq!(field_of(parse(typed).unwrap_err()), "source");
    let mut meta = seed_event();
    meta["meta"] = json!("ip");
    assert_eq!(field_of(parse(meta).unwrap_err()), "meta");
}

#[test]
fn producer_id_and_sequence_round_trip_and_go_together() {
    let mut v = seed_event();
    v["producerId"] = json!("api/0190");
    v["producerSeq"] = json!(42);
    let event = parse(v.clone()).unwrap();
    assert_eq!(event.producer_seq, Some(42));
    let back: Value = serde_json::from_str(&event.to_json()).unwrap();
    assert_eq!(back["producerId"], "api/0190");
    assert_eq!(back["producerSeq"], 42);

    let mut alone = seed_event();
    alone["producerSeq"] = json!(1);
    assert_eq!(field_of(parse(alone).unwrap_err()), "producerId");
    for bad in [json!(0), json!(-1), json!("1")] {
        let mut v = v.clone();
        v["producerSeq"] = bad;
        assert_eq!(field_of(parse(v).unwrap_err()), "producerSeq");
    }
}

#[test]
fn text_that_is_not_json_is_rejected() {
    let err = DataEvent::parse_json("{not json", NOW).unwrap_err();
    assert!(matches!(err, EventError::Malformed(_)));
    let err = DataEvent::parse_json("[1,2]", NOW).unwrap_err();
    assert!(matches!(err, EventError::Malformed(_)));
}

#[test]
fn a_producer_cannot_say_how_its_event_was_delivered() {
    for field in ["ingestedBy", "via"] {
        let text = format!(
            r#"{{"action":"viewed","actorType":"users","actorId":1,"targetType":"users","targetId":2,"{field}":"services/api"}}"#
        );
        let err = DataEvent::parse_json(&text, 0).unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
    }
}

#[test]
fn a_stored_event_keeps_the_auditors_receipt() {
    let text =
        r#"{"action":"viewed","actorType":"users","actorId":1,"targetType":"users","targetId":2}"#;
    let event = DataEvent::parse_json(text, 5)
        .unwrap()
        .received("services/api", "embedded");

    let stored = event.to_json();
    let back = DataEvent::parse_stored(&stored).unwrap();

    assert!(
        stored.ends_with(r#""ingestedBy":"services/api","via":"embedded"}"#),
        "{stored}"
    );
    assert_eq!(back, event);
    assert!(DataEvent::parse_json(&stored, 0).is_err());
}

#[test]
fn the_receipt_always_fits_the_room_kept_for_it() {
    let text =
        r#"{"action":"viewed","actorType":"users","actorId":1,"targetType":"users","targetId":2}"#;
    let event = DataEvent::parse_json(text, 5).unwrap();
    let bare = event.to_json().len();

    let worst = event.received(&"\u{1}".repeat(1000), &"v".repeat(100));

    assert!(worst.to_json().len() - bare <= MAX_RECEIPT_BYTES);
}
