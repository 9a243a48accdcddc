//! Configuration as an operator meets it, through the real binary: which of default,
//! config file, environment and flag wins, what each refused setting says, that
//! secrets are never printed, shell completions, and examples in every `--help`.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Client, Running, data_dir};
use serde_json::Value;

/// `auditlog ARGS` with only the `AUDITLOG_*` variables given here.
fn auditlog(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(common::binary());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AUDITLOG_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A config file `auditlog.toml` holding `text`, in a directory removed at the end.
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auditlog.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `auditlog config COMMAND --json` as JSON; the run must succeed.
fn effective(args: &[&str], env: &[(&str, &str)]) -> Value {
    let output = auditlog(args, env);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Runs a command that must be refused at start; gives its error message.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = auditlog(args, env);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{args:?} should be refused: {}{}",
        stdout(&output),
        stderr(&output)
    );
    stderr(&output)
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
}

#[test]
fn settings_come_from_default_file_environment_and_flag_in_that_order() {
    let (_dir, file) = config_file(
        "api_addr = \"127.0.0.1:4100\"\n\
         auditor_addr = \"127.0.0.1:4101\"\n\
         web_addr = \"127.0.0.1:4102\"\n\
         amqp_prefetch = 7\n\
         web_origin = [\"https://audit.example.com\", \"https://admin.example.com\"]\n",
    );
    let report = effective(
        &[
            "--config",
            path(&file),
            "config",
            "up",
            "--api-addr",
            "127.0.0.1:4400",
            "--json",
        ],
        &[
            ("AUDITLOG_API_ADDR", "127.0.0.1:4300"),
            ("AUDITLOG_AUDITOR_ADDR", "127.0.0.1:4301"),
        ],
    );
    let settings = &report["settings"];

    assert_eq!(report["command"], "up");
    assert_eq!(report["configFile"]["path"], path(&file));
    assert_eq!(report["configFile"]["namedBy"], "--config");
    assert_eq!(settings["api_addr"]["value"], "127.0.0.1:4400");
    assert_eq!(settings["api_addr"]["source"], "flag");
    assert_eq!(settings["api_addr"]["from"], "--api-addr");
    assert_eq!(settings["auditor_addr"]["value"], "127.0.0.1:4301");
    assert_eq!(settings["auditor_addr"]["source"], "env");
    assert_eq!(settings["auditor_addr"]["from"], "AUDITLOG_AUDITOR_ADDR");
    assert_eq!(settings["web_addr"]["value"], "127.0.0.1:4102");
    assert_eq!(settings["web_addr"]["source"], "file");
    assert_eq!(
        settings["web_addr"]["from"],
        format!("{}:3 web_addr", path(&file))
    );
    assert_eq!(settings["amqp_prefetch"]["value"], 7);
    assert_eq!(settings["amqp_prefetch"]["source"], "file");
    assert_eq!(
        settings["web_origin"]["value"],
        serde_json::json!(["https://audit.example.com", "https://admin.example.com"])
    );
    assert_eq!(settings["amqp_exchange"]["value"], "api-stream");
    assert_eq!(settings["amqp_exchange"]["source"], "default");
    assert_eq!(settings["dev_tokens"]["value"], true);
    assert_eq!(settings["store_url"]["value"], Value::Null);
    assert_eq!(settings["store_url"]["flag"], "--store-url");
    assert_eq!(settings["store_url"]["env"], "AUDITLOG_STORE_URL");
}

#[test]
fn without_a_file_the_defaults_and_comma_separated_lists_apply() {
    let report = effective(&["config", "web", "--json"], &[]);
    assert_eq!(report["configFile"], Value::Null);
    assert_eq!(report["settings"]["web_addr"]["value"], "127.0.0.1:3002");
    assert_eq!(report["settings"]["web_addr"]["source"], "default");
    assert_eq!(
        report["settings"]["web_origin"]["value"],
        serde_json::json!(["http://127.0.0.1:3002", "http://localhost:3002"])
    );
}

#[test]
fn a_command_table_overrides_the_top_level_for_that_command_only() {
    let (_dir, file) = config_file(
        "web_addr = \"127.0.0.1:4102\"\n\
         dev_tokens = true\n\
         [up]\n\
         web_addr = \"127.0.0.1:4202\"\n\
         dev_tokens = false\n",
    );
    let up = effective(&["--config", path(&file), "config", "up", "--json"], &[]);
    let web = effective(&["--config", path(&file), "config", "web", "--json"], &[]);
    let api = effective(&["--config", path(&file), "config", "api", "--json"], &[]);

    assert_eq!(up["settings"]["web_addr"]["value"], "127.0.0.1:4202");
    assert_eq!(
        up["settings"]["web_addr"]["from"],
        format!("{}:4 [up] web_addr", path(&file))
    );
    assert_eq!(up["settings"]["dev_tokens"]["value"], false);
    assert_eq!(web["settings"]["web_addr"]["value"], "127.0.0.1:4102");
    assert_eq!(api["settings"]["dev_tokens"]["value"], true);
}

#[test]
fn the_file_may_be_named_by_auditlog_config_and_the_flag_wins_over_it() {
    let (_a, by_env) = config_file("auditor_url = \"http://auditor.internal:3001\"\n");
    let (_b, by_flag) = config_file("auditor_url = \"http://other.internal:3001\"\n");

    let from_env = effective(
        &["config", "api", "--json"],
        &[("AUDITLOG_CONFIG", path(&by_env))],
    );
    let from_flag = effective(
        &["config", "api", "--config", path(&by_flag), "--json"],
        &[("AUDITLOG_CONFIG", path(&by_env))],
    );

    assert_eq!(from_env["configFile"]["namedBy"], "AUDITLOG_CONFIG");
    assert_eq!(
        from_env["settings"]["auditor_url"]["value"],
        "http://auditor.internal:3001"
    );
    assert_eq!(from_flag["configFile"]["namedBy"], "--config");
    assert_eq!(
        from_flag["settings"]["auditor_url"]["value"],
        "http://other.internal:3001"
    );
}

#[test]
fn the_text_report_is_a_config_file_annotated_with_sources() {
    let (_dir, file) = config_file("[web]\napi_url = \"http://api.internal:3000\"\n");
    let output = auditlog(
        &[
            "--config",
            path(&file),
            "config",
            "web",
            "--web-addr",
            "0.0.0.0:8080",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);

    assert_mentions(
        &text,
        &[
            "api_url = \"http://api.internal:3000\"",
            "# file ",
            ":2 [web] api_url",
            "web_addr = \"0.0.0.0:8080\"",
            "# flag --web-addr",
            "web_origin = [\"http://127.0.0.1:3002\", \"http://localhost:3002\"]",
        ],
    );
}

#[tokio::test]
async fn a_config_file_drives_a_real_run() {
    let (_dir, file) = config_file(
        "api_addr = \"127.0.0.1:0\"\n\
         auditor_addr = \"127.0.0.1:0\"\n\
         web_addr = \"127.0.0.1:0\"\n\
         [up]\n\
         dev_tokens = false\n",
    );
    let (_data, data) = data_dir();

    let running = Running::start(&["--config", path(&file), "up"], &data, 3);
    let tokens = Client::new(&running.urls.api).get("/tokens/1").await;
    let website = Client::new(&running.urls.web).get("/").await;

    assert_eq!(tokens.status, 404, "dev tokens are off in [up]");
    assert_eq!(website.status, 200);
    assert!(running.terminate().success());
}

#[test]
fn an_unknown_key_lists_the_known_ones_and_suggests_the_nearest() {
    let (_dir, file) = config_file("# audit store\nstor_url = \"sqlite://audit.db\"\n");
    let message = refused(&["--config", path(&file), "config", "up"], &[]);
    assert_mentions(
        &message,
        &[
            &format!("{}:2", path(&file)),
            "unknown key `stor_url`",
            "did you mean `store_url`?",
            "amqp_prefetch",
            "[auditor]",
        ],
    );

    let (_dir, file) = config_file("[web]\nstore_url = \"sqlite://audit.db\"\n");
    let message = refused(&["--config", path(&file), "config", "web"], &[]);
    assert_mentions(
        &message,
        &[
            "not a setting of `auditlog web`",
            "up",
            "auditor",
            "[web] accepts",
        ],
    );

    let (_dir, file) = config_file("[bench]\nevents = 5\n");
    let message = refused(&["--config", path(&file), "config", "up"], &[]);
    assert_mentions(&message, &["unknown key `bench`"]);
}

#[test]
fn a_value_of_the_wrong_type_names_the_expected_one() {
    let (_dir, file) =
        config_file("dev_tokens = \"no\"\namqp_prefetch = \"64\"\napi_addr = 3000\n");
    let message = refused(&["--config", path(&file), "config", "up"], &[]);
    assert_mentions(
        &message,
        &[
            "3 problems",
            ":1: `dev_tokens` must be a boolean (true or false, without quotes), not a string",
            "--dev-tokens",
            "AUDITLOG_DEV_TOKENS",
            ":2: `amqp_prefetch` must be an integer",
            ":3: `api_addr` must be a string, not an integer",
        ],
    );
}

#[test]
fn an_unparseable_address_is_refused_from_file_environment_and_flag() {
    let (_dir, file) = config_file("[api]\napi_addr = \"localhost\"\n");
    let from_file = refused(&["--config", path(&file), "config", "api"], &[]);
    let from_env = refused(&["config", "up"], &[("AUDITLOG_API_ADDR", "nope")]);
    let from_flag = refused(&["web", "--web-addr", "3002"], &[]);

    assert_mentions(
        &from_file,
        &[
            ":2: invalid value \"localhost\" for `[api] api_addr`",
            "an IP address and a port",
            "--api-addr",
            "AUDITLOG_API_ADDR",
        ],
    );
    assert_mentions(
        &from_env,
        &[
            "invalid value \"nope\" for --api-addr from the environment variable AUDITLOG_API_ADDR",
            "an IP address and a port",
            "`api_addr`",
        ],
    );
    assert_mentions(
        &from_flag,
        &[
            "invalid value \"3002\" for --web-addr given by the flag --web-addr",
            "AUDITLOG_WEB_ADDR",
            "`web_addr`",
        ],
    );
}

#[test]
fn a_database_url_must_name_a_supported_backend_and_its_password_stays_hidden() {
    let from_flag = refused(
        &["auditor", "--store-url", "mongodb://admin:hunter2@db/audit"],
        &[],
    );
    let from_env = refused(
        &["config", "api"],
        &[("AUDITLOG_APP_DB_URL", "redis://app:s3cret@cache:6379")],
    );
    let (_dir, file) = config_file("[verify]\nstore_url = \"oracle://sys:t1ger@db/audit\"\n");
    let from_file = refused(&["--config", path(&file), "config", "verify"], &[]);

    assert_mentions(
        &from_flag,
        &[
            "\"mongodb://admin:***@db/audit\"",
            "--store-url",
            "AUDITLOG_STORE_URL",
            "`store_url`",
            "`mongodb` is not a supported database",
            "sqlite://",
            "postgres://",
            "postgresql://",
            "mysql://",
            "mariadb://",
        ],
    );
    assert_mentions(
        &from_env,
        &["AUDITLOG_APP_DB_URL", "`app_db_url`", "`redis`"],
    );
    assert_mentions(
        &from_file,
        &["[verify] store_url", "`oracle`", "postgres://"],
    );
    for (message, secret) in [
        (&from_flag, "hunter2"),
        (&from_env, "s3cret"),
        (&from_file, "t1ger"),
    ] {
        assert!(!message.contains(secret), "password printed: {message}");
    }
}

#[test]
fn an_amqp_url_must_be_amqp() {
    let message = refused(
        &["config", "auditor"],
        &[("AUDITLOG_AMQP_URL", "http://guest:sekrit@127.0.0.1:15672/")],
    );
    assert_mentions(
        &message,
        &[
            "AUDITLOG_AMQP_URL",
            "`amqp_url`",
            "`http` is not an AMQP URL",
            "amqp://",
        ],
    );
    assert!(!message.contains("sekrit"), "{message}");

    let (_dir, file) = config_file("amqp_url = \"amqps://broker.example.com\"\n");
    let message = refused(&["--config", path(&file), "config", "up"], &[]);
    assert_mentions(&message, &["amqp_url", "amqps:// (TLS) is not built in"]);
}

#[test]
fn a_prefetch_of_zero_is_refused() {
    let (_dir, file) = config_file("amqp_prefetch = 0\n");
    let from_file = refused(&["--config", path(&file), "config", "auditor"], &[]);
    let from_env = refused(&["config", "auditor"], &[("AUDITLOG_AMQP_PREFETCH", "0")]);

    for message in [&from_file, &from_env] {
        assert_mentions(
            message,
            &[
                "amqp_prefetch",
                "AUDITLOG_AMQP_PREFETCH",
                "--amqp-prefetch",
                "1..=65535",
            ],
        );
    }
}

#[test]
fn an_unknown_audit_value_lists_the_allowed_ones() {
    let from_flag = refused(&["config", "up", "--audit", "maybe"], &[]);
    let (_dir, file) = config_file("[api]\naudit = \"sometimes\"\n");
    let from_file = refused(&["--config", path(&file), "config", "api"], &[]);

    assert_mentions(
        &from_flag,
        &[
            "\"maybe\"",
            "--audit",
            "AUDITLOG_AUDIT",
            "`audit`",
            "one of on, off",
        ],
    );
    assert_mentions(
        &from_file,
        &["\"sometimes\"", "[api] audit", "one of on, off"],
    );
}

#[test]
fn a_missing_config_file_is_an_error_naming_how_it_was_named() {
    let by_flag = refused(
        &["--config", "/nonexistent/auditlog.toml", "config", "up"],
        &[],
    );
    let by_env = refused(
        &["config", "up"],
        &[("AUDITLOG_CONFIG", "/nonexistent/env.toml")],
    );

    assert_mentions(
        &by_flag,
        &[
            "cannot read the config file /nonexistent/auditlog.toml",
            "--config",
        ],
    );
    assert_mentions(&by_env, &["/nonexistent/env.toml", "AUDITLOG_CONFIG"]);
}

#[test]
fn a_toml_syntax_error_gives_its_line_and_column() {
    let (_dir, file) = config_file("api_addr = \"127.0.0.1:3000\"\n\n[up\nweb_addr = \"x\"\n");
    let message = refused(&["--config", path(&file), "config", "up"], &[]);
    assert_mentions(
        &message,
        &[&format!("{}:3: column", path(&file)), "not valid TOML"],
    );
}

#[test]
fn secrets_are_redacted_in_the_effective_settings() {
    let (_dir, file) = config_file("amqp_url = \"amqp://guest:filesecret@127.0.0.1:5672/%2f\"\n");
    let args = [
        "--config",
        path(&file),
        "config",
        "up",
        "--app-db-url",
        "mysql://root:flagsecret@127.0.0.1/app",
    ];
    let env = [(
        "AUDITLOG_STORE_URL",
        "postgres://audit:envsecret@127.0.0.1/audit?password=querysecret",
    )];
    let text = auditlog(&args, &env);
    let json = auditlog(&[&args[..], &["--json"]].concat(), &env);

    for output in [&text, &json] {
        assert!(output.status.success(), "{}", stderr(output));
        let printed = stdout(output);
        assert_mentions(
            &printed,
            &[
                "amqp://guest:***@127.0.0.1:5672/%2f",
                "mysql://root:***@127.0.0.1/app",
                "postgres://audit:***@127.0.0.1/audit?password=***",
            ],
        );
        for secret in ["filesecret", "flagsecret", "envsecret", "querysecret"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
    }
}

#[test]
fn help_shows_neither_secret_environment_values_nor_secret_file_defaults() {
    let (_dir, file) = config_file(
        "store_url = \"postgres://audit:filesecret@db/audit\"\n\
         api_addr = \"127.0.0.1:4100\"\n",
    );
    let output = auditlog(
        &["--config", path(&file), "up", "--help"],
        &[(
            "AUDITLOG_AMQP_URL",
            "amqp://guest:envsecret@127.0.0.1:5672/%2f",
        )],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let help = stdout(&output);

    assert_mentions(&help, &["AUDITLOG_AMQP_URL", "[default: 127.0.0.1:4100]"]);
    assert!(!help.contains("envsecret"), "{help}");
    assert!(!help.contains("filesecret"), "{help}");
}

#[test]
fn completions_print_a_script_for_every_shell() {
    let bash = auditlog(&["completions", "bash"], &[]);
    assert!(bash.status.success(), "{}", stderr(&bash));
    let script = stdout(&bash);
    assert_mentions(&script, &["complete", "auditlog", "verify", "--store-url"]);

    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let output = auditlog(&["completions", shell], &[]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        assert!(stdout(&output).contains("auditlog"), "{shell}");
    }
    let unknown = refused(&["completions", "tcsh"], &[]);
    assert_mentions(&unknown, &["bash", "zsh"]);
}

/// The subcommands listed under "Commands:" in a help text, without `help`.
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        // A name is indented by two spaces; a wrapped description by more.
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_help_has_examples() {
    let root = stdout(&auditlog(&["--help"], &[]));
    assert!(root.contains("Examples:"), "{root}");
    let mut pending: Vec<Vec<String>> = listed_commands(&root)
        .into_iter()
        .map(|name| vec![name])
        .collect();
    assert!(pending.len() >= 9, "{root}");
    let mut checked = 0;
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = auditlog(&args, &[]);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let help = stdout(&output);
        assert!(
            help.contains("Example"),
            "no example in `auditlog {}`",
            path.join(" ")
        );
        for sub in listed_commands(&help) {
            pending.push([path.clone(), vec![sub]].concat());
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} help texts checked");
}
