//! `auditlog sinks list|add|remove|test`: the auditor's `/api/sinks` from a
//! terminal, with an admin's token.

use std::io::Read as _;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::remote;

#[derive(Debug, Args)]
pub struct SinksArgs {
    #[command(subcommand)]
    command: SinksCommand,
    /// The auditor, which keeps and delivers the sinks.
    #[arg(
        long,
        global = true,
        env = "AUDITLOG_AUDITOR_URL",
        default_value = "http://127.0.0.1:3001"
    )]
    auditor_url: String,
    /// An admin's bearer token.
    #[arg(long, global = true, env = "AUDITLOG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// On a demo deployment: get a token for this user from the primary API's
    /// /tokens/ID instead.
    #[arg(long, global = true, value_name = "ID")]
    as_user: Option<i64>,
    /// The primary API, asked for the demo token of --as-user.
    #[arg(
        long,
        global = true,
        env = "AUDITLOG_API_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    api_url: String,
}

#[derive(Debug, Subcommand)]
enum SinksCommand {
    /// Every sink with its cursor, lag and delivery status.
    #[command(after_help = "Examples:
  auditlog sinks list --token \"$TOKEN\"
  auditlog sinks list --auditor-url http://auditor:3001 --token \"$TOKEN\"")]
    List,
    /// Add a sink from its JSON definition (see the README's sinks section).
    #[command(after_help = "Examples:
  auditlog sinks add siem --definition '{\"kind\":\"webhook\",\"url\":\"http://siem:8080/hook\"}'
  auditlog sinks add audit-files --definition @files-sink.json --from now
  auditlog sinks add rsyslog --definition '{\"kind\":\"syslog\",\"address\":\"127.0.0.1:6514\"}'")]
    Add {
        /// The sink's name (a-z, 0-9, -, _).
        name: String,
        /// The definition: JSON, @FILE, or - for standard input.
        #[arg(long)]
        definition: String,
        /// `start` (every event of the log) or `now` (only events stored from now on).
        #[arg(long, default_value = "start")]
        from: String,
    },
    /// Remove a sink and its cursor.
    #[command(after_help = "Example:
  auditlog sinks remove siem --token \"$TOKEN\"")]
    Remove {
        /// The sink's name.
        name: String,
    },
    /// Send one test event (not in the log) to a sink's receiver and print its answer.
    #[command(after_help = "Example:
  auditlog sinks test siem --token \"$TOKEN\"")]
    Test {
        /// The sink's name.
        name: String,
    },
}

pub async fn run(args: SinksArgs) -> Result<()> {
    let client = reqwest::Client::new();
    let token = remote::reader_token(
        &client,
        args.api_url.trim_end_matches('/'),
        args.token.as_deref(),
        args.as_user,
    )
    .await?;
    let base = args.auditor_url.trim_end_matches('/').to_owned();
    let sinks = format!("{base}/api/sinks");
    match args.command {
        SinksCommand::List => {
            let answer: Value = json_answer(client.get(&sinks).bearer_auth(&token), || {
                format!("while asking {base} for its sinks")
            })
            .await?;
            print!("{}", table(&answer));
        }
        SinksCommand::Add {
            name,
            definition,
            from,
        } => {
            let mut attributes: Value = serde_json::from_str(&read_definition(&definition)?)
                .context("the definition is not JSON")?;
            let Value::Object(map) = &mut attributes else {
                bail!("the definition must be a JSON object");
            };
            map.insert("from".into(), json!(from));
            let body = json!({"data": {"type": "sinks", "id": name, "attributes": attributes}});
            let answer: Value = json_answer(
                client
                    .post(&sinks)
                    .bearer_auth(&token)
                    .header("content-type", "application/vnd.api+json")
                    .body(body.to_string()),
                || format!("while adding the sink to {base}"),
            )
            .await?;
            // The answer shows the secrets once (a webhook's made-up secret).
            println!(
                "{}",
                serde_json::to_string_pretty(&answer["data"]["attributes"])?
            );
        }
        SinksCommand::Remove { name } => {
            remote::checked(
                client
                    .delete(format!("{sinks}/{name}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .with_context(|| format!("while removing the sink from {base}"))?,
            )
            .await?;
            println!("removed {name}");
        }
        SinksCommand::Test { name } => {
            let answer: Value = json_answer(
                client
                    .post(format!("{sinks}/{name}/test"))
                    .bearer_auth(&token),
                || format!("while asking {base} to test the sink"),
            )
            .await?;
            let meta = &answer["meta"];
            if meta["delivered"] == json!(true) {
                let status = meta["status"]
                    .as_u64()
                    .map_or(String::new(), |s| format!(" {s}"));
                println!(
                    "delivered: the receiver answered{status} {}",
                    meta["answer"].as_str().unwrap_or_default()
                );
            } else {
                bail!(
                    "not delivered: {}",
                    meta["error"].as_str().unwrap_or("no reason given")
                );
            }
        }
    }
    Ok(())
}

/// Sends `request` and reads the auditor's JSON answer, or says why it failed
/// (`doing` names what was being done).
async fn json_answer(
    request: reqwest::RequestBuilder,
    doing: impl Fn() -> String,
) -> Result<Value> {
    remote::checked(request.send().await.with_context(doing)?)
        .await?
        .json()
        .await
        .context("the auditor's answer is not JSON")
}

/// The definition argument's text: itself, a file's (`@FILE`) or standard
/// input's (`-`).
fn read_definition(argument: &str) -> Result<String> {
    if argument == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("while reading the definition from standard input")?;
        Ok(text)
    } else if let Some(path) = argument.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("while reading {path}"))
    } else {
        Ok(argument.to_owned())
    }
}

/// The sinks of a `GET /api/sinks` answer as aligned columns.
fn table(answer: &Value) -> String {
    let mut rows = vec![
        [
            "NAME",
            "KIND",
            "HERE",
            "CURSOR",
            "LAG",
            "LAG_S",
            "DELIVERED",
            "FAILED",
            "STATE",
            "LAST_ERROR",
        ]
        .map(String::from),
    ];
    for sink in answer["data"].as_array().into_iter().flatten() {
        let attributes = &sink["attributes"];
        let status = &attributes["status"];
        let text = |value: &Value| match value {
            Value::String(s) => s.clone(),
            Value::Null => "-".to_owned(),
            other => other.to_string(),
        };
        let state = if attributes["paused"] == json!(true) {
            "paused"
        } else if status["failing"] == json!(true) {
            "FAILING"
        } else {
            "ok"
        };
        rows.push([
            text(&sink["id"]),
            text(&attributes["kind"]),
            if status["delivering"] == json!(true) {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            text(&attributes["cursor"]),
            text(&status["lagEvents"]),
            text(&status["lagSeconds"]),
            text(&status["delivered"]),
            text(&status["failedAttempts"]),
            state.to_owned(),
            text(&status["lastError"]),
        ]);
    }
    let widths: Vec<usize> = (0..10)
        .map(|i| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
