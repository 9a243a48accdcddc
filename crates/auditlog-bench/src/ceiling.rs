//! The store's own ceiling: the same number of rows, with the same columns and
//! indexes, loaded by the database's fastest bulk path through its own command-line
//! client, with no auditlog code in the way: `sqlite3 .import`, PostgreSQL
//! `\copy … FROM` (COPY), MySQL/MariaDB `LOAD DATA LOCAL INFILE`. Only the data file
//! is prepared by us, before the clock starts.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use auditlog_event::DataEvent;
use auditlog_store::Engine;

use crate::workload::Workload;

/// Seconds the database took to bulk-load `events` rows shaped like the bench's.
pub async fn measure(
    store_url: &str,
    scratch: &Path,
    events: u64,
    changed_ratio: f64,
) -> Result<f64> {
    let url = store_url.to_owned();
    let scratch = scratch.to_owned();
    let rows = Rows {
        events,
        changed_ratio,
    };
    tokio::task::spawn_blocking(move || match Engine::of_url(&url) {
        Some(Engine::Sqlite) => sqlite(&url, &scratch, rows),
        Some(Engine::Postgres) => postgres(&url, &scratch, rows),
        Some(Engine::MySql) => mysql(&url, &scratch, rows),
        None => bail!(
            "no ceiling measurement for {}",
            auditlog_store::redact(&url)
        ),
    })
    .await
    .context("the ceiling measurement panicked")?
}

/// How many rows of which mix.
#[derive(Clone, Copy)]
struct Rows {
    events: u64,
    changed_ratio: f64,
}

/// One row's values by column name.
fn value(column: &str, event: &DataEvent, seq: u64, id_form: IdForm) -> String {
    match column {
        "seq" => seq.to_string(),
        "id" => match id_form {
            IdForm::Text => event.id.to_string(),
            IdForm::Hex => event.id.simple().to_string(),
        },
        "action" => event.action.as_str().into(),
        "timestamp" => event.timestamp.to_string(),
        "actor_type" => event.actor_type.to_string(),
        "actor_id" => event.actor_id.key(),
        "target_type" => event.target_type.to_string(),
        "target_id" => event.target_id.key(),
        "received_at" => event.timestamp.to_string(),
        "body" => event.to_json(),
        "producer_id" => event.producer_id.clone().unwrap_or_default(),
        "producer_seq" => event
            .producer_seq
            .map(|s| s.to_string())
            .unwrap_or_default(),
        "actor_key" => {
            auditlog_store::object_key(event.actor_type.as_str(), &event.actor_id.key()).to_string()
        }
        "target_key" => {
            auditlog_store::object_key(event.target_type.as_str(), &event.target_id.key())
                .to_string()
        }
        _ => String::new(),
    }
}

#[derive(Clone, Copy)]
enum IdForm {
    Text,
    Hex,
}

/// Writes `events` rows in `columns` order as RFC 4180 CSV.
fn write_csv(
    path: &Path,
    columns: &[String],
    events: u64,
    changed_ratio: f64,
    id_form: IdForm,
) -> Result<()> {
    let workload = Workload::new(changed_ratio);
    let producer = auditlog_emit::new_producer_id("ceiling");
    let mut out = String::with_capacity(64 * 1024 * 1024);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for n in 0..events {
        let mut event = workload.event(n, 1_700_000_000_000 + n as i64);
        event.producer_id = Some(producer.clone());
        event.producer_seq = Some(n + 1);
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let field = value(column, &event, n + 1, id_form);
            if field.contains([',', '"', '\n']) {
                out.push('"');
                out.push_str(&field.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(&field);
            }
        }
        out.push('\n');
        if out.len() > 32 * 1024 * 1024 {
            std::io::Write::write_all(&mut file, out.as_bytes())?;
            out.clear();
        }
    }
    std::io::Write::write_all(&mut file, out.as_bytes())?;
    std::io::Write::flush(&mut file)?;
    Ok(())
}

fn run(command: &mut Command, input: Option<&str>) -> Result<String> {
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("while starting {command:?} (is the database client installed?)")
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        std::io::Write::write_all(&mut stdin, text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{:?} failed: {}",
            command.get_program(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn sqlite(url: &str, scratch: &Path, rows: Rows) -> Result<f64> {
    let store_path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let schema = run(
        Command::new("sqlite3").args([&store_path, ".schema audit_events"]),
        None,
    )?;
    let columns: Vec<String> = run(
        Command::new("sqlite3").args([
            &store_path,
            "SELECT name FROM pragma_table_info('audit_events')",
        ]),
        None,
    )?
    .lines()
    .map(str::to_owned)
    .collect();
    let csv = scratch.join("ceiling.csv");
    write_csv(
        &csv,
        &columns,
        rows.events,
        rows.changed_ratio,
        IdForm::Text,
    )?;
    let db = scratch.join("ceiling.db");
    // The same settings the store's writer uses, in the one connection that
    // creates the table and imports into it.
    let mut script = String::from(
        "PRAGMA journal_mode=WAL;\nPRAGMA synchronous=FULL;\n\
         PRAGMA cache_size=-65536;\nPRAGMA wal_autocheckpoint=16384;\n",
    );
    script.push_str(&schema.replace("audit_events", "ceiling_events"));
    script.push_str(&format!(
        "\n.import --csv {} ceiling_events\n",
        csv.display()
    ));
    let started = Instant::now();
    run(Command::new("sqlite3").arg(&db), Some(&script))?;
    Ok(started.elapsed().as_secs_f64())
}

fn postgres(url: &str, scratch: &Path, rows: Rows) -> Result<f64> {
    let table = format!("ceiling_events_{}", uuid::Uuid::now_v7().simple());
    let columns: Vec<String> = run(
        Command::new("psql").args([
            url,
            "-X",
            "-q",
            "-t",
            "-A",
            "-c",
            "SELECT column_name FROM information_schema.columns \
             WHERE table_name = 'audit_events' AND table_schema = current_schema() \
             ORDER BY ordinal_position",
        ]),
        None,
    )?
    .lines()
    .map(str::to_owned)
    .collect();
    let csv = scratch.join("ceiling.csv");
    write_csv(
        &csv,
        &columns,
        rows.events,
        rows.changed_ratio,
        IdForm::Text,
    )?;
    run(
        Command::new("psql").args([
            url,
            "-X",
            "-q",
            "-c",
            &format!("CREATE TABLE {table} (LIKE audit_events INCLUDING ALL)"),
        ]),
        None,
    )?;
    let started = Instant::now();
    let loaded = run(
        Command::new("psql").args([
            url,
            "-X",
            "-q",
            "-c",
            &format!(
                "\\copy {table} ({}) FROM '{}' WITH (FORMAT csv)",
                columns.join(", "),
                csv.display()
            ),
        ]),
        None,
    );
    let seconds = started.elapsed().as_secs_f64();
    run(
        Command::new("psql").args([url, "-X", "-q", "-c", &format!("DROP TABLE {table}")]),
        None,
    )?;
    loaded?;
    Ok(seconds)
}

/// `mysql` client arguments for a `mysql://user:pass@host:port/db` URL.
fn mysql_args(url: &str) -> Result<Vec<String>> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .context("a MySQL URL looks like mysql://user@host:3306/db")?;
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let database = database.split('?').next().unwrap_or_default();
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("root", authority));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    let mut args = vec![
        format!("--host={host}"),
        format!("--port={port}"),
        format!("--user={user}"),
        "--local-infile=1".into(),
        "--batch".into(),
        "--skip-column-names".into(),
    ];
    if !password.is_empty() {
        args.push(format!("--password={password}"));
    }
    args.push(database.to_owned());
    Ok(args)
}

fn mysql(url: &str, scratch: &Path, rows: Rows) -> Result<f64> {
    let args = mysql_args(url)?;
    let table = format!("ceiling_events_{}", uuid::Uuid::now_v7().simple());
    let columns: Vec<String> = run(
        Command::new("mysql").args(&args).args([
            "-e",
            "SELECT column_name FROM information_schema.columns \
             WHERE table_name = 'audit_events' AND table_schema = DATABASE() \
             ORDER BY ordinal_position",
        ]),
        None,
    )?
    .lines()
    .map(str::to_owned)
    .collect();
    let csv = scratch.join("ceiling.csv");
    write_csv(&csv, &columns, rows.events, rows.changed_ratio, IdForm::Hex)?;
    run(
        Command::new("mysql")
            .args(&args)
            .args(["-e", &format!("CREATE TABLE {table} LIKE audit_events")]),
        None,
    )?;
    let mut targets = String::new();
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            targets.push_str(", ");
        }
        if column == "id" {
            targets.push_str("@id");
        } else {
            let _ = write!(targets, "`{column}`");
        }
    }
    let load = format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE {table} \
         FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' \
         LINES TERMINATED BY '\\n' ({targets}) SET id = UNHEX(@id)",
        csv.display()
    );
    let started = Instant::now();
    let loaded = run(Command::new("mysql").args(&args).args(["-e", &load]), None);
    let seconds = started.elapsed().as_secs_f64();
    run(
        Command::new("mysql")
            .args(&args)
            .args(["-e", &format!("DROP TABLE {table}")]),
        None,
    )?;
    loaded?;
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_urls_become_client_arguments() {
        let args = mysql_args("mysql://root:pw@127.0.0.1:3307/audit").unwrap();
        assert!(args.contains(&"--host=127.0.0.1".to_owned()));
        assert!(args.contains(&"--port=3307".to_owned()));
        assert!(args.contains(&"--password=pw".to_owned()));
        assert_eq!(args.last().unwrap(), "audit");
    }
}
