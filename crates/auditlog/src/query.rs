//! `auditlog query`: the query API from a terminal. Follows `links.next` page by
//! page until `--limit` events, and prints them as an aligned table (on a
//! terminal) or as NDJSON, one stored event per line (in a pipe).

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::remote::{self, Filters, ReaderArgs};

#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    reader: ReaderArgs,
    #[command(flatten)]
    filters: Filters,
    /// Oldest first instead of newest first.
    #[arg(long)]
    oldest_first: bool,
    /// At most this many events, fetched page by page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    limit: u64,
    /// Events asked for per request (the API allows 1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    page_size: u32,
    /// `table` (aligned columns) or `json` (NDJSON, one stored event per line)
    /// [default: table on a terminal, json otherwise].
    #[arg(long, value_enum)]
    format: Option<Format>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

pub async fn run(args: QueryArgs) -> Result<()> {
    let base = args.reader.base();
    let client = reqwest::Client::new();
    let token = remote::reader_token(
        &client,
        &base,
        args.reader.token.as_deref(),
        args.reader.as_user,
    )
    .await?;
    let mut params = args
        .filters
        .params(args.oldest_first.then_some("timestamp"))?;
    let first_page = u64::from(args.page_size).min(args.limit);
    params.push(("page[size]".into(), first_page.to_string()));
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    });

    let mut out = std::io::stdout().lock();
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut shown = 0u64;
    let mut next = Some(format!(
        "/api/data-events?{}",
        serde_urlencoded::to_string(&params)?
    ));
    while let Some(path) = next.take() {
        let page: Value = remote::checked(
            client
                .get(format!("{base}{path}"))
                .bearer_auth(&token)
                .send()
                .await
                .with_context(|| format!("while querying {base}"))?,
        )
        .await?
        .json()
        .await
        .context("the API's answer is not JSON")?;
        let events = page["data"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let wanted = usize::try_from(args.limit - shown).unwrap_or(usize::MAX);
        let taken = events.len().min(wanted);
        for resource in &events[..taken] {
            let event = &resource["attributes"];
            match format {
                Format::Json => writeln!(out, "{event}")?,
                Format::Table => rows.push(row(event)),
            }
        }
        shown += taken as u64;
        next = page["links"]["next"].as_str().map(str::to_owned);
        if shown == args.limit {
            if next.is_some() || taken < events.len() {
                eprintln!("showing the first {shown} events; raise --limit for more");
            }
            break;
        }
    }
    if format == Format::Table {
        if rows.is_empty() {
            eprintln!("no events match");
        } else {
            write_table(&mut out, &rows)?;
        }
    }
    out.flush()?;
    Ok(())
}

const HEADER: [&str; 5] = ["TIME", "ACTION", "ACTOR", "TARGET", "CHANGES"];
/// Longest changes summary shown; the rest is cut with an ellipsis.
const MAX_SUMMARY_CHARS: usize = 80;
/// Longest value shown inside a summary.
const MAX_VALUE_CHARS: usize = 24;

/// One table row: time, action, actor, target, changes summary.
fn row(event: &Value) -> [String; 5] {
    let time = event["timestamp"]
        .as_i64()
        .map(remote::format_time)
        .unwrap_or_default();
    [
        time,
        text(&event["action"]),
        format!("{}:{}", text(&event["actorType"]), text(&event["actorId"])),
        format!(
            "{}:{}",
            text(&event["targetType"]),
            text(&event["targetId"])
        ),
        summary(event),
    ]
}

/// `email: a@x → b@x, name: Ann → Anne` for changes; `email=a@x` when one side is
/// absent (created, deleted); `password (masked)`; or the event name when the event
/// has no changes.
fn summary(event: &Value) -> String {
    let Some(changes) = event["changes"].as_object() else {
        return event["eventName"].as_str().map(clean).unwrap_or_default();
    };
    let parts: Vec<String> = changes
        .iter()
        .map(|(field, change)| {
            let field = clean(field);
            if change["masked"] == Value::Bool(true) {
                return format!("{field} (masked)");
            }
            match (&change["prev"], &change["next"]) {
                (Value::Null, next) => format!("{field}={}", short(next)),
                (prev, Value::Null) => format!("{field}={}", short(prev)),
                (prev, next) => format!("{field}: {} → {}", short(prev), short(next)),
            }
        })
        .collect();
    cut(&parts.join(", "), MAX_SUMMARY_CHARS)
}

/// A JSON value as a reader would type it: strings without quotes.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => clean(s),
        Value::Null => String::new(),
        other => clean(&other.to_string()),
    }
}

fn short(value: &Value) -> String {
    cut(&text(value), MAX_VALUE_CHARS)
}

/// Control characters escaped: an event's text must not be able to move the
/// cursor or recolour the operator's terminal.
fn clean(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

fn write_table(out: &mut impl Write, rows: &[[String; 5]]) -> std::io::Result<()> {
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = HEADER.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
            line.push_str(cell);
            if column + 1 < row.len() {
                let pad = width - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_change_is_summarised_as_before_and_after() {
        let event = json!({"changes": {
            "email": {"prev": "a@x", "next": "b@x"},
            "password": {"prev": null, "next": null, "masked": true},
        }});
        assert_eq!(summary(&event), "email: a@x → b@x, password (masked)");
    }

    #[test]
    fn a_created_field_shows_only_its_value() {
        let event = json!({"changes": {"agreedTos": {"prev": null, "next": false}}});
        assert_eq!(summary(&event), "agreedTos=false");
    }

    #[test]
    fn an_event_without_changes_shows_its_name() {
        let event = json!({"eventName": "audit.read"});
        assert_eq!(summary(&event), "audit.read");
    }

    #[test]
    fn long_values_are_cut_with_an_ellipsis() {
        let long = "x".repeat(100);
        let event = json!({"changes": {"bio": {"prev": long, "next": "y"}}});
        let shown = summary(&event);
        assert!(shown.starts_with(&format!("bio: {}…", "x".repeat(23))));
        assert!(shown.chars().count() <= MAX_SUMMARY_CHARS);
    }

    #[test]
    fn control_characters_in_an_event_cannot_reach_the_terminal() {
        let event =
            json!({"actorType": "users", "actorId": "\u{1b}[2J", "targetType": "t", "targetId": 1});
        assert_eq!(row(&event)[2], "users:\\u{1b}[2J");
    }

    #[test]
    fn columns_are_aligned_under_their_headers() {
        let rows = [[
            "2023-11-14T22:13:20.000Z".to_owned(),
            "changed".to_owned(),
            "users:1".to_owned(),
            "users:22".to_owned(),
            "email: a → b".to_owned(),
        ]];
        let mut out = Vec::new();
        write_table(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for header in ["ACTION", "ACTOR", "TARGET", "CHANGES"] {
            let column = lines[0].find(header).unwrap();
            assert_ne!(&lines[1][column..column + 1], " ", "{header} column");
            assert_eq!(&lines[1][column - 1..column], " ", "{header} column");
        }
    }
}
