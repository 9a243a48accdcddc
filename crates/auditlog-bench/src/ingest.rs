//! `auditlog bench ingest`: N events from P emitters through the configured
//! transport into the auditor and its store, measured end to end, checked for lost
//! events (by id) and duplicated ones (by producer and sequence number), and
//! compared with the store's own bulk-load ceiling measured in the same run. The
//! auditor seals what it stores as it does in production; once the last
//! checkpoint is signed, the run reads back from the store how long each event
//! waited for one (the `lag` module).
//!
//! On RabbitMQ the auditor is a process of its own (`auditlog auditor`), or
//! several sharing the run's queue and store ([`IngestOptions::auditors`]); the
//! run then also reports the CPU time each process spent per stored event (the
//! auditors, the database server, RabbitMQ, the producers). [`run_scaling`] runs
//! it for several numbers of auditors in turn and models what they would store
//! on a machine with cores enough for each.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use auditlog_amqp::{AmqpConfig, AmqpPublisher, SingleEventPublisher};
use auditlog_emit::{Emitter, EmitterConfig, Transport};
use auditlog_event::{DataEvent, MessageIds};
use auditlog_store::{AuditStore, EventQuery};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::ceiling;
use crate::stats::{Percentiles, own_peak_rss_kib, peak_rss_kib, percentiles};
use crate::workload::Workload;

/// What to run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub events: u64,
    pub producers: usize,
    /// Most events per transport batch.
    pub batch: usize,
    /// Share of `changed` events (with two fields); the rest are `viewed`.
    pub changed_ratio: f64,
    /// The store; a fresh SQLite file when absent. The run adds N events to it.
    pub store_url: Option<String>,
    /// RabbitMQ; the embedded transport when absent.
    pub amqp_url: Option<String>,
    /// How producers shape their messages.
    pub message_format: MessageFormat,
    /// Show a progress bar (off for `--json`).
    pub progress: bool,
    /// Auditor processes consuming the run's queue into the store (RabbitMQ only;
    /// at least 1).
    pub auditors: usize,
    /// Measure the store's bulk-load ceiling after the run (a second load of as
    /// many events); the ceiling fields are 0 without it.
    pub ceiling: bool,
    /// The auditor processes' data directory (their log key); a fresh one in the
    /// run's scratch directory when absent. Runs into one store share one, or the
    /// second run's sealer finds checkpoints signed by a key it does not know.
    pub auditor_dir: Option<std::path::PathBuf>,
    /// The type of the run's RabbitMQ queues (they are new for each run).
    pub queue_type: auditlog_amqp::QueueType,
    /// Personal fields the in-process auditor encrypts, as `auditlog up` does
    /// with `--personal-fields` (embedded transport only): `None` stores events
    /// as they come, so that two runs give the cost of encryption on ingest.
    pub personal_fields: Option<auditlog_auditor::personal::PersonalFields>,
}

/// How the run's producers put events into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    /// Our emitters: batches of numbered events with ids, one JSON array per message.
    #[default]
    Batch,
    /// The prototype's producers: one event per message, without an id or a
    /// producer number (the auditor derives the id from the message's bytes).
    /// RabbitMQ only.
    Single,
}

impl std::str::FromStr for MessageFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "batch" => Ok(MessageFormat::Batch),
            "single" => Ok(MessageFormat::Single),
            other => Err(format!(
                "unknown message format `{other}`: use `batch` (our emitters) or `single` (one event per message, as the prototype's producers send)"
            )),
        }
    }
}

/// What a run measured. Field names are stable across commits (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub events: u64,
    pub producers: usize,
    pub message_format: MessageFormat,
    pub transport: String,
    pub store: String,
    pub lost: u64,
    pub duplicated: u64,
    pub dropped_by_emitters: u64,
    pub spilled_by_emitters: u64,
    pub emitted_per_sec: f64,
    pub stored_per_sec: f64,
    pub ceiling_per_sec: f64,
    pub fraction_of_ceiling: f64,
    /// Single-event messages only: the same number of the same messages published
    /// by as many connections and consumed with nothing done to them, in the same
    /// run: what RabbitMQ itself can carry on this machine.
    pub broker_ceiling_per_sec: Option<f64>,
    pub fraction_of_broker_ceiling: Option<f64>,
    pub emit_p50_ns: u64,
    pub emit_p99_ns: u64,
    pub freshness_p50_ms: f64,
    pub freshness_p99_ms: f64,
    pub freshness_samples: usize,
    /// The run's events sealed, over the seconds from the run's start to the
    /// signing of the checkpoint that covered the last of them: close to
    /// `stored_per_sec` when sealing keeps pace with storing.
    pub sealed_per_sec: f64,
    /// From an event's commit (`receivedAt`) to the signing of the first
    /// checkpoint that covers its leaf, over every sealed event of the run (ms).
    pub checkpoint_lag_p50_ms: u64,
    pub checkpoint_lag_p99_ms: u64,
    pub checkpoint_lag_max_ms: u64,
    /// The run's events found sealed (the lag's samples).
    pub checkpoint_lag_samples: u64,
    /// The lag of the events committed after the producers' last `emit()`
    /// returned: while they emit their burst (a few seconds at hundreds of
    /// thousands a second) they take the cores the sealer runs on; after it the
    /// auditor only drains, storing and sealing at its own pace.
    pub checkpoint_lag_after_emitting_p50_ms: u64,
    pub checkpoint_lag_after_emitting_p99_ms: u64,
    pub checkpoint_lag_after_emitting_samples: u64,
    /// Leaves in the tree and the size of the latest checkpoint once the bench
    /// stopped waiting for the sealer.
    pub tree_size: u64,
    pub checkpoint_size: u64,
    /// Whether the tree then held every stored event, and the latest checkpoint
    /// the whole tree.
    pub tree_caught_up: bool,
    pub bench_peak_rss_kib: u64,
    /// The largest peak of the auditor processes (RabbitMQ runs).
    pub auditor_peak_rss_kib: Option<u64>,
    /// Auditor processes (1 in process for the embedded transport).
    pub auditors: usize,
    /// CPU time per stored event of each process involved, from the first emit to
    /// the last event stored (RabbitMQ runs).
    pub cpu_per_event: Option<CpuPerEvent>,
    pub seconds: f64,
}

/// CPU time (user + system) each process spent per stored event, in µs, from the
/// first emit to the last event stored. Everything else running on the machine
/// meanwhile (other databases of the same server, other queues of the same
/// broker) counts too.
#[derive(Debug, Clone, Serialize)]
pub struct CpuPerEvent {
    /// Each auditor process, in the order they were started.
    pub auditors_us: Vec<f64>,
    /// The auditors together: what storing one event cost on the auditors' side.
    pub auditors_total_us: f64,
    /// The database server's processes (`postgres` or `mariadbd`/`mysqld`, found
    /// by name in `/proc`); `None` for SQLite, which runs inside the auditor.
    pub store_server: Option<String>,
    pub store_server_us: Option<f64>,
    /// RabbitMQ's Erlang VM (`beam.smp`).
    pub rabbitmq_us: f64,
    /// This process: the producers (and the run's own checks).
    pub producers_us: f64,
}

/// CPU time spent so far by each process a RabbitMQ run involves (ns).
#[derive(Debug, Clone)]
struct CpuReading {
    auditors: Vec<u64>,
    store_server: Option<u64>,
    rabbitmq: u64,
    producers: u64,
}

impl CpuReading {
    fn now(auditors: &[Child], store_server: Option<&str>) -> CpuReading {
        CpuReading {
            auditors: auditors
                .iter()
                .map(|child| crate::cpu::process_ns(child.id()).unwrap_or(0))
                .collect(),
            store_server: store_server.map(crate::cpu::named_ns),
            rabbitmq: crate::cpu::named_ns("beam.smp"),
            producers: crate::cpu::process_ns(std::process::id()).unwrap_or(0),
        }
    }

    /// What was spent between `earlier` and this reading, per event of `events`.
    fn per_event(&self, earlier: &CpuReading, events: u64, server: Option<&str>) -> CpuPerEvent {
        let us = |now: u64, then: u64| now.saturating_sub(then) as f64 / 1_000.0 / events as f64;
        let auditors_us: Vec<f64> = self
            .auditors
            .iter()
            .zip(&earlier.auditors)
            .map(|(now, then)| us(*now, *then))
            .collect();
        CpuPerEvent {
            auditors_total_us: auditors_us.iter().sum(),
            auditors_us,
            store_server: server.map(str::to_owned),
            store_server_us: self
                .store_server
                .zip(earlier.store_server)
                .map(|(now, then)| us(now, then)),
            rabbitmq_us: us(self.rabbitmq, earlier.rabbitmq),
            producers_us: us(self.producers, earlier.producers),
        }
    }
}

/// The name of the database server's processes for a store URL, if it has a
/// server on this machine to measure: PostgreSQL's backends are all `postgres`,
/// MariaDB's one process `mariadbd` (`mysqld` for MySQL).
fn store_server_process(store_url: &str) -> Option<&'static str> {
    match auditlog_store::Engine::of_url(store_url)? {
        auditlog_store::Engine::Postgres => Some("postgres"),
        auditlog_store::Engine::MySql => Some(if crate::cpu::pids_named("mariadbd").is_empty() {
            "mysqld"
        } else {
            "mariadbd"
        }),
        auditlog_store::Engine::Sqlite => None,
    }
}

/// Every 1 000th event is watched until it can be queried.
const FRESHNESS_SAMPLE_EVERY: u64 = 1_000;
/// How often the freshness watcher looks at least, and at most.
const FRESHNESS_POLL: Duration = Duration::from_millis(5);
const FRESHNESS_POLL_MAX: Duration = Duration::from_millis(50);
/// How often the wait for the last events looks for them, at most.
const STORED_POLL_MAX: Duration = Duration::from_millis(20);
/// How long the store may store nothing while the bench waits for the last
/// events: events still missing then are reported as lost rather than waited for.
const STALL_PATIENCE: Duration = Duration::from_secs(30);
/// How often the wait for the last events looks whether the store still moves.
const PROGRESS_POLL: Duration = Duration::from_millis(100);
/// How often the wait for the last checkpoint looks for it.
const CHECKPOINT_POLL: Duration = Duration::from_millis(50);

pub async fn run(options: IngestOptions) -> Result<IngestReport> {
    if options.producers == 0 || options.events == 0 {
        bail!("--events and --producers must be at least 1");
    }
    if options.auditors == 0 || (options.auditors > 1 && options.amqp_url.is_none()) {
        bail!(
            "--auditors needs --amqp-url and at least 1: several auditor processes share one \
             RabbitMQ queue"
        );
    }
    if options.message_format == MessageFormat::Single && options.amqp_url.is_none() {
        bail!(
            "--message-format single needs --amqp-url: one event per message is how the \
             prototype's producers publish to RabbitMQ"
        );
    }
    let scratch = tempfile::tempdir().context("while creating a scratch directory")?;
    let (store_url, store) =
        crate::open_store(options.store_url.as_deref(), scratch.path()).await?;
    let store: Arc<dyn auditlog_store::AuditStore> = match &options.personal_fields {
        None => store,
        Some(_) if options.amqp_url.is_some() => {
            bail!("--personal-fields is measured with the in-process auditor: leave out --amqp-url")
        }
        Some(fields) => Arc::new(auditlog_auditor::personal::store::ShreddingStore::new(
            store,
            fields.clone(),
        )),
    };

    let run_tag = Uuid::now_v7().simple().to_string();
    // The run's own RabbitMQ names, deleted when it is over.
    let mut topology: Option<AmqpConfig> = None;
    let (seal_now, stop_sealing) = tokio::sync::oneshot::channel::<()>();
    let (transport, auditors, in_process): (Arc<dyn Transport>, Vec<Child>, _) =
        match &options.amqp_url {
            None => {
                let (transport, receiver) = auditlog_emit::embedded::channel(64);
                let consumer = tokio::spawn(auditlog_auditor::consumer::run(
                    receiver,
                    store.clone(),
                    std::future::pending(),
                ));
                // The in-process auditor seals what it stores, as `auditlog up`
                // does (the RabbitMQ configurations' `auditlog auditor` does too):
                // the store's sealing work is part of what is measured.
                let identity = auditlog_auditor::log::LogIdentity::open(scratch.path(), None, None)
                    .context("while creating the run's checkpoint key")?;
                let sealer = tokio::spawn(auditlog_auditor::log::run_sealer(
                    auditlog_auditor::log::Sealer::new(
                        store.clone(),
                        identity,
                        auditlog_auditor::log::SealerStatus::default(),
                    ),
                    auditlog_auditor::log::SEAL_EVERY,
                    async move {
                        let _ = stop_sealing.await;
                    },
                ));
                (Arc::new(transport), Vec::new(), Some((consumer, sealer)))
            }
            Some(url) => {
                let config = AmqpConfig {
                    exchange: format!("api-stream-bench-{run_tag}"),
                    queue: format!("data-mutation-audits-bench-{run_tag}"),
                    dead_letter_queue: format!("data-mutation-audits-bench-{run_tag}.dead-letter"),
                    queue_type: options.queue_type,
                    ..AmqpConfig::new(url.clone())
                };
                // The first auditor alone, until it consumes: it creates the
                // data directory's keys, which the others then share (the
                // auditors of one deployment sign the log with one key).
                let queue = config.queue.clone();
                let dir = options
                    .auditor_dir
                    .clone()
                    .unwrap_or_else(|| scratch.path().join("auditor"));
                let mut auditors = vec![spawn_auditor(&config, &store_url, &dir)?];
                wait_for_consumers(url, &queue, 1).await?;
                for _ in 1..options.auditors {
                    auditors.push(spawn_auditor(&config, &store_url, &dir)?);
                }
                topology = Some(config.clone());
                let publisher = AmqpPublisher::new(config, "bench");
                publisher
                    .connect()
                    .await
                    .context("while connecting to RabbitMQ")?;
                // The clock starts once every auditor consumes, so that their
                // start-up is not counted.
                wait_for_consumers(url, &queue, options.auditors as u32).await?;
                (Arc::new(publisher), auditors, None)
            }
        };

    let progress = progress_bar(options.events, options.progress);
    let emitted_count = Arc::new(AtomicU64::new(0));
    let ticker = {
        let (progress, emitted_count) = (progress.clone(), emitted_count.clone());
        tokio::spawn(async move {
            loop {
                progress.set_position(emitted_count.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Rows already in the store (`--store-url`): what the run adds is counted
    // against this.
    let rows_before = store
        .count(&EventQuery::default())
        .await
        .context("while counting the store's rows")?;
    // Leaves already in the tree are not the run's.
    let tree_before = store.tree_size().await?;
    let watcher = Freshness::default();
    let server = store_server_process(&store_url);
    let cpu_before = (!auditors.is_empty()).then(|| CpuReading::now(&auditors, server));
    let started = Instant::now();
    let started_ms = auditlog_event::now_ms();
    let mut producer_ids = Vec::with_capacity(options.producers);
    let per_producer = options.events.div_ceil(options.producers as u64);
    let mut producers = Vec::new();
    for producer in 0..options.producers {
        let first = producer as u64 * per_producer;
        let last = ((producer as u64 + 1) * per_producer).min(options.events);
        let watcher = watcher.clone();
        let ratio = options.changed_ratio;
        let counter = emitted_count.clone();
        if let (MessageFormat::Single, Some(config)) = (options.message_format, &topology) {
            let config = config.clone();
            let tag = format!("{run_tag}-{producer}");
            producers.push(tokio::spawn(async move {
                publish_singles(config, tag, first..last, ratio, watcher, counter).await
            }));
            continue;
        }
        let producer_id = auditlog_emit::new_producer_id("bench");
        producer_ids.push(producer_id.clone());
        let config = EmitterConfig {
            max_batch: options.batch.max(1),
            spill_dir: Some(scratch.path().join(format!("spill-{producer}"))),
            producer_id: Some(producer_id),
            shutdown_grace: Duration::from_secs(600),
            ..EmitterConfig::default()
        };
        let (emitter, task) = Emitter::start(transport.clone(), config)?;
        producers.push(tokio::spawn(async move {
            Ok(emit_range(emitter, task, first..last, ratio, watcher, counter).await)
        }));
    }
    let watch = tokio::spawn(watcher.clone().watch(store.clone()));
    let mut emit_ns = Vec::with_capacity(options.events as usize);
    let mut ids = Vec::with_capacity(options.events as usize);
    let mut emitted_at = started;
    let mut dropped = 0;
    let mut spilled = 0;
    for producer in producers {
        let outcome = producer.await.context("a producer task failed")??;
        emit_ns.extend(outcome.emit_ns);
        ids.extend(outcome.ids);
        emitted_at = emitted_at.max(outcome.emitted_at);
        dropped += outcome.dropped;
        spilled += outcome.spilled;
    }
    progress.set_message("stored");
    let emit_seconds = (emitted_at - started).as_secs_f64();

    // Every producer's last event stored means all of its events are: each
    // producer's events travel in order through one queue and one consumer. An
    // event that never comes (dropped by its emitter, or lost) ends the wait once
    // the store stops moving; the check below then counts it as lost.
    let last_ids = watcher.last_ids().await;
    let stored_at = wait_stored(&*store, &last_ids, STALL_PATIENCE, started).await?;
    let cpu_after = (!auditors.is_empty()).then(|| CpuReading::now(&auditors, server));
    let stored_seconds = (stored_at - started).as_secs_f64();
    watcher.stop();
    let freshness = watch.await.context("the freshness watcher failed")?;
    ticker.abort();
    progress.finish_and_clear();

    let numbered = match options.message_format {
        MessageFormat::Batch => Some(producer_ids.as_slice()),
        MessageFormat::Single => None,
    };
    let (lost, duplicated) = check_ids(&*store, &ids, numbered, rows_before).await?;
    // The sealer (in process or the auditor's) signs on its own schedule; the
    // lag of the last events is only known once it has signed them.
    let sealed = wait_sealed(&*store, STALL_PATIENCE).await?;
    let auditor_rss = auditors.iter().map(|child| peak_rss_kib(child.id())).max();
    for mut child in auditors {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    if let Some((consumer, sealer)) = in_process {
        drop(transport);
        consumer.await.context("the consumer failed")?;
        let _ = seal_now.send(());
        sealer.await.context("the sealer failed")?;
    }
    if let Some(config) = &topology
        && let Err(err) = auditlog_amqp::delete_topology(config).await
    {
        tracing::warn!(%err, "the run's RabbitMQ queues could not be deleted");
    }

    let broker_ceiling_per_sec = match (options.message_format, &options.amqp_url) {
        (MessageFormat::Single, Some(url)) => Some(
            broker_ceiling(url, &run_tag, &options)
                .await
                .context("while measuring RabbitMQ's own ceiling for single-event messages")?,
        ),
        _ => None,
    };
    let ceiling_seconds = if options.ceiling {
        ceiling::measure(
            &store_url,
            scratch.path(),
            options.events,
            options.changed_ratio,
        )
        .await
        .context("while measuring the store's bulk-load ceiling")?
    } else {
        f64::INFINITY
    };
    let emitted_ms = started_ms + (emit_seconds * 1_000.0).ceil() as i64;
    let lag = crate::lag::checkpoint_lag(&*store, tree_before, started_ms, emitted_ms)
        .await
        .context("while reading the checkpoint lag back from the store")?;
    let sealed_seconds = lag
        .last_signed_at
        .map_or(0.0, |at| (at - started_ms) as f64 / 1_000.0);
    let emit = percentiles(emit_ns);
    // Only what arrived: a run that gave up waiting does not count its lost events.
    let stored_events = options.events.saturating_sub(lost);
    let stored_per_sec = stored_events as f64 / stored_seconds;
    // 0 when not measured (an infinitely long load).
    let ceiling_per_sec = options.events as f64 / ceiling_seconds;
    let cpu_per_event = cpu_before
        .zip(cpu_after)
        .map(|(before, after)| after.per_event(&before, stored_events.max(1), server));
    Ok(IngestReport {
        events: options.events,
        producers: options.producers,
        message_format: options.message_format,
        transport: if options.amqp_url.is_some() {
            "rabbitmq".into()
        } else {
            "embedded".into()
        },
        store: store_url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_owned())
            .unwrap_or_default(),
        lost,
        duplicated,
        dropped_by_emitters: dropped,
        spilled_by_emitters: spilled,
        emitted_per_sec: options.events as f64 / emit_seconds.max(1e-9),
        stored_per_sec,
        ceiling_per_sec,
        fraction_of_ceiling: if ceiling_per_sec > 0.0 {
            stored_per_sec / ceiling_per_sec
        } else {
            0.0
        },
        broker_ceiling_per_sec,
        fraction_of_broker_ceiling: broker_ceiling_per_sec.map(|ceiling| stored_per_sec / ceiling),
        emit_p50_ns: emit.p50,
        emit_p99_ns: emit.p99,
        freshness_p50_ms: freshness.p50 as f64 / 1_000.0,
        freshness_p99_ms: freshness.p99 as f64 / 1_000.0,
        freshness_samples: freshness.count,
        sealed_per_sec: if sealed_seconds > 0.0 {
            lag.lag_ms.count as f64 / sealed_seconds
        } else {
            0.0
        },
        checkpoint_lag_p50_ms: lag.lag_ms.p50,
        checkpoint_lag_p99_ms: lag.lag_ms.p99,
        checkpoint_lag_max_ms: lag.lag_ms.max,
        checkpoint_lag_samples: lag.lag_ms.count as u64,
        checkpoint_lag_after_emitting_p50_ms: lag.later_lag_ms.p50,
        checkpoint_lag_after_emitting_p99_ms: lag.later_lag_ms.p99,
        checkpoint_lag_after_emitting_samples: lag.later_lag_ms.count as u64,
        tree_size: sealed.tree_size,
        checkpoint_size: sealed.checkpoint_size,
        tree_caught_up: sealed.caught_up(),
        bench_peak_rss_kib: own_peak_rss_kib(),
        auditor_peak_rss_kib: auditor_rss,
        auditors: options.auditors,
        cpu_per_event,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What one producer did.
struct ProducerOutcome {
    ids: Vec<Uuid>,
    emit_ns: Vec<u64>,
    emitted_at: Instant,
    dropped: u64,
    spilled: u64,
}

async fn emit_range(
    emitter: Emitter,
    task: auditlog_emit::EmitterTask,
    range: std::ops::Range<u64>,
    changed_ratio: f64,
    watcher: Freshness,
    emitted_count: Arc<AtomicU64>,
) -> ProducerOutcome {
    let workload = Workload::new(changed_ratio);
    let count = range.end - range.start;
    let mut ids = Vec::with_capacity(count as usize);
    let mut emit_ns = Vec::with_capacity(count as usize);
    let mut last = None;
    for n in range {
        let event = workload.event(n, auditlog_event::now_ms());
        let id = event.id;
        ids.push(id);
        let sampled = n % FRESHNESS_SAMPLE_EVERY == 0;
        let before = Instant::now();
        emitter.emit(event);
        let after = Instant::now();
        emit_ns.push((after - before).as_nanos() as u64);
        if sampled {
            watcher.sample(id, before).await;
        }
        last = Some(id);
        if n % 4_096 == 4_095 {
            emitted_count.fetch_add(4_096, Ordering::Relaxed);
            // Let the batching task and the consumer run on a busy runtime.
            tokio::task::yield_now().await;
        }
    }
    let emitted_at = Instant::now();
    if let Some(last) = last {
        watcher.last(last).await;
    }
    let stats = task.shutdown().await;
    ProducerOutcome {
        ids,
        emit_ns,
        emitted_at,
        dropped: stats.dropped(),
        spilled: stats.spilled(),
    }
}

/// Publishes events `range` as the prototype's producers did: each its own
/// message, without an id or a producer number. The id the auditor will give
/// each one is derived from the message's bytes, as the auditor derives it; a
/// `requestId` unique to the run and the event makes every message distinct.
/// The latency recorded per event is that of the publish call.
async fn publish_singles(
    config: AmqpConfig,
    tag: String,
    range: std::ops::Range<u64>,
    changed_ratio: f64,
    watcher: Freshness,
    emitted_count: Arc<AtomicU64>,
) -> Result<ProducerOutcome> {
    let workload = Workload::new(changed_ratio);
    let mut publisher = SingleEventPublisher::connect(&config, "bench")
        .await
        .context("while connecting a single-event producer to RabbitMQ")?;
    let count = range.end - range.start;
    let mut ids = Vec::with_capacity(count as usize);
    let mut publish_ns = Vec::with_capacity(count as usize);
    let mut last = None;
    for n in range {
        let mut event = workload.event(n, auditlog_event::now_ms());
        event.request_id = Some(format!("{tag}-{n}"));
        let body = prototype_body(&event)?;
        let id = MessageIds::new(&body).id(0);
        ids.push(id);
        let before = Instant::now();
        publisher
            .publish(&body)
            .await
            .context("while publishing a single-event message")?;
        publish_ns.push(before.elapsed().as_nanos() as u64);
        if n % FRESHNESS_SAMPLE_EVERY == 0 {
            watcher.sample(id, before).await;
        }
        last = Some(id);
        if n % 4_096 == 4_095 {
            emitted_count.fetch_add(4_096, Ordering::Relaxed);
        }
    }
    publisher
        .finish()
        .await
        .context("while waiting for RabbitMQ to confirm the messages")?;
    let emitted_at = Instant::now();
    if let Some(last) = last {
        watcher.last(last).await;
    }
    Ok(ProducerOutcome {
        ids,
        emit_ns: publish_ns,
        emitted_at,
        dropped: 0,
        spilled: 0,
    })
}

/// RabbitMQ's own rate for the run's single-event messages: `options.events`
/// messages, built before the clock starts, published by `options.producers`
/// connections into a queue of the run's own while one consumer takes and
/// acknowledges them, timed from the first publish to the last message taken.
async fn broker_ceiling(url: &str, run_tag: &str, options: &IngestOptions) -> Result<f64> {
    let config = AmqpConfig {
        exchange: format!("api-stream-ceiling-{run_tag}"),
        queue: format!("data-mutation-audits-ceiling-{run_tag}"),
        dead_letter_queue: format!("data-mutation-audits-ceiling-{run_tag}.dead-letter"),
        queue_type: options.queue_type,
        ..AmqpConfig::new(url.to_owned())
    };
    let workload = Workload::new(options.changed_ratio);
    let per_producer = options.events.div_ceil(options.producers as u64);
    let mut bodies = Vec::with_capacity(options.producers);
    for producer in 0..options.producers as u64 {
        let range = producer * per_producer..((producer + 1) * per_producer).min(options.events);
        let mut messages = Vec::with_capacity((range.end - range.start) as usize);
        for n in range {
            let mut event = workload.event(n, auditlog_event::now_ms());
            event.request_id = Some(format!("{run_tag}-ceiling-{n}"));
            messages.push(prototype_body(&event)?);
        }
        bodies.push(messages);
    }
    let mut publishers = Vec::with_capacity(bodies.len());
    for _ in &bodies {
        publishers.push(SingleEventPublisher::connect(&config, "bench").await?);
    }
    let drain_config = config.clone();
    let events = options.events;
    let started = Instant::now();
    let drained = tokio::spawn(async move { auditlog_amqp::drain(&drain_config, events).await });
    let mut publishing = Vec::with_capacity(bodies.len());
    for (mut publisher, messages) in publishers.into_iter().zip(bodies) {
        publishing.push(tokio::spawn(async move {
            for body in &messages {
                publisher.publish(body).await?;
            }
            publisher.finish().await
        }));
    }
    for publisher in publishing {
        publisher.await.context("a publisher task failed")??;
    }
    drained.await.context("the consumer task failed")??;
    let seconds = started.elapsed().as_secs_f64();
    if let Err(err) = auditlog_amqp::delete_topology(&config).await {
        tracing::warn!(%err, "the ceiling's RabbitMQ queues could not be deleted");
    }
    Ok(options.events as f64 / seconds)
}

/// `event` as the prototype's producers sent it: its JSON without `id` (and
/// without producer numbering, which the workload does not set).
fn prototype_body(event: &DataEvent) -> Result<Vec<u8>> {
    let mut json = serde_json::to_value(event).context("while serialising an event")?;
    if let Some(fields) = json.as_object_mut() {
        fields.remove("id");
    }
    serde_json::to_vec(&json).context("while serialising an event")
}

/// Watches sampled events until they can be queried, for emit → queryable times.
#[derive(Clone, Default)]
struct Freshness {
    pending: Arc<Mutex<Vec<(Uuid, Instant)>>>,
    seen_us: Arc<Mutex<Vec<u64>>>,
    last: Arc<Mutex<Vec<Uuid>>>,
    stopped: Arc<AtomicBool>,
}

impl Freshness {
    async fn sample(&self, id: Uuid, at: Instant) {
        self.pending.lock().await.push((id, at));
    }

    async fn last(&self, id: Uuid) {
        self.last.lock().await.push(id);
    }

    async fn last_ids(&self) -> Vec<Uuid> {
        self.last.lock().await.clone()
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    async fn watch(self, store: Arc<dyn AuditStore>) -> Percentiles {
        loop {
            let stopping = self.stopped.load(Ordering::SeqCst);
            // The oldest samples are the ones due next: events are stored about in
            // order, and asking for a few keeps the watcher's load on the store small.
            let pending: Vec<(Uuid, Instant)> = self
                .pending
                .lock()
                .await
                .iter()
                .take(100)
                .copied()
                .collect();
            if !pending.is_empty() {
                let ids: Vec<Uuid> = pending.iter().map(|(id, _)| *id).collect();
                if let Ok(found) = store.stored_ids(&ids).await {
                    let now = Instant::now();
                    let found: HashSet<Uuid> = found.into_iter().collect();
                    let mut seen = self.seen_us.lock().await;
                    for (id, at) in &pending {
                        if found.contains(id) {
                            seen.push((now - *at).as_micros() as u64);
                        }
                    }
                    self.pending
                        .lock()
                        .await
                        .retain(|(id, _)| !found.contains(id));
                }
            }
            if stopping {
                break;
            }
            // Looking costs the store work, which the measured system then lacks:
            // look about as often as the oldest sample's age needs for a 1 % error.
            let oldest = pending
                .first()
                .map_or(Duration::ZERO, |(_, at)| at.elapsed());
            tokio::time::sleep((oldest / 100).clamp(FRESHNESS_POLL, FRESHNESS_POLL_MAX)).await;
        }
        percentiles(self.seen_us.lock().await.clone())
    }
}

/// Waits until every id is stored and returns when (within 0.1 % of the time since
/// `started`, polling no more often than that needs). If the store stops making
/// progress first (its highest `seq` unchanged for `patience`), some of them will
/// never come: returns when the store last moved, leaving the missing ones to be
/// counted as lost. Progress is the store's, not a count of this run's rows, so a
/// store that already held events (`--store-url`) is no different.
async fn wait_stored(
    store: &dyn AuditStore,
    ids: &[Uuid],
    patience: Duration,
    started: Instant,
) -> Result<Instant> {
    let mut progress = Progress::new(store.last_seq().await?, Instant::now());
    let mut looked = Instant::now();
    loop {
        let found = store.stored_ids(ids).await?;
        let found: HashSet<Uuid> = found.into_iter().collect();
        if ids.iter().all(|id| found.contains(id)) {
            return Ok(Instant::now());
        }
        if looked.elapsed() >= PROGRESS_POLL {
            looked = Instant::now();
            if progress.stalled(store.last_seq().await?, looked, patience) {
                tracing::warn!(
                    "the store stored nothing for {} s; counting the events still missing as lost",
                    patience.as_secs()
                );
                return Ok(progress.since);
            }
        }
        let wanted = started.elapsed() / 1_000;
        tokio::time::sleep(wanted.clamp(Duration::from_millis(1), STORED_POLL_MAX)).await;
    }
}

/// The tree and its latest checkpoint once the bench stopped waiting for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sealed {
    /// Rows in the store.
    stored: u64,
    tree_size: u64,
    checkpoint_size: u64,
}

impl Sealed {
    /// Every stored event is a leaf, and the latest checkpoint signs them all.
    fn caught_up(&self) -> bool {
        self.tree_size == self.stored && self.checkpoint_size == self.tree_size
    }
}

/// Waits until the latest checkpoint covers every row the store holds, or until
/// no checkpoint has been signed for `patience` (a sealer that stopped, or rows it
/// will never seal); then says where the tree and its checkpoints stand.
async fn wait_sealed(store: &dyn AuditStore, patience: Duration) -> Result<Sealed> {
    let stored = store.count(&EventQuery::default()).await?;
    let mut checkpoint_size = latest_checkpoint_size(store).await?;
    let mut progress = Progress::new(checkpoint_size as i64, Instant::now());
    while checkpoint_size < stored {
        tokio::time::sleep(CHECKPOINT_POLL).await;
        checkpoint_size = latest_checkpoint_size(store).await?;
        if progress.stalled(checkpoint_size as i64, Instant::now(), patience) {
            tracing::warn!(
                "no checkpoint signed for {} s: {checkpoint_size} of {stored} stored events are \
                 in the signed log",
                patience.as_secs()
            );
            break;
        }
    }
    Ok(Sealed {
        stored,
        tree_size: store.tree_size().await?,
        checkpoint_size,
    })
}

async fn latest_checkpoint_size(store: &dyn AuditStore) -> Result<u64> {
    Ok(store.latest_checkpoint().await?.map_or(0, |c| c.size))
}

/// A value that should keep moving (the store's highest `seq`), and since when it
/// has been what it is.
#[derive(Debug, Clone, Copy)]
struct Progress {
    value: i64,
    since: Instant,
}

impl Progress {
    fn new(value: i64, now: Instant) -> Self {
        Progress { value, since: now }
    }

    /// Records `value` read at `now`; true once it has not changed for `patience`.
    fn stalled(&mut self, value: i64, now: Instant, patience: Duration) -> bool {
        if value != self.value {
            *self = Progress::new(value, now);
            return false;
        }
        now.duration_since(self.since) >= patience
    }
}

/// Lost: emitted ids not stored. Duplicated: rows the run added beyond one per
/// sequence number of its numbered `producers`, or, for events without producer
/// numbers (`None`), beyond one per stored id (`rows_before` is the store's count
/// before the run). The store keeps each id once, so counting rows per emitted id can
/// never see a repeat; an event stored again under another id (re-sent without
/// its id, or given a new one on the way) keeps its producer and number, and
/// shows here. Other writers to the store during the run would count too.
async fn check_ids(
    store: &dyn AuditStore,
    ids: &[Uuid],
    producers: Option<&[String]>,
    rows_before: u64,
) -> Result<(u64, u64)> {
    let mut lost = 0;
    for chunk in ids.chunks(10_000) {
        let stored: HashSet<Uuid> = store.stored_ids(chunk).await?.into_iter().collect();
        lost += chunk.iter().filter(|id| !stored.contains(id)).count() as u64;
    }
    let rows_added = store
        .count(&EventQuery::default())
        .await?
        .saturating_sub(rows_before);
    let expected = match producers {
        Some(producers) => store
            .producers()
            .await?
            .iter()
            .filter(|progress| producers.contains(&progress.producer_id))
            .map(|progress| progress.events)
            .sum(),
        None => ids.len() as u64 - lost,
    };
    Ok((lost, rows_added.saturating_sub(expected)))
}

/// Starts `auditlog auditor` consuming the bench's queue into the store, with
/// `data_dir` as its data directory.
fn spawn_auditor(
    config: &AmqpConfig,
    store_url: &str,
    data_dir: &std::path::Path,
) -> Result<Child> {
    let exe = std::env::current_exe().context("while locating the auditlog binary")?;
    Command::new(exe)
        .args([
            "auditor",
            "--auditor-addr",
            "127.0.0.1:0",
            "--store-url",
            store_url,
            "--amqp-url",
            &config.url,
            "--amqp-exchange",
            &config.exchange,
            "--amqp-queue",
            &config.queue,
            "--amqp-dead-letter-queue",
            &config.dead_letter_queue,
            "--amqp-queue-type",
            config.queue_type.name(),
        ])
        .env("AUDITLOG_DATA_DIR", data_dir)
        .env("AUDITLOG_LOG", "warn,lapin::channel=off")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("while starting the auditor")
}

/// Waits until `count` auditors consume from the queue.
async fn wait_for_consumers(url: &str, queue: &str, count: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if auditlog_amqp::queue_consumers(url, queue)
            .await
            .unwrap_or(0)
            >= count
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{count} auditors did not start consuming from {queue} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn progress_bar(total: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {bar:40} {pos}/{len} events emitted {msg} [{elapsed}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `bench ingest --auditors 1,2,3`: one run per number of auditor processes, each
/// with its own queue, into the same store, and the model built from each run's
/// CPU figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingReport {
    pub runs: Vec<IngestReport>,
    pub model: Vec<ModelRow>,
}

/// What N auditors would store per second on a machine with a core for each
/// auditor, each of their database sessions and the queue: a model from the
/// CPU time per event one run measured, not a measurement. On a machine where
/// producers, auditors, database and broker share a few cores, the measured
/// rate is what those cores allow; the model says what the work itself allows.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub auditors: usize,
    pub measured_per_sec: f64,
    /// One auditor and its database session as a serial pipeline (the consume loop
    /// waits for each commit): 10^6 / (auditors' µs + server's µs per event).
    pub per_auditor_per_sec: f64,
    /// One queue, all of RabbitMQ's work for it on one core (a quorum queue is
    /// one Raft leader process): 10^6 / RabbitMQ's µs per event. Pessimistic, as
    /// the connections' and channels' work runs on other cores.
    pub broker_per_sec: f64,
    /// Where writers take turns (MySQL/MariaDB), all of them together as one
    /// pipeline: 10^6 / the server's µs per event. `None` on PostgreSQL, whose
    /// writers run in parallel.
    pub store_per_sec: Option<f64>,
    /// min(N × per auditor, broker, store): the database server given cores
    /// enough for N sessions.
    pub model_per_sec: f64,
}

impl ModelRow {
    /// The model from one run's CPU figures; `None` for a run without them.
    pub fn of(run: &IngestReport) -> Option<ModelRow> {
        let cpu = run.cpu_per_event.as_ref()?;
        let pipeline_us = cpu.auditors_total_us + cpu.store_server_us.unwrap_or(0.0);
        let per_auditor = 1e6 / pipeline_us.max(1e-3);
        let broker = 1e6 / cpu.rabbitmq_us.max(1e-3);
        let store = (run.store == "mysql" || run.store == "mariadb")
            .then(|| 1e6 / cpu.store_server_us.unwrap_or(0.0).max(1e-3));
        Some(ModelRow {
            auditors: run.auditors,
            measured_per_sec: run.stored_per_sec,
            per_auditor_per_sec: per_auditor,
            broker_per_sec: broker,
            store_per_sec: store,
            model_per_sec: (run.auditors as f64 * per_auditor)
                .min(broker)
                .min(store.unwrap_or(f64::INFINITY)),
        })
    }
}

/// Runs [`run`] once for each number of auditor processes in `counts` (RabbitMQ
/// only), without the ceiling measurement, and models each (see [`ModelRow`]).
pub async fn run_scaling(options: IngestOptions, counts: &[usize]) -> Result<ScalingReport> {
    if options.amqp_url.is_none() || counts.is_empty() {
        bail!("--auditors needs --amqp-url and at least one number of auditors");
    }
    // One log key for every run: they all seal into the same store.
    let keys = tempfile::tempdir().context("while creating the auditors' data directory")?;
    let mut runs = Vec::with_capacity(counts.len());
    for &auditors in counts {
        runs.push(
            run(IngestOptions {
                auditors,
                ceiling: false,
                auditor_dir: Some(
                    options
                        .auditor_dir
                        .clone()
                        .unwrap_or_else(|| keys.path().into()),
                ),
                ..options.clone()
            })
            .await
            .with_context(|| format!("while running with {auditors} auditors"))?,
        );
    }
    let model = runs.iter().filter_map(ModelRow::of).collect();
    Ok(ScalingReport { runs, model })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Event `n` of the run, numbered `seq` by the producer `bench/a`.
    fn numbered(n: u64, seq: u64) -> DataEvent {
        let mut event = Workload::new(0.0).event(n, 1_700_000_000_000 + n as i64);
        event.producer_id = Some("bench/a".into());
        event.producer_seq = Some(seq);
        event
    }

    #[tokio::test]
    async fn an_event_stored_again_under_another_id_counts_as_duplicated() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let store = auditlog_store::open(&url).await.unwrap();
        let (first, second) = (numbered(1, 1), numbered(2, 2));
        // The second event again, as a transport that re-sent it with a new id would.
        let mut again = second.clone();
        again.id = Uuid::now_v7();
        store
            .insert_batch(&[first.clone(), second.clone(), again])
            .await
            .unwrap();

        let counted = check_ids(
            &*store,
            &[first.id, second.id],
            Some(&["bench/a".into()]),
            0,
        )
        .await;

        assert_eq!(counted.unwrap(), (0, 1), "(lost, duplicated)");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_embedded_run_reports_its_sealing_and_checkpoint_lag() {
        let report = run(IngestOptions {
            events: 2_000,
            producers: 2,
            batch: 500,
            changed_ratio: 0.5,
            store_url: None,
            amqp_url: None,
            message_format: MessageFormat::Batch,
            progress: false,
            auditors: 1,
            ceiling: true,
            auditor_dir: None,
            queue_type: auditlog_amqp::QueueType::Quorum,
            personal_fields: None,
        })
        .await
        .unwrap();

        assert_eq!((report.lost, report.duplicated), (0, 0));
        assert!(report.tree_caught_up, "{report:?}");
        assert_eq!((report.tree_size, report.checkpoint_size), (2_000, 2_000));
        assert_eq!(report.checkpoint_lag_samples, 2_000);
        assert!(report.sealed_per_sec > 0.0);
        assert!(report.checkpoint_lag_p50_ms <= report.checkpoint_lag_p99_ms);
        assert!(report.checkpoint_lag_p99_ms <= report.checkpoint_lag_max_ms);
        // The sealer looks every 200 ms: a lag of seconds would mean it did not run.
        assert!(report.checkpoint_lag_max_ms < 5_000, "{report:?}");
        let table = report.table();
        assert!(table.contains("checkpoint lag"), "{table}");
        assert!(table.contains("caught up"), "{table}");
    }

    #[test]
    fn the_model_is_the_lesser_of_n_pipelines_and_one_queue() {
        let mut report = IngestReport {
            events: 1,
            producers: 1,
            message_format: MessageFormat::Batch,
            transport: "rabbitmq".into(),
            store: "postgres".into(),
            lost: 0,
            duplicated: 0,
            dropped_by_emitters: 0,
            spilled_by_emitters: 0,
            emitted_per_sec: 0.0,
            stored_per_sec: 9_000.0,
            ceiling_per_sec: 0.0,
            fraction_of_ceiling: 0.0,
            broker_ceiling_per_sec: None,
            fraction_of_broker_ceiling: None,
            emit_p50_ns: 0,
            emit_p99_ns: 0,
            freshness_p50_ms: 0.0,
            freshness_p99_ms: 0.0,
            freshness_samples: 0,
            sealed_per_sec: 0.0,
            checkpoint_lag_p50_ms: 0,
            checkpoint_lag_p99_ms: 0,
            checkpoint_lag_max_ms: 0,
            checkpoint_lag_samples: 0,
            checkpoint_lag_after_emitting_p50_ms: 0,
            checkpoint_lag_after_emitting_p99_ms: 0,
            checkpoint_lag_after_emitting_samples: 0,
            tree_size: 0,
            checkpoint_size: 0,
            tree_caught_up: true,
            bench_peak_rss_kib: 0,
            auditor_peak_rss_kib: None,
            auditors: 2,
            cpu_per_event: Some(CpuPerEvent {
                auditors_us: vec![20.0, 20.0],
                auditors_total_us: 40.0,
                store_server: Some("postgres".into()),
                store_server_us: Some(60.0),
                rabbitmq_us: 25.0,
                producers_us: 5.0,
            }),
            seconds: 1.0,
        };
        let model = ModelRow::of(&report).unwrap();
        // Each pipeline: 100 µs an event; the queue: 25 µs.
        assert_eq!(model.per_auditor_per_sec.round(), 10_000.0);
        assert_eq!(model.broker_per_sec.round(), 40_000.0);
        assert_eq!(model.model_per_sec.round(), 20_000.0);
        report.auditors = 6;
        assert_eq!(
            ModelRow::of(&report).unwrap().model_per_sec.round(),
            40_000.0
        );
        // Writers that take turns are one pipeline on the server's side.
        report.store = "mysql".into();
        let serial = ModelRow::of(&report).unwrap();
        assert_eq!(serial.store_per_sec.map(f64::round), Some(16_667.0));
        assert_eq!(serial.model_per_sec.round(), 16_667.0);
        report.cpu_per_event = None;
        assert!(ModelRow::of(&report).is_none());
    }

    #[test]
    fn a_run_that_sealed_everything_has_caught_up_and_one_short_has_not() {
        let all = Sealed {
            stored: 10,
            tree_size: 10,
            checkpoint_size: 10,
        };
        let unsigned = Sealed {
            checkpoint_size: 9,
            ..all
        };
        let unsealed = Sealed {
            tree_size: 9,
            checkpoint_size: 9,
            ..all
        };

        assert!(all.caught_up());
        assert!(!unsigned.caught_up());
        assert!(!unsealed.caught_up());
    }

    #[test]
    fn progress_stalls_only_after_patience_without_a_change() {
        let patience = Duration::from_secs(30);
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut progress = Progress::new(10, start);
        assert!(!progress.stalled(10, at(29), patience));
        // A change restarts the clock, and `since` is when it was seen.
        assert!(!progress.stalled(11, at(29), patience));
        assert_eq!(progress.since, at(29));
        assert!(!progress.stalled(11, at(58), patience));
        assert!(progress.stalled(11, at(59), patience));
        assert_eq!(progress.since, at(29));
    }
}
