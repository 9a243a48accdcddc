//! Who is calling, and what they may do. Signing keys live in the data directory and
//! are generated at first start ([`keys`]); tokens are EdDSA JWTs with a pinned
//! algorithm ([`token`]); [`policy`] is the one authorisation policy that both the
//! primary API and the auditor enforce, so calling either gives the same rights.

pub mod keys;
pub mod policy;
pub mod token;

pub use keys::KeyPair;
pub use policy::{EventScope, Principal, Role};
pub use token::{ExternalIssuer, TokenIssuer, TokenVerifier};

/// Errors of authentication and key handling.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token was sent; send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("the token is not valid: {0}")]
    InvalidToken(String),
    #[error("the signing key at {path} could not be used: {reason}")]
    Key { path: String, reason: String },
}
