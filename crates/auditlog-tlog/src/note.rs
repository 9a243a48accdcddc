//! C2SP `tlog-checkpoint` bodies and C2SP `signed-note` signatures with Ed25519.
//!
//! A checkpoint is three lines, `<origin>\n<tree size>\n<base64 root hash>\n`. A
//! signed note is its text, an empty line, and one line per signature,
//! `— <key name> <base64(key hash (4 bytes) || signature (64 bytes))>`, the key hash
//! being the first 4 bytes of `SHA-256(name || "\n" || 0x01 || public key)`. A
//! verifier key is written `<name>+<hex key hash>+<base64(0x01 || public key)>`.

use sha2::{Digest, Sha256};

use crate::{Hash, base64, from_base64};

/// The signature type byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;

/// What is wrong with a note, a checkpoint or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Note(&'static str),
    #[error("malformed checkpoint: {0}")]
    Checkpoint(&'static str),
    #[error("malformed verifier key: {0}")]
    Key(&'static str),
}

/// A checkpoint: the log's origin, its size and its root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`, no extension lines.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, base64(&self.root))
    }

    /// Reads a checkpoint body (extension lines are allowed and ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = NoteError::Checkpoint;
        let body = text
            .strip_suffix('\n')
            .ok_or(bad("it must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(bad("no origin"))?;
        let size = lines
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .filter(|s| s.len() == 1 || !s.starts_with('0'))
            .and_then(|s| s.parse().ok())
            .ok_or(bad("the second line must be the tree size in decimal"))?;
        let root = lines
            .next()
            .and_then(from_base64)
            .and_then(|bytes| Hash::try_from(bytes).ok())
            .ok_or(bad("the third line must be a base64 SHA-256 root hash"))?;
        if lines.any(str::is_empty) {
            return Err(bad("an extension line is empty"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// The 4-byte key hash of an Ed25519 key `name`.
pub fn key_hash(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ED25519]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A key name as signed notes allow it: not empty, no spaces, no `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// An Ed25519 note verifier: a key name and its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub name: String,
    pub public_key: [u8; 32],
}

impl Verifier {
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<Verifier, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::Key(
                "a key name must be non-empty, without spaces or '+'",
            ));
        }
        Ok(Verifier {
            name: name.to_owned(),
            public_key,
        })
    }

    /// This key's 4-byte hash.
    pub fn key_hash(&self) -> [u8; 4] {
        key_hash(&self.name, &self.public_key)
    }

    /// Reads `<name>+<hex key hash>+<base64(0x01 || public key)>`, checking the
    /// hash against the key.
    pub fn parse(text: &str) -> Result<Verifier, NoteError> {
        let bad = NoteError::Key;
        // The base64 key may itself hold `+`: only the first two separate fields.
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<key hash>+<key>"));
        };
        let key = from_base64(key).ok_or(bad("the key is not base64"))?;
        let (&kind, public_key) = key.split_first().ok_or(bad("the key is empty"))?;
        if kind != ED25519 {
            return Err(bad("only Ed25519 keys (type 0x01) are supported"));
        }
        let public_key: [u8; 32] = public_key
            .try_into()
            .map_err(|_| bad("an Ed25519 key has 32 bytes"))?;
        let verifier = Verifier::new(name, public_key)?;
        if hash != hex(&verifier.key_hash()) {
            return Err(bad("the key hash does not match the key"));
        }
        Ok(verifier)
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.public_key) else {
            return false;
        };
        key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
            .is_ok()
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key = Vec::with_capacity(33);
        key.push(ED25519);
        key.extend_from_slice(&self.public_key);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex(&self.key_hash()),
            base64(&key)
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_hash: [u8; 4],
    pub signature: [u8; 64],
}

/// A note read back: its text (ending with a newline) and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

/// The signature line's prefix: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

impl SignedNote {
    /// Splits a signed note into its text and signature lines. Signatures of other
    /// types or sizes are skipped, as the format asks of a verifier.
    pub fn parse(note: &str) -> Result<SignedNote, NoteError> {
        let bad = NoteError::Note;
        let split = note
            .rfind("\n\n")
            .ok_or(bad("no empty line before the signatures"))?;
        let text = &note[..split + 1];
        let block = &note[split + 2..];
        let block = block
            .strip_suffix('\n')
            .ok_or(bad("it must end with a newline"))?;
        let mut signatures = Vec::new();
        for line in block.split('\n') {
            let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or(bad(
                "a signature line must start with an em dash and a space",
            ))?;
            let (name, encoded) = rest
                .split_once(' ')
                .ok_or(bad("a signature line is `— <name> <signature>`"))?;
            let bytes = from_base64(encoded).ok_or(bad("a signature is not base64"))?;
            if !valid_name(name) || bytes.len() != 68 {
                continue;
            }
            let (hash, signature) = bytes.split_at(4);
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_hash: hash.try_into().map_err(|_| bad("short key hash"))?,
                signature: signature.try_into().map_err(|_| bad("short signature"))?,
            });
        }
        if signatures.is_empty() {
            return Err(bad("no signature"));
        }
        Ok(SignedNote {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Whether one of the note's signatures is `verifier`'s, over the note's text.
    pub fn verified_by(&self, verifier: &Verifier) -> bool {
        let hash = verifier.key_hash();
        self.signatures.iter().any(|s| {
            s.name == verifier.name
                && s.key_hash == hash
                && verifier.verifies(self.text.as_bytes(), &s.signature)
        })
    }
}

/// Signs `text` (which must end with a newline) as `verifier`'s key, `sign` making
/// the Ed25519 signature: the whole note, text and signature line.
pub fn sign_note<E>(
    text: &str,
    verifier: &Verifier,
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
) -> Result<String, E> {
    let signature = sign(text.as_bytes())?;
    let mut line = Vec::with_capacity(68);
    line.extend_from_slice(&verifier.key_hash());
    line.extend_from_slice(&signature);
    Ok(format!(
        "{text}\n{SIGNATURE_PREFIX}{} {}\n",
        verifier.name,
        base64(&line)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key() -> (SigningKey, Verifier) {
        let signing = SigningKey::from_bytes(&[7; 32]);
        let verifier =
            Verifier::new("example.com/log", signing.verifying_key().to_bytes()).unwrap();
        (signing, verifier)
    }

    fn sign(signing: &SigningKey, text: &str, verifier: &Verifier) -> String {
        sign_note(text, verifier, |m| Ok::<_, ()>(signing.sign(m).to_bytes())).unwrap()
    }

    #[test]
    fn a_checkpoint_round_trips_and_rejects_bad_lines() {
        let checkpoint = Checkpoint {
            origin: "example.com/log".into(),
            size: 42,
            root: [9; 32],
        };
        let body = checkpoint.body();
        assert_eq!(body, format!("example.com/log\n42\n{}\n", base64(&[9; 32])));
        assert_eq!(Checkpoint::parse(&body).unwrap(), checkpoint);
        assert!(Checkpoint::parse("example.com/log\n042\nAAAA\n").is_err());
        assert!(Checkpoint::parse("example.com/log\n42\n").is_err());
        assert!(Checkpoint::parse(body.trim_end()).is_err());
    }

    #[test]
    fn a_signed_note_verifies_and_fails_on_any_changed_byte() {
        let (signing, verifier) = key();
        let note = sign(&signing, "example.com/log\n1\nAAAA\n", &verifier);
        assert!(note.contains("\n\n\u{2014} example.com/log "));
        assert!(SignedNote::parse(&note).unwrap().verified_by(&verifier));
        let bytes = note.as_bytes();
        for i in 0..bytes.len() {
            let mut changed = bytes.to_vec();
            changed[i] ^= 0x01;
            let Ok(text) = String::from_utf8(changed) else {
                continue;
            };
            let ok = SignedNote::parse(&text).is_ok_and(|n| n.verified_by(&verifier));
            assert!(!ok, "byte {i} changed and the note still verifies");
        }
    }

    #[test]
    fn a_key_whose_base64_holds_a_plus_parses() {
        let verifier = (0_u8..=255)
            .map(|seed| {
                let signing = SigningKey::from_bytes(&[seed; 32]);
                Verifier::new("log", signing.verifying_key().to_bytes()).unwrap()
            })
            .find(|v| v.to_string().matches('+').count() > 2)
            .unwrap();
        assert_eq!(Verifier::parse(&verifier.to_string()).unwrap(), verifier);
    }

    #[test]
    fn a_verifier_key_round_trips_and_checks_its_hash() {
        let (_, verifier) = key();
        let text = verifier.to_string();
        assert!(text.starts_with("example.com/log+"));
        assert_eq!(Verifier::parse(&text).unwrap(), verifier);
        let other = text.replacen('+', "+0", 1);
        assert!(Verifier::parse(&other).is_err());
        assert!(Verifier::new("bad name", [0; 32]).is_err());
    }
}
