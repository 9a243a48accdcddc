//! Issuing and verifying tokens: EdDSA only (no `none`, no HMAC), with `exp`, `nbf`,
//! `iss` and `aud` checked and a bounded clock skew.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{AuthError, KeyPair, Principal, Role};

/// The `iss` and `aud` of every token this deployment issues.
pub const ISSUER: &str = "auditlog";
pub const AUDIENCE: &str = "auditlog";
/// How long an issued token is valid.
pub const TOKEN_LIFETIME_SECS: u64 = 20 * 60;
/// Clock difference tolerated between issuer and verifier.
pub const CLOCK_SKEW_SECS: u64 = 30;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iss: String,
    aud: String,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Signs tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    key_id: String,
}

impl TokenIssuer {
    pub fn new(keys: &KeyPair) -> Result<Self, AuthError> {
        let key =
            EncodingKey::from_ed_pem(keys.private_pem.as_bytes()).map_err(|e| AuthError::Key {
                path: keys::KEY_FILE.into(),
                reason: e.to_string(),
            })?;
        Ok(TokenIssuer {
            key,
            key_id: keys.key_id.clone(),
        })
    }

    /// A token for `principal`, valid from now for [`TOKEN_LIFETIME_SECS`].
    pub fn issue(&self, principal: &Principal) -> Result<String, AuthError> {
        self.issue_at(principal, now_secs())
    }

    fn issue_at(&self, principal: &Principal, now: u64) -> Result<String, AuthError> {
        let claims = Claims {
            sub: principal.subject.clone(),
            role: principal.role,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            nbf: now,
            exp: now + TOKEN_LIFETIME_SECS,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))
    }
}

use crate::keys;

/// Checks tokens and says who sent them.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(keys: &KeyPair) -> Result<Self, AuthError> {
        let key =
            DecodingKey::from_ed_pem(keys.public_pem.as_bytes()).map_err(|e| AuthError::Key {
                path: keys::KEY_FILE.into(),
                reason: e.to_string(),
            })?;
        // Validation::new pins the algorithm list to exactly EdDSA.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = CLOCK_SKEW_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Ok(TokenVerifier { key, validation })
    }

    /// The principal a token names, if the token is genuine and current.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        Principal::new(data.claims.sub, data.claims.role)
            .ok_or_else(|| AuthError::InvalidToken("the subject is not a valid id".into()))
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (TokenIssuer, TokenVerifier, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyPair::load_or_generate(dir.path()).unwrap();
        (
            TokenIssuer::new(&keys).unwrap(),
            TokenVerifier::new(&keys).unwrap(),
            dir,
        )
    }

    fn admin() -> Principal {
        Principal::new("1".into(), Role::Admin).unwrap()
    }

    #[test]
    fn an_issued_token_verifies_to_its_principal() {
        let (issuer, verifier, _dir) = setup();
        let token = issuer.issue(&admin()).unwrap();
        assert_eq!(verifier.verify(&token).unwrap(), admin());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let (issuer, verifier, _dir) = setup();
        let long_ago = now_secs() - TOKEN_LIFETIME_SECS - CLOCK_SKEW_SECS - 5;
        let token = issuer.issue_at(&admin(), long_ago).unwrap();
        assert!(verifier.verify(&token).is_err());
    }

    #[test]
    fn a_token_from_the_future_is_refused() {
        let (issuer, verifier, _dir) = setup();
        let token = issuer
            .issue_at(&admin(), now_secs() + CLOCK_SKEW_SECS + 60)
            .unwrap();
        assert!(verifier.verify(&token).is_err());
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        let (issuer, _, _dir) = setup();
        let (_, other_verifier, _other) = setup();
        let token = issuer.issue(&admin()).unwrap();
        assert!(other_verifier.verify(&token).is_err());
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let (issuer, verifier, _dir) = setup();
        let token = issuer
            .issue(&Principal::new("2".into(), Role::User).unwrap())
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = token_part(&format!(
            r#"{{"sub":"2","role":"admin","iss":"auditlog","aud":"auditlog","iat":{n},"nbf":{n},"exp":{e}}}"#,
            n = now_secs(),
            e = now_secs() + 600
        ));
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(verifier.verify(&forged).is_err());
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let (_, verifier, _dir) = setup();
        let header = token_part(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = token_part(&format!(
            r#"{{"sub":"1","role":"admin","iss":"auditlog","aud":"auditlog","nbf":0,"exp":{}}}"#,
            now_secs() + 600
        ));
        assert!(verifier.verify(&format!("{header}.{payload}.")).is_err());
    }

    #[test]
    fn garbage_is_refused() {
        let (_, verifier, _dir) = setup();
        for bad in ["", "abc", "a.b.c", "...."] {
            assert!(verifier.verify(bad).is_err());
        }
    }

    /// Unpadded base64url, enough for hand-made test tokens.
    fn token_part(text: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = text.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
