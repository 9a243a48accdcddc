//! `auditlog verify --url … --checkpoint FILE`: a witness of a running log. It
//! fetches the latest checkpoint, checks its signature against a pinned key (given
//! with `--log-key`, or pinned on first use in `FILE.key`), checks with a
//! consistency proof that it extends the checkpoint saved in FILE, then saves the
//! new one there. A log rewritten behind a client's back, even with the whole tree
//! recomputed, fails the consistency check.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use auditlog_tlog::{
    Checkpoint, Hash, SignedNote, Verifier, base64, from_base64, verify_consistency,
};
use serde::Serialize;

use crate::VerifyArgs;
use crate::remote::{checked, reader_token};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WitnessReport {
    origin: String,
    key: String,
    previous_size: Option<u64>,
    size: u64,
    root: String,
    ok: bool,
}

pub async fn run(url: &str, args: &VerifyArgs) -> Result<()> {
    let file = args
        .checkpoint
        .clone()
        .context("--url needs --checkpoint FILE: where the last checkpoint seen is kept")?;
    let base = url.trim_end_matches('/');
    let client = reqwest::Client::new();
    let token = reader_token(&client, base, args.token.as_deref(), args.as_user).await?;
    let key = pinned_key(&client, base, &token, &file, args.log_key.as_deref()).await?;

    let note = fetch_text(&client, &format!("{base}/log/checkpoint"), &token).await?;
    let latest = open(&note, &key).context("the latest checkpoint")?;
    let previous = match std::fs::read_to_string(&file) {
        Ok(saved) => Some(
            open(&saved, &key)
                .with_context(|| format!("the checkpoint saved in {}", file.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("while reading {}", file.display())),
    };
    if let Some(previous) = &previous {
        check_extends(&client, base, &token, previous, &latest).await?;
    }
    save(&file, &note)?;
    let report = WitnessReport {
        origin: latest.origin.clone(),
        key: key.to_string(),
        previous_size: previous.as_ref().map(|p| p.size),
        size: latest.size,
        root: base64(&latest.root),
        ok: true,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        match &previous {
            Some(previous) => println!(
                "OK: the checkpoint of size {} (root {}) extends the one of size {} saved in {}; \
                 saved the new one",
                latest.size,
                report.root,
                previous.size,
                file.display()
            ),
            None => println!(
                "OK: checkpoint of size {} (root {}) signed by {}; saved in {} — later runs check \
                 that the log extends it",
                latest.size,
                report.root,
                key.name,
                file.display()
            ),
        }
    }
    Ok(())
}

/// The key to check signatures with: `--log-key`, else the one pinned in
/// `FILE.key`, else the server's (pinned now, and said so).
async fn pinned_key(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    file: &Path,
    given: Option<&str>,
) -> Result<Verifier> {
    let key_file = key_file(file);
    if let Some(given) = given {
        return Verifier::parse(given).context("--log-key is not a note verifier key");
    }
    match std::fs::read_to_string(&key_file) {
        Ok(saved) => Verifier::parse(saved.trim())
            .with_context(|| format!("{} holds no verifier key", key_file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let served = fetch_text(client, &format!("{base}/log/key"), token).await?;
            let key = Verifier::parse(served.trim()).context("the server's /log/key")?;
            save(&key_file, &format!("{key}\n"))?;
            eprintln!(
                "pinned the log's key {key} in {} (first use: check it out of band)",
                key_file.display()
            );
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("while reading {}", key_file.display())),
    }
}

fn key_file(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// The checkpoint of a note signed by `key` for its origin.
fn open(note: &str, key: &Verifier) -> Result<Checkpoint> {
    let signed = SignedNote::parse(note)?;
    if !signed.verified_by(key) {
        bail!("its signature does not verify with the pinned key {key}");
    }
    let checkpoint = Checkpoint::parse(&signed.text)?;
    if checkpoint.origin != key.name {
        bail!(
            "it names the log `{}`, the pinned key is `{}`'s",
            checkpoint.origin,
            key.name
        );
    }
    Ok(checkpoint)
}

/// Fails unless `latest` extends `previous`, proven by the server.
async fn check_extends(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    previous: &Checkpoint,
    latest: &Checkpoint,
) -> Result<()> {
    if latest.size < previous.size {
        bail!(
            "the log shrank: it now has {} leaves, the checkpoint saved earlier had {}",
            latest.size,
            previous.size
        );
    }
    if latest.size == previous.size {
        if latest.root != previous.root {
            bail!(
                "the log was rewritten: size {} had root {}, it now has {}",
                latest.size,
                base64(&previous.root),
                base64(&latest.root)
            );
        }
        return Ok(());
    }
    let answer = checked(
        client
            .get(format!(
                "{base}/api/log/consistency?from={}&to={}",
                previous.size, latest.size
            ))
            .bearer_auth(token)
            .send()
            .await
            .context("while asking for a consistency proof")?,
    )
    .await?;
    let document: serde_json::Value = answer.json().await?;
    let proof = hashes(&document["data"]["attributes"]["hashes"])?;
    if !verify_consistency(
        previous.size,
        latest.size,
        &previous.root,
        &latest.root,
        &proof,
    ) {
        bail!(
            "the log was rewritten: the checkpoint of size {} does not extend the one of size {} \
             saved earlier (the consistency proof fails)",
            latest.size,
            previous.size
        );
    }
    Ok(())
}

/// A JSON array of base64 SHA-256 hashes.
pub fn hashes(value: &serde_json::Value) -> Result<Vec<Hash>> {
    value
        .as_array()
        .context("the proof has no hashes")?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(from_base64)
                .and_then(|bytes| Hash::try_from(bytes).ok())
                .context("a proof hash is not base64 SHA-256")
        })
        .collect()
}

/// GET as text, with the API's error detail on failure.
pub async fn fetch_text(client: &reqwest::Client, url: &str, token: &str) -> Result<String> {
    let answer = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("while fetching {url}"))?;
    Ok(checked(answer).await?.text().await?)
}

/// Writes `text` to `path` whole or not at all.
fn save(path: &Path, text: &str) -> Result<()> {
    let tmp = key_file(path).with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("while writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("while saving {}", path.display()))
}
