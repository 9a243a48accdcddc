//! The tests of `token.rs`.

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
fn a_token_issued_for_a_lifetime_expires_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyPair::load_or_generate(dir.path()).unwrap();
    let issuer = TokenIssuer::new(&keys).unwrap();

    let token = issuer
        .issue_for(&admin(), std::time::Duration::from_secs(3 * 3600))
        .unwrap();

    assert_eq!(
        TokenVerifier::new(&keys).unwrap().verify(&token).unwrap(),
        admin()
    );
    let key = DecodingKey::from_ed_pem(keys.public_pem.as_bytes()).unwrap();
    let claims = jsonwebtoken::decode::<Claims>(&token, &key, &validation(ISSUER, AUDIENCE))
        .unwrap()
        .claims;
    assert_eq!(claims.exp - claims.iat, 3 * 3600);
    assert_eq!(claims.nbf, claims.iat);
}

#[test]
fn an_expired_token_is_refused() {
    let (issuer, verifier, _dir) = setup();
    let long_ago = now_secs() - TOKEN_LIFETIME_SECS - CLOCK_SKEW_SECS - 5;
    let token = issuer
        .issue_at(&admin(), long_ago, TOKEN_LIFETIME_SECS)
        .unwrap();
    assert!(verifier.verify(&token).is_err());
}

#[test]
fn a_token_from_the_future_is_refused() {
    let (issuer, verifier, _dir) = setup();
    let token = issuer
        .issue_at(
            &admin(),
            now_secs() + CLOCK_SKEW_SECS + 60,
            TOKEN_LIFETIME_SECS,
        )
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

/// A token with any claims and header `kid`, signed by `keys`.
fn signed(keys: &KeyPair, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_ed_pem(keys.private_pem.as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn claims(iss: &str, aud: &str) -> serde_json::Value {
    let now = now_secs();
    serde_json::json!({"sub": "7", "iss": iss, "aud": aud, "nbf": now, "exp": now + 600})
}

fn external() -> ExternalIssuer {
    ExternalIssuer {
        issuer: "https://login.example.com".into(),
        audience: "auditlog-prod".into(),
    }
}

#[test]
fn a_token_naming_an_unknown_key_id_is_refused() {
    let (issuer, verifier, _dir) = setup();
    let token = issuer.issue(&admin()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let other_header = token_part(r#"{"alg":"EdDSA","typ":"JWT","kid":"0000000000000000"}"#);
    let forged = format!("{other_header}.{}.{}", parts[1], parts[2]);
    let err = verifier.verify(&forged).unwrap_err().to_string();
    assert!(err.contains("not a known key"), "{err}");
}

#[test]
fn an_external_issuers_pem_key_is_trusted_for_its_own_iss_and_aud_only() {
    let (_, verifier, _dir) = setup();
    let other_dir = tempfile::tempdir().unwrap();
    let external_keys = KeyPair::load_or_generate(other_dir.path()).unwrap();
    let verifier = verifier
        .trust_pem(&external_keys.public_pem, &external(), "ext.pem")
        .unwrap();
    assert_eq!(verifier.key_ids().count(), 2);
    let good = claims("https://login.example.com", "auditlog-prod");
    let principal = verifier
        .verify(&signed(&external_keys, Some(&external_keys.key_id), &good))
        .unwrap();
    assert_eq!(principal, Principal::new("7".into(), Role::User).unwrap());
    // Without a kid the known keys are tried.
    assert!(
        verifier
            .verify(&signed(&external_keys, None, &good))
            .is_ok()
    );
    for (iss, aud) in [
        ("auditlog", "auditlog"),
        ("https://evil.example.com", "auditlog-prod"),
        ("https://login.example.com", "someone-else"),
    ] {
        let token = signed(
            &external_keys,
            Some(&external_keys.key_id),
            &claims(iss, aud),
        );
        assert!(verifier.verify(&token).is_err(), "{iss} {aud}");
    }
}

#[test]
fn a_jwks_with_ed25519_keys_is_trusted_by_kid() {
    let (_, verifier, _dir) = setup();
    let other_dir = tempfile::tempdir().unwrap();
    let external_keys = KeyPair::load_or_generate(other_dir.path()).unwrap();
    let raw = DecodingKey::from_ed_pem(external_keys.public_pem.as_bytes()).unwrap();
    let x = base64url(raw.try_get_as_bytes().unwrap());
    let jwks = serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "2026-rotation", "x": x, "alg": "EdDSA", "use": "sig"}
    ]})
    .to_string();
    let verifier = verifier
        .trust_jwks(&jwks, &external(), "jwks.json")
        .unwrap();
    let good = claims("https://login.example.com", "auditlog-prod");
    assert!(
        verifier
            .verify(&signed(&external_keys, Some("2026-rotation"), &good))
            .is_ok()
    );
    assert!(
        verifier
            .verify(&signed(&external_keys, Some("another"), &good))
            .is_err()
    );
}

#[test]
fn a_jwks_with_other_key_types_is_refused() {
    let (_, verifier, _dir) = setup();
    for jwks in [
        r#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}"#,
        r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#,
        r#"{"keys":[]}"#,
        r#"not json"#,
    ] {
        assert!(
            verifier
                .clone()
                .trust_jwks(jwks, &external(), "jwks.json")
                .is_err(),
            "{jwks}"
        );
    }
}

#[test]
fn an_hs256_token_made_with_the_public_key_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyPair::load_or_generate(dir.path()).unwrap();
    let verifier = TokenVerifier::new(&keys).unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(ISSUER, AUDIENCE),
        &EncodingKey::from_secret(keys.public_pem.as_bytes()),
    )
    .unwrap();
    let err = verifier.verify(&token).unwrap_err().to_string();
    assert!(err.contains("only EdDSA"), "{err}");
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
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

/// Unpadded base64url, enough for hand-made test tokens.
fn token_part(text: &str) -> String {
    base64url(text.as_bytes())
}

#[test]
fn a_remembered_token_still_expires() {
    let (issuer, verifier, _dir) = setup();
    let now = now_secs();
    // Issued 100 s ago for 80 s: expired 20 s ago, inside the allowed skew.
    let token = issuer.issue_at(&admin(), now - 100, 80).unwrap();
    assert_eq!(verifier.verify(&token).unwrap(), admin());
    assert_eq!(verifier.remembered(&token, now), Some(admin()));
    // Past the skew the memory does not answer, and a full check refuses it.
    assert_eq!(verifier.remembered(&token, now + 20), None);
    let not_yet = issuer.issue_at(&admin(), now, 600).unwrap();
    verifier.verify(&not_yet).unwrap();
    assert_eq!(
        verifier.remembered(&not_yet, now - CLOCK_SKEW_SECS - 1),
        None
    );
}

#[test]
fn a_tampered_copy_of_a_remembered_token_is_checked_in_full() {
    let (issuer, verifier, _dir) = setup();
    let token = issuer.issue(&admin()).unwrap();
    verifier.verify(&token).unwrap();
    let (head, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &signature[1..]);
    assert!(verifier.verify(&tampered).is_err());
}

#[test]
fn what_one_key_set_verified_is_not_remembered_for_another() {
    let (_, own, _dir) = setup();
    let external_dir = tempfile::tempdir().unwrap();
    let external_keys = KeyPair::load_or_generate(external_dir.path()).unwrap();
    let wider = own
        .clone()
        .trust_pem(&external_keys.public_pem, &external(), "ext.pem")
        .unwrap();
    let token = signed(
        &external_keys,
        None,
        &claims("https://login.example.com", "auditlog-prod"),
    );
    assert!(wider.verify(&token).is_ok());
    assert!(
        own.verify(&token).is_err(),
        "the narrower clone must not trust it"
    );
}
