//! `auditlog`: one binary for the whole system. `up` runs the auditor, the primary
//! API and the website in one process on SQLite and the embedded transport; `api`,
//! `auditor` and `web` run each as its own process, as the prototype did. Settings
//! come from defaults, a config file, `AUDITLOG_*` variables and flags (`config.rs`).

mod config;
mod emit;
mod erase;
mod export;
mod hardening;
mod logging;
mod prove;
mod prune;
mod query;
mod remote;
mod run;
mod scheduling;
mod sinks;
mod token;
mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// jemalloc serves every allocation of the process, SQLite's included (its
/// unprefixed `malloc` replaces the C library's). Under glibc's allocator the
/// primary API's threads blocked on arena locks about 2 300 times a second, freeing
/// rows that SQLite's connection threads had allocated, and the audit store's
/// writer spent over a quarter of its samples in `malloc` and `free`;
/// BENCHMARKS.md has the runs.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "auditlog",
    version,
    about = "A self-hosted audit log for data events",
    after_help = "Examples:
  auditlog up                                   everything in one process on SQLite
  auditlog --config /etc/auditlog.toml auditor  settings from a file
  auditlog config up --json                     the settings `up` would run with
  auditlog completions bash > ~/.local/share/bash-completion/completions/auditlog

Settings: defaults < config file (--config) < AUDITLOG_* environment variables < flags."
)]
struct Cli {
    /// A TOML file of settings, named like the long flags with underscores
    /// (store_url = "postgres://…"). Top-level keys apply to every command that has
    /// the setting; `[up]`, `[api]`, `[auditor]`, `[web]`, … tables to that command only.
    /// Environment variables and flags override it.
    // Read by config.rs before clap parses, so that its values become defaults.
    #[allow(dead_code)]
    #[arg(
        long = "config",
        id = config::CONFIG_ARG,
        global = true,
        env = "AUDITLOG_CONFIG",
        value_name = "FILE"
    )]
    config_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything in one process: auditor, primary API and website, on SQLite
    /// files in the data directory and the embedded transport.
    ///
    /// Example: auditlog up --data-dir ./auditlog-data
    Up(UpArgs),
    /// Run the primary API alone; it publishes events to RabbitMQ (with --amqp-url)
    /// or delivers them to the auditor over HTTP.
    ///
    /// Example: auditlog api --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f
    #[command(visible_alias = "primary-api")]
    Api(ApiArgs),
    /// Run the auditor alone: the RabbitMQ consumer (with --amqp-url), HTTP ingest
    /// and the query API.
    ///
    /// Example: auditlog auditor --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f --store-url postgres://postgres@127.0.0.1/audit
    Auditor(AuditorArgs),
    /// Run the website alone; it proxies API calls to the primary API.
    ///
    /// Example: auditlog web --api-url http://127.0.0.1:3000
    Web(WebArgs),
    /// Export the events matching some filters as NDJSON or CSV, streamed, with a
    /// progress bar.
    #[command(after_help = "Examples:
  auditlog export --token \"$TOKEN\" --target users:2 --format csv -o user-2.csv
  auditlog export --as-user 1 --action changed,deleted --since 7d > changes.ndjson
  auditlog export --token \"$TOKEN\" --since 2026-11-01 --until 2026-12-01T00:00:00Z --format csv -o november.csv")]
    Export(ExportArgs),
    /// Record one event from a script and print its id.
    ///
    /// The event is checked against the event contract first (an invalid one is
    /// refused naming the field), then delivered to the auditor's HTTP ingest, which
    /// answers once it is stored, or published to RabbitMQ with --amqp-url. Over HTTP
    /// it needs a service or admin token: --token, or else one minted from the
    /// signing key in --data-dir (on the auditor's host).
    #[command(after_help = "Examples:
  auditlog emit --action changed --actor users:1 --target users:2 --change email=a@x,b@x \\
    --event-name user.email.changed --meta ip=10.0.0.1
  auditlog emit --data-dir /var/lib/auditlog --action viewed --actor services:billing --target invoices:2024-17
  echo '{\"action\":\"deleted\",\"actorType\":\"users\",\"actorId\":1,\"targetType\":\"notes\",\"targetId\":\"7\"}' \\
    | auditlog emit --token \"$TOKEN\" --json -
  auditlog emit --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f --action created --actor users:1 \\
    --target users:3 --change email=ann@example.com")]
    Emit(emit::EmitArgs),
    /// Query events from a terminal, as a table or as NDJSON.
    ///
    /// Filters as in the query API; pages are followed up to --limit events, printed
    /// as aligned columns on a terminal or as NDJSON (one stored event per line) in a
    /// pipe. The same token options as export.
    #[command(after_help = "Examples:
  auditlog query --as-user 1 --target users:2
  auditlog query --token \"$TOKEN\" --actor users:1 --action changed,deleted --since 2h
  auditlog query --token \"$TOKEN\" --since 2026-11-28T00:00:00Z --until 1764374400000 \\
    --limit 5000 --format json > events.ndjson")]
    Query(query::QueryArgs),
    /// Erase a data subject's personal data from the log (crypto-shredding).
    ///
    /// The auditor deletes the subject's key: the personal values of its events
    /// (declared with --personal-fields), encrypted under that key, read as
    /// erased in every answer from then on, while the events and the log's
    /// proofs stay. The erasure is recorded as an `audit.erased` event.
    /// Idempotent. Needs an admin's token.
    #[command(after_help = "Examples:
  auditlog erase --subject users:42 --token \"$TOKEN\"
  auditlog erase --subject users:42 --as-user 1 --auditor-url http://127.0.0.1:3001")]
    Erase(erase::EraseArgs),
    /// Prune events dated before a time: their rows go, their leaves stay.
    ///
    /// The auditor removes the rows of the sealed events (of one tenant, or of
    /// every tenant) dated before --before that no legal hold covers, keeping
    /// their leaf hashes in the log's tree: checkpoints and the proofs of every
    /// other event still verify, and `auditlog verify` reports them as pruned.
    /// The auditor also prunes by itself what --retention-days and the
    /// tenants' own policies say has expired. Needs an operator's token.
    #[command(after_help = "Examples:
  auditlog prune --before 365d --token \"$TOKEN\"
  auditlog prune --tenant acme --before 2026-01-01 --as-user 1")]
    Prune(prune::PruneArgs),
    /// Manage the log streams on the auditor: list, add, remove, test.
    ///
    /// Sinks deliver every event, in log order and at least once, to a webhook
    /// (signed per Standard Webhooks), syslog (RFC 5424 over TCP), Splunk HEC,
    /// Datadog or rotated NDJSON files. Needs an admin's token.
    #[command(after_help = "Examples:
  auditlog sinks list --token \"$TOKEN\"
  auditlog sinks add siem --token \"$TOKEN\" --definition '{\"kind\":\"webhook\",\"url\":\"http://siem:8080/hook\"}'
  auditlog sinks test siem --token \"$TOKEN\"
  auditlog sinks remove siem --token \"$TOKEN\"")]
    Sinks(sinks::SinksArgs),
    /// Print a token signed with the data directory's key, for `auditlog query`,
    /// `auditlog export` or curl when the demo tokens are off.
    ///
    /// Run it on the services' host: it reads the signing key (jwt-ed25519.pem) in
    /// --data-dir and never creates one. Only the token is printed, so that
    /// TOKEN=$(auditlog token …) captures it. Tokens cannot be revoked short of
    /// replacing the key: keep --ttl short.
    #[command(after_help = "Examples:
  TOKEN=$(auditlog token --data-dir /var/lib/auditlog --subject 1 --role operator)
  auditlog query --token \"$TOKEN\" --since 1h
  curl -s -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:3001/api/producers
  auditlog token --data-dir /var/lib/auditlog --subject 42 --role member --ttl 2h
  auditlog token --data-dir /var/lib/auditlog --subject billing --role service --tenant acme --ttl 8h")]
    Token(token::TokenArgs),
    /// Check the verifiable log. With a store: recompute every leaf from its row and
    /// the tree, name every event altered, removed, reordered or inserted behind the
    /// auditor's back, and check every checkpoint's signature (the data directory's
    /// log keys) and root. With --url: act as a witness, checking that the latest
    /// checkpoint extends the one saved in --checkpoint FILE. Exits non-zero when
    /// anything is wrong.
    #[command(after_help = "Examples:
  auditlog verify --data-dir ./auditlog-data
  auditlog verify --store-url postgres://postgres@127.0.0.1/audit --data-dir ./auditlog-data --json
  auditlog verify --url http://127.0.0.1:3001 --token \"$TOKEN\" --checkpoint ~/.auditlog-checkpoint")]
    Verify(VerifyArgs),
    /// Print an event's inclusion proof and check it: its leaf against the event,
    /// the audit path against the latest checkpoint's root, and the checkpoint's
    /// signature against the log's key.
    #[command(after_help = "Examples:
  auditlog prove 0193a5c4-7d2e-7c41-9b1e-2f6d8a0c4e11 --as-user 1
  auditlog prove 0193a5c4-7d2e-7c41-9b1e-2f6d8a0c4e11 --token \"$TOKEN\" --log-key \"$LOG_KEY\"")]
    Prove(prove::ProveArgs),
    /// Measure: end-to-end ingest, query latency as the store grows, or the primary
    /// API with auditing on and off.
    #[command(
        subcommand,
        after_help = "Examples:
  auditlog bench ingest --events 1000000
  auditlog bench query --events 100000,1000000
  auditlog bench query --events 1000000 --http
  auditlog bench api --duration 10 --connections 32"
    )]
    Bench(BenchCommand),
    /// Print the settings a command would run with, each with where it came from
    /// (default, file, environment or flag); passwords and tokens are redacted.
    #[command(after_help = "Examples:
  auditlog config up
  auditlog --config /etc/auditlog.toml config auditor --json
  AUDITLOG_API_ADDR=0.0.0.0:3000 auditlog config api --audit off")]
    Config(config::ConfigArgs),
    /// Print a shell completion script for bash, zsh, fish, elvish or powershell.
    #[command(after_help = "Examples:
  auditlog completions bash > ~/.local/share/bash-completion/completions/auditlog
  auditlog completions zsh > ~/.zfunc/_auditlog
  auditlog completions fish > ~/.config/fish/completions/auditlog.fish")]
    Completions(config::CompletionsArgs),
}

#[derive(Debug, Clone, Args)]
struct VerifyArgs {
    /// The data directory: its key checks the signed head, and its audit.db is the
    /// store verified unless --store-url names another [default: auditlog-data].
    #[arg(long, env = "AUDITLOG_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The audit store to verify.
    #[arg(long, env = "AUDITLOG_STORE_URL", hide_env_values = true, value_parser = config::database_url)]
    store_url: Option<String>,
    /// Witness a running log instead: the auditor's (or the primary API's) URL.
    #[arg(long, requires = "checkpoint", conflicts_with = "store_url")]
    url: Option<String>,
    /// With --url: the file keeping the last checkpoint seen (created on first use).
    #[arg(long, value_name = "FILE", requires = "url")]
    checkpoint: Option<PathBuf>,
    /// With --url: the log's note verifier key; by default the one pinned on first
    /// use in FILE.key.
    #[arg(long, value_name = "KEY", requires = "url")]
    log_key: Option<String>,
    /// With --url: a bearer token (any role may read checkpoints).
    #[arg(long, env = "AUDITLOG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// With --url, on a demo deployment: a token for this user from /tokens/ID.
    #[arg(long, value_name = "ID", requires = "url")]
    as_user: Option<i64>,
    /// One JSON report on standard output instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Args)]
struct ExportArgs {
    /// The primary API (or the auditor) to export from.
    #[arg(
        long,
        env = "AUDITLOG_API_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    api_url: String,
    /// Bearer token of the reader; what it may read is what gets exported.
    #[arg(long, env = "AUDITLOG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// On a demo deployment: get a token for this user from /tokens/ID instead.
    #[arg(long)]
    as_user: Option<i64>,
    /// `ndjson` (one stored event per line) or `csv`.
    #[arg(long, default_value = "ndjson", value_parser = ["ndjson", "csv"])]
    format: String,
    #[command(flatten)]
    filters: remote::Filters,
    /// `-timestamp` (newest first, the default) or `timestamp`.
    #[arg(long)]
    sort: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<String>,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Drive N events from P emitters through the transport into the auditor and
    /// store; report rates, latencies, lost/duplicated counts and the store's ceiling.
    #[command(after_help = "Examples:
  auditlog bench ingest --events 1000000
  auditlog bench ingest --events 1000000 --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f --store-url postgres://postgres@127.0.0.1/bench
  auditlog bench ingest --message-format single --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f --store-url mysql://root@127.0.0.1/bench
  auditlog bench ingest --auditors 1,2,3 --events 200000 --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f --store-url postgres://postgres@127.0.0.1/bench")]
    Ingest(BenchIngestArgs),
    /// Load events over many actors and targets and measure query latency at each
    /// of the given store sizes; with --http, over HTTP too (the auditor and the
    /// primary API's proxy, at 1, 4 and 16 clients).
    #[command(after_help = "Examples:
  auditlog bench query --events 100000,1000000,10000000
  auditlog bench query --events 1000000 --http --http-clients 1,4,16")]
    Query(BenchQueryArgs),
    /// Drive GET /api/users/1 with auditing off and on (and over RabbitMQ, up and
    /// down, with --amqp-url); report throughput, latency and their ratio.
    ///
    /// Example: auditlog bench api --duration 10 --connections 32
    Api(BenchApiArgs),
}

#[derive(Debug, Clone, Args)]
struct BenchIngestArgs {
    /// Events to send.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Emitters sending them, each its own producer.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Most events per transport batch; by default the emitter's own default, so
    /// that the bench measures what applications get.
    #[arg(long, default_value_t = auditlog_emit::EmitterConfig::default().max_batch)]
    batch: usize,
    /// Share of `changed` events (two fields each); the rest are `viewed`.
    #[arg(long, default_value_t = 0.5)]
    changed_ratio: f64,
    /// The store (a fresh SQLite file by default); the run adds its events to it.
    #[arg(long)]
    store_url: Option<String>,
    /// RabbitMQ; the embedded transport without it.
    #[arg(long)]
    amqp_url: Option<String>,
    /// `batch` (our emitters: numbered events, many per message) or `single` (one
    /// event per message without an id, as the prototype's producers publish;
    /// needs --amqp-url).
    #[arg(long, default_value = "batch")]
    message_format: auditlog_bench::ingest::MessageFormat,
    /// Run once per number of `auditlog auditor` processes sharing the run's
    /// queue and store, e.g. 1,2,3 (needs --amqp-url; no ceiling measured), and
    /// report each run's CPU time per event by process and the model built on it.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=64))]
    auditors: Option<Vec<u16>>,
    /// Personal fields the in-process auditor encrypts before storing, as with
    /// `auditlog up --personal-fields` (e.g. `documents.title,documents.status`,
    /// the two fields of the run's `changed` events); without it nothing is
    /// encrypted. Embedded transport only.
    #[arg(long, value_parser = personal_fields)]
    personal_fields: Option<auditlog_auditor::personal::PersonalFields>,
    /// Type of the run's own RabbitMQ queues: quorum (the auditor's default) or
    /// classic.
    #[arg(long, default_value = "quorum", value_parser = ["quorum", "classic"])]
    amqp_queue_type: String,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Args)]
struct BenchQueryArgs {
    /// Store sizes to measure at, comma-separated; the store grows between them.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    events: Vec<u64>,
    /// The store (a fresh SQLite file by default); the run adds its events to it.
    #[arg(long)]
    store_url: Option<String>,
    /// Queries per shape and size.
    #[arg(long, default_value_t = 500)]
    samples: usize,
    /// Also ask the shapes over HTTP at the largest size: of the auditor
    /// (`auditlog auditor`) and through the primary API's proxy (`auditlog api`),
    /// each a process of its own on the run's store, and check that every
    /// answered read was recorded; first the same queries of the store alone, as
    /// many at once, for its own ceiling.
    #[arg(long)]
    http: bool,
    /// Concurrent HTTP clients (keep-alive connections), each number measured in
    /// turn.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,4,16",
        requires = "http"
    )]
    http_clients: Vec<usize>,
    /// Seconds measured per HTTP cell (service × shape × clients).
    #[arg(long, default_value_t = 3, requires = "http")]
    http_duration: u64,
    /// The `auditlog` binary the HTTP services run as (this one by default): an
    /// older build measured under this run's load.
    #[arg(long, requires = "http")]
    server_binary: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Args)]
struct BenchApiArgs {
    /// Seconds measured per configuration.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Also measure over RabbitMQ, with the broker up and with it gone.
    #[arg(long)]
    amqp_url: Option<String>,
    /// Only one configuration: off, embedded, rabbitmq or rabbitmq-down.
    #[arg(long)]
    only: Option<String>,
    /// Run every configuration this many times, alternating, and report the median
    /// ratio: on a shared machine one run of each is at the mercy of the moment.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    #[arg(long)]
    json: bool,
}

/// Whether the primary API audits (off only to measure what auditing costs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Audit {
    On,
    Off,
}

#[derive(Debug, Clone, Args)]
struct DataDirArg {
    /// Where SQLite files and the token signing key live (created if missing).
    #[arg(long, env = "AUDITLOG_DATA_DIR", default_value = "auditlog-data")]
    data_dir: PathBuf,
}

/// The verifiable log's settings.
#[derive(Debug, Clone, Args)]
struct LogArgs {
    /// The log's origin: the first line of every checkpoint and its key's name, e.g.
    /// `audit.example.com/prod`. Fixed for the life of a log; by default
    /// `auditlog/<hex>`, derived from the first checkpoint key.
    #[arg(long, env = "AUDITLOG_LOG_ORIGIN")]
    log_origin: Option<String>,
    /// How far an event's own timestamp may be from the auditor's receipt
    /// (`receivedAt`) before answers flag it (`meta.clockSkewed`), e.g. `30s`,
    /// `5m`: producers' clocks, and their word about when something happened,
    /// are trusted only this far.
    #[arg(
        long,
        env = "AUDITLOG_CLOCK_SKEW_TOLERANCE",
        default_value = "5m",
        value_parser = clock_skew_tolerance
    )]
    clock_skew_tolerance: std::time::Duration,
    /// The fields that hold personal data, comma-separated: `TYPE.FIELD` for a
    /// field of `changes` in events on targets of that type (encrypted under the
    /// target's key), `meta.FIELD` for a metadata field of any event (under the
    /// actor's key). Their values are encrypted before they are stored, and
    /// erased with `auditlog erase`. An empty list encrypts nothing (values
    /// stored encrypted before are still decrypted).
    #[arg(
        long,
        env = "AUDITLOG_PERSONAL_FIELDS",
        default_value = auditlog_auditor::personal::DEFAULT_PERSONAL_FIELDS,
        value_parser = personal_fields
    )]
    personal_fields: auditlog_auditor::personal::PersonalFields,
    /// Days the events of a tenant without a retention of its own are kept,
    /// counted from their timestamp; then the auditor prunes them (rows gone,
    /// leaves kept). Left out, they are kept for ever. Tenants' own policies
    /// are set with `PATCH /api/retention/{tenant}`.
    #[arg(long, env = "AUDITLOG_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..=i64::from(auditlog_auditor::retention::MAX_RETENTION_DAYS)))]
    retention_days: Option<u32>,
    /// How often the auditor prunes expired events, e.g. `10m`, `1h`.
    #[arg(
        long,
        env = "AUDITLOG_PRUNE_INTERVAL",
        default_value = "1h",
        value_parser = clock_skew_tolerance
    )]
    prune_interval: std::time::Duration,
}

/// A `--personal-fields` list.
fn personal_fields(text: &str) -> Result<auditlog_auditor::personal::PersonalFields, String> {
    auditlog_auditor::personal::PersonalFields::parse(text).map_err(|e| e.to_string())
}

/// A `--clock-skew-tolerance` or `--prune-interval`: a span such as `30s` or `5m`.
fn clock_skew_tolerance(text: &str) -> Result<std::time::Duration, String> {
    remote::span_ms(text.trim())
        .and_then(|ms| u64::try_from(ms).ok())
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is not a span; give one such as 30s, 5m or 1h"))
}

/// Which tokens are trusted, besides those signed with the data directory's key.
#[derive(Debug, Clone, Args)]
struct TokenArgs {
    /// An external issuer's Ed25519 public key (SPKI PEM) whose tokens are accepted.
    #[arg(long, env = "AUDITLOG_TOKEN_PUBLIC_KEY")]
    token_public_key: Option<PathBuf>,
    /// An external issuer's JWKS file; its Ed25519 (OKP) keys are accepted by `kid`.
    #[arg(long, env = "AUDITLOG_TOKEN_JWKS")]
    token_jwks: Option<PathBuf>,
    /// The `iss` the external issuer's tokens carry.
    #[arg(long, env = "AUDITLOG_TOKEN_ISSUER", default_value = "auditlog")]
    token_issuer: String,
    /// The `aud` the external issuer's tokens must carry.
    #[arg(long, env = "AUDITLOG_TOKEN_AUDIENCE", default_value = "auditlog")]
    token_audience: String,
}

/// The browser origins allowed to call the service (CORS) and the limits on its
/// connections.
#[derive(Debug, Clone, Args)]
struct EdgeArgs {
    /// The website's origin(s), comma-separated; browsers on any other origin are
    /// not let in.
    #[arg(
        long,
        env = "AUDITLOG_WEB_ORIGIN",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:3002,http://localhost:3002"
    )]
    web_origin: Vec<String>,
    /// Seconds a connection has to send a complete request head, counted from its
    /// opening or from its previous answer: slow-header clients and idle
    /// keep-alive connections are closed after it.
    #[arg(long, env = "AUDITLOG_HTTP_HEADER_TIMEOUT", default_value_t = 10.0, value_parser = config::positive_seconds)]
    http_header_timeout: f64,
    /// Open connections each service accepts; a connection over it is answered 503
    /// at once. By default 10 000, or fewer when the open-file limit (raised to
    /// its hard limit at start) leaves room for fewer.
    #[arg(long, env = "AUDITLOG_HTTP_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    http_max_connections: Option<u32>,
    /// Host names, comma-separated, that `GET /tokens/:id` (the demo login) answers
    /// for besides localhost, 127.0.0.1, ::1 and the listen address: a page on
    /// another site that rebinds its name to this machine gets a 403.
    #[arg(long, env = "AUDITLOG_DEV_TOKEN_HOSTS", value_delimiter = ',')]
    dev_token_hosts: Vec<String>,
}

/// RabbitMQ settings shared by every command that produces or consumes.
#[derive(Debug, Clone, Args)]
struct AmqpArgs {
    /// RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f. Without it, `up` uses
    /// the embedded transport and `api` delivers to the auditor over HTTP.
    #[arg(long, env = "AUDITLOG_AMQP_URL", hide_env_values = true, value_parser = config::amqp_url)]
    amqp_url: Option<String>,
    /// Topic exchange events are published to.
    #[arg(long, env = "AUDITLOG_AMQP_EXCHANGE", default_value = "api-stream")]
    amqp_exchange: String,
    /// The auditor's queue.
    #[arg(
        long,
        env = "AUDITLOG_AMQP_QUEUE",
        default_value = "data-mutation-audits"
    )]
    amqp_queue: String,
    /// Binding of the auditor's queue to the exchange.
    #[arg(
        long,
        env = "AUDITLOG_AMQP_BINDING_KEY",
        default_value = "*.data.mutated"
    )]
    amqp_binding_key: String,
    /// Queue receiving poison messages, with the reason in a header.
    #[arg(
        long,
        env = "AUDITLOG_AMQP_DEAD_LETTER_QUEUE",
        default_value = "data-mutation-audits.dead-letter"
    )]
    amqp_dead_letter_queue: String,
    /// Unacknowledged messages the broker may push to the auditor at once. By
    /// default it is sized from the messages arriving: thousands when each holds
    /// one event, a handful when each holds thousands.
    #[arg(
        long,
        env = "AUDITLOG_AMQP_PREFETCH",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    amqp_prefetch: Option<u16>,
    /// Type of the auditor's queue and dead-letter queue when they do not exist
    /// yet: quorum (replicated on a RabbitMQ cluster, a poison message
    /// dead-lettered after 20 deliveries) or classic. An existing queue is used as
    /// it was declared, whatever its type.
    #[arg(
        long,
        env = "AUDITLOG_AMQP_QUEUE_TYPE",
        default_value = "quorum",
        value_parser = ["quorum", "classic"]
    )]
    amqp_queue_type: String,
}

impl AmqpArgs {
    fn config(&self) -> Option<auditlog_amqp::AmqpConfig> {
        let url = self.amqp_url.clone()?;
        Some(auditlog_amqp::AmqpConfig {
            url,
            exchange: self.amqp_exchange.clone(),
            queue: self.amqp_queue.clone(),
            binding_key: self.amqp_binding_key.clone(),
            dead_letter_queue: self.amqp_dead_letter_queue.clone(),
            prefetch: self.amqp_prefetch.map_or(
                auditlog_amqp::Prefetch::Auto,
                auditlog_amqp::Prefetch::Fixed,
            ),
            // The value parser admits only the names `QueueType` parses.
            queue_type: self.amqp_queue_type.parse().unwrap_or_default(),
        })
    }
}

#[derive(Debug, Clone, Args)]
struct UpArgs {
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    amqp: AmqpArgs,
    /// Address of the primary API (port 0 picks a free port).
    #[arg(long, env = "AUDITLOG_API_ADDR", default_value = "127.0.0.1:3000")]
    api_addr: SocketAddr,
    /// Address of the auditor.
    #[arg(long, env = "AUDITLOG_AUDITOR_ADDR", default_value = "127.0.0.1:3001")]
    auditor_addr: SocketAddr,
    /// Address of the website.
    #[arg(long, env = "AUDITLOG_WEB_ADDR", default_value = "127.0.0.1:3002")]
    web_addr: SocketAddr,
    /// Audit store; defaults to sqlite://DATA_DIR/audit.db.
    #[arg(long, env = "AUDITLOG_STORE_URL", hide_env_values = true, value_parser = config::database_url)]
    store_url: Option<String>,
    /// The primary API's database; defaults to sqlite://DATA_DIR/app.db.
    #[arg(long, env = "AUDITLOG_APP_DB_URL", hide_env_values = true, value_parser = config::database_url)]
    app_db_url: Option<String>,
    /// Auditing of the primary API: `off` only to measure what auditing costs.
    #[arg(long, env = "AUDITLOG_AUDIT", value_enum, default_value = "on")]
    audit: Audit,
    /// Scheduling priority of the in-process auditor's threads: `idle` stores events
    /// on CPU time the primary API does not want (while it keeps the cores busy,
    /// events wait on disk in the spill file); a nice value from 0 (the API's own
    /// priority) to 19 gives the auditor a steady smaller share.
    #[arg(long, env = "AUDITLOG_AUDITOR_PRIORITY", default_value = "idle")]
    auditor_priority: scheduling::AuditorPriority,
    /// CPUs the in-process auditor's threads are confined to (e.g. `1`, `2-3`,
    /// `0,2`), leaving the others to the primary API; by default they may run on any.
    #[arg(long, env = "AUDITLOG_AUDITOR_CPUS")]
    auditor_cpus: Option<scheduling::CpuList>,
    #[command(flatten)]
    tokens: TokenArgs,
    #[command(flatten)]
    edge: EdgeArgs,
    #[command(flatten)]
    log: LogArgs,
    /// Whether GET /tokens/:id hands out demo tokens; `--dev-tokens=false` in production.
    #[arg(long, env = "AUDITLOG_DEV_TOKENS", default_value_t = true, action = clap::ArgAction::Set)]
    dev_tokens: bool,
}

#[derive(Debug, Clone, Args)]
struct ApiArgs {
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    amqp: AmqpArgs,
    #[arg(long, env = "AUDITLOG_API_ADDR", default_value = "127.0.0.1:3000")]
    api_addr: SocketAddr,
    /// Where the auditor listens: events are delivered and queries proxied there.
    #[arg(
        long,
        env = "AUDITLOG_AUDITOR_URL",
        default_value = "http://127.0.0.1:3001"
    )]
    auditor_url: String,
    /// The primary API's database; defaults to sqlite://DATA_DIR/app.db.
    #[arg(long, env = "AUDITLOG_APP_DB_URL", hide_env_values = true, value_parser = config::database_url)]
    app_db_url: Option<String>,
    /// Auditing: `off` only to measure what auditing costs.
    #[arg(long, env = "AUDITLOG_AUDIT", value_enum, default_value = "on")]
    audit: Audit,
    #[command(flatten)]
    tokens: TokenArgs,
    #[command(flatten)]
    edge: EdgeArgs,
    /// Whether GET /tokens/:id hands out demo tokens; `--dev-tokens=false` in production.
    #[arg(long, env = "AUDITLOG_DEV_TOKENS", default_value_t = true, action = clap::ArgAction::Set)]
    dev_tokens: bool,
}

#[derive(Debug, Clone, Args)]
struct AuditorArgs {
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    amqp: AmqpArgs,
    #[arg(long, env = "AUDITLOG_AUDITOR_ADDR", default_value = "127.0.0.1:3001")]
    auditor_addr: SocketAddr,
    /// Audit store; defaults to sqlite://DATA_DIR/audit.db.
    #[arg(long, env = "AUDITLOG_STORE_URL", hide_env_values = true, value_parser = config::database_url)]
    store_url: Option<String>,
    /// A read-only PostgreSQL URL (a streaming replica, or a role with only
    /// SELECT) the query routes read events from, so that reads do not compete
    /// with ingest; ingest, sealing, proofs, live tails and the record of reads
    /// stay on --store-url. Unset: queries use --store-url too.
    #[arg(long, env = "AUDITLOG_QUERY_STORE_URL", hide_env_values = true, value_parser = config::database_url)]
    query_store_url: Option<String>,
    #[command(flatten)]
    tokens: TokenArgs,
    #[command(flatten)]
    edge: EdgeArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Clone, Args)]
struct WebArgs {
    #[arg(long, env = "AUDITLOG_WEB_ADDR", default_value = "127.0.0.1:3002")]
    web_addr: SocketAddr,
    /// Where the primary API listens.
    #[arg(
        long,
        env = "AUDITLOG_API_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    api_url: String,
    #[command(flatten)]
    edge: EdgeArgs,
}

fn main() -> std::process::ExitCode {
    if let Err(err) = logging::init() {
        eprintln!("error: {err}");
        return std::process::ExitCode::from(2);
    }
    let (cli, mut settings) = match config::parse::<Cli>() {
        Ok(parsed) => parsed,
        Err(err) => return err.report(),
    };
    // Before the runtime starts its threads: both settings are per process.
    hardening::private_file_modes();
    let open_files = hardening::raise_open_file_limit();
    tracing::debug!(?open_files, "open-file limit");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => run::up(args, settings.sinks()).await,
            Command::Api(args) => run::api(args).await,
            Command::Auditor(args) => run::auditor(args, settings.sinks()).await,
            Command::Web(args) => run::web(args).await,
            Command::Bench(command) => run::bench(command).await,
            Command::Export(args) => export::run(args).await,
            Command::Emit(args) => emit::run(args).await,
            Command::Query(args) => query::run(args).await,
            Command::Erase(args) => erase::run(args).await,
            Command::Prune(args) => prune::run(args).await,
            Command::Sinks(args) => sinks::run(args).await,
            Command::Token(args) => token::run(args),
            Command::Verify(args) => verify::run(args).await,
            Command::Prove(args) => prove::run(args).await,
            Command::Config(_) => config::show(&settings),
            Command::Completions(args) => {
                config::completions(&mut settings, args.shell);
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
