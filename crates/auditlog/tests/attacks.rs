//! Attacks on the running services, one table row each: the request, the statuses
//! it may get, and after all of them a check that nothing changed (the users, the
//! mutation events) and that the audit store still answers.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Client, JSON_API, Running, all_events, data_dir, user_doc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// SQL metacharacters tried in every path segment and filter.
const SQL: [&str; 4] = [
    "' OR 1=1 --",
    "\"; DROP TABLE audit_events; --",
    "1; DELETE FROM users",
    "%' OR '1'='1",
];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Percent-encodes everything but letters and digits.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Unpadded base64url.
fn b64(bytes: &[u8]) -> String {
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

/// Makes tokens with the data directory's own key, as an attacker who stole it
/// for a moment (or the deployment itself) could.
struct Forge {
    private_pem: String,
    public_pem: String,
}

impl Forge {
    fn from_data_dir(dir: &std::path::Path) -> Forge {
        Forge::from_pem(std::fs::read_to_string(dir.join("jwt-ed25519.pem")).unwrap())
    }

    /// An issuer of its own, as an external identity provider.
    fn fixed(seed: u8) -> Forge {
        let pem = SigningKey::from_bytes(&[seed; 32])
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap();
        Forge::from_pem(pem.to_string())
    }

    fn from_pem(private_pem: String) -> Forge {
        let key = SigningKey::from_pkcs8_pem(&private_pem).unwrap();
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        Forge {
            private_pem,
            public_pem,
        }
    }

    fn claims(sub: &str, role: &str) -> Value {
        let now = now();
        json!({"sub": sub, "role": role, "iss": "auditlog", "aud": "auditlog",
               "iat": now, "nbf": now, "exp": now + 600})
    }

    fn eddsa(&self, claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = kid.map(str::to_owned);
        let key = EncodingKey::from_ed_pem(self.private_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// HS256 with the public key as the HMAC secret: the classic algorithm confusion.
    fn hs256_with_public_key(&self, claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(self.public_pem.as_bytes()),
        )
        .unwrap()
    }
}

/// Sends a request exactly as written (no client normalises the path), with extra
/// header lines; returns the status and the raw answer.
async fn raw(base: &str, method: &str, path: &str, extra: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    let answer = common::send_raw(addr, &request).await;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// What an admin sees of the system: the users and every mutation event.
async fn snapshot(admin: &Client) -> (Value, usize) {
    let users = admin.get("/api/users").await.body["data"].clone();
    let mutations = all_events(
        admin,
        "/api/data-events?filter[action]=created,changed,deleted&page[size]=1000",
    )
    .await;
    (users, mutations.len())
}

/// One attack: where it goes, what it sends, and the statuses it may get.
struct Row {
    what: String,
    base: String,
    method: &'static str,
    path: String,
    token: Option<String>,
    body: Option<(&'static str, Vec<u8>)>,
    expected: &'static [u16],
    /// A 200 must hold no events (`data: []`).
    empty_if_ok: bool,
}

impl Row {
    fn new(what: impl Into<String>, base: &str, method: &'static str, path: &str) -> Row {
        Row {
            what: what.into(),
            base: base.to_owned(),
            method,
            path: path.to_owned(),
            token: None,
            body: None,
            expected: &[401],
            empty_if_ok: false,
        }
    }
    fn token(mut self, token: Option<&str>) -> Row {
        self.token = token.map(str::to_owned);
        self
    }
    fn body(mut self, content_type: &'static str, body: Vec<u8>) -> Row {
        self.body = Some((content_type, body));
        self
    }
    fn expect(mut self, expected: &'static [u16]) -> Row {
        self.expected = expected;
        self
    }
    fn empty_if_ok(mut self) -> Row {
        self.empty_if_ok = true;
        self
    }

    async fn run(&self, http: &reqwest::Client) {
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).unwrap();
        let mut request = http.request(method, format!("{}{}", self.base, self.path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, body)) = &self.body {
            request = request
                .header("content-type", *content_type)
                .body(body.clone());
        }
        let response = request.send().await.unwrap_or_else(|e| {
            panic!(
                "{}: {} {}: no answer: {e}",
                self.what, self.method, self.path
            )
        });
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert!(
            self.expected.contains(&status),
            "{}: {} {}{} answered {status}, expected {:?}: {text}",
            self.what,
            self.method,
            self.base,
            self.path,
            self.expected
        );
        assert!(status < 500, "{}: a 5xx: {text}", self.what);
        if status >= 400 {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert!(
                body["errors"][0]["detail"].is_string(),
                "{}: a {status} without JSON:API errors: {text}",
                self.what
            );
        }
        if status == 200 && self.empty_if_ok {
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                body["data"].as_array().map(Vec::len),
                Some(0),
                "{}: {} found events: {text}",
                self.what,
                self.path
            );
        }
    }
}

#[tokio::test]
async fn attacks_are_refused_and_change_nothing() {
    let (_tmp, dir) = data_dir();
    let system = Running::up(&dir);
    let (api, auditor, web) = (
        system.urls.api.clone(),
        system.urls.auditor.clone(),
        system.urls.web.clone(),
    );
    let admin = Client::new(&api).login(1).await;
    let created = admin
        .post(
            "/api/users",
            user_doc(json!({"name": "Member", "email": "member@happi.com"})),
        )
        .await;
    assert_eq!(created.status, 201);
    let member_id = created.body["data"]["id"].as_str().unwrap().to_owned();
    let member = Client::new(&api).login(member_id.parse().unwrap()).await;
    let member_token = member.token.clone().unwrap();
    // An event the member has nothing to do with: the admin renames themselves.
    let own = admin
        .patch(
            "/api/users/1",
            json!({"data": {"type": "users", "id": "1", "attributes": {"name": "Root"}}}),
        )
        .await;
    assert_eq!(own.status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let admins_event = all_events(&admin, "/events/on/users/1?filter[action]=changed")
        .await
        .first()
        .and_then(|e| e["id"].as_str().map(str::to_owned))
        .expect("the admin's rename is stored");
    let before = snapshot(&admin).await;

    let forge = Forge::from_data_dir(&dir);
    let admin_claims = Forge::claims("1", "admin");
    let with = |changes: &[(&str, Value)]| {
        let mut claims = admin_claims.clone();
        for (key, value) in changes {
            claims[*key] = value.clone();
        }
        claims
    };
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(admin_claims.to_string().as_bytes())
    );
    let tampered = {
        let parts: Vec<&str> = member_token.split('.').collect();
        let claims = with(&[("sub", json!(member_id))]);
        format!(
            "{}.{}.{}",
            parts[0],
            b64(claims.to_string().as_bytes()),
            parts[2]
        )
    };
    let n = now();
    let bad_tokens: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage token", Some("garbage".into())),
        ("three garbage parts", Some("a.b.c".into())),
        ("alg none", Some(alg_none)),
        (
            "HS256 signed with the public key",
            Some(forge.hs256_with_public_key(&admin_claims)),
        ),
        (
            "expired",
            Some(forge.eddsa(
                &with(&[("exp", json!(n - 3600)), ("nbf", json!(n - 7200))]),
                None,
            )),
        ),
        (
            "not yet valid",
            Some(forge.eddsa(
                &with(&[("nbf", json!(n + 3600)), ("exp", json!(n + 7200))]),
                None,
            )),
        ),
        (
            "wrong issuer",
            Some(forge.eddsa(&with(&[("iss", json!("evil"))]), None)),
        ),
        (
            "wrong audience",
            Some(forge.eddsa(&with(&[("aud", json!("other-app"))]), None)),
        ),
        (
            "unknown key id",
            Some(forge.eddsa(&admin_claims, Some("0123456789abcdef"))),
        ),
        ("tampered payload (member made admin)", Some(tampered)),
    ];

    let mut rows = Vec::new();
    for (what, token) in &bad_tokens {
        let token = token.as_deref();
        rows.push(Row::new(*what, &api, "GET", "/api/users").token(token));
        rows.push(Row::new(*what, &api, "GET", "/events/by/users/1").token(token));
        rows.push(Row::new(*what, &auditor, "GET", "/events/by/users/1").token(token));
        rows.push(Row::new(*what, &auditor, "GET", "/api/data-events").token(token));
        rows.push(Row::new(*what, &web, "GET", "/api/users").token(token));
        rows.push(
            Row::new(*what, &api, "PATCH", "/api/users/1")
                .token(token)
                .body(
                    JSON_API,
                    json!({"data": {"type": "users", "attributes": {"name": "Hacked"}}})
                        .to_string()
                        .into(),
                ),
        );
        rows.push(
            Row::new(*what, &auditor, "POST", "/api/data-events")
                .token(token)
                .body(
                    "application/x-ndjson",
                    br#"{"action":"deleted","actorType":"users","actorId":1,"targetType":"users","targetId":"1"}"#
                        .to_vec(),
                ),
        );
    }

    // A valid member token asking for someone else's events, directly and via :3000.
    let member_t = Some(member_token.as_str());
    for base in [&api, &auditor] {
        for path in [
            "/events/by/users/1".to_owned(),
            "/events/on/users/1".to_owned(),
            "/api/users/1/data-events".to_owned(),
            "/api/data-events?filter[actorType]=users&filter[actorId]=1".to_owned(),
            "/api/data-events?filter[targetType]=users&filter[targetId]=1".to_owned(),
            "/events/by/users/1?format=csv".to_owned(),
            "/api/data-events/stream?filter[actorType]=users&filter[actorId]=1".to_owned(),
            "/api/users/1/state".to_owned(),
            "/api/users/1/diff?from=0".to_owned(),
        ] {
            rows.push(
                Row::new("member reads another user's events", base, "GET", &path)
                    .token(member_t)
                    .expect(&[403]),
            );
        }
        rows.push(
            Row::new(
                "member reads the producers' report",
                base,
                "GET",
                "/api/producers",
            )
            .token(member_t)
            // Not proxied by :3000: 404 there.
            .expect(&[403, 404]),
        );
        rows.push(
            Row::new(
                "member reads another user's event by id",
                base,
                "GET",
                &format!("/api/data-events/{admins_event}"),
            )
            .token(member_t)
            .expect(&[404]),
        );
        rows.push(
            Row::new("member ingests", base, "POST", "/api/data-events")
                .token(member_t)
                .body("application/x-ndjson", b"{}".to_vec())
                // :3000 has no ingest route for POST: 405 or 404.
                .expect(&[403, 404, 405]),
        );
    }

    // SQL metacharacters in every path segment and filter, as admin (the widest
    // view) and as member, on both APIs.
    let admin_t = admin.token.clone();
    for sql in SQL {
        let e = enc(sql);
        for base in [&api, &auditor] {
            for (token, who) in [(admin_t.as_deref(), "admin"), (member_t, "member")] {
                let what = format!("SQL {sql:?} as {who}");
                for path in [
                    format!("/events/by/users/{e}"),
                    format!("/events/on/users/{e}"),
                    format!("/events/by/{e}/1"),
                    format!("/events/on/{e}/1"),
                    format!("/api/{e}/1/data-events"),
                    format!("/api/users/{e}/data-events"),
                    format!("/api/users/{e}/state"),
                    format!("/api/{e}/1/diff?from=0"),
                    format!("/api/data-events/{e}"),
                    format!("/api/data-events?filter[actorType]=users&filter[actorId]={e}"),
                    format!("/api/data-events?filter[actorType]={e}&filter[actorId]=1"),
                    format!("/api/data-events?filter[targetType]=users&filter[targetId]={e}"),
                    format!("/api/data-events?filter[targetType]={e}&filter[targetId]=1"),
                    format!("/api/data-events?filter[action]={e}"),
                    format!("/api/data-events?filter[eventName]={e}"),
                    format!("/api/data-events?filter[since]={e}"),
                    format!("/api/data-events?filter[until]={e}"),
                    format!("/api/data-events?sort={e}"),
                    format!("/api/data-events?page[size]={e}"),
                    format!("/api/data-events?page[after]={e}"),
                    format!("/api/data-events?count={e}"),
                    format!("/api/data-events?format={e}"),
                    format!("/api/data-events/activity?bucket={e}"),
                    format!("/api/data-events/stream?after={e}"),
                    format!("/api/data-events?{e}=1"),
                ] {
                    rows.push(
                        Row::new(what.clone(), base, "GET", &path)
                            .token(token)
                            .expect(&[200, 400, 403, 404])
                            .empty_if_ok(),
                    );
                }
            }
        }
        for path in [
            format!("/api/users/{e}"),
            format!("/api/notes/{e}"),
            format!("/api/notes?target={e}"),
            format!("/api/notes?target=users:{e}"),
            format!("/tokens/{e}"),
        ] {
            rows.push(
                Row::new(
                    format!("SQL {sql:?} in the primary API"),
                    &api,
                    "GET",
                    &path,
                )
                .token(admin_t.as_deref())
                .expect(&[200, 400, 403, 404, 422])
                .empty_if_ok(),
            );
        }
        rows.push(
            Row::new(
                format!("SQL {sql:?} in a user's name"),
                &api,
                "PATCH",
                "/api/users/9999",
            )
            .token(admin_t.as_deref())
            .body(
                JSON_API,
                json!({"data": {"type": "users", "attributes": {"name": sql, "email": sql}}})
                    .to_string()
                    .into(),
            )
            .expect(&[404, 422]),
        );
    }

    // Oversized and malformed bodies.
    let ten_mib = {
        let mut body = br#"{"data":{"type":"users","attributes":{"name":""#.to_vec();
        body.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
        body.extend(br#"","email":"big@happi.com"}}}"#);
        body
    };
    let deep = {
        let depth = 10_000;
        let mut body = br#"{"data":"#.to_vec();
        body.extend(std::iter::repeat_n(b'[', depth));
        body.extend(std::iter::repeat_n(b']', depth));
        body.push(b'}');
        body
    };
    for (base, path) in [
        (&api, "/api/users"),
        (&web, "/api/users"),
        (&auditor, "/api/data-events"),
    ] {
        rows.push(
            Row::new("a 10 MiB body", base, "POST", path)
                .token(admin_t.as_deref())
                .body(JSON_API, ten_mib.clone())
                .expect(&[413]),
        );
        rows.push(
            Row::new("10 000-deep JSON", base, "POST", path)
                .token(admin_t.as_deref())
                .body(JSON_API, deep.clone())
                .expect(&[400]),
        );
        rows.push(
            Row::new("a body that is not UTF-8", base, "POST", path)
                .token(admin_t.as_deref())
                .body(JSON_API, b"{\"data\":\"\xff\xfe\"}".to_vec())
                .expect(&[400]),
        );
    }
    rows.push(
        Row::new(
            "10 000-deep NDJSON event",
            &auditor,
            "POST",
            "/api/data-events",
        )
        .token(admin_t.as_deref())
        .body(
            "application/x-ndjson",
            [&b"{\"meta\":"[..], &deep[8..], b"}\n"].concat(),
        )
        // Every event rejected: 422 with the reason, nothing stored.
        .expect(&[400, 422]),
    );

    let http = reqwest::Client::new();
    for row in &rows {
        row.run(&http).await;
    }

    // Raw requests no client would normalise: traversal on the website, and
    // oversized headers everywhere.
    for path in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc/passwd",
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/app.js/../../../etc/passwd",
        "/etc/passwd",
    ] {
        let (status, answer) = raw(&web, "GET", path, "").await;
        assert_eq!(status, 404, "{path} on the website: {answer}");
        assert!(!answer.contains("root:"), "{path} leaked /etc/passwd");
    }
    let big_header = format!("X-Junk: {}\r\n", "j".repeat(20 * 1024));
    for base in [&api, &auditor, &web] {
        let (status, answer) = raw(base, "GET", "/healthz", &big_header).await;
        assert_eq!(status, 431, "{base}: {answer}");
    }
    // CORS: only the website's origin is let in.
    for base in [&api, &auditor] {
        for (origin, allowed) in [
            ("http://127.0.0.1:3002", true),
            ("https://evil.example.com", false),
        ] {
            let answer = http
                .request(reqwest::Method::OPTIONS, format!("{base}/api/data-events"))
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization")
                .send()
                .await
                .unwrap();
            let granted = answer
                .headers()
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok())
                == Some(origin);
            assert_eq!(granted, allowed, "{base} for {origin}");
        }
    }

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(snapshot(&admin).await, before, "something changed");
    // The audit store is intact and still answers every kind of query.
    assert_eq!(admin.get("/api/data-events?count=true").await.status, 200);
    let renamed = all_events(&admin, "/events/on/users/1?filter[action]=changed").await;
    assert_eq!(renamed.len(), 1);
    println!("{} attack requests refused", rows.len());
}

#[tokio::test]
async fn dev_tokens_can_be_switched_off() {
    let (_tmp, dir) = data_dir();
    let system = Running::up_with(&dir, &["--dev-tokens=false"]);
    let anonymous = Client::new(&system.urls.api);
    let answer = anonymous.get("/tokens/1").await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(answer.body["errors"][0]["detail"].is_string());
    // Tokens of the deployment's key still work.
    let forge = Forge::from_data_dir(&dir);
    let mut admin = anonymous.clone();
    admin.token = Some(forge.eddsa(&Forge::claims("1", "admin"), None));
    assert_eq!(admin.get("/api/users").await.status, 200);
}

#[tokio::test]
async fn an_external_issuers_tokens_are_accepted_with_its_key_and_claims() {
    let (_tmp, dir) = data_dir();
    // The "external issuer": another key pair, its public half given to auditlog.
    let external = Forge::fixed(7);
    std::fs::create_dir_all(&dir).unwrap();
    let key_path = dir.join("issuer.pem");
    std::fs::write(&key_path, &external.public_pem).unwrap();
    let system = Running::up_with(
        &dir,
        &[
            "--token-public-key",
            key_path.to_str().unwrap(),
            "--token-issuer",
            "https://login.example.com",
            "--token-audience",
            "auditlog-prod",
        ],
    );
    let mut claims = Forge::claims("1", "admin");
    claims["iss"] = json!("https://login.example.com");
    claims["aud"] = json!("auditlog-prod");
    let mut client = Client::new(&system.urls.api);
    client.token = Some(external.eddsa(&claims, None));
    assert_eq!(client.get("/api/users").await.status, 200);
    assert_eq!(
        Client {
            base: system.urls.auditor.clone(),
            ..client.clone()
        }
        .get("/events/by/users/1")
        .await
        .status,
        200
    );
    // The external key does not stand in for this deployment's issuer.
    client.token = Some(external.eddsa(&Forge::claims("1", "admin"), None));
    assert_eq!(client.get("/api/users").await.status, 401);
}
