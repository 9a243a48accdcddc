//! The file under clap: the file's values become the arguments' defaults, so that
//! clap's own order (default < environment < flag) applies on top; the `auditlog
//! config COMMAND` targets are added from the command tree; and clap's refusal of
//! a setting's value is rewritten to name every way the setting can be given.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, Command};

use super::catalogue::Catalogue;
use super::file::{ConfigFile, FileValue};
use super::{CONFIG_COMMAND, ConfigError, InvalidValue};

/// The file's values as the defaults of the arguments they set, a command's table
/// before the top level. Secrets' defaults are hidden from `--help`.
pub(super) fn with_file_defaults(
    mut command: Command,
    catalogue: &Catalogue,
    file: &ConfigFile,
) -> Command {
    pub(super) fn inject(arg: Arg, value: &FileValue, secret: bool) -> Arg {
        let arg = match value.values.as_slice() {
            [one] => arg.default_value(one.clone()),
            many => arg.default_values(many.to_vec()),
        };
        if secret {
            arg.hide_default_value(true)
        } else {
            arg
        }
    }
    for setting in &catalogue.root {
        if let Some(value) = file.top.get(&setting.key) {
            command = command.mut_arg(&setting.id, |arg| inject(arg, value, setting.secret));
        }
    }
    for (name, settings) in &catalogue.commands {
        for setting in settings {
            if let Some(value) = file.value_for(name, &setting.key) {
                command = command.mut_subcommand(name, |sub| {
                    sub.mut_arg(&setting.id, |arg| inject(arg, value, setting.secret))
                });
            }
        }
    }
    command
}

/// `auditlog config COMMAND` for each command with settings: the command's settings
/// (same flags, environment variables and file defaults) plus `--json`.
pub(super) fn with_config_targets(command: Command, catalogue: &Catalogue) -> Command {
    if command.find_subcommand(CONFIG_COMMAND).is_none() {
        return command;
    }
    let targets: Vec<Command> = catalogue
        .commands
        .iter()
        .filter_map(|(name, settings)| {
            let sub = command.find_subcommand(name)?;
            let args = sub
                .get_arguments()
                .filter(|arg| settings.iter().any(|s| arg.get_id() == s.id.as_str()))
                .cloned();
            Some(
                Command::new(name.clone())
                    .about(format!(
                        "The settings of `auditlog {name}`; flags here override them as they would there"
                    ))
                    .args(args)
                    .arg(
                        Arg::new("json")
                            .long("json")
                            .action(ArgAction::SetTrue)
                            .help("One JSON object instead of TOML-like text"),
                    )
                    .after_help(format!(
                        "Examples:\n  auditlog config {name}\n  auditlog --config auditlog.toml config {name} --json"
                    )),
            )
        })
        .collect();
    command.mut_subcommand(CONFIG_COMMAND, |config| {
        config.subcommands(targets).subcommand_required(true)
    })
}

/// Rewrites clap's refusal of a setting's value so that it names the setting every
/// way it can be given, says where the value came from, and redacts secrets.
pub(super) fn explain(err: clap::Error, catalogue: &Catalogue, argv: &[OsString]) -> ConfigError {
    if !matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return err.into();
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return err.into();
    };
    let flag = arg.split([' ', '=']).next().unwrap_or_default();
    let Some(setting) = catalogue.by_flag(flag) else {
        return err.into();
    };
    let value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => value.clone(),
        _ => String::new(),
    };
    // File values were checked before parsing, so a refused value came from the
    // command line or, failing that, the environment.
    let on_command_line = argv.iter().filter_map(|a| a.to_str()).any(|a| {
        a == setting.flag
            || a.strip_prefix(setting.flag.as_str())
                .is_some_and(|rest| rest.starts_with('='))
    });
    let (given_by, also) = if on_command_line {
        (
            format!("given by the flag {}", setting.flag),
            format!(
                "the same setting as the environment variable {} and the config file key `{}`",
                setting.env, setting.key
            ),
        )
    } else {
        (
            format!("from the environment variable {}", setting.env),
            format!(
                "the same setting as the flag {} and the config file key `{}`",
                setting.flag, setting.key
            ),
        )
    };
    ConfigError::Value(Box::new(InvalidValue {
        value: setting.shown(&[value]),
        flag: setting.flag.clone(),
        given_by,
        reason: setting.reason(&err),
        also,
    }))
}
