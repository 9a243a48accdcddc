//! The log's signing identity and the files kept beside its key in the data
//! directory:
//!
//! - `log-ed25519.pem`: the checkpoint key (created on first start);
//! - `log-keys`: every note verifier key this directory has signed with, one per
//!   line, so that checkpoints signed before a key rotation still verify;
//! - `log-checkpoints`: every checkpoint this directory's sealer signed, one per
//!   line as base64 of the signed note, appended and synced before the store gets
//!   it. Its last line is what the sealer checks the tree against before signing
//!   again, and `auditlog verify --data-dir` reads all of it, independently of the
//!   store.
//!
//! The key name is the log's origin (`--log-origin`, or `auditlog/<hex>` derived
//! from the first key), which stays the same for the life of the log.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read as _, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use auditlog_auth::KeyPair;
use auditlog_tlog::{Checkpoint, SignedNote, Verifier, base64, from_base64, sign_note};
use sha2::{Digest, Sha256};

/// The checkpoint key's file in the data directory.
pub const LOG_KEY_FILE: &str = "log-ed25519.pem";
/// The verifier keys this data directory has signed with.
pub const LOG_KEYS_FILE: &str = "log-keys";
/// The checkpoints this data directory's sealer signed.
pub const JOURNAL_FILE: &str = "log-checkpoints";

/// Why the identity could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum LogIdentityError {
    #[error(transparent)]
    Key(#[from] auditlog_auth::AuthError),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error(
        "this log's origin is `{existing}`, but --log-origin says `{configured}`; a log keeps \
         its origin for life (remove --log-origin, or use a new store and data directory)"
    )]
    OriginChanged {
        existing: String,
        configured: String,
    },
    #[error("the log origin `{0}` is not usable as a key name: no spaces or '+'")]
    BadOrigin(String),
}

/// The log's key, its origin and the directory holding them.
#[derive(Clone)]
pub struct LogIdentity {
    keys: KeyPair,
    verifier: Verifier,
    dir: PathBuf,
}

impl std::fmt::Debug for LogIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogIdentity")
            .field("verifier", &self.verifier.to_string())
            .finish_non_exhaustive()
    }
}

impl LogIdentity {
    /// Opens (creating on first start) the checkpoint key of `data_dir`. The origin
    /// is, in order: the one of the last checkpoint this directory signed, the one
    /// of `store_origin` (the store's latest checkpoint), `configured`, or
    /// `auditlog/<first 8 bytes of SHA-256 of the public key, hex>`; a configured
    /// origin that differs from an existing log's is an error.
    pub fn open(
        data_dir: &Path,
        configured: Option<&str>,
        store_origin: Option<String>,
    ) -> Result<LogIdentity, LogIdentityError> {
        let keys = KeyPair::load_or_generate_file(&data_dir.join(LOG_KEY_FILE))?;
        let public_key = keys.public_key()?;
        let journal_origin = last_signed(data_dir)?.map(|(checkpoint, _)| checkpoint.origin);
        let existing = journal_origin.or(store_origin);
        let origin = match (existing, configured) {
            (Some(existing), Some(configured)) if existing != configured => {
                return Err(LogIdentityError::OriginChanged {
                    existing,
                    configured: configured.to_owned(),
                });
            }
            (Some(existing), _) => existing,
            (None, Some(configured)) => configured.to_owned(),
            (None, None) => {
                let digest = Sha256::digest(public_key);
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("auditlog/{hex}")
            }
        };
        let verifier = Verifier::new(&origin, public_key)
            .map_err(|_| LogIdentityError::BadOrigin(origin.clone()))?;
        let identity = LogIdentity {
            keys,
            verifier,
            dir: data_dir.to_owned(),
        };
        identity.remember_key()?;
        Ok(identity)
    }

    /// The log's origin (also its key's name).
    pub fn origin(&self) -> &str {
        &self.verifier.name
    }

    /// The data directory holding the key.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current key's note verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Every key this directory has signed with (the current one included).
    pub fn trusted(&self) -> Result<Vec<Verifier>, LogIdentityError> {
        trusted_keys(&self.dir)
    }

    /// `checkpoint` signed with the current key: the whole note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> Result<String, LogIdentityError> {
        Ok(sign_note(&checkpoint.body(), &self.verifier, |text| {
            self.keys.sign(text)
        })?)
    }

    /// The last checkpoint this directory signed, with its note.
    pub fn last_signed(&self) -> Result<Option<(Checkpoint, String)>, LogIdentityError> {
        last_signed(&self.dir)
    }

    /// Appends a signed note to the journal and syncs it, before anything else
    /// learns of it.
    pub fn journal(&self, note: &str) -> Result<(), LogIdentityError> {
        append_line(&self.dir.join(JOURNAL_FILE), &base64(note.as_bytes()))
    }

    /// Adds the current verifier key to `log-keys` unless it is there.
    fn remember_key(&self) -> Result<(), LogIdentityError> {
        if trusted_keys(&self.dir)?.contains(&self.verifier) {
            return Ok(());
        }
        append_line(&self.dir.join(LOG_KEYS_FILE), &self.verifier.to_string())
    }
}

impl From<LogIdentityError> for String {
    fn from(err: LogIdentityError) -> String {
        err.to_string()
    }
}

/// Appends `line` and a newline to the file at `path` (created if missing) and
/// syncs it: once this returns, the line survives a crash.
fn append_line(path: &Path, line: &str) -> Result<(), LogIdentityError> {
    let error = file_error(path);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(&error)?;
    file.write_all(format!("{line}\n").as_bytes())
        .map_err(&error)?;
    file.sync_data().map_err(error)
}

fn file_error(path: &Path) -> impl Fn(std::io::Error) -> LogIdentityError + '_ {
    move |e| LogIdentityError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The verifier keys listed in `data_dir`'s `log-keys` (none when it is missing).
pub fn trusted_keys(data_dir: &Path) -> Result<Vec<Verifier>, LogIdentityError> {
    let path = data_dir.join(LOG_KEYS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_error(&path)(e)),
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            Verifier::parse(line).map_err(|e| LogIdentityError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Every checkpoint in `data_dir`'s journal, oldest first.
pub fn journal_entries(data_dir: &Path) -> Result<Vec<(Checkpoint, String)>, LogIdentityError> {
    let path = data_dir.join(JOURNAL_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_error(&path)(e)),
    };
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| decode_entry(&path, line))
        .collect()
}

/// The journal's last entry, read from its end (the journal grows for ever).
fn last_signed(data_dir: &Path) -> Result<Option<(Checkpoint, String)>, LogIdentityError> {
    let path = data_dir.join(JOURNAL_FILE);
    let error = file_error(&path);
    let mut file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(e)),
    };
    let len = file.metadata().map_err(&error)?.len();
    // A note is a few hundred bytes; 16 KiB holds the last whole line.
    file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)))
        .map_err(&error)?;
    let mut tail = String::new();
    file.read_to_string(&mut tail).map_err(&error)?;
    match tail.lines().rev().find(|line| !line.is_empty()) {
        Some(line) => decode_entry(&path, line).map(Some),
        None => Ok(None),
    }
}

fn decode_entry(path: &Path, line: &str) -> Result<(Checkpoint, String), LogIdentityError> {
    let bad = |reason: String| LogIdentityError::File {
        path: path.display().to_string(),
        reason,
    };
    let note = from_base64(line.trim())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| bad("a line is not a base64 note".into()))?;
    let signed = SignedNote::parse(&note).map_err(|e| bad(e.to_string()))?;
    let checkpoint = Checkpoint::parse(&signed.text).map_err(|e| bad(e.to_string()))?;
    Ok((checkpoint, note))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn the_origin_stays_and_each_signed_checkpoint_is_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let identity = LogIdentity::open(dir.path(), None, None).unwrap();
        assert!(identity.origin().starts_with("auditlog/"));
        let checkpoint = Checkpoint {
            origin: identity.origin().to_owned(),
            size: 3,
            root: [1; 32],
        };
        let note = identity.sign(&checkpoint).unwrap();
        identity.journal(&note).unwrap();
        let again = LogIdentity::open(dir.path(), None, None).unwrap();

        assert_eq!(again.origin(), identity.origin());
        assert_eq!(
            again.last_signed().unwrap(),
            Some((checkpoint, note.clone()))
        );
        assert!(
            SignedNote::parse(&note)
                .unwrap()
                .verified_by(again.verifier())
        );
        assert_eq!(again.trusted().unwrap(), vec![identity.verifier().clone()]);
        let changed = LogIdentity::open(dir.path(), Some("example.com/other"), None);
        assert!(matches!(
            changed,
            Err(LogIdentityError::OriginChanged { .. })
        ));
    }

    #[test]
    fn a_rotated_key_is_trusted_alongside_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = LogIdentity::open(dir.path(), Some("example.com/log"), None).unwrap();
        fs::rename(
            dir.path().join(LOG_KEY_FILE),
            dir.path().join("old-log-key.pem"),
        )
        .unwrap();
        let second = LogIdentity::open(dir.path(), Some("example.com/log"), None).unwrap();

        assert_ne!(first.verifier(), second.verifier());
        assert_eq!(
            second.trusted().unwrap(),
            vec![first.verifier().clone(), second.verifier().clone()]
        );
    }
}
