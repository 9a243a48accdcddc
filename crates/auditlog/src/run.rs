//! Wiring: opens stores and keys, binds listeners, starts the services and stops
//! them in order on Ctrl-C or SIGTERM (stop accepting, deliver what was emitted,
//! let the auditor store it, exit).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use auditlog_amqp::{AmqpConsumer, AmqpPublisher, ConsumerStatus};
use auditlog_auditor::AuditorState;
use auditlog_auth::{ExternalIssuer, KeyPair, Principal, Role, TokenIssuer, TokenVerifier};
use auditlog_emit::http::{HttpTransport, TokenSource};
use auditlog_emit::{Emitter, EmitterConfig, EmitterTask, Transport};
use auditlog_http::health::Readiness;
use auditlog_http::metrics::Metrics;
use auditlog_http::{AllowedHosts, ConnectionLimits, EdgeConfig};
use auditlog_primary_api::outbox::OutboxRelay;
use auditlog_primary_api::{ApiState, AppDb, Recorder};
use auditlog_web::WebState;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::FileSink;
use crate::scheduling::{AuditorPriority, CpuList};
use crate::{ApiArgs, Audit, AuditorArgs, BenchCommand, EdgeArgs, TokenArgs, UpArgs, WebArgs};

/// How long shutdown keeps trying to hand over what is queued or staged.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn up(args: UpArgs, file_sinks: (String, Vec<FileSink>)) -> Result<()> {
    let configured = configured_sinks(file_sinks)?;
    let data_dir = &args.data.data_dir;
    crate::hardening::private_data_dir(data_dir)?;
    let metrics = install_metrics()?;
    let (issuer, verifier) = keys(data_dir, &args.tokens)?;
    let edge = edge(&args.edge, 3)?;
    // The auditor's side (store, consumer, sealer, query API) runs on a runtime of
    // its own; SQLite's connection threads, started from it, inherit its priority.
    let background = BackgroundRuntime::start(args.auditor_priority, args.auditor_cpus.clone())?;
    let store = {
        let (dir, url) = (data_dir.clone(), args.store_url.clone());
        background
            .spawn(async move { open_store(&dir, url.as_deref()).await })
            .await
            .context("the auditor's runtime failed")??
    };
    let store = shredding(store, &args.log);
    let app_db = open_app_db(data_dir, args.app_db_url.as_deref()).await?;

    let (consumer_stop, consumer_stopped) = watch::channel(false);
    let mut consumer_status = None;
    let (transport, consumer): (Arc<dyn Transport>, _) = match args.amqp.config() {
        Some(config) => {
            let publisher = AmqpPublisher::new(config.clone(), auditlog_primary_api::SOURCE);
            publisher
                .connect()
                .await
                .context("while connecting to RabbitMQ")?;
            let inbox = background
                .spawn(AmqpConsumer::connect(config))
                .await
                .context("the auditor's runtime failed")?
                .context("while connecting the auditor to RabbitMQ")?;
            consumer_status = Some(inbox.status());
            let consumer = background.spawn(auditlog_auditor::consumer::run(
                inbox,
                store.clone(),
                wait(consumer_stopped),
            ));
            (Arc::new(publisher), consumer)
        }
        None => {
            let (transport, receiver) = auditlog_emit::embedded::channel(64);
            // The channel's only sender is this process's primary API.
            let receiver = receiver.sent_by(&service_principal_name());
            // The embedded consumer ends by itself once the emitter, its only
            // producer, is gone and everything it sent is stored.
            let consumer = background.spawn(auditlog_auditor::consumer::run(
                receiver,
                store.clone(),
                std::future::pending(),
            ));
            (Arc::new(transport), consumer)
        }
    };
    let (emitter, emitter_task) = start_emitter(transport.clone(), data_dir)?;
    let recorder = recorder(emitter, args.audit);

    let auditor_listener = bind(args.auditor_addr, "auditor").await?;
    let api_listener = bind(args.api_addr, "primary API").await?;
    let web_listener = bind(args.web_addr, "website").await?;
    let auditor_url = url_of(&auditor_listener)?;
    let api_url = url_of(&api_listener)?;
    let web_url = url_of(&web_listener)?;

    let (stop, stopped) = watch::channel(false);
    let transport_remedy = match consumer_status {
        Some(_) => AMQP_REMEDY,
        None => "restart auditlog: the in-process channel to the auditor is gone",
    };
    let relay = OutboxRelay::new(app_db.clone(), transport.clone(), &recorder);
    let relay = tokio::spawn(relay.run(wait(stopped.clone()), SHUTDOWN_GRACE));
    let sealer = {
        let (store, dir, log) = (store.clone(), data_dir.clone(), args.log.clone());
        background
            .spawn(async move { start_sealer(&store, &dir, &log).await })
            .await
            .context("the auditor's runtime failed")??
    };
    let log_key = sealer.key.clone();
    let sealer_status = sealer.status.clone();
    let sealer = background.spawn(auditlog_auditor::log::run_sealer(
        sealer.sealer,
        auditlog_auditor::log::SEAL_EVERY,
        wait(stopped.clone()),
    ));
    let sinks = {
        let (store, dir) = (store.clone(), data_dir.clone());
        background
            .spawn(async move { start_sinks(&store, &dir, &configured).await })
            .await
            .context("the auditor's runtime failed")??
    };
    let sinks_task = background.spawn(sinks.clone().run(wait(stopped.clone())));
    let retention = retention_of(&args.log);
    background.spawn(auditlog_auditor::retention::run(
        store.clone(),
        retention,
        stopped.clone(),
    ));
    let mut auditor_state = AuditorState::new(store, verifier.clone(), stopped.clone())
        .with_retention(retention)
        .with_metrics(metrics.clone())
        .with_log_key(log_key)
        .with_sinks(sinks)
        .with_token_issuer(issuer.clone())
        .with_clock_skew_tolerance(args.log.clock_skew_tolerance);
    auditor_state.readiness = consumer_check(auditor_state.readiness, consumer_status);
    auditor_state.readiness =
        auditlog_auditor::log::sealer_check(auditor_state.readiness, sealer_status);
    let auditor = auditlog_auditor::router(auditor_state);
    let mut api_state = ApiState::new(
        app_db,
        recorder,
        issuer,
        verifier,
        auditor_url.clone(),
        &auditlog_auditor::openapi::document(),
    )
    .with_dev_tokens(args.dev_tokens)
    .with_dev_token_hosts(AllowedHosts::local(
        &[args.api_addr, args.web_addr],
        &args.edge.dev_token_hosts,
    ))
    .with_metrics(metrics.clone());
    api_state.readiness = transport_check(api_state.readiness, transport, transport_remedy);
    let api = auditlog_primary_api::router(api_state);
    let web = auditlog_web::router(
        WebState::new(&api_url)
            .with_metrics(metrics)
            .with_token_hosts(AllowedHosts::local(
                &[args.api_addr, args.web_addr],
                &args.edge.dev_token_hosts,
            )),
    );
    let (auditor, api, web) = (
        edge_of(auditor, &edge, "auditor"),
        edge_of(api, &edge, "api"),
        edge_of(web, &edge, "web"),
    );
    let servers = [
        background.spawn(auditlog_http::serve(
            auditor_listener,
            auditor,
            "auditor",
            edge.connections,
            wait(stopped.clone()),
        )),
        tokio::spawn(auditlog_http::serve(
            api_listener,
            api,
            "api",
            edge.connections,
            wait(stopped.clone()),
        )),
        tokio::spawn(auditlog_http::serve(
            web_listener,
            web,
            "web",
            edge.connections,
            wait(stopped),
        )),
    ];

    announce(&format!(
        "auditlog is up (data in {})\n  website      {web_url}\n  primary API  {api_url}\n  \
         auditor      {auditor_url}\nPress Ctrl-C to stop.",
        data_dir.display()
    ));

    shutdown_signal().await;
    tracing::info!("stopping: no new requests; delivering emitted events");
    let _ = stop.send(true);
    for server in servers {
        server.await.context("a server task failed")??;
    }
    relay.await.context("the outbox relay failed")?;
    sealer.await.context("the sealer failed")?;
    sinks_task.await.context("the sinks' supervisor failed")?;
    finish_emitter(emitter_task).await;
    let _ = consumer_stop.send(true);
    consumer.await.context("the consumer task failed")?;
    drop(background);
    tracing::info!("stopped cleanly");
    Ok(())
}

/// A multi-threaded runtime whose threads run at a lower scheduling priority, and
/// on the given CPUs if any. Threads started from them, such as SQLite's connection
/// threads, inherit both.
/// Dropping it stops it without waiting, which is allowed inside the main runtime
/// (dropping a `Runtime` there would panic).
struct BackgroundRuntime {
    /// Taken out only by `drop`.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl BackgroundRuntime {
    fn start(priority: AuditorPriority, cpus: Option<CpuList>) -> Result<Self> {
        if let Some(cpus) = &cpus {
            cpus.check_available()
                .map_err(|err| anyhow::anyhow!("--auditor-cpus {cpus}: {err}"))?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("auditlog-auditor")
            .enable_all()
            .on_thread_start(move || {
                if let Err(err) = priority.apply_to_current_thread() {
                    tracing::warn!(%err, %priority, "could not lower the auditor's thread priority; it runs at the primary API's");
                }
                if let Some(Err(err)) = cpus.as_ref().map(CpuList::apply_to_current_thread) {
                    tracing::warn!(%err, "could not confine the auditor's threads to --auditor-cpus; they run on any CPU");
                }
            })
            .build()
            .context("while starting the auditor's runtime")?;
        Ok(BackgroundRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

pub async fn api(args: ApiArgs) -> Result<()> {
    let data_dir = &args.data.data_dir;
    crate::hardening::private_data_dir(data_dir)?;
    let metrics = install_metrics()?;
    let (issuer, verifier) = keys(data_dir, &args.tokens)?;
    let edge = edge(&args.edge, 1)?;
    let app_db = open_app_db(data_dir, args.app_db_url.as_deref()).await?;
    let (transport, transport_remedy): (Arc<dyn Transport>, _) = match args.amqp.config() {
        Some(config) => {
            let publisher = AmqpPublisher::new(config, auditlog_primary_api::SOURCE);
            publisher
                .connect()
                .await
                .context("while connecting to RabbitMQ")?;
            (Arc::new(publisher), AMQP_REMEDY)
        }
        None => (
            Arc::new(HttpTransport::new(
                &args.auditor_url,
                service_token(issuer.clone()),
            )),
            "start the auditor, or point the primary API at it (--auditor-url); \
             meanwhile events wait in the spill directory",
        ),
    };
    let (emitter, emitter_task) = start_emitter(transport.clone(), data_dir)?;
    let recorder = recorder(emitter, args.audit);
    let (stop, stopped) = watch::channel(false);
    let relay = OutboxRelay::new(app_db.clone(), transport.clone(), &recorder);
    let relay = tokio::spawn(relay.run(wait(stopped.clone()), SHUTDOWN_GRACE));
    let listener = bind(args.api_addr, "primary API").await?;
    let url = url_of(&listener)?;
    let mut state = ApiState::new(
        app_db,
        recorder,
        issuer,
        verifier,
        args.auditor_url.clone(),
        &auditlog_auditor::openapi::document(),
    )
    .with_dev_tokens(args.dev_tokens)
    .with_dev_token_hosts(AllowedHosts::local(
        &[args.api_addr],
        &args.edge.dev_token_hosts,
    ))
    .with_metrics(metrics);
    state.readiness = transport_check(state.readiness, transport, transport_remedy);
    let router = edge_of(auditlog_primary_api::router(state), &edge, "api");
    announce(&format!(
        "  primary API  {url}  (auditor at {})",
        args.auditor_url
    ));
    let server = tokio::spawn(auditlog_http::serve(
        listener,
        router,
        "api",
        edge.connections,
        wait(stopped),
    ));
    shutdown_signal().await;
    let _ = stop.send(true);
    server.await.context("the server task failed")??;
    relay.await.context("the outbox relay failed")?;
    finish_emitter(emitter_task).await;
    Ok(())
}

pub async fn auditor(args: AuditorArgs, file_sinks: (String, Vec<FileSink>)) -> Result<()> {
    let configured = configured_sinks(file_sinks)?;
    let data_dir = &args.data.data_dir;
    crate::hardening::private_data_dir(data_dir)?;
    let metrics = install_metrics()?;
    let (issuer, verifier) = keys(data_dir, &args.tokens)?;
    let edge = edge(&args.edge, 1)?;
    let store = shredding(
        open_store(data_dir, args.store_url.as_deref()).await?,
        &args.log,
    );
    let query_store = match args.query_store_url.as_deref() {
        Some(url) => Some(shredding(
            auditlog_store::open_read_only(url).await.with_context(|| {
                format!(
                    "while opening the query store {}",
                    auditlog_store::redact(url)
                )
            })?,
            &args.log,
        )),
        None => None,
    };
    let listener = bind(args.auditor_addr, "auditor").await?;
    let url = url_of(&listener)?;
    let (stop, stopped) = watch::channel(false);
    let mut consumer_status = None;
    let consumer = match args.amqp.config() {
        Some(config) => {
            let inbox = AmqpConsumer::connect(config)
                .await
                .context("while connecting the auditor to RabbitMQ")?;
            consumer_status = Some(inbox.status());
            Some(tokio::spawn(auditlog_auditor::consumer::run(
                inbox,
                store.clone(),
                wait(stopped.clone()),
            )))
        }
        None => None,
    };
    let sealer = start_sealer(&store, data_dir, &args.log).await?;
    let log_key = sealer.key.clone();
    let sealer_status = sealer.status.clone();
    let sealer = tokio::spawn(auditlog_auditor::log::run_sealer(
        sealer.sealer,
        auditlog_auditor::log::SEAL_EVERY,
        wait(stopped.clone()),
    ));
    let sinks = start_sinks(&store, data_dir, &configured).await?;
    let sinks_task = tokio::spawn(sinks.clone().run(wait(stopped.clone())));
    let retention = retention_of(&args.log);
    tokio::spawn(auditlog_auditor::retention::run(
        store.clone(),
        retention,
        stopped.clone(),
    ));
    let mut state = AuditorState::new(store, verifier, stopped.clone())
        .with_retention(retention)
        .with_metrics(metrics)
        .with_log_key(log_key)
        .with_sinks(sinks)
        .with_token_issuer(issuer)
        .with_clock_skew_tolerance(args.log.clock_skew_tolerance);
    if let Some(query_store) = query_store {
        state = state.with_query_store(query_store);
    }
    state.readiness = consumer_check(state.readiness, consumer_status);
    state.readiness = auditlog_auditor::log::sealer_check(state.readiness, sealer_status);
    let router = edge_of(auditlog_auditor::router(state), &edge, "auditor");
    announce(&format!("  auditor      {url}"));
    let server = tokio::spawn(auditlog_http::serve(
        listener,
        router,
        "auditor",
        edge.connections,
        wait(stopped),
    ));
    shutdown_signal().await;
    let _ = stop.send(true);
    server.await.context("the server task failed")??;
    sealer.await.context("the sealer failed")?;
    sinks_task.await.context("the sinks' supervisor failed")?;
    if let Some(consumer) = consumer {
        consumer.await.context("the consumer task failed")?;
    }
    Ok(())
}

/// The config file's `[[sinks]]`, checked as the API checks a new sink (secrets
/// read from the environment variables they name), before anything starts: a
/// bad one stops the start with its file, line, name and field.
fn configured_sinks(
    (path, tables): (String, Vec<FileSink>),
) -> Result<Vec<auditlog_sinks::configured::ConfiguredSink>> {
    tables
        .iter()
        .map(|sink| {
            auditlog_sinks::configured::ConfiguredSink::parse(&sink.table, |variable| {
                std::env::var(variable).ok()
            })
            .map_err(|error| {
                anyhow::anyhow!(
                    "{path}:{}: the sink `{}` cannot be used: {error}",
                    sink.line,
                    sink.name
                )
            })
        })
        .collect()
}

/// The sinks this auditor delivers, after the config file's `configured` ones
/// were made or updated in the store (the others are left as they are). Their
/// leases name this auditor by an id kept in the data directory (`auditor-id`,
/// made at first start), so that an auditor restarted after a crash takes its
/// sinks back at once instead of waiting for their leases to run out.
async fn start_sinks(
    store: &Arc<dyn auditlog_store::AuditStore>,
    data_dir: &Path,
    configured: &[auditlog_sinks::configured::ConfiguredSink],
) -> Result<auditlog_sinks::Sinks> {
    for sink in configured {
        let applied = sink
            .apply(store.as_ref())
            .await
            .with_context(|| format!("while applying the config file's sink `{}`", sink.name))?;
        tracing::info!(sink = %sink.name, ?applied, "sink from the config file");
    }
    let path = data_dir.join("auditor-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
        Ok(_) => write_auditor_id(&path)?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => write_auditor_id(&path)?,
        Err(err) => {
            return Err(err).with_context(|| format!("while reading {}", path.display()));
        }
    };
    auditlog_sinks::Sinks::new(store.clone(), id).context("while starting the sinks")
}

/// A new auditor id, written to `path`.
fn write_auditor_id(path: &Path) -> Result<String> {
    let id = format!("auditor-{}", uuid::Uuid::now_v7());
    std::fs::write(path, &id).with_context(|| format!("while writing {}", path.display()))?;
    Ok(id)
}

/// A sealer ready to run, with what the auditor's routes and `/readyz` need of it.
struct StartedSealer {
    sealer: auditlog_auditor::log::Sealer,
    /// The note verifier key `GET /log/key` serves.
    key: String,
    status: auditlog_auditor::log::SealerStatus,
}

/// Opens the log's identity in `data_dir` (its origin from the store's latest
/// checkpoint when the directory has signed none) and makes the sealer.
async fn start_sealer(
    store: &Arc<dyn auditlog_store::AuditStore>,
    data_dir: &Path,
    args: &crate::LogArgs,
) -> Result<StartedSealer> {
    let store_origin = store
        .latest_checkpoint()
        .await
        .context("while reading the store's latest checkpoint")?
        .and_then(|stored| auditlog_tlog::SignedNote::parse(&stored.note).ok())
        .and_then(|note| auditlog_tlog::Checkpoint::parse(&note.text).ok())
        .map(|checkpoint| checkpoint.origin);
    let identity = auditlog_auditor::log::LogIdentity::open(
        data_dir,
        args.log_origin.as_deref(),
        store_origin,
    )
    .context("while opening the log's checkpoint key")?;
    let key = identity.verifier().to_string();
    let status = auditlog_auditor::log::SealerStatus::default();
    Ok(StartedSealer {
        sealer: auditlog_auditor::log::Sealer::new(store.clone(), identity, status.clone()),
        key,
        status,
    })
}

pub async fn web(args: WebArgs) -> Result<()> {
    let metrics = install_metrics()?;
    let listener = bind(args.web_addr, "website").await?;
    let url = url_of(&listener)?;
    announce(&format!(
        "  website      {url}  (primary API at {})",
        args.api_url
    ));
    let router = auditlog_web::router(
        WebState::new(&args.api_url)
            .with_metrics(metrics)
            .with_token_hosts(AllowedHosts::local(
                &[args.web_addr],
                &args.edge.dev_token_hosts,
            )),
    );
    let edge = edge(&args.edge, 1)?;
    let router = edge_of(router, &edge, "web");
    auditlog_http::serve(listener, router, "web", edge.connections, shutdown_signal()).await?;
    Ok(())
}

fn recorder(emitter: Emitter, audit: Audit) -> Recorder {
    match audit {
        Audit::On => Recorder::new(emitter),
        Audit::Off => {
            tracing::warn!("auditing is OFF: nothing the primary API does is recorded");
            Recorder::disabled()
        }
    }
}

pub async fn bench(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Ingest(args) => {
            let options = auditlog_bench::ingest::IngestOptions {
                events: args.events,
                producers: args.producers,
                batch: args.batch,
                changed_ratio: args.changed_ratio,
                store_url: args.store_url,
                amqp_url: args.amqp_url,
                message_format: args.message_format,
                progress: !args.json,
                auditors: 1,
                ceiling: true,
                auditor_dir: None,
                // The value parser admits only the names `QueueType` parses.
                queue_type: args.amqp_queue_type.parse().unwrap_or_default(),
                personal_fields: args.personal_fields,
            };
            if let Some(counts) = args.auditors {
                let counts: Vec<usize> = counts.into_iter().map(usize::from).collect();
                let report = auditlog_bench::ingest::run_scaling(options, &counts).await?;
                print(&report, args.json, report.table())?;
                let (lost, duplicated) = report
                    .runs
                    .iter()
                    .fold((0, 0), |(l, d), run| (l + run.lost, d + run.duplicated));
                if lost > 0 || duplicated > 0 {
                    anyhow::bail!("{lost} events lost and {duplicated} duplicated");
                }
                return Ok(());
            }
            let report = auditlog_bench::ingest::run(options).await?;
            print(&report, args.json, report.table())?;
            if report.lost > 0 || report.duplicated > 0 {
                anyhow::bail!(
                    "{} events lost and {} duplicated",
                    report.lost,
                    report.duplicated
                );
            }
        }
        BenchCommand::Query(args) => {
            let report = auditlog_bench::query::run(auditlog_bench::query::QueryOptions {
                sizes: args.events,
                store_url: args.store_url,
                samples: args.samples,
                progress: !args.json,
                http: args.http.then(|| auditlog_bench::query_http::HttpOptions {
                    clients: args.http_clients,
                    duration: Duration::from_secs(args.http_duration.max(1)),
                    server_binary: args.server_binary,
                }),
            })
            .await?;
            print(&report, args.json, report.table())?;
        }
        BenchCommand::Api(args) => {
            let report = auditlog_bench::api::run(auditlog_bench::api::ApiOptions {
                duration: Duration::from_secs(args.duration.max(1)),
                connections: args.connections,
                amqp_url: args.amqp_url,
                only: args.only,
                rounds: args.rounds,
            })
            .await?;
            print(&report, args.json, report.table())?;
        }
    }
    Ok(())
}

fn print(report: &impl serde::Serialize, json: bool, table: String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{table}");
    }
    Ok(())
}

/// The data directory's signing key, and a verifier trusting it plus the external
/// issuer's keys given by `tokens`.
fn keys(data_dir: &Path, tokens: &TokenArgs) -> Result<(TokenIssuer, TokenVerifier)> {
    let pair = KeyPair::load_or_generate(data_dir)
        .with_context(|| format!("while loading the signing key in {}", data_dir.display()))?;
    let mut verifier = TokenVerifier::new(&pair)?;
    let external = ExternalIssuer {
        issuer: tokens.token_issuer.clone(),
        audience: tokens.token_audience.clone(),
    };
    if let Some(path) = &tokens.token_public_key {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("while reading the token public key {}", path.display()))?;
        verifier = verifier.trust_pem(&pem, &external, &path.display().to_string())?;
    }
    if let Some(path) = &tokens.token_jwks {
        let jwks = std::fs::read_to_string(path)
            .with_context(|| format!("while reading the token JWKS {}", path.display()))?;
        verifier = verifier.trust_jwks(&jwks, &external, &path.display().to_string())?;
    }
    Ok((TokenIssuer::new(&pair)?, verifier))
}

/// What to do when the RabbitMQ transport is not ready.
const AMQP_REMEDY: &str =
    "check that RabbitMQ runs and accepts this service's credentials (--amqp-url)";

/// Installs the process's metrics registry (once: the three services of `up`
/// share it) and keeps its histograms folded in the background.
fn install_metrics() -> Result<Metrics> {
    let metrics =
        auditlog_http::metrics::install().context("while installing the metrics registry")?;
    // Descriptions reach only the recorder installed when they are given.
    auditlog_emit::describe_metrics();
    auditlog_amqp::describe_metrics();
    auditlog_auditor::describe_metrics();
    tokio::spawn(metrics.clone().upkeep());
    Ok(metrics)
}

/// A service's router behind its hardened edge, every request counted and timed
/// under `service` (outermost, so that the edge's own refusals count too).
fn edge_of(router: axum::Router, edge: &EdgeConfig, service: &'static str) -> axum::Router {
    auditlog_http::metrics::track(auditlog_http::harden(router, edge), service)
}

/// `readiness` plus a check that `transport` could deliver now.
fn transport_check(
    readiness: Readiness,
    transport: Arc<dyn Transport>,
    remedy: &'static str,
) -> Readiness {
    readiness.with_check("transport", remedy, move || {
        let transport = transport.clone();
        async move { transport.probe().await.map_err(|e| e.to_string()) }
    })
}

/// `readiness` plus, when the auditor consumes from RabbitMQ, a check that its
/// consumer is connected.
fn consumer_check(readiness: Readiness, status: Option<ConsumerStatus>) -> Readiness {
    let Some(status) = status else {
        return readiness;
    };
    readiness.with_check("consumer", AMQP_REMEDY, move || {
        let connected = status.is_connected();
        async move {
            if connected {
                Ok(())
            } else {
                Err("the consumer is not connected to RabbitMQ; it keeps reconnecting".into())
            }
        }
    })
}

/// The hardening of every service's edge: the allowed browser origins.
/// The edge of `services` services sharing this process's descriptors.
fn edge(args: &EdgeArgs, services: u64) -> Result<EdgeConfig> {
    let mut edge = EdgeConfig::with_origins(&args.web_origin)
        .map_err(|e| anyhow::anyhow!("--web-origin: {e}"))?;
    let budget = crate::hardening::connection_budget(services).unwrap_or(u32::MAX);
    let max_connections = match args.http_max_connections {
        None => budget.min(auditlog_http::server::MAX_CONNECTIONS),
        Some(asked) if asked > budget => {
            tracing::warn!(
                asked,
                allowed = budget,
                "the open-file limit allows fewer connections than --http-max-connections; \
                 raise the hard limit (ulimit -Hn, LimitNOFILE=) to allow more"
            );
            budget
        }
        Some(asked) => asked,
    };
    edge.connections = ConnectionLimits {
        header_timeout: Duration::from_secs_f64(args.http_header_timeout),
        max_connections,
    };
    Ok(edge)
}

async fn open_store(
    data_dir: &Path,
    url: Option<&str>,
) -> Result<Arc<dyn auditlog_store::AuditStore>> {
    let url = url
        .map(str::to_owned)
        .unwrap_or_else(|| sqlite_url(data_dir, "audit.db"));
    auditlog_store::open(&url).await.with_context(|| {
        format!(
            "while opening the audit store {}",
            auditlog_store::redact(&url)
        )
    })
}

/// `store` as the auditor uses it: the personal values of `log`'s
/// `--personal-fields` encrypted on the way in, decrypted (or erased) on the way
/// out.
fn shredding(
    store: Arc<dyn auditlog_store::AuditStore>,
    log: &crate::LogArgs,
) -> Arc<dyn auditlog_store::AuditStore> {
    Arc::new(auditlog_auditor::personal::store::ShreddingStore::new(
        store,
        log.personal_fields.clone(),
    ))
}

async fn open_app_db(data_dir: &Path, url: Option<&str>) -> Result<AppDb> {
    let url = url
        .map(str::to_owned)
        .unwrap_or_else(|| sqlite_url(data_dir, "app.db"));
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("while creating {}", data_dir.display()))?;
    Ok(AppDb::open(&url).await?)
}

fn sqlite_url(data_dir: &Path, file: &str) -> String {
    format!("sqlite://{}", data_dir.join(file).display())
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("the {what} could not listen on {addr}; is another process using it? choose another address with the flag or environment variable")
    })
}

fn url_of(listener: &TcpListener) -> Result<String> {
    Ok(format!("http://{}", listener.local_addr()?))
}

/// The primary API's service principal as the log names it (`services/api`).
fn service_principal_name() -> String {
    Principal::new(auditlog_primary_api::SOURCE.into(), Role::Service)
        .map_or_else(|| "services/api".to_owned(), |p| p.name())
}

/// A token source that mints a short-lived service token and renews it well before
/// it expires.
fn service_token(issuer: TokenIssuer) -> TokenSource {
    let cached: Mutex<Option<(Instant, String)>> = Mutex::new(None);
    Arc::new(move || {
        let mut cached = cached.lock().ok()?;
        let fresh = cached
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(10 * 60));
        if !fresh {
            // The primary API delivers the events of every tenant it serves.
            let principal = Principal::new(auditlog_primary_api::SOURCE.into(), Role::Service)?
                .in_tenant(auditlog_auth::ANY_TENANT);
            match issuer.issue(&principal) {
                Ok(token) => *cached = Some((Instant::now(), token)),
                Err(err) => {
                    tracing::error!(%err, "could not mint a service token");
                    return None;
                }
            }
        }
        cached.as_ref().map(|(_, token)| token.clone())
    })
}

/// The emitter of the primary API, spilling to `DATA_DIR/spill/api` when the
/// transport cannot keep up or is down.
fn start_emitter(transport: Arc<dyn Transport>, data_dir: &Path) -> Result<(Emitter, EmitterTask)> {
    let spill_dir = data_dir.join("spill").join(auditlog_primary_api::SOURCE);
    let config = EmitterConfig {
        spill_dir: Some(spill_dir.clone()),
        producer_id: Some(auditlog_emit::new_producer_id(auditlog_primary_api::SOURCE)),
        ..EmitterConfig::default()
    };
    Emitter::start(transport, config).with_context(|| {
        format!(
            "while opening the emitter's spill directory {}",
            spill_dir.display()
        )
    })
}

async fn finish_emitter(task: EmitterTask) {
    let stats = task.shutdown().await;
    tracing::info!(
        delivered = stats.delivered(),
        dropped = stats.dropped(),
        "audit events delivered"
    );
}

/// Tells whoever started the service where it listens. A service must not stop
/// because nobody reads its standard output any more (`println!` would panic on
/// a closed pipe), so a failed write is ignored.
fn announce(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// The retention the log settings ask for.
fn retention_of(log: &crate::LogArgs) -> auditlog_auditor::retention::RetentionConfig {
    auditlog_auditor::retention::RetentionConfig {
        default_days: log.retention_days,
        interval: log.prune_interval,
    }
}

async fn wait(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
