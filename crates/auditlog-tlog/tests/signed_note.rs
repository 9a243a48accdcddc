//! The crate's checkpoints and signed notes read as an outside verifier reads them:
//! the note is parsed here from C2SP `signed-note` and `tlog-checkpoint` alone, the
//! key ID is computed here with `sha2`, and the signature is checked with
//! `ed25519-compact`, not the `ed25519-dalek` the crate signs with. The crate's own
//! parser and verifier are not used, except to show that they accept a note made
//! the same way by the other implementation.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::convert::Infallible;

use auditlog_tlog::{Checkpoint, SignedNote, Verifier, sign_note};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

const ORIGIN: &str = "auditlog.example/log";

/// The signature type of Ed25519 in signed notes.
const ED25519: u8 = 0x01;

/// `SHA-256(key name || 0x0A || 0x01 || public key)[:4]`.
fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([b'\n', ED25519])
        .chain_update(public_key)
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// C2SP signed-note's verifier: the note's text if a signature line of the key
/// `name` with `public_key` verifies over it, `None` for anything else. A note is
/// valid UTF-8 without control characters but newlines, ends with a newline, and
/// its text is separated from its signature lines by its last empty line. A
/// signature of the known key that fails rejects the whole note.
fn open<'a>(note: &'a [u8], name: &str, public_key: &[u8; 32]) -> Option<&'a str> {
    let note = std::str::from_utf8(note).ok()?;
    if note.chars().any(|c| c.is_control() && c != '\n') || !note.ends_with('\n') {
        return None;
    }
    let split = note.rfind("\n\n")?;
    let (text, signatures) = (&note[..=split], &note[split + 2..]);
    let key = ed25519_compact::PublicKey::new(*public_key);
    let id = key_id(name, public_key);
    let mut verified = false;
    for line in signatures.split_terminator('\n') {
        let (line_name, encoded) = line.strip_prefix("\u{2014} ")?.split_once(' ')?;
        if line_name.is_empty()
            || line_name.contains('+')
            || line_name.contains(char::is_whitespace)
        {
            return None;
        }
        let bytes = STANDARD.decode(encoded).ok()?;
        if bytes.len() < 4 {
            return None;
        }
        let (line_id, signature) = bytes.split_at(4);
        if line_name != name || line_id != id {
            continue; // another key's
        }
        let signature = ed25519_compact::Signature::from_slice(signature).ok()?;
        key.verify(text, &signature).ok()?;
        verified = true;
    }
    verified.then_some(text)
}

fn log_key() -> (SigningKey, Verifier) {
    let signing = SigningKey::from_bytes(&[0x42; 32]);
    let verifier = Verifier::new(ORIGIN, signing.verifying_key().to_bytes()).unwrap();
    (signing, verifier)
}

fn sign(signing: &SigningKey, verifier: &Verifier, text: &str) -> String {
    sign_note(text, verifier, |m| {
        Ok::<_, Infallible>(signing.sign(m).to_bytes())
    })
    .unwrap()
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        origin: ORIGIN.to_owned(),
        size: 1_234_567,
        root: Sha256::digest(b"a root").into(),
    }
}

#[test]
fn a_signed_checkpoint_verifies_with_another_ed25519_implementation() {
    let (signing, verifier) = log_key();
    let body = checkpoint().body();
    let note = sign(&signing, &verifier, &body);

    assert_eq!(
        open(note.as_bytes(), ORIGIN, &verifier.public_key),
        Some(body.as_str())
    );
    // One signature line, by the log's key.
    let lines: Vec<&str> = note[body.len()..].split_terminator('\n').collect();
    assert_eq!(lines.len(), 2, "{note}");
    assert_eq!(lines[0], "");
    assert!(
        lines[1].starts_with(&format!("\u{2014} {ORIGIN} ")),
        "{note}"
    );
}

#[test]
fn a_signed_checkpoint_with_any_byte_changed_does_not_verify() {
    let (signing, verifier) = log_key();
    let note = sign(&signing, &verifier, &checkpoint().body());
    let bytes = note.as_bytes();
    for i in 0..bytes.len() {
        for mask in [0x01, 0x02, 0x04, 0x20, 0x40, 0x80] {
            let mut changed = bytes.to_vec();
            changed[i] ^= mask;
            assert_eq!(
                open(&changed, ORIGIN, &verifier.public_key),
                None,
                "byte {i} ^ {mask:#04x} changed and the note still verifies: {}",
                String::from_utf8_lossy(&changed)
            );
        }
    }
    // Nor does the note under another key, or another name for the same key.
    let other = SigningKey::from_bytes(&[0x43; 32])
        .verifying_key()
        .to_bytes();
    assert_eq!(open(bytes, ORIGIN, &other), None);
    assert_eq!(
        open(bytes, "auditlog.example/other", &verifier.public_key),
        None
    );
}

/// The other way round: a note signed with `ed25519-compact` by the same rules is
/// one the crate's verifier accepts.
#[test]
fn the_crate_accepts_a_note_signed_by_another_implementation() {
    let keys = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([0x42; 32]));
    let (_, verifier) = log_key();
    assert_eq!(*keys.pk, verifier.public_key);
    let body = checkpoint().body();
    let mut signature = key_id(ORIGIN, &verifier.public_key).to_vec();
    signature.extend_from_slice(keys.sk.sign(&body, None).as_ref());
    let note = format!(
        "{body}\n\u{2014} {ORIGIN} {}\n",
        STANDARD.encode(&signature)
    );
    assert!(SignedNote::parse(&note).unwrap().verified_by(&verifier));
}

#[test]
fn a_verifier_key_is_name_plus_hex_key_id_plus_base64_of_type_and_key() {
    let (_, verifier) = log_key();
    let mut typed_key = vec![ED25519];
    typed_key.extend_from_slice(&verifier.public_key);
    let id = lower_hex(&key_id(ORIGIN, &verifier.public_key));
    assert_eq!(id.len(), 8);
    assert_eq!(
        verifier.to_string(),
        format!("{ORIGIN}+{id}+{}", STANDARD.encode(&typed_key))
    );
    assert_eq!(verifier.key_hash(), key_id(ORIGIN, &verifier.public_key));
}

/// The example of `golang.org/x/mod/sumdb/note`'s documentation, the reference
/// implementation of signed notes: its signer key
/// `PRIVATE+KEY+PeterNeumann+c74f20a3+<base64(0x01 || seed)>`, its verifier key
/// and its signed note. Ed25519 signatures are deterministic, so the crate must
/// make that note byte for byte.
#[test]
fn the_crate_makes_the_reference_implementations_example_note() {
    let seed = STANDARD
        .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
        .unwrap();
    let (&kind, seed) = seed.split_first().unwrap();
    assert_eq!(kind, ED25519);
    let signing = SigningKey::from_bytes(&seed.try_into().unwrap());
    let verifier = Verifier::new("PeterNeumann", signing.verifying_key().to_bytes()).unwrap();
    let verifier_key = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    assert_eq!(verifier.to_string(), verifier_key);
    assert_eq!(Verifier::parse(verifier_key).unwrap(), verifier);

    let text = "If you think cryptography is the answer to your problem,\n\
                then you don't know what your problem is.\n";
    let note = sign(&signing, &verifier, text);
    assert_eq!(
        note,
        format!(
            "{text}\n\u{2014} PeterNeumann \
             x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        )
    );
    assert_eq!(
        open(note.as_bytes(), "PeterNeumann", &verifier.public_key),
        Some(text)
    );
}

#[test]
fn a_checkpoint_body_is_exactly_the_three_c2sp_lines() {
    for size in [0, 1, 10, 1_234_567, u64::MAX] {
        let checkpoint = Checkpoint {
            size,
            ..checkpoint()
        };
        let body = checkpoint.body();
        let lines: Vec<&str> = body
            .strip_suffix('\n')
            .expect("the body ends with a newline")
            .split('\n')
            .collect();
        let [origin, size_line, root] = lines[..] else {
            panic!("not three lines: {body:?}");
        };
        assert_eq!(origin, ORIGIN);
        assert_eq!(size_line, size.to_string());
        assert!(size_line.bytes().all(|b| b.is_ascii_digit()));
        assert!(size_line == "0" || !size_line.starts_with('0'));
        assert_eq!(root.len(), 44, "base64 of 32 bytes: {root}");
        assert_eq!(STANDARD.decode(root).unwrap(), checkpoint.root);
        assert_eq!(Checkpoint::parse(&body).unwrap(), checkpoint);
    }
}
