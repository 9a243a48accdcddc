//! Ids for events that arrive without one (the prototype's format), derived from the
//! message that carried them, so that the same message delivered again gives its
//! events the same ids and the store's idempotency by id applies to them too.
//!
//! Why: the auditor acknowledges a message only after the store committed its
//! events. If it dies between the two, the broker delivers the message again (and
//! an HTTP client whose answer was lost sends its request again). An event with an
//! `id` is then stored once; an id-less one given a fresh random id each time would
//! be stored twice.
//!
//! The id is a UUID of version 8 (RFC 9562's layout for ids built by the
//! application): SHA-256 of the message body, prefixed by a domain tag, gives the
//! first 12 bytes; the event's position in the message (0 for a message of one
//! event; the array index or the NDJSON line number) gives the last 4, big-endian.
//! The version and variant bits overwrite 6 of the hash's 96 bits; the remaining 90
//! make two different bodies sharing a prefix unlikely beyond any log's size (about
//! 4 in 10^8 after 10^10 messages). Putting the position last makes the ids of one
//! message sort in the message's order, which keeps events that share a
//! millisecond (id-less events usually get the auditor's "now") in the order they
//! were sent, as the store orders by `(timestamp, id)`. Derived ids never collide
//! with producers' UUIDv7s: the version differs.
//!
//! The trade-off: identity is the bytes. Two id-less events at the same position in
//! byte-identical messages are one event, the second taken for a redelivery of the
//! first. That is right when it is one: the broker redelivering after a crash, a
//! producer re-publishing a message it was not sure went through, a client retrying
//! the same request body. It is wrong when the producer meant two occurrences and
//! sent nothing that tells them apart: the prototype publishes "users/1 viewed
//! users/1" as the same bytes every time, so without a `timestamp` two such views
//! become one. Two identical events at different positions of one message stay
//! two. A producer avoids the merge by sending an `id` (a UUIDv7 per event, as
//! auditlog's own producers do), or a `timestamp` or `requestId` that differs
//! between occurrences; an HTTP client that retries must send the same body again,
//! not a re-batched one.

use std::cell::OnceCell;

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Separates these hashes from any other SHA-256 of the same bytes; the version
/// suffix lets a future derivation differ without colliding with this one.
const DOMAIN: &[u8] = b"auditlog derived event id v1\0";

/// The message an event arrived in (an AMQP message body, an HTTP request body),
/// from which an event without an `id` gets its id: see the module documentation.
/// The body is hashed once, and only if an event of it needs an id.
#[derive(Debug)]
pub struct MessageIds<'a> {
    body: &'a [u8],
    digest: OnceCell<[u8; 12]>,
}

impl<'a> MessageIds<'a> {
    /// The ids of events carried by `body`, exactly as it arrived.
    pub fn new(body: &'a [u8]) -> Self {
        MessageIds {
            body,
            digest: OnceCell::new(),
        }
    }

    /// The id of the event at `index` in the message (0 for the first, or the
    /// only, event). The same body and index always give the same id. A message
    /// holds far fewer than 2^32 events (bodies are bounded to megabytes); an index
    /// beyond that shares the last id.
    pub fn id(&self, index: usize) -> Uuid {
        let digest = self.digest.get_or_init(|| {
            let hash = Sha256::new()
                .chain_update(DOMAIN)
                .chain_update(self.body)
                .finalize();
            let mut prefix = [0u8; 12];
            prefix.copy_from_slice(&hash[..12]);
            prefix
        });
        let mut bytes = [0u8; 16];
        bytes[..12].copy_from_slice(digest);
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        bytes[12..].copy_from_slice(&index.to_be_bytes());
        Uuid::new_v8(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] =
        br#"{"action":"viewed","actorType":"users","actorId":1,"targetType":"users","targetId":1}"#;

    #[test]
    fn the_same_body_and_position_always_give_the_same_valid_uuid_v8() {
        let first = MessageIds::new(BODY).id(0);
        // Another copy of the same bytes, as a redelivery brings.
        let copy = BODY.to_vec();
        let again = MessageIds::new(&copy).id(0);
        assert_eq!(first, again);
        assert_eq!(first.get_version_num(), 8);
        assert_eq!(first.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(Uuid::parse_str(&first.to_string()), Ok(first));
    }

    #[test]
    fn another_position_or_another_body_gives_another_id() {
        let message = MessageIds::new(BODY);
        let mut other_body = BODY.to_vec();
        other_body.push(b' ');
        assert_ne!(message.id(0), message.id(1));
        assert_ne!(message.id(0), MessageIds::new(&other_body).id(0));
    }

    #[test]
    fn ids_of_one_message_sort_in_the_messages_order() {
        let message = MessageIds::new(BODY);
        let ids: Vec<Uuid> = [0, 1, 2, 255, 256, 70_000].map(|i| message.id(i)).to_vec();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
