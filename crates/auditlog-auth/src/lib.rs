//! Who is calling, and what they may do. Signing keys live in the data directory and
//! are generated at first start ([`keys`]); tokens are EdDSA JWTs with a pinned
//! algorithm ([`token`]); [`policy`] is the one authorisation policy that both the
//! primary API and the auditor enforce, so calling either gives the same rights;
//! [`rights`] says whether a token still carries the rights of its principal.

pub mod keys;
pub mod policy;
pub mod rights;
pub mod token;

pub use keys::KeyPair;
pub use policy::{ANY_TENANT, EventScope, Principal, Role};
pub use rights::{CurrentRights, RightsCheck};
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
    /// The token is genuine but its principal's rights were taken away since it
    /// was issued (demoted, deleted); says how.
    #[error("the token's rights were revoked: {0}")]
    Revoked(String),
    /// Whether the token's rights still hold could not be checked now (the
    /// database or the store did not answer); the request is refused, not
    /// let through unchecked.
    #[error("the token's rights could not be checked now: {0}")]
    Unavailable(String),
}
