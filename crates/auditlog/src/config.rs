//! Settings: built-in defaults, then an optional TOML file (`--config FILE` or
//! `AUDITLOG_CONFIG`), then `AUDITLOG_*` environment variables, then flags.
//!
//! A *setting* is any argument with an `AUDITLOG_*` environment variable: what the
//! environment can set, the file can set, under the long flag's name with
//! underscores (`--store-url` is `store_url`). Top-level keys apply to every command
//! that has the setting; a `[up]`, `[api]`, … table applies to that command only and
//! wins over the top level. The file is read before clap parses, each value is
//! checked by its argument's own value parser, and the values become the arguments'
//! defaults: clap's environment-over-default and flag-over-environment order then
//! applies on top, and one parser judges file, environment and flag alike.
//!
//! Secrets (arguments with `hide_env_values`) are shown redacted wherever this module
//! prints them: errors, `auditlog config`, and `--help` defaults taken from the file.

use std::any::TypeId;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, CommandFactory, FromArgMatches};
use serde::Serialize;
use toml::de::{DeTable, DeValue};

/// The id of the global `--config` argument. It names the file, so it is not a
/// setting the file could hold.
pub const CONFIG_ARG: &str = "config_file";
const CONFIG_FLAG: &str = "--config";
const CONFIG_ENV: &str = "AUDITLOG_CONFIG";
const ENV_PREFIX: &str = "AUDITLOG_";
/// The subcommand that prints settings; its targets are added by [`parse`].
const CONFIG_COMMAND: &str = "config";

/// Database URL schemes the audit store and the primary API's database accept.
const DATABASE_SCHEMES: [&str; 5] = ["sqlite", "postgres", "postgresql", "mysql", "mariadb"];

/// `auditlog config COMMAND`: one target per command that has settings is added at
/// run time from the command tree, so there is nothing to hold here.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to print the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// A clap value parser for database URLs: the scheme must name a backend.
/// Its messages never repeat the URL, which may hold a password.
pub fn database_url(value: &str) -> Result<String, String> {
    let allowed = "use sqlite://PATH, postgres://USER:PASSWORD@HOST/DB, postgresql://…, \
                   mysql://USER:PASSWORD@HOST/DB or mariadb://…";
    let Some(scheme) = scheme_of(value) else {
        return Err(format!("it does not start with a scheme; {allowed}"));
    };
    if !DATABASE_SCHEMES.contains(&scheme) {
        return Err(format!("`{scheme}` is not a supported database; {allowed}"));
    }
    if scheme != "sqlite" && !value.contains("://") {
        return Err(format!("`{scheme}:` must be followed by //HOST; {allowed}"));
    }
    Ok(value.to_owned())
}

/// A clap value parser for RabbitMQ URLs: only plain `amqp://` is built in.
pub fn amqp_url(value: &str) -> Result<String, String> {
    let example =
        "amqp://USER:PASSWORD@HOST:5672/VHOST, e.g. amqp://guest:guest@127.0.0.1:5672/%2f";
    match scheme_of(value) {
        Some("amqp") if value.starts_with("amqp://") => Ok(value.to_owned()),
        Some("amqps") => Err(format!(
            "amqps:// (TLS) is not built in; use {example} (behind a TLS tunnel if needed)"
        )),
        Some(scheme) => Err(format!("`{scheme}` is not an AMQP URL; use {example}")),
        None => Err(format!("it does not start with amqp://; use {example}")),
    }
}

/// The scheme of a URL, if it has a well-formed one (so that it is safe to show).
fn scheme_of(value: &str) -> Option<&str> {
    let (scheme, _) = value.split_once(':')?;
    let mut chars = scheme.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    well_formed.then_some(scheme)
}

/// A secret as it may be shown: a URL keeps everything but its password
/// ([`auditlog_event::redact_url`]); anything else is hidden whole.
pub fn redact(value: &str) -> String {
    if value.is_empty() || value.starts_with("sqlite:") || value.contains("://") {
        auditlog_event::redact_url(value)
    } else {
        "***".to_owned()
    }
}

/// Why the command line or the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` or `AUDITLOG_CONFIG` cannot be read.
    #[error("cannot read the config file {path} (named by {named_by}): {cause}")]
    Unreadable {
        path: String,
        named_by: NamedBy,
        cause: std::io::Error,
    },
    /// The file is not TOML, or holds unknown keys, wrong types or invalid values.
    #[error("{}", render_problems(path, problems))]
    File {
        path: String,
        problems: Vec<Problem>,
    },
    /// A flag or environment variable holds a value its setting does not accept.
    #[error(transparent)]
    Value(Box<InvalidValue>),
    /// What clap reports itself: usage errors, but also `--help` and `--version`.
    #[error(transparent)]
    Clap(#[from] clap::Error),
}

impl ConfigError {
    /// Prints the error (help and version to standard output, like clap) and gives
    /// the exit code: 2 for a usage or configuration error, as clap does.
    pub fn report(&self) -> ExitCode {
        match self {
            ConfigError::Clap(err) => {
                let _ = err.print();
                ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2))
            }
            other => {
                eprintln!("error: {other}");
                ExitCode::from(2)
            }
        }
    }
}

/// A setting's value refused on the command line or in the environment.
#[derive(Debug, thiserror::Error)]
#[error("invalid value {value} for {flag} {given_by}: {reason} ({also})")]
pub struct InvalidValue {
    /// The value, quoted and redacted if the setting is a secret.
    value: String,
    flag: String,
    /// "given by the flag …" or "from the environment variable …".
    given_by: String,
    reason: String,
    /// The other ways to give the same setting.
    also: String,
}

/// One thing wrong in the config file, at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

fn render_problems(path: &str, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{path}:{}: {}", p.line, p.message))
        .collect();
    match lines.as_slice() {
        [one] => one.clone(),
        many => format!(
            "the config file has {} problems:\n  {}",
            many.len(),
            many.join("\n  ")
        ),
    }
}

/// Which of the two ways named the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedBy {
    Flag,
    Env,
}

impl fmt::Display for NamedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NamedBy::Flag => CONFIG_FLAG,
            NamedBy::Env => CONFIG_ENV,
        })
    }
}

/// The parsed command line, and what `auditlog config` and `auditlog completions`
/// need to answer.
pub struct Settings {
    command: Command,
    matches: ArgMatches,
    catalogue: Catalogue,
    file: Option<ConfigFile>,
}

/// Reads the config file named on the command line or in `AUDITLOG_CONFIG`, makes
/// its values the defaults of the arguments they set, and parses the command line.
pub fn parse<C: CommandFactory + FromArgMatches>() -> Result<(C, Settings), ConfigError> {
    parse_from(std::env::args_os().collect())
}

fn parse_from<C: CommandFactory + FromArgMatches>(
    argv: Vec<OsString>,
) -> Result<(C, Settings), ConfigError> {
    let command = C::command();
    let catalogue = Catalogue::of(&command);
    let file = match config_path(&argv) {
        Some((path, named_by)) => Some(ConfigFile::read(path, named_by, &catalogue)?),
        None => None,
    };
    let command = match &file {
        Some(file) => with_file_defaults(command, &catalogue, file),
        None => command,
    };
    let mut command = with_config_targets(command, &catalogue);
    let matches = command
        .try_get_matches_from_mut(&argv)
        .map_err(|err| explain(err, &catalogue, &argv))?;
    let cli = C::from_arg_matches(&matches)?;
    Ok((
        cli,
        Settings {
            command,
            matches,
            catalogue,
            file,
        },
    ))
}

/// The config file's path: `--config FILE` or `--config=FILE` anywhere before `--`,
/// else `AUDITLOG_CONFIG`. Read before clap parses, since its values become
/// defaults clap needs to know.
fn config_path(argv: &[OsString]) -> Option<(PathBuf, NamedBy)> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == CONFIG_FLAG {
            return args.next().map(|path| (PathBuf::from(path), NamedBy::Flag));
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some((PathBuf::from(path), NamedBy::Flag));
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|path| !path.is_empty())
        .map(|path| (PathBuf::from(path), NamedBy::Env))
}

/// What a setting's value is, as far as the file's types go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Integer,
    Float,
    Text,
}

/// An argument that is a setting: it has an `AUDITLOG_*` environment variable.
#[derive(Debug, Clone)]
struct Setting {
    /// The clap argument id.
    id: String,
    /// The config file key: the long flag with underscores.
    key: String,
    /// `--the-flag`.
    flag: String,
    env: String,
    /// Shown redacted (the argument hides its environment value in `--help`).
    secret: bool,
    kind: Kind,
    /// Takes several values (a TOML array, or one string split at the delimiter).
    multiple: bool,
    /// The argument as defined, to run its own value parser on file values.
    arg: Arg,
}

impl Setting {
    fn of(arg: &Arg) -> Option<Setting> {
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
    fn expected(&self) -> &'static str {
        match (self.kind, self.multiple) {
            (Kind::Bool, _) => "a boolean (true or false, without quotes)",
            (Kind::Integer, _) => "an integer (without quotes)",
            (Kind::Float, _) => "a number (without quotes)",
            (Kind::Text, true) => "a string or an array of strings",
            (Kind::Text, false) => "a string",
        }
    }

    /// What the setting accepts, when its parser's own message does not say.
    fn allowed(&self) -> Option<String> {
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
    fn shown(&self, values: &[String]) -> String {
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
    fn check(&self, values: &[String]) -> Result<(), String> {
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
    fn reason(&self, err: &clap::Error) -> String {
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
struct Catalogue {
    /// Settings of the root command itself.
    root: Vec<Setting>,
    /// Each subcommand that has settings, in definition order, with them.
    commands: Vec<(String, Vec<Setting>)>,
}

impl Catalogue {
    fn of(command: &Command) -> Catalogue {
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

    fn command(&self, name: &str) -> Option<&[Setting]> {
        self.commands
            .iter()
            .find(|(command, _)| command == name)
            .map(|(_, settings)| settings.as_slice())
    }

    fn all(&self) -> impl Iterator<Item = &Setting> {
        self.root
            .iter()
            .chain(self.commands.iter().flat_map(|(_, settings)| settings))
    }

    /// Every setting with this file key (the same key in several commands).
    fn with_key<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Setting> {
        self.all().filter(move |setting| setting.key == key)
    }

    fn by_flag(&self, flag: &str) -> Option<&Setting> {
        self.all().find(|setting| setting.flag == flag)
    }

    /// The top-level keys, sorted.
    fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.all().map(|s| s.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The commands that have the setting `key`.
    fn commands_with(&self, key: &str) -> Vec<&str> {
        self.commands
            .iter()
            .filter(|(_, settings)| settings.iter().any(|s| s.key == key))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// A value from the file, ready to be an argument's default.
#[derive(Debug, Clone)]
struct FileValue {
    values: Vec<String>,
    line: usize,
    /// `store_url` or `[up] store_url`, to say where it came from.
    key_path: String,
}

/// The config file, checked against the catalogue.
#[derive(Debug, Clone)]
struct ConfigFile {
    path: PathBuf,
    named_by: NamedBy,
    /// Top-level values by key.
    top: HashMap<String, FileValue>,
    /// Each command's table: values by command, then key.
    tables: HashMap<String, HashMap<String, FileValue>>,
}

impl ConfigFile {
    fn read(path: PathBuf, named_by: NamedBy, catalogue: &Catalogue) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(&path).map_err(|cause| ConfigError::Unreadable {
            path: path.display().to_string(),
            named_by,
            cause,
        })?;
        let (top, tables) = parse_file(&text, catalogue).map_err(|problems| ConfigError::File {
            path: path.display().to_string(),
            problems,
        })?;
        Ok(ConfigFile {
            path,
            named_by,
            top,
            tables,
        })
    }

    /// The value for `key` in `command`: its table's, else the top level's.
    fn value_for(&self, command: &str, key: &str) -> Option<&FileValue> {
        self.tables
            .get(command)
            .and_then(|table| table.get(key))
            .or_else(|| self.top.get(key))
    }
}

type Values = HashMap<String, FileValue>;

/// Checks a config file's text: TOML syntax, known keys, types, and each value
/// with its argument's parser. Gives every problem found, in line order.
fn parse_file(
    text: &str,
    catalogue: &Catalogue,
) -> Result<(Values, HashMap<String, Values>), Vec<Problem>> {
    let document = DeTable::parse(text).map_err(|err| {
        let (line, column) = err
            .span()
            .map_or((1, 1), |span| line_and_column(text, span.start));
        vec![Problem {
            line,
            message: format!("column {column}: not valid TOML: {}", err.message().trim()),
        }]
    })?;
    let mut problems = Vec::new();
    let mut top = Values::new();
    let mut tables = HashMap::new();
    for (key, value) in document.get_ref() {
        let line = line_and_column(text, key.span().start).0;
        let name: &str = key.get_ref();
        if let Some(settings) = catalogue.command(name) {
            let DeValue::Table(table) = value.get_ref() else {
                problems.push(Problem {
                    line,
                    message: format!(
                        "`{name}` holds the settings of `auditlog {name}`: write a [{name}] \
                         table, not a {}",
                        value.get_ref().type_str()
                    ),
                });
                continue;
            };
            let mut values = Values::new();
            for (key, value) in table {
                let line = line_and_column(text, key.span().start).0;
                let key: &str = key.get_ref();
                let key_path = format!("[{name}] {key}");
                match settings.iter().find(|s| s.key == key) {
                    Some(setting) => {
                        match file_value(&[setting], value.get_ref(), line, key_path) {
                            Ok(value) => {
                                values.insert(key.to_owned(), value);
                            }
                            Err(problem) => problems.push(problem),
                        }
                    }
                    None => problems.push(Problem {
                        line,
                        message: unknown_in_table(catalogue, name, settings, key),
                    }),
                }
            }
            tables.insert(name.to_owned(), values);
        } else if catalogue.with_key(name).next().is_some() {
            let settings: Vec<&Setting> = catalogue.with_key(name).collect();
            match file_value(&settings, value.get_ref(), line, name.to_owned()) {
                Ok(value) => {
                    top.insert(name.to_owned(), value);
                }
                Err(problem) => problems.push(problem),
            }
        } else {
            problems.push(Problem {
                line,
                message: unknown_at_top(catalogue, name),
            });
        }
    }
    if problems.is_empty() {
        Ok((top, tables))
    } else {
        problems.sort_by_key(|p| p.line);
        Err(problems)
    }
}

/// A TOML value as the argument values of `settings` (the same key in one or more
/// commands), checked by their parsers.
fn file_value(
    settings: &[&Setting],
    value: &DeValue<'_>,
    line: usize,
    key_path: String,
) -> Result<FileValue, Problem> {
    let Some(first) = settings.first() else {
        return Err(Problem {
            line,
            message: format!("`{key_path}` is not a setting"),
        });
    };
    let values = match value {
        DeValue::Array(items) if first.multiple => items
            .iter()
            .map(|item| scalar(first.kind, item.get_ref()))
            .collect::<Option<Vec<String>>>(),
        other => scalar(first.kind, other).map(|value| vec![value]),
    };
    let Some(values) = values else {
        return Err(Problem {
            line,
            message: format!(
                "`{key_path}` must be {}, not {} (the setting of {} and {})",
                first.expected(),
                a_type(value),
                first.flag,
                first.env
            ),
        });
    };
    for setting in settings {
        if let Err(reason) = setting.check(&values) {
            return Err(Problem {
                line,
                message: format!(
                    "invalid value {} for `{key_path}`: {reason} (the setting of {} and {})",
                    setting.shown(&values),
                    setting.flag,
                    setting.env
                ),
            });
        }
    }
    Ok(FileValue {
        values,
        line,
        key_path,
    })
}

/// One TOML value as argument text, if its type is right for `kind`.
fn scalar(kind: Kind, value: &DeValue<'_>) -> Option<String> {
    match (kind, value) {
        (Kind::Bool, DeValue::Boolean(b)) => Some(b.to_string()),
        (Kind::Integer | Kind::Float, DeValue::Integer(i)) => {
            i128::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n.to_string())
        }
        (Kind::Float, DeValue::Float(f)) => Some(f.as_str().to_owned()),
        (Kind::Text, DeValue::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

fn a_type(value: &DeValue<'_>) -> String {
    let name = value.type_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

fn unknown_at_top(catalogue: &Catalogue, key: &str) -> String {
    let keys = catalogue.keys();
    let tables: Vec<&str> = catalogue
        .commands
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    let candidates = keys.iter().chain(&tables).copied();
    let tables: Vec<String> = tables.iter().map(|t| format!("[{t}]")).collect();
    format!(
        "unknown key `{key}`{}; the known keys are {}, and the tables {}",
        did_you_mean(key, candidates),
        keys.join(", "),
        tables.join(", ")
    )
}

fn unknown_in_table(
    catalogue: &Catalogue,
    command: &str,
    settings: &[Setting],
    key: &str,
) -> String {
    let accepted: Vec<&str> = settings.iter().map(|s| s.key.as_str()).collect();
    let elsewhere = catalogue.commands_with(key);
    if elsewhere.is_empty() {
        format!(
            "unknown key `{key}` in [{command}]{}; [{command}] accepts {}",
            did_you_mean(key, accepted.iter().copied()),
            accepted.join(", ")
        )
    } else {
        format!(
            "`{key}` is not a setting of `auditlog {command}` (it is one of {}); \
             [{command}] accepts {}",
            elsewhere.join(", "),
            accepted.join(", ")
        )
    }
}

/// " (did you mean `x`?)" for the nearest candidate, if one is near.
fn did_you_mean<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|candidate| (strsim::jaro_winkler(key, candidate), candidate))
        .filter(|(similarity, _)| *similarity > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, nearest)| format!(" (did you mean `{nearest}`?)"))
        .unwrap_or_default()
}

/// 1-based line and column of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The file's values as the defaults of the arguments they set, a command's table
/// before the top level. Secrets' defaults are hidden from `--help`.
fn with_file_defaults(mut command: Command, catalogue: &Catalogue, file: &ConfigFile) -> Command {
    fn inject(arg: Arg, value: &FileValue, secret: bool) -> Arg {
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
fn with_config_targets(command: Command, catalogue: &Catalogue) -> Command {
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
fn explain(err: clap::Error, catalogue: &Catalogue, argv: &[OsString]) -> ConfigError {
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

/// Where a setting's effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
enum Source {
    Default,
    File,
    Env,
    Flag,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    command: String,
    config_file: Option<ReportFile>,
    /// By file key, in key order.
    settings: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportFile {
    path: String,
    named_by: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Effective {
    /// Redacted if secret; `null` when unset.
    value: serde_json::Value,
    source: Source,
    /// The flag, environment variable or `FILE:LINE [table] key` that set it.
    from: Option<String>,
    flag: String,
    env: String,
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
fn json_value(setting: &Setting, values: Option<&[String]>) -> serde_json::Value {
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
fn toml_value(setting: &Setting, values: &[String]) -> serde_json::Result<String> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn catalogue() -> Catalogue {
        Catalogue::of(&crate::Cli::command())
    }

    fn problems(text: &str) -> Vec<Problem> {
        parse_file(text, &catalogue()).unwrap_err()
    }

    #[test]
    fn redact_hides_the_password_of_a_url_only() {
        assert_eq!(
            redact("postgres://bob:secret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("mysql://root@db/x"), "mysql://root@db/x");
        assert_eq!(redact("sqlite://data/a@b.db"), "sqlite://data/a@b.db");
    }

    #[test]
    fn redact_hides_a_password_holding_raw_at_signs_and_slashes() {
        assert_eq!(
            redact("postgres://bob:p@ss/w@rd@db/x"),
            "postgres://bob:***@db/x"
        );
    }

    #[test]
    fn redact_hides_password_query_parameters() {
        assert_eq!(
            redact("postgres://db/x?user=bob&password=secret&sslmode=disable"),
            "postgres://db/x?user=bob&password=***&sslmode=disable"
        );
    }

    #[test]
    fn redact_hides_a_secret_that_is_not_a_url_whole() {
        assert_eq!(redact("eyJhbGciOiJFZERTQSJ9.e30.sig"), "***");
    }

    #[test]
    fn database_urls_are_accepted_by_scheme() {
        for url in [
            "sqlite://data/audit.db",
            "sqlite::memory:",
            "postgres://u:p@h/db",
            "postgresql://h/db",
            "mysql://root@h/db",
            "mariadb://root@h/db",
        ] {
            assert!(database_url(url).is_ok(), "{url}");
        }
        let refused = database_url("mongodb://u:hunter2@h/db").unwrap_err();
        assert!(refused.contains("`mongodb`"), "{refused}");
        assert!(refused.contains("postgres://"), "{refused}");
        assert!(!refused.contains("hunter2"), "{refused}");
        assert!(database_url("postgres:db").is_err());
        assert!(database_url("u:pw@h/db").is_err());
    }

    #[test]
    fn amqp_urls_must_be_plain_amqp() {
        assert!(amqp_url("amqp://guest:guest@127.0.0.1:5672/%2f").is_ok());
        assert!(amqp_url("amqps://h").unwrap_err().contains("TLS"));
        assert!(amqp_url("http://h").unwrap_err().contains("`http`"));
    }

    #[test]
    fn a_command_table_and_the_top_level_are_both_read() {
        let (top, tables) = parse_file(
            "api_addr = \"127.0.0.1:4000\"\n[up]\napi_addr = \"127.0.0.1:5000\"\n",
            &catalogue(),
        )
        .unwrap();
        assert_eq!(top["api_addr"].values, ["127.0.0.1:4000"]);
        assert_eq!(tables["up"]["api_addr"].values, ["127.0.0.1:5000"]);
        assert_eq!(tables["up"]["api_addr"].key_path, "[up] api_addr");
        assert_eq!(tables["up"]["api_addr"].line, 3);
    }

    #[test]
    fn a_list_setting_takes_an_array_or_a_string() {
        let (top, _) = parse_file(
            "web_origin = [\"http://a.example\", \"http://b.example\"]\n",
            &catalogue(),
        )
        .unwrap();
        assert_eq!(
            top["web_origin"].values,
            ["http://a.example", "http://b.example"]
        );
        let (top, _) = parse_file("web_origin = \"http://a.example\"\n", &catalogue()).unwrap();
        assert_eq!(top["web_origin"].values, ["http://a.example"]);
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_known_one() {
        let found = problems("\n\nstor_url = \"sqlite://x.db\"\n");
        assert_eq!(found[0].line, 3);
        assert!(
            found[0].message.contains("did you mean `store_url`?"),
            "{}",
            found[0].message
        );
        assert!(found[0].message.contains("amqp_prefetch"));
    }

    #[test]
    fn a_setting_in_the_table_of_a_command_without_it_says_where_it_belongs() {
        let found = problems("[web]\nstore_url = \"sqlite://x.db\"\n");
        assert_eq!(found[0].line, 2);
        assert!(
            found[0].message.contains("not a setting of `auditlog web`"),
            "{}",
            found[0].message
        );
        assert!(found[0].message.contains("up"), "{}", found[0].message);
    }

    #[test]
    fn wrong_types_name_the_expected_one() {
        let found = problems("dev_tokens = \"no\"\namqp_prefetch = \"64\"\n");
        assert_eq!(found.len(), 2);
        assert!(found[0].message.contains("must be a boolean"), "{found:?}");
        assert!(found[1].message.contains("must be an integer"), "{found:?}");
    }

    #[test]
    fn values_go_through_the_arguments_own_parsers() {
        let found = problems("amqp_prefetch = 0\n[up]\naudit = \"maybe\"\n");
        assert!(found[0].message.contains("amqp_prefetch"), "{found:?}");
        assert!(found[1].message.contains("one of on, off"), "{found:?}");
    }

    #[test]
    fn a_syntax_error_gives_its_line() {
        let found = problems("api_addr = \"127.0.0.1:3000\"\nweb_addr = \n");
        assert_eq!(found[0].line, 2, "{found:?}");
        assert!(found[0].message.contains("not valid TOML"), "{found:?}");
    }

    #[test]
    fn the_config_flag_wins_over_the_environment_and_stops_at_double_dash() {
        let argv = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&argv(&["auditlog", "up", "--config", "a.toml"])),
            Some((PathBuf::from("a.toml"), NamedBy::Flag))
        );
        assert_eq!(
            config_path(&argv(&["auditlog", "--config=b.toml", "up"])),
            Some((PathBuf::from("b.toml"), NamedBy::Flag))
        );
        let after_double_dash = config_path(&argv(&["auditlog", "up", "--", "--config", "c"]));
        assert_ne!(
            after_double_dash.map(|(path, _)| path),
            Some(PathBuf::from("c"))
        );
    }
}
