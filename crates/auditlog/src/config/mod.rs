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
//! `[[sinks]]` tables are not settings but log streams: read here (as JSON, with
//! their lines), checked and applied by the auditor when it starts.
//!
//! Secrets (arguments with `hide_env_values`) are shown redacted wherever this module
//! prints them: errors, `auditlog config`, and `--help` defaults taken from the file.
//!
//! The parts: [`values`] (the value parsers of URLs, and redaction), `catalogue`
//! (which arguments are settings), `file` (reading and checking the TOML file),
//! `layering` (the file's values as clap's defaults, and clap's refusals
//! explained) and `report` (`auditlog config` and `auditlog completions`).

mod catalogue;
mod file;
mod layering;
mod report;
pub mod values;

pub use file::FileSink;
pub use report::{completions, show};
pub use values::{amqp_url, database_url, positive_seconds, redact};

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgMatches, Args, Command, CommandFactory, FromArgMatches};

use catalogue::Catalogue;
use file::ConfigFile;
use layering::{explain, with_config_targets, with_file_defaults};

/// The id of the global `--config` argument. It names the file, so it is not a
/// setting the file could hold.
pub const CONFIG_ARG: &str = "config_file";
const CONFIG_FLAG: &str = "--config";
const CONFIG_ENV: &str = "AUDITLOG_CONFIG";
const ENV_PREFIX: &str = "AUDITLOG_";
/// The subcommand that prints settings; its targets are added by [`parse`].
const CONFIG_COMMAND: &str = "config";

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

impl Settings {
    /// The config file's `[[sinks]]` tables, with the file's path (empty without
    /// a file).
    pub fn sinks(&self) -> (String, Vec<FileSink>) {
        match &self.file {
            Some(file) => (file.path.display().to_string(), file.sinks.clone()),
            None => (String::new(), Vec::new()),
        }
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

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
