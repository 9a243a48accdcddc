//! `auditlog config COMMAND [--json]`: each setting's effective value and where
//! it came from; and `auditlog completions SHELL`.

use anyhow::Context;
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Serialize;

use super::catalogue::{Kind, Setting};
use super::{CONFIG_COMMAND, Settings, redact};

/// Where a setting's effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum Source {
    Default,
    File,
    Env,
    Flag,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Report {
    pub(super) command: String,
    pub(super) config_file: Option<ReportFile>,
    /// By file key, in key order.
    pub(super) settings: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReportFile {
    pub(super) path: String,
    pub(super) named_by: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Effective {
    /// Redacted if secret; `null` when unset.
    pub(super) value: serde_json::Value,
    pub(super) source: Source,
    /// The flag, environment variable or `FILE:LINE [table] key` that set it.
    pub(super) from: Option<String>,
    pub(super) flag: String,
    pub(super) env: String,
}

/// `auditlog config COMMAND [--json]`: each setting of COMMAND, its effective value
/// (secrets redacted) and where it came from.
pub fn show(settings: &Settings) -> anyhow::Result<()> {
    let (name, matches) = settings
        .matches
        .subcommand_matches(CONFIG_COMMAND)
        .and_then(ArgMatches::subcommand)
        .context("`auditlog config` needs the command whose settings to show")?;
    let list = settings.catalogue.command(name).unwrap_or_default();
    let mut rows = Vec::new();
    for setting in list {
        let raw = matches
            .try_get_raw(&setting.id)
            .with_context(|| format!("reading {}", setting.flag))?;
        let values: Option<Vec<String>> = raw.map(|values| {
            values
                .map(|v| {
                    let v = v.to_string_lossy();
                    if setting.secret {
                        redact(&v)
                    } else {
                        v.into_owned()
                    }
                })
                .collect()
        });
        let file_value = settings
            .file
            .as_ref()
            .and_then(|file| Some((file, file.value_for(name, &setting.key)?)));
        let (source, from) = match matches.value_source(&setting.id) {
            Some(ValueSource::CommandLine) => (Source::Flag, Some(setting.flag.clone())),
            Some(ValueSource::EnvVariable) => (Source::Env, Some(setting.env.clone())),
            Some(ValueSource::DefaultValue) => match file_value {
                Some((file, value)) => (
                    Source::File,
                    Some(format!(
                        "{}:{} {}",
                        file.path.display(),
                        value.line,
                        value.key_path
                    )),
                ),
                None => (Source::Default, None),
            },
            _ => (Source::Default, None),
        };
        rows.push((setting, values, source, from));
    }
    let json = matches.get_flag("json");
    if json {
        let report = Report {
            command: name.to_owned(),
            config_file: settings.file.as_ref().map(|file| ReportFile {
                path: file.path.display().to_string(),
                named_by: file.named_by.to_string(),
            }),
            settings: rows
                .into_iter()
                .map(|(setting, values, source, from)| {
                    let effective = Effective {
                        value: json_value(setting, values.as_deref()),
                        source,
                        from,
                        flag: setting.flag.clone(),
                        env: setting.env.clone(),
                    };
                    Ok((setting.key.clone(), serde_json::to_value(effective)?))
                })
                .collect::<anyhow::Result<_>>()?,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("# The settings of `auditlog {name}` (default < file < environment < flag).");
    match &settings.file {
        Some(file) => println!(
            "# Config file: {} (named by {}).",
            file.path.display(),
            file.named_by
        ),
        None => println!("# No config file (give one with --config FILE or AUDITLOG_CONFIG)."),
    }
    let lines: Vec<(String, String)> = rows
        .iter()
        .map(|(setting, values, source, from)| {
            let assignment = match values {
                Some(values) => format!(
                    "{} = {}",
                    setting.key,
                    toml_value(setting, values).unwrap_or_default()
                ),
                None => format!("# {} is not set", setting.key),
            };
            let origin = match (source, from) {
                (Source::Default, _) => "default".to_owned(),
                (Source::File, Some(from)) => format!("file {from}"),
                (Source::Env, Some(from)) => format!("environment {from}"),
                (Source::Flag, Some(from)) => format!("flag {from}"),
                (_, None) => format!("{source:?}").to_lowercase(),
            };
            (assignment, origin)
        })
        .collect();
    let width = lines.iter().map(|(a, _)| a.len()).max().unwrap_or(0);
    for (assignment, origin) in lines {
        println!("{assignment:<width$}  # {origin}");
    }
    Ok(())
}

/// A value as JSON, typed as the file would type it.
pub(super) fn json_value(setting: &Setting, values: Option<&[String]>) -> serde_json::Value {
    use serde_json::Value;
    let Some(values) = values else {
        return Value::Null;
    };
    let one = |text: &String| match setting.kind {
        Kind::Bool => text
            .parse::<bool>()
            .map_or_else(|_| Value::String(text.clone()), Value::Bool),
        Kind::Integer => text
            .parse::<i64>()
            .map_or_else(|_| Value::String(text.clone()), Value::from),
        Kind::Float => text
            .parse::<f64>()
            .map_or_else(|_| Value::String(text.clone()), Value::from),
        Kind::Text => Value::String(text.clone()),
    };
    match values {
        [single] if !setting.multiple => one(single),
        many => Value::Array(many.iter().map(one).collect()),
    }
}

/// A value as a TOML literal (JSON's string escapes are valid TOML).
pub(super) fn toml_value(setting: &Setting, values: &[String]) -> serde_json::Result<String> {
    let value = json_value(setting, Some(values));
    match value {
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<_, _>>()?;
            Ok(format!("[{}]", items.join(", ")))
        }
        other => serde_json::to_string(&other),
    }
}

/// `auditlog completions SHELL`: the completion script on standard output.
pub fn completions(settings: &mut Settings, shell: clap_complete::Shell) {
    let name = settings.command.get_name().to_owned();
    clap_complete::generate(shell, &mut settings.command, name, &mut std::io::stdout());
}
