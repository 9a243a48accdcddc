//! `auditlog erase --subject TYPE:ID`: erases a data subject's personal data
//! from the log over the auditor's HTTP API (`POST /api/erasures`), which
//! deletes the subject's key and records the erasure. Prints what the auditor
//! recorded. Needs an admin's token.

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};

use crate::remote::{self, ReaderArgs};

#[derive(Debug, Clone, Args)]
pub struct EraseArgs {
    /// The data subject, TYPE:ID (e.g. users:42): the target whose personal
    /// values, and the actor whose personal `meta` values, become unreadable.
    #[arg(long, value_name = "TYPE:ID")]
    subject: String,
    /// The auditor that erases.
    #[arg(
        long,
        env = "AUDITLOG_AUDITOR_URL",
        default_value = "http://127.0.0.1:3001"
    )]
    auditor_url: String,
    /// The admin's token (--token), or on a demo --as-user ID for a token from
    /// the primary API at --api-url.
    #[command(flatten)]
    reader: ReaderArgs,
}

pub async fn run(args: EraseArgs) -> Result<()> {
    let (subject_type, subject_id) = remote::object_ref("subject", &args.subject)?;
    let client = reqwest::Client::new();
    let token = remote::reader_token(
        &client,
        &args.reader.base(),
        args.reader.token.as_deref(),
        args.reader.as_user,
    )
    .await?;
    let auditor = args.auditor_url.trim_end_matches('/');
    let answer: Value = remote::checked(
        client
            .post(format!("{auditor}/api/erasures"))
            .bearer_auth(&token)
            .header("content-type", auditlog_http::JSON_API)
            .json(&request(subject_type, subject_id))
            .send()
            .await
            .with_context(|| format!("while asking {auditor} to erase {}", args.subject))?,
    )
    .await?
    .json()
    .await
    .context("the auditor's answer is not JSON")?;
    let attributes = &answer["data"]["attributes"];
    let existed = attributes["keyExisted"].as_bool().unwrap_or(false);
    println!(
        "erased {}: {} (recorded as event {})",
        args.subject,
        if existed {
            "its key is deleted, its personal values read as erased"
        } else {
            "it had no key (erased before, or no personal values recorded)"
        },
        answer["data"]["id"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// The JSON:API document of `POST /api/erasures`.
fn request(subject_type: &str, subject_id: &str) -> Value {
    json!({"data": {"type": "erasures", "attributes": {
        "subjectType": subject_type,
        "subjectId": subject_id,
    }}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_becomes_the_erasure_document() {
        let (subject_type, subject_id) = remote::object_ref("subject", "users:42").unwrap();

        assert_eq!(
            request(subject_type, subject_id),
            json!({"data": {"type": "erasures", "attributes": {
                "subjectType": "users", "subjectId": "42"}}})
        );
    }
}
