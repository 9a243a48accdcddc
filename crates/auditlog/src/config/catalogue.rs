//! The catalogue of settings: every argument of the command tree that has an
//! `AUDITLOG_*` environment variable, with its file key, flag, type and the
//! argument itself (whose value parser checks file values too).

use std::any::TypeId;
use std::net::SocketAddr;

use clap::{Arg, ArgAction, Command};

use super::{CONFIG_ARG, ENV_PREFIX, redact};

/// What a setting's value is, as far as the file's types go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Bool,
    Integer,
    Float,
    Text,
}

/// An argument that is a setting: it has an `AUDITLOG_*` environment variable.
#[derive(Debug, Clone)]
pub(super) struct Setting {
    /// The clap argument id.
    pub(super) id: String,
    /// The config file key: the long flag with underscores.
    pub(super) key: String,
    /// `--the-flag`.
    pub(super) flag: String,
    pub(super) env: String,
    /// Shown redacted (the argument hides its environment value in `--help`).
    pub(super) secret: bool,
    pub(super) kind: Kind,
    /// Takes several values (a TOML array, or one string split at the delimiter).
    pub(super) multiple: bool,
    /// The argument as defined, to run its own value parser on file values.
    pub(super) arg: Arg,
}

impl Setting {
    pub(super) fn of(arg: &Arg) -> Option<Setting> {
        if arg.get_id() == CONFIG_ARG {
            return None;
        }
        let long = arg.get_long()?;
        let env = arg.get_env()?.to_str()?;
        if !env.starts_with(ENV_PREFIX) {
            return None;
        }
        let value_type = arg.get_value_parser().type_id();
        let integers = [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
            TypeId::of::<i8>(),
            TypeId::of::<i16>(),
            TypeId::of::<i32>(),
            TypeId::of::<i64>(),
            TypeId::of::<isize>(),
        ];
        let kind = if value_type == TypeId::of::<bool>() {
            Kind::Bool
        } else if integers.iter().any(|t| value_type == *t) {
            Kind::Integer
        } else if value_type == TypeId::of::<f64>() || value_type == TypeId::of::<f32>() {
            Kind::Float
        } else {
            Kind::Text
        };
        let multiple = arg.get_value_delimiter().is_some()
            || matches!(arg.get_action(), ArgAction::Append)
            || arg.get_num_args().is_some_and(|n| n.max_values() > 1);
        Some(Setting {
            id: arg.get_id().to_string(),
            key: long.replace('-', "_"),
            flag: format!("--{long}"),
            env: env.to_owned(),
            secret: arg.is_hide_env_values_set(),
            kind,
            multiple,
            arg: arg.clone(),
        })
    }

    /// What the file must give for this setting.
    pub(super) fn expected(&self) -> &'static str {
        match (self.kind, self.multiple) {
            (Kind::Bool, _) => "a boolean (true or false, without quotes)",
            (Kind::Integer, _) => "an integer (without quotes)",
            (Kind::Float, _) => "a number (without quotes)",
            (Kind::Text, true) => "a string or an array of strings",
            (Kind::Text, false) => "a string",
        }
    }

    /// What the setting accepts, when its parser's own message does not say.
    pub(super) fn allowed(&self) -> Option<String> {
        if self.kind == Kind::Bool {
            return Some("true or false".to_owned());
        }
        let possible: Vec<String> = self
            .arg
            .get_possible_values()
            .iter()
            .filter(|value| !value.is_hide_set())
            .map(|value| value.get_name().to_owned())
            .collect();
        if !possible.is_empty() {
            return Some(format!("one of {}", possible.join(", ")));
        }
        if self.arg.get_value_parser().type_id() == TypeId::of::<SocketAddr>() {
            return Some(
                "an IP address and a port, e.g. 127.0.0.1:3000, 0.0.0.0:3000 or [::1]:3000 \
                 (port 0 picks a free port)"
                    .to_owned(),
            );
        }
        None
    }

    /// The values as they may be shown, quoted.
    pub(super) fn shown(&self, values: &[String]) -> String {
        let shown: Vec<String> = values
            .iter()
            .map(|v| {
                let v = if self.secret { redact(v) } else { v.clone() };
                format!("{v:?}")
            })
            .collect();
        match shown.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        }
    }

    /// Runs the argument's own value parser on `values`, as if given by the flag.
    pub(super) fn check(&self, values: &[String]) -> Result<(), String> {
        // A fresh argument with only the parser: the original's environment
        // variable, relations to other arguments and requiredness have no place in
        // this one-argument command.
        let mut probe = Arg::new(self.id.clone())
            .long(self.flag.trim_start_matches('-').to_owned())
            .value_parser(self.arg.get_value_parser().clone())
            .action(if self.multiple {
                ArgAction::Append
            } else {
                ArgAction::Set
            });
        let flags: Vec<String> = match self.arg.get_value_delimiter() {
            Some(delimiter) => {
                probe = probe.value_delimiter(delimiter);
                vec![format!(
                    "{}={}",
                    self.flag,
                    values.join(&delimiter.to_string())
                )]
            }
            None => values
                .iter()
                .map(|v| format!("{}={v}", self.flag))
                .collect(),
        };
        Command::new("auditlog")
            .no_binary_name(true)
            .arg(probe)
            .try_get_matches_from(flags)
            .map(drop)
            .map_err(|err| self.reason(&err))
    }

    /// Why clap refused a value, without repeating the value (it may be a secret),
    /// followed by what is allowed.
    pub(super) fn reason(&self, err: &clap::Error) -> String {
        let cause = std::error::Error::source(err).map(ToString::to_string);
        match (cause, self.allowed()) {
            (Some(cause), Some(allowed)) => format!("{cause}; allowed: {allowed}"),
            (Some(cause), None) => cause,
            (None, Some(allowed)) => format!("it must be {allowed}"),
            (None, None) => "it is not accepted".to_owned(),
        }
    }
}

/// Every setting of the command tree: what the file may hold.
#[derive(Debug, Clone, Default)]
pub(super) struct Catalogue {
    /// Settings of the root command itself.
    pub(super) root: Vec<Setting>,
    /// Each subcommand that has settings, in definition order, with them.
    pub(super) commands: Vec<(String, Vec<Setting>)>,
}

impl Catalogue {
    pub(super) fn of(command: &Command) -> Catalogue {
        let root = command.get_arguments().filter_map(Setting::of).collect();
        let commands = command
            .get_subcommands()
            .filter_map(|sub| {
                let settings: Vec<Setting> = sub.get_arguments().filter_map(Setting::of).collect();
                (!settings.is_empty()).then(|| (sub.get_name().to_owned(), settings))
            })
            .collect();
        Catalogue { root, commands }
    }

    pub(super) fn command(&self, name: &str) -> Option<&[Setting]> {
        self.commands
            .iter()
            .find(|(command, _)| command == name)
            .map(|(_, settings)| settings.as_slice())
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &Setting> {
        self.root
            .iter()
            .chain(self.commands.iter().flat_map(|(_, settings)| settings))
    }

    /// Every setting with this file key (the same key in several commands).
    pub(super) fn with_key<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Setting> {
        self.all().filter(move |setting| setting.key == key)
    }

    pub(super) fn by_flag(&self, flag: &str) -> Option<&Setting> {
        self.all().find(|setting| setting.flag == flag)
    }

    /// The top-level keys, sorted.
    pub(super) fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.all().map(|s| s.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The commands that have the setting `key`.
    pub(super) fn commands_with(&self, key: &str) -> Vec<&str> {
        self.commands
            .iter()
            .filter(|(_, settings)| settings.iter().any(|s| s.key == key))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}
