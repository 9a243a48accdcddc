//! `auditlog export`: the query API's streamed export written to a file or stdout,
//! with a progress bar. Memory stays constant whatever the size: the body is copied
//! chunk by chunk as it arrives.

use std::io::Write;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::ExportArgs;
use crate::remote::{self, checked};

pub async fn run(args: ExportArgs) -> Result<()> {
    let base = args.api_url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::new();
    let token = remote::reader_token(&client, &base, args.token.as_deref(), args.as_user).await?;
    let params = args.filters.params(args.sort.as_deref())?;

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
