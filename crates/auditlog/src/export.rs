//! `auditlog export`: the query API's streamed export written to a file or stdout,
//! with a progress bar. Memory stays constant whatever the size: the body is copied
//! chunk by chunk as it arrives.

use std::io::Write;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::ExportArgs;

pub async fn run(args: ExportArgs) -> Result<()> {
    let base = args.api_url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::new();
    let token = match (&args.token, args.as_user) {
        (Some(token), _) => token.clone(),
        (None, Some(user)) => {
            let answer = client
                .get(format!("{base}/tokens/{user}"))
                .send()
                .await
                .with_context(|| format!("while asking {base} for a dev token"))?;
            if !answer.status().is_success() {
                bail!("{base}/tokens/{user} answered {}", answer.status());
            }
            answer.text().await?
        }
        (None, None) => {
            bail!("give a token with --token (or AUDITLOG_TOKEN), or --as-user ID on a demo")
        }
    };
    let mut params: Vec<(String, String)> = Vec::new();
    for (flag, filter) in [(&args.actor, "actor"), (&args.target, "target")] {
        if let Some(object) = flag {
            let (object_type, id) = object
                .split_once(':')
                .with_context(|| format!("--{filter} takes TYPE:ID, e.g. users:1"))?;
            params.push((format!("filter[{filter}Type]"), object_type.to_owned()));
            params.push((format!("filter[{filter}Id]"), id.to_owned()));
        }
    }
    let optional = [
        ("filter[action]", &args.action),
        ("filter[eventName]", &args.event_name),
        ("filter[since]", &args.since.map(|ms| ms.to_string())),
        ("filter[until]", &args.until.map(|ms| ms.to_string())),
        ("sort", &args.sort),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            params.push((name.to_owned(), value.clone()));
        }
    }

    // The total first, for the progress bar.
    let mut counting = params.clone();
    counting.push(("count".into(), "true".into()));
    counting.push(("page[size]".into(), "1".into()));
    let counted: serde_json::Value = checked(
        client
            .get(format!(
                "{base}/api/data-events?{}",
                serde_urlencoded::to_string(&counting)?
            ))
            .bearer_auth(&token)
            .send()
            .await?,
    )
    .await?
    .json()
    .await?;
    let total = counted["meta"]["total"].as_u64().unwrap_or(0);

    let mut exporting = params;
    exporting.push(("format".into(), args.format.clone()));
    let response = checked(
        client
            .get(format!(
                "{base}/api/data-events?{}",
                serde_urlencoded::to_string(&exporting)?
            ))
            .bearer_auth(&token)
            .send()
            .await?,
    )
    .await?;
    let mut out: Box<dyn Write> = match args.output.as_deref() {
        None | Some("-") => Box::new(std::io::stdout().lock()),
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("while creating {path}"))?,
        )),
    };
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} exporting {bar:40} {pos}/{len} events [{elapsed}, {per_sec}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut lines = 0u64;
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.context("the export broke off")?;
        out.write_all(&chunk)?;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        bar.set_position(lines);
    }
    out.flush()?;
    bar.finish_and_clear();
    let rows = if args.format == "csv" {
        lines.saturating_sub(1)
    } else {
        lines
    };
    eprintln!("exported {rows} events");
    Ok(())
}

/// The response, or an error carrying the API's JSON:API detail.
async fn checked(response: reqwest::Response) -> Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let detail = body["errors"][0]["detail"].as_str().unwrap_or("no detail");
    bail!("the API answered {status}: {detail}")
}
