//! `auditlog`: one binary for the whole system. `up` runs the auditor, the primary
//! API and the website in one process on SQLite and the embedded transport; `api`,
//! `auditor` and `web` run each as its own process, as the prototype did.

mod run;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "auditlog",
    version,
    about = "A self-hosted audit log for data events"
)]
struct Cli {
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
    /// Run the primary API alone; it delivers events to the auditor over HTTP.
    ///
    /// Example: auditlog api --auditor-url http://127.0.0.1:3001
    Api(ApiArgs),
    /// Run the auditor alone: HTTP ingest and the query API.
    ///
    /// Example: auditlog auditor --store-url sqlite://auditlog-data/audit.db
    Auditor(AuditorArgs),
    /// Run the website alone; it proxies API calls to the primary API.
    ///
    /// Example: auditlog web --api-url http://127.0.0.1:3000
    Web(WebArgs),
}

#[derive(Debug, Clone, Args)]
struct DataDirArg {
    /// Where SQLite files and the token signing key live (created if missing).
    #[arg(long, env = "AUDITLOG_DATA_DIR", default_value = "auditlog-data")]
    data_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
struct UpArgs {
    #[command(flatten)]
    data: DataDirArg,
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
    #[arg(long, env = "AUDITLOG_STORE_URL")]
    store_url: Option<String>,
    /// The primary API's database; defaults to sqlite://DATA_DIR/app.db.
    #[arg(long, env = "AUDITLOG_APP_DB_URL")]
    app_db_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
struct ApiArgs {
    #[command(flatten)]
    data: DataDirArg,
    #[arg(long, env = "AUDITLOG_API_ADDR", default_value = "127.0.0.1:3000")]
    api_addr: SocketAddr,
    /// Where the auditor listens: events are delivered and queries proxied there.
    #[arg(
        long,
        env = "AUDITLOG_AUDITOR_URL",
        default_value = "http://127.0.0.1:3001"
    )]
    auditor_url: String,
    #[arg(long, env = "AUDITLOG_APP_DB_URL")]
    app_db_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
struct AuditorArgs {
    #[command(flatten)]
    data: DataDirArg,
    #[arg(long, env = "AUDITLOG_AUDITOR_ADDR", default_value = "127.0.0.1:3001")]
    auditor_addr: SocketAddr,
    #[arg(long, env = "AUDITLOG_STORE_URL")]
    store_url: Option<String>,
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
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AUDITLOG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => run::up(args).await,
            Command::Api(args) => run::api(args).await,
            Command::Auditor(args) => run::auditor(args).await,
            Command::Web(args) => run::web(args).await,
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
