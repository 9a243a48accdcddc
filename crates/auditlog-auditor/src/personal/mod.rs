//! Personal data in events, and its erasure by crypto-shredding.
//!
//! Some fields hold personal data: declared per target type (`users.name`,
//! `users.email`) or as metadata (`meta.ip`), see [`PersonalFields`]. Their
//! values are encrypted before an event is first written to the store, each
//! with the key of its *data subject*:
//!
//! - a field of `changes` (its `prev` and `next`) belongs to the event's
//!   **target** — `users.name` in a change of `users/42` is user 42's name;
//! - a `meta` field belongs to the event's **actor** — `meta.ip` is the address
//!   of whoever acted, which is personal data of the actor, not of the object
//!   acted on. Erasing user 42 then also erases the addresses it acted from.
//!
//! Keys live in the store's own table (`AuditStore::subject_keys`), never in an
//! event; the event's JSON, and so its leaf in the verifiable log, holds only
//! ciphertext, so deleting a key erases the subject's values and every proof
//! still verifies.
//!
//! An encrypted value is stored as `{"$enc":"v1:<base64 of nonce ‖ ciphertext>"}`
//! ([`ENCRYPTED_MARK`]): XChaCha20-Poly1305 with a random 24-byte nonce over the
//! value's JSON text, authenticated together with the subject and the value's
//! place (`changes.name.prev`), so that a ciphertext moved to another subject or
//! field does not decrypt. `null` is not encrypted (an absent value is no
//! personal data), and masked changes carry no values to encrypt.
//!
//! Readers get the values decrypted while the key exists. Once it is erased, a
//! value reads as `{"erased":true}` ([`erased_value`]); a value whose key exists
//! but which does not decrypt (altered behind the auditor's back) reads as
//! `{"undecryptable":true}`.
//!
//! This module does no I/O: [`store`] is the store wrapper that fetches keys
//! and applies it.

pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use auditlog_event::{DataEvent, ObjectType};
use auditlog_store::{DataSubject, SUBJECT_KEY_BYTES};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value};

/// The one key of a JSON object that marks an encrypted value.
pub const ENCRYPTED_MARK: &str = "$enc";
/// The version prefix of an encrypted value's text: the format and algorithm.
const VERSION: &str = "v1:";
/// Bytes of an XChaCha20-Poly1305 nonce.
const NONCE_BYTES: usize = 24;
/// Bytes of a Poly1305 tag.
const TAG_BYTES: usize = 16;
/// The pseudo target type of metadata declarations (`meta.ip`).
const META: &str = "meta";
/// The personal fields when none are configured: the demo application's.
pub const DEFAULT_PERSONAL_FIELDS: &str = "users.name,users.email,meta.ip";

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PersonalDataError {
    /// A declaration is not `TYPE.FIELD` or `meta.FIELD`.
    #[error(
        "`{0}` is not a personal field: write TYPE.FIELD (e.g. users.email) or meta.FIELD (e.g. meta.ip)"
    )]
    BadDeclaration(String),
    /// The randomness for a nonce or key was not available.
    #[error("no randomness for encryption: {0}")]
    NoRandomness(String),
    /// The cipher refused to encrypt (cannot happen for values of an event's size).
    #[error("a personal value could not be encrypted")]
    Encryption,
}

/// Which fields hold personal data: per target type, the fields of `changes`;
/// and the `meta` fields of any event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonalFields {
    /// Target type → field names of its `changes`.
    changes: BTreeMap<String, BTreeSet<String>>,
    /// Keys of `meta`.
    meta: BTreeSet<String>,
}

impl PersonalFields {
    /// Parses a comma-separated list of declarations, `TYPE.FIELD` or
    /// `meta.FIELD` (spaces around items are ignored; an empty list declares
    /// nothing). The type is everything before the first dot, so a field name
    /// may itself contain dots.
    pub fn parse(list: &str) -> Result<Self, PersonalDataError> {
        let mut fields = PersonalFields::default();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let bad = || PersonalDataError::BadDeclaration(item.to_owned());
            let (target_type, field) = item.split_once('.').ok_or_else(bad)?;
            if field.is_empty() || ObjectType::parse("targetType", target_type).is_err() {
                return Err(bad());
            }
            if target_type == META {
                fields.meta.insert(field.to_owned());
            } else {
                fields
                    .changes
                    .entry(target_type.to_owned())
                    .or_default()
                    .insert(field.to_owned());
            }
        }
        Ok(fields)
    }

    /// Whether nothing is declared (then nothing is encrypted).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.meta.is_empty()
    }

    /// The declarations, as [`PersonalFields::parse`] reads them.
    pub fn declarations(&self) -> Vec<String> {
        let changes = self
            .changes
            .iter()
            .flat_map(|(t, fs)| fs.iter().map(move |f| format!("{t}.{f}")));
        let meta = self.meta.iter().map(|f| format!("{META}.{f}"));
        changes.chain(meta).collect()
    }

    /// The subjects whose keys encrypting `event` needs: its target if a
    /// declared change has a value, its actor if a declared `meta` field does.
    pub fn subjects_of(&self, event: &DataEvent) -> Vec<DataSubject> {
        let mut subjects = Vec::new();
        if self
            .declared_changes(event)
            .any(|(_, c)| !c.prev.is_null() || !c.next.is_null())
        {
            subjects.push(target_key(event));
        }
        if self.declared_meta(event).any(|(_, v)| !v.is_null()) {
            subjects.push(actor_key(event));
        }
        subjects
    }

    fn declared_changes<'e>(
        &'e self,
        event: &'e DataEvent,
    ) -> impl Iterator<Item = (&'e String, &'e auditlog_event::Change)> {
        let declared = self.changes.get(event.target_type.as_str());
        event
            .changes
            .iter()
            .flatten()
            .filter(move |(field, change)| {
                !change.masked && declared.is_some_and(|d| d.contains(*field))
            })
    }

    fn declared_meta<'e>(
        &'e self,
        event: &'e DataEvent,
    ) -> impl Iterator<Item = (&'e String, &'e Value)> {
        event
            .meta
            .iter()
            .flatten()
            .filter(move |(field, _)| self.meta.contains(*field))
    }

    /// The length of `event`'s JSON once its personal values are encrypted:
    /// exact, since the ciphertext's length depends only on the value's;
    /// `None` when it holds none (its length does not change, and is not
    /// measured: this runs for every event received).
    pub fn encrypted_len(&self, event: &DataEvent) -> Option<usize> {
        let growth = |value: &Value| {
            if value.is_null() {
                return 0;
            }
            let plain = serde_json::to_string(value).map_or(0, |t| t.len());
            sealed_text_len(plain).saturating_sub(plain)
        };
        let changes: usize = self
            .declared_changes(event)
            .map(|(_, c)| growth(&c.prev) + growth(&c.next))
            .sum();
        let meta: usize = self.declared_meta(event).map(|(_, v)| growth(v)).sum();
        (changes + meta > 0).then(|| event.to_json().len() + changes + meta)
    }

    /// `event` with each declared value encrypted under its subject's key from
    /// `keys`. A subject missing from `keys` is an error of the caller, who got
    /// the keys for [`PersonalFields::subjects_of`].
    pub fn encrypt(&self, mut event: DataEvent, keys: &KeyRing) -> Result<DataEvent, EncryptError> {
        let target = target_key(&event);
        let actor = actor_key(&event);
        if let (Some(declared), Some(changes)) = (
            self.changes.get(event.target_type.as_str()),
            event.changes.as_mut(),
        ) {
            for (field, change) in changes.iter_mut() {
                if change.masked || !declared.contains(field) {
                    continue;
                }
                for (side, value) in [("prev", &mut change.prev), ("next", &mut change.next)] {
                    if value.is_null() {
                        continue;
                    }
                    let key = keys.get(&target).ok_or(EncryptError::NoKey)?;
                    let place = format!("changes.{field}.{side}");
                    *value = seal(key, &aad(&target, &place), value)?;
                }
            }
        }
        if let Some(meta) = event.meta.as_mut() {
            for (field, value) in meta.iter_mut() {
                if value.is_null() || !self.meta.contains(field) {
                    continue;
                }
                let key = keys.get(&actor).ok_or(EncryptError::NoKey)?;
                *value = seal(key, &aad(&actor, &format!("meta.{field}")), value)?;
            }
        }
        Ok(event)
    }
}

/// Why an event could not be encrypted.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    /// Its subject's key was not handed over (erased in between).
    #[error("a data subject's key is missing")]
    NoKey,
    #[error(transparent)]
    Cipher(#[from] PersonalDataError),
}

/// Subjects' keys, by subject.
#[derive(Default)]
pub struct KeyRing(HashMap<DataSubject, [u8; SUBJECT_KEY_BYTES]>);

impl KeyRing {
    /// A ring of these keys.
    pub fn new(keys: impl IntoIterator<Item = auditlog_store::SubjectKey>) -> Self {
        KeyRing(keys.into_iter().map(|k| (k.subject, k.key)).collect())
    }

    fn get(&self, subject: &DataSubject) -> Option<&[u8; SUBJECT_KEY_BYTES]> {
        self.0.get(subject)
    }
}

/// A fresh random key for a subject.
pub fn new_key() -> Result<[u8; SUBJECT_KEY_BYTES], PersonalDataError> {
    let mut key = [0u8; SUBJECT_KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| PersonalDataError::NoRandomness(e.to_string()))?;
    Ok(key)
}

/// What an erased value reads as.
pub fn erased_value() -> Value {
    serde_json::json!({"erased": true})
}

/// What a value reads as whose key exists but which does not decrypt.
pub fn undecryptable_value() -> Value {
    serde_json::json!({"undecryptable": true})
}

/// The event's target as a data subject of the event's tenant.
fn target_key(event: &DataEvent) -> DataSubject {
    DataSubject {
        tenant: event.tenant().to_owned(),
        object_type: event.target_type.clone(),
        id: event.target_id.key(),
    }
}

/// The event's actor as a data subject of the event's tenant.
fn actor_key(event: &DataEvent) -> DataSubject {
    DataSubject {
        tenant: event.tenant().to_owned(),
        object_type: event.actor_type.clone(),
        id: event.actor_id.key(),
    }
}

/// The associated data of a value: the format, its subject and its place,
/// NUL-separated. What keeps one subject's values from opening under another's
/// is that each subject has a key of its own; the subject in here also ties a
/// value to it should keys ever be shared, and the place keeps a ciphertext
/// from being moved to another field (or from `prev` to `next`) unnoticed.
fn aad(subject: &DataSubject, place: &str) -> Vec<u8> {
    format!(
        "auditlog-personal-v1\0{}\0{}\0{}\0{place}",
        subject.tenant,
        subject.object_type.as_str(),
        subject.id
    )
    .into_bytes()
}

/// Length of `{"$enc":"v1:<base64>"}` for a value whose JSON is `plain` bytes.
fn sealed_text_len(plain: usize) -> usize {
    let raw = NONCE_BYTES + plain + TAG_BYTES;
    let base64 = raw.div_ceil(3) * 4;
    // {"$enc":"  +  v1:  +  base64  +  "}
    9 + VERSION.len() + base64 + 2
}

fn seal(
    key: &[u8; SUBJECT_KEY_BYTES],
    aad: &[u8],
    value: &Value,
) -> Result<Value, PersonalDataError> {
    let plain = serde_json::to_vec(value).map_err(|_| PersonalDataError::Encryption)?;
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| PersonalDataError::NoRandomness(e.to_string()))?;
    let cipher = XChaCha20Poly1305::new(&Key::from(*key));
    let sealed = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: &plain, aad })
        .map_err(|_| PersonalDataError::Encryption)?;
    let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&sealed);
    let mut object = Map::new();
    object.insert(
        ENCRYPTED_MARK.into(),
        Value::String(format!("{VERSION}{}", auditlog_tlog::base64(&bytes))),
    );
    Ok(Value::Object(object))
}

/// The text of an encrypted value, if `value` is one (an object whose only key
/// is [`ENCRYPTED_MARK`], holding a string).
fn sealed_text(value: &Value) -> Option<&str> {
    match value {
        Value::Object(map) if map.len() == 1 => map.get(ENCRYPTED_MARK)?.as_str(),
        _ => None,
    }
}

/// Whether `value` is shaped like an encrypted value: what producers may not
/// send where the auditor decrypts, lest their value read as erased.
pub fn looks_encrypted(value: &Value) -> bool {
    matches!(value, Value::Object(map) if map.contains_key(ENCRYPTED_MARK))
}

fn open(key: &[u8; SUBJECT_KEY_BYTES], aad: &[u8], text: &str) -> Option<Value> {
    let bytes = auditlog_tlog::from_base64(text.strip_prefix(VERSION)?)?;
    if bytes.len() < NONCE_BYTES + TAG_BYTES {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
    let cipher = XChaCha20Poly1305::new(&Key::from(*key));
    let plain = cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: sealed, aad })
        .ok()?;
    serde_json::from_slice(&plain).ok()
}

/// A producer's reason to refuse `event`: a value shaped like an encrypted one
/// where readers decrypt (any `changes` value, any `meta` field).
pub fn forged_encryption(event: &DataEvent) -> Option<String> {
    let in_changes = event.changes.iter().flatten().find_map(|(field, change)| {
        (looks_encrypted(&change.prev) || looks_encrypted(&change.next))
            .then(|| format!("changes.{field}"))
    });
    let in_meta = || {
        event
            .meta
            .iter()
            .flatten()
            .find_map(|(field, value)| looks_encrypted(value).then(|| format!("meta.{field}")))
    };
    in_changes.or_else(in_meta).map(|place| {
        format!(
            "{place}: an object with a `{ENCRYPTED_MARK}` key is how the auditor stores an \
             encrypted value; producers may not send one"
        )
    })
}

/// One place of a stored event's JSON that holds an encrypted value.
struct Place {
    /// Whether its subject is the event's target (a `changes` value) rather
    /// than its actor (a `meta` field).
    of_target: bool,
    /// `changes.FIELD.prev`, `changes.FIELD.next` or `meta.FIELD`.
    path: String,
}

/// The actor or the target of a stored event's JSON as a data subject of the
/// event's tenant.
fn object_key_of(
    body: &Map<String, Value>,
    type_field: &str,
    id_field: &str,
) -> Option<DataSubject> {
    let object_type = ObjectType::parse("type", body.get(type_field)?.as_str()?).ok()?;
    let id = match body.get(id_field)? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let tenant = body
        .get("tenantId")
        .and_then(Value::as_str)
        .unwrap_or(auditlog_event::DEFAULT_TENANT)
        .to_owned();
    Some(DataSubject {
        tenant,
        object_type,
        id,
    })
}

/// A stored event's JSON, as readers get it.
pub struct StoredBody {
    body: Map<String, Value>,
    target: Option<DataSubject>,
    actor: Option<DataSubject>,
    /// Every encrypted value, found where readers decrypt (every `changes`
    /// value, every `meta` field), whatever is declared now: values encrypted
    /// under an earlier declaration still decrypt.
    places: Vec<Place>,
}

impl StoredBody {
    /// The stored JSON `text`, if it holds encrypted values (`None` when there
    /// is nothing to decrypt: the text is served as it is).
    pub fn parse(text: &str) -> Option<StoredBody> {
        // Most events hold no encrypted value: skip parsing them.
        if !text.contains(ENCRYPTED_MARK) {
            return None;
        }
        let Ok(Value::Object(body)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let mut places = Vec::new();
        if let Some(Value::Object(changes)) = body.get("changes") {
            for (field, change) in changes {
                for side in ["prev", "next"] {
                    if change.get(side).and_then(sealed_text).is_some() {
                        places.push(Place {
                            of_target: true,
                            path: format!("changes.{field}.{side}"),
                        });
                    }
                }
            }
        }
        if let Some(Value::Object(meta)) = body.get("meta") {
            for (field, value) in meta {
                if sealed_text(value).is_some() {
                    places.push(Place {
                        of_target: false,
                        path: format!("meta.{field}"),
                    });
                }
            }
        }
        if places.is_empty() {
            return None;
        }
        Some(StoredBody {
            target: object_key_of(&body, "targetType", "targetId"),
            actor: object_key_of(&body, "actorType", "actorId"),
            body,
            places,
        })
    }

    /// The subjects whose keys decrypting this body needs.
    pub fn subjects(&self) -> Vec<DataSubject> {
        let mut subjects = Vec::new();
        if self.places.iter().any(|p| p.of_target) {
            subjects.extend(self.target.clone());
        }
        if self.places.iter().any(|p| !p.of_target) {
            subjects.extend(self.actor.clone());
        }
        subjects
    }

    /// The JSON text with every encrypted value decrypted with `keys`, or shown
    /// as erased where its subject's key is gone.
    pub fn decrypt(mut self, keys: &KeyRing) -> String {
        for place in &self.places {
            let subject = if place.of_target {
                &self.target
            } else {
                &self.actor
            };
            let key = subject.as_ref().and_then(|s| keys.get(s).map(|k| (s, k)));
            let Some(slot) = slot(&mut self.body, &place.path) else {
                continue;
            };
            let Some(text) = sealed_text(slot) else {
                continue;
            };
            *slot = match key {
                None => erased_value(),
                Some((subject, key)) => {
                    open(key, &aad(subject, &place.path), text).unwrap_or_else(undecryptable_value)
                }
            };
        }
        serde_json::to_string(&self.body).unwrap_or_default()
    }
}

/// The value at `place` (`changes.F.prev|next`, `meta.F`) of `body`.
fn slot<'b>(body: &'b mut Map<String, Value>, place: &str) -> Option<&'b mut Value> {
    if let Some(rest) = place.strip_prefix("changes.") {
        let (field, side) = rest.rsplit_once('.')?;
        return body.get_mut("changes")?.get_mut(field)?.get_mut(side);
    }
    let field = place.strip_prefix("meta.")?;
    body.get_mut("meta")?.get_mut(field)
}

#[cfg(test)]
mod tests;
