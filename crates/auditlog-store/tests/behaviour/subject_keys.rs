//! The data subjects' keys of erasure by crypto-shredding: created once per
//! subject, read back, deleted for good; and on SQLite, gone from the files.

use super::*;
use auditlog_store::{DataSubject, SubjectKey};

/// `users/<id>` of `tenant`.
fn user_of(tenant: &str, id: &str) -> DataSubject {
    DataSubject {
        tenant: tenant.into(),
        object_type: auditlog_event::ObjectType::parse("subjectType", "users").unwrap(),
        id: id.into(),
    }
}

/// `users/<id>` of the default tenant.
fn user(id: &str) -> DataSubject {
    user_of(auditlog_event::DEFAULT_TENANT, id)
}

fn candidate(id: &str, byte: u8) -> SubjectKey {
    SubjectKey {
        subject: user(id),
        key: [byte; 32],
    }
}

fn sorted(mut keys: Vec<SubjectKey>) -> Vec<SubjectKey> {
    keys.sort_by(|a, b| a.subject.id.cmp(&b.subject.id));
    keys
}

pub(crate) async fn a_subjects_first_key_is_kept_and_later_candidates_are_ignored(fresh: Fresh) {
    let first = fresh
        .store
        .ensure_subject_keys(&[candidate("42", 1), candidate("43", 2)])
        .await
        .unwrap();
    assert_eq!(
        sorted(first),
        vec![candidate("42", 1), candidate("43", 2)],
        "new subjects get their candidate keys"
    );

    let again = fresh
        .store
        .ensure_subject_keys(&[candidate("42", 9), candidate("44", 3)])
        .await
        .unwrap();

    assert_eq!(
        sorted(again),
        vec![candidate("42", 1), candidate("44", 3)],
        "an existing key is never replaced"
    );
    let read = fresh
        .store
        .subject_keys(&[user("42"), user("43"), user("7")])
        .await
        .unwrap();
    assert_eq!(sorted(read), vec![candidate("42", 1), candidate("43", 2)]);
}

pub(crate) async fn an_erased_key_is_gone_and_erasing_again_changes_nothing(fresh: Fresh) {
    fresh
        .store
        .ensure_subject_keys(&[candidate("42", 1), candidate("43", 2)])
        .await
        .unwrap();

    let erased = fresh.store.erase_subject_key(&user("42")).await.unwrap();
    let again = fresh.store.erase_subject_key(&user("42")).await.unwrap();
    let unknown = fresh.store.erase_subject_key(&user("never")).await.unwrap();

    assert!(erased, "the key existed");
    let acme = SubjectKey {
        subject: user_of("acme", "44"),
        key: [5; 32],
    };
    fresh
        .store
        .ensure_subject_keys(&[acme.clone(), candidate("44", 6)])
        .await
        .unwrap();
    assert!(
        fresh.store.erase_subject_key(&user("44")).await.unwrap(),
        "the default tenant's users/44"
    );
    assert_eq!(
        fresh
            .store
            .subject_keys(&[user_of("acme", "44")])
            .await
            .unwrap(),
        [acme],
        "another tenant's users/44 is another subject, whose key stays"
    );
    assert!(!again && !unknown, "nothing left to erase");
    let read = fresh
        .store
        .subject_keys(&[user("42"), user("43")])
        .await
        .unwrap();
    assert_eq!(
        read,
        vec![candidate("43", 2)],
        "another subject keeps its key"
    );
    let renewed = fresh
        .store
        .ensure_subject_keys(&[candidate("42", 5)])
        .await
        .unwrap();
    assert_eq!(
        renewed,
        vec![candidate("42", 5)],
        "data recorded after an erasure gets a new key, not the erased one"
    );
}

/// The bytes of every file of a SQLite store (main file, WAL, shared memory).
fn sqlite_files(url: &str) -> Vec<(String, Vec<u8>)> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let name = format!("{path}{suffix}");
            std::fs::read(&name).ok().map(|bytes| (name, bytes))
        })
        .collect()
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Not in the suite: only SQLite's files are this process's to read.
#[tokio::test]
async fn on_sqlite_an_erased_key_is_in_neither_the_database_file_nor_the_wal() {
    let fresh = sqlite().await;
    // A key no other bytes of the files could look like.
    let mut secret = [0u8; 32];
    for (i, b) in secret.iter_mut().enumerate() {
        *b = 0xA5 ^ (i as u8).wrapping_mul(37);
    }
    let subject = user("42");
    fresh
        .store
        .ensure_subject_keys(&[SubjectKey {
            subject: subject.clone(),
            key: secret,
        }])
        .await
        .unwrap();
    // Events written after the key, as in a real store.
    let batch: Vec<DataEvent> = (0..50)
        .map(|n| event(Action::Changed, 1, "users", 42.into(), n))
        .collect();
    fresh.store.insert_batch(&batch).await.unwrap();
    assert!(
        sqlite_files(fresh.url())
            .iter()
            .any(|(_, bytes)| holds(bytes, &secret)),
        "the test looks for the key where it is before the erasure"
    );

    assert!(fresh.store.erase_subject_key(&subject).await.unwrap());

    for (name, bytes) in sqlite_files(fresh.url()) {
        assert!(!holds(&bytes, &secret), "{name} still holds the erased key");
    }
    assert_eq!(
        fresh
            .store
            .query(&by_actor("1"))
            .await
            .unwrap()
            .events
            .len(),
        50,
        "the events themselves are untouched"
    );
}

pub(crate) async fn thousands_of_subjects_in_one_call_are_kept_and_read_back(fresh: Fresh) {
    // A batch of events on thousands of distinct targets asks for as many keys
    // at once: more than one statement's worth, and more than SQLite's limit on
    // the depth of one expression (1 000) if one statement named them all.
    let candidates: Vec<SubjectKey> = (0..2_500)
        .map(|n| candidate(&n.to_string(), (n % 251) as u8))
        .collect();
    let kept = fresh.store.ensure_subject_keys(&candidates).await.unwrap();
    assert_eq!(kept.len(), 2_500);
    let subjects: Vec<DataSubject> = candidates.iter().map(|c| c.subject.clone()).collect();
    let read = fresh.store.subject_keys(&subjects).await.unwrap();
    assert_eq!(sorted(read), sorted(candidates));
}
