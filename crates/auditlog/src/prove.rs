//! `auditlog prove EVENT_ID`: fetches an event's inclusion proof for the latest
//! checkpoint, prints it, and checks it as any outside client would: the leaf is
//! the event asked for, `SHA-256(0x00 || leaf)` and the audit path lead to the
//! checkpoint's root (RFC 9162 §2.1.3.2), and the checkpoint is signed by the log's
//! key.

use anyhow::{Context, Result, bail};
use auditlog_tlog::{
    Checkpoint, SignedNote, Verifier, base64, from_base64, leaf_hash, verify_inclusion,
};
use clap::Args;
use serde::Serialize;

use crate::remote::{ReaderArgs, checked, reader_token};
use crate::verify::witness::{fetch_text, hashes};

#[derive(Debug, Clone, Args)]
pub struct ProveArgs {
    /// The event's id.
    event_id: uuid::Uuid,
    #[command(flatten)]
    reader: ReaderArgs,
    /// The log's note verifier key to check the checkpoint with; by default the
    /// server's own `/log/key` (which proves less: pin the key you trust).
    #[arg(long, value_name = "KEY")]
    log_key: Option<String>,
    /// One JSON document instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Proof {
    event_id: String,
    leaf_index: u64,
    tree_size: u64,
    root: String,
    origin: String,
    key: String,
    leaf: serde_json::Value,
    hashes: Vec<String>,
    verified: bool,
}

pub async fn run(args: ProveArgs) -> Result<()> {
    let base = args.reader.base();
    let client = reqwest::Client::new();
    let token = reader_token(
        &client,
        &base,
        args.reader.token.as_deref(),
        args.reader.as_user,
    )
    .await?;
    let key = match &args.log_key {
        Some(key) => key.clone(),
        None => fetch_text(&client, &format!("{base}/log/key"), &token).await?,
    };
    let key = Verifier::parse(key.trim()).context("the log key is not a note verifier key")?;
    let note = fetch_text(&client, &format!("{base}/log/checkpoint"), &token).await?;
    let signed = SignedNote::parse(&note).context("the latest checkpoint")?;
    let checkpoint = Checkpoint::parse(&signed.text).context("the latest checkpoint")?;
    let answer = checked(
        client
            .get(format!(
                "{base}/api/data-events/{}/inclusion?treeSize={}",
                args.event_id, checkpoint.size
            ))
            .bearer_auth(&token)
            .send()
            .await
            .context("while asking for the inclusion proof")?,
    )
    .await?;
    let document: serde_json::Value = answer.json().await?;
    let attributes = &document["data"]["attributes"];
    let leaf = attributes["leaf"]
        .as_str()
        .and_then(from_base64)
        .context("the proof's leaf is not base64")?;
    let index = attributes["leafIndex"]
        .as_u64()
        .context("the proof has no leafIndex")?;
    let path = hashes(&attributes["hashes"])?;
    let leaf_json: serde_json::Value =
        serde_json::from_slice(&leaf).context("the leaf is not JSON")?;

    let mut failures = Vec::new();
    if leaf_json["id"].as_str() != Some(args.event_id.to_string().as_str()) {
        failures.push("the leaf is not this event".to_owned());
    }
    if !verify_inclusion(
        index,
        checkpoint.size,
        &leaf_hash(&leaf),
        &path,
        &checkpoint.root,
    ) {
        failures.push("the audit path does not lead to the checkpoint's root".to_owned());
    }
    if !signed.verified_by(&key) {
        failures.push(format!("the checkpoint is not signed by {key}"));
    }
    if checkpoint.origin != key.name {
        failures.push(format!(
            "the checkpoint names the log `{}`",
            checkpoint.origin
        ));
    }
    let proof = Proof {
        event_id: args.event_id.to_string(),
        leaf_index: index,
        tree_size: checkpoint.size,
        root: base64(&checkpoint.root),
        origin: checkpoint.origin.clone(),
        key: key.to_string(),
        leaf: leaf_json,
        hashes: path.iter().map(|h| base64(h)).collect(),
        verified: failures.is_empty(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&proof)?);
    } else {
        println!("event      {}", proof.event_id);
        println!("leaf       {} of {}", proof.leaf_index, proof.tree_size);
        println!(
            "checkpoint {} size {} root {}",
            proof.origin, proof.tree_size, proof.root
        );
        println!("key        {}", proof.key);
        println!("leaf bytes {}", String::from_utf8_lossy(&leaf));
        for (n, hash) in proof.hashes.iter().enumerate() {
            println!("path[{n:>2}]   {hash}");
        }
        if proof.verified {
            println!("verified: the event is in the signed log");
        }
    }
    if !failures.is_empty() {
        bail!("the proof does not verify: {}", failures.join("; "));
    }
    Ok(())
}
