//! Reading the TOML file: syntax, known keys (with a suggestion for a typo), the
//! type each setting needs, and each value through its argument's own parser;
//! every problem is reported with its line.

use std::collections::HashMap;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

use super::catalogue::{Catalogue, Kind, Setting};
use super::{ConfigError, NamedBy, Problem};

/// A value from the file, ready to be an argument's default.
#[derive(Debug, Clone)]
pub(super) struct FileValue {
    pub(super) values: Vec<String>,
    pub(super) line: usize,
    /// `store_url` or `[up] store_url`, to say where it came from.
    pub(super) key_path: String,
}

/// The config file, checked against the catalogue.
#[derive(Debug, Clone)]
pub(super) struct ConfigFile {
    pub(super) path: PathBuf,
    pub(super) named_by: NamedBy,
    /// Top-level values by key.
    pub(super) top: HashMap<String, FileValue>,
    /// Each command's table: values by command, then key.
    pub(super) tables: HashMap<String, HashMap<String, FileValue>>,
    /// The `[[sinks]]` tables, in file order.
    pub(super) sinks: Vec<FileSink>,
}

/// One `[[sinks]]` table: a log stream the auditor makes or updates at start.
/// Its definition is checked then (by `auditlog-sinks`, as the API's), since
/// its secrets may come from the environment of the auditor only.
#[derive(Debug, Clone)]
pub struct FileSink {
    /// The table as JSON: `name`, `from`, and a definition as `POST /api/sinks`
    /// takes it.
    pub table: serde_json::Value,
    /// Its `name`, as written (checked at start).
    pub name: String,
    /// The line of its `[[sinks]]` header.
    pub line: usize,
}

impl ConfigFile {
    pub(super) fn read(
        path: PathBuf,
        named_by: NamedBy,
        catalogue: &Catalogue,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(&path).map_err(|cause| ConfigError::Unreadable {
            path: path.display().to_string(),
            named_by,
            cause,
        })?;
        let (top, tables, sinks) =
            parse_file(&text, catalogue).map_err(|problems| ConfigError::File {
                path: path.display().to_string(),
                problems,
            })?;
        Ok(ConfigFile {
            path,
            named_by,
            top,
            tables,
            sinks,
        })
    }

    /// The value for `key` in `command`: its table's, else the top level's.
    pub(super) fn value_for(&self, command: &str, key: &str) -> Option<&FileValue> {
        self.tables
            .get(command)
            .and_then(|table| table.get(key))
            .or_else(|| self.top.get(key))
    }
}

pub(super) type Values = HashMap<String, FileValue>;

/// What a file holds: top-level values, each command's table, the sinks.
pub(super) type Parsed = (Values, HashMap<String, Values>, Vec<FileSink>);

/// Checks a config file's text: TOML syntax, known keys, types, and each value
/// with its argument's parser. Gives every problem found, in line order.
pub(super) fn parse_file(text: &str, catalogue: &Catalogue) -> Result<Parsed, Vec<Problem>> {
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
    let mut sinks = Vec::new();
    for (key, value) in document.get_ref() {
        let line = line_and_column(text, key.span().start).0;
        let name: &str = key.get_ref();
        // `[[sinks]]` (an array of tables) are log streams; `[sinks]` (one table)
        // would be the settings of `auditlog sinks`, below.
        if name == SINKS
            && let DeValue::Array(items) = value.get_ref()
        {
            read_sinks(text, items, &mut sinks, &mut problems);
            continue;
        }
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
        Ok((top, tables, sinks))
    } else {
        problems.sort_by_key(|p| p.line);
        Err(problems)
    }
}

/// The key of the log streams' tables.
const SINKS: &str = "sinks";

/// Reads the `[[sinks]]` tables `items` into `sinks`: each a table with a
/// string `name` no other has; what is wrong goes to `problems`.
fn read_sinks(
    text: &str,
    items: &toml::de::DeArray<'_>,
    sinks: &mut Vec<FileSink>,
    problems: &mut Vec<Problem>,
) {
    for item in items {
        let line = line_and_column(text, item.span().start).0;
        let DeValue::Table(table) = item.get_ref() else {
            problems.push(Problem {
                line,
                message: format!(
                    "each of `sinks` is a [[sinks]] table, not {}",
                    a_type(item.get_ref())
                ),
            });
            continue;
        };
        let table = json_of(&DeValue::Table(table.clone()));
        let name = match table.get("name").and_then(serde_json::Value::as_str) {
            Some(name) => name.to_owned(),
            None => {
                problems.push(Problem {
                    line,
                    message: "a [[sinks]] table needs `name`, a string".into(),
                });
                continue;
            }
        };
        if sinks.iter().any(|sink| sink.name == name) {
            problems.push(Problem {
                line,
                message: format!("a second [[sinks]] table named `{name}`"),
            });
            continue;
        }
        sinks.push(FileSink { table, name, line });
    }
}

/// A TOML value as JSON (a date-time as its text).
fn json_of(value: &DeValue<'_>) -> serde_json::Value {
    use serde_json::Value;
    match value {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map_or_else(|_| Value::String(i.as_str().to_owned()), Value::from),
        DeValue::Float(f) => f
            .as_str()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(f.as_str().to_owned()), Value::Number),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(items.iter().map(|i| json_of(i.get_ref())).collect()),
        DeValue::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, value)| (key.get_ref().to_string(), json_of(value.get_ref())))
                .collect(),
        ),
    }
}

/// A TOML value as the argument values of `settings` (the same key in one or more
/// commands), checked by their parsers.
pub(super) fn file_value(
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
pub(super) fn scalar(kind: Kind, value: &DeValue<'_>) -> Option<String> {
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

pub(super) fn a_type(value: &DeValue<'_>) -> String {
    let name = value.type_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

pub(super) fn unknown_at_top(catalogue: &Catalogue, key: &str) -> String {
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

pub(super) fn unknown_in_table(
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
pub(super) fn did_you_mean<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|candidate| (strsim::jaro_winkler(key, candidate), candidate))
        .filter(|(similarity, _)| *similarity > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, nearest)| format!(" (did you mean `{nearest}`?)"))
        .unwrap_or_default()
}

/// 1-based line and column of a byte offset.
pub(super) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn catalogue() -> Catalogue {
        use clap::CommandFactory;
        Catalogue::of(&crate::Cli::command())
    }

    fn problems(text: &str) -> Vec<Problem> {
        parse_file(text, &catalogue()).unwrap_err()
    }

    #[test]
    fn a_command_table_and_the_top_level_are_both_read() {
        let (top, tables, _) = parse_file(
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
        let (top, _, _) = parse_file(
            "web_origin = [\"http://a.example\", \"http://b.example\"]\n",
            &catalogue(),
        )
        .unwrap();
        assert_eq!(
            top["web_origin"].values,
            ["http://a.example", "http://b.example"]
        );
        let (top, _, _) = parse_file("web_origin = \"http://a.example\"\n", &catalogue()).unwrap();
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
    fn sinks_tables_are_read_as_json_and_the_sinks_table_stays_the_commands() {
        let (_, tables, sinks) = parse_file(
            "[[sinks]]\nname = \"siem\"\nkind = \"syslog\"\naddress = \"h:6514\"\n\
             tls = true\nbatchSize = 100\n[sinks.filter]\nactions = [\"deleted\"]\n\
             [[sinks]]\nname = \"files\"\nkind = \"files\"\ndirectory = \"/x\"\n",
            &catalogue(),
        )
        .unwrap();
        assert!(!tables.contains_key("sinks"));
        assert_eq!(sinks.len(), 2);
        assert_eq!((sinks[0].name.as_str(), sinks[0].line), ("siem", 1));
        assert_eq!(
            sinks[0].table,
            serde_json::json!({"name": "siem", "kind": "syslog", "address": "h:6514",
                "tls": true, "batchSize": 100, "filter": {"actions": ["deleted"]}})
        );
        assert_eq!(sinks[1].line, 9);
    }

    #[test]
    fn a_sink_without_a_name_or_with_a_taken_one_is_a_problem() {
        let found = problems(
            "[[sinks]]\nkind = \"files\"\n[[sinks]]\nname = \"a\"\n[[sinks]]\nname = \"a\"\n",
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].message.contains("needs `name`"), "{found:?}");
        assert_eq!(found[1].line, 5, "{found:?}");
        assert!(found[1].message.contains("second"), "{found:?}");
    }

    #[test]
    fn a_syntax_error_gives_its_line() {
        let found = problems("api_addr = \"127.0.0.1:3000\"\nweb_addr = \n");
        assert_eq!(found[0].line, 2, "{found:?}");
        assert!(found[0].message.contains("not valid TOML"), "{found:?}");
    }
}
