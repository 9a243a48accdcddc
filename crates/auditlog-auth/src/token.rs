//! Issuing and verifying tokens: EdDSA only (no `none`, no HMAC), with `exp`, `nbf`,
//! `iss` and `aud` checked, a bounded clock skew, and keys chosen by `kid` so that
//! they can be rotated and an external issuer's public keys (PEM or JWKS) trusted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::rights::RightsCheck;
use crate::{ANY_TENANT, AuthError, KeyPair, Principal, Role};

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
    tenant: String,
    /// A viewer token's object.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<ClaimedObject>,
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
        self.issue_at(principal, now_secs(), TOKEN_LIFETIME_SECS)
    }

    /// A token for `principal`, valid from now for `lifetime` (whole seconds; at
    /// least one). Tokens cannot be revoked, so callers should keep it short.
    pub fn issue_for(
        &self,
        principal: &Principal,
        lifetime: std::time::Duration,
    ) -> Result<String, AuthError> {
        self.issue_at(principal, now_secs(), lifetime.as_secs().max(1))
    }

    fn issue_at(
        &self,
        principal: &Principal,
        now: u64,
        lifetime_secs: u64,
    ) -> Result<String, AuthError> {
        let claims = Claims {
            sub: principal.subject.clone(),
            role: principal.role,
            tenant: principal.tenant.clone(),
            scope: principal
                .object
                .clone()
                .map(|(object_type, id)| ClaimedObject { object_type, id }),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(lifetime_secs),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))
    }
}

use crate::keys;

/// Reads the `role` of a token; an external issuer's token without one acts as an
/// ordinary user, never as an admin or a service.
#[derive(Debug, Deserialize)]
struct VerifiedClaims {
    sub: String,
    #[serde(default = "default_role")]
    role: Role,
    /// The principal's tenant; a token without one is of the default tenant.
    #[serde(default)]
    tenant: Option<String>,
    /// The one object a viewer token is confined to.
    #[serde(default)]
    scope: Option<ClaimedObject>,
    nbf: u64,
    exp: u64,
}

fn default_role() -> Role {
    Role::User
}

/// An object named in a token (a viewer token's scope).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClaimedObject {
    #[serde(rename = "type")]
    object_type: String,
    id: String,
}

/// One key tokens may be signed with, and the `iss`/`aud` its tokens must carry.
#[derive(Clone)]
struct TrustedKey {
    key: DecodingKey,
    validation: Arc<Validation>,
}

/// Checks tokens and says who sent them. It holds every key a token may be signed
/// with, by key id (`kid`), so that keys can be rotated: the data directory's own
/// key, plus any public keys of an external issuer ([`TokenVerifier::trust_pem`],
/// [`TokenVerifier::trust_jwks`]). A token naming an unknown `kid` is refused; one
/// without a `kid` must verify under one of the known keys.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<BTreeMap<String, TrustedKey>>,
    /// Tokens this key set verified, with their validity window. Checking an
    /// Ed25519 signature costs tens of microseconds, the largest part of a cheap
    /// request; a client sends the same token many times, and a token's signature
    /// check gives the same answer every time for the same keys. Only the time
    /// window is checked again on a hit.
    verified: Arc<Mutex<HashMap<String, Verified>>>,
    /// Whether a verified token's principal still has its rights
    /// ([`TokenVerifier::with_rights`]); `None` trusts the token for its lifetime.
    rights: Option<Arc<dyn RightsCheck>>,
}

/// A verified token's principal and the window it is valid in (seconds).
#[derive(Clone)]
struct Verified {
    principal: Principal,
    nbf: u64,
    exp: u64,
}

/// Most tokens remembered; past it the memory starts over (clients re-verify once).
const VERIFIED_CAPACITY: usize = 4_096;

/// The `iss` and `aud` that tokens of an external issuer must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIssuer {
    pub issuer: String,
    pub audience: String,
}

impl Default for ExternalIssuer {
    fn default() -> Self {
        ExternalIssuer {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
        }
    }
}

impl TokenVerifier {
    /// A verifier trusting only the data directory's key, for tokens with this
    /// deployment's `iss` and `aud`.
    pub fn new(keys: &KeyPair) -> Result<Self, AuthError> {
        let key =
            DecodingKey::from_ed_pem(keys.public_pem.as_bytes()).map_err(|e| AuthError::Key {
                path: keys::KEY_FILE.into(),
                reason: e.to_string(),
            })?;
        let mut map = BTreeMap::new();
        map.insert(
            keys.key_id.clone(),
            TrustedKey {
                key,
                validation: Arc::new(validation(ISSUER, AUDIENCE)),
            },
        );
        Ok(TokenVerifier {
            keys: Arc::new(map),
            verified: Arc::default(),
            rights: None,
        })
    }

    /// The same verifier, asking `rights` on every [`TokenVerifier::authenticate`]
    /// whether the token's principal still has the rights it claims, so that a
    /// demoted or deleted user's token stops working before it expires.
    pub fn with_rights(mut self, rights: Arc<dyn RightsCheck>) -> Self {
        self.rights = Some(rights);
        self
    }

    /// The principal a token names, if the token is genuine and current and its
    /// principal still has the rights it claims: what every request is checked
    /// with.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let principal = self.verify(token)?;
        if let Some(rights) = &self.rights {
            rights.check(&principal).await?;
        }
        Ok(principal)
    }

    /// Also trusts the Ed25519 public key in `pem` (SPKI PEM), for tokens carrying
    /// `external`'s `iss` and `aud`. Its key id is its fingerprint, as for the data
    /// directory's key, unless the token names none. `source` names the file in errors.
    pub fn trust_pem(
        mut self,
        pem: &str,
        external: &ExternalIssuer,
        source: &str,
    ) -> Result<Self, AuthError> {
        let error = |reason: String| AuthError::Key {
            path: source.into(),
            reason,
        };
        let key = DecodingKey::from_ed_pem(pem.as_bytes())
            .map_err(|e| error(format!("not an Ed25519 public key in PEM form: {e}")))?;
        let raw = key.try_get_as_bytes().map_err(|e| error(e.to_string()))?;
        if raw.len() != 32 {
            return Err(error("not an Ed25519 public key (32 bytes)".into()));
        }
        let kid = fingerprint(raw);
        self.add(kid, key, external);
        Ok(self)
    }

    /// Also trusts every Ed25519 key (`"kty":"OKP","crv":"Ed25519"`, with `kid` and
    /// `x`) of the JWKS document `json`, for tokens carrying `external`'s `iss` and
    /// `aud`. Keys of other types are refused: only EdDSA is accepted.
    pub fn trust_jwks(
        mut self,
        json: &str,
        external: &ExternalIssuer,
        source: &str,
    ) -> Result<Self, AuthError> {
        let error = |reason: String| AuthError::Key {
            path: source.into(),
            reason,
        };
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| error(format!("not a JWKS document: {e}")))?;
        if set.keys.is_empty() {
            return Err(error("the JWKS has no keys".into()));
        }
        for (n, jwk) in set.keys.into_iter().enumerate() {
            if jwk.kty != "OKP" || jwk.crv.as_deref() != Some("Ed25519") {
                return Err(error(format!(
                    "key {n} is {} {}, but only Ed25519 (OKP) keys are accepted",
                    jwk.kty,
                    jwk.crv.as_deref().unwrap_or("")
                )));
            }
            if jwk.alg.as_deref().is_some_and(|alg| alg != "EdDSA") {
                return Err(error(format!("key {n} is for {:?}, not EdDSA", jwk.alg)));
            }
            let kid = jwk
                .kid
                .filter(|kid| !kid.is_empty())
                .ok_or_else(|| error(format!("key {n} has no `kid`")))?;
            let x = jwk
                .x
                .ok_or_else(|| error(format!("key `{kid}` has no `x`")))?;
            let key = DecodingKey::from_ed_components(&x)
                .map_err(|e| error(format!("key `{kid}`: {e}")))?;
            if key.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0) != 32 {
                return Err(error(format!("key `{kid}`: `x` is not 32 bytes")));
            }
            self.add(kid, key, external);
        }
        Ok(self)
    }

    fn add(&mut self, kid: String, key: DecodingKey, external: &ExternalIssuer) {
        let validation = Arc::new(validation(&external.issuer, &external.audience));
        Arc::make_mut(&mut self.keys).insert(kid, TrustedKey { key, validation });
        // Another key set: what the old one verified says nothing about this one,
        // and clones made before still share the old memory.
        self.verified = Arc::default();
    }

    /// The key ids this verifier knows.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The principal a token names, if the token is genuine and current, without
    /// asking whether its rights were revoked since ([`TokenVerifier::authenticate`]
    /// does).
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let now = now_secs();
        if let Some(principal) = self.remembered(token, now) {
            return Ok(principal);
        }
        let claims = self.verify_signature(token)?;
        let principal = Principal::new(claims.sub, claims.role)
            .ok_or_else(|| AuthError::InvalidToken("the subject is not a valid id".into()))?;
        let principal = match claims.tenant {
            None => principal,
            Some(any) if any == ANY_TENANT && principal.role == Role::Service => {
                principal.in_tenant(any)
            }
            Some(tenant) => {
                let tenant = auditlog_event::parse_tenant("tenant", &tenant)
                    .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
                principal.in_tenant(tenant)
            }
        };
        let principal = match claims.scope {
            None => principal,
            Some(object) if principal.role == Role::Viewer => {
                principal.confined_to(object.object_type, object.id)
            }
            Some(_) => {
                return Err(AuthError::InvalidToken(
                    "only a viewer token is confined to an object".into(),
                ));
            }
        };
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(
                token.to_owned(),
                Verified {
                    principal: principal.clone(),
                    nbf: claims.nbf,
                    exp: claims.exp,
                },
            );
        }
        Ok(principal)
    }

    /// The principal of a token verified before, if it is still within its window
    /// (with the same clock skew allowed as a full check).
    fn remembered(&self, token: &str, now: u64) -> Option<Principal> {
        let verified = self.verified.lock().ok()?;
        let hit = verified.get(token)?;
        let current = hit.nbf <= now.saturating_add(CLOCK_SKEW_SECS)
            && now.saturating_sub(CLOCK_SKEW_SECS) <= hit.exp;
        current.then(|| hit.principal.clone())
    }

    fn verify_signature(&self, token: &str) -> Result<VerifiedClaims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            AuthError::InvalidToken(format!(
                "its header is not that of an EdDSA-signed JWT ({e}); only EdDSA is accepted"
            ))
        })?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::InvalidToken(format!(
                "it is signed with {:?}, but only EdDSA is accepted",
                header.alg
            )));
        }
        let claims = match header.kid.as_deref() {
            Some(kid) => {
                let trusted = self.keys.get(kid).ok_or_else(|| {
                    AuthError::InvalidToken(format!("its key id `{kid}` is not a known key"))
                })?;
                decode(token, trusted)?
            }
            None => {
                let mut last = AuthError::InvalidToken("no key is known".into());
                let mut found = None;
                for trusted in self.keys.values() {
                    match decode(token, trusted) {
                        Ok(claims) => {
                            found = Some(claims);
                            break;
                        }
                        Err(err) => last = err,
                    }
                }
                found.ok_or(last)?
            }
        };
        Ok(claims)
    }
}

fn decode(token: &str, trusted: &TrustedKey) -> Result<VerifiedClaims, AuthError> {
    jsonwebtoken::decode::<VerifiedClaims>(token, &trusted.key, &trusted.validation)
        .map(|data| data.claims)
        .map_err(|e| AuthError::InvalidToken(e.to_string()))
}

/// Pinned to EdDSA, with `exp`, `nbf`, `iss`, `aud` and `sub` required and checked
/// within [`CLOCK_SKEW_SECS`].
fn validation(issuer: &str, audience: &str) -> Validation {
    // Validation::new pins the algorithm list to exactly EdDSA.
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = CLOCK_SKEW_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation
}

/// The key id of an Ed25519 public key: its first 8 bytes in hex.
pub(crate) fn fingerprint(public_key: &[u8]) -> String {
    public_key
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The parts of a JWKS the verifier reads.
#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    alg: Option<String>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
