//! `auditlog prune --before TIME [--tenant T]`: prunes events dated before TIME
//! over the auditor's HTTP API (`POST /api/prunes`), call after call until it
//! is done, with a progress line: their rows are removed, their leaves stay in
//! the log. Needs an operator's token. Each call is recorded by the auditor as
//! an `audit.pruned` event.

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::remote::{self, ReaderArgs};

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Prune events dated before this: milliseconds, RFC 3339, a date
    /// (2026-01-01) or a span back from now (90d).
    #[arg(long, value_name = "TIME", value_parser = remote::parse_time)]
    before: i64,
    /// Only this tenant's events (every tenant's when left out).
    #[arg(long)]
    tenant: Option<String>,
    /// The auditor that prunes.
    #[arg(
        long,
        env = "AUDITLOG_AUDITOR_URL",
        default_value = "http://127.0.0.1:3001"
    )]
    auditor_url: String,
    /// The operator's token (--token), or on a demo --as-user ID for a token
    /// from the primary API at --api-url.
    #[command(flatten)]
    reader: ReaderArgs,
}

pub async fn run(args: PruneArgs) -> Result<()> {
    let client = reqwest::Client::new();
    let token = remote::reader_token(
        &client,
        &args.reader.base(),
        args.reader.token.as_deref(),
        args.reader.as_user,
    )
    .await?;
    let auditor = args.auditor_url.trim_end_matches('/');
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} pruning: {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let (mut pruned, mut held, mut mismatched, mut undelivered) = (0_u64, 0_u64, 0_u64, 0_u64);
    let mut after: Option<String> = None;
    loop {
        let answer: Value = remote::checked(
            client
                .post(format!("{auditor}/api/prunes"))
                .bearer_auth(&token)
                .header("content-type", auditlog_http::JSON_API)
                .json(&request(
                    args.before,
                    args.tenant.as_deref(),
                    after.as_deref(),
                ))
                .send()
                .await
                .with_context(|| format!("while asking {auditor} to prune"))?,
        )
        .await?
        .json()
        .await
        .context("the auditor's answer is not JSON")?;
        let attributes = &answer["data"]["attributes"];
        let count = |name: &str| attributes[name].as_u64().unwrap_or(0);
        pruned += count("pruned");
        held += count("held");
        mismatched += count("mismatched");
        undelivered += count("undelivered");
        progress.set_message(format!("{pruned} pruned, {held} held"));
        progress.tick();
        after = attributes["next"].as_str().map(str::to_owned);
        if attributes["done"].as_bool().unwrap_or(true) || after.is_none() {
            break;
        }
    }
    progress.finish_and_clear();
    println!(
        "pruned {pruned} events dated before {} ({}): their rows are gone, their leaves stay \
         in the log; {held} kept under a legal hold",
        remote::format_time(args.before),
        args.tenant
            .as_deref()
            .map_or_else(|| "every tenant".to_owned(), |t| format!("tenant {t}")),
    );
    if undelivered > 0 {
        println!(
            "{undelivered} expired events were NOT pruned because a sink has not delivered them \
             yet: they go once every sink is past them (`auditlog sinks list` shows each one's \
             lag; delete a sink that will never deliver again)"
        );
    }
    if mismatched > 0 {
        println!(
            "{mismatched} expired events were NOT pruned because their rows no longer match \
             their sealed leaves: run `auditlog verify`"
        );
    }
    Ok(())
}

/// The JSON:API document of `POST /api/prunes`.
fn request(before: i64, tenant: Option<&str>, after: Option<&str>) -> Value {
    let mut attributes = json!({ "before": before });
    if let Some(tenant) = tenant {
        attributes["tenantId"] = json!(tenant);
    }
    if let Some(after) = after {
        attributes["after"] = json!(after);
    }
    json!({"data": {"type": "prunes", "attributes": attributes}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_become_the_prune_document() {
        assert_eq!(
            request(5, Some("acme"), Some("4.x")),
            json!({"data": {"type": "prunes", "attributes": {
                "before": 5, "tenantId": "acme", "after": "4.x"}}})
        );
        assert_eq!(
            request(5, None, None),
            json!({"data": {"type": "prunes", "attributes": {"before": 5}}})
        );
    }
}
