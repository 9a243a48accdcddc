//! `auditlog emit`: records one event from a script. The event is built from flags
//! (or taken as JSON), checked against the `auditlog-event` contract before anything
//! is sent, and delivered to the auditor's HTTP ingest, which answers after the
//! store committed it, or published to RabbitMQ with a publisher confirm.
//!
//! Over HTTP it needs a service or admin token: `--token`, or else one minted from
//! the signing key in `--data-dir`. A script on the auditor's host already holds
//! that key (the services trust it for everything), so minting spares it a token
//! that expires and works with `--dev-tokens=false`; elsewhere, `--token` with a
//! service token of the external issuer.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use auditlog_amqp::{AmqpConfig, AmqpPublisher};
use auditlog_auth::{KeyPair, Principal, Role, TokenIssuer};
use auditlog_emit::Transport;
use auditlog_event::{DataEvent, EventError};
use clap::Args;
use serde_json::{Map, Value, json};

use crate::remote;

/// The `source` of events emitted from the command line, and the producer name in
/// their RabbitMQ routing key (`cli.data.mutated`).
const CLI_SOURCE: &str = "cli";

#[derive(Debug, Clone, Args)]
pub struct EmitArgs {
    /// The whole event as JSON in the data-event wire shape, or `-` to read it from
    /// standard input; instead of the flags that describe it.
    #[arg(
        long,
        value_name = "JSON|-",
        conflicts_with_all = ["action", "actor", "target", "change", "masked", "event_name", "meta", "request_id", "timestamp", "id"]
    )]
    json: Option<String>,
    /// viewed, created, changed or deleted.
    #[arg(long, required_unless_present = "json")]
    action: Option<String>,
    /// Who did it, TYPE:ID (e.g. users:1).
    #[arg(long, required_unless_present = "json", value_name = "TYPE:ID")]
    actor: Option<String>,
    /// What it was done to, TYPE:ID (e.g. users:2).
    #[arg(long, required_unless_present = "json", value_name = "TYPE:ID")]
    target: Option<String>,
    /// A changed field, FIELD=PREV,NEXT (repeatable). A value that reads as JSON (42,
    /// true, null, "a,b") is taken as JSON, anything else as text; an empty side is
    /// null. `created` and `deleted` also take FIELD=VALUE.
    #[arg(long, value_name = "FIELD=PREV,NEXT")]
    change: Vec<String>,
    /// A field that changed whose values must not be recorded, such as a password
    /// (repeatable).
    #[arg(long, value_name = "FIELD")]
    masked: Vec<String>,
    /// A name for the event, e.g. user.email.changed.
    #[arg(long)]
    event_name: Option<String>,
    /// Free metadata, KEY=VALUE (repeatable); values read like --change's.
    #[arg(long, value_name = "KEY=VALUE")]
    meta: Vec<String>,
    /// The emitting service [default: cli].
    #[arg(long)]
    source: Option<String>,
    /// Correlation id of the request that caused the event.
    #[arg(long)]
    request_id: Option<String>,
    /// When it happened: ms since the Unix epoch, RFC 3339, or a span back from now
    /// (90s, 2h) [default: now].
    #[arg(long, value_parser = remote::parse_time)]
    timestamp: Option<i64>,
    /// The event's UUID; give the same one when retrying and it is stored once
    /// [default: a new UUIDv7].
    #[arg(long)]
    id: Option<uuid::Uuid>,
    /// The auditor whose HTTP ingest receives the event.
    #[arg(
        long,
        env = "AUDITLOG_AUDITOR_URL",
        default_value = "http://127.0.0.1:3001"
    )]
    auditor_url: String,
    /// A service or admin token. Without it, one is minted from the signing key in
    /// --data-dir.
    #[arg(long, env = "AUDITLOG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The deployment's data directory, whose signing key mints a service token
    /// when --token is not given.
    #[arg(long, env = "AUDITLOG_DATA_DIR", default_value = "auditlog-data")]
    data_dir: PathBuf,
    /// Publish to RabbitMQ instead of HTTP (the auditor consumes it from there).
    /// Only this flag chooses RabbitMQ: AUDITLOG_AMQP_URL, set for the services, does
    /// not quietly switch a script from HTTP.
    #[arg(long, value_parser = crate::config::amqp_url)]
    amqp_url: Option<String>,
    /// Topic exchange to publish to.
    #[arg(long, env = "AUDITLOG_AMQP_EXCHANGE", default_value = "api-stream")]
    amqp_exchange: String,
    /// The auditor's queue: it must exist, or the broker would drop the event.
    #[arg(
        long,
        env = "AUDITLOG_AMQP_QUEUE",
        default_value = "data-mutation-audits"
    )]
    amqp_queue: String,
}

pub async fn run(args: EmitArgs) -> Result<()> {
    let event = event(&args)?;
    match &args.amqp_url {
        Some(url) => publish(&args, url, &event).await?,
        None => deliver(&args, &event).await?,
    }
    println!("{}", event.id);
    Ok(())
}

/// The event the arguments describe, checked against the contract.
fn event(args: &EmitArgs) -> Result<DataEvent> {
    let now = auditlog_event::now_ms();
    let Some(json) = &args.json else {
        let wire = wire_from_flags(args)?;
        return DataEvent::parse_json(&wire.to_string(), now).map_err(|error| {
            let flag = error.field().and_then(flag_of);
            let hint = flag.map(|f| format!(" (from {f})")).unwrap_or_default();
            anyhow::anyhow!("the event is invalid: {error}{hint}")
        });
    };
    let text = if json == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("while reading the event from standard input")?;
        text
    } else {
        json.clone()
    };
    let mut event = DataEvent::parse_json(&text, now).map_err(invalid)?;
    if let Some(source) = &args.source {
        // Through the contract again, so that --source meets the same limits.
        let mut wire: Value = serde_json::from_str(&event.to_json())?;
        wire["source"] = Value::String(source.clone());
        event = DataEvent::parse_json(&wire.to_string(), now).map_err(invalid)?;
    }
    Ok(event)
}

fn invalid(error: EventError) -> anyhow::Error {
    anyhow::anyhow!("the event is invalid: {error}")
}

/// The flag that set a wire field, to point the user at what to fix.
fn flag_of(field: &str) -> Option<&'static str> {
    Some(match field {
        "action" => "--action",
        "actorType" | "actorId" => "--actor",
        "targetType" | "targetId" => "--target",
        "changes" => "--change",
        "eventName" => "--event-name",
        "meta" => "--meta",
        "source" => "--source",
        "requestId" => "--request-id",
        "timestamp" => "--timestamp",
        "id" => "--id",
        _ => return None,
    })
}

/// The event in its wire shape, unchecked: the contract judges it next.
fn wire_from_flags(args: &EmitArgs) -> Result<Value> {
    let action = args.action.as_deref().unwrap_or_default();
    let mut wire = Map::new();
    wire.insert("action".into(), Value::String(action.to_owned()));
    for (flag, object, prefix) in [
        ("actor", &args.actor, "actor"),
        ("target", &args.target, "target"),
    ] {
        let Some(object) = object else { continue };
        let (object_type, id) = remote::object_ref(flag, object)?;
        wire.insert(
            format!("{prefix}Type"),
            Value::String(object_type.to_owned()),
        );
        wire.insert(format!("{prefix}Id"), object_id(id));
    }
    if !args.change.is_empty() || !args.masked.is_empty() {
        let mut changes = Map::new();
        for text in &args.change {
            let (field, change) = change(action, text)?;
            changes.insert(field, change);
        }
        for field in &args.masked {
            changes.insert(
                field.clone(),
                json!({"prev": null, "next": null, "masked": true}),
            );
        }
        wire.insert("changes".into(), Value::Object(changes));
    }
    if !args.meta.is_empty() {
        let mut meta = Map::new();
        for text in &args.meta {
            let (key, value) = text
                .split_once('=')
                .with_context(|| format!("--meta takes KEY=VALUE, not `{text}`"))?;
            meta.insert(key.to_owned(), value_of(value));
        }
        wire.insert("meta".into(), Value::Object(meta));
    }
    let source = args.source.as_deref().unwrap_or(CLI_SOURCE);
    wire.insert("source".into(), Value::String(source.to_owned()));
    let labels = [
        ("eventName", &args.event_name),
        ("requestId", &args.request_id),
    ];
    for (field, value) in labels {
        if let Some(value) = value {
            wire.insert(field.into(), Value::String(value.clone()));
        }
    }
    if let Some(timestamp) = args.timestamp {
        wire.insert("timestamp".into(), Value::from(timestamp));
    }
    if let Some(id) = args.id {
        wire.insert("id".into(), Value::String(id.to_string()));
    }
    Ok(Value::Object(wire))
}

/// An object id as the demo's own events carry it: a plain integer as a number,
/// anything else (including `007`) as text.
fn object_id(id: &str) -> Value {
    let canonical_integer = id.parse::<i64>().is_ok_and(|n| n.to_string() == id);
    if canonical_integer {
        id.parse::<i64>().map(Value::from).unwrap_or_default()
    } else {
        Value::String(id.to_owned())
    }
}

/// `FIELD=PREV,NEXT` (or `FIELD=VALUE` for `created`/`deleted`) as `{prev, next}`.
fn change(action: &str, text: &str) -> Result<(String, Value)> {
    let usage = || format!("--change takes FIELD=PREV,NEXT, not `{text}`");
    let (field, values) = text.split_once('=').with_context(usage)?;
    let (prev, next) = match (split_pair(values), action) {
        (Some((prev, next)), _) => (value_of(prev), value_of(next)),
        (None, "created") => (Value::Null, value_of(values)),
        (None, "deleted") => (value_of(values), Value::Null),
        (None, _) => bail!("{}; leave a side empty for none", usage()),
    };
    Ok((field.to_owned(), json!({"prev": prev, "next": next})))
}

/// Splits at the first comma outside a JSON string, array or object, so that
/// `"a,b","c"` and `[1,2],[3]` split where a reader would expect.
fn split_pair(text: &str) -> Option<(&str, &str)> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => return Some((&text[..at], &text[at + 1..])),
            _ => {}
        }
    }
    None
}

/// A value typed on the command line: JSON if it reads as JSON, else text; empty
/// is null.
fn value_of(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Over HTTP: the auditor answers after its store committed the event.
async fn deliver(args: &EmitArgs, event: &DataEvent) -> Result<()> {
    let token = match &args.token {
        Some(token) => token.clone(),
        None => mint_service_token(args)?,
    };
    let base = args.auditor_url.trim_end_matches('/');
    let document = json!({"data": {"type": "data-events", "attributes": event}});
    let response = reqwest::Client::new()
        .post(format!("{base}/api/data-events"))
        .bearer_auth(token)
        .header("content-type", "application/vnd.api+json")
        .body(document.to_string())
        .send()
        .await
        .with_context(|| format!("while sending the event to the auditor at {base}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    let error = &body["errors"][0];
    let detail = error["detail"].as_str().unwrap_or("no detail");
    match status.as_u16() {
        200 => {}
        401 | 403 => bail!(
            "the auditor answered {status}: {detail}. Emitting needs a service or admin token: \
             --token, or --data-dir pointing at the data directory whose key the auditor trusts"
        ),
        422 => {
            let pointer = error["source"]["pointer"].as_str().unwrap_or("the event");
            bail!("the auditor refused the event: {detail} (at {pointer})")
        }
        _ => bail!("the auditor answered {status}: {detail}"),
    }
    if body["meta"]["duplicates"].as_u64().unwrap_or(0) > 0 {
        eprintln!("an event with this id was already stored; it is kept as it was");
    }
    Ok(())
}

/// A 20-minute service token signed with the data directory's key; never creates a
/// key, which would only be one the auditor does not trust.
fn mint_service_token(args: &EmitArgs) -> Result<String> {
    let dir = &args.data_dir;
    let pair = KeyPair::load(dir)
        .with_context(|| format!("while reading the signing key in {}", dir.display()))?
        .with_context(|| {
            format!(
                "no token: give --token (a service or admin token, or AUDITLOG_TOKEN), or \
                 --data-dir with the deployment's data directory; {} has no signing key",
                KeyPair::path_in(dir).display()
            )
        })?;
    // `auditlog emit` runs with the deployment's key: it delivers for any tenant.
    let principal = Principal::new(CLI_SOURCE.into(), Role::Service)
        .context("the service principal's name is valid")?
        .in_tenant(auditlog_auth::ANY_TENANT);
    Ok(TokenIssuer::new(&pair)?.issue(&principal)?)
}

/// Over RabbitMQ: done when the broker confirmed the message into the auditor's
/// queue; the auditor stores it when it consumes it.
async fn publish(args: &EmitArgs, url: &str, event: &DataEvent) -> Result<()> {
    let config = AmqpConfig {
        exchange: args.amqp_exchange.clone(),
        queue: args.amqp_queue.clone(),
        ..AmqpConfig::new(url)
    };
    // An exchange drops what no queue is bound to, and still confirms it. Checked
    // before the publisher connects, which would declare the exchange.
    if !auditlog_amqp::queue_exists(url, &args.amqp_queue).await {
        // Tell an unreachable broker from a missing queue, declaring nothing.
        let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach RabbitMQ at {}: {e}",
                    auditlog_amqp::redact(url)
                )
            })?;
        let _ = connection.close(200, "probe done".into()).await;
        bail!(
            "RabbitMQ has no queue `{}`, so nothing would receive the event: start the auditor \
             with this --amqp-url first (it declares its queue), or name its queue with \
             --amqp-queue. Nothing was published.",
            args.amqp_queue
        );
    }
    let publisher = AmqpPublisher::new(config, CLI_SOURCE);
    publisher.connect().await?;
    publisher
        .publish(std::slice::from_ref(event))
        .await
        .context("while publishing the event to RabbitMQ")?;
    eprintln!(
        "published to `{}`; the auditor stores it from `{}`",
        args.amqp_exchange, args.amqp_queue
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_splits_at_the_first_comma_outside_json() {
        assert_eq!(split_pair("a@x,b@x"), Some(("a@x", "b@x")));
        assert_eq!(split_pair(r#""a,b","c""#), Some((r#""a,b""#, r#""c""#)));
        assert_eq!(split_pair("[1,2],[3]"), Some(("[1,2]", "[3]")));
        assert_eq!(split_pair("alone"), None);
    }

    #[test]
    fn values_that_read_as_json_are_json_and_the_rest_text() {
        assert_eq!(value_of("42"), json!(42));
        assert_eq!(value_of("true"), json!(true));
        assert_eq!(value_of(r#""007""#), json!("007"));
        assert_eq!(value_of("007"), json!("007"));
        assert_eq!(value_of("10.0.0.1"), json!("10.0.0.1"));
        assert_eq!(value_of(""), Value::Null);
    }

    #[test]
    fn a_created_field_may_give_only_its_new_value() {
        let (field, created) = change("created", "email=a@x").unwrap();
        assert_eq!(field, "email");
        assert_eq!(created, json!({"prev": null, "next": "a@x"}));
        let (_, deleted) = change("deleted", "email=a@x").unwrap();
        assert_eq!(deleted, json!({"prev": "a@x", "next": null}));
        assert!(change("changed", "email=a@x").is_err());
    }

    #[test]
    fn integer_ids_are_numbers_and_other_ids_text() {
        assert_eq!(object_id("1"), json!(1));
        assert_eq!(object_id("007"), json!("007"));
        assert_eq!(object_id("q3"), json!("q3"));
    }
}
