//! Where the process's log lines go and in which shape. They go to standard error:
//! human-readable on a terminal, one JSON object per line otherwise (a service
//! manager or log shipper reads them), or as `AUDITLOG_LOG_FORMAT` says. Which
//! lines are written is `AUDITLOG_LOG`'s filter (tracing's `EnvFilter` syntax).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The variable that picks the shape of log lines.
pub const FORMAT_VAR: &str = "AUDITLOG_LOG_FORMAT";
/// The variable holding the filter of log lines, e.g. `debug,sqlx=warn`.
pub const FILTER_VAR: &str = "AUDITLOG_LOG";
/// The filter when `AUDITLOG_LOG` is not set: the broker client's channel chatter
/// and sqlx's statement lines would drown everything else.
const DEFAULT_FILTER: &str = "info,sqlx=warn,lapin::channel=off";

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Aligned text with colours, for a person at a terminal.
    Human,
    /// One JSON object per line, for machines.
    Json,
}

/// A logging setting that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoggingError {
    #[error(
        "{FORMAT_VAR} is `{0}`; use `human` or `json` (or leave it unset: human on a terminal, json otherwise)"
    )]
    UnknownFormat(String),
    #[error("{FORMAT_VAR} is not valid UTF-8; use `human` or `json`")]
    FormatNotUnicode,
    #[error(
        "{FILTER_VAR} `{filter}` is not a log filter ({reason}); e.g. `info` or `debug,sqlx=warn`"
    )]
    BadFilter { filter: String, reason: String },
}

impl LogFormat {
    /// The format `AUDITLOG_LOG_FORMAT` names (`None` when unset), or by default
    /// human when standard error is a terminal and JSON otherwise.
    fn choose(setting: Option<&str>, stderr_is_terminal: bool) -> Result<Self, LoggingError> {
        match setting.map(str::trim) {
            None | Some("") if stderr_is_terminal => Ok(LogFormat::Human),
            None | Some("") => Ok(LogFormat::Json),
            Some(text) if text.eq_ignore_ascii_case("human") => Ok(LogFormat::Human),
            Some(text) if text.eq_ignore_ascii_case("json") => Ok(LogFormat::Json),
            Some(other) => Err(LoggingError::UnknownFormat(other.to_owned())),
        }
    }
}

/// The filter `AUDITLOG_LOG` holds (`None` when unset), or the default one.
fn filter(setting: Option<&str>) -> Result<EnvFilter, LoggingError> {
    match setting {
        None => Ok(EnvFilter::new(DEFAULT_FILTER)),
        Some(text) => EnvFilter::try_new(text).map_err(|e| LoggingError::BadFilter {
            filter: text.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Installs the process's log subscriber as the environment says; an unusable
/// setting is an error naming the variable and what it accepts.
pub fn init() -> Result<(), LoggingError> {
    let format_setting = match std::env::var_os(FORMAT_VAR) {
        None => None,
        Some(value) => Some(
            value
                .into_string()
                .map_err(|_| LoggingError::FormatNotUnicode)?,
        ),
    };
    let stderr_is_terminal = std::io::stderr().is_terminal();
    let format = LogFormat::choose(format_setting.as_deref(), stderr_is_terminal)?;
    // A filter that is not UTF-8 cannot be a valid one either.
    let filter_setting = std::env::var_os(FILTER_VAR).map(|v| v.to_string_lossy().into_owned());
    let filter = filter(filter_setting.as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colours only where a terminal shows them, not as escape codes in a file.
        LogFormat::Human => builder.with_ansi(stderr_is_terminal).init(),
        // Fields at the top level next to `message`; the span (with its
        // `request_id`) under `span`.
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_the_format_follows_the_terminal() {
        assert_eq!(LogFormat::choose(None, true), Ok(LogFormat::Human));
        assert_eq!(LogFormat::choose(None, false), Ok(LogFormat::Json));
        assert_eq!(LogFormat::choose(Some(""), false), Ok(LogFormat::Json));
    }

    #[test]
    fn a_set_format_wins_over_the_terminal() {
        assert_eq!(LogFormat::choose(Some("json"), true), Ok(LogFormat::Json));
        assert_eq!(
            LogFormat::choose(Some("HUMAN"), false),
            Ok(LogFormat::Human)
        );
    }

    #[test]
    fn an_unknown_format_is_an_error_naming_the_variable_and_the_choices() {
        let err = LogFormat::choose(Some("xml"), true).unwrap_err();
        let message = err.to_string();
        for expected in ["AUDITLOG_LOG_FORMAT", "`xml`", "`human`", "`json`"] {
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn a_filter_that_does_not_parse_is_an_error_naming_the_variable() {
        assert!(filter(None).is_ok());
        assert!(filter(Some("debug,sqlx=warn")).is_ok());
        let message = filter(Some("info,sqlx=loud")).unwrap_err().to_string();
        assert!(message.contains("AUDITLOG_LOG"), "{message}");
    }
}
