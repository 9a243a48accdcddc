//! The personal-data rules on single events, without a store.

use auditlog_event::{Action, Change, DataEvent, ObjectRef, ObjectType};
use auditlog_store::SubjectKey;
use serde_json::{Value, json};

use super::*;

fn users() -> ObjectType {
    ObjectType::parse("targetType", "users").unwrap()
}

/// `users/1` renames `users/42` from Ada to Grace, from 10.0.0.1.
fn renaming() -> DataEvent {
    let mut event = DataEvent::new(
        Action::Changed,
        ObjectRef::new(users(), 1),
        ObjectRef::new(users(), 42),
        1_000,
    );
    event.changes = Some(
        [
            ("name".to_owned(), Change::new(json!("Ada"), json!("Grace"))),
            (
                "agreedTos".to_owned(),
                Change::new(json!(false), json!(true)),
            ),
            ("password".to_owned(), Change::masked()),
        ]
        .into(),
    );
    event.meta = Some(
        json!({"ip": "10.0.0.1", "userAgent": "curl"})
            .as_object()
            .unwrap()
            .clone(),
    );
    event
}

fn key_of(object_type: &str, id: &str, byte: u8) -> SubjectKey {
    SubjectKey {
        subject: DataSubject {
            tenant: auditlog_event::DEFAULT_TENANT.into(),
            object_type: ObjectType::parse("t", object_type).unwrap(),
            id: id.into(),
        },
        key: [byte; 32],
    }
}

fn demo_fields() -> PersonalFields {
    PersonalFields::parse(DEFAULT_PERSONAL_FIELDS).unwrap()
}

fn both_keys() -> KeyRing {
    KeyRing::new([key_of("users", "42", 7), key_of("users", "1", 9)])
}

fn body(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn declarations_are_type_dot_field_or_meta_dot_field() {
    let fields =
        PersonalFields::parse(" users.name, users.email ,meta.ip,customers.address.city").unwrap();

    assert_eq!(
        fields.declarations(),
        [
            "customers.address.city",
            "users.email",
            "users.name",
            "meta.ip"
        ]
    );
    assert!(PersonalFields::parse("").unwrap().is_empty());
    for bad in ["users", "users.", ".name", "users.name,nodot"] {
        assert!(
            matches!(
                PersonalFields::parse(bad),
                Err(PersonalDataError::BadDeclaration(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn the_subjects_are_the_target_for_changes_and_the_actor_for_meta() {
    let subjects = demo_fields().subjects_of(&renaming());

    let named: Vec<String> = subjects
        .iter()
        .map(|s| format!("{}/{}", s.object_type, s.id))
        .collect();
    assert_eq!(named, ["users/42", "users/1"]);
}

#[test]
fn declared_values_are_stored_encrypted_and_read_back_decrypted() {
    let fields = demo_fields();
    let keys = both_keys();
    let event = renaming();

    let encrypted = fields.encrypt(event.clone(), &keys).unwrap();
    let stored = encrypted.to_json();

    assert!(
        !stored.contains("Ada") && !stored.contains("Grace"),
        "{stored}"
    );
    assert!(!stored.contains("10.0.0.1"), "{stored}");
    assert!(stored.contains(r#""prev":{"$enc":"v1:"#), "{stored}");
    assert!(
        stored.contains(r#""agreedTos":{"next":true,"prev":false}"#)
            || stored.contains(r#""agreedTos":{"prev":false,"next":true}"#),
        "undeclared fields stay as they are: {stored}"
    );
    assert!(stored.contains(r#""userAgent":"curl""#));
    assert_eq!(
        Some(stored.len()),
        fields.encrypted_len(&event),
        "the size is known before encrypting"
    );
    let read = StoredBody::parse(&stored).unwrap();
    assert_eq!(read.subjects().len(), 2);
    assert_eq!(body(&read.decrypt(&keys)), body(&event.to_json()));
}

#[test]
fn without_the_key_values_read_as_erased_and_another_subjects_stay_readable() {
    let stored = demo_fields()
        .encrypt(renaming(), &both_keys())
        .unwrap()
        .to_json();
    // users/42 erased; users/1, the actor, not.
    let remaining = KeyRing::new([key_of("users", "1", 9)]);

    let read = body(&StoredBody::parse(&stored).unwrap().decrypt(&remaining));

    assert_eq!(read["changes"]["name"]["prev"], json!({"erased": true}));
    assert_eq!(read["changes"]["name"]["next"], json!({"erased": true}));
    assert_eq!(read["meta"]["ip"], json!("10.0.0.1"));
    assert_eq!(read["changes"]["agreedTos"]["next"], json!(true));
}

#[test]
fn the_same_object_in_two_tenants_is_two_subjects_with_keys_of_their_own() {
    let mut acme = renaming();
    acme.tenant_id = Some("acme".into());
    let subjects = demo_fields().subjects_of(&acme);
    assert!(subjects.iter().all(|s| s.tenant == "acme"), "{subjects:?}");
    let acme_key = |id: &str, byte| SubjectKey {
        subject: DataSubject {
            tenant: "acme".into(),
            ..key_of("users", id, byte).subject
        },
        key: [byte; 32],
    };
    let stored = demo_fields()
        .encrypt(acme, &KeyRing::new([acme_key("42", 7), acme_key("1", 9)]))
        .unwrap()
        .to_json();

    // The default tenant's users/42 and users/1 are not acme's: with their
    // keys (the very same bytes, even) acme's values read as erased.
    let read = body(&StoredBody::parse(&stored).unwrap().decrypt(&both_keys()));
    assert_eq!(read["changes"]["name"]["prev"], json!({"erased": true}));
    let read = body(
        &StoredBody::parse(&stored)
            .unwrap()
            .decrypt(&KeyRing::new([acme_key("42", 7), acme_key("1", 9)])),
    );
    assert_eq!(read["changes"]["name"]["prev"], json!("Ada"));
}

#[test]
fn a_ciphertext_moved_to_another_field_or_subject_does_not_decrypt() {
    let stored = demo_fields()
        .encrypt(renaming(), &both_keys())
        .unwrap()
        .to_json();
    let mut moved = body(&stored);
    let prev = moved["changes"]["name"]["prev"].clone();
    moved["changes"]["name"]["next"] = prev;
    let moved = serde_json::to_string(&moved).unwrap();
    // The same key for another subject must not open it either.
    let other = KeyRing::new([key_of("users", "42", 1), key_of("users", "1", 9)]);

    let read = body(&StoredBody::parse(&moved).unwrap().decrypt(&both_keys()));
    let wrong_key = body(&StoredBody::parse(&stored).unwrap().decrypt(&other));

    assert_eq!(read["changes"]["name"]["prev"], json!("Ada"));
    assert_eq!(
        read["changes"]["name"]["next"],
        json!({"undecryptable": true})
    );
    assert_eq!(
        wrong_key["changes"]["name"]["prev"],
        json!({"undecryptable": true})
    );
}

#[test]
fn null_values_and_masked_changes_are_not_encrypted() {
    let mut created = renaming();
    created.action = Action::Created;
    created.changes = Some(
        [
            ("name".to_owned(), Change::new(Value::Null, json!("Ada"))),
            ("email".to_owned(), Change::masked()),
        ]
        .into(),
    );
    created.meta = None;

    let stored = demo_fields()
        .encrypt(created, &both_keys())
        .unwrap()
        .to_json();
    let read = body(&stored);

    assert_eq!(read["changes"]["name"]["prev"], Value::Null);
    assert!(
        read["changes"]["name"]["next"]
            .get(ENCRYPTED_MARK)
            .is_some()
    );
    assert_eq!(
        read["changes"]["email"],
        json!({"prev": null, "next": null, "masked": true})
    );
}

#[test]
fn an_event_without_personal_values_needs_no_key_and_is_served_as_stored() {
    let mut event = renaming();
    event.changes = Some(
        [(
            "agreedTos".to_owned(),
            Change::new(json!(false), json!(true)),
        )]
        .into(),
    );
    event.meta = None;

    assert!(demo_fields().subjects_of(&event).is_empty());
    assert_eq!(demo_fields().encrypted_len(&event), None);
    let stored = demo_fields()
        .encrypt(event.clone(), &KeyRing::default())
        .unwrap();
    assert_eq!(stored, event);
    assert!(StoredBody::parse(&stored.to_json()).is_none());
}

#[test]
fn a_producers_value_shaped_like_a_ciphertext_is_refused() {
    let mut event = renaming();
    event.changes = Some(
        [(
            "title".to_owned(),
            Change::new(json!({"$enc": "v1:AAAA"}), json!("x")),
        )]
        .into(),
    );

    let reason = forged_encryption(&event).unwrap();

    assert!(reason.starts_with("changes.title"), "{reason}");
    assert!(forged_encryption(&renaming()).is_none());
}

#[test]
fn an_event_that_outgrows_the_size_limit_once_encrypted_is_known_before() {
    let mut event = renaming();
    let long = "x".repeat(auditlog_event::MAX_STORED_EVENT_BYTES - 1_000);
    event.changes = Some([("name".to_owned(), Change::new(Value::Null, json!(long)))].into());

    let encrypted = demo_fields().encrypted_len(&event).unwrap();

    assert!(event.to_json().len() < auditlog_event::MAX_STORED_EVENT_BYTES);
    assert!(
        encrypted > auditlog_event::MAX_STORED_EVENT_BYTES,
        "{encrypted}"
    );
}
