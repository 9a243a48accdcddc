//! The Ed25519 key pair that signs and verifies tokens, kept as a PKCS#8 PEM file
//! (mode 0600) in the data directory and created on first start.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};

use crate::AuthError;

/// File name of the private key inside the data directory.
pub const KEY_FILE: &str = "jwt-ed25519.pem";

/// The token signing key and its public half, both as PEM.
#[derive(Clone)]
pub struct KeyPair {
    pub(crate) private_pem: String,
    pub(crate) public_pem: String,
    /// Short fingerprint of the public key, sent as the JWT `kid`.
    pub(crate) key_id: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Loads the key from `data_dir`, generating and saving one if there is none.
    /// Safe when two processes start at once on the same directory: only one file
    /// is ever created and both end up with it.
    pub fn load_or_generate(data_dir: &Path) -> Result<Self, AuthError> {
        Self::load_or_generate_file(&data_dir.join(KEY_FILE))
    }

    /// Loads the key in the file `path`, generating and saving one if there is
    /// none (with the same guarantees as [`KeyPair::load_or_generate`]): for keys
    /// other than the token key, such as the log's checkpoint key.
    pub fn load_or_generate_file(path: &Path) -> Result<Self, AuthError> {
        let error = |reason: String| AuthError::Key {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
        }
        match read_key(path) {
            Ok(pair) => return Ok(pair),
            Err(ReadError::Missing) => {}
            Err(ReadError::Bad(reason)) => return Err(error(reason)),
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| error(format!("no randomness: {e}")))?;
        let key = SigningKey::from_bytes(&seed);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| error(e.to_string()))?;
        write_new_private(path, pem.as_bytes()).map_err(|e| error(e.to_string()))?;
        // Whoever won the race to create the file, read what is there now.
        read_key(path).map_err(|e| match e {
            ReadError::Missing => error("the key file vanished after writing".into()),
            ReadError::Bad(reason) => error(reason),
        })
    }

    /// Where the key of a data directory lives.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(KEY_FILE)
    }

    /// Loads the key of `data_dir` without ever creating one: `Ok(None)` when there
    /// is none (for tools that check signatures, such as `auditlog verify`).
    pub fn load(data_dir: &Path) -> Result<Option<Self>, AuthError> {
        let path = data_dir.join(KEY_FILE);
        match read_key(&path) {
            Ok(pair) => Ok(Some(pair)),
            Err(ReadError::Missing) => Ok(None),
            Err(ReadError::Bad(reason)) => Err(AuthError::Key {
                path: path.display().to_string(),
                reason,
            }),
        }
    }

    /// The key id (the JWT `kid`): a short fingerprint of the public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// An Ed25519 signature of `message` (64 bytes), e.g. over a signed chain head.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], AuthError> {
        use ed25519_dalek::Signer;
        Ok(self.signing_key()?.sign(message).to_bytes())
    }

    /// The raw Ed25519 public key (32 bytes).
    pub fn public_key(&self) -> Result<[u8; 32], AuthError> {
        Ok(self.signing_key()?.verifying_key().to_bytes())
    }

    /// The raw Ed25519 public key (32 bytes) as lower-case hex.
    pub fn public_key_hex(&self) -> Result<String, AuthError> {
        Ok(self
            .signing_key()?
            .verifying_key()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    fn signing_key(&self) -> Result<SigningKey, AuthError> {
        SigningKey::from_pkcs8_pem(&self.private_pem).map_err(|e| AuthError::Key {
            path: KEY_FILE.into(),
            reason: format!("not an Ed25519 PKCS#8 PEM key: {e}"),
        })
    }
}

/// Whether `signature` is a valid Ed25519 signature of `message` by the public key
/// `public_key` (32 raw bytes); anything malformed is simply not valid.
pub fn verify_signature(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = <[u8; 32]>::try_from(public_key) else {
        return false;
    };
    let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .is_ok_and(|key| key.verify_strict(message, &signature).is_ok())
}

enum ReadError {
    Missing,
    Bad(String),
}

fn read_key(path: &Path) -> Result<KeyPair, ReadError> {
    let mut pem = String::new();
    for _ in 0..40 {
        pem = match fs::read_to_string(path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(ReadError::Missing),
            Err(e) => return Err(ReadError::Bad(e.to_string())),
        };
        if !pem.trim().is_empty() {
            break;
        }
        // Another process created the file and has not written it yet.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let key = SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| ReadError::Bad(format!("not an Ed25519 PKCS#8 PEM key: {e}")))?;
    let public = key.verifying_key();
    let public_pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| ReadError::Bad(e.to_string()))?;
    let key_id = public.as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(KeyPair {
        private_pem: pem,
        public_pem,
        key_id,
    })
}

fn write_new_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(contents)?;
            file.sync_all()
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_generated_once_and_reloaded_after() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyPair::load_or_generate(dir.path()).unwrap();
        let second = KeyPair::load_or_generate(dir.path()).unwrap();
        assert_eq!(first.public_pem, second.public_pem);
        assert_eq!(first.key_id.len(), 16);
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        KeyPair::load_or_generate(dir.path()).unwrap();
        let mode = fs::metadata(KeyPair::path_in(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_signature_verifies_with_the_public_key_and_not_for_another_message() {
        let dir = tempfile::tempdir().unwrap();
        let pair = KeyPair::load_or_generate(dir.path()).unwrap();
        let public: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&pair.public_key_hex().unwrap()[i * 2..i * 2 + 2], 16))
            .collect::<Result<_, _>>()
            .unwrap();

        let signature = pair.sign(b"head").unwrap();

        assert!(verify_signature(&public, b"head", &signature));
        assert!(!verify_signature(&public, b"head2", &signature));
        assert!(!verify_signature(&public[..31], b"head", &signature));
    }

    #[test]
    fn loading_without_a_key_creates_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(KeyPair::load(dir.path()).unwrap().is_none());
        assert!(!KeyPair::path_in(dir.path()).exists());
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(KeyPair::path_in(dir.path()), "garbage").unwrap();
        assert!(matches!(
            KeyPair::load_or_generate(dir.path()),
            Err(AuthError::Key { .. })
        ));
    }
}
