//! JSON codec of the event contract: encoding with [`DataEvent::to_json`] and
//! decoding plus validation with [`DataEvent::parse_json`], for a typical `viewed`
//! event and a `changed` event with two changed fields. Throughput is in events.
//!
//! Run: `cargo bench -p auditlog-event --bench codec`
//! (quicker: `cargo bench -p auditlog-event --bench codec -- --warm-up-time 1 --measurement-time 3`).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use auditlog_event::{Action, Change, Changes, DataEvent, ObjectRef, ObjectType};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const TIMESTAMP_MS: i64 = 1_700_000_000_000;

fn event(action: Action, target_type: &str) -> DataEvent {
    let mut event = DataEvent::new(
        action,
        ObjectRef::new(ObjectType::parse("actorType", "users").unwrap(), 1),
        ObjectRef::new(ObjectType::parse("targetType", target_type).unwrap(), 4242),
        TIMESTAMP_MS,
    );
    event.source = Some("api".to_owned());
    event.request_id = Some("0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b".to_owned());
    event
}

/// User 1 viewed user 4242, as the demo API's `GET /users/{id}` reports it.
fn viewed() -> DataEvent {
    event(Action::Viewed, "users")
}

/// User 1 changed two fields of note 4242.
fn changed() -> DataEvent {
    let mut event = event(Action::Changed, "notes");
    let mut changes = Changes::new();
    changes.insert(
        "title".to_owned(),
        Change::new(json!("Groceries"), json!("Groceries for the weekend")),
    );
    changes.insert("pinned".to_owned(), Change::new(json!(false), json!(true)));
    event.changes = Some(changes);
    event
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    for (name, event) in [("viewed", viewed()), ("changed", changed())] {
        let text = event.to_json();
        // The text decodes back to the same event: the decode bench measures success.
        assert_eq!(DataEvent::parse_json(&text, TIMESTAMP_MS).unwrap(), event);
        println!("codec/{name}: {} bytes of JSON", text.len());

        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| black_box(&event).to_json());
        });
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| DataEvent::parse_json(black_box(&text), TIMESTAMP_MS).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
